"""Fused attention on a GPU, tiled as FlashAttention-2 runs it.

PyTorch's SDPA on a GPU with tensor cores at fp16 / bf16 (and TF32 where allowed) dispatches to
the FlashAttention-2 kernel or the memory-efficient (xformers / CUTLASS) kernel; both tile
attention the same way (Dao, "FlashAttention-2: Faster Attention with Better Parallelism and
Work Partitioning", 2023, Algorithm 1 and Sec. 3.2-3.3), so ``sdpa`` and ``flash`` are priced
with the one model below. At a precision without tensor cores (fp32 without TF32: SDPA picks
the math or memory-efficient kernel on the CUDA cores) :func:`place_flash` returns ``None``
and the GPU mapper prices the subgraph as today's GEMM.

**Grid.** One thread block per (batch, query head, block of ``Br`` query rows):
``batch x q_heads x ceil(Sq / Br)`` blocks; each loops over ``ceil(Skv / Bc)`` blocks of
``Bc`` keys (FA2 Sec. 3.2: parallel over batch, heads and sequence length). With GQA a block
reads the K / V head its query head shares; the grid still counts query heads.

**Block sizes** (``Br x Bc``, FA2 Sec. 3.3: "{64, 128} x {64, 128}, depending on the head
dimension d and the device shared memory size") are derived, not tabled: the largest ``Br``
in (128, 64), then the largest ``Bc`` in (128, 64, 32), such that

- shared memory: ``elem x (Br x d + Bc x d + Bc x dv)`` (Q, one K and one V tile; FA2 loads
  V_j during S = Q K_j^T and K_{j+1} during P V_j, so one buffer each: the
  ``2 * Headdim * (128 + 2 * 64)`` test of ``flash_fwd_launch_template.h``) fits in a block's
  opt-in shared memory;
- registers: each of the block's ``FA2_WARPS`` warps keeps its rows of the fp32 S tile
  (``Br x Bc``) and O accumulator (``Br x dv``) in registers, so
  ``(Br x Bc + Br x dv) / threads + REG_OVERHEAD <= MAX_REGS_PER_THREAD``.

This reproduces FA2's launch table on A100 / H100: d = 64 -> 128 x 128, d = 96 / 128 ->
128 x 64, d = 160 -> 128 x 32. Head dims are padded to FA2's compiled sizes (multiples of 32).

**Causal** (``is_causal=True``; a mask tensor is not known to be causal): KV blocks wholly
above the diagonal are skipped (top-left aligned, as PyTorch's ``is_causal``): query block
``i`` (rows ``i*Br .. (i+1)*Br - 1``) runs ``min(nk, ceil((i+1)*Br / Bc))`` KV blocks, so
``Sq = Skv = 1024``, ``Br = Bc = 128`` runs ``1 + 2 + ... + 8 = 36`` of the ``64`` block
pairs, ``(n + 1) / (2n)`` of them. The cost rules count the full square (as FlopCounterMode
does); the executed FLOPs are ``block pairs x (2 Br Bc d + 2 Br Bc dv)`` per (batch, head),
padding and the masked half of the diagonal blocks included.

**Matmul time** = executed FLOPs / (tensor peak x efficiency), the two GEMMs of a step
(``S = Q K^T``: ``Br x Bc x d``; ``O += P V``: ``Br x dv x Bc``) each at
``quantization x pipeline x in flight`` as :mod:`dnnmap.mapping.gpu` tiles a GEMM:

- quantization ``blocks / (SMs x ceil(blocks / SMs))`` (causal blocks differ in length; with
  many blocks per SM the scheduler evens them out, so block counts stand in for work);
- pipeline ``pairs / (pairs + 2 x query blocks)``: per query block one step to load Q and the
  first K tile and one to rescale and write O (gpu.py's ``k_iters / (k_iters + 2)`` summed over
  query blocks of unequal length);
- in flight ``min(1, resident x Br x Bc / FULL_RATE_TILE_AREA)`` for S and ``.. x Br x dv ..``
  for O (gpu.py's notion: an SM needs about a 128 x 128 output tile in flight);
- L2 supply: every block reads the K and V tiles of its head once per step (the re-reads hit
  L2: ``ceil(Sq / Br)`` times K and V per head); the matmuls cannot outrun the L2 bandwidth that
  feeds them, so matmul time = max(MMA time, L2 bytes / L2 bandwidth).

**Softmax time** (online softmax, FA2 Algorithm 1 lines 8-10): per score element one ``exp2``
on the special-function units and ``FP32_OPS_PER_SCORE`` FP32 instructions; per KV step and row
one more ``exp2`` and a ``dv``-wide rescale of O. The SFU and FP32 pipes run in parallel, so a
step's softmax takes the longer of the two. FA2 does not overlap the softmax with the matmuls
of the same warps (FA3, Shah et al. 2024, Sec. 3.1-3.2, overlaps them on Hopper with
warp-specialised ping-pong scheduling; the profiles do not say which kernel a GPU runs, so
FA2 is modelled everywhere): compute = matmul time + softmax time.

**Memory.** DRAM bytes are what the engine already counts for the subgraph: Q, K, V (and a
mask) read once, O written once; the K / V re-reads are the L2 term above.

>>> # causal block pairs, Sq = Skv = 1024, Br = Bc = 128 (module docstring)
>>> causal_pairs(1024, 1024, 128, 128)
36
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dnnmap.costs.rules.attention import AttentionGeometry
from dnnmap.fusion.parallelism import AttentionParallelism
from dnnmap.hardware.schema import GpuCompute, MemoryScope
from dnnmap.ir import OpClass
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement
from dnnmap.mapping.sm_terms import FULL_RATE_TILE_AREA, REG_OVERHEAD
from dnnmap.mapping.sm_terms import little as _little
from dnnmap.mapping.workload import Work

BR_CANDIDATES = (128, 64)  # query rows per block (FA2 Sec. 3.3: {64, 128})
BC_CANDIDATES = (128, 64, 32)  # keys per KV step ({64, 128}, and 32 as FA2 uses for d = 160)
FA2_WARPS = 4  # warps per block: FA2's launch table uses 4 for every d <= 128
# (Dao-AILab/flash-attention csrc/flash_attn/src/flash_fwd_launch_template.h; FA2 Sec. 3.3)
HEAD_DIM_STEP = 32  # FA2 compiles head dims 32, 64, 96, ..., 256 and pads d up to the next
MAX_REGS_PER_THREAD = 255  # CUDA C++ Programming Guide, 'Technical Specifications per Compute
# Capability': 255 32-bit registers per thread (compute capability 5.0 - 9.0)
# Special-function unit throughput: 32-bit exp2 / log2 / reciprocal / sin / cos results per
# clock per SM (CUDA C++ Programming Guide, 'Arithmetic Instructions', throughput table: 16 for
# compute capability 6.0, 7.x, 8.x, 9.0: every GPU with tensor cores). AMD CDNA: transcendentals
# issue at a quarter of the 64-lane SIMD rate (estimated: 16 per clock per CU).
SFU_OPS_PER_CLK_PER_SM = 16
# FP32 instructions per score element in FA2's online softmax (csrc/flash_attn/src/softmax.h):
# the row max (FMNMX), ``x * scale - max * scale`` folded into one FFMA before exp2, and the row
# sum (FADD). (The exp2 itself is on the SFU.)
FP32_OPS_PER_SCORE = 3
DROPOUT_OPS_PER_SCORE = 1  # the keep-mask multiply (Philox random-number generation not modelled)


@dataclass(frozen=True, slots=True)
class FlashTiling:
    """How one attention call runs as a FlashAttention-2 kernel (see the module docstring)."""

    br: int  # query rows per block
    bc: int  # keys per KV step
    d: int  # q.k head dim, padded to the compiled size
    dv: int  # v head dim, padded
    q_blocks: int  # ceil(Sq / Br)
    kv_blocks: int  # ceil(Skv / Bc)
    pairs: int  # (query block, KV block) steps executed per (batch, head)
    blocks: int  # thread blocks: batch x q_heads x q_blocks
    resident: int  # blocks resident per SM
    waves: int
    smem_bytes: int  # per block
    regs_per_thread: int

    @property
    def full_pairs(self) -> int:
        return self.q_blocks * self.kv_blocks

    @property
    def executed_ratio(self) -> float:
        """Block pairs executed / all block pairs: 1, or about (n + 1) / (2n) when causal."""
        return self.pairs / self.full_pairs


def causal_pairs(sq: int, skv: int, br: int, bc: int) -> int:
    """KV blocks run by all query blocks of one head when blocks above the diagonal are skipped
    (top-left aligned: query row ``r`` sees keys ``0..r``)."""
    nk = math.ceil(skv / bc)
    total = 0
    for i in range(math.ceil(sq / br)):
        last_row = min(sq, (i + 1) * br) - 1
        total += min(nk, math.ceil((last_row + 1) / bc))
    return total


def _pad(d: int) -> int:
    return HEAD_DIM_STEP * math.ceil(d / HEAD_DIM_STEP)


def block_sizes(d: int, dv: int, elem_bytes: int, smem_per_block: int, warp: int) -> tuple[int, int, int, int]:
    """(Br, Bc, shared memory bytes, registers per thread) of the largest tile that fits."""
    threads = FA2_WARPS * warp
    tiles = [(br, bc) for br in BR_CANDIDATES for bc in BC_CANDIDATES]
    for br, bc in tiles:
        smem = elem_bytes * (br * d + bc * d + bc * dv)
        regs = math.ceil((br * bc + br * dv) / threads) + REG_OVERHEAD
        if smem <= smem_per_block and regs <= MAX_REGS_PER_THREAD:
            return br, bc, smem, regs
    br, bc = tiles[-1]  # nothing fits (d far beyond 256): the smallest tile, spilling registers
    return br, bc, elem_bytes * (br * d + bc * d + bc * dv), math.ceil((br * bc + br * dv) / threads) + REG_OVERHEAD


def flash_tiling(geom: AttentionGeometry, gpu: GpuCompute, elem_bytes: int) -> FlashTiling:
    """Block sizes, grid and residency of ``geom`` on ``gpu``."""
    d, dv = _pad(geom.head_dim), _pad(geom.v_head_dim)
    br, bc, smem, regs = block_sizes(d, dv, elem_bytes, gpu.shared_mem_per_block_bytes, gpu.warp_size)
    nq, nk = math.ceil(geom.q_len / br), math.ceil(geom.kv_len / bc)
    pairs = causal_pairs(geom.q_len, geom.kv_len, br, bc) if geom.causal else nq * nk
    blocks = geom.batch * geom.q_heads * nq
    threads = FA2_WARPS * gpu.warp_size
    resident = max(1, min(gpu.max_blocks_per_sm, gpu.shared_mem_per_sm_bytes // smem,
                          gpu.max_threads_per_sm // threads, gpu.registers_per_sm // (threads * regs)))
    return FlashTiling(br=br, bc=bc, d=d, dv=dv, q_blocks=nq, kv_blocks=nk, pairs=pairs, blocks=blocks,
                       resident=resident, waves=math.ceil(blocks / (gpu.sms * resident)), smem_bytes=smem,
                       regs_per_thread=regs)


def _clock_hz(dev: Device) -> float:
    """The SM clock under load: the profile's boost clock x the device's sustained ratio."""
    return dev.profile.clocks.boost_mhz * 1e6 * dev.clock_ratio


def _l2_bandwidth(dev: Device) -> float | None:
    """Bandwidth of the GPU's last chip-wide cache before DRAM (L2), when the profile has one."""
    chip = [lv for lv in dev.levels[:-1] if lv.scope is MemoryScope.CHIP]
    return chip[-1].bandwidth if chip else None


