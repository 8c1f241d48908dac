"""Op-kind microbenchmarks: the vector work rate of each common non-GEMM ATen op.

A max-pool compares 9 values per output, a batch-norm scales and shifts, a GELU evaluates
erf: at the same bytes these run at very different speeds, and none of them at the SIMD
FMA peak. Each op here runs alone on a fixed activation (64 x 56 x 56 fp32 = 784 KiB, or
196 x 1024 tokens: cache-resident, all threads busy), and its vector FLOPs are counted by
dnnmap's own cost rules on the captured op, so the rate is in the unit the mapper divides
by. The ops are generic kernels, not taken from any model. Training adds kernels a forward pass
never runs (``TRAINING``): batch-norm with batch statistics and the backward of activations,
normalizations and (log-)softmax, called by their ATen names.

>>> sorted(n for n in OPS if n not in TRAINING)[:3]
['adaptive_avg_pool2d', 'add', 'avg_pool2d']
>>> "native_batch_norm_backward" in TRAINING
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dnnmap.calibrate.timing import Timer

Fn = Callable[[torch.Tensor, "Aux"], torch.Tensor]
IMAGE = (1, 64, 56, 56)  # N, C, H, W: 200,704 fp32 values
TOKENS = (1, 196, 1024)  # N, L, C: 200,704 fp32 values


@dataclass(frozen=True, slots=True)
class OpKindPoint:
    name: str  # ATen op name as capture records it
    seconds: float  # median per call, dispatch included
    vector_flops: int  # counted by dnnmap's rule for this call
    bytes: int  # counted bytes read + written
    spread: float


class Aux(nn.Module):
    """Per-channel parameters the ops need (buffers, so capture sees them as constants)."""

    def __init__(self, channels: int, features: int, rows: int = TOKENS[1], side: int = IMAGE[2]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("ln_w", torch.ones(features))
        self.register_buffer("ln_b", torch.zeros(features))
        self.register_buffer("ln_mean", torch.zeros(1, rows, 1))  # saved by layer_norm for backward
        self.register_buffer("ln_rstd", torch.ones(1, rows, 1))
        # the incoming gradient of the backward kernels: a tensor of its own, as in autograd
        self.register_buffer("g_image", torch.randn(1, channels, side, side))
        self.register_buffer("g_tokens", torch.randn(1, rows, features))


A = torch.ops.aten
# training kernels, called by their ATen names (autograd runs them; no nn API exposes them): the
# gradient is the input tensor itself, saved statistics are the per-channel / per-row buffers.
# native_batch_norm is batch-norm in training mode (batch statistics computed, a second pass).
TRAINING: dict[str, tuple[tuple[int, ...], Fn]] = {
    "native_batch_norm": (IMAGE, lambda x, a: A.native_batch_norm(x, a.scale, a.shift, None, None, True, 0.1,
                                                                  1e-5)[0]),
    "native_batch_norm_backward": (IMAGE, lambda x, a: A.native_batch_norm_backward(
        a.g_image, x, a.scale, None, None, a.mean, a.var, True, 1e-5, [True, True, True])[0]),
    "threshold_backward": (IMAGE, lambda x, a: A.threshold_backward(a.g_image, x, 0.0)),
    "hardtanh_backward": (IMAGE, lambda x, a: A.hardtanh_backward(a.g_image, x, 0.0, 6.0)),
    "gelu_backward": (TOKENS, lambda x, a: A.gelu_backward(a.g_tokens, x)),
    "tanh_backward": (TOKENS, lambda x, a: A.tanh_backward(a.g_tokens, x)),
    "_softmax_backward_data": (TOKENS, lambda x, a: A._softmax_backward_data(a.g_tokens, x, -1, x.dtype)),
    "_log_softmax": (TOKENS, lambda x, a: A._log_softmax(x, -1, False)),
    "_log_softmax_backward_data": (TOKENS, lambda x, a: A._log_softmax_backward_data(a.g_tokens, x, -1, x.dtype)),
    "native_layer_norm_backward": (TOKENS, lambda x, a: A.native_layer_norm_backward(
        a.g_tokens, x, [x.shape[-1]], a.ln_mean, a.ln_rstd, a.ln_w, a.ln_b, [True, True, True])[0]),
}


# name -> (input layout, function); the name is the ATen op the function dispatches to
OPS: dict[str, tuple[tuple[int, ...], Fn]] = {
    "relu": (IMAGE, lambda x, a: torch.relu(x)),
    "add": (IMAGE, lambda x, a: x + x),
    "mul": (IMAGE, lambda x, a: x * x),
    "hardtanh": (IMAGE, lambda x, a: F.hardtanh(x, 0.0, 6.0)),
    "hardswish": (IMAGE, lambda x, a: F.hardswish(x)),
    "hardsigmoid": (IMAGE, lambda x, a: F.hardsigmoid(x)),
    "sigmoid": (IMAGE, lambda x, a: torch.sigmoid(x)),
    "silu": (IMAGE, lambda x, a: F.silu(x)),
    "gelu": (TOKENS, lambda x, a: F.gelu(x)),
    "tanh": (TOKENS, lambda x, a: torch.tanh(x)),
    "batch_norm": (IMAGE, lambda x, a: F.batch_norm(x, a.mean, a.var, a.scale, a.shift, False)),
    "layer_norm": (TOKENS, lambda x, a: F.layer_norm(x, (x.shape[-1],), a.ln_w, a.ln_b)),
    "softmax": (TOKENS, lambda x, a: torch.softmax(x, -1)),
    "max_pool2d": (IMAGE, lambda x, a: F.max_pool2d(x, 3, 2, 1)),
    "avg_pool2d": (IMAGE, lambda x, a: F.avg_pool2d(x, 2, 2)),
    "adaptive_avg_pool2d": (IMAGE, lambda x, a: F.adaptive_avg_pool2d(x, 1)),
    "mean": (IMAGE, lambda x, a: x.mean((2, 3))),
    **TRAINING,
}
QUICK = ("relu", "batch_norm", "max_pool2d", "gelu", "layer_norm", "native_batch_norm_backward")


class _Zoo(nn.Module):
    """Every op of the plan on its own input, so one capture counts them all."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self.aux = Aux(IMAGE[1], TOKENS[2])

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(OPS[n][1](image if OPS[n][0] == IMAGE else tokens, self.aux) for n in self.names)


