"""Ops LLM generation adds: grouped expert matmuls, routing histograms, in-place cache writes.

- ``_grouped_mm(self[S, K], mat2[E, K, N], offs[E])`` (mixture-of-experts): row ``s`` of
  ``self`` is multiplied by the weight of the expert its group belongs to, so the work is one
  ``[S, K] x [K, N]`` GEMM spread over experts: ``2 * S * K * N`` FLOPs whatever the routing
  (a 2-D ``mat2`` and 3-D ``self`` are the other grouped layouts: ``2 * numel(out) * K``).
  Bytes: activations, offsets and outputs once; **every** expert's weight once (the dense
  upper bound; which experts a batch actually reaches is a routing statistic, priced by the
  mapping: :mod:`dnnmap.mapping.weights`).
- ``histc`` / ``bincount`` (tokens per expert): one compare-and-increment per input element.
- ``index_copy_`` into a cache (``StaticCache.update``): reads the index and the source,
  writes ``numel(source)`` elements in place; the rest of the destination is not touched
  (the out-of-place ``index_copy`` stays a whole copy).

>>> from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
>>> from dnnmap.costs import count_graph
>>> t = {"x": Tensor("x", (6, 8), DType.BFLOAT16, Role.INPUT),
...      "w": Tensor("w", (4, 8, 16), DType.BFLOAT16, Role.WEIGHT),
...      "o": Tensor("o", (4,), DType.INT32, Role.INPUT),
...      "y": Tensor("y", (6, 16), DType.BFLOAT16, Role.OUTPUT, producer="op0")}
>>> g = Graph("g", t, (Op("op0", "aten._grouped_mm.default", OpClass.MATMUL, ("x", "w", "o"), ("y",),
...                       input_args=("self", "mat2", "offs")),))
>>> count_graph(g).total.tensor_flops == 2 * 6 * 8 * 16
True
"""

from __future__ import annotations

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import fail, first_output, io_cost, required


@cost_rule("_grouped_mm", "grouped_mm", "_scaled_grouped_mm")
def grouped_mm(ctx: RuleContext) -> OpCost:
    a, b = required(ctx, "self", 0), required(ctx, "mat2", 1)
    out = first_output(ctx)
    k = a.shape[-1]
    if b.shape[-2] != k and b.shape[-1] != k:
        raise fail(ctx, f"inner dimensions disagree: {a.shape} x {b.shape}")
    # each output element accumulates K products: 2 FLOPs per multiply-add
    return io_cost(ctx, tensor_flops=2 * out.numel * k)


@cost_rule("histc", "bincount")
def histogram(ctx: RuleContext) -> OpCost:
    # one bin compare + one increment per input element
    return io_cost(ctx, vector_flops=2 * required(ctx, "self", 0).numel)


@cost_rule("index_copy_")
def index_copy_into(ctx: RuleContext) -> OpCost:
    index, source = required(ctx, "index", 2), required(ctx, "source", 3)
    dst = first_output(ctx)
    written = min(source.numel, dst.numel) * dst.dtype.itemsize
    return OpCost(bytes_read=index.nbytes + source.nbytes, bytes_written=written)
