"""`dnnmap hardware list` / `show` renderables: every device listed, figures beside their sources."""

from __future__ import annotations

import io

from rich.console import Console

from dnnmap.hardware import list_profiles, load_profile
from dnnmap.report.hardware import hardware_list_table, hardware_show


def _text(renderable) -> str:
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_list_shows_every_profile_with_dense_peaks() -> None:
    profiles = list_profiles()
    out = _text(hardware_list_table(profiles))
    for p in profiles:
        assert p.name in out
    assert "989.4" in out and "1,979" in out  # H100 SXM5 dense bf16 and int8, not 1979 bf16


def test_show_prints_figures_and_sources() -> None:
    out = _text(hardware_show(load_profile("kpu-t2")))
    assert "Stillwater KPU-T2" in out
    assert "256 KiB" in out
    assert "shared/seed/000_4f1cabf001b236be.md" in out
    assert "estimated:" in out
    assert "No calibration" in out


def test_show_every_class() -> None:
    for name in ("i7-12700k", "l4", "tpu-v4", "kpu-t100"):
        out = _text(hardware_show(load_profile(name)))
        assert "Memory hierarchy" in out and "Compute organization" in out
