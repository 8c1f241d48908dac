"""Every NeuSight GPU inference case: measured vs dnnmap (datasheet and imported kernel tables)
beside the published errors of NeuSight, Roofline and Habitat; writes docs/gpu-validation.md.

    .venv/bin/python benchmarks/bench_gpu.py              # all cases (~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_gpu.py --quick      # BERT-Large only, no file written

The measurements are NeuSight's (../shared/measurements/neusight, MIT licence): HF transformers
models, fp32 with TF32 off, eager attention, eager PyTorch (``-fusion``: torch.compile), CUDA
events, mean of the 5 fastest of 25 runs. Each case is predicted twice:

- **datasheet**: the GPU's profile as shipped (src/dnnmap/hardware/profiles), nothing measured;
- **imported**: the same profile plus the calibration tables ``dnnmap calibrate
  --from-measurements`` imports from the same GPU's NeuSight *kernel* microbenchmarks (GEMM, bmm,
  vector ops timed alone); no end-to-end number is used.

Nothing here is fitted to the end-to-end latencies.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dnnmap.calibrate.imports import import_profile
from dnnmap.errors import DnnmapError
from dnnmap.hardware import load_profile
from dnnmap.pipeline import Scenario, estimate_on, prepare
from dnnmap.validate.published import NEUSIGHT_GPUS, E2ERow, read_neusight
from dnnmap.validate.record import Summary, summarise

ROOT = Path(__file__).resolve().parents[1]
NEUSIGHT = ROOT.parent / "shared" / "measurements" / "neusight"
OUT = ROOT / "docs" / "gpu-validation.md"
COMMAND = ".venv/bin/python benchmarks/bench_gpu.py"
PEER_MODELS = {"BERT-Large": "bert_large", "GPT2-Large": "gpt2_large", "GPT3-XL": "gpt3_xl",
               "OPT-1.3B": "opt_13", "GPT3-2.7B": "gpt3_27", "SwitchTrans": "switchxl4"}
PEERS = ("NeuSight", "Roofline", "Habitat")
TARGETS = {("datasheet", "eager"): 0.15, ("datasheet", "compiled"): 0.20, ("imported", "eager"): 0.08}


@dataclass(frozen=True)
class Case:
    gpu: str  # NeuSight folder name
    profile: str
    model: str  # NeuSight model name
    seq: int
    batch: int
    mode: str
    measured_s: float
    datasheet_s: float
    imported_s: float
    bound: str
    estimated_share: float


def peer_errors(path: Path) -> dict[tuple[str, str, int], dict[str, float]]:
    """(GPU folder, model, batch) -> {peer: |error| %} from NeuSight's published table."""
    out: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    gpu, models, batches = "", [], []
    for row in csv.reader(path.open()):
        if not row or not any(row):
            continue
        if len(row) == 1 or not any(row[1:]):
            gpu = row[0].strip()
        elif row[0] == "Model":
            models, last = [], ""
            for cell in row[1:]:
                last = cell or last
                models.append(PEER_MODELS.get(last, last))
        elif row[0] == "Batch":
            batches = [int(b) for b in row[1:]]
        else:
            for m, b, v in zip(models, batches, row[1:], strict=False):
                if v.strip():
                    out[(gpu, m, b)][row[0]] = float(v)
    return out


def model_name(r: E2ERow) -> str:
    return r.label.split(" ")[0]


