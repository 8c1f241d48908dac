"""Tensor-op rules against torch's FlopCounterMode, op by op, on tiny real tensors.

The composite ops (linear, matmul, einsum, the math attention) are counted by
FlopCounterMode through the mm / bmm they decompose into, so this checks dnnmap's folding
of those ops too. Tolerance: exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dnnmap.costs import OpCost, count_graph
from dnnmap.ir import DType, Graph, Op, Role, Tensor, classify

aten = torch.ops.aten


def _dnnmap_cost(target: str, args: list[tuple[str, torch.Tensor]], out: torch.Tensor | tuple, attrs: dict[str, Any]) -> OpCost:
    tensors: dict[str, Tensor] = {}
    for i, (_, t) in enumerate(args):
        tensors[f"i{i}"] = Tensor(f"i{i}", tuple(t.shape), DType.parse(str(t.dtype)), Role.INPUT)
    outs = out if isinstance(out, tuple) else (out,)
    out_ids = []
    for i, t in enumerate(o for o in outs if isinstance(o, torch.Tensor)):
        tensors[f"o{i}"] = Tensor(f"o{i}", tuple(t.shape), DType.parse(str(t.dtype)), Role.OUTPUT, producer="op0")
        out_ids.append(f"o{i}")
    op = Op("op0", target, classify(target), tuple(tensors)[: len(args)], tuple(out_ids), "", "", tuple(a for a, _ in args), attrs)
    return count_graph(Graph("one", tensors, (op,)), strict=True).cost("op0")


def _torch_flops(fn: Callable[[], Any]) -> tuple[int, Any]:
    with FlopCounterMode(display=False) as fc:
        out = fn()
    return fc.get_total_flops(), out


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


CASES: list[tuple[str, str, list[tuple[str, torch.Tensor]], dict[str, Any]]] = [
    ("mm", "aten.mm.default", [("self", r(5, 7)), ("mat2", r(7, 3))], {}),
    ("addmm", "aten.addmm.default", [("self", r(3)), ("mat1", r(5, 7)), ("mat2", r(7, 3))], {}),
    ("bmm", "aten.bmm.default", [("self", r(2, 5, 7)), ("mat2", r(2, 7, 3))], {}),
    ("baddbmm", "aten.baddbmm.default", [("self", r(2, 5, 3)), ("batch1", r(2, 5, 7)), ("batch2", r(2, 7, 3))], {}),
    ("matmul-4d-2d", "aten.matmul.default", [("self", r(2, 3, 4, 5)), ("other", r(5, 6))], {}),
    ("matmul-bcast", "aten.matmul.default", [("self", r(2, 1, 4, 5)), ("other", r(3, 5, 6))], {}),
    ("matmul-vec", "aten.matmul.default", [("self", r(5)), ("other", r(2, 5, 6))], {}),
    ("linear-3d", "aten.linear.default", [("input", r(2, 6, 8)), ("weight", r(4, 8)), ("bias", r(4))], {}),
    ("einsum-attn", "aten.einsum.default", [("operands", r(2, 3, 5, 4)), ("operands", r(2, 3, 6, 4))], {"equation": "bhqd,bhkd->bhqk"}),
    ("einsum-sumout", "aten.einsum.default", [("operands", r(3, 4)), ("operands", r(4, 5))], {"equation": "ij,jk->i"}),
    ("einsum-3ops", "aten.einsum.default", [("operands", r(3, 4)), ("operands", r(4, 5)), ("operands", r(5, 2))], {"equation": "ij,jk,kl->il"}),
    ("einsum-ellipsis", "aten.einsum.default", [("operands", r(2, 3, 4, 5)), ("operands", r(5, 6))], {"equation": "...ij,jk->...ik"}),
    ("einsum-implicit", "aten.einsum.default", [("operands", r(3, 4)), ("operands", r(4, 5))], {"equation": "ij,jk"}),
    ("einsum-batch-contract", "aten.einsum.default", [("operands", r(2, 3, 4)), ("operands", r(2, 4))], {"equation": "bik,bk->bi"}),
]


@pytest.mark.parametrize(("name", "target", "args", "attrs"), CASES, ids=[c[0] for c in CASES])
def test_gemm_rules_match_flop_counter(name: str, target: str, args: list, attrs: dict) -> None:
    packet = getattr(aten, target.split(".")[1])
    extra = (attrs["equation"],) if "equation" in attrs else ()
    tensors = [t for _, t in args]
    if "equation" in attrs:
        expected, out = _torch_flops(lambda: packet(attrs["equation"], tensors))
    else:
        expected, out = _torch_flops(lambda: packet(*extra, *tensors))
    assert expected > 0
    assert _dnnmap_cost(target, args, out, attrs).tensor_flops == expected


def test_einsum_outer_product_is_a_multiply_not_a_gemm() -> None:
    a, b = r(2, 3), r(2, 4)
    expected, out = _torch_flops(lambda: torch.einsum("bi,bj->bij", a, b))
    got = _dnnmap_cost("aten.einsum.default", [("operands", a), ("operands", b)], out, {"equation": "bi,bj->bij"})
    assert (got.tensor_flops, expected) == (0, 0)
    assert got.vector_flops == 2 * 3 * 4


CONV_CASES = [
    # (input, weight, stride, padding, dilation, transposed, output_padding, groups)
    ((1, 3, 9, 9), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), False, (0, 0), 1),
    ((2, 8, 9, 9), (8, 1, 3, 3), (2, 2), (1, 1), (1, 1), False, (0, 0), 8),  # depthwise, strided
    ((1, 8, 7, 7), (6, 4, 1, 1), (1, 1), (0, 0), (1, 1), False, (0, 0), 2),  # grouped 1x1
    ((1, 4, 9, 9), (4, 4, 3, 3), (1, 1), (2, 2), (2, 2), False, (0, 0), 1),  # dilated
    ((1, 4, 5, 5), (4, 3, 3, 3), (2, 2), (1, 1), (1, 1), True, (1, 1), 1),  # transposed
    ((1, 4, 5, 5), (4, 1, 3, 3), (2, 2), (0, 0), (1, 1), True, (0, 0), 2),  # transposed grouped
    ((2, 3, 11), (5, 3, 3), (2,), (1,), (1,), False, (0,), 1),  # 1-d
    ((1, 2, 4, 5, 5), (3, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), False, (0, 0, 0), 1),  # 3-d
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_rule_matches_flop_counter(case: tuple) -> None:
    x_shape, w_shape, stride, padding, dilation, transposed, out_pad, groups = case
    x, w, b = r(*x_shape), r(*w_shape), r(w_shape[1] * groups if transposed else w_shape[0])
    expected, out = _torch_flops(lambda: aten.convolution(x, w, b, stride, padding, dilation, transposed, out_pad, groups))
    attrs = dict(stride=stride, padding=padding, dilation=dilation, transposed=transposed, output_padding=out_pad, groups=groups)
    got = _dnnmap_cost("aten.convolution.default", [("input", x), ("weight", w), ("bias", b)], out, attrs)
    assert got.tensor_flops == expected > 0
    assert got.macs * 2 == got.tensor_flops


ATTN_CASES = [
    # (q, k, v, is_causal, enable_gqa)
    ((2, 4, 16, 8), (2, 4, 16, 8), (2, 4, 16, 8), False, False),
    ((2, 4, 16, 8), (2, 4, 16, 8), (2, 4, 16, 8), True, False),
    ((1, 8, 12, 16), (1, 2, 20, 16), (1, 2, 20, 8), False, True),  # GQA, cross-attention, d_v != d
]


@pytest.mark.parametrize("case", ATTN_CASES)
def test_sdpa_rule_matches_math_attention_decomposition(case: tuple) -> None:
    # FlopCounterMode counts the CPU SDPA kernels as zero; the math variant decomposes into
    # the two bmm it counts, which is an independent check of the formula.
    q_shape, k_shape, v_shape, causal, gqa = case
    q, k, v = r(*q_shape), r(*k_shape), r(*v_shape)
    expected, (out, _) = _torch_flops(lambda: aten._scaled_dot_product_attention_math(q, k, v, is_causal=causal, enable_gqa=gqa))
    if not gqa:  # what FlopCounterMode misses on CPU and dnnmap adds
        cpu_kernel, _ = _torch_flops(lambda: aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, is_causal=causal))
        assert cpu_kernel == 0
    got = _dnnmap_cost(
        "aten._scaled_dot_product_flash_attention_for_cpu.default",
        [("query", q), ("key", k), ("value", v)], out, {"is_causal": causal},
    )
    assert got.tensor_flops == expected > 0
