"""Attention rules: scaled_dot_product_attention and every kernel variant it lowers to.

Tensor FLOPs are ``torch.utils.flop_counter.sdpa_flop_count(q, k, v)`` (GQA included):

    q[b,h,s_q,d] @ k^T[b,h,d,s_k] -> 2*b*h*s_q*s_k*d;  p[b,h,s_q,s_k] @ v[b,h,s_k,d_v] -> 2*b*h*s_q*s_k*d_v

FlopCounterMode counts this only for the CUDA flash / efficient / cudnn variants; on CPU
(``_scaled_dot_product_flash_attention_for_cpu``) and for the composite
``scaled_dot_product_attention`` it counts zero. dnnmap counts every variant.

**Causal masks:** the full ``s_q x s_k`` square is counted, as FlopCounterMode does and as
the math and memory-efficient kernels compute it. FlashAttention-style kernels skip the
fully masked blocks (about half the square for ``s_q == s_k``); a mapper that models such
a kernel reads ``is_causal`` from the op's attrs.

**Vector work** per score element (b*h_q*s_q*s_k of them): 1 scale multiply, 1 mask add
when an ``attn_mask`` / bias is given or ``is_causal``, 5 for the softmax (max, subtract,
exp, sum, divide), 1 dropout multiply when ``dropout_p > 0``. One exp (transcendental)
per score element.

**Geometry** (:func:`attention_geometry`, :class:`AttentionGeometry`): batch, query heads and
key/value heads (GQA), query and key/value lengths, the q.k and v head dims, ``is_causal``
(only the flag counts: whether an ``attn_mask`` tensor is causal cannot be known from its
shape), ``dropout_p`` and whether a mask / bias tensor is read. The fusion layer puts it on
the subgraph's parallelism; the GPU mapper tiles the kernel from it
(:mod:`dnnmap.mapping.attention`), where causal block skipping is executed work, not counted
FLOPs.

**Bytes**: the fused kernel reads q, k, v (and the mask) once and writes the output (and
logsumexp); the score matrix never goes to memory. Inputs are counted at the shape
recorded (a mask expanded to ``[b,h,s,s]`` counts at that shape).

>>> from dnnmap.costs.rules.attention import attention_flops
>>> attention_flops((1, 12, 197, 64), (1, 12, 197, 64), (1, 12, 197, 64)) == 2 * 2 * 12 * 197 * 197 * 64
True
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.flop_counter import mm_flop, sdpa_backward_flop_count, sdpa_flop_count

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import fail, io_cost, prod, required, tensor_arg
from dnnmap.ir import Tensor
from dnnmap.ir.classify import op_name

_SOFTMAX_OPS = 5  # max, subtract, exp, sum, divide per score element (see softmax.py)


def attention_flops(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> int:
    """Tensor FLOPs of attention on [b, h, s, d] shapes (k / v may have fewer heads: GQA)."""
    return sdpa_flop_count(q, k, v)


def _bhsd(shape: tuple[int, ...], seq_first: bool) -> tuple[int, int, int, int]:
    """Any SDPA operand shape as (batch, heads, seq, dim).

    ``(..., s, d)`` with ``h`` at -3 when rank >= 4; leading dims fold into batch.
    ``seq_first`` is the (b, s, h, d) layout of ``_flash_attention_forward``.
    """
    if seq_first and len(shape) == 4:
        b, s, h, d = shape
        return b, h, s, d
    if len(shape) >= 4:
        return prod(shape[:-3]), shape[-3], shape[-2], shape[-1]
    if len(shape) == 3:
        return shape[0], 1, shape[1], shape[2]
    if len(shape) == 2:
        return 1, 1, shape[0], shape[1]
    raise ValueError(f"attention operand of rank {len(shape)}")


_SEQ_FIRST = ("_flash_attention_forward", "_efficient_attention_forward")  # (b, s, h, d) operands


@dataclass(frozen=True, slots=True)
class AttentionGeometry:
    """The shape of one attention call, as a tiled (FlashAttention-style) kernel sees it.

    ``kernel``: the implementation asked for at capture (``graph.meta["attention"]``:
    ``sdpa`` / ``flash``; ``sdpa`` when the graph does not say)."""

    batch: int
    q_heads: int
    kv_heads: int  # < q_heads: grouped-query attention (q_heads / kv_heads queries share a K/V head)
    q_len: int
    kv_len: int
    head_dim: int  # of q and k
    v_head_dim: int
    causal: bool  # is_causal=True (or the efficient kernel's causal custom_mask_type)
    dropout_p: float = 0.0
    masked: bool = False  # an attn_mask / bias tensor is read
    kernel: str = "sdpa"

    @property
    def scores(self) -> int:
        """Score elements of the full square: ``b * h_q * s_q * s_kv``."""
        return self.batch * self.q_heads * self.q_len * self.kv_len


def _operands(ctx: RuleContext, seq_first: bool) -> tuple[tuple[int, int, int, int], ...]:
    """q, k, v as (batch, heads, seq, dim); a batch-1 k / v broadcasts against q's batch."""
    q_t, k_t, v_t = required(ctx, "query", 0), required(ctx, "key", 1), required(ctx, "value", 2)
    try:
        q, k, v = (_bhsd(t.shape, seq_first) for t in (q_t, k_t, v_t))
    except ValueError as e:
        raise fail(ctx, str(e)) from None
    b = q[0]
    return q, (b, *k[1:]), (b, *v[1:])


