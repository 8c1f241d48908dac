"""``dnnmap schema KIND``: the JSON Schema of a result's documented layout."""

from __future__ import annotations

from typing import Annotated

import typer

from dnnmap.cli.common import handle_errors


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)


@handle_errors
def schema(kind: Annotated[str, typer.Argument(help="analyze, compare, count, generate, partition, sweep, train, "
                                                  "validate or validate-measurements")] = "analyze") -> None:
    """Print the JSON Schema of a result written with --json (every result carries
    schema_version, kind and dnnmap_version)."""
    from dnnmap.outputs import to_json
    from dnnmap.report.schemas import json_schema

    typer.echo(to_json(json_schema(kind)))
