"""How fast the host is now, against when its profile was calibrated.

A shared (virtual) host changes speed by itself: this 2-vCPU cloud VM's GEMM rate moves by
~20 % over minutes with nothing else running inside it, and its cache and DRAM bandwidth move
with its neighbours. A prediction priced by a calibration cannot know that; a validation can
measure it. ``dnnmap calibrate`` times two fixed yardsticks once a pass and stores their
medians (:func:`~dnnmap.calibrate.microbench.host_probes`): ``probe_gemm512_us`` (a 512^3 fp32
GEMM: the cores) and ``probe_copy64mib_us`` (a copy over 64 MiB: the memory system). Timing the
same yardsticks beside a measured run gives the host's speed relative to the calibration:
above 1, the host is faster now, and a faithful model predicts the work that yardstick stands
for too slow by about that factor.

This is a diagnostic reported next to errors; nothing here changes a prediction.

>>> speed_ratio(2000.0, [1000.0, 1250.0, 2500.0])
HostSpeed(median=1.6, low=0.8, high=2.0, samples=3)
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dnnmap.hardware.schema import HardwareProfile

# profile scalar -> what it stands for
YARDSTICKS = {"probe_gemm512_us": "compute", "probe_copy64mib_us": "memory"}


@dataclass(frozen=True)
class HostSpeed:
    """Calibrated yardstick time / the time now, over ``samples`` probes (above 1: faster now)."""

    median: float
    low: float
    high: float
    samples: int


def from_ratios(ratios: Sequence[float]) -> HostSpeed:
    """Median and range of speed ratios (calibrated time / time now).

    >>> from_ratios([1.1, 0.9, 1.0])
    HostSpeed(median=1.0, low=0.9, high=1.1, samples=3)
    """
    if not ratios:
        raise ValueError("from_ratios: no ratio")
    return HostSpeed(round(statistics.median(ratios), 4), round(min(ratios), 4), round(max(ratios), 4), len(ratios))


def speed_ratio(calibrated_us: float, now_us: Sequence[float]) -> HostSpeed:
    """Ratios of the calibrated time to each time ``now_us`` (the same yardstick, timed now)."""
    return from_ratios([calibrated_us / t for t in now_us if t > 0])


def calibrated_probes_us(profile: HardwareProfile) -> dict[str, float]:
    """The profile's calibrated yardstick times (us) by scalar name; empty when it has none
    (not calibrated, or calibrated before the yardsticks existed: 2026-12-02)."""
    cal = profile.calibration
    if cal is None:
        return {}
    return {k: v for k in YARDSTICKS if (v := cal.scalars.get(k)) is not None and v > 0}


def probe_now_us() -> dict[str, float]:
    """Time both yardsticks once now (~0.1 s of work): microseconds by scalar name."""
    from dnnmap.calibrate.microbench import PROBE_PREFIX, host_probes
    from dnnmap.calibrate.timing import CpuTimer

    return {f"probe_{p.name.removeprefix(PROBE_PREFIX)}_us": p.value * 1e6 for p in host_probes(CpuTimer())}


def host_speeds(calibrated: Mapping[str, float], samples: Sequence[Mapping[str, float]]) -> dict[str, HostSpeed]:
    """Per yardstick ("compute", "memory"): the host's speed against the calibration over
    ``samples`` (each one :func:`probe_now_us` result).

    >>> s = host_speeds({"probe_gemm512_us": 1000.0, "probe_copy64mib_us": 400.0},
    ...                 [{"probe_gemm512_us": 800.0, "probe_copy64mib_us": 500.0}])
    >>> s["compute"].median, s["memory"].median
    (1.25, 0.8)
    """
    return {label: speed_ratio(calibrated[key], [s[key] for s in samples if key in s])
            for key, label in YARDSTICKS.items() if key in calibrated and any(key in s for s in samples)}


def describe(speeds: Mapping[str, HostSpeed]) -> str:
    """One line for a report ("" when nothing was compared).

    >>> describe({"compute": HostSpeed(1.12, 1.05, 1.2, 3), "memory": HostSpeed(0.9, 0.85, 0.95, 3)})
    'host at 1.12x (compute) / 0.90x (memory) its calibrated speed (3 probes: 1.05-1.20x / 0.85-0.95x)'
    """
    if not speeds:
        return ""
    labels = list(speeds)
    n = max(s.samples for s in speeds.values())
    return (f"host at {' / '.join(f'{speeds[k].median:.2f}x ({k})' for k in labels)} its calibrated speed "
            f"({n} probes: {' / '.join(f'{speeds[k].low:.2f}-{speeds[k].high:.2f}x' for k in labels)})")


def host_line(profile: HardwareProfile, samples: Sequence[Mapping[str, float]]) -> str:
    """:func:`describe` of the host's speed against ``profile``'s calibration; "" if unknown."""
    cal = calibrated_probes_us(profile)
    return describe(host_speeds(cal, samples)) if cal and samples else ""
