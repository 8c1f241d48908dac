"""Every output of every command goes through one safe writer (dnnmap.outputs).

Tried against an existing file, a directory, a path through a file, the same path twice, two
outputs on stdout, and bracketed names: nothing is overwritten without --force, the path named
in the message is the one on disk, the exit code is 2, and nothing is left half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app
from dnnmap.outputs import OutputFileError, check_writable, to_json, write_files

runner = CliRunner()

_MODEL = """
import torch
from torch import nn

def tiny():
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU())
"""


@pytest.fixture()
def model(tmp_path: Path) -> list[str]:
    p = tmp_path / "tiny_model.py"
    p.write_text(_MODEL)
    return [f"{p}:tiny", "--input-shape", "8"]


def _commands(model: list[str]) -> dict[str, list[str]]:
    """Each command that writes files, with the options naming them."""
    return {
        "count": ["count", *model],
        "partition": ["partition", *model],
        "analyze": ["analyze", *model, "--hardware", "cloud-x86-2c"],
        "compare": ["compare", *model, "--hardware", "cloud-x86-2c,h100-sxm5"],
        "hardware show": ["hardware", "show", "h100-sxm5"],
    }


_OPTIONS = {
    "count": ("--json", "--csv"),
    "partition": ("--json", "--dot"),
    "analyze": ("--json", "--csv"),
    "compare": ("--json", "--csv"),
    "hardware show": ("--json",),
}
CASES = [(cmd, opt) for cmd, opts in _OPTIONS.items() for opt in opts]


@pytest.mark.parametrize(("cmd", "opt"), CASES)
def test_existing_file_is_kept_without_force(cmd: str, opt: str, model: list[str], tmp_path: Path) -> None:
    target = tmp_path / "out[v2].dat"
    target.write_text("precious")
    res = runner.invoke(app, [*_commands(model)[cmd], opt, str(target)])
    assert res.exit_code == 2, res.output
    assert target.read_text() == "precious"
    assert str(target) in res.stderr and "--force" in res.stderr  # the very path, brackets kept
    assert "Traceback" not in res.output


@pytest.mark.parametrize(("cmd", "opt"), CASES)
def test_bracketed_new_path_is_written_and_named_exactly(cmd: str, opt: str, model: list[str],
                                                         tmp_path: Path) -> None:
    target = tmp_path / "we[/]ird" / "res[v2].out"
    res = runner.invoke(app, [*_commands(model)[cmd], opt, str(target)])
    assert res.exit_code == 0, res.output
    assert target.is_file()
    assert f"wrote {target}" in res.stderr.replace("\n", "")


@pytest.mark.parametrize(("cmd", "opt"), CASES)
@pytest.mark.parametrize("kind", ["directory", "through-a-file"])
def test_unwritable_paths_are_named_and_exit_2(cmd: str, opt: str, kind: str, model: list[str],
                                               tmp_path: Path) -> None:
    if kind == "directory":
        target = tmp_path / "adir"
        target.mkdir()
    else:
        (tmp_path / "plain").write_text("x")
        target = tmp_path / "plain" / "out.json"
    for force in ([], ["--force"]):
        res = runner.invoke(app, [*_commands(model)[cmd], opt, str(target), *force])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output and "please report" not in res.output
        assert str(target).split("/")[-1] in res.stderr.replace("\n", "")
    assert (tmp_path / "plain").read_text() == "x" if kind != "directory" else target.is_dir()


@pytest.mark.parametrize("cmd", ["count", "analyze"])
def test_the_same_file_twice_or_stdout_twice_is_refused_before_writing(cmd: str, model: list[str],
                                                                       tmp_path: Path) -> None:
    same = tmp_path / "x.out"
    res = runner.invoke(app, [*_commands(model)[cmd], "--json", str(same), "--csv", str(same)])
    assert res.exit_code == 2 and not same.exists(), res.output
    res = runner.invoke(app, [*_commands(model)[cmd], "--json", "-", "--csv", "-"])
    assert res.exit_code == 2 and "stdout" in res.stderr


def test_count_refuses_before_the_work(model: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dnnmap.api

    (tmp_path / "r.json").write_text("{}")
    monkeypatch.setattr(dnnmap.api, "count", lambda *a, **k: pytest.fail("captured before refusing"))
    res = runner.invoke(app, ["count", *model, "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 2


@pytest.mark.parametrize("graphviz", [False, True])
@pytest.mark.parametrize("given", ["g.dot", "g.svg"])
def test_dot_checks_exactly_the_files_it_writes(graphviz: bool, given: str, model: list[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--dot g.svg writes g.dot (and g.svg with graphviz); --dot g.dot writes g.svg too with
    graphviz. Each of those, existing, stops the run without --force."""
    import dnnmap.report.partition as rp

    fake_dot = tmp_path / "bin" / "dot"
    fake_dot.parent.mkdir()
    fake_dot.write_text("#!/bin/sh\ncat >/dev/null; echo '<svg/>'\n")
    fake_dot.chmod(0o755)
    monkeypatch.setattr(rp.shutil, "which", lambda name: str(fake_dot) if graphviz and name == "dot" else None)
    expected = {tmp_path / "g.dot", *([tmp_path / "g.svg"] if graphviz else [])}
    assert set(rp.dot_paths(tmp_path / given)) == expected
    for victim in expected:
        for f in expected:
            f.unlink(missing_ok=True)
        victim.write_text("precious")
        res = runner.invoke(app, ["partition", *model, "--dot", str(tmp_path / given)])
        assert res.exit_code == 2, res.output
        assert victim.read_text() == "precious" and str(victim) in res.stderr
        assert all(not f.exists() for f in expected - {victim})  # nothing partly written
    res = runner.invoke(app, ["partition", *model, "--dot", str(tmp_path / given), "--force"])
    assert res.exit_code == 0, res.output
    assert all(f.read_text() != "precious" for f in expected)


