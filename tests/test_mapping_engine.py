"""The latency engine: overlap policy, calibrated terms, energy, precision rescaling."""

from __future__ import annotations

import copy
import math

import pytest

from dnnmap.fusion import partition
from dnnmap.fusion.partition import Parallelism
from dnnmap.hardware.schema import EXAMPLE, HardwareProfile, Precision
from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
from dnnmap.mapping import Bound, Device, map_partition
from dnnmap.mapping.cpu import place
from dnnmap.mapping.engine import estimate, weights_home
from dnnmap.mapping.workload import Work, work_of

TOY = HardwareProfile.model_validate(EXAMPLE)


def gemm(m: int, n: int, k: int) -> Work:
    return Work(0, "gemm", OpClass.MATMUL, 2 * m * n * k, 0, 0, m * k * 4, k * n * 4, m * n * 4, 0,
                Parallelism(output_elements=m * n, reduction=k, gemm_m=m, gemm_n=n, gemm_k=k), True)


def run(work: Work, profile: HardwareProfile, precision: str = "fp32"):
    dev = Device.of(profile, precision)
    return estimate(work, place(work, dev), dev, weights_home(dev, (work,)))


def test_overlap_policy_max_or_sum() -> None:
    w = gemm(512, 512, 512)
    over = run(w, TOY)
    serial = run(w, HardwareProfile.model_validate({**EXAMPLE, "overlap": "serial"}))
    launch = EXAMPLE["kernel_launch_us"] * 1e-6
    assert over.latency_s == pytest.approx(max(over.compute_s, over.memory_s) + launch)
    assert serial.latency_s == pytest.approx(serial.compute_s + serial.memory_s + launch)
    assert serial.latency_s > over.latency_s


def test_energy_is_dynamic_plus_idle_power_times_latency() -> None:
    w = gemm(512, 512, 512)
    e = run(w, TOY)
    flops_j = 2 * 512**3 * EXAMPLE["energy_pj_per_flop"]["fp32"] * 1e-12
    pj = {m["name"]: m["energy_pj_per_byte"] for m in EXAMPLE["memory"]}
    bytes_j = sum(t.bytes * pj[t.level] for t in e.traffic) * 1e-12
    assert e.dynamic_energy_j == pytest.approx(flops_j + bytes_j)
    assert e.static_energy_j == pytest.approx(EXAMPLE["power"]["idle_w"] * e.latency_s)
    assert e.energy_j == pytest.approx(e.dynamic_energy_j + e.static_energy_j)


def calibrated() -> HardwareProfile:
    data = copy.deepcopy(EXAMPLE)
    data["calibration"] = {
        "meta": {"machine": "toy", "device": "cpu", "date": "2025-01-01T00:00:00Z"},
        "gemm": {"fp32": [{"flops": 1e6, "achieved_tflops": 0.01}, {"flops": 1e9, "achieved_tflops": 0.05}]},
        "bandwidth": {"copy": [{"working_set_bytes": 1e3, "achieved_gbps": 15},
                               {"working_set_bytes": 1e8, "achieved_gbps": 5}]},
        "dispatch_us": 2.0,
    }
    data["sources"] = {**data["sources"], "calibration": "measured: test fixture"}
    return HardwareProfile.model_validate(data)


def test_calibration_replaces_the_same_terms_with_measured_numbers() -> None:
    prof = calibrated()
    w = gemm(100, 100, 5000)  # 1e8 FLOPs: 2/3 of the way from 1e6 to 1e9 in log
    e = run(w, prof)
    tflops = 0.01 + (0.05 - 0.01) * (math.log(1e8) - math.log(1e6)) / (math.log(1e9) - math.log(1e6))
    assert e.compute_s == pytest.approx(1e8 / (tflops * 1e12))
    nbytes = w.external_bytes
    # below the 20 GB/s of DRAM, the level holding 4 MB, so the measured figure stands
    gbps = 15 + (5 - 15) * (math.log(nbytes) - math.log(1e3)) / (math.log(1e8) - math.log(1e3))
    assert e.memory_s == pytest.approx(nbytes / (gbps * 1e9))
    assert e.overhead_s == pytest.approx(2e-6)
    assert e.explanation.endswith("[calibrated]")
    assert Device.of(prof, "fp32").provenance.value == "calibrated"
    assert Device.of(TOY, "fp32").provenance.value == "theoretical"


def test_bound_is_the_largest_term() -> None:
    e = run(gemm(2048, 2048, 2048), TOY)
    assert e.bound is Bound.COMPUTE and e.compute_s > e.memory_s
    tiny = run(gemm(2, 2, 2), TOY)
    assert tiny.bound is Bound.OVERHEAD


def _embedding_graph() -> Graph:
    """ids[int64 4 x 8] -> embedding(table[100 x 16] fp32) -> out[4 x 8 x 16]."""
    t = {
        "t0": Tensor("t0", (4, 8), DType.INT64, Role.INPUT, name="ids"),
        "t1": Tensor("t1", (100, 16), DType.FLOAT32, Role.WEIGHT, name="emb.weight"),
        "t2": Tensor("t2", (4, 8, 16), DType.FLOAT32, Role.OUTPUT, producer="op0"),
    }
    op = Op("op0", "aten.embedding.default", OpClass.EMBEDDING, ("t1", "t0"), ("t2",), "emb", "Embedding",
            ("weight", "indices"))
    return Graph("emb", t, (op,), ("t0",), ("t2",), {"batch": 4})


def test_precision_rescales_floating_tensors_only() -> None:
    p = partition(_embedding_graph(), "unfused")
    sg = p.subgraphs[0]
    w32 = work_of(p.graph, sg, Precision.FP32)
    w16 = work_of(p.graph, sg, Precision.BF16)
    w8 = work_of(p.graph, sg, Precision.INT8)
    assert w32.weight_bytes == sg.weight_bytes
    assert w16.weight_bytes == sg.weight_bytes // 2 and w8.weight_bytes == sg.weight_bytes // 4
    assert w16.write_bytes == 4 * 8 * 16 * 2
    ids = 4 * 8 * 8  # int64 ids keep 8 bytes at every precision
    assert w8.activation_read_bytes == w32.activation_read_bytes == ids
    assert w16.flops == w32.flops


def test_precision_picks_the_peak_and_falls_back_with_a_note() -> None:
    dev = Device.of(TOY, "bf16")  # the toy CPU has only an fp32 peak
    assert dev.tensor_precision is Precision.FP32
    assert any("no bf16 peak" in n for n in dev.notes)
    est = map_partition(partition(_embedding_graph(), "unfused"), TOY, precision="bf16")
    assert est.precision is Precision.BF16 and any("no bf16 peak" in n for n in est.notes)
