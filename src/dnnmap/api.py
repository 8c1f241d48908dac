"""The Python API: one call per question. Each returns a typed result with ``.to_dataframe()``.

>>> import dnnmap                                             # doctest: +SKIP
>>> r = dnnmap.count("resnet18")                              # doctest: +SKIP
>>> r.totals()["gemm_conv_flops"]                             # doctest: +SKIP
3627122688
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnnmap.costs import CountedGraph, count_graph
from dnnmap.ir import Graph
from dnnmap.report.count import CountReport


def capture_graph(
    model: Any,
    *,
    batch: int | None = None,
    input_shape: Sequence[int] | str | None = None,
    seq_len: int | None = None,
    dtype: str = "fp32",
    inputs: tuple[Any, ...] | None = None,
    path: str = "auto",
) -> Graph:
    """Capture ``model`` (a name, a ``file.py:factory`` or an ``nn.Module``) as an ``ir.Graph``."""
    if isinstance(model, Graph):
        return model
    from dnnmap.capture import capture

    return capture(
        model, batch=batch, input_shape=input_shape, seq_len=seq_len, dtype=dtype, inputs=inputs, path=path
    )


def count(model: Any, *, strict: bool = False, **capture_kwargs: Any) -> CountReport:
    """Capture and count: every op's FLOPs, MACs and bytes, with the coverage ledger."""
    return CountReport(count_graph(capture_graph(model, **capture_kwargs), strict=strict))


def _counted(model: Any, strict: bool = False, **capture_kwargs: Any) -> CountedGraph:
    if isinstance(model, CountedGraph):
        return model
    if isinstance(model, CountReport):
        return model.counted
    return count_graph(capture_graph(model, **capture_kwargs), strict=strict)


def partition(model: Any, strategy: str = "compiler", onchip_budget_bytes: int | None = None, **capture_kwargs: Any):  # noqa: ANN201
    """Fuse a model (or a captured / counted graph) into the kernels a compiler would launch."""
    from dnnmap.fusion import partition as _partition

    return _partition(_counted(model, **capture_kwargs), strategy=strategy, onchip_budget_bytes=onchip_budget_bytes)


def scenario(model: Any, **kw: Any):  # noqa: ANN201 - pipeline.Scenario
    """A :class:`dnnmap.pipeline.Scenario` from keyword arguments (capture keywords included)."""
    from dnnmap.pipeline import Scenario

    fields = set(Scenario.__dataclass_fields__)
    extra = {k: kw.pop(k) for k in list(kw) if k not in fields}
    if extra:
        kw["capture_kwargs"] = tuple(sorted(extra.items()))
    return Scenario(model, **kw)


def analyze(
    model: Any,
    hardware: Any,
    *,
    batch: int = 1,
    precision: str = "fp32",
    mode: str = "compiled",
    strategy: str | None = None,
    streams: int = 1,
    onchip_budget_bytes: int | None = None,
    hardware_dirs: Sequence[str] = (),
    devices: int | None = None,
    tp: int = 1,
    pp: int = 1,
    dp: int | None = None,
    microbatches: int = 1,
    ep: int | None = None,
    plan: str | None = None,
    top: int = 5,
    **scenario_kwargs: Any,
):  # noqa: ANN201 - mapping.Estimate, or a list of them for plan="auto"
    """Predict latency, throughput, utilization and energy of ``model`` on one device.

    ``devices`` / ``tp`` / ``pp`` / ``dp`` / ``microbatches`` / ``ep``: inference on many
    devices (Megatron tensor parallelism, pipeline stages streaming micro-batches, replicas,
    experts split over replicas; :mod:`dnnmap.parallel.inference`): the latency of one request,
    ``meta["parallel"]`` (stages, collectives, bubble, throughput of all replicas) and the memory
    of one device. ``plan="auto"``: the ``top`` fitting plans of ``devices``, fastest first.

    ``hardware`` is a profile name (``"h100-sxm5"``), a YAML path or a ``HardwareProfile``.
    ``mode`` is ``eager`` (one kernel per ATen op, issued by Python), ``compiled`` (the
    compiler's fused kernels) or ``cudagraph``; further keywords are fields of
    :class:`dnnmap.pipeline.Scenario` (``seq_len``, ``attn_implementation``, ``tf32``,
    ``strict`` ...). The model is captured once at ``dtype`` (fp32 by default);
    ``precision`` rescales every floating tensor's bytes and picks the device's peak.
    """
    from dnnmap.pipeline import estimate

    s = scenario(model, batch=batch, precision=precision, mode=mode, strategy=strategy, streams=streams,
                 onchip_budget_bytes=onchip_budget_bytes, **scenario_kwargs)
    prof = _profile(hardware, hardware_dirs)
    if plan is not None:
        from dnnmap.parallel.inference import search_analyze

        return search_analyze(s, prof, _auto_devices(plan, devices, tp, pp, dp, microbatches), top, ep=ep)
    ep = ep or 1  # --ep not given: no expert parallelism (with --plan auto: every ep searched)
    if _parallel(devices, tp, pp, dp, microbatches, ep):
        from dnnmap.parallel.inference import estimate_parallel, plan_for

        par = plan_for(s.model, prof, devices, tp, pp, dp, microbatches=microbatches, ep=ep, batches=[s.batch])
        if par is not None:
            return estimate_parallel(s, prof, par)
    return estimate(s, prof)


