"""From op groups to :class:`Subgraph`\\ s: boundary tensors, traffic, name, dominant op,
parallelism; then the subgraph DAG in a topological order.

Subgraph edges are data dependencies on storage: ``P -> C`` when ``C`` reads a buffer that
``P`` writes. (A view op in a third group is metadata and adds no dependency.)

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import residual_block
>>> [s.name for s in partition(residual_block(), "compiler").subgraphs]
['conv1: conv+bn+relu', 'layer1.0: conv+bn+relu', 'layer1.0: conv+bn+add+relu']
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from dnnmap.costs import CountedGraph, OpCost
from dnnmap.fusion.fuser import group_io
from dnnmap.fusion.kinds import FusionKind, GraphIndex
from dnnmap.fusion.parallelism import parallelism_of
from dnnmap.fusion.partition import Partition, Strategy, Subgraph
from dnnmap.ir import Graph, Op, OpClass
from dnnmap.ir.classify import op_name

_SHORT = {
    "convolution": "conv", "_convolution": "conv", "conv2d": "conv", "conv1d": "conv",
    "_native_batch_norm_legit_no_training": "bn", "batch_norm": "bn", "native_batch_norm": "bn",
    "_native_batch_norm_legit": "bn", "layer_norm": "ln", "native_layer_norm": "ln",
    "scaled_dot_product_attention": "sdpa", "_softmax": "softmax", "adaptive_avg_pool2d": "avgpool",
    "avg_pool2d": "avgpool", "max_pool2d": "maxpool", "max_pool2d_with_indices": "maxpool",
    "_to_copy": "cast", "embedding": "embedding", "hardtanh": "hardtanh",
}


def short_name(op: Op, g: Graph, index: GraphIndex) -> str:
    """``aten.convolution.default`` -> ``conv``; a GEMM with a weight -> ``linear``."""
    name = op_name(op.target)
    if name.endswith("_") and not name.startswith("_"):  # in-place variant: relu_ -> relu
        name = name[:-1]
    if name in ("addmm", "mm", "linear", "matmul", "bmm") and any(
        index.is_static_storage(index.storage[t]) for t in op.inputs
    ):
        return "linear"
    if name == "hardtanh" and op.attrs.get("min_val", -1) == 0 and op.attrs.get("max_val", 1) == 6:
        return "relu6"
    return _SHORT.get(name, name.strip("_"))


def group_module(paths: list[str], anchor: str) -> str:
    """The module a group belongs to: the longest prefix of ``anchor`` (the dominant op's
    module) shared by more than half of the distinct ``paths`` (else ``anchor`` itself). An MLP-down GEMM
    whose epilogue reaches into the next layer's norm stays named after its own layer.

    >>> group_module(["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"], "layer1.0.conv1")
    'layer1.0'
    >>> group_module(["conv1", "bn1", "relu"], "conv1")
    'conv1'
    """
    paths = list(dict.fromkeys(p for p in paths if p))  # distinct modules: a decomposed norm is one
    if not paths:
        return ""
    parts = anchor.split(".") if anchor else paths[0].split(".")
    for n in range(len(parts), 0, -1):
        prefix = parts[:n]
        covered = sum(p.split(".")[:n] == prefix for p in paths)
        if 2 * covered > len(paths):
            return ".".join(prefix)
    return anchor


def _name(ops: list[Op], dom: Op, g: Graph, index: GraphIndex, kinds: list[FusionKind]) -> str:
    real = [o for o, k in zip(ops, kinds, strict=True) if k is not FusionKind.VIEW] or ops
    names = list(dict.fromkeys(short_name(o, g, index) for o in real))
    label = "+".join(names[:6]) + (f"+…({len(names) - 6} more)" if len(names) > 6 else "")
    module = group_module([o.module_path for o in real], dom.module_path) or "<root>"
    return f"{module}: {label}"


def _dominant(ops: list[Op], costs: Mapping[str, OpCost]) -> Op:
    """Tensor-core ops first, then ops that do work over views (a KV cache's ``cat`` after the
    ``view`` / ``transpose`` that feed it: a view moves no data and costs one dispatch), then
    most FLOPs, then the earliest."""
    return max(ops, key=lambda o: (o.op_class.is_tensor_core, o.op_class is not OpClass.VIEW, costs[o.id].flops,
                                   -int(o.id[2:]) if o.id[2:].isdigit() else 0))


def build_subgraph(sid: int, members: list[int], counted: CountedGraph, index: GraphIndex,
                   member_set: set[int]) -> Subgraph:
    g = counted.graph
    members = sorted(members)
    ops = [g.ops[i] for i in members]
    io = group_io(index, members, member_set.__contains__)
    dom = _dominant(ops, counted.costs)
    return Subgraph(
        id=sid,
        name=_name(ops, dom, g, index, [index.kinds[i] for i in members]),
        op_ids=tuple(o.id for o in ops),
        inputs=tuple(io.inputs),
        outputs=tuple(io.outputs),
        internal=tuple(io.internal),
        cost=sum((counted.costs[o.id] for o in ops), OpCost.zeros()),
        external_bytes_read=io.read_bytes,
        external_bytes_written=io.write_bytes,
        weight_bytes=io.weight_bytes,
        op_class=dom.op_class,
        modules=tuple(dict.fromkeys(o.module_path for o in ops if o.module_path)),
        internal_bytes=io.internal_bytes,
        parallelism=parallelism_of(dom, g),
    )


def _topological(groups: list[list[int]], edges: set[tuple[int, int]]) -> list[int]:
    """Kahn's algorithm, ready groups taken by their first op's position (readable order)."""
    indeg = [0] * len(groups)
    out: dict[int, list[int]] = {}
    for a, b in edges:
        indeg[b] += 1
        out.setdefault(a, []).append(b)
    first = [min(m) for m in groups]
    ready = [(first[i], i) for i in range(len(groups)) if indeg[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for j in out.get(i, ()):
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, (first[j], j))
    if len(order) != len(groups):
        raise RuntimeError("fusion produced a cyclic subgraph graph (a dnnmap bug)")
    return order


def build_partition(counted: CountedGraph, index: GraphIndex, groups: list[list[int]],
                    strategy: Strategy, meta: Mapping[str, object]) -> Partition:
    """Subgraphs numbered in a topological order of their storage dependencies."""
    g = counted.graph
    group_of = [0] * len(g.ops)
    for gi, members in enumerate(groups):
        for i in members:
            group_of[i] = gi
    edges: set[tuple[int, int]] = set()
    for gi, members in enumerate(groups):
        for i in members:
            if index.kinds[i] is FusionKind.VIEW:
                continue
            for t in g.ops[i].inputs:
                p = g.tensors[index.storage[t]].producer
                if p is not None and (pg := group_of[index.pos[p]]) != gi:
                    edges.add((pg, gi))
    order = _topological(groups, edges)
    new_id = {old: new for new, old in enumerate(order)}
    subgraphs = tuple(
        build_subgraph(new_id[old], groups[old], counted, index, set(groups[old])) for old in order
    )
    sg_edges = tuple(sorted((new_id[a], new_id[b]) for a, b in edges))
    return Partition(counted=counted, strategy=strategy, subgraphs=subgraphs, edges=sg_edges, meta=dict(meta))
