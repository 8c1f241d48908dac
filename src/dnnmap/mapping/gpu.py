"""GPU mapper: tile the subgraph's output into thread blocks and spread them over the SMs.

GEMM / conv (implicit GEMM) subgraphs are tiled like a CUTLASS / cuBLAS kernel: output tiles
of ``tm x tn`` (128 x 128, or smaller when M or N is small), a ``STAGES``-deep shared-memory
pipeline of ``K_STEP_BYTES`` of K per stage, and split-K when the tiles alone cannot fill the
SMs. The library picks the candidate with the best efficiency (ties: the larger tile):

- SM-time quantization ``q = blocks / (SMs x ceil(blocks / SMs))``: the last wave leaves SMs
  idle (an SM's tensor cores are shared by its resident blocks, so the tail is counted per SM);
- tile fill ``pad = M*N / (ceil(M/tm)*tm * ceil(N/tn)*tn)``: padded rows / columns are wasted;
- pipeline ``pipe = main / (main + DRAM_LATENCY_S + epilogue)`` per wave of an SM: the K loop of
  the SM's co-resident blocks (``main``: their tile FLOPs at the SM's share of the peak) waits
  one DRAM latency for its first stage (prologue), and each block writes its ``tm x tn`` output
  tile only after its K loop (epilogue: the wave's output bytes at the SM's share of the DRAM
  bandwidth), not overlapped with that wave's math. Long-K GEMMs lose ~1-3 %; a short-K one
  (eager attention's ``Q @ K^T``, K = head_dim = 64, writing a ``seq x seq`` score tile per
  head) loses a third: in NeuSight's kernel tables (../shared/measurements, development set)
  K ~ 64 bmms run at 0.55-0.6x the efficiency of long-K ones on all five GPUs, which the
  earlier ``k_iters / (k_iters + 2)`` (0.8x at K = 64) did not show;
- in flight ``min(1, resident tiles x tm x tn / 128^2)``: an SM's MMA pipelines need about a
  128 x 128 output tile in flight to run at full rate, so tiny tiles cannot fill them.

Tensor / matrix cores run the GEMM only for the precisions the profile lists in
``gpu.matrix_precisions`` (see :mod:`dnnmap.mapping.device`). Without them (fp32 without
TF32, or a GPU without tensor cores) the GEMM runs on the CUDA cores as a SIMT kernel whose
thread-block tiles come from the profile (``gpu.simt_gemm_tiles``: cuBLAS' ``*_sgemm_128x64``
family), with two more factors:

- instruction issue: per step of K a thread of a ``t = tm*tn/threads``-output tile issues
  ``t`` FFMAs, ``2*sqrt(t)/4`` 128-bit shared-memory loads and ``SIMT_LOOP_INSTR`` loop /
  address instructions; a warp's FFMA occupies the FP32 pipe for ``warp / lanes`` cycles
  (lanes fed by one scheduler), the scheduler issues one instruction a cycle, so
  ``issue = t*warp/lanes / max(t*warp/lanes, t + loads + loop)`` (1.0 on Volta..Hopper's
  16-lane schedulers, below 1 on Pascal / Ada's 32-lane ones);
- schedulers fed: an SM needs a warp on each of its 4 schedulers, so an SM holding fewer
  warps (a lone 64-thread block) runs at ``warps / 4``;
- shared-memory bandwidth: per K element a thread of a ``t``-output tile reads ``2 sqrt(t)``
  fp32 operands from shared memory, which delivers ``SMEM_BYTES_PER_CLK`` = 128 bytes a clock
  per SM (32 banks x 32 bits; one warp-wide 32-bit load a clock), while its FFMAs take
  ``32 t / lanes-per-SM`` clocks a warp: ``smem = min(1, 16 sqrt(t) / lanes-per-SM)`` (each
  thread's bytes counted: warp broadcasts of shared A / B fragments are not credited, so this
  errs slow). The inner loop runs at ``min(issue, smem)``: two resources working at once. 1.0 for
  the 8x8-per-thread tiles cuBLAS favours; a 32x32 tile of 128 threads (8 outputs a thread)
  runs at 0.71 of the FFMA rate on a 64-lane SM, a 4x4-per-thread tile at 0.5 on a 128-lane one
  (Pascal GP104, Ada).

Everything else (elementwise, reductions, depthwise convs) runs on the CUDA cores in blocks of
``ELEM_THREADS`` threads, each thread loading ``VECTOR_LOAD_BYTES`` (one 128-bit load) per
step whatever the element size. AMD CDNA GPUs use the same model from their profile's data:
compute units for SMs, 64-wide wavefronts, matrix cores, LDS for shared memory.

Bandwidth share (Little's law): a kernel draws ``min(1, bytes in flight / (bandwidth x
DRAM_LATENCY_S))`` of a chip-wide bandwidth. A GEMM block keeps ``STAGES - 1`` pipeline stages
of ``(tm + tn) x K_STEP_BYTES`` in flight; an elementwise thread keeps one 128-bit load in
flight. Split-K partial sums live in L2.

>>> # hand check (tests/test_mapping_gpu.py): GEMM 4096^3 on 132 SMs -> 32*32 tiles of 128x128,
>>> # waves = ceil(1024 / 132) = 8, quantization = 1024 / (8 * 132)
>>> round(1024 / (8 * 132), 4)
0.9697
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from dnnmap.hardware.schema import GpuCompute
from dnnmap.ir import OpClass
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement
from dnnmap.mapping.sm_terms import DRAM_LATENCY_S, FULL_RATE_TILE_AREA, REG_OVERHEAD
from dnnmap.mapping.sm_terms import little as _little
from dnnmap.mapping.workload import Work

TILE_EDGES = (128, 64, 32, 16)  # candidate tensor-core tile edges for M and N
K_STEP_BYTES = 128  # bytes of K per pipeline stage: 64 fp16/bf16, 32 fp32/tf32, 128 int8 elements
STAGES = 4  # shared-memory pipeline depth (CUTLASS sm80 / sm90 kernels use 3-7)
MIN_K_ITERS_PER_SPLIT = 4  # split-K only while each split keeps >= 4 K steps
ELEM_THREADS = 256  # threads per block of an elementwise / reduction kernel
VECTOR_LOAD_BYTES = 16  # one 128-bit (LDG.128) load per thread per step, whatever the dtype
ELEMS_PER_THREAD = VECTOR_LOAD_BYTES // 4  # fp32 elements per thread per step (16 int8)
# SIMT SGEMM (CUDA cores): cuBLAS' sgemm kernels stage 8 elements of K per shared-memory
# buffer, double-buffered (the open SGEMM designs it follows: Scott Gray's maxas SGEMM notes,
# CUTLASS 'SIMT' GemmShape<128,128,8>); ~2 loop / address instructions per K step
SIMT_K_STEP = 8
SIMT_STAGES = 2
SIMT_LOOP_INSTR = 2
# shared memory: 32 banks x 32 bits per clock per SM (CUDA C++ Programming Guide, "Shared Memory"
# for compute capability 5.x-9.x; AMD CDNA LDS: 128 bytes per clock per CU, CDNA ISA guides)
SMEM_BYTES_PER_CLK = 128
SCHEDULERS_PER_SM = 4  # warp schedulers (SM sub-partitions) per SM / SIMD units per CU since Volta / GCN
# cuBLAS SGEMM tiles when a profile names none: volta/ampere_sgemm_{128x128, 128x64, 64x64 (maxwell),
# 32x128, 128x32, 32x32_sliced1x4} kernel names, threads per block as they launch
DEFAULT_SIMT_TILES = ((128, 128, 256), (128, 64, 128), (64, 64, 64), (32, 128, 256), (128, 32, 256),
                      (32, 32, 128))
_REDUCING = (OpClass.REDUCTION, OpClass.NORMALIZATION, OpClass.SOFTMAX)


@dataclass(frozen=True, slots=True)
class SmLimits:
    """The per-SM (per-CU) limits a tiling needs: a hashable view of ``GpuCompute``."""

    sms: int
    max_blocks: int
    smem_bytes: int
    max_threads: int
    registers: int
    warp: int
    lanes_per_scheduler: int
    simt_tiles: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, gpu: GpuCompute) -> SmLimits:
        tiles = tuple((t.tm, t.tn, t.threads) for t in gpu.simt_gemm_tiles) or DEFAULT_SIMT_TILES
        return cls(gpu.sms, gpu.max_blocks_per_sm, gpu.shared_mem_per_sm_bytes, gpu.max_threads_per_sm,
                   gpu.registers_per_sm, gpu.warp_size, gpu.lanes_per_scheduler, tiles)


@dataclass(frozen=True, slots=True)
class GemmTiling:
    tm: int
    tn: int
    split_k: int
    blocks: int
    resident: int  # blocks resident per SM
    waves: int  # ceil(blocks / (SMs x resident))
    quantization: float
    fill: float
    pipeline: float
    in_flight: float  # tensor cores: min(1, outputs in flight per busy SM / FULL_RATE_TILE_AREA);
    # SIMT: min(1, warps per busy SM / schedulers)
    issue: float = 1.0  # SIMT only: share of FP32-pipe cycles the inner loop keeps busy
    threads: int = 0
    smem: float = 1.0  # SIMT only: shared-memory bandwidth / operand demand of the FFMAs, capped at 1

    @property
    def efficiency(self) -> float:
        # instruction issue and shared-memory bandwidth are separate resources working at once:
        # the inner loop runs at the slower of the two, not their product
        return self.quantization * self.fill * self.pipeline * self.in_flight * min(self.issue, self.smem)


def resident_blocks(sm: SmLimits | GpuCompute, tm: int, tn: int, threads: int | None = None,
                    smem: int | None = None) -> int:
    """Blocks of a ``tm x tn`` GEMM tile that fit on one SM at once (smem, threads, registers)."""
    sm = sm if isinstance(sm, SmLimits) else SmLimits.of(sm)
    threads = threads or (256 if tm * tn >= 128 * 128 else 128)
    smem = smem or (tm + tn) * K_STEP_BYTES * STAGES  # A and B stages: 128x128 -> 256*128*4 = 131072 B
    regs = threads * (tm * tn // threads + REG_OVERHEAD)  # fp32 accumulators + overhead
    limits = (sm.max_blocks, sm.smem_bytes // smem, sm.max_threads // threads, sm.registers // regs)
    return max(1, min(limits))


def _edges(dim: int) -> tuple[int, ...]:
    """Tile edges worth trying for a dimension: none much larger than the dimension itself."""
    cap = max(TILE_EDGES[-1], 1 << max(0, math.ceil(math.log2(max(dim, 1)))))
    return tuple(e for e in TILE_EDGES if e <= cap) or (TILE_EDGES[-1],)


def simt_issue(outputs_per_thread: int, warp: int, lanes: int) -> float:
    """Share of FP32-pipe cycles an SGEMM inner loop keeps busy (see the module docstring).

    >>> simt_issue(64, 32, 16)        # 8x8 per thread, Volta..Hopper: FFMAs take 2 issue cycles
    1.0
    >>> round(simt_issue(64, 32, 32), 4)  # Pascal / Ada: 64 / (64 + 2*8/4 + 2)
    0.9143
    """
    t = outputs_per_thread
    ffma = t * warp / lanes
    loads = 2 * math.sqrt(t) / 4
    return ffma / max(ffma, t + loads + SIMT_LOOP_INSTR)


def simt_smem(outputs_per_thread: int, lanes_per_sm: int) -> float:
    """Share of the FFMA rate shared memory can feed (see the module docstring).

    >>> simt_smem(64, 64), round(simt_smem(8, 64), 3), simt_smem(16, 128)
    (1.0, 0.707, 0.5)
    """
    ffma_clk = 32 * outputs_per_thread / lanes_per_sm  # one warp's FFMAs per K element
    lds_clk = 2 * math.sqrt(outputs_per_thread) * 4 * 32 / SMEM_BYTES_PER_CLK  # its operand loads
    return min(1.0, ffma_clk / lds_clk)


def wave_pipeline(per_sm: int, tile_flops: float, out_bytes: int, rates: tuple[float, float],
                  in_flight: float = 1.0, issue: float = 1.0) -> float:
    """Share of a wave spent in the K loop: ``main / (main + DRAM_LATENCY_S + epilogue)``, with
    ``rates = (FLOP/s, DRAM bytes/s)`` of one SM (chip peak and bandwidth / SMs).

    >>> # 4 blocks of 128x64, K = 64, fp32 on a V100 SM (14 TFLOPS, 900 GB/s x 0.85 over 80 SMs)
    >>> main = 4 * 2 * 128 * 64 * 64 / (14e12 / 80)         # 24.0 us of FFMA
    >>> out = 4 * 128 * 64 * 4 / (900e9 * 0.85 / 80)         # 13.7 us writing the tiles
    >>> p = wave_pipeline(4, 2 * 128 * 64 * 64, 128 * 64 * 4, (14e12 / 80, 900e9 * 0.85 / 80))
    >>> round(p, 3), round(main / (main + 0.6e-6 + out), 3)
    (0.626, 0.626)
    """
    flops_s, bytes_s = rates
    main = per_sm * tile_flops / (flops_s * in_flight * issue)
    epilogue = per_sm * out_bytes / bytes_s
    return main / (main + DRAM_LATENCY_S + epilogue)


def _candidate(m: int, n: int, k: int, batch: int, sm: SmLimits, tm: int, tn: int, k_step: int,
               simt: tuple[int, int] | None, rates: tuple[float, float], elem: int) -> GemmTiling:
    tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
    k_iters = math.ceil(k / k_step)
    split = 1
    while tiles * split * 2 <= sm.sms and k_iters // (split * 2) >= MIN_K_ITERS_PER_SPLIT:
        split *= 2
    blocks = tiles * split
    it = math.ceil(k_iters / split)
    if simt is None:
        r = resident_blocks(sm, tm, tn)
        per_sm = min(r, math.ceil(blocks / sm.sms))  # blocks co-resident on a busy SM
        in_flight, issue, threads, smem = min(1.0, per_sm * tm * tn / FULL_RATE_TILE_AREA), 1.0, 0, 1.0
    else:
        threads, _ = simt
        r = resident_blocks(sm, tm, tn, threads, (tm + tn) * SIMT_K_STEP * elem * SIMT_STAGES)
        per_sm = min(r, math.ceil(blocks / sm.sms))
        in_flight = min(1.0, per_sm * threads / sm.warp / SCHEDULERS_PER_SM)
        issue = simt_issue(tm * tn // threads, sm.warp, sm.lanes_per_scheduler)
        smem = simt_smem(tm * tn // threads, sm.lanes_per_scheduler * SCHEDULERS_PER_SM)
    per_sm = max(1, per_sm)
    # the epilogue writes the output tile at the operand width (fp8 GEMMs that write bf16 are
    # counted at 1 byte: not modelled), split-K partial sums in fp32
    out_bytes = tm * tn * (4 if split > 1 else elem)
    pipeline = wave_pipeline(per_sm, 2.0 * tm * tn * it * k_step, out_bytes, rates, in_flight, min(issue, smem))
    return GemmTiling(
        tm=tm, tn=tn, split_k=split, blocks=blocks, resident=r,
        waves=math.ceil(blocks / (sm.sms * r)),
        quantization=blocks / (sm.sms * math.ceil(blocks / sm.sms)),
        fill=(m * n) / (math.ceil(m / tm) * tm * math.ceil(n / tn) * tn),
        pipeline=pipeline, in_flight=in_flight, issue=issue, threads=threads, smem=smem,
    )


@lru_cache(maxsize=8192)  # repeated layers share shapes; SmLimits is frozen (hashable)
def _best_tiling(m: int, n: int, k: int, batch: int, sm: SmLimits, elem_bytes: int, simt: bool,
                 rates: tuple[float, float]) -> GemmTiling:
    best: GemmTiling | None = None
    if simt:
        cands = [(tm, tn, (th, elem_bytes)) for tm, tn, th in sm.simt_tiles]
        k_step = SIMT_K_STEP
    else:
        cands = [(tm, tn, None) for tm in _edges(m) for tn in _edges(n)]
        k_step = max(1, K_STEP_BYTES // elem_bytes)
    for tm, tn, extra in cands:
        cand = _candidate(m, n, k, batch, sm, tm, tn, k_step, extra, rates, elem_bytes)
        key = (round(cand.efficiency, 12), tm * tn, -cand.split_k)
        if best is None or key > (round(best.efficiency, 12), best.tm * best.tn, -best.split_k):
            best = cand
    assert best is not None
    return best


def gemm_tiling(m: int, n: int, k: int, batch: int, gpu: GpuCompute | SmLimits, elem_bytes: int,
                simt: bool = False, *, rates: tuple[float, float]) -> GemmTiling:
    """The best tiling of an ``m x n x k`` GEMM (``batch`` independent ones): CUTLASS-like
    tensor-core tiles, or (``simt=True``) the profile's CUDA-core SGEMM tiles. ``rates``: one
    SM's (FLOP/s, DRAM bytes/s) for the wave pipeline (:func:`wave_pipeline`)."""
    sm = gpu if isinstance(gpu, SmLimits) else SmLimits.of(gpu)
    return _best_tiling(m, n, k, batch, sm, elem_bytes, simt, rates)


