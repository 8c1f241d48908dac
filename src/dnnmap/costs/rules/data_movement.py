"""Data movement: copies, concatenation, padding, indexing, creation. Bytes, no FLOPs.

- copy-like ops (cat, stack, clone, _to_copy, pad, repeat, roll, flip, where, masked_fill,
  scatter, index_put, tril, *_copy ...): every input read once at its recorded shape, every
  output written once.
- ``contiguous``: nothing when its output aliases its input (already contiguous), else a copy.
- gathers (``index``, ``index_select``, ``gather``, ``_unsafe_index``): the index tensors
  plus only the elements fetched, ``numel(out) * itemsize``, capped at the source's size.
- in-place writes: ``copy_`` reads ``src`` and writes ``self``; ``fill_`` / ``zero_`` only
  write; ``index_put_`` reads indices and values and writes ``numel(values)`` elements.
- creation (zeros, ones, full, arange, *_like, new_*, rand*, scalar_tensor ...): bytes
  written only (a ``*_like`` / ``new_*`` input is read for its metadata, not its data);
  ``empty*`` writes nothing (allocation only).
- interpolation that computes (bilinear / bicubic / trilinear upsampling, grid_sampler):
  vector ops per output element for the taps blended: linear 1-D 3 (2 mul, 1 add),
  bilinear 7 (4 mul, 3 add), trilinear 15, bicubic 31 (16 mul, 15 add); grid sampling adds
  4 per output for the coordinate transform. Nearest-neighbour resampling is bytes only.

>>> from dnnmap.costs.rules.data_movement import CREATION
>>> "zeros" in CREATION and "empty" not in CREATION
True
"""

from __future__ import annotations

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import first_output, io_cost, required, tensor_arg
from dnnmap.ir import Role
from dnnmap.ir.classify import op_name

COPIES = (
    "clone", "_to_copy", "copy", "cat", "stack", "concat", "constant_pad_nd", "pad",
    "scatter", "scatter_add", "index_put", "repeat", "tile", "roll", "flip",
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact2d",
    "masked_scatter", "index_copy", "index_fill", "tril", "triu", "lift_fresh_copy", "masked_fill",
    "where", "one_hot", "pixel_shuffle", "channel_shuffle", "native_channel_shuffle",
    "_unsafe_view_copy", "split_with_sizes_copy", "im2col", "col2im", "view_copy", "expand_copy",
    "permute_copy", "slice_copy", "select_copy", "transpose_copy", "t_copy", "unsqueeze_copy",
    "squeeze_copy", "alias_copy", "detach_copy", "_reshape_copy", "slice_scatter",
    "select_scatter", "as_strided_scatter", "diagonal_scatter", "repeat_interleave",
    "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "bernoulli",
    "slice_backward", "select_backward",  # zeros of the input's shape, the gradient copied into the slice
)
CREATION = (
    "zeros", "ones", "full", "arange", "linspace", "scalar_tensor", "zeros_like", "ones_like",
    "full_like", "new_zeros", "new_ones", "new_full", "rand", "randn", "rand_like",
    "randn_like", "randint", "randperm", "fill",
)
ALLOCATION = ("empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided")
GATHERS = ("index", "index_select", "gather", "_unsafe_index")
_INTERPOLATION = {
    "upsample_linear1d": 3,
    "upsample_bilinear2d": 7,
    "_upsample_bilinear2d_aa": 7,
    "upsample_trilinear3d": 15,
    "upsample_bicubic2d": 31,
    "grid_sampler_2d": 7 + 4,
}


@cost_rule(*COPIES)
def copy_like(ctx: RuleContext) -> OpCost:
    return io_cost(ctx)


@cost_rule("contiguous")
def contiguous(ctx: RuleContext) -> OpCost:
    if all(o.alias_of is not None for o in ctx.outputs):
        return OpCost.zeros()  # already contiguous: returns self
    return io_cost(ctx)


@cost_rule(*GATHERS)
def gather(ctx: RuleContext) -> OpCost:
    src = required(ctx, "self", 0)
    out = first_output(ctx)
    fetched = min(out.numel * src.dtype.itemsize, src.nbytes)
    base = ctx.base(0)
    others = sum(t.nbytes for t in ctx.inputs[1:])
    return OpCost(
        bytes_read=fetched + others,
        bytes_written=sum(t.nbytes for t in ctx.outputs),
        weight_bytes=fetched if base.is_static else 0,
        params=fetched // src.dtype.itemsize if base.role is Role.WEIGHT else 0,
    )


@cost_rule(*CREATION)
def creation(ctx: RuleContext) -> OpCost:
    # fill.Tensor reads its 0-d value; *_like / new_* read only metadata of their input
    value = tensor_arg(ctx, "value")
    read = value.nbytes if value is not None else 0
    return OpCost(bytes_read=read, bytes_written=sum(t.nbytes for t in ctx.outputs))


@cost_rule(*ALLOCATION)
def allocation(ctx: RuleContext) -> OpCost:
    return OpCost.zeros()


@cost_rule("copy_")
def copy_into(ctx: RuleContext) -> OpCost:
    src = required(ctx, "src", 1)
    return OpCost(bytes_read=src.nbytes, bytes_written=first_output(ctx).nbytes)


@cost_rule("fill_", "zero_")
def fill_into(ctx: RuleContext) -> OpCost:
    value = tensor_arg(ctx, "value")
    read = value.nbytes if value is not None else 0
    return OpCost(bytes_read=read, bytes_written=first_output(ctx).nbytes)


@cost_rule("index_put_", "_index_put_impl_")
def index_put_into(ctx: RuleContext) -> OpCost:
    # reads indices and values; writes numel(values) elements (x2 reads when accumulating)
    values = required(ctx, "values", len(ctx.inputs) - 1)
    indices = sum(t.nbytes for t, a in zip(ctx.inputs, ctx.op.input_args, strict=False) if a == "indices")
    dst = first_output(ctx)
    written = min(values.numel, dst.numel) * dst.dtype.itemsize
    extra = written if ctx.attrs.get("accumulate", False) else 0
    return OpCost(bytes_read=indices + values.nbytes + extra, bytes_written=written, vector_flops=extra // dst.dtype.itemsize)


@cost_rule(*_INTERPOLATION)
def interpolate(ctx: RuleContext) -> OpCost:
    per_output = _INTERPOLATION[op_name(ctx.op.target)]
    return io_cost(ctx, vector_flops=per_output * first_output(ctx).numel)


@cost_rule("index_copy_")
def index_copy_into(ctx: RuleContext) -> OpCost:
    # a KV-cache update (StaticCache.update): reads the index and the source, writes
    # numel(source) elements in place; the rest of the destination is untouched
    index, source = required(ctx, "index", 2), required(ctx, "source", 3)
    dst = first_output(ctx)
    written = min(source.numel, dst.numel) * dst.dtype.itemsize
    return OpCost(bytes_read=index.nbytes + source.nbytes, bytes_written=written)
