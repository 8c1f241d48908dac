"""Inference on many devices: tensor, pipeline, data and expert parallelism for ``analyze``,
``generate`` and ``compare``.

The captured forward (a prefill or a decode step) of one micro-batch is mapped on one device
with the Megatron tensor-parallel sharding of :func:`dnnmap.parallel.sharding.shard_works` (the
training hook), then:

- tensor parallelism adds the forward all-reduces of the ``[batch, tokens, hidden]`` activation
  on the interconnect: two per transformer block (attention, MLP) and one for the
  vocabulary-parallel embedding, as the training step does;
- expert parallelism (MoE, ``ep`` of the ``dp`` replicas): each device holds ``E / ep`` experts
  and serves the routed tokens of ``ep`` devices; every MoE block adds an all-to-all dispatch
  and an all-to-all combine of its ``tokens x top_k x hidden`` routed rows (per tensor-parallel
  rank: ``1 / tp`` of them, Megatron-Core's sequence-split dispatch) over the ``ep`` group;
- pipeline parallelism splits the blocks into ``pp`` stages balanced by predicted time
  (:func:`dnnmap.parallel.balance_stages`; embeddings on the first stage, the head on the
  last). With ``m`` micro-batches of ``batch / m``:

  * one micro-batch crosses every stage: ``t1 = sum(stage) + (pp - 1) send``;
  * a stream leaves the pipeline at one micro-batch per slowest stage, the *period*
    ``max(stage) + send``: **throughput** = micro-batch / period, per replica;
  * one request's **latency** (a forward, a prefill): the pipeline fills and drains,
    ``t1 + (m - 1) period``; a decode step (each micro-batch's next token needs its last):
    ``max(m period, t1)``;
  * decode **throughput**: micro-batch ``i``'s next token cannot enter stage 1 before its last
    token left the last stage, so in steady state a micro-batch comes back every
    ``L = max(m period, t1)`` and each of the ``m`` has produced ``micro-batch`` tokens:
    ``m x micro-batch / max(m period, t1)`` = ``batch / L`` per replica. Only when
    ``m period >= t1`` (enough micro-batches in flight to keep every stage busy) is that the
    stream rate ``micro-batch / period``; with ``m period < t1`` the stages idle waiting;
  * the bubble: the latency less ``m`` x the slowest stage (when the busiest device waits);
- data parallelism runs ``dp`` replicas of the request batch: throughput x ``dp``, latency unchanged.

Energy of a request: every rank's kernels and every device's idle power over the latency
(:func:`request_energy_j`); communication energy is not modelled.

Memory per device: weights / (tp x pp), expert weights / (ep x tp x pp), peak activations of a
micro-batch / tp, KV cache / (tp x pp) (a KV head is not split: with fewer KV heads than ``tp``
they are replicated), workspace whole.

>>> InferenceParallel(ParallelPlan(tp=2, pp=2), None, 64, 4, 2, 2).describe()
'tp2 x pp2 x dp1 = 4 devices'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import HardwareProfile
from dnnmap.mapping.moe import moe_blocks, moe_of
from dnnmap.memory import MemoryFit
from dnnmap.parallel.collectives import collective_s, level_for
from dnnmap.parallel.plan import ParallelPlan
from dnnmap.parallel.schedule import balance_stages
from dnnmap.parallel.sharding import FORWARD_ALL_REDUCES_PER_LAYER, shard_works

_BLOCK = re.compile(r"^(.*?\.\d+)(\.|$)")
EMBEDDING_ALL_REDUCES = 1  # vocabulary-parallel embedding (Megatron), as in the training step
ALL_TO_ALLS_PER_MOE_LAYER = 2  # dispatch the routed tokens to their experts, combine the results back


@dataclass(frozen=True)
class InferenceParallel:
    """A plan checked against a model (layers, heads, hidden, experts) and a profile with an interconnect."""

    plan: ParallelPlan
    profile: HardwareProfile | None
    hidden: int
    heads: int | None
    kv_heads: int | None
    layers: int
    moe: dict | None = None  # {"experts": E, "top_k": k} of a mixture-of-experts model

    def describe(self) -> str:
        p = self.plan
        ep = f" x ep{p.ep}" if p.ep > 1 else ""
        mb = f", {p.microbatches} micro-batches" if p.microbatches > 1 else ""
        return f"tp{p.tp} x pp{p.pp} x dp{p.dp}{ep} = {p.devices} devices{mb}"

    def micro(self, batch: int) -> int:
        """The micro-batch a request batch is streamed in."""
        return batch // self.plan.microbatches

    def all_reduce_s(self, nbytes: float) -> float:
        """One forward tensor-parallel all-reduce of ``nbytes`` per device."""
        if self.plan.tp <= 1 or self.profile is None:
            return 0.0
        return collective_s("all_reduce", nbytes, self.plan.tp, level_for(self.profile, self.plan.tp_span))

    def all_to_all_s(self, nbytes: float) -> float:
        """One expert-parallel all-to-all of ``nbytes`` per device over the ``ep`` group (every
        ``tp``-th device: ``ep x tp`` consecutive ones)."""
        if self.plan.ep <= 1 or self.profile is None:
            return 0.0
        return collective_s("all_to_all", nbytes, self.plan.ep, level_for(self.profile, self.plan.ep * self.plan.tp))

    def send_s(self, nbytes: float) -> float:
        """One stage-to-stage activation send (the tp shards send in parallel)."""
        if self.plan.pp <= 1 or self.profile is None:
            return 0.0
        return collective_s("send_recv", nbytes / self.plan.tp, 2, level_for(self.profile, self.plan.devices))

    def memory(self, fit: MemoryFit, expert_bytes: int = 0) -> MemoryFit:
        """``fit`` of one replica (``expert_bytes`` of its weights in experts) on one device."""
        tp, pp, ep = self.plan.tp, self.plan.pp, self.plan.ep
        kv_split = min(tp, self.kv_heads) if self.kv_heads else tp
        weights = fit.weights - expert_bytes + -(-expert_bytes // ep)
        return replace(fit, weights=-(-weights // (tp * pp)), activations=-(-fit.activations // tp),
                       kv_cache=-(-fit.kv_cache // (kv_split * pp)))

    def run(self, part: Any, works: tuple, map_fn: Any, batch: int, tokens: int, elem_bytes: float, *,
            decode: bool = False) -> Any:
        """Map one micro-batch's ``works`` (``batch`` rows) sharded ``tp`` ways with
        ``map_fn(works) -> Estimate``, split it into pipeline stages and stream the request's
        micro-batches through them (``decode``: a decode step, see the module docstring). The
        Estimate returned is the request's (``batch x microbatches``) with ``meta["parallel"]``."""
        p = self.plan
        est = map_fn(shard(part, works, p.tp))
        act = batch * tokens * self.hidden * elem_bytes
        ar = self.all_reduce_s(act)
        a2a = self.all_to_all_s(act * self.moe["top_k"] / p.tp) if self.moe else 0.0
        moe = moe_blocks(part.graph) if a2a else set()
        pre, blocks, post = _split(part, est)
        if not blocks:
            blocks = [("", est.latency_s - pre - post)]
        costs = [t + FORWARD_ALL_REDUCES_PER_LAYER * ar + (ALL_TO_ALLS_PER_MOE_LAYER * a2a if name in moe else 0.0)
                 for name, t in blocks]
        costs[0] += pre + EMBEDDING_ALL_REDUCES * ar
        costs[-1] += post
        stages = [sum(costs[a:b]) for a, b in balance_stages(costs, p.pp)] if p.pp > 1 else [sum(costs)]
        send = self.send_s(act)
        one = sum(stages) + (len(stages) - 1) * send  # one micro-batch through every stage
        period = max(stages) + (send if len(stages) > 1 else 0.0)  # a stream: one micro-batch per period
        m = p.microbatches
        latency = max(m * period, one) if decode else one + (m - 1) * period
        n, n_moe = len(blocks), len(moe)
        tp_comm = (FORWARD_ALL_REDUCES_PER_LAYER * n + EMBEDDING_ALL_REDUCES) * ar if p.tp > 1 else 0.0
        ep_comm = ALL_TO_ALLS_PER_MOE_LAYER * n_moe * a2a
        info = {"plan": str(p), "devices": p.devices, "tp": p.tp, "pp": p.pp, "dp": p.dp, "ep": p.ep,
                "microbatches": m, "microbatch": batch, "compute_s": est.latency_s, "tp_all_reduce_s": ar,
                "tp_comm_s": tp_comm, "all_reduces": (FORWARD_ALL_REDUCES_PER_LAYER * n + EMBEDDING_ALL_REDUCES)
                if p.tp > 1 else 0, "ep_all_to_all_s": a2a, "ep_comm_s": ep_comm,
                "all_to_alls": ALL_TO_ALLS_PER_MOE_LAYER * n_moe if a2a else 0, "stage_s": stages, "send_s": send,
                "communication_s": tp_comm + ep_comm + (len(stages) - 1) * send, "period_s": period,
                "latency_s": latency, "bubble_s": max(latency - m * max(stages), 0.0),
                "throughput_per_s": (m * batch / latency if decode else batch / period) * p.dp if period > 0 else 0.0}
        return replace(est, latency_s=latency, batch=batch * m, energy_j=request_energy_j(est, p, m, latency),
                       meta={**dict(est.meta), "parallel": info})


