"""Fusion benchmark: kernels per strategy, DRAM traffic saved, concurrency, against the seed's
reference figures and against PyTorch Inductor on this CPU; Llama-3-70B partition time.

Run:  .venv/bin/python benchmarks/bench_fusion.py              (~6 minutes on 2 cores)
      .venv/bin/python benchmarks/bench_fusion.py --no-inductor --no-llama   (~1 minute)
      .venv/bin/python benchmarks/bench_fusion.py --no-write     (print only)

Writes the tables between the bench markers of docs/fusion.md. Every model is captured on
fake tensors at batch 1, fp32 (sequence 128 for BERT / GPT-2, 2048 for Llama), counted, and
partitioned by ``unfused``, ``greedy``, ``compiler`` and ``compiler`` with
``INDUCTOR_DEFAULT``. Inductor runs the real model (random weights, batch 1) under
``torch.compile`` on the CPU, once by default and once with ``freezing`` (weights folded as
constants, oneDNN post-op fusion): kernels are the calls in its generated code, bytes its
``metrics.num_bytes_accessed``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "fusion.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vit_b_16", "hf:bert-base-uncased")
BLOCKS = {  # transformer: regex picking the block index out of a kernel's module
    "vit_b_16": r"encoder_layer_(\d+)",
    "hf:bert-base-uncased": r"encoder\.layer\.(\d+)",
    "hf:gpt2": r"transformer\.h\.(\d+)",
    "hf:llama-3-8b": r"layers\.(\d+)",
}
INDUCTOR_MODELS = ("resnet18", "mobilenet_v2", "vit_b_16")  # ~25 s per compile here
# the seed's summary (000_4f1cabf001b236be.md), FX module-level graphs
SEED = {
    "resnet18": {"ops": 60, "greedy": 32, "saved": 0.196, "saved_mb": 19.2, "width": 12, "cp": 9},
    "mobilenet_v2": {"ops": 141, "greedy": 66, "saved": 0.420, "saved_mb": 51.1, "width": 12, "cp": 24},
    "efficientnet_b0": {"ops": 214, "width": 27, "cp": 13},
    "vit_b_16": {"saved": 0.45},
}
STRATEGIES = ("unfused", "greedy", "compiler")


@dataclass
class Row:
    model: str
    ops: int
    views: int
    kernels: dict[str, int] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)  # external bytes per strategy
    weights: int = 0  # weight bytes read (same for every strategy)
    distinct_saved: int = 0  # greedy saving counting each removed buffer once (the seed's way)
    op_stages: int = 0
    op_width: int = 0
    stages: int = 0  # compiler, subgraph level
    width: int = 0
    cp_kernels: int = 0
    cp_share: float = 0.0
    ai_total: float = 0.0
    ai_mean: float = 0.0
    per_block: str = ""
    seconds: float = 0.0  # compiler partition time

    def saved(self, s: str) -> float:
        return 1 - self.traffic[s] / self.traffic["unfused"]

    def act_saved(self, s: str) -> float:
        return 1 - (self.traffic[s] - self.weights) / (self.traffic["unfused"] - self.weights)


def _distinct(p) -> int:  # noqa: ANN001 - a Partition
    g = p.graph
    return sum(g.tensors[t].nbytes for t in {t for s in p.subgraphs for t in (*s.inputs, *s.outputs)})


def _per_block(p, pattern: str) -> str:  # noqa: ANN001
    per = Counter(int(m.group(1)) for s in p.subgraphs if (m := re.search(pattern, s.name.split(": ")[0])))
    counts = Counter(per.values())
    return ", ".join(f"{n} x {k}" for k, n in sorted(counts.items())) + " blocks"


def measure(name: str, batch: int = 1) -> Row:
    from dnnmap.capture import capture
    from dnnmap.concurrency import analyze
    from dnnmap.costs import count_graph
    from dnnmap.fusion import INDUCTOR_DEFAULT, partition

    c = count_graph(capture(name, batch=batch))
    row = Row(name, len(c.graph.ops), sum(op.op_class.value == "view" for op in c.graph.ops))
    parts = {}
    for s in STRATEGIES:
        t0 = time.perf_counter()
        parts[s] = partition(c, s)
        dt = time.perf_counter() - t0
        row.kernels[s], row.traffic[s] = len(parts[s].subgraphs), parts[s].external_bytes
    row.seconds = dt
    ind = partition(c, "compiler", config=INDUCTOR_DEFAULT)
    row.kernels["inductor-like"], row.traffic["inductor-like"] = len(ind.subgraphs), ind.external_bytes
    p = parts["compiler"]
    row.weights = sum(s.weight_bytes for s in p.subgraphs)
    row.distinct_saved = _distinct(parts["unfused"]) - _distinct(parts["greedy"])
    conc = analyze(p)
    row.op_stages, row.op_width = conc.ops.num_stages, conc.ops.max_width
    row.stages, row.width = conc.subgraphs.num_stages, conc.subgraphs.max_width
    row.cp_kernels = conc.subgraphs.critical_path_flops.length
    row.cp_share = conc.subgraphs.critical_path_flops.share
    row.ai_total = p.total.flops / p.external_bytes
    ais = [s.arithmetic_intensity for s in p.subgraphs if s.external_bytes]
    row.ai_mean = sum(ais) / len(ais)
    if name in BLOCKS:
        row.per_block = _per_block(p, BLOCKS[name])
    return row


# -- Inductor ground truth ------------------------------------------------------------------------
def inductor(name: str, freezing: bool) -> dict[str, object]:
    """Compile the real model with Inductor on the CPU. Kernels: the calls in the generated
    ``call()`` (library: ``extern_kernels.*`` / ``torch.ops.*``; generated: ``cpp_fused_*``).
    Bytes: ``metrics.num_bytes_accessed`` (Inductor's own sum over its scheduler nodes; with
    ``freezing`` the weights are constants and not counted)."""
    import torch
    import torchvision
    from torch._inductor import compile_fx, metrics
    from torch._inductor.utils import run_and_get_code

    torch._inductor.config.force_disable_caches = True  # a cache hit would skip the scheduler
    torch._inductor.config.freezing = freezing
    log = compile_fx.inductor_metrics_log  # num_bytes_accessed is only counted when this
    log.isEnabledFor = lambda level: True  # logger is on; switch it on without the log lines
    log.info = lambda *a, **k: None
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    torch._dynamo.reset()
    metrics.reset()
    t0 = time.perf_counter()
    with torch.no_grad():
        _, codes = run_and_get_code(torch.compile(model), x)
    seconds = time.perf_counter() - t0
    code = "\n".join(codes)
    body = code[code.index("def call("):]
    calls = re.findall(r"\n\s+(?:\w+ = )?((?:extern_kernels|torch\.ops)\.[\w.]+|cpp_fused_\w+)\(", body)
    generated = sum(c.startswith("cpp_fused") for c in calls)
    library = len(calls) - generated
    return {"library": library, "generated": generated, "kernels": library + generated,
            "bytes": metrics.num_bytes_accessed, "seconds": seconds,
            "library_ops": dict(Counter(c for c in calls if not c.startswith("cpp_fused")))}


def llama70b() -> dict[str, float]:
    from dnnmap.capture import capture
    from dnnmap.costs import count_graph
    from dnnmap.fusion import partition

    t0 = time.perf_counter()
    c = count_graph(capture("hf:llama-3-70b"))
    out: dict[str, float] = {"capture_count_s": time.perf_counter() - t0, "ops": len(c.graph.ops)}
    for s in STRATEGIES:
        t0 = time.perf_counter()
        p = partition(c, s)
        out[f"{s}_s"] = time.perf_counter() - t0
        out[f"{s}_kernels"] = len(p.subgraphs)
    return out


def synthetic(layers: int = 400) -> dict[str, float]:
    """A hand-built encoder stack of ``layers`` x 25 ops: partition time at 10,000 ops."""
    from dnnmap.costs import count_graph
    from dnnmap.fusion import partition
    from dnnmap.fusion.toy import encoder_stack

    c = count_graph(encoder_stack(layers))
    out: dict[str, float] = {"ops": len(c.graph.ops)}
    for s in STRATEGIES:
        t0 = time.perf_counter()
        out[f"{s}_kernels"] = len(partition(c, s).subgraphs)
        out[f"{s}_s"] = time.perf_counter() - t0
    return out


# -- tables ------------------------------------------------------------------------------------------
def _mb(b: float) -> str:
    return f"{b / 1e6:,.1f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def main_table(rows: list[Row]) -> str:
    head = ("| model | ATen ops (views) | kernels unfused / greedy / compiler | DRAM unfused MB | saved greedy | "
            "saved compiler | act. saved compiler | stages / max parallel (ops) | stages / max parallel (kernels) | "
            "critical path (kernels, FLOP share) | AI total / mean |\n|" + "---|" * 11)
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.ops} ({r.views}) | {r.kernels['unfused']} / {r.kernels['greedy']} / "
            f"{r.kernels['compiler']} | {_mb(r.traffic['unfused'])} | {_pct(r.saved('greedy'))} | "
            f"{_pct(r.saved('compiler'))} | {_pct(r.act_saved('compiler'))} | {r.op_stages} / {r.op_width} | "
            f"{r.stages} / {r.width} | {r.cp_kernels}, {_pct(r.cp_share)} | {r.ai_total:.1f} / {r.ai_mean:.1f} |"
        )
    return "\n".join(lines)


def seed_table(rows: dict[str, Row]) -> str:
    lines = ["| model | figure | seed (FX module level) | dnnmap (ATen level) |", "|---|---|---|---|"]
    for name, ref in SEED.items():
        r = rows[name]
        if "ops" in ref:
            lines.append(f"| {name} | ops | {ref['ops']} | {r.ops} ATen ({r.ops - r.views} non-view) |")
        if "greedy" in ref:
            lines.append(f"| {name} | greedy subgraphs | {ref['greedy']} | {r.kernels['greedy']} "
                         f"(compiler {r.kernels['compiler']}) |")
        if "saved_mb" in ref:
            lines.append(f"| {name} | traffic saved (greedy) | {ref['saved_mb']} MB, {_pct(ref['saved'])} | "
                         f"{_mb(r.traffic['unfused'] - r.traffic['greedy'])} MB, {_pct(r.saved('greedy'))}; "
                         f"each removed buffer once: {_mb(r.distinct_saved)} MB |")
        if "width" in ref:
            lines.append(f"| {name} | max parallel / critical path | {ref['width']} / {ref['cp']} | ops: "
                         f"{r.op_width} / {r.op_stages} stages; kernels: {r.width} / {r.stages} stages |")
        if name == "vit_b_16":
            lines.append(f"| vit_b_16 | attention-fusion saving | ~{_pct(ref['saved'])} (planned) | compiler: "
                         f"{_pct(r.saved('compiler'))} of all traffic, {_pct(r.act_saved('compiler'))} of "
                         "activation traffic (batch 1) |")
    return "\n".join(lines)


def inductor_table(rows: dict[str, Row], ind: dict[str, dict[bool, dict[str, object]]]) -> str:
    """One row per model: Inductor default and frozen, dnnmap inductor-like and compiler.
    Bytes "all / act." = with / without weights (a frozen Inductor does not count weights)."""
    lines = ["| model | Inductor default: kernels (library + generated), MB | Inductor freezing: kernels, MB | "
             "dnnmap inductor-like: kernels, MB all / act. | dnnmap compiler: kernels, MB all / act. |",
             "|" + "---|" * 5]
    for name, runs in ind.items():
        r = rows[name]
        cells = [f"{d['kernels']} ({d['library']} + {d['generated']}), {_mb(d['bytes'])}"
                 for d in (runs[False], runs[True])]
        cells += [f"{r.kernels[s]}, {_mb(r.traffic[s])} / {_mb(r.traffic[s] - r.weights)}"
                  for s in ("inductor-like", "compiler")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seconds = [f"{d['seconds']:.0f}" for runs in ind.values() for d in runs.values()]
    lines += ["", f"Compile times here: {', '.join(seconds)} s."]
    return "\n".join(lines)


def transformer_table(rows: list[Row], vit32: Row | None) -> str:
    lines = ["| model | compiler kernels per block | kernels | saved (all traffic) | saved (activations) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.per_block} | {r.kernels['compiler']} | {_pct(r.saved('compiler'))} | "
                     f"{_pct(r.act_saved('compiler'))} |")
    if vit32 is not None:
        lines.append(f"| vit_b_16, batch 32 | {vit32.per_block} | {vit32.kernels['compiler']} | "
                     f"{_pct(vit32.saved('compiler'))} | {_pct(vit32.act_saved('compiler'))} |")
    return "\n".join(lines)


def timing_table(llama: dict[str, float] | None, synth: dict[str, float]) -> str:
    cols = [("hf:llama-3-70b", llama)] if llama else []
    cols.append(("toy encoder stack (fusion.toy.encoder_stack(400))", synth))
    lines = ["| graph | ATen ops | " + " | ".join(f"{s}: kernels, s" for s in STRATEGIES) + " |",
             "|" + "---|" * (2 + len(STRATEGIES))]
    for label, d in cols:
        cells = [f"{int(d[f'{s}_kernels'])}, {d[f'{s}_s']:.2f}" for s in STRATEGIES]
        lines.append(f"| {label} | {int(d['ops'])} | " + " | ".join(cells) + " |")
    if llama:
        lines += ["", f"Llama-3-70B was captured and counted in {llama['capture_count_s']:.1f} s (seq 2048)."]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------------
def render(rows: list[Row], extra: list[Row], vit32: Row | None, ind: dict, llama: dict | None,
           synth: dict, command: str) -> str:
    import torch

    by_name = {r.model: r for r in [*rows, *extra]}
    parts = [
        f"Made by `{command}` (torch {torch.__version__}; batch 1, fp32, fake-tensor capture).", "",
        "### Per model (compiler = the default strategy)", "", main_table(rows), "",
        "### Beside the seed's reference figures", "", seed_table(by_name), "",
        "### Transformers: kernels per block", "",
        transformer_table([by_name[m] for m in BLOCKS if m in by_name], vit32), "",
    ]
    if ind:
        parts += ["### Ground truth: PyTorch Inductor on this CPU", "", inductor_table(by_name, ind), ""]
    parts += ["### Partition time on big graphs (target: < 5 s at ~10k ops)", "", timing_table(llama, synth), ""]
    return "\n".join(parts)


def write(block: str) -> None:
    text = DOC.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    DOC.write_text(text[:a] + "\n" + block + "\n" + text[b:])
    print(f"wrote {DOC}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-inductor", action="store_true", help="skip the Inductor compiles (~3 min)")
    ap.add_argument("--no-llama", action="store_true", help="skip Llama-3-70B (~40 s) and Llama-3-8B")
    ap.add_argument("--no-write", action="store_true", help=f"print only, do not update {DOC.name}")
    args = ap.parse_args()
    rows = []
    for name in MODELS:
        rows.append(measure(name))
        print(f"{name}: {rows[-1].kernels}  saved {_pct(rows[-1].saved('compiler'))}", flush=True)
    extra = [measure("hf:gpt2")] + ([] if args.no_llama else [measure("hf:llama-3-8b")])
    vit32 = measure("vit_b_16", batch=32)
    ind = {} if args.no_inductor else {m: {f: inductor(m, f) for f in (False, True)} for m in INDUCTOR_MODELS}
    llama = None if args.no_llama else llama70b()
    synth = synthetic()
    flags = " ".join(f"--{k.replace('_', '-')}" for k, v in vars(args).items() if v and k != "no_write")
    block = render(rows, extra, vit32, ind, llama, synth, f".venv/bin/python benchmarks/bench_fusion.py {flags}".rstrip())
    print(block)
    if not args.no_write:
        write(block)


if __name__ == "__main__":
    main()
