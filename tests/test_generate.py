"""LLM generation (issue 9): phases from the real model, exact functions of (batch, L), memory,
quantized storage, MoE. Expectations are written as arithmetic; tiny configs keep it fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dnnmap.capture.phases import CausalLM, Phase
from dnnmap.costs import count_graph
from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import Precision
from dnnmap.mapping.lengths import (
    Bilinear,
    GraphFamily,
    WorkFunction,
    cost_vector,
    mismatches,
    work_vector,
)
from dnnmap.mapping.weights import Storage, expected_experts, quantized_bytes, resident_weight_bytes
from dnnmap.memory import MemoryFit

# hidden 64, 4 heads of 16, 2 KV heads (GQA), MLP 128, 2 layers, vocab 100
TINY = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=128,
            num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=100,
            max_position_embeddings=512, tie_word_embeddings=False)
ARCHS = {
    "mistral": dict(architectures=["MistralForCausalLM"], model_type="mistral", num_key_value_heads=2, sliding_window=8),
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", num_key_value_heads=2),
    "phi3": dict(architectures=["Phi3ForCausalLM"], model_type="phi3", num_key_value_heads=4, pad_token_id=0),
    "gemma": dict(architectures=["GemmaForCausalLM"], model_type="gemma", num_key_value_heads=1, head_dim=16),
    "gpt2": dict(architectures=["GPT2LMHeadModel"], model_type="gpt2", n_embd=64, n_head=4, n_layer=2, n_positions=512,
                 bos_token_id=0, eos_token_id=0),
    "opt": dict(architectures=["OPTForCausalLM"], model_type="opt", ffn_dim=128, word_embed_proj_dim=64, pad_token_id=1,
                bos_token_id=0, eos_token_id=0),
    "falcon": dict(architectures=["FalconForCausalLM"], model_type="falcon", new_decoder_architecture=False,
                   multi_query=True, bos_token_id=0, eos_token_id=0),
    "gpt_neox": dict(architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox", bos_token_id=0, eos_token_id=0),
}
KV_HEADS = {"mistral": 2, "qwen2": 2, "phi3": 4, "gemma": 1, "gpt2": 4, "opt": 4, "falcon": 1, "gpt_neox": 4}


def _config(tmp: Path, name: str, **over) -> str:
    d = {**TINY, "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
         "vocab_size": 100, "max_position_embeddings": 512, **over}
    p = tmp / f"{name}.json"
    p.write_text(json.dumps(d))
    return f"hf:{p}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> CausalLM:
    return CausalLM.build(_config(tmp_path_factory.mktemp("cfg"), "tiny"), "fp32")


def test_kv_bytes_by_hand(tiny: CausalLM) -> None:
    layers, kv_heads, head_dim, itemsize = 2, 2, 64 // 4, 4
    for tokens, batch in ((10, 1), (33, 3)):
        assert tiny.kv_bytes(tokens, batch) == 2 * layers * kv_heads * head_dim * itemsize * tokens * batch
    # the decode graph's own cache inputs hold exactly that (static cache: L + 1 slots incl. the new token)
    g = tiny.capture(Phase.DECODE, batch=3, length=33, cache="static")
    cache = sum(g.tensors[t].nbytes for t, _ in g.meta["kv_cache"])
    assert cache == 2 * layers * kv_heads * head_dim * itemsize * (33 + 1) * 3


def test_decode_flops_by_hand(tiny: CausalLM) -> None:
    b, n, h, kvd, ffn, v, layers, heads, d = 2, 20, 64, 2 * 16, 128, 100, 2, 4, 16
    per_layer = (2 * b * h * h * 2          # q_proj, o_proj
                 + 2 * b * h * kvd * 2      # k_proj, v_proj (GQA: 2 heads of 16)
                 + 2 * b * h * ffn * 3      # gate, up, down
                 + 2 * (2 * b * heads * 1 * (n + 1) * d))  # q k^T and p v over L + 1 positions
    expect = layers * per_layer + 2 * b * h * v  # + lm_head on the one new position
    for cache in ("dynamic", "static"):
        c = count_graph(tiny.capture(Phase.DECODE, batch=b, length=n, cache=cache))
        assert c.total.tensor_flops == expect
        assert c.ledger.complete


def test_gqa_vs_mha(tmp_path: Path) -> None:
    mha = CausalLM.build(_config(tmp_path, "mha", num_key_value_heads=4), "fp32")
    gqa = CausalLM.build(_config(tmp_path, "gqa", num_key_value_heads=2), "fp32")
    assert mha.kv_bytes(100, 2) == 2 * gqa.kv_bytes(100, 2)
    a = count_graph(mha.capture(Phase.DECODE, 2, 50, "static"))
    g = count_graph(gqa.capture(Phase.DECODE, 2, 50, "static"))
    # attention work is per query head: equal; k/v projections: half the output width
    attn = lambda c: sum(c.costs[o.id].tensor_flops for o in c.graph.ops if "scaled_dot" in o.target)  # noqa: E731
    assert attn(a) == attn(g)
    assert a.total.tensor_flops - g.total.tensor_flops == 2 * (2 * 2 * 64 * (64 - 32) * 2)
    assert a.graph.num_params - g.graph.num_params == 2 * 2 * 64 * 32


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_architectures_capture_both_phases(tmp_path: Path, arch: str) -> None:
    lm = CausalLM.build(_config(tmp_path, arch, **ARCHS[arch]), "bf16")
    assert {k.heads for k in lm.layout} == {KV_HEADS[arch]}
    for phase, n in ((Phase.PREFILL, 6), (Phase.DECODE, 12)):
        c = count_graph(lm.capture(phase, 2, n, "static"))
        assert c.ledger.complete, c.ledger.unknown
        assert c.total.tensor_flops > 0
    if arch == "mistral":  # sliding window 8: the cache keeps min(tokens, 8) positions
        assert lm.kv_bytes(100, 1) == lm.kv_bytes(8, 1)


def test_decode_costs_exact_between_captured_lengths(tiny: CausalLM) -> None:
    corners = [(1, 8), (3, 8), (1, 40), (3, 40)]
    counted = {p: count_graph(tiny.capture(Phase.DECODE, *p, cache="static")) for p in corners}
    direct = count_graph(tiny.capture(Phase.DECODE, 2, 21, cache="static"))
    # op by op: every cost field of every op is bilinear in (batch, L)
    fit = Bilinear.fit({p: cost_vector(c) for p, c in counted.items()})
    assert mismatches(fit, (2, 21), cost_vector(direct)) == []
    # the shapes (three corners suffice) and the mapped work (four) too
    fam = GraphFamily.of({p: counted[p].graph for p in corners[:3]})
    assert cost_vector(count_graph(fam.at(2, 21))) == cost_vector(direct)
    from dnnmap.fusion import partition
    from dnnmap.mapping import workload

    # (mapped at the capture's precision, as generate does: no byte restatement rounding)
    wf = WorkFunction.of({p: workload(partition(c), Precision.FP32) for p, c in counted.items()})
    assert work_vector(wf(2, 21)) == work_vector(workload(partition(direct), Precision.FP32))


def test_int4_weight_bytes_with_group_scales(tiny: CausalLM) -> None:
    assert quantized_bytes((128, 64), "int4", 32) == 128 * 64 // 2 + 128 * (64 // 32) * 2
    assert quantized_bytes((128, 64), "int8") == 128 * 64 + 128 * 2
    assert quantized_bytes((128, 64), "fp8") == 128 * 64 + 4
    g = tiny.capture(Phase.DECODE, 1, 4, "static")
    g = type(g)(g.name, g.tensors, g.ops, g.inputs, g.outputs, {**g.meta, "vocab_size": 100})
    full = resident_weight_bytes(g, Precision.BF16, Storage())
    q = resident_weight_bytes(g, Precision.BF16, Storage("int4", 32))
    # per layer: q, o [64, 64]; k, v [32, 64]; gate, up [128, 64]; down [64, 128]
    shapes = [(64, 64), (64, 64), (32, 64), (32, 64), (128, 64), (128, 64), (64, 128)] * 2
    linear = sum(a * b for a, b in shapes)
    assert full - q == 2 * linear - sum(quantized_bytes(s, "int4", 32) for s in shapes)


def test_capacity_check() -> None:
    m = MemoryFit(weights=10, activations=3, kv_cache=5, workspace=2, capacity=20)
    assert m.total == 10 + 3 + 5 + 2 and m.fits
    small = MemoryFit(weights=10, activations=3, kv_cache=5, workspace=2, capacity=7)
    assert not small.fits and small.devices_needed == 3  # ceil(20 / 7)
    assert "needs" in small.describe()


def test_generate_fits_and_refuses(tmp_path: Path) -> None:
    from dnnmap.generate import generate

    name = _config(tmp_path, "gen")
    r = generate(name, "h100-sxm5", prompt=16, gen=8, batch=[1, 4], check=True)
    assert all(row.fits and row.ttft_s > 0 and row.tpot_end_s >= row.tpot_start_s > 0 for row in r.rows)
    assert r.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2  # layers x K,V x kv heads x head_dim x bf16
    assert any("equal a direct capture" in n for n in r.notes)
    cap = r.rows[0].memory.capacity
    tight = generate(name, "h100-sxm5", prompt=16, gen=8, batch=[1], workspace=cap)
    assert not tight.rows[0].fits and tight.rows[0].ttft_s is None and "needs" in tight.rows[0].message
    with pytest.raises(DnnmapError, match="max_position_embeddings"):
        generate(name, "h100-sxm5", prompt=500, gen=100)
    with pytest.raises(DnnmapError, match="cannot generate"):
        CausalLM.build("hf:bert-base-uncased")


def test_moe_expected_experts_and_grouped_mm_flops() -> None:
    assert expected_experts(8, 2, 1) == pytest.approx(2)
    assert expected_experts(8, 2, 3) == pytest.approx(8 * (1 - (1 - 2 / 8) ** 3))
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
               num_hidden_layers=2, vocab_size=256, num_local_experts=8, num_experts_per_tok=2)
    torch.manual_seed(0)
    real = MixtralForCausalLM(MixtralConfig(**cfg, experts_implementation="eager")).eval()
    ids = torch.randint(0, 256, (2, 5))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        real(ids, use_cache=False)
    oracle = fc.get_total_flops()  # eager experts: one mm per expert over its routed tokens
    lm = CausalLM.build("hf:tiny-moe", "bf16")
    c = count_graph(lm.capture(Phase.PREFILL, 2, 5, "dynamic"))
    grouped = sum(c.costs[o.id].tensor_flops for o in c.graph.ops if "grouped_mm" in o.target)
    rows = 2 * 5 * 2  # tokens x top-k
    assert grouped == 2 * (2 * rows * 64 * (2 * 128) + 2 * rows * 128 * 64)  # layers x (gate+up, down)
    # FlopCounterMode has no SDPA rule on CPU; the oracle's logits cover all 5 positions, dnnmap
    # only the last (logits_to_keep=1)
    sdpa = 2 * (2 * (2 * 2 * 4 * 5 * 5 * 16))  # layers x (q k^T, p v)
    assert c.total.tensor_flops - sdpa == oracle - 2 * 2 * 4 * 64 * 256


def test_cli_generate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dnnmap.cli.main import app

    name = _config(tmp_path, "cli")
    ok = CliRunner().invoke(app, ["generate", name, "--hardware", "h100-sxm5", "--prompt", "8", "--gen", "4",
                                  "--batch", "1,2", "--weights", "int8", "--kv-dtype", "fp8"])
    assert ok.exit_code == 0, ok.output
    assert "largest batch" in ok.output
    bad = CliRunner().invoke(app, ["generate", "hf:bert-base-uncased", "--hardware", "h100-sxm5"])
    assert bad.exit_code == 2


def test_analyze_reports_memory_fit(tmp_path: Path) -> None:
    from dnnmap.memory import GPU_WORKSPACE_BYTES, peak_activation_bytes, weight_bytes
    from dnnmap.pipeline import Scenario, estimate, prepare

    s = Scenario(_config(tmp_path, "an"), seq_len=16, precision="bf16")
    est = estimate(s, "h100-sxm5")
    g = prepare(s).counted.graph
    expect = weight_bytes(g, Precision.BF16) + peak_activation_bytes(g, Precision.BF16) + GPU_WORKSPACE_BYTES
    assert est.summary()["memory_bytes"] == expect and est.summary()["fits"] is True


def test_analyze_with_int4_weights(tmp_path: Path) -> None:
    from dnnmap.pipeline import Scenario, estimate

    s = Scenario(_config(tmp_path, "q", hidden_size=256, intermediate_size=512), seq_len=8, precision="bf16")
    full, q = estimate(s, "h100-sxm5"), estimate(s.with_(weights="int4", group_size=64), "h100-sxm5")
    # per layer q, k, v, o, gate, up, down at bf16 vs int4 + fp16 scales per 64 elements
    shapes = [(256, 256), (128, 256), (128, 256), (256, 256), (512, 256), (512, 256), (256, 512)] * 2
    saved = sum(2 * a * b - quantized_bytes((a, b), "int4", 64) for a, b in shapes)
    assert full.summary()["memory_bytes"] - q.summary()["memory_bytes"] == saved
    assert q.flops > full.flops  # dequantization work is counted


def test_static_cache_write_is_not_a_cache_copy(tiny: CausalLM) -> None:
    from dnnmap.fusion import partition

    g = tiny.capture(Phase.DECODE, 2, 300, "static")
    cache = sum(g.tensors[t].nbytes for t, _ in g.meta["kv_cache"]) // len(g.meta["kv_cache"])
    for strategy in ("unfused", "compiler"):
        for sg in partition(count_graph(g), strategy).subgraphs:
            if any("index_copy_" in g.op(o).target for o in sg.op_ids):
                # the new token is written in place: the cache is neither read nor rewritten here
                assert sg.external_bytes < cache, (strategy, sg.name, sg.external_bytes)
