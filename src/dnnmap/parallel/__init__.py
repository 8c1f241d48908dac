"""Parallel plans on many devices: collectives on the interconnect, plans and their checks,
tensor-parallel sharding of the captured graph's work, 1F1B pipeline schedules.

>>> from dnnmap.parallel import ParallelPlan, collective_s
"""

from dnnmap.parallel.collectives import Collective, collective_s, level_for
from dnnmap.parallel.plan import ParallelPlan
from dnnmap.parallel.schedule import balance_stages, one_f_one_b
from dnnmap.parallel.sharding import is_tp_sharded, shard_works

__all__ = ["Collective", "ParallelPlan", "balance_stages", "collective_s", "is_tp_sharded", "level_for",
           "one_f_one_b", "shard_works"]
