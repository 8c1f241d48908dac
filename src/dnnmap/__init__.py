"""dnnmap: how will this neural network run on that chip, and why.

``dnnmap.count``, ``dnnmap.partition``, ``dnnmap.analyze`` and ``dnnmap.compare`` are the
front door; they import torch lazily so ``import dnnmap.ir`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("count", "partition", "analyze", "compare", "capture_graph", "train", "generate")


def __getattr__(name: str) -> Any:
    if name in _API:
        from dnnmap import api

        return getattr(api, name)
    raise AttributeError(f"module 'dnnmap' has no attribute {name!r}")


__all__ = ["__version__", *_API]