def sm_rates(dev: Device, peak: float) -> tuple[float, float]:
    """One SM's share of ``peak`` FLOP/s and of the achievable DRAM bandwidth."""
    gpu = dev.profile.gpu
    assert gpu is not None
    return peak / gpu.sms, dev.dram.bandwidth / gpu.sms


def _gemm(work: Work, dev: Device, gpu: GpuCompute) -> Placement:
    p = work.parallelism
    eng = dev.engine(work.op_class is OpClass.CONV)
    elem = dev.precision.bytes_per_element
    t = gemm_tiling(p.gemm_m, p.gemm_n, p.gemm_k, p.gemm_batch, gpu, elem, simt=not eng.uses_tensor_cores,
                    rates=sm_rates(dev, eng.peak))
    active = min(gpu.sms, t.blocks)
    busy = active / gpu.sms
    # bytes in flight: every resident block keeps its next pipeline stage(s) of A and B loading
    resident = min(t.blocks, gpu.sms * t.resident)
    if eng.uses_tensor_cores:
        share = _little(resident * (STAGES - 1) * (t.tm + t.tn) * K_STEP_BYTES, dev)
    else:
        share = _little(resident * (SIMT_STAGES - 1) * (t.tm + t.tn) * SIMT_K_STEP * elem, dev)
    engine = f"{'matrix' if gpu.vendor.value == 'amd' else 'tensor'} cores" if eng.uses_tensor_cores else "CUDA cores"
    if eng.precision is not dev.precision:
        engine += f" ({eng.precision.value})"
    split = f", split-K {t.split_k}" if t.split_k > 1 else ""
    unit = gpu.unit_name
    detail = (
        f"{active}/{gpu.sms} {unit}s: {t.blocks} blocks of {t.tm}x{t.tn}{split}, {t.waves} wave(s); "
        f"quantization {t.quantization:.0%} x tile fill {t.fill:.0%} x pipeline {t.pipeline:.0%}"
        + (f" x in flight {t.in_flight:.0%}" if t.in_flight < 1 else "")
        + (f" x issue {t.issue:.0%}" if t.issue < 1 and t.issue <= t.smem else "")
        + (f" x shared memory {t.smem:.0%}" if t.smem < 1 and t.smem < t.issue else "")
        + f" -> {t.efficiency:.1%} of {engine} peak"
    )
    # split-K partial sums: each split writes an fp32 M x N tile and the reduction reads it back
    workspace = 0 if t.split_k == 1 else 2 * t.split_k * p.gemm_m * p.gemm_n * p.gemm_batch * 4
    return Placement(
        unit=unit, units_allocated=active, units_total=gpu.sms, utilization=t.efficiency,
        tensor_rate=eng.peak * t.efficiency, vector_rate=dev.vector_peak * busy,
        mem_share=share, detail=detail, workspace_bytes=workspace,
        factors={"quantization": t.quantization, "fill": t.fill, "pipeline": t.pipeline, "in_flight": t.in_flight,
                 "issue": t.issue, "smem": t.smem, "waves": t.waves, "blocks": t.blocks, "tm": t.tm, "tn": t.tn,
                 "split_k": t.split_k},
    )


