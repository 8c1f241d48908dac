"""Where a capture failed: the module stack, the failing op, and the user-facing error.

>>> import torch
>>> conv = torch.nn.Conv2d(3, 8, 3)
>>> with ModuleStack(conv) as s:
...     s.top()
('', 'Conv2d')
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch import nn

from dnnmap.errors import CaptureError, DnnmapError, InputShapeError


class ModuleStack:
    """Forward pre/post hooks on every submodule keep the stack of modules now running."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.frames: list[tuple[str, str, tuple, dict]] = []
        self._handles: list[Any] = []

    def __enter__(self) -> ModuleStack:
        self.frames.clear()
        for path, m in self.model.named_modules():
            push = functools.partial(self._push, path, type(m).__name__)
            self._handles.append(m.register_forward_pre_hook(push, with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._pop))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _push(self, path: str, mtype: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.frames.append((path, mtype, args, kwargs))

    def _pop(self, module: nn.Module, args: tuple, out: Any) -> None:
        self.frames.pop()

    def top(self) -> tuple[str, str]:
        """(path, type) of the innermost module running; the root when none is."""
        if self.frames:
            return self.frames[-1][0], self.frames[-1][1]
        return "", type(self.model).__name__


def _shapes(values: Any) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(tuple(v.shape))
        elif isinstance(v, (list, tuple)):
            out.extend(_shapes(v))
    return out


@dataclass(frozen=True)
class Failure:
    """The op (if any) and module that were running when the capture failed."""

    op: str | None
    module_path: str
    module_type: str
    shapes: tuple[tuple[int, ...], ...]  # tensor arguments of the op (or of the module)

    @classmethod
    def in_op(cls, op: str, stack: ModuleStack, args: tuple, exc: Exception) -> Failure:
        return cls(op, *stack.top(), tuple(_shapes(args)))

    @classmethod
    def outside_op(cls, stack: ModuleStack) -> Failure:
        path, mtype = stack.top()
        frame = stack.frames[-1] if stack.frames else None
        shapes = _shapes([*frame[2], *frame[3].values()]) if frame else []
        return cls(None, path, mtype, tuple(shapes))

    @property
    def where(self) -> str:
        if self.module_path:
            return f"module '{self.module_path}' ({self.module_type})"
        return f"the root module ({self.module_type})"


# Words torch uses when an operand's shape does not fit (meta kernels, nn.functional checks).
_SHAPE_WORDS = re.compile(
    r"shape|size|dim|channels|must match|mat1|broadcast|out of range|unpack|expected .*input",
    re.IGNORECASE,
)
_DATA_DEPENDENT = ("DynamicOutputShapeException", "DataDependentOutputException",
                   "GuardOnDataDependentSymNode", "UnsupportedOperatorException")


def short_message(e: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters."""
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    msg = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def raise_failure(f: Failure, e: Exception) -> NoReturn:
    """Turn an exception from running the model into a clear Dnnmap error."""
    if isinstance(e, DnnmapError):
        raise e
    msg = short_message(e)
    if type(e).__name__ in _DATA_DEPENDENT:
        raise CaptureError(
            f"cannot capture: {f.op or 'an op'} in {f.where} needs tensor values, which fake "
            f"tensors do not have ({msg}); pass a real model and real inputs to capture it"
        ) from e
    if isinstance(e, (RuntimeError, ValueError, IndexError)) and _SHAPE_WORDS.search(str(e)):
        shape = f" of shape {list(f.shapes[0])}" if f.shapes else ""
        detail = f" ({f.op} on shapes {', '.join(str(list(s)) for s in f.shapes)})" if f.op else ""
        raise InputShapeError(f"{f.where} rejected input{shape}{detail}: {msg}") from e
    raise CaptureError(f"cannot capture: {f.op or 'the forward pass'} failed in {f.where}: {msg}") from e
