"""User text reaches the terminal as written, and every failure is classified.

- Every user-supplied string (model names, paths, messages) containing rich markup or emoji
  codes prints literally: the consoles never read markup or emoji.
- Every mistake a user can make is a DnnmapError: exit 2, one message naming the model /
  file / field, no traceback, no "please report"; ``--debug`` shows the traceback. Only a
  bug of dnnmap's is an internal error (exit 1, "please report it").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app

runner = CliRunner()

NASTY = ["foo[/]", "[bold]x[/bold]", ":factory:", "[red]r", "a[/b]c", ":thumbs_up: [link=x]y[/link]"]

_MODELS = """
import torch
from torch import nn
from mylayers import Block  # a module beside this file


def good():
    return Block()


def with_inputs():
    return Block(), (torch.randn(4, 8),)


def raises():
    raise ValueError("bad width [/] :factory:")


def returns_none():
    return None


def returns_int():
    return 3


def returns_triple():
    return Block(), (torch.randn(4, 8),), 1


def item_branch():
    class M(nn.Module):
        def forward(self, x):
            if x.sum().item() > 0:
                return x * 2
            return x - 1

    return M(), (torch.randn(2, 3),)
"""

_LAYERS = """
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        return self.lin(x).relu()
"""


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "models.py").write_text(_MODELS)
    (d / "mylayers.py").write_text(_LAYERS)
    return d / "models.py"


def _user_error(res, *must_name: str) -> None:  # noqa: ANN001
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "please report" not in res.output
    assert res.stderr.startswith("error: "), res.stderr
    for name in must_name:
        assert name in res.stderr, (name, res.stderr)


# -- text reaches the terminal as written ---------------------------------------------------------
@pytest.mark.parametrize("name", NASTY)
def test_model_names_with_markup_print_literally(name: str) -> None:
    _user_error(runner.invoke(app, ["count", name]), repr(name))


@pytest.mark.parametrize("name", NASTY)
def test_paths_with_markup_print_literally(name: str, models: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{name.replace('/', '_')}.json"
    res = runner.invoke(app, ["count", f"{models}:good", "--input-shape", "8", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stderr


@pytest.mark.parametrize("spec", ["hf:foo[/].json", "nope[/]/x.py:f", "hf:{d}/[b]/"])
def test_file_names_in_errors_print_literally(spec: str, tmp_path: Path) -> None:
    spec = spec.format(d=tmp_path)
    res = runner.invoke(app, ["count", spec])
    _user_error(res)
    assert "[/]" in res.stderr or "[b]" in res.stderr


def test_messages_with_markup_and_emoji_codes_print_literally(models: Path) -> None:
    res = runner.invoke(app, ["count", f"{models}:raises"])
    _user_error(res, "bad width [/] :factory:", "models.py:raises")


def test_hardware_names_with_markup(tmp_path: Path) -> None:
    _user_error(runner.invoke(app, ["hardware", "show", "h100[/]"]), "h100[/]")


# -- user mistakes are DnnmapErrors ---------------------------------------------------------------
@pytest.mark.parametrize(("factory", "says"), [
    ("raises", "the factory raised ValueError"),
    ("returns_none", "returned NoneType"),
    ("returns_int", "returned int"),
    ("returns_triple", "returned a 3-tuple"),
    ("missing", "unknown factory"),
])
def test_bad_factories_are_user_errors(factory: str, says: str, models: Path) -> None:
    _user_error(runner.invoke(app, ["count", f"{models}:{factory}", "--input-shape", "8"]), says)


def test_a_raising_factory_is_called_once(tmp_path: Path) -> None:
    p = tmp_path / "m.py"
    p.write_text("CALLS = []\ndef f():\n    CALLS.append(1)\n    raise RuntimeError(f'call {len(CALLS)}')\n")
    res = runner.invoke(app, ["count", f"{p}:f", "--input-shape", "8"])
    _user_error(res, "call 1")


def test_module_beside_the_user_file_imports_from_the_cli_and_the_api(models: Path) -> None:
    import sys

    import dnnmap

    before = list(sys.path)
    res = runner.invoke(app, ["count", f"{models}:good", "--input-shape", "8"])
    assert res.exit_code == 0, res.output
    assert dnnmap.count(f"{models}:good", input_shape="8").totals()["flops"] > 0
    assert sys.path == before  # the folder is on the path only while loading


@pytest.mark.parametrize(("config", "says"), [
    ([1, 2], "not a usable Hugging Face config"),
    ({"model_type": "gpt2", "n_embd": 10, "n_head": 3, "n_layer": 1, "vocab_size": 60000}, "hf:"),
    ({"model_type": "bert", "hidden_size": -4}, "hf:"),
    ({"no_model_type": 1}, "model_type"),
])
def test_bad_hf_configs_are_user_errors(config: object, says: str, tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(config))
    _user_error(runner.invoke(app, ["count", f"hf:{p}", "--seq-len", "8"]), says)


def test_unknown_model_points_to_the_model_list() -> None:
    _user_error(runner.invoke(app, ["count", "resnet1888"]), "resnet18", "dnnmap models")


# -- shapes: sequence length, batch, vision --------------------------------------------------------
@pytest.mark.parametrize(("model", "seq", "limit"), [
    ("hf:gpt2", 2048, "1,024"), ("hf:gpt2", 10**6, "1,024"), ("hf:bert-base-uncased", 1024, "512"),
])
def test_seq_len_beyond_the_positions_names_model_limit_and_value(model: str, seq: int, limit: str) -> None:
    res = runner.invoke(app, ["count", model, "--seq-len", str(seq)])
    _user_error(res, model, limit, f"{seq:,}", "max_position_embeddings")


def test_seq_len_on_a_vision_model_is_refused() -> None:
    _user_error(runner.invoke(app, ["count", "resnet18", "--seq-len", "128"]), "resnet18", "--seq-len")


def test_batch_cannot_silently_change_a_factorys_own_inputs(models: Path) -> None:
    _user_error(runner.invoke(app, ["count", f"{models}:with_inputs", "--batch", "8"]), "batch 4", "--batch 8")
    ok = runner.invoke(app, ["count", f"{models}:with_inputs", "--json", "-"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["meta"]["batch"] == 4
    same = runner.invoke(app, ["count", f"{models}:with_inputs", "--batch", "4"])
    assert same.exit_code == 0, same.output


def test_assumed_values_are_one_short_readable_line(models: Path) -> None:
    res = runner.invoke(app, ["count", f"{models}:item_branch"])
    assert res.exit_code == 0, res.output
    lines = [ln.strip() for ln in res.stdout.splitlines() if "assumed" in ln or "capture path" in ln]
    assert any("item() in M taken as 1.0" in ln for ln in lines), lines
    assert all(len(ln) <= 120 and "GuardOnDataDependent" not in ln for ln in lines), lines
    data = json.loads(runner.invoke(app, ["count", f"{models}:item_branch", "--json", "-"]).stdout)
    assert "GuardOnDataDependent" in data["meta"]["fallback_reason"]  # the whole story stays in JSON


# -- internal errors stay internal; --debug shows both -----------------------------------------
def test_internal_errors_say_so_and_debug_shows_tracebacks(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dnnmap.api

    def boom(*a: object, **k: object) -> None:
        raise KeyError("a bug [/]")

    monkeypatch.setattr(dnnmap.api, "count", boom)
    res = runner.invoke(app, ["count", "resnet18"])
    assert res.exit_code == 1 and "internal error: KeyError" in res.stderr and "please report" in res.stderr
    assert "[/]" in res.stderr
    res = runner.invoke(app, ["--debug", "count", "resnet18"])
    assert isinstance(res.exception, KeyError)
    monkeypatch.undo()
    res = runner.invoke(app, ["--debug", "count", f"{models}:raises"])
    from dnnmap.errors import DnnmapError

    assert isinstance(res.exception, DnnmapError)


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("dnnmap ")
