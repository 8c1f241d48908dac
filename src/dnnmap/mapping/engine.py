"""The latency engine: one subgraph's placement -> compute, memory and overhead time.

Every mapper (gpu, cpu, tpu, kpu) answers the same question — which units does this
kernel get and how fast do they run it — as a :class:`Placement`. This module turns any
placement into a :class:`SubgraphEstimate` with the same physically named terms:

- ``compute_s = tensor_flops / tensor_rate + vector_flops / vector_rate`` (the rates are the
  peaks times the utilization the mapper derived; calibrated: measured GEMM/conv throughput
  at this size);
- ``memory_s``: the bytes each memory level serves, at that level's bandwidth (scaled by the
  share of it the allocated units can draw); bytes from a farther level also pass through
  every nearer persistent level that serves this kernel, so
  ``memory_s = max_j (bytes served at j or beyond) / bandwidth_j``; calibrated: bytes over
  the measured bandwidth at this working-set size;
- ``overhead_s``: the kernel launch / dispatch cost; on a GPU only the device-side gap between
  back-to-back kernels (the host's issue cost is a timeline of its own, ``host_s``, scheduled
  in :mod:`dnnmap.mapping.schedule`);
- combined per the device's overlap policy: ``max(compute, memory) + overhead`` or
  ``compute + memory + overhead``;
- power: when the kernel's energy at that latency would need more than ``tdp - idle`` watts
  of dynamic power, the clocks throttle and the latency stretches to ``energy / (tdp - idle)``
  (bound ``power``), so average power never exceeds the TDP.

Where the data lives (documented assumptions, steady-state back-to-back inferences): which
levels keep data from one kernel to the next is decided per device class in
:mod:`dnnmap.mapping.device` (CPU caches do; TPU VMEM and KPU scratchpads are treated as the
running kernel's staging, so between kernels data is in DRAM / HBM; a GPU's L2 serves the
reads :mod:`dnnmap.mapping.residency` finds still resident, and holds the weights when all of
them fit beside the largest activation set).
Activations sit in the smallest persistent level whose capacity (for the units in use) holds
the kernel's activation bytes, else main memory; weights in the smallest chip-wide persistent
level that holds *all* of the model's weights plus the largest activation working set, else
main memory; split-K partial sums in the nearest chip-wide level that holds them. Energy =
FLOPs x pJ/FLOP + bytes x pJ/byte of the level that served them + idle power x latency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dnnmap.hardware.interp import (
    conv_shape_tflops,
    conv_tflops,
    gemm_shape_tflops,
    gemm_tflops,
)
from dnnmap.hardware.schema import ConvKind, DeviceClass, MemoryScope, OverlapPolicy
from dnnmap.ir import OpClass
from dnnmap.mapping import measured as cal_terms
from dnnmap.mapping.device import Device, Level
from dnnmap.mapping.estimate import Bound, FigureSource, MemoryTraffic, SubgraphEstimate
from dnnmap.mapping.workload import Work


@dataclass(frozen=True, slots=True)
class Placement:
    """What a mapper decided for one subgraph."""

    unit: str  # "SM", "core", "MXU", "tile"
    units_allocated: int
    units_total: int
    utilization: float  # (0, 1]: fraction of the peak of the unit doing the main work
    tensor_rate: float  # FLOP/s at which tensor work runs (0 when there is none)
    vector_rate: float  # FLOP/s at which vector work runs
    mem_share: float  # (0, 1]: share of a chip-wide bandwidth these units can draw
    detail: str  # "132 SMs, 8 waves of 128x128 tiles (97 % quantization)"
    spill_bytes: int = 0  # extra main-memory traffic the mapping causes (scratchpad spills)
    workspace_bytes: int = 0  # extra traffic that lives with the activations (split-K partials)
    factors: Mapping[str, float] = field(default_factory=dict)  # named efficiency factors


@dataclass(frozen=True, slots=True)
class Homes:
    """Where data lives for a whole partition on one device (see the module docstring)."""

    weights: Level


def l2_level(device: Device) -> Level | None:
    """A GPU's last chip-wide cache before DRAM (L2; MI300X's Infinity Cache), when the
    profile lets it keep data between kernels."""
    g = device.profile.gpu
    if g is None or not g.l2_residency:
        return None
    chip = [lv for lv in device.levels[:-1] if lv.scope is MemoryScope.CHIP]
    return chip[-1] if chip else None


def weights_home(device: Device, works: tuple[Work, ...]) -> Homes:
    """The smallest persistent level (or GPU L2) holding every weight plus the largest activation set."""
    weights = sum(w.weight_bytes for w in works)
    act = max((w.activation_read_bytes + w.write_bytes for w in works), default=0)
    l2 = l2_level(device)
    for lv in device.levels:
        keeps = lv.persistent or (l2 is not None and lv.index == l2.index)
        if keeps and lv.scope is MemoryScope.CHIP and lv.capacity_bytes >= weights + act:
            return Homes(weights=lv)
    return Homes(weights=device.dram)


def activation_home(device: Device, work: Work, units: int, total: int) -> Level:
    need = work.activation_read_bytes + work.write_bytes
    for lv in device.levels:
        if lv.persistent and lv.capacity_for(units, total) >= need:
            return lv
    return device.dram


def workspace_home(device: Device, nbytes: int) -> Level:
    """Scratch data produced and consumed by one kernel (split-K partials): the nearest
    chip-wide level that holds it."""
    for lv in device.levels:
        if lv.scope is MemoryScope.CHIP and lv.capacity_bytes >= nbytes:
            return lv
    return device.dram


def _bandwidth(lv: Level, p: Placement) -> float:
    """The part of a level's bandwidth this kernel can draw: per-unit levels scale with the
    units in use; chip-wide levels with the mapper's ``mem_share``."""
    if lv.instances > 1:
        return lv.bandwidth * min(1.0, p.units_allocated / p.units_total)
    return lv.bandwidth * p.mem_share


