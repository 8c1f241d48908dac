"""Measured tables in a profile's ``calibration`` section, written by ``dnnmap calibrate``.

Efficiency as a function of problem size is stored as data points and interpolated by
:mod:`dnnmap.hardware.interp`; never a fitted formula.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from dnnmap.hardware.types import Count, Positive, Precision, _Strict

# --- calibration: measured tables, written by ``dnnmap calibrate`` ---------------------------


class ConvKind(StrEnum):
    DENSE = "dense"  # k x k convolution, groups == 1
    POINTWISE = "pointwise"  # 1 x 1
    DEPTHWISE = "depthwise"  # groups == channels


class BandwidthKind(StrEnum):
    COPY = "copy"  # 1 read + 1 write per element
    ADD = "add"  # 2 reads + 1 write per element
    READ = "read"
    WRITE = "write"


class ThroughputPoint(_Strict):
    """One measured size: a kernel of ``flops`` FLOPs ran at ``achieved_tflops``."""

    flops: Positive
    achieved_tflops: Positive


class BandwidthPoint(_Strict):
    working_set_bytes: Positive
    achieved_gbps: Positive


class ShapePoint(_Strict):
    """One measured GEMM-view shape (added by the calibrate helper): ``m x n`` outputs
    accumulating over ``k`` ran at ``achieved_tflops``. Conv uses its implicit GEMM
    (M = N*Ho*Wo, N = Cout, K = Cin*kh*kw); depthwise uses M = N*Ho*Wo, n = channels,
    k = kh*kw. A shape table is a complete grid, interpolated by ``interp.shape_tflops``."""

    m: Count
    n: Count
    k: Count
    achieved_tflops: Positive


class BatchedShapePoint(_Strict):
    """One measured batched GEMM (``bmm``): ``b`` independent ``m x n`` outputs accumulating
    over ``k`` ran at ``achieved_tflops`` (all ``2 b m n k`` FLOPs / the kernel's latency).
    The batch is its own key, not folded into ``m``: ``b`` small matrices reuse nothing across
    the batch, so they run below one ``(b m) x n x k`` GEMM of the same FLOPs."""

    b: Count
    m: Count
    n: Count
    k: Count
    achieved_tflops: Positive


class ThreadPoint(_Strict):
    threads: Count
    speedup: Positive  # time(1 thread) / time(threads); at most ``threads``

    @model_validator(mode="after")
    def _efficiency_at_most_one(self) -> ThreadPoint:
        if self.speedup > self.threads:
            raise ValueError(f"speedup {self.speedup} exceeds threads {self.threads} (efficiency > 1)")
        return self


class CalibrationMeta(_Strict):
    machine: str  # CPU / GPU model string, e.g. "AMD EPYC" / "NVIDIA H100 80GB HBM3"
    device: Literal["cpu", "cuda"]
    date: str  # ISO-8601 UTC
    library_versions: dict[str, str] = Field(default_factory=dict)
    threads: Count | None = None
    quick: bool = False
    command: str = ""  # the command line that produced it
    notes: str = ""
    # imported tables (``dnnmap calibrate --from-measurements``): the file or folder read and
    # who measured it; empty for tables dnnmap measured itself
    imported_from: str = ""
    source: str = ""


class Calibration(_Strict):
    """Measured efficiency-vs-size tables. Interpolate with :mod:`dnnmap.hardware.interp`."""

    meta: CalibrationMeta
    gemm: dict[Precision, tuple[ThroughputPoint, ...]] = Field(default_factory=dict)
    conv: dict[ConvKind, dict[Precision, tuple[ThroughputPoint, ...]]] = Field(default_factory=dict)
    bandwidth: dict[BandwidthKind, tuple[BandwidthPoint, ...]] = Field(default_factory=dict)
    thread_scaling: tuple[ThreadPoint, ...] = ()
    # efficiency depends on shape, not only on FLOPs (a 1 x 2048 x 2048 GEMV and a 128 x 128 x 256
    # GEMM have the same FLOPs and differ ~10x on a CPU): the same data keyed by (m, n, k)
    gemm_shapes: dict[Precision, tuple[ShapePoint, ...]] = Field(default_factory=dict)
    conv_shapes: dict[ConvKind, dict[Precision, tuple[ShapePoint, ...]]] = Field(default_factory=dict)
    # backward kernels: ``convolution_backward`` (grad input + grad weight, the ATen op autograd
    # runs for a conv) keyed by its forward conv's implicit-GEMM shape (m, n, k) as in
    # ``conv_shapes``; throughput = its counted FLOPs (2 x 2 m n k) / latency
    conv_backward_shapes: dict[ConvKind, dict[Precision, tuple[ShapePoint, ...]]] = Field(default_factory=dict)
    # weight-streaming GEMMs: m rows (a decode step's tokens) against a weight read cold from
    # DRAM (the microbenchmark rotates over weights totalling several last-level caches, each
    # touched once a round, as a decode step touches each layer's weights once). Keyed by the
    # weight's layout: "nt" = stored [n, k] and read as x @ W.T (``nn.Linear``, ``aten.linear``),
    # "nn" = stored [k, n] (``addmm(bias, x, W)``, GPT-2's ``Conv1D``); a grid as ``gemm_shapes``
    gemm_stream: dict[str, dict[Precision, tuple[ShapePoint, ...]]] = Field(default_factory=dict)
    # imported kernel tables (``dnnmap calibrate --from-measurements``): scattered measured
    # shapes, not a grid; interpolated by ``interp.scattered_tflops``. ``gemm_points``: plain
    # GEMMs (linear / mm / addmm; a linear's leading dims folded into m, as ATen runs it);
    # ``bmm_points``: batched GEMMs keyed (b, m, n, k); ``conv_points``: convs at their
    # implicit-GEMM shape (see ShapePoint)
    gemm_points: dict[Precision, tuple[ShapePoint, ...]] = Field(default_factory=dict)
    bmm_points: dict[Precision, tuple[BatchedShapePoint, ...]] = Field(default_factory=dict)
    conv_points: dict[ConvKind, dict[Precision, tuple[ShapePoint, ...]]] = Field(default_factory=dict)
    # achieved bandwidth (bytes read + written / kernel latency) of one ATen op kind vs the
    # bytes it moves: "add" (tensor + tensor), "add_scalar" (tensor + scalar), "softmax",
    # "layer_norm", "gelu" ...; used for vector kernels whose dominant op is that kind
    op_bandwidth: dict[str, tuple[BandwidthPoint, ...]] = Field(default_factory=dict)
    dispatch_us: Positive | None = None  # one tiny eager op end to end
    # other named scalars; the key carries its unit: "exp_gelem_per_s", "sync_us"
    scalars: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tables_sorted_and_nonempty(self) -> Calibration:
        for path, points, key in self._tables():
            if not points:
                raise ValueError(f"{path}: empty table")
            xs = [getattr(p, key) for p in points]
            if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
                raise ValueError(f"{path}: points must be sorted by strictly increasing {key}")
        for path, shapes in self._grid_tables():
            _check_grid(path, shapes)
        for path, pts in self._scattered_tables():
            _check_scattered(path, pts)
        for key in self.scalars:
            if not key.endswith(_UNIT_SUFFIXES):
                raise ValueError(f"scalars.{key}: name must end in a unit ({', '.join(_UNIT_SUFFIXES)})")
        return self

    def _tables(self) -> Iterator[tuple[str, tuple[Any, ...], str]]:
        for prec, pts in self.gemm.items():
            yield f"gemm.{prec.value}", pts, "flops"
        for kind, per in self.conv.items():
            for prec, pts in per.items():
                yield f"conv.{kind.value}.{prec.value}", pts, "flops"
        for kind, pts in self.bandwidth.items():
            yield f"bandwidth.{kind.value}", pts, "working_set_bytes"
        if self.thread_scaling:
            yield "thread_scaling", self.thread_scaling, "threads"
        for op, pts in self.op_bandwidth.items():
            yield f"op_bandwidth.{op}", pts, "working_set_bytes"

    def _grid_tables(self) -> Iterator[tuple[str, tuple[ShapePoint, ...]]]:
        for prec, pts in self.gemm_shapes.items():
            yield f"gemm_shapes.{prec.value}", pts
        for kind, per in self.conv_shapes.items():
            for prec, pts in per.items():
                yield f"conv_shapes.{kind.value}.{prec.value}", pts
        for kind, per in self.conv_backward_shapes.items():
            for prec, pts in per.items():
                yield f"conv_backward_shapes.{kind.value}.{prec.value}", pts
        for layout, per2 in self.gemm_stream.items():
            for prec, pts in per2.items():
                yield f"gemm_stream.{layout}.{prec.value}", pts

    def _scattered_tables(self) -> Iterator[tuple[str, tuple[ShapePoint | BatchedShapePoint, ...]]]:
        for prec, pts in self.gemm_points.items():
            yield f"gemm_points.{prec.value}", pts
        for prec, bpts in self.bmm_points.items():
            yield f"bmm_points.{prec.value}", bpts
        for kind, per in self.conv_points.items():
            for prec, pts in per.items():
                yield f"conv_points.{kind.value}.{prec.value}", pts

    def _shape_tables(self) -> Iterator[tuple[str, tuple[ShapePoint | BatchedShapePoint, ...]]]:
        """Every TFLOPS-vs-shape table (grids and scattered points), path ending in its
        precision: the profile checks each point against that precision's peak."""
        yield from self._grid_tables()
        yield from self._scattered_tables()

    @property
    def imported(self) -> bool:
        return bool(self.meta.imported_from)

    def describe(self) -> str:
        """One line for estimate notes: what measured these tables, and when."""
        m = self.meta
        if m.imported_from:
            return (f"calibrated: kernel tables imported from {m.imported_from} ({m.source or 'source not given'}; "
                    f"{m.machine}; imported {m.date})")
        return f"calibrated: measured by dnnmap calibrate on {m.machine}, {m.date}"


def _check_grid(path: str, pts: tuple[ShapePoint, ...]) -> None:
    """A shape table must be the full grid of its m, n and k values, sorted by (m, n, k)."""
    if not pts:
        raise ValueError(f"{path}: empty table")
    keys = [(p.m, p.n, p.k) for p in pts]
    ms, ns, ks = (sorted({key[i] for key in keys}) for i in range(3))
    full = [(m, n, k) for m in ms for n in ns for k in ks]
    if keys != full:
        raise ValueError(f"{path}: points must be the complete (m, n, k) grid of their axis values, "
                         f"sorted by m, then n, then k ({len(keys)} points, grid has {len(full)})")


def _check_scattered(path: str, pts: tuple[ShapePoint | BatchedShapePoint, ...]) -> None:
    """A scattered table: non-empty, no shape twice (two latencies for one shape would make
    the table ambiguous; an importer keeps their median)."""
    if not pts:
        raise ValueError(f"{path}: empty table")
    keys = [(getattr(p, "b", 1), p.m, p.n, p.k) for p in pts]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"{path}: shape {dup} appears more than once")


_UNIT_SUFFIXES = ("_us", "_s", "_per_s", "_gbps", "_tflops", "_bytes", "_pj", "_w", "_ratio")
