"""One pipeline: a frozen :class:`Scenario` and a hardware profile in, an ``Estimate`` out.

Every command (``analyze``, ``compare``, ``validate``, and the sweeps and phases to come)
builds Scenarios and renders Estimates; none rebuilds the steps:

    capture (attention implementation) -> count (coverage ledger) -> partition for the mode
    -> map onto the device (precision, TF32, host/device schedule) -> Estimate

Capture, count and partition depend only on the model side of the scenario
(:meth:`Scenario.model_key`), so :func:`prepare` runs them once and :func:`estimate_on` maps
the result onto as many devices as asked.

>>> s = Scenario("resnet18", mode="eager", precision="fp32")
>>> s.mode.value, s.strategy_used, s.precision.value
('eager', 'unfused', 'fp32')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dnnmap.costs import CountedGraph, count_graph
from dnnmap.errors import DnnmapError
from dnnmap.fusion import partition as fuse
from dnnmap.fusion.partition import Partition
from dnnmap.hardware.schema import HardwareProfile, Precision
from dnnmap.ir import ExecutionMode, Graph, Tf32Mode
from dnnmap.mapping import Comparison, Estimate, compare_partition, map_partition


@dataclass(frozen=True)
class Scenario:
    """A question to dnnmap, without the device. Strings are parsed into enums on creation.

    ``strategy`` overrides the fusion the mode implies (``greedy`` exists for study);
    ``host_dispatch_us`` overrides the profile's eager per-op host cost; ``strict`` refuses
    ops without a cost rule instead of listing them."""

    model: Any  # a name ("resnet18", "hf:gpt2", "file.py:factory"), an nn.Module or an ir.Graph
    batch: int = 1
    seq_len: int | None = None
    input_shape: tuple[int, ...] | str | None = None
    dtype: str = "fp32"  # the capture dtype; ``precision`` restates bytes and picks the peaks
    precision: Precision = Precision.FP32
    mode: ExecutionMode = ExecutionMode.COMPILED
    attn_implementation: str | None = None  # eager | sdpa | flash (HF models); None: the default
    tf32: Tf32Mode = Tf32Mode.DEFAULT
    strategy: str | None = None
    streams: int = 1
    onchip_budget_bytes: int | None = None
    host_dispatch_us: float | None = None
    strict: bool = False
    capture_kwargs: tuple[tuple[str, Any], ...] = field(default=())  # e.g. (("inputs", x),) for modules
    # a training step (forward, loss, backward, optimizer) instead of a forward pass: see
    # dnnmap.capture.train_path; ``amp`` bf16 / fp16 autocast with fp32 master weights
    optimizer: str | None = None  # none | sgd | adam | adamw; None: not a training step
    recompute: str = "none"  # activation recomputation: none | selective | full
    amp: str | None = None
    foreach: bool = False  # the optimizer's multi-tensor kernels (GPUs) instead of its loop (CPUs)
    layers: int | None = None  # build a Hugging Face model with this many blocks
    # stored weights / KV cache when they differ from ``precision`` (dnnmap.mapping.weights)
    weights: str | None = None  # int8 | int4 | fp8
    group_size: int = 128  # int4 scale group
    kv_dtype: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        object.__setattr__(self, "mode", ExecutionMode.parse(self.mode))
        object.__setattr__(self, "tf32", Tf32Mode.parse(self.tf32))
        if self.batch < 1:
            raise DnnmapError(f"batch must be >= 1, got {self.batch}")

    @property
    def strategy_used(self) -> str:
        return self.strategy or self.mode.strategy

    def model_key(self) -> tuple[Any, ...]:
        """What capture, count and partition depend on (two scenarios with the same key share them)."""
        return (id(self.model) if not isinstance(self.model, str) else self.model, self.batch, self.seq_len,
                self.input_shape, self.dtype, self.attn_implementation, self.strategy_used,
                self.onchip_budget_bytes, self.strict, self.capture_kwargs, self.optimizer, self.recompute,
                self.amp, self.foreach, self.layers)

    def with_(self, **changes: Any) -> Scenario:
        return replace(self, **changes)


@dataclass(frozen=True)
class Prepared:
    """A scenario's model side, ready to map: the counted graph and its partition."""

    scenario: Scenario
    counted: CountedGraph
    partition: Partition

    @property
    def unknown_ops(self) -> tuple[str, ...]:
        return tuple(f"{e.target} x{e.count}" for e in self.counted.ledger.unknown)


