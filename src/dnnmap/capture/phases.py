"""LLM phases captured from the real model: prefill (a prompt of P tokens) and one decode step
(one new token per sequence against a KV cache holding L tokens).

The Hugging Face causal LM is built once on fake tensors (:class:`CausalLM`); each capture
hands it the model's own cache class filled with fake tensors and records the ATen ops that
run (the dispatch path: caches live outside pytrees). Grouped-query / multi-query attention,
sliding windows, rotary embeddings and the cache update are whatever the model's code does.

Two cache classes, because two kinds of engine run generation:

- ``dynamic`` (``DynamicCache``, what eager ``model.generate`` uses): each step concatenates the
  new key/value to the cache (``aten.cat``: the cache is read and written once per step).
- ``static`` (``StaticCache`` with exactly the slots the step needs, what compiled / CUDA-graph
  engines use): the new key/value is written in place (``index_copy_``), attention reads the
  L + 1 cached positions.

The cache tensors are graph inputs named ``kv_<i>`` (``meta["kv_cache"]`` lists their ids with
each layer's sliding window) so memory and precision passes can tell them from activations.
Only the last position's logits are computed (``logits_to_keep=1``), as ``generate`` and
serving engines do.

>>> lm = CausalLM.build("hf:gpt2")                                  # doctest: +SKIP
>>> g = lm.capture(Phase.DECODE, batch=2, length=100)                 # doctest: +SKIP
>>> g.meta["phase"], g.meta["context"]                                # doctest: +SKIP
('decode', 100)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from dnnmap.capture import hf
from dnnmap.capture.dispatch_path import capture_dispatch
from dnnmap.capture.sources import build_model, resolve, torch_dtype
from dnnmap.errors import DnnmapError
from dnnmap.ir import DType, Graph


class Phase(StrEnum):
    PREFILL = "prefill"  # P prompt tokens per sequence, empty cache
    DECODE = "decode"  # 1 token per sequence, cache holding L tokens


class CacheKind(StrEnum):
    DYNAMIC = "dynamic"  # DynamicCache: torch.cat per step (eager HF generate)
    STATIC = "static"  # StaticCache: in-place index_copy_ (compiled / CUDA-graph engines)


@dataclass(frozen=True, slots=True)
class KvLayer:
    """One layer's cache geometry, read off the model's own cache after a probe step."""

    heads: int
    k_dim: int
    v_dim: int
    window: int | None  # sliding-window layers keep at most this many positions

    def held(self, tokens: int) -> int:
        """Positions this layer keeps for a context of ``tokens`` (all of them, or the window)."""
        return tokens if self.window is None else min(tokens, self.window)


class _Step(nn.Module):
    """``lm`` called the way generation calls it, with the cache tensors as explicit inputs."""

    def __init__(self, lm: nn.Module, cache: Any) -> None:
        super().__init__()
        self.lm = lm
        self.cache = cache

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, kv: tuple) -> Any:
        out = self.lm(input_ids=input_ids, position_ids=position_ids, cache=self.cache, use_cache=True,
                      logits_to_keep=1)
        return out.logits


@dataclass
class CausalLM:
    """A Hugging Face causal LM built once on fake tensors; captures any phase at any size."""

    name: str
    module: nn.Module
    config: Any
    dtype: str
    layout: tuple[KvLayer, ...]
    attention: str | None

    @classmethod
    def build(cls, name: str, dtype: str = "fp32", attn_implementation: str | None = None) -> CausalLM:
        """Build ``name`` (``hf:...``) with fake weights; a model that cannot generate is an error."""
        if not isinstance(name, str) or not name.startswith("hf:"):
            raise DnnmapError(f"{name}: generation needs a Hugging Face decoder (hf:NAME or hf:path/config.json)")
        src = resolve(name)
        if not hf.is_causal_lm(src.config):
            archs = ", ".join(getattr(src.config, "architectures", None) or ["?"])
            raise DnnmapError(f"{name} ({archs}) is not a causal language model: it has no decoder to "
                              "generate with (an encoder such as BERT cannot generate tokens)")
        with hf.attention(attn_implementation):
            module, _ = build_model(name, batch=1, seq_len=1, dtype=dtype)
        lm = cls(name, module, module.config, dtype, (), getattr(module, "dnnmap_attention", None))
        lm.layout = lm._probe()
        return lm

    @property
    def max_positions(self) -> int | None:
        tc = self.config.get_text_config(decoder=True)
        for key in ("max_position_embeddings", "n_positions"):
            v = getattr(tc, key, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    @property
    def fake_mode(self) -> Any:
        return next(self.module.parameters()).fake_mode

    @property
    def _tdtype(self) -> torch.dtype:
        return torch_dtype(self.dtype)

    def _probe(self) -> tuple[KvLayer, ...]:
        """Run one token through the model (not recorded) and read the cache it returns. Models
        that loop over ``layers[:config.num_hidden_layers]`` run one layer only; the others take
        its geometry, with each layer's window from the cache class's own layer types."""
        from transformers import DynamicCache

        tc = self.config.get_text_config(decoder=True)
        n = getattr(tc, "num_hidden_layers", None)
        with self.fake_mode, torch.no_grad():
            cache = DynamicCache(config=self.config)
            try:
                if isinstance(n, int):
                    tc.num_hidden_layers = 1
                self.module(input_ids=torch.zeros(1, 1, dtype=torch.long), cache=cache, use_cache=True,
                            logits_to_keep=1)
            finally:
                if isinstance(n, int):
                    tc.num_hidden_layers = n
        out = []
        first = None
        for layer in cache.layers:
            k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
            if k is None and first is not None:
                k, v = first
            if k is None or v is None or k.dim() != 4:
                raise DnnmapError(f"{self.name}: cache layer {type(layer).__name__} is not a key/value cache "
                                  "dnnmap can fill (linear-attention or shared-KV layers are not supported)")
            first = first or (k, v)
            window = getattr(layer, "sliding_window", None) if getattr(layer, "is_sliding", False) else None
            out.append(KvLayer(int(k.shape[1]), int(k.shape[-1]), int(v.shape[-1]), window))
        return tuple(out)

    def kv_bytes(self, tokens: int, batch: int = 1, itemsize: int | None = None) -> int:
        """KV-cache bytes holding ``tokens`` positions per sequence:
        sum over layers of ``batch x heads x held(tokens) x (k_dim + v_dim) x itemsize``."""
        size = itemsize or DType.parse(self.dtype).itemsize
        return sum(batch * kv.heads * kv.held(tokens) * (kv.k_dim + kv.v_dim) * size for kv in self.layout)

    def capture(self, phase: Phase | str, batch: int, length: int, cache: CacheKind | str = CacheKind.DYNAMIC) -> Graph:
        """Capture prefill of ``length`` prompt tokens, or a decode step with ``length`` cached tokens."""
        phase, cache = Phase(phase), CacheKind(cache)
        if batch < 1 or length < (1 if phase is Phase.PREFILL else 0):
            raise DnnmapError(f"batch and length must be positive, got batch {batch}, length {length}")
        new = length if phase is Phase.PREFILL else 1
        past = 0 if phase is Phase.PREFILL else length
        with self.fake_mode:
            kv_cache, kv, windows = self._cache(cache, batch, past, new)
            ids = torch.zeros(batch, new, dtype=torch.long)
            pos = (torch.arange(new) + past).unsqueeze(0).expand(batch, new).contiguous()
        step = _Step(self.module, kv_cache)
        g = capture_dispatch(step, (ids, pos, tuple(kv)), self.name)
        return _finish(g, self, phase, cache, batch, length, windows)

    def _cache(self, kind: CacheKind, batch: int, past: int, new: int) -> tuple[Any, list, list]:
        """The model's own cache class, filled with ``past`` positions of fake keys / values."""
        from transformers import DynamicCache, StaticCache

        c = DynamicCache(config=self.config) if kind is CacheKind.DYNAMIC else \
            StaticCache(config=self.config, max_cache_len=past + new)
        if len(c.layers) != len(self.layout):
            raise DnnmapError(f"{self.name}: cache has {len(c.layers)} layers, the model {len(self.layout)}")
        kv, windows = [], []
        for layer, geo in zip(c.layers, self.layout, strict=True):
            k1 = torch.empty(batch, geo.heads, 1, geo.k_dim, dtype=self._tdtype)
            v1 = torch.empty(batch, geo.heads, 1, geo.v_dim, dtype=self._tdtype)
            layer.lazy_initialization(k1, v1)
            if kind is CacheKind.DYNAMIC:
                held = past if geo.window is None else min(past, geo.window - 1)
                layer.keys = torch.empty(batch, geo.heads, held, geo.k_dim, dtype=self._tdtype)
                layer.values = torch.empty(batch, geo.heads, held, geo.v_dim, dtype=self._tdtype)
                if hasattr(layer, "cumulative_length"):
                    layer.cumulative_length = past
            else:
                layer.cumulative_length = torch.tensor(past)
                if hasattr(layer, "cumulative_length_int"):
                    layer.cumulative_length_int = past
            kv += [layer.keys, layer.values]
            windows += [geo.window, geo.window]
        return c, kv, windows


