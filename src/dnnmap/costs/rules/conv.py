"""Convolution rules: every conv spelling (conv2d, convolution, transposed, grouped, depthwise).

Tensor FLOPs are ``torch.utils.flop_counter.conv_flop_count(x, w, out, transposed)``:
``2 * batch * prod(spatial) * prod(kernel) * w.shape[0] * w.shape[1]`` where ``spatial``
is the output's (the input's when transposed). ``w.shape[1]`` is already ``C_in / groups``
(``C_out / groups`` when transposed), so grouped and depthwise convs come out right.
Padding positions are counted as the kernel computes them. The bias is an epilogue:
one add per output element, vector work (FlopCounterMode ignores it).

>>> from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
>>> from dnnmap.costs import count_graph
>>> t = {"x": Tensor("x", (1, 3, 8, 8), DType.FLOAT32, Role.INPUT),
...      "w": Tensor("w", (4, 3, 3, 3), DType.FLOAT32, Role.WEIGHT),
...      "y": Tensor("y", (1, 4, 8, 8), DType.FLOAT32, Role.OUTPUT, producer="op0")}
>>> op = Op("op0", "aten.conv2d.default", OpClass.CONV, ("x", "w"), ("y",),
...         input_args=("input", "weight"), attrs={"padding": (1, 1)})
>>> count_graph(Graph("g", t, (op,))).total.macs == 1 * 4 * 8 * 8 * 3 * 3 * 3
True
"""

from __future__ import annotations

from torch.utils.flop_counter import conv_backward_flop, conv_flop_count

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import fail, first_output, io_cost, required, tensor_arg
from dnnmap.ir.classify import op_name

_ALWAYS_TRANSPOSED = ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


@cost_rule(
    "convolution",
    "_convolution",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "cudnn_convolution",
    "mkldnn_convolution",
)
def convolution(ctx: RuleContext) -> OpCost:
    x, w = required(ctx, "input", 0), required(ctx, "weight", 1)
    bias = tensor_arg(ctx, "bias", 2)
    out = first_output(ctx)
    transposed = op_name(ctx.op.target) in _ALWAYS_TRANSPOSED or bool(ctx.attrs.get("transposed", False))
    unbatched = len(x.shape) == len(w.shape) - 1  # conv2d on [C, H, W]
    x_shape = (1, *x.shape) if unbatched else x.shape
    out_shape = (1, *out.shape) if unbatched else out.shape
    if len(x_shape) != len(w.shape) or len(out_shape) != len(w.shape):
        raise fail(ctx, f"conv input rank {len(x.shape)} does not fit weight rank {len(w.shape)}")
    flops = conv_flop_count(list(x_shape), list(w.shape), list(out_shape), transposed=transposed)
    return io_cost(ctx, tensor_flops=flops, vector_flops=out.numel if bias is not None else 0)


@cost_rule("convolution_backward")
def convolution_backward(ctx: RuleContext) -> OpCost:
    """grad_input and grad_weight are each a convolution as big as the forward one
    (``torch.utils.flop_counter.conv_backward_flop``, ``output_mask`` decides which run);
    grad_bias is one add per grad_output element.

    Grouped convolutions: torch's grad_weight formula convolves the whole transposed input with
    the whole transposed grad_output, ignoring ``groups`` — ``groups`` times the work of the
    per-group products ``x_g^T @ grad_out_g`` that run (a depthwise 3x3 over 960 channels:
    960x). Its grad_weight part is divided by ``groups``; grad_input (weight already
    ``C_in / groups`` wide) is right as it is.

    >>> from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
    >>> from dnnmap.costs import count_graph
    >>> def t(i, shape, role=Role.ACTIVATION):
    ...     return Tensor(i, shape, DType.FLOAT32, role, producer=None if role is not Role.ACTIVATION else "op0")
    >>> ts = {"g": t("g", (2, 8, 4, 4), Role.INPUT), "x": t("x", (2, 8, 4, 4), Role.INPUT),
    ...       "w": t("w", (8, 1, 3, 3), Role.WEIGHT), "gx": t("gx", (2, 8, 4, 4)), "gw": t("gw", (8, 1, 3, 3))}
    >>> op = Op("op0", "aten.convolution_backward.default", OpClass.CONV, ("g", "x", "w"), ("gx", "gw"),
    ...         input_args=("grad_output", "input", "weight"),
    ...         attrs={"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "transposed": False,
    ...                "output_padding": (0, 0), "groups": 8, "output_mask": (True, True, False)})
    >>> c = count_graph(Graph("dw", ts, (op,), inputs=("g", "x"), outputs=("gx", "gw"))).total
    >>> macs = 2 * 16 * 8 * 9  # N x H x W x channels x (3 x 3), for grad_input and again for grad_weight
    >>> c.tensor_flops == 2 * (2 * macs)  # torch's formula says 2 * (macs + 8 * macs)
    True
    """
    g, x, w = required(ctx, "grad_output", 0), required(ctx, "input", 1), required(ctx, "weight", 2)
    mask = tuple(bool(m) for m in ctx.attrs.get("output_mask", (True, True, True)))
    transposed = bool(ctx.attrs.get("transposed", False))
    a = ctx.attrs
    groups = int(a.get("groups", 1) or 1)

    def flops_of(which: list[bool]) -> int:
        return conv_backward_flop(list(g.shape), list(x.shape), list(w.shape), a.get("bias_sizes"), a.get("stride"),
                                  a.get("padding"), a.get("dilation"), transposed, a.get("output_padding"),
                                  groups, which, out_val=(list(x.shape), list(w.shape), None))

    grad_input = flops_of([mask[0], False, False]) if mask and mask[0] else 0
    grad_weight = flops_of([False, True, False]) // groups if len(mask) > 1 and mask[1] else 0
    return io_cost(ctx, tensor_flops=grad_input + grad_weight,
                   vector_flops=g.numel if len(mask) > 2 and mask[2] else 0)
