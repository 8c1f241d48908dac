"""JSON round-trip for :class:`Graph`, with a schema version and deterministic output.

>>> from dnnmap.ir import Graph, to_json, from_json
>>> g = Graph("empty", {}, ())
>>> from_json(to_json(g)) == g
True
"""

from __future__ import annotations

import json
from typing import Any

from dnnmap.ir.enums import DType, OpClass, Role
from dnnmap.ir.graph import Graph, Op, Tensor

SCHEMA_VERSION = 1


def _tensor_to_dict(t: Tensor) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": t.id,
        "shape": list(t.shape),
        "dtype": t.dtype.value,
        "role": t.role.value,
    }
    if t.producer is not None:
        d["producer"] = t.producer
    if t.name:
        d["name"] = t.name
    if t.alias_of is not None:
        d["alias_of"] = t.alias_of
    return d


def _op_to_dict(op: Op) -> dict[str, Any]:
    return {
        "id": op.id,
        "target": op.target,
        "op_class": op.op_class.value,
        "inputs": list(op.inputs),
        "input_args": list(op.input_args),
        "outputs": list(op.outputs),
        "module_path": op.module_path,
        "module_type": op.module_type,
        "attrs": dict(op.attrs),
    }


def graph_to_dict(g: Graph) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "name": g.name,
        "meta": dict(g.meta),
        "inputs": list(g.inputs),
        "outputs": list(g.outputs),
        "tensors": [_tensor_to_dict(t) for t in g.tensors.values()],
        "ops": [_op_to_dict(op) for op in g.ops],
    }


def _freeze(v: Any) -> Any:
    """JSON lists come back as lists; attrs keep tuples so a round-trip compares equal."""
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def graph_from_dict(d: dict[str, Any]) -> Graph:
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"graph JSON has schema_version {version!r}; this dnnmap reads {SCHEMA_VERSION}")
    tensors = {
        t["id"]: Tensor(
            id=t["id"],
            shape=tuple(t["shape"]),
            dtype=DType(t["dtype"]),
            role=Role(t["role"]),
            producer=t.get("producer"),
            name=t.get("name", ""),
            alias_of=t.get("alias_of"),
        )
        for t in d["tensors"]
    }
    ops = tuple(
        Op(
            id=o["id"],
            target=o["target"],
            op_class=OpClass(o["op_class"]),
            inputs=tuple(o["inputs"]),
            outputs=tuple(o["outputs"]),
            module_path=o.get("module_path", ""),
            module_type=o.get("module_type", ""),
            input_args=tuple(o.get("input_args", ())),
            attrs={k: _freeze(v) for k, v in o.get("attrs", {}).items()},
        )
        for o in d["ops"]
    )
    return Graph(
        name=d["name"],
        tensors=tensors,
        ops=ops,
        inputs=tuple(d.get("inputs", ())),
        outputs=tuple(d.get("outputs", ())),
        meta={k: _freeze(v) for k, v in d.get("meta", {}).items()},
    )


def to_json(g: Graph, indent: int | None = None) -> str:
    """Deterministic: keys sorted, ids in capture order, no floats formatted by locale."""
    return json.dumps(graph_to_dict(g), sort_keys=True, indent=indent, separators=(",", ":") if indent is None else None)


def from_json(text: str) -> Graph:
    return graph_from_dict(json.loads(text))
