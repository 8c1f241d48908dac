"""Human-readable numbers: SI prefixes for FLOPs and bytes, times in s/ms/us.

>>> si(4_089_184_256, "FLOP"), si(1536, "B"), seconds(0.00123)
('4.09 GFLOP', '1.54 kB', '1.23 ms')
"""

from __future__ import annotations

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """Decimal SI prefix (kB = 1000 B, as datasheets quote bandwidth and FLOPs)."""
    v = float(value)
    for scale, p in _PREFIXES:
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g} {p}{unit}"
    return f"{v:.{digits}g} {unit}".rstrip()


def seconds(value: float, digits: int = 3) -> str:
    v = float(value)
    for scale, u in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g} {u}"
    return "0 s"


def percent(value: float, digits: int = 1) -> str:
    return f"{100.0 * value:.{digits}f} %"
