"""Finding profiles: by name and path, --hardware-dir and $DNNMAP_HARDWARE_DIR, one file per name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from dnnmap.errors import HardwareProfileError, UnknownNameError
from dnnmap.hardware import ENV_VAR, SHIPPED_DIR, list_profiles, load_profile, profile_names


def _device(directory: Path, name: str, file: str | None = None) -> Path:
    data = yaml.safe_load((SHIPPED_DIR / "l4.yaml").read_text())
    data["name"] = name
    path = directory / (file or f"{name}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError) as e:
        load_profile("h100-sxm")
    assert "h100-sxm5" in e.value.suggestions
    assert "unknown hardware 'h100-sxm'" in str(e.value)


def test_hardware_dir_adds_a_device(tmp_path: Path) -> None:
    _device(tmp_path, "my-l4")
    assert "my-l4" not in profile_names()
    assert load_profile("my-l4", extra_dirs=[tmp_path]).name == "my-l4"
    assert "my-l4" in {p.name for p in list_profiles([tmp_path])}


def test_env_var_adds_devices_from_several_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _device(a, "dev-a")
    _device(b, "dev-b")
    monkeypatch.setenv(ENV_VAR, os.pathsep.join([str(a), str(b)]))
    assert {"dev-a", "dev-b"} <= set(profile_names())
    assert load_profile("dev-b").name == "dev-b"


def test_same_name_twice_is_an_error_naming_both_files(tmp_path: Path) -> None:
    _device(tmp_path, "h100-sxm5", file="my-h100.yaml")
    with pytest.raises(HardwareProfileError) as e:
        load_profile("l4", extra_dirs=[tmp_path])
    msg = str(e.value)
    assert "'h100-sxm5' is defined twice" in msg
    assert "my-h100.yaml" in msg and str(SHIPPED_DIR / "h100-sxm5.yaml") in msg


def test_same_directory_via_flag_and_env_is_not_a_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _device(tmp_path, "dev-x")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert load_profile("dev-x", extra_dirs=[tmp_path]).name == "dev-x"


def test_load_by_path(tmp_path: Path) -> None:
    path = _device(tmp_path, "by-path", file="anything.yaml")
    assert load_profile(str(path)).name == "by-path"


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareProfileError, match="does not exist"):
        profile_names([tmp_path / "nope"])


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareProfileError, match="no such hardware profile file"):
        load_profile(str(tmp_path / "nope.yaml"))


def test_file_without_name_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("display_name: x\n")
    with pytest.raises(HardwareProfileError, match=r"x.yaml: name: missing"):
        profile_names([tmp_path])


def test_edited_file_is_reloaded(tmp_path: Path) -> None:
    path = _device(tmp_path, "edited")
    assert load_profile(str(path)).kernel_launch_us == 4
    text = path.read_text().replace("kernel_launch_us: 4", "kernel_launch_us: 7.5")
    path.write_text(text)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load_profile(str(path)).kernel_launch_us == 7.5


def test_list_is_ordered_by_class_then_name() -> None:
    classes = [p.device_class.value for p in list_profiles()]
    order = ["cpu", "gpu", "tpu", "kpu"]
    assert classes == sorted(classes, key=order.index)