def _parallel(devices: int | None, tp: int, pp: int, dp: int | None, microbatches: int = 1, ep: int = 1) -> bool:
    return devices is not None or tp > 1 or pp > 1 or (dp or 1) > 1 or microbatches > 1 or ep > 1


def _auto_devices(plan: str, devices: int | None, tp: int, pp: int, dp: int | None, microbatches: int) -> int:
    """The devices ``--plan auto`` searches over (it chooses tp, pp, dp and micro-batches itself)."""
    from dnnmap.errors import DnnmapError

    if plan != "auto":
        raise DnnmapError(f"--plan takes 'auto' (search every plan), not {plan!r}; give --tp / --pp / --dp for one plan")
    if tp > 1 or pp > 1 or dp is not None or microbatches > 1:
        raise DnnmapError("--plan auto chooses tp, pp, dp and micro-batches itself: give --devices N, "
                          "not --tp / --pp / --dp / --microbatches")
    if devices is None:
        raise DnnmapError("--plan auto needs --devices N (the devices to split the model over)")
    return devices


def compare(
    model: Any,
    hardware: Sequence[Any] | str = "all",
    *,
    batch: int = 1,
    precision: str = "fp32",
    mode: str = "compiled",
    strategy: str | None = None,
    streams: int = 1,
    baseline: str | None = None,
    onchip_budget_bytes: int | None = None,
    hardware_dirs: Sequence[str] = (),
    devices: int | None = None,
    tp: int = 1,
    pp: int = 1,
    dp: int | None = None,
    microbatches: int = 1,
    ep: int | None = None,
    **scenario_kwargs: Any,
):  # noqa: ANN201 - mapping.Comparison
    """Map one capture and one partition of ``model`` onto several devices side by side.

    ``hardware`` is ``"all"``, a comma-separated string, or a sequence of names / profiles.
    Capture and partition are done once and shared by every device. ``devices`` / ``tp`` /
    ``pp`` / ``dp`` / ``microbatches`` / ``ep``: every device priced under the same plan (as
    :func:`analyze`); a device without an interconnect that reaches them is refused.
    """
    from dnnmap.hardware import list_profiles
    from dnnmap.pipeline import compare as compare_scenario

    if isinstance(hardware, str):
        if hardware == "all":
            profiles = list_profiles(hardware_dirs)
        else:
            profiles = [_profile(h.strip(), hardware_dirs) for h in hardware.split(",") if h.strip()]
    else:
        profiles = [_profile(h, hardware_dirs) for h in hardware]
    s = scenario(model, batch=batch, precision=precision, mode=mode, strategy=strategy, streams=streams,
                 onchip_budget_bytes=onchip_budget_bytes, **scenario_kwargs)
    ep = ep or 1
    if _parallel(devices, tp, pp, dp, microbatches, ep):
        return _compare_parallel(s, profiles, baseline, devices, tp, pp, dp, microbatches, ep)
    return compare_scenario(s, profiles, baseline=baseline)


def _compare_parallel(s: Any, profiles: list, baseline: str | None, devices: int | None, tp: int, pp: int,
                      dp: int | None, microbatches: int, ep: int):  # noqa: ANN202 - mapping.Comparison
    """Every device under one plan: one capture (per micro-batch) shared, each priced on its interconnect."""
    from dnnmap.errors import DnnmapError
    from dnnmap.mapping.api import Comparison
    from dnnmap.parallel.inference import estimate_parallel, plan_for
    from dnnmap.pipeline import estimate

    cache: dict = {}
    ests = []
    for prof in profiles:
        par = plan_for(s.model, prof, devices, tp, pp, dp, microbatches=microbatches, ep=ep, batches=[s.batch])
        ests.append(estimate_parallel(s, prof, par, cache) if par is not None else estimate(s, prof))
    names = [e.device for e in ests]
    base = baseline or names[0]
    if base not in names:
        raise DnnmapError(f"baseline {base!r} is not among the compared devices: {', '.join(names)}")
    return Comparison(tuple(ests), base)


