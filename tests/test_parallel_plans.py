"""Plans on many devices for inference (issue 10, points 4-6): micro-batches streamed through
pipeline stages, expert parallelism for MoE, ``--plan auto`` for analyze / generate, compare
under a plan, the plan in the JSON, and impossible plans. Hand arithmetic where it can be."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from dnnmap.api import analyze, compare, generate
from dnnmap.cli.main import app
from dnnmap.errors import DnnmapError
from dnnmap.hardware import load_profile
from dnnmap.hardware.interconnect import LinkLevel
from dnnmap.ir import OpClass
from dnnmap.memory import MemoryFit
from dnnmap.parallel import ParallelPlan, collective_s
from dnnmap.parallel.inference import InferenceParallel
from dnnmap.parallel.search import candidate_plans
from dnnmap.report.schemas import model_for
from test_inference_parallel import GPT2, LLAMA  # the same tiny configs (hidden 64, 2 layers)

S, HIDDEN, ELEM = 32, 64, 2  # tokens, hidden, bf16 bytes
KW = dict(seq_len=S, precision="bf16", dtype="bf16")
MOE = "hf:tiny-moe"  # bundled: hidden 64, 2 layers, 8 experts, top-2, expert FFN 128


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("cfg") / "gpt2.json"
    p.write_text(json.dumps(GPT2))
    return f"hf:{p}"


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("cfg") / "llama.json"
    p.write_text(json.dumps(LLAMA))
    return f"hf:{p}"


# -- micro-batches through pipeline stages: the schedule by hand on a stub model ---------------
@dataclass(frozen=True)
class _Est:
    latency_s: float
    subgraphs: tuple
    batch: int = 1
    energy_j: float = 1.0
    meta: dict = field(default_factory=dict)


def _stub(block_s: list[float]) -> tuple[Any, _Est]:
    """One kernel per block ``h.i`` taking ``block_s[i]`` seconds."""
    ops = {f"op{i}": SimpleNamespace(id=f"op{i}", module_path=f"h.{i}.mlp", op_class=OpClass.MATMUL,
                                     target="aten.mm.default") for i in range(len(block_s))}
    graph = SimpleNamespace(op=ops.__getitem__, ops=list(ops.values()))
    part = SimpleNamespace(graph=graph, subgraphs=[SimpleNamespace(op_ids=[k]) for k in ops])
    # 1 J of kernel work per kernel-second; 0.5 W idle over the latency
    est = _Est(sum(block_s), tuple(SimpleNamespace(latency_s=t, host_s=0.0, dynamic_energy_j=t) for t in block_s),
               energy_j=sum(block_s) + 0.5 * sum(block_s))
    return part, est


@pytest.mark.parametrize(("m", "decode", "latency", "throughput"), [
    (1, False, 1 + 3, 2 / 3 * 3),            # one micro-batch crosses both stages; a stream: 2 rows / 3 s x dp 3
    (4, False, (1 + 3) + 3 * 3, 2 / 3 * 3),  # fill + drain: t1 + (m - 1) x slowest stage
    (4, True, 4 * 3, 4 * 2 / 12 * 3),        # a decode step: max(m x slowest, t1) = max(12, 4); 8 tokens / 12 s
    (1, True, 1 + 3, 1 * 2 / 4 * 3),         # max(1 x 3, 4): the one micro-batch's next token waits 4 s, not 3
])
def test_microbatches_stream_at_one_per_slowest_stage(m: int, decode: bool, latency: float,
                                                      throughput: float) -> None:
    part, est = _stub([1.0, 3.0])
    par = InferenceParallel(ParallelPlan(pp=2, dp=3, microbatches=m), None, HIDDEN, 4, 4, 2)
    out = par.run(part, (None, None), lambda w: est, batch=2, tokens=1, elem_bytes=2, decode=decode)
    p = out.meta["parallel"]
    assert p["stage_s"] == [1.0, 3.0] and p["period_s"] == 3.0
    assert out.latency_s == pytest.approx(latency)
    assert p["throughput_per_s"] == pytest.approx(throughput)
    assert p["bubble_s"] == pytest.approx(latency - m * 3.0)
    # the request: every micro-batch's kernels (4 J each), both stages' devices idle over the latency
    assert out.batch == 2 * m and out.energy_j == pytest.approx(m * 4.0 + 2 * 0.5 * latency)


def test_generate_decode_rate_with_pp_is_the_batch_per_step(gpt2: str) -> None:
    # pp=2, one micro-batch: its next token waits for the last to cross both stages, so the
    # replica makes 2 tokens per decode step, not 2 per slowest stage
    r = generate(gpt2, "h100-sxm5", 16, 2, 2, precision="bf16", pp=2, devices=4).row(2)
    assert r.cluster_tokens_per_s == pytest.approx(2 / r.tpot_start_s * 2, rel=1e-9)  # x dp=2


def test_analyze_microbatches_reuse_the_micro_batch_stages(gpt2: str) -> None:
    one = analyze(gpt2, "h100-sxm5", pp=2, batch=1, **KW).meta["parallel"]
    est = analyze(gpt2, "h100-sxm5", pp=2, microbatches=2, batch=2, **KW)
    p = est.meta["parallel"]
    assert p["microbatch"] == 1 and p["stage_s"] == pytest.approx(one["stage_s"], rel=1e-12)
    period = max(one["stage_s"]) + one["send_s"]
    assert est.latency_s == pytest.approx(one["latency_s"] + period, rel=1e-12)  # the second one a period later
    assert p["throughput_per_s"] == pytest.approx(1 / period, rel=1e-12)
    assert est.batch == 2


# -- expert parallelism ------------------------------------------------------------------------
def test_all_to_all_alpha_beta_by_hand() -> None:
    link = LinkLevel(name="node", technology="t", devices=8, bandwidth_gbps=100, latency_us=5, topology="switch")
    n, nbytes = 4, 3 * 2**20
    assert collective_s("all_to_all", nbytes, n, link) == pytest.approx(
        (n - 1) / n * nbytes / 100e9 + (n - 1) * 5e-6, rel=1e-12)


def test_expert_memory_per_device_by_hand() -> None:
    fit = MemoryFit(weights=1000, activations=40, kv_cache=0, workspace=7, capacity=10**6)
    # 800 of the 1000 bytes are experts: ep=4 keeps 200 dense + 800 / 4
    assert InferenceParallel(ParallelPlan(dp=4, ep=4), None, 64, 4, 4, 2).memory(fit, 800).weights == 200 + 200
    # ep=2 and tp=2: (200 + 800 / 2) / 2
    assert InferenceParallel(ParallelPlan(dp=2, tp=2, ep=2), None, 64, 4, 4, 2).memory(fit, 800).weights == 300


def test_moe_ep4_all_to_alls_and_expert_weights() -> None:
    b, topk, layers = 2, 2, 2
    one = analyze(MOE, "h100-sxm5", batch=b, **KW)
    est = analyze(MOE, "h100-sxm5", batch=b, devices=4, ep=4, **KW)
    p = est.meta["parallel"]
    nvlink = load_profile("h100-sxm5").interconnect.levels[0]
    nbytes, n = b * S * topk * HIDDEN * ELEM, 4  # every routed row of the micro-batch, per device
    a2a = (n - 1) / n * nbytes / (nvlink.bandwidth_gbps * 1e9) + (n - 1) * nvlink.latency_us * 1e-6
    assert p["ep_all_to_all_s"] == pytest.approx(a2a, rel=1e-9)
    assert p["all_to_alls"] == 2 * layers  # dispatch + combine in each MoE layer
    assert p["ep_comm_s"] == pytest.approx(2 * layers * a2a, rel=1e-9)
    assert p["dp"] == 4 and p["throughput_per_s"] == pytest.approx(4 * b / est.latency_s, rel=1e-9)
    experts = layers * (8 * 2 * 128 * 64 + 8 * 64 * 128) * ELEM  # gate_up [8, 256, 64] + down [8, 64, 128]
    w1 = one.meta["memory_bytes"] - (est.meta["memory_per_device"]["memory_bytes"]
                                     - est.meta["memory_per_device"]["weights_bytes"])
    assert est.meta["memory_per_device"]["weights_bytes"] == w1 - experts + experts // 4
    # captured in fp32 the experts run transformers' fallback, not a grouped matmul: still MoE layers
    fp32 = analyze(MOE, "h100-sxm5", batch=b, devices=4, ep=4, seq_len=S, precision="bf16")
    assert fp32.meta["parallel"]["all_to_alls"] == 2 * layers
    # ... and its experts, found by parameter name, are divided by ep as in the bf16 capture
    mem = fp32.meta["memory_per_device"]
    one32 = analyze(MOE, "h100-sxm5", batch=b, seq_len=S, precision="bf16")
    dp4 = analyze(MOE, "h100-sxm5", batch=b, devices=4, seq_len=S, precision="bf16").meta["memory_per_device"]
    w32 = one32.meta["memory_bytes"] - (mem["memory_bytes"] - mem["weights_bytes"])
    assert mem["weights_bytes"] == w32 - experts + experts // 4 < dp4["weights_bytes"]


# -- --plan auto: one search, shared with train -------------------------------------------------
def test_candidate_plans_for_inference_and_training() -> None:
    inf = [str(p) for p in candidate_plans(4, 4, layers=2, heads=4, node=4, training=False, experts=8)]
    assert "dp4-tp1-pp1-mb1-zero0-ep4" in inf and "dp1-tp1-pp2-mb4-zero0" not in inf  # pp <= dp x tp x pp / 2
    assert all("zero0" in p for p in inf)  # no optimizer state to shard
    train = candidate_plans(4, 4, layers=2, heads=4, node=4)
    assert {p.zero for p in train if p.dp > 1} == {0, 1, 2, 3}
    assert all(4 % (p.dp * p.microbatches) == 0 for p in train)  # the global batch splits dp x m ways


def test_analyze_plan_auto_ranks_by_latency(gpt2: str) -> None:
    ests = analyze(gpt2, "h100-sxm5", batch=2, devices=2, plan="auto", **KW)
    assert [e.meta["parallel"]["plan"] for e in ests]  # every plan named
    assert len(ests) == 4  # dp2, tp2, pp2 x mb {1, 2}: every one fits
    lat = [e.latency_s for e in ests]
    assert lat == sorted(lat)
    best = ests[0].meta["parallel"]
    again = analyze(gpt2, "h100-sxm5", batch=2, tp=best["tp"], pp=best["pp"], dp=best["dp"],
                    microbatches=best["microbatches"], **KW)
    assert again.latency_s == pytest.approx(ests[0].latency_s, rel=1e-12)


def test_generate_plan_auto_one_capture_set(llama: str) -> None:
    reps = generate(llama, "h100-sxm5", 16, 4, 2, precision="bf16", devices=2, plan="auto")
    e2e = [r.rows[0].e2e_s for r in reps]
    assert e2e == sorted(e2e) and len(reps) == 4
    best = reps[0].meta["plan"]
    again = generate(llama, "h100-sxm5", 16, 4, 2, precision="bf16", tp=best["tp"], pp=best["pp"], dp=best["dp"],
                     microbatches=best["microbatches"])
    assert again.rows[0].e2e_s == pytest.approx(e2e[0], rel=1e-9)


# -- compare under a plan ------------------------------------------------------------------------
def test_compare_prices_each_device_with_the_plan(gpt2: str) -> None:
    cmp = compare(gpt2, "h100-sxm5,a100-sxm4-40gb", batch=2, tp=2, **KW)
    for dev in ("h100-sxm5", "a100-sxm4-40gb"):
        alone = analyze(gpt2, dev, batch=2, tp=2, **KW)
        assert cmp[dev].latency_s == pytest.approx(alone.latency_s, rel=1e-12)
        assert cmp[dev].meta["parallel"]["tp"] == 2
    with pytest.raises(DnnmapError, match="no interconnect section"):
        compare(gpt2, "h100-sxm5,l4", batch=2, tp=2, **KW)


# -- impossible plans: a clear error naming the constraint ---------------------------------------
@pytest.mark.parametrize(("model", "kw", "message"), [
    ("gpt2", dict(tp=3), "does not divide the 4 attention heads"),
    ("gpt2", dict(pp=3), "larger than the 2 layers"),
    ("gpt2", dict(microbatches=2), "needs pp > 1"),
    ("gpt2", dict(pp=2, microbatches=3), "batch 2 is not divisible by microbatches=3"),
    ("gpt2", dict(devices=2, ep=2), "has no experts"),
    (MOE, dict(devices=3, ep=3), "ep=3 does not divide the 8 experts"),
    (MOE, dict(tp=2, ep=2), "ep=2 does not divide dp=1"),
    ("gpt2", dict(plan="auto"), "--plan auto needs --devices N"),
    ("gpt2", dict(plan="auto", devices=2, tp=2), "chooses tp, pp, dp"),
    ("gpt2", dict(plan="best", devices=2), "--plan takes 'auto'"),
    # --plan auto with no candidate plan says why, not that every plan needs more memory
    ("gpt2", dict(plan="auto", devices=3, ep=2), "ep=2: .* has no experts"),
    (MOE, dict(plan="auto", devices=2, ep=4), "ep=4 does not divide 2 devices"),
    (MOE, dict(plan="auto", devices=8, ep=3), "ep=3 does not divide the 8 experts"),
])
def test_impossible_plans_name_the_constraint(gpt2: str, model: str, kw: dict, message: str) -> None:
    name = gpt2 if model == "gpt2" else model
    with pytest.raises(DnnmapError, match=message):
        analyze(name, "h100-sxm5", batch=2, **kw, **KW)


def test_a_plan_that_fits_nowhere_says_so(tmp_path: Path) -> None:
    # untied 3M x 16384 embeddings and head in bf16: 2 x 98 GB, more than 2 x 80 GiB however split
    p = tmp_path / "big.json"
    p.write_text(json.dumps({**LLAMA, "hidden_size": 16384, "intermediate_size": 256, "vocab_size": 3_000_000}))
    with pytest.raises(DnnmapError, match="no plan of 2 x h100-sxm5 .* fits") as e:
        analyze(f"hf:{p}", "h100-sxm5", batch=1, devices=2, plan="auto", seq_len=4, precision="bf16", dtype="bf16")
    assert "ZeRO" not in str(e.value)  # inference shards no optimizer state


def test_generate_plan_auto_without_candidates_says_why() -> None:
    with pytest.raises(DnnmapError, match="ep=4 does not divide 2 devices"):
        generate(MOE, "h100-sxm5", 16, 4, 2, precision="bf16", devices=2, plan="auto", ep=4)


@pytest.mark.parametrize("cmd", ["analyze", "compare", "generate"])
def test_cli_impossible_plan_exits_2_without_traceback(gpt2: str, cmd: str) -> None:
    hw = "h100-sxm5" if cmd != "compare" else "h100-sxm5,a100-sxm4-40gb"
    r = CliRunner().invoke(app, [cmd, gpt2, "-H", hw, "--tp", "3"])
    assert r.exit_code == 2 and "does not divide the 4 attention heads" in r.output
    assert "Traceback" not in r.output


# -- the plan in the JSON, validated against the schema ----------------------------------------
def test_analyze_json_carries_the_plan(gpt2: str, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    r = CliRunner().invoke(app, ["analyze", gpt2, "-H", "h100-sxm5", "--batch", "2", "--seq-len", "32", "-p", "bf16",
                                 "--tp", "2", "--pp", "2", "--microbatches", "2", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = model_for("analyze").model_validate(json.loads(out.read_text()))
    p = doc.parallel
    assert (p.tp, p.pp, p.dp, p.microbatches, p.devices) == (2, 2, 1, 2, 4)
    assert p.communication_s == pytest.approx(p.tp_comm_s + p.ep_comm_s + p.send_s, rel=1e-12)
    assert p.latency_s == pytest.approx(doc.summary.latency_s) and p.memory_per_device.fits
    assert p.bubble_s == pytest.approx(p.latency_s - 2 * max(p.stage_s), rel=1e-9)


@pytest.mark.parametrize("cmd", ["analyze", "generate", "compare"])
def test_plan_json_matches_the_schema(gpt2: str, llama: str, tmp_path: Path, cmd: str) -> None:
    out = tmp_path / "r.json"
    args = {"analyze": ["analyze", gpt2, "-H", "h100-sxm5", "--batch", "2", "--seq-len", "32", "--devices", "2",
                        "--plan", "auto"],
            "generate": ["generate", llama, "-H", "h100-sxm5", "--prompt", "16", "--gen", "4", "--batch", "2",
                         "--devices", "2", "--plan", "auto"],
            "compare": ["compare", gpt2, "-H", "h100-sxm5,a100-sxm4-40gb", "--batch", "2", "--seq-len", "32",
                        "--pp", "2"]}[cmd]
    r = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = model_for(cmd).model_validate(json.loads(out.read_text()))
    if cmd == "compare":
        assert all(d.plan == "dp1-tp1-pp2-mb1-zero0" and d.memory_per_device_bytes for d in doc.devices)
    else:
        assert len(doc.plans) == 4 and doc.plans[0].plan


@pytest.mark.parametrize(("kw", "message"), [(dict(plan="fast", devices=2), "--plan takes 'auto'"),
                                             (dict(plan="auto", devices=2, tp=2), "chooses tp, pp, dp")])
def test_train_plan_option_is_checked(gpt2: str, kw: dict, message: str) -> None:
    from dnnmap.api import train

    with pytest.raises(DnnmapError, match=message):
        train(gpt2, "h100-sxm5", batch=2, seq_len=16, **kw)


def test_expert_weight_traffic_per_device_with_ep() -> None:
    from dnnmap.hardware.schema import Precision
    from dnnmap.mapping import workload
    from dnnmap.mapping.weights import Storage, adjust, expected_experts
    from dnnmap.pipeline import Scenario, prepare

    part = prepare(Scenario(MOE, batch=1, seq_len=1, precision="bf16", dtype="bf16")).partition
    moe = {"experts": 8, "top_k": 2}
    works = workload(part, Precision.BF16)
    read = {ep: sum(w.weight_bytes for w in adjust(part, works, Precision.BF16, Storage(expert_parallel=ep), moe))
            for ep in (1, 4)}
    experts = 2 * (8 * 2 * 128 * 64 + 8 * 64 * 128) * ELEM
    # one token reaches 2 of 8 experts; with ep=4 a device holds 2 experts and serves 4 devices' tokens
    share1, share4 = 2 / 8, expected_experts(8, 2, 4) / 8 / 4
    assert read[1] - read[4] == pytest.approx(experts * (share1 - share4), abs=8)


def test_expert_weight_traffic_per_device_with_ep_fp32_capture() -> None:
    """Captured in fp32 the experts run transformers' fallback kernel, not ``_grouped_mm``: the
    expert weights are found by parameter name, and their traffic restated all the same."""
    from dnnmap.hardware.schema import Precision
    from dnnmap.mapping import workload
    from dnnmap.mapping.weights import Storage, adjust, expected_experts, expert_weight_bytes
    from dnnmap.pipeline import Scenario, prepare

    prep = prepare(Scenario(MOE, batch=1, seq_len=1, precision="bf16"))
    experts = 2 * (8 * 2 * 128 * 64 + 8 * 64 * 128) * ELEM
    assert expert_weight_bytes(prep.counted.graph, Precision.BF16) == experts
    part, moe = prep.partition, {"experts": 8, "top_k": 2}
    works = workload(part, Precision.BF16)
    read = {ep: sum(w.weight_bytes for w in adjust(part, works, Precision.BF16, Storage(expert_parallel=ep), moe))
            for ep in (1, 4)}
    share1, share4 = 2 / 8, expected_experts(8, 2, 4) / 8 / 4
    assert read[1] - read[4] == pytest.approx(experts * (share1 - share4), abs=8)


def test_moe_detection_by_name_by_hand() -> None:
    from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
    from dnnmap.mapping.moe import expert_weight_ids, moe_blocks

    ts = {t.id: t for t in (
        Tensor("x", (4, 8), DType.BFLOAT16, Role.INPUT),
        Tensor("gate", (8, 8), DType.BFLOAT16, Role.WEIGHT, name="m.layers.1.mlp.gate.weight"),
        Tensor("up", (8, 16, 8), DType.BFLOAT16, Role.WEIGHT, name="m.layers.1.mlp.experts.up_proj"),
        Tensor("shared", (8, 8), DType.BFLOAT16, Role.WEIGHT, name="m.layers.0.mlp.shared_experts.w.weight"),
        Tensor("y", (4, 8), DType.BFLOAT16, Role.ACTIVATION, producer="o1"),
        Tensor("z", (4, 16), DType.BFLOAT16, Role.ACTIVATION, producer="o2"),
    )}
    mm = OpClass.MATMUL
    ops = (Op("o1", "aten.linear.default", mm, ("x", "shared"), ("y",), module_path="m.layers.0.mlp.shared_experts.w"),
           Op("o2", "transformers.grouped_mm_fallback.default", mm, ("y", "up"), ("z",), module_path="m.layers.1.mlp"))
    g = Graph("g", ts, ops)
    assert expert_weight_ids(g) == {"up"}  # not the router, not a shared expert
    assert moe_blocks(g) == {"m.layers.1"}


def test_generate_moe_with_ep(tmp_path: Path) -> None:
    dp4 = generate(MOE, "h100-sxm5", 16, 4, 4, precision="bf16", devices=4)
    ep4 = generate(MOE, "h100-sxm5", 16, 4, 4, precision="bf16", devices=4, ep=4)
    assert ep4.meta["plan"]["ep"] == 4 and ep4.rows[0].fits and ep4.rows[0].e2e_s
    assert ep4.rows[0].memory.weights < dp4.rows[0].memory.weights  # experts / 4
    assert ep4.rows[0].ttft_s != dp4.rows[0].ttft_s  # all-to-alls, expert traffic of 2 of 8 experts


def test_cli_plan_auto_ep_1_pins_no_expert_parallelism(tmp_path: Path) -> None:
    plans = {}
    for args in ([], ["--ep", "1"]):
        p = tmp_path / f"r{len(args)}.json"
        r = CliRunner().invoke(app, ["analyze", MOE, "-H", "h100-sxm5", "--batch", "2", "--seq-len", "8",
                                     "--precision", "bf16", "--devices", "4", "--plan", "auto", "--json", str(p), *args])
        assert r.exit_code == 0, r.output
        plans[len(args)] = [row["plan"] for row in json.loads(p.read_text())["plans"]]
    assert any("-ep" in p for p in plans[0])  # without --ep every ep is searched
    assert plans[2] and not any("-ep" in p for p in plans[2])  # --ep 1: none


def test_train_takes_the_shared_plan_options(gpt2: str, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    r = CliRunner().invoke(app, ["train", gpt2, "-H", "h100-sxm5", "--seq-len", "8", "--batch", "2", "--tp", "2",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    row = json.loads(out.read_text())["results"][0]
    assert row["devices"] == 2 and row["plan"].startswith("dp1-tp2-")  # --devices defaults to dp x tp x pp
    helps = [CliRunner().invoke(app, [cmd, "--help"], env={"COLUMNS": "200"}).output for cmd in ("train", "analyze")]
    assert all("Data-parallel" in h and "Micro-batches" in h for h in helps)  # one declaration, one help
