"""Capture paths on tiny hand-made models: structure, roles, both paths equal, fallback, errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from dnnmap.capture import capture
from dnnmap.capture.sources import fakeify
from dnnmap.errors import CaptureError, DnnmapError, InputShapeError
from dnnmap.ir import DType, OpClass, Role, from_json, to_json

# -- tiny models ------------------------------------------------------------------------


class Block(nn.Module):
    """A ResNet basic block: conv-bn-relu-conv-bn, + identity, relu."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)


class TinyResNet(nn.Module):
    def __init__(self, c: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.layer1 = nn.Sequential(Block(c), Block(c))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(F.max_pool2d(self.conv1(x), 2))
        return self.fc(torch.flatten(self.pool(x), 1))


class MLP(nn.Module):
    def __init__(self, d: int = 16, h: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, s, d))


class Layer(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MLP(d, 4 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 16, heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(Layer(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied, as in GPT-2

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))


class Branchy(nn.Module):
    """Data-dependent control flow: export cannot take it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if y.sum() > 0:
            return torch.relu(y)
        return -y


class Itemy(nn.Module):
    """``.item()`` used as a size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        n = int(x.abs().argmax().item())
        return y[:, : n + 2]


class Gather(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[torch.nonzero(x > 0, as_tuple=True)]


class NonzeroNet(nn.Module):
    """An op whose output shape depends on values: no fake-tensor path can run it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.pick = Gather()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pick(self.fc(x))


class Odds(nn.Module):
    """Constants, multi-output ops, a view and an in-place op."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.scale = torch.full((6,), 2.0)  # a plain tensor attribute: a constant

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.fc(x) * self.scale
        a, b = y.split(3, dim=1)
        v, i = torch.max(a, dim=1)
        z = b.t()
        z.relu_()
        return v + i, z


def fake(cls: type[nn.Module], *shape: int, ids: bool = False, **kw) -> tuple[nn.Module, torch.Tensor]:
    """Model and input built under one FakeTensorMode: no memory, no compute."""
    with FakeTensorMode():
        m = cls(**kw)
        x = torch.randint(0, 50, shape) if ids else torch.randn(*shape)
    return m, x


def targets(g) -> Counter:
    return Counter(op.target for op in g.ops)


def by_module(g, path: str):
    return [op for op in g.ops if op.module_path == path]


# -- export path: structure --------------------------------------------------------------
def test_conv_net_ops_shapes_and_modules():
    m, x = fake(TinyResNet, 2, 3, 32, 32)
    g = capture(m, inputs=(x,))
    g.validate()
    assert g.meta["capture_path"] == "export" and "fallback_reason" not in g.meta
    # conv1 + 2 blocks x 2 convs; block ReLU(inplace) runs twice per block; residual add per block
    assert targets(g) == Counter({
        "aten.conv2d.default": 1 + 2 * 2, "aten.batch_norm.default": 2 * 2, "aten.relu_.default": 2 * 2,
        "aten.add.Tensor": 2, "aten.max_pool2d.default": 1, "aten.adaptive_avg_pool2d.default": 1,
        "aten.flatten.using_ints": 1, "aten.linear.default": 1,
    })
    conv = by_module(g, "layer1.0.conv1")
    assert [(op.target, op.module_type, op.op_class) for op in conv] == [("aten.conv2d.default", "Conv2d", OpClass.CONV)]
    assert conv[0].input_args == ("input", "weight")
    assert conv[0].attrs == {"bias": None, "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    # 32x32 -> conv stride 2 -> 16x16 -> max_pool 2 -> 8x8
    assert g.tensors[conv[0].inputs[0]].shape == (2, 8, 32 // 2 // 2, 32 // 2 // 2)
    assert [op.module_type for op in by_module(g, "layer1.1")] == ["Block"]  # the residual add
    assert [op.target for op in by_module(g, "")] == ["aten.max_pool2d.default", "aten.flatten.using_ints"]
    assert {op.module_type for op in by_module(g, "")} == {"TinyResNet"}
    assert g.tensors[g.outputs[0]].shape == (2, 10)


def test_roles_names_and_params():
    m, x = fake(TinyResNet, 1, 3, 16, 16)
    g = capture(m, inputs=(x,))
    assert [g.tensors[t].name for t in g.inputs] == ["x"] and g.tensors[g.inputs[0]].role is Role.INPUT
    weights = {t.name for t in g.iter_tensors(Role.WEIGHT)}
    assert weights == {n for n, _ in m.named_parameters()}
    buffers = {t.name for t in g.iter_tensors(Role.BUFFER)}
    assert "layer1.0.bn1.running_mean" in buffers and buffers == {n for n, _ in m.named_buffers()}
    assert [g.tensors[t].role for t in g.outputs] == [Role.OUTPUT]
    assert g.num_params == sum(p.numel() for p in m.parameters())
    # the weight of conv1 is read by conv1
    w = next(t for t in g.iter_tensors(Role.WEIGHT) if t.name == "conv1.weight")
    assert [op.module_path for op in g.consumers(w.id)] == ["conv1"]
    assert w.shape == (8, 3, 3, 3) and w.dtype is DType.FLOAT32


def test_sdpa_linear_layer_norm_stay_single_ops():
    m, x = fake(TinyTransformer, 2, 8, ids=True)
    g = capture(m, inputs=(x,))
    t = targets(g)
    layers = 2
    assert t["aten.scaled_dot_product_attention.default"] == layers
    assert t["aten.linear.default"] == layers * 4 + 1  # qkv, proj, fc1, fc2 per layer + head
    assert t["aten.layer_norm.default"] == layers * 2 + 1
    sdpa = [op for op in g.ops if op.op_class is OpClass.ATTENTION]
    assert [op.module_path for op in sdpa] == ["layers.0.attn", "layers.1.attn"]
    # q, k, v: [batch 2, heads 2, seq 8, head dim 16 / 2]
    assert [g.tensors[i].shape for i in sdpa[0].inputs] == [(2, 2, 8, 16 // 2)] * 3
    assert sdpa[0].input_args == ("query", "key", "value") and sdpa[0].attrs["is_causal"] is True


def test_tied_weight_is_one_tensor():
    m, x = fake(TinyTransformer, 1, 4, ids=True)
    g = capture(m, inputs=(x,))
    head = next(op for op in g.ops if op.module_path == "head")
    embed = next(op for op in g.ops if op.module_path == "embed")
    assert head.arg("weight") == embed.arg("weight")
    assert g.tensors[head.arg("weight")[0]].name == "embed.weight"
    assert g.num_params == sum(p.numel() for p in m.parameters())  # tied weight once


def test_multi_output_views_in_place_and_constants():
    m, x = fake(Odds, 2, 6)
    g = capture(m, inputs=(x,))
    assert all("getitem" not in op.target for op in g.ops)
    split = next(op for op in g.ops if op.target == "aten.split.Tensor")
    mx = next(op for op in g.ops if op.target == "aten.max.dim")
    mul = next(op for op in g.ops if op.target == "aten.mul.Tensor")
    assert len(split.outputs) == 2 and [g.tensors[t].shape for t in split.outputs] == [(2, 3), (2, 3)]
    assert [g.tensors[t].dtype for t in mx.outputs] == [DType.FLOAT32, DType.INT64]
    # split outputs are views of the mul result; t() of a view and relu_ on it share that storage
    base = mul.outputs[0]
    assert [g.tensors[t].alias_of for t in split.outputs] == [base, base]
    t_op = next(op for op in g.ops if op.target == "aten.t.default")
    relu = next(op for op in g.ops if op.target == "aten.relu_.default")
    assert g.tensors[t_op.outputs[0]].alias_of == base and g.tensors[relu.outputs[0]].alias_of == base
    assert relu.inputs == t_op.outputs
    assert g.tensors[mx.outputs[0]].alias_of is None
    scale = g.tensors[mul.inputs[1]]
    assert (scale.role, scale.name, scale.shape) == (Role.CONSTANT, "scale", (6,))
    assert [g.tensors[t].role for t in g.outputs] == [Role.OUTPUT, Role.OUTPUT]


# -- the two paths agree -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "shape", "ids"),
    [(TinyResNet, (2, 3, 32, 32), False), (TinyTransformer, (2, 8), True), (MLP, (3, 16), False), (Odds, (2, 6), False)],
)
def test_export_and_dispatch_give_the_same_graph(cls, shape, ids):
    m, x = fake(cls, *shape, ids=ids)
    ge = capture(m, inputs=(x,), path="export")
    gd = capture(m, inputs=(x,), path="dispatch")
    assert ge.meta["capture_path"] == "export" and gd.meta["capture_path"] == "dispatch"

    def signature(g):  # op multiset with shapes and modules
        shapes = lambda ids: tuple(g.tensors[i].shape for i in ids)  # noqa: E731
        return Counter((op.target, shapes(op.inputs), shapes(op.outputs), op.module_path) for op in g.ops)

    assert signature(ge) == signature(gd)
    # stronger: the same ids, attrs, roles and aliases
    assert ge.ops == gd.ops and ge.tensors == gd.tensors
    assert (ge.inputs, ge.outputs) == (gd.inputs, gd.outputs)


def test_dispatch_on_real_tensors_matches_fake():
    torch.manual_seed(0)
    real = MLP()
    x = torch.randn(3, 16)
    with FakeTensorMode() as mode:
        fx = torch.empty(3, 16)
    faked = fakeify(MLP(), mode)
    g_real = capture(real, inputs=(x,), path="dispatch")
    g_fake = capture(faked, inputs=(fx,), path="dispatch")
    assert g_real.ops == g_fake.ops and g_real.tensors == g_fake.tensors


# -- fallback ---------------------------------------------------------------------------
def test_data_dependent_branch_falls_back_to_dispatch():
    m, x = fake(Branchy, 2, 4)
    g = capture(m, inputs=(x,))
    assert g.meta["capture_path"] == "dispatch"
    assert "data-dependent" in g.meta["fallback_reason"]
    assert [op.target for op in g.ops] == [
        "aten.linear.default", "aten.sum.default", "aten.gt.Scalar", "aten.is_nonzero.default", "aten.relu.default"]
    assert g.meta["assumed_values"] == ("aten.is_nonzero.default in '' (Branchy) -> True",)
    g.validate()


def test_item_falls_back_and_the_assumed_value_is_reported():
    m, x = fake(Itemy, 2, 4)
    g = capture(m, inputs=(x,))
    assert g.meta["capture_path"] == "dispatch"
    assert g.meta["assumed_values"] == ("aten.item.default in '' (Itemy) -> 1",)
    assert g.tensors[g.outputs[0]].shape == (2, 1 + 2)  # y[:, : n + 2] with n assumed 1


def test_gpt2_with_kv_cache_falls_back_and_returns_the_cache():
    from transformers import AutoModelForCausalLM, GPT2Config

    layers, heads, d, seq = 2, 2, 32, 8
    cfg = GPT2Config(n_layer=layers, n_embd=d, n_head=heads, vocab_size=64, n_positions=32, use_cache=True,
                     bos_token_id=0, eos_token_id=0)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    with FakeTensorMode() as mode:
        ids = torch.zeros(1, seq, dtype=torch.long)
    fakeify(m, mode)
    g = capture(m, inputs=(ids,))
    assert g.meta["capture_path"] == "dispatch"
    assert "DynamicCache" in g.meta["fallback_reason"]
    shapes = [g.tensors[t].shape for t in g.outputs]
    # logits, then key and value of every layer: [batch, heads, seq, d / heads]
    assert shapes == [(1, seq, 64)] + [(1, heads, seq, d // heads)] * (2 * layers)
    assert all(g.tensors[t].role is Role.OUTPUT for t in g.outputs)
    assert sum(op.op_class is OpClass.ATTENTION for op in g.ops) == layers


def test_forced_export_path_fails_with_advice():
    m, x = fake(Branchy, 2, 4)
    with pytest.raises(CaptureError, match="dispatch"):
        capture(m, inputs=(x,), path="export")


def test_explicit_dispatch_path_has_no_fallback_reason():
    m, x = fake(MLP, 2, 16)
    g = capture(m, inputs=(x,), path="dispatch")
    assert g.meta["capture_path"] == "dispatch" and "fallback_reason" not in g.meta


# -- determinism ------------------------------------------------------------------------
def test_json_round_trip_and_repeat_capture_byte_identical():
    m, x = fake(TinyTransformer, 2, 8, ids=True)
    a, b = to_json(capture(m, inputs=(x,))), to_json(capture(m, inputs=(x,)))
    assert a == b
    assert to_json(from_json(a)) == a


_SCRIPT = """
import hashlib, torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from dnnmap.capture import capture
from dnnmap.ir import to_json
with FakeTensorMode():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 8, 8)
print(hashlib.sha256(to_json(capture(m, inputs=(x,))).encode()).hexdigest())
"""


def test_json_identical_across_processes():
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str-hash seed from this process
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, check=True)
    with FakeTensorMode():
        m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
        x = torch.randn(2, 3, 8, 8)
    here = hashlib.sha256(to_json(capture(m, inputs=(x,))).encode()).hexdigest()
    assert out.stdout.strip() == here


# -- errors -----------------------------------------------------------------------------
def test_wrong_channels_names_the_module():
    m, x = fake(TinyResNet, 2, 4, 32, 32)
    with pytest.raises(InputShapeError) as e:
        capture(m, inputs=(x,))
    assert "module 'conv1' (Conv2d) rejected input of shape [2, 4, 32, 32]" in str(e.value)
    assert "aten.conv2d.default" in str(e.value) and "3 channels" in str(e.value)


def test_wrong_features_names_the_inner_module():
    m, x = fake(TinyTransformer, 2, 8, ids=True)
    mode = m.embed.weight.fake_mode
    m.layers[1].mlp.fc2 = fakeify(nn.Linear(7, 16), mode)  # a model bug: fc1 gives 64 features, fc2 takes 7
    with pytest.raises(InputShapeError, match=r"module 'layers\.1\.mlp\.fc2' \(Linear\) rejected input of shape \[2, 8, 64\]"):
        capture(m, inputs=(x,))


def test_value_dependent_shape_names_op_and_module():
    m, x = fake(NonzeroNet, 2, 4)
    with pytest.raises(CaptureError) as e:
        capture(m, inputs=(x,))
    msg = str(e.value)
    assert "aten.nonzero" in msg and "module 'pick' (Gather)" in msg and "real" in msg


def test_bad_arguments_are_clear_errors():
    m, x = fake(MLP, 2, 16)
    with pytest.raises(DnnmapError, match="capture path"):
        capture(m, inputs=(x,), path="jit")
    with pytest.raises(DnnmapError, match="inputs"):
        capture(m)
    with pytest.raises(DnnmapError, match="nn.Module"):
        capture(42)  # type: ignore[arg-type]


def test_module_with_input_shape_gets_batch_prepended():
    g = capture(MLP(), input_shape=(16,), batch=3)
    assert g.meta["input_shapes"] == ((3, 16),) and g.meta["batch"] == 3
    assert g.tensors[g.outputs[0]].shape == (3, 16)


class _MaybeCopy(nn.Module):
    def forward(self, x):
        y = x.permute(0, 2, 1)
        return y.reshape(2, -1), x.reshape(2, -1), y.contiguous(), x.to(torch.float16)


@pytest.mark.parametrize("path", ["export", "dispatch"])
def test_reshape_and_contiguous_that_copy_are_not_views(path: str) -> None:
    from dnnmap.costs import count_graph

    g = capture(_MaybeCopy(), inputs=(torch.randn(2, 3, 4),), path=path)
    counted = count_graph(g)
    seen = [(op.target.split(".")[1], g.tensors[op.outputs[0]].alias_of is not None, counted.costs[op.id].bytes) for op in g.ops]
    n = 2 * 3 * 4
    assert seen == [
        ("permute", True, 0),
        ("reshape", False, n * 4 + n * 4),  # permuted -> (2, 12) must copy: read + write fp32
        ("reshape", True, 0),  # contiguous -> (2, 12) is a view
        ("contiguous", False, n * 4 + n * 4),
        ("to", False, n * 4 + n * 2),  # fp32 -> fp16 copy
    ]
