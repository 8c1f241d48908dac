"""Tables for ``dnnmap validate`` and ``dnnmap calibrate``: rich for the terminal, Markdown
for ``docs/validation.md``.

>>> from dnnmap.validate.record import ValidationReport
>>> r = ValidationReport("p", "calibrated", "cpu", "AMD EPYC", 2, "unfused", "fp32", (), "2026-01-01")
>>> "MAPE" in validation_markdown(r) and "median" in validation_markdown(r)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dnnmap.report.units import seconds
from dnnmap.validate.record import Summary, ValidationCase, ValidationReport


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:+.1f} %"


def _share(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f} %"


@contextmanager
def rich_progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr; yields the ``progress(what, done, total)`` callback that
    ``calibrate`` and ``validate`` take."""
    from rich.console import Console

    # descriptions hold model names: never read as markup or emoji codes
    with Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[what]}", markup=False), TimeElapsedColumn(),
                  console=Console(stderr=True, markup=False, emoji=False), transient=True) as bar:
        task = bar.add_task(description, total=None, what="")

        def update(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, what=what)

        yield update


def render_validation(report: ValidationReport, detail: bool = True) -> list[Any]:
    """Header, one row per case, the summary, and for cases off by more than 20 % the
    per-op-class breakdown and the longest predicted subgraphs."""
    out: list[Any] = [Panel(_header(report), title="dnnmap validate", expand=False), _cases_table(report)]
    out.append(_summary_table(report.summary))
    if detail:
        for c in report.cases:
            if c.ok and abs(c.error) > 0.20:
                out.append(_breakdown_table(c))
    return out


def _header(r: ValidationReport) -> Text:
    """Profile, device and notes; user text (names) kept literal, style given as spans."""
    return Text.assemble(
        "profile ", (r.profile, "bold"), f" ({r.provenance}) on {r.device} ", (r.device_name, "bold"),
        f", {r.threads} threads, strategy {r.strategy}, {r.precision}, {r.date}",
        *[("\n" + n, "dim") for n in r.notes],
    )


def _cases_table(r: ValidationReport) -> Table:
    t = Table(title="predicted vs measured latency",
              caption="ops without a cost rule: " + ("; ".join(
                  f"{c.model} b{c.batch}: {', '.join(c.unknown_ops)}" for c in r.cases if c.unknown_ops) or "none"))
    host = _has_host(r)
    if host:
        t.caption += "; host: the host's speed against its calibration when the case ran (compute/memory)"
    for col in ("model", "batch", "measured", "predicted", "error", "bound", "runs", "load", *(("host",) if host else ())):
        t.add_column(col, justify="left" if col in ("model", "bound") else "right", no_wrap=col == "host")
    for c in r.cases:
        if not c.ok:
            t.add_row(c.model, str(c.batch), "-", "-", Text("failed", style="red"), c.error_message[:60], "", "",
                      *(("",) if host else ()))
            continue
        style = "green" if abs(c.error) <= 0.10 else "yellow" if abs(c.error) <= 0.20 else "red"
        t.add_row(c.model, str(c.batch), seconds(c.measured_s), seconds(c.predicted_s),
                  Text(_pct(c.error), style=style), c.bound, str(c.runs), f"{c.load_avg:.2f}",
                  *((_host(c, compact=True),) if host else ()))
    return t


def _summary_table(s: Summary) -> Table:
    t = Table(title="summary")
    for col in ("cases", "median |error|", "MAPE", "within ±10 %", "within ±20 %", "Spearman ρ", "median error"):
        t.add_column(col, justify="right")
    t.add_row(str(s.cases), _share(s.median_abs_error), _share(s.mape), _share(s.within_10),
              _share(s.within_20), "n/a" if math.isnan(s.spearman) else f"{s.spearman:.3f}",
              _pct(s.median_error))
    return t


def _breakdown_table(c: ValidationCase) -> Table:
    t = Table(title=f"{c.model} batch {c.batch}: where the {_pct(c.error)} comes from")
    for col in ("op class", "ops", "measured", "predicted", "error"):
        t.add_column(col, justify="left" if col == "op class" else "right")
    for b in c.by_class:
        t.add_row(b.key, str(b.count), seconds(b.measured_s), seconds(b.predicted_s), _pct(b.error))
    for w in c.worst[:3]:
        t.add_row(Text(f"longest: {w.name}", style="dim"), "", "", seconds(w.predicted_s), Text(w.bound, style="dim"))
    return t


# -- Markdown (docs/validation.md) ------------------------------------------------------------
def summary_markdown(s: Summary) -> str:
    return (
        "| cases | median \\|error\\| | MAPE | within ±10 % | within ±20 % | Spearman ρ | median error |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"| {s.cases} | {_share(s.median_abs_error)} | {_share(s.mape)} | {_share(s.within_10)} | "
        f"{_share(s.within_20)} | {'n/a' if math.isnan(s.spearman) else f'{s.spearman:.3f}'} | "
        f"{_pct(s.median_error)} |\n"
    )


