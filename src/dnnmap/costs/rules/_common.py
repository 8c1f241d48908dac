"""Helpers the rule modules share: bytes of reading inputs once, attribute normalisation.

>>> from dnnmap.costs.rules._common import as_tuple
>>> as_tuple(3, 2), as_tuple((2, 1), 2), as_tuple((), 2, default=(5, 5))
((3, 3), (2, 1), (5, 5))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dnnmap.costs.base import CostRuleError, OpCost, RuleContext
from dnnmap.ir import Tensor


def io_cost(
    ctx: RuleContext,
    *,
    tensor_flops: int = 0,
    vector_flops: int = 0,
    transcendentals: int = 0,
) -> OpCost:
    """Work as given; every input read once, every output written once (exact per dtype).

    MACs are half the tensor FLOPs (FLOPs = 2 x MACs for GEMM / conv / attention).
    """
    read, written, weight = ctx.io_bytes()
    return OpCost(
        tensor_flops=tensor_flops,
        vector_flops=vector_flops,
        transcendentals=transcendentals,
        macs=tensor_flops // 2,
        bytes_read=read,
        bytes_written=written,
        weight_bytes=weight,
        params=ctx.params(),
    )


def tensor_arg(ctx: RuleContext, name: str, position: int | None = None) -> Tensor | None:
    """Input passed for schema argument ``name``; by ``position`` when args are unnamed."""
    t = ctx.arg(name)
    if t is not None:
        return t
    if not ctx.op.input_args and position is not None and position < len(ctx.inputs):
        return ctx.inputs[position]
    return None


def required(ctx: RuleContext, name: str, position: int) -> Tensor:
    t = tensor_arg(ctx, name, position)
    if t is None:
        raise CostRuleError(f"{ctx.op.id} ({ctx.op.target}) has no tensor for argument {name!r}")
    return t


def first_output(ctx: RuleContext) -> Tensor:
    if not ctx.outputs:
        raise CostRuleError(f"{ctx.op.id} ({ctx.op.target}) has no output tensor")
    return ctx.outputs[0]


def out_numel(ctx: RuleContext) -> int:
    return first_output(ctx).numel


def as_tuple(value: Any, n: int, default: Sequence[int] | None = None) -> tuple[int, ...]:
    """An int-or-list attribute as ``n`` ints (``3`` -> ``(3, 3)``); ``default`` if empty."""
    if value is None or (isinstance(value, Sequence) and len(value) == 0):
        if default is None:
            raise ValueError("attribute missing and no default")
        return tuple(int(v) for v in default)
    if isinstance(value, int | float):
        return (int(value),) * n
    vals = tuple(int(v) for v in value)
    return vals * n if len(vals) == 1 and n > 1 else vals


def reduced_dims(ctx: RuleContext, ndim: int) -> tuple[int, ...]:
    """The dims a reduction runs over: ``dim`` attr (int or list); all dims when absent."""
    dim = ctx.attrs.get("dim")
    if dim is None or (isinstance(dim, Sequence) and len(dim) == 0):
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % ndim if ndim else 0 for d in dims)


def prod(xs: Sequence[int]) -> int:
    return math.prod(xs)


def fail(ctx: RuleContext, why: str) -> CostRuleError:
    shapes = ", ".join(str(t.shape) for t in ctx.inputs)
    return CostRuleError(f"{ctx.op.id} ({ctx.op.target}, module {ctx.op.module_path or '<root>'}): {why}; input shapes {shapes}")
