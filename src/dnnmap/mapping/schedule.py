"""Graph schedule: order the mapped subgraphs and find the end-to-end latency.

On a GPU the host and the device are two timelines (:func:`two_timelines`): the host issues
kernel ``i`` once it has spent that kernel's issue cost (eager PyTorch: the per-op dispatch
of each ATen op; compiled: one launch by the compiler's wrapper; a CUDA graph: nothing per
kernel after one graph launch), a kernel starts when it has been issued and the stream is
free, and the latency is the end of the device timeline. A chain of tiny kernels is then
host-bound at ``n x dispatch``; big kernels hide the host entirely.

One stream (the default) runs the subgraphs one after another in the partition's
topological order, so the latency is the plain sum. With ``streams > 1`` (only on devices
that run independent kernels side by side, GPUs) independent subgraphs may share the
device, conservatively:

- only subgraphs in the same dependency level (no path between them) run together, and a
  level starts when the previous one has finished (no overlap across levels);
- a group of co-running subgraphs has at most ``streams`` members and their allocated units
  must fit on the device side by side (sum of units <= device units);
- the group lasts at least as long as its longest member, as the sum of its members' memory
  times (they share the bandwidth), as its total compute work spread over the whole
  device, and as the sum of launch overheads (launches are issued one at a time).

So a concurrent schedule is never longer than the one-stream schedule, and never shorter
than what the shared bandwidth and compute allow.

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import residual_block
>>> from dnnmap.mapping import map_partition
>>> p = partition(residual_block())
>>> one = map_partition(p, "h100-sxm5", mode="cudagraph")
>>> four = map_partition(p, "h100-sxm5", streams=4, mode="cudagraph")
>>> four.latency_s <= one.latency_s
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dnnmap.mapping.estimate import ScheduledSubgraph, SubgraphEstimate


@dataclass(frozen=True, slots=True)
class Schedule:
    entries: tuple[ScheduledSubgraph, ...]
    latency_s: float
    streams: int
    host_s: float = 0.0  # host time spent issuing (two-timeline schedules)
    device_idle_s: float = 0.0  # device time spent waiting for the host to issue


def two_timelines(estimates: Sequence[SubgraphEstimate], issue_s: Sequence[float],
                  first_issue_s: float = 0.0) -> Schedule:
    """Host issues, device runs (see the module docstring); one stream.

    >>> from dnnmap.mapping.estimate import Bound, SubgraphEstimate
    >>> from dnnmap.ir import OpClass
    >>> def k(i, t):
    ...     return SubgraphEstimate(i, "k", OpClass.ELEMENTWISE, "SM", 1, 1, 1.0, 0.0, 0, 0, 0, 0, (), t, 0, 0,
    ...                             t, Bound.COMPUTE, 0, 0, 0, t, Bound.COMPUTE, "")
    >>> s = two_timelines([k(0, 1e-6), k(1, 1e-6), k(2, 1e-6)], [10e-6] * 3)  # host-bound chain
    >>> round(s.latency_s * 1e6, 6), round(s.device_idle_s * 1e6, 6)   # 3 x 10 us issue + the last 1 us kernel
    (31.0, 28.0)
    """
    host = first_issue_s
    end = 0.0
    idle = 0.0
    entries = []
    for e, cost in zip(estimates, issue_s, strict=True):
        host += cost
        start = max(host, end)
        idle += start - end
        entries.append(ScheduledSubgraph(e.subgraph_id, 0, start, start + e.latency_s))
        end = start + e.latency_s
    return Schedule(tuple(entries), end, 1, host_s=host, device_idle_s=idle)


def serial(estimates: Sequence[SubgraphEstimate]) -> Schedule:
    """One stream: each subgraph starts when the previous one finishes."""
    t = 0.0
    entries = []
    for e in estimates:
        entries.append(ScheduledSubgraph(e.subgraph_id, 0, t, t + e.latency_s))
        t += e.latency_s
    return Schedule(tuple(entries), t, 1)


def group_latency(group: Sequence[SubgraphEstimate]) -> float:
    """How long co-running subgraphs take together (see the module docstring)."""
    total_units = group[0].units_total
    return max(
        max(e.latency_s for e in group),
        sum(e.memory_s for e in group),
        sum(e.compute_s * e.units_allocated / total_units for e in group),
        sum(e.overhead_s for e in group),
    )


def _pack(level: list[SubgraphEstimate], streams: int) -> list[list[SubgraphEstimate]]:
    """First-fit decreasing by latency: groups of <= ``streams`` whose units fit the device."""
    groups: list[list[SubgraphEstimate]] = []
    for e in sorted(level, key=lambda x: -x.latency_s):
        for g in groups:
            if len(g) < streams and sum(x.units_allocated for x in g) + e.units_allocated <= e.units_total:
                g.append(e)
                break
        else:
            groups.append([e])
    return groups


def concurrent(
    estimates: Sequence[SubgraphEstimate], stages: Sequence[Sequence[int]], streams: int
) -> Schedule:
    """Stage by stage (``stages`` from :func:`dnnmap.concurrency.stages`: topological
    generations of subgraph ids); co-running groups as in the module docstring."""
    if streams <= 1 or len(estimates) <= 1:
        return serial(estimates)
    by_id = {e.subgraph_id: e for e in estimates}
    t = 0.0
    entries: dict[int, ScheduledSubgraph] = {}
    for stage in stages:
        for group in _pack([by_id[i] for i in stage if i in by_id], streams):
            span = group_latency(group)
            for stream, e in enumerate(group):
                entries[e.subgraph_id] = ScheduledSubgraph(e.subgraph_id, stream, t, t + span)
            t += span
    ordered = tuple(entries[e.subgraph_id] for e in estimates)
    return Schedule(ordered, t, streams)
