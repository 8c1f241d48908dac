"""Measurements -> the measured figures of a profile: peaks, level bandwidths, tables.

Overhead is kept out of the tables: a point's throughput is ``flops / (t - t_dispatch)``,
where ``t_dispatch`` is the measured cost of the same call on a 1-element problem, capped at
the peak (a tiny problem whose time is all dispatch). The mapper adds the dispatch term back,
so at every grid point ``dispatch + flops / throughput`` reproduces the measured time.

>>> round(_rate(flops=2_000, seconds=3e-6, dispatch=1e-6, peak=1e12))  # 2000 FLOP in 2 us of work
1000000000
>>> _rate(flops=2_000, seconds=1e-6, dispatch=1e-6, peak=1e12)  # all dispatch: capped at peak
1000000000000.0
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from typing import Any

from dnnmap.calibrate.collect import Measurements
from dnnmap.calibrate.microbench import PROBE_PREFIX, ConvPoint, GemmPoint

_PREC = {"float32": "fp32", "tf32": "tf32", "bfloat16": "bf16", "float16": "fp16"}
# grouped convs (depthwise = group width 1) share the schema's depthwise table, keyed by
# (output pixels, channels, K = channels per group * kernel area)
_CONV_KIND = {"conv": "dense", "conv1x1": "pointwise", "grouped": "depthwise"}
# a bandwidth point is kept only when its dispatch-free part is at least this share of the
# call: below it the bytes are lost in the fixed cost and no bandwidth can be read off
_RESOLVABLE = 0.5


def slug(text: str) -> str:
    """``slug("NVIDIA H100 80GB HBM3") == 'nvidia-h100-80gb-hbm3'``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50] or "device"


def _dispatch_s(meas: Measurements, name: str) -> float:
    v = meas.scalar(f"dispatch.{name}")
    return v if v is not None else (meas.scalar("dispatch.elementwise") or 0.0)


# --- peaks and tables ----------------------------------------------------------------------
def _raw_rate(flops: int, seconds: float) -> float:
    return flops / seconds


def measured_peaks(meas: Measurements) -> dict[str, float]:
    """Per precision, the best FLOP/s any GEMM or conv reached (whole call, dispatch included)."""
    peaks: dict[str, float] = {}
    for p in meas.gemm:
        k = _PREC[p.dtype]
        peaks[k] = max(peaks.get(k, 0.0), _raw_rate(p.flops, p.seconds))
    conv = [_raw_rate(c.flops, c.seconds) for c in meas.conv]
    if conv:
        k = meas.conv_precision
        peaks[k] = max(peaks.get(k, 0.0), *conv)
    return peaks


def _rate(flops: int, seconds: float, dispatch: float, peak: float) -> float:
    """FLOP/s of the work after the fixed dispatch cost, capped at ``peak``."""
    work = seconds - dispatch
    return peak if work <= flops / peak else flops / work


def _shape_table(points: Iterable[tuple[int, int, int, float]]) -> list[dict[str, Any]]:
    """Sorted (m, n, k) grid rows in TFLOPS. A missing grid point above every measured m of its
    (n, k) column (cut by a FLOP cap: the largest problems) takes that column's largest measured
    m: throughput rises with m and saturates, and the same n x k operand sets the cache
    behaviour. Any other gap is filled from its nearest measured neighbour in log-space.

    >>> rows = _shape_table([(1, 8, 8, 1e11), (4, 8, 8, 2e11), (1, 16, 8, 3e11), (1, 8, 16, 4e11)])
    >>> [(r["m"], r["n"], r["k"], r["achieved_tflops"]) for r in rows if r["m"] == 4]
    [(4, 8, 8, 0.2), (4, 8, 16, 0.4), (4, 16, 8, 0.3), (4, 16, 16, 0.2)]
    """
    pts = {(m, n, k): r for m, n, k, r in points}
    axes = [sorted({key[i] for key in pts}) for i in range(3)]
    top: dict[tuple[int, int], int] = {}
    for m, n, k in pts:
        top[(n, k)] = max(m, top.get((n, k), m))
    rows = []
    for m in axes[0]:
        for n in axes[1]:
            for k in axes[2]:
                r = pts.get((m, n, k))
                if r is None and top.get((n, k), m) < m:
                    r = pts[(top[(n, k)], n, k)]
                if r is None:
                    near = min(pts, key=lambda q: sum(abs(math.log(a / b)) for a, b in zip(q, (m, n, k), strict=True)))
                    r = pts[near]
                rows.append({"m": m, "n": n, "k": k, "achieved_tflops": _tf(r)})
    return rows


