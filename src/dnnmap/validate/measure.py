"""Run a model for real and time it: warm-up, median of N runs, fixed threads, CUDA events.

Two passes: the timed runs (nothing else attached), then one run under
``torch.profiler`` that attributes time to op classes (each top-level ATen call, classified
with ``dnnmap.ir.classify``) and to modules (``record_function`` ranges opened by forward
hooks). The attributed times are scaled to the timed median, because the profiler itself
adds a few microseconds to every op.

>>> import torch
>>> m = measure_module(torch.nn.Linear(8, 8).eval(), (torch.randn(2, 8),), min_runs=3, min_seconds=0.0)
>>> m.median_s > 0 and m.runs >= 3 and m.threads == torch.get_num_threads()
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch

from dnnmap.calibrate.timing import load_average, timer_for, wait_until_idle
from dnnmap.ir.classify import classify

_MODULE_TAG = "dnnmap.module::"


@dataclass(frozen=True)
class Measurement:
    """A model's measured latency on this device, plus where the profiler saw the time go."""

    device: str
    threads: int
    median_s: float
    min_s: float
    runs: int
    load_avg: float
    by_class_s: Mapping[str, float] = field(default_factory=dict)  # op class -> seconds
    class_counts: Mapping[str, int] = field(default_factory=dict)
    by_module_s: Mapping[str, float] = field(default_factory=dict)  # module path -> seconds
    busy_before: float = math.nan  # share of the CPUs other processes used just before timing
    # minor page faults per run (fresh pages the allocator got from the OS and the kernel
    # zeroed on first touch: a cost of the allocator's state, which no kernel model sees)
    page_faults: float = 0.0


def _call(module: torch.nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return module(**inputs)
    return module(*inputs)


def measure_module(
    module: torch.nn.Module,
    inputs: Any,
    *,
    device: str = "cpu",
    warmup: int = 2,
    min_runs: int = 5,
    min_seconds: float = 1.0,
    max_runs: int = 30,
    attribute: bool = False,
    module_prefixes: tuple[str, ...] = (),
    idle_wait_s: float = 0.0,
) -> Measurement:
    """Median latency of ``module(*inputs)`` under ``torch.inference_mode`` on ``device``.

    ``attribute`` adds the profiled pass; ``module_prefixes`` names the modules whose time
    it reports (e.g. ``("layer1", "layer2")``). ``idle_wait_s`` > 0 first waits (that long at
    most) until other processes leave the CPUs idle.
    """
    timer = timer_for(device)
    module = module.eval()
    busy = wait_until_idle(max_wait_s=idle_wait_s) if idle_wait_s > 0 else math.nan
    load = load_average()
    with torch.inference_mode():
        faults0 = _minor_faults()
        t = timer.time(lambda: _call(module, inputs), min_runs=min_runs, min_seconds=min_seconds,
                       warmup=warmup, max_runs=max_runs)
        faults = (_minor_faults() - faults0) / (t.runs + warmup)
        by_class: dict[str, float] = {}
        counts: dict[str, int] = {}
        by_module: dict[str, float] = {}
        if attribute:
            by_class, counts, by_module, wall = _profile_once(module, inputs, device, module_prefixes)
            by_class = _scaled(by_class, t.median_s / sum(by_class.values()) if by_class else 1.0)
            by_module = _scaled(by_module, t.median_s / wall if wall > 0 else 1.0)
    return Measurement(device, torch.get_num_threads(), t.median_s, t.min_s, t.runs,
                       max(load, load_average()), by_class, counts, by_module, busy, faults)


def _minor_faults() -> int:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):  # pragma: no cover - not POSIX
        return 0


def _scaled(parts: dict[str, float], factor: float) -> dict[str, float]:
    """Profiled times x (timed median / profiled total): the profiler's own per-op cost is
    spread in proportion, so the slices add up to the latency that was timed."""
    return {k: v * factor for k, v in parts.items()}


def _profile_once(
    module: torch.nn.Module, inputs: Any, device: str, prefixes: tuple[str, ...]
) -> tuple[dict[str, float], dict[str, int], dict[str, float], float]:
    """One profiled run: (class seconds, class op counts, module seconds, wall seconds)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    named = dict(module.named_modules())
    with ExitStack() as stack:
        for p in prefixes:
            sub = named.get(p)
            if sub is None:
                continue
            ranges: list[Any] = []
            pre = sub.register_forward_pre_hook(
                lambda _m, _a, p=p, r=ranges: r.append(record_function(_MODULE_TAG + p).__enter__()))
            post = sub.register_forward_hook(
                lambda _m, _a, _o, r=ranges: r.pop().__exit__(None, None, None))
            stack.callback(pre.remove)
            stack.callback(post.remove)
        _call(module, inputs)  # once unprofiled so hooks / allocations are warm
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            _call(module, inputs)
            if device == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
    return (*_attribute(prof.events(), device), wall)


def _attribute(events: Any, device: str) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
    """Top-level ATen calls -> op class; ``record_function`` module ranges -> module."""
    by_class: dict[str, float] = {}
    counts: dict[str, int] = {}
    by_module: dict[str, float] = {}
    for ev in events:
        if ev.name.startswith(_MODULE_TAG):
            us = ev.device_time_total if device == "cuda" else ev.cpu_time_total
            key = ev.name.removeprefix(_MODULE_TAG)
            by_module[key] = by_module.get(key, 0.0) + us / 1e6
            continue
        if not ev.name.startswith("aten::") or _has_aten_ancestor(ev):
            continue
        cls = classify("aten." + ev.name.removeprefix("aten::")).value
        us = ev.device_time_total if device == "cuda" else ev.cpu_time_total
        by_class[cls] = by_class.get(cls, 0.0) + us / 1e6
        counts[cls] = counts.get(cls, 0) + 1
    return by_class, counts, by_module


def _has_aten_ancestor(ev: Any) -> bool:
    p = ev.cpu_parent
    while p is not None:
        if p.name.startswith("aten::"):
            return True
        p = p.cpu_parent
    return False
