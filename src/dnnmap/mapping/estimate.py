"""What mapping produces: a per-subgraph estimate and the whole-graph :class:`Estimate`.

Everything here is a frozen record; the numbers are made in ``engine`` (one subgraph) and
``schedule`` (the graph). Units are SI: seconds, joules, watts, FLOP/s, bytes/s.

>>> Bound("memory").value
'memory'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from dnnmap.hardware.schema import Precision, Provenance
from dnnmap.ir import OpClass


class Bound(StrEnum):
    """Which term set a subgraph's latency."""

    COMPUTE = "compute"
    MEMORY = "memory"
    OVERHEAD = "overhead"  # launch / dispatch cost exceeds both compute and memory time
    POWER = "power"  # the work at full rate would draw more than the TDP: clocks throttle
    HOST = "host"  # (whole estimate) the device waits for the host to issue kernels


class FigureSource(StrEnum):
    """Where the figure behind a term comes from."""

    SOURCED = "sourced"  # datasheet, whitepaper, paper
    ESTIMATED = "estimated"  # the profile says "estimated: ..."
    MEASURED = "measured"  # a calibration table


@dataclass(frozen=True, slots=True)
class MemoryTraffic:
    """Bytes one subgraph moves at one level of the memory hierarchy, and the time it takes."""

    level: str  # "HBM3", "L2", "L3", "scratchpad"
    bytes: int
    bandwidth: float  # bytes/s actually available to this subgraph at this level
    seconds: float


@dataclass(frozen=True, slots=True)
class SubgraphEstimate:
    """One fused subgraph (one kernel) mapped onto the device.

    ``utilization`` is the fraction of the device's compute peak (for the work's unit:
    tensor cores / SIMD / MXU / PE array) the mapping can use while the kernel runs: busy
    units x tile and padding efficiency x pipeline efficiency. ``achieved_flops`` is what the
    kernel delivers over its whole latency (the roofline point).
    """

    subgraph_id: int
    name: str
    op_class: OpClass
    unit: str  # "SM", "core", "MXU", "tile"
    units_allocated: int
    units_total: int
    utilization: float  # (0, 1]
    effective_flops: float  # FLOP/s the compute can run at (peak x utilization)
    flops: int
    tensor_flops: int
    vector_flops: int
    bytes: int  # bytes moved to / from off-chip memory (after precision rescale, incl. spills)
    traffic: tuple[MemoryTraffic, ...]
    compute_s: float
    memory_s: float
    overhead_s: float
    latency_s: float
    bound: Bound
    energy_j: float  # dynamic + static power x latency
    dynamic_energy_j: float
    static_energy_j: float
    roofline_lower_bound_s: float  # max(flops / peak, bytes / peak bandwidth)
    roofline_bound: Bound  # COMPUTE or MEMORY by arithmetic intensity vs the ridge point
    explanation: str
    # where the figure behind each term comes from ({"compute": FigureSource, ...}) and the
    # seconds of this kernel's latency that rest on an estimated figure (its bounding term's)
    provenance: Mapping[str, FigureSource] = field(default_factory=dict)
    estimated_s: float = 0.0
    host_s: float = 0.0  # host time to issue this kernel (GPU two-timeline schedule)

    @property
    def achieved_flops(self) -> float:
        return self.flops / self.latency_s if self.latency_s > 0 else 0.0

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["op_class"] = self.op_class.value
        d["bound"] = self.bound.value
        d["roofline_bound"] = self.roofline_bound.value
        d["traffic"] = {t.level: t.bytes for t in self.traffic}
        d["provenance"] = {k: v.value for k, v in self.provenance.items()}
        d["achieved_flops"] = self.achieved_flops
        return d


@dataclass(frozen=True, slots=True)
class ScheduledSubgraph:
    """When a subgraph runs in the schedule (seconds from the start of the inference)."""

    subgraph_id: int
    stream: int
    start_s: float
    finish_s: float


