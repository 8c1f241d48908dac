"""Hardware profiles: validated, sourced data about devices (one YAML file per device).

>>> from dnnmap.hardware import load_profile, Precision
>>> p = load_profile("a100-sxm4-80gb")
>>> p.device_class.value, p.gpu.sms, p.peak(Precision.BF16), p.dram.bandwidth_gbps
('gpu', 108, 312.0, 2039.0)
"""

from dnnmap.hardware.loader import (
    ENV_VAR,
    SHIPPED_DIR,
    list_profiles,
    load_file,
    load_profile,
    profile_names,
    search_dirs,
)
from dnnmap.hardware.schema import (
    BandwidthKind,
    BandwidthPoint,
    Calibration,
    CalibrationMeta,
    Clocks,
    ConvKind,
    CoreGroup,
    CpuCompute,
    DeviceClass,
    GpuCompute,
    HardwareProfile,
    KpuCompute,
    MemoryLevel,
    MemoryScope,
    OverlapPolicy,
    Power,
    Precision,
    Provenance,
    ShapePoint,
    ThreadPoint,
    ThroughputPoint,
    TpuCompute,
)

__all__ = [
    "ENV_VAR",
    "SHIPPED_DIR",
    "BandwidthKind",
    "BandwidthPoint",
    "Calibration",
    "CalibrationMeta",
    "Clocks",
    "ConvKind",
    "CoreGroup",
    "CpuCompute",
    "DeviceClass",
    "GpuCompute",
    "HardwareProfile",
    "KpuCompute",
    "MemoryLevel",
    "MemoryScope",
    "OverlapPolicy",
    "Power",
    "Precision",
    "Provenance",
    "ShapePoint",
    "ThreadPoint",
    "ThroughputPoint",
    "TpuCompute",
    "list_profiles",
    "load_file",
    "load_profile",
    "profile_names",
    "search_dirs",
]
