"""The partition report: summary, subgraph table, JSON, and a Graphviz drawing.

Thin: every number comes from :mod:`dnnmap.fusion` and :mod:`dnnmap.concurrency`.

>>> from dnnmap.fusion import partition
>>> from dnnmap.concurrency import analyze
>>> from dnnmap.fusion.toy import residual_block
>>> p = partition(residual_block(), "compiler")
>>> d = partition_to_dict(p, analyze(p))
>>> d["summary"]["subgraphs"], d["summary"]["ops"]
(3, 10)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from dnnmap.concurrency import Concurrency
from dnnmap.errors import DnnmapError
from dnnmap.fusion import Parallelism, Partition, Subgraph, unfused_external_bytes


def partition_summary(p: Partition, c: Concurrency, unfused_bytes: int | None = None) -> dict[str, Any]:
    """Ops -> kernels, DRAM traffic before / after fusion, stages, width, critical path, AI."""
    base = unfused_external_bytes(p) if unfused_bytes is None else unfused_bytes
    weights = sum(s.weight_bytes for s in p.subgraphs)
    flops = p.total.flops
    ais = [s.arithmetic_intensity for s in p.subgraphs if s.external_bytes]
    views = sum(op.op_class.value == "view" for op in p.graph.ops)
    return {
        "model": p.graph.name,
        "strategy": p.strategy.value,
        "onchip_budget_bytes": p.meta.get("onchip_budget_bytes"),
        "ops": len(p.graph.ops),
        "view_ops": views,
        "subgraphs": len(p.subgraphs),
        "flops": flops,
        "unfused_bytes": base,
        "external_bytes": p.external_bytes,
        "weight_bytes": weights,
        "traffic_saved": 1 - p.external_bytes / base if base else 0.0,
        "stages": c.subgraphs.num_stages,
        "max_parallel": c.subgraphs.max_width,
        "critical_path_kernels": c.subgraphs.critical_path_flops.length,
        "critical_path_flops_share": c.subgraphs.critical_path_flops.share,
        "op_stages": c.ops.num_stages,
        "op_max_parallel": c.ops.max_width,
        "arithmetic_intensity": flops / p.external_bytes if p.external_bytes else 0.0,
        "mean_subgraph_ai": sum(ais) / len(ais) if ais else 0.0,
    }


def _parallelism(par: Parallelism) -> str:
    if par.gemm_m:
        b = f"{par.gemm_batch}x" if par.gemm_batch > 1 else ""
        return f"{b}{par.gemm_m}x{par.gemm_n}x{par.gemm_k}" + (" dw" if par.depthwise else "")
    return f"{par.output_elements} el"


def subgraph_row(s: Subgraph, stage: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "ops": len(s.op_ids),
        "op_class": s.op_class.value,
        "stage": stage,
        "flops": s.flops,
        "tensor_flops": s.cost.tensor_flops,
        "bytes_read": s.external_bytes_read,
        "bytes_written": s.external_bytes_written,
        "weight_bytes": s.weight_bytes,
        "internal_bytes": s.internal_bytes,
        "arithmetic_intensity": s.arithmetic_intensity,
        "parallelism": _parallelism(s.parallelism),
        "op_ids": list(s.op_ids),
        "inputs": list(s.inputs),
        "outputs": list(s.outputs),
        "modules": list(s.modules),
    }


def _stage_of(c: Concurrency) -> dict[Any, int]:
    return {n: k for k, stage in enumerate(c.subgraphs.stages) for n in stage}


def partition_to_dict(p: Partition, c: Concurrency, unfused_bytes: int | None = None) -> dict[str, Any]:
    """JSON-ready: summary, concurrency at both levels, every subgraph, edges, fusion log."""
    stage = _stage_of(c)
    return {
        "summary": partition_summary(p, c, unfused_bytes),
        "concurrency": c.to_dict(),
        "subgraphs": [subgraph_row(s, stage[s.id]) for s in p.subgraphs],
        "edges": [list(e) for e in p.edges],
        "fusion_log": {"fused": dict(p.meta.get("fused", {})), "refused": dict(p.meta.get("refused", {}))},
        "meta": dict(p.graph.meta),
    }


def render_partition(p: Partition, c: Concurrency, top: int | None = 60,
                     unfused_bytes: int | None = None) -> list[Any]:
    """Rich renderables for ``dnnmap partition``: summary, then the subgraph table."""
    from rich.table import Table

    from dnnmap.report.units import percent, si

    s = partition_summary(p, c, unfused_bytes)
    summary = Table(title=f"{s['model']} — partition ({s['strategy']})", show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    rows = (
        ("ATen ops -> subgraphs", f"{s['ops']} ({s['view_ops']} views) -> {s['subgraphs']}"),
        ("DRAM traffic unfused -> fused", f"{si(s['unfused_bytes'], 'B')} -> {si(s['external_bytes'], 'B')}"),
        ("traffic saved", percent(s["traffic_saved"])),
        ("  of which weights (read once per use)", si(s["weight_bytes"], "B")),
        ("stages / max parallel (subgraphs)", f"{s['stages']} / {s['max_parallel']}"),
        ("stages / max parallel (ops)", f"{s['op_stages']} / {s['op_max_parallel']}"),
        ("critical path (by FLOPs)", f"{s['critical_path_kernels']} kernels, {percent(s['critical_path_flops_share'])} of FLOPs"),
        ("arithmetic intensity (total / mean per kernel)", f"{s['arithmetic_intensity']:.1f} / {s['mean_subgraph_ai']:.1f} FLOP/B"),
    )
    if s["onchip_budget_bytes"]:
        rows = (*rows, ("on-chip budget", si(s["onchip_budget_bytes"], "B")))
    for label, value in rows:
        summary.add_row(label, value)
    stage = _stage_of(c)
    shown = p.subgraphs if top is None else p.subgraphs[:top]
    title = f"subgraphs ({len(p.subgraphs)}{'' if len(shown) == len(p.subgraphs) else f', first {len(shown)}'})"
    tbl = Table(title=title)
    for col in ("id", "name", "ops", "class", "stage", "FLOPs", "read B", "written B", "weights B", "AI", "parallelism"):
        tbl.add_column(col, justify="left" if col in ("name", "class", "parallelism") else "right", overflow="fold")
    for sg in shown:
        r = subgraph_row(sg, stage[sg.id])
        tbl.add_row(str(r["id"]), r["name"], str(r["ops"]), r["op_class"], str(r["stage"]), si(r["flops"]),
                    si(r["bytes_read"]), si(r["bytes_written"]), si(r["weight_bytes"]),
                    f"{r['arithmetic_intensity']:.1f}", r["parallelism"])
    return [summary, tbl]


# -- Graphviz -------------------------------------------------------------------------------------
def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(p: Partition) -> str:
    """Graphviz text: one cluster per subgraph holding its ops, op-level edges between them."""
    g = p.graph
    owner = p.subgraph_of()
    lines = [f"digraph {_q(g.name)} {{", "  rankdir=TB;", '  node [shape=box, fontsize=10, style=rounded];']
    for s in p.subgraphs:
        lines.append(f"  subgraph cluster_{s.id} {{")
        lines.append(f"    label={_q(f'#{s.id} {s.name}')}; style=filled; fillcolor=\"#f2f2f2\";")
        for o in s.op_ids:
            op = g.op(o)
            lines.append(f"    {_q(o)} [label={_q(op.target.removeprefix('aten.') + chr(10) + (op.module_path or '<root>'))}];")
        lines.append("  }")
    producer = {t: op.id for op in g.ops for t in op.outputs}
    for op in g.ops:
        for src in dict.fromkeys(producer[t] for t in op.inputs if t in producer):
            style = "" if owner[src] == owner[op.id] else " [color=\"#c0392b\", penwidth=1.5]"
            lines.append(f"  {_q(src)} -> {_q(op.id)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_paths(path: str | Path) -> list[Path]:
    """The files :func:`write_dot` writes for ``path``: ``x.dot`` (``x.svg`` names it too), and
    ``x.svg`` beside it when Graphviz's ``dot`` program is installed."""
    path = Path(path)
    dot_path = path.with_suffix(".dot") if path.suffix == ".svg" else path
    svg = [path.with_suffix(".svg")] if shutil.which("dot") is not None else []
    return [dot_path, *(s for s in svg if s != dot_path)]


def write_dot(p: Partition, path: str | Path, force: bool = False) -> list[Path]:
    """Write the files of :func:`dot_paths` (Graphviz text, + SVG rendered by ``dot``) through
    the one safe writer: nothing overwritten without ``force``, nothing partly written.
    Returns the files written."""
    from dnnmap.outputs import write_files

    paths = dot_paths(path)
    text = to_dot(p)
    files: dict[Path, str | bytes] = {paths[0]: text}
    dot = shutil.which("dot")
    if len(paths) > 1 and dot is not None:
        try:
            run = subprocess.run([dot, "-Tsvg"], input=text.encode(), check=True, capture_output=True, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise DnnmapError(f"dot could not render {paths[1]}: {e}") from None
        files[paths[1]] = run.stdout
    return write_files(files, force)
