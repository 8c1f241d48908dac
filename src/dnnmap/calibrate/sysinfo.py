"""What the OS says about this machine: caches (sysfs), SIMD flags and clock (/proc/cpuinfo),
memory size (/proc/meminfo). Read, not measured; the profile cites them as such.

>>> [c.level for c in cache_levels()] == sorted(c.level for c in cache_levels())
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True, slots=True)
class CacheLevel:
    level: int  # 1, 2, 3
    size_bytes: int  # per instance
    shared_by: int  # logical CPUs sharing one instance
    instances: int  # instances across the online CPUs


def _parse_size(text: str) -> int:
    """``"32K"`` -> 32768, ``"16384K"`` -> 16 MiB, ``"1M"`` -> 1 MiB."""
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * mult


def _cpu_count(listing: str) -> int:
    """``"0-1"`` -> 2, ``"0,2,4"`` -> 3, ``"0-3,8-11"`` -> 8."""
    n = 0
    for part in listing.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            n += int(b) - int(a) + 1
        elif part:
            n += 1
    return n


def cache_levels() -> list[CacheLevel]:
    """Data / unified caches of cpu0 (L1d, L2, L3), nearest first; [] where sysfs has none."""
    base = _SYS_CPU / "cpu0" / "cache"
    online = os.cpu_count() or 1
    out = []
    for idx in sorted(base.glob("index*")) if base.is_dir() else []:
        try:
            kind = (idx / "type").read_text().strip()
            if kind == "Instruction":
                continue
            level = int((idx / "level").read_text())
            size = _parse_size((idx / "size").read_text())
            shared = max(1, _cpu_count((idx / "shared_cpu_list").read_text()))
        except (OSError, ValueError):
            continue
        out.append(CacheLevel(level, size, shared, max(1, online // shared)))
    return sorted(out, key=lambda c: c.level)


def _cpuinfo_first() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def cpu_flags() -> set[str]:
    return set(_cpuinfo_first().get("flags", "").split())


def simd_width_bits() -> int:
    """Widest SIMD the CPU advertises: avx512f 512, avx/avx2 256, else 128 (SSE / NEON)."""
    flags = cpu_flags()
    if "avx512f" in flags:
        return 512
    if "avx2" in flags or "avx" in flags:
        return 256
    return 128


def cpu_mhz() -> float | None:
    """The clock /proc/cpuinfo reports for cpu0 (a VM reports its nominal clock)."""
    v = _cpuinfo_first().get("cpu MHz")
    try:
        return float(v) if v else None
    except ValueError:
        return None


def threads_per_core() -> int:
    info = _cpuinfo_first()
    try:
        return max(1, int(info.get("siblings", "1")) // max(1, int(info.get("cpu cores", "1"))))
    except ValueError:
        return 1


def memory_bytes() -> int:
    """MemTotal from /proc/meminfo (the DRAM capacity); 16 GiB where unreadable."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 16 << 30
