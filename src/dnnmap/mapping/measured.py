"""The calibrated terms: what a profile's measured tables say about one subgraph.

Used by :mod:`dnnmap.mapping.engine` when the profile has a ``calibration`` section (written
by ``dnnmap calibrate``). Each function returns ``None`` when the table it needs is absent, so
the engine falls back to the theoretical term. No function here sees a model or layer name:
lookups are by GEMM shape, conv kind, working-set size and ATen op kind only.

(GEMM / conv throughput at the subgraph's (m, n, k) shape is looked up by the engine's
``_measured_tensor_rate``.)

- :func:`streaming_bandwidth`: the measured copy-sweep bandwidth at the working set, capped by
  the level that holds it.
- :func:`dispatch_s`: the fixed cost of each eagerly dispatched call: the measured tiny-op
  latency of the dominant op's kind, plus one view dispatch per view op folded into the
  subgraph (eager PyTorch runs views as calls of their own; a compiled kernel does not).
- :func:`vector_rate`: FLOP/s of the dominant op kind's vector work (max-pool compares,
  batch-norm, GELU ...) measured by the op-kind microbenchmark, scaled by the placement's
  thread share.
- :func:`transcendental_s`: exp / tanh / erf evaluations at their measured rate.
- imported kernel tables (``dnnmap calibrate --from-measurements``): :func:`imported_tensor_tflops`
  (scattered GEMM / bmm / conv shapes), :func:`op_kind` and :func:`op_bandwidth` (a vector
  kernel's bytes at its op kind's measured bandwidth).

>>> from dnnmap.mapping.measured import dispatch_key
>>> dispatch_key("layer_norm", "normalization"), dispatch_key("conv2d", "conv")
('layer_norm', 'conv')
"""

from __future__ import annotations

from dnnmap.hardware.schema import Calibration
from dnnmap.ir import OpClass
from dnnmap.mapping.device import Device
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


def vector_rate(work: Work, device: Device, thread_share: float) -> float | None:
    """Measured FLOP/s of this op kind's vector work (``op_<name>_flops_per_s``), scaled by
    the share of the threads the placement uses (the microbenchmark used all of them)."""
    cal = device.calibration
    if cal is None or not work.op_name:
        return None
    rate = _scalar(cal, f"op_{work.op_name}_flops_per_s")
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


# --- imported kernel tables (``dnnmap calibrate --from-measurements``) ---------------------------

# ATen spellings of the op kinds the tables name (in-place ``add_`` is handled by stripping "_")
_OP_KIND_ALIASES = {"_softmax": "softmax", "native_layer_norm": "layer_norm", "clamp_min": "relu"}


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
