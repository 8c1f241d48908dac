"""``dnnmap`` command line: count, partition, analyze, compare, hardware, calibrate, validate."""

from __future__ import annotations

from typing import Annotated

import typer

from dnnmap.cli import (
    analyze_cmd,
    calibrate_cmd,
    count_cmd,
    generate_cmd,
    hardware_cmd,
    partition_cmd,
    report_cmd,
    schema_cmd,
    sweep_cmd,
    train_cmd,
)
from dnnmap.cli.common import STATE

app = typer.Typer(
    name="dnnmap",
    help="How will this neural network run on that chip, and why.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"dnnmap {version('dnnmap')}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    STATE.debug = debug


count_cmd.register(app)
partition_cmd.register(app)
analyze_cmd.register(app)
hardware_cmd.register(app)
calibrate_cmd.register(app)
train_cmd.register(app)
generate_cmd.register(app)
sweep_cmd.register(app)
report_cmd.register(app)
schema_cmd.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
