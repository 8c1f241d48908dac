"""The count report: totals, per module (to a chosen depth), per op class, the ledger.

>>> from dnnmap.ir import Graph
>>> from dnnmap.costs import count_graph
>>> CountReport(count_graph(Graph("empty", {}, ()))).totals()["flops"]
0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from dnnmap.costs import CountedGraph, OpCost
from dnnmap.ir import OpClass

_COST_COLUMNS = (
    "flops",
    "tensor_flops",
    "vector_flops",
    "macs",
    "transcendentals",
    "bytes_read",
    "bytes_written",
    "weight_bytes",
)


@dataclass(frozen=True)
class CountReport:
    """What ``dnnmap.count`` returns: the counted graph plus the views a person reads."""

    counted: CountedGraph

    @property
    def graph(self):  # noqa: ANN201 - ir.Graph
        return self.counted.graph

    @property
    def total(self) -> OpCost:
        return self.counted.total

    @property
    def params(self) -> int:
        return self.graph.num_params

    @property
    def ledger(self):  # noqa: ANN201 - costs.CoverageLedger
        return self.counted.ledger

    def totals(self) -> dict[str, Any]:
        t = self.total
        by_class = self.counted.by_class()
        attention = by_class.get(OpClass.ATTENTION, OpCost.zeros())
        gemm_conv = sum(
            (by_class.get(c, OpCost.zeros()) for c in (OpClass.MATMUL, OpClass.CONV)), OpCost.zeros()
        )
        return {
            **t.to_dict(),
            "gemm_conv_flops": gemm_conv.tensor_flops,
            "attention_flops": attention.tensor_flops,
            "params": self.params,
            "ops": len(self.graph.ops),
            "unknown_ops": self.ledger.unknown_ops,
        }

    def to_dataframe(self) -> pd.DataFrame:
        """One row per op: id, target, class, module, and every cost column."""
        rows = []
        for op in self.graph.ops:
            c = self.counted.costs[op.id]
            rows.append(
                {
                    "op": op.id,
                    "target": op.target,
                    "op_class": op.op_class.value,
                    "module": op.module_path,
                    "module_type": op.module_type,
                    **{k: getattr(c, k) for k in _COST_COLUMNS},
                }
            )
        return pd.DataFrame(rows, columns=["op", "target", "op_class", "module", "module_type", *_COST_COLUMNS],
                            dtype=object)

    def per_module(self, depth: int = 1) -> pd.DataFrame:
        """Costs summed by module path cut to ``depth`` components (``layer1.0`` at depth 2)."""
        return self._sums("module", lambda op: ".".join(op.module_path.split(".")[:depth]) if op.module_path else "<root>")

    def per_class(self) -> pd.DataFrame:
        df = self._sums("op_class", lambda op: op.op_class.value)
        if df.empty:
            return df
        return df.sort_values("flops", ascending=False, kind="stable", key=lambda c: c.map(float)).reset_index(drop=True)

    def _sums(self, key: str, group: Any) -> pd.DataFrame:
        """Exact sums per group in Python integers: a pandas int64 sum wraps past 9.2e18
        (``llama-3-8b`` at batch 10**6 read "-3.3e18 B"); object columns keep every digit."""
        sums: dict[str, list[int]] = {}
        for op in self.graph.ops:
            c = self.counted.costs[op.id]
            row = sums.setdefault(group(op), [0] * (len(_COST_COLUMNS) + 1))
            row[0] += 1
            for i, k in enumerate(_COST_COLUMNS, 1):
                row[i] += getattr(c, k)
        rows = [{key: g, "ops": r[0], **dict(zip(_COST_COLUMNS, r[1:], strict=True))} for g, r in sums.items()]
        return pd.DataFrame(rows, columns=[key, "ops", *_COST_COLUMNS], dtype=object)

    def to_dict(self, depth: int = 1) -> dict[str, Any]:
        """JSON-ready: model meta, totals, per-class, per-module, ledger."""
        return {
            "model": self.graph.name,
            "meta": dict(self.graph.meta),
            "totals": self.totals(),
            "per_class": self.per_class().to_dict(orient="records"),
            "per_module": self.per_module(depth).to_dict(orient="records"),
            "ledger": [
                {"op": e.target, "count": e.count, "modules": list(e.modules)} for e in self.ledger.unknown
            ],
        }


def render_count(report: CountReport, depth: int = 1, top: int = 40) -> list[Any]:
    """Rich renderables for ``dnnmap count``: summary, per-class, per-module, ledger."""
    from rich.table import Table

    from dnnmap.report.units import si

    t = report.totals()
    meta = report.graph.meta
    summary = Table(title=f"{report.graph.name} — totals", show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for label, value in (
        ("capture path", f"{meta.get('capture_path', '?')}" + (f" (export: {short_reason(meta['fallback_reason'])})" if meta.get("fallback_reason") else "")),
        ("inputs", ", ".join(f"{s}" for s in meta.get("input_shapes", ())) + f"  {meta.get('dtype', '')}"),
        ("parameters", f"{t['params']:,} ({si(t['params'])})"),
        ("FLOPs (total)", si(t["flops"], "FLOP")),
        ("  GEMM + conv FLOPs", si(t["gemm_conv_flops"], "FLOP")),
        ("  attention FLOPs", si(t["attention_flops"], "FLOP")),
        ("  vector FLOPs", si(t["vector_flops"], "FLOP")),
        ("MACs (tensor ops)", si(t["macs"], "MAC")),
        ("bytes read / written", f"{si(t['bytes_read'], 'B')} / {si(t['bytes_written'], 'B')}"),
        ("ATen ops", f"{t['ops']:,}"),
        ("ops without a cost rule", f"{t['unknown_ops']}" + ("" if t["unknown_ops"] == 0 else "  (see ledger)")),
    ):
        summary.add_row(label, value)
    for note in assumed_notes(meta):
        summary.add_row("assumed", note)
    out: list[Any] = [summary]
    out.append(_frame_table(report.per_class(), "per op class", "op_class"))
    pm = report.per_module(depth)
    out.append(_frame_table(pm.head(top), f"per module (depth {depth}; {len(pm)} rows{', first ' + str(top) if len(pm) > top else ''})", "module"))
    out.append(render_ledger(report))
    return out


def short_reason(reason: str, width: int = 70) -> str:
    """Why export was left, in a few words (the whole torch message stays in the JSON)."""
    if "data-dependent" in reason or "GuardOnDataDependent" in reason:
        return "data-dependent control flow (a branch or size that depends on a tensor's value)"
    first = reason.split(". ")[0].split("\n")[0].strip()
    return first if len(first) <= width else first[: width - 1] + "…"


def assumed_notes(meta: dict[str, Any], limit: int = 3) -> list[str]:
    """Data-dependent values the capture had to assume (``x.item()`` -> 1.0, a branch taken),
    one short line each: the counts hold for that path only."""
    assumed = list(meta.get("assumed_values", ()))
    notes = []
    for a in assumed[:limit]:
        func, _, rest = a.partition(" in ")
        where, _, value = rest.rpartition(" -> ")
        op = func.removeprefix("aten.").split(".")[0]
        path, _, mtype = where.strip().partition(" (")
        path, mtype = path.strip("'"), mtype.rstrip(")")
        place = f"{path} ({mtype})" if path else (mtype or "the model")
        notes.append(f"{op}() in {place} taken as {value}; branches on it follow that value")
    if len(assumed) > limit:
        notes.append(f"... and {len(assumed) - limit} more (see meta.assumed_values in --json)")
    return notes


def render_ledger(report: CountReport) -> Any:
    from rich.table import Table
    from rich.text import Text

    if report.ledger.complete:
        return Text(f"coverage: every one of {len(report.graph.ops)} ops has a cost rule", style="green")
    tbl = Table(title="coverage ledger — ops without a cost rule (counted as 0, listed here)", title_style="bold red")
    for col in ("op", "count", "modules"):
        tbl.add_column(col)
    for e in report.ledger.unknown:
        tbl.add_row(e.target, str(e.count), ", ".join(e.modules[:4]) + (" …" if len(e.modules) > 4 else ""))
    return tbl


def _frame_table(df: pd.DataFrame, title: str, key: str) -> Any:
    from rich.table import Table

    from dnnmap.report.units import si

    tbl = Table(title=title)
    heads = (key, "ops", "FLOPs", "tensor FLOPs", "vector FLOPs", "read B", "written B")
    for c in heads:
        tbl.add_column(c, justify="left" if c == key else "right", overflow="fold")
    for r in df.to_dict(orient="records"):
        tbl.add_row(
            str(r[key]),
            str(r["ops"]),
            *(si(r[c]) for c in ("flops", "tensor_flops", "vector_flops", "bytes_read", "bytes_written")),
        )
    return tbl
