"""Hardware YAML as an attacker or a tired typist writes it: every number strict and bounded,
and a huge file refused before it is parsed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from dnnmap.errors import HardwareProfileError
from dnnmap.hardware import SHIPPED_DIR
from dnnmap.hardware.loader import MAX_YAML_BYTES, load_file

BASE = yaml.safe_load((SHIPPED_DIR / "h100-sxm5.yaml").read_text())

# (dotted field, bad value): booleans YAML produces from `true`/`yes`, absurd magnitudes, strings
BAD = [
    ("peak_tflops.fp32", True),
    ("peak_tflops.fp32", False),
    ("peak_tflops.fp32", 1e30),
    ("peak_tflops.fp32", "67"),
    ("peak_tflops.fp32", float("inf")),
    ("vector_peak_tflops.fp32", 1e16),
    ("kernel_launch_us", True),
    ("kernel_launch_us", 1e20),
    ("power.tdp_w", True),
    ("memory.0.bandwidth_gbps", 1e30),
    ("memory.0.capacity_bytes", True),
    ("memory.0.capacity_bytes", 10**30),
    ("memory.0.efficiency", True),
    ("gpu.sms", True),
    ("gpu.sms", 10**20),
    ("energy_pj_per_flop.fp32", True),
]


def _set(data: dict, dotted: str, value: object) -> dict:
    import copy

    data = copy.deepcopy(data)
    *path, last = dotted.split(".")
    node = data
    for p in path:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return data


def test_the_shipped_profile_loads(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text(yaml.safe_dump(BASE))
    assert load_file(p).name == BASE["name"]


@pytest.mark.parametrize(("field", "value"), BAD)
def test_bad_numbers_are_refused_naming_file_and_field(field: str, value: object, tmp_path: Path) -> None:
    p = tmp_path / "bad[1].yaml"
    p.write_text(yaml.safe_dump(_set(BASE, field, value)))
    with pytest.raises(HardwareProfileError) as e:
        load_file(p)
    assert str(p) in str(e.value) and field in str(e.value), str(e.value)


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    p = tmp_path / "huge.yaml"
    with p.open("w") as f:
        f.write(yaml.safe_dump(BASE))
        f.write("# " + "x" * 100 + "\n" * 1)
        f.write(("# padding\n" * 20_000) * 6)
    assert p.stat().st_size > MAX_YAML_BYTES
    t0 = time.perf_counter()
    with pytest.raises(HardwareProfileError, match=r"huge\.yaml.*larger than"):
        load_file(p)
    assert time.perf_counter() - t0 < 1.0


def test_cli_says_it_as_a_user_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dnnmap.cli.main import app

    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(_set(BASE, "peak_tflops.fp32", True)))
    res = CliRunner().invoke(app, ["hardware", "show", str(p)])
    assert res.exit_code == 2 and "peak_tflops.fp32" in res.stderr and "Traceback" not in res.output
