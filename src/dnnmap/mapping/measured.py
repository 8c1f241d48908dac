"""The calibrated terms: what a profile's measured tables say about one subgraph.

Used by :mod:`dnnmap.mapping.engine` when the profile has a ``calibration`` section (written
by ``dnnmap calibrate``). Each function returns ``None`` when the table it needs is absent, so
the engine falls back to the theoretical term. No function here sees a model or layer name:
lookups are by GEMM shape, conv kind, working-set size and ATen op kind only.

(GEMM / conv throughput at the subgraph's (m, n, k) shape is looked up by the engine's
``_measured_tensor_rate``.)

- :func:`streaming_bandwidth`: the measured copy-sweep bandwidth at the working set, capped by
  the level that holds it; :func:`cold_streaming`: the activation reads whose producer ran more
  than a last-level cache of traffic ago (a step's inputs: a decode step's KV cache) at the
  sweep's DRAM rate instead.
- :func:`dispatch_s`: the fixed cost of each eagerly dispatched call: the measured tiny-op
  latency of the dominant op's kind, plus one view dispatch per view op folded into the
  subgraph (eager PyTorch runs views as calls of their own; a compiled kernel does not).
- :func:`vector_rate`: FLOP/s of the dominant op kind's vector work (max-pool compares,
  batch-norm, GELU ...) measured by the op-kind microbenchmark, scaled by the placement's
  thread share.
- :func:`transcendental_s`: exp / tanh / erf evaluations at their measured rate.
- :func:`streamed_gemm_tflops`: a few-row GEMM whose weight streams from DRAM (the graph's
  weights exceed the last-level cache: a decode step) at the measured cold weight-streaming
  rate of its weight layout, not the cache-warm ``gemm_shapes`` grid.
- :func:`conv_backward_tflops`: ``convolution_backward`` at the measured rate of that kernel
  (grad input + grad weight), not the forward conv's.
- :func:`fresh_pages_s`: an eager CPU op's output of 32 MiB or more is a fresh ``mmap`` from
  the OS (glibc's largest mmap threshold), so each of its 4 KiB pages is faulted in and zeroed
  on first touch, at the measured ``fresh_page_us``. Smaller outputs come fresh or recycled
  depending on the allocator's history, and are left out.
- :func:`cold_dispatch_s`: a CPU op's call when other work ran since that kind of op last ran
  (a layer's other kernels) costs more than the round-robin tiny-op latency: its code and data
  have left the caches and TLBs. The measured curve of extra cost against that gap (the op's own
  where measured, :func:`cold_curves`) is applied
  in execution order by :func:`dnnmap.mapping.engine.cold_paths`.
- imported kernel tables (``dnnmap calibrate --from-measurements``): :func:`imported_tensor_tflops`
  (scattered GEMM / bmm / conv shapes), :func:`op_kind` and :func:`op_bandwidth` (a vector
  kernel's bytes at its op kind's measured bandwidth).

>>> from dnnmap.mapping.measured import dispatch_key
>>> dispatch_key("layer_norm", "normalization"), dispatch_key("conv2d", "conv")
('layer_norm', 'conv')
"""

from __future__ import annotations

import math

from dnnmap.hardware.schema import Calibration
from dnnmap.ir import OpClass
from dnnmap.mapping.device import Device, Level
from dnnmap.mapping.workload import Work

_DISPATCH_BY_CLASS = {
    OpClass.CONV: "conv",
    OpClass.MATMUL: "matmul",
    OpClass.ATTENTION: "matmul",
    OpClass.NORMALIZATION: "normalization",
    OpClass.SOFTMAX: "softmax",
    OpClass.REDUCTION: "reduction",
    OpClass.VIEW: "view",
}
# the function an op's transcendentals evaluate (by ATen op kind); others use exp
_TRANSCENDENTAL_OF = {"tanh": "tanh", "gelu": "erf", "erf": "erf", "erfc": "erf"}


def dispatch_key(op_name: str, op_class: str) -> str:
    """Which measured tiny-op latency stands for this op: its own kind when measured
    (``layer_norm``), else its class (``conv``), else a plain elementwise call."""
    if op_name == "layer_norm":
        return "layer_norm"
    try:
        return _DISPATCH_BY_CLASS.get(OpClass(op_class), "elementwise")
    except ValueError:
        return "elementwise"