def validation_markdown(r: ValidationReport) -> str:
    """The cases table and the summary of one report as Markdown."""
    lines = [
        f"Profile `{r.profile}` ({r.provenance}), {r.device} {r.device_name}, {r.threads} threads, "
        f"strategy `{r.strategy}`, {r.precision}, {r.date}.",
        "",
        summary_markdown(r.summary),
        "| model | batch | measured | predicted | error | bound (share of predicted time) | page faults / run (≈ time) | load |"
        + (" host speed (compute / memory) |" if _has_host(r) else ""),
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |" + (" ---: |" if _has_host(r) else ""),
    ]
    for c in r.cases:
        if not c.ok:
            lines.append(f"| {c.model} | {c.batch} | – | – | failed | {c.error_message[:80]} | | |"
                         + (" |" if _has_host(r) else ""))
            continue
        share = ", ".join(f"{k} {100 * v:.0f} %" for k, v in sorted(c.bound_share.items(), key=lambda kv: -kv[1]) if v >= 0.005)
        lines.append(f"| {c.model} | {c.batch} | {seconds(c.measured_s)} | {seconds(c.predicted_s)} | "
                     f"{_pct(c.error)} | {share} | {_faults(c, r.fresh_page_s)} | {c.load_avg:.2f} |"
                     + (f" {_host(c)} |" if _has_host(r) else ""))
    return "\n".join(lines) + "\n"


def _has_host(r: ValidationReport) -> bool:
    return any(c.host_speed for c in r.cases)


def _host(c: ValidationCase, compact: bool = False) -> str:
    """``1.05x / 0.93x`` (compact: ``1.05/0.93``): the host's speed against the calibration
    when the case ran, compute / memory."""
    fmt = "{:.2f}" if compact else "{:.2f}x"
    return ("/" if compact else " / ").join(fmt.format(c.host_speed[k]) if k in c.host_speed else "-"
                                            for k in ("compute", "memory"))


def _faults(c: ValidationCase, per_page_s: float) -> str:
    """``12,345 (≈ 8.1 ms, 4 %)``: fresh pages per run and their measured first-touch cost."""
    if c.page_faults < 1:
        return "0"
    if math.isnan(per_page_s):
        return f"{c.page_faults:,.0f}"
    t = c.page_faults * per_page_s
    return f"{c.page_faults:,.0f} (≈ {seconds(t)}, {100 * t / c.measured_s:.0f} %)"


def breakdown_markdown(c: ValidationCase, top: int = 6) -> str:
    """Per-op-class predicted vs measured (profiler-attributed) for one case."""
    lines = [
        f"**{c.model}, batch {c.batch}** (error {_pct(c.error)})",
        "",
        "| op class | ops | measured | predicted | error |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for b in c.by_class[:top]:
        lines.append(f"| {b.key} | {b.count} | {seconds(b.measured_s)} | {seconds(b.predicted_s)} | {_pct(b.error)} |")
    if c.worst:
        lines += ["", "Longest predicted kernels: " + "; ".join(
            f"`{w.name}` {seconds(w.predicted_s)} ({w.bound})" for w in c.worst[:3])]
    return "\n".join(lines) + "\n"


# -- calibration summary ------------------------------------------------------------------
def render_calibration(profile: Any) -> list[Any]:
    """What ``dnnmap calibrate`` measured: peaks, level bandwidths, dispatch and op-kind costs."""
    from dnnmap.report.units import si

    cal = profile.calibration
    head = Table(title=f"{profile.name}: measured on {cal.meta.machine} ({cal.meta.threads} threads), {cal.meta.date}")
    for col in ("figure", "value"):
        head.add_column(col, justify="left" if col == "figure" else "right")
    for prec, tf in profile.peak_tflops.items():
        head.add_row(f"peak {prec.value} (best GEMM / conv)", si(tf * 1e12, "FLOP/s"))
    for m in profile.memory:
        head.add_row(f"{m.name} ({si(m.capacity_bytes * m.instances, 'B')})", si(m.bandwidth_gbps * 1e9, "B/s"))
    for tp in cal.thread_scaling:
        head.add_row(f"GEMM speed-up on {tp.threads} threads", f"{tp.speedup:.2f}x")
    ops = Table(title="per-call dispatch and op-kind rates")
    for col in ("kind", "value"):
        ops.add_column(col, justify="left" if col == "kind" else "right")
    for k, v in sorted(cal.scalars.items()):
        if k.startswith("probe_"):  # the host-speed yardsticks: their own line below
            continue
        if k.startswith("dispatch_cold_") and "_gap_" in k and not k.endswith("_gap_10000_us"):
            continue  # one row per op's cold-path curve (after 10 ms), not its six points
        if k.endswith("_us"):
            ops.add_row(k.removesuffix("_us").replace("_", " "), seconds(v * 1e-6))
        elif k.endswith("_per_s"):
            unit = "FLOP/s" if "flops" in k else "/s"
            ops.add_row(k.removesuffix("_per_s").replace("_", " "), si(v, unit))
    probes = ", ".join(f"{k.removeprefix('probe_').removesuffix('_us')} {seconds(v * 1e-6)}"
                       for k, v in sorted(cal.scalars.items()) if k.startswith("probe_"))
    notes = cal.meta.notes + (f"; host-speed yardsticks: {probes}" if probes else "")
    return [head, ops, Text(notes, style="dim")]
