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

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TypeVar

import torch

from dnnmap.calibrate.microbench import (
    BandwidthPoint,
    ConvPoint,
    GemmPoint,
    ScalarPoint,
    StreamPoint,
    cold_dispatch_costs,
    conv_backward_problem,
    conv_problem,
    dtype_supported,
    fresh_page_cost,
    gemm_problem,
    host_probes,
    thread_scaling,
    time_bandwidth,
    time_gemm_stream,
    time_problems,
    tiny_op_latencies,
    transcendental_rates,
    weight_pool,
)
from dnnmap.calibrate.opkinds import OpKindPoint, counted_costs, time_opkind_sweep, time_opkinds
from dnnmap.calibrate.plan import GemmGrid, Plan
from dnnmap.calibrate.quiet import LoadMeter, LoadPolicy, disturbed_message
from dnnmap.calibrate.timing import (
    Timer,
    cpu_signature,
    device_name,
    library_versions,
    load_average,
    timer_for,
    utc_now,
    wait_until_idle,
)

T = TypeVar("T", GemmPoint, ConvPoint, BandwidthPoint, OpKindPoint, StreamPoint)

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
    scalars: tuple[ScalarPoint, ...]  # dispatch latencies, transcendental rates, thread scaling, yardsticks
    opkinds: tuple[OpKindPoint, ...]  # vector op kinds: max-pool, batch-norm, GELU ...
    dtypes_skipped: tuple[str, ...]  # dtypes the device could not run
    load_before: float
    load_after: float
    elapsed_s: float
    date: str
    versions: dict[str, str] = field(default_factory=dict)
    cpu_signature: dict[str, str] = field(default_factory=dict)
    quick: bool = False
    conv_precision: str = "fp32"  # "tf32" on a GPU whose cuDNN convs use TF32 tensor cores
    load_shares: tuple[float, ...] = ()  # per pass: share of the CPUs other processes used
    disturbed: str = ""  # non-empty: no pass was undisturbed; says how busy the machine was
    conv_backward: tuple[ConvPoint, ...] = ()  # convolution_backward at forward conv shapes
    gemm_stream: tuple[StreamPoint, ...] = ()  # few-row GEMMs against cold weights
    op_sweep: tuple[OpKindPoint, ...] = ()  # training op kinds at several sizes
    passes_combined: int = 0  # how many passes each point is the median of (the clean ones)

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
    conv = sum(len(c.points()) for c in (*plan.convs, *plan.conv_backward))
    stream = len(plan.gemm_stream.points()) if plan.gemm_stream is not None else 0
    per_pass = gemm + conv + stream + 3 * len(plan.bandwidth_bytes) + 2 + bool(plan.op_sweep)  # + tiny ops, op kinds
    return plan.passes * per_pass


@contextmanager
def _tf32(on: bool) -> Iterator[None]:
    """TF32 matmuls for a ``tf32`` grid (CUDA), restored afterwards."""
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def _settle(plan: Plan) -> None:
    """Before a sweep, wait (at most ``plan.idle_wait_s``) for other processes to go idle."""
    if plan.idle_wait_s > 0 and plan.device == "cpu":
        wait_until_idle(max_wait_s=plan.idle_wait_s)


def _keep(store: dict, key: tuple, point: T) -> None:
    """Add one pass's result for ``key``; :func:`_typical` combines the passes at the end."""
    store.setdefault(key, []).append(point)


def _middle(values: Sequence[float]) -> tuple[int, float]:
    """The index of the value nearest the median, and the median (of two: their mean).

    >>> _middle([3.0, 1.0, 2.0])
    (2, 2.0)
    >>> _middle([1.0, 2.0])
    (0, 1.5)
    """
    mid = statistics.median(values)
    return min(range(len(values)), key=lambda i: abs(values[i] - mid)), mid


def _typical(points: Sequence[T]) -> T:
    """One point for several passes: the median time, its spread widened to the passes' own.

    The passes run minutes apart. On a shared (virtual) host the machine's speed drifts by
    ~20 % over minutes with nothing else running inside it (docs/llm.md, the runs of the CPU
    section), so
    the median of passes spread in time is what a later run will typically see; the fastest
    pass (the rule until 2026-12-02) was the speed of the host's best moment and made every
    prediction optimistic. Contention from processes inside the machine is handled apart: a pass
    they disturbed is thrown away and run again (:class:`~dnnmap.calibrate.quiet.LoadMeter`).

    >>> from dnnmap.calibrate.microbench import BandwidthPoint
    >>> pts = [BandwidthPoint("copy", 4096, 8192, s, 0.01) for s in (1.0, 1.2, 0.8)]
    >>> p = _typical(pts)
    >>> p.seconds, round(p.spread, 3)
    (1.0, 0.4)
    """
    i, mid = _middle([p.seconds for p in points])
    across = (max(p.seconds for p in points) - min(p.seconds for p in points)) / mid if mid > 0 else 0.0
    return replace(points[i], seconds=mid, spread=max(points[i].spread, across))


