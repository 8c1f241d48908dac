"""What to measure: the problem-size grids of each microbenchmark, per device and mode.

A plan is data. The grids are chosen so each axis spans the sizes real layers have
(GEMM M from a batch-1 token to a batch of image rows; conv spatial sizes 7x7 .. 112x112)
and so the full CPU run fits in the 3-minute budget on a 2-core machine:
the dense 3x3 conv grid costs 2 * sum(M) * sum(N) * sum(K) FLOPs per pass
= 2 * (49+196+784+3136+12544) * (16+64+256+1024) * (27+144+576+2304) ~ 1.4e11, i.e. about
1.4 s per pass at the ~100 GFLOP/s two Zen 2 cores reach.

>>> p = plan_for("cpu", quick=True)
>>> p.gemm_fp32.m[0], len(p.bandwidth_bytes) > 4
(1, True)
"""

from __future__ import annotations

from dataclasses import dataclass

from dnnmap.calibrate.microbench import COLD_GAPS_US
from dnnmap.calibrate.opkinds import OPS, QUICK, TRAINING

ALL_OPKINDS = tuple(OPS)
QUICK_OPKINDS = QUICK


@dataclass(frozen=True)
class GemmGrid:
    """Axes of a GEMM efficiency table: C[M,N] += A[M,K] @ B[K,N] at every (m, n, k)."""

    dtype: str
    m: tuple[int, ...]
    n: tuple[int, ...]
    k: tuple[int, ...]
    max_flops: float = float("inf")  # points above this are skipped (a slow dtype)

    def points(self) -> list[tuple[int, int, int]]:
        return [
            (m, n, k)
            for m in self.m
            for n in self.n
            for k in self.k
            if 2.0 * m * n * k <= self.max_flops
        ]


@dataclass(frozen=True)
class ConvGrid:
    """Axes of a conv table in its GEMM view: M = batch*Ho*Wo (as hw*hw at batch 1),
    N = out channels, K = in channels per group * kernel * kernel.

    ``kind`` "conv" (dense k x k), "conv1x1" (pointwise) or "grouped": channels in groups of
    ``group_width`` (1 = depthwise), stored in the depthwise table keyed by
    (M, channels, K = group_width * kernel * kernel)."""

    kind: str
    kernel: int
    hw: tuple[int, ...]  # output height = width (stride 1, same padding)
    cout: tuple[int, ...]  # grouped: channels (in = out)
    cin: tuple[int, ...] = (1,)  # ignored for grouped
    group_width: int = 1  # grouped only
    max_flops: float = float("inf")  # larger points are skipped (their throughput has saturated)

    def points(self) -> list[tuple[int, int, int]]:
        """(hw, cin, cout) triples within the FLOP cap."""
        out = []
        for hw in self.hw:
            for ci in (self.cin if self.kind != "grouped" else (self.group_width,)):
                for co in self.cout:
                    if self.kind == "grouped" and co % self.group_width:
                        continue
                    if 2.0 * hw * hw * co * ci * self.kernel**2 <= self.max_flops:
                        out.append((hw, ci, co))
        return out


@dataclass(frozen=True)
class StreamGrid:
    """Weight-streaming GEMMs: ``x[m, k]`` against weights too many to stay in any cache, as a
    decode step reads each layer's weight once. Every point rotates over distinct weights
    carved from one pool of at least ``pool_bytes`` (and 4x the last-level cache), so each
    call finds its weight cold in DRAM. Both weight layouts: "nt" = ``F.linear(x, W[n, k])``,
    "nn" = ``torch.addmm(bias, x, W[k, n])``. The pool must hold two of the largest weights:
    ``2 * 4 * max(n) * max(k) <= pool_bytes``."""

    m: tuple[int, ...]
    n: tuple[int, ...]
    k: tuple[int, ...]
    layouts: tuple[str, ...] = ("nt", "nn")
    pool_bytes: int = 128 << 20

    def points(self) -> list[tuple[str, int, int, int]]:
        return [(lay, m, n, k) for lay in self.layouts for m in self.m for n in self.n for k in self.k]


