"""Reductions and pooling: vector work per element read, bytes of reading once.

Per-element costs (``N_in`` = elements of the reduced input, ``N_out`` = output elements):

- sum / prod / any / all / amax / amin / argmax / argmin / cumsum / cumprod / count_nonzero:
  ``N_in`` (one add or compare per element read; the first of each group meets the identity)
- mean: ``N_in + N_out`` (the sum, then one divide per output)
- var / var_mean: ``4 N_in + 2 N_out`` (mean; subtract, square, sum; divide by n - correction);
  std / std_mean add one sqrt per output (``N_out`` transcendentals)
- norm / linalg_vector_norm: ord 2 ``2 N_in + N_out`` (square, sum; sqrt); ord 1 / inf / 0
  ``2 N_in``; other p ``3 N_in + N_out`` with ``N_in + N_out`` transcendentals (|x|**p, sum, **1/p)
- logsumexp: ``4 N_in + 2 N_out`` (max, subtract, exp, sum; log, add), ``N_in + N_out`` trans.
- sort: ``N_in * ceil(log2 n)`` comparisons (n = length of the sorted dim); topk:
  ``N_in * ceil(log2(k + 1))`` (a size-k heap per slice). Both are comparison-count models.
- max / min with two tensors (``max.other``) are elementwise: ``N_out``.

Pooling is window size x outputs: max pool ``N_out * prod(kernel)`` compares; avg pool
``N_out * (prod(kernel) + 1)`` (adds and one divide); adaptive pools use the exact window
each output covers (``start = floor(i*I/O)``, ``end = ceil((i+1)*I/O)``), so
``adaptive_avg_pool2d`` 7x7 -> 1x1 is ``49 + 1`` per output, as ``mean`` over 49 is.

>>> from dnnmap.costs.rules.reduction import adaptive_window_total
>>> adaptive_window_total(7, 1), adaptive_window_total(5, 3)
(7, 7)
"""

from __future__ import annotations

import math
import re

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import as_tuple, first_output, io_cost, reduced_dims, required
from dnnmap.ir.classify import op_name


def _n_in(ctx: RuleContext) -> int:
    return required(ctx, "self", 0).numel


@cost_rule(
    "sum", "nansum", "prod", "any", "all", "amax", "amin", "argmax", "argmin", "cumsum",
    "cumprod", "count_nonzero", "_is_all_true", "_is_any_true",
)
def reduce_one(ctx: RuleContext) -> OpCost:
    return io_cost(ctx, vector_flops=_n_in(ctx))


@cost_rule("max", "min")
def max_min(ctx: RuleContext) -> OpCost:
    if len(ctx.inputs) >= 2:  # max.other / min.other: elementwise maximum
        return io_cost(ctx, vector_flops=first_output(ctx).numel)
    return io_cost(ctx, vector_flops=_n_in(ctx))


@cost_rule("equal")
def equal(ctx: RuleContext) -> OpCost:
    # torch.equal(a, b): one compare per element of a (returns a Python bool)
    return io_cost(ctx, vector_flops=_n_in(ctx))


@cost_rule("aminmax")
def aminmax(ctx: RuleContext) -> OpCost:
    return io_cost(ctx, vector_flops=2 * _n_in(ctx))


@cost_rule("mean")
def mean(ctx: RuleContext) -> OpCost:
    return io_cost(ctx, vector_flops=_n_in(ctx) + first_output(ctx).numel)


@cost_rule("var", "std", "var_mean", "std_mean")
def var_std(ctx: RuleContext) -> OpCost:
    n_in, n_out = _n_in(ctx), first_output(ctx).numel
    is_std = op_name(ctx.op.target).startswith("std")
    sqrt = n_out if is_std else 0
    return io_cost(ctx, vector_flops=4 * n_in + 2 * n_out + sqrt, transcendentals=sqrt)


@cost_rule("norm", "linalg_vector_norm")
def norm(ctx: RuleContext) -> OpCost:
    n_in, n_out = _n_in(ctx), first_output(ctx).numel
    p = ctx.attrs.get("ord", ctx.attrs.get("p", 2))
    p = 2 if p is None else p
    if p in (2, 2.0, "fro"):
        return io_cost(ctx, vector_flops=2 * n_in + n_out, transcendentals=n_out)
    if p in (1, 0, "inf", "-inf") or (isinstance(p, float) and math.isinf(p)):
        return io_cost(ctx, vector_flops=2 * n_in)
    return io_cost(ctx, vector_flops=3 * n_in + n_out, transcendentals=n_in + n_out)


