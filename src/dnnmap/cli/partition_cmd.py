"""``dnnmap partition MODEL --strategy S``: the kernels a compiler would launch, and their parallelism."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnnmap.cli.common import (
    BatchOpt,
    DtypeOpt,
    ForceOpt,
    InputShapeOpt,
    JsonOpt,
    ModelArg,
    SeqLenOpt,
    capture_kwargs,
    check_outputs,
    console,
    handle_errors,
    say,
    write_json,
)

StrategyOpt = Annotated[str, typer.Option("--strategy", "-s", help="unfused, greedy or compiler (default)")]


def register(app: typer.Typer) -> None:
    app.command("partition")(partition)


@handle_errors
def partition(
    model: ModelArg,
    strategy: StrategyOpt = "compiler",
    batch: BatchOpt = None,
    input_shape: InputShapeOpt = None,
    seq_len: SeqLenOpt = None,
    dtype: DtypeOpt = "fp32",
    onchip_budget: Annotated[
        int | None, typer.Option("--onchip-budget", min=1, help="Largest working set of one kernel, bytes")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows of the subgraph table")] = 60,
    dot: Annotated[Path | None, typer.Option("--dot", help="Write Graphviz (and SVG when `dot` is installed)")] = None,
    json_out: JsonOpt = None,
    force: ForceOpt = False,
) -> None:
    """Fuse ops into kernels (subgraphs) and analyse stages, width and critical path."""
    from dnnmap.api import _counted
    from dnnmap.concurrency import analyze as concurrency
    from dnnmap.fusion import partition as fuse
    from dnnmap.fusion import unfused_external_bytes
    from dnnmap.report.partition import dot_paths, partition_to_dict, render_partition, write_dot

    # the very files that will be written (x.svg -> x.dot, + x.svg with graphviz), before the work
    force = check_outputs(*(dot_paths(dot) if dot is not None else ()), json_out, force=force)  # json_out: once more, against the dot files
    counted = _counted(model, **capture_kwargs(batch, input_shape, seq_len, dtype))
    part = fuse(counted, strategy=strategy, onchip_budget_bytes=onchip_budget)
    conc = concurrency(part)
    base = unfused_external_bytes(part)
    if dot is not None:
        for f in write_dot(part, dot, force):
            say(f"wrote {f}")
    if json_out is not None:
        write_json(json_out, partition_to_dict(part, conc, base), force)
    if str(json_out) != "-":
        for r in render_partition(part, conc, top=top, unfused_bytes=base):
            console.print(r)
