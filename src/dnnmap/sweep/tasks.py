"""The unit of work a sweep ships to a worker (local process or Ray): one :class:`Group` in,
one row per case out. Capture and partition run once; every case maps that partition.

A task is a plain picklable function of plain data, so the local pool and Ray run exactly
the same code and return the same rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.sweep.spec import Case, Group


@dataclass(frozen=True)
class TaskResult:
    """The rows of one group (in its case order), and what was computed to make them."""

    rows: tuple[dict[str, Any], ...]
    cases_computed: int
    captures: int
    wall_s: float


def _clean(x: Any) -> Any:
    """Plain JSON values: enums -> str, non-finite floats -> None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "value") and not isinstance(x, (int, float, str)):
        return x.value
    return x


def _row(case: Case, summary: dict[str, Any] | None, error: str | None, internal: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = dict(asdict(case))
    for k, v in (summary or {}).items():
        if k not in row:
            row[k] = _clean(v)
    row["error"] = error
    if internal:
        row["_internal_error"] = True  # not cached: a rerun tries again
    return row


def _error(e: Exception) -> tuple[str, bool]:
    if isinstance(e, DnnmapError):
        return str(e), False
    return f"internal error: {type(e).__name__}: {e}", True


def run_group(group: Group, cases: tuple[Case, ...] | None = None) -> TaskResult:
    """Capture + count + partition ``group``'s model once, then map ``cases`` (default: all
    of the group's) onto their devices."""
    from dnnmap.pipeline import Scenario, estimate_on, prepare

    t0 = time.perf_counter()
    todo = group.cases if cases is None else cases
    profiles = dict(group.profiles)
    first = todo[0]
    try:
        base = Scenario(group.model, batch=group.batch, seq_len=group.seq_len, dtype=group.dtype,
                        input_shape=group.input_shape,
                        mode=first.mode, attn_implementation=group.attn_implementation, tf32=first.tf32)
        prep = prepare(base)
    except Exception as e:  # the whole group fails the same way
        msg, internal = _error(e)
        rows = tuple(_row(c, None, msg, internal) for c in todo)
        return TaskResult(rows, len(todo), 1, time.perf_counter() - t0)
    rows = []
    for c in todo:
        try:
            s = base.with_(precision=c.precision, mode=c.mode, tf32=c.tf32)
            est = estimate_on(replace(prep, scenario=s), profiles[c.device])
            rows.append(_row(c, est.summary(), None))
        except Exception as e:
            msg, internal = _error(e)
            rows.append(_row(c, None, msg, internal))
    return TaskResult(tuple(rows), len(todo), 1, time.perf_counter() - t0)
