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

from dnnmap.hardware.calibration import BatchedShapePoint
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


def shape_interpolate(points: Sequence[ShapePoint], m: float, n: float, k: float, *,
                      fixed_s: float | None = None) -> float:
    """Achieved TFLOPS at GEMM shape (m, n, k) from a complete measured grid: multilinear in
    (log m, log n, log k) between the 8 surrounding grid points, clamped per axis at the edges
    (no extrapolation). At a grid point it returns that point's measurement, except that with
    ``fixed_s`` (the per-call cost the table's rates leave out) a point far slower than a larger
    one is capped (see :func:`latency_envelope`); ``None``: as measured.

    >>> pts = [ShapePoint(m=m, n=8, k=8, achieved_tflops=t) for m, t in ((1, 0.1), (100, 0.3))]
    >>> round(shape_interpolate(pts, 10, 8, 8), 9), shape_interpolate(pts, 1e6, 1, 1)
    (0.2, 0.3)
    """
    if not points:
        raise ValueError("shape_interpolate: empty table")
    if min(m, n, k) <= 0:
        raise ValueError(f"shape_interpolate: sizes must be positive, got {(m, n, k)}")
    axes, table = _grid(points) if fixed_s is None else latency_envelope(points, fixed_s)
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


def _grid(points: Sequence[ShapePoint]) -> tuple[list[list[float]], dict[tuple, float]]:
    """(sorted m / n / k axes, TFLOPS by (m, n, k)) of a measured grid, as measured."""
    rate = {(p.m, p.n, p.k): p.achieved_tflops for p in points}
    return [sorted({key[i] for key in rate}) for i in range(3)], rate


NOISE_MARGIN = 1.5  # beyond one point's run-to-run spread on this project's host (~20-30 %, docs/validation.md)
_ENVELOPES: dict[tuple[int, float], tuple[Sequence[ShapePoint], tuple[list[list[float]], dict[tuple, float]]]] = {}
_ENVELOPES_MAX = 64  # tables kept (a profile has a handful; the cache holds them alive)


def latency_envelope(points: Sequence[ShapePoint], fixed_s: float = 0.0) -> tuple[list[list[float]], dict[tuple, float]]:
    """(sorted m / n / k axes, TFLOPS by (m, n, k)) of a complete grid whose calls each cost
    ``fixed_s`` besides the table's work, with a point capped where its call (``fixed_s`` + work)
    takes more than :data:`NOISE_MARGIN` times the fastest call of any other point at least as
    large on every axis: the work is cut so the call takes exactly that.

    Only for tables whose axes are sizes of one kernel (GEMMs, dense and 1 x 1 convs): a kernel
    is never slower than the same kernel doing a superset of its work (it could be run padded),
    so a point that much slower is timing noise: a small call timed right after a 10-40 ms one
    pays 50-80 us for its code and operands refetched (this project's 2-vCPU VM, 2026-12-02). In
    the committed CPU profile this caps 110 of 1950 GEMM points, 200 of 1014 1 x 1 conv points
    (most on a 1 x 1 map: a 64 -> 64 one measured 104 us in the grid, 5.8 us back to back, its
    7 x 7 neighbour 30 us), 32 of 550 dense conv points, 4 backward-conv and 3 cold-GEMV points.
    Differences within the margin are left alone: capping at the plain minimum lets one lucky
    fast sample among the many larger points set every smaller one (a GEMV's time barely depends
    on its 1-16 rows; tried, it moved batch-4 decode steps by 8-13 %). A table that mixes
    kernels along an axis (the depthwise table: 3 x 3 and 5 x 5 depthwise, groups of 8 and 16
    channels) is not one to cap. Computed once per table: a running minimum from the largest
    index down, one axis after another.

    >>> flops = lambda m: 2 * m * 8 * 8
    >>> pts = [ShapePoint(m=1, n=8, k=8, achieved_tflops=flops(1) / 80e12),   # 80 s of work: noisy
    ...        ShapePoint(m=4, n=8, k=8, achieved_tflops=flops(4) / 20e12),   # 20 s
    ...        ShapePoint(m=16, n=8, k=8, achieved_tflops=flops(16) / 25e12)] # 25 s: within 1.5 x 20 s
    >>> _, t = latency_envelope(pts, fixed_s=2.0)   # + 2 s a call: m=1's call capped at 1.5 x 22 s
    >>> [round(flops(m) / (t[(m, 8, 8)] * 1e12), 9) for m in (1, 4, 16)]   # work left: 33 - 2 s
    [31.0, 20.0, 25.0]
    """
    cached = _ENVELOPES.get((id(points), fixed_s))
    if cached is not None and cached[0] is points:
        return cached[1]
    axes, rate = _grid(points)
    call = {key: fixed_s + (2.0 * key[0] * key[1] * key[2] / (r * 1e12) if r > 0 else math.inf) for key, r in rate.items()}

    def up(key: tuple, axis: int) -> tuple | None:
        i = axes[axis].index(key[axis])
        nxt = (*key[:axis], axes[axis][i + 1], *key[axis + 1:]) if i + 1 < len(axes[axis]) else None
        return nxt if nxt in call else None

    run = dict(call)  # running minimum over the point and every point dominating it
    for axis in range(3):
        for key in sorted(run, key=lambda c: -c[axis]):  # larger points first along this axis
            nxt = up(key, axis)
            if nxt is not None:
                run[key] = min(run[key], run[nxt])
    table = {}
    for key, r in rate.items():
        others = [run[n] for n in (up(key, a) for a in range(3)) if n is not None]
        cap = NOISE_MARGIN * min(others) if others else math.inf
        work = cap - fixed_s
        table[key] = 2.0 * key[0] * key[1] * key[2] / (work * 1e12) if call[key] > cap and work > 0 else r
    if len(_ENVELOPES) >= _ENVELOPES_MAX:
        _ENVELOPES.clear()
    _ENVELOPES[(id(points), fixed_s)] = (points, (axes, table))
    return axes, table