@cost_rule("logsumexp")
def logsumexp(ctx: RuleContext) -> OpCost:
    n_in, n_out = _n_in(ctx), first_output(ctx).numel
    return io_cost(ctx, vector_flops=4 * n_in + 2 * n_out, transcendentals=n_in + n_out)


@cost_rule("sort")
def sort(ctx: RuleContext) -> OpCost:
    x = required(ctx, "self", 0)
    dims = reduced_dims(ctx, len(x.shape)) if "dim" in ctx.attrs else (len(x.shape) - 1,)
    n = x.shape[dims[0]] if x.shape else 1
    return io_cost(ctx, vector_flops=x.numel * max(math.ceil(math.log2(max(n, 1))), 1))


@cost_rule("topk")
def topk(ctx: RuleContext) -> OpCost:
    k = int(ctx.attrs.get("k", 1))
    return io_cost(ctx, vector_flops=_n_in(ctx) * max(math.ceil(math.log2(k + 1)), 1))


# -- pooling -------------------------------------------------------------------------


def _spatial_dims(ctx: RuleContext) -> int:
    m = re.search(r"(\d)d", op_name(ctx.op.target))
    return int(m.group(1)) if m else 2


@cost_rule(
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
)
def max_pool(ctx: RuleContext) -> OpCost:
    # one compare per window element per output
    kernel = as_tuple(ctx.attrs.get("kernel_size"), _spatial_dims(ctx))
    return io_cost(ctx, vector_flops=first_output(ctx).numel * math.prod(kernel))


@cost_rule("avg_pool1d", "avg_pool2d", "avg_pool3d")
def avg_pool(ctx: RuleContext) -> OpCost:
    # window adds + one divide per output
    kernel = as_tuple(ctx.attrs.get("kernel_size"), _spatial_dims(ctx))
    return io_cost(ctx, vector_flops=first_output(ctx).numel * (math.prod(kernel) + 1))


def adaptive_window_total(size_in: int, size_out: int) -> int:
    """Sum over outputs of the window length adaptive pooling uses along one dim."""
    return sum(
        -(-(i + 1) * size_in // size_out) - (i * size_in // size_out) for i in range(size_out)
    )


def _adaptive_windows(ctx: RuleContext) -> int:
    """Window elements summed over all outputs (exact, per PyTorch's start/end formula)."""
    nd = _spatial_dims(ctx)
    x, out = required(ctx, "self", 0), first_output(ctx)
    outer = out.numel // max(math.prod(out.shape[-nd:]), 1)
    per_dim = (adaptive_window_total(i, o) for i, o in zip(x.shape[-nd:], out.shape[-nd:], strict=True))
    return outer * math.prod(per_dim)


@cost_rule(
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d",
    "_adaptive_avg_pool3d",
)
def adaptive_avg_pool(ctx: RuleContext) -> OpCost:
    return io_cost(ctx, vector_flops=_adaptive_windows(ctx) + first_output(ctx).numel)


@cost_rule("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")
def adaptive_max_pool(ctx: RuleContext) -> OpCost:
    return io_cost(ctx, vector_flops=_adaptive_windows(ctx))


# -- backward and losses -----------------------------------------------------------------
@cost_rule("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward")
def max_pool_backward(ctx: RuleContext) -> OpCost:
    # zero grad_input, then scatter-add each grad_output element at its saved index
    g = required(ctx, "grad_output", 0)
    return io_cost(ctx, vector_flops=g.numel)


@cost_rule("avg_pool2d_backward", "avg_pool3d_backward", "_adaptive_avg_pool2d_backward",
           "_adaptive_avg_pool3d_backward", "adaptive_max_pool2d_backward")
def avg_pool_backward(ctx: RuleContext) -> OpCost:
    # every grad_input element gathers the outputs whose window covers it: one add each,
    # and the divide by the window size
    return io_cost(ctx, vector_flops=2 * first_output(ctx).numel)


@cost_rule("nll_loss_forward", "nll_loss2d_forward", "nll_loss", "nll_loss2d")
def nll_loss(ctx: RuleContext) -> OpCost:
    # gather one log-probability per target, negate, sum (and divide for the mean)
    target = required(ctx, "target", 1)
    return io_cost(ctx, vector_flops=3 * target.numel)


@cost_rule("nll_loss_backward", "nll_loss2d_backward")
def nll_loss_backward(ctx: RuleContext) -> OpCost:
    # zero the [N, C] gradient and write -g / N at each target: one op per target
    target = required(ctx, "target", 2)
    return io_cost(ctx, vector_flops=target.numel)


@cost_rule("histc", "bincount")
def histogram(ctx: RuleContext) -> OpCost:
    # tokens per expert: one bin compare + one increment per input element
    return io_cost(ctx, vector_flops=2 * required(ctx, "self", 0).numel)
