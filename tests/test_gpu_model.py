"""The GPU execution model by hand: host/device timelines, TF32 default, L2 residency, SIMT
SGEMM, int8 loads in flight, sustained clocks, power cap, AMD mapping, figure provenance.

Expectations are arithmetic from the profile's own fields, so they check the formulas.
"""

from __future__ import annotations

import math

import pytest

from dnnmap.errors import DnnmapError
from dnnmap.fusion import partition
from dnnmap.fusion.partition import Parallelism
from dnnmap.fusion.toy import GraphBuilder
from dnnmap.hardware import load_profile
from dnnmap.ir import OpClass
from dnnmap.mapping import Bound, Device, map_partition
from dnnmap.mapping.engine import estimate, weights_home
from dnnmap.mapping.estimate import FigureSource
from dnnmap.mapping.gpu import (
    ELEM_THREADS,
    SIMT_LOOP_INSTR,
    VECTOR_LOAD_BYTES,
    gemm_tiling,
    place,
    simt_issue,
    simt_smem,
    sm_rates,
)
from dnnmap.mapping.residency import l2_hits
from dnnmap.mapping.sm_terms import DRAM_LATENCY_S
from dnnmap.mapping.workload import Work
from dnnmap.pipeline import Scenario, estimate_on, prepare
from test_mapping_gpu import gemm_work, relu_work


def relu_chain(n: int, elements: int) -> GraphBuilder:
    b = GraphBuilder("chain")
    x = b.input((elements,))
    for i in range(n):
        x = b.op("aten.relu.default", [x], module=f"r{i}")
    return b, x


def chain_partition(n: int, elements: int, strategy: str = "unfused"):
    b, x = relu_chain(n, elements)
    return partition(b.build([x]), strategy)


# -- host and device: two timelines -----------------------------------------------------------
def test_chain_of_tiny_kernels_is_host_bound_at_n_dispatches() -> None:
    a100 = load_profile("a100-pcie-40gb")
    n = 20
    est = map_partition(chain_partition(n, 256), a100, mode="eager")
    dispatch = a100.eager_dispatch_us * 1e-6
    last = est.subgraphs[-1].latency_s
    # the host issues kernel i at i x dispatch; each tiny kernel is done before the next is issued
    assert est.host_s == pytest.approx(n * dispatch)
    assert est.latency_s == pytest.approx(n * dispatch + last)
    assert est.bound is Bound.HOST
    assert est.device_idle_s == pytest.approx(est.latency_s - sum(s.latency_s for s in est.subgraphs))


def test_cudagraph_removes_per_kernel_host_cost() -> None:
    a100 = load_profile("a100-pcie-40gb")
    n = 20
    est = map_partition(chain_partition(n, 256), a100, mode="cudagraph")
    kernels = sum(s.latency_s for s in est.subgraphs)
    # one graph launch, then the device runs the kernels back to back (each with the queued-kernel gap)
    assert est.latency_s == pytest.approx(a100.kernel_launch_us * 1e-6 + kernels)
    assert all(s.overhead_s == pytest.approx(a100.kernel_gap_us * 1e-6) for s in est.subgraphs)
    assert est.bound is not Bound.HOST


def test_big_kernels_hide_the_host() -> None:
    a100 = load_profile("a100-pcie-40gb")
    elements = 1 << 26  # 256 MB per relu in fp32: ~300 us per kernel >> 10 us dispatch
    est = map_partition(chain_partition(4, elements), a100, mode="eager")
    kernels = sum(s.latency_s for s in est.subgraphs)
    # only the first kernel waits for its own dispatch
    assert est.latency_s == pytest.approx(a100.eager_dispatch_us * 1e-6 + kernels)
    assert est.bound is Bound.MEMORY


def test_host_dispatch_override_and_mode_in_every_result() -> None:
    part = chain_partition(10, 256)
    est = map_partition(part, "a100-pcie-40gb", mode="eager", host_dispatch_s=50e-6)
    assert est.host_s == pytest.approx(10 * 50e-6) and est.mode == "eager"
    assert est.summary()["mode"] == "eager" and est.to_dict()["summary"]["host_s"] == est.host_s
    with pytest.raises(DnnmapError, match="execution mode"):
        map_partition(part, "a100-pcie-40gb", mode="jit")


def test_cpu_keeps_dispatch_inside_each_kernel() -> None:
    est = map_partition(chain_partition(5, 256), "i7-12700k", mode="eager")
    assert est.latency_s == pytest.approx(sum(s.latency_s for s in est.subgraphs))
    assert est.host_s == 0.0


