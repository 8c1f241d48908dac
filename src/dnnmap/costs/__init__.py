"""Per-op cost rules (a registry) and the counting pass with its coverage ledger."""

from dnnmap.costs.base import CostRuleError, OpCost, RuleContext
from dnnmap.costs.count import (
    CountedGraph,
    CoverageLedger,
    LedgerEntry,
    UnknownOpError,
    count_graph,
)
from dnnmap.costs.registry import cost_rule, registered_ops, rule_for

__all__ = [
    "CostRuleError",
    "CountedGraph",
    "CoverageLedger",
    "LedgerEntry",
    "OpCost",
    "RuleContext",
    "UnknownOpError",
    "cost_rule",
    "count_graph",
    "registered_ops",
    "rule_for",
]
