"""Interpolate measured tables: linear in log(size), clamped at both ends. Pure functions.

A calibration table is a list of (size, value) points sorted by size (FLOPs of a GEMM,
bytes of a working set). Between two points the value is interpolated linearly in
``log(size)``, because sizes are swept geometrically; outside the table the nearest end
point's value is used (no extrapolation).

>>> pts = [(1e6, 0.2), (1e8, 0.6)]
>>> round(interpolate(pts, 1e7), 9)  # halfway in log10 (6 -> 7 -> 8): (0.2 + 0.6) / 2
0.4
>>> interpolate(pts, 1.0), interpolate(pts, 1e12)  # clamped
(0.2, 0.6)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from dnnmap.hardware.schema import (
    BandwidthPoint,
    Calibration,
    ConvKind,
    Precision,
    ShapePoint,
    ThroughputPoint,
)


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """Value at ``x`` of the table ``points`` (sizes > 0, strictly increasing)."""
    if not points:
        raise ValueError("interpolate: empty table")
    if x <= 0 or not math.isfinite(x):
        raise ValueError(f"interpolate: size must be a positive finite number, got {x}")
    xs = [p[0] for p in points]
    if any(v <= 0 for v in xs) or any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise ValueError("interpolate: sizes must be positive and strictly increasing")
    if x <= xs[0]:
        return float(points[0][1])
    if x >= xs[-1]:
        return float(points[-1][1])
    i = bisect.bisect_right(xs, x)  # xs[i-1] <= x < xs[i]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return y0 + t * (y1 - y0)


def throughput_at(points: Sequence[ThroughputPoint], flops: float) -> float:
    """Achieved TFLOPS for a kernel of ``flops`` FLOPs, from a measured table."""
    return interpolate([(p.flops, p.achieved_tflops) for p in points], flops)


def bandwidth_at(points: Sequence[BandwidthPoint], working_set_bytes: float) -> float:
    """Achieved GB/s for a working set of ``working_set_bytes``, from a measured table."""
    return interpolate([(p.working_set_bytes, p.achieved_gbps) for p in points], working_set_bytes)


def gemm_tflops(cal: Calibration, precision: Precision, flops: float) -> float | None:
    """Measured GEMM throughput at this size, or None when the precision was not measured."""
    pts = cal.gemm.get(precision)
    return throughput_at(pts, flops) if pts else None


def conv_tflops(cal: Calibration, kind: ConvKind, precision: Precision, flops: float) -> float | None:
    """Measured convolution throughput of ``kind`` at this size, or None when not measured."""
    pts = cal.conv.get(kind, {}).get(precision)
    return throughput_at(pts, flops) if pts else None


def efficiency(achieved_tflops: float, peak_tflops: float) -> float:
    """Fraction of peak, in (0, 1]: ``efficiency(0.5, 2.0) == 0.25``."""
    if peak_tflops <= 0 or achieved_tflops <= 0:
        raise ValueError("efficiency: achieved and peak must be positive")
    return min(1.0, achieved_tflops / peak_tflops)


# --- shape tables (added by the calibrate helper) ------------------------------------------------


def _bracket(axis: Sequence[float], x: float) -> tuple[int, int, float]:
    """(lower index, upper index, weight of upper) of ``x`` on a sorted axis, linear in log,
    clamped: ``_bracket([1, 4, 16], 8) == (1, 2, 0.5)``."""
    if x <= axis[0] or len(axis) == 1:
        return 0, 0, 0.0
    if x >= axis[-1]:
        return len(axis) - 1, len(axis) - 1, 0.0
    i = bisect.bisect_right(axis, x)
    lo, hi = axis[i - 1], axis[i]
    return i - 1, i, (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))


def shape_interpolate(points: Sequence[ShapePoint], m: float, n: float, k: float) -> float:
    """Achieved TFLOPS at GEMM shape (m, n, k) from a complete measured grid: multilinear in
    (log m, log n, log k) between the 8 surrounding grid points, clamped per axis at the edges
    (no extrapolation). At a grid point it returns that point's measurement.

    >>> pts = [ShapePoint(m=m, n=8, k=8, achieved_tflops=t) for m, t in ((1, 0.1), (100, 0.3))]
    >>> round(shape_interpolate(pts, 10, 8, 8), 9), shape_interpolate(pts, 1e6, 1, 1)
    (0.2, 0.3)
    """
    if not points:
        raise ValueError("shape_interpolate: empty table")
    if min(m, n, k) <= 0:
        raise ValueError(f"shape_interpolate: sizes must be positive, got {(m, n, k)}")
    table = {(p.m, p.n, p.k): p.achieved_tflops for p in points}
    axes = [sorted({key[i] for key in table}) for i in range(3)]
    brackets = [_bracket(ax, x) for ax, x in zip(axes, (m, n, k), strict=True)]
    total = 0.0
    for corner in range(8):
        weight, key = 1.0, []
        for axis, (lo, hi, t) in enumerate(brackets):
            upper = (corner >> axis) & 1
            weight *= t if upper else 1.0 - t
            key.append(axes[axis][hi if upper else lo])
        if weight > 0.0:
            total += weight * table[tuple(key)]
    return total


def gemm_shape_tflops(cal: Calibration, precision: Precision, m: int, n: int, k: int) -> float | None:
    """Measured GEMM throughput at shape (m, n, k), or None when that precision has no shape table."""
    pts = cal.gemm_shapes.get(precision)
    return shape_interpolate(pts, m, n, k) if pts else None


def conv_shape_tflops(cal: Calibration, kind: ConvKind, precision: Precision, m: int, n: int, k: int) -> float | None:
    """Measured conv throughput of ``kind`` at implicit-GEMM shape (m, n, k), or None."""
    pts = cal.conv_shapes.get(kind, {}).get(precision)
    return shape_interpolate(pts, m, n, k) if pts else None
