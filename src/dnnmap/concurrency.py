"""How much of a model can run at once: stages, width and critical paths (networkx).

Two levels, the same measures:

- **op level**: every op except views (views are metadata; an op reading a view depends on
  the op that wrote the view's storage);
- **subgraph level**: the kernels of a :class:`~dnnmap.fusion.Partition`.

``stages`` are the topological generations (all nodes whose inputs are ready together);
their count is the longest dependency chain in nodes, and ``max_width`` the most nodes in
one stage. Critical paths are the heaviest source-to-sink chains by FLOPs and by external
bytes (their share of the total bounds the speed-up from running branches in parallel);
:func:`critical_path` takes any per-subgraph weight, e.g. predicted seconds from mapping.

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import residual_block
>>> c = analyze(partition(residual_block(), "compiler"))
>>> c.subgraphs.num_stages, c.subgraphs.max_width, c.ops.num_stages
(3, 1, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from dnnmap.costs import CountedGraph
from dnnmap.fusion import Parallelism, Partition, Subgraph
from dnnmap.fusion.kinds import GraphIndex, is_true_view


@dataclass(frozen=True)
class CriticalPath:
    """The heaviest dependency chain under one node weight."""

    nodes: tuple[Hashable, ...]  # op ids or subgraph ids, source to sink
    weight: float  # summed weight along the chain
    total: float  # summed weight of every node (the serial bound)

    @property
    def length(self) -> int:
        return len(self.nodes)

    @property
    def share(self) -> float:
        """weight / total: 1.0 for a pure chain; 1/k for k equal independent branches."""
        return self.weight / self.total if self.total else 0.0


@dataclass(frozen=True)
class GraphConcurrency:
    level: str  # "op" or "subgraph"
    nodes: int
    edges: int
    stages: tuple[tuple[Hashable, ...], ...]
    critical_path_flops: CriticalPath
    critical_path_bytes: CriticalPath

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def max_width(self) -> int:
        return max((len(s) for s in self.stages), default=0)

    @property
    def mean_width(self) -> float:
        return self.nodes / self.num_stages if self.stages else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level, "nodes": self.nodes, "edges": self.edges, "stages": self.num_stages,
            "max_width": self.max_width, "mean_width": round(self.mean_width, 3),
            "critical_path_flops": _cp_dict(self.critical_path_flops),
            "critical_path_bytes": _cp_dict(self.critical_path_bytes),
        }


def _cp_dict(cp: CriticalPath) -> dict[str, Any]:
    return {"length": cp.length, "weight": cp.weight, "total": cp.total, "share": round(cp.share, 4)}


@dataclass(frozen=True)
class Concurrency:
    ops: GraphConcurrency
    subgraphs: GraphConcurrency
    parallelism: Mapping[int, Parallelism]  # subgraph id -> its parallelism descriptor

    def to_dict(self) -> dict[str, Any]:
        return {"ops": self.ops.to_dict(), "subgraphs": self.subgraphs.to_dict()}


# -- DAGs ---------------------------------------------------------------------------------------
def op_dag(counted: CountedGraph) -> nx.DiGraph:
    """Non-view ops, with an edge from the writer of each storage to every op reading it.
    Node attributes: ``flops``, ``bytes`` (the op's own unfused bytes)."""
    g = counted.graph
    index = GraphIndex(g)
    dag = nx.DiGraph()
    for op in g.ops:
        if is_true_view(op, g):
            continue
        c = counted.costs[op.id]
        dag.add_node(op.id, flops=c.flops, bytes=c.bytes)
        for t in op.inputs:
            p = g.tensors[index.storage[t]].producer
            if p is not None and p != op.id and p in dag:
                dag.add_edge(p, op.id)
    return dag


def subgraph_dag(partition: Partition) -> nx.DiGraph:
    """Subgraph ids, with the partition's storage-dependency edges. Node attributes:
    ``flops``, ``bytes`` (external bytes), ``subgraph``."""
    dag = nx.DiGraph()
    for s in partition.subgraphs:
        dag.add_node(s.id, flops=s.flops, bytes=s.external_bytes, subgraph=s)
    dag.add_edges_from(partition.edges)
    return dag


# -- measures -----------------------------------------------------------------------------------
def stages(dag: nx.DiGraph) -> tuple[tuple[Hashable, ...], ...]:
    """Topological generations, each sorted for determinism."""
    return tuple(tuple(sorted(gen, key=_sort_key)) for gen in nx.topological_generations(dag))


def _sort_key(n: Hashable) -> tuple[int, str]:
    s = str(n)
    digits = s.lstrip("op")
    return (int(digits), s) if digits.isdigit() else (0, s)


def longest_path(dag: nx.DiGraph, weight: Callable[[Hashable], float]) -> CriticalPath:
    """Heaviest chain by node weight (dynamic programming over a topological order, O(V+E))."""
    best: dict[Hashable, float] = {}
    back: dict[Hashable, Hashable | None] = {}
    total = 0.0
    for n in nx.topological_sort(dag):
        w = float(weight(n))
        total += w
        prev = max(dag.predecessors(n), key=lambda p: best[p], default=None)
        best[n] = w + (best[prev] if prev is not None else 0.0)
        back[n] = prev
    if not best:
        return CriticalPath((), 0.0, 0.0)
    end: Hashable | None = max(best, key=lambda n: best[n])
    peak = best[end]
    path = []
    while end is not None:
        path.append(end)
        end = back[end]
    return CriticalPath(tuple(reversed(path)), peak, total)


def _concurrency(dag: nx.DiGraph, level: str) -> GraphConcurrency:
    return GraphConcurrency(
        level=level,
        nodes=dag.number_of_nodes(),
        edges=dag.number_of_edges(),
        stages=stages(dag),
        critical_path_flops=longest_path(dag, lambda n: dag.nodes[n]["flops"]),
        critical_path_bytes=longest_path(dag, lambda n: dag.nodes[n]["bytes"]),
    )


def critical_path(partition: Partition, weight: Callable[[Subgraph], float]) -> CriticalPath:
    """Critical path of the subgraph DAG under any per-subgraph weight (e.g. predicted time).

    >>> from dnnmap.fusion import partition as fuse
    >>> from dnnmap.fusion.toy import residual_block
    >>> critical_path(fuse(residual_block()), lambda s: 1.0).weight
    3.0
    """
    dag = subgraph_dag(partition)
    return longest_path(dag, lambda n: weight(dag.nodes[n]["subgraph"]))


def analyze(partition: Partition) -> Concurrency:
    """Op-level and subgraph-level concurrency of a partition."""
    return Concurrency(
        ops=_concurrency(op_dag(partition.counted), "op"),
        subgraphs=_concurrency(subgraph_dag(partition), "subgraph"),
        parallelism={s.id: s.parallelism for s in partition.subgraphs},
    )
