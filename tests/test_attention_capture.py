"""Eager attention materializes the score tensor; SDPA does not (bytes by hand), and the
SDPA op carries its geometry to the mapper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dnnmap.capture import capture
from dnnmap.costs import CountedGraph, count_graph
from dnnmap.fusion import partition
from dnnmap.fusion.parallelism import AttentionParallelism
from dnnmap.ir import OpClass

B, H, S, E, LAYERS = 1, 4, 64, 64, 2  # head_dim = E / H = 16
SCORES = B * H * S * S * 4  # one fp32 [b, h, s, s] score tensor: 1 * 4 * 64 * 64 * 4 = 65536 B


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CountedGraph]:
    """A 2-layer GPT-2 (n_embd 64, 4 heads) captured with eager and with SDPA attention."""
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": E, "n_head": H,
           "n_layer": LAYERS, "n_positions": 128, "n_ctx": 128, "vocab_size": 128, "bos_token_id": 0,
           "eos_token_id": 0, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05}
    path: Path = tmp_path_factory.mktemp("tiny-gpt2") / "config.json"
    path.write_text(json.dumps(cfg))
    return {impl: count_graph(capture(f"hf:{path}", seq_len=S, attn_implementation=impl))
            for impl in ("eager", "sdpa")}


def _bytes(c: CountedGraph) -> int:
    return c.total.bytes_read + c.total.bytes_written


def test_eager_materializes_the_score_tensor(counted: dict[str, CountedGraph]) -> None:
    eager, sdpa = counted["eager"], counted["sdpa"]
    assert eager.graph.meta["attention"] == "eager" and sdpa.graph.meta["attention"] == "sdpa"
    softmax = [op for op in eager.graph.ops if op.op_class is OpClass.SOFTMAX]
    assert len(softmax) == LAYERS
    for op in softmax:
        out = eager.graph.tensors[op.outputs[0]]
        assert out.shape == (B, H, S, S)
        assert eager.cost(op).bytes_written == SCORES == 65536  # b*h*s*s*4 exactly
        assert eager.cost(op).bytes_read == SCORES
    assert not any(op.op_class is OpClass.ATTENTION for op in eager.graph.ops)
    assert sum(op.op_class is OpClass.ATTENTION for op in sdpa.graph.ops) == LAYERS

    # Per layer, any eager attention writes the scores (Q K^T) and the probabilities (softmax)
    # and reads both back (softmax, P V): at least 4 score tensors = 4 * 65536 = 262144 B; the
    # fused SDPA kernel moves none of them. Two layers: >= 524288 B more for eager. (GPT-2's
    # eager path also scales and masks the scores out of place: 8 score tensors per layer.)
    diff = _bytes(eager) - _bytes(sdpa)
    assert diff >= LAYERS * 4 * SCORES == 524288
    score_traffic = 0
    for op in eager.graph.ops:
        if op.module_path.endswith(".attn"):
            shapes = [eager.graph.tensors[t] for t in (*op.inputs, *op.outputs)]
            score_traffic += sum(t.nbytes for t in shapes if t.shape == (B, H, S, S))
    assert score_traffic >= LAYERS * 4 * SCORES


def test_sdpa_counts_the_full_square_and_carries_geometry(counted: dict[str, CountedGraph]) -> None:
    sdpa = counted["sdpa"]
    op = next(op for op in sdpa.graph.ops if op.op_class is OpClass.ATTENTION)
    # Q K^T + P V over the full square: 2 * (2 * b*h*s*s*d) = 4 * 1*4*64*64*16 = 1048576
    assert sdpa.cost(op).tensor_flops == 4 * B * H * S * S * (E // H) == 1048576
    part = partition(sdpa)
    sg = next(s for s in part.subgraphs if s.op_class is OpClass.ATTENTION)
    assert isinstance(sg.parallelism, AttentionParallelism)
    g = sg.parallelism.attention
    assert (g.batch, g.q_heads, g.kv_heads, g.q_len, g.kv_len, g.head_dim, g.v_head_dim) == (B, H, H, S, S, 16, 16)
    # GPT-2 passes its causal mask as a tensor: whether it is causal is not knowable
    assert g.masked and not g.causal and g.kernel == "sdpa"


class _GqaCausal(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def test_gqa_causal_geometry_from_a_captured_op() -> None:
    q, kv = torch.randn(2, 8, 256, 64), torch.randn(2, 2, 256, 64)
    c = count_graph(capture(_GqaCausal(), inputs=(q, kv, kv.clone())))
    op = next(op for op in c.graph.ops if op.op_class is OpClass.ATTENTION)
    # FLOPs stay the full square (FlopCounterMode's convention): 4 * 2*8*256*256*64
    assert c.cost(op).tensor_flops == 4 * 2 * 8 * 256 * 256 * 64
    sg = next(s for s in partition(c).subgraphs if s.op_class is OpClass.ATTENTION)
    g = sg.parallelism.attention
    assert (g.batch, g.q_heads, g.kv_heads, g.q_len, g.kv_len) == (2, 8, 2, 256, 256)
    assert g.causal and not g.masked and g.dropout_p == 0.0
