"""Enumerations shared by every stage: dtypes, tensor roles, op classes."""

from __future__ import annotations

from enum import StrEnum


class DType(StrEnum):
    """Element types, named as PyTorch names them (``torch.float32`` -> ``float32``)."""

    FLOAT64 = "float64"
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT8_E4M3 = "float8_e4m3fn"
    FLOAT8_E5M2 = "float8_e5m2"
    INT64 = "int64"
    INT32 = "int32"
    INT16 = "int16"
    INT8 = "int8"
    UINT8 = "uint8"
    BOOL = "bool"
    COMPLEX64 = "complex64"

    @property
    def itemsize(self) -> int:
        """Bytes per element: ``DType.BFLOAT16.itemsize == 2``."""
        return _ITEMSIZE[self]

    @property
    def is_floating(self) -> bool:
        return self in _FLOATING

    @classmethod
    def parse(cls, name: str) -> DType:
        """Accept ``torch.float16``, ``float16``, ``fp16``, ``half`` ... -> ``DType.FLOAT16``."""
        key = name.lower().removeprefix("torch.")
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(sorted({*(d.value for d in cls), *_ALIASES}))
            raise ValueError(f"unknown dtype {name!r}; known: {known}") from None


_ITEMSIZE = {
    DType.FLOAT64: 8,
    DType.FLOAT32: 4,
    DType.FLOAT16: 2,
    DType.BFLOAT16: 2,
    DType.FLOAT8_E4M3: 1,
    DType.FLOAT8_E5M2: 1,
    DType.INT64: 8,
    DType.INT32: 4,
    DType.INT16: 2,
    DType.INT8: 1,
    DType.UINT8: 1,
    DType.BOOL: 1,
    DType.COMPLEX64: 8,
}
_FLOATING = {
    DType.FLOAT64,
    DType.FLOAT32,
    DType.FLOAT16,
    DType.BFLOAT16,
    DType.FLOAT8_E4M3,
    DType.FLOAT8_E5M2,
}
_ALIASES = {
    "fp64": "float64",
    "double": "float64",
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "fp8": "float8_e4m3fn",
    "long": "int64",
    "int": "int32",
}


class Role(StrEnum):
    """What a tensor is to the model."""

    INPUT = "input"  # a user input (image, token ids)
    WEIGHT = "weight"  # a parameter
    BUFFER = "buffer"  # a registered buffer (BN running stats, rotary tables)
    CONSTANT = "constant"  # a lifted constant tensor
    ACTIVATION = "activation"  # produced by an op, consumed inside the graph
    OUTPUT = "output"  # produced by an op and returned by the model


class OpClass(StrEnum):
    """What kind of work an op does; decides which cost rule family and which hardware unit."""

    MATMUL = "matmul"
    CONV = "conv"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    REDUCTION = "reduction"
    NORMALIZATION = "normalization"
    SOFTMAX = "softmax"
    EMBEDDING = "embedding"
    DATA_MOVEMENT = "data_movement"
    VIEW = "view"  # view / metadata: moves no bytes
    OTHER = "other"

    @property
    def is_tensor_core(self) -> bool:
        """GEMM-like work that runs on tensor cores / systolic arrays / PE arrays."""
        return self in (OpClass.MATMUL, OpClass.CONV, OpClass.ATTENTION)


class CapturePath(StrEnum):
    EXPORT = "export"  # torch.export.export(strict=False) under FakeTensorMode
    DISPATCH = "dispatch"  # TorchDispatchMode recorder (fallback)


class ExecutionMode(StrEnum):
    """How the model runs: decides the kernels (partition) and who issues them (schedule).

    >>> ExecutionMode.parse("Eager").strategy, ExecutionMode.CUDAGRAPH.strategy
    ('unfused', 'compiler')
    """

    EAGER = "eager"  # one kernel per ATen op, each dispatched by Python on the host
    COMPILED = "compiled"  # the compiler's fused kernels (torch.compile / Inductor), launched by its wrapper
    CUDAGRAPH = "cudagraph"  # the compiled kernels replayed from a CUDA graph: one host launch

    @property
    def strategy(self) -> str:
        """The fusion strategy whose partition this mode launches."""
        return "unfused" if self is ExecutionMode.EAGER else "compiler"

    @classmethod
    def parse(cls, name: str | ExecutionMode) -> ExecutionMode:
        if isinstance(name, ExecutionMode):
            return name
        try:
            return cls(str(name).lower())
        except ValueError:
            from dnnmap.errors import DnnmapError

            raise DnnmapError(
                f"unknown execution mode {name!r}: use one of {', '.join(m.value for m in cls)}"
            ) from None


class Tf32Mode(StrEnum):
    """Whether fp32 GEMMs / convs may run as TF32 on tensor cores (PyTorch's switches).

    ``default`` is PyTorch's own: ``torch.backends.cudnn.allow_tf32 = True`` (convolutions
    run TF32) and ``torch.backends.cuda.matmul.allow_tf32 = False`` (matmuls run fp32),
    per the PyTorch "TensorFloat-32 (TF32) on Ampere (and later) devices" note.
    """

    DEFAULT = "default"
    ON = "on"  # both
    OFF = "off"  # neither (as NeuSight's measurements ran)

    def allows(self, is_conv: bool) -> bool:
        return self is Tf32Mode.ON or (self is Tf32Mode.DEFAULT and is_conv)

    @classmethod
    def parse(cls, name: str | Tf32Mode) -> Tf32Mode:
        if isinstance(name, Tf32Mode):
            return name
        try:
            return cls(str(name).lower())
        except ValueError:
            from dnnmap.errors import DnnmapError

            raise DnnmapError(f"unknown --tf32 value {name!r}: use default, on or off") from None