# -- TF32: PyTorch's default runs convolutions as TF32, matmuls as fp32 ------------------------
def test_tf32_default_for_convs_only() -> None:
    a100 = load_profile("a100-pcie-40gb")
    clock = a100.clocks.sustained_ratio
    d = Device.of(a100, "fp32")
    assert not d.engine(is_conv=False).uses_tensor_cores
    assert d.engine(is_conv=False).peak == pytest.approx(a100.vector_peak_tflops["fp32"] * 1e12 * clock)
    conv = d.engine(is_conv=True)
    assert conv.uses_tensor_cores and conv.precision.value == "tf32"
    assert conv.peak == pytest.approx(a100.peak_tflops["tf32"] * 1e12 * clock)
    off, on = Device.of(a100, "fp32", "off"), Device.of(a100, "fp32", "on")
    assert not off.engine(True).uses_tensor_cores and on.engine(False).uses_tensor_cores
    # the conv's placement says so
    w = gemm_work(4096, 256, 2304, 4, op_class=OpClass.CONV)
    assert "tensor cores (tf32)" in place(w, d).detail
    assert "CUDA cores" in place(w, off).detail


def test_no_tf32_on_a_gpu_without_it() -> None:
    v100 = load_profile("v100-pcie-32gb")  # Volta tensor cores run fp16 only
    d = Device.of(v100, "fp32")
    assert not d.engine(True).uses_tensor_cores and not d.engine(False).uses_tensor_cores


# -- sustained clocks ---------------------------------------------------------------------------
def test_sustained_clock_scales_the_peaks() -> None:
    t4 = load_profile("t4")
    assert t4.clocks.sustained_mhz is not None and t4.clocks.sustained_mhz < t4.clocks.boost_mhz
    d = Device.of(t4, "fp32")
    ratio = t4.clocks.sustained_mhz / t4.clocks.boost_mhz
    assert d.tensor_peak == pytest.approx(t4.vector_peak_tflops["fp32"] * 1e12 * ratio)
    assert any("sustained" in n for n in d.notes)


# -- SIMT SGEMM ---------------------------------------------------------------------------------
def test_simt_sgemm_tiles_and_issue() -> None:
    a100 = load_profile("a100-pcie-40gb")
    d = Device.of(a100, "fp32", tf32="off")
    t = gemm_tiling(4096, 4096, 4096, 1, a100.gpu, 4, simt=True, rates=sm_rates(d, d.tensor_peak))
    assert (t.tm, t.tn, t.threads) in {(x.tm, x.tn, x.threads) for x in a100.gpu.simt_gemm_tiles}
    # 16 lanes per scheduler: an FFMA takes 2 issue cycles, loads hide in the second
    assert t.issue == 1.0
    # 32 lanes (Pascal / Ada): 8 x 8 outputs per thread -> 64 / (64 + 16/4 + loop)
    assert simt_issue(64, 32, 32) == pytest.approx(64 / (64 + 2 * 8 / 4 + SIMT_LOOP_INSTR))
    # a long K loop: the prologue latency and the epilogue write cost ~1-3 % of the wave
    assert 0.95 < t.pipeline < 1.0


def test_shared_memory_feeds_small_simt_tiles_below_the_ffma_rate() -> None:
    # 2 sqrt(t) operands x 4 B x 32 threads per K element over 128 B / clock, against 32 t / lanes
    # t = 8 on 64 lanes: FFMAs 32 x 8 / 64 = 4 clocks a warp; loads 2 x 2.828 x 4 B x 32 / 128 = 5.657
    assert simt_smem(8, 64) == pytest.approx(4 / 5.657, rel=1e-4)
    assert simt_smem(64, 64) == 1.0 and simt_smem(64, 128) == 1.0  # 8 x 8 per thread: fed
    assert simt_smem(16, 128) == pytest.approx(0.5)  # 4 x 4 per thread on a 128-lane Pascal SM
    # a big fp32 GEMM on a V100 no longer picks the 8-outputs-a-thread 32 x 32 tile
    v100 = load_profile("v100-pcie-32gb")
    d = Device.of(v100, "fp32", tf32="off")
    t = gemm_tiling(4096, 4096, 1024, 1, v100.gpu, 4, simt=True, rates=sm_rates(d, d.tensor_peak))
    assert t.tm * t.tn // t.threads >= 16 and t.smem == 1.0
    small = place(gemm_work(32, 32, 4096, 4), d)  # only the 32 x 32 tile avoids padding here
    assert (small.factors["tm"], small.factors["tn"]) == (32, 32)
    assert small.factors["smem"] == pytest.approx(simt_smem(8, 64)) and "shared memory 71%" in small.detail


