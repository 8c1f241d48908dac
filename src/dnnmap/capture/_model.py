"""What both capture paths need to know about the model before any op runs.

One canonical numbering of the tensors that exist before execution: user inputs first (in
argument order), then every parameter (``named_parameters`` order, a tied weight once), then
every buffer. Both paths use it, so the same model gives the same ids either way.

>>> import torch
>>> m = torch.nn.Linear(3, 2)
>>> b, s = static_tensors(m, (torch.empty(4, 3),), "lin")
>>> [(t.name, t.role.value) for t in b.tensors.values()]
[('input', 'input'), ('weight', 'weight'), ('bias', 'weight')]
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from dnnmap.capture._build import GraphBuilder
from dnnmap.ir import Role


@dataclass
class StaticTensors:
    """Ids of the tensors that exist before the forward pass."""

    inputs: list[str]  # user input ids, in flattened argument order
    by_fqn: dict[str, str]  # parameter / buffer name (every alias of a tied weight) -> id
    by_object: dict[int, tuple[str, torch.Tensor]]  # id(tensor) -> (tensor id, tensor)


def input_names(model: nn.Module, inputs: tuple) -> list[str]:
    """Names for the tensor leaves of ``inputs``: the forward() parameter names."""
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    for i, arg in enumerate(inputs):
        base = params[i] if i < len(params) else f"arg{i}"
        leaves = [x for x in tree_leaves(arg) if isinstance(x, torch.Tensor)]
        names.extend([base] if len(leaves) == 1 else [f"{base}_{j}" for j in range(len(leaves))])
    return names


def static_tensors(model: nn.Module, inputs: tuple, name: str) -> tuple[GraphBuilder, StaticTensors]:
    """A builder holding the inputs, parameters and buffers of ``model``, numbered canonically."""
    b = GraphBuilder(name)
    st = StaticTensors([], {}, {})
    leaves = [x for x in tree_leaves(inputs) if isinstance(x, torch.Tensor)]
    for t, n in zip(leaves, input_names(model, inputs), strict=False):
        tid = b.add_tensor(t, Role.INPUT, n)
        st.inputs.append(tid)
        st.by_object[id(t)] = (tid, t)
    for role, named in ((Role.WEIGHT, model.named_parameters), (Role.BUFFER, model.named_buffers)):
        for fqn, t in named(remove_duplicate=False):
            known = st.by_object.get(id(t))
            if known is None:
                tid = b.add_tensor(t, role, fqn)
                known = st.by_object[id(t)] = (tid, t)
            st.by_fqn[fqn] = known[0]
    return b, st


def module_constants(model: nn.Module) -> dict[int, str]:
    """Plain tensor attributes of modules (not parameters or buffers): id(tensor) -> name."""
    out: dict[int, str] = {}
    for path, m in model.named_modules():
        for attr, v in vars(m).items():
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter):
                out.setdefault(id(v), f"{path}.{attr}" if path else attr)
    return out


def output_leaves(out: object, depth: int = 0) -> list[torch.Tensor]:
    """Every tensor a model returned, in a deterministic order, including tensors held by
    non-pytree objects such as KV caches (searched through their attributes)."""
    found: list[torch.Tensor] = []
    for leaf in tree_leaves(out):
        if isinstance(leaf, torch.Tensor):
            found.append(leaf)
        elif depth < 4 and hasattr(leaf, "__dict__") and not isinstance(leaf, (nn.Module, type)):
            found.extend(output_leaves(list(vars(leaf).values()), depth + 1))
    return found
