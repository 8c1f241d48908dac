"""Collectives priced by an alpha-beta model on the interconnect's topology.

With ``n`` devices, ``B`` bytes per device, per-direction link bandwidth ``bw`` and per-step
latency ``a`` (:class:`~dnnmap.hardware.interconnect.LinkLevel`):

- ring all-reduce: ``2 (n-1)/n * B / bw + 2 (n-1) * a`` (a reduce-scatter then an all-gather);
- tree all-reduce (double binary tree): ``2 (n-1)/n * B / bw + 2 ceil(log2 n) * a``;
- NVLS all-reduce (the switch reduces, NVLink SHARP): ``B / bw + 2 a``;
- all-gather / reduce-scatter (ring; ``B`` the full gathered size): ``(n-1)/n * B / bw + (n-1) * a``;
- all-to-all (pairwise; ``B`` what each device holds): ``(n-1)/n * B / bw + (n-1) * a``.

``algorithm="auto"`` takes the fastest the topology offers (tree / NVLS only on a switch).
A torus runs rings along each of its ``torus_dims`` axes at once, so its bandwidth term
divides by the axis count.

>>> from dnnmap.hardware.interconnect import LinkLevel
>>> lv = LinkLevel(name="node", technology="t", devices=8, bandwidth_gbps=100, latency_us=1, topology="ring")
>>> round(collective_s("all_reduce", 10**9, 4, lv, "ring") * 1e3, 4)  # 2*3/4 * 1e9/1e11 s + 6 us
15.006
"""

from __future__ import annotations

import math
from enum import StrEnum

from dnnmap.errors import DnnmapError
from dnnmap.hardware.interconnect import LinkLevel, Topology
from dnnmap.hardware.schema import HardwareProfile


class Collective(StrEnum):
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_TO_ALL = "all_to_all"
    SEND_RECV = "send_recv"


def _ring(n: int, nbytes: float, bw: float, a: float, passes: int) -> float:
    return passes * ((n - 1) / n * nbytes / bw + (n - 1) * a)


def collective_s(kind: Collective | str, nbytes: float, n: int, level: LinkLevel, algorithm: str = "auto") -> float:
    """Seconds for one collective of ``nbytes`` per device over ``n`` devices at ``level``."""
    kind = Collective(kind)
    if n <= 1 or nbytes <= 0:
        return 0.0
    axes = (level.torus_dims or 1) if level.topology is Topology.TORUS else 1
    bw = level.bandwidth_gbps * 1e9 * axes
    a = level.latency_us * 1e-6
    if kind is Collective.SEND_RECV:
        return nbytes / (level.bandwidth_gbps * 1e9) + a
    if kind in (Collective.ALL_GATHER, Collective.REDUCE_SCATTER, Collective.ALL_TO_ALL):
        return _ring(n, nbytes, bw, a, 1)
    options = {"ring": _ring(n, nbytes, bw, a, 2)}
    if level.topology is Topology.SWITCH:
        options["tree"] = 2 * (n - 1) / n * nbytes / bw + 2 * math.ceil(math.log2(n)) * a
        if level.nvls:
            options["nvls"] = nbytes / bw + 2 * a
    if algorithm == "auto":
        return min(options.values())
    if algorithm not in options:
        raise DnnmapError(f"{algorithm} all-reduce is not available on a {level.topology.value} interconnect "
                          f"({level.technology}); use {', '.join(options)}")
    return options[algorithm]


def level_for(profile: HardwareProfile, span: int) -> LinkLevel:
    """The link level a group spanning ``span`` consecutive devices communicates over."""
    ic = profile.interconnect
    if ic is None:
        raise DnnmapError(f"{profile.name} has no interconnect section: a multi-device plan needs one "
                          "(add 'interconnect:' to its hardware YAML)")
    lv = ic.level_for(span)
    if lv is None:
        raise DnnmapError(f"{profile.name}: {span} devices exceed the largest interconnect level "
                          f"({ic.levels[-1].devices} devices over {ic.levels[-1].technology})")
    return lv
