"""What every JSON result of dnnmap starts with: which layout it follows and who wrote it.

``schema_version`` counts breaking changes of a result's layout (``dnnmap schema KIND`` prints
the JSON Schema of the current one); ``dnnmap_version`` is the package that wrote it.

>>> d = envelope("analyze", {"summary": {}})
>>> list(d)[:3], d["schema_version"]
(['schema_version', 'kind', 'dnnmap_version'], 1)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

SCHEMA_VERSION = 1


def dnnmap_version() -> str:
    try:
        return version("dnnmap")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown"


def envelope(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``schema_version``, ``kind`` and ``dnnmap_version`` in front (a key that
    ``data`` already has is kept as given)."""
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "dnnmap_version": dnnmap_version(), **data}
