"""``dnnmap analyze MODEL --hardware NAME`` and ``dnnmap compare MODEL --hardware a,b|all``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnnmap.cli.common import (
    AttnOpt,
    BatchOpt,
    CsvOpt,
    DevicesOpt,
    DpOpt,
    DtypeOpt,
    EpOpt,
    ForceOpt,
    GroupSizeOpt,
    HardwareDirOpt,
    HostOpt,
    InputShapeOpt,
    JsonOpt,
    KvDtypeOpt,
    MicrobatchesOpt,
    ModelArg,
    ModeOpt,
    PlanOpt,
    PlotOpt,
    PpOpt,
    SeqLenOpt,
    Tf32Opt,
    TpOpt,
    WeightsOpt,
    capture_kwargs,
    check_plot,
    console,
    handle_errors,
    write_files_said,
    write_json,
    write_text,
)
from dnnmap.errors import DnnmapError

PrecisionOpt = Annotated[
    str, typer.Option("--precision", "-p", help="fp32, tf32, bf16, fp16, fp8 or int8: bytes moved and the peak used")
]
StreamsOpt = Annotated[int, typer.Option("--streams", min=1, help="Concurrent streams for independent kernels (GPU)")]
BudgetOpt = Annotated[
    int | None, typer.Option("--onchip-budget", min=1, help="Bound each fused kernel's working set, bytes")
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail when an op has no cost rule instead of listing it")]
HostProfileOpt = Annotated[
    str | None, typer.Option("--host-profile", help="A calibrated CPU profile (dnnmap calibrate --out F): its "
                             "measured eager per-op cost drives the GPU's host timeline")
]
PriceOpt = Annotated[
    float | None, typer.Option("--price-per-hour", min=0, help="USD per device-hour (default: the profile's "
                               "price_per_hour_usd, if it has one): adds $ per 1,000 inferences / per million tokens")
]
StrategyOverrideOpt = Annotated[
    str | None, typer.Option("--strategy", "-s", help="Override the fusion the mode implies: unfused, greedy, compiler")
]


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
    app.command("compare")(compare)


@handle_errors
def analyze(
    model: ModelArg,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Profile name (dnnmap hardware list) or YAML path")],
    batch: BatchOpt = 1,
    precision: PrecisionOpt = "fp32",
    mode: ModeOpt = "compiled",
    attn_implementation: AttnOpt = None,
    tf32: Tf32Opt = "default",
    strategy: StrategyOverrideOpt = None,
    streams: StreamsOpt = 1,
    onchip_budget: BudgetOpt = None,
    input_shape: InputShapeOpt = None,
    seq_len: SeqLenOpt = None,
    dtype: DtypeOpt = "fp32",
    strict: StrictOpt = False,
    host_dispatch_us: HostOpt = None,
    host_profile: HostProfileOpt = None,
    weights: WeightsOpt = None,
    group_size: GroupSizeOpt = 128,
    kv_dtype: KvDtypeOpt = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Rows of the subgraph table (default: all)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add each kernel's explanation (always in --json)")] = False,
    devices: DevicesOpt = None,
    tp: TpOpt = 1,
    pp: PpOpt = 1,
    dp: DpOpt = None,
    microbatches: MicrobatchesOpt = 1,
    ep: EpOpt = None,
    plan: PlanOpt = None,
    price_per_hour: PriceOpt = None,
    hardware_dir: HardwareDirOpt = None,
    json_out: JsonOpt = None,
    csv_out: CsvOpt = None,
    plot: PlotOpt = None,
    force: ForceOpt = False,
) -> None:
    """Predict latency, throughput, utilization and energy on one device (or a plan of many), per fused kernel."""
    from dnnmap.api import analyze as api_analyze
    from dnnmap.report.estimate import estimate_dataframe, estimate_to_dict, render_analyze

    check_plot(plot)
    kw = capture_kwargs(batch, input_shape, seq_len, dtype)
    kw.pop("batch")
    est = api_analyze(
        model, hardware, batch=batch, precision=precision, mode=mode, strategy=strategy, streams=streams,
        onchip_budget_bytes=onchip_budget, hardware_dirs=[str(d) for d in hardware_dir or ()],
        attn_implementation=attn_implementation, tf32=tf32, strict=strict,
        host_dispatch_us=host_dispatch(host_dispatch_us, host_profile, hardware_dir),
        weights=weights, group_size=group_size, kv_dtype=kv_dtype, devices=devices, tp=tp, pp=pp, dp=dp,
        microbatches=microbatches, ep=ep, plan=plan, **kw,
    )
    plans = est if isinstance(est, list) else None
    est = plans[0] if plans else est
    from dnnmap.hardware import load_profile
    from dnnmap.hardware.price import cost, cost_line, price_of

    prof = load_profile(hardware, [str(d) for d in hardware_dir or ()])
    price, source = price_of(prof, price_per_hour)
    c = cost(est.latency_s, est.batch, price, seq_len, source)
    data = {**estimate_to_dict(est), "cost": c}
    line = cost_line(c)
    shown = [*render_analyze(est, top=top, explain=explain), *([line] if line else [])]
    if plans:
        from dnnmap.report.estimate import plan_rows, render_plans

        data["plans"] = plan_rows(plans)
        shown.append(render_plans(plans))
    _emit(data, estimate_dataframe(est), shown, json_out, csv_out, force)
    if plot is not None:
        from dnnmap.report.plots import estimate_plots

        write_files_said(estimate_plots(est, plot, prof), force=True)


@handle_errors
def compare(
    model: ModelArg,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Comma-separated profile names, or 'all'")] = "all",
    baseline: Annotated[str | None, typer.Option("--baseline", help="Device the speed-up is measured against")] = None,
    batch: BatchOpt = 1,
    precision: PrecisionOpt = "fp32",
    mode: ModeOpt = "compiled",
    attn_implementation: AttnOpt = None,
    tf32: Tf32Opt = "default",
    strategy: StrategyOverrideOpt = None,
    streams: StreamsOpt = 1,
    onchip_budget: BudgetOpt = None,
    input_shape: InputShapeOpt = None,
    seq_len: SeqLenOpt = None,
    dtype: DtypeOpt = "fp32",
    strict: StrictOpt = False,
    host_dispatch_us: HostOpt = None,
    host_profile: HostProfileOpt = None,
    weights: WeightsOpt = None,
    group_size: GroupSizeOpt = 128,
    kv_dtype: KvDtypeOpt = None,
    devices: DevicesOpt = None,
    tp: TpOpt = 1,
    pp: PpOpt = 1,
    dp: DpOpt = None,
    microbatches: MicrobatchesOpt = 1,
    ep: EpOpt = None,
    price_per_hour: PriceOpt = None,
    hardware_dir: HardwareDirOpt = None,
    json_out: JsonOpt = None,
    csv_out: CsvOpt = None,
    plot: PlotOpt = None,
    force: ForceOpt = False,
) -> None:
    """Devices side by side (each under one plan with --devices / --tp / --pp / --dp): latency, throughput,
    utilization, energy, speed-up over a baseline."""
    from dnnmap.api import compare as api_compare
    from dnnmap.report.estimate import comparison_dataframe, comparison_to_dict, render_compare

    check_plot(plot)
    kw = capture_kwargs(batch, input_shape, seq_len, dtype)
    kw.pop("batch")
    cmp = api_compare(
        model, hardware, batch=batch, precision=precision, mode=mode, strategy=strategy, streams=streams,
        baseline=baseline, onchip_budget_bytes=onchip_budget, hardware_dirs=[str(d) for d in hardware_dir or ()],
        attn_implementation=attn_implementation, tf32=tf32, strict=strict,
        host_dispatch_us=host_dispatch(host_dispatch_us, host_profile, hardware_dir),
        weights=weights, group_size=group_size, kv_dtype=kv_dtype, devices=devices, tp=tp, pp=pp, dp=dp,
        microbatches=microbatches, ep=ep, **kw,
    )
    from dnnmap.report.estimate import comparison_costs

    costs = comparison_costs(cmp, _compared_profiles(hardware, hardware_dir), price_per_hour, seq_len)
    _emit(comparison_to_dict(cmp, costs), comparison_dataframe(cmp, costs), [render_compare(cmp, costs)],
          json_out, csv_out, force)
    if plot is not None:
        from dnnmap.report.plots import comparison_plots

        write_files_said(comparison_plots(cmp, plot), force=True)


def _compared_profiles(hardware: str, dirs: Any) -> dict[str, Any]:
    """Device name -> profile of every device ``compare`` mapped onto (for their prices)."""
    from dnnmap.hardware import list_profiles, load_profile

    ds = [str(d) for d in dirs or ()]
    names = [h.strip() for h in hardware.split(",") if h.strip()]
    profs = list_profiles(ds) if hardware == "all" else [load_profile(h, ds) for h in names]
    return {p.name: p for p in profs}




def host_dispatch(us: float | None, host_profile: str | None, dirs: Any) -> float | None:
    """The eager per-op host cost: given in us, or measured in a calibrated CPU profile."""
    if host_profile is None:
        return us
    if us is not None:
        raise DnnmapError("give --host-dispatch-us or --host-profile, not both")
    from dnnmap.hardware import load_profile

    prof = load_profile(host_profile, [str(d) for d in dirs or ()])
    cal = prof.calibration
    if cal is None or not cal.dispatch_us:
        raise DnnmapError(f"--host-profile {host_profile}: the profile has no measured per-op dispatch cost "
                          "(make one with: dnnmap calibrate --out my-cpu.yaml)")
    return cal.dispatch_us


def _emit(data: dict, frame: Any, renderables: list[Any], json_out: Path | None, csv_out: Path | None,
          force: bool) -> None:
    """JSON / CSV files when asked; the rich tables unless one of them went to stdout."""
    if json_out is not None:
        write_json(json_out, data, force)
    if csv_out is not None:
        write_text(csv_out, frame.to_csv(index=False), force)
    if "-" not in (str(json_out), str(csv_out)):
        for r in renderables:
            console.print(r)
