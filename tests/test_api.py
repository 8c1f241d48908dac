"""The Python front door: dnnmap.count / partition / analyze / compare return typed results."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

import dnnmap


def _mlp() -> nn.Module:
    # 16 -> 32 -> 8, no bias: two GEMMs of 2*B*16*32 and 2*B*32*8 FLOPs
    return nn.Sequential(nn.Linear(16, 32, bias=False), nn.ReLU(), nn.Linear(32, 8, bias=False))


def test_count_returns_a_typed_report_with_a_dataframe() -> None:
    r = dnnmap.count(_mlp(), inputs=(torch.randn(4, 16),))
    t = r.totals()
    assert t["gemm_conv_flops"] == 2 * 4 * 16 * 32 + 2 * 4 * 32 * 8
    assert t["vector_flops"] == 4 * 32  # one op per ReLU output
    assert t["params"] == 16 * 32 + 32 * 8
    df = r.to_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert df["tensor_flops"].sum() == t["gemm_conv_flops"]
    assert set(r.per_module(1)["module"]) == {"0", "1", "2"}


def test_partition_analyze_compare_share_one_capture() -> None:
    model, x = _mlp(), torch.randn(4, 16)
    part = dnnmap.partition(model, "compiler", inputs=(x,))
    # linear + relu epilogue -> one kernel; second linear -> one kernel
    assert len(part.subgraphs) == 2
    est = dnnmap.analyze(model, "h100-sxm5", batch=4, inputs=(x,))
    assert est.latency_s > 0 and est.throughput == 4 / est.latency_s
    assert isinstance(est.to_dataframe(), pd.DataFrame)
    cmp = dnnmap.compare(model, "h100-sxm5,i7-12700k", batch=4, inputs=(x,), baseline="i7-12700k")
    assert [e.device for e in cmp.estimates] == ["h100-sxm5", "i7-12700k"]
    assert cmp.speedup("i7-12700k") == 1.0
    assert len(cmp.to_dataframe()) == 2
