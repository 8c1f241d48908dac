"""Load-time checks: strict keys, units, sources, order, calibration bounds; errors name file and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnnmap.errors import HardwareProfileError
from dnnmap.hardware import SHIPPED_DIR, HardwareProfile, Precision, load_file
from dnnmap.hardware.interp import gemm_tflops
from dnnmap.ir import DType


def _base(name: str = "h100-sxm5") -> dict[str, Any]:
    return yaml.safe_load((SHIPPED_DIR / f"{name}.yaml").read_text())


def _write(tmp_path: Path, data: dict[str, Any], file: str = "h100.yaml") -> Path:
    path = tmp_path / file
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _error(tmp_path: Path, data: dict[str, Any], file: str = "h100.yaml") -> str:
    with pytest.raises(HardwareProfileError) as e:
        load_file(_write(tmp_path, data, file))
    return str(e.value)


def test_valid_copy_loads(tmp_path: Path) -> None:
    assert load_file(_write(tmp_path, _base())).gpu.sms == 132


def test_unknown_key_rejected_naming_file_and_field(tmp_path: Path) -> None:
    data = _base()
    data["gpu"]["tensor_core_count"] = 528
    msg = _error(tmp_path, data)
    assert "h100.yaml: gpu.tensor_core_count: Extra inputs are not permitted" in msg


def test_unknown_top_level_key_rejected(tmp_path: Path) -> None:
    data = _base()
    data["bandwith_gbps"] = 3350  # LLM-Viewer's typo, caught
    assert "h100.yaml: bandwith_gbps: Extra inputs are not permitted" in _error(tmp_path, data)


def test_non_positive_peak_rejected(tmp_path: Path) -> None:
    data = _base()
    data["peak_tflops"]["bf16"] = 0
    assert "h100.yaml: peak_tflops.bf16: Input should be greater than 0" in _error(tmp_path, data)


def test_unknown_precision_key_rejected(tmp_path: Path) -> None:
    data = _base()
    data["peak_tflops"]["bf17"] = 1.0
    assert "peak_tflops.bf17" in _error(tmp_path, data)


def test_missing_source_rejected(tmp_path: Path) -> None:
    data = _base()
    del data["sources"]["power.idle_w"]
    assert "no source for power.idle_w" in _error(tmp_path, data)


def test_parent_source_covers_children_and_child_overrides(tmp_path: Path) -> None:
    p = load_file(_write(tmp_path, _base()))
    assert p.source("peak_tflops.bf16") == p.sources["peak_tflops"]
    assert p.source("memory.hbm.bandwidth_gbps") == "H100 datasheet: 3.35 TB/s"
    assert p.source("nonexistent.path") is None


def test_source_for_a_field_that_does_not_exist_rejected(tmp_path: Path) -> None:
    data = _base()
    data["sources"]["memory.hbm3.bandwidth_gbps"] = "stale"
    assert "entries for fields that do not exist: memory.hbm3.bandwidth_gbps" in _error(tmp_path, data)


def test_memory_levels_must_grow_in_capacity(tmp_path: Path) -> None:
    data = _base()
    data["memory"][1]["capacity_bytes"] = 1024  # l2 (1 KiB) smaller than 132 x 256 KiB of l1
    assert "memory.1: l2 total capacity 1024 B is not larger" in _error(tmp_path, data)


def test_farther_memory_level_must_not_be_faster(tmp_path: Path) -> None:
    data = _base()
    data["memory"][2]["bandwidth_gbps"] = 20000  # hbm faster than l2
    assert "memory.2: hbm bandwidth 20000.0 GB/s exceeds l2's" in _error(tmp_path, data)


def test_class_section_must_match_device_class(tmp_path: Path) -> None:
    data = _base()
    data["device_class"] = "tpu"
    assert "device_class 'tpu' needs exactly the section 'tpu'" in _error(tmp_path, data)


def test_kpu_scratchpad_must_agree_with_memory_level(tmp_path: Path) -> None:
    data = _base("kpu-t2")
    data["kpu"]["scratchpad_per_tile_bytes"] = 128 * 1024
    assert "scratchpad_per_tile_bytes must equal" in _error(tmp_path, data, "kpu.yaml")


def test_idle_power_below_tdp(tmp_path: Path) -> None:
    data = _base()
    data["power"]["idle_w"] = 800
    assert "power: idle_w (800.0) must be below tdp_w (700.0)" in _error(tmp_path, data)


def test_duplicate_yaml_key_rejected(tmp_path: Path) -> None:
    text = (SHIPPED_DIR / "h100-sxm5.yaml").read_text().replace(
        "kernel_launch_us: 4\n", "kernel_launch_us: 4\nkernel_launch_us: 9\n")
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(HardwareProfileError, match="dup.yaml: not valid YAML.*duplicate key 'kernel_launch_us'"):
        load_file(path)


def test_profiles_are_frozen() -> None:
    p = HardwareProfile.model_validate(_base())
    with pytest.raises(Exception, match="frozen"):
        p.kernel_launch_us = 1.0  # type: ignore[misc]


def _calibrated(achieved_tflops: float) -> dict[str, Any]:
    data = copy.deepcopy(_base("cloud-x86-2c"))
    data["name"] = "cloud-x86-2c-calibrated"
    data["provenance"] = "calibrated"
    data["calibration"] = {
        "meta": {"machine": "AMD EPYC", "device": "cpu", "date": "2025-01-01T00:00:00Z",
                 "library_versions": {"torch": "2.x"}},
        "gemm": {"fp32": [{"flops": 2 * 64**3, "achieved_tflops": 0.02},
                          {"flops": 2 * 1024**3, "achieved_tflops": achieved_tflops}]},
    }
    data["sources"]["calibration"] = "measured: dnnmap calibrate --quick"
    return data


def test_calibration_section_loads_and_interpolates(tmp_path: Path) -> None:
    p = load_file(_write(tmp_path, _calibrated(0.18)))
    # in log-size, 64^3 -> 512^3 spans 3*log(8) = 9*log(2) of the 3*log(16) = 12*log(2) table:
    # weight 9 / 12 = 0.75
    assert gemm_tflops(p.calibration, Precision.FP32, 2 * 512**3) == pytest.approx(0.02 + 0.75 * (0.18 - 0.02))


def test_calibration_above_peak_rejected(tmp_path: Path) -> None:
    msg = _error(tmp_path, _calibrated(0.5), "cal.yaml")  # peak fp32 is 0.2176
    assert "calibration.gemm.fp32: achieved 0.5 TFLOPS exceeds peak 0.2176" in msg


def test_calibrated_provenance_needs_calibration(tmp_path: Path) -> None:
    data = _base("cloud-x86-2c")
    data["provenance"] = "calibrated"
    assert "calibrated profiles need a calibration section" in _error(tmp_path, data, "c.yaml")


def test_calibration_table_must_be_sorted(tmp_path: Path) -> None:
    data = _calibrated(0.18)
    data["calibration"]["gemm"]["fp32"].reverse()
    assert "gemm.fp32: points must be sorted by strictly increasing flops" in _error(tmp_path, data, "c.yaml")


def test_precision_from_dtype_and_parse() -> None:
    assert Precision.from_dtype(DType.BFLOAT16) is Precision.BF16
    assert Precision.from_dtype(DType.INT64) is None
    assert Precision.parse("TF32") is Precision.TF32
    assert Precision.TF32.bytes_per_element == 4 and Precision.INT8.bytes_per_element == 1


def test_dumped_profile_reloads_unchanged() -> None:
    """What `dnnmap calibrate` writes (a full dump, defaults included) must load again."""
    p = HardwareProfile.model_validate(_base("i7-12700k"))
    dumped = yaml.safe_load(yaml.safe_dump(p.model_dump(mode="json", exclude_none=True)))
    assert dumped["memory"][2]["instances"] == 1  # a default, written out, needing no source
    assert HardwareProfile.model_validate(dumped) == p
