"""KPU mapper: tiles of processing-element arrays, each with its own scratchpad.

A GEMM's output is cut into blocks of one PE array (``pe_rows x pe_cols`` outputs, output
stationary); blocks are dealt to tiles:

- tiles allocated ``min(tiles, blocks)``, quantization ``blocks / (tiles x ceil(blocks / tiles))``;
- padding ``M*N / (ceil(M/pr)*pr * ceil(N/pc)*pc)``;
- wavefront ``K / (K + pr + pc)``: operands enter the array skewed, so each block pays the
  array's diagonal in fill / drain cycles.

Vector work is spread over ``ceil(elements / (pr * pc))`` tiles (one element per PE per step).
The subgraph's working set (boundary + internal tensors) must fit the scratchpads of the
tiles it runs on; the excess is spilled to main memory and read back (``2 x excess`` extra
bytes). Data arrive by DMA, so the memory share does not depend on the tiles allocated.

>>> 2 * (300_000 - 256 * 1024)  # 300 kB working set on one 256 KiB tile: spill traffic
75712
"""

from __future__ import annotations

import math

from dnnmap.hardware.schema import KpuCompute
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement
from dnnmap.mapping.workload import Work


def _spill(work: Work, kpu: KpuCompute, tiles: int) -> int:
    excess = work.working_set_bytes - tiles * kpu.scratchpad_per_tile_bytes
    return 2 * excess if excess > 0 else 0


def _gemm(work: Work, dev: Device, kpu: KpuCompute) -> Placement:
    p = work.parallelism
    m, n, k, b = p.gemm_m, p.gemm_n, p.gemm_k, p.gemm_batch
    pr, pc = kpu.pe_rows, kpu.pe_cols
    mb, nb = math.ceil(m / pr), math.ceil(n / pc)
    blocks = mb * nb * b
    used = min(kpu.tiles, blocks)
    quantization = blocks / (kpu.tiles * math.ceil(blocks / kpu.tiles))
    pad = (m * n) / (mb * pr * nb * pc)
    wave = k / (k + pr + pc)
    eff = quantization * pad * wave
    spill = _spill(work, kpu, used)
    detail = (
        f"{used}/{kpu.tiles} tiles: {blocks} blocks of {pr}x{pc}; quantization {quantization:.0%} x "
        f"padding {pad:.0%} x wavefront {wave:.0%} -> {eff:.0%} of PE peak"
        + _spill_text(spill, work, used, kpu)
    )
    return Placement(
        unit="tile", units_allocated=used, units_total=kpu.tiles, utilization=eff,
        tensor_rate=dev.tensor_peak * eff, vector_rate=dev.vector_peak * used / kpu.tiles,
        mem_share=1.0, detail=detail, spill_bytes=spill,
        factors={"quantization": quantization, "padding": pad, "wavefront": wave, "blocks": blocks},
    )


def _spill_text(spill: int, work: Work, used: int, kpu: KpuCompute) -> str:
    cap = used * kpu.scratchpad_per_tile_bytes
    if spill:
        return f"; working set {work.working_set_bytes:,} B > {cap:,} B of scratchpad: spills {spill:,} B"
    return f"; working set fits {used} scratchpad(s)"


def _vector(work: Work, dev: Device, kpu: KpuCompute) -> Placement:
    p = work.parallelism
    per_tile = kpu.pe_rows * kpu.pe_cols
    elements = p.output_elements * max(1, p.reduction)
    used = max(1, min(kpu.tiles, math.ceil(elements / per_tile)))
    eff = used / kpu.tiles
    spill = _spill(work, kpu, used)
    detail = f"{used}/{kpu.tiles} tiles for {elements:,} elements -> {eff:.0%} of vector peak" + _spill_text(
        spill, work, used, kpu
    )
    return Placement(
        unit="tile", units_allocated=used, units_total=kpu.tiles, utilization=eff,
        tensor_rate=dev.vector_peak * eff, vector_rate=dev.vector_peak * eff, mem_share=1.0,
        detail=detail, spill_bytes=spill, factors={"tiles": used},
    )


def place(work: Work, dev: Device) -> Placement:
    """Map one subgraph onto a KPU."""
    kpu = dev.profile.kpu
    assert kpu is not None
    return _gemm(work, dev, kpu) if work.gemm_like else _vector(work, dev, kpu)
