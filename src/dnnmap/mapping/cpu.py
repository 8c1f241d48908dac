"""CPU mapper: cores x SIMD lanes x FMA pipes, threading from the amount of parallel work.

- GEMM / conv (implicit GEMM) subgraphs run a BLAS-style register-blocked micro-kernel of
  ``MR`` rows x ``NR_VECTORS`` SIMD vectors (AVX2 sgemm: 6 x 16 fp32). Rows / columns that
  do not fill a micro-tile are wasted (``fill``). Threads split the output into
  ``THREAD_BLOCK x THREAD_BLOCK`` blocks; ``threading = blocks / (cores x ceil(blocks / cores))``.
- Everything else follows ATen's ``at::parallel_for``: work below ``GRAIN`` elements per
  chunk is not split, so an op of ``n`` elements uses ``min(cores, ceil(n / GRAIN))``
  threads. Depthwise convolutions vectorize over channels (lanes fill ``C / ceil(C/L)/L``).
- Calibrated profiles replace the ideal thread scaling by the measured speed-up table.
- Memory: the cache level the working set fits in (per-core levels count the cores in use)
  serves it — decided by the engine from the placement's cores.

Hybrid CPUs: threads take the fastest cores first (the OS places them on performance
cores), and work is split evenly (static OpenMP / ``at::parallel_for`` chunks), so a kernel
on ``u`` cores runs at ``u x (slowest used core's rate)``: with all 8 P + 4 E cores of an
i7-12700K busy, ``12 x 60.8 / 1497.6 = 49 %`` of the summed peak. A core's rate is
``SIMD lanes x FMA pipes x 2 x boost clock`` of its group, relative to the profile's peak.

>>> GRAIN, 6 * 16   # ATen GRAIN_SIZE (aten/src/ATen/Parallel.h); AVX2 sgemm micro-tile
(32768, 96)
"""

from __future__ import annotations

import math

from dnnmap.hardware.interp import interpolate
from dnnmap.hardware.schema import CpuCompute
from dnnmap.ir import OpClass
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement
from dnnmap.mapping.workload import Work

GRAIN = 32768  # at::internal::GRAIN_SIZE: elements per parallel chunk in ATen CPU kernels
MR = 6  # micro-kernel rows (AVX2 / AVX-512 sgemm kernels use 6 x 2 or 14 x 2 vectors)
NR_VECTORS = 2  # micro-kernel width in SIMD vectors
THREAD_BLOCK = 64  # rows / columns of output per thread task
_REDUCING = (OpClass.REDUCTION, OpClass.NORMALIZATION, OpClass.SOFTMAX)


def lanes(cpu: CpuCompute, elem_bytes: int) -> int:
    """SIMD lanes at this element size: 256-bit AVX2 -> 8 fp32, 16 bf16, 32 int8."""
    return max(1, cpu.performance.simd_width_bits // (8 * elem_bytes))


def _measured(dev: Device) -> str:
    cal = dev.calibration
    return " (measured thread scaling)" if cal is not None and cal.thread_scaling else ""


def _thread_efficiency(dev: Device, threads: int) -> float:
    """Measured speed-up / threads when calibrated, else 1 (ideal scaling)."""
    cal = dev.calibration
    if cal is None or not cal.thread_scaling or threads <= 1:
        return 1.0
    pts = [(float(p.threads), p.speedup / p.threads) for p in cal.thread_scaling]
    return min(1.0, interpolate(pts, float(threads)))


def core_rates(cpu: CpuCompute, boost_mhz: float) -> list[float]:
    """Relative fp32 rate of every core, fastest first (FLOP per cycle x clock)."""
    rates = []
    for g in cpu.core_groups:
        rates += [g.fp32_flops_per_cycle() * (g.boost_mhz or boost_mhz)] * g.count
    return sorted(rates, reverse=True)


def core_share(dev: Device, cpu: CpuCompute, used: int) -> float:
    """Share of the CPU's peak that ``used`` equally loaded threads reach (slowest core sets
    the pace): ``used / cores`` on a CPU of identical cores."""
    rates = core_rates(cpu, dev.profile.clocks.boost_mhz)
    return used * rates[used - 1] / sum(rates)


def _gemm(work: Work, dev: Device, cpu: CpuCompute) -> Placement:
    p = work.parallelism
    m, n, b = p.gemm_m, p.gemm_n, p.gemm_batch
    lane = lanes(cpu, dev.precision.bytes_per_element)
    nr = NR_VECTORS * lane
    fill = (m * n) / (math.ceil(m / MR) * MR * math.ceil(n / nr) * nr)
    blocks = math.ceil(m / THREAD_BLOCK) * math.ceil(n / THREAD_BLOCK) * b
    cores = cpu.cores
    used = min(cores, blocks)
    # blocks dealt evenly to the used cores; the slowest used core sets the pace
    threading = blocks / (used * math.ceil(blocks / used)) * core_share(dev, cpu, used) * _thread_efficiency(dev, used)
    eff = fill * threading
    detail = (
        f"{used}/{cores} cores: {blocks} blocks of {THREAD_BLOCK}x{THREAD_BLOCK}, "
        f"threading {threading:.0%}{_measured(dev)} x micro-tile {MR}x{nr} fill {fill:.0%} -> {eff:.0%} of SIMD peak"
    )
    return Placement(
        unit="core", units_allocated=used, units_total=cores, utilization=eff,
        tensor_rate=dev.tensor_peak * eff, vector_rate=dev.vector_peak * threading,
        mem_share=used / cores, detail=detail,
        factors={"fill": fill, "threading": threading, "blocks": blocks},
    )


def _vector(work: Work, dev: Device, cpu: CpuCompute) -> Placement:
    p = work.parallelism
    reduce = work.op_class in _REDUCING or work.tensor_flops > 0
    elements = p.output_elements * (max(1, p.reduction) if reduce else 1)
    cores = cpu.cores
    used = max(1, min(cores, math.ceil(elements / GRAIN)))
    threading = core_share(dev, cpu, used) * _thread_efficiency(dev, used)
    fill = 1.0
    if p.depthwise and p.channels > 1:  # vectorized over channels
        lane = lanes(cpu, dev.precision.bytes_per_element)
        fill = p.channels / (math.ceil(p.channels / lane) * lane)
    eff = threading * fill
    detail = (
        f"{used}/{cores} cores: {elements:,} elements in chunks of >= {GRAIN:,}{_measured(dev)}"
        + (f", SIMD lane fill {fill:.0%}" if fill < 1 else "")
        + f" -> {eff:.0%} of vector peak"
    )
    return Placement(
        unit="core", units_allocated=used, units_total=cores, utilization=eff,
        tensor_rate=dev.vector_peak * eff, vector_rate=dev.vector_peak * eff,
        mem_share=used / cores, detail=detail, factors={"threading": threading, "fill": fill},
    )


def place(work: Work, dev: Device) -> Placement:
    """Map one subgraph onto a CPU."""
    cpu = dev.profile.cpu
    assert cpu is not None
    return _gemm(work, dev, cpu) if work.gemm_like else _vector(work, dev, cpu)