def geometry(work: Work) -> AttentionGeometry | None:
    """The attention geometry a subgraph carries (None: not an attention subgraph, or unknown)."""
    p = work.parallelism
    if work.op_class is not OpClass.ATTENTION or not isinstance(p, AttentionParallelism):
        return None
    g = p.attention
    if g is None or min(g.batch, g.q_heads, g.q_len, g.kv_len, g.head_dim, g.v_head_dim) <= 0:
        return None
    return g


def place_flash(work: Work, dev: Device, gpu: GpuCompute) -> Placement | None:
    """Map an attention subgraph as a FlashAttention-2 kernel; None when it does not apply
    (no geometry, or no tensor cores at this precision: the GEMM path prices it)."""
    geom = geometry(work)
    eng = dev.engine(False)
    if geom is None or not eng.uses_tensor_cores or work.tensor_flops <= 0:
        return None
    elem = dev.precision.bytes_per_element
    t = flash_tiling(geom, gpu, elem)
    heads = geom.batch * geom.q_heads
    flops_s = heads * t.pairs * 2 * t.br * t.bc * t.d  # S = Q K^T
    flops_o = heads * t.pairs * 2 * t.br * t.bc * t.dv  # O += P V
    executed = flops_s + flops_o

    sms = gpu.sms
    quantization = t.blocks / (sms * math.ceil(t.blocks / sms))
    pipeline = t.pairs / (t.pairs + 2 * t.q_blocks)
    per_sm = min(t.resident, math.ceil(t.blocks / sms))
    in_flight_s = min(1.0, per_sm * t.br * t.bc / FULL_RATE_TILE_AREA)
    in_flight_o = min(1.0, per_sm * t.br * t.dv / FULL_RATE_TILE_AREA)
    mma_s = (flops_s / in_flight_s + flops_o / in_flight_o) / (eng.peak * quantization * pipeline)
    # L2 -> SM traffic: Q once per block, a K and a V tile per step
    l2_bytes = heads * (t.q_blocks * t.br * t.d + t.pairs * t.bc * (t.d + t.dv)) * elem
    l2_bw = _l2_bandwidth(dev)
    l2_s = l2_bytes / l2_bw if l2_bw else 0.0
    matmul_s = max(mma_s, l2_s)
    matmul_eff = executed / (eng.peak * matmul_s)

    # online softmax per step on one SM: SFU and FP32 pipes in parallel, the longer one counts
    exps = t.br * t.bc + t.br  # exp2 per score + the per-row rescale factor exp2(m_old - m_new)
    fp32 = (FP32_OPS_PER_SCORE + (DROPOUT_OPS_PER_SCORE if geom.dropout_p > 0 else 0)) * t.br * t.bc + t.br * t.dv
    sfu_rate = SFU_OPS_PER_CLK_PER_SM  # per clock per SM (AMD: per CU)
    step_cycles = max(exps / sfu_rate, fp32 / gpu.fp32_lanes_per_sm)
    softmax_s = heads * t.pairs * step_cycles / (_clock_hz(dev) * sms * quantization)
    compute_s = matmul_s + softmax_s

    if work.vector_flops > 0:
        tensor_rate, vector_rate = work.tensor_flops / matmul_s, work.vector_flops / softmax_s
    else:  # nothing counted as vector work: the softmax time rides on the tensor term
        tensor_rate, vector_rate = work.tensor_flops / compute_s, dev.vector_peak
    utilization = min(1.0, executed / (eng.peak * compute_s))  # tensor cores busy over the kernel
    active = min(sms, t.blocks)
    share = _little(min(t.blocks, sms * t.resident) * t.bc * (t.d + t.dv) * elem, dev)  # next K, V tiles
    unit = gpu.unit_name
    engine = f"{'matrix' if gpu.vendor.value == 'amd' else 'tensor'} cores"
    if eng.precision is not dev.precision:
        engine += f" ({eng.precision.value})"
    masked = (f"causal: {t.pairs}/{t.full_pairs} KV blocks run ({t.executed_ratio:.0%} of the counted "
              f"square)" if geom.causal else f"{t.pairs} KV blocks")
    detail = (
        f"FlashAttention-2 tiling ({geom.kernel}): {active}/{sms} {unit}s, {t.blocks} blocks "
        f"({geom.batch} batch x {geom.q_heads} heads"
        + (f" [{geom.kv_heads} KV heads]" if geom.kv_heads != geom.q_heads else "")
        + f" x {t.q_blocks} query blocks of {t.br}) x {t.kv_blocks} KV steps of {t.bc}, d={t.d}, "
        f"{t.waves} wave(s); {masked}; matmuls: quantization {quantization:.0%} x pipeline {pipeline:.0%}"
        + (f" x in flight {min(in_flight_s, in_flight_o):.0%}" if min(in_flight_s, in_flight_o) < 1 else "")
        + (f", L2-fed ({l2_s / mma_s:.0%} of MMA time)" if l2_s > mma_s else "")
        + f" -> {matmul_eff:.1%} of {engine} peak; online softmax (exp on SFU, not overlapped) "
        f"{softmax_s / compute_s:.0%} of compute"
    )
    return Placement(
        unit=unit, units_allocated=active, units_total=sms, utilization=utilization,
        tensor_rate=tensor_rate, vector_rate=vector_rate, mem_share=share, detail=detail,
        factors={"quantization": quantization, "pipeline": pipeline, "in_flight": min(in_flight_s, in_flight_o),
                 "matmul_efficiency": matmul_eff, "waves": t.waves, "blocks": t.blocks, "br": t.br, "bc": t.bc,
                 "q_blocks": t.q_blocks, "kv_blocks": t.kv_blocks, "block_pairs": t.pairs,
                 "executed_ratio": t.executed_ratio, "executed_tensor_flops": executed,
                 "matmul_s": matmul_s, "softmax_s": softmax_s, "l2_bytes": l2_bytes, "resident": t.resident},
    )