def counted_costs(names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """(vector FLOPs, bytes) of each op as dnnmap counts it, from one capture of the zoo."""
    from dnnmap.capture import capture
    from dnnmap.costs import count_graph
    from dnnmap.ir.classify import inplace_base, op_name

    zoo = _Zoo(names)
    counted = count_graph(capture(zoo, inputs=(torch.zeros(IMAGE), torch.zeros(TOKENS))))
    out: dict[str, tuple[int, int]] = {}
    for op in counted.graph.ops:
        name = op_name(op.target)
        name = inplace_base(name) or name
        if name in names and name not in out:
            c = counted.costs[op.id]
            out[name] = (c.vector_flops, c.bytes)
    return out


def time_opkinds(timer: Timer, names: tuple[str, ...], costs: dict[str, tuple[int, int]], *, runs: int,
                 min_seconds: float = 0.0) -> list[OpKindPoint]:
    """Time each op eagerly on ``timer.device`` and attach its counted vector FLOPs and bytes
    (``costs`` from :func:`counted_costs`)."""
    aux = Aux(IMAGE[1], TOKENS[2]).to(timer.device)
    inputs = {IMAGE: torch.randn(IMAGE, device=timer.device), TOKENS: torch.randn(TOKENS, device=timer.device)}
    names = tuple(n for n in names if n in costs)
    calls = [lambda fn=OPS[n][1], x=inputs[OPS[n][0]]: fn(x, aux) for n in names]
    with torch.inference_mode():  # round-robin: each op follows a different op, as in a network
        timings = timer.time_each(calls, rounds=max(runs, 5), warmup_rounds=2)
    return [OpKindPoint(n, t.median_s, costs[n][0], costs[n][1], t.spread)
            for n, t in zip(names, timings, strict=True)]


# The training kernels read and write their tensors in several passes (batch-norm: statistics,
# then normalize; its backward: two reductions, then grad input), so once the tensors outgrow
# the caches they run at a fraction of the copy bandwidth. Each is also timed at these sizes
# (multiples of the base tensor's elements: 1/16 .. 8, i.e. 50 K .. 1.6 M values, 0.2 .. 6.4 MB
# per fp32 tensor at the base layout's width) and stored as an op-kind bandwidth table.
SWEEP_SCALES = (1 / 16, 1 / 4, 1, 4, 8)


def _scaled(layout: tuple[int, ...], scale: float) -> tuple[int, ...]:
    """The layout with its spatial / token axis scaled: ``(1, 64, 56, 56)`` x 4 -> ``(1, 64, 112, 112)``."""
    if len(layout) == 4:
        side = max(1, round(layout[2] * scale**0.5))
        return (*layout[:2], side, side)
    return (layout[0], max(1, round(layout[1] * scale)), layout[2])


def time_opkind_sweep(timer: Timer, names: tuple[str, ...], costs: dict[str, tuple[int, int]], *,
                      runs: int) -> list[OpKindPoint]:
    """Each op of ``names`` at every :data:`SWEEP_SCALES` size, counted FLOPs and bytes scaled
    from the base capture by the element count (the per-channel buffers are < 0.1 %)."""
    out = []
    for scale in SWEEP_SCALES:
        shapes = {lay: _scaled(lay, scale) for lay in (IMAGE, TOKENS)}
        aux = Aux(IMAGE[1], TOKENS[2], rows=shapes[TOKENS][1], side=shapes[IMAGE][2]).to(timer.device)
        inputs = {lay: torch.randn(shp, device=timer.device) for lay, shp in shapes.items()}
        todo = tuple(n for n in names if n in costs)
        calls = [lambda fn=OPS[n][1], x=inputs[OPS[n][0]], a=aux: fn(x, a) for n in todo]
        with torch.inference_mode():
            timings = timer.time_each(calls, rounds=max(runs, 3), warmup_rounds=1)
        for n, t in zip(todo, timings, strict=True):
            base, now = OPS[n][0], shapes[OPS[n][0]]
            ratio = _numel(now) / _numel(base)
            out.append(OpKindPoint(n, t.median_s, round(costs[n][0] * ratio), round(costs[n][1] * ratio), t.spread))
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
