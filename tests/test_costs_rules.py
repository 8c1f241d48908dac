"""Every cost-rule family on hand-built one-op graphs; expectations written as arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from dnnmap.costs import CostRuleError, OpCost, count_graph
from dnnmap.ir import DType, Graph, Op, Role, Tensor, classify

F32, BF16, I64, BOOL = DType.FLOAT32, DType.BFLOAT16, DType.INT64, DType.BOOL
A, W, B, IN = Role.ACTIVATION, Role.WEIGHT, Role.BUFFER, Role.INPUT


def cost(
    target: str,
    ins: Sequence[tuple[str, tuple[int, ...]] | tuple[str, tuple[int, ...], DType] | tuple[str, tuple[int, ...], DType, Role]],
    outs: Sequence[tuple[int, ...] | tuple[tuple[int, ...], DType] | tuple[tuple[int, ...], DType, str]],
    **attrs: Any,
) -> OpCost:
    """Cost of one op ``target`` reading ``ins`` (arg, shape[, dtype[, role]]) and writing ``outs``.

    An output given as (shape, dtype, alias_of) is a view of the input tensor id ``alias_of``
    (inputs are ``i0``, ``i1`` ...).
    """
    tensors: dict[str, Tensor] = {}
    args: list[str] = []
    for n, spec in enumerate(ins):
        arg, shape, *rest = spec
        dtype = rest[0] if rest else F32
        role = rest[1] if len(rest) > 1 else IN  # nothing produces the inputs of a one-op graph
        tensors[f"i{n}"] = Tensor(f"i{n}", tuple(shape), dtype, role)
        args.append(arg)
    out_ids = []
    for n, spec in enumerate(outs):
        if spec and isinstance(spec[0], tuple):
            shape, dtype, *alias = spec  # type: ignore[misc]
        else:
            shape, dtype, alias = spec, F32, []
        tensors[f"o{n}"] = Tensor(f"o{n}", tuple(shape), dtype, Role.OUTPUT, producer="op0", alias_of=alias[0] if alias else None)
        out_ids.append(f"o{n}")
    op = Op("op0", target, classify(target), tuple(f"i{n}" for n in range(len(ins))), tuple(out_ids), "m", "M", tuple(args), attrs)
    g = Graph("one", tensors, (op,))
    g.validate()
    counted = count_graph(g, strict=True)
    return counted.cost("op0")


# --- matmul --------------------------------------------------------------------------


def test_mm_flops_macs_bytes_and_weights() -> None:
    c = cost("aten.mm.default", [("self", (4, 8)), ("mat2", (8, 16), F32, W)], [(4, 16)])
    assert c.tensor_flops == 2 * 4 * 16 * 8
    assert c.macs == 4 * 16 * 8
    assert c.vector_flops == 0
    assert c.bytes_read == (4 * 8 + 8 * 16) * 4
    assert c.bytes_written == 4 * 16 * 4
    assert c.weight_bytes == 8 * 16 * 4
    assert c.params == 8 * 16


def test_addmm_counts_bias_add_as_vector_work() -> None:
    c = cost("aten.addmm.default", [("self", (16,), F32, W), ("mat1", (4, 8)), ("mat2", (8, 16), F32, W)], [(4, 16)])
    assert c.tensor_flops == 2 * 4 * 16 * 8
    assert c.vector_flops == 4 * 16
    assert c.params == 16 + 8 * 16


def test_bmm_and_baddbmm() -> None:
    c = cost("aten.bmm.default", [("self", (3, 4, 5)), ("mat2", (3, 5, 6))], [(3, 4, 6)])
    assert c.tensor_flops == 2 * 3 * 4 * 6 * 5
    c = cost("aten.baddbmm.default", [("self", (3, 4, 6)), ("batch1", (3, 4, 5)), ("batch2", (3, 5, 6))], [(3, 4, 6)])
    assert (c.tensor_flops, c.vector_flops) == (2 * 3 * 4 * 6 * 5, 3 * 4 * 6)


@pytest.mark.parametrize(
    ("a", "b", "out", "flops"),
    [
        ((2, 3, 4, 5), (5, 6), (2, 3, 4, 6), 2 * 2 * 3 * 4 * 6 * 5),  # batch folded into m
        ((2, 1, 4, 5), (3, 5, 6), (2, 3, 4, 6), 2 * 2 * 3 * 4 * 6 * 5),  # batch dims broadcast
        ((5,), (5, 6), (6,), 2 * 1 * 6 * 5),  # vector @ matrix
        ((4, 5), (5,), (4,), 2 * 4 * 1 * 5),  # matrix @ vector
        ((5,), (5,), (), 2 * 5),  # dot
    ],
)
def test_matmul_any_rank(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...], flops: int) -> None:
    assert cost("aten.matmul.default", [("self", a), ("other", b)], [out]).tensor_flops == flops


def test_linear_3d_input_with_bias() -> None:
    c = cost("aten.linear.default", [("input", (2, 10, 32)), ("weight", (64, 32), F32, W), ("bias", (64,), F32, W)], [(2, 10, 64)])
    assert c.tensor_flops == 2 * (2 * 10) * 64 * 32
    assert c.macs == (2 * 10) * 64 * 32
    assert c.vector_flops == 2 * 10 * 64
    assert c.params == 64 * 32 + 64
    assert c.weight_bytes == (64 * 32 + 64) * 4


def test_linear_without_bias_has_no_vector_work() -> None:
    c = cost("aten.linear.default", [("input", (3, 32)), ("weight", (64, 32), F32, W)], [(3, 64)])
    assert (c.tensor_flops, c.vector_flops) == (2 * 3 * 64 * 32, 0)


def test_transposed_weight_view_still_counts_as_weight() -> None:
    # dispatch path: t(w) is a view of the weight, then mm reads the view
    t = {
        "x": Tensor("x", (4, 8), F32, IN),
        "w": Tensor("w", (16, 8), F32, W, name="fc.weight"),
        "wt": Tensor("wt", (8, 16), F32, A, producer="op0", alias_of="w"),
        "y": Tensor("y", (4, 16), F32, Role.OUTPUT, producer="op1"),
    }
    ops = (
        Op("op0", "aten.t.default", classify("aten.t.default"), ("w",), ("wt",), "fc", "Linear", ("self",)),
        Op("op1", "aten.mm.default", classify("aten.mm.default"), ("x", "wt"), ("y",), "fc", "Linear", ("self", "mat2")),
    )
    counted = count_graph(Graph("g", t, ops))
    assert counted.cost("op0") == OpCost.zeros()
    assert counted.cost("op1").weight_bytes == 16 * 8 * 4
    assert counted.cost("op1").params == 16 * 8


@pytest.mark.parametrize(
    ("eq", "shapes", "out", "tensor", "vector"),
    [
        ("bhqd,bhkd->bhqk", [(2, 4, 5, 8), (2, 4, 7, 8)], (2, 4, 5, 7), 2 * 2 * 4 * 5 * 7 * 8, 0),
        ("ij,jk->ik", [(3, 4), (4, 5)], (3, 5), 2 * 3 * 4 * 5, 0),
        ("ij,jk->i", [(3, 4), (4, 5)], (3,), 2 * 3 * 4, 4 * 5),  # k summed out of the 2nd first
        ("ij->j", [(3, 4)], (4,), 0, 3 * 4),  # a plain reduction
        ("i,j->ij", [(3,), (4,)], (3, 4), 0, 3 * 4),  # outer product: a broadcast multiply
    ],
)
def test_einsum(eq: str, shapes: list[tuple[int, ...]], out: tuple[int, ...], tensor: int, vector: int) -> None:
    c = cost("aten.einsum.default", [("operands", s) for s in shapes], [out], equation=eq)
    assert (c.tensor_flops, c.vector_flops) == (tensor, vector)


def test_mv_and_dot() -> None:
    assert cost("aten.mv.default", [("self", (4, 5)), ("vec", (5,))], [(4,)]).tensor_flops == 2 * 4 * 5
    assert cost("aten.dot.default", [("self", (5,)), ("tensor", (5,))], [()]).tensor_flops == 2 * 5


# --- conv ----------------------------------------------------------------------------


def test_conv2d_padded() -> None:
    c = cost(
        "aten.conv2d.default",
        [("input", (1, 3, 8, 8)), ("weight", (4, 3, 3, 3), F32, W), ("bias", (4,), F32, W)],
        [(1, 4, 8, 8)],
        stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1,
    )
    assert c.tensor_flops == 2 * 1 * 4 * 8 * 8 * 3 * 3 * 3
    assert c.macs == 1 * 4 * 8 * 8 * 3 * 3 * 3
    assert c.vector_flops == 1 * 4 * 8 * 8  # bias
    assert c.params == 4 * 3 * 3 * 3 + 4
    assert c.bytes_read == (1 * 3 * 8 * 8 + 4 * 3 * 3 * 3 + 4) * 4
    assert c.bytes_written == 1 * 4 * 8 * 8 * 4


def test_depthwise_and_grouped_conv() -> None:
    dw = cost("aten.convolution.default", [("input", (2, 32, 16, 16)), ("weight", (32, 1, 3, 3), F32, W)], [(2, 32, 16, 16)],
              stride=(1, 1), padding=(1, 1), dilation=(1, 1), transposed=False, output_padding=(0, 0), groups=32)
    assert dw.tensor_flops == 2 * 2 * 32 * 16 * 16 * 3 * 3 * 1
    grouped = cost("aten.convolution.default", [("input", (1, 8, 4, 4)), ("weight", (4, 2, 1, 1), F32, W)], [(1, 4, 4, 4)],
                   stride=(1, 1), padding=(0, 0), dilation=(1, 1), transposed=False, output_padding=(0, 0), groups=4)
    assert grouped.tensor_flops == 2 * 1 * 4 * 4 * 4 * 1 * 1 * (8 // 4)


def test_transposed_conv_counts_input_positions() -> None:
    # weight [C_in=4, C_out/groups=2, 3, 3]; stride 2: 5x5 -> 11x11; each input pixel scatters a 3x3 kernel
    kw = dict(stride=(2, 2), padding=(0, 0), dilation=(1, 1), output_padding=(0, 0), groups=1)
    c = cost("aten.convolution.default", [("input", (1, 4, 5, 5)), ("weight", (4, 2, 3, 3), F32, W)], [(1, 2, 11, 11)], transposed=True, **kw)
    assert c.tensor_flops == 2 * 1 * 5 * 5 * 3 * 3 * 4 * 2
    c2 = cost("aten.conv_transpose2d.input", [("input", (1, 4, 5, 5)), ("weight", (4, 2, 3, 3), F32, W)], [(1, 2, 11, 11)], **kw)
    assert c2 == c


def test_conv1d_and_3d() -> None:
    c1 = cost("aten.conv1d.default", [("input", (2, 3, 10)), ("weight", (5, 3, 3), F32, W)], [(2, 5, 8)])
    assert c1.tensor_flops == 2 * 2 * 5 * 8 * 3 * 3
    c3 = cost("aten.conv3d.default", [("input", (1, 2, 4, 4, 4)), ("weight", (3, 2, 1, 1, 1), F32, W)], [(1, 3, 4, 4, 4)])
    assert c3.tensor_flops == 2 * 1 * 3 * 4 * 4 * 4 * 2


# --- attention -----------------------------------------------------------------------

QKV = [("query", (2, 4, 16, 8)), ("key", (2, 4, 16, 8)), ("value", (2, 4, 16, 8))]
SCORES = 2 * 4 * 16 * 16


def test_sdpa_plain() -> None:
    c = cost("aten.scaled_dot_product_attention.default", QKV, [(2, 4, 16, 8)])
    assert c.tensor_flops == 2 * (2 * 2 * 4 * 16 * 16 * 8)  # q@k^T and p@v
    assert c.macs == 2 * (2 * 4 * 16 * 16 * 8)
    assert c.vector_flops == (1 + 5) * SCORES  # scale + softmax
    assert c.transcendentals == SCORES
    assert c.bytes_read == 3 * 2 * 4 * 16 * 8 * 4
    assert c.bytes_written == 2 * 4 * 16 * 8 * 4


def test_sdpa_causal_counts_full_square_plus_mask_op() -> None:
    plain = cost("aten.scaled_dot_product_attention.default", QKV, [(2, 4, 16, 8)])
    causal = cost("aten.scaled_dot_product_attention.default", QKV, [(2, 4, 16, 8)], is_causal=True)
    assert causal.tensor_flops == plain.tensor_flops
    assert causal.vector_flops == (1 + 1 + 5) * SCORES


def test_sdpa_with_mask_reads_it() -> None:
    c = cost("aten.scaled_dot_product_attention.default", [*QKV, ("attn_mask", (2, 1, 16, 16), BOOL)], [(2, 4, 16, 8)])
    assert c.vector_flops == (1 + 1 + 5) * SCORES
    assert c.bytes_read == 3 * 2 * 4 * 16 * 8 * 4 + 2 * 1 * 16 * 16 * 1


def test_sdpa_gqa_cross_attention_and_value_dim() -> None:
    # 8 query heads share 2 kv heads; 16 queries attend to 32 keys; v has dim 4
    c = cost(
        "aten._scaled_dot_product_flash_attention_for_cpu.default",
        [("query", (1, 8, 16, 8)), ("key", (1, 2, 32, 8)), ("value", (1, 2, 32, 4))],
        [(1, 8, 16, 4), ((1, 8, 16), F32)],
    )
    assert c.tensor_flops == 2 * 1 * 8 * 16 * 32 * 8 + 2 * 1 * 8 * 16 * 32 * 4
    assert c.transcendentals == 1 * 8 * 16 * 32
    assert c.bytes_written == (1 * 8 * 16 * 4 + 1 * 8 * 16) * 4  # output and logsumexp


def test_flash_attention_forward_seq_first_layout() -> None:
    # _flash_attention_forward takes (b, s, h, d)
    shp = (2, 16, 4, 8)
    c = cost("aten._flash_attention_forward.default", [("query", shp), ("key", shp), ("value", shp)], [shp])
    assert c.tensor_flops == 2 * (2 * 2 * 4 * 16 * 16 * 8)


def test_native_mha_includes_projections() -> None:
    b, s, e, h = 2, 10, 32, 4
    ins = [("query", (b, s, e)), ("key", (b, s, e)), ("value", (b, s, e)), ("qkv_weight", (3 * e, e), F32, W),
           ("qkv_bias", (3 * e,), F32, W), ("proj_weight", (e, e), F32, W), ("proj_bias", (e,), F32, W)]
    c = cost("aten._native_multi_head_attention.default", ins, [(b, s, e), ((0,), F32)], embed_dim=e, num_head=h, need_weights=False)
    projections = 4 * (2 * b * s * e * e)  # q, k, v, out
    core = 2 * (2 * b * h * s * s * (e // h))
    assert c.tensor_flops == projections + core
    assert c.vector_flops == (1 + 5) * b * h * s * s + 4 * b * s * e  # scores + 4 bias adds
    assert c.params == 3 * e * e + 3 * e + e * e + e


# --- elementwise ---------------------------------------------------------------------


def test_binary_broadcast_reads_recorded_shapes() -> None:
    c = cost("aten.add.Tensor", [("self", (2, 3, 4)), ("other", (4,))], [(2, 3, 4)])
    assert c.vector_flops == 2 * 3 * 4
    assert c.bytes_read == (2 * 3 * 4 + 4) * 4
    assert c.bytes_written == 2 * 3 * 4 * 4
    assert (c.tensor_flops, c.macs, c.transcendentals) == (0, 0, 0)


@pytest.mark.parametrize(
    ("target", "attrs", "ops", "trans"),
    [
        ("aten.relu.default", {}, 1, 0),
        ("aten.relu_.default", {}, 1, 0),  # in-place: the out-of-place rule
        ("aten.gelu.default", {}, 5, 1),  # 0.5*x*(1+erf(x/sqrt2))
        ("aten.gelu.default", {"approximate": "tanh"}, 9, 1),
        ("aten.sigmoid.default", {}, 4, 1),
        ("aten.silu_.default", {}, 5, 1),
        ("aten.tanh.default", {}, 1, 1),
        ("aten.hardswish_.default", {}, 5, 0),
        ("aten.hardtanh_.default", {"min_val": 0.0, "max_val": 6.0}, 2, 0),
        ("aten.pow.Tensor_Scalar", {"exponent": 2}, 1, 0),
        ("aten.pow.Tensor_Scalar", {"exponent": 3}, 2, 0),
        ("aten.pow.Tensor_Scalar", {"exponent": 0.5}, 1, 1),
        ("aten.pow.Tensor_Scalar", {"exponent": 1.7}, 1, 1),
        ("aten.rsqrt.default", {}, 1, 1),
        ("aten.clamp.default", {"min": 0.0}, 1, 0),
        ("aten.clamp.default", {"min": 0.0, "max": 1.0}, 2, 0),
        ("aten.add.Tensor", {"alpha": 2}, 2, 0),
    ],
)
def test_unary_per_element_costs(target: str, attrs: dict[str, Any], ops: int, trans: int) -> None:
    n = 3 * 7
    c = cost(target, [("self", (3, 7))], [(3, 7)], **attrs)
    assert (c.vector_flops, c.transcendentals) == (ops * n, trans * n)


def test_compare_writes_bool_and_bf16_reads_two_bytes() -> None:
    c = cost("aten.lt.Tensor", [("self", (10,), BF16), ("other", (10,), BF16)], [((10,), BOOL)])
    assert c.bytes_read == 2 * 10 * 2
    assert c.bytes_written == 10 * 1
    assert c.vector_flops == 10


# --- reductions and pooling -----------------------------------------------------------


def test_reductions() -> None:
    x = [("self", (4, 6, 5))]
    assert cost("aten.sum.dim_IntList", x, [(4, 5)], dim=(1,)).vector_flops == 4 * 6 * 5
    assert cost("aten.mean.dim", x, [(4, 5)], dim=(1,)).vector_flops == 4 * 6 * 5 + 4 * 5
    var = cost("aten.var.correction", x, [(4, 5)], dim=(1,))
    assert (var.vector_flops, var.transcendentals) == (4 * (4 * 6 * 5) + 2 * (4 * 5), 0)
    std = cost("aten.std.correction", x, [(4, 5)], dim=(1,))
    assert (std.vector_flops, std.transcendentals) == (4 * (4 * 6 * 5) + 3 * (4 * 5), 4 * 5)
    lse = cost("aten.logsumexp.default", x, [(4, 5)], dim=(1,))
    assert (lse.vector_flops, lse.transcendentals) == (4 * 120 + 2 * 20, 120 + 20)
    nrm = cost("aten.linalg_vector_norm.default", x, [()], ord=2)
    assert (nrm.vector_flops, nrm.transcendentals) == (2 * 120 + 1, 1)


def test_max_dim_writes_values_and_indices_and_max_other_is_elementwise() -> None:
    c = cost("aten.max.dim", [("self", (4, 6))], [(4,), ((4,), I64)], dim=1)
    assert c.vector_flops == 4 * 6
    assert c.bytes_written == 4 * 4 + 4 * 8
    assert cost("aten.max.other", [("self", (4, 6)), ("other", (4, 6))], [(4, 6)]).vector_flops == 4 * 6


def test_pooling_is_window_times_outputs() -> None:
    mp = cost("aten.max_pool2d_with_indices.default", [("self", (1, 4, 8, 8))], [(1, 4, 4, 4), ((1, 4, 4, 4), I64)],
              kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
    assert mp.vector_flops == (1 * 4 * 4 * 4) * 3 * 3
    assert mp.bytes_written == 1 * 4 * 4 * 4 * (4 + 8)
    mp_int = cost("aten.max_pool2d.default", [("self", (1, 4, 8, 8))], [(1, 4, 4, 4)], kernel_size=3, stride=2, padding=1)
    assert mp_int.vector_flops == mp.vector_flops
    ap = cost("aten.avg_pool2d.default", [("self", (1, 4, 8, 8))], [(1, 4, 4, 4)], kernel_size=(2, 2), stride=(2, 2))
    assert ap.vector_flops == (1 * 4 * 4 * 4) * (2 * 2 + 1)


def test_adaptive_pool_uses_exact_windows() -> None:
    gap = cost("aten.adaptive_avg_pool2d.default", [("self", (1, 8, 7, 7))], [(1, 8, 1, 1)], output_size=(1, 1))
    assert gap.vector_flops == 8 * (7 * 7 + 1)
    # 5 -> 3 along a dim: windows [0,2) [1,4) [3,5) cover 2 + 3 + 2 = 7 inputs
    ap = cost("aten._adaptive_avg_pool2d.default", [("self", (1, 2, 5, 5))], [(1, 2, 3, 3)], output_size=(3, 3))
    assert ap.vector_flops == 2 * (7 * 7) + 2 * 3 * 3
    mx = cost("aten.adaptive_max_pool2d.default", [("self", (1, 2, 5, 5))], [(1, 2, 3, 3), ((1, 2, 3, 3), I64)], output_size=(3, 3))
    assert mx.vector_flops == 2 * (7 * 7)


# --- softmax -------------------------------------------------------------------------


def test_softmax_and_log_softmax() -> None:
    sm = cost("aten._softmax.default", [("self", (2, 5, 10))], [(2, 5, 10)], dim=-1, half_to_float=False)
    assert (sm.vector_flops, sm.transcendentals) == (5 * 100, 100)
    lsm = cost("aten._log_softmax.default", [("self", (2, 5, 10))], [(2, 5, 10)], dim=-1, half_to_float=False)
    assert (lsm.vector_flops, lsm.transcendentals) == (5 * 100 + 2 * 5, 100 + 2 * 5)
    assert sm.bytes == 2 * 100 * 4


# --- normalization -------------------------------------------------------------------

BN_INPUTS = [("input", (2, 4, 8, 8)), ("weight", (4,), F32, W), ("bias", (4,), F32, W),
             ("running_mean", (4,), F32, B), ("running_var", (4,), F32, B)]


def test_batch_norm_inference() -> None:
    n, c = 2 * 4 * 8 * 8, 4
    bn = cost("aten.batch_norm.default", BN_INPUTS, [(2, 4, 8, 8)], training=False, momentum=0.1, eps=1e-5, cudnn_enabled=True)
    assert (bn.vector_flops, bn.transcendentals) == (2 * n + 5 * c, c)
    assert bn.params == 4 + 4  # running stats are buffers, not parameters
    assert bn.weight_bytes == 4 * 4 * 4
    assert bn.bytes_read == n * 4 + 4 * 4 * 4
    legit = cost("aten._native_batch_norm_legit_no_training.default", BN_INPUTS, [(2, 4, 8, 8), ((0,), F32), ((0,), F32)], momentum=0.1, eps=1e-5)
    assert legit.vector_flops == bn.vector_flops


def test_batch_norm_training_computes_statistics() -> None:
    n, c = 2 * 4 * 8 * 8, 4
    bn = cost("aten.native_batch_norm.default", BN_INPUTS, [(2, 4, 8, 8), (4,), (4,)], training=True, momentum=0.1, eps=1e-5)
    assert (bn.vector_flops, bn.transcendentals) == (5 * n + 13 * c, c)


def test_layer_group_rms_norm() -> None:
    x = ("input", (2, 10, 32))
    ln = cost("aten.native_layer_norm.default", [x, ("weight", (32,), F32, W), ("bias", (32,), F32, W)],
              [(2, 10, 32), (2, 10, 1), (2, 10, 1)], normalized_shape=(32,), eps=1e-5)
    assert (ln.vector_flops, ln.transcendentals) == ((5 + 2) * 640 + 4 * 20, 20)
    assert ln.bytes_written == (640 + 20 + 20) * 4
    ln_plain = cost("aten.layer_norm.default", [x], [(2, 10, 32)], normalized_shape=(32,))
    assert ln_plain.vector_flops == 5 * 640 + 4 * 20
    rms = cost("aten.rms_norm.default", [x, ("weight", (32,), F32, W)], [(2, 10, 32)], normalized_shape=(32,))
    assert (rms.vector_flops, rms.transcendentals) == ((3 + 1) * 640 + 3 * 20, 20)
    gn = cost("aten.group_norm.default", [("input", (2, 8, 4, 4)), ("weight", (8,), F32, W), ("bias", (8,), F32, W)],
              [(2, 8, 4, 4)], num_groups=4, eps=1e-5)
    assert (gn.vector_flops, gn.transcendentals) == ((5 + 2) * 256 + 4 * (2 * 4), 2 * 4)


# --- embedding -----------------------------------------------------------------------


def test_embedding_reads_only_rows_used() -> None:
    c = cost("aten.embedding.default", [("weight", (1000, 64), F32, W), ("indices", (2, 16), I64)], [(2, 16, 64)])
    assert c.bytes_read == 2 * 16 * 8 + 2 * 16 * 64 * 4
    assert c.weight_bytes == 2 * 16 * 64 * 4
    assert c.params == 2 * 16 * 64
    assert c.bytes_written == 2 * 16 * 64 * 4
    assert c.flops == 0
    assert c.bytes_read < 1000 * 64 * 4


def test_embedding_read_capped_at_table_size() -> None:
    c = cost("aten.embedding.default", [("weight", (10, 4), F32, W), ("indices", (100,), I64)], [(100, 4)])
    assert c.bytes_read == 100 * 8 + 10 * 4 * 4


def test_embedding_bag_sums_rows() -> None:
    c = cost("aten._embedding_bag.default", [("weight", (100, 8), F32, W), ("indices", (12,), I64), ("offsets", (3,), I64)],
             [(3, 8), ((12,), I64), ((3,), I64), ((3,), I64)], mode=0)
    assert c.vector_flops == 12 * 8
    assert c.bytes_read == 12 * 8 * 4 + 12 * 8 + 3 * 8


# --- data movement -------------------------------------------------------------------


def test_copies_move_bytes_only() -> None:
    cat = cost("aten.cat.default", [("tensors", (2, 3)), ("tensors", (2, 5))], [(2, 8)], dim=1)
    assert (cat.flops, cat.bytes_read, cat.bytes_written) == (0, (6 + 10) * 4, 16 * 4)
    cast = cost("aten._to_copy.default", [("self", (10,))], [((10,), BF16)], dtype="bfloat16")
    assert (cast.bytes_read, cast.bytes_written) == (10 * 4, 10 * 2)
    pad = cost("aten.constant_pad_nd.default", [("self", (1, 2, 3, 3))], [(1, 2, 5, 5)], pad=(1, 1, 1, 1))
    assert (pad.bytes_read, pad.bytes_written) == (18 * 4, 50 * 4)


def test_gather_reads_only_fetched_elements() -> None:
    # swin: relative_position_bias_table[169, 3][index[2401]] -> [2401, 3]: capped at the table
    c = cost("aten.index.Tensor", [("self", (169, 3), F32, W), ("indices", (2401,), I64)], [(2401, 3)])
    assert c.bytes_read == 169 * 3 * 4 + 2401 * 8
    assert c.bytes_written == 2401 * 3 * 4
    assert (c.weight_bytes, c.params) == (169 * 3 * 4, 169 * 3)
    sel = cost("aten.index_select.default", [("self", (1000, 16)), ("index", (5,), I64)], [(5, 16)], dim=0)
    assert sel.bytes_read == 5 * 16 * 4 + 5 * 8


def test_creation_writes_only_and_empty_writes_nothing() -> None:
    assert cost("aten.zeros.default", [], [(4, 4)], size=(4, 4)) == OpCost(bytes_written=4 * 4 * 4)
    assert cost("aten.arange.start", [], [((7,), I64)], start=0, end=7) == OpCost(bytes_written=7 * 8)
    assert cost("aten.zeros_like.default", [("self", (3, 3))], [(3, 3)]) == OpCost(bytes_written=9 * 4)
    assert cost("aten.empty.memory_format", [], [(4, 4)], size=(4, 4)) == OpCost.zeros()


def test_in_place_writes() -> None:
    cp = cost("aten.copy_.default", [("self", (8,), BF16), ("src", (8,))], [((8,), BF16, "i0")])
    assert (cp.bytes_read, cp.bytes_written) == (8 * 4, 8 * 2)
    assert cost("aten.fill_.Scalar", [("self", (8,))], [((8,), F32, "i0")], value=1.0) == OpCost(bytes_written=8 * 4)
    assert cost("aten.zero_.default", [("self", (8,))], [((8,), F32, "i0")]) == OpCost(bytes_written=8 * 4)


def test_contiguous_is_free_only_when_it_aliases() -> None:
    assert cost("aten.contiguous.default", [("self", (4, 5))], [((4, 5), F32, "i0")]) == OpCost.zeros()
    copied = cost("aten.contiguous.default", [("self", (4, 5))], [(4, 5)])
    assert (copied.bytes_read, copied.bytes_written) == (20 * 4, 20 * 4)


def test_bilinear_upsample_blends_four_taps() -> None:
    c = cost("aten.upsample_bilinear2d.vec", [("input", (1, 2, 4, 4))], [(1, 2, 8, 8)], align_corners=False)
    assert c.vector_flops == 7 * 2 * 8 * 8
    assert cost("aten.upsample_nearest2d.vec", [("input", (1, 2, 4, 4))], [(1, 2, 8, 8)]).flops == 0


# --- views and metadata --------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "out"),
    [
        ("aten.view.default", (64, 64)),
        ("aten.permute.default", (64, 64)),
        ("aten.expand.default", (8, 64, 64)),
        ("aten.t.default", (64, 64)),
        ("aten.slice.Tensor", (32, 64)),
        ("aten.reshape.default", (4096,)),
        ("aten.flatten.using_ints", (4096,)),
        ("aten.to.dtype", (64, 64)),
    ],
)
def test_views_move_nothing(target: str, out: tuple[int, ...]) -> None:
    assert cost(target, [("self", (64, 64))], [(out, F32, "i0")]) == OpCost.zeros()


def test_may_copy_views_count_the_copy() -> None:
    # reshape of a non-viewable (permuted) input returns a fresh tensor
    c = cost("aten.reshape.default", [("self", (64, 64))], [(4096,)], shape=(4096,))
    assert (c.bytes_read, c.bytes_written) == (64 * 64 * 4, 64 * 64 * 4)
    cast = cost("aten.to.dtype", [("self", (64, 64))], [((64, 64), BF16)], dtype="bfloat16")
    assert (cast.bytes_read, cast.bytes_written) == (64 * 64 * 4, 64 * 64 * 2)
    # type_as to the same dtype returns self, whatever the capture says about aliasing
    same = cost("aten.type_as.default", [("self", (64, 64)), ("other", (2,))], [(64, 64)])
    assert same == OpCost.zeros()
    forced = cost("aten.to.dtype", [("self", (64, 64))], [(64, 64)], dtype="float32", copy=True)
    assert forced.bytes == 2 * 64 * 64 * 4


def test_dropout_is_identity_in_eval_only() -> None:
    assert cost("aten.dropout.default", [("input", (10, 10))], [((10, 10), F32, "i0")], p=0.1, train=False) == OpCost.zeros()
    tr = cost("aten.native_dropout.default", [("input", (10, 10))], [(10, 10), ((10, 10), BOOL)], p=0.1, train=True)
    assert tr.vector_flops == 2 * 100
    assert tr.bytes_written == 100 * 4 + 100 * 1


def test_metadata_ops_cost_nothing() -> None:
    assert cost("aten._assert_tensor_metadata.default", [("a", (64, 64))], []) == OpCost.zeros()
    assert cost("aten.sym_size.int", [("self", (64, 64))], [], dim=0) == OpCost.zeros()
    assert cost("prim.device.default", [("self", (64, 64))], []) == OpCost.zeros()


# --- invariants and errors -----------------------------------------------------------


def test_flops_are_twice_macs_for_tensor_ops() -> None:
    for c in (
        cost("aten.mm.default", [("self", (3, 5)), ("mat2", (5, 7))], [(3, 7)]),
        cost("aten.conv2d.default", [("input", (1, 3, 5, 5)), ("weight", (2, 3, 3, 3))], [(1, 2, 3, 3)]),
        cost("aten.scaled_dot_product_attention.default", QKV, [(2, 4, 16, 8)]),
    ):
        assert c.tensor_flops == 2 * c.macs > 0


def test_contradicting_shapes_raise_cost_rule_error_naming_the_op() -> None:
    with pytest.raises(CostRuleError, match=r"op0 \(aten\.mm\.default\) in module m"):
        cost("aten.mm.default", [("self", (3, 5)), ("mat2", (4, 7))], [(3, 7)])
