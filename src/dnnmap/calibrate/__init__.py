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
from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import HardwareProfile

__all__ = ["Measurements", "Plan", "build_profile", "calibrate", "collect", "default_profile_name",
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
) -> HardwareProfile:
    """Run the microbenchmarks on ``device`` and return the calibrated profile.

    ``out``: also write it as YAML; an existing file is an error unless ``force`` (checked
    before measuring). ``base``: a profile (or its name) supplying what cannot be measured
    (FMA pipes, power, energy); without one those figures are read from the OS or estimated.
    """
    path = Path(out) if out is not None else None
    if path is not None and path.exists() and not force:
        raise DnnmapError(f"{path} exists; not overwriting it (pass force=True / --force)")
    if isinstance(base, str):
        from dnnmap.hardware.loader import load_profile

        base = load_profile(base)
    meas = collect(plan_for(device, quick=quick), progress)
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
            "# make this file, so validating models against it is a held-out test.", ""]
    return "\n".join(h for h in head if h is not None) + yaml.safe_dump(data, sort_keys=False, width=110)


def write_profile(profile: HardwareProfile, path: str | os.PathLike[str], force: bool = False) -> Path:
    p = Path(path)
    if p.exists() and not force:
        raise DnnmapError(f"{p} exists; not overwriting it (pass force=True / --force)")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(profile_yaml(profile), encoding="utf-8")
    return p
