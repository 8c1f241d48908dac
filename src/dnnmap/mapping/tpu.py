"""TPU mapper: matmuls on weight-stationary systolic MXUs, everything else on the vector unit.

A GEMM ``M x K @ K x N`` (``batch`` of them) loads ``K x N`` weights into the MXUs in
``rows x cols`` blocks (128 x 128) and streams the ``M`` rows of activations through:

- padding ``pad = K*N / (ceil(K/rows)*rows * ceil(N/cols)*cols)``: a 64-channel layer uses a
  quarter of a 128 x 128 array;
- MXUs used ``min(MXUs, blocks)`` and quantization ``blocks / (MXUs x ceil(blocks / MXUs))``;
- streaming ``M / (M + rows)``: each weight block costs one array depth of fill / drain
  (weight loads are double-buffered behind the previous block), so batch-1 fully connected
  layers (``M = 1``) leave the array almost idle.

Vector work runs on the VPU, whose registers are 8 x 128 lanes laid over the minor (channel)
dimension: lane fill ``C / (ceil(C/128)*128)``. Data reach the units by DMA, independent of how
many MXUs compute, so the memory share is 1.

>>> round(64 * 64 / (128 * 128), 4)   # a 64 -> 64 channel 1x1 conv fills a quarter of the array
0.25
"""

from __future__ import annotations

import math

from dnnmap.hardware.schema import TpuCompute
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement
from dnnmap.mapping.workload import Work

VPU_LANES = 128  # lanes of a TPU vector register (8 sublanes x 128 lanes)


def _gemm(work: Work, dev: Device, tpu: TpuCompute) -> Placement:
    p = work.parallelism
    m, n, k, b = p.gemm_m, p.gemm_n, p.gemm_k, p.gemm_batch
    rows, cols = tpu.mxu_rows, tpu.mxu_cols
    kb, nb = math.ceil(k / rows), math.ceil(n / cols)
    blocks = kb * nb * b
    mxus = tpu.mxus
    used = min(mxus, blocks)
    pad = (k * n) / (kb * rows * nb * cols)
    quantization = blocks / (mxus * math.ceil(blocks / mxus))
    stream = m / (m + rows)
    eff = pad * quantization * stream
    detail = (
        f"{used}/{mxus} MXUs: {blocks} weight blocks of {rows}x{cols}; padding {pad:.0%} x "
        f"quantization {quantization:.0%} x streaming (M={m}) {stream:.0%} -> {eff:.0%} of MXU peak"
    )
    return Placement(
        unit="MXU", units_allocated=used, units_total=mxus, utilization=eff,
        tensor_rate=dev.tensor_peak * eff, vector_rate=dev.vector_peak * _lane_fill(work),
        mem_share=1.0, detail=detail,
        factors={"padding": pad, "quantization": quantization, "streaming": stream, "blocks": blocks},
    )


def _lane_fill(work: Work) -> float:
    c = work.parallelism.channels
    return c / (math.ceil(c / VPU_LANES) * VPU_LANES) if c > 1 else 1.0


def _vector(work: Work, dev: Device, tpu: TpuCompute) -> Placement:
    fill = _lane_fill(work)
    cores = tpu.tensor_cores
    detail = f"VPU of {cores} TensorCore(s): lane fill {fill:.0%} ({work.parallelism.channels} channels on {VPU_LANES} lanes)"
    return Placement(
        unit="TensorCore", units_allocated=cores, units_total=cores, utilization=fill,
        tensor_rate=dev.vector_peak * fill, vector_rate=dev.vector_peak * fill, mem_share=1.0,
        detail=detail, factors={"lane_fill": fill},
    )


def place(work: Work, dev: Device) -> Placement:
    """Map one subgraph onto a TPU."""
    tpu = dev.profile.tpu
    assert tpu is not None
    return _gemm(work, dev, tpu) if work.gemm_like else _vector(work, dev, tpu)