@dataclass(frozen=True)
class Plan:
    device: str
    gemm_fp32: GemmGrid
    gemm_other: tuple[GemmGrid, ...]
    convs: tuple[ConvGrid, ...]
    bandwidth_bytes: tuple[int, ...]  # working-set sizes of the copy / add sweeps
    runs: int = 5  # timed samples per point (median kept)
    warmup: int = 2  # untimed calls before them
    min_seconds: float = 0.02  # and at least this much timed work per point
    passes: int = 1  # sweeps over every grid, minutes apart; per point the median over them is kept
    opkinds: tuple[str, ...] = ()  # op-kind microbenchmarks (see dnnmap.calibrate.opkinds)
    idle_wait_s: float = 0.0  # before each sweep, wait up to this long for other processes to go idle
    quick: bool = False
    gemm_stream: StreamGrid | None = None  # cold weight-streaming GEMMs (CPU decode)
    conv_backward: tuple[ConvGrid, ...] = ()  # ``convolution_backward`` (grad input + grad weight)
    op_sweep: tuple[str, ...] = ()  # op kinds also timed over sizes -> op-kind bandwidth tables
    # cold code paths (CPU): gaps (us) after which each small op's first call is timed, and
    # samples per gap and op (see dnnmap.calibrate.microbench.cold_dispatch_costs)
    cold_gaps_us: tuple[int, ...] = COLD_GAPS_US
    cold_samples: int = 12


# Every GEMM grid's largest point has at least this many FLOPs: the measured peak of a
# precision is the best point of its grid, and a small GEMM (2 * 32 * 64 * 64 = 262k FLOP)
# measures call overhead, not the peak. 2 * 256 * 512 * 512 = 1.3e8.
MIN_PEAK_FLOPS = 1e8


def _pow2(lo: int, hi: int, step: int = 1) -> tuple[int, ...]:
    """Powers of two from 2**lo to 2**hi: ``_pow2(12, 16, 2) == (4096, 16384, 65536)``."""
    return tuple(2**e for e in range(lo, hi + 1, step))


