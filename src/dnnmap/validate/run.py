"""Predicted vs measured: run each model for real, predict it with a profile, compare.

The prediction is the normal pipeline (fake-tensor capture -> count -> partition -> map)
with the ``unfused`` strategy, because the measurement is eager PyTorch, which launches one
kernel per ATen op. The real run builds the same model with the same input shapes from the
same factory (``dnnmap.capture.build_model``) with real random weights.

>>> import dnnmap.validate as v                                          # doctest: +SKIP
>>> r = v.validate(["resnet18"], "amd-epyc-7b12-measured", batches=(1,))  # doctest: +SKIP
>>> r.summary.median_abs_error < 0.15                                     # doctest: +SKIP
True
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from dnnmap.calibrate.timing import (
    device_name,
    library_versions,
    load_average,
    require_cuda,
    utc_now,
)
from dnnmap.errors import DnnmapError
from dnnmap.validate.measure import Measurement, measure_module
from dnnmap.validate.record import (
    EAGER_NOTE,
    HELD_OUT_NOTE,
    SubgraphRow,
    ValidationCase,
    ValidationReport,
    merge_breakdowns,
)

Progress = Callable[[str, int, int], None]

_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Shapes:
    """Input sizes besides the batch, passed the same way to the capture and the real build."""

    seq_len: int | None = None
    input_shape: str | Sequence[int] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "input_shape": self.input_shape}


@dataclass(frozen=True)
class RunSettings:
    """How the real runs are timed (the defaults suit a 2-core CPU and a whole model)."""

    warmup: int = 2
    min_runs: int = 5
    min_seconds: float = 1.0
    max_runs: int = 30
    attribute: bool = True  # profile one extra run for the per-class / per-module breakdown
    idle_wait_s: float = 0.0  # > 0: before timing, wait up to this long for idle CPUs


def validate(
    models: Sequence[str],
    profile: Any,
    batches: Sequence[int] = (1,),
    *,
    device: str = "cpu",
    precision: str = "fp32",
    strategy: str = "unfused",
    seq_len: int | None = None,
    input_shape: str | Sequence[int] | None = None,
    settings: RunSettings | None = None,
    progress: Progress | None = None,
    hardware_dirs: Sequence[Any] = (),
) -> ValidationReport:
    """Run and predict every (model, batch); return the cases and their summary.

    ``profile`` is a loaded hardware profile or a name / YAML path for the loader. A model
    that cannot be built, run or predicted becomes a case with ``error_message`` set, so one
    bad model does not hide the others' results.
    """
    if precision not in _TORCH_DTYPES:
        raise DnnmapError(f"validate runs fp32, bf16 or fp16 models, not {precision!r}")
    if device not in ("cpu", "cuda"):
        raise DnnmapError(f"unknown device {device!r}: use 'cpu' or 'cuda'")
    if device == "cuda":
        require_cuda()
    prof = resolve_profile(profile, hardware_dirs)
    check_profile_matches(prof, device)
    settings = settings or RunSettings()
    cases: list[ValidationCase] = []
    total, done = len(models) * len(batches), 0
    for name in models:
        for b in batches:
            if progress is not None:
                progress(f"{name} batch {b}", done, total)
            shapes = Shapes(seq_len, input_shape)
            cases.append(_one_case(name, b, prof, device, precision, strategy, shapes, settings))
            done += 1
            gc.collect()
    if progress is not None:
        progress("done", done, total)
    return ValidationReport(
        profile=_profile_name(prof),
        provenance=_provenance(prof),
        device=device,
        device_name=device_name(device),
        threads=torch.get_num_threads(),
        strategy=strategy,
        precision=precision,
        cases=tuple(cases),
        date=utc_now(),
        versions=library_versions(),
        notes=profile_notes(prof, device),
        fresh_page_s=_fresh_page_s(prof),
    )


def _fresh_page_s(prof: Any) -> float:
    cal = getattr(prof, "calibration", None)
    us = cal.scalars.get("fresh_page_us") if cal is not None else None
    return us * 1e-6 if us else float("nan")


def resolve_profile(profile: Any, hardware_dirs: Sequence[Any] = ()) -> Any:
    """A profile object passes through; a name or a path goes to the hardware loader."""
    if not isinstance(profile, str) and not hasattr(profile, "__fspath__"):
        return profile
    from dnnmap.hardware import load_profile

    return load_profile(str(profile), extra_dirs=list(hardware_dirs))


_DEVICE_CLASS = {"cpu": "cpu", "cuda": "gpu"}  # what is timed -> the profile class that predicts it


def check_profile_matches(prof: Any, device: str) -> None:
    """A profile predicts the device it describes: a GPU profile cannot be validated by timing
    the CPU (it came out -96 %), nor a profile calibrated on a GPU by timing a CPU."""
    want = _DEVICE_CLASS[device]
    cls = getattr(getattr(prof, "device_class", None), "value", None)
    name = _profile_name(prof)
    if cls is not None and cls != want:
        raise DnnmapError(
            f"profile {name!r} describes a {cls}, but --device {device} times this machine's {device.upper()}: "
            f"give a {want} profile (e.g. from `dnnmap calibrate --device {device}`)"
            + ("" if cls != "gpu" else " or --device cuda"))
    cal = getattr(prof, "calibration", None)
    if cal is not None and cal.meta.device != device:
        raise DnnmapError(f"profile {name!r} was calibrated on {cal.meta.device} ({cal.meta.machine}), "
                          f"but --device {device} is timed")


def profile_notes(prof: Any, device: str) -> tuple[str, ...]:
    """The header's notes: the held-out claim only where the profile's calibration meta says
    it was measured on this machine; otherwise what the profile really is."""
    cal = getattr(prof, "calibration", None)
    here = device_name(device)
    if cal is None:
        first = ("Profile from datasheet figures (theoretical): not calibrated on this machine, "
                 "nothing in it was fitted to the models validated here.")
    elif cal.meta.machine != here:
        first = (f"Profile calibrated on {cal.meta.machine} ({cal.meta.date}), not on this machine "
                 f"({here}): the predictions are for that machine.")
    else:
        first = HELD_OUT_NOTE
    disturbed = (f"The profile is marked {cal.meta.notes.split(';')[0]}",) if cal is not None and \
        cal.meta.notes.startswith("DISTURBED") else ()
    return (first, *disturbed, EAGER_NOTE)


def _profile_name(prof: Any) -> str:
    return str(getattr(prof, "name", prof))


def _provenance(prof: Any) -> str:
    return "calibrated" if getattr(prof, "calibration", None) is not None else "theoretical"


def predict(name: str, batch: int, prof: Any, precision: str, strategy: str, shapes: Shapes | None = None):  # noqa: ANN201
    """(partition, estimate) for ``name`` at ``batch`` on ``prof``: the one pipeline, in eager
    mode (what is timed), with the fusion ``strategy`` the report asks for."""
    from dnnmap.pipeline import Scenario, estimate_on, prepare

    kw = (shapes or Shapes()).kwargs()
    s = Scenario(name, batch=batch, dtype=precision, precision=precision, mode="eager", strategy=strategy,
                 seq_len=kw["seq_len"], input_shape=kw["input_shape"])
    prep = prepare(s)
    return prep.partition, estimate_on(prep, prof)


def _measure(name: str, batch: int, device: str, precision: str, shapes: Shapes,
             settings: RunSettings) -> tuple[Measurement, tuple[str, ...]]:
    from dnnmap.capture import build_model

    module, inputs = build_model(name, batch=batch, dtype=precision, fake=False, **shapes.kwargs())
    module = module.to(device).eval()
    inputs = _to_device(inputs, device)
    prefixes = module_prefixes(module)
    m = measure_module(module, inputs, device=device, warmup=settings.warmup, min_runs=settings.min_runs,
                       min_seconds=settings.min_seconds, max_runs=settings.max_runs,
                       attribute=settings.attribute, module_prefixes=prefixes,
                       idle_wait_s=settings.idle_wait_s)
    del module, inputs
    return m, prefixes


def _to_device(inputs: Any, device: str) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs


def module_prefixes(module: torch.nn.Module, min_count: int = 4, max_depth: int = 4) -> tuple[str, ...]:
    """The module paths of the shallowest depth with at least ``min_count`` modules
    (resnet: conv1, bn1, layer1 ..; mobilenet: features.0 .. features.18)."""
    names = [n for n, _ in module.named_modules() if n]
    best: tuple[str, ...] = ()
    for depth in range(1, max_depth + 1):
        at = tuple(n for n in names if n.count(".") == depth - 1)
        if len(at) > len(best):
            best = at
        if len(at) >= min_count:
            return at
    return best


def _one_case(name: str, batch: int, prof: Any, device: str, precision: str, strategy: str,
              shapes: Shapes, settings: RunSettings) -> ValidationCase:
    threads = torch.get_num_threads()
    try:
        part, est = predict(name, batch, prof, precision, strategy, shapes)
        meas, prefixes = _measure(name, batch, device, precision, shapes, settings)
    except (DnnmapError, RuntimeError, ValueError, TypeError, NotImplementedError) as e:
        return ValidationCase(name, batch, device, threads, 0.0, 0.0, 0, 0.0, "", {}, 0,
                              load_average(), error_message=f"{type(e).__name__}: {e}")
    share = est.bound_share()
    pred_class, pred_module = predicted_breakdowns(part, est, prefixes)
    worst = sorted(est.subgraphs, key=lambda s: -s.latency_s)[:5]
    host = _host_speed(prof, device)
    return ValidationCase(
        model=name,
        batch=batch,
        device=device,
        threads=meas.threads,
        measured_s=meas.median_s,
        measured_min_s=meas.min_s,
        runs=meas.runs,
        predicted_s=est.latency_s,
        bound=est.bound.value,
        bound_share={b.value: v for b, v in share.items()},
        subgraphs=len(est.subgraphs),
        load_avg=meas.load_avg,
        busy_before=meas.busy_before,
        page_faults=meas.page_faults,
        by_class=merge_breakdowns(pred_class, meas.by_class_s, meas.class_counts),
        by_module=merge_breakdowns(pred_module, meas.by_module_s),
        worst=tuple(SubgraphRow(s.name, s.op_class.value, s.latency_s, s.bound.value, s.explanation)
                    for s in worst),
        capture_path=str(part.graph.meta.get("capture_path", "")),
        unknown_ops=tuple(est.unknown_ops),
        host_speed=host,
        estimate=est,
    )


def _host_speed(prof: Any, device: str) -> dict[str, float]:
    """The host's speed now against ``prof``'s calibration, by yardstick: only for a CPU
    profile that carries the yardsticks and was calibrated on this machine at this thread count
    (else the ratio would measure the setup, not the host's drift); empty otherwise, and when
    the probe itself fails (it is a diagnostic: the case stands without it)."""
    from dnnmap.calibrate.probe import calibrated_probes_us, host_speeds, probe_now_us
    from dnnmap.calibrate.timing import device_name

    cal = calibrated_probes_us(prof) if device == "cpu" else {}
    meta = prof.calibration.meta if cal else None
    if meta is None or meta.threads != torch.get_num_threads() or meta.machine != device_name("cpu"):
        return {}
    try:
        return {k: v.median for k, v in host_speeds(cal, [probe_now_us()]).items()}
    except (RuntimeError, ValueError):
        return {}


def predicted_breakdowns(part: Any, est: Any, prefixes: Sequence[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Predicted seconds per op class and per module prefix (a subgraph goes to the module
    of its first op; ``<other>`` collects what lies outside every prefix)."""
    by_class: dict[str, float] = {}
    by_module: dict[str, float] = {}
    first_module = {sg.id: (sg.modules[0] if sg.modules else "") for sg in part.subgraphs}
    for s in est.subgraphs:
        by_class[s.op_class.value] = by_class.get(s.op_class.value, 0.0) + s.latency_s
        if prefixes:
            path = first_module.get(s.subgraph_id, "")
            key = next((p for p in prefixes if path == p or path.startswith(p + ".")), "<other>")
            by_module[key] = by_module.get(key, 0.0) + s.latency_s
    return by_class, by_module


def repredict(report: ValidationReport, profile: Any, hardware_dirs: Sequence[Any] = (),
              shapes: Shapes | None = None) -> ValidationReport:
    """The same measurements against another profile (e.g. the uncalibrated datasheet one):
    every case is predicted again; nothing is re-run, so both reports share their timings."""
    prof = resolve_profile(profile, hardware_dirs)
    cases = []
    for c in report.cases:
        if not c.ok:
            cases.append(c)
            continue
        part, est = predict(c.model, c.batch, prof, report.precision, report.strategy, shapes)
        pred_class, pred_module = predicted_breakdowns(part, est, tuple(b.key for b in c.by_module))
        measured_class = {b.key: b.measured_s for b in c.by_class}
        counts = {b.key: b.count for b in c.by_class}
        worst = sorted(est.subgraphs, key=lambda s: -s.latency_s)[:5]
        cases.append(replace(
            c, predicted_s=est.latency_s, bound=est.bound.value,
            bound_share={b.value: v for b, v in est.bound_share().items()}, subgraphs=len(est.subgraphs),
            by_class=merge_breakdowns(pred_class, measured_class, counts),
            by_module=merge_breakdowns(pred_module, {b.key: b.measured_s for b in c.by_module}),
            worst=tuple(SubgraphRow(s.name, s.op_class.value, s.latency_s, s.bound.value, s.explanation)
                        for s in worst),
            unknown_ops=tuple(est.unknown_ops),
            host_speed={},  # measured against the first profile's calibration, not this one's
            estimate=est,
        ))
    return replace(report, profile=_profile_name(prof), provenance=_provenance(prof), cases=tuple(cases),
                   notes=profile_notes(prof, report.device))
