"""Embedding rules: a gather of table rows. Bytes only (plus the bag reduction).

An embedding lookup reads the index tensor and only the rows it selects, never the whole
table: ``rows * dim * itemsize`` with ``rows = numel(indices)`` (GPT-2 at batch 1, seq 128
reads ``128 * 768 * 4`` bytes of its 50257-row table), capped at the table's size (a
repeated id cannot make a kernel read more than the whole table). ``weight_bytes`` and
``params`` count the rows read. ``embedding_bag`` adds one op per gathered element
(sum / mean / max), one multiply per element for ``per_sample_weights``, and a divide per
output for mean.

>>> from dnnmap.costs.rules.embedding import gathered_bytes
>>> gathered_bytes(rows=128, row_bytes=768 * 4, table_bytes=50257 * 768 * 4) == 128 * 768 * 4
True
"""

from __future__ import annotations

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import first_output, io_cost, prod, required, tensor_arg
from dnnmap.ir import Role, Tensor


def gathered_bytes(rows: int, row_bytes: int, table_bytes: int) -> int:
    return min(rows * row_bytes, table_bytes)


def _table_read(ctx: RuleContext, table: Tensor, rows: int) -> OpCost:
    """Bytes of reading ``rows`` rows of ``table`` plus every other (non-table) input."""
    i_table = next(i for i, t in enumerate(ctx.inputs) if t is table)
    row_elems = prod(table.shape[1:])
    rows_read = gathered_bytes(rows, row_elems * table.dtype.itemsize, table.nbytes)
    base = ctx.base(i_table)
    others = sum(t.nbytes for i, t in enumerate(ctx.inputs) if i != i_table)
    other_static = sum(t.nbytes for i, t in enumerate(ctx.inputs) if i != i_table and ctx.base(i).is_static)
    return OpCost(
        bytes_read=rows_read + others,
        bytes_written=sum(t.nbytes for t in ctx.outputs),
        weight_bytes=(rows_read if base.is_static else 0) + other_static,
        params=rows_read // table.dtype.itemsize if base.role == Role.WEIGHT else 0,
    )


@cost_rule("embedding")
def embedding(ctx: RuleContext) -> OpCost:
    table, idx = required(ctx, "weight", 0), required(ctx, "indices", 1)
    return _table_read(ctx, table, idx.numel)


@cost_rule("embedding_bag", "_embedding_bag")
def embedding_bag(ctx: RuleContext) -> OpCost:
    table, idx = required(ctx, "weight", 0), required(ctx, "indices", 1)
    dim = prod(table.shape[1:])
    gathered = idx.numel * dim
    vector = gathered  # one add (sum / mean) or compare (max) per gathered element
    if tensor_arg(ctx, "per_sample_weights") is not None:
        vector += gathered
    if int(ctx.attrs.get("mode", 0)) == 1:  # mean: divide each output element
        vector += first_output(ctx).numel
    return _table_read(ctx, table, idx.numel) + OpCost(vector_flops=vector)


@cost_rule("embedding_dense_backward")
def embedding_backward(ctx: RuleContext) -> OpCost:
    """Zero the [num_weights, dim] gradient, then add each grad_output row at its index:
    one add per grad_output element; reads grad_output and indices, writes the table."""
    g = required(ctx, "grad_output", 0)
    return io_cost(ctx, vector_flops=g.numel)