def request_energy_j(est: Any, plan: ParallelPlan, microbatches: int, latency_s: float) -> float:
    """Energy of one request on its replica's ``tp x pp`` devices: each of the ``tp`` ranks does
    ``est``'s kernel work (one rank's shard of every layer; the ``pp`` stages split the layers,
    not the work) for each micro-batch, and every device draws its idle power for the whole
    latency (bubbles included). Communication energy is not modelled.

    >>> from types import SimpleNamespace as N
    >>> e = N(subgraphs=(N(dynamic_energy_j=2.0),), energy_j=2.0 + 1.0, latency_s=0.5)  # idle 2 W
    >>> request_energy_j(e, ParallelPlan(tp=2, pp=2), 3, 4.0)   # 2 x 3 x 2 J + 4 x 2 W x 4 s
    44.0
    """
    dynamic = sum(sg.dynamic_energy_j for sg in est.subgraphs)
    idle_w = (est.energy_j - dynamic) / est.latency_s if est.latency_s > 0 else 0.0
    return plan.tp * microbatches * dynamic + plan.tp * plan.pp * idle_w * latency_s


def shard(part: Any, works: tuple, tp: int) -> tuple:
    """:func:`shard_works`, also for a fused kernel whose GEMM is tensor-parallel but whose epilogue
    (a residual add, a norm) lies outside the split blocks: compilers fuse the row-parallel
    linear with what follows, and the GEMM (its FLOPs and weights) dominates such a kernel."""
    from types import SimpleNamespace

    from dnnmap.ir import OpClass
    from dnnmap.parallel.sharding import is_tp_sharded

    g = part.graph
    subgraphs = []
    for sg in part.subgraphs:
        ops = [g.op(o) for o in sg.op_ids]
        mm = [op.id for op in ops if op.op_class is OpClass.MATMUL and is_tp_sharded(op)]
        subgraphs.append(SimpleNamespace(op_ids=mm) if mm else sg)
    return shard_works(SimpleNamespace(graph=g, subgraphs=subgraphs), works, tp)


