"""``dnnmap train MODEL --hardware H``: one training step, on one device or many."""

from __future__ import annotations

from typing import Annotated

import typer

from dnnmap.cli.common import (
    DevicesOpt,
    DpOpt,
    EpOpt,
    ForceOpt,
    JsonOpt,
    MicrobatchesOpt,
    PlanOpt,
    PlotOpt,
    PpOpt,
    TpOpt,
    check_plot,
    console,
    handle_errors,
    write_files_said,
    write_json,
)


def register(app: typer.Typer) -> None:
    app.command("train")(train)


@handle_errors
def train(
    model: Annotated[str, typer.Argument(help="Model name (resnet18, hf:gpt2, ...)")],
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Hardware profile name or YAML")],
    batch: Annotated[int, typer.Option("--batch", min=1, help="Global batch (samples per step)")] = 1,
    seq_len: Annotated[int | None, typer.Option("--seq-len", min=1)] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="none, sgd, adam, adamw")] = "adamw",
    precision: Annotated[str, typer.Option("--precision", help="fp32, or bf16 / fp16 mixed precision")] = "fp32",
    recompute: Annotated[str, typer.Option("--recompute", help="none, selective, full")] = "none",
    mode: Annotated[str, typer.Option("--mode", help="eager, compiled, cudagraph")] = "eager",
    attn_implementation: Annotated[str | None, typer.Option("--attn-implementation")] = None,
    tf32: Annotated[str, typer.Option("--tf32", help="default, on, off")] = "default",
    devices: DevicesOpt = None,
    dp: DpOpt = None,
    tp: TpOpt = 1,
    pp: PpOpt = 1,
    microbatches: MicrobatchesOpt = 1,
    zero: Annotated[int, typer.Option("--zero", min=0, max=3)] = 0,
    ep: EpOpt = None,
    plan: PlanOpt = None,
    plot: PlotOpt = None,
    json_out: JsonOpt = None,
    force: ForceOpt = False,
) -> None:
    """Predict one training step: forward / backward / optimizer / communication, throughput, MFU, memory."""
    check_plot(plot)  # before any work: the directory can be written
    from rich.table import Table

    from dnnmap.api import train as api_train

    out = api_train(model, hardware, batch=batch, seq_len=seq_len, optimizer=optimizer, precision=precision,
                    recompute=recompute, devices=devices, dp=dp, tp=tp, pp=pp, microbatches=microbatches, zero=zero,
                    ep=ep, plan=plan, mode=mode, attn_implementation=attn_implementation, tf32=tf32)
    ests = out if isinstance(out, list) else [out]
    if plot is not None:
        from dnnmap.report.plots import training_plots

        write_files_said(training_plots(ests, plot), force=True)
    if json_out is not None:
        write_json(json_out, {"results": [e.summary() for e in ests]}, force)  # one layout, one plan or many
        if str(json_out) == "-":
            return
    t = Table(title=f"training step: {model} on {ests[0].devices} x {hardware}")
    for col in ("plan", "step ms", "fwd ms", "bwd ms", "opt ms", "comm ms", "bubble ms", "samples/s", "tokens/s",
                "MFU", "peak GB", "fits"):
        t.add_column(col, justify="right")
    for e in ests:
        t.add_row(str(e.plan or "1 device"), f"{e.step_s * 1e3:.1f}", f"{e.forward_s * 1e3:.1f}",
                  f"{e.backward_s * 1e3:.1f}", f"{e.optimizer_s * 1e3:.1f}", f"{e.communication_s * 1e3:.1f}",
                  f"{e.bubble_s * 1e3:.1f}", f"{e.samples_per_s:.2f}",
                  f"{e.tokens_per_s:.0f}" if e.tokens_per_s else "-", f"{e.mfu:.1%}",
                  f"{e.memory.peak / 1e9:.2f}", "yes" if e.fits else "NO")
    console.print(t)
    m = ests[0].memory
    console.print(f"memory per device (GB): weights {m.weights / 1e9:.2f}, gradients {m.gradients / 1e9:.2f}, "
                  f"optimizer state {m.optimizer_state / 1e9:.2f}, saved activations {m.saved_activations / 1e9:.2f}, "
                  f"peak {m.peak / 1e9:.2f} of {ests[0].capacity_bytes / 1e9:.1f}", markup=False)
    for n in ests[0].notes:
        console.print(f"note: {n}", markup=False)
