"""``dnnmap generate MODEL --hardware H --prompt P --gen N --batch B[,B2,...]``: LLM generation."""

from __future__ import annotations

from typing import Annotated

import typer

from dnnmap.cli.common import (
    AttnOpt,
    DevicesOpt,
    DpOpt,
    EpOpt,
    ForceOpt,
    GroupSizeOpt,
    HostOpt,
    JsonOpt,
    KvDtypeOpt,
    MicrobatchesOpt,
    PlanOpt,
    PlotOpt,
    PpOpt,
    Tf32Opt,
    TpOpt,
    WeightsOpt,
    check_plot,
    console,
    handle_errors,
    write_files_said,
    write_json,
)
from dnnmap.errors import DnnmapError


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def _batches(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DnnmapError(f"--batch takes integers separated by commas (1,8,32), not {text!r}") from None
    if not out or min(out) < 1:
        raise DnnmapError(f"--batch values must be >= 1, got {text!r}")
    return out


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.2f}"


@handle_errors
def generate(
    model: Annotated[str, typer.Argument(help="A decoder: hf:llama-3-8b, hf:gpt2, hf:path/config.json")],
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Hardware profile name or YAML")],
    prompt: Annotated[int, typer.Option("--prompt", min=1, help="Prompt tokens per sequence")] = 512,
    gen: Annotated[int, typer.Option("--gen", min=1, help="Tokens generated per sequence")] = 128,
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes, comma separated: 1,8,32")] = "1",
    precision: Annotated[str, typer.Option("--precision", help="Activation / compute precision")] = "bf16",
    mode: Annotated[str, typer.Option("--mode", help="cudagraph (serving engines), compiled, eager (HF generate)")] = "cudagraph",
    weights: WeightsOpt = None,
    group_size: GroupSizeOpt = 128,
    kv_dtype: KvDtypeOpt = None,
    capacity_factor: Annotated[float | None, typer.Option("--capacity-factor", help="MoE expert capacity factor (default: dropless)")] = None,
    attn_implementation: AttnOpt = None,
    tf32: Tf32Opt = "default",
    host_dispatch_us: HostOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Also capture an inner point and compare with the fit")] = False,
    devices: DevicesOpt = None,
    tp: TpOpt = 1,
    pp: PpOpt = 1,
    dp: DpOpt = None,
    microbatches: MicrobatchesOpt = 1,
    ep: EpOpt = None,
    plan: PlanOpt = None,
    plot: PlotOpt = None,
    json_out: JsonOpt = None,
    force: ForceOpt = False,
) -> None:
    """Time to first token, time per output token, throughput and memory of LLM generation."""
    check_plot(plot)  # before any work: the directory can be written
    from rich.table import Table

    from dnnmap.api import generate as run

    r = run(model, hardware, prompt, gen, _batches(batch), precision=precision, mode=mode, weights=weights,
            group_size=group_size, kv_dtype=kv_dtype, capacity_factor=capacity_factor,
            attn_implementation=attn_implementation, tf32=tf32, host_dispatch_us=host_dispatch_us, check=check,
            devices=devices, tp=tp, pp=pp, dp=dp, microbatches=microbatches, ep=ep, plan=plan)
    plans = r if isinstance(r, list) else None
    r = plans[0] if plans else r
    if plot is not None:
        from dnnmap.report.plots import generation_plots

        write_files_said(generation_plots(r, plot), force=True)
    if json_out is not None:
        write_json(json_out, {**r.to_dict(), **({"plans": [_plan_row(p) for p in plans]} if plans else {})}, force)
        if str(json_out) == "-":
            _exit(r)
            return
    t = Table(title=f"generate: {model} on {r.device}, prompt {prompt}, {gen} new tokens, {r.precision}, {r.mode}")
    for col in ("batch", "TTFT ms", "TPOT start ms", "TPOT end ms", "end-to-end s", "out tok/s", "prefill",
                "decode", "memory GB", "fits"):
        t.add_column(col, justify="right")
    for row in r.rows:
        t.add_row(str(row.batch), _ms(row.ttft_s), _ms(row.tpot_start_s), _ms(row.tpot_end_s),
                  "-" if row.e2e_s is None else f"{row.e2e_s:.2f}",
                  "-" if row.tokens_per_s is None else f"{row.tokens_per_s:.0f}", row.prefill_bound or "-",
                  row.decode_bound or "-", f"{row.memory.total / 1e9:.1f}", "yes" if row.fits else "NO")
    console.print(t)
    m = r.rows[0].memory
    console.print(f"memory: weights {m.weights / 1e9:.2f} GB; KV cache {r.kv_bytes_per_token / 1e3:.1f} kB per token "
                  f"per sequence ({m.kv_cache / 1e9:.2f} GB at batch {r.rows[0].batch}, {prompt + gen} tokens); "
                  f"peak activations {m.activations / 1e9:.2f} GB; workspace {m.workspace / 1e9:.1f} GB; "
                  f"device {m.capacity / 1e9:.1f} GB", markup=False)
    console.print(f"largest batch that fits at {prompt + gen} tokens: {r.max_batch}", markup=False)
    if "parallel" in r.meta:
        rates = ", ".join(f"batch {row.batch}: {row.cluster_tokens_per_s:.0f}" for row in r.rows
                          if row.cluster_tokens_per_s)
        console.print(f"parallel {r.meta['parallel']}: latencies and memory are per device; decode tokens/s of "
                      f"all replicas with the pipeline kept full: {rates or '-'}", markup=False)
    for row in r.rows:
        if row.message:
            console.print(f"batch {row.batch}: {row.message}", markup=False)
    for n in r.notes:
        console.print(f"note: {n}", markup=False)
    if plans:
        console.print(_plans_table(plans, batch))
    _exit(r)


def _plan_row(r) -> dict:  # noqa: ANN001 - a GenerationReport of --plan auto
    row = r.rows[0]
    return {**r.meta["plan"], "ttft_s": row.ttft_s, "tpot_mean_s": row.tpot_mean_s, "e2e_s": row.e2e_s,
            "cluster_tokens_per_s": row.cluster_tokens_per_s, "memory_bytes": row.memory.total, "fits": row.fits}


def _plans_table(plans: list, batch: str):  # noqa: ANN202 - rich Table
    from rich.table import Table

    t = Table(title=f"--plan auto at batch {batch}: fastest end to end first (the first is detailed above)")
    for col in ("plan", "TTFT ms", "TPOT mean ms", "end-to-end s", "cluster tok/s", "memory GB / device"):
        t.add_column(col, justify="right")
    for p in plans:
        d = _plan_row(p)
        t.add_row(d["plan"], _ms(d["ttft_s"]), _ms(d["tpot_mean_s"]), f"{d['e2e_s']:.3f}",
                  f"{d['cluster_tokens_per_s']:.0f}" if d["cluster_tokens_per_s"] else "-", f"{d['memory_bytes'] / 1e9:.2f}")
    return t


def _exit(r) -> None:  # noqa: ANN001
    if not any(row.fits for row in r.rows):
        raise typer.Exit(1)
