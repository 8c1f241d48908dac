"""Rich renderables for ``dnnmap hardware list`` and ``dnnmap hardware show NAME``.

Every figure is shown beside the source it came from, so a reader can tell a datasheet
number from an estimate.

>>> import io
>>> from rich.console import Console
>>> from dnnmap.hardware import list_profiles, load_profile
>>> console = Console(width=200, record=True, file=io.StringIO())
>>> console.print(hardware_list_table(list_profiles()))
>>> "h100-sxm5" in console.export_text()
True
>>> console.print(hardware_show(load_profile("h100-sxm5")))
>>> "989.4" in console.export_text()
True
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dnnmap.hardware.schema import (
    CpuCompute,
    GpuCompute,
    HardwareProfile,
    KpuCompute,
    MemoryLevel,
    Precision,
    TpuCompute,
)
from dnnmap.report.units import si

_LIST_PRECISIONS = (Precision.FP32, Precision.TF32, Precision.BF16, Precision.INT8)


def _tflops(value: float | None) -> str:
    return "—" if value is None else f"{value:,.4g}"


def _bytes(n: float) -> str:
    """Binary sizes, as caches are quoted: 262144 -> '256 KiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.4g} {unit}"
    return f"{n:,.0f} B"


def _src(profile: HardwareProfile, path: str, previous: str | None = None) -> Text:
    """The citation for ``path``, dimmed; estimates and measurements are tagged in colour.
    A citation equal to ``previous`` (the row above) is shown as a ditto mark."""
    s = profile.source(path) or "(no source)"
    if s == previous:
        return Text("  〃", style="dim")
    style = "yellow" if s.startswith("estimated") else "green" if s.startswith("measured") else "dim"
    return Text(s, style=style)


def _on_chip(profile: HardwareProfile) -> MemoryLevel | None:
    inner = profile.memory[:-1]
    return max(inner, key=lambda m: m.total_bytes) if inner else None


def hardware_list_table(profiles: Sequence[HardwareProfile]) -> Table:
    """One row per device: class, dense peaks, off-chip bandwidth, largest on-chip memory, TDP."""
    t = Table(title="Hardware profiles (dense peaks, TFLOPS / TOPS for int8)", title_justify="left")
    t.add_column("name", style="bold cyan", no_wrap=True)
    t.add_column("class")
    t.add_column("device")
    for prec in _LIST_PRECISIONS:
        t.add_column(prec.value, justify="right")
    t.add_column("DRAM GB/s", justify="right")
    t.add_column("largest on-chip", justify="right")
    t.add_column("TDP W", justify="right")
    t.add_column("provenance")
    for p in profiles:
        chip = _on_chip(p)
        t.add_row(
            p.name,
            p.device_class.value,
            p.display_name,
            *(_tflops(p.peak(prec)) for prec in _LIST_PRECISIONS),
            f"{p.dram.bandwidth_gbps:,.4g}",
            f"{_bytes(chip.total_bytes)} {chip.name}" if chip else "—",
            f"{p.power.tdp_w:,.4g}",
            p.provenance.value,
        )
    t.caption = "Sources for every figure: dnnmap hardware show NAME"
    return t


def _organization(p: HardwareProfile) -> Table:
    t = Table(title="Compute organization", title_justify="left", show_header=True)
    t.add_column("field")
    t.add_column("value", justify="right")
    t.add_column("source")
    c = p.compute
    rows: list[tuple[str, str, str]] = []
    if isinstance(c, CpuCompute):
        for g in c.core_groups:
            base = f"cpu.core_groups.{g.kind}"
            rows.append((f"{g.kind} cores", f"{g.count} x {g.threads_per_core} thr", f"{base}.count"))
            rows.append((f"{g.kind} SIMD x FMA", f"{g.simd_width_bits} bit x {g.fma_units_per_core}",
                         f"{base}.fma_units_per_core"))
            rows.append((f"{g.kind} FP32 FLOP/clk/core", str(g.fp32_flops_per_cycle()), f"{base}.simd_width_bits"))
    elif isinstance(c, GpuCompute):
        for field in ("sms", "tensor_cores_per_sm", "fp32_lanes_per_sm", "max_threads_per_sm",
                      "max_blocks_per_sm", "registers_per_sm", "max_concurrent_kernels"):
            rows.append((field, f"{getattr(c, field):,}", f"gpu.{field}"))
        rows.append(("shared_mem_per_sm", _bytes(c.shared_mem_per_sm_bytes), "gpu.shared_mem_per_sm_bytes"))
    elif isinstance(c, TpuCompute):
        rows.append(("tensor_cores", str(c.tensor_cores), "tpu.tensor_cores"))
        rows.append(("MXUs", f"{c.mxus} ({c.mxus_per_tensor_core} per core)", "tpu.mxus_per_tensor_core"))
        rows.append(("MXU array", f"{c.mxu_rows} x {c.mxu_cols}", "tpu.mxu_rows"))
    elif isinstance(c, KpuCompute):
        rows.append(("tiles", str(c.tiles), "kpu.tiles"))
        rows.append(("PE array per tile", f"{c.pe_rows} x {c.pe_cols}", "kpu.pe_rows"))
        rows.append(("scratchpad per tile", _bytes(c.scratchpad_per_tile_bytes), "kpu.scratchpad_per_tile_bytes"))
    rows.append(("clock base / boost", f"{p.clocks.base_mhz:,.4g} / {p.clocks.boost_mhz:,.4g} MHz", "clocks.boost_mhz"))
    previous = None
    for label, value, path in rows:
        t.add_row(label, value, _src(p, path, previous))
        previous = p.source(path)
    return t


