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


