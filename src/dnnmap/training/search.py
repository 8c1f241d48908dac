"""``train --plan auto``: every (dp, tp, pp, micro-batches, ZeRO, and for a mixture of experts ep)
that fits N devices, fastest first (the plans and the ranking of :mod:`dnnmap.parallel.search`,
shared with inference).

Each distinct (micro-batch size, tp) is captured and mapped once (:func:`step_model`);
combining it with a plan's pp, dp and ZeRO stage is arithmetic, so the search is cheap.
"""

from __future__ import annotations

from dataclasses import replace

from dnnmap.hardware.schema import HardwareProfile
from dnnmap.mapping.api import resolve_profile
from dnnmap.parallel import ParallelPlan
from dnnmap.parallel.search import rank, search_plans
from dnnmap.pipeline import Scenario
from dnnmap.training.multi import combine, model_info, step_model
from dnnmap.training.step import TrainEstimate


def search(s: Scenario, profile: HardwareProfile | str, devices: int, top: int = 5,
           layers_captured: int = 1, ep: int | None = None) -> list[TrainEstimate]:
    """The fitting plans, fastest first (at most ``top``); raises when none fits. ``ep``: a fixed
    expert-parallel degree (None: every one the experts and ``dp`` allow)."""
    prof = resolve_profile(profile)
    info = model_info(str(s.model))
    experts = info.moe["experts"] if info.moe else None
    node = prof.interconnect.node.devices if prof.interconnect else 1
    models: dict[tuple[int, int], object] = {}

    def evaluate(plan: ParallelPlan) -> TrainEstimate:
        mb = s.batch // (plan.dp * plan.microbatches)
        key = (mb, plan.tp)
        if key not in models:
            models[key] = step_model(replace(s, batch=mb, layers=info.layers_to_capture(layers_captured),
                                             optimizer=s.optimizer or "adamw"), prof, plan.tp, info.moe_share)
        return combine(s, prof, plan, info, models[key], mb)

    plans = search_plans(devices, s.batch, info.layers, info.heads, node, model=str(s.model), experts=experts, ep=ep)
    return rank(plans, evaluate=evaluate,
                fits=lambda e: e.fits, key=lambda e: e.step_s, top=top,
                what=f"{devices} x {prof.name} for {s.model} at batch {s.batch}")
