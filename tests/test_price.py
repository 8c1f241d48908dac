"""Cost: a device-hour price (the user's, or the profile's, sourced and dated) -> $ per 1,000
inferences and per million tokens, in analyze, sweep and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app
from dnnmap.errors import HardwareProfileError
from dnnmap.hardware import load_profile
from dnnmap.hardware.loader import SHIPPED_DIR
from dnnmap.hardware.price import cost
from dnnmap.sweep import SweepSpec, run_sweep

TINY = """import torch


def build():
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
"""
PRICED = "price_per_hour_usd: 0.8\n"
SOURCE = '  price_per_hour_usd: "a made-up test price, 2025-06"\n'


def priced_l4(tmp_path: Path, source: str | None = SOURCE) -> Path:
    text = (SHIPPED_DIR / "l4.yaml").read_text().replace("name: l4", "name: priced-l4", 1)
    head, _, tail = text.partition("\nsources:\n")
    hw = tmp_path / "hw"
    hw.mkdir(exist_ok=True)
    (hw / "priced-l4.yaml").write_text(head + "\n" + PRICED + "sources:\n" + (source or "") + tail)
    return hw


def test_cost_arithmetic() -> None:
    c = cost(latency_s=0.002, batch=8, price_per_hour_usd=3.6, seq_len=128, source="me")
    per_sample = 3.6 / 3600 * 0.002 / 8
    assert c["usd_per_1000_inferences"] == pytest.approx(per_sample * 1000)
    assert c["usd_per_million_tokens"] == pytest.approx(per_sample / 128 * 1e6)
    assert cost(0.002, 8, None) == {"price_per_hour_usd": None, "price_source": None,
                                   "usd_per_1000_inferences": None, "usd_per_million_tokens": None}


def test_a_profile_price_needs_a_dated_source(tmp_path: Path) -> None:
    hw = priced_l4(tmp_path)
    assert load_profile("priced-l4", [str(hw)]).price_per_hour_usd == 0.8
    for bad, message in ((None, "no source for price_per_hour_usd"),
                         ('  price_per_hour_usd: "some cloud"\n', r"when \(a year or date\)")):
        d = tmp_path / ("x" if bad is None else "y")
        d.mkdir()
        hw2 = priced_l4(d, bad)
        with pytest.raises(HardwareProfileError, match=message):
            load_profile(str(hw2 / "priced-l4.yaml"))


def test_analyze_prints_and_writes_the_cost(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    hw = priced_l4(tmp_path)
    out = tmp_path / "a.json"
    r = CliRunner().invoke(app, ["analyze", f"{tmp_path / 'tiny.py'}:build", "--input-shape", "64", "-b", "4",
                                 "-H", "priced-l4", "--hardware-dir", str(hw), "--json", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    lat = data["summary"]["latency_s"]
    assert data["cost"]["usd_per_1000_inferences"] == pytest.approx(0.8 / 3600 * lat / 4 * 1000)
    assert data["cost"]["price_source"] == "a made-up test price, 2025-06"
    assert "per 1,000 inferences at $0.8/device-hour" in " ".join(r.output.split())


def test_sweep_has_cost_columns(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    hw = priced_l4(tmp_path)
    spec = SweepSpec(models=[f"{tmp_path / 'tiny.py'}:build"], devices=["priced-l4", "t4"], input_shape="64",
                     hardware_dirs=[str(hw)])
    df = run_sweep(spec, cache=tmp_path / "c", workers=0).frame.set_index("device")
    assert df.loc["priced-l4", "usd_per_1000_inferences"] == pytest.approx(0.8 / 3600 * df.loc["priced-l4", "latency_s"] * 1000)
    assert df["usd_per_1000_inferences"].isna()["t4"]  # no price in the shipped profile: no cost, not a guess
    given = run_sweep(spec, cache=tmp_path / "c", workers=0, price_per_hour=2.0).frame.set_index("device")
    assert given.loc["t4", "usd_per_1000_inferences"] == pytest.approx(2.0 / 3600 * given.loc["t4", "latency_s"] * 1000)
    assert set(given["price_source"]) == {"--price-per-hour"}


def test_compare_has_a_cost_per_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile's price where it has one, nulls where not; --price-per-hour applies to all;
    the text table keeps to 100 columns."""
    from dnnmap.cli import common
    from dnnmap.report.estimate import _usd
    from dnnmap.report.schemas import model_for

    monkeypatch.setattr(common.console, "width", 100)
    (tmp_path / "tiny.py").write_text(TINY)
    hw = priced_l4(tmp_path)
    base = ["compare", f"{tmp_path / 'tiny.py'}:build", "--input-shape", "64", "-b", "4", "--hardware-dir", str(hw),
            "-H", "priced-l4,t4,jetson-agx-orin,a100-sxm4-80gb,cloud-x86-2c,h100-sxm5,kpu-t100,tpu-v5e"]
    out, csv = tmp_path / "c.json", tmp_path / "c.csv"
    r = CliRunner().invoke(app, [*base, "--json", str(out), "--csv", str(csv)])
    assert r.exit_code == 0, r.output
    doc = model_for("compare").model_validate(json.loads(out.read_text()))
    rows = {d["device"]: d for d in doc.model_dump()["devices"]}
    lat = rows["priced-l4"]["latency_s"]
    assert rows["priced-l4"]["usd_per_1000_inferences"] == pytest.approx(0.8 / 3600 * lat / 4 * 1000)
    assert rows["t4"]["usd_per_1000_inferences"] is None and rows["t4"]["price_per_hour_usd"] is None
    import pandas as pd

    assert "usd_per_1000_inferences" in pd.read_csv(csv).columns
    r = CliRunner().invoke(app, [*base, "--price-per-hour", "2", "--json", str(out), "--force"])
    assert r.exit_code == 0, r.output
    rows = {d["device"]: d for d in json.loads(out.read_text())["devices"]}
    assert {d["price_source"] for d in rows.values()} == {"--price-per-hour"}
    assert rows["t4"]["usd_per_1000_inferences"] == pytest.approx(2 / 3600 * rows["t4"]["latency_s"] / 4 * 1000)
    assert "$/1k inf" in r.stdout and _usd(rows["t4"]["usd_per_1000_inferences"]) in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 100 and "…" not in r.stdout
