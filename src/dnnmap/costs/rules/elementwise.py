"""Elementwise rules: one table of per-element costs, ``N = numel(output)`` (the broadcast shape).

``vector_flops = ops * N`` and ``transcendentals = trans * N``, with (ops, trans) from
``PER_ELEMENT`` below. A transcendental (exp, log, tanh, erf, sqrt, sin ...) counts as one
op in ``ops`` *and* once in ``trans``. The decompositions follow PyTorch's reference
formulas (``torch/_refs``); each entry names the one it counts. In-place variants
(``add_``) cost what their out-of-place op costs. Bytes: inputs read once at their
recorded shape, the output written once.

>>> from dnnmap.costs.rules.elementwise import PER_ELEMENT
>>> PER_ELEMENT["gelu"], PER_ELEMENT["silu"], PER_ELEMENT["add"]
((5, 1), (5, 1), (1, 0))
"""

from __future__ import annotations

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import io_cost, out_numel
from dnnmap.ir.classify import inplace_base, op_name

_ONE = (1, 0)
_TRANS = (1, 1)  # one transcendental evaluation

PER_ELEMENT: dict[str, tuple[int, int]] = {
    # one arithmetic / compare / logical / bitwise op
    **dict.fromkeys(
        (
            "add", "sub", "mul", "div", "rsub", "true_divide", "neg", "abs", "reciprocal",
            "sign", "sgn", "floor", "ceil", "round", "trunc", "frac", "square", "relu",
            "threshold", "minimum", "maximum", "clamp_min", "clamp_max", "eq", "ne", "lt",
            "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "logical_xor",
            "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor", "bitwise_left_shift",
            "bitwise_right_shift", "__and__", "__or__", "remainder", "fmod", "floor_divide",
            "copysign", "isnan", "isinf", "heaviside", "positive",
        ),
        _ONE,
    ),
    "diff": _ONE,  # out[i] = x[i+1] - x[i]: one subtract per output element (n = 1)
    # one transcendental each
    **dict.fromkeys(
        (
            "exp", "exp2", "expm1", "log", "log2", "log1p", "log10", "sin", "cos", "tan",
            "tanh", "sqrt", "rsqrt", "erf", "erfc", "atan", "asin", "acos", "sinh", "cosh",
            "atan2",
        ),
        _TRANS,
    ),
    "clamp": (2, 0),  # max(min_, min(x, max_)); one op when only one bound is given
    "clip": (2, 0),
    "hardtanh": (2, 0),  # clamp(x, min_val, max_val)
    "relu6": (2, 0),  # clamp(x, 0, 6)
    "nan_to_num": (3, 0),  # three selects: nan, +inf, -inf
    "leaky_relu": (2, 0),  # x > 0 ? x : slope * x
    "prelu": (2, 0),
    "_prelu_kernel": (2, 0),
    "hardshrink": (2, 0),  # |x| > l ? x : 0
    "softshrink": (3, 0),  # compare, shift by lambda, select
    "lerp": (3, 0),  # a + w * (b - a)
    "addcmul": (3, 0),  # self + value * t1 * t2
    "addcdiv": (3, 0),  # self + value * t1 / t2
    "hypot": (4, 1),  # sqrt(x*x + y*y)
    "logaddexp": (6, 2),  # max(a,b) + log1p(exp(-|a-b|)): sub, abs, exp, log1p, max, add
    "sigmoid": (4, 1),  # 1 / (1 + exp(-x)): neg, exp, add, divide
    "silu": (5, 1),  # x * sigmoid(x)
    "gelu": (5, 1),  # erf form: 0.5 * x * (1 + erf(x / sqrt(2))): mul, erf, add, mul, mul
    "hardswish": (5, 0),  # x * min(max(x + 3, 0), 6) / 6: add, max, min, mul, div
    "hardsigmoid": (4, 0),  # min(max(x + 3, 0), 6) / 6
    "mish": (4, 3),  # x * tanh(log1p(exp(x))): exp, log1p, tanh, mul
    "softplus": (5, 2),  # log1p(exp(beta * x)) / beta, threshold select
    "elu": (4, 1),  # x > 0 ? x : alpha * (exp(x) - 1): select, exp, sub, mul
    "selu": (5, 1),  # scale * elu(x)
    "celu": (5, 1),  # elu with exp(x / alpha)
    "logit": (3, 1),  # log(x / (1 - x))
    "glu": (5, 1),  # a * sigmoid(b) per output element
    "log_sigmoid_forward": (6, 2),  # min(x, 0) - log1p(exp(-|x|)): abs, neg, exp, log1p, min, sub
    "xlogy": (2, 1),  # x * log(y)
    "pow": _TRANS,  # refined by _pow_cost for integer exponents
    "float_power": _TRANS,
}
_GELU_TANH = (9, 1)  # 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))): 2 mul for x^3, mul, add, mul, tanh, add, mul, mul


