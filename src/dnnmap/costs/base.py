"""The additive cost record and the rule context. Analyses count; only mapping makes seconds.

>>> a = OpCost(tensor_flops=2 * 3 * 4 * 5, macs=3 * 4 * 5, bytes_read=8, bytes_written=4)
>>> (a + a).macs, OpCost.zeros().flops
(120, 0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dnnmap.ir import Graph, Op, Tensor


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
    """What a cost rule sees: the op and its resolved input / output tensors."""

    op: Op
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @classmethod
    def of(cls, graph: Graph, op: Op) -> RuleContext:
        return cls(
            op=op,
            inputs=tuple(graph.tensors[t] for t in op.inputs),
            outputs=tuple(graph.tensors[t] for t in op.outputs),
        )

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
        weight = sum(t.nbytes for t in self.inputs if t.is_static)
        return read, written, weight

    def params(self) -> int:
        from dnnmap.ir import Role

        return sum(t.numel for t in self.inputs if t.role == Role.WEIGHT)
