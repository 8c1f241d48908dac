"""Slices of a captured training step: the ops of some phases (or of some modules) as a graph.

A training graph (:func:`dnnmap.capture.train_path.capture_train_step`) records its phases
as contiguous op spans in ``meta["phases"]``. A slice keeps those ops and every tensor they
touch; a tensor produced outside the slice becomes an input of it (an activation saved by
forward is an input of backward). Slices are what the training estimate maps one by one, so
the step time splits into forward / backward / optimizer.

>>> from dnnmap.capture.train_path import capture_train_step
>>> g = capture_train_step("resnet18", batch=1, optimizer="sgd")
>>> fwd = phase_graph(g, ("forward", "loss"))
>>> len(fwd.ops) == g.meta["phases"][1][2]
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from dnnmap.errors import DnnmapError
from dnnmap.ir import Graph, Op, Role

FORWARD = ("forward", "loss")
BACKWARD = ("backward",)
OPTIMIZER = ("optimizer",)


def spans(g: Graph) -> dict[str, tuple[int, int]]:
    """Phase name -> (first op index, end op index) of a training graph."""
    phases = g.meta.get("phases")
    if not phases:
        raise DnnmapError(f"{g.name} is not a training step (no phases recorded)")
    return {name: (int(a), int(b)) for name, a, b in phases}


def phase_of(g: Graph) -> dict[str, str]:
    """op id -> phase name."""
    out: dict[str, str] = {}
    for name, (a, b) in spans(g).items():
        for op in g.ops[a:b]:
            out[op.id] = name
    return out


def phase_ops(g: Graph, names: Iterable[str]) -> list[Op]:
    sp = spans(g)
    return [op for n in names if n in sp for op in g.ops[sp[n][0]:sp[n][1]]]


def phase_graph(g: Graph, names: Iterable[str], keep: Callable[[Op], bool] | None = None,
                suffix: str = "") -> Graph:
    """The ops of phases ``names`` (those ``keep`` accepts) as a graph of their own."""
    names = tuple(names)
    ops = [op for op in phase_ops(g, names) if keep is None or keep(op)]
    return sub_graph(g, ops, f"{g.name}[{'+'.join(names)}{suffix}]", {"phase": names})


def sub_graph(g: Graph, ops: list[Op], name: str, meta: dict | None = None) -> Graph:
    """``ops`` (in order) and the tensors they touch; outside producers become inputs."""
    ids = {op.id for op in ops}
    used: dict[str, None] = {}
    for op in ops:
        used.update(dict.fromkeys(op.inputs))
        used.update(dict.fromkeys(op.outputs))
    todo = list(used)
    while todo:  # views keep their storage root
        t = g.tensors[todo.pop()]
        if t.alias_of is not None and t.alias_of not in used:
            used[t.alias_of] = None
            todo.append(t.alias_of)
    tensors = {}
    inputs = []
    for tid in used:
        t = g.tensors[tid]
        if t.producer is not None and t.producer not in ids:
            role = Role.INPUT if t.role in (Role.ACTIVATION, Role.OUTPUT) else t.role
            t = replace(t, producer=None, role=role)
            inputs.append(tid)
        tensors[tid] = t
    keep_meta = {k: v for k, v in g.meta.items() if k not in ("phases", "recomputed_ops")}
    return Graph(name, tensors, tuple(ops), tuple(inputs), tuple(t for t in g.outputs if t in tensors),
                 {**keep_meta, **(meta or {})})
