"""``dnnmap calibrate --from-measurements``: kernel tables measured elsewhere -> measured profile.

Fixture rows are copied from NeuSight's kernel microbenchmarks
(``../shared/measurements/neusight/kernels/<op>/Tesla_T4.csv``, MIT licence; columns reduced to
the ones the reader uses). Expectations are hand arithmetic on those rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dnnmap.calibrate.imports import (
    MIN_KERNEL_S,
    KernelRow,
    import_profile,
    neusight_bytes,
    read_neusight,
    without_timing_floor,
)
from dnnmap.cli.main import app
from dnnmap.errors import DnnmapError
from dnnmap.hardware.interp import ScatteredTable
from dnnmap.hardware.loader import load_file, load_profile
from dnnmap.hardware.schema import BandwidthKind, Precision, Provenance
from dnnmap.pipeline import Scenario, estimate_on, prepare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "measurements" / "neusight"
HEAD = "OPName,Latency,Device,Torch Version,CUDNN Version,CUDA Version"
# NeuSight kernels/<op>/Tesla_T4.csv (rows 2, 62, 122, 182 ... of each table)
NEUSIGHT_T4 = {
    "linear": (f"{HEAD},B,M,N,K", [
        "linear,0.052213333547115326,Tesla T4,p2.1.0,8902,cu121,1,58,13,141",
        "linear,0.08818133423725764,Tesla T4,p2.1.0,8902,cu121,1,211,240,2270",
        "linear,0.6971840063730875,Tesla T4,p2.1.0,8902,cu121,1,161,224,40347",
        "linear,0.061994666854540505,Tesla T4,p2.1.0,8902,cu121,1,53,411,1272",
        "linear,0.9393920103708903,Tesla T4,p2.1.0,8902,cu121,1,90,497,30875",
        "linear,0.09074133137861888,Tesla T4,p2.1.0,8902,cu121,1,181,737,707",
    ]),
    "bmm": (f"{HEAD},B,M,N,K", [
        "bmm,0.035466667264699936,Tesla T4,p2.1.0,8902,cu121,13,27,15,29",
        "bmm,0.03894399975736936,Tesla T4,p2.1.0,8902,cu121,6,31,34,71",
        "bmm,0.08022399991750717,Tesla T4,p2.1.0,8902,cu121,31,19,108,158",
        "bmm,0.10896000017722447,Tesla T4,p2.1.0,8902,cu121,33,27,170,359",
        "bmm,0.14283733069896698,Tesla T4,p2.1.0,8902,cu121,10,27,361,933",
        "bmm,0.03684266656637192,Tesla T4,p2.1.0,8902,cu121,1,43,6,32",
    ]),
    "add": (f"{HEAD},B,H", ["add,0.025945600494742392,Tesla T4,p2.1.0,8902,cu121,127,168",
                            "add,0.46867200136184695,Tesla T4,p2.1.0,8902,cu121,3252,2848"]),
    "addu": (f"{HEAD},B,H", ["addu,0.02486400045454502,Tesla T4,p2.1.0,8902,cu121,127,168",
                             "addu,0.33122560381889343,Tesla T4,p2.1.0,8902,cu121,3252,2848"]),
    "softmax": (f"{HEAD},B,H", ["softmax,0.03328000009059906,Tesla T4,p2.1.0,8902,cu121,127,168",
                                "softmax,0.049881599843502045,Tesla T4,p2.1.0,8902,cu121,510,1267",
                                "softmax,0.42433279752731323,Tesla T4,p2.1.0,8902,cu121,3252,2848"]),
    "ln": (f"{HEAD},B,H", ["ln,0.05036799982190132,Tesla T4,p2.1.0,8902,cu121,60,272",
                           "ln,0.18149333198865256,Tesla T4,p2.1.0,8902,cu121,10064,436"]),
}


def write_kernels(root: Path, tables: dict[str, tuple[str, list[str]]] = NEUSIGHT_T4, gpu: str = "Tesla_T4") -> Path:
    for op, (head, rows) in tables.items():
        (root / op).mkdir(parents=True, exist_ok=True)
        (root / op / f"{gpu}.csv").write_text("\n".join([head, *rows]) + "\n")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    kernels = write_kernels(tmp_path_factory.mktemp("kernels"))
    return import_profile(kernels, load_profile("t4"), gpu="Tesla_T4")


def test_neusight_rows_become_the_calibration_tables(imported) -> None:  # noqa: ANN001
    cal = imported.calibration
    assert imported.provenance is Provenance.CALIBRATED and imported.name == "t4-imported"
    assert cal.meta.imported_from.endswith("(GPU Tesla_T4)") and "NeuSight" in cal.meta.source
    assert cal.meta.machine == "Tesla T4" and cal.meta.library_versions["torch"] == "2.1.0"
    gemm = {(p.m, p.n, p.k): p.achieved_tflops for p in cal.gemm_points[Precision.FP32]}
    assert len(gemm) == 6 and len(cal.bmm_points[Precision.FP32]) == 6
    # every table loses its timing overhead: here its smallest latency less MIN_KERNEL_S (the
    # smallest rows' rooflines are far below 3 us), so the fastest row becomes a 3 us kernel
    assert f"linear {(LINEAR_OVER) * 1e6:.1f}" in cal.meta.notes
    # linear 58 x 13 x 141 in 0.052213 ms, the table's fastest: 2 * 58 * 13 * 141 FLOPs in 3 us
    assert gemm[(58, 13, 141)] == pytest.approx(2 * 58 * 13 * 141 / MIN_KERNEL_S / 1e12, rel=1e-5)
    assert gemm[(211, 240, 2270)] == pytest.approx(
        2 * 211 * 240 * 2270 / (0.08818133423725764e-3 - LINEAR_OVER) / 1e12, rel=1e-5)
    bmm = {(p.b, p.m, p.n, p.k): p.achieved_tflops for p in cal.bmm_points[Precision.FP32]}
    bmm_over = 0.035466667264699936e-3 - MIN_KERNEL_S
    assert bmm[(10, 27, 361, 933)] == pytest.approx(
        2 * 10 * 27 * 361 * 933 / (0.14283733069896698e-3 - bmm_over) / 1e12, rel=1e-5)
    # add on (127, 168): two fp32 reads + one write = 3 * 127 * 168 * 4 bytes; add on (3252, 2848)
    add = cal.op_bandwidth["add"]
    assert add[0].working_set_bytes == 3 * 127 * 168 * 4
    assert add[0].achieved_gbps == pytest.approx(3 * 127 * 168 * 4 / MIN_KERNEL_S / 1e9, rel=1e-5)
    add_over = 0.025945600494742392e-3 - MIN_KERNEL_S
    assert add[1].achieved_gbps == pytest.approx(
        3 * 3252 * 2848 * 4 / (0.46867200136184695e-3 - add_over) / 1e9, rel=1e-5)
    assert set(cal.op_bandwidth) == {"add", "add_scalar", "softmax", "layer_norm"}
    assert cal.bandwidth[BandwidthKind.COPY] == cal.op_bandwidth["add_scalar"]
    assert cal.bandwidth[BandwidthKind.ADD] == cal.op_bandwidth["add"]
    # layer norm also reads weight + bias (H each) and writes mean + rstd (B each)
    assert neusight_bytes("ln", 60, 272) == 4 * (2 * 60 * 272 + 2 * 272 + 2 * 60)
    assert cal.op_bandwidth["layer_norm"][0].working_set_bytes == 4 * (2 * 60 * 272 + 2 * 272 + 2 * 60)


LINEAR_OVER = 0.052213333547115326e-3 - MIN_KERNEL_S  # the linear table's timing overhead


def test_gemm_of_a_measured_shape_predicts_the_measured_latency(imported) -> None:  # noqa: ANN001
    # linear 211 x 240 x 2270 measured 0.08818 ms, less the table's timing overhead
    kernel = 0.08818133423725764e-3 - LINEAR_OVER
    s = Scenario(torch.nn.Linear(2270, 240, bias=False), input_shape=(211, 2270), mode="eager", tf32="off")
    prep = prepare(s)
    est = estimate_on(prep, imported)
    assert est.provenance.value == "calibrated"
    gemm = max(est.subgraphs, key=lambda sg: sg.tensor_flops)
    assert gemm.compute_s == pytest.approx(kernel, rel=1e-6)
    assert gemm.provenance["compute"].value == "measured" and gemm.explanation.endswith("[calibrated]")
    assert gemm.latency_s == pytest.approx(kernel, rel=0.03)  # + the kernel gap
    # end to end: the kernel after the host has issued it (eager dispatch, its own timeline)
    assert kernel < est.latency_s < kernel + 30e-6


def test_timing_overhead_is_the_largest_constant_every_row_allows() -> None:
    t4 = load_profile("t4")
    peak = t4.vector_peak(Precision.FP32) * 1e12
    big = 2 * 4096 * 4096 * 4096  # its roofline: big / peak = 17.0 ms on the T4's 8.1 TFLOPS
    rows = [KernelRow("linear", Precision.FP32, 50e-6, "a", 1, 8, 8, 8),
            KernelRow("linear", Precision.FP32, big / peak + 20e-6, "b", 1, 4096, 4096, 4096)]
    out, over = without_timing_floor(rows, t4)
    # the big row allows only 20 us (less than the small row's 47): 20 us comes off both
    assert over["linear"] == pytest.approx(20e-6, abs=50e-9)  # less a hair (1e-6 of the roofline)
    assert out[0].latency_s == pytest.approx(30e-6, abs=50e-9)
    assert out[1].latency_s >= big / peak



def test_generic_csv_latencies_are_taken_as_kernel_times(tmp_path: Path) -> None:
    # no timing overhead is subtracted from a generic CSV: its rows keep their latencies
    f = tmp_path / "k.csv"
    f.write_text("op,precision,b,m,n,k,bytes,latency_ms,source,device\n"
                 "linear,fp32,1,64,64,64,,0.05,a test,Tesla T4\n"
                 "linear,fp32,1,512,512,512,,0.09,a test,Tesla T4\n")
    cal = import_profile(f, load_profile("t4")).calibration
    pts = {p.m: p.achieved_tflops for p in cal.gemm_points[Precision.FP32]}
    assert pts[64] == pytest.approx(2 * 64**3 / 0.05e-3 / 1e12, rel=1e-5)  # stored to 6 digits
    assert pts[512] == pytest.approx(2 * 512**3 / 0.09e-3 / 1e12, rel=1e-5)
    assert "overhead subtracted" not in cal.meta.notes


def test_softmax_of_a_measured_size_predicts_the_measured_latency(imported) -> None:  # noqa: ANN001
    # softmax on (510, 1267) measured 0.04988 ms: read + write 2 * 510 * 1267 * 4 bytes
    s = Scenario(torch.nn.Softmax(dim=-1), input_shape=(510, 1267), mode="eager", tf32="off")
    est = estimate_on(prepare(s), imported)
    sm = next(sg for sg in est.subgraphs if "softmax" in sg.name)
    assert sm.bytes == 2 * 510 * 1267 * 4
    over = 0.03328000009059906e-3 - MIN_KERNEL_S  # the softmax table's timing overhead
    table_rate = sm.bytes / (0.049881599843502045e-3 - over)
    dram = next(t for t in sm.traffic if t.level != "l2")  # 5.2 MB: more than the T4's 4 MB L2
    # the measured rate, capped by the DRAM the working set streams from
    assert sm.memory_s == pytest.approx(sm.bytes / min(table_rate, dram.bandwidth), rel=1e-4)
    assert sm.provenance["memory"].value == "measured"


def test_generic_csv_imports_gemms_bmms_and_op_kinds(tmp_path: Path) -> None:
    f = tmp_path / "k.csv"
    f.write_text("op,precision,b,m,n,k,bytes,latency_ms,source,device\n"
                 "linear,fp32,2,64,64,64,,0.02,a test,Tesla T4\n"  # b folded into m: 128 x 64 x 64
                 "bmm,fp32,8,64,64,64,,0.03,a test,Tesla T4\n"
                 "gelu,fp32,,,,,8192,0.01,a test,Tesla T4\n")
    cal = import_profile(f, load_profile("t4")).calibration
    (pt,) = cal.gemm_points[Precision.FP32]
    assert (pt.m, pt.n, pt.k) == (128, 64, 64)
    assert pt.achieved_tflops == pytest.approx(2 * 128 * 64 * 64 / 0.02e-3 / 1e12)
    (bp,) = cal.bmm_points[Precision.FP32]
    assert (bp.b, bp.m) == (8, 64)
    assert cal.op_bandwidth["gelu"][0].achieved_gbps == pytest.approx(8192 / 0.01e-3 / 1e9)
    assert cal.meta.source == "a test" and cal.meta.machine == "Tesla T4"


def test_scattered_table_returns_measurements_and_keeps_latency_below_the_hull() -> None:
    shapes = [(m, n, k) for m in (16, 256) for n in (16, 256) for k in (16, 256)]
    rates = [1.0 + i for i in range(len(shapes))]
    t = ScatteredTable(shapes, rates)
    for s, r in zip(shapes, rates, strict=True):
        assert t(*s) == pytest.approx(r)
    # below the smallest measured shape (16, 16, 16) at 1 TFLOPS: the same latency, so the rate
    # scales with the FLOPs: (8 * 16 * 16) / (16 * 16 * 16) = 1/2
    assert t(8, 16, 16) == pytest.approx(0.5)
    assert t(4096, 256, 256) == pytest.approx(rates[-1])  # above: the rate of the largest


@pytest.mark.parametrize(("text", "expect"), [
    ("op,precision,m,n,k\nlinear,fp32,64,64,64\n", "missing column(s) 'latency_ms'"),
    ("op,precision,m,n,k,latency_s\nlinear,fp32,64,64,64,0.00002\n", "column 'latency_s': latencies must be in milliseconds"),
    ("op,precision,m,n,k,latency_ms\nlinear,fp32,64,64,64,-1\n", "row 2, column 'latency_ms': must be > 0"),
    ("op,precision,m,n,k,latency_ms\nlinear,fp32,64,64,64,0\n", "row 2, column 'latency_ms': must be > 0"),
    ("op,precision,m,n,k,latency_ms\nlinear,fp32,64,x,64,0.1\n", "row 2, column 'n': 'x' is not a number"),
    ("op,precision,m,n,k,latency_ms\nlinear,fp32,64,64,64,0.1\nlinear,fp99,64,64,64,0.1\n", "row 3, column 'precision'"),
    ("op,precision,latency_ms\ngelu,fp32,0.1\n", "needs column 'bytes'"),
    # 4096^3 in 2e-5 ms = 6.9e6 TFLOPS: the latency was in seconds
    ("op,precision,m,n,k,latency_ms\nlinear,fp32,4096,4096,4096,0.00002\n", "row 2, column latency"),
])
def test_bad_kernel_csv_is_refused_naming_file_row_and_column(tmp_path: Path, text: str, expect: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(DnnmapError) as err:
        import_profile(f, load_profile("t4"))
    assert str(f) in str(err.value) and expect in str(err.value)


def test_cli_writes_the_profile_and_refuses_bad_input_without_writing(tmp_path: Path) -> None:
    kernels = write_kernels(tmp_path / "kernels")
    out = tmp_path / "t4-imported.yaml"
    runner = CliRunner()
    r = runner.invoke(app, ["calibrate", "--from-measurements", str(kernels), "--gpu", "Tesla_T4", "--base", "t4",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    prof = load_file(out)
    assert prof.provenance is Provenance.CALIBRATED and prof.calibration.meta.imported_from.startswith(str(kernels))
    r = runner.invoke(app, ["calibrate", "--from-measurements", str(kernels), "--gpu", "Tesla_T4", "--base", "t4",
                            "--out", str(out)])
    assert r.exit_code != 0 and "exists" in r.output
    # a negative latency in one table: an error naming it, nothing written
    bad = dict(NEUSIGHT_T4, linear=(NEUSIGHT_T4["linear"][0], ["linear,-0.05,Tesla T4,p2.1.0,8902,cu121,1,58,13,141"]))
    write_kernels(tmp_path / "bad", bad)
    out2 = tmp_path / "never.yaml"
    r = runner.invoke(app, ["calibrate", "--from-measurements", str(tmp_path / "bad"), "--gpu", "Tesla_T4",
                            "--base", "t4", "--out", str(out2)])
    assert r.exit_code != 0 and "linear" in r.output and "row 2" in r.output and not out2.exists()
    r = runner.invoke(app, ["calibrate", "--from-measurements", str(kernels), "--gpu", "Tesla_K80", "--base", "t4",
                            "--out", str(out2)])
    assert r.exit_code != 0 and "Tesla_T4" in r.output and not out2.exists()
    r = runner.invoke(app, ["calibrate", "--from-measurements", str(kernels), "--gpu", "Tesla_T4", "--out", str(out2)])
    assert r.exit_code != 0 and "--base" in r.output and not out2.exists()


@pytest.mark.skipif(not (SHARED / "kernels" / "linear" / "Tesla_T4.csv").is_file(), reason="no ../shared/measurements")
def test_reads_the_real_neusight_t4_tables() -> None:
    rows, meta = read_neusight(SHARED / "kernels", "Tesla_T4")
    linear = [r for r in rows if r.op == "linear"]
    assert len(linear) == 6458 and meta["machine"] == "Tesla T4"
    assert all(r.latency_s > 0 and math.isfinite(r.latency_s) for r in rows)
