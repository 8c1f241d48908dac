"""Plots (matplotlib, Agg): roofline, schedule timeline, memory traffic, device comparison and
sweep curves. Each ``*_figure`` returns a Figure; :func:`render` turns figures into PNG and SVG
bytes (deterministic: no dates, fixed SVG ids), written by the CLI through ``dnnmap.outputs``.

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import residual_block
>>> from dnnmap.mapping import map_partition
>>> est = map_partition(partition(residual_block()), "h100-sxm5", precision="bf16")
>>> fig = roofline_figure(est)
>>> len(fig.axes[0].collections[0].get_offsets()) == len(est.subgraphs)
True
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dnnmap.hardware.schema import HardwareProfile, Precision  # noqa: E402
from dnnmap.mapping import Bound, Comparison, Estimate  # noqa: E402
from dnnmap.outputs import OutputFileError  # noqa: E402

BOUND_COLOURS = {Bound.COMPUTE.value: "#2ca02c", Bound.MEMORY.value: "#ff7f0e", Bound.OVERHEAD.value: "#d62728",
                 Bound.POWER.value: "#9467bd", Bound.HOST.value: "#8c564b"}
CLASS_COLOURS = {"cpu": "#1f77b4", "gpu": "#2ca02c", "tpu": "#ff7f0e", "kpu": "#9467bd"}
FORMATS = ("png", "svg")
plt.rcParams["svg.hashsalt"] = "dnnmap"  # stable element ids: the same plot gives the same file


def check_plot_dir(d: str | os.PathLike[str]) -> Path:
    """``d`` exists (created if missing) and a file can be written in it, or an error naming it."""
    p = Path(d)
    if p.exists() and not p.is_dir():
        raise OutputFileError(f"plot directory {p} is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dnnmap-probe.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputFileError(f"cannot write plots to {p}: {e.strerror or e}") from None
    return p


def slug(text: str) -> str:
    """A file-name-safe form of a model or device name: ``slug('hf:gpt2') == 'hf-gpt2'``; a
    user's ``dir/models.py:build`` is ``models-build``."""
    if ".py:" in text:
        file, _, fn = text.rpartition(":")
        text = f"{Path(file).stem}-{fn}"
    elif text.endswith(".json") and ":" in text:  # hf:dir/config.json -> hf-config
        text = f"{text.split(':', 1)[0]}-{Path(text).stem}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:80] or "model"


def render(figures: dict[str, Figure], directory: str | os.PathLike[str] | None = None,
           formats: Sequence[str] = FORMATS) -> dict[Path, bytes]:
    """``{stem: figure}`` -> ``{dir/stem.png: bytes, dir/stem.svg: bytes}`` (figures closed)."""
    out: dict[Path, bytes] = {}
    base = Path(directory) if directory is not None else Path()
    for stem, fig in figures.items():
        for fmt in formats:
            buf = io.BytesIO()
            meta = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(buf, format=fmt, dpi=110, metadata=meta, bbox_inches="tight")
            out[base / f"{stem}.{fmt}"] = buf.getvalue()
        plt.close(fig)
    return out


def svg_text(fig: Figure) -> str:
    """The figure as inline SVG markup (for the HTML report); the figure is closed."""
    data = render({"f": fig}, formats=("svg",))[Path("f.svg")].decode()
    return data[data.index("<svg"):]


