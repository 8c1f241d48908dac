"""``dnnmap sweep``'s terminal table and JSON document (the table itself is
:mod:`dnnmap.sweep.table`).

>>> import pandas as pd
>>> type(render_sweep(pd.DataFrame([{"model": "m", "device": "d", "batch": 1, "seq_len": None,
...     "precision": "fp32", "mode": "eager", "latency_s": 1e-3, "throughput_per_s": 1e3,
...     "energy_per_inference_j": 0.1, "bound": "memory", "error": None}]))).__name__
'Table'
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from dnnmap.report.envelope import envelope
from dnnmap.report.units import seconds


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _str(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else str(v)


def render_sweep(df: pd.DataFrame) -> Any:
    """One line per case; fits 100 columns (long model names wrap in their own column)."""
    from rich.table import Table

    tbl = Table(title=f"sweep: {len(df)} cases")
    for c in ("model", "device", "batch", "seq", "prec.", "mode", "latency", "per s", "energy/inf", "bound"):
        tbl.add_column(c, justify="right" if c in ("batch", "seq", "latency", "per s", "energy/inf") else "left",
                       overflow="fold")
    for r in df.to_dict("records"):
        lat, thr, en = _num(r.get("latency_s")), _num(r.get("throughput_per_s")), _num(r.get("energy_per_inference_j"))
        err = _str(r.get("error"))
        tbl.add_row(
            _str(r["model"]), _str(r["device"]), _str(r["batch"]), _str(r.get("seq_len")), _str(r["precision"]),
            _str(r["mode"]), seconds(lat) if lat is not None else "-", f"{thr:,.4g}" if thr is not None else "-",
            f"{en:.3g} J" if en is not None else "-", _str(r.get("bound")) if not err else "error",
        )
    return tbl


def sweep_to_dict(spec: Any, result: Any) -> dict[str, Any]:
    """The JSON document of a sweep: the spec, how it ran and one record per case."""
    return envelope("sweep", {
        "spec": spec.model_dump(),
        "stats": {"cases": result.cases, "cached": result.cached, "computed": result.computed,
                  "captures": result.captures, "groups": result.groups, "wall_s": result.wall_s,
                  "executor": result.executor},
        "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in result.rows],
    })