def _split(part: Any, est: Any) -> tuple[float, list[tuple[str, float]], float]:
    """Seconds before the first block, per block (name, seconds; in order), after the last,
    scaled to the latency."""
    g = part.graph
    pre = post = 0.0
    blocks: dict[str, float] = {}
    for sg, se in zip(part.subgraphs, est.subgraphs, strict=True):
        t = max(se.latency_s, se.host_s)
        m = _BLOCK.match(g.op(sg.op_ids[0]).module_path) if sg.op_ids else None
        if m:
            blocks[m.group(1)] = blocks.get(m.group(1), 0.0) + t
        elif blocks:
            post += t
        else:
            pre += t
    total = pre + post + sum(blocks.values())
    k = est.latency_s / total if total > 0 else 1.0
    return pre * k, [(name, v * k) for name, v in blocks.items()], post * k


def _config_info(cfg: Any) -> tuple[int, int | None, int | None, int]:
    get = lambda *ks: next((getattr(cfg, k) for k in ks if getattr(cfg, k, None)), None)  # noqa: E731
    layers, hidden = get("num_hidden_layers", "n_layer"), get("hidden_size", "n_embd", "d_model")
    if layers is None or hidden is None:
        raise DnnmapError("a multi-device plan needs a transformer config with a layer count and a hidden size")
    heads = get("num_attention_heads", "n_head")
    kv = getattr(cfg, "num_key_value_heads", None) or (1 if getattr(cfg, "multi_query", False) else heads)
    return int(layers), heads, kv, int(hidden)


