"""``dnnmap sweep``: the table, the cache (resume without recomputing), Ray = local pool, bad input."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app
from dnnmap.sweep import (
    SweepCache,
    SweepFileError,
    SweepSpec,
    load_sweep_file,
    plan,
    run_sweep,
    to_csv,
)
from dnnmap.sweep.table import CASE_COLUMNS, METRIC_COLUMNS

TINY = """import torch


def build():
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> str:
    (tmp_path / "tiny.py").write_text(TINY)
    return f"{tmp_path / 'tiny.py'}:build"


def spec(model: str, **kw) -> SweepSpec:
    base = dict(models=[model], devices=["l4", "i7-12700k"], batch=[1, 4], precision=["bf16", "fp32"],
                mode=["eager", "compiled"], input_shape="64")
    return SweepSpec(**{**base, **kw})


def test_one_row_per_case_one_capture_per_shape_and_strategy(tiny: str, tmp_path: Path) -> None:
    res = run_sweep(spec(tiny), cache=tmp_path / "cache", workers=0)
    # 2 batches x 2 modes x 2 precisions x 2 devices; eager and compiled fuse differently
    assert res.cases == len(res.rows) == 2 * 2 * 2 * 2
    assert res.captures == res.groups == 2 * 2  # (batch) x (unfused, compiler)
    df = res.frame
    assert list(df.columns[: len(CASE_COLUMNS)]) == list(CASE_COLUMNS)
    assert set(METRIC_COLUMNS) <= set(df.columns)
    assert df["error"].isna().all() and (df["latency_s"] > 0).all()
    assert set(df["provenance"]) == {"theoretical"} and df["estimated_share"].between(0, 1).all()
    assert df["dnnmap_version"].notna().all() and df["case_key"].nunique() == len(df)


def test_columns_do_not_depend_on_the_devices(tiny: str) -> None:
    gpu = run_sweep(spec(tiny, devices=["l4"], batch=[1], mode=["compiled"]), cache=None, workers=0).frame
    cpu = run_sweep(spec(tiny, devices=["tpu-v5e"], batch=[1], mode=["compiled"]), cache=None, workers=0).frame
    assert list(gpu.columns) == list(cpu.columns)
    assert to_csv(gpu).splitlines()[0] == to_csv(cpu).splitlines()[0]


def test_an_interrupted_sweep_resumes_without_recomputing(tiny: str, tmp_path: Path) -> None:
    cache = SweepCache(tmp_path / "cache")
    s = spec(tiny)
    seen: list[int] = []

    def interrupt(done: int, total: int) -> None:
        seen.append(done)
        if 0 < done < total:
            raise KeyboardInterrupt  # Ctrl-C after the first group's results arrived

    with pytest.raises(KeyboardInterrupt):
        run_sweep(s, cache=cache, workers=0, progress=interrupt)
    first = seen[-1]
    assert 0 < first < 16
    again = run_sweep(s, cache=cache, workers=0)
    assert (again.cached, again.computed) == (first, 16 - first)  # only what was missing
    assert again.captures == 4 - 1
    third = run_sweep(s, cache=cache, workers=0)
    assert (third.cached, third.computed, third.captures) == (16, 0, 0)
    assert to_csv(third.frame) == to_csv(again.frame)


def test_a_changed_profile_misses_the_cache(tiny: str, tmp_path: Path) -> None:
    from dnnmap.hardware.loader import SHIPPED_DIR

    hw = tmp_path / "hw"
    hw.mkdir()
    data = (SHIPPED_DIR / "l4.yaml").read_text().replace("name: l4", "name: my-l4", 1)
    (hw / "my-l4.yaml").write_text(data)
    s = spec(tiny, devices=["my-l4"], batch=[1], mode=["compiled"], precision=["fp32"], hardware_dirs=[str(hw)])
    cache = tmp_path / "cache"
    assert run_sweep(s, cache=cache, workers=0).computed == 1
    assert run_sweep(s, cache=cache, workers=0).computed == 0
    (hw / "my-l4.yaml").write_text(data.replace("kernel_launch_us: ", "kernel_launch_us: 1", 1))
    assert run_sweep(s, cache=cache, workers=0).computed == 1


SWEEP_FILE = """# a sweep
models:
  - {model}
  - resnet18
  - not-a-model
devices: [l4, i7-12700k]
batch: [1, 4]
"""


