"""Training steps of a mixture of experts: the grouped expert GEMMs in bf16 under AMP, their
backward FLOPs by hand (FlopCounterMode has no rule for ``_grouped_mm``), and expert
parallelism (``ep``) for ``train``: four all-to-alls per MoE layer per micro-batch, experts'
weights / gradients / optimizer state divided by ``ep``, expert gradients all-reduced over
the expert-data-parallel group."""

from __future__ import annotations

import pytest
from torch.utils.flop_counter import FlopCounterMode

from dnnmap.capture.train_path import capture_train_step
from dnnmap.costs import count_graph
from dnnmap.errors import DnnmapError
from dnnmap.ir import OpClass
from dnnmap.training.memory import step_memory
from dnnmap.training.phases import phase_ops

MOE = "hf:tiny-moe"  # bundled: hidden 64, 2 layers, 8 experts, top-2, expert FFN 128, vocab 256
HIDDEN, FFN, EXPERTS, TOP_K, LAYERS = 64, 128, 8, 2, 2
B, S = 2, 8


@pytest.fixture(scope="module")
def step() -> object:
    return capture_train_step(MOE, batch=B, seq_len=S, optimizer="adamw", amp="bf16", attn_implementation="eager")


def _grouped(g: object, phase: str) -> list:
    return [op for op in phase_ops(g, (phase,)) if op.target == "aten._grouped_mm.default"]


def test_plain_fp32_moe_step_is_refused_with_the_way_out() -> None:
    with pytest.raises(DnnmapError, match=r"plain fp32 training step .* cannot run.*--precision bf16"):
        capture_train_step(MOE, batch=1, seq_len=8, optimizer="adamw")


def test_expert_gemms_run_in_bf16_with_fp32_master_weights(step: object) -> None:
    g = step
    assert g.meta["expert_gemm_dtype"] == "bfloat16"
    fwd, bwd = _grouped(g, "forward"), _grouped(g, "backward")
    assert len(fwd) == 2 * LAYERS and len(bwd) == 4 * LAYERS  # gate_up + down; each: d_input + d_weight
    for op in fwd + bwd:
        assert {g.tensors[t].dtype.value for t in op.inputs[:2]} == {"bfloat16"}
    assert not count_graph(g).ledger.unknown  # every op of the step has a cost rule
    # fp32 master weights, fp32 gradients, Adam's two fp32 moments (+ a step counter per tensor)
    mem = step_memory(g)
    params = sum(t.numel for t in g.tensors.values() if t.role.value == "weight")
    assert mem.weights == 4 * params and mem.gradients == 4 * params
    assert 8 * params < mem.optimizer_state <= 8 * params + 4 * 64


def test_grouped_gemm_backward_flops_by_hand(step: object) -> None:
    g = step
    c = count_graph(g)
    routed = B * S * TOP_K  # rows the experts compute: each token goes to top_k experts
    # forward per layer: gate_up [routed, H] x [H, 2F] and down [routed, F] x [F, H]
    fwd_layer = 2 * routed * HIDDEN * 2 * FFN + 2 * routed * FFN * HIDDEN
    assert sum(c.costs[op.id].tensor_flops for op in _grouped(g, "forward")) == LAYERS * fwd_layer
    # backward: the input gradient and the weight gradient, each as many FLOPs as the forward GEMM
    # (the weight gradient sums over the routed rows once, not once per expert)
    assert sum(c.costs[op.id].tensor_flops for op in _grouped(g, "backward")) == 2 * LAYERS * fwd_layer


def test_other_backward_gemms_equal_flop_counter() -> None:
    """Every matmul other than the grouped expert GEMMs agrees with FlopCounterMode on the same
    fake step; FlopCounterMode counts no grouped GEMM (so those are checked by hand above)."""
    from dnnmap.capture import hf
    from dnnmap.capture.train_path import _autocast, _build, _expert_gemms, _loss, _target

    class _Rec:
        expert_gemms = ""

    counts = []
    for backward in (False, True):
        with hf.attention("eager"):
            _, module, example, vocab = _build(MOE, B, S, None, None, None)
        module.train()
        fake = next(iter(module.parameters())).fake_mode
        with fake, _expert_gemms(MOE, "bf16", _Rec()), FlopCounterMode(display=False) as fc:
            with _autocast("bf16"):
                loss = _loss(module(*example), _target(module, example, vocab))
            if backward:
                loss.backward()
        flat = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
        assert not any("grouped_mm" in k for k in flat)
        counts.append(sum(flat.values()))
    g = capture_train_step(MOE, batch=B, seq_len=S, optimizer="none", amp="bf16", attn_implementation="eager")
    c = count_graph(g)

    def ours(phases: tuple) -> int:
        return sum(c.costs[op.id].tensor_flops for op in phase_ops(g, phases)
                   if op.op_class is OpClass.MATMUL and "grouped_mm" not in op.target)

    assert ours(("forward", "loss")) == pytest.approx(counts[0], rel=1e-3)
    assert ours(("backward",)) == pytest.approx(counts[1] - counts[0], rel=1e-3)
    assert ours(("backward",)) > 0