@dataclass(frozen=True, slots=True)
class Roofline:
    """Device roofline at the estimate's precision: ridge point = peak FLOP/s / bandwidth."""

    peak_flops: float  # FLOP/s (tensor peak at this precision, the figure the naive estimate uses)
    bandwidth: float  # bytes/s of main memory
    memory_level: str

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte above which a kernel can be compute-bound."""
        return self.peak_flops / self.bandwidth

    def attainable(self, intensity: float) -> float:
        """Roofline ceiling: min(peak, intensity x bandwidth)."""
        return min(self.peak_flops, intensity * self.bandwidth)


@dataclass(frozen=True)
class Estimate:
    """A partition mapped onto one device: per-subgraph estimates and the schedule's totals.

    >>> from dnnmap.fusion import partition
    >>> from dnnmap.fusion.toy import residual_block
    >>> from dnnmap.mapping import map_partition
    >>> est = map_partition(partition(residual_block()), "h100-sxm5", precision="bf16")
    >>> est.throughput == est.batch / est.latency_s, len(est.subgraphs), est.provenance.value
    (True, 3, 'theoretical')
    """

    model: str
    device: str
    device_class: str
    precision: Precision
    batch: int
    strategy: str
    provenance: Provenance
    subgraphs: tuple[SubgraphEstimate, ...]
    schedule: tuple[ScheduledSubgraph, ...]
    streams: int
    latency_s: float  # end to end, from the schedule
    energy_j: float  # per inference (the whole batch)
    utilization: float  # time-weighted mean of subgraph utilization over the latency
    units_busy: float  # time-weighted share of the device's units (SMs, cores ...) allocated
    roofline: Roofline
    naive_latency_s: float  # total FLOPs / peak FLOP/s
    notes: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "compiled"  # eager | compiled | cudagraph (ir.ExecutionMode)
    host_s: float = 0.0  # host time issuing kernels (GPU two-timeline schedule)
    device_idle_s: float = 0.0  # device time waiting for the host
    unknown_ops: tuple[str, ...] = ()  # ATen ops without a cost rule (counted as zero work)

    # -- derived totals -------------------------------------------------------------------
    @property
    def throughput(self) -> float:
        """Inferences (samples) per second: batch / latency."""
        return self.batch / self.latency_s if self.latency_s > 0 else 0.0

    @property
    def energy_per_sample_j(self) -> float:
        return self.energy_j / self.batch

    @property
    def average_power_w(self) -> float:
        return self.energy_j / self.latency_s if self.latency_s > 0 else 0.0

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.subgraphs)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.subgraphs)

    @property
    def flops_utilization(self) -> float:
        """Achieved FLOP/s over the whole inference / peak (what MFU calls utilization)."""
        return self.flops / (self.latency_s * self.roofline.peak_flops) if self.latency_s else 0.0

    @property
    def naive_error(self) -> float:
        """How many times longer the mapped latency is than FLOPs / peak."""
        return self.latency_s / self.naive_latency_s if self.naive_latency_s > 0 else float("inf")

    @property
    def serial_latency_s(self) -> float:
        """Plain sum of subgraph latencies (= ``latency_s`` on one stream)."""
        return sum(s.latency_s for s in self.subgraphs)

    def bound_share(self) -> dict[Bound, float]:
        """Share of the serial time spent in subgraphs of each bound."""
        total = self.serial_latency_s or 1.0
        out = {b: 0.0 for b in Bound}
        for s in self.subgraphs:
            out[s.bound] += s.latency_s / total
        return out

    @property
    def bound(self) -> Bound:
        """``host`` when the device waits for the host more than half the time; else the
        bound holding the largest share of kernel time."""
        if self.latency_s > 0 and self.device_idle_s > 0.5 * self.latency_s:
            return Bound.HOST
        share = self.bound_share()
        return max(share, key=lambda b: share[b])

    @property
    def estimated_share(self) -> float:
        """Share of the predicted kernel time whose bounding term rests on an estimated figure."""
        total = self.serial_latency_s
        return sum(s.estimated_s for s in self.subgraphs) / total if total > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a flat dict (what the compare table shows per device)."""
        return {
            "model": self.model,
            "device": self.device,
            "device_class": self.device_class,
            "precision": self.precision.value,
            "batch": self.batch,
            "strategy": self.strategy,
            "mode": self.mode,
            "provenance": self.provenance.value,
            "subgraphs": len(self.subgraphs),
            "streams": self.streams,
            "latency_s": self.latency_s,
            "throughput_per_s": self.throughput,
            "utilization": self.utilization,
            "units_busy": self.units_busy,
            "flops_utilization": self.flops_utilization,
            "energy_per_inference_j": self.energy_j,
            "energy_per_sample_j": self.energy_per_sample_j,
            "average_power_w": self.average_power_w,
            "bound": self.bound.value,
            "flops": self.flops,
            "bytes": self.bytes,
            "ridge_point": self.roofline.ridge_point,
            "naive_latency_s": self.naive_latency_s,
            "naive_error": self.naive_error,
            "host_s": self.host_s,
            "device_idle_s": self.device_idle_s,
            "estimated_share": self.estimated_share,
            "unknown_ops": len(self.unknown_ops),
            **{k: self.meta[k] for k in ("memory_bytes", "fits") if k in self.meta},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary, the notes and one dict per subgraph with its schedule."""
        when = {s.subgraph_id: s for s in self.schedule}
        rows = []
        for s in self.subgraphs:
            d = s.to_dict()
            w = when.get(s.subgraph_id)
            d.update(stream=w.stream if w else 0, start_s=w.start_s if w else None)
            rows.append(d)
        return {"summary": self.summary(), "notes": list(self.notes), "unknown_ops": list(self.unknown_ops),
                "subgraphs": rows}

    def to_dataframe(self):  # noqa: ANN201 - pandas.DataFrame
        """One row per subgraph; bytes per memory level as ``bytes_<level>`` columns."""
        import pandas as pd

        rows = self.to_dict()["subgraphs"]
        for r in rows:
            for level, nbytes in r.pop("traffic", {}).items():
                r[f"bytes_{level}"] = nbytes
        return pd.DataFrame(rows)