def _scalar(cal: Calibration, key: str) -> float | None:
    v = cal.scalars.get(key)
    return v if v is not None and v > 0 else None


# glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (4 * 1024 * 1024 * sizeof(long)): the dynamic mmap
# threshold never exceeds it, so a block at least this large is always mmapped afresh and
# unmapped when freed (PyTorch's CPU allocator does not cache)
MMAP_THRESHOLD_MAX = 32 << 20
PAGE_BYTES = 4096


def fresh_pages_s(work: Work, device: Device) -> float:
    """Seconds of first-touch page faults on the subgraph's newly allocated outputs of at least
    :data:`MMAP_THRESHOLD_MAX` bytes (CPU profiles with a measured ``fresh_page_us``; in-place
    ops and views allocate nothing).

    >>> from dnnmap.fusion.partition import Parallelism
    >>> w = Work(0, "sqrt", OpClass.ELEMENTWISE, 0, 1, 0, 64 << 20, 0, 64 << 20, 0, Parallelism(), False,
    ...          op_name="sqrt", writes=(("y", 64 << 20), ("s", 1 << 20)))
    >>> (64 << 20) // PAGE_BYTES   # pages of the one output above the threshold
    16384
    """
    from dnnmap.hardware.schema import DeviceClass

    cal = device.calibration
    us = _scalar(cal, "fresh_page_us") if cal is not None else None
    if us is None or device.device_class is not DeviceClass.CPU or work.op_class is OpClass.VIEW or work.inplace:
        return 0.0
    pages = sum(-(-b // PAGE_BYTES) for _, b in work.writes if b >= MMAP_THRESHOLD_MAX)
    return pages * us * 1e-6


def dispatch_s(work: Work, device: Device) -> float | None:
    """Seconds of fixed per-call cost of the subgraph's eager calls (None: uncalibrated).

    The dominant op's measured tiny-op latency (through its ``torch.nn`` module when it is a
    leaf module's whole forward, e.g. ``nn.BatchNorm2d``), one view dispatch per folded view,
    and one module entry (``nn.Identity`` call) per further module level entered."""
    cal = device.calibration
    if cal is None:
        return None
    key = dispatch_key(work.op_name, work.op_class.value)
    module = _scalar(cal, f"dispatch_module_{key}_us") if work.leaf_module else None
    main = module if module is not None else _scalar(cal, f"dispatch_{key}_us")
    if main is None:
        return None
    views = max(0, work.dispatches - 1)
    entries = max(0, work.module_entries - (1 if module is not None else 0))  # the leaf's own entry is in ``module``
    extra = views * (_scalar(cal, "dispatch_view_us") or 0.0) + entries * (_scalar(cal, "dispatch_module_call_us") or 0.0)
    return (main + extra) * 1e-6


def cold_curves(device: Device) -> dict[str, list[tuple[float, float]]]:
    """(gap s, extra s) points of what a small op's call costs beyond the tiny-op latency when
    ``gap`` of other work ran since that kind of op last ran (see
    :func:`dnnmap.calibrate.microbench.cold_dispatch_costs`), by ATen op name
    (``dispatch_cold_<op>_gap_<us>_us``) and, under ``""``, the generic curve every other op
    takes (``dispatch_cold_gap_<us>_us``); {} when not measured.

    >>> c = curves_of({"dispatch_cold_gap_100_us": 2.0, "dispatch_cold_cat_gap_100_us": 9.0,
    ...                "dispatch_cold_cat_gap_1000_us": 30.0, "dispatch_view_us": 1.9})
    >>> {op: [(round(g * 1e6), round(v * 1e6)) for g, v in pts] for op, pts in c.items()}   # us
    {'': [(100, 2)], 'cat': [(100, 9), (1000, 30)]}
    """
    cal = device.calibration
    if cal is None or device.device_class.value != "cpu":
        return {}
    return curves_of(cal.scalars)


def curves_of(scalars: dict[str, float]) -> dict[str, list[tuple[float, float]]]:
    """The cold curves in a profile's scalars (:func:`cold_curves`)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for k, v in scalars.items():
        if not (k.startswith("dispatch_cold_") and k.endswith("_us")):
            continue
        op, sep, gap = k[len("dispatch_cold_"):-len("_us")].rpartition("gap_")
        if sep and gap.isdigit() and (op == "" or op.endswith("_")):
            out.setdefault(op[:-1], []).append((int(gap) / 1e6, v / 1e6))
    return {op: sorted(pts) for op, pts in out.items()}


def cold_dispatch_s(curve: list[tuple[float, float]], gap_s: float) -> float:
    """Extra seconds of a call after ``gap_s`` (inf: the kind never ran before): log-linear
    between measured gaps, the largest gap's value beyond it, and linear to 0 below the
    smallest (back-to-back calls are the tiny-op latency itself).

    >>> curve = [(1e-4, 6e-6), (1e-3, 12e-6), (1e-2, 48e-6)]
    >>> [round(cold_dispatch_s(curve, g) * 1e6, 3) for g in (5e-5, 1e-3, 10 ** -2.5, 1.0, float("inf"))]
    [3.0, 12.0, 30.0, 48.0, 48.0]
    """
    from dnnmap.hardware.interp import interpolate

    if not curve or gap_s <= 0:
        return 0.0
    (g0, v0), (_, vmax) = curve[0], curve[-1]
    if gap_s < g0:
        return v0 * gap_s / g0
    return vmax if not math.isfinite(gap_s) else interpolate(curve, gap_s)


def vector_rate(work: Work, device: Device, thread_share: float) -> float | None:
    """Measured FLOP/s of this op kind's vector work (``op_<name>_flops_per_s``), scaled by
    the share of the threads the placement uses (the microbenchmark used all of them)."""
    cal = device.calibration
    if cal is None or not work.op_name:
        return None
    from dnnmap.ir.classify import inplace_base

    name = inplace_base(work.op_name) or work.op_name  # ``hardtanh_`` runs ``hardtanh``'s kernel in place
    rate = _scalar(cal, f"op_{name}_flops_per_s")
    return None if rate is None else min(rate * max(thread_share, 1e-3), device.vector_peak)


def transcendental_s(work: Work, device: Device, thread_share: float) -> float | None:
    """Seconds for the subgraph's transcendental evaluations at the measured rate of the
    function its op evaluates (tanh, erf, else exp), scaled by the thread share."""
    cal = device.calibration
    if cal is None or work.transcendentals == 0:
        return None
    fn = _TRANSCENDENTAL_OF.get(work.op_name, "exp")
    rate = _scalar(cal, f"{fn}_per_s") or _scalar(cal, "exp_per_s")
    return None if rate is None else work.transcendentals / (rate * max(thread_share, 1e-3))


def streaming_bandwidth(nbytes: int, device: Device) -> tuple[str, float] | None:
    """(level, bytes/s) for a kernel streaming ``nbytes``: the measured copy-sweep bandwidth at
    that working set, capped by the bandwidth of the smallest level that holds it (no sweep
    point between two sizes may beat the level serving the data)."""
    from dnnmap.hardware.interp import bandwidth_at
    from dnnmap.hardware.schema import BandwidthKind

    cal = device.calibration
    if cal is None or not cal.bandwidth or nbytes <= 0:
        return None
    pts = cal.bandwidth.get(BandwidthKind.COPY) or next(iter(cal.bandwidth.values()))
    level = next((lv for lv in device.levels if lv.capacity_bytes * lv.instances >= nbytes), device.dram)
    return level.name, min(bandwidth_at(pts, nbytes) * 1e9, level.bandwidth)


def last_cache(device: Device) -> Level | None:
    """A calibrated CPU's last-level cache (the level before DRAM), whose residency decides which
    activation reads stream from DRAM (see :func:`cold_streaming`); None otherwise."""
    cal = device.calibration
    if cal is None or not cal.bandwidth or device.device_class.value != "cpu" or len(device.levels) < 2:
        return None
    return device.levels[-2]


def cold_streaming(work: Work, nbytes: int, found: tuple[str, float], hit_bytes: int,
                   device: Device) -> tuple[str, float]:
    """(level, bytes/s) of a kernel streaming ``nbytes`` at the working-set rate ``found``, when
    the activation reads not found in the last-level cache (``hit_bytes`` were: their producer
    ran within the cache's capacity of traffic, :func:`dnnmap.mapping.residency.l2_hits`; a
    step's inputs, such as a decode step's KV cache, never are) come from DRAM at the copy
    sweep's rate for a working set 4x the cache. Time adds up: one core streams both."""
    cold = min(max(work.activation_read_bytes - hit_bytes, 0), nbytes)
    llc = last_cache(device)
    far = streaming_bandwidth(4 * llc.capacity_bytes * llc.instances, device) if llc is not None else None
    if not cold or far is None:
        return found
    dram_bw = far[1]
    level, bw = found
    if dram_bw >= bw:
        return found
    seconds = cold / dram_bw + (nbytes - cold) / bw
    return (device.dram.name if 2 * cold >= nbytes else level), nbytes / seconds


def weight_layout(work: Work) -> str:
    """How the GEMM reads its weight: "nt" for ``aten.linear`` (``nn.Linear``'s [out, in]
    weight used as x @ W.T), "nn" for ``mm`` / ``addmm`` with a [in, out] weight (GPT-2's
    ``Conv1D``: ``addmm(bias, x, W)``)."""
    return "nt" if work.op_name == "linear" else "nn"


def streamed_gemm_tflops(work: Work, device: Device, weights_in_dram: bool) -> float | None:
    """Measured TFLOPS of a plain GEMM reading a weight that streams from DRAM, or None.

    Applies when the graph's weights live in DRAM (``weights_in_dram``: they exceed the
    last-level cache, so each layer's weight arrives cold, once per pass) and the GEMM has no
    more rows than the ``gemm_stream`` table measured (a decode step's few tokens); the
    table's layout follows :func:`weight_layout`.

    >>> from dnnmap.fusion.partition import Parallelism
    >>> w = Work(0, "fc", OpClass.MATMUL, 2 * 1 * 8 * 4, 0, 0, 16, 128, 32, 0,
    ...          Parallelism(gemm_m=1, gemm_n=8, gemm_k=4, gemm_batch=1), True, op_name="linear")
    >>> weight_layout(w)
    'nt'
    """
    from dnnmap.hardware.interp import gemm_stream_tflops

    cal = device.calibration
    p = work.parallelism
    if (cal is None or not cal.gemm_stream or not weights_in_dram or work.op_class is not OpClass.MATMUL
            or work.weight_bytes == 0 or p.gemm_batch > 1 or p.gemm_m < 1):
        return None
    return gemm_stream_tflops(cal, weight_layout(work), device.tensor_precision, p.gemm_m, p.gemm_n, p.gemm_k)


def conv_backward_tflops(work: Work, device: Device) -> float | None:
    """Measured TFLOPS of a ``convolution_backward`` subgraph at its forward conv's shape
    (depthwise / grouped, pointwise or dense table, as the forward lookup), or None."""
    from dnnmap.hardware.interp import conv_backward_shape_tflops
    from dnnmap.hardware.schema import ConvKind

    cal = device.calibration
    if cal is None or not cal.conv_backward_shapes or work.op_name != "convolution_backward":
        return None
    p, prec = work.parallelism, device.engine(True).precision
    if p.depthwise:
        return conv_backward_shape_tflops(cal, ConvKind.DEPTHWISE, prec, p.gemm_m, p.gemm_batch, p.gemm_k)
    if p.gemm_batch > 1:
        return conv_backward_shape_tflops(cal, ConvKind.DEPTHWISE, prec, p.gemm_m, p.gemm_n * p.gemm_batch, p.gemm_k)
    kind = ConvKind.POINTWISE if work.pointwise else ConvKind.DENSE
    tf = conv_backward_shape_tflops(cal, kind, prec, p.gemm_m, p.gemm_n, p.gemm_k)
    if tf is None and kind is ConvKind.POINTWISE:  # a 1x1 conv is a GEMM of the same shape
        tf = conv_backward_shape_tflops(cal, ConvKind.DENSE, prec, p.gemm_m, p.gemm_n, p.gemm_k)
    return tf


# --- imported kernel tables (``dnnmap calibrate --from-measurements``) ---------------------------

# ATen spellings of the op kinds the tables name (in-place ``add_`` is handled by stripping "_")
_OP_KIND_ALIASES = {"_softmax": "softmax", "native_layer_norm": "layer_norm", "clamp_min": "relu"}


def cold_key(op_name: str) -> str:
    """The cold curve standing for an op: the op a training capture records below autograd
    names the kernel the inference op runs (``native_layer_norm`` -> ``layer_norm``).

    >>> cold_key("native_layer_norm"), cold_key("cat")
    ('layer_norm', 'cat')
    """
    return _OP_KIND_ALIASES.get(op_name, op_name)


def op_kind(work: Work, cal: Calibration | None) -> str | None:
    """The ``op_bandwidth`` table standing for a vector kernel: its dominant op's kind, the
    ``_scalar`` variant when it reads one tensor and no weights (``x * 0.5``), else the
    tensor-tensor one. None for kernels with GEMM work or kinds no table names.

    >>> from dnnmap.fusion.partition import Parallelism
    >>> w = Work(0, "mul", OpClass.ELEMENTWISE, 0, 8, 0, 64, 0, 64, 0, Parallelism(), False,
    ...          op_name="mul", reads=(("x", 64),))
    >>> class C: op_bandwidth = {"mul": (), "mul_scalar": ()}
    >>> op_kind(w, C())
    'mul_scalar'
    """
    if cal is None or not cal.op_bandwidth or work.tensor_flops or not work.op_name:
        return None
    name = work.op_name.rstrip("_") if work.op_name not in _OP_KIND_ALIASES else work.op_name
    name = _OP_KIND_ALIASES.get(name, name)
    unary = len(work.reads) <= 1 and work.weight_bytes == 0
    for key in ((f"{name}_scalar", name) if unary else (name,)):
        if key in cal.op_bandwidth:
            return key
    return None


def op_bandwidth(work: Work, nbytes: int, device: Device) -> tuple[str, float] | None:
    """(level, bytes/s) of a vector kernel moving ``nbytes`` at the measured bandwidth of its op
    kind (the measured latency covers the whole kernel), capped by the level holding the bytes."""
    from dnnmap.hardware.interp import op_bandwidth_gbps

    cal = device.calibration
    key = op_kind(work, cal)
    if key is None or cal is None or nbytes <= 0:
        return None
    gbps = op_bandwidth_gbps(cal, key, nbytes)
    if gbps is None:
        return None
    level = next((lv for lv in device.levels if lv.capacity_bytes * lv.instances >= nbytes), device.dram)
    return level.name, min(gbps * 1e9, level.bandwidth)


def imported_tensor_tflops(work: Work, device: Device) -> float | None:
    """Measured TFLOPS of a GEMM / conv subgraph from the imported scattered tables, or None.

    Plain GEMMs (and batched ones when no ``bmm`` table exists) use ``gemm_points`` with the
    batch folded into m; batched GEMMs (``gemm_batch > 1``) use ``bmm_points`` keyed (b, m, n, k);
    dense / pointwise convs ``conv_points`` at the implicit-GEMM shape with the convolution
    engine's precision. Fused attention (SDPA / flash) is not a bmm: no lookup."""
    from dnnmap.hardware.interp import conv_point_tflops, gemm_point_tflops
    from dnnmap.hardware.schema import ConvKind

    cal = device.calibration
    if cal is None or not work.gemm_like or not (cal.gemm_points or cal.bmm_points or cal.conv_points):
        return None
    p = work.parallelism
    if work.op_class is OpClass.CONV:
        kind = ConvKind.POINTWISE if work.pointwise else ConvKind.DENSE
        prec = device.engine(True).precision
        tf = conv_point_tflops(cal, kind, prec, p.gemm_m, p.gemm_n * p.gemm_batch, p.gemm_k)
        if tf is None and kind is ConvKind.POINTWISE:  # a 1x1 conv is a GEMM of the same shape
            tf = conv_point_tflops(cal, ConvKind.DENSE, prec, p.gemm_m, p.gemm_n * p.gemm_batch, p.gemm_k)
        return tf
    if work.op_class is not OpClass.MATMUL:
        return None
    return gemm_point_tflops(cal, device.tensor_precision, p.gemm_batch, p.gemm_m, p.gemm_n, p.gemm_k)
