"""Main capture path: ``torch.export.export(strict=False)`` and one walk over its graph.

The exported program is kept at the default (training / pre-dispatch) ATen IR, without
``run_decompositions()``: ``aten.conv2d``, ``aten.linear``, ``aten.layer_norm`` and
``aten.scaled_dot_product_attention`` stay single ops, so FLOPs land on the op (and module)
that does the work, and the op set equals what the dispatch path records at the PreDispatch
key (see ``dispatch_path``).

>>> import torch
>>> from torch._subclasses.fake_tensor import FakeTensorMode
>>> with FakeTensorMode():
...     m, x = torch.nn.Linear(4, 2), torch.empty(3, 4)
>>> [op.target for op in capture_export(m, (x,), "lin").ops]
['aten.linear.default']
"""

from __future__ import annotations

import contextlib
import io
import logging
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.export.graph_signature import InputKind, OutputKind

from dnnmap.capture._build import GraphBuilder, Ref
from dnnmap.capture._model import static_tensors
from dnnmap.ir import Graph, Role


class ExportUnsupported(Exception):
    """The exported graph holds something this walk does not take (the dispatch path does)."""


def capture_export(model: nn.Module, inputs: tuple, name: str) -> Graph:
    """Export ``model`` on ``inputs`` (fake or real) and convert the graph; export errors propagate.

    Exported under ``no_grad`` (inference: the same op set, and no autograd view checks).
    A failed export prints its partial graph to stderr; that print is swallowed, since the
    error itself is reported (``meta["fallback_reason"]`` or the raised error).
    """
    with torch.no_grad(), _quiet_export():
        ep = torch.export.export(model, inputs, strict=False)
    return graph_from_exported(ep, model, inputs, name)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    log = logging.getLogger("torch.export._trace")
    was = log.disabled
    log.disabled = True
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        log.disabled = was


def graph_from_exported(ep: torch.export.ExportedProgram, model: nn.Module, inputs: tuple, name: str) -> Graph:
    b, st = static_tensors(model, inputs, name)
    root_type = type(model).__name__
    env: dict[fx.Node, Any] = {}  # node -> tensor id, list of ids, or a scalar value
    _bind_placeholders(ep, b, st, env)
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if target is operator.getitem:
            env[node] = env[node.args[0]][node.args[1]]
        elif isinstance(target, torch._ops.OpOverload):
            path, mtype = _module_of(node, root_type)
            args = tuple(_resolve(a, env, b) for a in node.args)
            kwargs = {k: _resolve(v, env, b) for k, v in node.kwargs.items()} if node.kwargs else {}
            val = node.meta.get("val")
            out = b.add_op(target, args, kwargs, val, path, mtype)
            env[node] = out if out is not None or not _is_scalar(val) else val
        else:
            raise ExportUnsupported(f"exported graph calls {target} (not an ATen op)")
    outputs = _outputs(ep, env)
    return b.finish(st.inputs, outputs)


def _bind_placeholders(ep: torch.export.ExportedProgram, b: GraphBuilder, st, env: dict) -> None:
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    user = iter(st.inputs)
    for spec in ep.graph_signature.input_specs:
        node = placeholders[spec.arg.name]
        val = node.meta.get("val")
        if spec.kind == InputKind.USER_INPUT:
            env[node] = next(user) if isinstance(val, torch.Tensor) else val
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            tid = st.by_fqn.get(spec.target)
            if tid is None:  # not reachable through named_parameters/named_buffers
                role = Role.WEIGHT if spec.kind == InputKind.PARAMETER else Role.BUFFER
                tid = st.by_fqn[spec.target] = b.add_tensor(val, role, spec.target)
            env[node] = tid
        elif spec.kind == InputKind.CONSTANT_TENSOR:  # numbered at first use, as dispatch does
            env[node] = _Constant(val, spec.target or spec.arg.name)
        else:
            raise ExportUnsupported(f"exported graph has a {spec.kind.name} input")


@dataclass(frozen=True)
class _Constant:
    value: torch.Tensor
    name: str


def _resolve(a: Any, env: dict, b: GraphBuilder) -> Any:
    if isinstance(a, fx.Node):
        v = env[a]
        if isinstance(v, str):
            return Ref(v)
        if isinstance(v, _Constant):
            tid = env[a] = b.add_tensor(v.value, Role.CONSTANT, v.name)
            return Ref(tid)
        if isinstance(v, list):
            return [Ref(x) if isinstance(x, str) else x for x in v]
        return v
    if isinstance(a, (list, tuple)):
        return [_resolve(x, env, b) for x in a]
    return a


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, bool, torch.SymInt, torch.SymFloat, torch.SymBool))


def _module_of(node: fx.Node, root_type: str) -> tuple[str, str]:
    """Innermost ``nn_module_stack`` entry: ("layer1.0.conv1", "Conv2d")."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return "", root_type
    path, typ = next(reversed(stack.values()))
    typ = typ.__name__ if isinstance(typ, type) else str(typ).rsplit(".", 1)[-1]
    return path, typ


def _outputs(ep: torch.export.ExportedProgram, env: dict) -> list[str]:
    out_node = next(n for n in reversed(ep.graph.nodes) if n.op == "output")
    values = out_node.args[0]
    ids: list[str] = []
    for spec, v in zip(ep.graph_signature.output_specs, values, strict=True):
        if spec.kind == OutputKind.USER_OUTPUT and isinstance(v, fx.Node) and isinstance(env.get(v), str):
            ids.append(env[v])
    return ids
