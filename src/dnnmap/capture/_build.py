"""Torch values -> IR records; the one normalisation both capture paths share.

Both paths (export walk, dispatch recorder) hand every ATen call to :class:`GraphBuilder`
with its arguments already resolved (tensors replaced by :class:`Ref`), so targets, attrs,
aliasing and ids are produced by the same code whichever path ran.

>>> import torch
>>> b = GraphBuilder("demo")
>>> x = b.add_tensor(torch.empty(2, 3), Role.INPUT, "x")
>>> outs = b.add_op(torch.ops.aten.relu.default, (Ref(x),), {}, torch.empty(2, 3), "", "M")
>>> g = b.finish(inputs=[x], outputs=[outs])
>>> g.ops[0].target, g.tensors[outs].role.value
('aten.relu.default', 'output')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from dnnmap.errors import CaptureError
from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor, classify
from dnnmap.ir.classify import op_name

_DTYPES: dict[torch.dtype, DType] = {
    torch.float64: DType.FLOAT64,
    torch.float32: DType.FLOAT32,
    torch.float16: DType.FLOAT16,
    torch.bfloat16: DType.BFLOAT16,
    torch.float8_e4m3fn: DType.FLOAT8_E4M3,
    torch.float8_e5m2: DType.FLOAT8_E5M2,
    torch.int64: DType.INT64,
    torch.int32: DType.INT32,
    torch.int16: DType.INT16,
    torch.int8: DType.INT8,
    torch.uint8: DType.UINT8,
    torch.bool: DType.BOOL,
    torch.complex64: DType.COMPLEX64,
}

# Export-only bookkeeping that eager execution never runs: runtime metadata asserts that
# export inserts after ``.to()`` calls, and symbolic-shape range constraints.
_DROPPED = frozenset({
    "aten._assert_tensor_metadata.default",
    "aten._assert_scalar.default",
    "aten.sym_constrain_range.default",
    "aten.sym_constrain_range_for_size.default",
})
# ``torch.tensor(...)`` inside forward: export rewrites the eager ``lift_fresh`` (a no-op
# that adopts a freshly made constant) into ``lift_fresh_copy``; both paths report the eager op.
_RENAMED = {"aten.lift_fresh_copy.default": "aten.lift_fresh.default"}

# Backend switches, not model semantics: export records ``batch_norm(cudnn_enabled=False)``
# where eager passes ``torch.backends.cudnn.enabled``. Left out of ``attrs`` on both paths.
_BACKEND_FLAGS = frozenset({"cudnn_enabled", "cudnn_enable"})

_NO_DEFAULT = object()


@dataclass(frozen=True, slots=True)
class Ref:
    """A tensor argument, already resolved to its IR tensor id."""

    tid: str


@dataclass(frozen=True, slots=True)
class OpInfo:
    """What the builder needs from an op's schema; computed once per overload."""

    target: str
    op_class: OpClass
    arg_names: tuple[str, ...]
    defaults: tuple[Any, ...]  # _NO_DEFAULT where the argument has none
    out_alias: tuple[str | None, ...]  # per return: the argument whose storage it shares
    dropped: bool


_INFO: dict[Any, OpInfo] = {}


def op_info(func: torch._ops.OpOverload) -> OpInfo:
    """Schema facts for ``func`` (cached: one schema walk per overload per process)."""
    info = _INFO.get(func)
    if info is None:
        info = _INFO[func] = _make_info(func)
    return info


