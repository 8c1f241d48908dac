"""``--plan auto``: every (dp, tp, pp, micro-batches, ZeRO) that fits N devices, fastest first.

Each distinct (micro-batch size, tp) is captured and mapped once (:func:`step_model`);
combining it with a plan's pp, dp and ZeRO stage is arithmetic, so the search is cheap.
"""

from __future__ import annotations

from dataclasses import replace

from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import HardwareProfile
from dnnmap.mapping.api import resolve_profile
from dnnmap.parallel import ParallelPlan
from dnnmap.pipeline import Scenario
from dnnmap.training.multi import combine, model_info, step_model
from dnnmap.training.step import TrainEstimate


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_plans(devices: int, batch: int, layers: int, heads: int | None, node: int,
                    max_microbatches: int = 64) -> list[ParallelPlan]:
    out = []
    for tp in _divisors(devices):
        if tp > node or (heads and heads % tp):
            continue
        for pp in _divisors(devices // tp):
            dp = devices // tp // pp
            if pp > layers or batch % dp:
                continue
            for m in _divisors(batch // dp):
                if m > max_microbatches or (pp == 1 and m > 1):
                    continue
                for zero in ((0, 1, 2, 3) if dp > 1 else (0,)):
                    out.append(ParallelPlan(dp=dp, tp=tp, pp=pp, microbatches=m, zero=zero))
    return out


def search(s: Scenario, profile: HardwareProfile | str, devices: int, top: int = 5,
           layers_captured: int = 1) -> list[TrainEstimate]:
    """The fitting plans, fastest first (at most ``top``); raises when none fits."""
    prof = resolve_profile(profile)
    info = model_info(str(s.model))
    node = prof.interconnect.node.devices if prof.interconnect else 1
    models: dict[tuple[int, int], object] = {}
    results = []
    for plan in candidate_plans(devices, s.batch, info.layers, info.heads, node):
        mb = s.batch // (plan.dp * plan.microbatches)
        key = (mb, plan.tp)
        if key not in models:
            models[key] = step_model(replace(s, batch=mb, layers=layers_captured, optimizer=s.optimizer or "adamw"),
                                     prof, plan.tp)
        est = combine(s, prof, plan, info, models[key], mb)
        if est.fits:
            results.append(est)
    if not results:
        raise DnnmapError(f"no plan of {devices} x {prof.name} fits {s.model} at batch {s.batch}: "
                          "every (dp, tp, pp, micro-batches, ZeRO) needs more memory than a device has")
    results.sort(key=lambda e: e.step_s)
    return results[:top]