def test_grouped_weight_gradient_gemm_shape() -> None:
    """The weight gradient (both operands 2-D): E GEMMs of S / E rows each, as the mapper sees it."""
    from dnnmap.fusion.parallelism import parallelism_of
    from dnnmap.ir import DType, Graph, Op, Role, Tensor

    e, m, s, n = 8, 64, 32, 128
    t = {"a": Tensor("a", (m, s), DType.BFLOAT16, Role.INPUT), "b": Tensor("b", (s, n), DType.BFLOAT16, Role.INPUT),
         "o": Tensor("o", (e,), DType.INT32, Role.INPUT),
         "y": Tensor("y", (e, m, n), DType.BFLOAT16, Role.OUTPUT, producer="op0")}
    g = Graph("g", t, (Op("op0", "aten._grouped_mm.default", OpClass.MATMUL, ("a", "b", "o"), ("y",),
                          input_args=("self", "mat2", "offs")),))
    assert count_graph(g).total.tensor_flops == 2 * m * s * n
    p = parallelism_of(g.op("op0"), g)
    assert (p.gemm_batch, p.gemm_m, p.gemm_n, p.gemm_k) == (e, m, n, s // e)
    assert 2 * p.gemm_batch * p.gemm_m * p.gemm_n * p.gemm_k == 2 * m * s * n




# -- expert parallelism for train -----------------------------------------------------------------
SEQ = 64
EXPERT_BYTES = LAYERS * (EXPERTS * 2 * FFN * HIDDEN + EXPERTS * FFN * HIDDEN) * 4  # gate_up + down, fp32 masters


def _step(**kw):  # noqa: ANN003, ANN202
    from dnnmap.api import train

    return train(MOE, "h100-sxm5", batch=8, seq_len=SEQ, precision="bf16", **kw)


@pytest.fixture(scope="module")
def dp8() -> object:
    return _step(devices=8)


@pytest.fixture(scope="module")
def ep4() -> object:
    return _step(devices=8, ep=4)


def test_four_all_to_alls_per_moe_layer_by_hand(dp8: object, ep4: object) -> None:
    from dnnmap.hardware import load_profile

    nvlink = load_profile("h100-sxm5").interconnect.levels[0]
    n, mb = 4, 8 // 8  # ep group of 4 devices; a micro-batch of one sequence per replica
    nbytes = mb * SEQ * TOP_K * HIDDEN * 2  # the routed rows of the micro-batch, bf16
    a2a = (n - 1) / n * nbytes / (nvlink.bandwidth_gbps * 1e9) + (n - 1) * nvlink.latency_us * 1e-6
    assert ep4.breakdown["ep_all_to_all"] == pytest.approx(a2a, rel=1e-9)
    # dispatch + combine in forward, their transposes in backward, in each of the 2 MoE layers
    assert ep4.all_to_alls == 4 * LAYERS
    assert ep4.breakdown["ep_comm"] == pytest.approx(4 * LAYERS * a2a, rel=1e-9)
    assert dp8.all_to_alls == 0 and dp8.breakdown["ep_comm"] == 0.0
    assert ep4.communication_s >= ep4.breakdown["ep_comm"]  # on the critical path, never hidden
    assert any("4 per MoE layer per micro-batch" in n for n in ep4.notes)
    # forward / backward compute per device unchanged: each device runs as many routed rows
    assert ep4.forward_s == pytest.approx(dp8.forward_s, rel=1e-9)
    assert ep4.backward_s == pytest.approx(dp8.backward_s, rel=1e-9)


def test_full_recompute_dispatches_again(ep4: object) -> None:
    full = _step(devices=8, ep=4, recompute="full")
    assert full.all_to_alls == 6 * LAYERS  # the re-run forward dispatches and combines its tokens again
    assert full.breakdown["ep_comm"] == pytest.approx(6 / 4 * ep4.breakdown["ep_comm"], rel=1e-9)


def test_expert_weights_gradients_and_state_divided_by_ep(dp8: object, ep4: object) -> None:
    saved = 3 * EXPERT_BYTES // 4  # ep4 holds 2 of the 8 experts
    assert dp8.memory.weights - ep4.memory.weights == pytest.approx(saved, rel=1e-6)
    assert dp8.memory.gradients - ep4.memory.gradients == pytest.approx(saved, rel=1e-6)  # fp32 gradients
    # Adam's two fp32 moments of each expert weight (the step counters: a few bytes)
    assert dp8.memory.optimizer_state - ep4.memory.optimizer_state == pytest.approx(2 * saved, rel=1e-4)


def test_expert_gradients_all_reduced_over_the_expert_data_parallel_group(dp8: object, ep4: object) -> None:
    from dnnmap.hardware import load_profile
    from dnnmap.parallel import collective_s

    nvlink = load_profile("h100-sxm5").interconnect.levels[0]
    grads = dp8.memory.gradients  # every fp32 gradient of the model on each of the dp8 replicas
    assert dp8.breakdown["dp_comm_total"] == pytest.approx(collective_s("all_reduce", grads, 8, nvlink), rel=1e-6)
    # the rest over all 8 replicas, each device's 2 experts over the 8 / 4 = 2 devices holding them
    dense, experts = grads - EXPERT_BYTES, EXPERT_BYTES / 4
    want = collective_s("all_reduce", dense, 8, nvlink) + collective_s("all_reduce", experts, 2, nvlink)
    assert ep4.breakdown["dp_comm_total"] == pytest.approx(want, rel=1e-6)


def test_zero_shards_experts_over_their_replicas() -> None:
    from dnnmap.parallel import ParallelPlan
    from dnnmap.training.multi import Split, StepModel, _memory

    sm = StepModel(Split(), Split(), Split(), Split(), Split(), Split(), Split(), working=0, flops_per_block=0,
                   flops_other=0, blocks_captured=1)
    w, g, st, act, fe = 1000.0, 1000.0, 2000.0, 0.0, 0.8  # 800 of every 1000 bytes are experts
    m0 = _memory(sm, ParallelPlan(dp=8, ep=4), w, g, st, act, fe)
    assert (m0.weights, m0.gradients, m0.optimizer_state) == (200 + 200, 200 + 200, 400 + 400)
    # ZeRO-3 over dp=8 for the rest, over the dp / ep = 2 replicas of each expert for the experts
    m3 = _memory(sm, ParallelPlan(dp=8, ep=4, zero=3), w, g, st, act, fe)
    assert (m3.weights, m3.gradients, m3.optimizer_state) == (25 + 100, 25 + 100, 50 + 200)
    m1 = _memory(sm, ParallelPlan(dp=8, ep=4, zero=1), w, g, st, act, fe)
    assert (m1.weights, m1.gradients, m1.optimizer_state) == (400, 400, 50 + 200)


@pytest.mark.parametrize(("kw", "msg"), [
    (dict(devices=8, ep=3), "ep=3 does not divide the 8 experts"),
    (dict(devices=4, tp=2, ep=4), "ep=4 does not divide dp=2"),
    (dict(devices=2, ep=2, model="hf:gpt2"), "hf:gpt2 has no experts"),
    (dict(devices=8, ep=3, plan="auto"), "ep=3 does not divide the 8 experts"),
])
def test_impossible_expert_parallel_plans(kw: dict, msg: str) -> None:
    from dnnmap.api import train

    model = kw.pop("model", MOE)
    with pytest.raises(DnnmapError, match=msg):
        train(model, "h100-sxm5", batch=8, seq_len=16, precision="bf16", **kw)


def test_plan_auto_searches_expert_parallelism() -> None:
    from dnnmap.api import train

    plans = train(MOE, "h100-sxm5", batch=4, seq_len=16, precision="bf16", devices=4, plan="auto", top=1000)
    eps = {e.plan.ep for e in plans}
    assert eps == {1, 2, 4}  # every ep dividing both the 8 experts and a dp of 4 devices
    fixed = train(MOE, "h100-sxm5", batch=4, seq_len=16, precision="bf16", devices=4, plan="auto", ep=2, top=1000)
    assert {e.plan.ep for e in fixed} == {2} and all(e.all_to_alls == 4 * LAYERS * e.plan.microbatches
                                                     for e in fixed if e.plan.pp == 1)
    # --ep 1 pins ep to 1 (not "search every ep")
    dense = train(MOE, "h100-sxm5", batch=4, seq_len=16, precision="bf16", devices=4, plan="auto", ep=1, top=1000)
    assert {e.plan.ep for e in dense} == {1} and all(e.all_to_alls == 0 for e in dense)


def test_grouped_mm_errors_are_translated_only_for_a_plain_fp32_step() -> None:
    import logging

    from dnnmap.capture.train_path import _expert_gemms

    log = logging.getLogger("torch._subclasses.fake_tensor")
    before = log.level
    with pytest.raises(RuntimeError, match="grouped_mm: bad offsets") as e, _expert_gemms("m", "bf16", None):
        assert log.level == before  # a capture that runs no grouped matmul leaves the logger alone
        raise RuntimeError("grouped_mm: bad offsets")
    assert not isinstance(e.value, DnnmapError)  # under AMP the operands are bf16: not the fp32 refusal
    with pytest.raises(DnnmapError, match="--precision bf16"), _expert_gemms("m", None, None):
        raise RuntimeError("grouped_mm: expected mat_a to be BFloat16")
    assert log.level == before


QWEN_MOE = dict(architectures=["Qwen2MoeForCausalLM"], model_type="qwen2_moe", hidden_size=64, intermediate_size=128,
                moe_intermediate_size=64, shared_expert_intermediate_size=64, num_attention_heads=4,
                num_key_value_heads=2, num_hidden_layers=4, vocab_size=256, max_position_embeddings=512,
                num_experts=8, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[0],
                tie_word_embeddings=False)


def test_moe_layer_count_from_the_config(tmp_path) -> None:  # noqa: ANN001
    """Qwen-MoE with ``mlp_only_layers=[0]``: 3 of the 4 layers have experts, whichever 2 were captured
    (layers 0 and 1: one dense, one MoE, which read as half the layers)."""
    import json

    from dnnmap.api import train

    p = tmp_path / "qwen-moe.json"
    p.write_text(json.dumps(QWEN_MOE))
    est = train(f"hf:{p}", "h100-sxm5", batch=2, seq_len=16, precision="bf16", devices=2, ep=2)
    assert est.all_to_alls == 4 * 3  # 4 per MoE layer (dispatch, combine, their transposes), pp=1, one micro-batch
    assert est.breakdown["ep_comm"] == pytest.approx(4 * 3 * est.breakdown["ep_all_to_all"], rel=1e-9)



def test_dense_first_layers_are_captured_with_one_that_has_experts(tmp_path) -> None:  # noqa: ANN001
    """Qwen-MoE with ``mlp_only_layers=[0, 1]``: two captured blocks would both be dense, so three
    are captured (two dense, one with experts), and the model's average layer weighs them as the
    model has them: half its 4 layers dense, half with experts."""
    import json

    from dnnmap.api import train
    from dnnmap.mapping.api import resolve_profile
    from dnnmap.pipeline import Scenario
    from dnnmap.training.multi import model_info, step_model

    p = tmp_path / "qwen-moe.json"
    p.write_text(json.dumps({**QWEN_MOE, "mlp_only_layers": [0, 1]}))
    info = model_info(f"hf:{p}")
    assert (info.moe_layers, info.first_moe_layer, info.layers_to_capture(2), info.moe_share) == (2, 2, 3, 0.5)
    last = tmp_path / "qwen-moe-last-dense.json"  # experts first, the last layer dense: capture all 4
    last.write_text(json.dumps({**QWEN_MOE, "mlp_only_layers": [3]}))
    assert model_info(f"hf:{last}").layers_to_capture(2) == 4
    est = train(f"hf:{p}", "h100-sxm5", batch=2, seq_len=16, precision="bf16", devices=2, ep=2)
    assert est.all_to_alls == 4 * 2  # 4 per MoE layer, 2 MoE layers
    s = Scenario(f"hf:{p}", batch=1, seq_len=16, layers=3, precision="bf16", amp="bf16", optimizer="adamw")
    sm = step_model(s, resolve_profile("h100-sxm5"), 1, info.moe_share)
    # the experts of the one MoE block: 8 x (gate + up 2 x 64 x 64, down 64 x 64) fp32 master weights;
    # the average layer holds half of them (half the layers have experts)
    assert sm.moe_blocks == 1 and sm.blocks_captured == 3
    assert sm.experts.block == pytest.approx(0.5 * 8 * 3 * 64 * 64 * 4)
    even = step_model(s, resolve_profile("h100-sxm5"), 1)  # each captured block alike: 1/3 of one MoE block
    assert even.experts.block == pytest.approx(8 * 3 * 64 * 64 * 4 / 3)
