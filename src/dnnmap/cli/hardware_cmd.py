"""``dnnmap hardware list`` and ``dnnmap hardware show NAME``: the device profiles and their sources."""

from __future__ import annotations

from typing import Annotated

import typer

from dnnmap.cli.common import HardwareDirOpt, JsonOpt, console, handle_errors, write_json

hardware_app = typer.Typer(help="Hardware profiles: list them, show one with its sources.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(hardware_app, name="hardware")


@hardware_app.command("list")
@handle_errors
def list_(hardware_dir: HardwareDirOpt = None) -> None:
    """Every profile on the search path (shipped, --hardware-dir, $DNNMAP_HARDWARE_DIR)."""
    from dnnmap.hardware import list_profiles
    from dnnmap.report.hardware import hardware_list_table

    console.print(hardware_list_table(list_profiles(hardware_dir or ())))


@hardware_app.command("show")
@handle_errors
def show(
    name: Annotated[str, typer.Argument(help="Profile name (see `dnnmap hardware list`) or a YAML path")],
    hardware_dir: HardwareDirOpt = None,
    json_out: JsonOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the JSON file if it exists")] = False,
) -> None:
    """One profile: organization, peaks, memory, power, calibration — each figure with its source."""
    from dnnmap.hardware import load_profile
    from dnnmap.report.hardware import hardware_show

    profile = load_profile(name, hardware_dir or ())
    if json_out is not None:
        write_json(json_out, profile.model_dump(mode="json"), force)
        if str(json_out) == "-":
            return
    console.print(hardware_show(profile))
