"""The counting pass: annotate every op of a graph with its :class:`OpCost`.

Annotates, never mutates: returns a :class:`CountedGraph` holding the graph, a cost per
op id, and the coverage ledger of ops that had no rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dnnmap.costs.base import CostRuleError, OpCost, RuleContext
from dnnmap.costs.registry import Rule, rule_for
from dnnmap.errors import UnknownOpError
from dnnmap.ir import Graph, Op, OpClass


@dataclass(frozen=True)
class LedgerEntry:
    """An op kind with no cost rule: how often it ran and where."""

    target: str
    count: int
    modules: tuple[str, ...]


@dataclass(frozen=True)
class CoverageLedger:
    unknown: tuple[LedgerEntry, ...] = ()
    counted_ops: int = 0

    @property
    def complete(self) -> bool:
        return not self.unknown

    @property
    def unknown_ops(self) -> int:
        return sum(e.count for e in self.unknown)


@dataclass(frozen=True)
class CountedGraph:
    graph: Graph
    costs: Mapping[str, OpCost]  # op id -> cost
    ledger: CoverageLedger = field(default_factory=CoverageLedger)

    @property
    def total(self) -> OpCost:
        return sum(self.costs.values(), OpCost.zeros())

    def cost(self, op: Op | str) -> OpCost:
        return self.costs[op if isinstance(op, str) else op.id]

    def by_class(self) -> dict[OpClass, OpCost]:
        out: dict[OpClass, OpCost] = {}
        for op in self.graph.ops:
            out[op.op_class] = out.get(op.op_class, OpCost.zeros()) + self.costs[op.id]
        return out


def _apply(rule: Rule, graph: Graph, op: Op) -> OpCost:
    """Run one rule; shapes that contradict the op's schema become a CostRuleError naming the op."""
    try:
        return rule(RuleContext.of(graph, op))
    except CostRuleError:
        raise
    except (AssertionError, ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as e:
        shapes = ", ".join(str(graph.tensors[t].shape) for t in op.inputs if t in graph.tensors)
        raise CostRuleError(
            f"cannot cost {op.id} ({op.target}) in module {op.module_path or '<root>'}: "
            f"{type(e).__name__}: {e}; input shapes {shapes}"
        ) from e


def count_graph(graph: Graph, strict: bool = False) -> CountedGraph:
    """Apply the registered rule to every op; ops without one go to the ledger as zero.

    The zero is never silent: the ledger lists it and every report shows the ledger.
    """
    costs: dict[str, OpCost] = {}
    missing: dict[str, list[str]] = {}
    for op in graph.ops:
        rule = rule_for(op.target)
        if rule is None:
            missing.setdefault(op.target, []).append(op.module_path or "<root>")
            costs[op.id] = OpCost.zeros()
            continue
        costs[op.id] = _apply(rule, graph, op)
    entries = tuple(
        LedgerEntry(t, len(mods), tuple(dict.fromkeys(mods)))
        for t, mods in sorted(missing.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    )
    if strict and entries:
        listing = "; ".join(f"{e.target} x{e.count} in {', '.join(e.modules[:3])}" for e in entries)
        raise UnknownOpError(f"no cost rule for: {listing}")
    ledger = CoverageLedger(unknown=entries, counted_ops=len(graph.ops) - sum(len(m) for m in missing.values()))
    return CountedGraph(graph=graph, costs=costs, ledger=ledger)
