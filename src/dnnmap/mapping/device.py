"""A hardware profile resolved for one precision: the numbers the latency engine uses.

This is the one place that decides which figure feeds each term:

- **peaks**: the matrix-engine peak at the requested precision, falling back along a chain
  when the device lacks it (tf32 -> fp32, int8 -> fp8 -> fp16 -> bf16 -> fp32 ...), with a
  note saying so. On a GPU, fp32 GEMMs (without tf32) run on the CUDA cores (vector peak), never on
  tensor cores.
- **memory**: each level's bandwidth in bytes/s (sustained where the profile gives an
  efficiency), capacity, energy per byte; which levels keep data between kernels.
- **clocks**: peaks are quoted at the boost clock; a profile's ``clocks.sustained_mhz`` (the
  clock a power- or thermal-limited part holds under load) scales every compute peak.
- **TF32**: at fp32, GEMMs and convolutions run as TF32 on tensor cores when the ``tf32``
  mode allows it for that op (PyTorch's default: convolutions yes, matmuls no) and the
  device's matrix cores run TF32; otherwise fp32 GEMMs run on the CUDA cores.
- **overhead**: the launch / dispatch cost per kernel; on GPUs the host's cost per eager
  ATen op and the device's gap between back-to-back kernels (see ``mapping/schedule.py``).
- **calibration**: when the profile carries measured tables, the measured launch overhead
  replaces the datasheet one here, and :mod:`dnnmap.mapping.engine` uses the measured
  GEMM / conv throughput and bandwidth tables for the same terms.

>>> from dnnmap.hardware.schema import EXAMPLE, HardwareProfile, Precision
>>> d = Device.of(HardwareProfile.model_validate(EXAMPLE), Precision.BF16)
>>> d.tensor_precision.value, d.tensor_peak / 1e12, d.notes[0][:34]
('fp32', 0.1, 'no bf16 peak on toy-cpu: matrix wo')
"""

from __future__ import annotations

from dataclasses import dataclass

from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import (
    Calibration,
    DeviceClass,
    GpuCompute,
    HardwareProfile,
    MemoryScope,
    Precision,
    Provenance,
)
from dnnmap.ir import Tf32Mode

P = Precision
_TENSOR_CHAIN: dict[Precision, tuple[Precision, ...]] = {
    P.FP64: (P.FP64, P.FP32),
    P.FP32: (P.FP32,),
    P.TF32: (P.TF32, P.FP32),
    P.BF16: (P.BF16, P.FP16, P.FP32),
    P.FP16: (P.FP16, P.BF16, P.FP32),
    P.FP8: (P.FP8, P.FP16, P.BF16, P.FP32),
    P.INT8: (P.INT8, P.FP8, P.FP16, P.BF16, P.FP32),
}
_VECTOR_CHAIN: dict[Precision, tuple[Precision, ...]] = {
    P.FP64: (P.FP64, P.FP32),
    P.FP32: (P.FP32,),
    P.TF32: (P.FP32,),  # tf32 is a matrix-engine mode; vector work stays fp32
    P.BF16: (P.BF16, P.FP16, P.FP32),
    P.FP16: (P.FP16, P.BF16, P.FP32),
    P.FP8: (P.FP16, P.BF16, P.FP32),
    P.INT8: (P.INT8, P.FP16, P.BF16, P.FP32),
}
# Levels whose contents survive from one kernel to the next, per device class (main memory
# always does). CPUs keep an op's output in the caches for the next op (the working set
# decides the level). GPU L2, TPU VMEM and KPU scratchpads are treated as staging for the
# running kernel only: between kernels the data is in HBM / DRAM. (Conservative: a GPU's L2
# may still hold a small activation, but for the batch-1 kernels where that would matter the
# launch overhead dominates, and the assumption keeps throughput monotone in batch.)
_PERSISTENT_SCOPES: dict[DeviceClass, tuple[MemoryScope, ...]] = {
    DeviceClass.GPU: (),
    DeviceClass.CPU: (MemoryScope.CORE, MemoryScope.CHIP),
    DeviceClass.TPU: (),
    DeviceClass.KPU: (),
}
_GPU_CUDA_CORE_PRECISIONS = (P.FP32,)  # fp64 peaks in GPU profiles are the FP64 tensor-core figures


@dataclass(frozen=True, slots=True)
class MatrixEngine:
    """Which unit runs a GEMM-like op at this precision, and how fast at the sustained clock."""

    precision: Precision  # whose peak it runs at (tf32 for an fp32 conv under PyTorch's default)
    peak: float  # FLOP/s
    uses_tensor_cores: bool


