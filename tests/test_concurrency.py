"""Concurrency: stages, width and critical paths on hand-built graphs with known answers."""

from __future__ import annotations

import pytest

from dnnmap.concurrency import analyze, critical_path, op_dag, subgraph_dag
from dnnmap.costs import count_graph
from dnnmap.fusion import partition
from dnnmap.fusion.toy import GraphBuilder, attention_block, residual_block
from dnnmap.ir import Graph


def _branches(k: int, depth: int, d: int = 16) -> Graph:
    """x -> k independent chains of ``depth`` linear layers -> summed pairwise."""
    b = GraphBuilder(f"branches{k}")
    x = b.input((4, d))
    ends = []
    for i in range(k):
        h = x
        for j in range(depth):
            h = b.linear(h, d, f"branch{i}.fc{j}")
        ends.append(h)
    acc = ends[0]
    for e in ends[1:]:
        acc = b.op("aten.add.Tensor", [acc, e], module="sum")
    return b.build([acc])


def test_independent_branches_width_and_share() -> None:
    k, depth = 3, 4
    g = _branches(k, depth)
    c = analyze(partition(g, "unfused"))
    # stage t holds the t-th linear of every branch; then k - 1 adds in a chain
    assert c.ops.num_stages == depth + (k - 1)
    assert c.ops.max_width == k
    assert c.ops.nodes == k * depth + (k - 1)
    # FLOPs: each linear 2*4*16*16 + bias adds; the critical path holds one branch + the adds
    cp = c.ops.critical_path_flops
    assert cp.length == depth + (k - 1)
    linear = 2 * 4 * 16 * 16
    assert cp.weight >= depth * linear
    assert cp.share == pytest.approx(cp.weight / cp.total)
    assert cp.share < 1 / k + 0.1  # about one branch of k


def test_subgraph_level_on_fused_chain() -> None:
    p = partition(attention_block(), "compiler")
    c = analyze(p)
    # QKV -> attention core -> out-proj(+res+norm) -> MLP up -> MLP down: a pure chain
    assert c.subgraphs.num_stages == len(p.subgraphs) == 5
    assert c.subgraphs.max_width == 1
    assert c.subgraphs.critical_path_flops.share == pytest.approx(1.0)
    assert c.subgraphs.critical_path_bytes.weight == p.external_bytes


def test_op_level_counts_non_view_ops() -> None:
    g = attention_block()
    dag = op_dag(count_graph(g))
    views = sum(op.op_class.value == "view" for op in g.ops)
    assert dag.number_of_nodes() == len(g.ops) - views
    # q, k and v projections all read x: the first stage is three wide
    c = analyze(partition(g, "unfused"))
    assert c.ops.stages[0] == ("op0", "op3", "op6")


def test_critical_path_hook_uses_given_weight() -> None:
    p = partition(residual_block(), "compiler")
    # three kernels in a chain: unit weights give length 3; ids as weights give 0 + 1 + 2
    assert critical_path(p, lambda s: 1.0).weight == 3.0
    assert critical_path(p, lambda s: float(s.id)).weight == 0 + 1 + 2
    assert critical_path(p, lambda s: 1.0).nodes == (0, 1, 2)


def test_diamond_prefers_heavier_branch() -> None:
    b = GraphBuilder("diamond")
    x = b.input((8, 8))
    light = b.op("aten.relu.default", [x], module="light")
    heavy = b.linear(x, 8, "heavy")
    y = b.op("aten.add.Tensor", [light, heavy], module="join")
    g = b.build([y])
    c = analyze(partition(g, "unfused"))
    assert c.ops.max_width == 2
    names = [g.op(o).module_path for o in c.ops.critical_path_flops.nodes]
    assert names == ["heavy", "join"]
    dag = subgraph_dag(partition(g, "unfused"))
    assert dag.number_of_edges() == 2


def test_parallelism_descriptors_exposed() -> None:
    p = partition(residual_block(c=8, hw=8), "compiler")
    c = analyze(p)
    par = c.parallelism[1]  # layer1.0 conv1 kernel
    assert (par.batch, par.channels, par.spatial) == (1, 8, 8 * 8)
    assert (par.gemm_m, par.gemm_n, par.gemm_k) == (1 * 8 * 8, 8, 8 * 3 * 3)
    assert not par.depthwise
    assert c.to_dict()["subgraphs"]["stages"] == 3
