"""Measure the device dnnmap runs on and write a calibrated hardware profile.

Microbenchmarks only (GEMM, conv, bandwidth sweeps, tiny-op dispatch, transcendental rates,
thread scaling): no model is ever timed here, so validating models against a calibrated
profile is a held-out test.

>>> from dnnmap.calibrate import calibrate                      # doctest: +SKIP
>>> prof = calibrate(device="cpu", quick=True)                   # doctest: +SKIP
>>> prof.provenance.value, prof.calibration.meta.device          # doctest: +SKIP
('calibrated', 'cpu')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dnnmap.calibrate.collect import Measurements, Progress, collect
from dnnmap.calibrate.plan import Plan, plan_for
from dnnmap.calibrate.profile import build_profile, default_profile_name
from dnnmap.calibrate.quiet import (
    CalibrationDisturbedError,
    LoadMeter,
    LoadPolicy,
    OtherProcessesLoad,
)
from dnnmap.hardware.schema import HardwareProfile
from dnnmap.outputs import check_writable, write_files

__all__ = ["CalibrationDisturbedError", "LoadPolicy", "Measurements", "Plan", "build_profile", "calibrate", "collect", "default_profile_name",
           "plan_for", "profile_yaml", "write_profile"]


def calibrate(
    device: str = "cpu",
    quick: bool = False,
    out: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    base: str | HardwareProfile | None = None,
    force: bool = False,
    progress: Progress | None = None,
    command: str = "",
    allow_busy: bool = False,
    meter: LoadMeter | None = None,
    policy: LoadPolicy = LoadPolicy(),
) -> HardwareProfile:
    """Run the microbenchmarks on ``device`` and return the calibrated profile.

    ``out``: also write it as YAML; an existing file is an error unless ``force`` (checked
    before measuring). ``base``: a profile (or its name) supplying what cannot be measured
    (FMA pipes, power, energy); without one those figures are read from the OS or estimated.

    Other processes loading the machine spoil the measurements: ``meter`` (on a CPU, by
    default :class:`~dnnmap.calibrate.quiet.OtherProcessesLoad`) watches every pass, a disturbed
    pass is run again (``policy``), and if none was quiet :class:`CalibrationDisturbedError` is
    raised and nothing is written, unless ``allow_busy`` (then the profile's notes and source
    say DISTURBED).
    """
    path = Path(out) if out is not None else None
    if path is not None:
        check_writable([path], force, hint="pass force=True / --force")
    if isinstance(base, str):
        from dnnmap.hardware.loader import load_profile

        base = load_profile(base)
    if meter is None and device == "cpu":
        meter = OtherProcessesLoad()
    meas = collect(plan_for(device, quick=quick), progress, meter=meter, policy=policy)
    if meas.disturbed and not allow_busy:
        raise CalibrationDisturbedError(
            f"calibration refused, nothing written: {meas.disturbed}, in every one of "
            f"{len(meas.load_shares)} passes. Calibrate on a quiet machine (or write it anyway, "
            "marked as disturbed, with --allow-busy / allow_busy=True)")
    profile = build_profile(meas, name=name, base=base, command=command or _command(device, quick, out))
    if path is not None:
        write_profile(profile, path, force=force)
    return profile


def _command(device: str, quick: bool, out: Any) -> str:
    return " ".join(["dnnmap calibrate", f"--device {device}", *(["--quick"] if quick else []),
                     *([f"--out {out}"] if out is not None else [])])


def profile_yaml(profile: HardwareProfile) -> str:
    """The profile as YAML in schema field order, with a header saying how it was made."""
    import yaml

    data = profile.model_dump(mode="json", exclude_none=True)
    cal = profile.calibration
    head = [f"# {profile.display_name}: written by `{(cal.meta.command if cal else '') or 'dnnmap calibrate'}`",
            f"# on {cal.meta.machine} at {cal.meta.date}." if cal else "",
            "# Every figure cited 'measured' comes from microbenchmarks only; no model was timed to",
            "# make this file, so validating models against it is a held-out test.",
            f"# WARNING: {cal.meta.notes.split(';')[0]}" if cal and cal.meta.notes.startswith("DISTURBED") else None,
            ""]
    return "\n".join(h for h in head if h is not None) + yaml.safe_dump(data, sort_keys=False, width=110)


def write_profile(profile: HardwareProfile, path: str | os.PathLike[str], force: bool = False) -> Path:
    """The profile as YAML at ``path``, through the one safe writer (:mod:`dnnmap.outputs`)."""
    return write_files({Path(path): profile_yaml(profile)}, force, hint="pass force=True / --force")[0]