def _dispatch_s(cal: Calibration, kind: str) -> float:
    """The per-call cost a calibrated table's rates leave out (``dispatch_<kind>_us``; 0 if absent)."""
    return (cal.scalars.get(f"dispatch_{kind}_us") or 0.0) * 1e-6


def gemm_shape_tflops(cal: Calibration, precision: Precision, m: int, n: int, k: int) -> float | None:
    """Measured GEMM throughput at shape (m, n, k), or None when that precision has no shape table."""
    pts = cal.gemm_shapes.get(precision)
    return shape_interpolate(pts, m, n, k, fixed_s=_dispatch_s(cal, "matmul")) if pts else None


def _conv_fixed(cal: Calibration, kind: ConvKind) -> float | None:
    """Per-call cost for the envelope of a conv table; None for the depthwise table (mixed kernels)."""
    return None if kind is ConvKind.DEPTHWISE else _dispatch_s(cal, "conv")


def conv_shape_tflops(cal: Calibration, kind: ConvKind, precision: Precision, m: int, n: int, k: int) -> float | None:
    """Measured conv throughput of ``kind`` at implicit-GEMM shape (m, n, k), or None."""
    pts = cal.conv_shapes.get(kind, {}).get(precision)
    return shape_interpolate(pts, m, n, k, fixed_s=_conv_fixed(cal, kind)) if pts else None


def conv_backward_shape_tflops(cal: Calibration, kind: ConvKind, precision: Precision, m: int, n: int,
                               k: int) -> float | None:
    """Measured ``convolution_backward`` throughput of ``kind`` at its forward conv's
    implicit-GEMM shape (m, n, k), or None when the table was not measured."""
    pts = cal.conv_backward_shapes.get(kind, {}).get(precision)
    return shape_interpolate(pts, m, n, k, fixed_s=_conv_fixed(cal, kind)) if pts else None


def gemm_stream_tflops(cal: Calibration, layout: str, precision: Precision, m: int, n: int, k: int) -> float | None:
    """Measured throughput of an ``m``-row GEMM streaming a cold ``[n, k]`` (``layout`` "nt")
    or ``[k, n]`` ("nn") weight from DRAM, or None when that table was not measured or ``m`` is
    beyond its largest row count (a GEMM with more rows reuses each weight byte enough to be
    priced by the ``gemm_shapes`` grid)."""
    pts = cal.gemm_stream.get(layout, {}).get(precision)
    if not pts or m > max(p.m for p in pts):
        return None
    return shape_interpolate(pts, m, n, k, fixed_s=_dispatch_s(cal, "matmul"))


# --- scattered tables (imported kernel microbenchmarks) ------------------------------------------