def run(rows: list[E2ERow], imported: dict[str, object]) -> list[Case]:
    """Prepare each model side once; map it onto the datasheet and the imported profile."""
    by_gpu = {v: k for k, v in NEUSIGHT_GPUS.items()}
    groups: dict[tuple, list[E2ERow]] = defaultdict(list)
    for r in rows:
        groups[(r.model, r.batch, r.seq_len, r.mode)].append(r)
    cases = []
    for (model, batch, seq, mode), rs in groups.items():
        t = time.perf_counter()
        s = Scenario(model, batch=batch, seq_len=seq, mode=mode, attn_implementation="eager", tf32="off")
        prep = prepare(s)
        for r in rs:
            ds = estimate_on(prep, r.device)
            im = estimate_on(prep, imported[r.device])
            cases.append(Case(by_gpu[r.device], r.device, model_name(r), seq, batch, mode, r.measured_s,
                              ds.latency_s, im.latency_s, ds.bound.value, ds.estimated_share))
            print(f"{by_gpu[r.device]:24s} {model_name(r):11s} s{seq:<5d} b{batch:<3d} {mode:9s} "
                  f"measured {r.measured_s * 1e3:9.1f} ms  datasheet {pct(ds.latency_s / r.measured_s - 1):>7s}  "
                  f"imported {pct(im.latency_s / r.measured_s - 1):>7s}", flush=True)
        print(f"  prepared {model.split('/')[-1]} b{batch} s{seq} {mode} in {time.perf_counter() - t:.1f} s",
              flush=True)
    return cases


def pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def fmt_summary(s: Summary) -> str:
    if not s.cases:
        return "| - | - | - | - | - |"
    rho = "-" if s.spearman != s.spearman else f"{s.spearman:.2f}"
    return (f"| {s.cases} | {100 * s.median_abs_error:.1f} % | {100 * s.mape:.1f} % | "
            f"{100 * s.within_10:.0f} % / {100 * s.within_20:.0f} % | {rho} | {pct(s.median_error)} |")


