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
    """A point whose call (per-call cost + work) takes more than 1.5x the fastest call of any
    other point at least as large on every axis is timing noise (a small call timed after a
    long one): it is capped at 1.5x that call. The fastest dominating point counts even when it
    is not a neighbour; a faster point that is smaller on some axis does not; a point within the
    margin keeps its measurement; without a per-call cost given, nothing is capped."""
    axes = (1, 16, 256)
    lat = {(m, n, k): 1.0 + math.log2(m * n * k) for m in axes for n in axes for k in axes}  # seconds of work
    lat[(16, 16, 16)] = 100.0  # noisy
    for big in ((256, 16, 16), (16, 256, 16), (16, 16, 256)):
        lat[big] = 50.0  # its neighbours slow too ...
    lat[(256, 256, 256)] = 6.0  # ... but the largest point fast: the fastest point dominating (16, 16, 16)
    lat[(1, 16, 16)] = 0.5  # faster, but smaller on m: does not bound (16, 16, 16)
    pts = [ShapePoint(m=m, n=n, k=k, achieved_tflops=2 * m * n * k / (t * 1e12)) for (m, n, k), t in lat.items()]

    def seconds(m: int, n: int, k: int, fixed: float | None) -> float:
        return 2 * m * n * k / (shape_interpolate(pts, m, n, k, fixed_s=fixed) * 1e12)

    fixed = 2.0  # seconds a call besides the work
    assert seconds(16, 16, 16, fixed) == pytest.approx(1.5 * (6.0 + fixed) - fixed)  # 100 s -> 10 s
    assert seconds(16, 16, 16, None) == pytest.approx(100.0)  # no per-call cost given: as measured
    # (256, 16, 16): its own dominating points are (256, 256, 16) etc. at 1 + log2(2^20) = 21 s and
    # (256, 256, 256) at 6 s: 50 + 2 > 1.5 x (6 + 2) -> capped at 10 s of work
    assert seconds(256, 16, 16, fixed) == pytest.approx(10.0)
    # (1, 16, 1): 1 + 8 = 9 s, the fastest larger point (1, 16, 16)'s 0.5 s: 11 > 1.5 x 2.5 -> 1.75 s
    assert seconds(1, 16, 1, fixed) == pytest.approx(1.5 * (0.5 + fixed) - fixed)
    # within the margin: (16, 1, 1) at 1 + 4 = 5 s, the fastest point dominating it (256, 256, 256)
    # at 6 s: 5 + 2 < 1.5 x (6 + 2)
    assert seconds(16, 1, 1, fixed) == pytest.approx(5.0)
    assert seconds(256, 256, 256, fixed) == pytest.approx(6.0)  # nothing larger


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


def test_each_cold_op_is_named_as_capture_records_it() -> None:
    """The cold-path curves are looked up by a subgraph's ATen op name: each measured op must be
    recorded under its key, or its curve would never be used."""
    from dnnmap.calibrate.microbench import GENERIC_COLD_OPS, cold_ops
    from dnnmap.capture import capture
    from dnnmap.ir import OpClass
    from dnnmap.ir.classify import inplace_base, op_name

    class One(torch.nn.Module):
        def __init__(self, fn: object) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, x: torch.Tensor) -> object:
            return self.fn()

    ops = cold_ops("cpu")
    assert set(GENERIC_COLD_OPS) <= set(ops)
    for name, fn in ops.items():
        g = capture(One(fn), inputs=(torch.zeros(1),))
        recorded = [inplace_base(op_name(o.target)) or op_name(o.target) for o in g.ops if o.op_class is not OpClass.VIEW]
        assert recorded == [name], (name, recorded)
