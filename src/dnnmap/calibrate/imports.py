"""Import kernel microbenchmarks measured elsewhere into a calibrated profile.

``dnnmap calibrate --from-measurements PATH --base PROFILE`` reads kernel latencies someone else
measured on a device (a generic CSV, or NeuSight's ``kernels/<op>/<GPU>.csv`` tables) and stores
them in the same ``calibration`` section ``dnnmap calibrate`` writes for this machine:

- GEMMs (linear / mm / addmm, leading dims folded into M): ``gemm_points[precision]``, achieved
  TFLOPS = 2 M N K / latency at each measured shape (scattered, interpolated by
  :class:`dnnmap.hardware.interp.ScatteredTable`);
- batched GEMMs (bmm): ``bmm_points[precision]``, keyed (B, M, N, K);
- convolutions (NeuSight only): ``conv_points[dense|pointwise][precision]`` at the implicit-GEMM
  shape M = N Ho Wo, N = Cout, K = Cin kh kw;
- vector kernels: achieved bandwidth = bytes read + written / latency, per ATen op kind
  (``op_bandwidth["softmax"]`` ...), aggregated into half-octave bins of bytes (median of each
  bin: rows of equal bytes but different shapes differ by noise, and the engine knows only the
  bytes); the tensor + scalar ``add`` doubles as the ``copy`` table (same traffic: one read, one
  write per element) and the tensor + tensor ``add`` as the ``add`` table, used for vector ops
  no table names.

Nothing is fitted: the tables hold the measurements (medians where a shape repeats). The
formats are documented in ``docs/measurement-formats.md``.

>>> from dnnmap.calibrate.imports import neusight_bytes
>>> neusight_bytes("add", 2, 8), neusight_bytes("relu", 2, 8)   # 3 and 2 fp32 tensors of 16
(192, 128)
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import ConvKind, HardwareProfile, Precision, Provenance

NEUSIGHT_SOURCE = ("NeuSight (ASPLOS 2025, 'Forecasting GPU Performance for Deep Learning Training and "
                   "Inference'), scripts/asplos kernel microbenchmarks, PyTorch 2.1, fp32, MIT licence")
GEMM_OPS = frozenset({"linear", "mm", "addmm", "matmul"})
BMM_OPS = frozenset({"bmm", "baddbmm"})
# NeuSight table -> (op kind as dnnmap's graphs name it, fp32 tensors moved per element)
NEUSIGHT_VECTOR: Mapping[str, tuple[str, int]] = {
    "add": ("add", 3), "mul": ("mul", 3), "div": ("div", 3), "pow": ("pow", 3),
    "addu": ("add_scalar", 2), "mulu": ("mul_scalar", 2), "divu": ("div_scalar", 2), "powu": ("pow_scalar", 2),
    "relu": ("relu", 2), "gelu": ("gelu", 2), "tanh": ("tanh", 2), "softmax": ("softmax", 2),
    "ln": ("layer_norm", 2),
}
_LATENCY_OTHER_UNITS = ("latency_s", "latency_us", "latency_ns", "latency", "time_s", "time_ms", "time_us",
                        "seconds", "ms", "us")
_BINS_PER_OCTAVE = 2
_CELL_OCTAVES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
# points kept per scattered table (see _thin): bmm needs the most (four axes)
BUDGET = {"gemm": 2500, "bmm": 11000, "conv": 1500}


@dataclass(frozen=True, slots=True)
class KernelRow:
    """One measured kernel: ``op`` (ATen kind), shape or bytes, latency in seconds."""

    op: str
    precision: Precision
    latency_s: float
    where: str  # "kernels/bmm/Tesla_T4.csv row 12": for error messages
    b: int = 1
    m: int = 0
    n: int = 0
    k: int = 0
    nbytes: float = 0.0
    conv_kind: ConvKind | None = None

    @property
    def is_gemm(self) -> bool:
        return self.m > 0

    @property
    def flops(self) -> float:
        return 2.0 * self.b * self.m * self.n * self.k


# --- reading CSV files with errors that name the file, row and column ---------------------------


class CsvRows:
    """A CSV file's rows as dicts, with the checks every measurement reader shares.

    ``row(i)`` names the file line (the header is line 1); :meth:`number` and :meth:`integer`
    raise :class:`DnnmapError` naming the file, the line and the column."""

    def __init__(self, path: Path, required: Iterable[str], *, latency_column: str | None = None) -> None:
        self.path = path
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                self.columns = [c.strip() for c in (reader.fieldnames or [])]
                self.rows: list[tuple[int, dict[str, str]]] = []
                for raw in reader:
                    self.rows.append((reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in raw.items()}))
        except OSError as e:
            raise DnnmapError(f"{path}: cannot read it ({e.strerror or e})") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise DnnmapError(f"{path}: not a readable CSV file ({e})") from None
        if latency_column is not None:
            self._check_latency_units(latency_column)
        missing = [c for c in required if c not in self.columns]
        if missing:
            raise DnnmapError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                              f"(it has {', '.join(repr(c) for c in self.columns) or 'no header'})")
        if not self.rows:
            raise DnnmapError(f"{path}: no data rows")

    def _check_latency_units(self, wanted: str) -> None:
        """A latency column in other units (``latency_s``, ``latency_us``) is refused by name."""
        if wanted in self.columns:
            return
        for c in self.columns:
            if c.lower() in _LATENCY_OTHER_UNITS or (c.lower().startswith(("latency", "measured")) and c != wanted):
                raise DnnmapError(f"{self.path}: column {c!r}: latencies must be in milliseconds, in a column "
                                  f"named {wanted!r} (a units mix-up is refused rather than guessed; convert "
                                  "seconds x 1000 or microseconds / 1000 and rename the column)")

    def where(self, line: int, column: str | None = None) -> str:
        return f"{self.path} row {line}" + (f", column {column!r}" if column else "")

    def number(self, line: int, row: Mapping[str, str], column: str, *, positive: bool = True,
               default: float | None = None) -> float:
        text = row.get(column, "")
        if text == "" and default is not None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise DnnmapError(f"{self.where(line, column)}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise DnnmapError(f"{self.where(line, column)}: {text!r} is not a finite number")
        if positive and value <= 0:
            raise DnnmapError(f"{self.where(line, column)}: must be > 0, got {text}")
        return value

    def integer(self, line: int, row: Mapping[str, str], column: str, *, default: int | None = None) -> int:
        value = self.number(line, row, column, default=None if default is None else float(default))
        if value != int(value):
            raise DnnmapError(f"{self.where(line, column)}: {row.get(column)!r} is not a whole number")
        return int(value)

    def text(self, line: int, row: Mapping[str, str], column: str) -> str:
        value = row.get(column, "")
        if not value:
            raise DnnmapError(f"{self.where(line, column)}: empty")
        return value


# --- the generic format ---------------------------------------------------------------------


def read_generic(path: Path) -> tuple[list[KernelRow], dict[str, str]]:
    """Rows of a generic kernel CSV (``op, precision, latency_ms``; ``b, m, n, k`` for GEMMs,
    ``bytes`` for vector ops; optional ``source``, ``device``) and its meta (source, machine)."""
    t = CsvRows(path, ("op", "precision", "latency_ms"), latency_column="latency_ms")
    out: list[KernelRow] = []
    sources: set[str] = set()
    machines: set[str] = set()
    for line, row in t.rows:
        op = t.text(line, row, "op").lower()
        try:
            prec = Precision.parse(t.text(line, row, "precision"))
        except DnnmapError as e:
            raise DnnmapError(f"{t.where(line, 'precision')}: {e}") from None
        lat = t.number(line, row, "latency_ms") * 1e-3
        where = t.where(line)
        if op in GEMM_OPS or op in BMM_OPS:
            for c in ("m", "n", "k"):
                if c not in t.columns:
                    raise DnnmapError(f"{where}: a {op} row needs column {c!r} (the file has none)")
            b = t.integer(line, row, "b", default=1) if "b" in t.columns else 1
            m, n, k = (t.integer(line, row, c) for c in ("m", "n", "k"))
            if op in GEMM_OPS:  # leading dims folded into M, as ATen runs a linear
                out.append(KernelRow(op, prec, lat, where, 1, b * m, n, k))
            else:
                out.append(KernelRow(op, prec, lat, where, b, m, n, k))
        else:
            if "bytes" not in t.columns:
                raise DnnmapError(f"{where}: a vector-op row ({op}) needs column 'bytes' (bytes read + written)")
            out.append(KernelRow(op, prec, lat, where, nbytes=t.number(line, row, "bytes")))
        if row.get("source"):
            sources.add(row["source"])
        if row.get("device"):
            machines.add(row["device"])
    meta = {"source": "; ".join(sorted(sources)) or f"{path.name} (no source column)",
            "machine": ", ".join(sorted(machines)) or "not stated"}
    return out, meta


# --- NeuSight's kernel tables -----------------------------------------------------------------


def neusight_bytes(table: str, b: int, h: int) -> int:
    """Bytes a NeuSight vector benchmark moves on a (B, H) fp32 tensor: binary ops read two
    tensors and write one, unary ops read one and write one; layer norm also reads its weight
    and bias (H each) and writes the per-row mean and rstd (B each)."""
    kind, tensors = NEUSIGHT_VECTOR[table]
    extra = 2 * h + 2 * b if kind == "layer_norm" else 0
    return 4 * (tensors * b * h + extra)


def neusight_gpus(kernels: Path) -> list[str]:
    return sorted({p.stem for p in kernels.glob("*/*.csv")})


# The device time of the smallest kernels in a table (a few elements, a tiny GEMM): estimated,
# a few microseconds (NVIDIA, 'Getting Started with CUDA Graphs': a short kernel runs 2.9 us)
MIN_KERNEL_S = 3e-6


def _fastest_s(r: KernelRow, base: HardwareProfile) -> float:
    """The least time the kernel of row ``r`` can take on ``base``: its roofline at the datasheet
    peak (convs: with the Winograd gain) or fastest memory level, and at least MIN_KERNEL_S."""
    if r.is_gemm:
        gain = _CONV_ALGORITHM_GAIN if r.conv_kind is not None else 1.0
        s = r.flops / (_peak_of(r, base) * 1e12 * gain)
    else:
        s = r.nbytes / (base.memory[0].bandwidth_gbps * 1e9)
    return max(MIN_KERNEL_S, s * (1 + 1e-6))  # a hair above the bound the plausibility check uses


def without_timing_floor(rows: list[KernelRow], base: HardwareProfile) -> tuple[list[KernelRow], dict[str, float]]:
    """``rows`` less the fixed cost a host-timed microbenchmark adds to every row of a table.

    NeuSight times one op at a time between CUDA events recorded from Python, so each latency
    is the op's host-side cost until its kernel reaches the GPU plus the kernel: its linear tables
    bottom out at ~50 us and add at ~25 us, where the kernels take a few us. Per table (op kind),
    the overhead is the largest constant that leaves every row at or above the least time its
    kernel can take (:func:`_fastest_s`); it is subtracted from each row. dnnmap's own host and
    launch terms model that cost in a prediction; kept in the tables it would count twice.
    Returns the rows and the overhead per op kind (seconds).

    >>> from dnnmap.hardware import load_profile
    >>> r = [KernelRow("add", Precision.FP32, t, "x", nbytes=1) for t in (26e-6, 27e-6, 126e-6)]
    >>> rows, over = without_timing_floor(r, load_profile("t4"))
    >>> round(over["add"] * 1e6, 6), [round(x.latency_s * 1e6, 6) for x in rows]
    (23.0, [3.0, 4.0, 103.0])
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r.op].append(i)
    out = list(rows)
    overheads: dict[str, float] = {}
    for op, idx in groups.items():
        over = max(0.0, min(rows[i].latency_s - _fastest_s(rows[i], base) for i in idx))
        overheads[op] = over
        for i in idx:
            out[i] = replace(rows[i], latency_s=rows[i].latency_s - over)
    return out, overheads