def _typical_scalar(points: Sequence[ScalarPoint]) -> ScalarPoint:
    """The median value of a named figure (a latency or a rate alike) over the passes; its
    spread is that pass's own."""
    i, mid = _middle([p.value for p in points])
    return replace(points[i], value=mid)


@dataclass
class _Store:
    """Every pass's result per key; :meth:`typical` combines them."""

    gemm: dict[tuple, list[GemmPoint]] = field(default_factory=dict)
    conv: dict[tuple, list[ConvPoint]] = field(default_factory=dict)
    conv_backward: dict[tuple, list[ConvPoint]] = field(default_factory=dict)
    gemm_stream: dict[tuple, list[StreamPoint]] = field(default_factory=dict)
    op_sweep: dict[tuple, list[OpKindPoint]] = field(default_factory=dict)
    bandwidth: dict[tuple, list[BandwidthPoint]] = field(default_factory=dict)
    opkinds: dict[tuple, list[OpKindPoint]] = field(default_factory=dict)
    scalars: dict[str, list[ScalarPoint]] = field(default_factory=dict)

    _TABLES = ("gemm", "conv", "conv_backward", "gemm_stream", "op_sweep", "bandwidth", "opkinds")

    def merge(self, other: _Store) -> None:
        for name in (*self._TABLES, "scalars"):
            mine = getattr(self, name)
            for key, points in getattr(other, name).items():
                mine.setdefault(key, []).extend(points)

    def scalar(self, point: ScalarPoint) -> None:
        self.scalars.setdefault(point.name, []).append(point)

    def typical(self, name: str) -> tuple:
        """One point per key of table ``name`` (the median over the passes)."""
        return tuple(_typical(points) for points in getattr(self, name).values())

    def typical_scalars(self) -> tuple[ScalarPoint, ...]:
        return tuple(_typical_scalar(points) for points in self.scalars.values())


@dataclass
class _Steps:
    total: int
    progress: Progress | None
    done: int = 0

    def __call__(self, what: str) -> None:
        self.advance(1, what)

    def advance(self, n: int, what: str) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(what, self.done, self.total)


def _one_pass(plan: Plan, timer: Timer, dtypes: Sequence[str], costs: dict, store: _Store,
              step: _Steps, tag: str, seed: int = 0) -> None:
    """Every sweep once, each point added to ``store``. GEMMs and convs
    run round-robin in a shuffled order (``seed``), see :func:`time_problems`."""
    r, s = plan.runs, plan.min_seconds
    _settle(plan)  # once per pass: under a steady background load, waiting longer buys nothing
    extra = [fresh_page_cost(timer, runs=r), *cold_dispatch_costs(
        timer, samples=plan.cold_samples, gaps_us=plan.cold_gaps_us,
    )] if plan.device == "cpu" else []
    if plan.device == "cpu":
        extra += host_probes(timer)
        # in every pass, so the median of the passes holds: measured once after them until
        # 2026-12-02, when one slow moment of the host's second vCPU gave a speed-up of 1.06
        # (1.7-2.1 in every other sample that day) and every vector op ran at half speed
        counts = tuple(sorted({1, torch.get_num_threads()}))
        extra += thread_scaling(timer, counts, runs=r) if len(counts) > 1 else []
    for pt in tiny_op_latencies(timer, runs=r) + transcendental_rates(timer, runs=r) + extra:
        store.scalar(pt)
    step(f"dispatch overhead, transcendentals, thread scaling{tag}")
    for grid in _gemm_grids(plan, dtypes):
        probs = [gemm_problem(timer.device, grid.dtype, m, n, k) for m, n, k in grid.points()]
        with _tf32(grid.dtype == "tf32"):
            for pt in time_problems(timer, probs, rounds=r, warmup_rounds=plan.warmup, seed=seed,
                                    on_chunk=lambda n, p: step.advance(n, f"GEMM {p.key}{tag}")):
                _keep(store.gemm, (pt.dtype, pt.m, pt.n, pt.k), pt)
    convs = [conv_problem(timer.device, cg.kind, cg.kernel, hw, cin, cout)
             for cg in plan.convs for hw, cin, cout in cg.points()]
    for pt in time_problems(timer, convs, rounds=r, warmup_rounds=plan.warmup, seed=seed,
                            on_chunk=lambda n, p: step.advance(n, f"conv {p.key}{tag}")):
        _keep(store.conv, (pt.kind, pt.kernel, pt.hw, pt.cin, pt.cout), pt)
    backward = [conv_backward_problem(timer.device, cg.kind, cg.kernel, hw, cin, cout)
                for cg in plan.conv_backward for hw, cin, cout in cg.points()]
    for pt in time_problems(timer, backward, rounds=r, warmup_rounds=plan.warmup, seed=seed,
                            on_chunk=lambda n, p: step.advance(n, f"conv backward {p.key}{tag}")):
        _keep(store.conv_backward, (pt.kind, pt.kernel, pt.hw, pt.cin, pt.cout), pt)
    _stream_pass(plan, timer, store, step, tag)
    for kind in ("read", "copy", "add"):
        for ws in plan.bandwidth_bytes:
            _keep(store.bandwidth, (kind, ws), time_bandwidth(timer, kind, ws, runs=r, min_seconds=s))
            step(f"{kind} bandwidth {ws / 1024:.0f} KiB{tag}")
    for pt in time_opkinds(timer, plan.opkinds, costs, runs=r, min_seconds=s):
        _keep(store.opkinds, (pt.name,), pt)
    step(f"op kinds (pooling, normalization, activations){tag}")
    if plan.op_sweep:
        for pt in time_opkind_sweep(timer, plan.op_sweep, costs, runs=r):
            _keep(store.op_sweep, (pt.name, pt.bytes), pt)
        step(f"training op kinds over sizes{tag}")


