"""GEMM rules: mm, addmm, bmm, baddbmm, matmul, linear, einsum, mv, dot, scaled / int mm.

Tensor FLOPs come from ``torch.utils.flop_counter``'s own formulas (``mm_flop``,
``bmm_flop``; 2 FLOPs per multiply-add, ``m * n * 2 * k``), called with the shapes the op
saw, so dnnmap agrees with ``FlopCounterMode`` by construction. Composite ops that
FlopCounterMode only sees after decomposition (``linear``, ``matmul``, ``einsum``) are
folded to the ``mm`` / ``bmm`` they decompose into.

A bias or ``self`` term (``addmm``, ``baddbmm``, ``linear`` with bias) is an epilogue:
one add per output element, counted as vector work (FlopCounterMode ignores it).

>>> from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
>>> from dnnmap.costs import count_graph
>>> t = {"a": Tensor("a", (4, 8), DType.FLOAT32, Role.INPUT),
...      "w": Tensor("w", (8, 16), DType.FLOAT32, Role.WEIGHT),
...      "y": Tensor("y", (4, 16), DType.FLOAT32, Role.OUTPUT, producer="op0")}
>>> g = Graph("g", t, (Op("op0", "aten.mm.default", OpClass.MATMUL, ("a", "w"), ("y",),
...                       input_args=("self", "mat2")),))
>>> count_graph(g).total.tensor_flops == 2 * 4 * 16 * 8
True
"""

from __future__ import annotations

from collections import Counter

from torch.utils.flop_counter import _scaled_mm_flop, bmm_flop, mm_flop

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.costs.registry import cost_rule
from dnnmap.costs.rules._common import fail, io_cost, out_numel, prod, required, tensor_arg


@cost_rule("mm", "_int_mm")
def mm(ctx: RuleContext) -> OpCost:
    a, b = required(ctx, "self", 0), required(ctx, "mat2", 1)
    return io_cost(ctx, tensor_flops=mm_flop(a.shape, b.shape))


@cost_rule("_scaled_mm")
def scaled_mm(ctx: RuleContext) -> OpCost:
    a, b = required(ctx, "self", 0), required(ctx, "mat2", 1)
    return io_cost(ctx, tensor_flops=_scaled_mm_flop(a.shape, b.shape, (), ()))


@cost_rule("addmm")
def addmm(ctx: RuleContext) -> OpCost:
    # self + mat1 @ mat2: the add is one vector op per output element
    a, b = required(ctx, "mat1", 1), required(ctx, "mat2", 2)
    return io_cost(ctx, tensor_flops=mm_flop(a.shape, b.shape), vector_flops=out_numel(ctx))


@cost_rule("bmm")
def bmm(ctx: RuleContext) -> OpCost:
    a, b = required(ctx, "self", 0), required(ctx, "mat2", 1)
    return io_cost(ctx, tensor_flops=bmm_flop(a.shape, b.shape))


@cost_rule("baddbmm")
def baddbmm(ctx: RuleContext) -> OpCost:
    a, b = required(ctx, "batch1", 1), required(ctx, "batch2", 2)
    return io_cost(ctx, tensor_flops=bmm_flop(a.shape, b.shape), vector_flops=out_numel(ctx))


@cost_rule("addbmm")
def addbmm(ctx: RuleContext) -> OpCost:
    # self + sum_b batch1[b] @ batch2[b]: bmm, then (b - 1) * m * n adds, then the self add
    a, b = required(ctx, "batch1", 1), required(ctx, "batch2", 2)
    n_out = out_numel(ctx)
    return io_cost(ctx, tensor_flops=bmm_flop(a.shape, b.shape), vector_flops=a.shape[0] * n_out)


@cost_rule("mv")
def mv(ctx: RuleContext) -> OpCost:
    # [m, k] @ [k] -> 2 * m * k, as an mm with n = 1
    a, v = required(ctx, "self", 0), required(ctx, "vec", 1)
    return io_cost(ctx, tensor_flops=mm_flop(a.shape, (v.shape[0], 1)))


