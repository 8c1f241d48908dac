"""Fusion on hand-built graphs: pinned kernel counts, boundary bytes, names, decisions, errors."""

from __future__ import annotations

import pytest

from dnnmap.costs import OpCost, count_graph
from dnnmap.errors import DnnmapError, UnknownNameError
from dnnmap.fusion import (
    FusionConfig,
    FusionContext,
    GroupSummary,
    Pattern,
    Relation,
    Strategy,
    partition,
    should_fuse,
    traffic_saving,
)
from dnnmap.fusion.toy import GraphBuilder, attention_block, residual_block

F32 = 4


def _names(p) -> list[str]:  # noqa: ANN001
    return [s.name for s in p.subgraphs]


# -- pinned kernel counts ----------------------------------------------------------------------
def test_residual_block_kernel_counts() -> None:
    # stem conv-bn-relu, then conv-bn-relu-conv-bn, + identity, relu: 3 + 7 = 10 ops
    g = residual_block()
    assert [len(partition(g, s).subgraphs) for s in ("unfused", "greedy", "compiler")] == [10, 4, 3]
    # greedy stops at the add (a join): conv+bn+relu, conv+bn+relu, conv+bn, add+relu
    assert _names(partition(g, "greedy")) == [
        "conv1: conv+bn+relu", "layer1.0: conv+bn+relu", "layer1.0: conv+bn", "layer1.0: add+relu",
    ]
    # the compiler takes the residual add (+ relu) as the second conv's epilogue
    assert _names(partition(g, "compiler"))[-1] == "layer1.0: conv+bn+add+relu"


def test_attention_block_compiler_kernels() -> None:
    # 25 ops (9 of them views): QKV as one GEMM, attention core, out-proj + residual + norm,
    # MLP up + gelu, MLP down + residual + norm
    g = attention_block()
    p = partition(g, "compiler")
    assert len(g.ops) == 25
    assert [s.name.split(": ")[1] for s in p.subgraphs] == [
        "linear", "matmul+div+softmax+clone", "linear+add+ln", "linear+gelu", "linear+add+ln",
    ]
    assert p.meta["fused"]["horizontal GEMM fusion: projections of one input"] == 2  # q+k, q+v
    assert p.meta["fused"]["attention core: QK^T, softmax and .V in one kernel"] == 3  # 4 ops
    # unfused: 25 ops - 9 views = 16 kernels; greedy joins only linear(+act/add/ln) chains
    assert len(partition(g, "unfused").subgraphs) == 25 - 9
    assert len(partition(g, "greedy").subgraphs) == 11


def test_norm_epilogue_can_be_switched_off() -> None:
    g = attention_block()
    p = partition(g, "compiler", config=FusionConfig(norm_epilogue_max_row=0))
    # the two layer-norms become kernels of their own (one gets the residual add)
    assert len(p.subgraphs) == 5 + 2


def test_view_of_weight_folds_into_consumer() -> None:
    b = GraphBuilder("mm")
    x = b.input((4, 8))
    w = b.weight((16, 8), "fc.weight")
    wt = b.view(w, (8, 16), "fc", "aten.t.default")
    y = b.op("aten.mm.default", [x, wt], (4, 16), "fc", ("self", "mat2"))
    p = partition(b.build([y]), "unfused")
    assert len(p.subgraphs) == 1
    (s,) = p.subgraphs
    assert s.inputs == (x, w)  # the view resolved to its storage, the weight
    assert s.external_bytes_read == (4 * 8 + 16 * 8) * F32
    assert s.weight_bytes == 16 * 8 * F32
    assert s.external_bytes_written == 4 * 16 * F32


# -- boundary bytes -----------------------------------------------------------------------------------------
def test_stem_boundary_bytes_are_exact() -> None:
    g = residual_block(c=8, hw=8)
    stem = partition(g, "compiler").subgraphs[0]
    x = 1 * 3 * 8 * 8 * F32
    conv_w = 8 * 3 * 3 * 3 * F32
    bn = 4 * 8 * F32  # weight, bias, running mean, running var
    out = 1 * 8 * 8 * 8 * F32
    assert stem.external_bytes_read == x + conv_w + bn
    assert stem.weight_bytes == conv_w + bn
    assert stem.external_bytes_written == out  # relu output, read by conv and by the add
    assert stem.internal_bytes == 2 * out  # conv and bn outputs never leave the kernel
    assert len(stem.internal) == 2 and len(stem.outputs) == 1


def test_tensor_read_inside_and_outside_is_written() -> None:
    # a -> relu -> (b: neg, also returned); both relu and neg in one pointwise kernel
    b = GraphBuilder("fork")
    x = b.input((2, 3))
    r = b.op("aten.relu.default", [x])
    n = b.op("aten.neg.default", [r])
    p = partition(b.build([n, r]), "compiler")
    assert len(p.subgraphs) == 1
    assert set(p.subgraphs[0].outputs) == {r, n}  # r is a model output: written although read inside
    assert p.subgraphs[0].external_bytes_written == 2 * (2 * 3 * F32)


