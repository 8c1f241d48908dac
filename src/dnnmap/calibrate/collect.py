"""Run a :class:`~dnnmap.calibrate.plan.Plan` on the device: every microbenchmark, with progress.

The result, :class:`Measurements`, is raw data (seconds per call at each size) plus the
circumstances (device name, threads, load average before and after, versions, date); turning
it into a hardware profile is :mod:`dnnmap.calibrate.build`'s job.

>>> from dnnmap.calibrate.plan import plan_for
>>> steps = count_steps(plan_for("cpu", quick=True), dtypes=("float32",))
>>> steps > 20
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from dnnmap.calibrate.microbench import (
    BandwidthPoint,
    ConvPoint,
    GemmPoint,
    ScalarPoint,
    dtype_supported,
    thread_scaling,
    time_bandwidth,
    time_conv,
    time_gemm,
    tiny_op_latencies,
    transcendental_rates,
)
from dnnmap.calibrate.opkinds import OpKindPoint, time_opkinds
from dnnmap.calibrate.plan import GemmGrid, Plan
from dnnmap.calibrate.timing import (
    cpu_signature,
    device_name,
    library_versions,
    load_average,
    timer_for,
    utc_now,
)

T = TypeVar("T", GemmPoint, ConvPoint, BandwidthPoint)

Progress = Callable[[str, int, int], None]
"""``progress(description, completed, total)``: called after every measured point."""


@dataclass(frozen=True)
class Measurements:
    """Everything one calibration run measured, and under which conditions."""

    device: str  # "cpu" / "cuda"
    device_name: str  # "AMD EPYC" / "NVIDIA H100 80GB HBM3"
    threads: int  # torch.get_num_threads() during the run
    gemm: tuple[GemmPoint, ...]
    conv: tuple[ConvPoint, ...]
    bandwidth: tuple[BandwidthPoint, ...]
    scalars: tuple[ScalarPoint, ...]  # dispatch latencies, transcendental rates, thread scaling
    opkinds: tuple[OpKindPoint, ...]  # vector op kinds: max-pool, batch-norm, GELU ...
    dtypes_skipped: tuple[str, ...]  # dtypes the device could not run
    load_before: float
    load_after: float
    elapsed_s: float
    date: str
    versions: dict[str, str] = field(default_factory=dict)
    cpu_signature: dict[str, str] = field(default_factory=dict)
    quick: bool = False

    def scalar(self, name: str) -> float | None:
        for s in self.scalars:
            if s.name == name:
                return s.value
        return None


def _gemm_grids(plan: Plan, dtypes: Sequence[str]) -> list[GemmGrid]:
    return [g for g in (plan.gemm_fp32, *plan.gemm_other) if g.dtype in dtypes]


def count_steps(plan: Plan, dtypes: Sequence[str]) -> int:
    """How many progress steps a run of ``plan`` takes (for the progress bar's total)."""
    gemm = sum(len(g.points()) for g in _gemm_grids(plan, dtypes))
    conv = sum(len(c.points()) for c in plan.convs)
    fixed = 4  # tiny ops, transcendentals, op kinds, thread scaling
    return plan.passes * (gemm + conv + 3 * len(plan.bandwidth_bytes)) + fixed


def _keep_faster(store: dict, key: tuple, point: T) -> None:
    """Of several passes keep the fastest median: contention from other processes only ever
    slows a kernel down, so the faster median is the closer one to the device's own speed."""
    old = store.get(key)
    if old is None or point.seconds < old.seconds:
        store[key] = point


def collect(plan: Plan, progress: Progress | None = None) -> Measurements:
    """Run every microbenchmark of ``plan`` on ``plan.device``; ``progress`` sees each step."""
    timer = timer_for(plan.device)
    start, load_before = time.perf_counter(), load_average()
    dtypes = [g.dtype for g in (plan.gemm_fp32, *plan.gemm_other)]
    supported = [d for d in dtypes if dtype_supported(plan.device, d)]
    total = count_steps(plan, supported)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(what, done, total)

    scalars: list[ScalarPoint] = []
    scalars += tiny_op_latencies(timer, runs=plan.runs)
    step("dispatch overhead (tiny ops)")
    gemm: dict[tuple, GemmPoint] = {}
    conv: dict[tuple, ConvPoint] = {}
    bandwidth: dict[tuple, BandwidthPoint] = {}
    for p in range(plan.passes):
        tag = f" (pass {p + 1}/{plan.passes})" if plan.passes > 1 else ""
        for grid in _gemm_grids(plan, supported):
            for m, n, k in grid.points():
                _keep_faster(gemm, (grid.dtype, m, n, k), time_gemm(
                    timer, grid.dtype, m, n, k, runs=plan.runs, min_seconds=plan.min_seconds))
                step(f"GEMM {grid.dtype} {m}x{n}x{k}{tag}")
        for cg in plan.convs:
            for hw, cin, cout in cg.points():
                _keep_faster(conv, (cg.kind, cg.kernel, hw, cin, cout), time_conv(
                    timer, cg.kind, cg.kernel, hw, cin, cout, runs=plan.runs, min_seconds=plan.min_seconds))
                step(f"{cg.kind} {cg.kernel}x{cg.kernel} {hw}x{hw} {cin}->{cout}{tag}")
        for kind in ("read", "copy", "add"):
            for ws in plan.bandwidth_bytes:
                _keep_faster(bandwidth, (kind, ws), time_bandwidth(
                    timer, kind, ws, runs=plan.runs, min_seconds=plan.min_seconds))
                step(f"{kind} bandwidth {ws / 1024:.0f} KiB{tag}")
    scalars += transcendental_rates(timer, runs=plan.runs)
    step("transcendental throughput")
    opkinds = tuple(time_opkinds(timer, plan.opkinds, runs=plan.runs, min_seconds=plan.min_seconds))
    step("op kinds (pooling, normalization, activations)")
    threads = torch.get_num_threads()
    counts = tuple(sorted({1, threads}))
    scalars += thread_scaling(timer, counts, runs=plan.runs) if len(counts) > 1 else []
    step("thread scaling")
    return Measurements(
        device=plan.device,
        device_name=device_name(plan.device),
        threads=threads,
        gemm=tuple(gemm.values()),
        conv=tuple(conv.values()),
        bandwidth=tuple(bandwidth.values()),
        scalars=tuple(scalars),
        opkinds=opkinds,
        dtypes_skipped=tuple(d for d in dtypes if d not in supported),
        load_before=load_before,
        load_after=load_average(),
        elapsed_s=time.perf_counter() - start,
        date=utc_now(),
        versions=library_versions(),
        cpu_signature=cpu_signature() if plan.device == "cpu" else {},
        quick=plan.quick,
    )
