"""Assemble a calibrated hardware profile (the normal schema) from one run's measurements.

What is measured replaces the datasheet: the matrix and vector peaks (the best any GEMM or
conv reached), each memory level's bandwidth (the stride-0 read sweep inside the level), the
dispatch overhead, and the calibration tables. What a microbenchmark cannot measure (clock,
SIMD width, FMA pipes, power, energy per FLOP / byte) comes from a ``base`` profile with its
own citations, or is read from the OS, or is marked ``estimated``. Every figure is cited in
``sources``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from dnnmap.calibrate.collect import Measurements
from dnnmap.calibrate.sysinfo import (
    cache_levels,
    cpu_mhz,
    memory_bytes,
    simd_width_bits,
    threads_per_core,
)
from dnnmap.calibrate.tables import (
    bandwidth_tables,
    conv_backward_tables,
    conv_tables,
    gemm_tables,
    level_bandwidths,
    measured_peaks,
    op_bandwidth_tables,
    scalars,
    slug,
    stream_tables,
    thread_points,
)
from dnnmap.hardware.schema import HardwareProfile

# typical energies where no base profile gives them (order of magnitude, 45 nm -> 7 nm
# scaled; Horowitz, "Computing's energy problem", ISSCC 2014): flagged "estimated"
_EST_PJ_PER_BYTE = {"l1": 1.0, "l2": 3.0, "l3": 10.0, "dram": 60.0, "l2_gpu": 5.0, "hbm": 30.0}
_OS = "read from the OS: /proc/cpuinfo, /sys/devices/system/cpu/cpu0/cache, /proc/meminfo"


def default_profile_name(meas_or_device: Measurements | str) -> str:
    """``amd-epyc-measured`` for this machine's CPU; the GPU's name with ``--device cuda``."""
    from dnnmap.calibrate.timing import device_name

    dev = meas_or_device if isinstance(meas_or_device, str) else meas_or_device.device
    label = device_name(dev) if isinstance(meas_or_device, str) else meas_or_device.device_name
    return f"{slug(label)}-measured"


def _vendor(meas: Measurements) -> str:
    if meas.device == "cuda":
        return "NVIDIA"
    v = meas.cpu_signature.get("vendor", "")
    return {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(v, v or meas.device_name.split()[0])


def _cpu_section(meas: Measurements, base: HardwareProfile | None, src: dict[str, str]) -> dict[str, Any]:
    tpc = threads_per_core()
    cores = max(1, (os.cpu_count() or 1) // tpc)
    fma = base.cpu.performance.fma_units_per_core if base is not None and base.cpu is not None else 2
    src["cpu"] = _OS + (f"; fma_units_per_core from {base.name}" if base is not None and base.cpu else
                        "; fma_units_per_core estimated (2 FMA pipes, as AVX2 cores since Haswell / Zen 2 have)")
    return {"core_groups": [{"count": cores, "threads_per_core": tpc, "simd_width_bits": simd_width_bits(),
                             "fma_units_per_core": fma}]}


def _gpu_section(base: HardwareProfile | None, src: dict[str, str]) -> dict[str, Any]:
    if base is not None and base.gpu is not None:
        src["gpu"] = base.source("gpu") or f"from base profile {base.name}"
        return base.gpu.model_dump(mode="json")
    import torch

    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    src["gpu"] = "torch.cuda.get_device_properties; tensor_cores_per_sm / fp32 lanes estimated (Hopper: 4, 128)"
    smem = int(getattr(p, "shared_memory_per_multiprocessor", 228 * 1024))
    return {
        "sms": p.multi_processor_count, "tensor_cores_per_sm": 4, "fp32_lanes_per_sm": 128,
        "warp_size": int(getattr(p, "warp_size", 32)),
        "max_threads_per_sm": int(getattr(p, "max_threads_per_multi_processor", 2048)),
        "max_blocks_per_sm": 32, "max_threads_per_block": 1024, "shared_mem_per_sm_bytes": smem,
        "shared_mem_per_block_bytes": int(getattr(p, "shared_memory_per_block_optin", smem)),
        "registers_per_sm": int(getattr(p, "regs_per_multiprocessor", 65536)), "max_concurrent_kernels": 128,
    }


def _level_energy(name: str, base: HardwareProfile | None, position: int, count: int) -> tuple[float, str]:
    if base is not None:
        levels = base.memory
        same = next((m for m in levels if m.name == name), None)
        if same is None and position == count - 1:
            same = levels[-1]
        if same is not None:
            return same.energy_pj_per_byte, f"from {base.name}"
    return _EST_PJ_PER_BYTE.get(name, 10.0), "estimated (Horowitz ISSCC 2014, order of magnitude)"


def _memory(meas: Measurements, base: HardwareProfile | None, sweeps: list[dict[str, float]],
            src: dict[str, str]) -> list[dict[str, Any]]:
    """Cache levels (sysfs) + DRAM, each with the best bandwidth a sweep measured inside it."""
    if meas.device == "cuda":
        import torch

        p = torch.cuda.get_device_properties(torch.cuda.current_device())
        l2 = int(getattr(p, "L2_cache_size", 50 << 20))
        levels = [("l2", "chip", 1, l2), ("hbm", "chip", 1, int(p.total_memory))]
    else:
        caches = cache_levels()
        levels = [(f"l{c.level}", "core" if c.instances > 1 else "chip", c.instances, c.size_bytes) for c in caches]
        levels.append(("dram", "chip", 1, memory_bytes()))
    bounds, prev = [], 0
    for i, (_, _, inst, cap) in enumerate(levels):
        if i == len(levels) - 1:  # main memory: working sets well past the last cache
            bounds.append((4 * prev, 1 << 62))
        else:
            bounds.append((prev, cap))
            prev = cap * inst
    bws = level_bandwidths(sweeps, bounds)
    out = []
    for i, ((nm, scope, inst, cap), bw) in enumerate(zip(levels, bws, strict=True)):
        pj, pj_src = _level_energy(nm, base, i, len(levels))
        out.append({"name": nm, "scope": scope, "instances": inst, "capacity_bytes": cap,
                    "bandwidth_gbps": float(f"{bw:.5g}"), "energy_pj_per_byte": pj})
        src[f"memory.{nm}"] = (f"capacity {_OS if meas.device == 'cpu' else 'torch.cuda.get_device_properties'}; "
                              f"bandwidth measured (best of the read / copy / add sweeps inside it); energy {pj_src}")
    return out


def _power(meas: Measurements, base: HardwareProfile | None, peaks: dict[str, float],
           cores: int, src: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    if base is not None:
        src["power"] = base.source("power") or f"from {base.name}"
        src["energy_pj_per_flop"] = base.source("energy_pj_per_flop") or f"from {base.name}"
        energy = {k.value: v for k, v in base.energy_pj_per_flop.items() if k.value in peaks} or {
            k.value: v for k, v in base.energy_pj_per_flop.items()}
        return base.power.model_dump(mode="json"), energy
    tdp = 5.0 * cores if meas.device == "cpu" else 700.0  # ~5 W per server core / an SXM board
    src["power"] = "estimated: ~5 W per server core (no power counter read by calibrate)"
    src["energy_pj_per_flop"] = "estimated: TDP / measured peak (all power attributed to arithmetic)"
    return {"tdp_w": tdp, "idle_w": round(0.3 * tdp, 3)}, {k: float(f"{tdp / v * 1e12:.4g}") for k, v in peaks.items()}


def profile_dict(meas: Measurements, name: str, base: HardwareProfile | None = None, command: str = "") -> dict[str, Any]:
    """The profile as the plain dict its YAML file holds (validated by :func:`build_profile`)."""
    measured = _measured_source(meas)
    src: dict[str, str] = {}
    peaks = measured_peaks(meas)
    gemm_shapes, gemm = gemm_tables(meas, peaks)
    conv_shapes, conv = conv_tables(meas, peaks)
    bw = bandwidth_tables(meas)
    section = _cpu_section(meas, base, src) if meas.device == "cpu" else _gpu_section(base, src)
    cores = section["core_groups"][0]["count"] if meas.device == "cpu" else 1
    power, energy = _power(meas, base, peaks, cores, src)
    mhz = cpu_mhz() if meas.device == "cpu" else None
    clocks = base.clocks.model_dump(mode="json") if base is not None else {"base_mhz": mhz or 1000.0, "boost_mhz": mhz or 1000.0}
    if base is not None:
        src["clocks"] = base.source("clocks") or f"from {base.name}"
    elif meas.device == "cpu":
        src["clocks"] = _OS + " (cpu MHz: the nominal clock; the measured peak implies the boost)"
    else:
        src["clocks"] = "estimated: placeholder (torch does not report GPU clocks); pass --base NAME to take them from a datasheet profile"
    tf = {k: _tf_peak(v) for k, v in peaks.items()}
    # CPU: the SIMD FMA units do both matrix and vector work; GPU: fp32 without TF32 = CUDA cores
    vector = {"fp32": tf["fp32"]}
    for k in ("peak_tflops", "vector_peak_tflops", "kernel_launch_us", "calibration"):
        src[k] = measured
    src["overlap"] = "assumed: out-of-order cores overlap loads with arithmetic"
    d: dict[str, Any] = {
        "name": name,
        "display_name": f"{meas.device_name} ({meas.threads} threads, measured)",
        "vendor": _vendor(meas),
        "device_class": "cpu" if meas.device == "cpu" else "gpu",
        "provenance": "calibrated",
        "description": (f"Calibrated by microbenchmarks on this machine ({meas.device_name}); base profile: "
                        f"{base.name if base is not None else 'none'}. No model was used to fit any figure."),
        "clocks": clocks,
        ("cpu" if meas.device == "cpu" else "gpu"): section,
        "peak_tflops": tf,
        "vector_peak_tflops": vector,
        "memory": _memory(meas, base, [p for pts in bw.values() for p in pts], src),
        "kernel_launch_us": round(_dispatch_us(meas), 4),
        "overlap": "overlap",
        "power": power,
        "energy_pj_per_flop": energy,
        "calibration": _calibration(meas, gemm_shapes, gemm, conv_shapes, conv, bw, command, peaks["fp32"]),
        "sources": src,
    }
    # training and decode kernels: backward convs, few-row GEMMs against cold weights
    if meas.conv_backward:
        d["calibration"]["conv_backward_shapes"] = conv_backward_tables(meas, peaks)
    if meas.gemm_stream:
        d["calibration"]["gemm_stream"] = stream_tables(meas, peaks)
    if meas.op_sweep:
        d["calibration"]["op_bandwidth"] = op_bandwidth_tables(meas)
    return d


def _tf_peak(rate: float) -> float:
    """FLOP/s -> TFLOPS, rounded *up* in the 6th digit so no table entry exceeds it."""
    digits = 10 ** (5 - math.floor(math.log10(rate / 1e12)))
    return math.ceil(rate / 1e12 * digits) / digits


def _dispatch_us(meas: Measurements) -> float:
    return (meas.scalar("dispatch.elementwise") or 1e-6) * 1e6


def _measured_source(meas: Measurements) -> str:
    v = meas.versions
    return (f"measured: dnnmap calibrate{' --quick' if meas.quick else ''} on {meas.device_name}, "
            f"{meas.date}, {meas.threads} threads, torch {v.get('torch', '?')}, load {meas.load_before:.2f}"
            + (" (DISTURBED by other processes)" if meas.disturbed else ""))


def _calibration(meas: Measurements, gemm_shapes: dict, gemm: dict, conv_shapes: dict, conv: dict,
                 bw: dict, command: str, vector_peak: float) -> dict[str, Any]:
    return {
        "meta": {
            "machine": meas.device_name, "device": meas.device, "date": meas.date,
            "library_versions": dict(meas.versions), "threads": meas.threads, "quick": meas.quick,
            "command": command,
            "notes": (f"DISTURBED, do not trust: {meas.disturbed}; " if meas.disturbed else "")
                     + (f"elapsed {meas.elapsed_s:.1f} s, each point the median of {meas.passes_combined} "
                        f"pass(es), load average {meas.load_before:.2f} -> "
                      f"{meas.load_after:.2f}; cpu {meas.cpu_signature}; skipped dtypes "
                      f"{list(meas.dtypes_skipped)}; held out: microbenchmarks only, no model timed"),
        },
        "gemm": gemm,
        "conv": conv,
        "gemm_shapes": gemm_shapes,
        "conv_shapes": conv_shapes,
        "bandwidth": bw,
        "thread_scaling": thread_points(meas),
        "dispatch_us": round(_dispatch_us(meas), 4),
        "scalars": scalars(meas, vector_peak),
    }


def build_profile(meas: Measurements, name: str | None = None, base: HardwareProfile | None = None,
                  command: str = "") -> HardwareProfile:
    """The validated calibrated profile."""
    name = name or (f"{base.name}-measured" if base is not None else default_profile_name(meas))
    return HardwareProfile.model_validate(profile_dict(meas, name, base, command))