def _peaks(p: HardwareProfile) -> Table:
    t = Table(title="Dense peak throughput (TFLOPS; TOPS for int8) and energy", title_justify="left")
    t.add_column("precision")
    t.add_column("matrix", justify="right")
    t.add_column("vector", justify="right")
    t.add_column("pJ/op", justify="right")
    t.add_column("source (matrix peak)")
    previous = None
    for prec in Precision:
        if prec not in p.peak_tflops and prec not in p.vector_peak_tflops:
            continue
        pj = p.energy_pj_per_flop.get(prec)
        path = f"peak_tflops.{prec.value}" if prec in p.peak_tflops else f"vector_peak_tflops.{prec.value}"
        t.add_row(prec.value, _tflops(p.peak(prec)), _tflops(p.vector_peak(prec)),
                  "—" if pj is None else f"{pj:,.4g}", _src(p, path, previous))
        previous = p.source(path)
    return t


def _memory(p: HardwareProfile) -> Table:
    t = Table(title="Memory hierarchy (nearest first; bandwidth is chip-wide)", title_justify="left")
    for col in ("level", "scope", "capacity", "GB/s", "pJ/B", "source (capacity)", "source (bandwidth)"):
        t.add_column(col, justify="right" if col in ("capacity", "GB/s", "pJ/B") else "left")
    for m in p.memory:
        cap = _bytes(m.capacity_bytes) + (f" x {m.instances}" if m.instances > 1 else "")
        t.add_row(m.name, m.scope.value, cap, f"{m.bandwidth_gbps:,.6g}", f"{m.energy_pj_per_byte:,.4g}",
                  _src(p, f"memory.{m.name}.capacity_bytes"), _src(p, f"memory.{m.name}.bandwidth_gbps"))
    return t


def _power(p: HardwareProfile) -> Table:
    t = Table(title="Power and overheads", title_justify="left")
    t.add_column("field")
    t.add_column("value", justify="right")
    t.add_column("source")
    t.add_row("TDP", f"{p.power.tdp_w:,.4g} W", _src(p, "power.tdp_w"))
    t.add_row("idle", f"{p.power.idle_w:,.4g} W", _src(p, "power.idle_w"))
    t.add_row("kernel launch / dispatch", f"{p.kernel_launch_us:,.4g} us", _src(p, "kernel_launch_us"))
    t.add_row("compute/memory overlap", p.overlap.value, Text(""))
    t.add_row("energy per op", "see peaks table", _src(p, "energy_pj_per_flop"))
    return t


def _calibration(p: HardwareProfile) -> RenderableType:
    cal = p.calibration
    if cal is None:
        return Text("No calibration: figures are theoretical (datasheet / estimates).", style="italic")
    m = cal.meta
    t = Table(title=f"Calibration: measured on {m.machine} ({m.device}) at {m.date}", title_justify="left")
    t.add_column("table")
    t.add_column("points", justify="right")
    t.add_column("range", justify="right")
    for prec, pts in cal.gemm.items():
        t.add_row(f"gemm {prec.value}", str(len(pts)),
                  f"{si(pts[0].flops, 'FLOP')} .. {si(pts[-1].flops, 'FLOP')}: "
                  f"{min(x.achieved_tflops for x in pts):.3g}..{max(x.achieved_tflops for x in pts):.3g} TFLOPS")
    for kind, per in cal.conv.items():
        for prec, pts in per.items():
            t.add_row(f"conv {kind.value} {prec.value}", str(len(pts)),
                      f"{max(x.achieved_tflops for x in pts):.3g} TFLOPS max")
    for kind, bw in cal.bandwidth.items():
        t.add_row(f"bandwidth {kind.value}", str(len(bw)),
                  f"{_bytes(bw[0].working_set_bytes)} .. {_bytes(bw[-1].working_set_bytes)}: "
                  f"{min(x.achieved_gbps for x in bw):.3g}..{max(x.achieved_gbps for x in bw):.3g} GB/s")
    if cal.thread_scaling:
        t.add_row("thread scaling", str(len(cal.thread_scaling)),
                  ", ".join(f"{x.threads}t: {x.speedup:.2f}x" for x in cal.thread_scaling))
    versions = ", ".join(f"{k} {v}" for k, v in sorted(m.library_versions.items()))
    t.caption = f"libraries: {versions or 'not recorded'}"
    return t


def hardware_show(profile: HardwareProfile) -> Group:
    """Everything about one device, each figure beside its source."""
    head = Text.assemble(
        (profile.display_name, "bold"), f"  ({profile.name}, {profile.vendor}, {profile.device_class.value}, ",
        (profile.provenance.value, "bold green" if profile.provenance.value == "calibrated" else "bold"), ")",
    )
    if profile.description:
        head.append(f"\n{profile.description}", style="italic")
    return Group(Panel(head), _organization(profile), _peaks(profile), _memory(profile),
                 _power(profile), _calibration(profile))
