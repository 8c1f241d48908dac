"""Map a partition onto one device (:func:`map_partition`) or many (:func:`compare_partition`).

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import attention_block
>>> p = partition(attention_block(), "compiler")
>>> est = map_partition(p, "h100-sxm5", precision="bf16")
>>> est.bound.value, est.latency_s > est.naive_latency_s
('overhead', True)
>>> cmp = compare_partition(p, ["h100-sxm5", "i7-12700k"], baseline="i7-12700k")
>>> cmp.speedup("i7-12700k"), len(cmp.to_dataframe())
(1.0, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.fusion.partition import Partition
from dnnmap.hardware.schema import DeviceClass, HardwareProfile, Precision
from dnnmap.mapping import cpu, gpu, kpu, tpu
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement, estimate, weights_home
from dnnmap.mapping.estimate import Estimate, Roofline, SubgraphEstimate
from dnnmap.mapping.schedule import concurrent, serial
from dnnmap.mapping.workload import Work, workload

Mapper = Callable[[Work, Device], Placement]
MAPPERS: dict[DeviceClass, Mapper] = {
    DeviceClass.GPU: gpu.place,
    DeviceClass.CPU: cpu.place,
    DeviceClass.TPU: tpu.place,
    DeviceClass.KPU: kpu.place,
}


def resolve_profile(profile: HardwareProfile | str) -> HardwareProfile:
    """A profile object, or a name looked up with :func:`dnnmap.hardware.load_profile`."""
    if isinstance(profile, HardwareProfile):
        return profile
    from dnnmap.hardware import load_profile

    return load_profile(profile)


def _batch(partition: Partition, batch: int | None) -> int:
    captured = partition.graph.meta.get("batch")
    if batch is None:
        return int(captured) if captured else 1
    if batch < 1:
        raise DnnmapError(f"batch must be >= 1, got {batch}")
    if captured and int(captured) != batch:
        raise DnnmapError(
            f"the partition was captured at batch {captured}; capture the model again at batch {batch}"
        )
    return batch


def _streams(device: Device, streams: int, notes: list[str]) -> int:
    if streams < 1:
        raise DnnmapError(f"streams must be >= 1, got {streams}")
    g = device.profile.gpu
    if streams == 1:
        return 1
    if g is None:
        notes.append(f"{device.name} runs one kernel at a time: streams={streams} ignored")
        return 1
    if streams > g.max_concurrent_kernels:
        notes.append(f"streams capped at {g.max_concurrent_kernels} concurrent kernels")
    return min(streams, g.max_concurrent_kernels)


def map_works(
    partition: Partition, works: Sequence[Work], device: Device, batch: int, streams: int = 1
) -> Estimate:
    """Map prepared work (see :func:`dnnmap.mapping.workload.workload`) onto ``device``."""
    notes = list(device.notes)
    place = MAPPERS[device.device_class]
    homes = weights_home(device, tuple(works))
    subs = tuple(estimate(w, place(w, device), device, homes) for w in works)
    n_streams = _streams(device, streams, notes)
    if n_streams == 1:
        sched = serial(subs)
    else:
        from dnnmap.concurrency import stages, subgraph_dag

        sched = concurrent(subs, stages(subgraph_dag(partition)), n_streams)
    latency = sched.latency_s
    energy = sum(s.dynamic_energy_j for s in subs) + device.idle_w * latency
    if latency > 0 and energy / latency > device.tdp_w:
        notes.append(
            f"average power {energy / latency:.0f} W exceeds the {device.tdp_w:.0f} W TDP: "
            "the device would throttle, so this latency is optimistic"
        )
    flops = sum(s.flops for s in subs)
    return Estimate(
        model=partition.graph.name, device=device.name, device_class=device.device_class.value,
        precision=device.precision, batch=batch, strategy=partition.strategy.value,
        provenance=device.provenance, subgraphs=subs, schedule=sched.entries, streams=n_streams,
        latency_s=latency, energy_j=energy,
        utilization=_time_weighted(subs, latency, lambda s: s.utilization),
        units_busy=_time_weighted(subs, latency, lambda s: s.units_allocated / s.units_total),
        roofline=Roofline(device.peak, device.dram.nominal_bandwidth, device.dram.name),
        naive_latency_s=flops / device.peak, notes=tuple(dict.fromkeys(notes)),
        meta={"weights_in": homes.weights.name, "tensor_precision": device.tensor_precision.value},
    )


def _time_weighted(subs: Sequence[SubgraphEstimate], latency: float, f: Callable[[SubgraphEstimate], float]) -> float:
    if latency <= 0:
        return 0.0
    return min(1.0, sum(f(s) * s.latency_s for s in subs) / latency)


def map_partition(
    partition: Partition,
    profile: HardwareProfile | str,
    precision: Precision | str = Precision.FP32,
    batch: int | None = None,
    streams: int = 1,
) -> Estimate:
    """Predict latency, throughput, utilization and energy of ``partition`` on one device.

    ``precision`` rescales every floating tensor's bytes from the captured dtype and picks
    the peak; ``batch`` defaults to the batch the graph was captured at; ``streams > 1`` lets
    independent subgraphs share a GPU (see :mod:`dnnmap.mapping.schedule`).
    """
    prof = resolve_profile(profile)
    device = Device.of(prof, precision)
    works = workload(partition, device.precision)
    return map_works(partition, works, device, _batch(partition, batch), streams)


@dataclass(frozen=True)
class Comparison:
    """One partition mapped onto several devices; ``baseline`` names the speed-up reference."""

    estimates: tuple[Estimate, ...]
    baseline: str

    def __getitem__(self, device: str) -> Estimate:
        for e in self.estimates:
            if e.device == device:
                return e
        raise KeyError(device)

    def speedup(self, device: str) -> float:
        """Latency of the baseline / latency on ``device``."""
        return self[self.baseline].latency_s / self[device].latency_s

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for e in self.estimates:
            row = e.summary()
            row[f"speedup_vs_{self.baseline}"] = self.speedup(e.device)
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "devices": self.rows()}

    def to_dataframe(self):  # noqa: ANN201 - pandas.DataFrame
        import pandas as pd

        return pd.DataFrame(self.rows())


def compare_partition(
    partition: Partition,
    profiles: Sequence[HardwareProfile | str],
    precision: Precision | str = Precision.FP32,
    batch: int | None = None,
    streams: int = 1,
    baseline: str | None = None,
) -> Comparison:
    """Map one partition onto many devices; the byte rescale is shared, capture is not repeated."""
    if not profiles:
        raise DnnmapError("compare needs at least one device")
    prec = Precision.parse(precision)
    n = _batch(partition, batch)
    works = workload(partition, prec)
    ests = tuple(
        map_works(partition, works, Device.of(resolve_profile(p), prec), n, streams) for p in profiles
    )
    names = [e.device for e in ests]
    base = baseline or names[0]
    if base not in names:
        raise DnnmapError(f"baseline {base!r} is not among the compared devices: {', '.join(names)}")
    return Comparison(ests, base)
