"""View and metadata ops: no work, no bytes. Eval-mode dropout is the identity.

A view shares its input's storage (its output's ``alias_of`` is set), so nothing moves.
Five ops only *may* be views: ``reshape`` / ``flatten`` / ``reshape_as`` copy when the
input's strides do not allow a view (their output then aliases nothing), and ``to`` /
``type_as`` convert when the dtype changes (or ``copy=True``). A copy reads the input once
and writes the output once. Dropout with ``train=True`` and ``p > 0`` does work:
one random draw compare and one scaling multiply per element, plus its bytes.

>>> from dnnmap.costs.rules.view import MAY_COPY
>>> sorted(MAY_COPY)
['flatten', 'reshape', 'reshape_as', 'to', 'type_as']
"""

from __future__ import annotations

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import io_cost
from dnnmap.ir import Role
from dnnmap.ir.classify import op_name

MAY_COPY = frozenset({"reshape", "flatten", "reshape_as", "to", "type_as"})
_CASTS = ("to", "type_as")
VIEWS = (
    "view", "_unsafe_view", "permute", "transpose", "t", "numpy_T", "expand", "expand_as", "squeeze",
    "unsqueeze", "unflatten", "slice", "select", "narrow", "split", "split_with_sizes", "chunk",
    "unbind", "alias", "detach", "as_strided", "as_strided_", "view_as", "unfold", "movedim",
    "diagonal", "lift_fresh", "lift", "align_to", "tensor_split", "real", "view_as_real",
    "view_as_complex", "_reshape_alias", "swapaxes", "swapdims", "unsafe_split", "unsafe_chunk",
    "resolve_conj", "resolve_neg",
)
METADATA = (
    "sym_size", "sym_numel", "sym_stride", "sym_storage_offset", "_assert_async",
    "_local_scalar_dense", "item", "_sym_constrain_range_for_size", "sym_constrain_range_for_size",
    "_assert_scalar", "_assert_tensor_metadata", "device", "is_nonzero", "is_same_size",
)
DROPOUTS = ("dropout", "native_dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")


@cost_rule(*VIEWS, *METADATA)
def view(ctx: RuleContext) -> OpCost:
    return OpCost.zeros()


def copies(ctx: RuleContext) -> bool:
    """Did a may-be-view op copy?

    ``to`` / ``type_as`` copy when the dtype changes (or ``copy=True``), else return their
    input. ``reshape`` / ``flatten`` / ``reshape_as`` copy when their output aliases nothing
    (the capture sets ``alias_of`` on an output that shares its input's storage).
    """
    if not ctx.inputs or not ctx.outputs:
        return False
    if any(o.dtype != ctx.inputs[0].dtype for o in ctx.outputs):
        return True
    if op_name(ctx.op.target) in _CASTS:
        return bool(ctx.attrs.get("copy", False))
    return any(o.alias_of is None and o.numel > 0 for o in ctx.outputs)


@cost_rule(*MAY_COPY)
def maybe_view(ctx: RuleContext) -> OpCost:
    if not copies(ctx):
        return OpCost.zeros()
    # a copy reads the source once and writes the new tensor once (type_as's `other`
    # argument only lends its dtype)
    src, base = ctx.inputs[0], ctx.base(0)
    return OpCost(
        bytes_read=src.nbytes,
        bytes_written=sum(t.nbytes for t in ctx.outputs),
        weight_bytes=src.nbytes if base.is_static else 0,
        params=src.numel if base.role is Role.WEIGHT else 0,
    )


@cost_rule(*DROPOUTS)
def dropout(ctx: RuleContext) -> OpCost:
    train = ctx.attrs.get("train", ctx.attrs.get("training", False))
    p = float(ctx.attrs.get("p", 0.0) or 0.0)
    if not train or p == 0.0:
        return OpCost.zeros()
    return io_cost(ctx, vector_flops=2 * ctx.inputs[0].numel)
