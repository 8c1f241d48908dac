"""The partition report: summary numbers, JSON, rich tables, Graphviz, and the CLI command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from dnnmap.cli import partition_cmd
from dnnmap.concurrency import analyze
from dnnmap.fusion import partition
from dnnmap.fusion.toy import attention_block, residual_block
from dnnmap.report.partition import (
    partition_summary,
    partition_to_dict,
    render_partition,
    to_dot,
    write_dot,
)


def _fused():  # noqa: ANN202
    p = partition(residual_block(), "compiler")
    return p, analyze(p)


def test_summary_numbers_come_from_the_partition() -> None:
    p, c = _fused()
    unfused = partition(p.counted, "unfused")
    s = partition_summary(p, c)
    assert (s["ops"], s["subgraphs"], s["view_ops"]) == (10, 3, 0)
    assert s["unfused_bytes"] == unfused.external_bytes
    assert s["external_bytes"] == p.external_bytes
    assert s["traffic_saved"] == pytest.approx(1 - p.external_bytes / unfused.external_bytes)
    assert s["stages"] == 3 and s["max_parallel"] == 1
    assert s["arithmetic_intensity"] == pytest.approx(p.total.flops / p.external_bytes)


def test_json_is_serialisable_and_complete() -> None:
    p, c = _fused()
    d = json.loads(json.dumps(partition_to_dict(p, c)))
    assert len(d["subgraphs"]) == 3
    assert [r["stage"] for r in d["subgraphs"]] == [0, 1, 2]
    assert d["edges"] == [[0, 1], [0, 2], [1, 2]]  # the stem output feeds conv1 and the add
    assert sum(len(r["op_ids"]) for r in d["subgraphs"]) == 10
    assert d["fusion_log"]["fused"]["pointwise epilogue into the GEMM/conv"] == 7


def test_rich_tables_render() -> None:
    p = partition(attention_block(), "compiler")
    console = Console(record=True, width=200)
    for r in render_partition(p, analyze(p), top=2):
        console.print(r)
    text = console.export_text()
    assert "25 (9 views) -> 5" in text
    assert "first 2" in text
    assert "attn: matmul+div+softmax+clone" in text
    assert "linear+gelu" not in text  # row 4 is cut by top=2


def test_dot_has_one_cluster_per_subgraph(tmp_path: Path) -> None:
    p, _ = _fused()
    text = to_dot(p)
    assert text.count("subgraph cluster_") == 3
    assert text.count("->") == (10 - 1) + 1  # a chain of 10 ops, plus the stem relu -> add
    files = write_dot(p, tmp_path / "r.dot")
    assert files[0].read_text() == text
    if shutil.which("dot"):
        assert files[1].suffix == ".svg" and files[1].read_text().lstrip().startswith("<")
    else:
        assert len(files) == 1


def test_cli_command(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    partition_cmd.register(app)
    out = tmp_path / "p.json"
    r = CliRunner().invoke(app, ["partition", "resnet18", "--strategy", "greedy", "--json", str(out),
                                 "--dot", str(tmp_path / "p.dot"), "--top", "3"])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["summary"]["strategy"] == "greedy" and d["summary"]["subgraphs"] == 31
    assert (tmp_path / "p.dot").exists()
    bad = CliRunner().invoke(app, ["partition", "resnet18", "--strategy", "gredy"])
    assert bad.exit_code == 2 and "Did you mean: greedy" in bad.output
