"""The additive cost record and the rule context. Analyses count; only mapping makes seconds.

>>> a = OpCost(tensor_flops=2 * 3 * 4 * 5, macs=3 * 4 * 5, bytes_read=8, bytes_written=4)
>>> (a + a).macs, OpCost.zeros().flops
(120, 0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.ir import Graph, Op, Role, Tensor


class CostRuleError(DnnmapError):
    """A rule could not cost an op (shapes that contradict the op's schema); names the op."""


@dataclass(frozen=True, slots=True)
class OpCost:
    """What one op (or a sum of ops) costs, in counts. Every field adds.

    - ``tensor_flops``: GEMM / conv / attention FLOPs (= 2 x ``macs`` of those ops).
    - ``vector_flops``: elementwise, reduction, softmax, normalization work, counted per
      element with the per-element cost documented in each rule; includes transcendentals.
    - ``transcendentals``: how many exp / log / tanh / erf / sqrt ... evaluations (a subset of
      the work in ``vector_flops``, kept apart because SFUs / vector units run them slower).
    - ``bytes_read`` / ``bytes_written``: exact per dtype, assuming each operand is read
      once and each result written once (no cache reuse modelled here). Views move nothing.
    - ``weight_bytes``: the part of ``bytes_read`` that reads weights, buffers and constants.
    - ``params``: parameter elements this op reads (a tied weight counts at each use; the
      graph-level parameter count is ``Graph.num_params``).
    """

    tensor_flops: int = 0
    vector_flops: int = 0
    transcendentals: int = 0
    macs: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    weight_bytes: int = 0
    params: int = 0

    @classmethod
    def zeros(cls) -> OpCost:
        return cls()

    def __add__(self, other: OpCost) -> OpCost:
        if not isinstance(other, OpCost):
            return NotImplemented
        return OpCost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __radd__(self, other: Any) -> OpCost:  # lets sum() start from 0
        if other == 0:
            return self
        return self.__add__(other)

    @property
    def flops(self) -> int:
        return self.tensor_flops + self.vector_flops

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def activation_bytes_read(self) -> int:
        return self.bytes_read - self.weight_bytes

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved (0 when nothing moves)."""
        return self.flops / self.bytes if self.bytes else 0.0

    def to_dict(self) -> dict[str, int]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["flops"] = self.flops
        return d


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a cost rule sees: the op and its resolved input / output tensors.

    ``bases`` holds, per input, the tensor whose storage it views (following ``alias_of`` to
    the root), so a transposed weight ``t(w)`` still reads as a weight. Empty means every
    input is its own base.
    """

    op: Op
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    bases: tuple[Tensor, ...] = ()

    @classmethod
    def of(cls, graph: Graph, op: Op) -> RuleContext:
        inputs = tuple(graph.tensors[t] for t in op.inputs)
        return cls(
            op=op,
            inputs=inputs,
            outputs=tuple(graph.tensors[t] for t in op.outputs),
            bases=tuple(_storage_base(graph, t) for t in inputs),
        )

    def base(self, i: int) -> Tensor:
        """The storage base of input ``i`` (the input itself when it is not a view)."""
        return self.bases[i] if self.bases else self.inputs[i]

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.op.attrs

    def arg(self, name: str) -> Tensor | None:
        """The (first) input tensor passed for schema argument ``name``."""
        for t, a in zip(self.inputs, self.op.input_args, strict=False):
            if a == name:
                return t
        return None

    def io_bytes(self) -> tuple[int, int, int]:
        """(bytes read, bytes written, weight bytes read) for reading every input once."""
        read = sum(t.nbytes for t in self.inputs)
        written = sum(t.nbytes for t in self.outputs)
        weight = sum(t.nbytes for i, t in enumerate(self.inputs) if self.base(i).is_static)
        return read, written, weight

    def params(self) -> int:
        """Parameter elements read: inputs that are (views of) weights, each in full."""
        return sum(t.numel for i, t in enumerate(self.inputs) if self.base(i).role == Role.WEIGHT)


def _storage_base(graph: Graph, t: Tensor) -> Tensor:
    """Follow ``alias_of`` to the tensor that owns the storage (guarding against cycles)."""
    seen = {t.id}
    while t.alias_of is not None and t.alias_of in graph.tensors and t.alias_of not in seen:
        t = graph.tensors[t.alias_of]
        seen.add(t.id)
    return t
