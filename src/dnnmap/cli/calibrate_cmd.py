"""``dnnmap calibrate`` and ``dnnmap validate``: measure this machine, check the predictions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dnnmap.cli.common import (
    CsvOpt,
    ForceOpt,
    HardwareDirOpt,
    InputShapeOpt,
    JsonOpt,
    check_outputs,
    console,
    err_console,
    handle_errors,
    warn,
    write_json,
    write_text,
)
from dnnmap.errors import DnnmapError

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda (the device to measure / run on)")]


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
    app.command("validate")(validate)


def _may_write(path: Path, force: bool) -> bool:
    """Whether ``path`` may be (over)written: it does not exist, ``--force``, or the user says
    yes at a terminal prompt. Asked before the run, so a refusal costs nothing."""
    return check_outputs(path, force=force)


def _warn_if_busy() -> None:
    """Other processes slow microbenchmarks down (OpenMP threads wait for a descheduled peer):
    say so when the 1-minute load already exceeds a quarter of the cores."""
    import os

    from dnnmap.calibrate.timing import load_average

    load, cores = load_average(), os.cpu_count() or 1
    if load > 0.25 * cores:
        warn(f"load average {load:.2f} on {cores} cores: other processes will slow the measurements; "
             "calibrate on a quiet machine for a faithful profile")


@handle_errors
def calibrate(
    device: DeviceOpt = "cpu",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Profile YAML to write (default: ./NAME.yaml)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Profile name (default: from the device, + '-measured')")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Coarse grids, for CI (< 30 s)")] = False,
    base: Annotated[str | None, typer.Option("--base", help="Datasheet profile supplying what cannot be measured (power, energy, FMA pipes), e.g. cloud-x86-2c")] = None,
    force: ForceOpt = False,
    allow_busy: Annotated[bool, typer.Option("--allow-busy", help="Write the profile even if other processes loaded the machine during every pass (marked DISTURBED)")] = False,
    from_measurements: Annotated[Path | None, typer.Option("--from-measurements", help="Import kernel tables measured elsewhere instead of measuring: a generic CSV or a NeuSight kernels/ folder (docs/measurement-formats.md); needs --base")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="With a NeuSight kernels/ folder: the GPU's table name, e.g. Tesla_T4")] = None,
    hardware_dir: HardwareDirOpt = None,
) -> None:
    """Measure this device with microbenchmarks (or import kernel tables measured elsewhere) and
    write a calibrated hardware profile."""
    if from_measurements is not None:
        from dnnmap.cli.measurements_cmd import import_kernels

        import_kernels(from_measurements, base, gpu, out, name, force, tuple(hardware_dir or ()))
        return
    from dnnmap.calibrate import calibrate as api_calibrate
    from dnnmap.calibrate import default_profile_name
    from dnnmap.calibrate.timing import timer_for
    from dnnmap.report.validation import render_calibration, rich_progress

    timer_for(device)  # an unknown device or a missing GPU is an error before anything runs
    name = name or (f"{base}-measured" if base else default_profile_name(device))
    path = out or Path(f"{name}.yaml")
    force = _may_write(path, force)
    _warn_if_busy()
    with rich_progress(f"calibrating {device}") as progress:
        profile = api_calibrate(device=device, quick=quick, out=path, name=name, base=base, force=force,
                                progress=progress, command=" ".join(["dnnmap", *sys.argv[1:]]),
                                allow_busy=allow_busy)
    for r in render_calibration(profile):
        console.print(r)
    if profile.calibration is not None and profile.calibration.meta.notes.startswith("DISTURBED"):
        warn(f"{path} was measured on a busy machine and is marked DISTURBED: "
             f"{profile.calibration.meta.notes.split(';')[0]}")
    err_console.print(f"wrote {path}; use it with: dnnmap validate resnet18 --hardware {path}")


@handle_errors
def validate(
    models: Annotated[list[str] | None, typer.Argument(help="Model names (as for `dnnmap count`)")] = None,
    hardware: Annotated[str | None, typer.Option("--hardware", "-H", help="Profile name or YAML path (from `dnnmap calibrate`); with --measurements: used for every row instead of the row's device")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch sizes, comma-separated: 1,8")] = "1",
    device: DeviceOpt = "cpu",
    precision: Annotated[str, typer.Option("--precision", help="fp32, bf16 or fp16")] = "fp32",
    seq_len: Annotated[int | None, typer.Option("--seq-len", min=1, help="Sequence length (language models)")] = None,
    input_shape: InputShapeOpt = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="At least this many timed runs per case")] = 5,
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0.0, help="And at least this much timed time")] = 1.0,
    hardware_dir: HardwareDirOpt = None,
    json_out: JsonOpt = None,
    csv_out: CsvOpt = None,
    force: ForceOpt = False,
    measurements: Annotated[Path | None, typer.Option("--measurements", help="Compare with end-to-end latencies measured elsewhere instead of running models: a CSV or a NeuSight folder (docs/measurement-formats.md)")] = None,
) -> None:
    """Run each model for real, predict it with the profile, and print predicted vs measured
    (or, with --measurements, predict published measurements)."""
    if measurements is not None:
        from dnnmap.cli.measurements_cmd import validate_measurements

        if models:
            raise DnnmapError("--measurements takes the models from the measurement file: give no model names")
        validate_measurements(measurements, hardware, json_out, csv_out, force, tuple(hardware_dir or ()))
        return
    if not models or hardware is None:
        raise DnnmapError("validate needs model names and --hardware (or --measurements FILE)")
    from dnnmap.report.validation import render_validation, rich_progress
    from dnnmap.validate import RunSettings
    from dnnmap.validate import validate as api_validate

    try:
        batches = tuple(int(b) for b in batch.split(",") if b.strip())
    except ValueError:
        raise DnnmapError(f"--batch takes comma-separated integers, not {batch!r}") from None
    if not batches or min(batches) < 1:
        raise DnnmapError("--batch needs at least one batch size >= 1")
    settings = RunSettings(min_runs=runs, min_seconds=min_seconds)
    with rich_progress("validating") as progress:
        report = api_validate(models, hardware, batches, device=device, precision=precision, seq_len=seq_len,
                              input_shape=input_shape, settings=settings, progress=progress,
                              hardware_dirs=tuple(hardware_dir or ()))
    if json_out is not None:
        write_json(json_out, report.to_dict(), force)
    if csv_out is not None:
        write_text(csv_out, report.to_dataframe().to_csv(index=False), force)
    if str(json_out) != "-" and str(csv_out) != "-":
        for r in render_validation(report):
            console.print(r)