def _make_info(func: torch._ops.OpOverload) -> OpInfo:
    raw = str(func)
    target = _RENAMED.get(raw, raw)
    schema = func._schema
    names, defaults, alias_sets, wildcard = [], [], [], None
    for a in schema.arguments:
        names.append(a.name)
        defaults.append(a.default_value if a.has_default_value() else _NO_DEFAULT)
        alias_sets.append(set(a.alias_info.before_set) if a.alias_info is not None else set())
        if a.alias_info is not None and "*" in a.alias_info.after_set and wildcard is None:
            wildcard = a.name  # split(Tensor(a -> *) self) -> Tensor(a)[]
    out_alias: list[str | None] = []
    for r in schema.returns:
        owner = None
        if r.alias_info is not None:
            ret = set(r.alias_info.before_set)
            # A list return's element annotation (Tensor(a)[]) is not visible from Python:
            # it shows as an empty set; the argument annotated ``a -> *`` is the owner.
            owner = next((n for n, s in zip(names, alias_sets, strict=True) if s & ret), None) if ret else wildcard
        out_alias.append(owner)
    return OpInfo(
        target=target,
        op_class=classify(target),
        arg_names=tuple(names),
        defaults=tuple(defaults),
        out_alias=tuple(out_alias),
        dropped=raw in _DROPPED,
    )


def to_dtype(dt: torch.dtype) -> DType:
    try:
        return _DTYPES[dt]
    except KeyError:
        raise CaptureError(f"tensor dtype {dt} is not supported by dnnmap.ir") from None


