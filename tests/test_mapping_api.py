"""map_partition / compare_partition: typed results, errors as DnnmapError, report views."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from rich.console import Console

from dnnmap.errors import DnnmapError
from dnnmap.fusion import partition
from dnnmap.fusion.toy import attention_block, residual_block
from dnnmap.hardware import list_profiles
from dnnmap.mapping import compare_partition, map_partition
from dnnmap.report.estimate import (
    comparison_dataframe,
    estimate_dataframe,
    render_analyze,
    render_compare,
    render_subgraphs,
)


@pytest.fixture(scope="module")
def part():
    return partition(attention_block(batch=2, seq=32, dim=64), "compiler")


def test_estimate_summary_is_consistent(part) -> None:
    e = map_partition(part, "h100-sxm5", precision="fp16", batch=2)
    assert e.batch == 2 and e.precision.value == "fp16" and e.provenance.value == "theoretical"
    assert e.throughput == pytest.approx(2 / e.latency_s)
    assert e.average_power_w == pytest.approx(e.energy_j / e.latency_s)
    assert e.naive_latency_s == pytest.approx(e.flops / e.roofline.peak_flops)
    assert e.roofline.ridge_point == pytest.approx(e.roofline.peak_flops / e.roofline.bandwidth)
    assert sum(e.bound_share().values()) == pytest.approx(1.0)
    json.dumps(e.to_dict())  # JSON-ready
    df = e.to_dataframe()
    assert len(df) == len(part.subgraphs) and {"latency_s", "bound", "explanation"} <= set(df.columns)


def test_compare_equals_mapping_each_device(part) -> None:
    names = ["h100-sxm5", "i7-12700k", "tpu-v5e", "kpu-t2"]
    cmp = compare_partition(part, names, precision="bf16", baseline="i7-12700k")
    for name in names:
        alone = map_partition(part, name, precision="bf16")
        assert cmp[name].latency_s == pytest.approx(alone.latency_s)
        assert cmp.speedup(name) == pytest.approx(cmp["i7-12700k"].latency_s / alone.latency_s)
    df = cmp.to_dataframe()
    assert list(df["device"]) == names and "speedup_vs_i7-12700k" in df.columns
    json.dumps(cmp.to_dict())


def test_bad_input_is_a_clear_error(part) -> None:
    with pytest.raises(DnnmapError, match="precision"):
        map_partition(part, "h100-sxm5", precision="fp12")
    with pytest.raises(DnnmapError, match="h100-sxm"):
        map_partition(part, "h100-sxm")  # unknown device: suggests close names
    with pytest.raises(DnnmapError, match="baseline"):
        compare_partition(part, ["h100-sxm5"], baseline="l4")
    with pytest.raises(DnnmapError, match="streams"):
        map_partition(part, "h100-sxm5", streams=0)
    p = partition(residual_block(), "compiler")
    captured = replace(p, counted=replace(p.counted, graph=replace(p.graph, meta={"batch": 1})))
    with pytest.raises(DnnmapError, match="captured at batch 1"):
        map_partition(captured, "h100-sxm5", batch=8)


def test_renderers(part) -> None:
    e = map_partition(part, "l4", precision="fp16")
    console = Console(width=240, record=True)
    for r in render_analyze(e):
        console.print(r)
    text = console.export_text()
    assert "latency" in text and "naive FLOPs / peak" in text and e.subgraphs[0].name in text
    top = render_subgraphs(e, top=2)
    assert top.row_count == 2
    assert estimate_dataframe(e).shape[0] == len(e.subgraphs)
    cmp = compare_partition(part, list_profiles(), precision="fp16")
    tbl = render_compare(cmp)
    assert tbl.row_count == len(cmp.estimates)
    assert comparison_dataframe(cmp).shape[0] == len(cmp.estimates)