@dataclass(frozen=True, slots=True)
class Level:
    """One memory level in SI units."""

    index: int  # position in the profile's hierarchy (0 = nearest)
    name: str
    scope: MemoryScope
    instances: int
    capacity_bytes: int  # per instance
    bandwidth: float  # bytes/s, aggregate over instances, sustained where known
    nominal_bandwidth: float  # bytes/s, the datasheet figure
    pj_per_byte: float
    persistent: bool  # keeps data between kernels

    def capacity_for(self, units_used: int, units_total: int) -> int:
        """Bytes this level offers to a kernel running on ``units_used`` of ``units_total`` units."""
        if self.scope is MemoryScope.CHIP or self.instances == 1:
            return self.capacity_bytes * self.instances
        share = max(1, round(self.instances * units_used / units_total))
        return self.capacity_bytes * min(self.instances, share)


@dataclass(frozen=True, slots=True)
class Device:
    """A profile seen at one precision (see the module docstring)."""

    profile: HardwareProfile
    precision: Precision  # what was asked for (decides bytes per element)
    tensor_precision: Precision  # whose peak the matrix engine runs at
    vector_precision: Precision
    tensor_peak: float  # FLOP/s; on a GPU at fp32 this is the CUDA-core peak
    vector_peak: float  # FLOP/s
    uses_tensor_cores: bool  # GPU only: False at fp32 or without tensor cores
    levels: tuple[Level, ...]
    launch_overhead_s: float  # host cost of one compiled kernel launch (CPU: per-op dispatch)
    pj_per_flop: float
    idle_w: float
    tdp_w: float
    calibration: Calibration | None
    notes: tuple[str, ...]
    conv: MatrixEngine | None = None  # convolutions, when they run differently (TF32 default)
    eager_dispatch_s: float = 0.0  # host time per eager ATen op (GPU two-timeline schedule)
    kernel_gap_s: float = 0.0  # device time between back-to-back kernels (GPU)
    clock_ratio: float = 1.0  # sustained / boost clock applied to the peaks

    def engine(self, is_conv: bool) -> MatrixEngine:
        """The matrix engine a GEMM (``is_conv=False``) or a convolution runs on."""
        if is_conv and self.conv is not None:
            return self.conv
        return MatrixEngine(self.tensor_precision, self.tensor_peak, self.uses_tensor_cores)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def device_class(self) -> DeviceClass:
        return self.profile.device_class

    @property
    def provenance(self) -> Provenance:
        return Provenance.CALIBRATED if self.calibration is not None else Provenance.THEORETICAL

    @property
    def dram(self) -> Level:
        return self.levels[-1]

    @property
    def peak(self) -> float:
        """The largest FLOP/s any unit of the device reaches at this precision (TF32 convs included)."""
        return max(self.tensor_peak, self.vector_peak, self.conv.peak if self.conv is not None else 0.0)

    @classmethod
    def of(cls, profile: HardwareProfile, precision: Precision | str, tf32: Tf32Mode | str = Tf32Mode.DEFAULT) -> Device:
        precision = Precision.parse(precision)
        tf32 = Tf32Mode.parse(tf32)
        notes: list[str] = []
        clock = profile.clocks.sustained_ratio
        matmul = _matrix_engine(profile, precision, tf32.allows(is_conv=False), notes, "GEMMs")
        conv = _matrix_engine(profile, precision, tf32.allows(is_conv=True), notes, "convolutions")
        t_prec, t_peak, uses_tc = matmul.precision, matmul.peak, matmul.uses_tensor_cores
        v_prec, v_peak = _resolve(profile, precision, _VECTOR_CHAIN, profile.vector_peak_tflops, "vector", notes)
        if clock < 1.0:
            notes.append(
                f"compute at the sustained {profile.clocks.sustained_mhz:.0f} MHz under load "
                f"(boost {profile.clocks.boost_mhz:.0f} MHz): peaks x {clock:.2f}"
            )
        t_peak, v_peak = t_peak * clock, v_peak * clock
        conv = MatrixEngine(conv.precision, conv.peak * clock, conv.uses_tensor_cores)
        energy = next((profile.energy_pj_per_flop[p] for p in _TENSOR_CHAIN[precision] if p in profile.energy_pj_per_flop), None)
        if energy is None:
            energy = max(profile.energy_pj_per_flop.values())
            notes.append(f"no energy per {precision.value} FLOP: using the largest given ({energy} pJ)")
        cal = profile.calibration
        if cal is not None:
            notes.append(cal.describe())
        measured_dispatch = cal.dispatch_us if cal is not None and cal.dispatch_us else None
        launch = (measured_dispatch or profile.kernel_launch_us) * 1e-6
        eager = measured_dispatch or profile.eager_dispatch_us or profile.kernel_launch_us
        return cls(
            profile=profile, precision=precision, tensor_precision=t_prec, vector_precision=v_prec,
            tensor_peak=t_peak, vector_peak=v_peak, uses_tensor_cores=uses_tc,
            levels=_levels(profile), launch_overhead_s=launch, pj_per_flop=energy,
            idle_w=profile.power.idle_w, tdp_w=profile.power.tdp_w, calibration=cal, notes=tuple(notes),
            conv=None if conv == MatrixEngine(t_prec, t_peak, uses_tc) else conv,
            eager_dispatch_s=eager * 1e-6, kernel_gap_s=(profile.kernel_gap_us or 0.0) * 1e-6,
            clock_ratio=clock,
        )

    def with_host_dispatch(self, seconds: float) -> Device:
        """The same device driven by a host whose eager per-op cost is ``seconds``."""
        from dataclasses import replace

        return replace(self, eager_dispatch_s=seconds)