def capture(s: Scenario) -> Graph:
    """The scenario's graph (no capture when the model already is one)."""
    if isinstance(s.model, Graph):
        return s.model
    if isinstance(s.model, CountedGraph):
        return s.model.graph
    if s.optimizer is not None:
        from dnnmap.capture.train_path import capture_train_step

        return capture_train_step(s.model, batch=s.batch, seq_len=s.seq_len, input_shape=s.input_shape,
                                  optimizer=s.optimizer, amp=s.amp, recompute=s.recompute, foreach=s.foreach,
                                  layers=s.layers, attn_implementation=s.attn_implementation,
                                  **dict(s.capture_kwargs))
    from dnnmap.capture import capture as _capture

    return _capture(s.model, batch=s.batch, input_shape=s.input_shape, seq_len=s.seq_len, dtype=s.dtype,
                    attn_implementation=s.attn_implementation, **dict(s.capture_kwargs))


def prepare(s: Scenario) -> Prepared:
    """Capture, count (``strict``: fail on ops without a rule) and partition for the mode."""
    counted = s.model if isinstance(s.model, CountedGraph) else count_graph(capture(s), strict=s.strict)
    part = fuse(counted, strategy=s.strategy_used, onchip_budget_bytes=s.onchip_budget_bytes)
    return Prepared(s, counted, part)


def _finish(est: Estimate, prep: Prepared, profile: HardwareProfile | str | None = None) -> Estimate:
    """Attach what the estimate does not know: ops without a cost rule, the attention built, and
    whether weights + peak live activations + workspace fit the device's memory."""
    notes = list(est.notes)
    unknown = prep.unknown_ops
    if unknown:
        notes.append(f"{len(unknown)} op kind(s) without a cost rule, counted as zero work: {', '.join(unknown)}")
    attention = prep.counted.graph.meta.get("attention")
    meta = dict(est.meta)
    if attention:
        meta["attention"] = attention
    if profile is not None:
        from dnnmap.mapping.api import resolve_profile
        from dnnmap.memory import fit_of

        s = prep.scenario
        fit = fit_of(prep.counted.graph, resolve_profile(profile), s.precision)
        if s.weights:
            from dnnmap.mapping.weights import Storage, resident_weight_bytes

            fit = replace(fit, weights=resident_weight_bytes(prep.counted.graph, s.precision,
                                                             Storage(s.weights, s.group_size)))
        meta.update(memory_bytes=fit.total, fits=fit.fits)
        if not fit.fits:
            notes.append(f"does not fit: {fit.describe()}; this latency assumes memory the device does not have")
    return replace(est, notes=tuple(notes), unknown_ops=unknown, meta=meta)


def estimate_on(prep: Prepared, profile: HardwareProfile | str) -> Estimate:
    """Map a prepared scenario onto one device."""
    s = prep.scenario
    if s.weights or s.kv_dtype:
        return _finish(_map_stored(prep, profile), prep, profile)
    est = map_partition(prep.partition, profile, precision=s.precision, batch=s.batch, streams=s.streams,
                        mode=s.mode, tf32=s.tf32, host_dispatch_s=_host(s))
    return _finish(est, prep, profile)


def _map_stored(prep: Prepared, profile: HardwareProfile | str) -> Estimate:
    """Map with weights / KV cache stored as the scenario says (quantized bytes, dequant work)."""
    from dnnmap.mapping import Device, map_works, workload
    from dnnmap.mapping.api import resolve_profile
    from dnnmap.mapping.weights import Storage, adjust

    s = prep.scenario
    device = Device.of(resolve_profile(profile), s.precision, s.tf32)
    if s.host_dispatch_us is not None:
        device = device.with_host_dispatch(s.host_dispatch_us * 1e-6)
    works = adjust(prep.partition, workload(prep.partition, device.precision), device.precision,
                   Storage(s.weights, s.group_size, s.kv_dtype))
    return map_works(prep.partition, works, device, s.batch, s.streams, s.mode)


def estimate(s: Scenario, profile: HardwareProfile | str) -> Estimate:
    """The whole pipeline for one scenario on one device."""
    return estimate_on(prepare(s), profile)


def compare(s: Scenario, profiles: Sequence[HardwareProfile | str], baseline: str | None = None) -> Comparison:
    """One capture and partition, mapped onto every device."""
    prep = prepare(s)
    if s.weights or s.kv_dtype:
        ests = tuple(estimate_on(prep, p) for p in profiles)
        return Comparison(ests, baseline or ests[0].device)
    cmp = compare_partition(prep.partition, profiles, precision=s.precision, batch=s.batch, streams=s.streams,
                            baseline=baseline, mode=s.mode, tf32=s.tf32, host_dispatch_s=_host(s))
    return replace(cmp, estimates=tuple(_finish(e, prep, p) for e, p in zip(cmp.estimates, profiles, strict=False)))


def _host(s: Scenario) -> float | None:
    return None if s.host_dispatch_us is None else s.host_dispatch_us * 1e-6