@cost_rule("addmv")
def addmv(ctx: RuleContext) -> OpCost:
    a, v = required(ctx, "mat", 1), required(ctx, "vec", 2)
    return io_cost(ctx, tensor_flops=mm_flop(a.shape, (v.shape[0], 1)), vector_flops=out_numel(ctx))


@cost_rule("dot")
def dot(ctx: RuleContext) -> OpCost:
    # [k] . [k] -> 2 * k, as a (1, k) x (k, 1) mm
    a, b = required(ctx, "self", 0), required(ctx, "tensor", 1)
    return io_cost(ctx, tensor_flops=mm_flop((1, a.shape[0]), (b.shape[0], 1)))


def matmul_flops(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """``torch.matmul`` FLOPs for any ranks, as the mm / bmm it decomposes into.

    1-D operands get a unit dim (``[k] @ [k, n]`` is ``[1, k] @ [k, n]``); batch dims
    broadcast.

    >>> matmul_flops((2, 3, 4, 5), (5, 6)) == 2 * 2 * 3 * 4 * 6 * 5
    True
    """
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    m, k = a2[-2], a2[-1]
    n = b2[-1]
    batch = _broadcast(a2[:-2], b2[:-2])
    if not batch:
        return mm_flop((m, k), (b2[-2], n))
    return bmm_flop((prod(batch), m, k), (prod(batch), b2[-2], n))


def _broadcast(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(x), len(y))
    x, y = (1,) * (n - len(x)) + x, (1,) * (n - len(y)) + y
    return tuple(max(p, q) if 1 in (p, q) else p for p, q in zip(x, y, strict=True))


@cost_rule("matmul")
def matmul(ctx: RuleContext) -> OpCost:
    a, b = required(ctx, "self", 0), required(ctx, "other", 1)
    return io_cost(ctx, tensor_flops=matmul_flops(a.shape, b.shape))


@cost_rule("linear")
def linear(ctx: RuleContext) -> OpCost:
    # input[..., in] @ weight[out, in]^T (+ bias): mm of (prod(...), in) x (in, out)
    x, w = required(ctx, "input", 0), required(ctx, "weight", 1)
    bias = tensor_arg(ctx, "bias", 2)
    rows = prod(x.shape[:-1])
    k_in = x.shape[-1] if x.shape else 1
    w_shape = (1, *w.shape) if len(w.shape) == 1 else w.shape  # 1-D weight: one output
    flops = mm_flop((rows, k_in), (w_shape[1], w_shape[0]))
    return io_cost(ctx, tensor_flops=flops, vector_flops=out_numel(ctx) if bias is not None else 0)


@cost_rule("einsum")
def einsum(ctx: RuleContext) -> OpCost:
    """Operands contracted pairwise left to right, as ``torch.einsum`` does without opt_einsum.

    Each pair with a contracted index is one bmm: 2 * prod(sizes of the pair's indices);
    a pair with none (an outer / batched-outer product) is a broadcast multiply, one vector
    op per output element, as ATen's ``sumproduct_pair`` does. Indices that appear in only
    one operand and nowhere later are summed first: one add per element (vector work).
    """
    eq = str(ctx.attrs.get("equation", "")).replace(" ", "")
    try:
        terms, out = parse_einsum(eq, [len(t.shape) for t in ctx.inputs])
        sizes: dict[str, int] = {}
        for term, t in zip(terms, ctx.inputs, strict=True):
            for ch, n in zip(term, t.shape, strict=True):
                sizes[ch] = max(sizes.get(ch, 1), n)
    except ValueError as e:
        raise fail(ctx, f"einsum {eq!r}: {e}") from None
    tensor, vector = _contract(terms, out, sizes)
    return io_cost(ctx, tensor_flops=tensor, vector_flops=vector)


def parse_einsum(eq: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand terms and output with ``...`` spelled out as digit labels, implicit output filled.

    >>> parse_einsum("...ij,jk", [3, 2])
    (['0ij', 'jk'], '0ik')
    """
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"names {len(terms)} operands, op has {len(ranks)}")
    n_ell = max((r - (len(t) - 3) for t, r in zip(terms, ranks, strict=True) if "..." in t), default=0)
    ell = "".join(str(i) for i in range(n_ell))  # ellipsis dims, right-aligned across operands

    def spell(term: str, rank: int) -> str:
        if "..." not in term:
            return term
        k = rank - (len(term) - 3)
        return term.replace("...", ell[n_ell - k :])

    spelled = [spell(t, r) for t, r in zip(terms, ranks, strict=True)]
    for t, r in zip(spelled, ranks, strict=True):
        if len(t) != r:
            raise ValueError(f"term {t!r} does not match an operand of rank {r}")
    if arrow:
        return spelled, out.replace("...", ell)
    counts = Counter("".join(terms).replace("...", ""))
    return spelled, ell + "".join(sorted(c for c, n in counts.items() if n == 1))


def _contract(terms: list[str], out: str, sizes: dict[str, int]) -> tuple[int, int]:
    """(tensor FLOPs, vector FLOPs) of contracting ``terms`` left to right into ``out``."""
    tensor = vector = 0

    def needed_after(i: int) -> set[str]:
        return set(out).union(*terms[i + 1 :])

    def sum_out(term: str, keep: set[str]) -> str:
        nonlocal vector
        labels = "".join(dict.fromkeys(term))  # a repeated label is a diagonal (a view)
        kept = "".join(c for c in labels if c in keep)
        if kept != labels:  # one add per element of the operand
            vector += prod([sizes[c] for c in labels])
        return kept

    cur = sum_out(terms[0], needed_after(0))
    for i in range(1, len(terms)):
        need = needed_after(i)
        nxt = sum_out(terms[i], need | set(cur))
        labels = dict.fromkeys(cur + nxt)
        contracted = [c for c in labels if c in cur and c in nxt and c not in need]
        if contracted:
            # one bmm: batch (both, kept) x m (cur only) x n (nxt only) x k (contracted)
            tensor += 2 * prod([sizes[c] for c in labels])
        else:  # nothing to sum: torch multiplies elementwise (broadcast), one op per element
            vector += prod([sizes[c] for c in labels])
        cur = "".join(c for c in labels if c in need)
    return tensor, vector


@cost_rule("_grouped_mm", "grouped_mm", "_scaled_grouped_mm")
def grouped_mm(ctx: RuleContext) -> OpCost:
    # mixture of experts: row s of self[S, K] times the weight of its expert (mat2[E, K, N]):
    # one [S, K] x [K, N] GEMM spread over experts, 2 * S * K * N whatever the routing (other
    # layouts: 2 * numel(out) * K). Both operands 2-D (the experts' weight gradients in
    # backward: self[M, S] x mat2[S, N] -> out[E, M, N], the routed rows S split among the
    # experts): each row feeds one expert's GEMM, 2 * M * S * N, not E times that.
    # Bytes: every expert's weight once, the dense upper bound; the experts a batch actually
    # reaches are priced by dnnmap.mapping.weights.
    a, b = required(ctx, "self", 0), required(ctx, "mat2", 1)
    k = a.shape[-1]
    if b.shape[-2] != k and b.shape[-1] != k:
        raise fail(ctx, f"inner dimensions disagree: {a.shape} x {b.shape}")
    if len(a.shape) == 2 and len(b.shape) == 2:
        return io_cost(ctx, tensor_flops=2 * a.shape[0] * k * b.shape[-1])
    return io_cost(ctx, tensor_flops=2 * out_numel(ctx) * k)
