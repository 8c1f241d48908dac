"""The hardware profile schema: one strict, frozen pydantic model per YAML file.

Units are in the key names: ``_tflops`` (10^12 FLOP/s, or 10^12 op/s for int8), ``_gbps``
(10^9 bytes/s, decimal as datasheets quote it), ``_bytes``, ``_pj``, ``_mhz``, ``_us``, ``_w``.
Peaks are dense: never the with-sparsity figure. Every number names its source in the
top-level ``sources`` mapping (field path -> citation); a path covers everything under it,
so ``sources: {peak_tflops: "datasheet"}`` cites every entry of ``peak_tflops`` while
``peak_tflops.bf16`` can override one entry.

>>> p = HardwareProfile.model_validate(EXAMPLE)
>>> p.name, p.device_class.value, p.peak(Precision.FP32)
('toy-cpu', 'cpu', 0.1)
>>> p.cpu.cores, p.memory[-1].name
(2, 'dram')
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from dnnmap.hardware.calibration import (
    BandwidthKind,
    BandwidthPoint,
    Calibration,
    CalibrationMeta,
    ConvKind,
    ShapePoint,
    ThreadPoint,
    ThroughputPoint,
)
from dnnmap.hardware.interconnect import Interconnect, LinkLevel, Topology
from dnnmap.hardware.types import (
    Count,
    DeviceClass,
    Fraction,
    MemoryScope,
    NonNegative,
    OverlapPolicy,
    Positive,
    Precision,
    ProfileName,
    Provenance,
    _Strict,
)

__all__ = [  # the schema's names, wherever they are defined
    "BandwidthKind", "BandwidthPoint", "Calibration", "CalibrationMeta", "Clocks", "ConvKind",
    "CoreGroup", "CpuCompute", "DeviceClass", "GpuCompute", "GpuVendor", "MmaShape", "SimtTile", "HardwareProfile", "KpuCompute",
    "MemoryLevel", "MemoryScope", "OverlapPolicy", "Power", "Precision", "Provenance",
    "ShapePoint", "ThreadPoint", "ThroughputPoint", "TpuCompute", "Interconnect", "LinkLevel", "Topology",
]


class Clocks(_Strict):
    """``sustained_mhz``: the clock the chip holds under a sustained full compute load, where the
    power or thermal limit keeps it below boost (a 70 W T4 or 72 W L4 at full FP32 load). Peaks
    are quoted at ``boost_mhz``; the mapper scales compute rates by ``sustained / boost``.
    None: the chip holds its boost clock."""

    base_mhz: Positive
    boost_mhz: Positive
    sustained_mhz: Positive | None = None

    @model_validator(mode="after")
    def _boost_not_below_base(self) -> Clocks:
        if self.boost_mhz < self.base_mhz:
            raise ValueError(f"boost_mhz ({self.boost_mhz}) is below base_mhz ({self.base_mhz})")
        if self.sustained_mhz is not None and self.sustained_mhz > self.boost_mhz:
            raise ValueError(f"sustained_mhz ({self.sustained_mhz}) is above boost_mhz ({self.boost_mhz})")
        return self

    @property
    def sustained_ratio(self) -> float:
        """Sustained / boost clock: 1.0 when the chip holds boost under load."""
        return 1.0 if self.sustained_mhz is None else self.sustained_mhz / self.boost_mhz


class CoreGroup(_Strict):
    """A set of identical CPU cores (hybrid CPUs have a performance and an efficiency group)."""

    kind: Literal["performance", "efficiency"] = "performance"
    count: Count
    threads_per_core: Count
    simd_width_bits: Count  # widest SIMD the group executes: 128 (SSE/NEON), 256 (AVX2), 512
    fma_units_per_core: Count  # FMA pipes of simd_width_bits each
    base_mhz: Positive | None = None  # None: the profile's clocks
    boost_mhz: Positive | None = None

    def fp32_flops_per_cycle(self) -> int:
        """Per core: lanes x FMA pipes x 2 (an FMA is two FLOPs); AVX2 x 2 FMA -> 8*2*2 = 32."""
        return (self.simd_width_bits // 32) * self.fma_units_per_core * 2


class CpuCompute(_Strict):
    core_groups: tuple[CoreGroup, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _kinds_unique(self) -> CpuCompute:
        kinds = [g.kind for g in self.core_groups]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"core_groups: one group per kind, got {kinds}")
        return self

    @property
    def cores(self) -> int:
        return sum(g.count for g in self.core_groups)

    @property
    def threads(self) -> int:
        return sum(g.count * g.threads_per_core for g in self.core_groups)

    @property
    def performance(self) -> CoreGroup:
        """The first performance group (the whole CPU on a non-hybrid part)."""
        return next((g for g in self.core_groups if g.kind == "performance"), self.core_groups[0])


class MmaShape(_Strict):
    """One matrix-core instruction's shape: ``m x n`` outputs accumulating over ``k`` (per warp /
    wavefront), e.g. Ampere's ``mma.sync.m16n8k16`` for fp16 -> ``{m: 16, n: 8, k: 16}``."""

    m: Count
    n: Count
    k: Count


