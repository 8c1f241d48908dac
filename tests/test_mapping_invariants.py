"""Invariants of every estimate, on random graphs and on real models, for every shipped device.

- no subgraph exceeds its device's peak FLOP/s or the bandwidth of a memory level;
- every latency >= its roofline lower bound max(FLOPs / peak, bytes / bandwidth);
- utilization in (0, 1]; energy >= idle power x latency;
- GPU throughput is non-decreasing with batch;
- fusing a memory-bound elementwise chain never increases the predicted latency.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnnmap.fusion import partition
from dnnmap.fusion.toy import GraphBuilder
from dnnmap.hardware import DeviceClass, list_profiles, load_profile
from dnnmap.hardware.schema import HardwareProfile
from dnnmap.ir import Graph
from dnnmap.mapping import Bound, Estimate, compare_partition, map_partition

PRECISIONS = ("fp32", "bf16", "int8")
STRATEGIES = ("unfused", "greedy", "compiler")


@cache
def profiles() -> tuple[HardwareProfile, ...]:
    return tuple(list_profiles())


def check(est: Estimate, prof: HardwareProfile) -> None:
    """Every invariant of one estimate, with expectations computed from the profile alone."""
    peak_any = max(*prof.peak_tflops.values(), *prof.vector_peak_tflops.values()) * 1e12
    nominal = {m.name: m.bandwidth_gbps * 1e9 for m in prof.memory}
    fastest = max(nominal.values())
    idle = prof.power.idle_w
    tol = 1 + 1e-9
    for s in est.subgraphs:
        assert s.latency_s > 0
        assert 0 < s.utilization <= 1, (s.name, s.utilization)
        assert s.flops / s.latency_s <= est.roofline.peak_flops * tol <= peak_any * tol
        for t in s.traffic:
            assert t.bytes / s.latency_s <= nominal.get(t.level, fastest) * tol, (s.name, t)
        lower = max(
            s.flops / peak_any,
            max((t.bytes / nominal.get(t.level, fastest) for t in s.traffic), default=0.0),
        )
        assert s.latency_s * tol >= lower
        assert s.latency_s * tol >= s.roofline_lower_bound_s >= lower / tol
        assert s.energy_j * tol >= idle * s.latency_s
        assert s.bound in (Bound.COMPUTE, Bound.MEMORY, Bound.OVERHEAD, Bound.POWER)
        # power never exceeds the TDP: dynamic energy over the kernel's time fits the headroom
        assert s.dynamic_energy_j <= (est_tdp(est) - idle) * s.latency_s * tol
    assert 0 < est.utilization <= 1 and 0 < est.units_busy <= 1
    assert est.energy_j * tol >= idle * est.latency_s
    assert est.latency_s * tol >= max(s.latency_s for s in est.subgraphs)
    if est.streams == 1:
        # device timeline: kernels back to back, plus any wait for the host to issue them
        kernels = sum(s.latency_s for s in est.subgraphs)
        assert est.latency_s == pytest.approx(kernels + est.device_idle_s)
        assert est.latency_s * tol >= max(kernels, est.host_s)
    assert est.latency_s * tol >= est.naive_latency_s * (est.roofline.peak_flops / peak_any)


def est_tdp(est) -> float:
    from dnnmap.hardware import load_profile

    return load_profile(est.device).power.tdp_w


# -- random graphs ---------------------------------------------------------------------------
KINDS = ("relu", "gelu", "add", "mul", "softmax", "sum", "linear", "mm", "layer_norm", "cat")


@st.composite
def recipes(draw: st.DrawFn) -> tuple[int, list[tuple[str, int, int]]]:
    """(width, ops): each op is (kind, first input index, second input index)."""
    width = draw(st.sampled_from((16, 64, 256, 768)))
    n = draw(st.integers(1, 14))
    return width, [(draw(st.sampled_from(KINDS)), draw(st.integers(0, 99)), draw(st.integers(0, 99))) for _ in range(n)]


def build(recipe: tuple[int, list[tuple[str, int, int]]], rows: int) -> Graph:
    """A random DAG of [rows, width] activations (``rows`` plays the batch)."""
    d, ops = recipe
    b = GraphBuilder("random")
    avail = [b.input((rows, d), "x")]
    for k, (kind, i, j) in enumerate(ops):
        x, y = avail[i % len(avail)], avail[j % len(avail)]
        m = f"block.op{k}"
        if kind in ("relu", "gelu"):
            t = b.op(f"aten.{kind}.default", [x], module=m)
        elif kind in ("add", "mul"):
            t = b.op(f"aten.{kind}.Tensor", [x, y], module=m)
        elif kind == "softmax":
            t = b.op("aten._softmax.default", [x], module=m, attrs={"dim": -1, "half_to_float": False})
        elif kind == "sum":
            t = b.op("aten.sum.dim_IntList", [x], (rows, 1), m, attrs={"dim": (-1,), "keepdim": True})
            t = b.op("aten.mul.Tensor", [t, y], (rows, d), m)
        elif kind == "linear":
            t = b.linear(x, d, m)
        elif kind == "mm":  # [rows, d] @ [d, d] weight
            t = b.op("aten.mm.default", [x, b.weight((d, d), f"{m}.w")], (rows, d), m, ("self", "mat2"))
        elif kind == "layer_norm":
            t = b.op("aten.layer_norm.default", [x], (rows, d), m, ("input",), {"normalized_shape": (d,)})
        else:
            t = b.op("aten.cat.default", [x, y], (rows, 2 * d), m, ("tensors", "tensors"), {"dim": 1})
            t = b.linear(t, d, m)
        avail.append(t)
    return b.build([avail[-1]])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes(), st.sampled_from((1, 8, 64)))
def test_invariants_on_random_graphs(recipe, rows) -> None:
    g = build(recipe, rows)
    for strategy in STRATEGIES:
        p = partition(g, strategy)
        for prec in PRECISIONS:
            cmp = compare_partition(p, profiles(), precision=prec)
            for est, prof in zip(cmp.estimates, profiles(), strict=True):
                check(est, prof)
                if prof.device_class is DeviceClass.GPU:  # streams never slow a schedule down
                    multi = map_partition(p, prof, precision=prec, streams=4)
                    check(multi, prof)
                    assert multi.latency_s <= est.latency_s * (1 + 1e-9)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_gpu_throughput_non_decreasing_with_batch_on_random_graphs(recipe) -> None:
    gpus = [p for p in profiles() if p.device_class is DeviceClass.GPU]
    parts = [partition(build(recipe, rows), "compiler") for rows in (1, 2, 4, 16, 64, 256)]
    for prof in gpus:
        for prec in ("fp32", "bf16"):
            per_row = [map_partition(p, prof, precision=prec).latency_s / rows
                       for p, rows in zip(parts, (1, 2, 4, 16, 64, 256), strict=True)]
            assert all(b <= a * (1 + 1e-9) for a, b in zip(per_row, per_row[1:], strict=False)), (prof.name, prec, per_row)


# -- a small CNN at several batches ----------------------------------------------------------
def cnn(batch: int) -> Graph:
    b = GraphBuilder("cnn")
    x = b.input((batch, 3, 64, 64))
    x = b.op("aten.relu.default", [b.bn(b.conv(x, 32, 3, "stem", stride=2), "stem.bn")], module="stem")
    for i, c in enumerate((64, 128)):
        y = b.op("aten.relu.default", [b.bn(b.conv(x, c, 3, f"l{i}.conv", stride=2), f"l{i}.bn")], module=f"l{i}")
        dw = b.conv(y, c, 3, f"l{i}.dw", groups=c)
        x = b.op("aten.add.Tensor", [y, b.bn(dw, f"l{i}.bn2")], module=f"l{i}")
    pooled = b.op("aten.mean.dim", [x], (batch, 128, 1, 1), "pool", attrs={"dim": (-1, -2), "keepdim": True})
    flat = b.view(pooled, (batch, 128), "flat")
    return b.build([b.linear(flat, 10, "fc")])


def without_l2_residency(prof):
    """The profile with L2 reuse between kernels off: a batch whose activations outgrow the L2
    may then legitimately lose throughput, so monotonicity is checked without it."""
    return prof.model_copy(update={"gpu": prof.gpu.model_copy(update={"l2_residency": False})})


def test_gpu_throughput_non_decreasing_with_batch_cnn() -> None:
    batches = (1, 2, 4, 8, 32, 128)
    parts = [partition(cnn(n), "compiler") for n in batches]
    for prof in profiles():
        if prof.device_class is not DeviceClass.GPU:
            continue
        prof = without_l2_residency(prof)
        for prec in PRECISIONS:
            thr = [map_partition(p, prof, precision=prec, batch=n).throughput for p, n in zip(parts, batches, strict=True)]
            assert all(b >= a * (1 - 1e-9) for a, b in zip(thr, thr[1:], strict=False)), (prof.name, prec, thr)


def test_invariants_on_the_cnn_every_device() -> None:
    for n in (1, 32):
        p = partition(cnn(n), "compiler")
        for prec in PRECISIONS:
            for prof in profiles():
                check(map_partition(p, prof, precision=prec), prof)


# -- fusion of a memory-bound elementwise chain ----------------------------------------------
def chain(shape: tuple[int, ...], length: int) -> Graph:
    b = GraphBuilder("chain")
    x = b.input(shape, "x")
    y = b.input(shape, "y")
    t = x
    for i in range(length):
        kind = ("relu", "sigmoid", "tanh", "neg")[i % 4]
        t = b.op(f"aten.{kind}.default", [t], module=f"c{i}")
        t = b.op("aten.add.Tensor", [t, y], module=f"c{i}")
    return b.build([t])


@pytest.mark.parametrize("shape", [(8, 64, 56, 56), (1, 1024), (32, 512, 768)])
def test_fusion_never_slows_a_memory_bound_chain(shape) -> None:
    g = chain(shape, 6)
    unfused, fused = partition(g, "unfused"), partition(g, "compiler")
    assert len(fused.subgraphs) < len(unfused.subgraphs)
    for prec in PRECISIONS:
        a = compare_partition(unfused, profiles(), precision=prec)
        b = compare_partition(fused, profiles(), precision=prec)
        for eu, ef in zip(a.estimates, b.estimates, strict=True):
            # the premise: unfused, every op is below the device's ridge point (memory-bound)
            assert all(s.roofline_bound is Bound.MEMORY for s in eu.subgraphs)
            assert ef.latency_s <= eu.latency_s * (1 + 1e-9), (eu.device, prec, eu.latency_s, ef.latency_s)
            assert ef.energy_j <= eu.energy_j * (1 + 1e-9)


# -- real models (slow: capture) -------------------------------------------------------------
@pytest.mark.slow
def test_invariants_and_gpu_batch_scaling_on_resnet18() -> None:
    from dnnmap.capture import capture

    parts = {n: partition(capture("resnet18", batch=n), "compiler") for n in (1, 4, 16)}
    for prof in profiles():
        for prec in ("fp32", "fp16", "int8"):
            ests = [map_partition(parts[n], prof, precision=prec) for n in (1, 4, 16)]
            for e in ests:
                check(e, prof)
            if prof.device_class is DeviceClass.GPU:
                thr = [e.throughput for e in ests]
                assert thr[0] <= thr[1] * (1 + 1e-9) and thr[1] <= thr[2] * (1 + 1e-9), (prof.name, prec, thr)
    h100 = map_partition(parts[1], load_profile("h100-sxm5"), precision="fp16")
    h100_16 = map_partition(parts[16], load_profile("h100-sxm5"), precision="fp16")
    # batch-1 ResNet-18 leaves SMs idle (split-K fills some of them), batch 16 far fewer
    assert h100.units_busy < 0.75 and h100.units_busy < h100_16.units_busy
    assert h100.naive_error > 10  # FLOPs / peak is off by more than 10x
