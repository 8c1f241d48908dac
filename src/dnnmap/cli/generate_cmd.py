"""``dnnmap generate MODEL --hardware H --prompt P --gen N --batch B[,B2,...]``: LLM generation."""

from __future__ import annotations

from typing import Annotated

import typer

from dnnmap.cli.common import (
    AttnOpt,
    ForceOpt,
    GroupSizeOpt,
    HostOpt,
    JsonOpt,
    KvDtypeOpt,
    PlotOpt,
    Tf32Opt,
    WeightsOpt,
    check_plot,
    console,
    handle_errors,
    write_files_said,
    write_json,
)
from dnnmap.errors import DnnmapError

DevicesOpt = Annotated[int | None, typer.Option("--devices", min=1, help="Devices (default dp x tp x pp)")]
TpOpt = Annotated[int, typer.Option("--tp", min=1, help="Tensor-parallel degree (Megatron; all-reduces on the "
                                    "profile's interconnect)")]
PpOpt = Annotated[int, typer.Option("--pp", min=1, help="Pipeline stages, balanced by predicted time")]
DpOpt = Annotated[int | None, typer.Option("--dp", min=1, help="Replicas (default: devices / (tp x pp)); "
                                           "throughput x dp")]


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
            devices=devices, tp=tp, pp=pp, dp=dp)
    if plot is not None:
        from dnnmap.report.plots import generation_plots

        write_files_said(generation_plots(r, plot), force=True)
    if json_out is not None:
        write_json(json_out, r.to_dict(), force)
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
    _exit(r)


def _exit(r) -> None:  # noqa: ANN001
    if not any(row.fits for row in r.rows):
        raise typer.Exit(1)
