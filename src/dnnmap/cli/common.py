"""What every command shares: model options, output files, and turning errors into messages."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from dnnmap.errors import DnnmapError

# Tables are wide; when output goes to a file or pipe (no terminal width), use 160 columns.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

F = TypeVar("F", bound=Callable[..., Any])


class State:
    debug: bool = False


STATE = State()

# -- shared options ---------------------------------------------------------------------
ModelArg = Annotated[
    str,
    typer.Argument(
        help="torchvision name (resnet18), timm:NAME, hf:NAME (bundled config) or hf:path/config.json, or path/file.py:factory"
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size")]
InputShapeOpt = Annotated[
    str | None, typer.Option("--input-shape", help="Input shape without batch, e.g. 3,224,224")
]
SeqLenOpt = Annotated[int | None, typer.Option("--seq-len", min=1, help="Sequence length (language models)")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Capture dtype: fp32, bf16 or fp16")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the full result as JSON to FILE ('-' for stdout)")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Write the table as CSV to FILE ('-' for stdout)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite output files that exist")]
HardwareDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--hardware-dir", help="Extra directory of hardware YAML files (also $DNNMAP_HARDWARE_DIR)"),
]


def capture_kwargs(batch: int, input_shape: str | None, seq_len: int | None, dtype: str) -> dict[str, Any]:
    return {"batch": batch, "input_shape": input_shape, "seq_len": seq_len, "dtype": dtype}


def handle_errors(fn: F) -> F:
    """Print a DnnmapError as one clear message and exit non-zero; ``--debug`` re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DnnmapError as e:
            if STATE.debug:
                raise
            err_console.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # an internal error: still no traceback without --debug
            if STATE.debug:
                raise
            err_console.print(f"[bold red]internal error:[/] {type(e).__name__}: {e}")
            err_console.print("re-run with --debug for the traceback, and please report it")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def write_text(path: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``path`` ('-' = stdout). An existing file is kept unless ``force`` or
    the user says yes at the prompt (only asked when stdin is a terminal)."""
    if str(path) == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    err_console.print(f"wrote {path}")


def refuse_overwrite(path: Path, force: bool) -> None:
    """Raise unless ``path`` is new, ``force`` is given, or the user says yes at a terminal."""
    if not path.exists() or force:
        return
    if sys.stdin.isatty() and typer.confirm(f"{path} exists. Overwrite?", default=False):
        return
    raise DnnmapError(f"{path} exists; not overwriting it (use --force)")


def write_json(path: Path, data: Any, force: bool) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default), force)


def _json_default(o: Any) -> Any:
    if hasattr(o, "value"):  # enums
        return o.value
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)