def _config(model: Any) -> Any:
    if not isinstance(model, str):
        raise DnnmapError("a multi-device plan needs a model by name (hf:...) so its layers and heads are known")
    from dnnmap.capture.sources import resolve

    config = resolve(model).config
    if config is None:
        raise DnnmapError(f"{model}: multi-device plans need a transformer with a Hugging Face config (hf:...)")
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def check_plan(plan: ParallelPlan, model: Any, profile: HardwareProfile, batches: list[int] | None = None,
               devices: int | None = None, config: Any = None) -> InferenceParallel:
    """``plan`` checked against the model and the profile: a :class:`DnnmapError` names the first
    constraint it breaks (heads, layers, experts, devices, batch, interconnect)."""
    config = config if config is not None else _config(model)
    layers, heads, kv_heads, hidden = _config_info(config)
    moe = moe_of(config)
    if plan.ep > 1 and moe is None:
        raise DnnmapError(f"ep={plan.ep}: {model} has no experts (expert parallelism needs a mixture-of-experts model)")
    plan.check(devices=devices, heads=heads, layers=layers, kv_heads=kv_heads,
               experts=moe["experts"] if moe else None)
    if plan.microbatches > 1 and plan.pp == 1:
        raise DnnmapError(f"microbatches={plan.microbatches} needs pp > 1: micro-batches stream through "
                          "pipeline stages (on one stage they would only run one after another)")
    for b in batches or ():
        if b % plan.microbatches:
            raise DnnmapError(f"batch {b} is not divisible by microbatches={plan.microbatches}")
    if plan.devices > 1:
        level_for(profile, plan.devices)  # the profile has an interconnect that reaches every device
    return InferenceParallel(plan, profile, hidden, heads, kv_heads, layers, moe)


def plan_for(model: Any, profile: HardwareProfile, devices: int | None, tp: int = 1, pp: int = 1,
             dp: int | None = None, config: Any = None, *, microbatches: int = 1, ep: int = 1,
             batches: list[int] | None = None) -> InferenceParallel | None:
    """Check an inference plan (None when it is one device) against the model and the profile.

    ``devices`` defaults to dp x tp x pp; ``dp`` to what is left of ``devices``."""
    if dp is None:
        dp = devices // (tp * pp) if devices and devices % (tp * pp) == 0 else 1
    plan = ParallelPlan(dp=dp, tp=tp, pp=pp, microbatches=microbatches, ep=ep)
    if devices is None:
        devices = plan.devices
    if devices == 1 and plan.devices == 1 and microbatches == 1 and ep == 1:
        return None
    return check_plan(plan, model, profile, batches, devices, config)


def describe_line(est: Any) -> str | None:
    """One line for the report: the plan, per-request latency, throughput, communication."""
    p = est.meta.get("parallel") if hasattr(est, "meta") else None
    if not p:
        return None
    stages = ", ".join(f"{s * 1e3:.3f}" for s in p["stage_s"])
    mb = (f"; {p['microbatches']} micro-batches of {p['microbatch']}: one every {p['period_s'] * 1e3:.3f} ms, "
          f"bubble {p['bubble_s'] * 1e3:.3f} ms" if p["microbatches"] > 1 else "")
    ep = (f", {p['all_to_alls']} ep all-to-alls of {p['ep_all_to_all_s'] * 1e6:.2f} us" if p["ep"] > 1 else "")
    return (f"parallel {p['plan']} on {p['devices']} devices: latency {p['latency_s'] * 1e3:.3f} ms "
            f"(stages {stages} ms, {p['all_reduces']} tp all-reduces of {p['tp_all_reduce_s'] * 1e6:.2f} us{ep}, "
            f"sends {p['send_s'] * 1e6:.2f} us{mb}), throughput {p['throughput_per_s']:.1f}/s over all replicas "
            "with the pipeline kept full")


def _prepared(s: Any, cache: dict | None) -> Any:
    from dnnmap.pipeline import prepare

    if cache is None:
        return prepare(s)
    if s not in cache:
        cache[s] = prepare(s)
    return cache[s]


def estimate_parallel(s: Any, profile: HardwareProfile, par: InferenceParallel, cache: dict | None = None) -> Any:
    """``dnnmap.pipeline.estimate`` of scenario ``s`` on one device of the plan ``par`` (the
    request batch ``s.batch`` streamed in ``par.plan.microbatches`` micro-batches; ``cache``:
    prepared scenarios to reuse across plans)."""
    from dnnmap.mapping import Device, map_works, workload
    from dnnmap.mapping.weights import Storage, adjust, expert_weight_bytes, resident_weight_bytes
    from dnnmap.memory import fit_of
    from dnnmap.pipeline import _finish

    mb = par.micro(s.batch)
    prep = _prepared(replace(s, batch=mb), cache)
    device = Device.of(profile, s.precision, s.tf32)
    if s.host_dispatch_us is not None:
        device = device.with_host_dispatch(s.host_dispatch_us * 1e-6)
    part = prep.partition
    works = workload(part, device.precision)
    storage = Storage(s.weights, s.group_size, s.kv_dtype, expert_parallel=par.plan.ep)
    if not storage.is_default:
        works = adjust(part, works, device.precision, storage, moe=par.moe)
    est = par.run(part, works, lambda w: map_works(part, w, device, mb, s.streams, s.mode), mb,
                  s.seq_len or 1, s.precision.bytes_per_element)
    est = _finish(est, prep)
    g = prep.counted.graph
    fit = full = fit_of(g, profile, s.precision)
    if s.weights:
        fit = replace(fit, weights=resident_weight_bytes(g, s.precision, Storage(s.weights, s.group_size)))
    experts = expert_weight_bytes(g, s.precision) * fit.weights // max(full.weights, 1)  # stored as the rest
    fit = par.memory(fit, experts)
    notes = [*est.notes, describe_line(est)]
    if not fit.fits:
        notes.append(f"does not fit per device: {fit.describe()}; this latency assumes memory the device does not have")
    meta = {**dict(est.meta), "memory_bytes": fit.total, "fits": fit.fits, "memory_per_device": fit.to_dict()}
    return replace(est, notes=tuple(notes), meta=meta)


