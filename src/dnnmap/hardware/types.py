"""Types shared by the hardware schema: strict base model, numeric constraints, enums.

>>> Precision.parse("BF16").bytes_per_element
2
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from dnnmap.errors import DnnmapError
from dnnmap.ir import DType

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]  # an efficiency: 0 < e <= 1
Count = Annotated[int, Field(gt=0)]
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
