"""The graph schedule: one stream is the plain sum; streams overlap only what fits."""

from __future__ import annotations

import pytest

from dnnmap.fusion import partition
from dnnmap.fusion.toy import attention_block
from dnnmap.ir import OpClass
from dnnmap.mapping import Bound, SubgraphEstimate, map_partition
from dnnmap.mapping.schedule import concurrent, group_latency, serial


def sub(i: int, units: int, compute: float, memory: float, overhead: float = 1e-6, total: int = 100) -> SubgraphEstimate:
    lat = max(compute, memory) + overhead
    return SubgraphEstimate(
        subgraph_id=i, name=f"s{i}", op_class=OpClass.MATMUL, unit="SM", units_allocated=units,
        units_total=total, utilization=units / total, effective_flops=1.0, flops=1, tensor_flops=1,
        vector_flops=0, bytes=1, traffic=(), compute_s=compute, memory_s=memory, overhead_s=overhead,
        latency_s=lat, bound=Bound.COMPUTE if compute >= memory else Bound.MEMORY, energy_j=0.0,
        dynamic_energy_j=0.0, static_energy_j=0.0, roofline_lower_bound_s=0.0,
        roofline_bound=Bound.COMPUTE, explanation="",
    )


def test_one_stream_is_the_sum() -> None:
    subs = [sub(0, 10, 5e-6, 1e-6), sub(1, 50, 2e-6, 3e-6), sub(2, 100, 1e-6, 9e-6)]
    s = serial(subs)
    assert s.latency_s == pytest.approx(sum(x.latency_s for x in subs))
    assert [e.start_s for e in s.entries] == pytest.approx([0.0, subs[0].latency_s, subs[0].latency_s + subs[1].latency_s])


def test_group_latency_respects_shared_bandwidth_and_compute() -> None:
    a, b = sub(0, 30, 10e-6, 8e-6), sub(1, 30, 10e-6, 8e-6)
    # co-running: memory shared -> 16 us; compute 2 x 10 us x 30/100 SMs = 6 us; longest 11 us
    assert group_latency([a, b]) == pytest.approx(max(11e-6, 16e-6, 6e-6, 2e-6))


def test_concurrent_packs_only_what_fits_the_device() -> None:
    root, x, y, z = sub(0, 100, 5e-6, 1e-6), sub(1, 60, 10e-6, 1e-6), sub(2, 60, 10e-6, 1e-6), sub(3, 30, 10e-6, 1e-6)
    stages = [(0,), (1, 2, 3)]
    s = concurrent([root, x, y, z], stages, streams=4)
    # x (60 SMs) and y (60) cannot share 100 SMs; z (30) joins one of them
    expected = root.latency_s + group_latency([x, z]) + y.latency_s
    assert s.latency_s == pytest.approx(expected)
    assert s.latency_s < serial([root, x, y, z]).latency_s
    assert concurrent([root, x, y, z], stages, streams=1).latency_s == serial([root, x, y, z]).latency_s


def test_streams_on_a_branching_graph() -> None:
    p = partition(attention_block(seq=64, dim=64), "unfused")  # Q, K, V projections are independent
    # replayed from a CUDA graph, so the host does not hide the overlap
    one = map_partition(p, "h100-sxm5", precision="bf16", mode="cudagraph")
    four = map_partition(p, "h100-sxm5", precision="bf16", streams=4, mode="cudagraph")
    assert four.streams == 4 and one.streams == 1
    assert one.latency_s == pytest.approx(one.serial_latency_s + one.device_idle_s)
    assert four.latency_s < one.latency_s  # the tiny projections overlap
    assert four.latency_s >= max(s.latency_s for s in four.subgraphs)
    cpu = map_partition(p, "i7-12700k", streams=4)
    assert cpu.streams == 1 and any("one kernel at a time" in n for n in cpu.notes)
