"""``dnnmap validate --measurements``: predictions vs end-to-end latencies measured elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app
from dnnmap.errors import DnnmapError
from dnnmap.validate.published import (
    neusight_case,
    read_measurements,
    read_neusight,
    validate_published,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "measurements" / "neusight"
TINY = """import torch


def build():
    return torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 256))
"""
HEADER = "model,batch,seq_len,input_shape,mode,precision,device,measured_ms,source"
# made-up latencies of a made-up model: this checks the plumbing and the statistics, not accuracy
ROWS = ["tiny.py:build,8,,256,eager,fp32,t4,0.2,a test fixture",
        "tiny.py:build,64,,256,eager,fp32,l4,0.25,a test fixture"]


def write_case(tmp_path: Path, header: str = HEADER, rows: list[str] = ROWS) -> Path:
    (tmp_path / "tiny.py").write_text(TINY)
    f = tmp_path / "measured.csv"
    f.write_text("\n".join([header, *rows]) + "\n")
    return f


def test_validate_measurements_prints_the_statistics_and_writes_json(tmp_path: Path, monkeypatch) -> None:
    from dnnmap.cli import common

    # the consoles fix their width when first imported (COLUMNS of whatever test came first)
    monkeypatch.setattr(common.console, "width", 200)
    monkeypatch.setattr(common.err_console, "width", 200)
    f = write_case(tmp_path)
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, ["validate", "--measurements", str(f), "--json", str(out)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for stat in ("median |error|", "MAPE", "within ±10 %", "within ±20 %", "Spearman", "median error"):
        assert stat in r.output
    data = json.loads(out.read_text())
    assert [c["profile"] for c in data["cases"]] == ["t4", "l4"]
    assert data["summary"]["cases"] == 2
    c = data["cases"][0]
    assert c["error"] == pytest.approx(c["predicted_s"] / c["measured_s"] - 1)
    assert data["summary"]["spearman"] is None  # fewer than three cases: null, with its reason


def test_hardware_overrides_the_row_devices_and_model_side_is_shared(tmp_path: Path) -> None:
    f = write_case(tmp_path, rows=[*ROWS, "tiny.py:build,8,,256,eager,fp32,h100-pcie,0.2,a test fixture"])
    rep = validate_published(f, hardware="t4")
    assert {c.profile for c in rep.cases} == {"t4"}
    assert rep.cases[0].predicted_s == pytest.approx(rep.cases[2].predicted_s)  # same scenario, same device


@pytest.mark.parametrize(("header", "rows", "expect"), [
    ("model,batch,seq_len,mode,precision,device,source", ["tiny.py:build,8,,eager,fp32,t4,x"], "missing column(s) 'measured_ms'"),
    (HEADER.replace("measured_ms", "measured_s"), ["tiny.py:build,8,,256,eager,fp32,t4,0.0002,x"], "column 'measured_s'"),
    (HEADER, ["tiny.py:build,8,,256,eager,fp32,t4,0,x"], "row 2, column 'measured_ms': must be > 0"),
    (HEADER, [ROWS[0], "tiny.py:build,8,,256,eager,fp32,t4,-3,x"], "row 3, column 'measured_ms': must be > 0"),
    (HEADER, ["tiny.py:build,8,,256,eager,fp32,t4,0.000002,x"], "row 2, column 'measured_ms'"),  # seconds
    (HEADER, ["tiny.py:build,eight,,256,eager,fp32,t4,0.2,x"], "row 2, column 'batch': 'eight' is not a number"),
    (HEADER, ["tiny.py:build,8,,256,eager,fp32,no-such-gpu,0.2,x"], "row 2, column 'device'"),
    (HEADER, ["missing.py:build,8,,256,eager,fp32,t4,0.2,x"], "row 2, column 'model': unknown model"),
    (HEADER, ["tiny.py:build,8,,256,jit,fp32,t4,0.2,x"], "row 2, column 'mode'"),
])
def test_bad_measurement_files_name_file_row_and_column_and_write_nothing(
        tmp_path: Path, header: str, rows: list[str], expect: str) -> None:
    f = write_case(tmp_path, header, rows)
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, ["validate", "--measurements", str(f), "--json", str(out)], env={"COLUMNS": "300"})
    assert r.exit_code != 0
    flat = " ".join(r.output.split())
    assert str(f) in flat and expect in flat, r.output
    assert not out.exists()


def test_a_units_mix_up_found_by_the_prediction_is_refused(tmp_path: Path) -> None:
    # 200 s for a 0.03 ms model: milliseconds written as microseconds (x 1000)
    f = write_case(tmp_path, rows=["tiny.py:build,8,,256,eager,fp32,t4,200000,x"])
    with pytest.raises(DnnmapError, match=r"row 2, column 'measured_ms'.*units"):
        validate_published(f)


def test_neusight_label_names() -> None:
    assert neusight_case("gpt3_27-inf-2048-8.json") == ("gpt3_27", 2048, 8, "eager")
    assert neusight_case("opt_13-inf-2048-2-fusion.json") == ("opt_13", 2048, 2, "compiled")
    assert neusight_case("gpt2_large-train-1024-4-dp4.json") is None


def test_neusight_layout_fixture(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "bert_tiny.json").write_text(json.dumps({"model_type": "bert"}))
    gpu = tmp_path / "e2e" / "Tesla_T4"
    gpu.mkdir(parents=True)
    (gpu / "bert_tiny-inf-32-2.json").write_text(json.dumps({"e2e_latency": 1.5}))
    (gpu / "bert_tiny-train-32-2.json").write_text(json.dumps({"e2e_latency": 4.5}))
    (gpu / "switchxl4-inf-512-1.json").write_text(json.dumps({"e2e_latency": 9.0}))
    rows, skipped = read_measurements(tmp_path)
    (row,) = rows
    assert (row.device, row.batch, row.seq_len, row.mode, row.measured_s) == ("t4", 2, 32, "eager", 1.5e-3)
    assert row.model.endswith("bert_tiny.json@BertForSequenceClassification")
    assert (row.attn_implementation, row.tf32, row.precision) == ("eager", "off", "fp32")
    assert len(skipped) == 2
    (gpu / "bert_tiny-inf-32-4.json").write_text(json.dumps({"e2e_latency": -1}))
    with pytest.raises(DnnmapError, match="bert_tiny-inf-32-4.json: field 'e2e_latency': must be > 0"):
        read_measurements(tmp_path)


@pytest.mark.skipif(not (SHARED / "e2e").is_dir(), reason="no ../shared/measurements")
def test_reads_every_neusight_inference_label() -> None:
    rows, skipped = read_neusight(SHARED)
    assert {r.device for r in rows} == {"a100-pcie-40gb", "v100-pcie-32gb", "t4", "p100-pcie-16gb", "p4"}
    assert all(r.measured_s > 0 for r in rows)
    assert any("switchxl4" in s for s in skipped) and any("train" in s for s in skipped)
    assert {r.mode for r in rows} == {"eager", "compiled"}
