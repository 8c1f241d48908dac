"""``capture()``: a model name or ``nn.Module`` in, an ``ir.Graph`` out, by the best path.

``path="auto"`` tries ``torch.export`` and, when export cannot take the model, falls back to
the dispatch recorder; ``meta["capture_path"]`` says which ran and ``meta["fallback_reason"]``
why export was left. A model neither path takes raises a Dnnmap error naming the op and
module (:class:`~dnnmap.errors.InputShapeError` when the input does not fit).

>>> g = capture("resnet18")
>>> g.meta["capture_path"], len(g.ops), g.num_params
('export', 69, 11689512)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from dnnmap.capture._diagnose import short_message
from dnnmap.capture.dispatch_path import capture_dispatch
from dnnmap.capture.export_path import capture_export
from dnnmap.capture.sources import build_model, make_inputs, parse_shape, resolve, torch_dtype
from dnnmap.errors import CaptureError, DnnmapError
from dnnmap.ir import DType, Graph

PATHS = ("auto", "export", "dispatch")


def capture(
    model: str | nn.Module,
    *,
    batch: int | None = None,
    input_shape: Sequence[int] | str | None = None,
    seq_len: int | None = None,
    dtype: str = "fp32",
    inputs: tuple | None = None,
    path: str = "auto",
    attn_implementation: str | None = None,
) -> Graph:
    """Capture ``model`` as an :class:`~dnnmap.ir.Graph` (see the module docstring).

    ``attn_implementation`` (``eager`` / ``sdpa`` / ``flash``, Hugging Face models): how
    attention is built (see :mod:`dnnmap.capture.hf`); ``meta["attention"]`` says what ran."""
    from dnnmap.capture import hf

    if path not in PATHS:
        raise DnnmapError(f"capture path must be one of {', '.join(PATHS)}, not {path!r}")
    with hf.attention(attn_implementation):
        name, module, example = _prepare(model, batch, input_shape, seq_len, dtype, inputs)
    meta: dict[str, Any] = {
        "model": name,
        "batch": batch if batch is not None else _leading_dim(example),
        "dtype": DType.parse(dtype).value,
        "input_shapes": tuple(tuple(t.shape) for t in tree_leaves(example) if isinstance(t, torch.Tensor)),
        "torch_version": torch.__version__,
    }
    ran = getattr(module, "dnnmap_attention", None)
    if ran is not None:
        meta["attention"] = ran
    reason = None
    if path in ("auto", "export"):
        try:
            g = capture_export(module, example, name)
            return _with_meta(g, meta, capture_path="export")
        except Exception as e:  # export cannot take it: say why, try the eager recorder
            reason = short_message(e)
    g = capture_dispatch(module, example, name)  # raises the op / module error if it fails too
    if path == "export":
        raise CaptureError(
            f"torch.export cannot capture {name}: {reason}. The dispatch path can: use path='auto' or 'dispatch'"
        )
    extra = {"fallback_reason": reason} if reason else {}
    return _with_meta(g, meta, capture_path="dispatch", **extra)


def _prepare(model: Any, batch: int | None, input_shape: Any, seq_len: int | None,
             dtype: str, inputs: tuple | None) -> tuple[str, nn.Module, tuple]:
    """(name, module in eval mode, example inputs) for a name or a module."""
    if isinstance(model, str):
        if inputs is not None:
            raise DnnmapError("inputs= is for an nn.Module; for a model name use batch / input_shape / seq_len")
        module, example = build_model(model, batch=batch, input_shape=input_shape, seq_len=seq_len, dtype=dtype)
        return model, module, example
    if not isinstance(model, nn.Module):
        raise DnnmapError(f"model must be a name or an nn.Module, not {type(model).__name__}")
    name = type(model).__name__
    if inputs is not None:
        example = inputs if isinstance(inputs, tuple) else (inputs,)
    elif input_shape is not None:
        src = resolve_module(model, name)
        example = make_inputs(src, batch, parse_shape(input_shape), None, torch_dtype(dtype), None, _fake_mode(model))
    else:
        raise DnnmapError(f"{name}: pass inputs=(tensor, ...) or input_shape= to capture an nn.Module")
    return name, model.eval(), example


def resolve_module(model: nn.Module, name: str) -> Any:
    """A CUSTOM source for a module handed in directly (inputs from ``input_shape``)."""
    from dnnmap.capture.sources import Family, Source

    return Source(name, Family.CUSTOM, lambda dtype: model)


def _fake_mode(model: nn.Module) -> Any:
    from torch._subclasses.fake_tensor import FakeTensor

    for t in model.parameters():
        if isinstance(t, FakeTensor):
            return t.fake_mode
    return None


def _leading_dim(example: tuple) -> int | None:
    for t in tree_leaves(example):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return None


def _with_meta(g: Graph, meta: dict[str, Any], **extra: Any) -> Graph:
    """The graph with capture facts merged into ``meta`` (path-specific keys kept)."""
    from dataclasses import replace

    return replace(g, meta={**meta, **extra, **g.meta})


__all__ = ["PATHS", "build_model", "capture", "resolve"]
