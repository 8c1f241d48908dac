"""The sweep's one tidy table: one row per case, stable column names whatever the devices.

Columns: the case (``CASE_COLUMNS``), every headline metric of ``Estimate.summary()`` with its
provenance (``METRIC_COLUMNS``; a metric added to the summary later is appended after them,
sorted), what a case costs where a price is known (``COST_COLUMNS``), then ``error`` (why a case has no numbers), ``case_key`` (its cache key) and
``dnnmap_version``.

>>> frame([{"model": "m", "device": "d", "batch": 1, "latency_s": 0.5}]).columns[:3].tolist()
['model', 'device', 'batch']
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pandas as pd

CASE_COLUMNS = ("model", "device", "batch", "seq_len", "precision", "mode", "attn_implementation", "tf32",
                "dtype", "input_shape")
METRIC_COLUMNS = (
    "device_class", "strategy", "provenance", "estimated_share", "unknown_ops", "subgraphs", "streams",
    "latency_s", "throughput_per_s", "utilization", "units_busy", "flops_utilization",
    "energy_per_inference_j", "energy_per_sample_j", "average_power_w", "bound", "flops", "bytes",
    "ridge_point", "naive_latency_s", "naive_error", "host_s", "device_idle_s",
)
COST_COLUMNS = ("price_per_hour_usd", "price_source", "usd_per_1000_inferences", "usd_per_million_tokens")
TAIL_COLUMNS = ("error", "case_key", "dnnmap_version")
INT_COLUMNS = ("batch", "seq_len", "unknown_ops", "subgraphs", "streams", "flops", "bytes")
STR_COLUMNS = ("model", "device", "precision", "mode", "attn_implementation", "tf32", "dtype", "input_shape",
               "device_class",
               "strategy", "provenance", "bound", "price_source", "error", "case_key", "dnnmap_version")


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The fixed columns, then any metric the summary has grown since (sorted)."""
    fixed = [*CASE_COLUMNS, *METRIC_COLUMNS, *COST_COLUMNS, *TAIL_COLUMNS]
    extra = sorted({k for r in rows for k in r if k not in fixed and not k.startswith("_")})
    return [*CASE_COLUMNS, *METRIC_COLUMNS, *extra, *COST_COLUMNS, *TAIL_COLUMNS]


def frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The table with fixed dtypes (nullable integers, float64, strings), so CSV and Parquet
    written from it do not depend on which values happen to be missing."""
    cols = columns(rows)
    df = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
    for c in cols:
        if c in INT_COLUMNS:
            df[c] = pd.array(df[c].tolist(), dtype="Int64")
        elif c in STR_COLUMNS:
            df[c] = pd.array([None if v is None else str(v) for v in df[c]], dtype="string")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.17g", lineterminator="\n")


def to_parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()
