"""Oracle: dnnmap's GEMM / conv FLOPs against torch's FlopCounterMode on real models.

For each model at batch 1 (fake tensors: no weights, no compute):

- dnnmap's tensor FLOPs of MATMUL + CONV ops equal FlopCounterMode's total on the same
  module and inputs, less any attention kernels it counts, within 0.1 %;
- dnnmap's ATTENTION tensor FLOPs equal the attention formula from the model's own
  hyper-parameters, ``layers * 2 * (2 * b * heads * s * s * head_dim)`` (FlopCounterMode
  counts 0 for SDPA on CPU);
- the graph's parameter count equals ``sum(p.numel() for p in model.parameters())``.

FlopCounterMode runs with nn.MultiheadAttention's fused inference fast path off, so it
sees the projections as the linear layers the exported graph has. Both capture paths are
checked (``auto`` takes export for all seven models).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dnnmap.capture import build_model, capture
from dnnmap.costs import OpCost, count_graph
from dnnmap.ir import OpClass

pytestmark = pytest.mark.slow

REL_TOL = 1e-3  # 0.1 %
_FLOPCOUNTER_ATTENTION = ("_scaled_dot_product", "_flash_attention", "_efficient_attention")


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def flop_counter_gemm_conv(module: nn.Module, inputs: tuple) -> tuple[int, int]:
    """(FlopCounterMode's non-attention FLOPs, its attention FLOPs) for one forward pass."""
    fake_mode = next((t.fake_mode for t in module.parameters() if hasattr(t, "fake_mode")), None)
    with contextlib.ExitStack() as stack:
        if fake_mode is not None:  # tensors made inside forward (arange, masks) must be fake too
            stack.enter_context(fake_mode)
        stack.enter_context(_mha_fastpath_off())
        stack.enter_context(torch.no_grad())
        fc = stack.enter_context(FlopCounterMode(display=False))
        module(*inputs)
    per_op = fc.get_flop_counts().get("Global", {})
    attention = sum(v for k, v in per_op.items() if any(a in str(k) for a in _FLOPCOUNTER_ATTENTION))
    return fc.get_total_flops() - attention, attention


def _vit_attention(module: nn.Module, inputs: tuple) -> int:
    # torchvision ViT: encoder.layers of EncoderBlock(self_attention=MultiheadAttention)
    blocks = list(module.encoder.layers)
    mha = blocks[0].self_attention
    b, _, h, w = inputs[0].shape
    s = (h // module.patch_size) * (w // module.patch_size) + 1  # patches + class token
    head_dim = mha.embed_dim // mha.num_heads
    return len(blocks) * 2 * (2 * b * mha.num_heads * s * s * head_dim)


def _hf_attention(module: nn.Module, inputs: tuple) -> int:
    cfg = module.config
    b, s = inputs[0].shape
    heads = cfg.num_attention_heads
    head_dim = cfg.hidden_size // heads
    return cfg.num_hidden_layers * 2 * (2 * b * heads * s * s * head_dim)


ATTENTION_FORMULA = {"vit_b_16": _vit_attention, "hf:bert-base-uncased": _hf_attention, "hf:gpt2": _hf_attention}
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vit_b_16", "hf:bert-base-uncased", "hf:gpt2"]


def _by_class(counted, *classes: OpClass) -> OpCost:
    by = counted.by_class()
    return sum((by.get(c, OpCost.zeros()) for c in classes), OpCost.zeros())


# The dispatch recorder turns off nn.MultiheadAttention's fused eval fast path, so vit_b_16's
# q/k/v/out projections are matmuls on both paths (they would hide inside attention otherwise).
CASES = [pytest.param(name, path) for name in MODELS for path in ("auto", "dispatch")]


@functools.cache
def _model_and_oracle(name: str) -> tuple[nn.Module, tuple, int, int]:
    module, inputs = build_model(name, batch=1)
    return module, inputs, *flop_counter_gemm_conv(module, inputs)


@pytest.mark.parametrize(("name", "path"), CASES)
def test_gemm_conv_flops_match_flop_counter(name: str, path: str) -> None:
    module, inputs, oracle, oracle_attention = _model_and_oracle(name)
    graph = capture(module, inputs=inputs, path=path)
    counted = count_graph(graph, strict=True)  # strict: no op may be left unknown

    gemm_conv = _by_class(counted, OpClass.MATMUL, OpClass.CONV)
    assert oracle > 0
    assert abs(gemm_conv.tensor_flops - oracle) <= REL_TOL * oracle, (gemm_conv.tensor_flops, oracle)
    assert gemm_conv.tensor_flops == 2 * gemm_conv.macs

    attention = _by_class(counted, OpClass.ATTENTION).tensor_flops
    expected_attention = ATTENTION_FORMULA[name](module, inputs) if name in ATTENTION_FORMULA else 0
    assert attention == expected_attention
    assert oracle_attention == 0  # CPU SDPA: FlopCounterMode misses it; dnnmap reports it above

    assert graph.num_params == sum(p.numel() for p in module.parameters())
