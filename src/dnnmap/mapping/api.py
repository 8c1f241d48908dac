"""Map a partition onto one device (:func:`map_partition`) or many (:func:`compare_partition`).

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import attention_block
>>> p = partition(attention_block(), "compiler")
>>> est = map_partition(p, "h100-sxm5", precision="bf16")
>>> est.bound.value, est.latency_s > est.naive_latency_s   # tiny kernels: the host's launches set the pace
('host', True)
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
from dnnmap.ir import ExecutionMode, Tf32Mode
from dnnmap.mapping import cpu, gpu, kpu, tpu
from dnnmap.mapping import measured as cal_terms
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement, cold_paths, estimate, l2_level, weights_home
from dnnmap.mapping.estimate import Estimate, Roofline, SubgraphEstimate
from dnnmap.mapping.residency import l2_hits
from dnnmap.mapping.schedule import Schedule, concurrent, serial, two_timelines
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


def mode_of(partition: Partition, mode: ExecutionMode | str | None) -> ExecutionMode:
    """The execution mode asked for, else the one the partition's strategy stands for."""
    if mode is not None:
        return ExecutionMode.parse(mode)
    return ExecutionMode.EAGER if partition.strategy.value == "unfused" else ExecutionMode.COMPILED


def issue_costs(works: Sequence[Work], device: Device, mode: ExecutionMode) -> tuple[list[float], float]:
    """(host seconds to issue each kernel, host seconds before the first) on a GPU.

    eager: each ATen op of the kernel is one dispatch (the calibrated per-kind cost where the
    profile has one); compiled: one launch per kernel by the compiler's wrapper; cudagraph:
    one graph launch, then nothing per kernel."""
    if mode is ExecutionMode.CUDAGRAPH:
        return [0.0] * len(works), device.launch_overhead_s
    if mode is ExecutionMode.COMPILED:
        return [device.launch_overhead_s] * len(works), 0.0
    out = []
    for w in works:
        measured = cal_terms.dispatch_s(w, device)
        out.append(measured if measured is not None else w.dispatches * device.eager_dispatch_s)
    return out, 0.0


def _schedule(partition: Partition, works: Sequence[Work], subs: tuple[SubgraphEstimate, ...], device: Device,
              n_streams: int, mode: ExecutionMode) -> tuple[tuple[SubgraphEstimate, ...], Schedule]:
    from dataclasses import replace

    if device.profile.gpu is None:
        return subs, serial(subs)
    costs, first = issue_costs(works, device, mode)
    subs = tuple(replace(s, host_s=c) for s, c in zip(subs, costs, strict=True))
    if n_streams == 1:
        return subs, two_timelines(subs, costs, first)
    from dnnmap.concurrency import stages, subgraph_dag

    # several streams: the device side from the concurrent packing; the host still issues
    # every kernel one after another, so the end is at least its issue time + the last kernel
    dev = concurrent(subs, stages(subgraph_dag(partition)), n_streams)
    host = first + sum(costs)
    end = max(dev.latency_s, host + (subs[-1].latency_s if subs else 0.0))
    return subs, replace(dev, latency_s=end, host_s=host, device_idle_s=end - dev.latency_s)


def map_works(
    partition: Partition, works: Sequence[Work], device: Device, batch: int, streams: int = 1,
    mode: ExecutionMode | str | None = None,
) -> Estimate:
    """Map prepared work (see :func:`dnnmap.mapping.workload.workload`) onto ``device``."""
    notes = list(device.notes)
    run_mode = mode_of(partition, mode)
    place = MAPPERS[device.device_class]
    homes = weights_home(device, tuple(works))
    gpu_l2 = l2_level(device)
    l2 = gpu_l2 or cal_terms.last_cache(device)  # a GPU's L2, or a calibrated CPU's last-level cache
    hits = l2_hits(works, l2.capacity_bytes * l2.instances) if l2 is not None else {}
    subs = tuple(estimate(w, place(w, device), device, homes, hits.get(w.subgraph_id, 0)) for w in works)
    subs = cold_paths(works, subs, device)
    n_streams = _streams(device, streams, notes)
    subs, sched = _schedule(partition, works, subs, device, n_streams, run_mode)
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
        meta={"weights_in": homes.weights.name, "tensor_precision": device.tensor_precision.value,
              "llc_hit_bytes" if gpu_l2 is None and l2 is not None else "l2_hit_bytes": sum(hits.values())},
        mode=run_mode.value, host_s=sched.host_s, device_idle_s=sched.device_idle_s,
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
    mode: ExecutionMode | str | None = None,
    tf32: Tf32Mode | str = Tf32Mode.DEFAULT,
    host_dispatch_s: float | None = None,
) -> Estimate:
    """Predict latency, throughput, utilization and energy of ``partition`` on one device.

    ``precision`` rescales every floating tensor's bytes from the captured dtype and picks
    the peak; ``batch`` defaults to the batch the graph was captured at; ``streams > 1`` lets
    independent subgraphs share a GPU (see :mod:`dnnmap.mapping.schedule`); ``mode`` says who
    issues the kernels (default: eager for an unfused partition, else compiled); ``tf32``
    whether fp32 GEMMs / convs run as TF32; ``host_dispatch_s`` overrides the profile's eager
    per-op host cost (e.g. measured on this host by ``dnnmap calibrate``).
    """
    prof = resolve_profile(profile)
    device = Device.of(prof, precision, tf32)
    if host_dispatch_s is not None:
        device = device.with_host_dispatch(host_dispatch_s)
    works = workload(partition, device.precision)
    return map_works(partition, works, device, _batch(partition, batch), streams, mode)


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
    mode: ExecutionMode | str | None = None,
    tf32: Tf32Mode | str = Tf32Mode.DEFAULT,
    host_dispatch_s: float | None = None,
) -> Comparison:
    """Map one partition onto many devices; the byte rescale is shared, capture is not repeated."""
    if not profiles:
        raise DnnmapError("compare needs at least one device")
    prec = Precision.parse(precision)
    n = _batch(partition, batch)
    works = workload(partition, prec)

    def device_for(p: HardwareProfile | str) -> Device:
        d = Device.of(resolve_profile(p), prec, tf32)
        return d if host_dispatch_s is None else d.with_host_dispatch(host_dispatch_s)

    ests = tuple(map_works(partition, works, device_for(p), n, streams, mode) for p in profiles)
    names = [e.device for e in ests]
    base = baseline or names[0]
    if base not in names:
        raise DnnmapError(f"baseline {base!r} is not among the compared devices: {', '.join(names)}")
    return Comparison(ests, base)
