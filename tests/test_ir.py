"""IR: construction, indexes, JSON round-trip with schema version, determinism, classification."""

from __future__ import annotations

import json

import pytest

from dnnmap.costs import OpCost
from dnnmap.ir import (
    SCHEMA_VERSION,
    DType,
    Graph,
    Op,
    OpClass,
    Role,
    Tensor,
    classify,
    from_json,
    to_json,
)


def _tiny() -> Graph:
    # x[2,3] @ w[3,4] -> y[2,4]; relu(y) -> z; z viewed as [8]
    t = {
        "t0": Tensor("t0", (2, 3), DType.FLOAT32, Role.INPUT, name="x"),
        "t1": Tensor("t1", (3, 4), DType.FLOAT32, Role.WEIGHT, name="fc.weight"),
        "t2": Tensor("t2", (2, 4), DType.FLOAT32, Role.ACTIVATION, producer="op0"),
        "t3": Tensor("t3", (2, 4), DType.FLOAT32, Role.ACTIVATION, producer="op1"),
        "t4": Tensor("t4", (8,), DType.FLOAT32, Role.OUTPUT, producer="op2", alias_of="t3"),
    }
    ops = (
        Op("op0", "aten.mm.default", OpClass.MATMUL, ("t0", "t1"), ("t2",), "fc", "Linear", ("self", "mat2")),
        Op("op1", "aten.relu.default", OpClass.ELEMENTWISE, ("t2",), ("t3",), "act", "ReLU", ("self",)),
        Op("op2", "aten.view.default", OpClass.VIEW, ("t3",), ("t4",), "", "", ("self",), {"size": (8,)}),
    )
    return Graph("tiny", t, ops, inputs=("t0",), outputs=("t4",), meta={"capture_path": "export", "batch": 2})


def test_indexes() -> None:
    g = _tiny()
    g.validate()
    assert g.producer("t2").id == "op0"
    assert g.producer("t0") is None
    assert [o.id for o in g.consumers("t2")] == ["op1"]
    assert [o.id for o in g.successors(g.op("op0"))] == ["op1"]
    assert [o.id for o in g.predecessors(g.op("op2"))] == ["op1"]
    assert g.num_params == 3 * 4
    assert g.tensor("t2").nbytes == 2 * 4 * 4
    assert g.op("op0").packet == "aten.mm"
    assert g.op("op0").arg("mat2") == ["t1"]


def test_json_round_trip_is_exact_and_deterministic() -> None:
    g = _tiny()
    text = to_json(g)
    back = from_json(text)
    assert back == g
    assert to_json(back) == text  # byte-identical
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION


def test_json_rejects_other_schema_version() -> None:
    d = json.loads(to_json(_tiny()))
    d["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ValueError, match="schema_version"):
        from_json(json.dumps(d))


def test_validate_catches_out_of_order_ops() -> None:
    g = _tiny()
    bad = Graph("bad", g.tensors, (g.ops[1], g.ops[0], g.ops[2]))
    with pytest.raises(ValueError, match="before it is produced"):
        bad.validate()


def test_dtype_parse_and_sizes() -> None:
    assert DType.parse("torch.bfloat16") is DType.BFLOAT16
    assert DType.parse("fp16").itemsize == 2
    assert DType.parse("fp32").itemsize == 4
    assert DType.INT8.itemsize == 1
    with pytest.raises(ValueError, match="unknown dtype"):
        DType.parse("fp7")


@pytest.mark.parametrize(
    ("target", "cls"),
    [
        ("aten.convolution.default", OpClass.CONV),
        ("aten.addmm.default", OpClass.MATMUL),
        ("aten.scaled_dot_product_attention.default", OpClass.ATTENTION),
        ("aten._softmax.default", OpClass.SOFTMAX),
        ("aten.native_layer_norm.default", OpClass.NORMALIZATION),
        ("aten.add.Tensor", OpClass.ELEMENTWISE),
        ("aten.mean.dim", OpClass.REDUCTION),
        ("aten.embedding.default", OpClass.EMBEDDING),
        ("aten.cat.default", OpClass.DATA_MOVEMENT),
        ("aten.permute.default", OpClass.VIEW),
        ("aten.some_new_op.default", OpClass.OTHER),
    ],
)
def test_classify(target: str, cls: OpClass) -> None:
    assert classify(target) is cls


def test_opcost_is_additive() -> None:
    a = OpCost(tensor_flops=2 * 5, macs=5, bytes_read=12, bytes_written=4, weight_bytes=8)
    b = OpCost(vector_flops=7, transcendentals=3, bytes_read=4, bytes_written=4)
    s = a + b
    assert s.flops == 2 * 5 + 7
    assert s.bytes == 12 + 4 + 4 + 4
    assert s.activation_bytes_read == (12 + 4) - 8
    assert sum([a, b]) == s
    assert OpCost.zeros() + a == a