def _traffic(work: Work, p: Placement, device: Device, homes: Homes, l2_hit_bytes: int = 0) -> tuple[MemoryTraffic, ...]:
    """Bytes per serving level and the time each level needs (nearer levels also pass the
    bytes of farther ones)."""
    act = activation_home(device, work, p.units_allocated, p.units_total)
    l2 = l2_level(device)
    hits = min(l2_hit_bytes, work.activation_read_bytes) if l2 is not None and act.index > l2.index else 0
    served: dict[int, int] = {}
    for lv, nbytes in (
        (l2 or act, hits),
        (act, work.activation_read_bytes - hits + work.write_bytes),
        (workspace_home(device, p.workspace_bytes), p.workspace_bytes),
        (homes.weights, work.weight_bytes),
        (device.dram, p.spill_bytes),
    ):
        if nbytes:
            served[lv.index] = served.get(lv.index, 0) + nbytes
    out = []
    for j in sorted(served):
        lv = device.levels[j]
        passing = sum(b for i, b in served.items() if i >= j)
        bw = _bandwidth(lv, p)
        out.append(MemoryTraffic(lv.name, served[j], bw, passing / bw))
    return tuple(out)


def _measured_traffic(work: Work, p: Placement, device: Device, hit_bytes: int = 0) -> tuple[MemoryTraffic, ...] | None:
    """Calibrated: all bytes at the measured streaming bandwidth for this working set, capped
    by the level that holds it (see :func:`dnnmap.mapping.measured.streaming_bandwidth`), less
    the activation reads the last-level cache no longer holds (``hit_bytes`` of them it does),
    which stream from DRAM (:func:`dnnmap.mapping.measured.cold_streaming`); a
    vector kernel whose op kind has an imported table (``op_bandwidth``) at that kind's
    measured bandwidth (:func:`dnnmap.mapping.measured.op_bandwidth`)."""
    cal = device.calibration
    if cal is None or not (cal.bandwidth or cal.op_bandwidth):
        return None
    nbytes = work.external_bytes + p.spill_bytes + p.workspace_bytes
    if nbytes == 0:
        return ()
    # imported op-kind tables: a vector kernel of a measured kind at that kind's bandwidth
    found = cal_terms.op_bandwidth(work, nbytes, device)
    if found is None:
        found = cal_terms.streaming_bandwidth(nbytes, device)
        if found is not None:  # reads whose producer ran too long ago for the cache: from DRAM
            found = cal_terms.cold_streaming(work, nbytes, found, hit_bytes, device)
    if found is None:
        return None
    level, bw = found
    return (MemoryTraffic(level, nbytes, bw, nbytes / bw),)