def summaries(cases: list[Case]) -> list[str]:
    lines = ["| GPU | mode | profile | cases | median abs error | MAPE | within 10 % / 20 % | Spearman | "
             "signed median | target |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    keys = sorted({(c.gpu, c.mode) for c in cases}) + [("all GPUs", "eager"), ("all GPUs", "compiled")]
    for gpu, mode in keys:
        sel = [c for c in cases if c.mode == mode and (gpu == "all GPUs" or c.gpu == gpu)]
        if not sel:
            continue
        for kind in ("datasheet", "imported"):
            s = summarise((c.measured_s, getattr(c, f"{kind}_s")) for c in sel)
            target = TARGETS.get((kind, mode))
            verdict = "-" if target is None else (
                f"<= {100 * target:.0f} %: {'met' if s.median_abs_error <= target else 'NOT met'}")
            lines.append(f"| {gpu} | {mode} | {kind} " + fmt_summary(s) + f" {verdict} |")
    return lines


def peers_summary(cases: list[Case], peers: dict) -> list[str]:
    """Median |error| over the cases every predictor reports (eager cases with a peer entry)."""
    lines = ["| GPU | cases | dnnmap datasheet | dnnmap imported | " + " | ".join(PEERS) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(PEERS)]
    gpus = sorted({c.gpu for c in cases}) + ["all GPUs"]
    for gpu in gpus:
        sel = [c for c in cases if c.mode == "eager" and (gpu == "all GPUs" or c.gpu == gpu)
               and all(p in peers.get((c.gpu, c.model, c.batch), {}) for p in PEERS)]
        if not sel:
            continue
        ds = statistics.median(abs(c.datasheet_s / c.measured_s - 1) * 100 for c in sel)
        im = statistics.median(abs(c.imported_s / c.measured_s - 1) * 100 for c in sel)
        ps = [statistics.median(peers[(c.gpu, c.model, c.batch)][p] for c in sel) for p in PEERS]
        lines.append(f"| {gpu} | {len(sel)} | {ds:.1f} % | {im:.1f} % | " + " | ".join(f"{p:.1f} %" for p in ps) + " |")
    return lines


def case_table(cases: list[Case], peers: dict) -> list[str]:
    lines = ["| GPU | model | seq | batch | mode | measured | datasheet | error | imported | error | bound | "
             "est. share | " + " | ".join(f"{p} abs err" for p in PEERS) + " |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|" + "---:|" * len(PEERS)]
    for c in sorted(cases, key=lambda c: (c.gpu, c.model, c.seq, c.batch, c.mode)):
        peer = peers.get((c.gpu, c.model, c.batch), {}) if c.mode == "eager" else {}
        cells = " | ".join(f"{peer[p]:.1f} %" if p in peer else "-" for p in PEERS)
        lines.append(
            f"| {c.gpu} | {c.model} | {c.seq} | {c.batch} | {c.mode} | {c.measured_s * 1e3:,.1f} ms | "
            f"{c.datasheet_s * 1e3:,.1f} ms | {pct(c.datasheet_s / c.measured_s - 1)} | {c.imported_s * 1e3:,.1f} ms | "
            f"{pct(c.imported_s / c.measured_s - 1)} | {c.bound} | {100 * c.estimated_share:.0f} % | {cells} |")
    return lines


INFORMED = """\
## Which cases informed which modelling choice

Nothing in the model is fitted to these end-to-end latencies; every constant is derived or cited
in the code or the profile. What these measurements *did* inform, and how:

- **Eager attention, BERT as a sequence classifier, TF32 off, fp32**: read from NeuSight's
  tracing code (../shared/measurements/README.md), so the scenarios here say
  `--attn-implementation eager --tf32 off` and BERT is built as `BertForSequenceClassification`.
  This is the *scenario*, not a model constant.
- **SIMT SGEMM tiles**: the kernel names in the kernel tables (`volta_sgemm_128x64_tn`,
  `ampere_sgemm_32x128_nn`, `maxwell_sgemm_64x64`, ...) name cuBLAS' tile family; the profiles'
  `gpu.simt_gemm_tiles` list those public kernel names' tiles. Their efficiency comes from the
  tiling (waves, fill, pipeline, schedulers fed, instruction issue), not from the tables.
- **Sustained clocks of power-limited parts** (T4, L4, A100 PCIe, H100 PCIe): the issue reported
  that a 70 W T4 cannot hold boost; the kernel tables agree (T4 SGEMM peaks at 5.4 of 8.1
  TFLOPS). The value in each profile is *not* read from the tables: it is an estimate from
  die-power scaling (power ~ f^2.5 from a same-die part that holds its clock at a known power),
  with the arithmetic in the profile's `sources`. P4 and P100 hold boost by that estimate.
- **Achievable DRAM bandwidth** (`memory.<dram>.efficiency`): from published STREAM-like
  measurements where the profile cites them (A100, V100, T4, P4), else estimated; never from the
  kernel tables here.
- **GEMM wave pipeline** (`mapping/gpu.py: wave_pipeline`): the K loop of each wave of blocks
  waits one DRAM latency for its first stage and writes its output tiles after the loop, not
  overlapped with that wave's math. Informed by the kernel tables' K ~ 64 bmm rows (eager
  attention's `Q @ K^T` shape: 0.55-0.6x the efficiency of long-K bmms on all five GPUs, where
  the earlier `k_iters / (k_iters + 2)` gave 0.8x) and by the per-op traces' attention bmms,
  which were predicted 1.5-2.5x too fast. Its constants are the sourced DRAM latency
  (`mapping/sm_terms.py`) and each profile's peak and bandwidth; nothing was fitted. Effect on
  this table, same run conditions (2026-12-01): all eager cases 10.4 % -> 8.1 % median |error|
  (A100 3.9 -> 4.6, V100 7.4 -> 5.3, P100 15.1 -> 13.6, T4 21.3 -> 18.6, P4 45.4 -> 42.9);
  compiled 1.9 -> 1.4 %.
- **Imported tables less their timing overhead** (`calibrate/imports.py: without_timing_floor`,
  docs/measurement-formats.md): read from the tables themselves (their floors: 20-50 us where
  the kernels take a few us), never from these end-to-end cases. Effect on the imported column,
  same run: all eager 14.6 -> 10.8 %, A100 8.4 -> 6.7 %, V100 12.0 -> 8.9 %, P100 16.6 -> 14.5 %,
  T4 32.4 -> 32.0 %, P4 33.3 -> 30.9 %. What remains is the tables running the same GEMMs slower
  than the end-to-end runs do (T4 4096x1024x4096: 10.4 ms in the table, 4.78 ms in the trace),
  most on the power-limited T4 and P4. On the V100 the table's GEMMs agree with the per-op
  trace (BERT-Large b8: 4096x4096x1024 2.94 ms imported, 2.98 ms traced; the layer's GEMMs
  8.7 vs 9.0 ms), but the trace's layer-0 ops sum to 12.1 ms where the end-to-end run spends
  at most 10.7 ms a layer (257 ms / 24): ops timed one at a time, tables and traces alike, run
  >= 11 % slower than inside a continuous run (diagnosis of 2026-12-01, nothing changed by it).
- **Shared-memory bandwidth of SIMT tiles** (`mapping/gpu.py: simt_smem`, 128 bytes a clock per
  SM from the CUDA programming guide): small per-thread tiles cannot be fed at the FFMA rate.
  Informed by the kernel names in the kernel tables: the model picked 32x32 tiles for 40 % of
  the >= 1 GFLOP GEMMs there, cuBLAS never as the dominant choice; now 1 %, and the tile edges
  agree with cuBLAS' kernel for 22 % of them (13 % before; `cuBLAS`' own heuristic is not
  modelled). Effect here: all eager 8.1 -> 7.8 %, A100 4.6 -> 3.3 %, compiled 1.4 -> 2.2 %.
- **A subgraph's dominant op is never a view when it holds a real op** (`fusion/build.py:
  _dominant`, 2026-12-02): a group such as `[view, view, cat]` or `[transpose, clone]` (no FLOPs
  anywhere) took the class and name of its first view and was priced as one; it is now priced as
  the copy it is. Found in a CPU decode step (the KV cache's `cat`, docs/llm.md); effect here:
  all eager 7.8 -> 7.9 %, A100 3.3 -> 3.5 %, V100 5.2 -> 5.4 %.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="BERT-Large only; print, write nothing")
    args = ap.parse_args()
    if not NEUSIGHT.is_dir():
        print(f"no measurements at {NEUSIGHT}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    rows, skipped = read_neusight(NEUSIGHT)
    if args.quick:
        rows = [r for r in rows if model_name(r) == "bert_large"]
    imported = {}
    for gpu, prof in NEUSIGHT_GPUS.items():
        if any(r.device == prof for r in rows):
            t = time.perf_counter()
            imported[prof] = import_profile(NEUSIGHT / "kernels", load_profile(prof), gpu=gpu)
            print(f"imported {gpu} kernel tables in {time.perf_counter() - t:.1f} s", flush=True)
    try:
        cases = run(rows, imported)
    except DnnmapError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    peers = peer_errors(NEUSIGHT / "peer_errors_inference.csv")
    body = summaries(cases)
    print("\n".join(body))
    if args.quick:
        return 0
    doc = [
        "# GPU validation: NeuSight's measurements",
        "",
        f"Made by `{COMMAND}` on {datetime.now(UTC):%Y-%m-%d} ({platform.machine()}, "
        f"{time.perf_counter() - t0:.0f} s). Every NeuSight inference case in "
        "`../shared/measurements/neusight` (eager and `-fusion` = torch.compile), fp32, TF32 off, eager "
        "attention. *datasheet*: the shipped profile; *imported*: the same profile with the same GPU's "
        "kernel microbenchmark tables imported (`dnnmap calibrate --from-measurements "
        "../shared/measurements/neusight/kernels --gpu <GPU> --base <profile>`). Peers: the published "
        "|error| of NeuSight, Roofline and Habitat on the same cases (`peer_errors_inference.csv`; "
        "eager cases only). The same numbers come from `dnnmap validate --measurements "
        "../shared/measurements/neusight` (datasheet) and `--hardware <imported.yaml>`.",
        "",
        "## Summary (targets from issue 8)",
        "",
        *body,
        "",
        "## Against the peers (median |error| over the eager cases each reports)",
        "",
        *peers_summary(cases, peers),
        "",
        "## Every case",
        "",
        "*bound*: what holds most of the datasheet prediction's time; *est. share*: share of the "
        "predicted kernel time whose bounding figure is estimated rather than sourced.",
        "",
        *case_table(cases, peers),
        "",
        INFORMED,
        "## Not covered",
        "",
        *[f"- {s}" for s in skipped],
        "",
    ]
    OUT.write_text("\n".join(doc))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
