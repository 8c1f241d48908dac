"""GPU mapper: tile the subgraph's output into thread blocks and spread them over the SMs.

GEMM / conv (implicit GEMM) subgraphs are tiled like a CUTLASS / cuBLAS kernel: output tiles
of ``tm x tn`` (128 x 128, or smaller when M or N is small), a ``STAGES``-deep shared-memory
pipeline of ``K_STEP_BYTES`` of K per stage, and split-K when the tiles alone cannot fill the
SMs. The library picks the candidate with the best efficiency (ties: the larger tile):

- SM-time quantization ``q = blocks / (SMs x ceil(blocks / SMs))``: the last wave leaves SMs
  idle (an SM's tensor cores are shared by its resident blocks, so the tail is counted per SM);
- tile fill ``pad = M*N / (ceil(M/tm)*tm * ceil(N/tn)*tn)``: padded rows / columns are wasted;
- pipeline ``pipe = k_iters / (k_iters + 2)``: one K step to fill the pipeline, one to drain
  the epilogue;
- in flight ``min(1, resident tiles x tm x tn / 128^2)``: an SM's MMA pipelines need about a
  128 x 128 output tile in flight to run at full rate, so tiny tiles cannot fill them.

Tensor cores run the GEMM only for eligible precisions (tf32 / bf16 / fp16 / fp8 / int8; the
device decides, see :mod:`dnnmap.mapping.device`); at fp32 the same tiling runs on the CUDA
cores. Everything else (elementwise, reductions, depthwise convs) runs on the CUDA cores in
blocks of ``ELEM_THREADS`` threads x ``ELEMS_PER_THREAD`` elements.

Bandwidth share (Little's law): a kernel draws ``min(1, bytes in flight / (bandwidth x
DRAM_LATENCY_S))`` of a chip-wide bandwidth. A GEMM block keeps ``STAGES - 1`` pipeline stages
of ``(tm + tn) x K_STEP_BYTES`` in flight; an elementwise thread keeps its
``ELEMS_PER_THREAD`` loads in flight. Split-K partial sums live in L2.

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
from dnnmap.mapping.workload import Work

TILE_EDGES = (128, 64, 32, 16)  # candidate tile edges for M and N
K_STEP_BYTES = 128  # bytes of K per pipeline stage: 64 fp16/bf16, 32 fp32/tf32, 128 int8 elements
STAGES = 4  # shared-memory pipeline depth (CUTLASS sm80 / sm90 kernels use 3-7)
MIN_K_ITERS_PER_SPLIT = 4  # split-K only while each split keeps >= 4 K steps
ELEM_THREADS = 256  # threads per block of an elementwise / reduction kernel
ELEMS_PER_THREAD = 4  # vectorized (128-bit fp32) loads per thread
REG_OVERHEAD = 40  # registers per thread beyond the fp32 accumulators (addresses, fragments)
# Load-to-use latency of a DRAM / HBM access under load (Jia et al., "Dissecting the NVIDIA
# Volta / Turing GPU architecture via microbenchmarking", 2018/2019; Luo et al., "Benchmarking
# and dissecting the Nvidia Hopper GPU architecture", 2024: ~450-750 cycles at 1-2 GHz).
# estimated; a calibrated profile replaces the whole bandwidth term by measured tables.
DRAM_LATENCY_S = 600e-9
FULL_RATE_TILE_AREA = 128 * 128  # outputs in flight per SM for full MMA rate (two 64-row
# Hopper warpgroups x 128 columns; CUTLASS's smallest full-throughput sm80/sm90 tiles)
_REDUCING = (OpClass.REDUCTION, OpClass.NORMALIZATION, OpClass.SOFTMAX)


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
    in_flight: float  # min(1, outputs in flight per busy SM / FULL_RATE_TILE_AREA)

    @property
    def efficiency(self) -> float:
        return self.quantization * self.fill * self.pipeline * self.in_flight


def resident_blocks(gpu: GpuCompute, tm: int, tn: int) -> int:
    """Blocks of a ``tm x tn`` GEMM tile that fit on one SM at once (smem, threads, registers)."""
    threads = 256 if tm * tn >= 128 * 128 else 128
    smem = (tm + tn) * K_STEP_BYTES * STAGES  # A and B stages: 128x128 -> 256*128*4 = 131072 B
    regs = threads * (tm * tn // threads + REG_OVERHEAD)  # fp32 accumulators + overhead
    limits = (
        gpu.max_blocks_per_sm,
        gpu.shared_mem_per_sm_bytes // smem,
        gpu.max_threads_per_sm // threads,
        gpu.registers_per_sm // regs,
    )
    return max(1, min(limits))


def _edges(dim: int) -> tuple[int, ...]:
    """Tile edges worth trying for a dimension: none much larger than the dimension itself."""
    cap = max(TILE_EDGES[-1], 1 << max(0, math.ceil(math.log2(max(dim, 1)))))
    return tuple(e for e in TILE_EDGES if e <= cap) or (TILE_EDGES[-1],)


@lru_cache(maxsize=4096)  # repeated layers share shapes; GpuCompute is frozen (hashable)
def gemm_tiling(m: int, n: int, k: int, batch: int, gpu: GpuCompute, elem_bytes: int) -> GemmTiling:
    """The best CUTLASS-like tiling of an ``m x n x k`` GEMM (``batch`` independent ones)."""
    sms = gpu.sms
    k_step = max(1, K_STEP_BYTES // elem_bytes)
    best: GemmTiling | None = None
    for tm in _edges(m):
        for tn in _edges(n):
            tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
            k_iters = math.ceil(k / k_step)
            split = 1
            while tiles * split * 2 <= sms and k_iters // (split * 2) >= MIN_K_ITERS_PER_SPLIT:
                split *= 2
            blocks = tiles * split
            r = resident_blocks(gpu, tm, tn)
            it = math.ceil(k_iters / split)
            per_sm = min(r, math.ceil(blocks / sms))  # blocks co-resident on a busy SM
            cand = GemmTiling(
                tm=tm, tn=tn, split_k=split, blocks=blocks, resident=r,
                waves=math.ceil(blocks / (sms * r)),
                quantization=blocks / (sms * math.ceil(blocks / sms)),
                fill=(m * n) / (math.ceil(m / tm) * tm * math.ceil(n / tn) * tn),
                pipeline=it / (it + 2),
                in_flight=min(1.0, per_sm * tm * tn / FULL_RATE_TILE_AREA),
            )
            key = (round(cand.efficiency, 12), tm * tn, -split)
            if best is None or key > (round(best.efficiency, 12), best.tm * best.tn, -best.split_k):
                best = cand
    assert best is not None
    return best


def _gemm(work: Work, dev: Device, gpu: GpuCompute) -> Placement:
    p = work.parallelism
    t = gemm_tiling(p.gemm_m, p.gemm_n, p.gemm_k, p.gemm_batch, gpu, dev.precision.bytes_per_element)
    active = min(gpu.sms, t.blocks)
    busy = active / gpu.sms
    # bytes in flight: every resident block keeps STAGES - 1 stages of A and B tiles loading
    resident = min(t.blocks, gpu.sms * t.resident)
    share = _little(resident * (STAGES - 1) * (t.tm + t.tn) * K_STEP_BYTES, dev)
    engine = "tensor cores" if dev.uses_tensor_cores else "CUDA cores"
    split = f", split-K {t.split_k}" if t.split_k > 1 else ""
    detail = (
        f"{active}/{gpu.sms} SMs: {t.blocks} blocks of {t.tm}x{t.tn}{split}, {t.waves} wave(s); "
        f"quantization {t.quantization:.0%} x tile fill {t.fill:.0%} x pipeline {t.pipeline:.0%}"
        + (f" x in flight {t.in_flight:.0%}" if t.in_flight < 1 else "")
        + f" -> {t.efficiency:.1%} of {engine} peak"
    )
    # split-K partial sums: each split writes an fp32 M x N tile and the reduction reads it back
    workspace = 0 if t.split_k == 1 else 2 * t.split_k * p.gemm_m * p.gemm_n * p.gemm_batch * 4
    return Placement(
        unit="SM", units_allocated=active, units_total=gpu.sms, utilization=t.efficiency,
        tensor_rate=dev.tensor_peak * t.efficiency, vector_rate=dev.vector_peak * busy,
        mem_share=share, detail=detail, workspace_bytes=workspace,
        factors={"quantization": t.quantization, "fill": t.fill, "pipeline": t.pipeline, "in_flight": t.in_flight,
                 "waves": t.waves, "blocks": t.blocks, "tm": t.tm, "tn": t.tn, "split_k": t.split_k},
    )


def _vector(work: Work, dev: Device, gpu: GpuCompute) -> Placement:
    p = work.parallelism
    elements = p.output_elements * (max(1, p.reduction) if work.op_class in _REDUCING or work.tensor_flops else 1)
    per_block = ELEM_THREADS * ELEMS_PER_THREAD
    blocks = max(1, math.ceil(elements / per_block))
    r = max(1, min(gpu.max_blocks_per_sm, gpu.max_threads_per_sm // ELEM_THREADS))
    active = min(gpu.sms, blocks)
    waves = math.ceil(blocks / (gpu.sms * r))
    quantization = blocks / (gpu.sms * math.ceil(blocks / gpu.sms))
    occupancy = min(1.0, blocks * ELEM_THREADS / (gpu.sms * gpu.max_threads_per_sm))
    threads = min(blocks, gpu.sms * r) * ELEM_THREADS
    share = _little(threads * ELEMS_PER_THREAD * dev.precision.bytes_per_element, dev)
    detail = (
        f"{active}/{gpu.sms} SMs: {blocks} blocks of {ELEM_THREADS}x{ELEMS_PER_THREAD} elements, "
        f"{waves} wave(s), {occupancy:.1%} thread occupancy; CUDA cores"
    )
    rate = dev.vector_peak * quantization
    return Placement(
        unit="SM", units_allocated=active, units_total=gpu.sms, utilization=quantization,
        tensor_rate=rate, vector_rate=rate, mem_share=share, detail=detail,
        factors={"quantization": quantization, "occupancy": occupancy, "waves": waves, "blocks": blocks},
    )


def _little(bytes_in_flight: float, dev: Device) -> float:
    """Share of main-memory bandwidth sustained with ``bytes_in_flight`` outstanding (Little's law)."""
    return max(1e-6, min(1.0, bytes_in_flight / (dev.dram.bandwidth * DRAM_LATENCY_S)))


def place(work: Work, dev: Device) -> Placement:
    """Map one subgraph onto a GPU."""
    gpu = dev.profile.gpu
    assert gpu is not None
    return _gemm(work, dev, gpu) if work.gemm_like else _vector(work, dev, gpu)