# -- roofline -------------------------------------------------------------------------------------
def _ceilings(est: Estimate, profile: HardwareProfile | None) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(compute ceilings [(label, FLOP/s)], bandwidth ceilings [(label, B/s)])."""
    prec = est.precision
    if profile is None:
        return ([(f"peak {prec.value}", est.roofline.peak_flops)],
                [(est.roofline.memory_level, est.roofline.bandwidth)])
    peaks = [(f"matrix {prec.value}", (profile.peak(prec) or 0) * 1e12),
             (f"vector {prec.value}", (profile.vector_peak(prec) or 0) * 1e12)]
    if prec is not Precision.FP32 and profile.peak(Precision.FP32):
        peaks.append(("matrix fp32", profile.peak(Precision.FP32) * 1e12))
    bws = [(m.name, m.bandwidth_gbps * 1e9) for m in profile.memory]
    return [(label, v) for label, v in peaks if v > 0], bws


def roofline_points(est: Estimate) -> tuple[list[float], list[float], list[str], int]:
    """(intensity, achieved FLOP/s, bound) of every kernel with FLOPs and bytes; and how many
    kernels have neither a finite intensity nor FLOPs to place on log axes."""
    xs, ys, bounds = [], [], []
    for s in est.subgraphs:
        ai, ach = s.arithmetic_intensity, s.achieved_flops
        if s.flops > 0 and s.bytes > 0 and math.isfinite(ai) and ach > 0:
            xs.append(ai)
            ys.append(ach)
            bounds.append(s.bound.value)
    return xs, ys, bounds, len(est.subgraphs) - len(xs)


def roofline_figure(est: Estimate, profile: HardwareProfile | None = None) -> Figure:
    """Every kernel at (FLOPs per byte, achieved FLOP/s), coloured by what bounds it, under the
    device's ceilings: one compute line per peak (matrix / vector at the precision), one
    bandwidth line per memory level."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs, ys, bounds, hidden = roofline_points(est)
    ax.scatter(xs, ys, c=[BOUND_COLOURS.get(b, "grey") for b in bounds], s=22, alpha=0.8,
               edgecolors="black", linewidths=0.3, zorder=3)
    peaks, bws = _ceilings(est, profile)
    lo = min([*xs, 0.01]) / 2
    hi = max([*xs, max(p for _, p in peaks) / min(b for _, b in bws)]) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    top = max(p for _, p in peaks)
    for i, (name, bw) in enumerate(bws):
        ax.plot(grid, [min(top, x * bw) for x in grid], color=plt.cm.Blues(0.9 - 0.5 * i / max(1, len(bws))),
                lw=1.2, label=f"{name} {bw / 1e9:,.0f} GB/s")
    for i, (name, p) in enumerate(peaks):
        ax.axhline(p, color="black", ls=("-", "--", ":")[i % 3], lw=1, label=f"{name} {p / 1e12:,.1f} TFLOP/s")
    for b in sorted(set(bounds)):
        ax.scatter([], [], c=BOUND_COLOURS.get(b, "grey"), label=f"{b}-bound kernels", s=22)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(min([*ys, top]) / 5, top * 3)
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved FLOP/s")
    note = f", {hidden} without FLOPs or bytes not shown" if hidden else ""
    ax.set_title(f"{est.model} on {est.device} ({est.precision.value}, batch {est.batch}): "
                 f"{len(xs)} kernels{note}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    return fig


# -- timeline -------------------------------------------------------------------------------------
def timeline_figure(est: Estimate) -> Figure:
    """Host (kernel issue) and device streams over time, from ``Estimate.schedule``."""
    fig, ax = plt.subplots(figsize=(10, 2.8))
    by_id = {s.subgraph_id: s for s in est.subgraphs}
    streams = sorted({w.stream for w in est.schedule}) or [0]
    rows = {st: i for i, st in enumerate(streams)}
    host_row = len(streams)
    scale, unit = _time_unit(est.latency_s)
    t = 0.0
    for w in sorted(est.schedule, key=lambda w: w.start_s):
        s = by_id.get(w.subgraph_id)
        colour = BOUND_COLOURS.get(s.bound.value, "grey") if s else "grey"
        ax.broken_barh([(w.start_s * scale, (w.finish_s - w.start_s) * scale)], (rows[w.stream] - 0.4, 0.8),
                       facecolors=colour, edgecolors="black", linewidths=0.2)
        if s is not None and s.host_s > 0:  # the host issues kernels back to back
            ax.broken_barh([(t * scale, s.host_s * scale)], (host_row - 0.4, 0.8), facecolors="#7f7f7f",
                           edgecolors="white", linewidths=0.2)
            t += s.host_s
    labels = [f"device stream {st}" for st in streams] + (["host (issue)"] if t > 0 else [])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(f"time ({unit})")
    ax.set_xlim(0, max(est.latency_s, t) * scale * 1.02 or 1)
    ax.set_title(f"{est.model} on {est.device}: schedule, {len(est.subgraphs)} kernels, {est.mode} mode",
                 fontsize=10)
    return fig


def _time_unit(latency: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us")):
        if latency * scale >= 1:
            return scale, unit
    return 1e9, "ns"


# -- memory ---------------------------------------------------------------------------------------
def memory_figure(est: Estimate) -> Figure:
    """Bytes moved per memory level, split by the kernels' op class."""
    per: dict[str, dict[str, int]] = {}
    for s in est.subgraphs:
        for t in s.traffic:
            per.setdefault(t.level, {}).setdefault(s.op_class.value, 0)
            per[t.level][s.op_class.value] += t.bytes
    fig, ax = plt.subplots(figsize=(7, 3.5))
    levels = list(per)
    classes = sorted({c for d in per.values() for c in d})
    left = [0.0] * len(levels)
    for i, c in enumerate(classes):
        vals = [per[lv].get(c, 0) / 1e6 for lv in levels]
        ax.barh(levels, vals, left=left, label=c, color=plt.cm.tab10(i % 10))
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_xlabel("MB moved per inference")
    ax.set_title(f"{est.model} on {est.device}: bytes by memory level", fontsize=10)
    if classes:
        ax.legend(fontsize=7)
    return fig


# -- devices --------------------------------------------------------------------------------------
def comparison_figure(cmp: Comparison) -> Figure:
    """Latency, throughput and energy per inference, one bar per device (log scale)."""
    ests = list(cmp.estimates)
    names = [e.device for e in ests]
    fig, axes = plt.subplots(1, 3, figsize=(13, max(3.0, 0.28 * len(ests) + 1)), sharey=True)
    series = (("latency (s)", [e.latency_s for e in ests]), ("throughput (inferences/s)", [e.throughput for e in ests]),
              ("energy per inference (J)", [e.energy_j for e in ests]))
    colours = [CLASS_COLOURS.get(e.device_class, "grey") for e in ests]
    for ax, (label, vals) in zip(axes, series, strict=True):
        ax.barh(names, vals, color=colours)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.invert_yaxis() if ax is axes[0] else None
    for cls, colour in CLASS_COLOURS.items():
        if any(e.device_class == cls for e in ests):
            axes[-1].barh([], [], color=colour, label=cls)
    axes[-1].legend(fontsize=7, loc="lower right")
    first = ests[0]
    fig.suptitle(f"{first.model}: batch {first.batch}, {first.precision.value}, {first.mode}", fontsize=10)
    return fig


# -- sweeps ---------------------------------------------------------------------------------------
def sweep_figures(df: Any) -> dict[str, Figure]:
    """Per model: latency and throughput vs batch, one line per device (and precision / mode /
    sequence length when the sweep has several)."""
    ok = df[df["error"].isna() & df["latency_s"].notna()]
    figs: dict[str, Figure] = {}
    varying = [c for c in ("precision", "mode", "seq_len") if ok[c].nunique(dropna=False) > 1]
    for model, sub in ok.groupby("model", sort=False):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for key, line in sub.groupby(["device", *varying], sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            line = line.sort_values("batch")
            label = " ".join(str(k) for k in key)
            a1.plot(line["batch"], line["latency_s"], marker="o", ms=3, label=label)
            a2.plot(line["batch"], line["throughput_per_s"], marker="o", ms=3, label=label)
        for ax, ylabel in ((a1, "latency (s)"), (a2, "throughput (inferences/s)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.2)
        a2.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.suptitle(f"{model}: latency and throughput vs batch", fontsize=10)
        figs[f"sweep-{slug(str(model))}"] = fig
    return figs


# -- LLM generation -------------------------------------------------------------------------------
def _memory_bars(ax: Any, names: list[str], parts: dict[str, list[float]], capacity_gb: float, title: str) -> None:
    """Stacked bars of GB per part, one per name, and the device's capacity as a line."""
    bottom = [0.0] * len(names)
    for i, (label, vals) in enumerate(parts.items()):
        ax.bar(names, vals, bottom=bottom, label=label, color=plt.cm.tab10(i % 10))
        bottom = [a + b for a, b in zip(bottom, vals, strict=True)]
    ax.axhline(capacity_gb, color="black", ls="--", lw=1, label=f"device capacity {capacity_gb:,.1f} GB")
    ax.set_ylabel("GB per device")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def generation_figures(r: Any) -> dict[str, Figure]:
    """``dnnmap generate``: TTFT, TPOT (first and last token) and output tokens/s vs batch, and
    the memory of each batch (weights, KV cache, activations, workspace) against the device's."""
    stem = f"{slug(r.model)}-{slug(r.device)}-generate"
    ok = [row for row in r.rows if row.ttft_s is not None]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    bs = [row.batch for row in ok]
    a1.plot(bs, [row.ttft_s * 1e3 for row in ok], marker="o", label="TTFT")
    a1.plot(bs, [(row.tpot_start_s or 0) * 1e3 for row in ok], marker="s", label="TPOT, first token")
    a1.plot(bs, [(row.tpot_end_s or 0) * 1e3 for row in ok], marker="^", label="TPOT, last token")
    a1.set_ylabel("ms")
    a1.legend(fontsize=7)
    a2.plot(bs, [row.tokens_per_s or 0 for row in ok], marker="o", color="#2ca02c")
    a2.set_ylabel("output tokens/s")
    for ax in (a1, a2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.grid(True, which="both", alpha=0.2)
    fig.suptitle(f"{r.model} on {r.device}: prompt {r.prompt}, {r.gen} new tokens, {r.precision}, {r.mode}"
                 + (f" ({len(r.rows) - len(ok)} batch sizes that do not fit not shown)" if len(ok) < len(r.rows) else ""),
                 fontsize=10)
    mfig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(r.rows) + 3), 4))
    names = [f"batch {row.batch}" for row in r.rows]
    parts = {k: [getattr(row.memory, k) / 1e9 for row in r.rows]
             for k in ("weights", "kv_cache", "activations", "workspace")}
    _memory_bars(ax, names, {k.replace("_", " "): v for k, v in parts.items()}, r.rows[0].memory.capacity / 1e9,
                 f"{r.model} on {r.device}: memory at {r.prompt + r.gen} tokens")
    return {f"{stem}-latency": fig, f"{stem}-memory": mfig}


# -- training -------------------------------------------------------------------------------------
def training_figures(ests: Sequence[Any]) -> dict[str, Figure]:
    """``dnnmap train``: the step split into forward / backward / optimizer / communication /
    pipeline bubble, one bar per plan, and the memory per device against its capacity."""
    first = ests[0]
    stem = f"{slug(first.model)}-{slug(first.device)}-train"
    names = [str(e.plan or "1 device") for e in ests]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.4 * len(ests) + 1.5)))
    left = [0.0] * len(ests)
    for i, part in enumerate(("forward", "backward", "optimizer", "communication", "bubble")):
        vals = [getattr(e, f"{part}_s") * 1e3 for e in ests]
        ax.barh(names, vals, left=left, label=part, color=plt.cm.tab10(i))
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("ms per training step")
    ax.set_title(f"{first.model} on {first.devices} x {first.device}: batch {first.batch}, {first.precision}, "
                 f"{first.optimizer}", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    mfig, max_ = plt.subplots(figsize=(max(5.0, 0.9 * len(ests) + 3), 4))
    parts = {k.replace("_", " "): [getattr(e.memory, k) / 1e9 for e in ests]
             for k in ("weights", "gradients", "optimizer_state", "saved_activations")}
    parts["other (peak)"] = [max(0, e.memory.peak - e.memory.persistent - e.memory.saved_activations) / 1e9
                             for e in ests]
    _memory_bars(max_, names, parts, first.capacity_bytes / 1e9, f"{first.model}: memory per device at the peak")
    return {f"{stem}-step": fig, f"{stem}-memory": mfig}


# -- what each command writes ---------------------------------------------------------------------
def generation_plots(r: Any, directory: str | os.PathLike[str]) -> dict[Path, bytes]:
    return render(generation_figures(r), directory)


def training_plots(ests: Sequence[Any], directory: str | os.PathLike[str]) -> dict[Path, bytes]:
    return render(training_figures(ests), directory)


def estimate_plots(est: Estimate, directory: str | os.PathLike[str], profile: HardwareProfile | None = None) -> dict[Path, bytes]:
    stem = f"{slug(est.model)}-{slug(est.device)}"
    return render({f"{stem}-roofline": roofline_figure(est, profile), f"{stem}-timeline": timeline_figure(est),
                   f"{stem}-memory": memory_figure(est)}, directory)


def comparison_plots(cmp: Comparison, directory: str | os.PathLike[str]) -> dict[Path, bytes]:
    return render({f"{slug(cmp.estimates[0].model)}-devices": comparison_figure(cmp)}, directory)


def sweep_plots(df: Any, directory: str | os.PathLike[str]) -> dict[Path, bytes]:
    return render(sweep_figures(df), directory)


def files_named(paths: Iterable[Path]) -> list[str]:
    return sorted(p.name for p in paths)