def _vector_seconds(work: Work, p: Placement, device: Device) -> tuple[float, bool]:
    """(seconds of vector work, whether measured data gave it): the op kind's measured rate,
    else transcendentals at their measured rate and the rest at the placement's vector rate.
    A kernel priced by an imported op-kind bandwidth table has no separate compute term."""
    if not work.vector_flops:
        return 0.0, False
    if cal_terms.op_kind(work, device.calibration) is not None:
        # imported op-kind table: the measured latency (memory term) is the whole kernel
        return 0.0, True
    share = p.vector_rate / device.vector_peak if device.vector_peak else 1.0
    rate = cal_terms.vector_rate(work, device, share)
    if rate is not None:
        return work.vector_flops / rate, True
    trans = cal_terms.transcendental_s(work, device, share)
    if trans is not None:
        return (work.vector_flops - work.transcendentals) / p.vector_rate + trans, True
    return work.vector_flops / p.vector_rate, False


def _measured_tensor_rate(work: Work, device: Device, weights_in_dram: bool = False) -> float | None:
    """Measured GEMM / conv FLOP/s at this subgraph's shape (or size) on calibrated profiles.

    Imported scattered tables (``gemm_points`` / ``bmm_points`` / ``conv_points``) first, capped
    at the boost-clock peak (a measured rate already reflects the clock the part held); then
    the cold weight-streaming table for a few-row GEMM whose weights stream from DRAM
    (``weights_in_dram``) and the backward-conv table for ``convolution_backward``; then
    shape-keyed grids (m, n, k); FLOP-keyed ones are the fallback. Depthwise convs use the
    depthwise table (m = N*Ho*Wo, n = channels, k = kh*kw).
    """
    cal = device.calibration
    if cal is None or work.tensor_flops == 0 or work.op_class is OpClass.ATTENTION:
        return None  # a fused attention kernel is not one of the GEMMs the tables measured
    imported = cal_terms.imported_tensor_tflops(work, device)  # scattered tables, imported
    if imported is not None:  # measured at the clock the part held: replaces the clock scaling
        boost = device.engine(work.op_class is OpClass.CONV).peak / device.clock_ratio
        return min(imported * 1e12, boost)
    special = (cal_terms.streamed_gemm_tflops(work, device, weights_in_dram)
               or cal_terms.conv_backward_tflops(work, device))
    if special is not None:
        return min(special * 1e12, device.peak)
    p, prec, flops = work.parallelism, device.tensor_precision, work.tensor_flops
    if work.op_class is OpClass.CONV and p.gemm_batch > 1 and not p.depthwise:
        # grouped conv: the grouped table (calibrate measures group widths 1, 8, 16 into the
        # depthwise table, keyed by output pixels, channels, channels per group * kernel area)
        tf = conv_shape_tflops(cal, ConvKind.DEPTHWISE, prec, p.gemm_m, p.gemm_n * p.gemm_batch, p.gemm_k)
        if tf is not None:
            return min(tf * 1e12, device.peak)
    if work.op_class is OpClass.CONV and p.depthwise:
        tf = conv_shape_tflops(cal, ConvKind.DEPTHWISE, prec, p.gemm_m, p.gemm_batch, p.gemm_k)
        tf = tf if tf is not None else conv_tflops(cal, ConvKind.DEPTHWISE, prec, flops)
        return None if tf is None else min(tf * 1e12, device.peak)
    if not work.gemm_like:
        return None
    if work.op_class is OpClass.CONV:
        kind = ConvKind.POINTWISE if work.pointwise else ConvKind.DENSE
        tf = conv_shape_tflops(cal, kind, prec, p.gemm_m, p.gemm_n * p.gemm_batch, p.gemm_k)
        tf = tf if tf is not None else conv_tflops(cal, kind, prec, flops)
    else:
        tf = gemm_shape_tflops(cal, prec, p.gemm_m * p.gemm_batch, p.gemm_n, p.gemm_k)
        tf = tf if tf is not None else gemm_tflops(cal, prec, flops)
    return None if tf is None else min(tf * 1e12, device.tensor_peak)


