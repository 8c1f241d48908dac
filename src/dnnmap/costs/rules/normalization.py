"""Normalization rules (N = input elements, C = channels, R = normalized rows).

- batch norm, inference (running statistics): per channel ``scale = w * rsqrt(var + eps)``,
  ``shift = b - mean * scale`` (add, rsqrt, mul, mul, sub: 5 ops, 1 rsqrt), then
  ``y = x * scale + shift`` per element (2 ops): ``2N + 5C``, ``C`` transcendentals.
- batch norm, training (batch statistics): sum x and sum x*x (3 per element), per channel
  mean, var, rsqrt, scale, shift and the two running-stat updates (13 per channel), then
  the 2-op normalize: ``5N + 13C``, ``C`` transcendentals.
- layer / group / instance norm: per element mean-sum, subtract, square, var-sum, multiply
  by rstd (5), plus 1 for the weight and 1 for the bias when present; per row mean-divide,
  var-divide, add eps, rsqrt (4): ``(5 + affine) N + 4R``, ``R`` transcendentals. Rows are
  ``N / prod(normalized_shape)`` (layer), ``batch * groups`` (group), ``batch * C`` (instance).
- rms norm: per element square, sum, multiply by rrms (3) plus 1 for the weight; per row
  divide, add eps, rsqrt (3): ``(3 + w) N + 3R``, ``R`` transcendentals.

Bytes: input, weight, bias and statistics read once; every output written once (the
``mean`` / ``rstd`` outputs of ``native_layer_norm`` included, at their recorded size).

>>> from dnnmap.costs.rules.normalization import layer_norm_flops
>>> layer_norm_flops(n=2 * 768, rows=2, affine=2) == (5 + 2) * 2 * 768 + 4 * 2
True
"""

from __future__ import annotations

import math

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import io_cost, required, tensor_arg
from dnnmap.ir.classify import op_name

_TRAINING_BN = ("_batch_norm_with_update", "_native_batch_norm_legit_functional")
_INFERENCE_BN = ("_native_batch_norm_legit_no_training", "_batch_norm_no_update")


def layer_norm_flops(n: int, rows: int, affine: int) -> int:
    return (5 + affine) * n + 4 * rows


def _affine(ctx: RuleContext) -> int:
    return sum(tensor_arg(ctx, a) is not None for a in ("weight", "bias"))


@cost_rule(
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
    "_batch_norm_with_update", "_batch_norm_no_update", "cudnn_batch_norm", "miopen_batch_norm",
)
def batch_norm(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 0)
    c = x.shape[1] if len(x.shape) > 1 else 1
    name = op_name(ctx.op.target)
    no_stats = tensor_arg(ctx, "running_mean") is None and name == "_native_batch_norm_legit"
    training = name in _TRAINING_BN or no_stats or (
        name not in _INFERENCE_BN and bool(ctx.attrs.get("training", False))
    )
    if training:
        return io_cost(ctx, vector_flops=5 * x.numel + 13 * c, transcendentals=c)
    return io_cost(ctx, vector_flops=2 * x.numel + 5 * c, transcendentals=c)


@cost_rule("layer_norm", "native_layer_norm")
def layer_norm(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 0)
    shape = ctx.attrs.get("normalized_shape")
    if shape is None:
        w = tensor_arg(ctx, "weight")
        shape = w.shape if w is not None else x.shape[-1:]
    norm = math.prod(int(s) for s in ((shape,) if isinstance(shape, int) else shape))
    rows = x.numel // norm if norm else 0
    return io_cost(ctx, vector_flops=layer_norm_flops(x.numel, rows, _affine(ctx)), transcendentals=rows)


@cost_rule("group_norm", "native_group_norm")
def group_norm(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 0)
    groups = int(ctx.attrs.get("num_groups", ctx.attrs.get("group", 1)))
    rows = (x.shape[0] if x.shape else 1) * groups
    return io_cost(ctx, vector_flops=layer_norm_flops(x.numel, rows, _affine(ctx)), transcendentals=rows)


@cost_rule("instance_norm")
def instance_norm(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 0)
    rows = math.prod(x.shape[:2]) if len(x.shape) >= 2 else 1
    return io_cost(ctx, vector_flops=layer_norm_flops(x.numel, rows, _affine(ctx)), transcendentals=rows)


@cost_rule("rms_norm", "_fused_rms_norm")
def rms_norm(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 0)
    shape = ctx.attrs.get("normalized_shape", x.shape[-1:])
    norm = math.prod(int(s) for s in ((shape,) if isinstance(shape, int) else shape))
    rows = x.numel // norm if norm else 0
    w = 1 if tensor_arg(ctx, "weight") is not None else 0
    return io_cost(ctx, vector_flops=(3 + w) * x.numel + 3 * rows, transcendentals=rows)


# -- backward ----------------------------------------------------------------------------
# dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)) with xhat = (x - mean) * rstd
# recomputed: xhat (2), g*w (1), g*w*xhat (1), two row sums (2), combine (4) = 10 per
# element for grad_input; grad_weight sum(g * xhat) 2 and grad_bias sum(g) 1 per element
# (each only when its ``output_mask`` entry asks for it); per row / channel 4 ops.
NORM_BACKWARD_INPUT, NORM_BACKWARD_WEIGHT, NORM_BACKWARD_BIAS = 10, 2, 1


def _norm_backward(ctx: RuleContext, n: int, rows: int) -> OpCost:
    mask = tuple(bool(m) for m in ctx.attrs.get("output_mask", (True, True, True)))
    per = sum(k for k, m in zip((NORM_BACKWARD_INPUT, NORM_BACKWARD_WEIGHT, NORM_BACKWARD_BIAS), mask, strict=False)
              if m)
    return io_cost(ctx, vector_flops=per * n + 4 * rows)


@cost_rule("native_layer_norm_backward")
def layer_norm_backward(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 1)
    shape = ctx.attrs.get("normalized_shape") or x.shape[-1:]
    norm = math.prod(int(s) for s in ((shape,) if isinstance(shape, int) else shape))
    return _norm_backward(ctx, x.numel, x.numel // norm if norm else 0)


@cost_rule("native_batch_norm_backward", "cudnn_batch_norm_backward", "miopen_batch_norm_backward",
           "batch_norm_backward", "native_group_norm_backward")
def batch_norm_backward(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 1)
    return _norm_backward(ctx, x.numel, x.shape[1] if len(x.shape) > 1 else 1)


@cost_rule("_fused_rms_norm_backward")
def rms_norm_backward(ctx: RuleContext) -> OpCost:
    x = required(ctx, "input", 1)
    return _norm_backward(ctx, x.numel, x.numel // max(x.shape[-1], 1) if x.shape else 1)
