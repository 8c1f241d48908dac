"""The dataflow graph every later stage reads: tensors, ops, and their links.

Ids are assigned by the capture in execution order, so the same model gives the same
ids and a byte-identical JSON file.

>>> from dnnmap.ir import Graph, Op, Tensor, DType, Role, OpClass
>>> x = Tensor("t0", (2, 3), DType.FLOAT32, Role.INPUT)
>>> y = Tensor("t1", (2, 3), DType.FLOAT32, Role.OUTPUT, producer="op0")
>>> op = Op("op0", "aten.relu.default", OpClass.ELEMENTWISE, ("t0",), ("t1",))
>>> g = Graph("tiny", {"t0": x, "t1": y}, (op,), inputs=("t0",), outputs=("t1",))
>>> g.consumers("t0")[0].id, x.nbytes
('op0', 24)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dnnmap.ir.enums import CapturePath, DType, OpClass, Role

Scalar = int | float | bool | str | None
"""Non-tensor op arguments are stored as JSON scalars or (nested) lists of them."""


@dataclass(frozen=True, slots=True)
class Tensor:
    """One value in the graph. ``alias_of`` names the tensor whose storage a view shares."""

    id: str
    shape: tuple[int, ...]
    dtype: DType
    role: Role
    producer: str | None = None  # op id; None for inputs, weights, buffers, constants
    name: str = ""  # parameter / buffer / input name where there is one ("layer1.0.conv1.weight")
    alias_of: str | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def is_static(self) -> bool:
        """Weights, buffers and constants: resident data, not produced per inference."""
        return self.role in (Role.WEIGHT, Role.BUFFER, Role.CONSTANT)


@dataclass(frozen=True, slots=True)
class Op:
    """One ATen op call.

    ``inputs`` are tensor ids in schema order; ``input_args`` names the schema argument each
    came from (``("input", "weight", "bias")``; list arguments repeat the name). ``attrs``
    holds every non-tensor argument by schema name (``stride``, ``padding``, ``dim`` ...).
    """

    id: str
    target: str  # "aten.convolution.default"
    op_class: OpClass
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    module_path: str = ""  # "layer1.0.conv1"; "" for the root module
    module_type: str = ""  # "Conv2d"
    input_args: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def packet(self) -> str:
        """The op without its overload: ``aten.convolution.default`` -> ``aten.convolution``."""
        parts = self.target.split(".")
        return ".".join(parts[:2]) if len(parts) >= 2 else self.target

    def arg(self, name: str) -> list[str]:
        """Tensor ids passed for schema argument ``name``."""
        return [t for t, a in zip(self.inputs, self.input_args, strict=False) if a == name]


@dataclass(frozen=True)
class Graph:
    """A captured model: tensors by id, ops in a topological (execution) order."""

    name: str
    tensors: Mapping[str, Tensor]
    ops: tuple[Op, ...]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    # meta keys used by dnnmap: capture_path, model, batch, dtype, input_shapes, torch_version,
    # fallback_reason.

    # -- indexes (computed once; the graph itself is never mutated) ------------------------
    @cached_property
    def _op_by_id(self) -> dict[str, Op]:
        return {op.id: op for op in self.ops}

    @cached_property
    def _consumers(self) -> dict[str, tuple[Op, ...]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for t in dict.fromkeys(op.inputs):
                out.setdefault(t, []).append(op)
        return {k: tuple(v) for k, v in out.items()}

    def op(self, op_id: str) -> Op:
        return self._op_by_id[op_id]

    def tensor(self, tensor_id: str) -> Tensor:
        return self.tensors[tensor_id]

    def producer(self, tensor_id: str) -> Op | None:
        p = self.tensors[tensor_id].producer
        return self._op_by_id[p] if p is not None else None

    def consumers(self, tensor_id: str) -> tuple[Op, ...]:
        return self._consumers.get(tensor_id, ())

    def predecessors(self, op: Op) -> list[Op]:
        """Ops producing any of ``op``'s inputs (deduplicated, in input order)."""
        seen: dict[str, Op] = {}
        for t in op.inputs:
            p = self.producer(t)
            if p is not None:
                seen.setdefault(p.id, p)
        return list(seen.values())

    def successors(self, op: Op) -> list[Op]:
        seen: dict[str, Op] = {}
        for t in op.outputs:
            for c in self.consumers(t):
                seen.setdefault(c.id, c)
        return list(seen.values())

    def iter_tensors(self, *roles: Role) -> Iterator[Tensor]:
        for t in self.tensors.values():
            if not roles or t.role in roles:
                yield t

    @property
    def num_params(self) -> int:
        """Parameter count: unique weight tensors (tied weights are counted once)."""
        return sum(t.numel for t in self.iter_tensors(Role.WEIGHT))

    @property
    def capture_path(self) -> CapturePath | None:
        p = self.meta.get("capture_path")
        return CapturePath(p) if p else None

    def module_of(self, op_id: str) -> str:
        return self._op_by_id[op_id].module_path

    def validate(self) -> None:
        """Raise ``ValueError`` if ids dangle or ops are not in topological order."""
        produced: set[str] = {t.id for t in self.tensors.values() if t.producer is None}
        for op in self.ops:
            for t in op.inputs:
                if t not in self.tensors:
                    raise ValueError(f"{op.id} ({op.target}) reads unknown tensor {t}")
                if t not in produced:
                    raise ValueError(f"{op.id} ({op.target}) reads {t} before it is produced")
            for t in op.outputs:
                if self.tensors[t].producer != op.id:
                    raise ValueError(f"tensor {t} does not name {op.id} as producer")
                produced.add(t)


def dtype_of(value: str | DType) -> DType:
    return value if isinstance(value, DType) else DType.parse(value)
