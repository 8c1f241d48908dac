"""Log-size linear interpolation of measured tables, checked by hand arithmetic."""

from __future__ import annotations

import math

import pytest

from dnnmap.hardware import BandwidthPoint, ThroughputPoint
from dnnmap.hardware.interp import bandwidth_at, efficiency, interpolate, throughput_at


def test_halfway_in_log_size() -> None:
    # log10: 6 -> 7 -> 8, so 1e7 is halfway: (0.2 + 0.6) / 2
    assert interpolate([(1e6, 0.2), (1e8, 0.6)], 1e7) == pytest.approx(0.4)


def test_quarter_way_in_log_size() -> None:
    # 1e6 * 10**0.5 is a quarter of the way from 1e6 to 1e8 in log10: 0.2 + 0.25 * (0.6 - 0.2)
    assert interpolate([(1e6, 0.2), (1e8, 0.6)], 1e6 * 10**0.5) == pytest.approx(0.2 + 0.25 * 0.4)


def test_three_points_pick_their_segment() -> None:
    pts = [(2.0**10, 1.0), (2.0**20, 3.0), (2.0**30, 2.0)]
    assert interpolate(pts, 2.0**15) == pytest.approx((1.0 + 3.0) / 2)
    assert interpolate(pts, 2.0**25) == pytest.approx((3.0 + 2.0) / 2)
    # 2^12 is 2/10 of the way along the first segment
    assert interpolate(pts, 2.0**12) == pytest.approx(1.0 + 0.2 * (3.0 - 1.0))


def test_exact_at_points_and_clamped_at_ends() -> None:
    pts = [(10.0, 5.0), (1000.0, 7.0)]
    assert interpolate(pts, 10.0) == 5.0
    assert interpolate(pts, 1000.0) == 7.0
    assert interpolate(pts, 1e-3) == 5.0
    assert interpolate(pts, 1e12) == 7.0


def test_single_point_is_constant() -> None:
    assert interpolate([(64.0, 0.3)], 1.0) == 0.3
    assert interpolate([(64.0, 0.3)], 1e9) == 0.3


@pytest.mark.parametrize(
    "pts", [[], [(10.0, 1.0), (5.0, 2.0)], [(10.0, 1.0), (10.0, 2.0)], [(0.0, 1.0), (5.0, 2.0)]]
)
def test_bad_tables_rejected(pts) -> None:
    with pytest.raises(ValueError):
        interpolate(pts, 7.0)


@pytest.mark.parametrize("x", [0.0, -1.0, math.inf, math.nan])
def test_bad_sizes_rejected(x: float) -> None:
    with pytest.raises(ValueError):
        interpolate([(1.0, 1.0), (2.0, 2.0)], x)


def test_typed_tables() -> None:
    gemm = [ThroughputPoint(flops=2 * 128**3, achieved_tflops=0.05),
            ThroughputPoint(flops=2 * 2048**3, achieved_tflops=0.15)]
    # 2*512^3: log distance 3*log(4) of the 3*log(16) span -> weight 1/2
    assert throughput_at(gemm, 2 * 512**3) == pytest.approx((0.05 + 0.15) / 2)
    bw = [BandwidthPoint(working_set_bytes=32 * 1024, achieved_gbps=200.0),
          BandwidthPoint(working_set_bytes=32 * 1024**2, achieved_gbps=20.0)]
    # 1 MiB = 2^20 between 2^15 and 2^25: weight 5/10
    assert bandwidth_at(bw, 1024**2) == pytest.approx(200.0 + 0.5 * (20.0 - 200.0))


def test_efficiency() -> None:
    assert efficiency(0.5, 2.0) == 0.25
    assert efficiency(3.0, 2.0) == 1.0
    with pytest.raises(ValueError):
        efficiency(0.0, 2.0)
