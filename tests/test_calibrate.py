"""Calibration: the quick run end to end, the tables it writes, and how the mapper reads them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from dnnmap.calibrate import calibrate, plan_for
from dnnmap.calibrate.quiet import FixedLoad
from dnnmap.calibrate.tables import _rate, level_bandwidths
from dnnmap.errors import DnnmapError
from dnnmap.hardware.interp import shape_interpolate
from dnnmap.hardware.loader import load_file
from dnnmap.hardware.schema import EXAMPLE, ConvKind, HardwareProfile, Precision, ShapePoint


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HardwareProfile, float]:
    path = tmp_path_factory.mktemp("cal") / "this-cpu.yaml"
    start = time.perf_counter()
    # the suite runs beside another pytest worker: a quiet meter, or the run would be refused
    # (the refusal itself is tested in test_calibrate_load.py)
    prof = calibrate("cpu", quick=True, out=path, meter=FixedLoad([0.0]))
    return path, prof, time.perf_counter() - start


def test_quick_calibration_writes_a_valid_measured_profile(quick: tuple[Path, HardwareProfile, float]) -> None:
    path, prof, elapsed = quick
    assert elapsed < 120  # budget 30 s on a quiet machine; generous for a shared CI runner
    loaded = load_file(path)  # the file passes the strict schema on its own
    assert loaded == prof
    assert prof.provenance.value == "calibrated" and prof.device_class.value == "cpu"
    cal = prof.calibration
    assert cal.meta.device == "cpu" and cal.meta.quick and cal.meta.threads == torch.get_num_threads()
    assert cal.meta.library_versions["torch"] == torch.__version__
    for key in ("peak_tflops", "vector_peak_tflops", "kernel_launch_us", "calibration"):
        assert prof.sources[key].startswith("measured"), key
    assert all("bandwidth measured" in prof.source(f"memory.{m.name}") for m in prof.memory)
    # the tables: shape grids of the quick plan, sweeps for every level, dispatch per op kind
    grid = plan_for("cpu", quick=True).gemm_fp32
    assert len(cal.gemm_shapes[Precision.FP32]) == len(grid.m) * len(grid.n) * len(grid.k)
    assert set(cal.conv_shapes) == {ConvKind.DENSE, ConvKind.POINTWISE, ConvKind.DEPTHWISE}
    assert {"dispatch_conv_us", "dispatch_view_us", "exp_per_s", "op_max_pool2d_flops_per_s"} <= set(cal.scalars)
    assert cal.dispatch_us == prof.kernel_launch_us > 0
    # the host-speed yardsticks: a 512^3 GEMM (2.7e8 FLOP) takes between 10 us (27 TFLOP/s) and
    # 1 s; a copy over 64 MiB (128 MiB moved) between 10 us (13 TB/s) and 1 s (134 MB/s)
    from dnnmap.calibrate.probe import calibrated_probes_us

    probes = calibrated_probes_us(prof)
    assert set(probes) == {"probe_gemm512_us", "probe_copy64mib_us"}
    assert all(10 < us < 1e6 for us in probes.values()), probes
    text = path.read_text()
    assert "no model was timed" in text  # the held-out statement travels with the file


def test_quick_calibration_measures_decode_and_training_kernels(quick: tuple[Path, HardwareProfile, float]) -> None:
    _, prof, _ = quick
    cal = prof.calibration
    grid = plan_for("cpu", quick=True).gemm_stream
    assert grid is not None
    for layout in ("nt", "nn"):  # nn.Linear's [out, in] weight and Conv1D's [in, out]
        assert len(cal.gemm_stream[layout][Precision.FP32]) == len(grid.m) * len(grid.n) * len(grid.k)
    assert set(cal.conv_backward_shapes) == {ConvKind.DENSE, ConvKind.DEPTHWISE}
    assert "native_batch_norm_backward" in cal.op_bandwidth


def test_measured_points_never_exceed_the_measured_peak(quick: tuple[Path, HardwareProfile, float]) -> None:
    _, prof, _ = quick
    cal = prof.calibration
    for prec, pts in cal.gemm_shapes.items():
        assert max(p.achieved_tflops for p in pts) <= prof.peak_tflops[prec]
    top = prof.memory[0].bandwidth_gbps
    assert all(p.achieved_gbps <= top for pts in cal.bandwidth.values() for p in pts)
    bws = [m.bandwidth_gbps for m in prof.memory]
    assert bws == sorted(bws, reverse=True)  # nearer levels are never slower


def test_never_overwrites_without_force(quick: tuple[Path, HardwareProfile, float]) -> None:
    path, _, _ = quick
    before = path.read_text()
    t0 = time.perf_counter()
    with pytest.raises(DnnmapError, match="exists"):
        calibrate("cpu", quick=True, out=path)
    assert time.perf_counter() - t0 < 1.0  # refused before measuring anything
    assert path.read_text() == before


def test_cli_calibrate_refuses_existing_file(tmp_path: Path) -> None:
    from dnnmap.cli.calibrate_cmd import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "mine.yaml"
    out.write_text("name: hand-written\n")
    res = CliRunner().invoke(app, ["calibrate", "--quick", "--out", str(out)])
    assert res.exit_code != 0 and "exists" in res.output
    assert out.read_text() == "name: hand-written\n"


# -- the size-efficiency interpolation -------------------------------------------------------
def _grid(f) -> list[ShapePoint]:
    axes = (1, 16, 256)
    return [ShapePoint(m=m, n=n, k=k, achieved_tflops=f(m, n, k)) for m in axes for n in axes for k in axes]


def test_shape_interpolation_is_exact_on_grid_and_multilinear_in_log() -> None:
    # a function linear in (log m, log n, log k) is reproduced exactly between grid points
    def f(m: float, n: float, k: float) -> float:
        return 1.0 + 0.5 * math.log(m) + 0.25 * math.log(n) + 0.125 * math.log(k)

    pts = _grid(f)
    for p in pts:
        assert shape_interpolate(pts, p.m, p.n, p.k) == pytest.approx(p.achieved_tflops)
    for m, n, k in ((4, 4, 4), (2, 100, 50), (200, 3, 17)):
        assert shape_interpolate(pts, m, n, k) == pytest.approx(f(m, n, k))
    # clamped outside the grid: no extrapolation
    assert shape_interpolate(pts, 10**6, 1, 1) == pytest.approx(f(256, 1, 1))
    assert shape_interpolate(pts, 0.5, 10**6, 10**6) == pytest.approx(f(1, 256, 256))


def test_shape_interpolation_uses_products_across_axes() -> None:
    # f = log m * log n is bilinear in the logs: midpoint of a cell = mean of its corners
    pts = _grid(lambda m, n, k: 1.0 + math.log(m) * math.log(n))
    mid = shape_interpolate(pts, 4, 4, 1)  # log 4 = (log 1 + log 16) / 2 on both axes
    corners = [1.0 + math.log(a) * math.log(b) for a in (1, 16) for b in (1, 16)]
    assert mid == pytest.approx(sum(corners) / 4)


def test_a_noisy_small_grid_point_is_capped_by_a_larger_one() -> None:
    """A point more than 1.5x slower than one at least as large on every axis is timing noise (a
    small call timed after a long one): its latency is capped at 1.5x the larger point's, so the
    interpolation never prices a GEMM far slower than one doing a superset of its work. Other
    points keep their measurement, a point within the margin too."""
    def f(m: float, n: float, k: float) -> float:  # TFLOPS rising with size: latencies monotone
        return 0.01 * m * n * k / (1.0 + m * n * k / 1000.0)

    pts = _grid(f)
    clean = {(p.m, p.n, p.k): shape_interpolate(pts, p.m, p.n, p.k) for p in pts}
    assert all(v == pytest.approx(f(*key)) for key, v in clean.items())
    # the same grid with (1, 1, 1) measured 100x too slow, as after a 40 ms call
    noisy = [ShapePoint(m=p.m, n=p.n, k=p.k, achieved_tflops=p.achieved_tflops / (100 if (p.m, p.n, p.k) == (1, 1, 1) else 1))
             for p in pts]
    lat = {(p.m, p.n, p.k): 2 * p.m * p.n * p.k / p.achieved_tflops for p in noisy}
    capped = min(v for key, v in lat.items() if key != (1, 1, 1))  # the fastest point that contains (1, 1, 1)
    assert lat[(1, 1, 1)] > capped
    assert shape_interpolate(noisy, 1, 1, 1) == pytest.approx(2 / (1.5 * capped))
    assert shape_interpolate(noisy, 16, 16, 16) == pytest.approx(f(16, 16, 16))  # untouched
    # 1.2x too slow: within the margin, kept as measured
    mild = [ShapePoint(m=p.m, n=p.n, k=p.k, achieved_tflops=p.achieved_tflops / (1.2 if (p.m, p.n, p.k) == (1, 1, 1) else 1))
            for p in pts]
    assert shape_interpolate(mild, 1, 1, 1) == pytest.approx(f(1, 1, 1) / 1.2)


def test_dispatch_is_taken_out_of_the_table_and_capped() -> None:
    # 2 MFLOP in 30 us with 10 us of dispatch -> 2e6 / 20e-6 = 1e11 FLOP/s
    assert _rate(2_000_000, 30e-6, 10e-6, 1e12) == pytest.approx(2e6 / 20e-6)
    # all dispatch: the compute part is at most flops / peak, i.e. the rate is the peak
    assert _rate(2_000_000, 10e-6, 10e-6, 1e12) == 1e12


def test_level_bandwidths_are_monotone_and_cover_every_point() -> None:
    pts = [{"working_set_bytes": ws, "achieved_gbps": bw}
           for ws, bw in ((4096, 90.0), (65536, 120.0), (4 << 20, 60.0), (256 << 20, 20.0))]
    bws = level_bandwidths(pts, [(0, 32768), (32768, 1 << 20), (1 << 20, 16 << 20), (64 << 20, 1 << 62)])
    # L1's own point (90) was disturbed: the L2 point (120) shows L1 is at least that fast
    assert bws == [120.0, 120.0, 60.0, 20.0]


# -- the mapper reads the tables -----------------------------------------------------------
def _toy_calibrated(conv_tflops: float, dispatch_conv_us: float, view_us: float, **extra: float) -> HardwareProfile:
    axes = (1, 64, 4096)
    shapes = [{"m": m, "n": n, "k": k, "achieved_tflops": conv_tflops} for m in axes for n in axes for k in axes]
    data = {**EXAMPLE, "provenance": "calibrated", "calibration": {
        "meta": {"machine": "toy", "device": "cpu", "date": "2026-01-01T00:00:00Z"},
        "conv_shapes": {"dense": {"fp32": shapes}, "pointwise": {"fp32": shapes}},
        "gemm_shapes": {"fp32": shapes},
        "bandwidth": {"copy": [{"working_set_bytes": 1024, "achieved_gbps": 10.0},
                               {"working_set_bytes": 2**30, "achieved_gbps": 10.0}]},
        "dispatch_us": 1.0,
        "scalars": {"dispatch_conv_us": dispatch_conv_us, "dispatch_view_us": view_us,
                    "dispatch_elementwise_us": 1.0, "dispatch_normalization_us": 1.0,
                    "dispatch_matmul_us": 1.0, "dispatch_reduction_us": 1.0, **extra},
    }}
    data["sources"] = {**EXAMPLE["sources"], "calibration": "measured: a test"}
    return HardwareProfile.model_validate(data)


def test_mapper_uses_measured_conv_rate_and_dispatch() -> None:
    from dnnmap.costs import count_graph
    from dnnmap.fusion import partition
    from dnnmap.fusion.toy import residual_block
    from dnnmap.mapping import map_partition

    prof = _toy_calibrated(conv_tflops=0.05, dispatch_conv_us=7.0, view_us=0.5)
    part = partition(count_graph(residual_block(c=8, hw=8)), "unfused")
    est = map_partition(part, prof)
    conv = next(s for s in est.subgraphs if s.op_class.value == "conv")
    sg = next(g for g in part.subgraphs if g.id == conv.subgraph_id)
    views = len(sg.op_ids) - 1  # views folded into the conv's subgraph, each its own eager call
    assert conv.compute_s == pytest.approx(conv.tensor_flops / 0.05e12)
    assert conv.overhead_s == pytest.approx((7.0 + views * 0.5) * 1e-6)
    assert est.provenance.value == "calibrated"


def test_yaml_round_trip_keeps_the_tables(quick: tuple[Path, HardwareProfile, float]) -> None:
    path, prof, _ = quick
    data = yaml.safe_load(path.read_text())
    assert data["calibration"]["gemm_shapes"]["fp32"][0].keys() == {"m", "n", "k", "achieved_tflops"}
    assert HardwareProfile.model_validate(data) == prof


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_quick_calibration(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    prof = calibrate("cuda", quick=True, out=tmp_path / "gpu.yaml")
    assert prof.device_class.value == "gpu" and prof.calibration.meta.device == "cuda"
    assert prof.calibration.gemm_shapes


def test_cuda_request_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DnnmapError, match="cuda"):
        calibrate("cuda", quick=True)


def test_module_entries_follow_the_module_paths() -> None:
    from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
    from dnnmap.mapping.workload import ModuleCalls

    paths = ["a.b", "a.b", "a.c", "", "a", "d"]
    tensors = {f"t{i}": Tensor(f"t{i}", (1,), DType.FLOAT32, Role.ACTIVATION) for i in range(len(paths) + 1)}
    ops = tuple(Op(f"op{i}", "aten.relu.default", OpClass.ELEMENTWISE, (f"t{i}",), (f"t{i + 1}",), p)
                for i, p in enumerate(paths))
    calls = ModuleCalls.of(Graph("g", tensors, ops))
    # a.b enters a and a.b (2); same module (0); a.c enters a.c (1); root (0); a (1); d (1)
    assert [calls.entries[o.id] for o in ops] == [2, 0, 1, 0, 1, 1]
    assert calls.leaves == {"a.b", "a.c", "d"}  # "a" has children: a container, not a leaf


def test_passes_combine_to_the_median_not_the_fastest() -> None:
    """Three passes of one GEMM point at 1.0, 1.3 and 0.7 ms (a host drifting by +-30 %): the
    profile keeps 1.0 ms (the fastest-pass rule kept 0.7), its spread widened to (1.3-0.7)/1.0;
    a latency scalar and a rate scalar both take their median."""
    from dnnmap.calibrate.collect import _Store
    from dnnmap.calibrate.microbench import GemmPoint, ScalarPoint

    store = _Store()
    for ms, lat, rate in ((1.0, 5e-6, 2e9), (1.3, 9e-6, 1e9), (0.7, 4e-6, 3e9)):
        one = _Store()
        one.gemm[("float32", 64, 64, 64)] = [GemmPoint("float32", 64, 64, 64, ms * 1e-3, 0.02)]
        one.scalar(ScalarPoint("dispatch_us", lat, "s"))
        one.scalar(ScalarPoint("exp_rate", rate, "1/s"))
        store.merge(one)
    (gemm,) = store.typical("gemm")
    assert gemm.seconds == pytest.approx(1.0e-3)
    assert gemm.spread == pytest.approx(0.6)
    scalars = {p.name: p.value for p in store.typical_scalars()}
    assert scalars == {"dispatch_us": pytest.approx(5e-6), "exp_rate": pytest.approx(2e9)}
