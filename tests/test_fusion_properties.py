"""Property tests on random DAGs: whatever the graph, every strategy partitions it soundly.

Random graphs are built by hand (no torch): square [D, D] activations so any op can read any
earlier tensor; elementwise, views, softmax, sums, linear layers, activation GEMMs, sorts.
"""

from __future__ import annotations

import networkx as nx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnnmap.concurrency import analyze
from dnnmap.costs import CountedGraph, count_graph
from dnnmap.fusion import Partition, Strategy, partition
from dnnmap.fusion.toy import GraphBuilder
from dnnmap.ir import Graph

D = 8
KINDS = ("relu", "add", "mul", "view", "softmax", "sum", "linear", "mm", "layer_norm", "sort", "cat")


@st.composite
def random_graphs(draw: st.DrawFn) -> Graph:
    b = GraphBuilder("random")
    avail = [b.input((D, D), "x")]
    if draw(st.booleans()):
        avail.append(b.input((D, D), "y"))
    n = draw(st.integers(1, 24))
    for k in range(n):
        kind = draw(st.sampled_from(KINDS))
        pick = lambda: avail[draw(st.integers(0, len(avail) - 1))]  # noqa: E731
        m = f"block{draw(st.integers(0, 2))}.op{k}"
        if kind in ("relu", "sort"):
            t = b.op(f"aten.{kind}.default", [pick()], module=m)
        elif kind in ("add", "mul"):
            t = b.op(f"aten.{kind}.Tensor", [pick(), pick()], module=m)
        elif kind == "view":
            t = b.view(pick(), (D, D), m)
        elif kind == "softmax":
            t = b.op("aten._softmax.default", [pick()], module=m, attrs={"dim": -1, "half_to_float": False})
        elif kind == "sum":
            t = b.op("aten.sum.dim_IntList", [pick()], (D, 1), m, attrs={"dim": (-1,), "keepdim": True})
            t = b.op("aten.mul.Tensor", [t, pick()], (D, D), m)  # broadcast back to [D, D]
        elif kind == "linear":
            t = b.linear(pick(), D, m)
        elif kind == "mm":
            t = b.op("aten.mm.default", [pick(), pick()], (D, D), m, ("self", "mat2"))
        elif kind == "layer_norm":
            t = b.op("aten.layer_norm.default", [pick()], (D, D), m, ("input",), {"normalized_shape": (D,)})
        else:
            t = b.op("aten.cat.default", [pick(), pick()], (2 * D, D), m, ("tensors", "tensors"))
            t = b.view(t, (D, 2 * D), m)
            w = b.weight((2 * D, D), f"{m}.weight")
            t = b.op("aten.mm.default", [t, w], (D, D), m, ("self", "mat2"))
        avail.append(t)
    outs = [avail[-1]] + ([avail[len(avail) // 2]] if draw(st.booleans()) and len(avail) > 2 else [])
    return b.build(list(dict.fromkeys(outs)))


def _check_partition(c: CountedGraph, p: Partition) -> None:
    g = c.graph
    # every op in exactly one subgraph
    seen = [o for s in p.subgraphs for o in s.op_ids]
    assert sorted(seen) == sorted(op.id for op in g.ops)
    assert len(seen) == len(set(seen))
    # FLOPs (and every other count) conserved
    assert sum(s.flops for s in p.subgraphs) == c.total.flops
    assert p.total == c.total
    # acyclic, ids in topological order, and every cross-kernel storage dependency is an edge
    dag = nx.DiGraph(p.edges)
    assert nx.is_directed_acyclic_graph(dag)
    assert all(a < b for a, b in p.edges)
    owner = p.subgraph_of()
    for s in p.subgraphs:
        for t in s.inputs:
            producer = g.tensors[t].producer
            if producer is not None:
                assert (owner[producer], s.id) in set(p.edges)
    # boundary accounting is internally consistent
    for s in p.subgraphs:
        assert s.external_bytes_read <= sum(g.tensors[t].nbytes for t in s.inputs)  # partial reads
        assert s.external_bytes_written == sum(g.tensors[t].nbytes for t in s.outputs)
        assert s.internal_bytes == sum(g.tensors[t].nbytes for t in s.internal)
        assert 0 <= s.weight_bytes <= s.external_bytes_read


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_partitions_are_sound(g: Graph) -> None:
    c = count_graph(g)
    unfused = partition(c, Strategy.UNFUSED)
    for strategy in Strategy:
        p = partition(c, strategy)
        _check_partition(c, p)
        assert p.external_bytes <= unfused.external_bytes
        assert len(p.subgraphs) <= len(unfused.subgraphs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(), st.integers(64, 4096))
def test_budget_is_respected(g: Graph, budget: int) -> None:
    c = count_graph(g)
    p = partition(c, "compiler", onchip_budget_bytes=budget)
    _check_partition(c, p)
    real = {op.id for op in g.ops if op.op_class.value != "view"}
    for s in p.subgraphs:
        if sum(o in real for o in s.op_ids) > 1:  # a merge happened: it had to fit
            assert s.working_set_bytes <= budget


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_stages_respect_dependencies(g: Graph) -> None:
    p = partition(count_graph(g), "compiler")
    c = analyze(p)
    for level, dag_edges in (("subgraphs", p.edges), ("ops", None)):
        conc = getattr(c, level)
        stage_of = {n: k for k, stage in enumerate(conc.stages) for n in stage}
        assert sum(len(s) for s in conc.stages) == conc.nodes
        edges = dag_edges if dag_edges is not None else _op_edges(g)
        for a, b in edges:
            assert stage_of[a] < stage_of[b]
        # the critical path is a real chain, no heavier than the whole graph
        cp = conc.critical_path_flops
        assert all(stage_of[x] < stage_of[y] for x, y in zip(cp.nodes, cp.nodes[1:], strict=False))
        assert cp.weight <= cp.total
    # (no claim that fusion shortens the chain: merging ops of different depths can lengthen it)
    assert c.subgraphs.num_stages <= c.subgraphs.nodes


def _op_edges(g: Graph) -> list[tuple[str, str]]:
    from dnnmap.concurrency import op_dag

    return list(op_dag(count_graph(g)).edges)