def _profile(hardware: Any, hardware_dirs: Sequence[str]):  # noqa: ANN202
    from dnnmap.hardware import HardwareProfile, load_profile

    return hardware if isinstance(hardware, HardwareProfile) else load_profile(hardware, hardware_dirs)


def train(model: Any, hardware: Any, *, batch: int = 1, seq_len: int | None = None, optimizer: str = "adamw",
          precision: str = "fp32", recompute: str = "none", devices: int | None = None, dp: int | None = None,
          tp: int = 1, pp: int = 1, microbatches: int = 1, zero: int = 0, ep: int | None = None,
          plan: str | None = None, top: int = 5,
          **scenario_kw: Any):  # noqa: ANN201 - TrainEstimate, or a list of them for plan="auto"
    """One training step (forward, loss, backward, optimizer) on one device or ``devices``.

    ``precision`` bf16 / fp16 is mixed precision (autocast, fp32 master weights); ``ep``: expert
    parallelism of a mixture of experts (experts split over ``ep`` of the ``dp`` replicas);
    ``plan="auto"`` searches (dp, tp, pp, micro-batches, ZeRO, and ep for a mixture of experts
    unless ``ep`` is given) and returns the fastest fitting plans first."""
    from dnnmap.pipeline import Scenario
    from dnnmap.training import train_step

    amp = precision if precision in ("bf16", "fp16") else None
    s = Scenario(model, batch=batch, seq_len=seq_len, optimizer=optimizer, precision=precision, amp=amp,
                 recompute=recompute, **scenario_kw)
    if plan is not None:
        from dnnmap.training.search import search

        return search(s, hardware, _auto_devices(plan, devices, tp, pp, dp, microbatches), top=top, ep=ep)
    ep = ep or 1  # --ep not given: no expert parallelism (with --plan auto: every ep searched)
    if devices is None:  # not given: dp x tp x pp
        devices = (dp or 1) * tp * pp
    if devices == 1 and (dp or 1) * tp * pp == 1 and ep == 1:
        return train_step(s, hardware)
    from dnnmap.errors import DnnmapError
    from dnnmap.parallel import ParallelPlan
    from dnnmap.training.multi import parallel_step

    dp = dp if dp is not None else max(devices // (tp * pp), 1)
    p = ParallelPlan(dp=dp, tp=tp, pp=pp, microbatches=microbatches, zero=zero, ep=ep)
    if p.devices != devices:
        raise DnnmapError(f"dp x tp x pp = {dp} x {tp} x {pp} = {p.devices} does not use the {devices} devices asked for")
    return parallel_step(s, hardware, p)


_PLAN_KEYS = ("devices", "tp", "pp", "dp", "microbatches", "ep")


def generate(model: str, hardware: Any, prompt: int, gen: int, batch: int | Sequence[int] = 1, *,
             plan: str | None = None, top: int = 5, **kw: Any):  # noqa: ANN201
    """LLM generation: TTFT, time per output token, throughput, memory (see :mod:`dnnmap.generate`).

    ``devices`` / ``tp`` / ``pp`` / ``dp`` / ``microbatches`` / ``ep``: on many devices
    (:mod:`dnnmap.parallel.inference`); ``plan="auto"`` (one batch size): the ``top`` fitting
    plans of ``devices``, fastest end to end first."""
    if plan is not None:
        from dnnmap.errors import DnnmapError
        from dnnmap.parallel.inference import search_generate

        batches = [batch] if isinstance(batch, int) else sorted(set(batch))
        if len(batches) != 1:
            raise DnnmapError(f"--plan auto ranks plans at one batch size; give one --batch, not {batches}")
        n = _auto_devices(plan, kw.pop("devices", None), kw.pop("tp", 1), kw.pop("pp", 1), kw.pop("dp", None),
                          kw.pop("microbatches", 1))
        return search_generate(model, hardware, prompt, gen, batches[0], n, top, ep=kw.pop("ep", None), **kw)
    if kw.get("ep") is None:
        kw.pop("ep", None)  # --ep not given: no expert parallelism
    if any(kw.get(k) not in (None, 1) for k in _PLAN_KEYS):
        from dnnmap.parallel.inference import generate_parallel

        return generate_parallel(model, hardware, prompt, gen, batch, **kw)
    from dnnmap.generate import generate as _generate

    kw = {k: v for k, v in kw.items() if k not in _PLAN_KEYS}
    return _generate(model, hardware, prompt, gen, batch, **kw)
