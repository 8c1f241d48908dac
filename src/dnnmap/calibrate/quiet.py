"""Is the machine quiet enough to calibrate? The CPU time *other* processes took while we measured.

A calibration taken while another process loads the machine is wrong in a way nothing later
can see (DRAM 5.5 GB/s instead of 66: OpenMP threads wait for a descheduled peer). So every
pass of the microbenchmarks is watched: the machine's busy CPU time minus this process's own
(``psutil``), as a share of all CPUs over the pass. A disturbed pass is thrown away and run
again after waiting for the machine to go idle; a calibration with no undisturbed pass is
refused (or, when the user insists, written and marked as disturbed).

>>> m = FixedLoad([0.0, 0.6])
>>> m.start(); m.share(), m.share()
(0.0, 0.6)
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dnnmap.errors import DnnmapError


class LoadMeter(Protocol):
    """``start()`` begins an interval; ``share()`` is the share of all CPUs (0..1) that other
    processes used since then."""

    def start(self) -> None: ...

    def share(self) -> float: ...


class OtherProcessesLoad:
    """The real meter: system busy CPU seconds minus this process's, over wall time x CPUs."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._cpus = psutil.cpu_count() or os.cpu_count() or 1
        self.start()

    def _busy(self) -> tuple[float, float, float]:
        t = self._psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        mine = sum(self._me.cpu_times()[:2])  # user + system of every thread of this process
        return time.monotonic(), busy, mine

    def start(self) -> None:
        self._t0 = self._busy()

    def share(self) -> float:
        (w0, b0, m0), (w1, b1, m1) = self._t0, self._busy()
        wall = (w1 - w0) * self._cpus
        if wall <= 0:
            return 0.0
        return min(1.0, max(0.0, ((b1 - b0) - (m1 - m0)) / wall))


class FixedLoad:
    """A scripted meter for tests: ``share()`` returns the given values in turn (the last repeats)."""

    def __init__(self, shares: Sequence[float]) -> None:
        self.shares = list(shares) or [0.0]
        self.calls = 0

    def start(self) -> None:
        pass

    def share(self) -> float:
        v = self.shares[min(self.calls, len(self.shares) - 1)]
        self.calls += 1
        return v


@dataclass(frozen=True)
class LoadPolicy:
    """When a pass counts as disturbed, and how often it is retried."""

    max_share: float = 0.15  # other processes may use at most this share of all CPUs
    retries: int = 2  # extra passes run in place of disturbed ones
    idle_wait_s: float = 20.0  # before a retry, wait at most this long for the machine to go idle


class CalibrationDisturbedError(DnnmapError):
    """Other processes loaded the machine during every pass: the profile would be wrong."""


def disturbed_message(shares: Sequence[float], policy: LoadPolicy, cpus: int | None = None) -> str:
    """One sentence: how busy the machine was, pass by pass."""
    cpus = cpus or os.cpu_count() or 1
    seen = ", ".join(f"{100 * s:.0f} %" for s in shares)
    return (f"other processes used {seen} of the {cpus} CPUs during the calibration passes "
            f"(at most {100 * policy.max_share:.0f} % is quiet enough)")
