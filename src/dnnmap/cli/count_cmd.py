"""``dnnmap count MODEL``: totals, per-class and per-module tables, coverage ledger."""

from __future__ import annotations

from typing import Annotated

import typer

from dnnmap.cli.common import (
    BatchOpt,
    CsvOpt,
    DtypeOpt,
    ForceOpt,
    InputShapeOpt,
    JsonOpt,
    ModelArg,
    SeqLenOpt,
    capture_kwargs,
    console,
    handle_errors,
    say,
    write_json,
    write_text,
)


def register(app: typer.Typer) -> None:
    app.command("count")(count)
    app.command("models")(models)


@handle_errors
def count(
    model: ModelArg,
    batch: BatchOpt = None,
    input_shape: InputShapeOpt = None,
    seq_len: SeqLenOpt = None,
    dtype: DtypeOpt = "fp32",
    depth: Annotated[int, typer.Option("--depth", min=1, help="Module depth of the per-module table")] = 1,
    strict: Annotated[bool, typer.Option("--strict", help="Fail if any op has no cost rule")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows of the per-module table")] = 40,
    json_out: JsonOpt = None,
    csv_out: CsvOpt = None,
    force: ForceOpt = False,
) -> None:
    """Count every op's FLOPs, MACs and bytes (captured on fake tensors: no weights, no compute)."""
    from dnnmap.api import count as api_count
    from dnnmap.report.count import render_count

    report = api_count(model, strict=strict, **capture_kwargs(batch, input_shape, seq_len, dtype))
    if json_out is not None:
        write_json(json_out, report.to_dict(depth), force)
    if csv_out is not None:
        write_text(csv_out, report.to_dataframe().to_csv(index=False), force)
    if str(json_out) != "-" and str(csv_out) != "-":
        for r in render_count(report, depth=depth, top=top):
            console.print(r)


@handle_errors
def models(
    contains: Annotated[str | None, typer.Argument(help="Only names containing this")] = None,
) -> None:
    """List the model names dnnmap can build offline."""
    from dnnmap.capture import list_models

    names = [n for n in list_models() if contains is None or contains in n]
    console.print("\n".join(names))
    say(f"{len(names)} models; timm:NAME and path/file.py:factory also work", style="dim", err=False)
