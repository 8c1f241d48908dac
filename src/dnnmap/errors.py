"""Errors a user can cause. The CLI prints their message (no traceback unless --debug)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DnnmapError(Exception):
    """Base class: a problem with what the user asked for, explained in the message."""

    exit_code: int = 2


class UnknownNameError(DnnmapError):
    """An unknown model / device / strategy name; the message suggests close names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(set(known))
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        lister = {"hardware": "dnnmap hardware list", "model": "dnnmap models"}.get(kind)
        listed = f" ({len(known)} known; list them with `{lister}`)" if lister else ""
        super().__init__(f"unknown {kind} {name!r}.{hint}{listed}")
        self.name = name
        self.suggestions = tuple(close)


class CaptureError(DnnmapError):
    """A model that neither capture path could take; names the op and module where it failed."""


class InputShapeError(DnnmapError):
    """The example input does not fit the model; names the module that rejected it."""


class HardwareProfileError(DnnmapError):
    """An invalid hardware YAML file; names the file and the field."""


class UnknownOpError(DnnmapError):
    """--strict and an op without a cost rule."""