def attr_value(v: Any) -> Any:
    """A non-tensor argument as a JSON scalar / tuple (dtypes, devices, formats as strings)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)  # "inf", "-inf", "nan": portable JSON
    if isinstance(v, (list, tuple)):
        return tuple(attr_value(x) for x in v)
    if isinstance(v, Ref):
        return v.tid
    if isinstance(v, (torch.dtype, torch.layout, torch.memory_format)):
        return str(v).removeprefix("torch.")
    if isinstance(v, torch.device):
        return str(v)
    if isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return _sym_value(v)
    return type(v).__name__


def _sym_value(v: Any) -> Any:
    node = v.node
    if node.is_constant() or node.has_hint():
        return attr_value({torch.SymInt: int, torch.SymFloat: float, torch.SymBool: bool}[type(v)](v))
    return str(v)


def shape_of(t: torch.Tensor) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in t.shape)
    except Exception as e:  # an unbacked symbolic size: no number to count with
        raise CaptureError(f"tensor has a data-dependent shape {tuple(t.shape)}: {e}") from None


def _layout_of(t: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...], torch.dtype]:
    try:
        return shape_of(t), tuple(int(x) for x in t.stride()), t.dtype
    except Exception:  # no strides (some subclasses): treat as contiguous
        shape = shape_of(t)
        return shape, _contiguous_strides(shape), t.dtype


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


# Ops whose schema says "may alias" but which copy when a view is impossible.
_MAYBE_COPY = frozenset({"reshape", "flatten", "contiguous", "to", "type_as"})


def really_aliases(name: str, layout: tuple, out: torch.Tensor) -> bool:
    """Whether op ``name`` returned a view of an input with ``layout`` (shape, strides, dtype).

    ``reshape`` of a permuted tensor, ``contiguous`` of a transposed one and a dtype-changing
    ``to`` copy; the schema cannot tell, the strides can. Pure arithmetic: no tensor is made
    (the dispatch recorder would record it).
    """
    if name not in _MAYBE_COPY:
        return True
    shape, stride, dtype = layout
    if name in ("to", "type_as"):
        return out.dtype == dtype
    if name == "contiguous":
        return _is_contiguous(shape, stride)
    return _viewable(shape, stride, shape_of(out))


def _is_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, st in zip(reversed(shape), reversed(stride), strict=True):
        if n != 1 and st != expected:
            return False
        expected *= n
    return True


def _viewable(shape: tuple[int, ...], stride: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """ATen's ``computeStride``: can ``new`` be a view of (shape, stride) without a copy?"""
    if not shape or math.prod(shape) == 0:
        return True
    view_d = len(new) - 1
    base = stride[-1]
    tensor_numel = view_numel = 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and stride[d - 1] != tensor_numel * base):
            while view_d >= 0 and (view_numel < tensor_numel or new[view_d] == 1):
                view_numel *= new[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return False
            if d > 0:
                base, tensor_numel, view_numel = stride[d - 1], 1, 1
    return view_d == -1


class GraphBuilder:
    """Collects tensors and ops in execution order, numbering them ``t0.. / op0..``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self._layout: dict[str, tuple[tuple[int, ...], tuple[int, ...], torch.dtype]] = {}

    def add_tensor(
        self,
        value: torch.Tensor,
        role: Role,
        name: str = "",
        producer: str | None = None,
        alias_of: str | None = None,
    ) -> str:
        tid = f"t{len(self.tensors)}"
        self._layout[tid] = _layout_of(value)
        self.tensors[tid] = Tensor(tid, shape_of(value), to_dtype(value.dtype), role, producer, name, alias_of)
        return tid

    def add_op(
        self,
        func: torch._ops.OpOverload,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        out: Any,
        module_path: str,
        module_type: str,
    ) -> Any:
        """Record one call; returns ``out`` with every tensor replaced by its new id.

        ``args`` / ``kwargs`` hold :class:`Ref` for tensors (lists may mix Refs and None).
        Returns None for a dropped op (export-only assertions).
        """
        info = op_info(func)
        if info.dropped:
            return None
        op_id = f"op{len(self.ops)}"
        inputs, input_args, attrs = self._bind(info, args, kwargs)
        outs, out_ids = self._outputs(info, out, op_id, inputs, input_args)
        self.ops.append(
            Op(op_id, info.target, info.op_class, tuple(inputs), tuple(out_ids), module_path, module_type,
               tuple(input_args), attrs)
        )
        return outs

    def _bind(self, info: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any]):
        inputs: list[str] = []
        input_args: list[str] = []
        attrs: dict[str, Any] = {}
        n = len(args)
        for i, name in enumerate(info.arg_names):
            if name in _BACKEND_FLAGS:
                continue
            if i < n:
                v = args[i]
            elif name in kwargs:
                v = kwargs[name]
            else:
                v = info.defaults[i]
                if v is _NO_DEFAULT:
                    continue
            if isinstance(v, Ref):
                inputs.append(v.tid)
                input_args.append(name)
            elif isinstance(v, (list, tuple)) and any(isinstance(x, Ref) for x in v):
                for x in v:
                    if isinstance(x, Ref):
                        inputs.append(x.tid)
                        input_args.append(name)
                if not all(isinstance(x, Ref) for x in v):  # e.g. index(self, [None, idx])
                    attrs[name] = attr_value(v)
            else:
                attrs[name] = attr_value(v)
        return inputs, input_args, attrs

    def _outputs(self, info: OpInfo, out: Any, op_id: str, inputs: list[str], input_args: list[str]):
        out_ids: list[str] = []
        single = len(info.out_alias) == 1

        def alias_root(k: int, value: torch.Tensor) -> str | None:
            owner = info.out_alias[0 if single else k] if info.out_alias else None
            if owner is None:
                return None
            for tid, a in zip(inputs, input_args, strict=True):
                if a == owner:
                    if not really_aliases(op_name(info.target), self._layout[tid], value):
                        return None
                    return self.tensors[tid].alias_of or tid
            return None

        def conv(v: Any, k: int) -> Any:
            if isinstance(v, torch.Tensor):
                tid = self.add_tensor(v, Role.ACTIVATION, producer=op_id, alias_of=alias_root(k, v))
                out_ids.append(tid)
                return tid
            if isinstance(v, (list, tuple)):
                return [conv(x, k) for x in v]
            return None

        if single or not isinstance(out, (list, tuple)):
            return conv(out, 0), out_ids
        return [conv(x, j) for j, x in enumerate(out)], out_ids

    def finish(self, inputs: list[str], outputs: list[str], meta: dict[str, Any] | None = None) -> Graph:
        """Mark model outputs (``Role.OUTPUT``) and freeze the graph."""
        tensors = self.tensors
        for tid in outputs:
            if tensors[tid].role is Role.ACTIVATION:
                tensors[tid] = replace(tensors[tid], role=Role.OUTPUT)
        return Graph(self.name, dict(tensors), tuple(self.ops), tuple(inputs),
                     tuple(dict.fromkeys(outputs)), dict(meta or {}))
