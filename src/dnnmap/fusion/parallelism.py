"""The parallelism descriptor of one op: independent work read off its shapes.

GEMM views (``gemm_m x gemm_n`` outputs, ``gemm_k`` reduction, ``gemm_batch`` independent
GEMMs), as the mappers tile them:

- conv (implicit GEMM, per group): M = N*Ho*Wo, N = Cout/groups, K = Cin/groups*kh*kw,
  batch = groups. Depthwise (groups == Cin > 1) is flagged: it is a GEMM with N = 1 per group.
  ``convolution_backward(grad_output, input, weight)`` has the geometry of its forward conv
  (grad_output is the forward's output): its grad-input and grad-weight GEMMs are that GEMM's
  transposes, so they are keyed by the same (M, N, K).
- linear / mm / addmm: M = rows of the activation (all leading dims), N = out features, K = in.
- bmm / matmul: the last two dims as M x K @ K x N, batch = product of the leading dims.
- attention (SDPA, q[B,H,L,E], k[B,H,S,E], v[B,H,S,Ev]): the QK^T GEMM, M = L, N = S,
  K = E, batch = B*H (the P.V GEMM is L x Ev x S). The op's whole geometry (query / key-value
  heads for GQA, both lengths, both head dims, ``is_causal``, dropout, mask; see
  :class:`~dnnmap.costs.rules.attention.AttentionGeometry`) rides along as
  :class:`AttentionParallelism` ``.attention``, for mappers that tile the kernel like
  FlashAttention (:mod:`dnnmap.mapping.attention`).
- everything else: no GEMM view (zeros); ``reduction`` is the row length it reduces.

>>> from dnnmap.fusion.toy import residual_block
>>> g = residual_block(c=8, hw=8)
>>> p = parallelism_of(g.ops[3], g)   # layer1.0.conv1: 8 -> 8 channels, 3x3, on 8x8
>>> (p.gemm_m, p.gemm_n, p.gemm_k) == (1 * 8 * 8, 8, 8 * 3 * 3)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dnnmap.costs.base import CostRuleError, RuleContext
from dnnmap.costs.rules.attention import AttentionGeometry, attention_geometry
from dnnmap.fusion.kinds import FusionKind, fusion_kind, reduction_domain
from dnnmap.fusion.partition import Parallelism
from dnnmap.ir import Graph, Op, OpClass
from dnnmap.ir.classify import op_name


@dataclass(frozen=True, slots=True)
class AttentionParallelism(Parallelism):
    """The parallelism of an attention subgraph, with the attention op's geometry."""

    attention: AttentionGeometry | None = None


def _layout(shape: tuple[int, ...]) -> dict[str, int]:
    """batch / channels / spatial of an activation: NC(spatial) for rank >= 4, [B, S, C] for
    rank 3, [B, C] for rank 2."""
    if len(shape) >= 4:
        return {"batch": shape[0], "channels": shape[1], "spatial": math.prod(shape[2:])}
    if len(shape) == 3:
        return {"batch": shape[0], "spatial": shape[1], "channels": shape[2]}
    if len(shape) == 2:
        return {"batch": shape[0], "channels": shape[1]}
    return {"channels": shape[0]} if shape else {}


