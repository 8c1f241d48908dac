"""GPU mapper by hand: tiles, waves, quantization, tensor-core eligibility, bandwidth share.

Expectations are written as arithmetic from the profile's own fields (SMs, peaks, bandwidth),
so the tests check the mapper's formulas, not a copy of its output.
"""

from __future__ import annotations

import math

import pytest

from dnnmap.fusion.partition import Parallelism
from dnnmap.hardware import load_profile
from dnnmap.ir import OpClass
from dnnmap.mapping import Bound, Device
from dnnmap.mapping.engine import estimate, weights_home
from dnnmap.mapping.gpu import (
    ELEM_THREADS,
    ELEMS_PER_THREAD,
    K_STEP_BYTES,
    STAGES,
    VECTOR_LOAD_BYTES,
    gemm_tiling,
    place,
    sm_rates,
)
from dnnmap.mapping.sm_terms import DRAM_LATENCY_S
from dnnmap.mapping.workload import Work


def gemm_work(m: int, n: int, k: int, elem: int, batch: int = 1, op_class: OpClass = OpClass.MATMUL) -> Work:
    return Work(
        subgraph_id=0, name="gemm", op_class=op_class, tensor_flops=2 * m * n * k * batch,
        vector_flops=0, transcendentals=0, activation_read_bytes=m * k * elem * batch,
        weight_bytes=k * n * elem * batch, write_bytes=m * n * elem * batch, internal_bytes=0,
        parallelism=Parallelism(output_elements=m * n * batch, reduction=k, gemm_m=m, gemm_n=n,
                                gemm_k=k, gemm_batch=batch),
        gemm_like=True,
    )


def relu_work(n: int, elem: int) -> Work:
    return Work(
        subgraph_id=0, name="relu", op_class=OpClass.ELEMENTWISE, tensor_flops=0, vector_flops=n,
        transcendentals=0, activation_read_bytes=n * elem, weight_bytes=0, write_bytes=n * elem,
        internal_bytes=0, parallelism=Parallelism(output_elements=n), gemm_like=False,
    )


def run(work: Work, dev: Device):
    return estimate(work, place(work, dev), dev, weights_home(dev, (work,)))


@pytest.fixture(scope="module")
def h100():
    return load_profile("h100-sxm5")


def test_gemm_4096_cubed_waves_and_quantization(h100) -> None:
    dev = Device.of(h100, "fp16")
    sms = h100.gpu.sms
    rates = sm_rates(dev, dev.tensor_peak)
    t = gemm_tiling(4096, 4096, 4096, 1, h100.gpu, 2, rates=rates)
    assert (t.tm, t.tn, t.split_k) == (128, 128, 1)
    assert t.blocks == 32 * 32
    assert t.resident == 1  # (128 + 128) * 128 B * 4 stages = 131072 B: one per 228 KiB SM
    assert t.waves == math.ceil(32 * 32 / sms) == 8
    assert t.quantization == pytest.approx(1024 / (8 * sms))
    # one block per SM per wave: its K loop (2 x 128 x 128 x 4096 FLOP at the SM's share of the
    # peak), one DRAM latency before it, its 128 x 128 fp16 output tile written after it
    # by hand: 989.4 TFLOPS / 132 SMs = 7.4955 TFLOPS, 2881 GB/s / 132 = 21.826 GB/s per SM;
    # main 2 x 128 x 128 x 4096 / 7.4955e12 = 17.906 us, epilogue 32768 B / 21.826 GB/s = 1.501 us
    assert (dev.tensor_peak, dev.dram.bandwidth, sms) == (989.4e12, 2881e9, 132)
    pipe = 17.906 / (17.906 + DRAM_LATENCY_S * 1e6 + 1.501)
    assert t.pipeline == pytest.approx(pipe, rel=1e-3) and pipe == pytest.approx(0.895, abs=1e-3)
    assert t.fill == 1.0 and t.in_flight == 1.0

    est = run(gemm_work(4096, 4096, 4096, 2), dev)
    util = 1024 / (8 * sms) * pipe
    assert est.utilization == pytest.approx(util, rel=1e-4)  # pipe above is rounded to 4 digits
    compute = 2 * 4096**3 / (h100.peak_tflops["fp16"] * 1e12 * util)
    assert est.compute_s == pytest.approx(compute, rel=1e-4)
    # 132 blocks in flight x 3 stages x 256 rows x 128 B >> bandwidth x latency: full bandwidth
    assert 132 * (STAGES - 1) * 256 * K_STEP_BYTES > h100.dram.bandwidth_gbps * 1e9 * DRAM_LATENCY_S
    assert est.memory_s == pytest.approx(3 * 4096 * 4096 * 2 / (h100.dram.sustained_gbps * 1e9))
    assert est.bound is Bound.COMPUTE
    # on a GPU the fixed per-kernel term is the device's gap between queued kernels; the host's
    # issue cost is its own timeline (tests/test_gpu_timeline.py)
    assert est.latency_s == pytest.approx(compute + h100.kernel_gap_us * 1e-6, rel=1e-4)
    assert est.units_allocated == sms