class SimtTile(_Strict):
    """A CUDA-core (SIMT) GEMM kernel's thread-block tile: ``tm x tn`` outputs computed by
    ``threads`` threads (cuBLAS ``*_sgemm_128x64_*`` kernels, CUTLASS SIMT tiles)."""

    tm: Count
    tn: Count
    threads: Count

    @model_validator(mode="after")
    def _whole_thread_tiles(self) -> SimtTile:
        if (self.tm * self.tn) % self.threads:
            raise ValueError(f"tile {self.tm}x{self.tn} does not split evenly over {self.threads} threads")
        return self


class GpuVendor(StrEnum):
    NVIDIA = "nvidia"  # SMs, 32-thread warps, tensor cores, shared memory
    AMD = "amd"  # CUs, 64-thread wavefronts, matrix cores, LDS


class GpuCompute(_Strict):
    """One GPU's organization. For AMD CDNA GPUs ``sms`` counts compute units (CUs),
    ``warp_size`` is the 64-wide wavefront, ``tensor_cores_per_sm`` the matrix cores per CU,
    ``fp32_lanes_per_sm`` the FP32 lanes per CU (64 on CDNA) and ``shared_mem_*`` the LDS."""

    vendor: GpuVendor = GpuVendor.NVIDIA
    sms: Count  # streaming multiprocessors (compute units)
    tensor_cores_per_sm: Annotated[int, Field(ge=0)]  # 0: no tensor cores
    fp32_lanes_per_sm: Count  # "CUDA cores" per SM: FP32 FMA lanes
    warp_size: Count
    max_threads_per_sm: Count
    max_blocks_per_sm: Count
    max_threads_per_block: Count
    shared_mem_per_sm_bytes: Count  # largest shared-memory carve-out per SM
    shared_mem_per_block_bytes: Count  # largest a single block may use (opt-in)
    registers_per_sm: Count  # 32-bit registers
    max_concurrent_kernels: Count  # kernels resident at once (streams)
    # FP32 FMA lanes fed by one warp scheduler (Volta..Hopper: 16 of 32 lanes -> a warp's FFMA
    # issues over 2 cycles, leaving the other issue slot to loads; Pascal, GA10x, Ada: 32).
    # None: fp32_lanes_per_sm / 4 schedulers
    fp32_lanes_per_scheduler: Count | None = None
    # which precisions the tensor / matrix cores run, with their MMA instruction shape (data,
    # like tinygrad's renderer/tc.py); a precision not listed runs on the CUDA cores / SIMD
    matrix_precisions: dict[Precision, MmaShape] = Field(default_factory=dict)
    # the SIMT (CUDA-core) GEMM tiles the vendor library picks from at fp32 without TF32
    simt_gemm_tiles: tuple[SimtTile, ...] = ()
    l2_residency: bool = True  # whether outputs that fit in L2 are read back from L2 by later kernels

    @property
    def unit_name(self) -> str:
        return "CU" if self.vendor is GpuVendor.AMD else "SM"

    @property
    def lanes_per_scheduler(self) -> int:
        return self.fp32_lanes_per_scheduler or max(1, self.fp32_lanes_per_sm // 4)

    @property
    def max_warps_per_sm(self) -> int:
        return self.max_threads_per_sm // self.warp_size


class TpuCompute(_Strict):
    tensor_cores: Count  # TensorCores per chip
    mxus_per_tensor_core: Count
    mxu_rows: Count  # systolic array height (128)
    mxu_cols: Count  # systolic array width (128)

    @property
    def mxus(self) -> int:
        return self.tensor_cores * self.mxus_per_tensor_core


class KpuCompute(_Strict):
    tiles: Count
    pe_rows: Count  # processing-element array per tile
    pe_cols: Count
    scratchpad_per_tile_bytes: Count

    @property
    def pes(self) -> int:
        return self.tiles * self.pe_rows * self.pe_cols


class MemoryLevel(_Strict):
    """One level of the hierarchy. ``capacity_bytes`` is per instance; ``bandwidth_gbps`` is the
    aggregate over all instances (what the whole chip can stream from this level)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")  # l1, smem, l2, llc, vmem, scratchpad, hbm, dram
    scope: MemoryScope
    instances: Count = 1
    capacity_bytes: Count
    bandwidth_gbps: Positive
    energy_pj_per_byte: NonNegative
    efficiency: Fraction | None = None  # sustained / nominal bandwidth, where measured/published

    @property
    def total_bytes(self) -> int:
        return self.capacity_bytes * self.instances

    @property
    def sustained_gbps(self) -> float:
        return self.bandwidth_gbps * (self.efficiency if self.efficiency is not None else 1.0)


class Power(_Strict):
    tdp_w: Positive
    idle_w: NonNegative

    @model_validator(mode="after")
    def _idle_below_tdp(self) -> Power:
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w}) must be below tdp_w ({self.tdp_w})")
        return self


# --- the profile ------------------------------------------------------------------------------


class HardwareProfile(_Strict):
    """One device. See the module docstring for units and the ``sources`` convention."""

    name: ProfileName  # the id: "h100-sxm5"
    display_name: str
    vendor: str
    device_class: DeviceClass
    provenance: Provenance = Provenance.THEORETICAL
    description: str = ""
    clocks: Clocks
    cpu: CpuCompute | None = None  # exactly the section matching device_class is present
    gpu: GpuCompute | None = None
    tpu: TpuCompute | None = None
    kpu: KpuCompute | None = None
    # dense peak for matrix work (GEMM/conv/attention) per precision on the fastest unit that runs
    # it: tensor cores, MXUs, PE arrays, CPU SIMD FMA; GPU fp32 without TF32 = CUDA cores
    peak_tflops: dict[Precision, Positive] = Field(min_length=1)
    # dense peak of the vector / non-tensor-core units (GPU CUDA cores, TPU VPU, CPU SIMD)
    vector_peak_tflops: dict[Precision, Positive] = Field(min_length=1)
    memory: tuple[MemoryLevel, ...] = Field(min_length=1)  # nearest (smallest) first, DRAM last
    kernel_launch_us: NonNegative  # fixed cost per kernel launch / op dispatch
    # GPU host timeline (see mapping/schedule.py): host CPU time eager PyTorch spends per ATen op
    # (Python + dispatcher + launch call); None -> kernel_launch_us
    eager_dispatch_us: NonNegative | None = None
    # device time between back-to-back kernels on one stream (launch latency once queued /
    # replayed from a CUDA graph); None -> 0
    kernel_gap_us: NonNegative | None = None
    overlap: OverlapPolicy = OverlapPolicy.OVERLAP
    power: Power
    energy_pj_per_flop: dict[Precision, Positive] = Field(min_length=1)
    calibration: Calibration | None = None
    interconnect: Interconnect | None = None  # links to peer devices (multi-device plans)
    # what one device-hour costs (cloud on-demand, or amortized purchase + power); its source in
    # ``sources.price_per_hour_usd`` must carry the date of the price (prices move)
    price_per_hour_usd: Positive | None = None
    sources: dict[str, str] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> HardwareProfile:
        _check_compute_section(self)
        _check_memory_order(self.memory)
        _check_kpu_scratchpad(self)
        _check_calibration(self)
        if self.provenance is Provenance.CALIBRATED and self.calibration is None:
            raise ValueError("provenance: calibrated profiles need a calibration section")
        _check_sources(self)
        _check_price_dated(self)
        return self

    # convenience for the mappers ------------------------------------------------------------

    @property
    def compute(self) -> CpuCompute | GpuCompute | TpuCompute | KpuCompute:
        """The organization section of this device's class."""
        section = getattr(self, self.device_class.value)
        assert section is not None  # guaranteed by validation
        return section

    def peak(self, precision: Precision) -> float | None:
        """Dense matrix-engine peak in TFLOPS (TOPS for int8), or None if the device lacks it."""
        return self.peak_tflops.get(precision)

    def vector_peak(self, precision: Precision) -> float | None:
        return self.vector_peak_tflops.get(precision)

    def level(self, name: str) -> MemoryLevel:
        """The memory level called ``name``; KeyError lists the known ones."""
        for m in self.memory:
            if m.name == name:
                return m
        raise KeyError(f"{self.name} has no memory level {name!r}; it has {[m.name for m in self.memory]}")

    @property
    def dram(self) -> MemoryLevel:
        """The outermost (off-chip) level."""
        return self.memory[-1]

    def source(self, path: str) -> str | None:
        """The citation covering ``path`` ("peak_tflops.bf16"): itself or its nearest parent."""
        parts = path.split(".")
        for n in range(len(parts), 0, -1):
            hit = self.sources.get(".".join(parts[:n]))
            if hit is not None:
                return hit
        return None


def _check_compute_section(p: HardwareProfile) -> None:
    present = [c.value for c in DeviceClass if getattr(p, c.value) is not None]
    if present != [p.device_class.value]:
        raise ValueError(
            f"device_class {p.device_class.value!r} needs exactly the section "
            f"{p.device_class.value!r}; found sections {present}"
        )


def _check_memory_order(levels: tuple[MemoryLevel, ...]) -> None:
    names = [m.name for m in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"memory: duplicate level names {names}")
    for i, (inner, outer) in enumerate(zip(levels, levels[1:], strict=False)):
        if outer.total_bytes <= inner.total_bytes:
            raise ValueError(
                f"memory.{i + 1}: {outer.name} total capacity {outer.total_bytes} B is not larger "
                f"than {inner.name}'s {inner.total_bytes} B (order levels nearest first)"
            )
        if outer.bandwidth_gbps > inner.bandwidth_gbps:
            raise ValueError(
                f"memory.{i + 1}: {outer.name} bandwidth {outer.bandwidth_gbps} GB/s exceeds "
                f"{inner.name}'s {inner.bandwidth_gbps} GB/s (farther levels must not be faster)"
            )


def _check_kpu_scratchpad(p: HardwareProfile) -> None:
    if p.kpu is None:
        return
    pads = [m for m in p.memory if m.scope is MemoryScope.TILE]
    if not pads or pads[0].capacity_bytes != p.kpu.scratchpad_per_tile_bytes:
        raise ValueError(
            "kpu.scratchpad_per_tile_bytes must equal the capacity_bytes of the memory level "
            "with scope 'tile'"
        )


def _check_calibration(p: HardwareProfile) -> None:
    """Measured points can't beat the profile's own peaks: the mapper's bound must hold."""
    cal = p.calibration
    if cal is None:
        return
    for prec, pts in cal.gemm.items():
        _points_within(f"calibration.gemm.{prec.value}", pts, p.peak(prec) or p.vector_peak(prec))
    for kind, per in cal.conv.items():
        for prec, pts in per.items():
            peak = p.peak(prec) or p.vector_peak(prec)
            _points_within(f"calibration.conv.{kind.value}.{prec.value}", pts, peak)
    for path, shapes in cal._shape_tables():
        prec = Precision(path.rsplit(".", 1)[1])
        _points_within(f"calibration.{path}", shapes, p.peak(prec) or p.vector_peak(prec))
    top = p.memory[0].bandwidth_gbps
    for kind, bw in cal.bandwidth.items():
        for b in bw:
            if b.achieved_gbps > top * (1 + 1e-9):
                raise ValueError(
                    f"calibration.bandwidth.{kind.value}: {b.achieved_gbps} GB/s exceeds the "
                    f"fastest memory level ({p.memory[0].name}: {top} GB/s)"
                )


def _points_within(path: str, pts: tuple[ThroughputPoint | ShapePoint, ...], peak: float | None) -> None:
    if peak is None:
        raise ValueError(f"{path}: the profile has no peak for this precision")
    for pt in pts:
        if pt.achieved_tflops > peak * (1 + 1e-9):
            raise ValueError(f"{path}: achieved {pt.achieved_tflops} TFLOPS exceeds peak {peak}")


def _segment(item: Any, index: int) -> str:
    """A list item's path segment: its ``name`` (memory levels) or ``kind`` (core groups),
    so ``sources`` read ``memory.hbm.bandwidth_gbps``; else its index."""
    if isinstance(item, Mapping):
        for key in ("name", "kind"):
            if isinstance(item.get(key), str):
                return item[key]
    return str(index)


def _walk(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) in a plain dict/list tree, parents before children."""
    if prefix:
        yield prefix, data
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list | tuple):
        for i, v in enumerate(data):
            seg = _segment(v, i)
            yield from _walk(v, f"{prefix}.{seg}" if prefix else seg)


def _stated_numbers(value: Any, prefix: str) -> Iterator[str]:
    """Paths of the numbers in a model tree, skipping fields left at a schema default
    (``instances: 1``): those are structure, not claims needing a citation."""
    if isinstance(value, BaseModel):
        for field_name, info in type(value).model_fields.items():
            v = getattr(value, field_name)
            if field_name == "sources" or v is None or (not info.is_required() and v == info.default):
                continue
            yield from _stated_numbers(v, f"{prefix}.{field_name}" if prefix else field_name)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            key = k.value if isinstance(k, StrEnum) else str(k)
            yield from _stated_numbers(v, f"{prefix}.{key}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            seg = next((getattr(v, a) for a in ("name", "kind") if isinstance(getattr(v, a, None), str)), str(i))
            yield from _stated_numbers(v, f"{prefix}.{seg}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield prefix


def _check_price_dated(p: HardwareProfile) -> None:
    src = p.sources.get("price_per_hour_usd")
    if p.price_per_hour_usd is not None and not (src and re.search(r"\b(19|20)\d\d\b", src)):
        raise ValueError("sources.price_per_hour_usd: say where the price comes from and when (a year or date)")


def _check_sources(p: HardwareProfile) -> None:
    """Every number other than a schema default (``instances: 1``) needs a citation, and every
    citation must name a field that exists (so a dumped-and-reloaded profile still validates)."""
    missing = [path for path in _stated_numbers(p, "") if p.source(path) is None]
    if missing:
        raise ValueError(f"sources: no source for {', '.join(missing)}")
    full = p.model_dump(mode="json", exclude={"sources"}, exclude_none=True)
    valid = {path for path, _ in _walk(full)}
    stale = [k for k in p.sources if k not in valid]
    if stale:
        raise ValueError(f"sources: entries for fields that do not exist: {', '.join(stale)}")
    for k, v in p.sources.items():
        if not v.strip():
            raise ValueError(f"sources.{k}: empty citation")


EXAMPLE: dict[str, Any] = {
    "name": "toy-cpu",
    "display_name": "Toy CPU",
    "vendor": "Example",
    "device_class": "cpu",
    "clocks": {"base_mhz": 1000, "boost_mhz": 1000},
    "cpu": {"core_groups": [{"kind": "performance", "count": 2, "threads_per_core": 1, "simd_width_bits": 256,
                             "fma_units_per_core": 2}]},
    # 2 cores * 32 FLOP/cycle * 1.0 GHz = 64 GFLOPS; rounded up to 0.1 for the example
    "peak_tflops": {"fp32": 0.1},
    "vector_peak_tflops": {"fp32": 0.1},
    "memory": [
        {"name": "l1", "scope": "core", "instances": 2, "capacity_bytes": 32768,
         "bandwidth_gbps": 200, "energy_pj_per_byte": 1},
        {"name": "dram", "scope": "chip", "capacity_bytes": 2**30, "bandwidth_gbps": 20,
         "energy_pj_per_byte": 20},
    ],
    "kernel_launch_us": 5,
    "power": {"tdp_w": 10, "idle_w": 1},
    "energy_pj_per_flop": {"fp32": 10},
    "sources": {k: "estimated: a toy example" for k in (
        "clocks", "cpu", "peak_tflops", "vector_peak_tflops", "memory", "kernel_launch_us",
        "power", "energy_pj_per_flop")},
}