def test_short_k_gemm_pays_its_epilogue() -> None:
    # eager attention's Q @ K^T on a V100 (BERT-Large, batch 8, seq 512: 128 heads x 512 x 512
    # x K = 64, fp32): each block writes its output tile after only 8 K steps of 8
    v100 = load_profile("v100-pcie-32gb")
    d = Device.of(v100, "fp32", tf32="off")
    rates = sm_rates(d, d.tensor_peak)
    short = gemm_tiling(512, 512, 64, 128, v100.gpu, 4, simt=True, rates=rates)
    # by hand: 64 x 64 tiles of 64 threads, 9 resident per SM (registers: 65536 / (64 x 104));
    # 14 TFLOPS / 80 = 175 GFLOP/s and 792 GB/s / 80 = 9.9 GB/s per SM:
    # main 9 x 2 x 64^3 / 175e9 = 26.96 us, epilogue 9 x 64 x 64 x 4 B / 9.9e9 = 14.89 us
    assert (short.tm, short.tn, short.threads, short.resident) == (64, 64, 64, 9)
    assert rates == pytest.approx((175e9, 9.9e9))
    assert short.pipeline == pytest.approx(26.96 / (26.96 + DRAM_LATENCY_S * 1e6 + 14.89), rel=1e-3)
    long = gemm_tiling(512, 512, 4096, 128, v100.gpu, 4, simt=True, rates=rates)
    # the kernel tables (development set) show K ~ 64 bmms at 0.55-0.6x a long-K bmm's efficiency
    assert short.pipeline < 0.75 * long.pipeline


def test_simt_gemm_few_warps_leave_schedulers_idle() -> None:
    a100 = load_profile("a100-pcie-40gb")
    # one 32 x 32 tile of 128 threads on one SM: 4 warps, one per scheduler -> in flight 1.0
    d = Device.of(a100, "fp32", tf32="off")
    t = gemm_tiling(32, 32, 4096, 1, a100.gpu, 4, simt=True, rates=sm_rates(d, d.tensor_peak))
    assert t.blocks >= 1 and 0 < t.in_flight <= 1.0


# -- int8: bytes in flight are 16-byte loads, not elements ----------------------------------------
def test_int8_elementwise_keeps_16_bytes_in_flight_per_thread() -> None:
    h100 = load_profile("h100-sxm5")
    n = 1 << 24
    p8, p32 = place(relu_work(n, 1), Device.of(h100, "int8")), place(relu_work(n, 4), Device.of(h100, "fp32"))
    assert p8.factors["blocks"] == n // (ELEM_THREADS * VECTOR_LOAD_BYTES)  # 16 int8 per thread
    assert p32.factors["blocks"] == n // (ELEM_THREADS * VECTOR_LOAD_BYTES // 4)  # 4 fp32 per thread
    # a tiny int8 kernel: one block's 256 threads x 16 B in flight, as at fp32
    tiny8 = place(relu_work(256 * 16, 1), Device.of(h100, "int8"))
    bw = h100.dram.sustained_gbps * 1e9
    assert tiny8.mem_share == pytest.approx(256 * 16 / (bw * DRAM_LATENCY_S))


# -- L2 residency -------------------------------------------------------------------------------
def test_l2_hits_by_reuse_distance() -> None:
    def w(i: int, reads: list, writes: list) -> Work:
        return Work(i, f"k{i}", OpClass.ELEMENTWISE, 0, 0, 0, sum(b for _, b in reads), 0,
                    sum(b for _, b in writes), 0, Parallelism(output_elements=1), False,
                    reads=tuple(reads), writes=tuple(writes))

    mb = 1 << 20
    works = (w(0, [("x", 8 * mb)], [("a", 8 * mb)]),   # clock 16 MB
             w(1, [("a", 8 * mb)], [("b", 30 * mb)]),  # a: 0 B since its write -> hit; clock 54 MB
             w(2, [("x", 8 * mb), ("b", 30 * mb)], []))  # b: hit; x: 38 MB moved since + 8 > 40 MB
    assert l2_hits(works, capacity=40 * mb) == {1: 8 * mb, 2: 30 * mb}
    assert l2_hits(works, capacity=60 * mb) == {1: 8 * mb, 2: 38 * mb}


def test_l2_serves_a_chain_that_fits_and_not_one_that_does_not() -> None:
    a100 = load_profile("a100-pcie-40gb")
    l2 = a100.level("l2").capacity_bytes
    small = map_partition(chain_partition(3, 1 << 20), a100, mode="eager")  # 4 MB tensors
    assert small.meta["l2_hit_bytes"] == 2 * 4 * (1 << 20)  # kernels 2 and 3 read their producer's output
    assert {t.level for t in small.subgraphs[1].traffic} >= {"l2"}
    elements = 2 * l2 // 4  # each fp32 tensor twice the L2
    big = map_partition(chain_partition(3, elements), a100, mode="eager")
    assert big.meta["l2_hit_bytes"] == 0