class ScatteredTable:
    """Achieved TFLOPS at any GEMM shape from measurements at scattered shapes (imported kernel
    tables: random shapes, not a grid). Built once per table (:func:`scattered_table` caches).

    Method, and why: **piecewise-linear interpolation of log(TFLOPS) over a Delaunay
    triangulation of the measured shapes in (log b,) log m, log n, log k** (scipy's
    ``LinearNDInterpolator``), never a fitted formula:

    - it reproduces every measurement exactly (a query at a measured shape returns it);
    - each answer is a convex combination of the measurements around it, so it never leaves
      their range (never above the fastest measured kernel, hence never above the peak);
    - in the launch-bound regime latency is flat, so log(TFLOPS) = log(2bmnk) - const is
      *linear* in the log coordinates and the interpolation is exact there; in the
      compute-bound regime TFLOPS is flat and so is the interpolation. Nearest-neighbour or
      k-NN averaging would bias both regimes towards the neighbours' sizes.

    Outside the measured hull (a shape larger or smaller than any measured along some axis) it
    takes the nearest measurement in log space and keeps its **rate** when the query has more
    FLOPs (bigger kernels do not get slower per FLOP) but its **latency** when the query has
    fewer (a smaller kernel is not faster than the launch-bound one measured):
    ``tflops = tflops_nn * min(1, flops / flops_nn)``. Axes on which every point has the same
    value (all ``b = 1``) are dropped before triangulating.

    >>> pts = [(m, n, k, 2 * m * n * k / 1e-3 / 1e12) for m in (16, 256) for n in (16, 256) for k in (16, 256)]
    >>> t = ScatteredTable([p[:3] for p in pts], [p[3] for p in pts])  # 1 ms each: launch-bound
    >>> round(t(64, 64, 64) / (2 * 64**3 / 1e-3 / 1e12), 9)   # inside: the same 1 ms latency
    1.0
    >>> round(t(8, 16, 16) / (2 * 8 * 16 * 16 / 1e-3 / 1e12), 9)  # below the hull: its latency
    1.0
    """

    def __init__(self, shapes: Sequence[Sequence[float]], tflops: Sequence[float]) -> None:
        import numpy as np
        from scipy.spatial import cKDTree

        if not shapes or len(shapes) != len(tflops):
            raise ValueError("ScatteredTable: need one TFLOPS value per shape, at least one")
        coords = np.log(np.asarray(shapes, dtype=float))
        self._tf = np.asarray(tflops, dtype=float)
        self._log_flops = coords.sum(axis=1)  # log(b m n k): FLOPs / 2
        self._axes = [i for i in range(coords.shape[1]) if np.ptp(coords[:, i]) > 0]
        self._coords = coords[:, self._axes]
        self._tree = cKDTree(self._coords) if self._axes else None
        self._linear = self._triangulate()

    def _triangulate(self):  # noqa: ANN202 - LinearNDInterpolator | None
        import numpy as np
        from scipy.interpolate import LinearNDInterpolator
        from scipy.spatial import QhullError

        n, d = self._coords.shape
        if d < 2 or n < d + 1:
            return None
        try:
            return LinearNDInterpolator(self._coords, np.log(self._tf))
        except (QhullError, ValueError):  # all points in a lower-dimensional plane: nearest only
            return None

    def __call__(self, *shape: float) -> float:
        """TFLOPS at ``shape`` (same axes as the table's shapes, all > 0)."""
        import numpy as np

        if min(shape) <= 0:
            raise ValueError(f"ScatteredTable: sizes must be positive, got {shape}")
        full = np.log(np.asarray(shape, dtype=float))
        q = full[self._axes]
        if self._linear is not None:
            v = float(self._linear(q[None, :])[0])
            if math.isfinite(v):
                return math.exp(v)
        if self._tree is None:
            i = 0
        elif len(self._axes) == 1:
            i = int(np.argmin(np.abs(self._coords[:, 0] - q[0])))
        else:
            i = int(self._tree.query(q)[1])
        return float(self._tf[i] * min(1.0, math.exp(full.sum() - self._log_flops[i])))


_SCATTERED: dict[int, tuple[object, ScatteredTable]] = {}


def scattered_table(points: Sequence[ShapePoint] | Sequence[BatchedShapePoint]) -> ScatteredTable:
    """The interpolator of a profile's scattered table, built on first use (tables are frozen;
    the cache holds the table itself, so its ``id`` stays valid)."""
    hit = _SCATTERED.get(id(points))
    if hit is not None and hit[0] is points:
        return hit[1]
    shapes = [(p.b, p.m, p.n, p.k) if isinstance(p, BatchedShapePoint) else (p.m, p.n, p.k) for p in points]
    table = ScatteredTable(shapes, [p.achieved_tflops for p in points])
    if len(_SCATTERED) >= 64:
        _SCATTERED.clear()
    _SCATTERED[id(points)] = (points, table)
    return table


def gemm_point_tflops(cal: Calibration, precision: Precision, b: int, m: int, n: int, k: int) -> float | None:
    """Measured (imported) GEMM throughput at ``b`` x (m, n, k), or None when not measured.

    ``b > 1`` uses the batched table when there is one; otherwise, and for ``b == 1``, the
    plain GEMM table with the batch folded into ``m`` (what a batched call of one matrix is)."""
    bmm = cal.bmm_points.get(precision)
    if b > 1 and bmm:
        return scattered_table(bmm)(b, m, n, k)
    plain = cal.gemm_points.get(precision)
    if plain:
        return scattered_table(plain)(m * b, n, k)
    return scattered_table(bmm)(b, m, n, k) if bmm else None


def conv_point_tflops(cal: Calibration, kind: ConvKind, precision: Precision, m: int, n: int, k: int) -> float | None:
    """Measured (imported) conv throughput of ``kind`` at implicit-GEMM shape (m, n, k), or None."""
    pts = cal.conv_points.get(kind, {}).get(precision)
    return scattered_table(pts)(m, n, k) if pts else None


def op_bandwidth_gbps(cal: Calibration, op: str, nbytes: float) -> float | None:
    """Measured GB/s of op kind ``op`` moving ``nbytes``, or None when that kind was not measured."""
    pts = cal.op_bandwidth.get(op)
    return bandwidth_at(pts, nbytes) if pts else None
