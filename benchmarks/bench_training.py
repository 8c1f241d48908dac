"""Training steps: measured vs predicted, and the plan search; writes docs/training.md.

(a) real training steps (forward + cross-entropy + backward + AdamW step) on this CPU vs the
    calibrated CPU profile (calibrated/<name>.yaml from ``dnnmap calibrate``: microbenchmarks
    only, no model was timed to make it);
(b) NeuSight's published training steps (fp32, TF32 off, eager attention, no optimizer
    step on one GPU; Megatron DP4 / TP4 / PP4 on 4 A100-SXM4-40GB) vs datasheet profiles;
(c) Llama-3-70B plan search over 64 H100s, timed.

    .venv/bin/python benchmarks/bench_training.py [--profile calibrated/cloud-x86-2c-measured.yaml]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dnnmap.capture import sources
from dnnmap.capture.train_path import _with_layers
from dnnmap.hardware import load_profile
from dnnmap.parallel import ParallelPlan
from dnnmap.pipeline import Scenario
from dnnmap.training import train_step
from dnnmap.training.multi import parallel_step
from dnnmap.training.search import search

ROOT = Path(__file__).resolve().parents[1]
NEUSIGHT = ROOT.parent / "shared" / "measurements" / "neusight" / "e2e"
CPU_CASES = [("resnet18", 4, None, None), ("resnet18", 8, None, None), ("mobilenet_v2", 8, None, None),
             ("mobilenet_v2", 16, None, None), ("hf:gpt2", 4, 128, 2), ("hf:gpt2", 8, 64, 2)]


def _real(name: str, batch: int, seq: int | None, layers: int | None):  # noqa: ANN202
    src = sources.resolve(name)
    if layers is not None:
        src = _with_layers(src, layers)
    torch.manual_seed(0)
    model = src.factory(torch.float32)
    model = (model[0] if isinstance(model, tuple) else model).train()
    x = sources.make_inputs(src, batch, None, seq, torch.float32, None, None)
    target = x[0].clone() if src.config is not None else torch.zeros(batch, dtype=torch.long)
    return model, x, target


def _step(model, x, target, opt) -> float:  # noqa: ANN001
    from dnnmap.capture.train_path import _loss

    t = time.perf_counter()
    loss = _loss(model(*x), target)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def measure_cpu(cases: list[tuple], rounds: int = 7) -> tuple[dict[tuple, tuple[float, float]], list[dict[str, float]]]:
    """(median step seconds, largest CPU share other processes took during a sample) per case:
    2 untimed warm-up steps per case, then ``rounds`` rounds over all the cases, an untimed and a
    timed step of each per round (a training loop runs its steps back to back: the untimed one
    puts the allocator back in this model's state), so a slow minute of this shared host lands
    on one sample of each case rather than on every sample of one. Also the host's yardstick
    (``dnnmap.calibrate.probe``) in us, timed before each round and after the last."""
    from dnnmap.calibrate.probe import probe_now_us
    from dnnmap.calibrate.quiet import OtherProcessesLoad

    setups = {}
    for c in cases:
        model, x, target = _real(*c)
        setups[c] = (model, x, target, torch.optim.AdamW(model.parameters(), lr=1e-4))
        for _ in range(2):
            _step(*setups[c])
    times: dict[tuple, list[float]] = {c: [] for c in cases}
    shares: dict[tuple, list[float]] = {c: [] for c in cases}
    probes = []
    for _ in range(rounds):
        probes.append(probe_now_us())
        for c in cases:
            _step(*setups[c])  # untimed: the allocator back in this model's state after the others ran
            meter = OtherProcessesLoad()
            times[c].append(_step(*setups[c]))
            shares[c].append(meter.share())
    probes.append(probe_now_us())
    return {c: (statistics.median(times[c]), max(shares[c])) for c in cases}, probes


def cpu_rows(profile: str) -> tuple[list[dict], str]:
    """The rows, and how fast the host ran against its calibration ("" if unknown)."""
    from dnnmap.calibrate.probe import host_line

    rows = []
    measured, probes = measure_cpu(CPU_CASES)
    host = host_line(load_profile(profile), probes)
    for c in CPU_CASES:
        name, batch, seq, layers = c
        meas, others = measured[c]
        s = Scenario(name, batch=batch, seq_len=seq, optimizer="adamw", mode="eager", layers=layers,
                     attn_implementation="sdpa" if seq else None)
        pred = train_step(s, profile).step_s
        rows.append({"case": f"{name} b{batch}" + (f" s{seq} {layers} layers" if seq else ""), "measured_ms": meas * 1e3,
                     "predicted_ms": pred * 1e3, "error": pred / meas - 1, "others": others})
    return rows, host


def neusight_rows() -> list[dict]:
    rows = []
    v100 = [("bert_large-train-512-2", "hf:bert-large-uncased@BertForPreTraining", 2, 512),
            ("bert_large-train-512-8", "hf:bert-large-uncased@BertForPreTraining", 8, 512),
            ("gpt2_large-train-1024-1", "hf:gpt2-large", 1, 1024)]
    for case, model, batch, seq in v100:
        meas = json.loads((NEUSIGHT / "Tesla_V100-PCIE-32GB" / f"{case}.json").read_text())["e2e_latency"] / 1e3
        s = Scenario(model, batch=batch, seq_len=seq, optimizer="none", mode="eager", attn_implementation="eager",
                     tf32="off")
        pred = train_step(s, "v100-pcie-32gb").step_s
        rows.append({"case": f"V100 {case}", "measured_ms": meas * 1e3, "predicted_ms": pred * 1e3,
                     "error": pred / meas - 1})
    s = Scenario("hf:gpt2-large", batch=4, seq_len=1024, optimizer="adamw", mode="eager",
                 attn_implementation="eager", tf32="off")
    for tag, plan in (("dp4", ParallelPlan(dp=4)), ("tp4", ParallelPlan(tp=4)), ("pp4_1", ParallelPlan(pp=4))):
        f = NEUSIGHT / "NVIDIA_A100-SXM4-40GB" / f"gpt2_large-train-1024-4-{tag}.json"
        meas = json.loads(f.read_text())["e2e_latency"] / 1e3
        pred = parallel_step(s, "a100-sxm4-40gb", plan).step_s
        rows.append({"case": f"4 x A100-SXM4 gpt2_large {tag}", "measured_ms": meas * 1e3, "predicted_ms": pred * 1e3,
                     "error": pred / meas - 1})
    return rows


def plan_search() -> tuple[float, list]:
    t = time.perf_counter()
    s = Scenario("hf:llama-3-70b", batch=64, seq_len=4096, optimizer="adamw", precision="bf16", amp="bf16",
                 mode="compiled", recompute="full")
    res = search(s, "h100-sxm5", 64)
    return time.perf_counter() - t, res


CPU_NOTE = [
    "What the calibration measures for training (since 2026-12-01), all microbenchmarks on generic shapes: "
    "`convolution_backward` (grad input + grad weight) on its own grid of dense 3x3, 1x1 and depthwise 3x3 / 5x5 "
    "convs (`conv_backward_shapes`; before, the forward conv tables priced it, at a GEMM shape misread from "
    "grad_output); the kernels a forward pass never runs (batch-norm with batch statistics, threshold / hardtanh / "
    "gelu / tanh backward, (log-)softmax backward, layer-norm backward, log-softmax), each timed at 5 sizes from "
    "0.2 to 6.4 MB a tensor and stored as an op-kind bandwidth table (they pass over their tensors several times, "
    "so they slow down once those outgrow the caches). The mapper also charges the first touch of every newly "
    "allocated output of 32 MiB or more (glibc maps such blocks afresh every time; PyTorch's CPU allocator does "
    "not cache) at the measured `fresh_page_us`: the logits, their gradients and AdamW's temporaries of GPT-2's "
    "154 MB embedding. Which runs informed which choice: one torch.profiler trace of a mobilenet_v2 b8 step and "
    "one of a GPT-2 step (diagnosis only) showed where the time went (backward convs, training batch-norm, ops "
    "on >= 32 MiB fresh tensors); no number was fitted to them or to the rows above. The previous version of this "
    "table (profile measured on an earlier host of this machine, a Zen 2 EPYC; now a Zen 4 EPYC) had median "
    "|error| 17.6 %: mobilenet_v2 -39 % / -49 %, GPT-2 -18 % / -17 %, resnet18 -6 % / +0 %.",
]


def _table(rows: list[dict]) -> list[str]:
    others = any("others" in r for r in rows)
    out = ["| case | measured ms | predicted ms | error |" + (" others |" if others else ""),
           "|---|---:|---:|---:|" + ("---:|" if others else "")]
    out += [f"| {r['case']} | {r['measured_ms']:.1f} | {r['predicted_ms']:.1f} | {r['error']:+.1%} |"
            + (f" {r['others']:.0%} |" if "others" in r else "") for r in rows]
    med = statistics.median(abs(r["error"]) for r in rows)
    out.append(f"\nmedian |error| {med:.1%}, max {max(abs(r['error']) for r in rows):.1%}")
    return out


NOTES_START, NOTES_END = "<!-- notes: kept by bench_training.py -->", "<!-- /notes -->"


def _kept_notes(doc: Path) -> list[str]:
    """The hand-written block between the notes markers of the existing ``doc`` (the runs of the
    day, what was diagnosed), kept when the file is regenerated; the bare markers if none."""
    text = doc.read_text() if doc.exists() else ""
    if NOTES_START in text and NOTES_END in text:
        start = text.index(NOTES_START)
        block = text[start:text.index(NOTES_END, start) + len(NOTES_END)]
        return [*block.split("\n"), ""]
    return [NOTES_START, NOTES_END, ""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default=str(ROOT / "calibrated" / "cloud-x86-2c-measured.yaml"))
    args = ap.parse_args()
    cpu, host = cpu_rows(args.profile)
    ns = neusight_rows()
    secs, plans = plan_search()
    lines = ["# Training steps: measured vs predicted", "",
             "Regenerate: `.venv/bin/python benchmarks/bench_training.py` (writes this file).", "",
             f"## (a) This CPU ({load_profile(args.profile).display_name}), calibrated profile, eager PyTorch", "",
             "forward + cross-entropy + backward + AdamW (per-tensor loop, CPU default); 2 warm-up steps per case, then "
             "7 rounds over the 6 cases (per round, an untimed then a timed step of each), median per case.",
             "The profile comes from `dnnmap calibrate` microbenchmarks only; no training step informed it. "
             "`others`: the share of the 2 CPUs other processes used while the case was timed.", "",
             *_table(cpu), *([f"{host} (yardsticks: a 512^3 GEMM and a 64 MiB copy, `dnnmap.calibrate.probe`)"] if host else []), "",
             *_kept_notes(ROOT / "docs" / "training.md"), *CPU_NOTE, "",
             "## (b) NeuSight training labels (fp32, TF32 off, eager attention), datasheet profiles", "",
             "Single V100: forward + loss + backward, no optimizer step. 4 x A100-SXM4-40GB: Megatron-LM GPT2-Large, "
             "global batch 4, AdamW step assumed, NVLink 3 + NVSwitch from the profile's interconnect section.", "",
             *_table(ns), "",
             "Which cases informed which choices: the DP4 / TP4 / PP4 cases were looked at while choosing to put the "
             "tensor-parallel all-reduces on the critical path (Megatron does not overlap them) and to count the "
             "optimizer step in the Megatron rows; nothing was fitted to them. The V100 rows informed nothing.", "",
             "## (c) Llama-3-70B plan search, 64 x H100 SXM5 (bf16 AMP, seq 4096, global batch 64, full recompute)", "",
             f"search time: {secs:.1f} s on this machine", "",
             "| plan | step s | MFU | peak GB / device |", "|---|---:|---:|---:|",
             *[f"| {e.plan} | {e.step_s:.2f} | {e.mfu:.1%} | {e.memory.peak / 1e9:.1f} |" for e in plans]]
    (ROOT / "docs" / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
