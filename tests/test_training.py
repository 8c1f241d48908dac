"""Training steps and parallel plans, checked by hand arithmetic and against FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dnnmap.capture.train_path import capture_train_step
from dnnmap.costs import count_graph
from dnnmap.errors import DnnmapError
from dnnmap.hardware.interconnect import LinkLevel
from dnnmap.ir import OpClass
from dnnmap.parallel import ParallelPlan, balance_stages, collective_s, one_f_one_b
from dnnmap.parallel.sharding import BACKWARD_ALL_REDUCES_PER_LAYER, FORWARD_ALL_REDUCES_PER_LAYER
from dnnmap.training.memory import step_memory
from dnnmap.training.multi import Split, StepModel, _memory
from dnnmap.training.phases import phase_ops

LINK = LinkLevel(name="node", technology="test", devices=8, bandwidth_gbps=100, latency_us=5, topology="ring")


def test_ring_all_reduce_by_hand() -> None:
    n, nbytes = 8, 256 * 2**20
    expected = 2 * (n - 1) / n * nbytes / 100e9 + 2 * (n - 1) * 5e-6
    assert collective_s("all_reduce", nbytes, n, LINK, "ring") == pytest.approx(expected, rel=1e-12)
    # all-gather / reduce-scatter: half the passes
    assert collective_s("all_gather", nbytes, n, LINK) == pytest.approx((n - 1) / n * nbytes / 100e9 + (n - 1) * 5e-6)
    assert collective_s("all_reduce", nbytes, 1, LINK) == 0.0


def test_tp_split_layer_needs_two_all_reduces_in_forward() -> None:
    # Megatron-LM: attention and MLP blocks each need one all-reduce in forward (after the
    # row-parallel linear) and one in backward (before the column-parallel one)
    assert FORWARD_ALL_REDUCES_PER_LAYER == 2
    assert BACKWARD_ALL_REDUCES_PER_LAYER == 2


def test_one_f_one_b_bubble() -> None:
    p, m, t = 4, 12, 0.5
    step = one_f_one_b([t] * p, m)
    assert step == pytest.approx((m + p - 1) * t)
    assert (step - m * t) / step == pytest.approx((p - 1) / (m + p - 1))
    assert ParallelPlan(pp=p, microbatches=m).bubble_fraction == pytest.approx((p - 1) / (m + p - 1))
    assert balance_stages([1, 1, 1, 1, 4], 2) == [(0, 4), (4, 5)]


def test_adam_state_bytes() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        x = torch.empty(8, 16)
    g = capture_train_step(m, inputs=(x,), optimizer="adam")
    params = 16 * 32 + 32 + 32 * 4 + 4
    mem = step_memory(g)
    # exp_avg + exp_avg_sq in fp32 per parameter, plus one fp32 step counter per tensor
    assert mem.optimizer_state == 2 * 4 * params + 4 * 4
    assert mem.weights == 4 * params and mem.gradients == 4 * params


def test_zero3_memory_per_device() -> None:
    sm = StepModel(Split(), Split(), Split(), Split(), Split(), Split(), Split(), working=0, flops_per_block=0,
                   flops_other=0, blocks_captured=1)
    w, g, st, act = 8e9, 8e9, 16e9, 2e9
    mem = _memory(sm, ParallelPlan(dp=8, zero=3), w, g, st, act)
    assert (mem.weights, mem.gradients, mem.optimizer_state) == (w / 8, g / 8, st / 8)
    mem1 = _memory(sm, ParallelPlan(dp=8, zero=1), w, g, st, act)
    assert (mem1.weights, mem1.gradients, mem1.optimizer_state) == (w, g, st / 8)


def test_impossible_plans_name_the_constraint() -> None:
    with pytest.raises(DnnmapError, match="does not divide the 12 attention heads"):
        ParallelPlan(tp=5).check(heads=12)
    with pytest.raises(DnnmapError, match="larger than the 12 layers"):
        ParallelPlan(pp=16).check(layers=12)
    with pytest.raises(DnnmapError, match="not divisible by dp x microbatches"):
        ParallelPlan(dp=4, microbatches=3).check(batch=8)


def _gemm_flops(g, phases) -> int:  # noqa: ANN001
    counted = count_graph(g)
    return sum(counted.costs[op.id].tensor_flops for op in phase_ops(g, phases)
               if op.op_class in (OpClass.MATMUL, OpClass.CONV))


def _flop_counter(model: str, **kw) -> tuple[int, int]:  # noqa: ANN003
    """FlopCounterMode's (forward, forward + backward) of the same fake training step."""
    from dnnmap.capture.train_path import _build, _loss, _target

    out = []
    for backward in (False, True):
        _, module, example, vocab = _build(model, kw.get("batch", 1), kw.get("seq_len"), None, None, kw.get("layers"))
        module.train()
        fake = next(iter(module.parameters())).fake_mode
        with fake, FlopCounterMode(display=False) as fc:
            loss = _loss(module(*example), _target(module, example, vocab))
            if backward:
                loss.backward()
        out.append(fc.get_total_flops())
    return out[0], out[1]


@pytest.mark.parametrize(("model", "kw"), [("resnet18", {"batch": 2}),
                                           ("hf:gpt2", {"batch": 2, "seq_len": 32, "layers": 2})])
def test_backward_flops_equal_flop_counter(model: str, kw: dict) -> None:
    g = capture_train_step(model, optimizer="none", attn_implementation="eager", **kw)
    fwd, total = _flop_counter(model, **kw)
    ours_bwd = _gemm_flops(g, ("backward",))
    assert ours_bwd == pytest.approx(total - fwd, rel=1e-3)
    assert _gemm_flops(g, ("forward", "loss")) == pytest.approx(fwd, rel=1e-3)


def test_recompute_leaves_model_flops_unchanged() -> None:
    # checkpoint's early stop must not make backward ops look recomputed: MFU counts the
    # model's forward + backward FLOPs whatever is recomputed (and only the re-run forward is)
    from dnnmap.training.step import model_flops

    flops, redo = {}, {}
    for rc in ("none", "full"):
        g = capture_train_step("hf:gpt2", batch=1, seq_len=16, layers=2, optimizer="none", recompute=rc,
                               attn_implementation="eager")
        flops[rc], redo[rc] = model_flops(g), g.meta["recomputed_ops"]
        fwd = len(phase_ops(g, ("forward",)))
    assert flops["full"] == flops["none"]
    assert 0 < len(redo["full"]) <= fwd  # at most the forward again, never the backward


def test_tp_splits_gradients_and_optimizer_state_per_device() -> None:
    from dnnmap.mapping.api import resolve_profile
    from dnnmap.pipeline import Scenario
    from dnnmap.training.multi import step_model

    s = Scenario("hf:gpt2", batch=1, seq_len=16, layers=2, optimizer="adam", attn_implementation="eager")
    prof = resolve_profile("h100-sxm5")
    one, four = step_model(s, prof, 1), step_model(s, prof, 4)
    tot = lambda sp: sp.pre + 2 * sp.block + sp.post  # noqa: E731
    # fp32, no AMP: a gradient per parameter, Adam's two moments: on each of 4 devices, of its share
    assert tot(four.grads) == pytest.approx(tot(four.weights), rel=1e-6)
    assert tot(four.state) == pytest.approx(2 * tot(four.weights), rel=1e-2)  # + the step counters
    assert tot(four.weights) < tot(one.weights) / 3.5  # all but norms and positions split 4 ways