def _combine(device: Device, compute: float, memory: float, overhead: float) -> float:
    if device.profile.overlap is OverlapPolicy.SERIAL:
        return compute + memory + overhead
    return max(compute, memory) + overhead


def _bound(compute: float, memory: float, overhead: float) -> Bound:
    if overhead >= max(compute, memory):
        return Bound.OVERHEAD
    return Bound.COMPUTE if compute >= memory else Bound.MEMORY


def cold_paths(works: Sequence[Work], subs: tuple[SubgraphEstimate, ...], device: Device) -> tuple[SubgraphEstimate, ...]:
    """The subgraphs (a CPU's, run one after another in this order) with each call's cold-path
    cost added: the measured extra of a call of an op kind after the time since that kind last
    finished (:func:`dnnmap.mapping.measured.cold_dispatch_s`), on the op's own measured curve
    where the calibration has one (``cat``, SDPA, ``mean`` ...), else on the generic one. The run repeats (a decode step
    after a decode step, a training step after a step, a benchmark's runs), so a kind's first
    call follows its last call of the previous run (gap: the rest of the run after it, plus the
    time to this call). Views run back to back with their neighbours and are left as they are.
    Nothing changes without a measured curve (GPU profiles, uncalibrated CPUs)."""
    from dataclasses import replace

    curves = cal_terms.cold_curves(device)
    if not curves:
        return subs
    generic = curves.get("", [])
    t, last = 0.0, {}
    for w, s in zip(works, subs, strict=True):  # where each kind last ended in a plain run
        t += s.latency_s
        if w.op_class is not OpClass.VIEW:
            last[w.op_name] = t
    last = {k: v - t for k, v in last.items()}  # ... as times before this run starts
    t, out = 0.0, []
    for w, s in zip(works, subs, strict=True):
        if w.op_class is not OpClass.VIEW:
            extra = cal_terms.cold_dispatch_s(curves.get(cal_terms.cold_key(w.op_name), generic), t - last[w.op_name])
            if extra > 0:
                over, lat = s.overhead_s + extra, s.latency_s + extra
                static = s.static_energy_j + device.idle_w * extra
                bound = s.bound if s.bound is Bound.POWER else _bound(s.compute_s, s.memory_s, over)
                s = replace(s, overhead_s=over, latency_s=lat, static_energy_j=static,
                            energy_j=s.dynamic_energy_j + static, bound=bound,
                            estimated_s=lat if s.provenance.get(_TERM_OF[bound]) is FigureSource.ESTIMATED else 0.0)
        t += s.latency_s
        if w.op_class is not OpClass.VIEW:
            last[w.op_name] = t
        out.append(s)
    return tuple(out)


