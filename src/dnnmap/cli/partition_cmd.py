"""``dnnmap partition MODEL --strategy S``: the kernels a compiler would launch, and how many
can run at once. The lead registers it: ``partition_cmd.register(app)``."""

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
    console,
    err_console,
    handle_errors,
    write_json,
)


def register(app: typer.Typer) -> None:
    app.command("partition")(partition)


@handle_errors
def partition(
    model: ModelArg,
    strategy: Annotated[str, typer.Option("--strategy", "-s", help="unfused, greedy or compiler")] = "compiler",
    budget: Annotated[
        int | None, typer.Option("--budget", min=1, help="On-chip memory budget in bytes: no kernel's working set beyond it")
    ] = None,
    batch: BatchOpt = 1,
    input_shape: InputShapeOpt = None,
    seq_len: SeqLenOpt = None,
    dtype: DtypeOpt = "fp32",
    top: Annotated[int, typer.Option("--top", min=0, help="Rows of the subgraph table (0: all)")] = 60,
    json_out: JsonOpt = None,
    dot: Annotated[Path | None, typer.Option("--dot", help="Write Graphviz to FILE (and FILE.svg when `dot` is installed)")] = None,
    force: ForceOpt = False,
) -> None:
    """Fuse ops into kernels (subgraphs): table, DRAM traffic saved, stages, critical path."""
    from dnnmap.api import partition as api_partition
    from dnnmap.concurrency import analyze
    from dnnmap.fusion import parse_strategy
    from dnnmap.report.partition import partition_to_dict, render_partition, write_dot

    parse_strategy(strategy)  # a misspelt strategy fails before the capture
    p = api_partition(model, strategy=strategy, onchip_budget_bytes=budget,
                      **capture_kwargs(batch, input_shape, seq_len, dtype))
    conc = analyze(p)
    if json_out is not None:
        write_json(json_out, partition_to_dict(p, conc), force)
    if dot is not None:
        if dot.exists() and not force:
            raise_exists(dot)
        for f in write_dot(p, dot):
            err_console.print(f"wrote {f}")
    if str(json_out) != "-":
        for r in render_partition(p, conc, top=top or None):
            console.print(r)


def raise_exists(path: Path) -> None:
    from dnnmap.errors import DnnmapError

    raise DnnmapError(f"{path} exists; not overwriting it (use --force)")