def _stream_pass(plan: Plan, timer: Timer, store: _Store, step: _Steps, tag: str) -> None:
    """The weight-streaming GEMMs, all carved from one pool of at least 4x the last-level cache."""
    grid = plan.gemm_stream
    if grid is None:
        return
    from dnnmap.calibrate.sysinfo import cache_levels

    llc = max((c.size_bytes * c.instances for c in cache_levels()), default=0)
    pool = weight_pool(timer.device, max(grid.pool_bytes, 4 * llc, 2 * 4 * max(grid.n) * max(grid.k)))
    for layout, m, n, k in grid.points():
        pt = time_gemm_stream(timer, pool, layout, m, n, k, runs=plan.runs, warmup=plan.warmup)
        _keep(store.gemm_stream, (layout, m, n, k), pt)
        step(f"streaming GEMM {layout} {m}x{n}x{k}{tag}")
    del pool


def collect(plan: Plan, progress: Progress | None = None, meter: LoadMeter | None = None,
            policy: LoadPolicy = LoadPolicy()) -> Measurements:
    """Run every microbenchmark of ``plan`` on ``plan.device``; ``progress`` sees each step.
    With a ``meter``, a pass during which other processes loaded the machine is thrown away
    and run again (``policy``); if none was undisturbed, ``Measurements.disturbed`` says so."""
    timer = timer_for(plan.device)
    start, load_before = time.perf_counter(), load_average()
    dtypes = [g.dtype for g in (plan.gemm_fp32, *plan.gemm_other)]
    supported = [d for d in dtypes if dtype_supported(plan.device, d)]
    step = _Steps(count_steps(plan, supported), progress)
    names = tuple(dict.fromkeys((*plan.opkinds, *plan.op_sweep)))
    costs = counted_costs(names) if names else {}
    store, spoiled, shares = _Store(), _Store(), []
    clean = attempt = 0
    per_pass = step.total // plan.passes
    while clean < plan.passes and attempt < plan.passes + (policy.retries if meter else 0):
        tag = f" (pass {attempt + 1}/{plan.passes})" if plan.passes > 1 or attempt else ""
        if attempt >= plan.passes:  # a retry: wait for the machine to go idle, and count its steps
            wait_until_idle(max_busy=policy.max_share, max_wait_s=policy.idle_wait_s)
            step.total += per_pass
        this = _Store()
        if meter is not None:
            meter.start()
        _one_pass(plan, timer, supported, costs, this, step, tag, seed=attempt)
        share = meter.share() if meter is not None else 0.0
        shares.append(share)
        ok = share <= policy.max_share
        (store if ok else spoiled).merge(this)
        clean += ok
        attempt += 1
    disturbed = "" if clean else disturbed_message(shares, policy)
    if not clean:  # every pass disturbed: keep what was measured, marked as such
        store = spoiled
    threads = torch.get_num_threads()
    return Measurements(
        device=plan.device,
        device_name=device_name(plan.device),
        threads=threads,
        gemm=store.typical("gemm"),
        conv=store.typical("conv"),
        conv_backward=store.typical("conv_backward"),
        gemm_stream=store.typical("gemm_stream"),
        op_sweep=store.typical("op_sweep"),
        bandwidth=store.typical("bandwidth"),
        scalars=store.typical_scalars(),
        opkinds=store.typical("opkinds"),
        dtypes_skipped=tuple(d for d in dtypes if d not in supported),
        load_before=load_before,
        load_after=load_average(),
        elapsed_s=time.perf_counter() - start,
        date=utc_now(),
        versions=library_versions(),
        cpu_signature=cpu_signature() if plan.device == "cpu" else {},
        quick=plan.quick,
        conv_precision="tf32" if plan.device == "cuda" and torch.backends.cudnn.allow_tf32 else "fp32",
        load_shares=tuple(shares),
        disturbed=disturbed,
        passes_combined=clean or attempt,
    )