def test_tensor_cores_only_for_eligible_precisions(h100) -> None:
    w = gemm_work(4096, 4096, 4096, 4)
    fp32 = Device.of(h100, "fp32")
    tf32 = Device.of(h100, "tf32")
    assert not fp32.uses_tensor_cores and tf32.uses_tensor_cores
    assert fp32.tensor_peak == h100.vector_peak_tflops["fp32"] * 1e12  # CUDA cores
    assert tf32.tensor_peak == h100.peak_tflops["tf32"] * 1e12
    e32, etf = run(w, fp32), run(w, tf32)
    assert "CUDA cores" in e32.explanation and "tensor cores" in etf.explanation
    ratio = h100.peak_tflops["tf32"] / h100.vector_peak_tflops["fp32"]
    # compute_s = FLOPs / (peak x utilization): the peaks' ratio once each tiling's utilization is removed
    assert (e32.compute_s * e32.utilization) / (etf.compute_s * etf.utilization) == pytest.approx(ratio)


def test_depthwise_conv_runs_on_cuda_cores(h100) -> None:
    dev = Device.of(h100, "fp16")
    c, hw = 256, 14 * 14
    w = Work(
        subgraph_id=0, name="dw", op_class=OpClass.CONV, tensor_flops=2 * c * hw * 9, vector_flops=0,
        transcendentals=0, activation_read_bytes=c * hw * 2, weight_bytes=c * 9 * 2, write_bytes=c * hw * 2,
        internal_bytes=0,
        parallelism=Parallelism(channels=c, spatial=hw, output_elements=c * hw, reduction=9, depthwise=True,
                                gemm_m=hw, gemm_n=1, gemm_k=9, gemm_batch=c),
        gemm_like=False,
    )
    p = place(w, dev)
    per_thread = VECTOR_LOAD_BYTES // 2  # one 128-bit load = 8 fp16 elements per thread
    blocks = math.ceil(c * hw * 9 / (ELEM_THREADS * per_thread))
    assert p.factors["blocks"] == blocks
    sms = h100.gpu.sms
    quantization = blocks / (sms * math.ceil(blocks / sms))  # 441 blocks -> 4 per SM on 132 SMs
    assert p.tensor_rate == pytest.approx(h100.vector_peak_tflops["fp16"] * 1e12 * quantization)
    assert "CUDA cores" in p.detail


