"""Measurements taken elsewhere: ``calibrate --from-measurements`` and ``validate --measurements``.

Called from :mod:`dnnmap.cli.calibrate_cmd`; formats in ``docs/measurement-formats.md``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from rich.table import Table
from rich.text import Text

from dnnmap.cli.common import check_outputs, console, err_console, write_json, write_text
from dnnmap.errors import DnnmapError


def import_kernels(path: Path, base: str | None, gpu: str | None, out: Path | None, name: str | None,
                   force: bool, hardware_dirs: tuple[str, ...] = ()) -> None:
    """``dnnmap calibrate --from-measurements PATH --base PROFILE``: read, check, then write."""
    from dnnmap.calibrate.imports import import_profile, imported_profile_yaml
    from dnnmap.hardware.loader import load_profile

    if base is None:
        raise DnnmapError("--from-measurements needs --base PROFILE (the datasheet profile of the measured device)")
    base_profile = load_profile(base, hardware_dirs)
    name = name or f"{base_profile.name}-imported"
    target = out or Path(f"{name}.yaml")
    force = check_outputs(target, force=force)  # before reading anything big
    profile = import_profile(path, base_profile, gpu=gpu, name=name, command=" ".join(["dnnmap", *sys.argv[1:]]))
    write_text(target, imported_profile_yaml(profile), force)
    cal = profile.calibration
    assert cal is not None
    t = Table(title=f"{profile.name}: imported kernel tables")
    t.add_column("table")
    t.add_column("points", justify="right")
    for label, per in (("gemm", cal.gemm_points), ("bmm", cal.bmm_points)):
        for prec, pts in per.items():
            t.add_row(f"{label} {prec.value}", str(len(pts)))
    for kind, per in cal.conv_points.items():
        for prec, pts in per.items():
            t.add_row(f"conv {kind.value} {prec.value}", str(len(pts)))
    for op, bpts in cal.op_bandwidth.items():
        t.add_row(f"bandwidth {op}", str(len(bpts)))
    console.print(t)
    console.print(Text(cal.describe(), style="dim"))
    err_console.print(f"use it with: dnnmap validate --measurements FILE --hardware {target}")


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:+.1f} %"


def _share(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f} %"


def validate_measurements(path: Path, hardware: str | None, json_out: Path | None, csv_out: Path | None,
                          force: bool, hardware_dirs: tuple[str, ...] = ()) -> None:
    """``dnnmap validate --measurements PATH``: predict every published case, print the statistics."""
    from dnnmap.report.validation import rich_progress
    from dnnmap.validate.published import validate_published

    force = check_outputs(json_out, csv_out, force=force)
    with rich_progress("validating") as progress:
        report = validate_published(path, hardware, hardware_dirs, progress=progress)
    if json_out is not None:
        write_json(json_out, report.to_dict(), force, kind="validate-measurements")
    if csv_out is not None:
        import pandas as pd

        rows = [{**{k: getattr(c, k) for k in ("label", "model", "batch", "seq_len", "mode", "device", "profile",
                                                "provenance", "measured_s", "predicted_s", "bound", "source")},
                 "error": c.error} for c in report.cases]
        write_text(csv_out, pd.DataFrame(rows).to_csv(index=False), force)
    if str(json_out) == "-" or str(csv_out) == "-":
        return
    cases = Table(title=f"predicted vs measured: {path}")
    for col in ("case", "profile", "measured", "predicted", "error", "bound"):
        cases.add_column(col, justify="left" if col in ("case", "profile", "bound") else "right")
    for c in report.cases:
        style = "green" if abs(c.error) <= 0.10 else "yellow" if abs(c.error) <= 0.20 else "red"
        cases.add_row(c.label, f"{c.profile} ({c.provenance})", f"{c.measured_s * 1e3:.4g} ms",
                      f"{c.predicted_s * 1e3:.4g} ms", Text(_pct(c.error), style=style), c.bound)
    console.print(cases)
    summary = Table(title="summary")
    for col in ("profile", "cases", "median |error|", "MAPE", "within ±10 %", "within ±20 %", "Spearman ρ",
                "median error"):
        summary.add_column(col, justify="left" if col == "profile" else "right")
    per = report.by_profile()
    for label, s in [*per.items(), *([("all", report.summary)] if len(per) > 1 else [])]:
        summary.add_row(label, str(s.cases), _share(s.median_abs_error), _share(s.mape), _share(s.within_10),
                        _share(s.within_20), "n/a" if math.isnan(s.spearman) else f"{s.spearman:.3f}",
                        _pct(s.median_error))
    console.print(summary)
    for note in (*report.notes, *(f"skipped {s}" for s in report.skipped)):
        console.print(Text(note, style="dim"))
