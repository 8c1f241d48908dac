"""Op-kind microbenchmarks: the vector work rate of each common non-GEMM ATen op.

A max-pool compares 9 values per output, a batch-norm scales and shifts, a GELU evaluates
erf: at the same bytes these run at very different speeds, and none of them at the SIMD
FMA peak. Each op here runs alone on a fixed activation (64 x 56 x 56 fp32 = 784 KiB, or
196 x 1024 tokens: cache-resident, all threads busy), and its vector FLOPs are counted by
dnnmap's own cost rules on the captured op, so the rate is in the unit the mapper divides
by. The ops are generic kernels, not taken from any model.

>>> sorted(OPS)[:3]
['adaptive_avg_pool2d', 'add', 'avg_pool2d']
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

    def __init__(self, channels: int, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("ln_w", torch.ones(features))
        self.register_buffer("ln_b", torch.zeros(features))


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
}
QUICK = ("relu", "batch_norm", "max_pool2d", "gelu", "layer_norm")


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