def attention_geometry(ctx: RuleContext, kernel: str | None = None) -> AttentionGeometry:
    """The :class:`AttentionGeometry` of an SDPA-family op (``kernel``: what the capture asked for)."""
    seq_first = op_name(ctx.op.target) in _SEQ_FIRST
    q, k, v = _operands(ctx, seq_first)
    causal = bool(ctx.attrs.get("is_causal", False)) or int(ctx.attrs.get("custom_mask_type", 0) or 0) != 0
    masked = any(tensor_arg(ctx, n) is not None for n in ("attn_mask", "attn_bias", "bias"))
    return AttentionGeometry(
        batch=q[0], q_heads=q[1], kv_heads=k[1], q_len=q[2], kv_len=k[2], head_dim=q[3], v_head_dim=v[3],
        causal=causal, dropout_p=float(ctx.attrs.get("dropout_p", 0.0) or 0.0), masked=masked,
        kernel=kernel or "sdpa",
    )


def _sdpa_cost(ctx: RuleContext, *, seq_first: bool = False) -> OpCost:
    q, k, v = _operands(ctx, seq_first)
    b = q[0]
    scores = b * q[1] * q[2] * k[2]  # b * h_q * s_q * s_k
    per_score = 1 + _SOFTMAX_OPS  # scale + softmax
    if _masked(ctx):
        per_score += 1
    if float(ctx.attrs.get("dropout_p", 0.0) or 0.0) > 0.0:
        per_score += 1
    try:
        flops = attention_flops(q, k, v)
    except AssertionError as e:
        raise fail(ctx, str(e)) from None
    return io_cost(ctx, tensor_flops=flops, vector_flops=per_score * scores, transcendentals=scores)


def _masked(ctx: RuleContext) -> bool:
    if bool(ctx.attrs.get("is_causal", False)):
        return True
    if int(ctx.attrs.get("custom_mask_type", 0) or 0) != 0:  # efficient attention: 1/2 = causal
        return True
    return any(tensor_arg(ctx, n) is not None for n in ("attn_mask", "attn_bias", "bias"))


@cost_rule(
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_attention_math",
)
def sdpa(ctx: RuleContext) -> OpCost:
    return _sdpa_cost(ctx)


@cost_rule("_flash_attention_forward", "_efficient_attention_forward")
def flash_forward(ctx: RuleContext) -> OpCost:
    # these low-level kernels take (b, s, h, d); FlopCounterMode transposes the same way
    return _sdpa_cost(ctx, seq_first=True)


@cost_rule("_native_multi_head_attention")
def native_mha(ctx: RuleContext) -> OpCost:
    """nn.MultiheadAttention's inference fast path: projections + attention in one op.

    q/k/v projections ``2*B*L*E*E + 2 * (2*B*S*E*E)``, the attention core, and the output
    projection ``2*B*L*E*E`` are all tensor FLOPs of this one op; biases are one add per
    projected element; averaging returned weights over heads is one add per score.
    """
    q_t, k_t = required(ctx, "query", 0), required(ctx, "key", 1)
    e = int(ctx.attrs.get("embed_dim", q_t.shape[-1]))
    h = int(ctx.attrs.get("num_head", 1))
    b = prod(q_t.shape[:-2]) if len(q_t.shape) >= 3 else 1
    s_q, s_k = q_t.shape[-2], k_t.shape[-2]
    head = (b, h, 0, e // h)
    core = attention_flops(_with_seq(head, s_q), _with_seq(head, s_k), _with_seq(head, s_k))
    proj = 2 * mm_flop((b * s_q, e), (e, e)) + 2 * mm_flop((b * s_k, e), (e, e))
    scores = b * h * s_q * s_k
    per_score = 1 + _SOFTMAX_OPS + (1 if tensor_arg(ctx, "mask") is not None else 0)
    if bool(ctx.attrs.get("need_weights", True)) and bool(ctx.attrs.get("average_attn_weights", True)):
        per_score += 1
    biases = _bias_adds(ctx, b * s_q * e, b * s_k * e)
    return io_cost(ctx, tensor_flops=core + proj, vector_flops=per_score * scores + biases, transcendentals=scores)


def _with_seq(shape: tuple[int, int, int, int], s: int) -> tuple[int, int, int, int]:
    return shape[0], shape[1], s, shape[3]


def _bias_adds(ctx: RuleContext, q_elems: int, kv_elems: int) -> int:
    qkv_bias: Tensor | None = tensor_arg(ctx, "qkv_bias")
    proj_bias: Tensor | None = tensor_arg(ctx, "proj_bias")
    adds = (q_elems + 2 * kv_elems) if qkv_bias is not None else 0
    return adds + (q_elems if proj_bias is not None else 0)


@cost_rule(
    "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_flash_attention_backward", "_efficient_attention_backward",
)
def sdpa_backward(ctx: RuleContext) -> OpCost:
    """``torch.utils.flop_counter.sdpa_backward_flop_count``: the scores recomputed (q k^T)
    and four more GEMMs (dV, dP, dQ, dK) = 5/2 of the forward's; per score the softmax
    recomputed (scale, exp with the saved logsumexp: 2) and its backward (mul, subtract,
    mul: 3), plus the mask / dropout mask when present."""
    q, k, v = (required(ctx, n, i) for n, i in (("query", 1), ("key", 2), ("value", 3)))
    seq_first = op_name(ctx.op.target) in ("_flash_attention_backward", "_efficient_attention_backward")
    qs, ks, vs = (_bhsd(t.shape, seq_first) for t in (q, k, v))
    flops = sdpa_backward_flop_count(qs, qs, ks, vs)
    scores = qs[0] * qs[1] * qs[2] * ks[2]
    per_score = 5 + (1 if _masked(ctx) else 0) + (1 if float(ctx.attrs.get("dropout_p", 0.0) or 0.0) > 0 else 0)
    return io_cost(ctx, tensor_flops=flops, vector_flops=per_score * scores, transcendentals=scores)