def _tf(rate: float) -> float:
    return float(f"{rate / 1e12:.6g}")


def _flops_table(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The shape grid collapsed to throughput vs FLOPs (for mappers that key on size only):
    one point per power-of-4 FLOP bin, the median throughput of the shapes in it."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        f = 2.0 * r["m"] * r["n"] * r["k"]
        bins.setdefault(int(math.log(f, 4)), []).append((f, r["achieved_tflops"]))
    out = []
    for b in sorted(bins):
        fs, ts = zip(*bins[b], strict=True)
        out.append({"flops": float(f"{statistics.median(fs):.6g}"),
                    "achieved_tflops": float(f"{statistics.median(ts):.6g}")})
    return out


def gemm_tables(meas: Measurements, peaks: dict[str, float]) -> tuple[dict, dict]:
    """(gemm_shapes, gemm) per precision."""
    d = _dispatch_s(meas, "matmul")
    by_prec: dict[str, list[GemmPoint]] = {}
    for p in meas.gemm:
        by_prec.setdefault(_PREC[p.dtype], []).append(p)
    shapes = {k: _shape_table((p.m, p.n, p.k, _rate(p.flops, p.seconds, d, peaks[k])) for p in v)
              for k, v in by_prec.items()}
    return shapes, {k: _flops_table(v) for k, v in shapes.items()}


def conv_tables(meas: Measurements, peaks: dict[str, float]) -> tuple[dict, dict]:
    """(conv_shapes, conv) per conv kind, at the precision the fp32 convs ran in (fp32 on a
    CPU; tf32 on a GPU whose cuDNN uses TF32 for fp32 convs)."""
    d, prec = _dispatch_s(meas, "conv"), meas.conv_precision
    by_kind: dict[str, list[ConvPoint]] = {}
    for c in meas.conv:
        by_kind.setdefault(_CONV_KIND[c.kind], []).append(c)
    shapes = {kind: {prec: _shape_table((*c.gemm_mnk, _rate(c.flops, c.seconds, d, peaks[prec])) for c in v)}
              for kind, v in by_kind.items()}
    return shapes, {kind: {prec: _flops_table(t[prec])} for kind, t in shapes.items()}


def conv_backward_tables(meas: Measurements, peaks: dict[str, float]) -> dict:
    """``conv_backward_shapes`` per conv kind: counted backward FLOPs (grad input + grad weight,
    ``4 m n k`` at the forward conv's implicit-GEMM shape) over the call time minus the conv
    dispatch cost, capped at the peak."""
    d, prec = _dispatch_s(meas, "conv"), meas.conv_precision
    by_kind: dict[str, list[ConvPoint]] = {}
    for c in meas.conv_backward:
        by_kind.setdefault(_CONV_KIND[c.kind], []).append(c)
    return {kind: {prec: _shape_table((*c.gemm_mnk, _rate(c.flops, c.seconds, d, peaks[prec])) for c in v)}
            for kind, v in by_kind.items()}


def stream_tables(meas: Measurements, peaks: dict[str, float]) -> dict:
    """``gemm_stream`` per weight layout ("nt" / "nn"), fp32: ``2 m n k`` over the call time
    minus the matmul dispatch cost, capped at the peak."""
    d = _dispatch_s(meas, "matmul")
    by_layout: dict[str, list[tuple[int, int, int, float]]] = {}
    for p in meas.gemm_stream:
        by_layout.setdefault(p.layout, []).append((p.m, p.n, p.k, _rate(p.flops, p.seconds, d, peaks["fp32"])))
    return {layout: {"fp32": _shape_table(pts)} for layout, pts in by_layout.items()}


def bandwidth_tables(meas: Measurements) -> dict[str, list[dict[str, float]]]:
    """Per sweep kind, GB/s vs working set, dispatch-free; unresolvable points dropped."""
    fixed = {"copy": _dispatch_s(meas, "copy_out"), "add": _dispatch_s(meas, "add_out"), "read": 0.0}
    out: dict[str, list[dict[str, float]]] = {}
    for b in sorted(meas.bandwidth, key=lambda b: (b.kind, b.working_set_bytes)):
        work = b.seconds - fixed[b.kind]
        if work < _RESOLVABLE * b.seconds:
            continue
        out.setdefault(b.kind, []).append(
            {"working_set_bytes": b.working_set_bytes, "achieved_gbps": float(f"{b.bytes_moved / work / 1e9:.5g}")})
    return out


def level_bandwidths(points: list[dict[str, float]], bounds: list[tuple[int, int]]) -> list[float]:
    """GB/s of each level: the best any sweep reached with a working set in (previous level's
    capacity, this level's], then made non-increasing outward by raising nearer levels
    (other processes only ever slow a sweep down, and a nearer level is never slower than a
    farther one, so a nearer level that measured slower was disturbed). A level no point
    fell in takes the value of the nearest point by working set."""
    out: list[float] = []
    for lo, hi in bounds:
        inside = [p["achieved_gbps"] for p in points if lo < p["working_set_bytes"] <= hi]
        if not inside:
            mid = math.sqrt(max(lo, 1) * min(hi, 1 << 40))
            inside = [min(points, key=lambda p: abs(math.log(p["working_set_bytes"] / mid)))["achieved_gbps"]]
        out.append(max(inside))
    for i in range(len(out) - 2, -1, -1):
        out[i] = max(out[i], out[i + 1])
    out[0] = max(out[0], *(p["achieved_gbps"] for p in points))
    return out


def thread_points(meas: Measurements) -> list[dict[str, float]]:
    t1, tn = meas.scalar("threads.1.gemm512"), meas.scalar(f"threads.{meas.threads}.gemm512")
    if not t1 or not tn or meas.threads == 1:
        return []
    return [{"threads": meas.threads, "speedup": round(min(t1 / tn, float(meas.threads)), 4)}]


def opkind_rates(meas: Measurements, vector_peak: float) -> dict[str, float]:
    """``op_<name>_flops_per_s``: counted vector FLOPs over the call time minus the dispatch
    cost the mapper adds for that kind of op, capped at the vector peak."""
    from dnnmap.ir.classify import classify
    from dnnmap.mapping.measured import dispatch_key

    out: dict[str, float] = {}
    for p in meas.opkinds:
        if p.vector_flops <= 0:
            continue
        d = _dispatch_s(meas, dispatch_key(p.name, classify(f"aten.{p.name}").value))
        out[f"op_{p.name}_flops_per_s"] = float(f"{_rate(p.vector_flops, p.seconds, d, vector_peak):.5g}")
    return out


def op_bandwidth_tables(meas: Measurements) -> dict[str, list[dict[str, float]]]:
    """``op_bandwidth`` per swept op kind: counted bytes over the call time minus the dispatch
    cost the mapper adds for that kind of op (the whole kernel, several passes included), by
    counted bytes; unresolvable points (dispatch >= half the call) dropped."""
    from dnnmap.ir.classify import classify
    from dnnmap.mapping.measured import dispatch_key

    out: dict[str, list[dict[str, float]]] = {}
    for p in sorted(meas.op_sweep, key=lambda p: (p.name, p.bytes)):
        d = _dispatch_s(meas, dispatch_key(p.name, classify(f"aten.{p.name}").value))
        work = p.seconds - d
        if work < _RESOLVABLE * p.seconds or p.bytes <= 0:
            continue
        rows = out.setdefault(p.name, [])
        if not rows or p.bytes > rows[-1]["working_set_bytes"]:
            rows.append({"working_set_bytes": p.bytes, "achieved_gbps": float(f"{p.bytes / work / 1e9:.5g}")})
    return out


def scalars(meas: Measurements, vector_peak: float) -> dict[str, float]:
    """Dispatch per op kind (us), transcendental and op-kind rates (1/s, FLOP/s), elementwise
    thread speed-up."""
    out: dict[str, float] = opkind_rates(meas, vector_peak)
    for s in meas.scalars:
        if s.name.startswith("dispatch."):
            out[f"dispatch_{s.name.split('.', 1)[1]}_us"] = round(s.value * 1e6, 4)
        elif s.name == "fresh_page" and s.value > 0:
            out["fresh_page_us"] = round(s.value * 1e6, 4)
        elif s.name.startswith(PROBE_PREFIX):  # probe.gemm512 -> probe_gemm512_us
            out[f"probe_{s.name.removeprefix(PROBE_PREFIX)}_us"] = round(s.value * 1e6, 4)
        elif s.name.startswith("transcendental."):
            out[f"{s.name.split('.', 1)[1]}_per_s"] = float(f"{s.value:.5g}")
    t1, tn = meas.scalar("threads.1.add16MiB"), meas.scalar(f"threads.{meas.threads}.add16MiB")
    if t1 and tn and meas.threads > 1:
        out["threads_add16mib_speedup_ratio"] = round(t1 / tn, 4)
    return out
