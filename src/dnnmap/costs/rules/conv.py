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
    grad_bias is one add per grad_output element."""
    g, x, w = required(ctx, "grad_output", 0), required(ctx, "input", 1), required(ctx, "weight", 2)
    mask = tuple(bool(m) for m in ctx.attrs.get("output_mask", (True, True, True)))
    transposed = bool(ctx.attrs.get("transposed", False))
    a = ctx.attrs
    flops = conv_backward_flop(list(g.shape), list(x.shape), list(w.shape), a.get("bias_sizes"), a.get("stride"),
                               a.get("padding"), a.get("dilation"), transposed, a.get("output_padding"),
                               a.get("groups", 1), list(mask), out_val=(list(x.shape), list(w.shape), None))
    return io_cost(ctx, tensor_flops=flops, vector_flops=g.numel if len(mask) > 2 and mask[2] else 0)
