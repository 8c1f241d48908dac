"""``dnnmap report MODEL --hardware NAME --html FILE``: one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnnmap.cli.analyze_cmd import PrecisionOpt, PriceOpt
from dnnmap.cli.common import (
    AttnOpt,
    BatchOpt,
    DtypeOpt,
    ForceOpt,
    HardwareDirOpt,
    InputShapeOpt,
    ModelArg,
    ModeOpt,
    SeqLenOpt,
    Tf32Opt,
    capture_kwargs,
    check_outputs,
    handle_errors,
    write_text,
)


def register(app: typer.Typer) -> None:
    app.command("report")(report)


@handle_errors
def report(
    model: ModelArg,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Profile name (dnnmap hardware list) or YAML path")],
    html_out: Annotated[Path, typer.Option("--html", help="The HTML file to write")],
    batch: BatchOpt = 1,
    precision: PrecisionOpt = "fp32",
    mode: ModeOpt = "compiled",
    attn_implementation: AttnOpt = None,
    tf32: Tf32Opt = "default",
    input_shape: InputShapeOpt = None,
    seq_len: SeqLenOpt = None,
    dtype: DtypeOpt = "fp32",
    price_per_hour: PriceOpt = None,
    hardware_dir: HardwareDirOpt = None,
    force: ForceOpt = False,
) -> None:
    """Summary, sortable per-kernel table, plots, provenance and coverage ledger in one HTML file
    (inline SVG, CSS and JS; it loads nothing from the network)."""
    from dnnmap.api import analyze as api_analyze
    from dnnmap.hardware import load_profile
    from dnnmap.hardware.price import cost, price_of
    from dnnmap.report.html import report_html

    force = check_outputs(html_out, force=force) or force
    dirs = [str(d) for d in hardware_dir or ()]
    profile = load_profile(hardware, dirs)
    kw = capture_kwargs(batch, input_shape, seq_len, dtype)
    kw.pop("batch")
    est = api_analyze(model, profile, batch=batch, precision=precision, mode=mode,
                      attn_implementation=attn_implementation, tf32=tf32, **kw)
    price, source = price_of(profile, price_per_hour)
    write_text(html_out, report_html(est, profile, cost=cost(est.latency_s, est.batch, price, seq_len, source)), force)