@pytest.mark.parametrize(("text", "message"), [
    (SWEEP_FILE, ":5: models[2]: unknown model 'not-a-model'"),
    (SWEEP_FILE.replace("  - not-a-model\n", "").replace("[l4, i7-12700k]", "\n  - l4\n  - h100-sxm9"),
     ":7: devices[1]: unknown hardware 'h100-sxm9'"),
    (SWEEP_FILE.replace("  - not-a-model\n", "").replace("[1, 4]", "[1, 0]"), ":6: batch: Value error, every batch"),
    (SWEEP_FILE.replace("  - not-a-model\n", "") + "batches: [2]\n", ":7: batches: Extra inputs"),
    ("models: [resnet18]\ndevices: [l4]\nprecision: [fp12]\n", "unknown precision 'fp12'"),
    ("models: [resnet18\n", ":2: not valid YAML"),
    ("- resnet18\n", "a sweep file is a mapping"),
])
def test_bad_sweep_files_name_the_line(tiny: str, tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "sweep.yaml"
    f.write_text(text.format(model=tiny))
    with pytest.raises(SweepFileError, match=None) as e:
        spec_, lines = load_sweep_file(f)
        plan(spec_, lines, where=str(f))
    assert message in str(e.value), str(e.value)
    r = CliRunner().invoke(app, ["sweep", "--file", str(f), "--no-cache"])
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output


def test_cli_writes_csv_parquet_json_and_plots(tiny: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["sweep", tiny, "--input-shape", "64", "-H", "l4,i7-12700k", "-b", "1,4", "-p", "bf16",
            "--workers", "0", "--cache", str(tmp_path / "cache"), "--csv", str(out / "s.csv"),
            "--parquet", str(out / "s.parquet"), "--json", str(out / "s.json"), "--plot", str(out / "plots")]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(out / "s.csv")
    pq = pd.read_parquet(out / "s.parquet")
    assert len(csv) == len(pq) == 2 * 2 and list(csv.columns) == list(pq.columns)
    doc = json.loads((out / "s.json").read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "sweep" and len(doc["rows"]) == 4
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["sweep-tiny-build.png", "sweep-tiny-build.svg"]
    assert "4 cases: 0 from the cache, 4 computed" in r.output
    r = CliRunner().invoke(app, args, env={"COLUMNS": "100"})  # outputs exist: refused before any work
    assert r.exit_code == 2 and "exists" in r.output
    r = CliRunner().invoke(app, [*args, "--force"], env={"COLUMNS": "100"})
    assert r.exit_code == 0 and "4 cases: 4 from the cache, 0 computed" in r.output


def test_a_plot_dir_that_cannot_be_written(tiny: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(app, ["sweep", tiny, "--input-shape", "64", "-H", "l4", "--no-cache", "--workers", "0",
                                 "--plot", str(tmp_path / "afile")])
    assert r.exit_code == 2 and "is a file, not a directory" in r.output


@pytest.mark.parametrize(("address", "message"), [("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
                                                  ("nohost", "give HOST:PORT")])
def test_an_unreachable_ray_address_fails_fast(tiny: str, address: str, message: str) -> None:
    pytest.importorskip("ray")
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["sweep", tiny, "--input-shape", "64", "-H", "l4", "--no-cache", "--ray", address])
    assert r.exit_code == 2 and message in r.output, r.output
    assert time.perf_counter() - t0 < 30


def test_ray_gives_byte_identical_results_to_the_local_pool(tiny: str, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    common = ["sweep", tiny, "--input-shape", "64", "-H", "l4,h100-sxm5,i7-12700k", "-b", "1,8", "-p", "bf16,fp32",
              "-m", "eager,compiled", "--no-cache"]
    files = {}
    for name, extra in (("pool", ["--workers", "2"]), ("ray", ["--ray"])):
        csv, pq = tmp_path / f"{name}.csv", tmp_path / f"{name}.parquet"
        r = CliRunner().invoke(app, [*common, *extra, "--csv", str(csv), "--parquet", str(pq)])
        assert r.exit_code == 0, r.output
        assert ("ray (local)" if name == "ray" else "local pool (2 processes)") in r.output
        files[name] = (csv.read_bytes(), pq.read_bytes())
    assert files["ray"][0] == files["pool"][0]
    assert files["ray"][1] == files["pool"][1]
    assert len(pd.read_parquet(io.BytesIO(files["ray"][1]))) == 3 * 2 * 2 * 2


def test_a_sweep_file_runs_like_the_options(tiny: str, tmp_path: Path) -> None:
    f = tmp_path / "sweep.yaml"
    f.write_text(f"models: [{tiny}]\ndevices: [l4, tpu-v5e]\nbatch: 8\nprecision: [bf16, int8]\ninput_shape: '64'\n")
    out = tmp_path / "s.csv"
    r = CliRunner().invoke(app, ["sweep", "--file", str(f), "--no-cache", "--workers", "0", "--csv", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert len(df) == 2 * 2 and set(df["device"]) == {"l4", "tpu-v5e"} and set(df["batch"]) == {8}
    r = CliRunner().invoke(app, ["sweep", tiny, "--file", str(f)])
    assert r.exit_code == 2 and "not both" in r.output


def test_relative_paths_in_a_sweep_file_mean_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """models/tiny.py:build in conf/sweep.yaml is conf/models/tiny.py, wherever dnnmap runs from."""
    conf = tmp_path / "conf"
    (conf / "models").mkdir(parents=True)
    (conf / "models" / "tiny.py").write_text(TINY)
    f = conf / "sweep.yaml"
    f.write_text("models: [models/tiny.py:build]\ndevices: [l4]\ninput_shape: '64'\nhardware_dirs: [hw]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec_, _ = load_sweep_file(Path("..") / "conf" / "sweep.yaml")
    assert spec_.models == [f"{conf.resolve() / 'models' / 'tiny.py'}:build"]
    assert spec_.hardware_dirs == [str(conf.resolve() / "hw")]
    (conf / "hw").mkdir()
    out = elsewhere / "s.csv"
    r = CliRunner().invoke(app, ["sweep", "--file", "../conf/sweep.yaml", "--no-cache", "--workers", "0",
                                 "--csv", str(out)])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out)) == 1
