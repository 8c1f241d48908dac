"""What every command shares: model options, output files, and turning errors into messages."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from dnnmap.errors import DnnmapError
from dnnmap.outputs import check_writable, is_stdout, to_json, write_files

# Tables are wide; when output goes to a file or pipe (no terminal width), use 160 columns.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
# The one place text meets the terminal: strings are never read as rich markup or emoji codes
# (model names, paths and messages are the user's text: ``foo[/]``, ``res[v2].json``,
# ``:factory:`` print as written). Style is given as ``Text`` / ``style=``, never in a string.
console = Console(width=_WIDTH, markup=False, emoji=False)
err_console = Console(stderr=True, width=_WIDTH, markup=False, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


class State:
    debug: bool = False
    command: str = "result"  # the running command's name: the ``kind`` of its JSON result


STATE = State()

# -- shared options ---------------------------------------------------------------------
ModelArg = Annotated[
    str,
    typer.Argument(
        help="torchvision name (resnet18), timm:NAME, hf:NAME (bundled config) or hf:path/config.json, or path/file.py:factory"
    ),
]
BatchOpt = Annotated[int | None, typer.Option("--batch", "-b", min=1, help="Batch size [default: 1, or the factory's inputs]")]
InputShapeOpt = Annotated[
    str | None, typer.Option("--input-shape", help="Input shape without batch, e.g. 3,224,224")
]
SeqLenOpt = Annotated[int | None, typer.Option("--seq-len", min=1, help="Sequence length (language models)")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Capture dtype: fp32, bf16 or fp16")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the full result as JSON to FILE ('-' for stdout)")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Write the table as CSV to FILE ('-' for stdout)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite output files that exist")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="Write plots (PNG and SVG) to DIR")]
HardwareDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--hardware-dir", help="Extra directory of hardware YAML files (also $DNNMAP_HARDWARE_DIR)"),
]


def capture_kwargs(batch: int | None, input_shape: str | None, seq_len: int | None, dtype: str) -> dict[str, Any]:
    return {"batch": batch, "input_shape": input_shape, "seq_len": seq_len, "dtype": dtype}


# -- the terminal: every message goes through these, never through markup ----------------------
def say(text: str, style: str | None = None, err: bool = True) -> None:
    """One line for the user (stderr by default), printed exactly as written (never wrapped:
    a path broken over two lines cannot be copied)."""
    (err_console if err else console).print(Text(str(text), style=style or ""), soft_wrap=True)


def warn(text: str) -> None:
    err_console.print(Text.assemble(("warning: ", "bold yellow"), str(text)), soft_wrap=True)


def error(text: str, label: str = "error") -> None:
    err_console.print(Text.assemble((f"{label}: ", "bold red"), str(text)), soft_wrap=True)


_OUTPUT_OPTIONS = ("json_out", "csv_out")  # the parameter names of --json / --csv in every command


def handle_errors(fn: F) -> F:
    """The one split between the user's mistakes and dnnmap's: a :class:`DnnmapError` prints
    its message (exit 2, no traceback); anything else is an internal error (exit 1, "please
    report it"). ``--debug`` re-raises either, with its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        STATE.command = fn.__name__.removesuffix("_cmd").rstrip("_")
        try:
            outputs = [kwargs.get(k) for k in _OUTPUT_OPTIONS if kwargs.get(k) is not None]
            if outputs:  # every command's --json / --csv, checked together before any work
                kwargs["force"] = check_outputs(*outputs, force=bool(kwargs.get("force")))
            return fn(*args, **kwargs)
        except DnnmapError as e:
            if STATE.debug:
                raise
            error(str(e))
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # an internal error: still no traceback without --debug
            if STATE.debug:
                raise
            error(f"{type(e).__name__}: {e}", label="internal error")
            say("re-run with --debug for the traceback, and please report it")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# -- output files: all through dnnmap.outputs -------------------------------------------------
def check_outputs(*paths: Path | None, force: bool) -> bool:
    """Before any work: the outputs asked for may be written (see :func:`dnnmap.outputs.check_writable`).
    Returns the ``force`` to write them with (True once the user said yes to an overwrite)."""
    return check_writable([p for p in paths if p is not None], force) or force


def write_text(path: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``path`` ('-' = stdout), all-or-nothing; an existing file is kept
    unless ``force`` or the user says yes at the prompt (asked on stderr, at a terminal only)."""
    if is_stdout(path):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    for p in write_files({path: text}, force):
        say(f"wrote {p}")


def write_files_said(files: dict[Path, str | bytes], force: bool) -> None:
    """Several files (text or bytes) all-or-nothing, each said as written."""
    for p in write_files(files, force):
        say(f"wrote {p}")


def refuse_overwrite(path: Path, force: bool) -> None:
    """Raise unless ``path`` may be written (new, ``force``, or yes at a terminal)."""
    check_writable([path], force)


def write_json(path: Path, data: Any, force: bool, kind: str | None = None) -> None:
    """Strict JSON (no Infinity / NaN) to ``path``, stamped with ``schema_version``, ``kind``
    (default: the command's name) and ``dnnmap_version`` (a list goes under ``results``)."""
    write_text(path, to_json(stamped(data, kind)), force)


def stamped(data: Any, kind: str | None = None) -> dict[str, Any]:
    """``data`` in the envelope every JSON result carries (see ``dnnmap schema``)."""
    from dnnmap.report.envelope import envelope

    return envelope(kind or STATE.command, data if isinstance(data, dict) else {"results": data})


# stored weights / KV cache (analyze, compare, generate): one declaration each
WeightsOpt = Annotated[str | None, typer.Option("--weights", help="Stored weights: int8, int4, fp8 (matmuls run at --precision)")]
GroupSizeOpt = Annotated[int, typer.Option("--group-size", min=1, help="int4 scale group size")]
KvDtypeOpt = Annotated[str | None, typer.Option("--kv-dtype", help="KV cache: fp16, bf16, fp8, fp32")]


# how a model runs (analyze, compare, report, generate): one declaration each
ModeOpt = Annotated[
    str, typer.Option("--mode", "-m", help="eager (one kernel per ATen op, issued by Python), compiled "
                      "(torch.compile's fused kernels) or cudagraph (compiled, replayed from a CUDA graph)")
]
AttnOpt = Annotated[
    str | None, typer.Option("--attn-implementation", help="Hugging Face attention: eager, sdpa or flash "
                             "(default: the config's, else what transformers chooses)")
]
Tf32Opt = Annotated[
    str, typer.Option("--tf32", help="fp32 GEMMs/convs as TF32: default (PyTorch: convs yes, matmuls no), on, off")
]
HostOpt = Annotated[
    float | None, typer.Option("--host-dispatch-us", min=0, help="Eager per-op host cost in us (default: the profile's)")
]


# a plan on many devices (analyze, compare, generate, train): one declaration each
DevicesOpt = Annotated[int | None, typer.Option("--devices", min=1, help="Devices (default dp x tp x pp)")]
TpOpt = Annotated[int, typer.Option("--tp", min=1, help="Tensor-parallel degree (Megatron; all-reduces on the "
                                    "profile's interconnect)")]
PpOpt = Annotated[int, typer.Option("--pp", min=1, help="Pipeline stages, balanced by predicted time")]
DpOpt = Annotated[int | None, typer.Option("--dp", min=1, help="Data-parallel replicas (default: devices / (tp x pp)); "
                                           "inference: throughput x dp; train: the global batch split dp ways")]
MicrobatchesOpt = Annotated[int, typer.Option("--microbatches", min=1, help="Micro-batches per replica; with --pp "
                                              "they stream through the stages (inference latency: fill + drain; "
                                              "train: 1F1B)")]
EpOpt = Annotated[int | None, typer.Option("--ep", min=1, help="Expert parallelism (MoE): experts split over ep of "
                                           "the dp replicas, tokens sent by all-to-all (default 1; with --plan auto "
                                           "every ep is searched unless given, --ep 1 included)")]
PlanOpt = Annotated[str | None, typer.Option("--plan", help="'auto': the fastest plans that fit --devices N "
                                             "(with the runners-up)")]


def check_plot(plot: Path | None) -> None:
    """Before any work: the ``--plot`` directory can be written (created if missing)."""
    if plot is not None:
        from dnnmap.report.plots import check_plot_dir

        check_plot_dir(plot)
