"""A training step on many devices: tensor, pipeline and data parallelism, ZeRO.

The step of one micro-batch is captured with a few transformer blocks (``layers_captured``)
and mapped per phase with the tensor-parallel sharding of :mod:`dnnmap.parallel.sharding`;
each phase's time is split by component (``pre``: embeddings, ``block``: one repeated
layer, averaged, ``post``: head and loss) and extrapolated to the model's layer count.
Then, per device:

- pipeline stages are balanced by predicted layer time (:func:`balance_stages`), embeddings on
  the first stage, head and loss on the last; the step is the 1F1B schedule over the stages,
  with the tensor-parallel all-reduces (two per layer in forward, two in backward) and the
  stage-to-stage sends on the critical path;
- data parallelism all-reduces the stage's gradients on the communication stream, hidden
  behind the last micro-batch's backward where it fits (what DDP / Megatron bucketing does);
  ZeRO-1/2 replace it by a reduce-scatter + all-gather (same traffic), ZeRO-3 adds two
  parameter all-gathers per micro-batch, overlapped with compute;
- memory: weights, gradients and optimizer state of the busiest stage, divided by ``tp``
  where sharded (gradients and state follow their parameters) and by ``dp`` as the ZeRO stage
  says; saved activations of ``min(pp, m)`` micro-batches in flight on the first stage.
- expert parallelism (MoE, ``ep`` of the ``dp`` replicas, Megatron-Core's layout): each device
  holds ``E / ep`` experts and runs the tokens the ``ep`` group routes to them (with balanced
  routing as many as its own tokens' routes: the expert compute per device is the captured
  one). Every MoE layer adds four all-to-alls per micro-batch on the critical path: dispatch
  and combine in forward, their transposes in backward, each of the micro-batch's
  ``tokens x top_k x hidden`` routed rows (``1 / tp`` of them per tensor-parallel rank) over
  the ``ep`` group (:func:`ep_all_to_all_s`); full recomputation re-runs the forward's two
  (six in all; selective recomputation, which in Megatron re-runs no token dispatch, adds none). The experts' weights, gradients and optimizer
  state per device are divided by ``ep``; their gradients are all-reduced over the
  expert-data-parallel group (``dp / ep`` replicas of each expert), the rest over ``dp``; ZeRO
  shards the experts' share over ``dp / ep``, the rest over ``dp``.

What bounds MFU (Llama-3-70B, 64 x H100, global batch 64 x 4096 tokens, full recompute, AMP): the
model FLOPs leave the recomputed forward out (at most 3/4 of the executed FLOPs); the
tensor-parallel all-reduces sit on the critical path (Megatron does not overlap them); a
pipeline of ``p`` stages idles ``(p - 1) / (m + p - 1)`` of the step, and 64 sequences leave
few micro-batches per replica; no sequence parallelism, so block inputs saved for backward
(fp32 under autocast) are whole on every tensor-parallel rank and bound the micro-batch.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import HardwareProfile
from dnnmap.ir import Graph, Role
from dnnmap.mapping.api import resolve_profile
from dnnmap.mapping.moe import is_expert_param, moe_blocks, moe_of, sparse_layer_ids
from dnnmap.parallel import (
    ParallelPlan,
    balance_stages,
    collective_s,
    level_for,
    one_f_one_b,
    shard_works,
)
from dnnmap.parallel.inference import ALL_TO_ALLS_PER_MOE_LAYER
from dnnmap.parallel.sharding import (
    BACKWARD_ALL_REDUCES_PER_LAYER,
    FORWARD_ALL_REDUCES_PER_LAYER,
    is_tp_param,
)
from dnnmap.pipeline import Scenario
from dnnmap.pipeline import capture as capture_scenario
from dnnmap.training.memory import StepMemory, step_memory
from dnnmap.training.phases import BACKWARD, FORWARD, OPTIMIZER, phase_graph
from dnnmap.training.step import (
    TrainEstimate,
    device_for,
    map_graph,
    model_flops,
    optimizer_precision,
)

_BLOCK = re.compile(r"^(.*?\.\d+)(\.|$)")
# dispatch + combine in forward (as in inference), their transposes in backward
ALL_TO_ALLS_PER_MOE_LAYER_STEP = 2 * ALL_TO_ALLS_PER_MOE_LAYER
DDP_BUCKET_BYTES = 25 * 2**20  # torch DDP's default bucket_cap_mb


@dataclass(frozen=True)
class ModelInfo:
    layers: int
    heads: int | None
    kv_heads: int | None
    hidden: int
    moe: dict | None = None  # {"experts": E, "top_k": k} of a mixture-of-experts model
    moe_layers: int = 0  # layers with experts (from the config: some may be dense)
    first_moe_layer: int | None = None  # index of the first layer with experts
    first_dense_layer: int | None = None  # index of the first layer without (MoE models)

    @property
    def moe_share(self) -> float:
        """The share of the layers that have experts."""
        return self.moe_layers / self.layers if self.layers else 0.0

    def layers_to_capture(self, wanted: int) -> int:
        """At least ``wanted`` blocks, and, for a model with both kinds of layer, enough that
        one captured block has experts and one has none (DeepSeek's first_k_dense_replace /
        Qwen-MoE's mlp_only_layers make some layers dense)."""
        need = 1 + max((i for i in (self.first_moe_layer, self.first_dense_layer) if i is not None), default=0)
        return min(self.layers, max(wanted, need))


def model_info(name: str) -> ModelInfo:
    from dnnmap.capture.sources import resolve

    cfg = resolve(name).config
    if cfg is None:
        raise DnnmapError(f"{name}: multi-device plans need a transformer with a Hugging Face config (hf:...)")
    get = lambda *ks: next((getattr(cfg, k) for k in ks if getattr(cfg, k, None)), None)  # noqa: E731
    layers, moe = int(get("num_hidden_layers", "n_layer")), moe_of(cfg)
    sparse = sparse_layer_ids(cfg, layers) if moe else []
    dense = [i for i in range(layers) if i not in set(sparse)] if moe else []
    return ModelInfo(layers, get("num_attention_heads", "n_head"), get("num_key_value_heads"),
                     int(get("hidden_size", "n_embd")), moe, len(sparse), sparse[0] if sparse else None,
                     dense[0] if dense else None)


def component(path: str, first_block: dict[str, bool]) -> str:
    m = _BLOCK.match(path)
    if m:
        return "block:" + m.group(1)
    return "pre" if first_block.get(path, False) else "post"


def _components(g: Graph) -> dict[str, bool]:
    """module path -> whether it first runs before the first block (an embedding)."""
    seen_block, out = False, {}
    for op in g.ops:
        if _BLOCK.match(op.module_path):
            seen_block = True
        out.setdefault(op.module_path, not seen_block)
    return out


@dataclass(frozen=True)
class Split:
    """Seconds (or bytes) of one phase: before the blocks, per block (average), after."""

    pre: float = 0.0
    block: float = 0.0
    post: float = 0.0

    def total(self, blocks: int) -> float:
        return self.pre + blocks * self.block + self.post


def block_weights(g: Graph, first: dict[str, bool], moe_share: float | None = None) -> dict[str, float]:
    """Each captured block's weight in the model's average layer: equal, or, when the capture
    holds dense blocks and blocks with experts, ``moe_share`` (the model's share of layers with
    experts) spread over the latter and the rest over the former."""
    blocks = sorted({c for c in (component(op.module_path, first) for op in g.ops) if c.startswith("block:")})
    moe = {"block:" + b for b in moe_blocks(g)} & set(blocks)
    dense = [b for b in blocks if b not in moe]
    if moe_share is None or not moe or not dense:
        return {b: 1.0 / len(blocks) for b in blocks}
    return {**{b: moe_share / len(moe) for b in moe}, **{b: (1.0 - moe_share) / len(dense) for b in dense}}


def _average(acc: dict[str, float], weights: dict[str, float]) -> float:
    return sum(acc.get(b, 0.0) * w for b, w in weights.items())


def _split_times(g: Graph, part: Any, est: Any, first: dict[str, bool], weights: dict[str, float]) -> Split:
    acc: dict[str, float] = {}
    for sg, se in zip(part.subgraphs, est.subgraphs, strict=True):
        c = component(g.op(sg.op_ids[0]).module_path, first) if sg.op_ids else "post"
        acc[c] = acc.get(c, 0.0) + max(se.latency_s, se.host_s)
    total = sum(acc.values()) or 1.0
    scale = est.latency_s / total
    return Split(acc.get("pre", 0.0) * scale, _average(acc, weights) * scale, acc.get("post", 0.0) * scale)


def _split_bytes(items: list[tuple[str, int]], first: dict[str, bool], weights: dict[str, float]) -> Split:
    acc: dict[str, float] = {}
    for path, b in items:
        c = component(path, first)
        acc[c] = acc.get(c, 0.0) + b
    return Split(acc.get("pre", 0.0), _average(acc, weights), acc.get("post", 0.0))


@functools.lru_cache(maxsize=16)
def _capture(s: Scenario) -> Graph:
    return capture_scenario(s)


@dataclass(frozen=True)
class StepModel:
    """One micro-batch's step, per component, on one of ``tp`` devices."""

    fwd: Split
    bwd: Split
    opt: Split
    weights: Split  # bytes on one tp device
    grads: Split
    state: Split
    saved: Split
    working: int  # transient bytes beyond weights, state, gradients and saved activations
    flops_per_block: int
    flops_other: int
    blocks_captured: int
    experts: Split = Split()  # bytes of the experts' weights on one tp device (a share of ``weights``)
    moe_blocks: int = 0  # captured blocks that run experts


def step_model(s: Scenario, profile: HardwareProfile, tp: int, moe_share: float | None = None) -> StepModel:
    """``moe_share``: the model's share of layers with experts, weighting the captured MoE blocks
    against the captured dense ones (None: every captured block alike)."""
    g = _capture(s)
    first = _components(g)
    bw = block_weights(g, first, moe_share)
    times = {}
    for name, phases, prec in (("fwd", FORWARD, None), ("bwd", BACKWARD, None), ("opt", OPTIMIZER, optimizer_precision(s))):
        sub = phase_graph(g, phases)
        if not sub.ops:
            times[name] = Split()
            continue
        part, est = map_graph(sub, s, device_for(s, profile, prec), lambda p, w: shard_works(p, w, tp))
        times[name] = _split_times(sub, part, est, first, bw)
    mem = step_memory(g)
    params = list(g.iter_tensors(Role.WEIGHT))
    w_items = [(t.name.rpartition(".")[0], t.nbytes // (tp if is_tp_param(t.name) else 1)) for t in params]
    weights = _split_bytes(w_items, first, bw)
    experts = _split_bytes([(p, b) for p, b in w_items if is_expert_param(p)], first, bw)
    # gradients and optimizer state follow the parameters: this device's share of them is its
    # (tensor-parallel) share of the whole model's weight bytes, not of its own
    wsum = sum(t.nbytes for t in params) or 1
    ratio = lambda x: Split(weights.pre * x / wsum, weights.block * x / wsum, weights.post * x / wsum)  # noqa: E731
    saved = _split_bytes(_saved_items(g, tp), first, bw)
    mf = model_flops(g)
    per_block = _block_flops(g, first)
    return StepModel(times["fwd"], times["bwd"], times["opt"], weights, ratio(mem.gradients), ratio(mem.optimizer_state),
                     saved, max(mem.peak - mem.persistent - mem.saved_activations, 0) // tp,
                     round(_average(per_block, bw)), mf - sum(per_block.values()), len(bw), experts,
                     len(moe_blocks(g)))


def ep_all_to_all_s(prof: HardwareProfile, plan: ParallelPlan, info: ModelInfo, mb: int, seq_len: int | None,
                    elem_bytes: float) -> float:
    """One expert-parallel all-to-all of a micro-batch's routed rows (``mb x seq x top_k x hidden``
    elements, ``1 / tp`` of them per tensor-parallel rank) over the ``ep`` group, which spans
    ``ep x tp`` consecutive devices; 0 without expert parallelism."""
    if plan.ep <= 1 or not info.moe:
        return 0.0
    nbytes = mb * (seq_len or 1) * info.moe["top_k"] * info.hidden * elem_bytes / plan.tp
    return collective_s("all_to_all", nbytes, plan.ep, level_for(prof, plan.ep * plan.tp))


def all_to_alls_per_moe_layer(recompute: str) -> int:
    """Expert-parallel all-to-alls per MoE layer per micro-batch: dispatch + combine in forward,
    their transposes in backward, and under full recomputation the forward's two again (the
    re-run layer dispatches its tokens anew, as Megatron's full recompute does)."""
    return ALL_TO_ALLS_PER_MOE_LAYER_STEP + (ALL_TO_ALLS_PER_MOE_LAYER if recompute == "full" else 0)


def check_train_plan(plan: ParallelPlan, info: ModelInfo, model: str, batch: int) -> None:
    """``plan`` against the model: a :class:`DnnmapError` names the first constraint it breaks."""
    if plan.ep > 1 and not info.moe:
        raise DnnmapError(f"ep={plan.ep}: {model} has no experts (expert parallelism needs a mixture-of-experts model)")
    plan.check(batch=batch, heads=info.heads, layers=info.layers, kv_heads=info.kv_heads,
               experts=info.moe["experts"] if info.moe else None)


def _saved_items(g: Graph, tp: int) -> list[tuple[str, int]]:
    from dnnmap.parallel.sharding import is_tp_sharded
    from dnnmap.training.phases import phase_of

    phase = phase_of(g)
    out, seen = [], set()
    for op in g.ops:
        if phase.get(op.id) != "backward":
            continue
        for tid in op.inputs:
            t = g.tensors[tid]
            while t.alias_of is not None and t.alias_of in g.tensors:
                t = g.tensors[t.alias_of]
            if t.id in seen or t.producer is None or phase.get(t.producer) not in ("forward", "loss"):
                continue
            seen.add(t.id)
            prod = g.op(t.producer)
            out.append((prod.module_path, t.nbytes // (tp if is_tp_sharded(prod) else 1)))
    return out


def _block_flops(g: Graph, first: dict[str, bool]) -> dict[str, float]:
    """Model tensor FLOPs (forward + backward, recomputation excluded) of each captured block."""
    from dnnmap.costs import count_graph
    from dnnmap.training.phases import phase_ops

    counted = count_graph(g)
    redo = set(g.meta.get("recomputed_ops", ()))
    out: dict[str, float] = {}
    for op in phase_ops(g, (*FORWARD, *BACKWARD)):
        c = component(op.module_path, first)
        if op.id not in redo and c.startswith("block:"):
            out[c] = out.get(c, 0.0) + counted.costs[op.id].tensor_flops
    return out


def parallel_step(s: Scenario, profile: HardwareProfile | str, plan: ParallelPlan,
                  layers_captured: int = 2) -> TrainEstimate:
    """Predict one training step of ``s`` (global batch ``s.batch``) under ``plan``."""
    prof = resolve_profile(profile)
    info = model_info(str(s.model))
    check_train_plan(plan, info, str(s.model), s.batch)
    mb = s.batch // (plan.dp * plan.microbatches)
    sm = step_model(replace(s, batch=mb, layers=info.layers_to_capture(layers_captured),
                            optimizer=s.optimizer or "adamw"), prof, plan.tp, info.moe_share)
    return combine(s, prof, plan, info, sm, mb)


def _stage_blocks(sm: StepModel, info: ModelInfo, plan: ParallelPlan, comm_layer_s: float) -> list[tuple[int, int]]:
    per_layer = sm.fwd.block + sm.bwd.block + comm_layer_s
    costs = [per_layer] * info.layers
    costs[0] += sm.fwd.pre + sm.bwd.pre
    costs[-1] += sm.fwd.post + sm.bwd.post
    return balance_stages(costs, plan.pp)


def combine(s: Scenario, prof: HardwareProfile, plan: ParallelPlan, info: ModelInfo, sm: StepModel,
            mb: int) -> TrainEstimate:
    act_bytes = mb * (s.seq_len or 1) * info.hidden * s.precision.bytes_per_element
    tp_ar = collective_s("all_reduce", act_bytes, plan.tp, level_for(prof, plan.tp_span)) if plan.tp > 1 else 0.0
    tp_layer = (FORWARD_ALL_REDUCES_PER_LAYER + BACKWARD_ALL_REDUCES_PER_LAYER) * tp_ar
    a2a = ep_all_to_all_s(prof, plan, info, mb, s.seq_len, s.precision.bytes_per_element)
    if a2a and not sm.moe_blocks:
        raise DnnmapError(f"ep={plan.ep}: the {sm.blocks_captured} captured block(s) of {s.model} have no experts "
                          f"({info.moe_layers} of its {info.layers} layers do: the config makes the first ones dense, "
                          "e.g. first_k_dense_replace / mlp_only_layers / decoder_sparse_step), so their expert "
                          "weights and time cannot be split over ep")
    # the layers with experts, by the config (the captured blocks may be the dense first ones)
    moe_share = info.moe_share if a2a else 0.0
    per_moe_layer = all_to_alls_per_moe_layer(s.recompute)
    ep_layer = per_moe_layer * a2a * moe_share
    stages = _stage_blocks(sm, info, plan, tp_layer + ep_layer)
    p2p = collective_s("send_recv", act_bytes / plan.tp, 2, level_for(prof, plan.devices)) if plan.pp > 1 else 0.0
    stage_s, parts = [], []
    for i, (a, b) in enumerate(stages):
        n = b - a
        f = n * sm.fwd.block + (sm.fwd.pre if i == 0 else 0) + (sm.fwd.post if i == len(stages) - 1 else 0)
        bw = n * sm.bwd.block + (sm.bwd.pre if i == 0 else 0) + (sm.bwd.post if i == len(stages) - 1 else 0)
        c = n * (tp_layer + ep_layer) + (tp_ar if i == 0 else 0) + (2 * p2p if plan.pp > 1 else 0)
        stage_s.append(f + bw + c)
        parts.append((f, bw, c, n, i))
    k = max(range(len(stage_s)), key=stage_s.__getitem__)
    f, bw, c, n, _ = parts[k]
    m = plan.microbatches
    pipe = one_f_one_b(stage_s, m)
    bubble = pipe - m * stage_s[k]
    first, last = k == 0, k == len(stages) - 1
    sel = lambda sp: n * sp.block + (sp.pre if first else 0) + (sp.post if last else 0)  # noqa: E731
    # the experts' share of this stage's weights (and so of its gradients, state and update), and
    # what is left of it per device with expert parallelism: 1 / ep
    fe = sel(sm.experts) / sel(sm.weights) if sel(sm.weights) else 0.0
    keep = 1.0 - fe + fe / plan.ep
    opt_s = sel(sm.opt) / plan.dp if plan.zero >= 1 else sel(sm.opt) * keep  # ZeRO: 1/dp of dense and experts alike
    grad_bytes = sel(sm.grads) * keep
    dense_g, expert_g = sel(sm.grads) * (1.0 - fe), sel(sm.grads) * fe / plan.ep
    dp_lvl = level_for(prof, plan.dp_span) if plan.dp > 1 else None
    edp = plan.dp // plan.ep  # replicas of each expert: the expert-data-parallel group
    if plan.ep == 1:  # one group: every gradient in one all-reduce
        dense_g, expert_g = dense_g + expert_g, 0.0
    dp_comm = collective_s("all_reduce", dense_g, plan.dp, dp_lvl) if dp_lvl else 0.0
    if dp_lvl and edp > 1 and expert_g:
        dp_comm += collective_s("all_reduce", expert_g, edp, dp_lvl)
    exposed = max(dp_comm - bw, 0.0) + (dp_comm * min(DDP_BUCKET_BYTES / grad_bytes, 1.0) if grad_bytes and dp_comm else 0)
    if plan.zero == 3 and dp_lvl:
        ag = 2 * m * collective_s("all_gather", sel(sm.weights) * keep * s.precision.bytes_per_element / 4,
                                  plan.dp, dp_lvl)
        exposed += max(ag - m * (f + bw), 0.0)
    mem = _memory(sm, plan, sel(sm.weights), sel(sm.grads), sel(sm.state), sel(sm.saved), fe)
    flops = (sm.flops_per_block * info.layers + sm.flops_other) * plan.dp * plan.microbatches
    ep_comm = m * n * ep_layer
    n_a2a = round(m * n * moe_share) * per_moe_layer if a2a else 0
    notes = []
    if a2a:
        notes.append(f"expert parallelism ep{plan.ep}: {n_a2a} all-to-alls per step on this device "
                     f"({per_moe_layer} per MoE layer per micro-batch: dispatch + combine, their transposes in "
                     f"backward{', the recomputed forward' if per_moe_layer > ALL_TO_ALLS_PER_MOE_LAYER_STEP else ''}) "
                     f"of {a2a * 1e6:.2f} us, {ep_comm * 1e3:.3f} ms; "
                     f"{plan.experts_per_device(info.moe['experts'])} of {info.moe['experts']} experts per device, "
                     + (f"their gradients all-reduced over the {edp} replicas of each" if edp > 1 else
                        "each held once: their gradients need no all-reduce"))
    if not mem.fits(prof.dram.capacity_bytes):
        notes.append(f"does not fit: {mem.peak / 1e9:.1f} GB per device > {prof.dram.capacity_bytes / 1e9:.1f} GB")
    return TrainEstimate(
        model=str(s.model), device=prof.name, batch=s.batch, seq_len=s.seq_len, precision=s.precision.value,
        optimizer=s.optimizer or "adamw", recompute=s.recompute, forward_s=m * f, backward_s=m * bw,
        optimizer_s=opt_s, communication_s=m * c + exposed, model_flops=flops,
        peak_flops=device_for(s, prof).tensor_peak, devices=plan.devices, memory=mem,
        capacity_bytes=prof.dram.capacity_bytes, plan=plan, bubble_s=bubble,
        breakdown={"tp_comm": m * c - ep_comm, "ep_comm": ep_comm, "ep_all_to_all": a2a, "dp_comm_total": dp_comm,
                   "dp_comm_exposed": exposed},
        all_to_alls=n_a2a,
        notes=tuple(notes),
    )


def _memory(sm: StepModel, plan: ParallelPlan, w: float, g: float, st: float, saved_mb: float,
            experts: float = 0.0) -> StepMemory:
    """Per device: ``w`` / ``g`` / ``st`` bytes of one replica's stage (``experts`` of each the
    experts' share): the experts' divided by ``ep``; ZeRO shards the rest over ``dp``, the
    experts' over the ``dp / ep`` replicas of each expert."""
    dp, ep = plan.dp, plan.ep

    def per_device(x: float, stage: int) -> float:
        dense, exp = x * (1.0 - experts), x * experts / ep
        return dense / (dp if plan.zero >= stage else 1) + exp / (dp // ep if plan.zero >= stage else 1)

    w, g, st = per_device(w, 3), per_device(g, 2), per_device(st, 1)
    act = saved_mb * min(plan.pp, plan.microbatches)
    peak = w + g + st + act + sm.working
    return StepMemory(round(w), round(g), round(st), round(act), round(peak))
