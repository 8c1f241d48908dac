"""Inference on many devices (issue 10, point 4): tensor / pipeline / data parallelism for
``analyze`` and ``generate``. Expectations are hand arithmetic on a tiny 2-layer GPT-2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnnmap.api import analyze, generate
from dnnmap.errors import DnnmapError
from dnnmap.hardware import load_profile
from dnnmap.hardware.schema import Precision
from dnnmap.mapping import workload
from dnnmap.memory import MemoryFit
from dnnmap.parallel import ParallelPlan
from dnnmap.parallel.inference import InferenceParallel, shard
from dnnmap.pipeline import Scenario, prepare

# hidden 64, 4 heads, 2 layers, vocab 100
GPT2 = dict(architectures=["GPT2LMHeadModel"], model_type="gpt2", n_embd=64, n_head=4, n_layer=2, n_positions=512,
            vocab_size=100, bos_token_id=0, eos_token_id=0)
LLAMA = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=128,
             num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, vocab_size=100,
             max_position_embeddings=512, tie_word_embeddings=False)
B, S, HIDDEN, ELEM = 2, 32, 64, 2  # batch, tokens, hidden, bf16 bytes
KW = dict(batch=B, seq_len=S, precision="bf16", dtype="bf16")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("cfg") / "gpt2.json"
    p.write_text(json.dumps(GPT2))
    return f"hf:{p}"


@pytest.fixture(scope="module")
def one(gpt2: str):
    return analyze(gpt2, "h100-sxm5", **KW)


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_tp2_halves_gemm_flops_per_device(gpt2: str, mode: str) -> None:
    prep = prepare(Scenario(gpt2, mode=mode, **KW))
    works = workload(prep.partition, Precision.BF16)
    sharded = shard(prep.partition, works, 2)
    assert sum(w.tensor_flops for w in sharded) * 2 == sum(w.tensor_flops for w in works)


def test_tp2_adds_two_ring_all_reduces_per_block(gpt2: str, one) -> None:
    est = analyze(gpt2, "h100-sxm5", tp=2, **KW)
    p = est.meta["parallel"]
    nvlink = load_profile("h100-sxm5").interconnect.levels[0]
    nbytes, n = B * S * HIDDEN * ELEM, 2
    ring = 2 * (n - 1) / n * nbytes / (nvlink.bandwidth_gbps * 1e9) + 2 * (n - 1) * nvlink.latency_us * 1e-6
    assert p["tp_all_reduce_s"] == pytest.approx(ring, rel=1e-9)
    assert p["all_reduces"] == 2 * 2 + 1  # two per block (attention, MLP) + the vocabulary-parallel embedding
    assert est.latency_s == pytest.approx(p["compute_s"] + 5 * ring, rel=1e-9)
    assert p["compute_s"] <= one.latency_s  # half the work per device, never slower before communication


def test_pp2_two_stages_latency_and_throughput(gpt2: str, one) -> None:
    est = analyze(gpt2, "h100-sxm5", pp=2, **KW)
    p = est.meta["parallel"]
    assert len(p["stage_s"]) == 2 and p["all_reduces"] == 0
    nvlink = load_profile("h100-sxm5").interconnect.levels[0]
    send = B * S * HIDDEN * ELEM / (nvlink.bandwidth_gbps * 1e9) + nvlink.latency_us * 1e-6
    assert p["send_s"] == pytest.approx(send, rel=1e-9)
    assert sum(p["stage_s"]) == pytest.approx(one.latency_s, rel=1e-9)  # the same work, cut in two
    assert est.latency_s == pytest.approx(one.latency_s + send, rel=1e-9)
    assert p["throughput_per_s"] == pytest.approx(B / (max(p["stage_s"]) + send), rel=1e-9)
    # dp: replicas multiply the throughput, the latency of one request is unchanged
    est4 = analyze(gpt2, "h100-sxm5", pp=2, dp=2, **KW)
    assert est4.latency_s == pytest.approx(est.latency_s, rel=1e-12)
    assert est4.meta["parallel"]["throughput_per_s"] == pytest.approx(2 * p["throughput_per_s"], rel=1e-12)


def test_memory_per_device_by_hand() -> None:
    par = InferenceParallel(ParallelPlan(tp=4, pp=2), None, 64, 8, 2, 4)
    fit = par.memory(MemoryFit(weights=800, activations=40, kv_cache=160, workspace=7, capacity=1000))
    # weights / (tp x pp); activations / tp; KV / (min(tp, kv heads) x pp): 2 KV heads are not split 4 ways
    assert (fit.weights, fit.activations, fit.kv_cache, fit.workspace) == (100, 10, 40, 7)


def test_generate_tp2_memory_and_kv(tmp_path: Path) -> None:
    p = tmp_path / "llama.json"
    p.write_text(json.dumps(LLAMA))
    name = f"hf:{p}"
    r1 = generate(name, "h100-sxm5", 16, 4, [1, 2], precision="bf16")
    r2 = generate(name, "h100-sxm5", 16, 4, [1, 2], precision="bf16", tp=2)
    a, b = r1.row(2), r2.row(2)
    assert b.memory.weights == -(-a.memory.weights // 2)
    assert b.memory.kv_cache == a.memory.kv_cache // 2  # 2 KV heads, one per device
    assert b.cluster_tokens_per_s and b.ttft_s and b.e2e_s
    assert r2.meta["parallel"] == "tp2 x pp1 x dp1 = 2 devices"


@pytest.mark.parametrize(("kw", "message"), [
    (dict(tp=3, devices=3), "does not divide the 4 attention heads"),
    (dict(pp=3, devices=3), "larger than the 2 layers"),
    (dict(tp=2, devices=3), "does not use the 3 devices"),
])
def test_impossible_plans_name_the_constraint(gpt2: str, kw: dict, message: str) -> None:
    with pytest.raises(DnnmapError, match=message):
        analyze(gpt2, "h100-sxm5", **kw, **KW)


def test_profile_without_interconnect_is_refused(gpt2: str) -> None:
    with pytest.raises(DnnmapError, match="no interconnect section"):
        analyze(gpt2, "l4", tp=2, **KW)


def test_cli_analyze_and_generate_with_tp(gpt2: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dnnmap.cli.main import app

    r = CliRunner().invoke(app, ["analyze", gpt2, "-H", "h100-sxm5", "--batch", "2", "--seq-len", "32",
                                 "-p", "bf16", "--tp", "2", "--json", "-"])
    assert r.exit_code == 0, r.output
    assert any(n.startswith("parallel dp1-tp2-pp1") for n in json.loads(r.output)["notes"])
    r = CliRunner().invoke(app, ["analyze", gpt2, "-H", "h100-sxm5", "--tp", "3"])
    assert r.exit_code != 0 and "attention heads" in r.output


def test_request_energy_counts_every_device(gpt2: str, one) -> None:
    # pp2: the same kernels (cut in two stages, on two devices), both devices idle-powered over the
    # (longer) latency: dynamic energy equals one device's, idle energy doubles
    h100 = load_profile("h100-sxm5")
    idle_w = h100.power.idle_w
    dyn_one = sum(sg.dynamic_energy_j for sg in one.subgraphs)
    assert one.energy_j == pytest.approx(dyn_one + idle_w * one.latency_s, rel=1e-9)
    pp2 = analyze(gpt2, "h100-sxm5", pp=2, **KW)
    assert pp2.energy_j == pytest.approx(dyn_one + 2 * idle_w * pp2.latency_s, rel=1e-9)
    # tp2: each rank runs half of every sharded GEMM and all of the replicated ops (norms, the
    # embedding; a large share of this tiny model): the two ranks' kernels together do at least
    # one device's work and at most twice it; two devices draw idle power (the old figure was one
    # rank's energy: below one device's work)
    tp2 = analyze(gpt2, "h100-sxm5", tp=2, **KW)
    dyn_tp2 = tp2.energy_j - 2 * idle_w * tp2.latency_s
    assert dyn_one * 0.9 < dyn_tp2 < dyn_one * 2
