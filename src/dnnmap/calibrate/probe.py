"""How fast the host is now, against when its profile was calibrated.

A shared (virtual) host changes speed by itself: this 2-vCPU cloud VM's GEMM rate moves by
~20 % over minutes with nothing else running inside it. A prediction priced by a calibration
cannot know that; a validation can measure it. ``dnnmap calibrate`` times one fixed yardstick,
a 512^3 fp32 GEMM in a hot loop (:func:`~dnnmap.calibrate.microbench.host_probe`), once a pass
and stores the median as the scalar ``probe_gemm512_us``. Timing the same yardstick beside a
measured run gives the host's speed relative to the calibration: above 1, the host is faster
now and a faithful model predicts too slow by about that factor on compute-bound work.

This is a diagnostic reported next to errors; nothing here changes a prediction.

>>> speed_ratio(2000.0, [1000.0, 1250.0, 2500.0])
HostSpeed(median=1.6, low=0.8, high=2.0, samples=3)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from dnnmap.hardware.schema import HardwareProfile

PROBE_SCALAR = "probe_gemm512_us"


@dataclass(frozen=True)
class HostSpeed:
    """Calibrated probe time / probe time now, over ``samples`` probes (above 1: faster now)."""

    median: float
    low: float
    high: float
    samples: int

    def describe(self) -> str:
        """One line for a report.

        >>> HostSpeed(1.12, 1.05, 1.2, 3).describe()
        'host at 1.12x its calibrated speed (3 probes: 1.05x to 1.20x)'
        """
        return (f"host at {self.median:.2f}x its calibrated speed "
                f"({self.samples} probes: {self.low:.2f}x to {self.high:.2f}x)")


def calibrated_probe_us(profile: HardwareProfile) -> float | None:
    """The profile's calibrated yardstick time (us), or None (not calibrated, or calibrated
    before the probe existed: 2026-12-02)."""
    cal = profile.calibration
    v = cal.scalars.get(PROBE_SCALAR) if cal is not None else None
    return v if v is not None and v > 0 else None


def speed_ratio(calibrated_us: float, now_us: Sequence[float]) -> HostSpeed:
    """Ratios of the calibrated time to each time ``now_us`` (the same yardstick, timed now)."""
    ratios = [calibrated_us / t for t in now_us if t > 0]
    if not ratios:
        raise ValueError("speed_ratio: no positive probe time")
    return HostSpeed(round(statistics.median(ratios), 4), round(min(ratios), 4), round(max(ratios), 4), len(ratios))


def probe_now_us() -> float:
    """Time the yardstick once now (~50 ms of work), in microseconds."""
    from dnnmap.calibrate.microbench import host_probe
    from dnnmap.calibrate.timing import CpuTimer

    return host_probe(CpuTimer()).value * 1e6