def _conv(op: Op, g: Graph) -> Parallelism:
    if op_name(op.target) == "convolution_backward" and len(op.inputs) >= 3:
        # (grad_output, input, weight): the forward conv input -> weight -> output (= grad_output)
        out, x, w = (g.tensors[t].shape for t in op.inputs[:3])
    else:
        x, w = g.tensors[op.inputs[0]].shape, g.tensors[op.inputs[1]].shape
        out = g.tensors[op.outputs[0]].shape
    groups = int(op.attrs.get("groups", 1) or 1)
    transposed = bool(op.attrs.get("transposed", False))
    cin = x[1]
    kernel = math.prod(w[2:])
    cout = out[1]
    k = (cin // groups) * kernel if not transposed else w[0] // groups * kernel
    spatial = math.prod(out[2:])
    return Parallelism(
        batch=out[0], channels=cout, spatial=spatial, output_elements=math.prod(out), reduction=k,
        depthwise=groups > 1 and groups == cin,
        gemm_m=out[0] * spatial, gemm_n=cout // groups, gemm_k=k, gemm_batch=groups,
    )


def _gemm_shapes(op: Op, g: Graph) -> tuple[int, int, int, int] | None:
    """(batch, M, N, K) of a matmul-class op, or None when the shapes do not say."""
    name = op_name(op.target)
    shapes = [g.tensors[t].shape for t in op.inputs]
    if name == "linear" and len(shapes) >= 2 and shapes[0]:
        x, w = shapes[0], shapes[1]
        return 1, math.prod(x[:-1]), w[0] if len(w) == 2 else 1, x[-1]
    if name in ("addmm", "baddbmm", "addbmm") and len(shapes) >= 3:
        shapes = shapes[1:3]
    if len(shapes) < 2 or not shapes[0] or not shapes[1]:
        return None
    a, b = shapes[0], shapes[1]
    if len(a) == 1 and len(b) == 1:  # dot
        return 1, 1, 1, a[0]
    m = a[-2] if len(a) >= 2 else 1
    n = b[-1] if len(b) >= 2 else 1
    out = g.tensors[op.outputs[0]].shape
    batch = math.prod(out[:-2]) if len(out) > 2 else 1
    if name in ("_grouped_mm", "grouped_mm", "_scaled_grouped_mm") and len(a) == 2 and len(b) == 2 and len(out) == 3:
        # the experts' weight gradients: out[E, M, N] from the S routed rows split among the E
        # experts, E GEMMs of (on average) S / E rows each, not E of all S
        return out[0], m, n, max(a[-1] // out[0], 1)
    return batch, m, n, a[-1]


def _matmul(op: Op, g: Graph) -> Parallelism:
    out = g.tensors[op.outputs[0]].shape
    dims = _gemm_shapes(op, g)
    lay = _layout(out)
    heads = out[1] if len(out) == 4 else 1
    if len(out) == 4:  # [B, H, S, N]
        lay = {"batch": out[0], "spatial": out[2], "channels": out[3]}
    if dims is None:
        return Parallelism(output_elements=math.prod(out), heads=heads, **lay)
    batch, m, n, k = dims
    return Parallelism(output_elements=math.prod(out), reduction=k, heads=heads,
                       gemm_m=m, gemm_n=n, gemm_k=k, gemm_batch=batch, **lay)


def _attention(op: Op, g: Graph) -> Parallelism:
    q, k = g.tensors[op.inputs[0]].shape, g.tensors[op.inputs[1]].shape
    out = g.tensors[op.outputs[0]].shape
    if len(q) < 3 or len(k) < 2:
        return Parallelism(output_elements=math.prod(out))
    lead = q[:-2]
    try:
        geom = attention_geometry(RuleContext.of(g, op), kernel=g.meta.get("attention"))
    except CostRuleError:  # operands the cost rule cannot read: no geometry (the rule reports it)
        geom = None
    return AttentionParallelism(
        batch=lead[0] if lead else 1, heads=q[1] if len(q) == 4 else 1, spatial=q[-2], channels=out[-1],
        output_elements=math.prod(out), reduction=k[-2],
        gemm_m=q[-2], gemm_n=k[-2], gemm_k=q[-1], gemm_batch=math.prod(lead), attention=geom,
    )


def parallelism_of(op: Op, g: Graph) -> Parallelism:
    """Parallelism of one op (the dominant op of a subgraph)."""
    if not op.outputs:
        return Parallelism()
    if op.op_class is OpClass.CONV and len(op.inputs) >= 2:
        return _conv(op, g)
    if op.op_class is OpClass.MATMUL:
        return _matmul(op, g)
    if op.op_class is OpClass.ATTENTION and len(op.inputs) >= 3:
        return _attention(op, g)
    out = g.tensors[op.outputs[0]].shape
    reduction = reduction_domain(op, g)[1] if fusion_kind(op, g) is FusionKind.REDUCTION else 1
    return Parallelism(output_elements=math.prod(out), reduction=reduction, **_layout(out))
