"""Interconnect levels of a device, as data: how it talks to its peers in a node and beyond.

Each level names its technology, how many devices it joins, the bandwidth **per device per
direction** (``bandwidth_gbps``, 10^9 bytes/s: what one device can send while it receives
as much — NVLink 4's 900 GB/s bidirectional is 450 here), the latency of one hop or step
(``latency_us``), and the topology that decides which collective algorithm reaches that
bandwidth: ``switch`` (NVSwitch, an InfiniBand fat tree: every pair at full bandwidth),
``ring``, ``torus`` (TPU ICI, ``torus_dims`` axes), ``pcie`` (peers through a PCIe switch /
host bridge). Levels go from nearest (``node``) to farthest (``cluster``).

>>> lvl = LinkLevel(name="node", technology="NVLink 4 + NVSwitch", devices=8, bandwidth_gbps=450,
...                 latency_us=2.0, topology="switch")
>>> Interconnect(levels=(lvl,)).level_for(8).name, Interconnect(levels=(lvl,)).level_for(16) is None
('node', True)
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from dnnmap.hardware.types import Count, NonNegative, Positive, _Strict


class Topology(StrEnum):
    SWITCH = "switch"
    RING = "ring"
    TORUS = "torus"
    PCIE = "pcie"


class LinkLevel(_Strict):
    name: str = Field(pattern=r"^(node|cluster)$")
    technology: str
    devices: Count  # devices this level joins (node: per node; cluster: the largest system)
    bandwidth_gbps: Positive  # per device, per direction
    latency_us: NonNegative  # per hop / algorithm step
    topology: Topology
    torus_dims: Count | None = None  # torus only: 2-D / 3-D
    nvls: bool = False  # NVLink SHARP: the switch reduces in the network (all-reduce in one pass)


class Interconnect(_Strict):
    levels: tuple[LinkLevel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Interconnect:
        names = [lv.name for lv in self.levels]
        if names != sorted(set(names), key=("node", "cluster").index):
            raise ValueError(f"interconnect levels must be node then cluster, each once: {names}")
        if any(a.devices > b.devices for a, b in zip(self.levels, self.levels[1:], strict=False)):
            raise ValueError("interconnect: a farther level cannot join fewer devices than a nearer one")
        return self

    def level_for(self, group: int) -> LinkLevel | None:
        """The nearest level that joins ``group`` devices (None when none does)."""
        return next((lv for lv in self.levels if lv.devices >= group), None)

    @property
    def node(self) -> LinkLevel:
        return self.levels[0]
