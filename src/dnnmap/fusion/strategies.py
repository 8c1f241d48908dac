"""The three strategies as sequences of proposals, and the ``partition`` entry point.

>>> from dnnmap.fusion.toy import residual_block
>>> g = residual_block()
>>> [len(partition(g, s).subgraphs) for s in ("unfused", "greedy", "compiler")]
[10, 4, 3]
"""

from __future__ import annotations

from dataclasses import asdict

from dnnmap.costs import CountedGraph, count_graph
from dnnmap.errors import DnnmapError, UnknownNameError
from dnnmap.fusion.build import build_partition
from dnnmap.fusion.decide import FusionConfig, Pattern, Relation
from dnnmap.fusion.fuser import Fuser
from dnnmap.fusion.kinds import GraphIndex
from dnnmap.fusion.partition import Partition, Strategy
from dnnmap.fusion.propose import (
    apply_group,
    attach_views,
    attention_cores,
    fold_dead,
    fuse_pairs,
    greedy_chains,
    horizontal_gemms,
    squeeze_excite,
)
from dnnmap.ir import Graph


def parse_strategy(strategy: str | Strategy) -> Strategy:
    if isinstance(strategy, Strategy):
        return strategy
    try:
        return Strategy(str(strategy).lower())
    except ValueError:
        raise UnknownNameError("strategy", str(strategy), [s.value for s in Strategy]) from None


def _compiler(f: Fuser) -> None:
    """Inductor / XLA order: whole patterns first, then rounds of pairwise fusion."""
    idx, cfg = f.index, f.config
    if cfg.attention_core:
        for ops in attention_cores(idx):
            apply_group(f, ops, Pattern.ATTENTION_CORE, Relation.VERTICAL)
    if cfg.squeeze_excite:
        for ops in squeeze_excite(idx):
            if apply_group(f, ops, Pattern.SQUEEZE_EXCITE, Relation.VERTICAL):
                f.seal(ops[0])
    if cfg.horizontal_gemm:
        for ops in horizontal_gemms(idx, f.static_gemms):
            apply_group(f, ops, Pattern.HORIZONTAL_GEMM, Relation.HORIZONTAL)
    fuse_pairs(f)
    fold_dead(f)


def partition(
    counted: CountedGraph | Graph,
    strategy: str | Strategy = "compiler",
    onchip_budget_bytes: int | None = None,
    config: FusionConfig | None = None,
) -> Partition:
    """Fuse the ops of ``counted`` into subgraphs (the kernels a compiler would launch).

    ``strategy``: ``unfused`` (one kernel per non-view op), ``greedy`` (classic sequential
    fusion) or ``compiler`` (Inductor / XLA-like, the default). ``onchip_budget_bytes``
    refuses any merge whose working set would not fit. A plain ``Graph`` is counted first.
    """
    if isinstance(counted, Graph):
        counted = count_graph(counted)
    strat = parse_strategy(strategy)
    if onchip_budget_bytes is not None and onchip_budget_bytes <= 0:
        raise DnnmapError(f"on-chip budget must be a positive number of bytes, got {onchip_budget_bytes}")
    index = GraphIndex(counted.graph)
    f = Fuser(index, strat, config, onchip_budget_bytes)
    if strat is Strategy.GREEDY:
        greedy_chains(f)
    elif strat is Strategy.COMPILER:
        _compiler(f)
    attach_views(f)
    groups = [list(f.state.members[r]) for r in f.state.roots()]
    meta = {
        "strategy": strat.value,
        "onchip_budget_bytes": onchip_budget_bytes,
        "config": asdict(f.config),
        "fused": dict(f.fused.most_common()),
        "refused": dict(f.refused.most_common()),
    }
    return build_partition(counted, index, groups, strat, meta)


def unfused_external_bytes(p: Partition) -> int:
    """DRAM traffic of the same graph with no fusion (the baseline of every saving)."""
    if p.strategy is Strategy.UNFUSED:
        return p.external_bytes
    return partition(p.counted, Strategy.UNFUSED).external_bytes


def traffic_saving(p: Partition) -> float:
    """Share of the unfused DRAM traffic that fusion removes (0.42 = 42 % less)."""
    base = unfused_external_bytes(p)
    return 1.0 - p.external_bytes / base if base else 0.0