# -- the writer itself ---------------------------------------------------------------------------
def test_all_or_nothing_when_one_file_fails(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(OutputFileError, match="blocker"):
        write_files({tmp_path / "a.txt": "a", tmp_path / "blocker" / "b.txt": "b"}, force=False)
    assert not (tmp_path / "a.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["blocker"]  # no temporary files left behind


def test_write_failure_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputFileError, match=r"cannot write .*x\.json: No space left"):
        write_files({tmp_path / "x.json": "{}"}, force=False)
    assert os.listdir(tmp_path) == []


def test_force_overwrites_and_keeps_permissions_sane(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("old")
    write_files({p: "new"}, force=True)
    assert p.read_text() == "new" and p.stat().st_mode & 0o600 == 0o600


def test_prompt_goes_to_stderr_never_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    p = tmp_path / "x.txt"
    p.write_text("old")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty("y\n"))
    monkeypatch.setattr(sys, "stderr", Tty())
    assert check_writable([p], force=False) is True
    assert "Overwrite" in sys.stderr.getvalue() and capsys.readouterr().out == ""


def test_calibrate_writes_its_profile_through_the_same_writer(tmp_path: Path) -> None:
    from dnnmap.calibrate import write_profile
    from dnnmap.hardware import load_profile

    prof = load_profile("cloud-x86-2c")
    p = tmp_path / "p[1].yaml"
    write_profile(prof, p)
    with pytest.raises(OutputFileError, match=r"p\[1\]\.yaml exists"):
        write_profile(prof, p)


def test_json_writer_is_strict() -> None:
    assert json.loads(to_json({"a": [1, 2.5]})) == {"a": [1, 2.5]}
    with pytest.raises(ValueError, match=r"\$\.a\[1\]"):
        to_json({"a": [1, float("inf")]})


@pytest.mark.skipif(os.geteuid() == 0 or shutil.which("true") is None, reason="root writes anywhere")
def test_permission_error_names_the_path(tmp_path: Path) -> None:  # pragma: no cover - non-root only
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(OutputFileError, match="ro"):
            write_files({d / "x.json": "{}"}, force=False)
    finally:
        d.chmod(0o700)