def _finish(g: Graph, lm: CausalLM, phase: Phase, cache: CacheKind, batch: int, length: int,
            windows: list) -> Graph:
    """Module paths as ``analyze`` names them (no wrapper prefix); phase facts in ``meta``."""
    ops = tuple(replace(op, module_path=op.module_path.removeprefix("lm.").removeprefix("lm"))
                if op.module_path.startswith("lm") else op for op in g.ops)
    kv_ids = tuple(t.id for t in g.tensors.values() if t.name.startswith("kv_"))
    meta = {**g.meta, "model": lm.name, "batch": batch, "dtype": DType.parse(lm.dtype).value,
            "capture_path": "dispatch", "phase": phase.value, "cache": cache.value,
            "context": length, "kv_cache": tuple(zip(kv_ids, windows, strict=False))}
    if lm.attention is not None:
        meta["attention"] = lm.attention
    experts = _moe(lm.config)
    if experts is not None:
        meta["moe"] = experts
    return replace(g, ops=ops, meta=meta)


def _moe(config: Any) -> dict[str, int] | None:
    """Experts and top-k of a mixture-of-experts config (None for a dense model)."""
    tc = config.get_text_config(decoder=True)
    e = next((getattr(tc, k) for k in ("num_local_experts", "num_experts", "n_routed_experts")
              if isinstance(getattr(tc, k, None), int)), None)
    k = next((getattr(tc, n) for n in ("num_experts_per_tok", "moe_top_k", "top_k")
              if isinstance(getattr(tc, n, None), int)), None)
    return {"experts": e, "top_k": k} if e and k else None
