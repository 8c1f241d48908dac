"""Inference on many devices: tensor, pipeline and data parallelism for ``analyze`` and ``generate``.

The captured forward (a prefill or a decode step) is mapped on one device with the Megatron
tensor-parallel sharding of :func:`dnnmap.parallel.sharding.shard_works` (the training hook),
then:

- tensor parallelism adds the forward all-reduces of the ``[batch, tokens, hidden]`` activation
  on the interconnect: two per transformer block (attention, MLP) and one for the
  vocabulary-parallel embedding, as the training step does;
- pipeline parallelism splits the blocks into ``pp`` stages balanced by predicted time
  (:func:`dnnmap.parallel.balance_stages`; embeddings on the first stage, the head on the
  last): one request's latency is the sum of the stages plus ``pp - 1`` activation sends; a
  stream of micro-batches runs at one per slowest stage;
- data parallelism runs ``dp`` independent replicas: throughput x ``dp``, latency unchanged.

Memory per device: weights / (tp x pp), peak activations / tp, KV cache / (tp x pp) (a KV head
is not split: with fewer KV heads than ``tp`` they are replicated), workspace whole.

>>> InferenceParallel(ParallelPlan(tp=2, pp=2), None, 64, 4, 2, 2).describe()
'tp2 x pp2 x dp1 = 4 devices'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import HardwareProfile
from dnnmap.memory import MemoryFit
from dnnmap.parallel.collectives import collective_s, level_for
from dnnmap.parallel.plan import ParallelPlan
from dnnmap.parallel.schedule import balance_stages
from dnnmap.parallel.sharding import FORWARD_ALL_REDUCES_PER_LAYER, shard_works

_BLOCK = re.compile(r"^(.*?\.\d+)(\.|$)")
EMBEDDING_ALL_REDUCES = 1  # vocabulary-parallel embedding (Megatron), as in the training step


@dataclass(frozen=True)
class InferenceParallel:
    """A plan checked against a model (layers, heads, hidden) and a profile with an interconnect."""

    plan: ParallelPlan
    profile: HardwareProfile | None
    hidden: int
    heads: int | None
    kv_heads: int | None
    layers: int

    def describe(self) -> str:
        p = self.plan
        return f"tp{p.tp} x pp{p.pp} x dp{p.dp} = {p.devices} devices"

    def all_reduce_s(self, nbytes: float) -> float:
        """One forward tensor-parallel all-reduce of ``nbytes`` per device."""
        if self.plan.tp <= 1 or self.profile is None:
            return 0.0
        return collective_s("all_reduce", nbytes, self.plan.tp, level_for(self.profile, self.plan.tp_span))

    def send_s(self, nbytes: float) -> float:
        """One stage-to-stage activation send (the tp shards send in parallel)."""
        if self.plan.pp <= 1 or self.profile is None:
            return 0.0
        return collective_s("send_recv", nbytes / self.plan.tp, 2, level_for(self.profile, self.plan.devices))

    def memory(self, fit: MemoryFit) -> MemoryFit:
        tp, pp = self.plan.tp, self.plan.pp
        kv_split = min(tp, self.kv_heads) if self.kv_heads else tp
        return replace(fit, weights=-(-fit.weights // (tp * pp)), activations=-(-fit.activations // tp),
                       kv_cache=-(-fit.kv_cache // (kv_split * pp)))

    def run(self, part: Any, works: tuple, map_fn: Any, batch: int, tokens: int, elem_bytes: float) -> Any:
        """Map ``works`` sharded ``tp`` ways with ``map_fn(works) -> Estimate``, then split it into
        pipeline stages; the Estimate returned has the parallel latency and ``meta["parallel"]``."""
        est = map_fn(shard(part, works, self.plan.tp))
        act = batch * tokens * self.hidden * elem_bytes
        ar = self.all_reduce_s(act)
        pre, blocks, post = _split(part, est)
        if not blocks:
            blocks = [est.latency_s - pre - post]
        n = len(blocks)
        costs = [b + FORWARD_ALL_REDUCES_PER_LAYER * ar for b in blocks]
        costs[0] += pre + EMBEDDING_ALL_REDUCES * ar
        costs[-1] += post
        stages = [sum(costs[a:b]) for a, b in balance_stages(costs, self.plan.pp)] if self.plan.pp > 1 else [sum(costs)]
        send = self.send_s(act)
        latency = sum(stages) + (len(stages) - 1) * send
        slowest = max(s + (send if len(stages) > 1 else 0.0) for s in stages)
        per_replica = batch / (slowest if len(stages) > 1 else latency) if latency > 0 else 0.0
        comm = (FORWARD_ALL_REDUCES_PER_LAYER * n + EMBEDDING_ALL_REDUCES) * ar if self.plan.tp > 1 else 0.0
        info = {"plan": str(self.plan), "devices": self.plan.devices, "tp": self.plan.tp, "pp": self.plan.pp,
                "dp": self.plan.dp, "compute_s": est.latency_s, "tp_all_reduce_s": ar, "tp_comm_s": comm,
                "all_reduces": (FORWARD_ALL_REDUCES_PER_LAYER * n + EMBEDDING_ALL_REDUCES) if self.plan.tp > 1 else 0,
                "stage_s": stages, "send_s": send, "latency_s": latency,
                "throughput_per_s": per_replica * self.plan.dp}
        return replace(est, latency_s=latency, meta={**dict(est.meta), "parallel": info})


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


def _split(part: Any, est: Any) -> tuple[float, list[float], float]:
    """Seconds before the first block, per block (in order), after the last, scaled to the latency."""
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
    return pre * k, [v * k for v in blocks.values()], post * k


def _config_info(cfg: Any) -> tuple[int, int | None, int | None, int]:
    get = lambda *ks: next((getattr(cfg, k) for k in ks if getattr(cfg, k, None)), None)  # noqa: E731
    layers, hidden = get("num_hidden_layers", "n_layer"), get("hidden_size", "n_embd", "d_model")
    if layers is None or hidden is None:
        raise DnnmapError("a multi-device plan needs a transformer config with a layer count and a hidden size")
    heads = get("num_attention_heads", "n_head")
    kv = getattr(cfg, "num_key_value_heads", None) or (1 if getattr(cfg, "multi_query", False) else heads)
    return int(layers), heads, kv, int(hidden)


def plan_for(model: Any, profile: HardwareProfile, devices: int | None, tp: int = 1, pp: int = 1,
             dp: int | None = None, config: Any = None) -> InferenceParallel | None:
    """Check an inference plan (None when it is one device) against the model and the profile.

    ``devices`` defaults to dp x tp x pp; ``dp`` to what is left of ``devices``."""
    if dp is None:
        dp = devices // (tp * pp) if devices and devices % (tp * pp) == 0 else 1
    plan = ParallelPlan(dp=dp, tp=tp, pp=pp)
    if devices is None:
        devices = plan.devices
    if devices == 1 and plan.devices == 1:
        return None
    if config is None:
        if not isinstance(model, str):
            raise DnnmapError("a multi-device plan needs a model by name (hf:...) so its layers and heads are known")
        from dnnmap.capture.sources import resolve

        config = resolve(model).config
        if config is None:
            raise DnnmapError(f"{model}: multi-device plans need a transformer with a Hugging Face config (hf:...)")
        config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layers, heads, kv_heads, hidden = _config_info(config)
    plan.check(devices=devices, heads=heads, layers=layers, kv_heads=kv_heads)
    if plan.devices > 1:
        level_for(profile, plan.devices)  # the profile has an interconnect that reaches every device
    return InferenceParallel(plan, profile, hidden, heads, kv_heads, layers)


def describe_line(est: Any) -> str | None:
    """One line for the report: the plan, per-request latency, throughput, communication."""
    p = est.meta.get("parallel") if hasattr(est, "meta") else None
    if not p:
        return None
    stages = ", ".join(f"{s * 1e3:.3f}" for s in p["stage_s"])
    return (f"parallel {p['plan']} on {p['devices']} devices: latency {p['latency_s'] * 1e3:.3f} ms "
            f"(stages {stages} ms, {p['all_reduces']} tp all-reduces of {p['tp_all_reduce_s'] * 1e6:.2f} us, "
            f"sends {p['send_s'] * 1e6:.2f} us), throughput {p['throughput_per_s']:.1f}/s over all replicas")


def estimate_parallel(s: Any, profile: HardwareProfile, par: InferenceParallel) -> Any:
    """``dnnmap.pipeline.estimate`` of scenario ``s`` on one device of the plan ``par``."""
    from dnnmap.mapping import Device, map_works, workload
    from dnnmap.mapping.weights import Storage, adjust, resident_weight_bytes
    from dnnmap.memory import fit_of
    from dnnmap.pipeline import _finish, prepare

    prep = prepare(s)
    device = Device.of(profile, s.precision, s.tf32)
    if s.host_dispatch_us is not None:
        device = device.with_host_dispatch(s.host_dispatch_us * 1e-6)
    part = prep.partition
    works = workload(part, device.precision)
    if s.weights or s.kv_dtype:
        works = adjust(part, works, device.precision, Storage(s.weights, s.group_size, s.kv_dtype))
    est = par.run(part, works, lambda w: map_works(part, w, device, s.batch, s.streams, s.mode), s.batch,
                  s.seq_len or 1, s.precision.bytes_per_element)
    est = _finish(est, prep)
    fit = fit_of(prep.counted.graph, profile, s.precision)
    if s.weights:
        fit = replace(fit, weights=resident_weight_bytes(prep.counted.graph, s.precision,
                                                         Storage(s.weights, s.group_size)))
    fit = par.memory(fit)
    notes = [*est.notes, describe_line(est)]
    if not fit.fits:
        notes.append(f"does not fit per device: {fit.describe()}; this latency assumes memory the device does not have")
    meta = {**dict(est.meta), "memory_bytes": fit.total, "fits": fit.fits, "memory_per_device": fit.to_dict()}
    return replace(est, notes=tuple(notes), meta=meta)


def generate_parallel(model: str, hardware: Any, prompt: int, gen: int, batch: Any = 1, *,
                      devices: int | None = None, tp: int = 1, pp: int = 1, dp: int | None = None,
                      **kwargs: Any) -> Any:
    """:func:`dnnmap.generate.generate` on ``devices`` (dp x tp x pp) devices of ``hardware``."""
    from dnnmap.generate import generate
    from dnnmap.mapping.api import resolve_profile

    prof = resolve_profile(hardware)
    par = plan_for(model, prof, devices, tp, pp, dp)
    return generate(model, prof, prompt, gen, batch, parallel=par, **kwargs)
