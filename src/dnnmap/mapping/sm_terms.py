"""Per-SM terms shared by the GPU mappers (GEMM tiling in :mod:`.gpu`, FlashAttention tiling
in :mod:`.attention`): DRAM latency for Little's law, the MMA tile area an SM needs in flight,
registers beyond the accumulators.

>>> from dnnmap.hardware import load_profile
>>> from dnnmap.mapping.device import Device
>>> d = Device.of(load_profile("h100-sxm5"), "bf16")
>>> little(1.0, d) == 1e-6, little(1e12, d)   # floor, and a full share
(True, 1.0)
"""

from __future__ import annotations

from dnnmap.mapping.device import Device

# Load-to-use latency of a DRAM / HBM access under load (Jia et al., "Dissecting the NVIDIA
# Volta / Turing GPU architecture via microbenchmarking", 2018/2019; Luo et al., "Benchmarking
# and dissecting the Nvidia Hopper GPU architecture", 2024: ~450-750 cycles at 1-2 GHz).
# estimated; a calibrated profile replaces the whole bandwidth term by measured tables.
DRAM_LATENCY_S = 600e-9
FULL_RATE_TILE_AREA = 128 * 128  # outputs in flight per SM for full MMA rate (two 64-row
# Hopper warpgroups x 128 columns; CUTLASS's smallest full-throughput sm80/sm90 tiles)
REG_OVERHEAD = 40  # registers per thread beyond the fp32 accumulators (addresses, fragments)


def little(bytes_in_flight: float, dev: Device) -> float:
    """Share of main-memory bandwidth sustained with ``bytes_in_flight`` outstanding (Little's law)."""
    return max(1e-6, min(1.0, bytes_in_flight / (dev.dram.bandwidth * DRAM_LATENCY_S)))