def _runs_on_matrix_cores(gpu: GpuCompute, precision: Precision) -> bool:
    """Profile data (``gpu.matrix_precisions``) when given; else the legacy rule: every
    precision but fp32 runs on the tensor cores of a GPU that has them."""
    if gpu.matrix_precisions:
        return precision in gpu.matrix_precisions
    return gpu.tensor_cores_per_sm > 0 and precision not in _GPU_CUDA_CORE_PRECISIONS


def _matrix_engine(
    profile: HardwareProfile, precision: Precision, tf32: bool, notes: list[str], what: str
) -> MatrixEngine:
    """The unit and peak (at boost) for GEMM-like work of one kind at ``precision``."""
    if precision is P.FP32 and tf32 and P.TF32 in profile.peak_tflops and (
        profile.gpu is None or _runs_on_matrix_cores(profile.gpu, P.TF32)
    ):
        notes.append(f"fp32 {what} run as TF32 on the matrix cores (PyTorch default for convolutions; --tf32 decides)")
        return MatrixEngine(P.TF32, profile.peak_tflops[P.TF32] * 1e12, profile.gpu is not None)
    scratch: list[str] = []
    t_prec, t_peak = _resolve(profile, precision, _TENSOR_CHAIN, profile.peak_tflops, "matrix", scratch)
    if what == "GEMMs":
        notes.extend(scratch)
    if profile.gpu is None:
        return MatrixEngine(t_prec, t_peak, True)
    if _runs_on_matrix_cores(profile.gpu, t_prec):
        return MatrixEngine(t_prec, t_peak, True)
    fp = profile.vector_peak(t_prec) or profile.vector_peak(P.FP32) or t_peak / 1e12
    if what == "GEMMs":
        notes.append(f"{t_prec.value} GEMMs run on CUDA cores ({fp:.3g} TFLOPS at boost), not tensor cores")
    return MatrixEngine(t_prec, fp * 1e12, False)


def _resolve(
    profile: HardwareProfile,
    precision: Precision,
    chains: dict[Precision, tuple[Precision, ...]],
    table: dict[Precision, float],
    what: str,
    notes: list[str],
) -> tuple[Precision, float]:
    """First precision of the chain the device has a ``what`` peak for, in FLOP/s."""
    for p in chains[precision]:
        if p in table:
            if p is not precision and what == "matrix":  # vector work at a wider type is normal
                notes.append(f"no {precision.value} peak on {profile.name}: {what} work runs at the {p.value} peak")
            return p, table[p] * 1e12
    known = ", ".join(sorted(x.value for x in table))
    raise DnnmapError(f"{profile.name} has no {what} peak usable for {precision.value} (it has: {known})")


def _levels(profile: HardwareProfile) -> tuple[Level, ...]:
    keep = _PERSISTENT_SCOPES[profile.device_class]
    last = len(profile.memory) - 1
    return tuple(
        Level(
            index=i, name=m.name, scope=m.scope, instances=m.instances, capacity_bytes=m.capacity_bytes,
            bandwidth=m.sustained_gbps * 1e9, nominal_bandwidth=m.bandwidth_gbps * 1e9,
            pj_per_byte=m.energy_pj_per_byte, persistent=i == last or m.scope in keep,
        )
        for i, m in enumerate(profile.memory)
    )
