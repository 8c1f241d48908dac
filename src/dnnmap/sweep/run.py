"""Run a sweep: look every case up in the cache, ship the missing ones (grouped so each
capture + partition happens once) to the local pool or Ray, cache each result as it arrives.

>>> from dnnmap.sweep.spec import SweepSpec
>>> res = run_sweep(SweepSpec(models=["resnet18"], devices=["l4"]), cache=None, workers=0)  # doctest: +SKIP
>>> res.frame[["device", "latency_s"]]                                                      # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import pandas as pd

from dnnmap.hardware.price import cost, price_of
from dnnmap.sweep import executors
from dnnmap.sweep.cache import SweepCache, case_key
from dnnmap.sweep.spec import Case, Group, SweepSpec, expand, resolve
from dnnmap.sweep.table import frame

Progress = Callable[[int, int], None]  # (cases done, cases in all)


@dataclass
class SweepResult:
    """The table's rows (case order) and how they were obtained."""

    rows: list[dict[str, Any]]
    cases: int
    cached: int  # found in the cache
    computed: int  # computed in this run
    captures: int  # capture + partition runs in this run
    groups: int  # (model, shape, fusion) groups in the sweep
    wall_s: float
    executor: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        return frame(self.rows)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("error")]


def _priced(row: dict[str, Any], profile: Any, given: float | None) -> dict[str, Any]:
    """The row with its cost columns (derived, never cached: a price changes, the case does not)."""
    price, source = price_of(profile, given)
    lat = row.get("latency_s")
    c = cost(lat, row["batch"], price, row.get("seq_len"), source) if lat is not None else cost(0, 1, None)
    return {**row, **c}


def dnnmap_version() -> str:
    try:
        return version("dnnmap")
    except Exception:  # noqa: BLE001 - not installed (source tree)
        return "unknown"


def plan(spec: SweepSpec, lines: dict | None = None, where: str = "") -> list[Group]:
    """Resolve every name (errors name the entry and, for a file, its line) and expand."""
    families, profiles = resolve(spec, lines, where)
    return expand(spec, families, profiles)


def run_sweep(spec: SweepSpec | list[Group], cache: SweepCache | str | None = None, workers: int | None = None,
              ray_address: str | None = None, progress: Progress | None = None,
              price_per_hour: float | None = None) -> SweepResult:
    """Every case of ``spec`` (or of already planned groups), from the cache where it is there.

    ``workers``: local processes (default: one per core, at most one per group; 0 = run in this
    process); ``ray_address``: run on Ray instead (``"local"`` starts a local instance);
    ``price_per_hour``: USD per device-hour for every device (default: each profile's, if any)."""
    t0 = time.perf_counter()
    groups = plan(spec) if isinstance(spec, SweepSpec) else spec
    store = cache if isinstance(cache, SweepCache) else SweepCache(cache)
    ver = dnnmap_version()
    profiles = {name: p for g in groups for name, p in g.profiles}
    order: list[tuple[Case, str]] = [(c, case_key(c, profiles[c.device])) for g in groups for c in g.cases]
    results: dict[str, dict[str, Any]] = {}
    for _, key in order:
        hit = store.get(key)
        if hit is not None:
            results[key] = hit
    tasks = []
    for g in groups:
        missing = tuple(c for c in g.cases if case_key(c, profiles[c.device]) not in results)
        if missing:
            tasks.append((g, missing))
    total, done = len(order), len(results)
    if progress:
        progress(done, total)
    computed = captures = 0
    if tasks:
        if ray_address is not None:
            it, name = executors.run_ray(tasks, ray_address), f"ray ({ray_address})"
        elif workers == 0:
            it, name = executors.run_inline(tasks), "inline"
        else:
            n = min(workers or os.cpu_count() or 1, len(tasks))
            it, name = executors.run_local(tasks, n), f"local pool ({n} processes)"
        for i, res in it:
            g, cases = tasks[i]
            for c, row in zip(cases, res.rows, strict=True):
                key = case_key(c, profiles[c.device])
                row = {**row, "case_key": key, "dnnmap_version": ver}
                if not row.pop("_internal_error", False):
                    store.put(key, row)
                results[key] = row
            computed += res.cases_computed
            captures += res.captures
            done += len(cases)
            if progress:
                progress(done, total)
    else:
        name = "cache"
    rows = [_priced(results[key], profiles[c.device], price_per_hour) for c, key in order]
    return SweepResult(rows, total, total - computed, computed, captures, len(groups),
                       time.perf_counter() - t0, name)
