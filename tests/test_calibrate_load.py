"""Calibration is refused, retried or marked when the machine is loaded; plans time GEMMs big
enough for their peaks; validate only compares a profile with the device it describes."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dnnmap.calibrate import CalibrationDisturbedError, calibrate
from dnnmap.calibrate.collect import collect
from dnnmap.calibrate.plan import MIN_PEAK_FLOPS, GemmGrid, Plan, plan_for
from dnnmap.calibrate.quiet import FixedLoad, LoadPolicy, OtherProcessesLoad

TINY = Plan(device="cpu", gemm_fp32=GemmGrid("float32", m=(8,), n=(8,), k=(8,)), gemm_other=(), convs=(),
            bandwidth_bytes=(4096,), runs=1, warmup=0, min_seconds=0.0, cold_gaps_us=(100,), cold_samples=1)
NO_WAIT = LoadPolicy(max_share=0.15, retries=2, idle_wait_s=0.0)


def test_a_disturbed_pass_is_thrown_away_and_run_again() -> None:
    meter = FixedLoad([0.9, 0.0])
    meas = collect(TINY, meter=meter, policy=NO_WAIT)
    assert meas.load_shares == (0.9, 0.0) and not meas.disturbed
    assert meter.calls == 2


def test_only_the_clean_passes_are_combined() -> None:
    """Three passes wanted, the second disturbed: it is thrown away and a retry runs; the points
    are the median of the three clean passes, and the count is recorded."""
    seen: list[tuple[int, int]] = []
    meas = collect(replace(TINY, passes=3), meter=FixedLoad([0.0, 0.9, 0.0, 0.0]), policy=NO_WAIT,
                   progress=lambda what, done, total: seen.append((done, total)))
    assert meas.load_shares == (0.0, 0.9, 0.0, 0.0) and not meas.disturbed
    assert meas.passes_combined == 3
    assert len(meas.gemm) == 1  # one grid point, one combined result
    assert seen[-1][0] == seen[-1][1]  # the progress bar ends full, the retry's steps counted


def test_the_thread_speed_up_is_timed_in_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """One slow moment of a vCPU must not set every vector op's rate: the speed-up is timed in
    each pass (retries included) and the passes' median kept."""
    import sys

    import torch

    from dnnmap.calibrate.microbench import ScalarPoint

    col = sys.modules["dnnmap.calibrate.collect"]

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    two = iter([2.0, 1.0, 2.0, 1.9])  # seconds on 2 threads, pass by pass: pass 2 is the slow moment
    monkeypatch.setattr(col, "thread_scaling", lambda timer, counts, runs: [
        ScalarPoint("threads.1.gemm512", 3.6, "s"), ScalarPoint("threads.2.gemm512", next(two), "s")])
    meas = collect(replace(TINY, passes=3), meter=FixedLoad([0.0, 0.0, 0.9, 0.0]), policy=NO_WAIT)
    assert meas.scalar("threads.2.gemm512") == 1.9  # median of the clean passes 2.0, 1.0, 1.9


def test_every_pass_disturbed_is_reported() -> None:
    meas = collect(TINY, meter=FixedLoad([0.6]), policy=NO_WAIT)
    assert meas.load_shares == (0.6, 0.6, 0.6)  # one pass + two retries
    assert "60 %" in meas.disturbed
    assert meas.passes_combined == 3  # nothing clean: all three attempts, marked disturbed


def test_a_loaded_calibration_is_refused_and_nothing_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dnnmap.calibrate as cal

    monkeypatch.setattr(cal, "plan_for", lambda device, quick=False: TINY)
    out = tmp_path / "cpu.yaml"
    with pytest.raises(CalibrationDisturbedError, match="nothing written.*allow-busy"):
        calibrate("cpu", out=out, meter=FixedLoad([0.7]), policy=NO_WAIT)
    assert not out.exists()
    # insisting writes it, marked so that nobody mistakes it for a faithful profile
    prof = calibrate("cpu", out=out, meter=FixedLoad([0.7]), policy=NO_WAIT, allow_busy=True)
    assert prof.calibration.meta.notes.startswith("DISTURBED")
    assert "DISTURBED" in prof.sources["calibration"] and "WARNING: DISTURBED" in out.read_text()
    # ... and validate says so in its header
    from dnnmap.validate.run import profile_notes

    assert any("DISTURBED" in n for n in profile_notes(prof, "cpu"))


