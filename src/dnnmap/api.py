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
    **scenario_kwargs: Any,
):  # noqa: ANN201 - mapping.Estimate
    """Predict latency, throughput, utilization and energy of ``model`` on one device.

    ``devices`` / ``tp`` / ``pp`` / ``dp``: inference on many devices (Megatron tensor
    parallelism, pipeline stages, replicas; :mod:`dnnmap.parallel.inference`): the latency of
    one request, ``meta["parallel"]`` (stages, all-reduces, throughput of all replicas) and the
    memory of one device.

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
    if devices is not None or tp > 1 or pp > 1 or (dp or 1) > 1:
        from dnnmap.mapping.api import resolve_profile
        from dnnmap.parallel.inference import estimate_parallel, plan_for

        prof = resolve_profile(prof)
        par = plan_for(s.model, prof, devices, tp, pp, dp)
        if par is not None:
            return estimate_parallel(s, prof, par)
    return estimate(s, prof)


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
    **scenario_kwargs: Any,
):  # noqa: ANN201 - mapping.Comparison
    """Map one capture and one partition of ``model`` onto several devices side by side.

    ``hardware`` is ``"all"``, a comma-separated string, or a sequence of names / profiles.
    Capture and partition are done once and shared by every device.
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
    return compare_scenario(s, profiles, baseline=baseline)


def _profile(hardware: Any, hardware_dirs: Sequence[str]):  # noqa: ANN202
    from dnnmap.hardware import HardwareProfile, load_profile

    return hardware if isinstance(hardware, HardwareProfile) else load_profile(hardware, hardware_dirs)


def train(model: Any, hardware: Any, *, batch: int = 1, seq_len: int | None = None, optimizer: str = "adamw",
          precision: str = "fp32", recompute: str = "none", devices: int = 1, dp: int | None = None, tp: int = 1,
          pp: int = 1, microbatches: int = 1, zero: int = 0, plan: str | None = None, top: int = 5,
          **scenario_kw: Any):  # noqa: ANN201 - TrainEstimate, or a list of them for plan="auto"
    """One training step (forward, loss, backward, optimizer) on one device or ``devices``.

    ``precision`` bf16 / fp16 is mixed precision (autocast, fp32 master weights);
    ``plan="auto"`` searches (dp, tp, pp, micro-batches, ZeRO) and returns the fastest fitting
    plans first."""
    from dnnmap.pipeline import Scenario
    from dnnmap.training import train_step

    amp = precision if precision in ("bf16", "fp16") else None
    s = Scenario(model, batch=batch, seq_len=seq_len, optimizer=optimizer, precision=precision, amp=amp,
                 recompute=recompute, **scenario_kw)
    if plan == "auto":
        from dnnmap.training.search import search

        return search(s, hardware, devices, top=top)
    if devices == 1 and (dp or 1) * tp * pp == 1:
        return train_step(s, hardware)
    from dnnmap.errors import DnnmapError
    from dnnmap.parallel import ParallelPlan
    from dnnmap.training.multi import parallel_step

    dp = dp if dp is not None else max(devices // (tp * pp), 1)
    p = ParallelPlan(dp=dp, tp=tp, pp=pp, microbatches=microbatches, zero=zero)
    if p.devices != devices:
        raise DnnmapError(f"dp x tp x pp = {dp} x {tp} x {pp} = {p.devices} does not use the {devices} devices asked for")
    return parallel_step(s, hardware, p)


def generate(model: str, hardware: Any, prompt: int, gen: int, batch: int | Sequence[int] = 1, **kw: Any):  # noqa: ANN201
    """LLM generation: TTFT, time per output token, throughput, memory (see :mod:`dnnmap.generate`).

    ``devices`` / ``tp`` / ``pp`` / ``dp``: on many devices (:mod:`dnnmap.parallel.inference`)."""
    if any(kw.get(k) not in (None, 1) for k in ("devices", "tp", "pp", "dp")):
        from dnnmap.parallel.inference import generate_parallel

        return generate_parallel(model, hardware, prompt, gen, batch, **kw)
    from dnnmap.generate import generate as _generate

    kw = {k: v for k, v in kw.items() if k not in ("devices", "tp", "pp", "dp")}
    return _generate(model, hardware, prompt, gen, batch, **kw)
