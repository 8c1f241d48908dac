"""Coverage ledger, --strict, and the one-table agreement between rules and op classes."""

from __future__ import annotations

import pytest

from dnnmap.costs import OpCost, cost_rule, count_graph, registered_ops, rule_for
from dnnmap.errors import DnnmapError, UnknownOpError
from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor, classify
from dnnmap.ir.classify import classified_ops


def _graph_with_unknowns() -> Graph:
    # relu (known) -> frobnicate x2 (unknown, two modules) -> zork (unknown) -> relu
    shape = (4, 4)
    ids = [f"t{i}" for i in range(6)]
    tensors = {ids[0]: Tensor(ids[0], shape, DType.FLOAT32, Role.INPUT)}
    for i in range(1, 6):
        tensors[ids[i]] = Tensor(ids[i], shape, DType.FLOAT32, Role.ACTIVATION, producer=f"op{i - 1}")
    spec = [
        ("aten.relu.default", "a"),
        ("aten.frobnicate.default", "blocks.0.mix"),
        ("aten.frobnicate.default", "blocks.1.mix"),
        ("aten.zork.Tensor", ""),
        ("aten.relu.default", "b"),
    ]
    ops = tuple(
        Op(f"op{i}", target, classify(target), (ids[i],), (ids[i + 1],), module, "", ("self",))
        for i, (target, module) in enumerate(spec)
    )
    return Graph("unknowns", tensors, ops, inputs=(ids[0],), outputs=(ids[5],))


def test_ledger_lists_unknown_ops_with_count_and_modules() -> None:
    counted = count_graph(_graph_with_unknowns())
    ledger = counted.ledger
    assert not ledger.complete
    assert [(e.target, e.count, e.modules) for e in ledger.unknown] == [
        ("aten.frobnicate.default", 2, ("blocks.0.mix", "blocks.1.mix")),
        ("aten.zork.Tensor", 1, ("<root>",)),
    ]
    assert ledger.unknown_ops == 2 + 1
    assert ledger.counted_ops == 2
    # the unknown ops cost zero, but the known ones are still counted
    assert counted.cost("op1") == OpCost.zeros()
    assert counted.total.vector_flops == 2 * 4 * 4


def test_strict_raises_unknown_op_error_naming_op_and_module() -> None:
    with pytest.raises(UnknownOpError, match=r"aten\.frobnicate\.default x2 in blocks\.0\.mix") as info:
        count_graph(_graph_with_unknowns(), strict=True)
    assert isinstance(info.value, DnnmapError)
    assert "aten.zork.Tensor" in str(info.value)


def test_complete_graph_has_empty_ledger_and_strict_passes() -> None:
    g = _graph_with_unknowns()
    known = Graph("known", g.tensors, (g.ops[0],))
    assert count_graph(known, strict=True).ledger.complete


def test_every_rule_is_classified_and_every_classified_op_has_a_rule() -> None:
    rules = registered_ops()
    unclassified = sorted(n for n in rules if classify(n) is OpClass.OTHER)
    assert unclassified == []
    missing = sorted(n for n in classified_ops() if rule_for(n) is None)
    assert missing == []


def test_rule_module_matches_op_class() -> None:
    # rules/<family>.py holds exactly the ops dnnmap.ir.classify puts in OpClass(<family>)
    mismatched = {
        n: (rule_for(n).__module__, classify(n).value)
        for n in registered_ops()
        if rule_for(n).__module__.rsplit(".", 1)[-1] != classify(n).value
    }
    assert mismatched == {}


def test_in_place_variant_uses_out_of_place_rule_and_class() -> None:
    assert rule_for("aten.sigmoid_.default") is rule_for("aten.sigmoid.default")
    assert classify("aten.sigmoid_.default") is OpClass.ELEMENTWISE
    assert classify("aten.dropout_.default") is OpClass.VIEW
    # dunder names are not in-place variants
    assert rule_for("aten.__and__.Tensor") is not None
    assert rule_for("aten.__xor_thing__.Tensor") is None


def test_duplicate_registration_fails() -> None:
    with pytest.raises(RuntimeError, match="registered twice"):

        @cost_rule("aten.mm")
        def _again(ctx):  # noqa: ANN001, ANN202
            return OpCost.zeros()
