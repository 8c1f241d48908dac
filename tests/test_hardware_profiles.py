"""Every shipped profile loads, is dense, and agrees with its own organization."""

from __future__ import annotations

import pytest

from dnnmap.hardware import (
    SHIPPED_DIR,
    CpuCompute,
    GpuCompute,
    KpuCompute,
    Precision,
    TpuCompute,
    load_file,
    load_profile,
    profile_names,
)

SHIPPED = sorted(SHIPPED_DIR.glob("*.yaml"))
REQUIRED = {
    "i7-12700k", "ryzen7-7700x", "h100-pcie", "h100-sxm5", "a100-sxm4-80gb", "l4",
    "jetson-agx-orin", "tpu-v4", "tpu-v5e", "kpu-t2", "kpu-t100", "cloud-x86-2c",
}


def test_required_devices_are_shipped() -> None:
    assert REQUIRED <= set(profile_names())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_loads_and_is_named_after_its_file(path) -> None:
    p = load_file(path)
    assert p.name == path.stem
    assert p.provenance.value == "theoretical"
    assert p.dram.scope.value == "chip"


# Dense, not with-sparsity: the datasheets print 2:4-sparse tensor figures; dense is half.
@pytest.mark.parametrize(
    ("name", "precision", "dense"),
    [
        ("h100-sxm5", Precision.BF16, 989.4),  # Hopper whitepaper dense; datasheet "1,979*"
        ("h100-sxm5", Precision.FP8, 3957.8 / 2),
        ("h100-pcie", Precision.BF16, 1513 / 2),  # datasheet "1,513*"
        ("h100-pcie", Precision.TF32, 756 / 2),
        ("a100-sxm4-80gb", Precision.BF16, 624 / 2),  # datasheet "312 | 624*"
        ("l4", Precision.BF16, 242 / 2),  # datasheet "242*"
        ("l4", Precision.INT8, 485 / 2),
        ("jetson-agx-orin", Precision.INT8, 170 / 2),  # GPU "170 sparse INT8 TOPS"
    ],
)
def test_peaks_are_dense(name: str, precision: Precision, dense: float) -> None:
    assert load_profile(name).peak(precision) == pytest.approx(dense, rel=1e-3)


def test_h100_sxm5_bf16_is_the_dense_datasheet_figure() -> None:
    assert load_profile("h100-sxm5").peak_tflops[Precision.BF16] == 989.4


def _organization_fp32_tflops(p) -> float:
    """Peak rebuilt from the compute organization and clocks (TFLOPS)."""
    c = p.compute
    if isinstance(c, GpuCompute):  # SMs * FP32 lanes * 2 FLOP per FMA * boost
        return c.sms * c.fp32_lanes_per_sm * 2 * p.clocks.boost_mhz * 1e6 / 1e12
    if isinstance(c, CpuCompute):  # per group: cores * lanes * FMA pipes * 2 * its boost
        return sum(g.count * g.fp32_flops_per_cycle() * (g.boost_mhz or p.clocks.boost_mhz) * 1e6
                   for g in c.core_groups) / 1e12
    raise TypeError(type(c))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_peak_matches_organization(path) -> None:
    p = load_file(path)
    c = p.compute
    if isinstance(c, GpuCompute | CpuCompute):
        assert p.vector_peak(Precision.FP32) == pytest.approx(_organization_fp32_tflops(p), rel=0.02)
    elif isinstance(c, TpuCompute):  # MXUs * rows * cols MACs * 2 FLOP * clock
        rebuilt = c.mxus * c.mxu_rows * c.mxu_cols * 2 * p.clocks.boost_mhz * 1e6 / 1e12
        assert p.peak(Precision.BF16) == pytest.approx(rebuilt, rel=0.02)
    elif isinstance(c, KpuCompute):  # PEs * 2 op per MAC * clock = the largest matrix peak
        rebuilt = c.pes * 2 * p.clocks.boost_mhz * 1e6 / 1e12
        assert max(p.peak_tflops.values()) == pytest.approx(rebuilt, rel=0.01)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_energy_at_peak_fits_in_power_budget(path) -> None:
    """Energy per op x peak rate must fit in the dynamic power budget (tdp - idle). This also
    holds for the KPUs, whose seed figure '0.1 J/GFLOP' is read as 0.1 pJ/op (the literal
    100 pJ/op would need 200 W at peak on the 10 W KPU-T2)."""
    p = load_file(path)
    dynamic_w = p.power.tdp_w - p.power.idle_w
    for prec, pj in p.energy_pj_per_flop.items():
        peak = p.peak(prec) or p.vector_peak(prec)
        # pJ/FLOP * TFLOPS = W
        if (p.source("energy_pj_per_flop") or "").startswith("seed summary"):
            assert pj * peak <= dynamic_w, prec  # a cited figure: it must fit, not define, the budget
        else:  # the estimate is defined as (tdp - idle) / peak
            assert pj * peak == pytest.approx(dynamic_w, rel=0.02), prec


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_energy_and_peaks_cover_the_same_precisions(path) -> None:
    p = load_file(path)
    assert set(p.energy_pj_per_flop) == set(p.peak_tflops)
    # the vector units never beat the matrix engine at a precision both have
    for prec, v in p.vector_peak_tflops.items():
        if prec in p.peak_tflops:
            assert v <= p.peak_tflops[prec]


