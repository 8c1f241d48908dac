"""CPU mapper by hand: micro-tile fill, threading from the amount of work, the cache level the
working set fits in, and calibrated thread scaling. Uses the schema's 2-core toy CPU."""

from __future__ import annotations

import copy
import math

import pytest

from dnnmap.fusion.partition import Parallelism
from dnnmap.hardware.schema import EXAMPLE, HardwareProfile
from dnnmap.ir import OpClass
from dnnmap.mapping import Device
from dnnmap.mapping.cpu import GRAIN, MR, NR_VECTORS, THREAD_BLOCK, place
from dnnmap.mapping.engine import estimate, weights_home
from dnnmap.mapping.workload import Work

TOY = HardwareProfile.model_validate(EXAMPLE)  # 2 cores, 256-bit SIMD, 0.1 TFLOPS, l1 32 KiB/core
PEAK = 0.1e12


def gemm(m: int, n: int, k: int) -> Work:
    return Work(0, "gemm", OpClass.MATMUL, 2 * m * n * k, 0, 0, m * k * 4, k * n * 4, m * n * 4, 0,
                Parallelism(output_elements=m * n, reduction=k, gemm_m=m, gemm_n=n, gemm_k=k), True)


def relu(n: int) -> Work:
    return Work(0, "relu", OpClass.ELEMENTWISE, 0, n, 0, n * 4, 0, n * 4, 0, Parallelism(output_elements=n), False)


def run(work: Work, dev: Device):
    return estimate(work, place(work, dev), dev, weights_home(dev, (work,)))


def test_gemm_micro_tile_fill_and_threading() -> None:
    dev = Device.of(TOY, "fp32")
    nr = NR_VECTORS * 256 // 32  # two 8-lane fp32 vectors
    p = place(gemm(64, 64, 64), dev)
    fill = 64 * 64 / (math.ceil(64 / MR) * MR * math.ceil(64 / nr) * nr)  # 11 row tiles of 6 -> 66 rows
    assert p.factors["fill"] == pytest.approx(fill)
    assert p.units_allocated == 1  # one 64 x 64 thread block: one of two cores
    assert p.factors["threading"] == pytest.approx(1 / 2)
    assert p.tensor_rate == pytest.approx(PEAK * fill / 2)
    p = place(gemm(128, 128, 64), dev)
    assert p.factors["blocks"] == (128 // THREAD_BLOCK) ** 2
    assert p.units_allocated == 2 and p.factors["threading"] == 1.0


@pytest.mark.parametrize(("n", "cores"), [(10_000, 1), (GRAIN, 1), (GRAIN + 1, 2), (1_000_000, 2)])
def test_elementwise_threads_follow_aten_grain(n: int, cores: int) -> None:
    p = place(relu(n), Device.of(TOY, "fp32"))
    assert p.units_allocated == cores
    assert p.vector_rate == pytest.approx(PEAK * cores / 2)


def test_cache_level_follows_the_working_set() -> None:
    dev = Device.of(TOY, "fp32")
    l1, dram = TOY.memory[0], TOY.memory[-1]
    small = run(relu(2000), dev)  # 16 kB read + written: fits one core's 32 KiB L1
    assert [t.level for t in small.traffic] == ["l1"]
    # one core of two: half the aggregate L1 bandwidth
    assert small.memory_s == pytest.approx(2 * 2000 * 4 / (l1.bandwidth_gbps * 1e9 / 2))
    big = run(relu(1_000_000), dev)  # 8 MB: only DRAM holds it
    assert [t.level for t in big.traffic] == ["dram"]
    assert big.memory_s == pytest.approx(8e6 / (dram.bandwidth_gbps * 1e9))


def test_calibrated_thread_scaling_replaces_ideal_scaling() -> None:
    data = copy.deepcopy(EXAMPLE)
    data["calibration"] = {
        "meta": {"machine": "toy", "device": "cpu", "date": "2025-01-01T00:00:00Z"},
        "thread_scaling": [{"threads": 1, "speedup": 1.0}, {"threads": 2, "speedup": 1.5}],
    }
    data["sources"] = {**data["sources"], "calibration": "measured: test fixture"}
    dev = Device.of(HardwareProfile.model_validate(data), "fp32")
    p = place(relu(1_000_000), dev)
    assert p.factors["threading"] == pytest.approx(1.5 / 2)  # measured speed-up 1.5 on 2 cores
    assert "measured thread scaling" in p.detail and dev.provenance.value == "calibrated"


def test_hybrid_cpu_is_paced_by_its_slowest_used_core() -> None:
    from dnnmap.hardware import load_profile

    i7 = load_profile("i7-12700k")
    perf, eff = i7.cpu.core_groups
    p_rate = perf.simd_width_bits // 32 * perf.fma_units_per_core * 2 * (perf.boost_mhz or i7.clocks.boost_mhz)
    e_rate = eff.simd_width_bits // 32 * eff.fma_units_per_core * 2 * eff.boost_mhz
    total = perf.count * p_rate + eff.count * e_rate
    dev = Device.of(i7, "fp32")
    all_cores = place(relu(100 * GRAIN), dev)  # 100 chunks: every core, E-cores set the pace
    assert all_cores.units_allocated == perf.count + eff.count
    assert all_cores.factors["threading"] == pytest.approx((perf.count + eff.count) * e_rate / total)
    p_only = place(relu(perf.count * GRAIN), dev)  # 8 chunks: the 8 P-cores
    assert p_only.factors["threading"] == pytest.approx(perf.count * p_rate / total)
