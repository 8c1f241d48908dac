"""Output that fits: 100-column tables that cut no name or number, explanations behind
--explain, every JSON result stamped and matching its documented layout (``dnnmap schema``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app
from dnnmap.report.schemas import model_for

TINY = """import torch


def build():
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
"""
WIDE_NAMES = ["jetson-agx-orin", "a100-sxm4-80gb", "cloud-x86-2c", "h100-sxm5", "kpu-t100", "tpu-v5e"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("m")
    (d / "tiny.py").write_text(TINY)
    return f"{d / 'tiny.py'}:build"


@pytest.fixture(autouse=True)
def terminal_100_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's console as a 100-column terminal (its width is fixed when it is created)."""
    from dnnmap.cli import common

    monkeypatch.setattr(common.console, "width", 100)


def run(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_analyze_fits_100_columns_and_explains_on_request(model: str, tmp_path: Path) -> None:
    out = run("analyze", model, "--input-shape", "64", "-H", "h100-sxm5", "--mode", "eager", "--json", str(tmp_path / "a.json"))
    assert widest(out) <= 100 and " why " not in out.splitlines()[2]
    explained = run("analyze", model, "--input-shape", "64", "-H", "h100-sxm5", "--mode", "eager", "--explain")
    assert widest(explained) <= 100 and "why (per subgraph)" in explained
    data = json.loads((tmp_path / "a.json").read_text())
    assert all(s["explanation"] for s in data["subgraphs"])  # always in the JSON
    assert model_for("analyze").model_validate(data).summary.device == "h100-sxm5"


def test_compare_cuts_no_device_name_or_number(model: str, tmp_path: Path) -> None:
    out = run("compare", model, "--input-shape", "64", "-H", ",".join(WIDE_NAMES), "--baseline", "cloud-x86-2c",
              "--json", str(tmp_path / "c.json"), "--csv", str(tmp_path / "c.csv"))
    assert widest(out) <= 100 and "…" not in out
    data = json.loads((tmp_path / "c.json").read_text())
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in WIDE_NAMES}
    assert sorted(rows) == sorted(WIDE_NAMES)
    for d in data["devices"]:
        assert f"{d['speedup_vs_baseline']:,.2f}x" in rows[d["device"]]
    assert model_for("compare").model_validate(data).baseline == "cloud-x86-2c"
    other = tmp_path / "c2.csv"
    run("compare", model, "--input-shape", "64", "-H", ",".join(WIDE_NAMES), "--baseline", "h100-sxm5", "--csv", str(other))
    assert list(pd.read_csv(tmp_path / "c.csv").columns) == list(pd.read_csv(other).columns)
    assert "speedup_vs_baseline" in pd.read_csv(other).columns


@pytest.mark.parametrize("cmd", [["count"], ["partition"], ["analyze", "-H", "l4"], ["compare", "-H", "l4,t4"]])
def test_every_json_result_is_stamped(model: str, tmp_path: Path, cmd: list[str]) -> None:
    out = tmp_path / "r.json"
    run(cmd[0], model, "--input-shape", "64", *cmd[1:], "--json", str(out))
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["kind"] == cmd[0] and data["dnnmap_version"]
    assert list(data)[:3] == ["schema_version", "kind", "dnnmap_version"]


@pytest.mark.parametrize("kind", ["analyze", "compare", "count", "generate", "partition", "sweep", "train", "validate",
                                  "validate-measurements"])
def test_schema_prints_a_json_schema(kind: str) -> None:
    schema = json.loads(run("schema", kind))
    assert schema["$schema"].endswith("2020-12/schema") and schema["type"] == "object"
    assert {"schema_version", "kind", "dnnmap_version"} <= set(schema["required"])


def test_schema_of_an_unknown_kind() -> None:
    r = CliRunner().invoke(app, ["schema", "analyse"])
    assert r.exit_code == 2 and "Did you mean: analyze" in r.output


def test_the_sweep_json_matches_its_schema(model: str, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    run("sweep", model, "--input-shape", "64", "-H", "l4", "--workers", "0", "--no-cache", "--json", str(out))
    doc = model_for("sweep").model_validate(json.loads(out.read_text()))
    assert doc.stats.cases == 1 and doc.rows[0].device == "l4"


LLM = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
       "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
       "max_position_embeddings": 512, "tie_word_embeddings": False}


@pytest.mark.parametrize("kind", ["count", "partition", "generate", "train", "validate", "validate-measurements"])
def test_every_json_result_matches_its_schema(model: str, tmp_path: Path, kind: str) -> None:
    """Real output of each command validated against the layout ``dnnmap schema KIND`` prints."""
    llm = tmp_path / "llm.json"
    llm.write_text(json.dumps(LLM))
    args = {
        "count": ["count", model, "--input-shape", "64"],
        "partition": ["partition", model, "--input-shape", "64"],
        "generate": ["generate", f"hf:{llm}", "-H", "h100-sxm5", "--prompt", "8", "--gen", "4", "--batch", "1,2"],
        "train": ["train", f"hf:{llm}", "-H", "h100-sxm5", "--seq-len", "16", "--batch", "2"],
        "validate": ["validate", model, "--input-shape", "64", "-H", "cloud-x86-2c", "--runs", "1", "--min-seconds", "0"],
    }
    if kind == "validate-measurements":
        from test_validate_published import write_case

        args[kind] = ["validate", "--measurements", str(write_case(tmp_path))]
    out = tmp_path / "r.json"
    run(*args[kind], "--json", str(out))
    data = json.loads(out.read_text())
    assert data["kind"] == kind
    doc = model_for(kind).model_validate(data)
    if kind == "train":
        assert len(doc.results) == 1 and doc.results[0].plan is None  # one device: a list of one
    if kind == "generate":
        assert [r.batch for r in doc.rows] == [1, 2]


def test_train_json_on_many_devices_has_exactly_the_schema_fields(tmp_path: Path) -> None:
    """Records allow extra keys, so validation alone misses a field the schema forgot: compare key sets."""
    from dnnmap.report.schemas import TrainStep

    out = tmp_path / "t.json"
    run("train", "hf:tiny-moe", "-H", "h100-sxm5", "--seq-len", "16", "--batch", "4", "--precision", "bf16",
        "--devices", "4", "--tp", "2", "--ep", "2", "--json", str(out))
    row = json.loads(out.read_text())["results"][0]
    assert set(row) == set(TrainStep.model_fields)
    assert row["plan"] and row["all_to_alls"] > 0 and row["ep_comm_ms"] > 0

