"""Capture benchmarks: (a) overhead over torch.export, (b) Llama-3-70B time and peak RSS,
(c) time against layer count. Prints tables and writes them into docs/capture.md.

Run:  .venv/bin/python benchmarks/bench_capture.py            (all three, ~3 minutes on 2 cores)
      .venv/bin/python benchmarks/bench_capture.py --no-write (print only)

(a) resnet50, batch 1, fp32, fake tensors, in one process after one warm-up of each:
    ``torch.export.export`` alone on a prebuilt fake model, versus ``capture()`` + ``count_graph``
    on the same prebuilt model, and versus ``capture("resnet50")`` + count from the name (which
    also builds the model). Median of ``--repeat`` runs. Target: capture + count <= 1.5x export.
(b) ``hf:llama-3-70b`` (80 layers) batch 1, seq 2048, bf16, captured and counted in a fresh
    subprocess; its peak RSS comes from ``os.wait4`` on that child alone. Targets: < 60 s, < 3 GB.
(c) the Llama-3-8B layer shape with 4, 16 and 64 layers (seq 2048, bf16), each in a fresh
    subprocess. Target: linear in layers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "capture.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
LAYERS = (4, 16, 64)


# -- child: one timed capture + count in a fresh process -------------------------------
def child(name: str, seq_len: int | None, dtype: str, out: str) -> None:
    t0 = time.perf_counter()
    import torch

    from dnnmap.capture import build_model
    from dnnmap.capture.export_path import _quiet_export, graph_from_exported
    from dnnmap.costs import count_graph

    t_import, cpu_import = time.perf_counter(), time.process_time()
    model, inputs = build_model(name, batch=1, seq_len=seq_len, dtype=dtype)
    t_build = time.perf_counter()
    with torch.no_grad(), _quiet_export():
        ep = torch.export.export(model, inputs, strict=False)
    t_export = time.perf_counter()
    g = graph_from_exported(ep, model, inputs, name)
    t_walk = time.perf_counter()
    counted = count_graph(g)
    t_count = time.perf_counter()
    res = {
        "import_s": t_import - t0, "build_s": t_build - t_import, "export_s": t_export - t_build,
        "walk_s": t_walk - t_export, "count_s": t_count - t_walk, "total_s": t_count - t0,
        "cpu_s": time.process_time() - cpu_import,  # this process's CPU time, imports excluded
        "nodes": len(ep.graph.nodes), "ops": len(g.ops), "params": g.num_params,
        "tensor_flops": counted.total.tensor_flops, "unknown_ops": counted.ledger.unknown_ops,
    }
    Path(out).write_text(json.dumps(res))


def run_child(name: str, seq_len: int | None, dtype: str) -> dict:
    """Run :func:`child` in a fresh interpreter; add its wall time and its own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "res.json")
        cmd = [sys.executable, __file__, "--child", name, "--dtype", dtype, "--out", out]
        if seq_len:
            cmd += ["--seq-len", str(seq_len)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"child {name} failed with status {status}")
        res = json.loads(Path(out).read_text())
    res["wall_s"] = wall
    res["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # Linux reports ru_maxrss in KiB
    return res


# -- (a) overhead over torch.export ------------------------------------------------------
def bench_overhead(repeat: int) -> dict:
    import torch

    from dnnmap.capture import build_model, capture
    from dnnmap.costs import count_graph

    model, inputs = build_model("resnet50")

    def export_only() -> None:
        with torch.no_grad():
            torch.export.export(model, inputs, strict=False)

    def capture_module() -> None:
        count_graph(capture(model, inputs=inputs))

    def capture_name() -> None:
        count_graph(capture("resnet50"))

    def build_export() -> None:
        m, x = build_model("resnet50")
        with torch.no_grad():
            torch.export.export(m, x, strict=False)

    runs = {"export": export_only, "capture_module": capture_module,
            "build_export": build_export, "capture_name": capture_name}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up: first-call initialisation in torch.export
        fn()
    for _ in range(repeat):  # interleaved so machine load affects all alike
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {**med, "ratio_module": med["capture_module"] / med["export"],
            "ratio_name": med["capture_name"] / med["build_export"], "repeat": repeat}


# -- (c) layers --------------------------------------------------------------------------
def layer_config(layers: int, folder: Path) -> str:
    """The bundled Llama-3-8B config with ``num_hidden_layers`` changed, as ``hf:<path>``."""
    from importlib import resources

    cfg = json.loads(resources.files("dnnmap.capture").joinpath("configs", "llama-3-8b.json").read_text())
    cfg["num_hidden_layers"] = layers
    path = folder / f"llama-{layers}L.json"
    path.write_text(json.dumps(cfg))
    return f"hf:{path}"


def table(rows: list[list[str]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--out")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.seq_len, args.dtype, args.out)

    sections = []
    a = bench_overhead(args.repeat)
    sections.append("**(a) resnet50, batch 1, fp32: capture + count vs `torch.export` alone** "
                    f"(median of {a['repeat']}, after a warm-up)\n\n" + table([
                        ["`torch.export.export` on a prebuilt fake model", f"{a['export']:.3f}", "1.00"],
                        ["`capture(model)` + `count_graph`, same prebuilt model", f"{a['capture_module']:.3f}",
                         f"{a['ratio_module']:.2f}"],
                        ['`build_model("resnet50")` + `torch.export.export`', f"{a['build_export']:.3f}", "1.00"],
                        ['`capture("resnet50")` + `count_graph` (builds the model too)', f"{a['capture_name']:.3f}",
                         f"{a['ratio_name']:.2f}"],
                    ], ["step", "seconds", "ratio to the export row above"]))
    print(sections[-1], "\n", flush=True)

    b = run_child("hf:llama-3-70b", 2048, "bf16")
    sections.append("**(b) Llama-3-70B (80 layers), batch 1, seq 2048, bf16, fresh process** "
                    "(targets: < 60 s, < 3 GB)\n\n" + table([[
                        f"{b['wall_s']:.1f}", f"{b['total_s'] - b['import_s']:.1f}", f"{b['cpu_s']:.1f}",
                        f"{b['build_s']:.1f}",
                        f"{b['export_s']:.1f}", f"{b['walk_s']:.2f}", f"{b['count_s']:.2f}", f"{b['peak_rss_gb']:.2f}",
                        f"{b['nodes']}", f"{b['ops']}", f"{b['params']:,}", f"{b['tensor_flops'] / 1e12:.1f}",
                        f"{b['unknown_ops']}"]],
                        ["process wall s", "build+capture+count s", "same, CPU s", "build s", "export s", "walk s", "count s",
                         "peak RSS GB", "graph nodes", "ops", "params", "tensor TFLOP", "ops without rule"]))
    print(sections[-1], "\n", flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in LAYERS:
            r = run_child(layer_config(n, Path(tmp)), 2048, "bf16")
            t = r["total_s"] - r["import_s"]
            rows.append([str(n), f"{t:.2f}", f"{r['cpu_s']:.2f}", f"{1000 * r['cpu_s'] / n:.0f}",
                         f"{r['export_s']:.2f}", f"{r['walk_s']:.3f}",
                         f"{r['count_s']:.3f}", str(r["ops"]), f"{r['peak_rss_gb']:.2f}"])
    t4, t16, t64 = (float(r[2]) for r in rows)  # CPU seconds: robust to other load on a shared machine
    line16 = t4 + (t64 - t4) * (LAYERS[1] - LAYERS[0]) / (LAYERS[2] - LAYERS[0])
    sections.append("**(c) time against layer count** (Llama-3-8B layer shape, seq 2048, bf16, fresh process "
                    "each; seconds exclude imports)\n\n" + table(
                        rows, ["layers", "build+capture+count s", "same, CPU s", "CPU ms / layer", "export s", "walk s", "count s",
                               "ops", "peak RSS GB"])
                    + f"\n\nLinearity check (CPU seconds): the straight line through {LAYERS[0]} and {LAYERS[2]} "
                    f"layers predicts {line16:.2f} s at {LAYERS[1]} layers; measured {t16:.2f} s "
                    f"({100 * (t16 / line16 - 1):+.0f} %).")
    print(sections[-1], flush=True)

    if not args.no_write:
        write_doc("\n\n".join(sections))


def write_doc(body: str) -> None:
    import platform

    import torch

    header = (f"Command: `.venv/bin/python benchmarks/bench_capture.py` — {time.strftime('%Y-%m-%d')}, "
              f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU cores "
              "(shared machine).")
    text = DOC.read_text() if DOC.exists() else f"# Capture\n\n## Benchmarks\n\n{START}\n{END}\n"
    block = f"{START}\n{header}\n\n{body}\n{END}"
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL)
    DOC.write_text(text)
    print(f"\nwrote {DOC}")


if __name__ == "__main__":
    main()
