"""The Python API: one call per question. Each returns a typed result with ``.to_dataframe()``.

>>> import dnnmap                                             # doctest: +SKIP
>>> r = dnnmap.count("resnet18")                              # doctest: +SKIP
>>> r.totals()["gemm_conv_flops"]                             # doctest: +SKIP
3627122688
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnnmap.costs import CountedGraph, count_graph
from dnnmap.ir import Graph
from dnnmap.report.count import CountReport


def capture_graph(
    model: Any,
    *,
    batch: int | None = None,
    input_shape: Sequence[int] | str | None = None,
    seq_len: int | None = None,
    dtype: str = "fp32",
    inputs: tuple[Any, ...] | None = None,
    path: str = "auto",
) -> Graph:
    """Capture ``model`` (a name, a ``file.py:factory`` or an ``nn.Module``) as an ``ir.Graph``."""
    if isinstance(model, Graph):
        return model
    from dnnmap.capture import capture

    return capture(
        model, batch=batch, input_shape=input_shape, seq_len=seq_len, dtype=dtype, inputs=inputs, path=path
    )


def count(model: Any, *, strict: bool = False, **capture_kwargs: Any) -> CountReport:
    """Capture and count: every op's FLOPs, MACs and bytes, with the coverage ledger."""
    return CountReport(count_graph(capture_graph(model, **capture_kwargs), strict=strict))


def _counted(model: Any, strict: bool = False, **capture_kwargs: Any) -> CountedGraph:
    if isinstance(model, CountedGraph):
        return model
    if isinstance(model, CountReport):
        return model.counted
    return count_graph(capture_graph(model, **capture_kwargs), strict=strict)


def partition(model: Any, strategy: str = "compiler", onchip_budget_bytes: int | None = None, **capture_kwargs: Any):  # noqa: ANN201
    """Fuse a model (or a captured / counted graph) into the kernels a compiler would launch."""
    from dnnmap.fusion import partition as _partition

    return _partition(_counted(model, **capture_kwargs), strategy=strategy, onchip_budget_bytes=onchip_budget_bytes)
