"""Mapping: fused subgraphs onto a device's units -> seconds and joules (the only place).

``map_partition(partition, profile, precision=..., batch=...) -> Estimate`` for one device,
``compare_partition(partition, profiles, ...) -> Comparison`` for many. One mapper per
device class (:mod:`.gpu`, :mod:`.cpu`, :mod:`.tpu`, :mod:`.kpu`) places each subgraph;
:mod:`.engine` turns a placement into physically named time terms; :mod:`.schedule` orders
the subgraphs and gives the end-to-end latency.
"""

from dnnmap.mapping.api import MAPPERS, Comparison, compare_partition, map_partition, map_works
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import Placement
from dnnmap.mapping.estimate import (
    Bound,
    Estimate,
    MemoryTraffic,
    Roofline,
    ScheduledSubgraph,
    SubgraphEstimate,
)
from dnnmap.mapping.workload import Work, workload

__all__ = [
    "MAPPERS",
    "Bound",
    "Comparison",
    "Device",
    "Estimate",
    "MemoryTraffic",
    "Placement",
    "Roofline",
    "ScheduledSubgraph",
    "SubgraphEstimate",
    "Work",
    "compare_partition",
    "map_partition",
    "map_works",
    "workload",
]