def _vector(work: Work, dev: Device, gpu: GpuCompute) -> Placement:
    p = work.parallelism
    elements = p.output_elements * (max(1, p.reduction) if work.op_class in _REDUCING or work.tensor_flops else 1)
    per_thread = max(1, VECTOR_LOAD_BYTES // dev.precision.bytes_per_element)  # elements per 128-bit load
    per_block = ELEM_THREADS * per_thread
    blocks = max(1, math.ceil(elements / per_block))
    r = max(1, min(gpu.max_blocks_per_sm, gpu.max_threads_per_sm // ELEM_THREADS))
    active = min(gpu.sms, blocks)
    waves = math.ceil(blocks / (gpu.sms * r))
    quantization = blocks / (gpu.sms * math.ceil(blocks / gpu.sms))
    occupancy = min(1.0, blocks * ELEM_THREADS / (gpu.sms * gpu.max_threads_per_sm))
    threads = min(blocks, gpu.sms * r) * ELEM_THREADS
    share = _little(threads * VECTOR_LOAD_BYTES, dev)  # one 128-bit load in flight per thread
    unit = gpu.unit_name
    detail = (
        f"{active}/{gpu.sms} {unit}s: {blocks} blocks of {ELEM_THREADS}x{per_thread} elements, "
        f"{waves} wave(s), {occupancy:.1%} thread occupancy; "
        + ("SIMD units" if gpu.vendor.value == "amd" else "CUDA cores")
    )
    rate = dev.vector_peak * quantization
    return Placement(
        unit=unit, units_allocated=active, units_total=gpu.sms, utilization=quantization,
        tensor_rate=rate, vector_rate=rate, mem_share=share, detail=detail,
        factors={"quantization": quantization, "occupancy": occupancy, "waves": waves, "blocks": blocks},
    )


def place(work: Work, dev: Device) -> Placement:
    """Map one subgraph onto a GPU."""
    gpu = dev.profile.gpu
    assert gpu is not None
    # attention.py imports this module, so it is imported here, not at the top
    from dnnmap.mapping.attention import place_flash

    if (flash := place_flash(work, dev, gpu)) is not None:  # SDPA / flash with geometry: FA2 tiling
        return flash
    return _gemm(work, dev, gpu) if work.gemm_like else _vector(work, dev, gpu)