# Backward of activations (autograd's formulas, ``tools/autograd/derivatives.yaml``), per
# grad_input element; the forward value is recomputed where the formula needs it.
PER_ELEMENT.update({
    "threshold_backward": (1, 0),  # x > threshold ? g : 0
    "hardtanh_backward": (2, 0),  # min_val < x < max_val ? g : 0: two compares folded into a select
    "leaky_relu_backward": (2, 0),  # x > 0 ? g : slope * g
    "tanh_backward": (3, 0),  # g * (1 - y * y)
    "sigmoid_backward": (3, 0),  # g * y * (1 - y)
    "gelu_backward": (10, 2),  # g * (cdf + x * pdf): x/sqrt2, erf, +1, *0.5, x*x, *-0.5, exp, *c, *x, add
    "silu_backward": (7, 1),  # s = sigmoid(x) (4, 1 exp), g * s * (1 + x * (1 - s)) (3 more)
    "hardswish_backward": (4, 0),  # piecewise: compares, (2x + 3) / 6 * g
    "hardsigmoid_backward": (2, 0),  # -3 < x < 3 ? g / 6 : 0
    "elu_backward": (3, 0),  # x > 0 ? g : g * (y + alpha)
    "softplus_backward": (5, 1),  # g * sigmoid(beta * x) with the threshold select
    "log_sigmoid_backward": (5, 1),  # g * (1 - sigmoid(x)) via the saved buffer
    "mish_backward": (9, 3),
})
# The optimizers' multi-tensor ("foreach") kernels cost, per element of the ``self`` list,
# what their one-tensor op costs.
FOREACH = {f"_foreach_{k}": PER_ELEMENT[k] for k in (
    "add", "sub", "mul", "div", "lerp", "addcmul", "addcdiv", "sqrt", "neg", "maximum",
    "reciprocal", "sign", "abs", "exp", "pow",
)}


def _pow_cost(exponent: object) -> tuple[int, int]:
    """x ** k: square-and-multiply for integer k (x**2 is one multiply); else one transcendental.

    >>> _pow_cost(2), _pow_cost(3), _pow_cost(0.5), _pow_cost(-1), _pow_cost(1.7)
    ((1, 0), (2, 0), (1, 1), (1, 0), (1, 1))
    """
    if isinstance(exponent, bool) or not isinstance(exponent, int | float):
        return _TRANS
    if exponent == 0.5:
        return _TRANS  # sqrt
    if not float(exponent).is_integer() or abs(exponent) > 2**16:
        return _TRANS
    k = abs(int(exponent))
    muls = max(k.bit_length() - 1 + bin(k).count("1") - 1, 0) if k else 0
    if exponent < 0:
        muls += 1  # the reciprocal
    return max(muls, 1), 0


def per_element(ctx: RuleContext) -> tuple[int, int]:
    """(ops, transcendentals) per output element for this op and its attributes."""
    name = op_name(ctx.op.target)
    name = name if name in PER_ELEMENT else (inplace_base(name) or name)
    attrs = ctx.attrs
    if name in ("pow", "float_power") and "exponent" in attrs:
        return _pow_cost(attrs["exponent"])
    if name == "gelu" and attrs.get("approximate", "none") == "tanh":
        return _GELU_TANH
    ops, trans = PER_ELEMENT[name]
    if name in ("clamp", "clip") and (attrs.get("min") is None) != (attrs.get("max") is None):
        ops = 1  # only one bound: a single max or min
    if name in ("add", "sub", "rsub") and attrs.get("alpha", 1) not in (1, 1.0):
        ops += 1  # other * alpha
    return ops, trans


@cost_rule(*PER_ELEMENT)
def elementwise(ctx: RuleContext) -> OpCost:
    ops, trans = per_element(ctx)
    n = out_numel(ctx)
    return io_cost(ctx, vector_flops=ops * n, transcendentals=trans * n)



@cost_rule(*FOREACH)
def foreach(ctx: RuleContext) -> OpCost:
    """One pass over every tensor of the ``self`` list; an in-place call (``_foreach_add_``)
    returns nothing and writes its ``self`` tensors."""
    name = op_name(ctx.op.target)
    ops, trans = FOREACH[name if name in FOREACH else (inplace_base(name) or name)]
    selves = [t for t, a in zip(ctx.inputs, ctx.op.input_args, strict=False) if a == "self"]
    n = sum(t.numel for t in selves)
    read, written, weight = ctx.io_bytes()
    if not ctx.outputs:
        written = sum(t.nbytes for t in selves)
    return OpCost(vector_flops=ops * n, transcendentals=trans * n, bytes_read=read, bytes_written=written,
                  weight_bytes=weight, params=ctx.params())
