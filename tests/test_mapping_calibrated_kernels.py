"""Calibrated kernels a forward-only GEMM grid does not describe, by hand on the toy CPU:
few-row GEMMs streaming cold weights (decode), ``convolution_backward`` and training op kinds
(backward), the first touch of outputs the allocator maps afresh, and a call's cold code path
after a gap. Small fixture tables, no timing."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from dnnmap.calibrate.collect import Measurements
from dnnmap.calibrate.microbench import ConvBackwardPoint, StreamPoint
from dnnmap.calibrate.opkinds import OpKindPoint
from dnnmap.calibrate.tables import conv_backward_tables, op_bandwidth_tables, stream_tables
from dnnmap.fusion.parallelism import parallelism_of
from dnnmap.fusion.partition import Parallelism
from dnnmap.hardware.schema import EXAMPLE, HardwareProfile
from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
from dnnmap.mapping import Device
from dnnmap.mapping import measured as cal_terms
from dnnmap.mapping.cpu import place
from dnnmap.mapping.engine import (
    _measured_tensor_rate,
    _measured_traffic,
    cold_paths,
    estimate,
    weights_home,
)
from dnnmap.mapping.workload import Work

GRID_TF, NT_TF, NN_TF, BWD_TF, FWD_TF = 0.05, 0.002, 0.004, 0.001, 0.03  # TFLOPS in the fixture tables
FRESH_US = 1.5  # us per fresh 4 KiB page
COLD_US = {100: 5.0, 1000: 20.0, 10000: 40.0}  # gap (us) -> extra us of a call after it


def _grid(rate: float, ms: tuple[int, ...] = (1,)) -> list[dict]:
    return [{"m": m, "n": 64, "k": 64, "achieved_tflops": rate} for m in ms]


def _device(copy_sweep: list[tuple[float, float]] | None = None) -> Device:
    data = copy.deepcopy(EXAMPLE)
    data["calibration"] = {
        "meta": {"machine": "toy", "device": "cpu", "date": "2025-01-01T00:00:00Z"},
        "gemm_shapes": {"fp32": _grid(GRID_TF)},
        "conv_shapes": {"dense": {"fp32": _grid(FWD_TF)}, "depthwise": {"fp32": _grid(FWD_TF)}},
        "conv_backward_shapes": {"dense": {"fp32": _grid(BWD_TF)}, "depthwise": {"fp32": _grid(BWD_TF / 4)}},
        "gemm_stream": {"nt": {"fp32": _grid(NT_TF, (1, 4))}, "nn": {"fp32": _grid(NN_TF, (1, 4))}},
        "op_bandwidth": {"native_batch_norm_backward": [{"working_set_bytes": 1e6, "achieved_gbps": 5.0}]},
        "scalars": {"fresh_page_us": FRESH_US, **{f"dispatch_cold_gap_{g}_us": v for g, v in COLD_US.items()}},
    }
    if copy_sweep is not None:
        data["calibration"]["bandwidth"] = {"copy": [{"working_set_bytes": b, "achieved_gbps": g} for b, g in copy_sweep]}
    data["sources"] = {**data["sources"], "calibration": "measured: test fixture"}
    return Device.of(HardwareProfile.model_validate(data), "fp32")


def _gemm(m: int, n: int, k: int, op_name: str) -> Work:
    return Work(0, "fc", OpClass.MATMUL, 2 * m * n * k, 0, 0, m * k * 4, k * n * 4, m * n * 4, 0,
                Parallelism(output_elements=m * n, reduction=k, gemm_m=m, gemm_n=n, gemm_k=k, gemm_batch=1), True,
                op_name=op_name)


def test_gemv_with_weights_in_dram_uses_the_streaming_table_of_its_layout() -> None:
    dev = _device()
    w = _gemm(1, 4096, 4096, "linear")  # 64 MiB of weight, M = 1: a decode step's GEMV
    assert weights_home(dev, (w,)).weights.name == "dram"
    e = estimate(w, place(w, dev), dev, weights_home(dev, (w,)))
    assert e.compute_s == pytest.approx(2 * 4096 * 4096 / (NT_TF * 1e12))  # nn.Linear: x @ W.T table
    nn = _gemm(1, 4096, 4096, "addmm")  # Conv1D: addmm(bias, x, W[in, out])
    assert _measured_tensor_rate(nn, dev, True) == pytest.approx(NN_TF * 1e12)
    # weights held by a cache (not streaming) or more rows than the table measured: the GEMM grid
    assert _measured_tensor_rate(w, dev, False) == pytest.approx(GRID_TF * 1e12)
    assert _measured_tensor_rate(_gemm(16, 4096, 4096, "linear"), dev, True) == pytest.approx(GRID_TF * 1e12)
    # rows between two measured counts: interpolated (here both rows hold the same rate)
    assert _measured_tensor_rate(_gemm(2, 4096, 4096, "linear"), dev, True) == pytest.approx(NT_TF * 1e12)


def _conv_backward_graph(groups: int) -> tuple[Graph, Op]:
    # forward: x[8, 32, 14, 14] -> 3x3 conv, 64 out channels (or depthwise 32 -> 32), padding 1
    cout = 32 if groups > 1 else 64

    def t(i: str, shape: tuple[int, ...], role: Role = Role.ACTIVATION) -> Tensor:
        return Tensor(i, shape, DType.FLOAT32, role, producer="op0" if i.startswith("g") and i != "g" else None)

    ts = {"g": t("g", (8, cout, 14, 14), Role.INPUT), "x": t("x", (8, 32, 14, 14), Role.INPUT),
          "w": t("w", (cout, 32 // groups, 3, 3), Role.WEIGHT), "gx": t("gx", (8, 32, 14, 14)),
          "gw": t("gw", (cout, 32 // groups, 3, 3))}
    op = Op("op0", "aten.convolution_backward.default", OpClass.CONV, ("g", "x", "w"), ("gx", "gw"),
            input_args=("grad_output", "input", "weight"),
            attrs={"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "transposed": False,
                   "output_padding": (0, 0), "groups": groups, "output_mask": (True, True, False)})
    return Graph("bwd", ts, (op,), inputs=("g", "x"), outputs=("gx", "gw")), op


def test_convolution_backward_has_its_forward_convs_gemm_shape() -> None:
    g, op = _conv_backward_graph(groups=1)
    p = parallelism_of(op, g)
    assert (p.gemm_m, p.gemm_n, p.gemm_k, p.gemm_batch) == (8 * 14 * 14, 64, 32 * 3 * 3, 1)
    g, op = _conv_backward_graph(groups=32)
    p = parallelism_of(op, g)
    assert p.depthwise and (p.gemm_m, p.gemm_n, p.gemm_k, p.gemm_batch) == (8 * 14 * 14, 1, 3 * 3, 32)


def test_convolution_backward_is_priced_from_the_backward_table() -> None:
    dev = _device()
    for groups, rate in ((1, BWD_TF), (32, BWD_TF / 4)):
        g, op = _conv_backward_graph(groups)
        p = parallelism_of(op, g)
        w = Work(0, "conv", OpClass.CONV, 1000, 0, 0, 0, 0, 0, 0, p, groups == 1, op_name="convolution_backward")
        assert _measured_tensor_rate(w, dev) == pytest.approx(rate * 1e12)
        fwd = Work(0, "conv", OpClass.CONV, 1000, 0, 0, 0, 0, 0, 0, p, groups == 1, op_name="convolution")
        assert _measured_tensor_rate(fwd, dev) == pytest.approx(FWD_TF * 1e12)  # the forward keeps its table


def test_training_op_kind_takes_its_measured_bandwidth() -> None:
    dev = _device()
    n = 1_200_000  # bytes the kernel moves (grad, input read; grad input written)
    w = Work(0, "bn", OpClass.NORMALIZATION, 0, 5 * n // 12, 0, 2 * n // 3, 0, n // 3, 0,
             Parallelism(output_elements=n // 12), False, op_name="native_batch_norm_backward",
             reads=(("g", n // 3), ("x", n // 3)))
    e = estimate(w, place(w, dev), dev, weights_home(dev, (w,)))
    assert e.memory_s == pytest.approx(n / 5e9) and e.compute_s == 0.0  # the measured kernel, whole


def test_fresh_pages_of_outputs_the_allocator_maps_afresh() -> None:
    dev = _device()
    big, small = 64 << 20, 16 << 20  # above and below glibc's 32 MiB mmap threshold cap
    w = Work(0, "sqrt", OpClass.ELEMENTWISE, 0, 1, 0, big, 0, big + small, 0, Parallelism(), False, op_name="sqrt",
             writes=(("y", big), ("z", small)))
    assert cal_terms.fresh_pages_s(w, dev) == pytest.approx(big // 4096 * FRESH_US * 1e-6)
    inplace = Work(0, "add_", OpClass.ELEMENTWISE, 0, 1, 0, big, 0, big, 0, Parallelism(), False, op_name="add",
                   inplace=True, writes=(("y", big),))
    assert cal_terms.fresh_pages_s(inplace, dev) == 0.0  # writes into a tensor that exists
    no_scalar = Device.of(HardwareProfile.model_validate(EXAMPLE), "fp32")
    assert cal_terms.fresh_pages_s(w, no_scalar) == 0.0  # uncalibrated: not a term


def _meas(**kw: object) -> Measurements:
    base = dict(device="cpu", device_name="toy", threads=2, gemm=(), conv=(), bandwidth=(), scalars=(), opkinds=(),
                dtypes_skipped=(), load_before=0.0, load_after=0.0, elapsed_s=0.0, date="2025-01-01T00:00:00Z")
    return Measurements(**{**base, **kw})  # type: ignore[arg-type]


def test_tables_from_the_new_microbenchmarks() -> None:
    from dnnmap.calibrate.microbench import ScalarPoint

    d = ScalarPoint("dispatch.matmul", 10e-6, "s")
    # streaming GEMV: 2 * 1 * 1024 * 1024 FLOP in 410 us, 10 us of which dispatch -> 2^21 / 400e-6
    meas = _meas(scalars=(d,), gemm_stream=(StreamPoint("nt", 1, 1024, 1024, 410e-6, 0.0),))
    rows = stream_tables(meas, {"fp32": 1e12})["nt"]["fp32"]
    assert rows == [{"m": 1, "n": 1024, "k": 1024, "achieved_tflops": pytest.approx(2 * 1024 * 1024 / 400e-6 / 1e12)}]
    # backward conv: 2 x (grad input + grad weight) x M N K, after the conv dispatch
    dc = ScalarPoint("dispatch.conv", 20e-6, "s")
    pt = ConvBackwardPoint("conv", 14, 16, 32, 3, 1020e-6, 0.0)
    assert pt.flops == 2 * 2 * (14 * 14) * 32 * (16 * 9)
    tab = conv_backward_tables(_meas(scalars=(dc,), conv_backward=(pt,)), {"fp32": 1e12})
    assert tab["dense"]["fp32"][0]["achieved_tflops"] == pytest.approx(pt.flops / 1000e-6 / 1e12, rel=1e-5)
    # op-kind sweep: counted bytes over the dispatch-free time, by size
    dn = ScalarPoint("dispatch.normalization", 10e-6, "s")
    sweep = (OpKindPoint("native_batch_norm_backward", 110e-6, 0, 1_000_000, 0.0),
             OpKindPoint("native_batch_norm_backward", 1010e-6, 0, 8_000_000, 0.0))
    bw = op_bandwidth_tables(_meas(scalars=(dn,), op_sweep=sweep))["native_batch_norm_backward"]
    assert [r["achieved_gbps"] for r in bw] == [pytest.approx(10.0), pytest.approx(8.0)]


def test_training_op_kinds_capture_under_their_aten_names() -> None:
    from dnnmap.calibrate.opkinds import TRAINING, counted_costs

    costs = counted_costs(("native_batch_norm_backward", "hardtanh_backward"))
    assert set(costs) == {"native_batch_norm_backward", "hardtanh_backward"}
    # hardtanh_backward reads the gradient and the input, writes the grad input: 3 x 64*56*56 fp32
    assert costs["hardtanh_backward"][1] == 3 * 64 * 56 * 56 * 4
    assert set(TRAINING) >= {"native_batch_norm", "threshold_backward", "_log_softmax_backward_data"}
    assert torch.ops.aten.native_batch_norm_backward is not None


def test_work_knows_its_dominant_op_writes_in_place() -> None:
    """A cache write (``copy_`` of 32 MiB into half of a 64 MiB cache) allocates nothing; its
    subgraph (a slice, then the copy) is a data movement, not a view, and carries ``inplace``
    (``op_name`` is stripped of the underscore for the rate tables, so it cannot say so)."""
    from dnnmap.capture import capture
    from dnnmap.costs import count_graph
    from dnnmap.fusion import partition
    from dnnmap.hardware.schema import Precision
    from dnnmap.mapping.workload import workload

    class Write(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("cache", torch.zeros(1, 16, 1024, 1024))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.cache[:, :8].copy_(x)
            return self.cache.sum()

    part = partition(count_graph(capture(Write(), inputs=(torch.zeros(1, 8, 1024, 1024),))), "unfused")
    works = workload(part, Precision.FP32)
    write = next(w for w in works if w.op_name == "copy")
    assert write.inplace and write.op_class is OpClass.DATA_MOVEMENT
    assert cal_terms.fresh_pages_s(write, _device()) == 0.0
    assert not any(w.inplace for w in works if w.op_name == "sum")


def test_a_call_after_a_gap_pays_its_cold_code_path() -> None:
    """add, a GEMM, add, a view, add on the toy CPU, a run that repeats. The first add follows the
    previous run's last add directly (no extra); the GEMM follows its previous run's call by the
    rest of the run; the second add follows the first by the GEMM; the third follows the second
    by a view only, and adds almost nothing."""
    from dataclasses import replace

    dev = _device()
    add = lambda i: Work(i, "add", OpClass.ELEMENTWISE, 64, 0, 64, 256, 0, 256, 0, Parallelism(), False,  # noqa: E731
                         op_name="add")
    view = Work(3, "view", OpClass.VIEW, 0, 0, 0, 0, 0, 0, 0, Parallelism(), False, op_name="view")
    gemm = replace(_gemm(1024, 1024, 64, "linear"), subgraph_id=1)  # 2^27 FLOP at 0.05 TFLOPS: ~2.7 ms
    works = (add(0), gemm, add(2), view, add(4))
    homes = weights_home(dev, works)
    plain = tuple(estimate(w, place(w, dev), dev, homes) for w in works)
    cold = cold_paths(works, plain, dev)
    extra = [c.latency_s - p.latency_s for c, p in zip(cold, plain, strict=True)]
    curve = [(g * 1e-6, v * 1e-6) for g, v in COLD_US.items()]
    lat = [p.latency_s for p in plain]
    assert extra[0] == 0.0  # the previous run ended with an add
    assert extra[1] == pytest.approx(cal_terms.cold_dispatch_s(curve, lat[0] + lat[2] + lat[3] + lat[4]))
    assert 0 < extra[1] < 5e-6  # a gap of a few us: linear below the 100 us point
    gap = lat[1] + extra[1]  # the first add finished, then the GEMM ran
    assert 1e-3 < gap < 1e-2  # between the 1 ms and 10 ms points: log-linear between 20 and 40 us
    assert extra[2] == pytest.approx(20e-6 + 20e-6 * math.log10(gap / 1e-3))
    assert extra[3] == 0.0  # views are left alone
    assert extra[4] == pytest.approx(5e-6 * lat[3] / 100e-6)  # the view's gap, linear below 100 us
    assert cold[2].overhead_s == pytest.approx(plain[2].overhead_s + extra[2])
    assert cold[2].energy_j == pytest.approx(plain[2].energy_j + dev.idle_w * extra[2])
    no_curve = Device.of(HardwareProfile.model_validate(EXAMPLE), "fp32")
    assert cold_paths(works, plain, no_curve) == plain  # uncalibrated: not a term


def test_an_op_with_its_own_cold_curve_pays_that_curve() -> None:
    """Two cats with a 2.7 ms GEMM between them: with a ``cat`` curve of 100 us flat, the second
    cat pays 100 us; the GEMM keeps the generic curve (after the rest of the run: two cats)."""
    from dataclasses import replace

    data = copy.deepcopy(_device().profile.model_dump(mode="json"))
    data["calibration"]["scalars"].update({f"dispatch_cold_cat_gap_{g}_us": 100.0 for g in (100, 10000)})
    dev = Device.of(HardwareProfile.model_validate(data), "fp32")
    cat = lambda i: Work(i, "cat", OpClass.DATA_MOVEMENT, 0, 0, 0, 256, 0, 256, 0, Parallelism(), False,  # noqa: E731
                         op_name="cat")
    gemm = replace(_gemm(1024, 1024, 64, "linear"), subgraph_id=1)
    works = (cat(0), gemm, cat(2))
    homes = weights_home(dev, works)
    plain = tuple(estimate(w, place(w, dev), dev, homes) for w in works)
    cold = cold_paths(works, plain, dev)
    assert cold[2].latency_s - plain[2].latency_s == pytest.approx(100e-6)  # its own curve, flat
    generic_curve = [(g * 1e-6, v * 1e-6) for g, v in COLD_US.items()]
    gemm_gap = plain[2].latency_s + (cold[0].latency_s - plain[0].latency_s) + plain[0].latency_s
    assert cold[1].latency_s - plain[1].latency_s == pytest.approx(cal_terms.cold_dispatch_s(generic_curve, gemm_gap))
    generic = _device()  # the same run without a cat curve: the generic 20-40 us between 1 and 10 ms
    extra = cold_paths(works, plain, generic)[2].latency_s - plain[2].latency_s
    assert 20e-6 < extra < 40e-6


def test_cold_gap_points_become_the_profiles_scalars() -> None:
    from dnnmap.calibrate.microbench import ScalarPoint
    from dnnmap.calibrate.tables import scalars

    meas = _meas(scalars=(ScalarPoint("dispatch.cold_gap_1000", 12e-6, "s"), ScalarPoint("dispatch.cold_gap_100", 6e-6, "s"),
                          ScalarPoint("dispatch.cold_scaled_dot_product_attention_gap_100", 50e-6, "s")))
    out = scalars(meas, 1e11)
    assert (out["dispatch_cold_gap_1000_us"], out["dispatch_cold_gap_100_us"]) == (12.0, 6.0)
    curves = cal_terms.curves_of(out)  # and back, by op name
    us = {op: [(round(g * 1e6), round(v * 1e6)) for g, v in pts] for op, pts in curves.items()}
    assert us == {"": [(100, 6), (1000, 12)], "scaled_dot_product_attention": [(100, 50)]}


def test_reads_the_last_level_cache_no_longer_holds_stream_from_dram() -> None:
    """A decode step's KV-cache ``cat``: the past cache is the step's input (its producer ran a
    step ago), the new token's keys were written just before. Toy CPU: its last cache is the
    2 x 32 KiB L1; copy sweep 100 GB/s up to 10 kB, 10 GB/s from 100 kB (log-linear between)."""
    from dnnmap.mapping.residency import l2_hits

    dev = _device([(1e3, 100.0), (1e4, 100.0), (1e5, 10.0), (1e8, 10.0)])
    new = Work(0, "linear", OpClass.ELEMENTWISE, 0, 0, 0, 0, 0, 512, 0, Parallelism(), False, op_name="add",
               writes=(("new", 512),))
    cat = Work(1, "cat", OpClass.DATA_MOVEMENT, 0, 0, 0, 16384 + 512, 0, 16896, 0, Parallelism(), False,
               op_name="cat", reads=(("past", 16384), ("new", 512)), writes=(("out", 16896),))
    hits = l2_hits((new, cat), 2 * 32768)
    assert hits == {1: 512}  # the new keys are still in the cache, the past cache is not
    nbytes = 2 * 16896
    warm = 100e9 + (10e9 - 100e9) * math.log10(nbytes / 1e4)  # the working set's rate (52.4 GB/s)
    (t,) = _measured_traffic(cat, place(cat, dev), dev, hits[1])
    assert t.seconds == pytest.approx(16384 / 10e9 + (nbytes - 16384) / warm)  # cold reads at 4 x 64 KiB's rate
    (all_hit,) = _measured_traffic(cat, place(cat, dev), dev, 16896)
    assert all_hit.seconds == pytest.approx(nbytes / warm) and all_hit.level == "l1"