def read_neusight(kernels: Path, gpu: str) -> tuple[list[KernelRow], dict[str, str]]:
    """Rows of NeuSight's ``kernels/<op>/<gpu>.csv`` tables (all fp32, TF32 off), as measured
    (:func:`import_profile` subtracts their timing overhead, :func:`without_timing_floor`)."""
    files = sorted(kernels.glob(f"*/{gpu}.csv"))
    if not files:
        known = neusight_gpus(kernels)
        raise DnnmapError(f"{kernels}: no kernel table for GPU {gpu!r}; tables exist for: {', '.join(known) or 'none'}")
    rows: list[KernelRow] = []
    meta: dict[str, str] = {"source": NEUSIGHT_SOURCE}
    for f in files:
        table = f.parent.name
        if table in ("linear", "bmm"):
            rows.extend(_neusight_gemm(f, table, meta))
        elif table == "conv":
            rows.extend(_neusight_conv(f, meta))
        elif table in NEUSIGHT_VECTOR:
            rows.extend(_neusight_vector(f, table, meta))
    return rows, meta


def _neusight_common(t: CsvRows, line: int, row: Mapping[str, str], meta: dict[str, str]) -> float:
    if "machine" not in meta and row.get("Device"):
        meta["machine"] = row["Device"]
        meta["torch"] = row.get("Torch Version", "").lstrip("p")
        meta["cuda"] = row.get("CUDA Version", "")
        meta["cudnn"] = row.get("CUDNN Version", "")
    return t.number(line, row, "Latency") * 1e-3  # NeuSight: milliseconds


