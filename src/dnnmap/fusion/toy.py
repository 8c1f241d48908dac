"""Hand-built ``ir.Graph``\\ s: a tiny builder and a few textbook blocks.

Used by docstrings, tests and the benchmark's sanity checks; no torch needed.
Output shapes are given explicitly or derived for the common ops (pointwise broadcast,
conv, GEMM), so a block is a few lines:

>>> b = GraphBuilder("mlp")
>>> x = b.input((4, 8))
>>> h = b.linear(x, 16, "fc1")
>>> y = b.op("aten.relu.default", [h], module="act")
>>> g = b.build([y])
>>> len(g.ops), g.tensors[y].shape
(2, (4, 16))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnnmap.ir import DType, Graph, Op, Role, Tensor, classify


def _broadcast(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        dims = [s[len(s) - nd + i] for s in shapes if len(s) - nd + i >= 0]
        out.append(max(dims))
    return tuple(out)


class GraphBuilder:
    """Append ops one by one; tensor and op ids follow the capture's ``t<i>`` / ``op<i>`` scheme."""

    def __init__(self, name: str, dtype: DType = DType.FLOAT32) -> None:
        self.name = name
        self.dtype = dtype
        self._tensors: dict[str, Tensor] = {}
        self._ops: list[Op] = []
        self._inputs: list[str] = []

    def _tensor(self, shape: Sequence[int], role: Role, producer: str | None = None,
                name: str = "", alias_of: str | None = None, dtype: DType | None = None) -> str:
        tid = f"t{len(self._tensors)}"
        self._tensors[tid] = Tensor(tid, tuple(int(d) for d in shape), dtype or self.dtype, role,
                                    producer, name, alias_of)
        return tid

    def input(self, shape: Sequence[int], name: str = "x") -> str:
        tid = self._tensor(shape, Role.INPUT, name=name)
        self._inputs.append(tid)
        return tid

    def weight(self, shape: Sequence[int], name: str = "") -> str:
        return self._tensor(shape, Role.WEIGHT, name=name)

    def shape(self, tid: str) -> tuple[int, ...]:
        return self._tensors[tid].shape

    def op(self, target: str, inputs: Sequence[str], out_shape: Sequence[int] | None = None,
           module: str = "", args: Sequence[str] | None = None, attrs: dict[str, Any] | None = None,
           view: bool = False, n_out: int = 1) -> str:
        """Add one op; returns its (first) output id. ``view=True`` makes outputs alias input 0."""
        oid = f"op{len(self._ops)}"
        shape = tuple(out_shape) if out_shape is not None else _broadcast([self.shape(t) for t in inputs])
        base = None
        if view and inputs:
            first = self._tensors[inputs[0]]
            base = first.alias_of or first.id
        outs = tuple(self._tensor(shape, Role.ACTIVATION, oid, alias_of=base) for _ in range(n_out))
        arg_names = tuple(args) if args is not None else ("self", "other", "arg2", "arg3")[: len(inputs)]
        self._ops.append(Op(oid, target, classify(target), tuple(inputs), outs, module,
                            module.split(".")[-1] if module else "", arg_names, dict(attrs or {})))
        return outs[0]

    # -- common ops ------------------------------------------------------------------------
    def conv(self, x: str, cout: int, k: int, module: str, stride: int = 1, groups: int = 1) -> str:
        n, cin, h, w = self.shape(x)
        wt = self.weight((cout, cin // groups, k, k), f"{module}.weight")
        pad = k // 2
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        return self.op("aten.convolution.default", [x, wt], (n, cout, ho, wo), module, ("input", "weight"),
                       {"stride": (stride, stride), "padding": (pad, pad), "dilation": (1, 1),
                        "transposed": False, "output_padding": (0, 0), "groups": groups})

    def bn(self, x: str, module: str) -> str:
        c = self.shape(x)[1]
        ws = [self.weight((c,), f"{module}.{n}") for n in ("weight", "bias", "running_mean", "running_var")]
        return self.op("aten._native_batch_norm_legit_no_training.default", [x, *ws], self.shape(x), module,
                       ("input", "weight", "bias", "running_mean", "running_var"), {"momentum": 0.1, "eps": 1e-5})

    def linear(self, x: str, n_out: int, module: str, bias: bool = True) -> str:
        shape = self.shape(x)
        w = self.weight((n_out, shape[-1]), f"{module}.weight")
        ins, names = [x, w], ["input", "weight"]
        if bias:
            ins.append(self.weight((n_out,), f"{module}.bias"))
            names.append("bias")
        return self.op("aten.linear.default", ins, (*shape[:-1], n_out), module, names)

    def view(self, x: str, shape: Sequence[int], module: str = "", target: str = "aten.view.default") -> str:
        return self.op(target, [x], shape, module, ("self",), {"size": tuple(shape)}, view=True)

    def build(self, outputs: Sequence[str]) -> Graph:
        tensors = dict(self._tensors)
        for t in outputs:
            tensors[t] = _with_role(tensors[t], Role.OUTPUT)
        g = Graph(self.name, tensors, tuple(self._ops), tuple(self._inputs), tuple(outputs))
        g.validate()
        return g


def _with_role(t: Tensor, role: Role) -> Tensor:
    return Tensor(t.id, t.shape, t.dtype, role, t.producer, t.name, t.alias_of)


# -- textbook blocks ----------------------------------------------------------------------------
def residual_block(c: int = 8, hw: int = 8, prefix: str = "layer1.0") -> Graph:
    """A stem (conv-bn-relu) then a ResNet basic block: conv-bn-relu-conv-bn, + identity, relu
    (3 + 7 = 10 ops). The stem makes the residual add a join, as inside a real ResNet."""
    b = GraphBuilder("basic_block")
    x = b.input((1, 3, hw, hw))
    x = b.op("aten.relu.default", [b.bn(b.conv(x, c, 3, "conv1"), "bn1")], module="relu")
    m = f"{prefix}." if prefix else ""
    h = b.op("aten.relu.default", [b.bn(b.conv(x, c, 3, f"{m}conv1"), f"{m}bn1")], module=f"{m}relu")
    h = b.bn(b.conv(h, c, 3, f"{m}conv2"), f"{m}bn2")
    y = b.op("aten.relu.default", [b.op("aten.add.Tensor", [h, x], module=prefix)], module=f"{m}relu")
    return b.build([y])


def attention_block(batch: int = 1, seq: int = 16, dim: int = 32, heads: int = 4) -> Graph:
    """Post-norm transformer encoder layer with a decomposed attention core (BERT-style, 25 ops).

    q/k/v projections of x, QK^T, scale, softmax, ·V, out-projection + residual + layer-norm,
    MLP up + gelu, MLP down + residual + layer-norm.
    """
    return encoder_stack(1, batch, seq, dim, heads, name="encoder_layer")


def encoder_stack(layers: int, batch: int = 1, seq: int = 16, dim: int = 32, heads: int = 4,
                  name: str = "encoder") -> Graph:
    """``layers`` encoder layers in a row (25 ops each): a big graph for timing."""
    b = GraphBuilder(name)
    x = b.input((batch, seq, dim))
    for i in range(layers):
        x = _encoder_layer(b, x, heads, "" if layers == 1 else f"layer.{i}.")
    return b.build([x])


def _encoder_layer(b: GraphBuilder, x: str, heads: int, m: str) -> str:
    batch, seq, dim = b.shape(x)
    hd = dim // heads

    def split_heads(t: str, mod: str) -> str:
        v = b.view(t, (batch, seq, heads, hd), mod)
        return b.view(v, (batch, heads, seq, hd), mod, "aten.permute.default")

    q, k, v = (split_heads(b.linear(x, dim, f"{m}attn.{n}"), f"{m}attn.{n}") for n in ("query", "key", "value"))
    kt = b.view(k, (batch, heads, hd, seq), f"{m}attn", "aten.transpose.int")
    s = b.op("aten.matmul.default", [q, kt], (batch, heads, seq, seq), f"{m}attn")
    s = b.op("aten.div.Tensor", [s], module=f"{m}attn")
    p = b.op("aten._softmax.default", [s], module=f"{m}attn", attrs={"dim": -1, "half_to_float": False})
    o = b.op("aten.matmul.default", [p, v], (batch, heads, seq, hd), f"{m}attn")
    o = b.view(o, (batch, seq, heads, hd), f"{m}attn", "aten.permute.default")
    o = b.op("aten.clone.default", [o], module=f"{m}attn")
    o = b.view(o, (batch, seq, dim), f"{m}attn")
    h = b.op("aten.add.Tensor", [b.linear(o, dim, f"{m}attn.out"), x], module=f"{m}attn.out")
    h = _layer_norm(b, h, f"{m}attn.norm")
    u = b.op("aten.gelu.default", [b.linear(h, 4 * dim, f"{m}mlp.up")], module=f"{m}mlp.act")
    y = b.op("aten.add.Tensor", [b.linear(u, dim, f"{m}mlp.down"), h], module=f"{m}mlp.down")
    return _layer_norm(b, y, f"{m}mlp.norm")


def _layer_norm(b: GraphBuilder, x: str, module: str) -> str:
    d = b.shape(x)[-1]
    w, bias = b.weight((d,), f"{module}.weight"), b.weight((d,), f"{module}.bias")
    return b.op("aten.layer_norm.default", [x, w, bias], b.shape(x), module, ("input", "weight", "bias"),
                {"normalized_shape": (d,), "eps": 1e-5})
