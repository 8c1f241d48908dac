"""Every JSON result parses with a strict parser, and sizes up to 10**12 elements stay exact.

JSON has no Infinity / NaN: an undefined figure (the naive error of a model with no FLOPs, a
rank correlation of one case) is ``null`` with a ``<key>_why`` beside it. Counts are Python
integers end to end: no int64 on the way to a table wraps around (``count hf:llama-3-8b
--batch 1000000`` printed negative bytes from a pandas int64 sum).
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnmap.costs import count_graph
from dnnmap.fusion import partition
from dnnmap.fusion.toy import GraphBuilder, attention_block, encoder_stack, residual_block
from dnnmap.outputs import json_safe, to_json
from dnnmap.report.count import CountReport


def strict_loads(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _mlp(rows: int, width: int, out: int) -> object:
    b = GraphBuilder("mlp")
    x = b.input((rows, width))
    h = b.op("aten.relu.default", [b.linear(x, out, "fc1")], module="act")
    return b.build([h])


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 10**6), width=st.integers(1, 10**6), out=st.integers(1, 10**6))
def test_sizes_up_to_1e12_elements_stay_exact(rows: int, width: int, out: int) -> None:
    report = CountReport(count_graph(_mlp(rows, width, out)))
    t = report.totals()
    assert t["flops"] == 2 * rows * width * out + rows * out + rows * out  # GEMM + bias + relu
    for frame in (report.per_class(), report.per_module(), report.to_dataframe()):
        for col in ("flops", "bytes_read", "bytes_written"):
            assert all(isinstance(v, int) and v >= 0 for v in frame[col])
        assert sum(frame["flops"]) == t["flops"]
        assert sum(frame["bytes_read"]) == t["bytes_read"]
    strict_loads(to_json(report.to_dict()))


def test_sums_past_int64_do_not_wrap() -> None:
    """An attention block at batch 10**9 x seq 8192 reads more than 2**63 bytes in total."""
    report = CountReport(count_graph(attention_block(batch=10**9, seq=8192, dim=4096, heads=32)))
    t = report.totals()
    assert t["bytes_read"] > 2**63
    pc = report.per_class()
    assert sum(pc["bytes_read"]) == t["bytes_read"] and min(pc["bytes_read"]) >= 0
    data = strict_loads(to_json(report.to_dict()))
    assert sum(r["bytes_read"] for r in data["per_class"]) == t["bytes_read"]


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 64), seq=st.integers(1, 256), layers=st.integers(1, 3),
       strategy=st.sampled_from(["unfused", "greedy", "compiler"]))
def test_partition_and_estimate_json_is_strict(batch: int, seq: int, layers: int, strategy: str) -> None:
    from dnnmap.concurrency import analyze
    from dnnmap.fusion import unfused_external_bytes
    from dnnmap.mapping import compare_partition, map_partition
    from dnnmap.report.estimate import comparison_to_dict, estimate_to_dict
    from dnnmap.report.partition import partition_to_dict

    part = partition(count_graph(encoder_stack(layers, batch=batch, seq=seq)), strategy=strategy)
    strict_loads(to_json(partition_to_dict(part, analyze(part), unfused_external_bytes(part))))
    strict_loads(to_json(estimate_to_dict(map_partition(part, "h100-sxm5", batch=batch))))
    cmp = compare_partition(part, ["cloud-x86-2c", "tpu-v4"], batch=batch)
    strict_loads(to_json(comparison_to_dict(cmp)))


def test_zero_flop_model_has_null_naive_error_and_says_why() -> None:
    from dnnmap.mapping import map_partition
    from dnnmap.report.estimate import estimate_to_dict, render_analyze

    b = GraphBuilder("views")
    y = b.view(b.input((4, 8)), (32,))
    part = partition(count_graph(b.build([y])))
    est = map_partition(part, "h100-sxm5")
    d = strict_loads(to_json(estimate_to_dict(est)))
    assert d["summary"]["naive_error"] is None and "no FLOPs" in d["summary"]["naive_error_why"]
    assert render_analyze(est)  # the text renders "n/a", not "infx"


def test_validation_report_json_is_strict_with_nan_inside() -> None:
    from dnnmap.validate.record import ValidationReport

    r = ValidationReport("p", "theoretical", "cpu", "x", 2, "unfused", "fp32", (), "2026-01-01")
    assert math.isnan(r.fresh_page_s)
    d = strict_loads(to_json(r.to_dict()))
    assert d["fresh_page_s"] is None and d["fresh_page_s_why"]


@given(st.recursive(st.floats() | st.integers() | st.text(max_size=3) | st.none(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                    max_leaves=20))
def test_json_safe_always_gives_strict_json(data: object) -> None:
    strict_loads(to_json(json_safe(data)))


def test_the_one_writer_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="naive_error"):
        to_json({"naive_error": float("inf")})


def test_residual_block_report_roundtrips() -> None:
    strict_loads(to_json(CountReport(count_graph(residual_block())).to_dict()))