def _neusight_gemm(f: Path, table: str, meta: dict[str, str]) -> Iterator[KernelRow]:
    t = CsvRows(f, ("Latency", "B", "M", "N", "K"))
    for line, row in t.rows:
        lat = _neusight_common(t, line, row, meta)
        b, m, n, k = (t.integer(line, row, c) for c in ("B", "M", "N", "K"))
        if table == "linear":  # a linear on (B, M, K): ATen folds B into M
            yield KernelRow("linear", Precision.FP32, lat, t.where(line), 1, b * m, n, k)
        else:
            yield KernelRow("bmm", Precision.FP32, lat, t.where(line), b, m, n, k)


def _neusight_conv(f: Path, meta: dict[str, str]) -> Iterator[KernelRow]:
    cols = ("Latency", "B", "Input_Channel", "Output_Channel", "Kernel_Szie", "Input_Size", "Stride", "Padding")
    t = CsvRows(f, cols)  # (sic: "Kernel_Szie" is the source's spelling)
    for line, row in t.rows:
        lat = _neusight_common(t, line, row, meta)
        b, cin, cout, ks, size, stride = (t.integer(line, row, c) for c in cols[1:7])
        pad = t.integer(line, row, "Padding") if row.get("Padding") not in ("", "0") else 0
        out = (size + 2 * pad - ks) // stride + 1
        if out < 1:
            raise DnnmapError(f"{t.where(line)}: kernel {ks} with padding {pad} does not fit input {size}")
        kind = ConvKind.POINTWISE if ks == 1 else ConvKind.DENSE
        yield KernelRow("conv2d", Precision.FP32, lat, t.where(line), 1, b * out * out, cout, cin * ks * ks,
                        conv_kind=kind)


