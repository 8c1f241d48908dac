"""The CLI front door: output, JSON, no overwriting, clear errors with non-zero exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app

runner = CliRunner()

_MODEL = '''
import torch
from torch import nn

def tiny():
    # conv 3->4 (3x3, pad 1) on 8x8, relu, global pool, linear 4->2
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2, bias=False))
'''


@pytest.fixture()
def model_file(tmp_path: Path) -> str:
    p = tmp_path / "tiny_model.py"
    p.write_text(_MODEL)
    return f"{p}:tiny"


def test_count_prints_tables_and_writes_json(model_file: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["count", model_file, "--input-shape", "3,8,8", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "per op class" in res.output
    data = json.loads(out.read_text())
    t = data["totals"]
    conv = 2 * (1 * 4 * 8 * 8) * (3 * 3 * 3)  # 2 * outputs * (Cin * kh * kw)
    fc = 2 * 1 * 4 * 2
    assert t["gemm_conv_flops"] == conv + fc
    assert t["macs"] == (conv + fc) // 2
    assert t["params"] == 4 * 3 * 3 * 3 + 2 * 4
    assert t["unknown_ops"] == 0


def test_json_file_is_not_overwritten_without_force(model_file: str, tmp_path: Path) -> None:
    out = tmp_path / "mine.json"
    out.write_text("precious")
    res = runner.invoke(app, ["count", model_file, "--input-shape", "3,8,8", "--json", str(out)])
    assert res.exit_code != 0
    assert out.read_text() == "precious"
    res = runner.invoke(app, ["count", model_file, "--input-shape", "3,8,8", "--json", str(out), "--force"])
    assert res.exit_code == 0
    assert json.loads(out.read_text())["totals"]["params"] == 4 * 3 * 3 * 3 + 2 * 4


def test_unknown_model_suggests_close_names() -> None:
    res = runner.invoke(app, ["count", "resnet81"])
    assert res.exit_code == 2
    assert "resnet18" in res.output
    assert "Traceback" not in res.output


def test_wrong_input_shape_names_the_module(model_file: str) -> None:
    res = runner.invoke(app, ["count", model_file, "--input-shape", "5,8,8"])
    assert res.exit_code != 0
    assert "0" in res.output and "Conv2d" in res.output  # module '0' (Conv2d) rejected it
    assert "Traceback" not in res.output


def test_debug_shows_the_exception(model_file: str) -> None:
    res = runner.invoke(app, ["--debug", "count", "resnet81"])
    assert res.exit_code != 0
    assert res.exception is not None  # re-raised, so typer/click shows the traceback


def test_partition_json_and_dot(model_file: str, tmp_path: Path) -> None:
    out, dot = tmp_path / "p.json", tmp_path / "p.dot"
    res = runner.invoke(
        app, ["partition", model_file, "--input-shape", "3,8,8", "--strategy", "unfused", "--json", str(out), "--dot", str(dot)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    # conv, relu, pool, linear (+ the flatten view folded into a neighbour) -> 4 kernels unfused
    assert data["summary"]["subgraphs"] == 4
    assert "subgraph cluster_0" in dot.read_text()


def test_analyze_and_compare_json(model_file: str, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    res = runner.invoke(app, ["analyze", model_file, "--input-shape", "3,8,8", "--hardware", "h100-sxm5", "--json", str(out)])
    assert res.exit_code == 0, res.output
    est = json.loads(out.read_text())["summary"]
    assert est["device"] == "h100-sxm5"
    assert est["latency_s"] > 0
    assert est["throughput_per_s"] == 1 / est["latency_s"]  # batch 1
    out2 = tmp_path / "c.json"
    res = runner.invoke(
        app, ["compare", model_file, "--input-shape", "3,8,8", "--hardware", "h100-sxm5,kpu-t2", "--json", str(out2)]
    )
    assert res.exit_code == 0, res.output
    cmp = json.loads(out2.read_text())
    assert [e["device"] for e in cmp["devices"]] == ["h100-sxm5", "kpu-t2"]


def test_unknown_hardware_suggests_close_names(model_file: str) -> None:
    res = runner.invoke(app, ["analyze", model_file, "--input-shape", "3,8,8", "--hardware", "h100-sxm"])
    assert res.exit_code == 2
    assert "h100-sxm5" in res.output


def test_hardware_list_and_show() -> None:
    res = runner.invoke(app, ["hardware", "list"])
    assert res.exit_code == 0 and "kpu-t2" in res.output
    res = runner.invoke(app, ["hardware", "show", "kpu-t2"])
    assert res.exit_code == 0 and "seed summary" in res.output


def test_analyze_mode_and_host_timeline_in_json(model_file: str, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    res = runner.invoke(app, ["analyze", model_file, "--input-shape", "3,8,8", "--hardware", "a100-pcie-40gb",
                              "--mode", "eager", "--host-dispatch-us", "25", "--json", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())["summary"]
    assert s["mode"] == "eager" and s["strategy"] == "unfused"
    # a tiny model: every ATen op (views included) is one 25 us dispatch; the device waits for them
    from dnnmap.api import capture_graph

    ops = len(capture_graph(model_file, input_shape="3,8,8").ops)
    assert s["host_s"] == pytest.approx(ops * 25e-6)
    assert s["bound"] == "host"
    assert "unknown_ops" in s and 0 <= s["estimated_share"] <= 1


def test_analyze_refuses_bad_mode_and_a_host_profile_without_measurements(model_file: str) -> None:
    res = runner.invoke(app, ["analyze", model_file, "--input-shape", "3,8,8", "--hardware", "a100-pcie-40gb",
                              "--mode", "jit"])
    assert res.exit_code != 0 and "execution mode" in res.output
    res = runner.invoke(app, ["analyze", model_file, "--input-shape", "3,8,8", "--hardware", "a100-pcie-40gb",
                              "--host-profile", "h100-sxm5"])
    assert res.exit_code != 0 and "no measured per-op dispatch" in res.output


def test_analyze_stored_weights_shrink_memory(tmp_path: Path) -> None:
    """--weights int8 stores matmul weights in one byte (plus scales): less memory than fp32."""
    outs = {}
    for w in (None, "int8"):
        out = tmp_path / f"{w}.json"
        args = ["analyze", "hf:gpt2", "--hardware", "l4", "--seq-len", "16", "--json", str(out)]
        res = runner.invoke(app, args + (["--weights", w] if w else []))
        assert res.exit_code == 0, res.output
        outs[w] = json.loads(out.read_text())["summary"]
    # GPT-2's block matmul weights: 12 layers x (768x2304 + 768x768 + 2 x 768x3072) fp32 -> int8
    matmul = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072)
    saved = outs[None]["memory_bytes"] - outs["int8"]["memory_bytes"]
    assert 0.9 * 3 * matmul <= saved <= 3 * matmul  # 3 of every 4 bytes saved, less the scales