def estimate(work: Work, p: Placement, device: Device, homes: Homes, l2_hit_bytes: int = 0) -> SubgraphEstimate:
    """Apply the engine's terms to one placed subgraph (``l2_hit_bytes``: activation reads
    :mod:`dnnmap.mapping.residency` found still in a GPU's L2, or a calibrated CPU's last-level
    cache)."""
    tensor_rate, utilization, calibrated = p.tensor_rate, p.utilization, False
    measured = _measured_tensor_rate(work, device, homes.weights.index == device.dram.index)
    if measured is not None:
        # measured rates replace the clock-scaled peak: utilization is against the boost peak
        eng = device.engine(work.op_class is OpClass.CONV)
        ceiling = (eng.peak if work.gemm_like else device.peak) / device.clock_ratio
        tensor_rate, utilization, calibrated = measured, min(1.0, measured / ceiling), True
    vector_s, vector_measured = _vector_seconds(work, p, device)
    calibrated = calibrated or vector_measured
    compute = (work.tensor_flops / tensor_rate if work.tensor_flops else 0.0) + vector_s
    traffic = _measured_traffic(work, p, device, l2_hit_bytes)
    traffic_measured = traffic is not None
    calibrated = calibrated or traffic_measured
    if traffic is None:
        traffic = _traffic(work, p, device, homes, l2_hit_bytes)
    memory = max((t.seconds for t in traffic), default=0.0)
    dispatch = cal_terms.dispatch_s(work, device)  # calibrated: per-call cost of each eager call
    if device.device_class is DeviceClass.GPU:  # host issue cost is its own timeline (schedule)
        overhead = device.kernel_gap_s
    else:
        overhead = dispatch if dispatch is not None else device.launch_overhead_s
        overhead += cal_terms.fresh_pages_s(work, device)  # first touch of >= 32 MiB outputs
    latency = _combine(device, compute, memory, overhead)
    bound = _bound(compute, memory, overhead)
    moved = sum(t.bytes for t in traffic)
    # energy of the work the kernel executes (a causal FlashAttention kernel skips the blocks
    # above the diagonal: its placement says how many tensor FLOPs run)
    executed = p.factors.get("executed_tensor_flops", work.tensor_flops) + work.vector_flops
    dyn = executed * device.pj_per_flop * 1e-12 + _byte_energy(traffic, device)
    headroom = device.tdp_w - device.idle_w
    if latency > 0 and headroom > 0 and dyn / latency > headroom:  # power-limited: clocks drop
        latency, bound = dyn / headroom, Bound.POWER
    static = device.idle_w * latency
    nominal = {lv.name: lv.nominal_bandwidth for lv in device.levels}
    fastest = device.levels[0].nominal_bandwidth
    lower = max(
        work.flops / device.peak,
        max((t.bytes / nominal.get(t.level, fastest) for t in traffic), default=0.0),
    )
    ridge = device.tensor_peak / device.dram.nominal_bandwidth
    intensity = work.flops / work.external_bytes if work.external_bytes else float("inf")
    rate = work.flops / compute if compute else 0.0
    return SubgraphEstimate(
        subgraph_id=work.subgraph_id, name=work.name, op_class=work.op_class, unit=p.unit,
        units_allocated=p.units_allocated, units_total=p.units_total, utilization=utilization,
        effective_flops=rate, flops=work.flops, tensor_flops=work.tensor_flops,
        vector_flops=work.vector_flops, bytes=moved, traffic=traffic, compute_s=compute,
        memory_s=memory, overhead_s=overhead, latency_s=latency, bound=bound,
        energy_j=dyn + static, dynamic_energy_j=dyn, static_energy_j=static,
        roofline_lower_bound_s=lower,
        roofline_bound=Bound.COMPUTE if intensity >= ridge else Bound.MEMORY,
        explanation=_explain(p, bound, traffic, rate, device, calibrated),
        provenance=(prov := _figure_sources(work, device, traffic, measured is not None or vector_measured,
                                            traffic_measured)),
        estimated_s=latency if prov.get(_TERM_OF[bound]) is FigureSource.ESTIMATED else 0.0,
    )


_TERM_OF = {Bound.COMPUTE: "compute", Bound.POWER: "power", Bound.MEMORY: "memory", Bound.OVERHEAD: "overhead"}