def _neusight_vector(f: Path, table: str, meta: dict[str, str]) -> Iterator[KernelRow]:
    t = CsvRows(f, ("Latency", "B", "H"))
    kind = NEUSIGHT_VECTOR[table][0]
    for line, row in t.rows:
        lat = _neusight_common(t, line, row, meta)
        b, h = t.integer(line, row, "B"), t.integer(line, row, "H")
        yield KernelRow(kind, Precision.FP32, lat, t.where(line), nbytes=neusight_bytes(table, b, h))


# --- rows -> calibration tables -------------------------------------------------------------------


# cuDNN's Winograd / FFT convolutions do fewer multiplies than the direct count (F(4x4, 3x3)
# Winograd: 36 / 144 = 1/4, Lavin & Gray 2016), so a conv's rate in direct FLOPs may exceed
# the peak by up to that factor; more than this is a units mix-up
_CONV_ALGORITHM_GAIN = 4.0


def _peak_of(r: KernelRow, base: HardwareProfile) -> float:
    peak = base.peak(r.precision) or base.vector_peak(r.precision)
    if peak is None:
        raise DnnmapError(f"{r.where}: base profile {base.name} has no {r.precision.value} peak to check it against")
    return peak


def _check_plausible(r: KernelRow, base: HardwareProfile) -> None:
    """A measured kernel faster than the base profile's peak is a units mix-up (latencies in
    seconds read as milliseconds) or a wrong base profile: refused, naming the row. (Convs may
    beat the direct-FLOP peak by the Winograd gain; the importer caps them at the peak.)"""
    if r.is_gemm:
        peak = _peak_of(r, base)
        tf = r.flops / r.latency_s / 1e12
        if tf > peak * (_CONV_ALGORITHM_GAIN if r.conv_kind is not None else 1 + 1e-6):
            raise DnnmapError(
                f"{r.where}, column latency: {r.latency_s * 1e3:.6g} ms for {r.flops:.4g} FLOPs is {tf:.4g} TFLOPS, "
                f"above {base.name}'s {r.precision.value} peak of {peak:g} TFLOPS: are the latencies in seconds "
                "rather than milliseconds, or is this the wrong --base profile?")
    else:
        top = base.memory[0].bandwidth_gbps
        gbps = r.nbytes / r.latency_s / 1e9
        if gbps > top * (1 + 1e-6):
            raise DnnmapError(
                f"{r.where}, column latency: {r.nbytes:.4g} bytes in {r.latency_s * 1e3:.6g} ms is {gbps:.4g} GB/s, "
                f"above {base.name}'s fastest memory level ({base.memory[0].name}: {top:g} GB/s): are the latencies "
                "in seconds rather than milliseconds, or is this the wrong --base profile?")


