"""Tables for ``dnnmap analyze`` (per-subgraph table + summary) and ``dnnmap compare``.

Thin: every number comes from :class:`dnnmap.mapping.Estimate` / ``Comparison``; this module
only formats. ``render_*`` return rich renderables; ``*_to_dict`` / ``*_dataframe`` give
JSON / CSV-ready views.

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import residual_block
>>> from dnnmap.mapping import map_partition
>>> est = map_partition(partition(residual_block()), "h100-sxm5")
>>> [type(r).__name__ for r in render_analyze(est)]
['Table', 'Table']
>>> estimate_dataframe(est).shape[0] == len(est.subgraphs)
True
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.text import Text

from dnnmap.mapping import Bound, Comparison, Estimate
from dnnmap.outputs import json_safe
from dnnmap.report.units import percent, seconds, si


def joules(value: float) -> str:
    """``joules(0.000595) == '595 uJ'`` (units.si has no sub-unit prefixes)."""
    for scale, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return "0 J"


_BOUND_STYLE = {Bound.COMPUTE: "green", Bound.MEMORY: "yellow", Bound.OVERHEAD: "red", Bound.POWER: "magenta",
                Bound.HOST: "red"}


# why a figure is undefined: JSON gets null and this reason, never Infinity / NaN
NULL_WHY = {
    "naive_error": "the model has no FLOPs: the naive FLOPs / peak estimate is 0 s, so the ratio is undefined",
    "arithmetic_intensity": "no bytes moved: FLOPs per byte is undefined",
}


def estimate_to_dict(est: Estimate) -> dict[str, Any]:
    """JSON-ready: summary, notes, one record per subgraph (with its schedule slot), and on many
    devices the plan (:func:`parallel_record`)."""
    d = est.to_dict()
    par = parallel_record(est)
    if par is not None:
        d["parallel"] = par
    return json_safe(d, NULL_WHY)


_PARALLEL_KEYS = ("plan", "devices", "dp", "tp", "pp", "ep", "microbatches", "microbatch", "latency_s",
                  "throughput_per_s", "period_s", "bubble_s", "compute_s", "communication_s", "tp_comm_s",
                  "tp_all_reduce_s", "all_reduces", "ep_comm_s", "ep_all_to_all_s", "all_to_alls", "send_s", "stage_s")


def parallel_record(est: Estimate) -> dict[str, Any] | None:
    """The plan of a multi-device estimate (``schema analyze``'s ``parallel``); None on one device."""
    p = est.meta.get("parallel")
    if not p:
        return None
    return {**{k: p[k] for k in _PARALLEL_KEYS}, "memory_per_device": dict(est.meta.get("memory_per_device", {}))}


def plan_rows(ests: list[Estimate]) -> list[dict[str, Any]]:
    """``--plan auto``'s ranking: one record per plan, best first."""
    out = []
    for e in ests:
        p = parallel_record(e) or {}
        mem = p.get("memory_per_device", {})
        out.append({"plan": p.get("plan", "1 device"), "devices": p.get("devices", 1), "latency_s": e.latency_s,
                    "throughput_per_s": p.get("throughput_per_s", e.throughput), "bubble_s": p.get("bubble_s", 0.0),
                    "communication_s": p.get("communication_s", 0.0),
                    "memory_bytes": mem.get("memory_bytes", e.meta.get("memory_bytes")), "fits": e.meta.get("fits")})
    return json_safe(out, NULL_WHY)


def render_plans(ests: list[Estimate]) -> Any:
    """``--plan auto``'s runners-up as a table."""
    from rich.table import Table

    t = Table(title="--plan auto: fastest request first, then the most throughput (the first is detailed above)")
    for col in ("plan", "latency ms", "throughput /s", "bubble ms", "comm ms", "memory GB / device"):
        t.add_column(col, justify="right")
    for r in plan_rows(ests):
        t.add_row(r["plan"], f"{r['latency_s'] * 1e3:.3f}", f"{r['throughput_per_s']:.1f}", f"{r['bubble_s'] * 1e3:.3f}",
                  f"{r['communication_s'] * 1e3:.3f}", f"{(r['memory_bytes'] or 0) / 1e9:.2f}")
    return t


def estimate_dataframe(est: Estimate) -> pd.DataFrame:
    """One row per subgraph (the CSV of ``dnnmap analyze``)."""
    return est.to_dataframe()


def comparison_costs(cmp: Comparison, profiles: dict[str, Any], given: float | None,
                     seq_len: int | None = None) -> dict[str, dict[str, Any]]:
    """Device -> cost record (:func:`dnnmap.hardware.price.cost`): ``given`` (``--price-per-hour``)
    for every device, else each profile's own sourced price, else nulls."""
    from dnnmap.hardware.price import cost, price_of

    out = {}
    for e in cmp.estimates:
        price, source = price_of(profiles.get(e.device), given)
        out[e.device] = cost(e.latency_s, e.batch, price, seq_len, source)
    return out


def comparison_rows(cmp: Comparison, costs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One record per device with names that do not depend on the devices compared
    (``speedup_vs_baseline`` and ``baseline``, not ``speedup_vs_<device>``); with ``costs``,
    each row also carries the cost fields (null where the device has no price)."""
    out = []
    for row in cmp.rows():
        row["speedup_vs_baseline"] = row.pop(f"speedup_vs_{cmp.baseline}")
        row["baseline"] = cmp.baseline
        par = parallel_record(cmp[row["device"]])
        if par is not None:  # every device under one plan: its figures per device
            row.update(plan=par["plan"], devices=par["devices"], communication_s=par["communication_s"],
                       bubble_s=par["bubble_s"], memory_per_device_bytes=par["memory_per_device"].get("memory_bytes"),
                       fits_per_device=par["memory_per_device"].get("fits"))
        if costs is not None:
            row.update(costs[row["device"]])
        out.append(row)
    return out


def comparison_to_dict(cmp: Comparison, costs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return json_safe({"baseline": cmp.baseline, "devices": comparison_rows(cmp, costs)}, NULL_WHY)


def _naive(x: float) -> str:
    return f"{x:,.1f}x" if math.isfinite(x) else "n/a (no FLOPs)"


def comparison_dataframe(cmp: Comparison, costs: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per device (the CSV of ``dnnmap compare``)."""
    return pd.DataFrame(comparison_rows(cmp, costs))


def _summary_rows(est: Estimate) -> list[tuple[str, str]]:
    share = est.bound_share()
    rf = est.roofline
    rows = [
        ("device", f"{est.device} ({est.device_class})"),
        ("precision / batch / mode", f"{est.precision.value} / {est.batch} / {est.mode} ({est.strategy} kernels)"
         + (f", {est.meta['attention']} attention" if est.meta.get("attention") else "")),
        ("figures", f"{est.provenance.value}" + (f", weights in {est.meta['weights_in']}" if est.meta.get("weights_in") else "")
         + f"; {percent(est.estimated_share, 0)} of kernel time rests on estimated figures"),
        ("ops without a cost rule", ", ".join(est.unknown_ops) if est.unknown_ops else "none"),
        ("kernels (subgraphs)", f"{len(est.subgraphs)}" + (f" on {est.streams} streams" if est.streams > 1 else "")),
        ("latency", seconds(est.latency_s)),
        ("throughput", f"{est.throughput:,.1f} inferences/s"),
        ("utilization (time-weighted)", percent(est.utilization)),
        ("units busy (time-weighted)", percent(est.units_busy)),
        ("achieved / peak FLOP/s", percent(est.flops_utilization, 2)),
        ("energy per inference", f"{joules(est.energy_j)} ({joules(est.energy_per_sample_j)} per sample)"),
        ("average power", f"{est.average_power_w:,.1f} W"),
        *([("host timeline", f"{seconds(est.host_s)} issuing kernels; device waits {seconds(est.device_idle_s)}"
            + (" (host-bound)" if est.bound is Bound.HOST else ""))] if est.host_s else []),
        ("time by bound", ", ".join(f"{b.value} {percent(share[b], 0)}" for b in Bound if b is not Bound.HOST)),
        ("roofline", f"peak {si(rf.peak_flops, 'FLOP/s')}, {rf.memory_level} {si(rf.bandwidth, 'B/s')}, ridge {rf.ridge_point:.1f} FLOP/B"),
        ("naive FLOPs / peak", f"{seconds(est.naive_latency_s)}  (mapped latency is {_naive(est.naive_error)} longer)"),
    ]
    rows += [("note", n) for n in est.notes]
    return rows


def render_summary(est: Estimate) -> Any:
    from rich.table import Table

    tbl = Table(title=f"{est.model} on {est.device} — summary", show_header=False, box=None)
    tbl.add_column(style="bold")
    tbl.add_column()
    for label, value in _summary_rows(est):
        tbl.add_row(label, value)
    return tbl


def _shown(est: Estimate, top: int | None) -> list[Any]:
    subs = list(est.subgraphs)
    if top is not None and top < len(subs):
        keep = {s.subgraph_id for s in sorted(subs, key=lambda s: -s.latency_s)[:top]}
        subs = [s for s in subs if s.subgraph_id in keep]
    return subs


def render_explanations(est: Estimate, top: int | None = None) -> Any:
    """``analyze --explain``: why each kernel takes its time, one wrapped paragraph per kernel
    (long; always in the JSON as ``explanation``)."""
    from rich.table import Table

    tbl = Table(title="why (per subgraph)", show_header=False, box=None, padding=(0, 1))
    tbl.add_column(justify="right", no_wrap=True)
    tbl.add_column(overflow="fold")
    for s in _shown(est, top):
        tbl.add_row(str(s.subgraph_id), s.explanation)
    return tbl


def render_subgraphs(est: Estimate, top: int | None = None) -> Any:
    """Per-subgraph table in schedule order; ``top`` keeps the N slowest (order preserved)."""
    from rich.table import Table

    subs = _shown(est, top)
    title = f"per subgraph ({len(est.subgraphs)} kernels)"
    if len(subs) < len(est.subgraphs):
        title += f", the {top} slowest"
    tbl = Table(title=title)
    for col in ("#", "subgraph", "units", "util", "compute", "memory", "overhead", "latency", "bound", "energy"):
        tbl.add_column(col, justify="left" if col in ("subgraph", "bound") else "right",
                       no_wrap=col != "subgraph", overflow="fold", min_width=12 if col == "subgraph" else None)
    for s in subs:
        tbl.add_row(
            str(s.subgraph_id), s.name, f"{s.units_allocated}/{s.units_total} {s.unit}", percent(s.utilization, 0),
            seconds(s.compute_s), seconds(s.memory_s), seconds(s.overhead_s), seconds(s.latency_s),
            Text(s.bound.value, style=_BOUND_STYLE[s.bound]), joules(s.energy_j),
        )
    return tbl


def render_analyze(est: Estimate, top: int | None = None, explain: bool = False) -> list[Any]:
    """``dnnmap analyze``: the per-subgraph table, then the summary."""
    return [render_subgraphs(est, top), *([render_explanations(est, top)] if explain else []), render_summary(est)]


def _short(x: float, small_digits: int = 1) -> str:
    """``_short(105881.8) == '105,882'``, ``_short(55.54) == '55.5'``: no digits a table cannot spare."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{small_digits}f}"


def _usd(x: float | None) -> str:
    """``_usd(0.0421) == '0.0421'``, ``_usd(1.33e-05) == '1.33e-5'``: short enough for 100 columns."""
    if x is None:
        return "-"
    return f"{x:.3g}" if x == 0 or abs(x) >= 1e-3 else f"{x:.2e}".replace("e-0", "e-")


def render_compare(cmp: Comparison, costs: dict[str, dict[str, Any]] | None = None) -> Any:
    """``dnnmap compare``: one row per device, side by side; fits 100 columns without cutting a
    name or a number (device class, units busy and provenance are in --json / --csv; figures
    shows only when some device's are not theoretical; with a price, $/1k inf replaces x naive)."""
    from rich import box
    from rich.table import Table

    first = cmp.estimates[0]
    provs = {e.provenance.value for e in cmp.estimates}
    tbl = Table(title=f"{first.model}: batch {first.batch}, {first.precision.value}, {first.strategy} fusion; "
                f"speed-up vs {cmp.baseline}", box=box.SIMPLE_HEAD, pad_edge=False)
    priced = costs is not None and any(c["price_per_hour_usd"] is not None for c in costs.values())
    # with a price, $ per 1,000 inferences takes the place of x naive (still in --json / --csv)
    cols = ["device", "latency", "per s", "util", "energy/inf", "power", "bound",
            "$/1k inf" if priced else "x naive", "speed-up"]
    cols += ["figures"] if provs != {"theoretical"} else []
    for c in cols:
        tbl.add_column(c, justify="left" if c in ("device", "bound", "figures") else "right", no_wrap=True)
    for e in cmp.estimates:
        tbl.add_row(
            e.device, seconds(e.latency_s), _short(e.throughput), percent(e.utilization, 0), joules(e.energy_j),
            f"{e.average_power_w:,.0f} W", Text(e.bound.value, style=_BOUND_STYLE[e.bound]),
            _usd(costs[e.device]["usd_per_1000_inferences"]) if priced and costs
            else _short(e.naive_error) + "x" if math.isfinite(e.naive_error) else "n/a",
            _short(cmp.speedup(e.device), 2) + "x",
            *([e.provenance.value] if "figures" in cols else []),
        )
    return tbl
