"""``dnnmap sweep``: models x devices x batch x precision x seq_len x mode -> one tidy table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from dnnmap.cli.common import (
    CsvOpt,
    DtypeOpt,
    ForceOpt,
    HardwareDirOpt,
    InputShapeOpt,
    JsonOpt,
    check_outputs,
    console,
    err_console,
    handle_errors,
    say,
    write_files_said,
    write_json,
    write_text,
)
from dnnmap.errors import DnnmapError

RayOpt = Annotated[str | None, typer.Option(
    "--ray", metavar="[ADDRESS]",
    help="Run on Ray: a cluster's HOST:PORT, ray://HOST:PORT or auto; alone, a local Ray instance",
)]


LOCAL_RAY = "local"  # = dnnmap.sweep.LOCAL_RAY (not imported here: the CLI starts without pandas)


class _OptionalRayAddress(TyperCommand):
    """``--ray`` with its address optional: alone (last, or before another option) it means a
    local Ray instance (click's ``flag_value`` does not survive typer)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, a in enumerate(args):
            out.append(a)
            if a == "--":
                out += args[i + 1:]
                break
            if a == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                out.append(LOCAL_RAY)
        return super().parse_args(ctx, out)


def register(app: typer.Typer) -> None:
    app.command("sweep", cls=_OptionalRayAddress)(sweep)


def _ints(text: str | None, what: str) -> list[int | None] | None:
    if text is None:
        return None
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part.lower() in ("none", ""):
            out.append(None)
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise DnnmapError(f"--{what}: {part!r} is not a whole number (give e.g. 1,8,32)") from None
    return out


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


@handle_errors
def sweep(
    models: Annotated[list[str] | None, typer.Argument(help="Models (as for analyze); or give --file")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="YAML sweep file: models, devices, batch, precision, seq_len, mode (see README)")] = None,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Comma-separated profiles, or 'all'")] = "all",
    batch: Annotated[str, typer.Option("--batch", "-b", help="Comma-separated batch sizes")] = "1",
    precision: Annotated[str, typer.Option("--precision", "-p", help="Comma-separated precisions")] = "fp32",
    seq_len: Annotated[str | None, typer.Option("--seq-len", help="Comma-separated sequence lengths "
                                                "(language models; vision models keep their image size)")] = None,
    mode: Annotated[str, typer.Option("--mode", "-m", help="Comma-separated: eager, compiled, cudagraph")] = "compiled",
    attn_implementation: Annotated[str | None, typer.Option("--attn-implementation")] = None,
    tf32: Annotated[str, typer.Option("--tf32")] = "default",
    input_shape: InputShapeOpt = None,
    dtype: DtypeOpt = "fp32",
    hardware_dir: HardwareDirOpt = None,
    cache: Annotated[Path, typer.Option("--cache", help="Directory of cached results")] = Path(".dnnmap-cache"),
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compute every case; read and write no cache")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=0, help="Local processes (default: one per "
                                                "core; 0: in this process)")] = None,
    ray: RayOpt = None,
    price_per_hour: Annotated[float | None, typer.Option("--price-per-hour", min=0, help="USD per device-hour for "
                                                         "every device (default: each profile's, if it has one)")] = None,
    csv_out: CsvOpt = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", help="Write the table as Parquet to FILE")] = None,
    json_out: JsonOpt = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write latency/throughput-vs-batch plots to DIR")] = None,
    force: ForceOpt = False,
) -> None:
    """Many scenarios x devices in one table, each capture shared by every device; cached."""
    from dnnmap.sweep import SweepCache, SweepSpec, load_sweep_file, plan, run_sweep

    if parquet is not None:
        force = check_outputs(parquet, force=force) or force
    if plot is not None:
        from dnnmap.report.plots import check_plot_dir

        check_plot_dir(plot)
    if file is not None and models:
        raise DnnmapError("give models on the command line or a --file, not both")
    if file is not None:
        spec, lines = load_sweep_file(file)
        groups = plan(spec, lines, where=str(file))
    elif models:
        spec = SweepSpec(models=models, devices=_names(hardware), batch=_ints(batch, "batch"),
                         precision=_names(precision), seq_len=_ints(seq_len, "seq-len") or [None], mode=_names(mode),
                         attn_implementation=attn_implementation, tf32=tf32, dtype=dtype, input_shape=input_shape,
                         hardware_dirs=[str(d) for d in hardware_dir or ()])
        groups = plan(spec)
    else:
        raise DnnmapError("name at least one model, or give a sweep --file")
    store = SweepCache(None if no_cache else cache)
    result = _run(groups, store, workers, ray, run_sweep, price_per_hour)
    _outputs(spec, result, csv_out, parquet, json_out, plot, force)


def _run(groups: list[Any], store: Any, workers: int | None, ray: str | None, run_sweep: Any,
         price: float | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("cases"),
                  TimeElapsedColumn(), console=err_console, transient=False) as bar:
        task = bar.add_task("sweep", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return run_sweep(groups, cache=store, workers=workers, ray_address=ray, progress=progress,
                         price_per_hour=price)


def _outputs(spec: Any, result: Any, csv_out: Path | None, parquet: Path | None, json_out: Path | None,
             plot: Path | None, force: bool) -> None:
    from dnnmap.report.sweep import render_sweep, sweep_to_dict
    from dnnmap.sweep import to_csv, to_parquet

    df = result.frame
    if csv_out is not None:
        write_text(csv_out, to_csv(df), force)
    if parquet is not None:
        write_files_said({parquet: to_parquet(df)}, force)
    if json_out is not None:
        write_json(json_out, sweep_to_dict(spec, result), force)
    if plot is not None:
        from dnnmap.report.plots import sweep_plots

        write_files_said(sweep_plots(df, plot), force=True)
    if "-" not in (str(csv_out), str(json_out)):
        console.print(render_sweep(df))
    say(f"{result.cases} cases: {result.cached} from the cache, {result.computed} computed "
        f"({result.captures} captures for {result.groups} model shapes) in {result.wall_s:.1f} s, {result.executor}")
    if result.errors:
        say(f"{len(result.errors)} case(s) have no numbers; the 'error' column says why")
