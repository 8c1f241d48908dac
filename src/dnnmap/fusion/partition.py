"""Fused subgraphs (the kernels a compiler would launch) and the partition of a graph.

A :class:`Subgraph` is a set of ops executed as one kernel: tensors produced and consumed
inside it never reach DRAM, so its ``external`` traffic is what crosses its boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from dnnmap.costs import CountedGraph, OpCost
from dnnmap.ir import OpClass


class Strategy(StrEnum):
    UNFUSED = "unfused"  # one subgraph per op, views folded into neighbours
    GREEDY = "greedy"  # classic sequential fusion, stops at forks / joins
    COMPILER = "compiler"  # modelled on Inductor / XLA (the default)


@dataclass(frozen=True, slots=True)
class Parallelism:
    """Independent work in one subgraph, read off its dominant op's output shape.

    ``batch``, ``channels``, ``spatial`` (product of spatial dims, or sequence length),
    ``heads``; ``output_elements`` is the number of independent output values;
    ``reduction`` the length of the inner (K) dimension each output accumulates over.
    """

    batch: int = 1
    channels: int = 1
    spatial: int = 1
    heads: int = 1
    output_elements: int = 1
    reduction: int = 1
    depthwise: bool = False
    # GEMM view of the dominant op (M x N outputs, K reduction), 0 when not a GEMM/conv
    gemm_m: int = 0
    gemm_n: int = 0
    gemm_k: int = 0
    gemm_batch: int = 1


@dataclass(frozen=True)
class Subgraph:
    id: int
    name: str  # "layer1.0: conv+bn+relu"
    op_ids: tuple[str, ...]  # in execution order
    inputs: tuple[str, ...]  # boundary tensors read (activations, weights, inputs)
    outputs: tuple[str, ...]  # tensors written that leave the subgraph (or the model)
    internal: tuple[str, ...]  # tensors produced and consumed only inside
    cost: OpCost  # sum of member op costs (bytes as if unfused)
    external_bytes_read: int  # bytes of ``inputs`` (views resolved to their storage)
    external_bytes_written: int  # bytes of ``outputs``
    weight_bytes: int  # part of external_bytes_read that is weights / buffers / constants
    op_class: OpClass  # the dominant (most FLOPs, tensor ops first) op's class
    modules: tuple[str, ...]  # module paths spanned
    internal_bytes: int = 0  # bytes of ``internal`` tensors (kept on chip when fused)
    parallelism: Parallelism = field(default_factory=Parallelism)

    @property
    def external_bytes(self) -> int:
        return self.external_bytes_read + self.external_bytes_written

    @property
    def flops(self) -> int:
        return self.cost.flops

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per external byte."""
        return self.flops / self.external_bytes if self.external_bytes else 0.0

    @property
    def working_set_bytes(self) -> int:
        """Bytes live at once if the whole subgraph stays on chip: boundary + internal."""
        return self.external_bytes + self.internal_bytes


@dataclass(frozen=True)
class Partition:
    counted: CountedGraph
    strategy: Strategy
    subgraphs: tuple[Subgraph, ...]  # in a topological order
    edges: tuple[tuple[int, int], ...]  # (producer subgraph id, consumer subgraph id)
    meta: Mapping[str, object] = field(default_factory=dict)

    @property
    def graph(self):  # noqa: ANN201 - ir.Graph
        return self.counted.graph

    @property
    def external_bytes(self) -> int:
        return sum(s.external_bytes for s in self.subgraphs)

    @property
    def total(self) -> OpCost:
        return sum((s.cost for s in self.subgraphs), OpCost.zeros())

    def subgraph_of(self) -> dict[str, int]:
        """op id -> subgraph id."""
        return {o: s.id for s in self.subgraphs for o in s.op_ids}
