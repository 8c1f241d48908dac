"""Softmax rules: vector work per element along the softmax dim.

- softmax / _softmax: 5 ops per element (max, subtract, exp, sum, divide), 1 exp each.
- _safe_softmax: softmax + 1 select per element (rows that are fully masked give 0).
- log_softmax / _log_softmax: 5 ops per element (max, subtract, exp, sum, subtract) plus
  one log per row; transcendentals: one exp per element + one log per row.

Rows = ``N / size(dim)``. Bytes: input read once, output written once (the reduction
passes re-read from cache; no extra DRAM traffic is assumed).

>>> from dnnmap.costs.rules.softmax import SOFTMAX_OPS_PER_ELEMENT
>>> SOFTMAX_OPS_PER_ELEMENT
5
"""

from __future__ import annotations

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import io_cost, reduced_dims, required
from dnnmap.ir.classify import op_name

SOFTMAX_OPS_PER_ELEMENT = 5  # max, subtract, exp, sum, divide


@cost_rule("softmax", "_softmax", "_safe_softmax")
def softmax(ctx: RuleContext) -> OpCost:
    n = required(ctx, "self", 0).numel
    per = SOFTMAX_OPS_PER_ELEMENT + (1 if op_name(ctx.op.target) == "_safe_softmax" else 0)
    return io_cost(ctx, vector_flops=per * n, transcendentals=n)


@cost_rule("log_softmax", "_log_softmax")
def log_softmax(ctx: RuleContext) -> OpCost:
    x = required(ctx, "self", 0)
    n = x.numel
    (dim,) = reduced_dims(ctx, len(x.shape))[:1] or (0,)
    rows = n // x.shape[dim] if x.shape and x.shape[dim] else 0
    return io_cost(ctx, vector_flops=SOFTMAX_OPS_PER_ELEMENT * n + rows, transcendentals=n + rows)


@cost_rule("_softmax_backward_data")
def softmax_backward(ctx: RuleContext) -> OpCost:
    # dx = y * (g - sum(g * y)): mul, sum, subtract, mul = 4 per element
    n = required(ctx, "grad_output", 0).numel
    return io_cost(ctx, vector_flops=4 * n)


@cost_rule("_log_softmax_backward_data")
def log_softmax_backward(ctx: RuleContext) -> OpCost:
    # dx = g - exp(y) * sum(g): sum, exp, mul, subtract = 4 per element, 1 exp
    n = required(ctx, "grad_output", 0).numel
    return io_cost(ctx, vector_flops=4 * n, transcendentals=n)