def figure_source(citation: str | None) -> FigureSource:
    """How a profile's citation classifies its figure: ``estimated: ...`` / ``measured ...``."""
    text = (citation or "estimated: no source").strip().lower()
    if text.startswith("estimated"):
        return FigureSource.ESTIMATED
    if text.startswith(("measured", "calibrated")):
        return FigureSource.MEASURED
    return FigureSource.SOURCED


def _worst(*sources: FigureSource) -> FigureSource:
    """A term is as estimated as the least certain figure it uses."""
    order = (FigureSource.ESTIMATED, FigureSource.SOURCED, FigureSource.MEASURED)
    return next(s for s in order if s in sources)


def _figure_sources(work: Work, device: Device, traffic: tuple[MemoryTraffic, ...], compute_measured: bool,
                    memory_measured: bool) -> dict[str, FigureSource]:
    """The provenance of each term's figures (profile ``sources`` citations)."""
    prof = device.profile
    if compute_measured:
        compute = FigureSource.MEASURED
    else:
        eng = device.engine(work.op_class is OpClass.CONV)
        path = (f"peak_tflops.{eng.precision.value}" if work.tensor_flops and eng.uses_tensor_cores
                else f"vector_peak_tflops.{device.vector_precision.value}")
        figs = [figure_source(prof.source(path))]
        if device.clock_ratio < 1.0:
            figs.append(figure_source(prof.source("clocks.sustained_mhz")))
        compute = _worst(*figs)
    if memory_measured:
        memory = FigureSource.MEASURED
    elif traffic:
        lv = max(traffic, key=lambda t: t.seconds).level
        figs = [figure_source(prof.source(f"memory.{lv}.bandwidth_gbps"))]
        if prof.level(lv).efficiency is not None:
            figs.append(figure_source(prof.source(f"memory.{lv}.efficiency")))
        memory = _worst(*figs)
    else:
        memory = FigureSource.SOURCED
    if device.calibration is not None and device.calibration.dispatch_us:
        overhead = FigureSource.MEASURED
    elif device.device_class is DeviceClass.GPU:
        overhead = figure_source(prof.source("kernel_gap_us")) if prof.kernel_gap_us else FigureSource.SOURCED
    else:
        overhead = figure_source(prof.source("kernel_launch_us"))
    power = _worst(figure_source(prof.source("power.tdp_w")), figure_source(prof.source("energy_pj_per_flop")))
    return {"compute": compute, "memory": memory, "overhead": overhead, "power": power}


def _byte_energy(traffic: tuple[MemoryTraffic, ...], device: Device) -> float:
    pj = {lv.name: lv.pj_per_byte for lv in device.levels}
    dram = device.dram.pj_per_byte
    return sum(t.bytes * pj.get(t.level, dram) for t in traffic) * 1e-12


def _explain(
    p: Placement, bound: Bound, traffic: tuple[MemoryTraffic, ...], rate: float, device: Device, calibrated: bool
) -> str:
    """One line: the mapping, then why the latency is what it is."""
    if bound is Bound.MEMORY:
        worst = max(traffic, key=lambda t: t.seconds)
        why = f"memory-bound: {si(worst.bytes, 'B')} from {worst.level} at {si(worst.bandwidth, 'B/s')}"
    elif bound is Bound.COMPUTE:
        why = f"compute-bound at {si(rate, 'FLOP/s')} ({rate / device.peak:.0%} of peak)"
    elif bound is Bound.POWER:
        why = f"power-bound: full rate would exceed the {device.tdp_w:.0f} W TDP, clocks throttle"
    else:
        why = "overhead-bound: the fixed per-kernel cost exceeds the work"
    return f"{p.detail}; {why}" + (" [calibrated]" if calibrated else "")


def si(value: float, unit: str) -> str:
    """``si(3.35e12, "B/s") == '3.35 TB/s'`` (decimal prefixes, as datasheets quote them)."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"
