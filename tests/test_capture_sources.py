"""Model sources: the name registry, defaults per family, HF configs, user files, dtypes, errors."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor

from dnnmap.capture import build_model, capture, list_models
from dnnmap.capture.sources import parse_shape
from dnnmap.errors import DnnmapError, InputShapeError, UnknownNameError
from dnnmap.ir import DType, Role


def test_list_models_has_every_family():
    names = list_models()
    for n in ("resnet18", "vit_b_16", "inception_v3", "hf:bert-base-uncased", "hf:gpt2", "hf:llama-3-8b",
              "hf:llama-3-70b", "timm:convnext_tiny"):
        assert n in names
    assert len(names) == len(set(names))


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownNameError) as e:
        capture("resnet81")
    assert "resnet18" in e.value.suggestions and "resnet18" in str(e.value)
    with pytest.raises(UnknownNameError) as e:
        build_model("timm:convnxt_tiny")
    assert "timm:convnext_tiny" in e.value.suggestions
    with pytest.raises(UnknownNameError) as e:
        build_model("hf:gtp2")
    assert "hf:gpt2" in e.value.suggestions


def test_vision_input_defaults_and_overrides():
    m, (x,) = build_model("resnet18")
    assert isinstance(x, FakeTensor) and tuple(x.shape) == (1, 3, 224, 224)
    assert all(isinstance(p, FakeTensor) for p in m.parameters()) and not m.training
    assert tuple(build_model("inception_v3")[1][0].shape) == (1, 3, 299, 299)
    assert tuple(build_model("resnet18", batch=2, input_shape="3,64,64")[1][0].shape) == (2, 3, 64, 64)
    assert tuple(build_model("resnet18", input_shape=[4, 3, 32, 32])[1][0].shape) == (4, 3, 32, 32)
    with pytest.raises(DnnmapError, match="batch 2 disagrees"):
        build_model("resnet18", batch=2, input_shape="4,3,32,32")


def test_text_input_defaults():
    _, (ids,) = build_model("hf:gpt2")
    assert tuple(ids.shape) == (1, 128) and ids.dtype == torch.int64
    _, (ids,) = build_model("hf:llama-3-8b", batch=2)
    assert tuple(ids.shape) == (2, 2048)
    _, (ids,) = build_model("hf:bert-base-uncased", seq_len=16)
    assert tuple(ids.shape) == (1, 16)
    with pytest.raises(DnnmapError, match="disagrees"):
        build_model("hf:gpt2", seq_len=16, input_shape="32")


def test_parse_shape():
    assert parse_shape("3,224,224") == (3, 224, 224) == parse_shape("3x224x224") == parse_shape((3, 224, 224))
    for bad in ("3,a", "0,4", ""):
        with pytest.raises(DnnmapError):
            parse_shape(bad)


def test_bf16_casts_weights_buffers_and_float_inputs():
    g = capture("resnet18", dtype="bf16", input_shape="3,32,32")
    assert {t.dtype for t in g.iter_tensors(Role.WEIGHT)} == {DType.BFLOAT16}
    assert g.tensors[g.inputs[0]].dtype is DType.BFLOAT16 and g.meta["dtype"] == "bfloat16"
    buffers = {t.name: t.dtype for t in g.iter_tensors(Role.BUFFER)}
    assert buffers["bn1.running_mean"] is DType.BFLOAT16 and buffers["bn1.num_batches_tracked"] is DType.INT64
    with pytest.raises(DnnmapError, match="fp32, bf16 or fp16"):
        build_model("resnet18", dtype="int8")


def test_real_build_is_seeded_and_runs():
    m1, (x1,) = build_model("resnet18", input_shape="3,32,32", fake=False)
    m2, (x2,) = build_model("resnet18", input_shape="3,32,32", fake=False)
    assert not isinstance(x1, FakeTensor) and torch.equal(x1, x2)
    assert torch.equal(m1.conv1.weight, m2.conv1.weight)
    with torch.no_grad():
        assert tuple(m1(x1).shape) == (1, 1000)


def _tiny_gpt2(d: int = 32, layers: int = 2, vocab: int = 64, positions: int = 32) -> dict:
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": d, "n_layer": layers,
            "n_head": 2, "vocab_size": vocab, "n_positions": positions, "bos_token_id": 0, "eos_token_id": 0}


def test_hf_config_file_and_folder(tmp_path):
    d, layers, vocab, pos = 32, 2, 64, 32
    (tmp_path / "config.json").write_text(json.dumps(_tiny_gpt2(d, layers, vocab, pos)))
    g = capture(f"hf:{tmp_path / 'config.json'}", seq_len=8)
    assert g.meta["capture_path"] == "export" and g.tensors[g.outputs[0]].shape == (1, 8, vocab)
    per_layer = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert g.num_params == vocab * d + pos * d + layers * per_layer + 2 * d  # lm_head tied to wte
    assert [op.target for op in g.ops].count("aten.scaled_dot_product_attention.default") == layers
    assert to_names(capture(f"hf:{tmp_path}", seq_len=8)) == to_names(g)


def to_names(g):
    return [(op.target, op.module_path) for op in g.ops]


def test_hf_config_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**_tiny_gpt2(), "model_type": "gtp2"}))
    with pytest.raises(UnknownNameError) as e:
        build_model(f"hf:{bad}")
    assert "gpt2" in e.value.suggestions
    with pytest.raises(DnnmapError, match="no such config file"):
        build_model(f"hf:{tmp_path / 'missing.json'}")


def test_user_file_factory(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def with_inputs():
            return nn.Sequential(nn.Linear(8, 4), nn.ReLU()), (torch.randn(2, 8),)

        def bare():
            return nn.Sequential(nn.Linear(8, 4))
    """))
    g = capture(f"{f}:with_inputs")
    assert [(op.target, op.module_path, op.module_type) for op in g.ops] == [
        ("aten.linear.default", "0", "Linear"), ("aten.relu.default", "1", "ReLU")]
    assert g.meta["input_shapes"] == ((2, 8),) and g.meta["model"] == f"{f}:with_inputs"
    g = capture(f"{f}:bare", input_shape="8", batch=3)
    assert g.tensors[g.outputs[0]].shape == (3, 4)
    with pytest.raises(DnnmapError, match="input shape"):
        capture(f"{f}:bare")
    with pytest.raises(UnknownNameError) as e:
        capture(f"{f}:bar")
    assert "bare" in e.value.suggestions
    with pytest.raises(DnnmapError, match="no such file"):
        capture(f"{tmp_path / 'nope.py'}:bare")


