"""Fusion: from ops to the kernels a compiler would launch.

``partition(counted, strategy)`` groups every op into exactly one :class:`Subgraph`; the
subgraph graph is acyclic. Strategies: ``unfused``, ``greedy``, ``compiler`` (default).

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import attention_block
>>> p = partition(attention_block(), "compiler")
>>> len(p.graph.ops), len(p.subgraphs)
(25, 5)
"""

from dnnmap.fusion.decide import (
    INDUCTOR_DEFAULT,
    FusionConfig,
    FusionContext,
    FusionDecision,
    GroupSummary,
    Pattern,
    Relation,
    should_fuse,
)
from dnnmap.fusion.kinds import FusionKind, fusion_kind
from dnnmap.fusion.partition import Parallelism, Partition, Strategy, Subgraph
from dnnmap.fusion.strategies import (
    parse_strategy,
    partition,
    traffic_saving,
    unfused_external_bytes,
)

__all__ = [
    "INDUCTOR_DEFAULT",
    "FusionConfig",
    "FusionContext",
    "FusionDecision",
    "FusionKind",
    "GroupSummary",
    "Parallelism",
    "Partition",
    "Pattern",
    "Relation",
    "Strategy",
    "Subgraph",
    "fusion_kind",
    "parse_strategy",
    "partition",
    "should_fuse",
    "traffic_saving",
    "unfused_external_bytes",
]
