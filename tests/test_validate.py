"""Validation end to end: calibrate (quick) -> run a model for real -> predict -> compare.

Timings on a shared 2-core machine are noisy, so these tests check structure, the held-out
bookkeeping and the physical bounds of every prediction (no subgraph above the profile's
peak FLOP/s or above the bandwidth of the level serving it), not the size of the error.
The accuracy itself is measured by ``benchmarks/bench_validation.py`` on a quiet machine.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from dnnmap.calibrate import calibrate
from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import HardwareProfile
from dnnmap.validate import HELD_OUT_NOTE, RunSettings, ValidationReport, measure_module, validate

TINY = textwrap.dedent(
    """
    import torch
    from torch import nn

    def tiny():
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Conv2d(16, 32, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(32, 10),
        )
    """
)
FAST = RunSettings(warmup=1, min_runs=3, min_seconds=0.05, max_runs=10)


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> HardwareProfile:
    """One quick calibration of this machine, shared by the tests of this file."""
    from dnnmap.calibrate.quiet import FixedLoad  # beside another pytest worker: a quiet meter

    return calibrate("cpu", quick=True, out=tmp_path_factory.mktemp("cal") / "this-cpu.yaml", meter=FixedLoad([0.0]))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("models") / "tiny.py"
    path.write_text(TINY)
    return f"{path}:tiny"


@pytest.fixture(scope="module")
def report(profile: HardwareProfile, tiny_model: str) -> ValidationReport:
    return validate([tiny_model], profile, batches=(1, 2), input_shape="3,32,32", settings=FAST)


def test_report_structure(report: ValidationReport, profile: HardwareProfile) -> None:
    assert [c.batch for c in report.cases] == [1, 2]
    assert all(c.ok for c in report.cases), [c.error_message for c in report.cases]
    assert report.provenance == "calibrated" and report.profile == profile.name
    assert report.strategy == "unfused"  # eager PyTorch launches every op: nothing fused
    assert report.threads == torch.get_num_threads()
    assert HELD_OUT_NOTE in report.notes
    for c in report.cases:
        assert c.runs >= FAST.min_runs and 0 < c.measured_min_s <= c.measured_s
        # conv, bn, relu, pool, conv, relu, pool, linear (flatten is a view folded in): 8 kernels
        assert c.subgraphs == 8
        assert {b.key for b in c.by_class} >= {"conv", "normalization", "matmul"}
        assert sum(b.measured_s for b in c.by_class) == pytest.approx(c.measured_s, rel=1e-6)
        assert sum(c.bound_share.values()) == pytest.approx(1.0)
    s = report.summary
    assert s.cases == 2 and 0.0 <= s.within_10 <= s.within_20 <= 1.0


def test_each_case_says_how_fast_the_host_ran_against_the_calibration(
        report: ValidationReport, profile: HardwareProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    """The calibration stored both yardsticks; each case timed them again right after it ran.
    The ratio is calibrated time / time now: yardsticks taking twice and half their calibrated
    time read 0.5x and 2x; another thread count than the calibration's gives no ratio; a
    datasheet re-prediction drops the ratios (they were against the calibrated profile); the
    Markdown table gets the column."""
    import dnnmap.calibrate.probe as probe
    from dnnmap.report.validation import validation_markdown
    from dnnmap.validate import repredict
    from dnnmap.validate.run import Shapes, _host_speed

    for c in report.cases:  # real timings on a shared runner: only their presence and sign
        assert set(c.host_speed) == {"compute", "memory"}
        assert all(v > 0 for v in c.host_speed.values()), c.host_speed
    assert json.loads(json.dumps(report.to_dict()))["cases"][0]["host_speed"].keys() == {"compute", "memory"}
    assert "host speed (compute / memory)" in validation_markdown(report)
    cal = probe.calibrated_probes_us(profile)
    monkeypatch.setattr(probe, "probe_now_us", lambda: {"probe_gemm512_us": 2 * cal["probe_gemm512_us"],
                                                        "probe_copy64mib_us": cal["probe_copy64mib_us"] / 2})
    assert _host_speed(profile, "cpu") == {"compute": 0.5, "memory": 2.0}
    assert _host_speed(profile, "cuda") == {}
    monkeypatch.setattr(torch, "get_num_threads", lambda: profile.calibration.meta.threads + 1)
    assert _host_speed(profile, "cpu") == {}
    sheet = repredict(report, "cloud-x86-2c", shapes=Shapes(None, "3,32,32"))
    assert all(c.host_speed == {} for c in sheet.cases)
    assert "host speed" not in validation_markdown(sheet)


def test_no_prediction_exceeds_the_profile(report: ValidationReport, profile: HardwareProfile) -> None:
    """Every subgraph: FLOP/s <= the peak, bytes/s <= the bandwidth of the level it names."""
    peak = max(profile.peak_tflops.values()) * 1e12
    level_bw = {m.name: m.bandwidth_gbps * 1e9 for m in profile.memory}
    for c in report.cases:
        est = c.estimate
        assert est is not None and est.provenance.value == "calibrated"
        for s in est.subgraphs:
            assert s.effective_flops <= peak * (1 + 1e-9), s.name
            assert s.achieved_flops <= peak * (1 + 1e-9), s.name
            assert s.latency_s >= s.roofline_lower_bound_s * (1 - 1e-9), s.name
            assert s.overhead_s > 0  # every eager call pays its dispatch
            for t in s.traffic:
                assert t.bandwidth <= level_bw[t.level] * (1 + 1e-9), (s.name, t.level)


def test_json_and_dataframe(report: ValidationReport) -> None:
    d = json.loads(json.dumps(report.to_dict()))
    assert d["strategy"] == "unfused" and len(d["cases"]) == 2
    assert d["cases"][0]["error"] == pytest.approx(d["cases"][0]["predicted_s"] / d["cases"][0]["measured_s"] - 1)
    df = report.to_dataframe()
    assert list(df["batch"]) == [1, 2] and (df["measured_s"] > 0).all()


def test_a_failing_model_is_reported_not_raised(profile: HardwareProfile) -> None:
    r = validate(["no_such_model_xyz"], profile, settings=FAST)
    assert len(r.cases) == 1 and not r.cases[0].ok and "no_such_model_xyz" in r.cases[0].error_message
    assert r.summary.cases == 0


def test_measure_module_attributes_time_to_op_classes() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    m = measure_module(model, (torch.randn(4, 64),), min_runs=3, min_seconds=0.0, attribute=True,
                       module_prefixes=("0", "1", "2"))
    assert m.class_counts["matmul"] == 2 and m.class_counts["elementwise"] == 1
    assert sum(m.by_class_s.values()) == pytest.approx(m.median_s)
    assert set(m.by_module_s) == {"0", "1", "2"}


def test_cli_validate_json(profile: HardwareProfile, tiny_model: str, tmp_path: Path) -> None:
    from dnnmap.calibrate import write_profile
    from dnnmap.cli.calibrate_cmd import register

    app = typer.Typer()
    register(app)
    prof_path = write_profile(profile, tmp_path / "p.yaml")
    out = tmp_path / "v.json"
    res = CliRunner().invoke(app, ["validate", tiny_model, "--hardware", str(prof_path), "--input-shape",
                                   "3,32,32", "--runs", "3", "--min-seconds", "0.05", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["profile"] == profile.name and data["cases"][0]["model"] == tiny_model
    assert "MAPE" in res.output and "Held-out" in res.output  # single words: survive any terminal width


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_validation_uses_cuda_events(tiny_model: str) -> None:  # pragma: no cover - GPU only
    prof = calibrate("cuda", quick=True)
    r = validate([tiny_model], prof, device="cuda", input_shape="3,32,32", settings=FAST)
    assert r.device == "cuda" and r.cases[0].ok


def test_cuda_is_refused_cleanly_without_a_gpu(tiny_model: str, profile: HardwareProfile) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DnnmapError, match="cuda"):
        validate([tiny_model], profile, device="cuda", input_shape="3,32,32", settings=FAST)


@pytest.mark.slow
def test_real_model_predictions_stay_within_the_profile(profile: HardwareProfile) -> None:
    r = validate(["mobilenet_v3_small"], profile, settings=FAST)
    c = r.cases[0]
    assert c.ok, c.error_message
    peak = max(profile.peak_tflops.values()) * 1e12
    assert all(s.achieved_flops <= peak for s in c.estimate.subgraphs)
    assert c.subgraphs == sum(1 for s in c.estimate.subgraphs)