# -- real models: few, lean -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "hf:gpt2"])
def test_real_model_both_paths_identical(name):
    kw = {"seq_len": 32} if name.startswith("hf:") else {}
    ge, gd = capture(name, path="export", **kw), capture(name, path="dispatch", **kw)
    assert ge.ops == gd.ops and ge.tensors == gd.tensors
    m, _ = build_model(name, **kw)
    assert ge.num_params == sum(p.numel() for p in m.parameters())


@pytest.mark.slow
def test_named_model_wrong_shape():
    with pytest.raises(InputShapeError, match=r"module 'conv1' \(Conv2d\) rejected input of shape \[1, 4, 64, 64\]"):
        capture("resnet18", input_shape="4,64,64")


@pytest.mark.slow
def test_llama3_8b_parameter_count_and_structure():
    g = capture("hf:llama-3-8b", seq_len=64, dtype="bf16")
    vocab, d, layers, kv, inter = 128256, 4096, 32, 8 * 128, 14336
    per_layer = d * d + 2 * d * kv + d * d + 3 * d * inter + 2 * d  # q, k+v, o, gate/up/down, 2 norms
    assert g.num_params == vocab * d + layers * per_layer + d + vocab * d  # embed, layers, norm, lm_head
    assert [op.target for op in g.ops].count("aten.scaled_dot_product_attention.default") == layers
    assert g.meta["capture_path"] == "export"


@pytest.mark.slow
def test_timm_model_captures_with_its_own_input_size():
    m, (x,) = build_model("timm:convnext_tiny")
    g = capture("timm:convnext_tiny")
    assert g.meta["capture_path"] == "export" and g.meta["input_shapes"] == (tuple(x.shape),)
    assert tuple(x.shape) == (1, *m.pretrained_cfg["input_size"])
    assert g.num_params == sum(p.numel() for p in m.parameters())
    assert g.tensors[g.outputs[0]].shape == (1, 1000)