def search_analyze(s: Any, profile: HardwareProfile, devices: int, top: int = 5, ep: int | None = None) -> list[Any]:
    """``analyze --plan auto``: every inference plan of ``devices`` (:mod:`dnnmap.parallel.search`)
    estimated, the fitting ones by latency of the request, then throughput (more replicas)."""
    from dnnmap.parallel.search import rank, search_plans

    config = _config(s.model)
    layers, heads, _, _ = _config_info(config)
    moe = moe_of(config)
    node = profile.interconnect.node.devices if profile.interconnect else 1
    if devices > 1:
        level_for(profile, devices)
    plans = search_plans(devices, s.batch, layers, heads, node, model=str(s.model), training=False,
                         experts=moe["experts"] if moe else None, ep=ep)
    cache: dict = {}

    def evaluate(plan: ParallelPlan) -> Any:
        return estimate_parallel(s, profile, check_plan(plan, s.model, profile, [s.batch], devices, config), cache)

    return rank(plans, evaluate=evaluate, fits=lambda e: e.meta["fits"],
                key=lambda e: (e.latency_s, -e.meta["parallel"]["throughput_per_s"]), top=top, training=False,
                what=f"{devices} x {profile.name} for {s.model} at batch {s.batch}")


def generate_parallel(model: str, hardware: Any, prompt: int, gen: int, batch: Any = 1, *,
                      devices: int | None = None, tp: int = 1, pp: int = 1, dp: int | None = None,
                      microbatches: int = 1, ep: int = 1, **kwargs: Any) -> Any:
    """:func:`dnnmap.generate.generate` on ``devices`` (dp x tp x pp) devices of ``hardware``."""
    from dnnmap.generate import generate
    from dnnmap.mapping.api import resolve_profile

    prof = resolve_profile(hardware)
    batches = [batch] if isinstance(batch, int) else list(batch)
    par = plan_for(model, prof, devices, tp, pp, dp, microbatches=microbatches, ep=ep, batches=batches)
    return generate(model, prof, prompt, gen, batch, parallel=par, **kwargs)


def search_generate(model: str, hardware: Any, prompt: int, gen: int, batch: int, devices: int, top: int = 5,
                    ep: int | None = None, **kwargs: Any) -> list[Any]:
    """``generate --plan auto`` at one batch size: every plan of ``devices``, the fitting ones by
    end-to-end latency of the request, then decode tokens/s of all replicas. One set of captures
    serves every plan (:func:`dnnmap.generate.generate_plans`)."""
    from dnnmap.generate import generate_plans
    from dnnmap.mapping.api import resolve_profile
    from dnnmap.parallel.search import rank, search_plans

    prof = resolve_profile(hardware)
    config = _config(model)
    layers, heads, _, _ = _config_info(config)
    moe = moe_of(config)
    node = prof.interconnect.node.devices if prof.interconnect else 1
    if devices > 1:
        level_for(prof, devices)
    pars = [check_plan(p, model, prof, [batch], devices, config)
            for p in search_plans(devices, batch, layers, heads, node, model=model, training=False,
                                  experts=moe["experts"] if moe else None, ep=ep)]
    reports = generate_plans(model, prof, prompt, gen, batch, pars, **kwargs)
    return rank(reports, evaluate=lambda r: r, fits=lambda r: r.rows[0].fits,
                key=lambda r: (r.rows[0].e2e_s, -(r.rows[0].cluster_tokens_per_s or 0.0)), top=top, training=False,
                what=f"{devices} x {prof.name} for {model} at batch {batch}")
