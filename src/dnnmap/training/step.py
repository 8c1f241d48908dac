"""One training step on one device: forward / backward / optimizer mapped phase by phase.

The step is captured once (:func:`dnnmap.pipeline.capture` of a Scenario with an
``optimizer``), cut into its phases (:mod:`dnnmap.training.phases`), and every phase goes
through the same count -> partition -> map pipeline as inference. Under AMP the forward and
backward run at the compute precision while the optimizer updates the fp32 master weights,
so its phase is mapped at fp32. MFU is model FLOPs (forward + backward tensor FLOPs,
recomputation excluded) over the step time at the device's dense peak.

>>> from dnnmap.pipeline import Scenario
>>> est = train_step(Scenario("resnet18", batch=2, optimizer="sgd", mode="eager"), "h100-sxm5")
>>> est.step_s == est.forward_s + est.backward_s + est.optimizer_s + est.communication_s
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dnnmap.costs import count_graph
from dnnmap.fusion import partition as fuse
from dnnmap.fusion.partition import Partition
from dnnmap.hardware.schema import HardwareProfile, Precision
from dnnmap.ir import Graph
from dnnmap.mapping.api import map_works, resolve_profile
from dnnmap.mapping.device import Device
from dnnmap.mapping.estimate import Estimate
from dnnmap.mapping.workload import Work, workload
from dnnmap.pipeline import Scenario
from dnnmap.pipeline import capture as capture_scenario
from dnnmap.training.memory import StepMemory, step_memory
from dnnmap.training.phases import BACKWARD, FORWARD, OPTIMIZER, phase_graph

WorkHook = Callable[[Partition, tuple[Work, ...]], tuple[Work, ...]]


@dataclass(frozen=True)
class TrainEstimate:
    """One training step per device. Times in seconds; memory in bytes per device."""

    model: str
    device: str
    batch: int  # global batch (samples per step)
    seq_len: int | None
    precision: str
    optimizer: str
    recompute: str
    forward_s: float
    backward_s: float
    optimizer_s: float
    communication_s: float  # exposed (not hidden behind compute)
    model_flops: int  # forward + backward tensor FLOPs of the whole step (all devices), no recompute
    peak_flops: float  # per device, at the compute precision
    devices: int
    memory: StepMemory
    capacity_bytes: int
    plan: Any = None
    bubble_s: float = 0.0
    breakdown: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    unknown_ops: tuple[str, ...] = ()
    all_to_alls: int = 0  # expert-parallel all-to-alls per step on one device (MoE)

    @property
    def step_s(self) -> float:
        return self.forward_s + self.backward_s + self.optimizer_s + self.communication_s + self.bubble_s

    @property
    def samples_per_s(self) -> float:
        return self.batch / self.step_s if self.step_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float | None:
        return self.samples_per_s * self.seq_len if self.seq_len else None

    @property
    def mfu(self) -> float:
        return self.model_flops / (self.step_s * self.peak_flops * self.devices) if self.step_s > 0 else 0.0

    @property
    def fits(self) -> bool:
        return self.memory.fits(self.capacity_bytes)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model, "device": self.device, "devices": self.devices, "batch": self.batch,
            "seq_len": self.seq_len, "precision": self.precision, "optimizer": self.optimizer,
            "recompute": self.recompute, "plan": str(self.plan) if self.plan is not None else None,
            "step_ms": self.step_s * 1e3, "forward_ms": self.forward_s * 1e3, "backward_ms": self.backward_s * 1e3,
            "optimizer_ms": self.optimizer_s * 1e3, "communication_ms": self.communication_s * 1e3,
            "bubble_ms": self.bubble_s * 1e3, "samples_per_s": self.samples_per_s, "tokens_per_s": self.tokens_per_s,
            "mfu": self.mfu, "model_tflops": self.model_flops / 1e12, "fits": self.fits, "all_to_alls": self.all_to_alls,
            "capacity_gb": self.capacity_bytes / 1e9, **{f"mem_{k}_gb": v / 1e9 for k, v in self.memory.to_dict().items()},
            **{f"{k}_ms": v * 1e3 for k, v in self.breakdown.items()},
        }


def device_for(s: Scenario, profile: HardwareProfile | str, precision: Precision | None = None) -> Device:
    d = Device.of(resolve_profile(profile), precision or s.precision, s.tf32)
    return d if s.host_dispatch_us is None else d.with_host_dispatch(s.host_dispatch_us * 1e-6)


def map_graph(g: Graph, s: Scenario, device: Device, hook: WorkHook | None = None) -> tuple[Partition, Estimate]:
    """Count, partition for the scenario's mode and map ``g`` (``hook`` may reshape the work:
    tensor parallelism shards it)."""
    part = fuse(count_graph(g, strict=s.strict), strategy=s.strategy_used, onchip_budget_bytes=s.onchip_budget_bytes)
    works = workload(part, device.precision)
    if hook is not None:
        works = hook(part, works)
    return part, map_works(part, works, device, s.batch, s.streams, s.mode)


def optimizer_precision(s: Scenario) -> Precision:
    """AMP keeps fp32 master weights and state: the optimizer moves fp32 bytes."""
    return Precision.FP32 if s.amp not in (None, "none") else s.precision


def model_flops(g: Graph) -> int:
    """Tensor FLOPs of forward + loss + backward, recomputed ops left out."""
    counted = count_graph(g)
    redo = set(g.meta.get("recomputed_ops", ()))
    keep = {op.id for op in _ops(g, (*FORWARD, *BACKWARD)) if op.id not in redo}
    return sum(c.tensor_flops for oid, c in counted.costs.items() if oid in keep)


def _ops(g: Graph, names: Sequence[str]) -> list:
    from dnnmap.training.phases import phase_ops

    return phase_ops(g, names)


def train_step(s: Scenario, profile: HardwareProfile | str, graph: Graph | None = None) -> TrainEstimate:
    """Predict one training step of ``s`` (which must name an ``optimizer``) on one device."""
    if s.optimizer is None:
        s = replace(s, optimizer="adamw")
    g = graph if graph is not None else capture_scenario(s)
    prof = resolve_profile(profile)
    dev = device_for(s, prof)
    times = {}
    unknown: list[str] = []
    for name, phases, d in (("forward", FORWARD, dev), ("backward", BACKWARD, dev),
                            ("optimizer", OPTIMIZER, device_for(s, prof, optimizer_precision(s)))):
        sub = phase_graph(g, phases)
        if not sub.ops:
            times[name] = 0.0
            continue
        part, est = map_graph(sub, s, d)
        times[name] = est.latency_s
        unknown += [f"{e.target} x{e.count}" for e in part.counted.ledger.unknown]
    mem = step_memory(g)
    return TrainEstimate(
        model=str(g.meta.get("model", g.name)), device=prof.name, batch=s.batch, seq_len=s.seq_len,
        precision=s.precision.value, optimizer=s.optimizer or "none", recompute=s.recompute,
        forward_s=times["forward"], backward_s=times["backward"], optimizer_s=times["optimizer"], communication_s=0.0,
        model_flops=model_flops(g), peak_flops=dev.tensor_peak, devices=1, memory=mem,
        capacity_bytes=prof.dram.capacity_bytes, unknown_ops=tuple(dict.fromkeys(unknown)),
        notes=_notes(mem, prof.dram.capacity_bytes, unknown),
    )


def _notes(mem: StepMemory, capacity: int, unknown: list[str]) -> tuple[str, ...]:
    notes = []
    if not mem.fits(capacity):
        notes.append(f"does not fit: peak {mem.peak / 1e9:.2f} GB > {capacity / 1e9:.2f} GB of device memory")
    if unknown:
        notes.append(f"op kinds without a cost rule, counted as zero work: {', '.join(dict.fromkeys(unknown))}")
    return tuple(notes)
