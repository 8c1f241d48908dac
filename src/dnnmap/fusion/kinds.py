"""What an op is *to a fusing compiler*, and where each tensor's bytes really live.

Two small analyses every strategy shares:

- :func:`fusion_kind` sorts ops into the five roles a loop-fusion compiler sees (a GEMM-like
  "template", a reduction, a pointwise loop, a view, or something opaque it will not touch).
- :class:`GraphIndex` resolves every tensor to its storage (views share their base's bytes)
  and indexes producers / consumers of storages, so boundary traffic is counted once per
  buffer.

>>> from dnnmap.fusion.toy import residual_block
>>> g = residual_block()
>>> [fusion_kind(op).value for op in g.ops][:3]
['template', 'pointwise', 'pointwise']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from dnnmap.ir import Graph, Op, OpClass
from dnnmap.ir.classify import op_name


class FusionKind(StrEnum):
    TEMPLATE = "template"  # GEMM / conv / attention: a library or template kernel
    REDUCTION = "reduction"  # sum / mean / pool / softmax / layer-norm: a loop with a reduction
    POINTWISE = "pointwise"  # elementwise, copies, gathers, inference batch-norm: a plain loop
    VIEW = "view"  # metadata only: moves no bytes, never a kernel of its own
    SOURCE = "source"  # creates a tensor from nothing (arange, zeros, full)
    OPAQUE = "opaque"  # no fusion rule known (OTHER, sort, topk, scans): always its own kernel


# inference batch-norm is a per-channel affine map: a pointwise loop, as Inductor decomposes it
_BN_INFERENCE = frozenset(
    {"_native_batch_norm_legit_no_training", "cudnn_batch_norm", "miopen_batch_norm", "_batch_norm_no_update"}
)
_BN_MAYBE_TRAINING = frozenset({"batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_batch_norm_with_update"})
_OPAQUE_NAMES = frozenset({"sort", "topk", "argsort", "cumsum", "cumprod", "nonzero", "unique", "multinomial"})
# ops that read only the rows they gather from their first (data) operand
_INDEXED_WRITES = frozenset({"index_copy_", "index_put_", "_index_put_impl_"})
_GATHERS = frozenset({"embedding", "embedding_bag", "_embedding_bag", "index", "_unsafe_index",
                      "index_select", "gather", "take", "take_along_dim"})
_GLOBAL_POOLS = frozenset({"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
                           "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d"})


def is_true_view(op: Op, graph: Graph | None = None) -> bool:
    """A VIEW-class op that really is metadata: with a graph, one that changes the dtype
    (``aten.to(float16)`` recorded as a view) is a copy, not a view."""
    if op.op_class != OpClass.VIEW:
        return False
    if graph is None or not op.inputs or not op.outputs:
        return True
    src = graph.tensors[op.inputs[0]].dtype
    return all(graph.tensors[t].dtype == src for t in op.outputs)


def fusion_kind(op: Op, graph: Graph | None = None) -> FusionKind:
    """The fusion role of ``op`` (see :class:`FusionKind`); pass ``graph`` to spot dtype casts
    recorded as views."""
    name = op_name(op.target)
    cls = op.op_class
    if name in _OPAQUE_NAMES or cls == OpClass.OTHER:
        return FusionKind.OPAQUE
    if cls.is_tensor_core:
        return FusionKind.TEMPLATE
    if cls == OpClass.VIEW:
        return FusionKind.VIEW if is_true_view(op, graph) else FusionKind.POINTWISE
    if not op.inputs:
        return FusionKind.SOURCE
    if cls == OpClass.NORMALIZATION:
        inference = name in _BN_INFERENCE or (name in _BN_MAYBE_TRAINING and not op.attrs.get("training", False))
        return FusionKind.POINTWISE if inference else FusionKind.REDUCTION
    if cls in (OpClass.REDUCTION, OpClass.SOFTMAX):
        return FusionKind.REDUCTION
    return FusionKind.POINTWISE


def is_global_pool(op: Op, graph: Graph) -> bool:
    """A pool / mean that reduces all spatial positions to one (the squeeze of an SE block)."""
    name = op_name(op.target)
    if not op.outputs or not op.inputs:
        return False
    out = graph.tensors[op.outputs[0]].shape
    if name in _GLOBAL_POOLS or name == "mean":
        return len(out) >= 3 and math.prod(out[2:]) == 1
    return False


def _norm_dims(dims: object, ndim: int) -> tuple[int, ...]:
    if dims is None or dims == ():
        return tuple(range(ndim))
    seq = dims if isinstance(dims, (list, tuple)) else (dims,)
    return tuple(sorted(int(d) % ndim for d in seq)) if ndim else ()


def reduction_domain(op: Op, graph: Graph) -> tuple[int, int]:
    """``(rows, row_length)`` a reduction loops over: ``rows`` independent reductions of
    ``row_length`` elements each. Two reductions over the same domain share one loop nest
    (Inductor fuses them); a reduction over the last dim only is *row-wise*.

    layer_norm([S, D], normalized_shape=[D]) -> (S, D); softmax(x[B, H, S, S], -1) -> (B*H*S, S).
    """
    if not op.inputs:
        return (1, 1)
    x = graph.tensors[op.inputs[0]]
    shape, numel = x.shape, max(x.numel, 1)
    name = op_name(op.target)
    if "layer_norm" in name or "rms_norm" in name:
        norm = op.attrs.get("normalized_shape") or shape[-1:]
        row = math.prod(norm) if norm else 1
    elif op.op_class == OpClass.SOFTMAX:
        d = int(op.attrs.get("dim", -1)) % max(len(shape), 1)
        row = shape[d] if shape else 1
    elif "dim" in op.attrs and shape:
        row = math.prod(shape[d] for d in _norm_dims(op.attrs.get("dim"), len(shape)))
    else:  # pools and whole-tensor reductions: input elements per output element
        out = graph.tensors[op.outputs[0]].numel if op.outputs else 1
        row = numel // max(out, 1)
    row = max(int(row), 1)
    return (numel // row, row)


def is_row_wise(op: Op, graph: Graph) -> bool:
    """True when a reduction reduces the last dimension only (layer-norm, softmax(-1), mean(-1))."""
    if not op.inputs:
        return False
    shape = graph.tensors[op.inputs[0]].shape
    if not shape:
        return False
    name = op_name(op.target)
    if "layer_norm" in name or "rms_norm" in name:
        norm = op.attrs.get("normalized_shape") or shape[-1:]
        return len(norm) == 1
    if op.op_class == OpClass.SOFTMAX:
        return int(op.attrs.get("dim", -1)) % len(shape) == len(shape) - 1
    if "dim" in op.attrs and op.attrs.get("dim") not in (None, ()):
        return _norm_dims(op.attrs.get("dim"), len(shape)) == (len(shape) - 1,)
    return False


# -- storage -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphIndex:
    """Storage resolution and op positions for one graph (built once per partition).

    A view's bytes belong to its base: ``storage[t]`` follows view ops back to the buffer
    they look into.
    """

    graph: Graph

    @cached_property
    def pos(self) -> dict[str, int]:
        """op id -> execution index."""
        return {op.id: i for i, op in enumerate(self.graph.ops)}

    @cached_property
    def storage(self) -> Mapping[str, str]:
        """tensor id -> storage id. Only outputs of true views alias: they share the storage
        of the view's first input. Every other op's output is its own storage (a functional
        graph: ``relu_`` or ``contiguous`` write a buffer, whatever ``alias_of`` says, since
        the schema's "may alias" does not tell whether a copy happened). Exception: an in-place
        indexed write (``index_copy_`` / ``index_put_`` into a KV cache) updates its destination's
        buffer where indexed; its output is that buffer."""
        tensors = self.graph.tensors
        link: dict[str, str] = {}
        for op in self.graph.ops:
            if (is_true_view(op, self.graph) or op_name(op.target) in _INDEXED_WRITES) and op.inputs:
                for t in op.outputs:
                    if t != op.inputs[0]:
                        link[t] = op.inputs[0]
        out: dict[str, str] = {}
        for tid in tensors:
            chain = []
            cur = tid
            while cur in link and cur not in out and len(chain) <= len(link):
                chain.append(cur)
                cur = link[cur]
            root = out.get(cur, cur)
            for c in chain:
                out[c] = root
            out[tid] = root
        return out

    @cached_property
    def storage_readers(self) -> Mapping[str, tuple[int, ...]]:
        """storage id -> indices of the non-view ops that read it (directly or through views)."""
        acc: dict[str, list[int]] = {}
        st = self.storage
        for i, op in enumerate(self.graph.ops):
            if self.kinds[i] is FusionKind.VIEW:
                continue
            for s in dict.fromkeys(st[t] for t in op.inputs):
                acc.setdefault(s, []).append(i)
        return {k: tuple(v) for k, v in acc.items()}

    @cached_property
    def output_storages(self) -> frozenset[str]:
        """Storages the model returns (a returned view keeps its base alive)."""
        return frozenset(self.storage[t] for t in self.graph.outputs if t in self.storage)

    @cached_property
    def kinds(self) -> tuple[FusionKind, ...]:
        return tuple(fusion_kind(op, self.graph) for op in self.graph.ops)

    @cached_property
    def preds(self) -> tuple[tuple[int, ...], ...]:
        """op index -> indices of the ops writing the storages it reads (deduplicated).

        Data dependencies only: views are metadata, so a view op has no edges and an op
        reading a view depends on the writer of the storage underneath.
        """
        pos, g, st = self.pos, self.graph, self.storage
        out = []
        for i, op in enumerate(g.ops):
            if self.kinds[i] is FusionKind.VIEW:
                out.append(())
                continue
            ps = {pos[p] for t in op.inputs if (p := g.tensors[st[t]].producer) is not None and p in pos}
            ps.discard(i)
            out.append(tuple(sorted(ps)))
        return tuple(out)

    @cached_property
    def succs(self) -> tuple[tuple[int, ...], ...]:
        acc: list[list[int]] = [[] for _ in self.graph.ops]
        for j, ps in enumerate(self.preds):
            for i in ps:
                acc[i].append(j)
        return tuple(tuple(a) for a in acc)

    @cached_property
    def read_bytes(self) -> tuple[tuple[int, ...], ...]:
        """op index -> bytes it reads of each input. All of it, except the data operand of a
        gather (embedding, index, gather): at most one element per output element; and the
        destination of an in-place indexed write (``index_copy_``, ``index_put_``: a KV-cache
        update), which is written where indexed, not read.

        embedding(table[50257, 768], ids[1, 128]) reads 128 * 768 * 4 bytes of the table.
        """
        g = self.graph
        out = []
        for op in g.ops:
            sizes = [g.tensors[t].nbytes for t in op.inputs]
            if sizes and op.outputs and op_name(op.target) in _GATHERS:
                data = g.tensors[op.inputs[0]]
                touched = sum(g.tensors[t].numel for t in op.outputs) * data.dtype.itemsize
                sizes[0] = min(sizes[0], touched)
            elif sizes and op_name(op.target) in _INDEXED_WRITES:
                sizes[0] = 0
            out.append(tuple(sizes))
        return tuple(out)

    def nbytes(self, tensor_id: str) -> int:
        return self.graph.tensors[tensor_id].nbytes

    def is_static_storage(self, storage_id: str) -> bool:
        return self.graph.tensors[storage_id].is_static
