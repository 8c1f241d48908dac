"""Every op of real models has a cost rule: the coverage ledger is empty on both capture paths."""

from __future__ import annotations

import pytest
import torch

from dnnmap.capture import capture
from dnnmap.costs import count_graph
from dnnmap.ir import OpClass

pytestmark = pytest.mark.slow

# resnet18/50, mobilenet_v2, efficientnet_b0, vit_b_16, bert and gpt2 are counted with
# strict=True on both paths by test_oracle_flops.py; these add the other op vocabularies:
# hard-swish / SE blocks, layer-scale + GELU, grouped convs, concatenation, shifted windows
# with masks and rolls, rotary embeddings (timm EVA-02).
MODELS = [
    "mobilenet_v3_small",
    "convnext_tiny",
    "regnet_y_400mf",
    "densenet121",
    "swin_t",
    "timm:eva02_tiny_patch14_224",
]


def _assert_complete(graph) -> None:  # noqa: ANN001 - ir.Graph
    counted = count_graph(graph)
    assert [(e.target, e.count, e.modules[:3]) for e in counted.ledger.unknown] == []
    assert counted.ledger.counted_ops == len(graph.ops)
    assert all(op.op_class is not OpClass.OTHER for op in graph.ops)
    assert counted.total.flops > 0


@pytest.mark.parametrize("path", ["export", "dispatch"])
@pytest.mark.parametrize("name", MODELS)
def test_ledger_empty(name: str, path: str) -> None:
    _assert_complete(capture(name, batch=1, path=path))


@pytest.mark.parametrize("path", ["export", "dispatch"])
def test_ledger_empty_tiny_llama_gqa(path: str) -> None:
    # a 2-layer Llama with grouped-query attention (4 query heads, 2 kv heads)
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, use_cache=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    graph = capture(model, inputs=(torch.randint(0, 256, (1, 16)),), path=path)
    _assert_complete(graph)
    attention = count_graph(graph).by_class()[OpClass.ATTENTION]
    # 2 layers * (q@k^T + p@v) over 4 query heads, 16 tokens, head dim 16
    assert attention.tensor_flops == 2 * 2 * (2 * 1 * 4 * 16 * 16 * 16)