def test_small_m_gemm_wastes_tile_rows_and_splits_k(h100) -> None:
    dev = Device.of(h100, "fp16")
    t = gemm_tiling(1, 1000, 2048, 1, h100.gpu, 2, rates=sm_rates(dev, dev.tensor_peak))  # batch-1 FC layer
    assert t.tm == 16  # smallest tile edge
    assert t.fill == pytest.approx(1 * 1000 / (16 * math.ceil(1000 / t.tn) * t.tn))
    assert t.split_k > 1 and t.blocks == math.ceil(1000 / t.tn) * t.split_k
    # alone, its 4 MB of weights stay in the 50 MB L2 between calls (MLPerf-style batch 1)
    est = run(gemm_work(1, 1000, 2048, 2), dev)
    assert weights_home(dev, (gemm_work(1, 1000, 2048, 2),)).weights.name == "l2"
    served = {t.level: t.bytes for t in est.traffic}
    assert served["l2"] >= 2048 * 1000 * 2 and served["hbm"] < 2048 * 1000 * 2
    # without L2 residency the weights stream from HBM: the memory term is all bytes over HBM
    no_l2 = Device.of(h100.model_copy(update={"gpu": h100.gpu.model_copy(update={"l2_residency": False})}), "fp16")
    cold = run(gemm_work(1, 1000, 2048, 2), no_l2)
    cold_served = {t.level: t.bytes for t in cold.traffic}
    assert cold_served.get("l2", 0) < 2048 * 1000 * 2  # only the split-K partial sums live in L2
    hbm_bytes = (2048 + 2048 * 1000 + 1000) * 2  # x, W, y in fp16
    assert cold.memory_s >= hbm_bytes / (h100.dram.sustained_gbps * 1e9) > est.memory_s


def test_split_k_when_tiles_cannot_fill_the_sms(h100) -> None:
    dev = Device.of(h100, "fp16")
    t = gemm_tiling(64, 64, 65536, 1, h100.gpu, 2, rates=sm_rates(dev, dev.tensor_peak))
    k_iters = 65536 // 64
    assert t.split_k * t.blocks // t.split_k == t.blocks
    assert t.blocks <= h100.gpu.sms and t.blocks * 2 > h100.gpu.sms  # doubling would overflow
    assert math.ceil(k_iters / t.split_k) >= 4
    p = place(gemm_work(64, 64, 65536, 2), dev)
    # each split writes an fp32 64 x 64 partial tile, the reduction reads it back
    assert p.workspace_bytes == 2 * t.split_k * 64 * 64 * 4


def test_elementwise_blocks_waves_and_bandwidth(h100) -> None:
    dev = Device.of(h100, "fp32")
    n = 1 << 22
    p = place(relu_work(n, 4), dev)
    per_block = ELEM_THREADS * ELEMS_PER_THREAD
    blocks = n // per_block
    r = h100.gpu.max_threads_per_sm // ELEM_THREADS
    assert p.factors["blocks"] == blocks
    assert p.factors["waves"] == math.ceil(blocks / (h100.gpu.sms * r))
    assert p.factors["quantization"] == pytest.approx(blocks / (h100.gpu.sms * math.ceil(blocks / h100.gpu.sms)))
    assert p.mem_share == 1.0  # 132 x 2048 threads x 16 B in flight > 3.35 TB/s x 600 ns
    est = run(relu_work(n, 4), dev)
    assert est.memory_s == pytest.approx(2 * n * 4 / (h100.dram.sustained_gbps * 1e9))
    assert est.bound is Bound.MEMORY


def test_tiny_kernel_is_latency_bound_with_few_sms_busy(h100) -> None:
    dev = Device.of(h100, "fp32")
    est = run(relu_work(1000, 4), dev)
    assert est.units_allocated == 1 and est.utilization == pytest.approx(1 / h100.gpu.sms)
    # one block's loads in flight cannot hide DRAM latency: memory time > the kernel gap
    assert est.bound is Bound.MEMORY and est.memory_s > est.overhead_s
    assert est.overhead_s == h100.kernel_gap_us * 1e-6
    # one block of 256 threads x 16 B in flight: Little's law share of the bandwidth
    share = ELEM_THREADS * VECTOR_LOAD_BYTES / (h100.dram.sustained_gbps * 1e9 * DRAM_LATENCY_S)
    assert est.memory_s == pytest.approx(2 * 1000 * 4 / (h100.dram.sustained_gbps * 1e9 * share))