def test_gather_reads_only_the_rows_it_gathers() -> None:
    b = GraphBuilder("emb")
    ids = b.input((1, 5), "ids")
    table = b.weight((1000, 16), "wte.weight")
    e = b.op("aten.embedding.default", [table, ids], (1, 5, 16), "wte", ("weight", "indices"))
    (s,) = partition(b.build([e]), "unfused").subgraphs
    assert s.weight_bytes == 5 * 16 * F32  # 5 rows of the table, not 1000
    assert s.external_bytes_read == 5 * 16 * F32 + 1 * 5 * F32


def test_fused_saving_against_unfused() -> None:
    g = residual_block()
    unfused = partition(g, "unfused")
    fused = partition(g, "compiler")
    assert traffic_saving(unfused) == 0.0
    saved = 1 - fused.external_bytes / unfused.external_bytes
    assert traffic_saving(fused) == pytest.approx(saved)
    assert 0 < saved < 1


def test_flops_are_conserved() -> None:
    c = count_graph(attention_block())
    for s in Strategy:
        p = partition(c, s)
        assert p.total == c.total
        assert sum(len(sg.op_ids) for sg in p.subgraphs) == len(c.graph.ops)


# -- budget ------------------------------------------------------------------------------------------------------
def test_onchip_budget_refuses_big_merges() -> None:
    g = residual_block(c=8, hw=8)
    free = partition(g, "compiler")
    # a budget just below the stem kernel's working set keeps conv, bn and relu apart
    tight = partition(g, "compiler", onchip_budget_bytes=free.subgraphs[0].working_set_bytes - 1)
    assert len(tight.subgraphs) > len(free.subgraphs)
    assert tight.meta["refused"]["working set exceeds the on-chip budget"] > 0
    for s in tight.subgraphs:
        if len(s.op_ids) > 1:
            assert s.working_set_bytes < free.subgraphs[0].working_set_bytes


# -- decision function ---------------------------------------------------------------------------------------------
def test_should_fuse_rules() -> None:
    conv = GroupSummary(root=0, n_template=1, template_classes=frozenset({"conv"}))
    gemm = GroupSummary(root=1, n_template=1, template_classes=frozenset({"matmul"}), weight_gemms_only=True)
    pw = GroupSummary(root=2, n_pointwise=1, follower_only=True)
    norm = GroupSummary(root=3, n_reduction=1, reduction_domains=frozenset({(197, 768)}), max_row=768)
    opaque = GroupSummary(root=4, n_opaque=1)
    comp = FusionContext(Strategy.COMPILER, Relation.VERTICAL)
    assert should_fuse(conv, pw, comp)
    assert not should_fuse(pw, conv, comp)  # no prologue into a conv
    assert not should_fuse(conv, gemm, comp)
    assert should_fuse(gemm, norm, comp)  # row-wise norm epilogue, 768 <= 8192
    assert not should_fuse(conv, norm, comp)
    assert not should_fuse(pw, opaque, comp)
    assert should_fuse(gemm, gemm, FusionContext(Strategy.COMPILER, Relation.HORIZONTAL, Pattern.HORIZONTAL_GEMM))
    assert not should_fuse(conv, pw, FusionContext(Strategy.UNFUSED, Relation.VERTICAL))
    assert should_fuse(conv, pw, FusionContext(Strategy.GREEDY, Relation.VERTICAL))
    assert not should_fuse(conv, gemm, FusionContext(Strategy.GREEDY, Relation.VERTICAL))
    d = should_fuse(pw, opaque, comp)
    assert d.reason == "opaque op: no fusion rule"


def test_refusals_are_logged_with_reasons() -> None:
    p = partition(residual_block(), "compiler")
    assert p.meta["refused"]["GEMM/conv into GEMM/conv: not fused"] >= 2
    # stem conv <- bn, relu; conv1 <- bn, relu; conv2 <- bn, add, relu
    assert p.meta["fused"]["pointwise epilogue into the GEMM/conv"] == 2 + 2 + 3


def test_opaque_op_stays_alone() -> None:
    b = GraphBuilder("sort")
    x = b.input((4, 8))
    r = b.op("aten.relu.default", [x])
    s = b.op("aten.sort.default", [r], n_out=1)
    y = b.op("aten.neg.default", [s])
    p = partition(b.build([y]), "compiler")
    assert [len(sg.op_ids) for sg in p.subgraphs] == [1, 1, 1]


# -- errors ---------------------------------------------------------------------------------------------------------
def test_unknown_strategy_suggests() -> None:
    with pytest.raises(UnknownNameError, match="greedy"):
        partition(residual_block(), "gredy")


def test_bad_budget() -> None:
    with pytest.raises(DnnmapError, match="positive"):
        partition(residual_block(), "compiler", onchip_budget_bytes=0)


def test_costs_summed_per_subgraph() -> None:
    c = count_graph(residual_block())
    p = partition(c, "compiler")
    for s in p.subgraphs:
        assert s.cost == sum((c.costs[o] for o in s.op_ids), OpCost.zeros())


@pytest.mark.slow
def test_ten_thousand_ops_partition_fast() -> None:
    import time

    from dnnmap.fusion.toy import encoder_stack

    c = count_graph(encoder_stack(400))
    assert len(c.graph.ops) == 400 * 25
    t0 = time.perf_counter()
    p = partition(c, "compiler")
    assert time.perf_counter() - t0 < 5.0
    assert len(p.subgraphs) == 400 * 5
