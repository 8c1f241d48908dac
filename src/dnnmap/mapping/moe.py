"""Mixture of experts in a captured graph and in a model config: one detection for inference
(``analyze`` / ``generate`` ``--ep``), training (``train --ep``) and weight storage.

- **expert weights** are the parameters of an ``experts`` module (``mlp.experts.gate_up_proj``,
  ``block_sparse_moe.experts.3.w1.weight``; not the router ``mlp.gate``, not DeepSeek's
  ``shared_experts`` nor Qwen-MoE's ``shared_expert``, which every token runs), plus whatever a
  grouped expert matmul reads as its weight. Found by name, they are the same whether the experts
  run a grouped matmul (bf16 capture) or transformers' fp32 fallback;
- **MoE blocks** are the transformer blocks (``model.layers.3``) with an op that reads an expert
  weight, runs a grouped matmul, or lies in an ``experts`` / ``block_sparse_moe`` module;
- **sparse layers** of a config: which of its ``num_hidden_layers`` have experts, from the fields
  that make some layers dense (DeepSeek ``first_k_dense_replace`` / ``moe_layer_freq``, Qwen-MoE
  ``mlp_only_layers`` / ``decoder_sparse_step``).

>>> is_expert_param("model.layers.0.mlp.experts.gate_up_proj"), is_expert_param("model.layers.0.mlp.gate.weight")
(True, False)
>>> is_expert_param("model.layers.1.mlp.shared_experts.up_proj.weight")
False
"""

from __future__ import annotations

import re
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.ir import Graph, Tensor

GROUPED_MATMULS = ("_grouped_mm", "grouped_mm", "_scaled_grouped_mm", "grouped_mm_fallback")
EXPERT_PARAM = re.compile(r"(^|\.)experts(\.|$)")  # the experts' own weights (not the router)
_EXPERT_MODULE = re.compile(r"(^|\.)(experts|block_sparse_moe)(\.|$)")
BLOCK = re.compile(r"^(.*?\.\d+)(\.|$)")  # "model.layers.3.mlp" -> "model.layers.3"


def is_expert_param(name: str) -> bool:
    """A parameter (or buffer) name of an expert's weight."""
    return bool(EXPERT_PARAM.search(name))


def is_grouped_matmul(target: str) -> bool:
    parts = target.split(".")
    return len(parts) > 1 and parts[1] in GROUPED_MATMULS


def root(g: Graph, tid: str) -> Tensor:
    """The tensor whose storage ``tid`` views."""
    t = g.tensors[tid]
    seen = {tid}
    while t.alias_of is not None and t.alias_of in g.tensors and t.alias_of not in seen:
        t = g.tensors[t.alias_of]
        seen.add(t.id)
    return t


def expert_weight_ids(g: Graph) -> set[str]:
    """Ids of the resident expert weights: named as an expert parameter, or read as the weight of a
    grouped expert matmul."""
    ids = {t.id for t in g.tensors.values() if t.is_static and t.name and is_expert_param(t.name)}
    for op in g.ops:
        if is_grouped_matmul(op.target) and len(op.inputs) > 1:
            w = root(g, op.inputs[1])
            if w.is_static:
                ids.add(w.id)
    return ids


def moe_blocks(g: Graph) -> set[str]:
    """The blocks whose work runs experts, as captured (see the module docstring)."""
    experts = expert_weight_ids(g)
    out = set()
    for op in g.ops:
        m = BLOCK.match(op.module_path)
        if m and (is_grouped_matmul(op.target) or _EXPERT_MODULE.search(op.module_path)
                  or any(root(g, t).id in experts for t in op.inputs if t in g.tensors)):
            out.add(m.group(1))
    return out


def moe_of(config: Any) -> dict | None:
    """``{"experts": E, "top_k": k}`` of a mixture-of-experts config; None for a dense model."""
    from dnnmap.capture.phases import _moe

    try:
        return _moe(config)
    except AttributeError:  # a config without get_text_config
        return None


def sparse_layer_ids(config: Any, layers: int) -> list[int]:
    """The indices of the ``layers`` decoder layers of a MoE ``config`` that have experts.

    - DeepSeek-V2/V3: layer ``i`` is sparse when ``i >= first_k_dense_replace`` and
      ``i % moe_layer_freq == 0``;
    - Qwen-MoE: layer ``i`` is sparse when ``i`` is not in ``mlp_only_layers`` and
      ``(i + 1) % decoder_sparse_step == 0``;
    - otherwise (Mixtral, OLMoE, Switch's decoder...): every layer, unless the config has another
      field that makes layers dense, which is refused by name rather than guessed.

    >>> from types import SimpleNamespace as C
    >>> sparse_layer_ids(C(first_k_dense_replace=3, moe_layer_freq=1), 6)
    [3, 4, 5]
    >>> sparse_layer_ids(C(mlp_only_layers=[0, 1], decoder_sparse_step=2), 8)
    [3, 5, 7]
    """
    tc = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    get = lambda k, d=None: getattr(tc, k, d)  # noqa: E731
    if get("first_k_dense_replace") is not None or get("moe_layer_freq") is not None:
        k, freq = int(get("first_k_dense_replace") or 0), int(get("moe_layer_freq") or 1)
        return [i for i in range(layers) if i >= k and i % freq == 0]
    if get("mlp_only_layers") is not None or get("decoder_sparse_step") is not None:
        dense, step = set(get("mlp_only_layers") or ()), int(get("decoder_sparse_step") or 1)
        return [i for i in range(layers) if i not in dense and (i + 1) % step == 0]
    for field in ("moe_layer_interval", "dense_layers", "first_k_dense", "moe_layers", "layer_types_moe"):
        if get(field) is not None:
            raise DnnmapError(f"{type(tc).__name__}.{field}: cannot tell which layers have experts "
                              "(expert parallelism needs the MoE layer count)")
    return list(range(layers))
