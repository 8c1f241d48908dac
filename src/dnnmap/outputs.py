"""The one way dnnmap writes a file: every output of every command goes through here.

- :func:`check_writable` looks at exactly the paths that will be written, before any work
  is done: an existing file is kept unless ``force`` (or a yes at a terminal prompt, asked on
  stderr), a directory or a path through a file is refused, the same path twice is refused.
- :func:`write_files` writes all-or-nothing: every file goes to a temporary file beside its
  target first, and only when all of them are complete are they renamed into place. A failure
  (permission, full disk, a path through a file) names the path and leaves nothing behind.
- :func:`to_json` is the one JSON encoder: ``allow_nan=False``, so ``Infinity`` / ``NaN``
  (not JSON for any other language) can never be written; producers put ``None`` there and
  say why (:func:`finite_or_none`).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> [p.name for p in write_files({d / "a.json": to_json({"x": 1.5})}, force=False)]
['a.json']
>>> write_files({d / "a.json": "{}"}, force=False)
Traceback (most recent call last):
...
dnnmap.outputs.OutputFileError: ... exists; not overwriting it (use --force)
>>> finite_or_none(float("inf")), finite_or_none(2.0)
(None, 2.0)
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dnnmap.errors import DnnmapError

STDOUT = "-"


class OutputFileError(DnnmapError):
    """An output file that may not or cannot be written; the message names the path."""


def is_stdout(path: str | os.PathLike[str] | None) -> bool:
    return path is not None and str(path) == STDOUT


def check_writable(paths: Iterable[str | os.PathLike[str]], force: bool, hint: str = "use --force") -> bool:
    """Raise :class:`OutputFileError` unless every path in ``paths`` may be written; returns
    whether an existing file will be overwritten. Stdout (``-``) may appear once."""
    seen: set[str] = set()
    overwrite = False
    for raw in paths:
        if is_stdout(raw):
            if STDOUT in seen:
                raise OutputFileError("only one output can go to stdout ('-')")
            seen.add(STDOUT)
            continue
        p = Path(raw)
        key = os.path.abspath(p)
        if key in seen:
            raise OutputFileError(f"{p} is named twice as an output; give each output its own file")
        seen.add(key)
        _check_one(p, force, hint)
        overwrite = overwrite or p.exists()
    return overwrite


def _check_one(p: Path, force: bool, hint: str) -> None:
    if p.is_dir():
        raise OutputFileError(f"{p} is a directory; name a file to write")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputFileError(f"cannot write {p}: {parent} is a file, not a directory")
            break
    if not p.exists() and not p.is_symlink() or force:
        return
    if sys.stdin.isatty() and sys.stderr.isatty() and _confirm(f"{p} exists. Overwrite it?"):
        return
    raise OutputFileError(f"{p} exists; not overwriting it ({hint})")


def _confirm(question: str) -> bool:
    """A yes/no prompt on stderr (stdout may be redirected to a file the user reads later)."""
    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def write_files(files: Mapping[str | os.PathLike[str], str | bytes], force: bool,
                hint: str = "use --force") -> list[Path]:
    """Write every ``path -> content`` all-or-nothing (see the module docstring)."""
    check_writable(files, force, hint)
    staged: list[tuple[Path, str]] = []
    current = Path()
    try:
        for raw, content in files.items():
            current = Path(raw)
            staged.append((current, _stage(current, content)))
        for current, tmp in staged:
            os.replace(tmp, current)
    except OSError as e:
        raise OutputFileError(f"cannot write {current}: {e.strerror or e}") from None
    finally:
        for _, tmp in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [p for p, _ in staged]


def _stage(p: Path, content: str | bytes) -> str:
    """``content`` in a complete temporary file beside ``p``; returns its name."""
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputFileError(f"cannot write {p}: cannot create {p.parent}: {e.strerror or e}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:40]}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise OutputFileError(f"cannot write {p}: {e.strerror or e}") from None
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as e:
        os.unlink(tmp)
        raise OutputFileError(f"cannot write {p}: {e.strerror or e}") from None
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- JSON -----------------------------------------------------------------------------------------
def finite_or_none(x: float | None) -> float | None:
    """``x``, or ``None`` where it is infinite or NaN (JSON has no such numbers)."""
    return None if x is None or not math.isfinite(x) else x


def to_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text: non-finite floats are a bug in the producer, never written."""
    try:
        return json.dumps(data, indent=indent, default=_json_default, allow_nan=False)
    except ValueError as e:
        where = _nonfinite_path(data)
        raise ValueError(f"{e} at {where}: the producer must write None and say why") from None


def _json_default(o: Any) -> Any:
    if hasattr(o, "value"):  # enums
        return o.value
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def _nonfinite_path(x: Any, path: str = "$") -> str | None:
    if isinstance(x, float) and not math.isfinite(x):
        return path
    if hasattr(x, "item") and not isinstance(x, (list, tuple, dict)):
        try:
            return _nonfinite_path(float(x.item()), path)
        except (TypeError, ValueError):
            return None
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, (list, tuple)) else ()
    for k, v in items:
        found = _nonfinite_path(v, f"{path}.{k}" if isinstance(x, dict) else f"{path}[{k}]")
        if found:
            return found
    return None


def json_safe(data: Any, why: Mapping[str, str] | None = None) -> Any:
    """A copy of ``data`` in which every infinite / NaN float is ``None``; in a dict, a key
    ``k`` whose value became ``None`` gets a sibling ``k_why`` saying why (from ``why``).

    >>> json_safe({"naive_error": float("inf"), "x": [1.0, float("nan")]}, {"naive_error": "no FLOPs"})
    {'naive_error': None, 'naive_error_why': 'no FLOPs', 'x': [1.0, None]}
    """
    why = why or {}
    if isinstance(data, float):
        return finite_or_none(data)
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for k, v in data.items():
            out[k] = json_safe(v, why)
            if isinstance(v, float) and out[k] is None and not math.isfinite(v):
                out[f"{k}_why"] = why.get(str(k), "undefined here (not a finite number)")
        return out
    if isinstance(data, (list, tuple)):
        return [json_safe(v, why) for v in data]
    if hasattr(data, "item") and hasattr(data, "dtype") and getattr(data, "ndim", 1) == 0:
        return json_safe(data.item(), why)
    return data