def _thin(shapes: dict[tuple[int, int, int, int], float], budget: int) -> dict[tuple[int, int, int, int], float]:
    """At most ``budget`` points: one per cell of a log2 grid over (b, m, n, k), the finest
    of :data:`_CELL_OCTAVES` that fits, keeping each cell's median-rate *measurement* (a real
    shape and its real rate, nothing synthesised). Keeps a profile small enough to load (the
    loader refuses YAML over 1 MB) and the triangulation quick; on NeuSight's T4 tables,
    leave-300-out median |error| of the interpolated rate: linear 7.4 % (all 6,158) vs 6.9 %
    (1 octave, 988 points); bmm 7.4 % (all 17,397) vs 7.5 % (1/2 octave, 12,870) vs 8.9 %
    (3/4 octave, 7,511)."""
    if len(shapes) <= budget:
        return shapes
    for width in _CELL_OCTAVES:
        cells: dict[tuple[int, ...], list[tuple[int, int, int, int]]] = defaultdict(list)
        for key in shapes:
            cells[tuple(math.floor(math.log2(x) / width) for x in key)].append(key)
        if len(cells) <= budget or width == _CELL_OCTAVES[-1]:
            kept = [sorted(keys, key=shapes.__getitem__)[(len(keys) - 1) // 2] for keys in cells.values()]
            return {key: shapes[key] for key in sorted(kept)}
    raise AssertionError("unreachable")


def _shape_points(rows: list[KernelRow], batched: bool, budget: int,
                  cap_tflops: float = math.inf) -> list[dict[str, Any]]:
    """One point per distinct shape (the median latency where a shape was measured twice),
    at most ``cap_tflops``, thinned to ``budget`` points."""
    lat: dict[tuple[int, int, int, int], list[float]] = defaultdict(list)
    for r in rows:
        lat[(r.b, r.m, r.n, r.k)].append(r.latency_s)
    rates = {key: 2.0 * math.prod(key) / statistics.median(ts) / 1e12 for key, ts in lat.items()}
    out = []
    for (b, m, n, k), tf in _thin(rates, budget).items():
        tf = min(tf, cap_tflops)
        point = {"b": b} if batched else {}
        out.append({**point, "m": m, "n": n, "k": k, "achieved_tflops": float(f"{tf:.6g}")})
    return out


def _bandwidth_points(rows: list[KernelRow]) -> list[dict[str, float]]:
    """Half-octave bins of bytes moved: (median bytes, median achieved GB/s) per bin."""
    bins: dict[int, list[KernelRow]] = defaultdict(list)
    for r in rows:
        bins[math.floor(math.log2(r.nbytes) * _BINS_PER_OCTAVE)].append(r)
    out = []
    for key in sorted(bins):
        rs = bins[key]
        size = statistics.median(r.nbytes for r in rs)
        gbps = statistics.median(r.nbytes / r.latency_s / 1e9 for r in rs)
        out.append({"working_set_bytes": round(size), "achieved_gbps": float(f"{gbps:.6g}")})
    # rounding can merge two neighbouring bins' sizes: keep sizes strictly increasing
    return [p for i, p in enumerate(out) if i == 0 or p["working_set_bytes"] > out[i - 1]["working_set_bytes"]]


def calibration_tables(rows: list[KernelRow], base: HardwareProfile) -> dict[str, Any]:
    """The ``calibration`` tables (without ``meta``) for ``rows``, each checked against ``base``."""
    if not rows:
        raise DnnmapError("no kernel measurements to import")
    for r in rows:
        _check_plausible(r, base)
    by_prec: dict[tuple[str, Precision], list[KernelRow]] = defaultdict(list)
    conv: dict[ConvKind, dict[Precision, list[KernelRow]]] = defaultdict(lambda: defaultdict(list))
    vector: dict[str, list[KernelRow]] = defaultdict(list)
    for r in rows:
        if r.conv_kind is not None:
            conv[r.conv_kind][r.precision].append(r)
        elif r.is_gemm:
            by_prec[("bmm" if r.op in BMM_OPS else "gemm", r.precision)].append(r)
        else:
            vector[r.op].append(r)
    tables: dict[str, Any] = {
        "gemm_points": {p.value: _shape_points(rs, False, BUDGET["gemm"])
                        for (kind, p), rs in by_prec.items() if kind == "gemm"},
        "bmm_points": {p.value: _shape_points(rs, True, BUDGET["bmm"])
                       for (kind, p), rs in by_prec.items() if kind == "bmm"},
        "conv_points": {k.value: {p.value: _shape_points(rs, False, BUDGET["conv"], _peak_of(rs[0], base))
                                  for p, rs in per.items()} for k, per in conv.items()},
        "op_bandwidth": {op: _bandwidth_points(rs) for op, rs in sorted(vector.items())},
    }
    bandwidth = {}
    if "add_scalar" in vector:  # x + c: one read, one write per element, the traffic of a copy
        bandwidth["copy"] = tables["op_bandwidth"]["add_scalar"]
    if "add" in vector:
        bandwidth["add"] = tables["op_bandwidth"]["add"]
    if bandwidth:
        tables["bandwidth"] = bandwidth
    return {k: v for k, v in tables.items() if v}


def _counts(rows: list[KernelRow]) -> str:
    c: dict[str, int] = defaultdict(int)
    for r in rows:
        c[r.op] += 1
    return ", ".join(f"{op} {n}" for op, n in sorted(c.items()))


def import_profile(path: str | os.PathLike[str], base: HardwareProfile, *, gpu: str | None = None,
                   name: str | None = None, command: str = "") -> HardwareProfile:
    """``base`` + a calibration section imported from ``path``: a NeuSight ``kernels/`` folder
    (with ``gpu``, e.g. ``Tesla_T4``) or one generic CSV. Raises :class:`DnnmapError` on bad input."""
    src = Path(path)
    if src.is_dir():
        if not gpu:
            known = neusight_gpus(src)
            raise DnnmapError(f"{src} is a folder of kernel tables: pass --gpu, one of: {', '.join(known) or 'none found'}")
        rows, meta = read_neusight(src, gpu)
        for r in rows:  # a units mix-up is refused before anything is subtracted
            _check_plausible(r, base)
        rows, overheads = without_timing_floor(rows, base)
        meta["timing_floor"] = ("host-timed rows: per-table overhead subtracted (us): "
                                + ", ".join(f"{op} {s * 1e6:.1f}" for op, s in sorted(overheads.items())))
    elif src.is_file():
        rows, meta = read_generic(src)
    else:
        raise DnnmapError(f"{src}: no such file or folder")
    tables = calibration_tables(rows, base)
    versions = {k: meta[k] for k in ("torch", "cuda", "cudnn") if meta.get(k)}
    machine = meta.get("machine") or gpu or "not stated"
    cal = {
        "meta": {
            "machine": machine, "device": "cuda" if base.device_class.value == "gpu" else "cpu",
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "library_versions": versions, "command": command,
            "notes": (f"imported, not measured by dnnmap: {len(rows)} kernel rows ({_counts(rows)}); "
                      "kernel microbenchmarks only, no model timed"
                      + (f"; {meta['timing_floor']}" if meta.get("timing_floor") else "")),
            "imported_from": str(src) + (f" (GPU {gpu})" if gpu and src.is_dir() else ""),
            "source": meta["source"],
        },
        **tables,
    }
    data = base.model_dump(mode="json", exclude_none=True)
    data.pop("calibration", None)
    data["name"] = name or f"{base.name}-imported"
    data["display_name"] = f"{base.display_name} (kernel tables imported)"
    data["provenance"] = Provenance.CALIBRATED.value
    data["description"] = (f"{base.description} Kernel tables imported from {cal['meta']['imported_from']} "
                           f"({meta['source']}).").strip()
    data["calibration"] = cal
    data["sources"] = {**data["sources"], "calibration": f"measured: imported from {cal['meta']['imported_from']} ({meta['source']})"}
    try:
        return HardwareProfile.model_validate(data)
    except ValueError as e:
        raise DnnmapError(f"{src}: the imported tables do not fit base profile {base.name}: {e}") from None


class _FlowPoints(yaml.SafeDumper):
    """Block-style YAML, but each table point on one line (``{m: 64, n: 64, ...}``)."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = bool(data) and all(isinstance(v, int | float) for v in data.values()) and (
        "achieved_tflops" in data or "achieved_gbps" in data)
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_FlowPoints.add_representer(dict, _represent_dict)


def imported_profile_yaml(profile: HardwareProfile) -> str:
    """The profile as YAML with one table point per line (an imported profile holds thousands)."""
    data = profile.model_dump(mode="json", exclude_none=True)
    head = (f"# {profile.name}: {profile.display_name}\n"
            f"# written by dnnmap calibrate --from-measurements; tables: {profile.calibration.meta.imported_from}\n"
            if profile.calibration is not None else "")
    return head + yaml.dump(data, Dumper=_FlowPoints, sort_keys=False, width=10_000)