def test_kpu_reference_figures_cite_the_seed_summary() -> None:
    t2, t100 = load_profile("kpu-t2"), load_profile("kpu-t100")
    assert t2.peak(Precision.INT8) == 2 and t2.dram.bandwidth_gbps == 165
    assert t100.peak(Precision.BF16) == 100 and t100.dram.bandwidth_gbps == 1000
    for p in (t2, t100):
        assert p.kpu.scratchpad_per_tile_bytes == 256 * 1024
        for path in ("kpu.scratchpad_per_tile_bytes", "energy_pj_per_flop",
                     f"memory.{p.dram.name}.bandwidth_gbps"):
            assert "shared/seed/000_4f1cabf001b236be.md" in p.source(path)


# --- GPU profiles: host/device timeline, matrix-core data, sustained clocks ------------------

GPUS = [p for p in SHIPPED if load_file(p).gpu is not None]
NEW_GPUS = {
    "a100-pcie-40gb", "a100-pcie-80gb", "a100-sxm4-40gb", "v100-pcie-32gb", "t4", "p100-pcie-16gb", "p4",
    "h200-sxm", "b200", "mi210", "mi250", "mi300x",
}


def test_new_gpu_profiles_are_shipped() -> None:
    assert NEW_GPUS <= set(profile_names())


@pytest.mark.parametrize("path", GPUS, ids=lambda p: p.stem)
def test_gpu_profile_has_timeline_and_matrix_data(path) -> None:
    p = load_file(path)
    g = p.gpu
    assert p.dram.efficiency is not None and 0 < p.dram.efficiency <= 1
    assert set(g.matrix_precisions) <= set(p.peak_tflops)
    assert (g.tensor_cores_per_sm == 0) == (not g.matrix_precisions)
    assert g.simt_gemm_tiles
    assert p.eager_dispatch_us is not None and p.eager_dispatch_us >= p.kernel_launch_us
    assert p.kernel_gap_us is not None and p.kernel_gap_us < p.kernel_launch_us
    assert g.fp32_lanes_per_scheduler is not None
    assert (g.vendor.value == "amd") == (g.warp_size == 64)
    if p.clocks.sustained_mhz is not None:
        assert p.clocks.base_mhz <= p.clocks.sustained_mhz < p.clocks.boost_mhz
        assert p.source("clocks.sustained_mhz")
    for prec in g.matrix_precisions:  # a precision on the matrix cores has a matrix peak above the vector one
        assert p.vector_peak(prec) is None or p.vector_peak(prec) <= p.peak_tflops[prec]


@pytest.mark.parametrize("name", ["t4", "l4", "a100-pcie-40gb", "a100-pcie-80gb", "h100-pcie"])
def test_power_limited_cards_run_below_boost(name: str) -> None:
    assert load_profile(name).clocks.sustained_ratio < 0.95


# Hand arithmetic: FP32 vector peak = SMs (CUs) x FP32 lanes x 2 FLOP x boost, where the datasheet
# figure is that product (AMD: the non-packed figure).
@pytest.mark.parametrize(
    ("name", "sms", "lanes", "boost_mhz", "fp32"),
    [
        ("a100-pcie-40gb", 108, 64, 1410, 19.5),
        ("a100-pcie-80gb", 108, 64, 1410, 19.5),
        ("a100-sxm4-40gb", 108, 64, 1410, 19.5),
        ("v100-pcie-32gb", 80, 64, 1380, 14.0),
        ("t4", 40, 64, 1590, 8.1),
        ("p100-pcie-16gb", 56, 64, 1303, 9.3),
        ("p4", 20, 128, 1063, 5.5),
        ("h200-sxm", 132, 128, 1980, 66.9),
        ("b200", 148, 128, 1965, 74.4),
        ("mi210", 104, 64, 1700, 22.6),
        ("mi250", 208, 64, 1700, 45.3),
        ("mi300x", 304, 64, 2100, 81.7),
    ],
)
def test_fp32_peak_is_the_organization_product(name: str, sms: int, lanes: int, boost_mhz: int, fp32: float) -> None:
    p = load_profile(name)
    assert (p.gpu.sms, p.gpu.fp32_lanes_per_sm, p.clocks.boost_mhz) == (sms, lanes, boost_mhz)
    assert p.vector_peak(Precision.FP32) == fp32
    assert sms * lanes * 2 * boost_mhz * 1e6 / 1e12 == pytest.approx(fp32, rel=0.015)


@pytest.mark.parametrize(
    ("name", "precision", "dense"),
    [
        ("h200-sxm", Precision.BF16, 1979 / 2),  # datasheet "1,979*"
        ("b200", Precision.FP8, 9000 / 2),  # HGX B200 "9 PFLOPS*"
        ("b200", Precision.BF16, 4500 / 2),
        ("t4", Precision.FP16, 65),  # Turing: no sparsity
        ("v100-pcie-32gb", Precision.FP16, 112),
        ("mi300x", Precision.FP8, 5229.8 / 2),  # AMD prints sparsity separately at 2x
        ("mi250", Precision.FP16, 362.1),
    ],
)
def test_new_gpu_peaks_are_dense(name: str, precision: Precision, dense: float) -> None:
    assert load_profile(name).peak(precision) == pytest.approx(dense, rel=2e-3)


def test_pascal_has_no_matrix_cores() -> None:
    for name in ("p100-pcie-16gb", "p4"):
        g = load_profile(name).gpu
        assert g.tensor_cores_per_sm == 0 and not g.matrix_precisions
        assert g.fp32_lanes_per_scheduler == 32