def plan_for(device: str, quick: bool = False) -> Plan:
    """The plan for ``device`` ("cpu" / "cuda"); ``quick`` is the CI plan (coarser, < 30 s)."""
    if device == "cuda":
        return _cuda_plan(quick)
    if quick:
        return Plan(
            device="cpu",
            gemm_fp32=GemmGrid("float32", m=(1, 32, 512), n=(64, 512), k=(64, 512)),
            # the peak is the best point of the grid: it needs a GEMM big enough to reach it
            # (32x64x64 ran bf16 at 16 GFLOP/s where 256x512x512 runs 340-950), see MIN_PEAK_FLOPS
            gemm_other=(GemmGrid("bfloat16", m=(32, 256), n=(512,), k=(512,), max_flops=2e8),),
            convs=(
                ConvGrid("conv", 3, hw=(7, 28), cin=(16, 64), cout=(16, 64)),
                ConvGrid("conv1x1", 1, hw=(1, 7, 28), cin=(16, 128), cout=(16, 128)),
                ConvGrid("grouped", 3, hw=(7, 28), cout=(32, 256), group_width=1),
                ConvGrid("grouped", 5, hw=(7, 28), cout=(32, 256), group_width=1),
                ConvGrid("grouped", 3, hw=(7, 28), cout=(32, 256), group_width=8),
            ),
            bandwidth_bytes=_pow2(12, 26, 2),  # 4 KiB .. 64 MiB
            runs=3,
            min_seconds=0.005,
            quick=True,
            cold_gaps_us=(100, 1000),
            cold_samples=4,
            opkinds=QUICK_OPKINDS,
            gemm_stream=StreamGrid(m=(1, 4), n=(256, 2048), k=(256, 2048), pool_bytes=64 << 20),
            op_sweep=("native_batch_norm_backward",),
            conv_backward=(
                ConvGrid("conv", 3, hw=(7, 28), cin=(16, 64), cout=(16, 64)),
                ConvGrid("grouped", 3, hw=(7, 28), cout=(32, 256), group_width=1),
            ),
        )
    # channel counts in half-octave steps: real layers (24, 48, 96, 192, 384, 768 ...) are not
    # powers of two, and kernels run slower on sizes that do not fill their register blocks
    ch = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
    cap = 2e9  # FLOPs: above ~10 ms a point has reached its asymptotic throughput
    return Plan(
        device="cpu",
        # n up to 32768: a vocabulary projection (32 000 - 152 000 outputs) is a GEMM whose
        # weight (100+ MB) no cache holds; its B panels are packed from DRAM and it runs ~30 %
        # below a 3072-wide layer on this host's 32 MB L3 (a clamped grid priced it as one).
        # The FLOP cap is 10x the conv grids': on a shared-L3 host, GEMMs whose operands outgrow
        # the caches slow down (2048^3 ran at 0.77x the rate of the skinny shapes the grid used
        # to fill it from), so throughput has not saturated at 10 ms; the points from 2e9 to
        # 2e10 FLOPs add ~50 s a calibration.
        gemm_fp32=GemmGrid(
            "float32", m=(1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096),
            n=(32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 8192, 32768),
            k=(32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072), max_flops=10 * cap,
        ),
        # bf16 runs where torch supports it; without native bf16 FMA it is emulated and slow,
        # so the grid is cut at 2e8 FLOPs a point (~0.1 s at 2 GFLOP/s).
        gemm_other=(
            GemmGrid("bfloat16", m=(1, 32, 256), n=(64, 512), k=(64, 512), max_flops=2e8),
        ),
        convs=(
            ConvGrid("conv", 3, hw=(7, 14, 28, 56, 112), cin=(3, 16, 32, 64, 96, 128, 192, 256, 384, 512),
                     cout=ch[:11], max_flops=cap),
            # hw=1: the squeeze-excitation 1x1 convs on a pooled 1x1 map
            ConvGrid("conv1x1", 1, hw=(1, 7, 14, 28, 56, 112), cin=ch, cout=ch, max_flops=cap),
            ConvGrid("grouped", 3, hw=(7, 14, 28, 56, 112), cout=ch, group_width=1),
            ConvGrid("grouped", 5, hw=(7, 14, 28, 56, 112), cout=ch, group_width=1),
            ConvGrid("grouped", 3, hw=(7, 14, 28, 56, 112), cout=ch, group_width=8),
            ConvGrid("grouped", 3, hw=(7, 14, 28, 56, 112), cout=ch, group_width=16),
        ),
        bandwidth_bytes=_pow2(12, 28, 1),  # 4 KiB .. 256 MiB: every cache level and DRAM
        runs=3,
        warmup=1,
        min_seconds=0.002,
        # three sweeps ~2.5 min apart: the median point is robust to one caught at an extreme of
        # a shared host's drift (~20 % over minutes here, see collect._typical)
        passes=3,
        opkinds=ALL_OPKINDS,
        idle_wait_s=10.0,
        # m: a decode step's tokens (batch 1 .. 16); n, k: 256 .. 4096 wide layers (a wider one,
        # a vocabulary projection, streams at the 4096 rate: bandwidth has saturated). At ~10 GB/s
        # a round over the 128 MiB pool takes ~13 ms: 2 layouts x 75 points x 4 rounds ~ 8 s a pass;
        # k in octaves: a GEMV's rate climbs steeply with k below ~2048 (7 -> 17 GB/s here).
        # (m = 64 and 256 were tried: their cold rates came out above the cache-warm grid's in one
        # calibration, i.e. within the run-to-run spread of the two tables; left out.)
        op_sweep=tuple(TRAINING),
        gemm_stream=StreamGrid(m=(1, 2, 4, 8, 16), n=(256, 1024, 4096), k=(256, 512, 1024, 2048, 4096)),
        # backward convs (training): ~2x the forward's FLOPs each, so a coarser grid than the
        # forward's; 2 * sum(M) * sum(N) * sum(K) * 2 ~ 1.5e11 FLOP for the dense grid, ~2 s a pass
        conv_backward=(
            ConvGrid("conv", 3, hw=(7, 14, 28, 56, 112), cin=(3, 16, 64, 256), cout=(16, 64, 256),
                     max_flops=cap),
            ConvGrid("conv1x1", 1, hw=(7, 14, 28, 56, 112), cin=(16, 64, 256, 1024), cout=(16, 64, 256, 1024),
                     max_flops=cap),
            # a depthwise backward runs at ~1 GFLOP/s: the largest maps are left out (filled from
            # their nearest measured neighbour), each would take ~0.5 s a call
            ConvGrid("grouped", 3, hw=(7, 14, 28, 56, 112), cout=(16, 64, 256, 1024), group_width=1, max_flops=6e7),
            ConvGrid("grouped", 5, hw=(7, 14, 28, 56, 112), cout=(16, 64, 256, 1024), group_width=1, max_flops=6e7),
        ),
    )


def _cuda_plan(quick: bool) -> Plan:
    sizes = (1, 16, 128, 1024, 4096) if not quick else (16, 1024)
    nk = (128, 1024, 4096, 8192) if not quick else (128, 4096)
    return Plan(
        device="cuda",
        gemm_fp32=GemmGrid("float32", m=sizes, n=nk, k=nk),
        gemm_other=tuple(GemmGrid(d, m=sizes, n=nk, k=nk) for d in ("tf32", "bfloat16", "float16")),
        convs=(
            ConvGrid("conv", 3, hw=(7, 28, 112) if not quick else (28,), cin=(16, 256), cout=(64, 512)),
            ConvGrid("conv1x1", 1, hw=(7, 28, 112) if not quick else (28,), cin=(64, 1024), cout=(64, 1024)),
            ConvGrid("grouped", 3, hw=(7, 28, 112) if not quick else (28,), cout=(64, 1024), group_width=1),
        ),
        bandwidth_bytes=_pow2(14, 31, 1) if not quick else _pow2(14, 30, 4),  # 16 KiB .. 2 GiB
        runs=10 if not quick else 3,
        min_seconds=0.01,
        opkinds=QUICK_OPKINDS if quick else ALL_OPKINDS,
        quick=quick,
    )
