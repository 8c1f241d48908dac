"""Types shared by the hardware schema: strict base model, numeric constraints, enums.

>>> Precision.parse("BF16").bytes_per_element
2
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from dnnmap.errors import DnnmapError
from dnnmap.ir import DType


def _not_bool(v: object) -> object:
    """YAML reads ``true`` / ``yes`` / ``on`` as booleans, which pydantic would take as 1."""
    if isinstance(v, bool):
        raise ValueError(f"expected a number, not the boolean {str(v).lower()}")
    return v


# Numbers are strict (a number, never a boolean or a string) and bounded: no figure of a real
# device comes near 1e15 in the units the keys name (TFLOP/s, GB/s, pJ, MHz, us, bytes of one
# level are Count), so a 1e30 is a typo or an attack, not a device.
MAX_FIGURE = 1e15
MAX_COUNT = 2**53  # bytes up to 9 PB, exactly representable as a float
MAX_TFLOPS = 1e6  # one chip at 1 EFLOP/s: 20x the largest chip today; for peak_* fields
Positive = Annotated[float, Strict(), Field(gt=0, le=MAX_FIGURE, allow_inf_nan=False)]
NonNegative = Annotated[float, Strict(), Field(ge=0, le=MAX_FIGURE, allow_inf_nan=False)]
Fraction = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]  # an efficiency: 0 < e <= 1
TFlops = Annotated[float, Strict(), Field(gt=0, le=MAX_TFLOPS, allow_inf_nan=False)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=MAX_COUNT)]
ProfileName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class DeviceClass(StrEnum):
    CPU = "cpu"
    GPU = "gpu"
    TPU = "tpu"
    KPU = "kpu"


class Provenance(StrEnum):
    """Where a profile's numbers came from."""

    THEORETICAL = "theoretical"  # datasheets, whitepapers, papers, estimates
    CALIBRATED = "calibrated"  # measured on the device by ``dnnmap calibrate``


class Precision(StrEnum):
    """Arithmetic precisions a device may have a peak for (``--precision``).

    ``tf32`` is fp32 storage with tf32 tensor-core math; ``fp8`` is e4m3/e5m2.
    """

    FP64 = "fp64"
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"

    @property
    def bytes_per_element(self) -> int:
        """Storage size of one element: ``Precision.TF32.bytes_per_element == 4``."""
        return _PRECISION_BYTES[self]

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        """``"BF16"`` -> ``Precision.BF16``; an unknown name raises :class:`DnnmapError`."""
        if isinstance(value, Precision):
            return value
        try:
            return cls(value.lower())
        except ValueError:
            known = ", ".join(p.value for p in cls)
            raise DnnmapError(f"unknown precision {value!r}; choose one of {known}") from None

    @classmethod
    def from_dtype(cls, dtype: DType) -> Precision | None:
        """``DType.BFLOAT16`` -> ``Precision.BF16``; integer/bool types other than int8 -> None."""
        return _DTYPE_PRECISION.get(dtype)


_PRECISION_BYTES = {
    Precision.FP64: 8,
    Precision.FP32: 4,
    Precision.TF32: 4,
    Precision.BF16: 2,
    Precision.FP16: 2,
    Precision.FP8: 1,
    Precision.INT8: 1,
}
_DTYPE_PRECISION = {
    DType.FLOAT64: Precision.FP64,
    DType.FLOAT32: Precision.FP32,
    DType.BFLOAT16: Precision.BF16,
    DType.FLOAT16: Precision.FP16,
    DType.FLOAT8_E4M3: Precision.FP8,
    DType.FLOAT8_E5M2: Precision.FP8,
    DType.INT8: Precision.INT8,
    DType.UINT8: Precision.INT8,
}


class OverlapPolicy(StrEnum):
    """How a device combines compute time and memory time of one kernel."""

    OVERLAP = "overlap"  # latency = max(compute, memory): loads are pipelined behind math
    SERIAL = "serial"  # latency = compute + memory: no overlap (e.g. simple in-order DMA)


class MemoryScope(StrEnum):
    """Who shares one instance of a memory level."""

    CORE = "core"  # one per CPU core (L1, L2)
    SM = "sm"  # one per GPU SM (L1 / shared memory)
    TILE = "tile"  # one per KPU tile (scratchpad)
    TENSOR_CORE = "tensor_core"  # one per TPU TensorCore (VMEM / CMEM)
    CHIP = "chip"  # shared by the whole chip (L3, GPU L2, HBM, DRAM)
