"""Plots: valid PNG / SVG files, one roofline point per kernel, and where they can't be written."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnmap.cli.main import app
from dnnmap.fusion import partition
from dnnmap.fusion.toy import attention_block, residual_block
from dnnmap.hardware import load_profile
from dnnmap.mapping import compare_partition, map_partition
from dnnmap.outputs import OutputFileError
from dnnmap.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def valid(path: Path, data: bytes) -> None:
    if path.suffix == ".png":
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    else:
        root = ET.fromstring(data)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("toy", [residual_block, attention_block])
def test_roofline_has_one_point_per_kernel_and_a_ceiling_per_level(toy) -> None:
    prof = load_profile("h100-sxm5")
    est = map_partition(partition(toy()), prof, precision="bf16")
    fig = plots.roofline_figure(est, prof)
    ax = fig.axes[0]
    xs, ys, bounds, hidden = plots.roofline_points(est)
    assert len(ax.collections[0].get_offsets()) == len(xs) == len(est.subgraphs) - hidden
    assert hidden == sum(1 for s in est.subgraphs if not (s.flops and s.bytes))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [m.name for m in prof.memory] == [lb.split()[0] for lb in labels[: len(prof.memory)]]
    assert any(lb.startswith("matrix bf16 989.4") for lb in labels) and any(lb.startswith("vector bf16") for lb in labels)
    assert sorted({f"{b}-bound kernels" for b in bounds}) == sorted(lb for lb in labels if lb.endswith("kernels"))


def test_estimate_plots_are_valid_png_and_svg_and_deterministic(tmp_path: Path) -> None:
    est = map_partition(partition(residual_block(), "unfused"), "l4", mode="eager")
    files = plots.estimate_plots(est, tmp_path)
    assert plots.files_named(files) == sorted(f"{plots.slug(est.model)}-l4-{k}.{x}" for k in ("roofline", "timeline", "memory")
                                              for x in ("png", "svg"))
    for p, data in files.items():
        valid(p, data)
    again = plots.estimate_plots(est, tmp_path)
    assert {p: d for p, d in again.items() if p.suffix == ".svg"} == {p: d for p, d in files.items() if p.suffix == ".svg"}
    fig = plots.timeline_figure(est)  # one bar per kernel on the device stream, one per issue on the host
    assert sum(len(c.get_paths()) for c in fig.axes[0].collections) == 2 * len(est.subgraphs)


def test_comparison_plot_has_a_bar_per_device() -> None:
    cmp = compare_partition(partition(residual_block()), ["h100-sxm5", "l4", "i7-12700k", "tpu-v5e"])
    fig = plots.comparison_figure(cmp)
    assert [len(ax.patches) for ax in fig.axes] == [4, 4, 4]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["h100-sxm5", "l4", "i7-12700k", "tpu-v5e"]


def test_plot_dir_errors(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFileError, match="is a file, not a directory"):
        plots.check_plot_dir(tmp_path / "f")
    with pytest.raises(OutputFileError, match="cannot write plots to"):
        plots.check_plot_dir(tmp_path / "f" / "sub")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.geteuid() != 0:  # root writes anywhere
            with pytest.raises(OutputFileError, match="cannot write plots to"):
                plots.check_plot_dir(ro)
    finally:
        ro.chmod(0o700)
    assert plots.check_plot_dir(tmp_path / "new" / "dir").is_dir()


TINY = """import torch


def build():
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
"""


def test_analyze_and_compare_write_plots(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    model = f"{tmp_path / 'tiny.py'}:build"
    out = tmp_path / "plots"
    r = CliRunner().invoke(app, ["analyze", model, "--input-shape", "64", "-H", "h100-sxm5", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["compare", model, "--input-shape", "64", "-H", "l4,i7-12700k", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"tiny-build-{k}.{x}" for k in ("h100-sxm5-roofline", "h100-sxm5-timeline",
                                                           "h100-sxm5-memory", "devices") for x in ("png", "svg"))
    for p in out.iterdir():
        valid(p, p.read_bytes())
    r = CliRunner().invoke(app, ["analyze", model, "--input-shape", "64", "-H", "l4", "--plot", str(out / "tiny-build-devices.png")])
    assert r.exit_code == 2 and "is a file, not a directory" in r.output


LLM = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
       "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
       "max_position_embeddings": 512, "tie_word_embeddings": False}


def test_generate_and_train_write_plots(tmp_path: Path) -> None:
    """generate: latency / throughput vs batch and memory vs capacity; train: the step split and
    memory per device, one bar per plan; a plot directory that is a file fails before any work."""
    import json

    (tmp_path / "tiny.json").write_text(json.dumps(LLM))
    model, out = f"hf:{tmp_path / 'tiny.json'}", tmp_path / "plots"
    r = CliRunner().invoke(app, ["generate", model, "-H", "h100-sxm5", "--prompt", "8", "--gen", "4",
                                 "--batch", "1,2", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["train", model, "-H", "h100-sxm5", "--seq-len", "16", "--batch", "4",
                                 "--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"hf-tiny-h100-sxm5-{k}.{x}" for k in ("generate-latency", "generate-memory", "train-step", "train-memory")
        for x in ("png", "svg"))
    for p in out.iterdir():
        valid(p, p.read_bytes())
    for cmd in (["generate", model, "-H", "h100-sxm5"], ["train", model, "-H", "h100-sxm5"]):
        r = CliRunner().invoke(app, [*cmd, "--plot", str(out / "hf-tiny-h100-sxm5-train-step.png")])
        assert r.exit_code == 2 and "is a file, not a directory" in r.output


def test_training_figure_has_a_bar_per_plan_and_part() -> None:
    from dnnmap.training.memory import StepMemory
    from dnnmap.training.step import TrainEstimate

    mem = StepMemory(4_000_000_000, 4_000_000_000, 8_000_000_000, 10_000_000_000, 30_000_000_000)
    ests = [TrainEstimate("m", "h100-sxm5", 8, None, "bf16", "adamw", "none", 0.01, 0.02, 0.003, c, 10**12, 1e15, 2,
                          mem, 80 * 10**9, plan=f"plan{i}") for i, c in enumerate((0.0, 0.005))]
    figs = plots.training_figures(ests)
    step = figs["m-h100-sxm5-train-step"].axes[0]
    assert len(step.patches) == 5 * len(ests)  # forward, backward, optimizer, communication, bubble
    widths = [p.get_width() for p in step.patches]
    assert widths[:2] == pytest.approx([10.0, 10.0]) and widths[6:8] == pytest.approx([0.0, 5.0])
    mem_ax = figs["m-h100-sxm5-train-memory"].axes[0]
    assert sum(p.get_height() for p in mem_ax.patches[:: len(ests)]) == pytest.approx(30.0)  # parts add to the peak
    for f in figs.values():
        plots.plt.close(f)