def test_the_real_meter_sees_a_concurrent_cpu_hog() -> None:
    """A busy loop in another process shows up as other processes' share; this process's
    own work does not."""
    meter = OtherProcessesLoad()
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
    try:
        meter.start()
        x = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:  # this process busy too: not counted as "others"
            x += 1
        loaded = meter.share()
    finally:
        hog.wait()
    import os

    assert loaded >= 0.5 / (os.cpu_count() or 1)  # one of the CPUs, give or take the scheduler


def test_cli_refuses_a_disturbed_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import dnnmap.calibrate as cal
    from dnnmap.cli.main import app

    monkeypatch.setattr(cal, "plan_for", lambda device, quick=False: TINY)
    monkeypatch.setattr(cal, "OtherProcessesLoad", lambda: FixedLoad([0.8]))
    monkeypatch.setattr(sys.modules["dnnmap.calibrate.collect"], "wait_until_idle", lambda **k: 0.0)
    out = tmp_path / "c.yaml"
    res = CliRunner().invoke(app, ["calibrate", "--out", str(out)])
    assert res.exit_code == 2 and "nothing written" in res.stderr and not out.exists(), res.output
    res = CliRunner().invoke(app, ["calibrate", "--out", str(out), "--allow-busy"])
    assert res.exit_code == 0 and "DISTURBED" in res.stderr and out.exists(), res.output


@pytest.mark.parametrize(("device", "quick"), [("cpu", True), ("cpu", False), ("cuda", True), ("cuda", False)])
def test_every_gemm_grid_reaches_a_peak_sized_problem(device: str, quick: bool) -> None:
    """The peak of a precision is the best point of its grid: each grid needs a GEMM big
    enough (bf16 on one 32x64x64 GEMM measured 60x below torch's bf16 rate)."""
    plan = plan_for(device, quick=quick)
    for grid in (plan.gemm_fp32, *plan.gemm_other):
        largest = max(2 * m * n * k for m, n, k in grid.points())
        assert largest >= MIN_PEAK_FLOPS, (grid.dtype, largest)


# -- validate: the profile must describe what is timed ------------------------------------------------
@pytest.mark.parametrize("profile", ["h100-sxm5", "tpu-v4"])
def test_validate_refuses_a_profile_of_another_device_class(profile: str) -> None:
    from dnnmap.errors import DnnmapError
    from dnnmap.validate import validate

    t0 = time.perf_counter()
    with pytest.raises(DnnmapError, match=rf"{profile}.*--device cpu"):
        validate(["resnet18"], profile, device="cpu")
    assert time.perf_counter() - t0 < 5  # before any model runs


def test_header_claims_microbenchmarks_only_when_the_calibration_says_so() -> None:
    from dnnmap.calibrate.timing import device_name
    from dnnmap.hardware import load_profile
    from dnnmap.validate.record import HELD_OUT_NOTE
    from dnnmap.validate.run import profile_notes

    datasheet = load_profile("cloud-x86-2c")
    assert HELD_OUT_NOTE not in profile_notes(datasheet, "cpu")
    assert "datasheet" in profile_notes(datasheet, "cpu")[0]
    shipped = Path(__file__).parents[1] / "calibrated" / "cloud-x86-2c-measured.yaml"
    if shipped.exists():
        from dnnmap.hardware.loader import load_file

        prof = load_file(shipped)
        notes = profile_notes(prof, "cpu")
        here = prof.calibration.meta.machine == device_name("cpu")
        assert (HELD_OUT_NOTE in notes) == here