# -- power never exceeds the TDP ----------------------------------------------------------------
def test_power_cap_stretches_a_kernel_to_the_tdp() -> None:
    h100 = load_profile("h100-sxm5")
    low = h100.model_copy(update={"power": h100.power.model_copy(update={"tdp_w": 100.0})})
    d = Device.of(low, "bf16")
    w = gemm_work(8192, 8192, 8192, 2)
    e = estimate(w, place(w, d), d, weights_home(d, (w,)))
    assert e.bound is Bound.POWER
    assert e.latency_s == pytest.approx(e.dynamic_energy_j / (100.0 - h100.power.idle_w))
    full = Device.of(h100, "bf16")
    f = estimate(w, place(w, full), full, weights_home(full, (w,)))
    assert f.energy_j / f.latency_s <= h100.power.tdp_w * (1 + 1e-9)


# -- AMD CDNA from the profile's data ----------------------------------------------------------------
def test_amd_gemm_on_matrix_cores_over_compute_units() -> None:
    mi = load_profile("mi300x")
    assert mi.gpu.vendor.value == "amd" and mi.gpu.warp_size == 64
    d = Device.of(mi, "bf16")
    m = n = k = 8192
    p = place(gemm_work(m, n, k, 2), d)
    assert p.unit == "CU" and p.units_total == mi.gpu.sms
    assert "matrix cores" in p.detail and "CUs" in p.detail
    t = gemm_tiling(m, n, k, 1, mi.gpu, 2, rates=sm_rates(d, d.tensor_peak))
    assert p.factors["blocks"] == t.blocks == math.ceil(m / t.tm) * math.ceil(n / t.tn) * t.split_k
    assert p.tensor_rate == pytest.approx(mi.peak_tflops["bf16"] * 1e12 * mi.clocks.sustained_ratio * t.efficiency)
    v = place(relu_work(1 << 24, 2), d)
    assert v.unit == "CU" and "SIMD units" in v.detail


def test_amd_vector_kernel_uses_wavefront_occupancy() -> None:
    mi = load_profile("mi210")
    p = place(relu_work(1 << 22, 4), Device.of(mi, "fp32"))
    blocks = (1 << 22) // (ELEM_THREADS * VECTOR_LOAD_BYTES // 4)
    assert p.factors["blocks"] == blocks
    assert p.factors["quantization"] == pytest.approx(blocks / (mi.gpu.sms * math.ceil(blocks / mi.gpu.sms)))


# -- what the estimate does not know ---------------------------------------------------------------
def test_figure_provenance_and_estimated_share() -> None:
    a100 = load_profile("a100-pcie-40gb")
    est = map_partition(chain_partition(3, 1 << 24), a100, mode="cudagraph")
    for s in est.subgraphs:
        assert set(s.provenance) == {"compute", "memory", "overhead", "power"}
    # memory-bound relus: the bounding figure is the HBM bandwidth x its efficiency
    hbm = a100.level("hbm")
    expect = FigureSource.ESTIMATED if any(
        (a100.source(f"memory.hbm.{f}") or "").lower().startswith("estimated")
        for f in ("bandwidth_gbps", "efficiency") if f != "efficiency" or hbm.efficiency is not None
    ) else FigureSource.SOURCED
    assert all(s.provenance["memory"] is expect for s in est.subgraphs)
    # all sources estimated -> all time rests on estimated figures
    est_all = a100.model_copy(update={"sources": {k: "estimated: test" for k in a100.sources}})
    e2 = map_partition(chain_partition(3, 1 << 24), est_all, mode="cudagraph")
    assert e2.estimated_share == pytest.approx(1.0)
    assert e2.summary()["estimated_share"] == pytest.approx(1.0)


def _graph_with_unknown_op():
    b = GraphBuilder("unknowns")
    x = b.input((4, 4))
    y = b.op("aten.relu.default", [x], module="a")
    z = b.op("aten.frobnicate.default", [y], module="blocks.0.mix")
    return b.build([z])


def test_unknown_ops_are_listed_and_strict_fails() -> None:
    g = _graph_with_unknown_op()
    est = estimate_on(prepare(Scenario(g, mode="eager")), "a100-pcie-40gb")
    assert est.unknown_ops == ("aten.frobnicate.default x1",)
    assert est.to_dict()["unknown_ops"] == ["aten.frobnicate.default x1"]
    assert any("without a cost rule" in n for n in est.notes)
    with pytest.raises(DnnmapError, match="frobnicate"):
        prepare(Scenario(g, strict=True))
