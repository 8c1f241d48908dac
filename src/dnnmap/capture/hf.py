"""Hugging Face transformers models built offline from a ``config.json`` (bundled or the user's).

Bundled configs (``capture/configs/*.json``) copy the published values of each checkpoint's
``config.json``; ``_dnnmap_source`` names where. No network: the model is built from the
config with random (or no) weights.

Choices, in one place:

- class: ``AutoModelForCausalLM`` when the config's ``architectures`` names a causal LM
  (``*ForCausalLM``, ``*LMHeadModel``): logits over the vocabulary, as serving runs it.
  Otherwise ``AutoModel`` (the encoder, as ``AutoModel.from_pretrained`` builds it).
- attention: ``attn_implementation="sdpa"`` so attention is one ATen op
  (``aten.scaled_dot_product_attention``); architectures without SDPA use their default.
- ``use_cache=False``: one forward pass over the prompt returns no KV cache.
- sequence length (when not given): 128 for encoders and for decoders with at most 1024
  positions (BERT, GPT-2 class); 2048 for longer-context decoders (Llama class).

>>> sorted(bundled_names())[:2]
['hf:bert-base-uncased', 'hf:bert-large-uncased']
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from dnnmap.errors import DnnmapError, UnknownNameError

_PREFIX = "hf:"
_CONFIG_DIR = "configs"


def bundled_names() -> list[str]:
    files = resources.files("dnnmap.capture").joinpath(_CONFIG_DIR)
    return sorted(_PREFIX + f.name.removesuffix(".json") for f in files.iterdir() if f.name.endswith(".json"))


def _read(name: str) -> dict[str, Any]:
    """The config dict for ``hf:<bundled name>`` or ``hf:<path to config.json or its folder>``."""
    key = name.removeprefix(_PREFIX)
    if _PREFIX + key in bundled_names():
        text = resources.files("dnnmap.capture").joinpath(_CONFIG_DIR, f"{key}.json").read_text()
        return json.loads(text)
    path = Path(key).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        if "/" in key or key.endswith(".json"):
            raise DnnmapError(f"{name}: no such config file {path}")
        raise UnknownNameError("model", name, bundled_names())
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DnnmapError(f"{path} is not valid JSON: {e}") from None


def load_config(name: str) -> Any:
    """A ``transformers`` config object (``use_cache=False``) for ``name``."""
    from transformers import CONFIG_MAPPING

    d = {k: v for k, v in _read(name).items() if not k.startswith("_dnnmap")}
    model_type = d.pop("model_type", None)
    if model_type is None:
        raise DnnmapError(f"{name}: config has no 'model_type'")
    if model_type not in CONFIG_MAPPING:
        raise UnknownNameError("Hugging Face model_type", model_type, CONFIG_MAPPING.keys())
    config = CONFIG_MAPPING[model_type](**d)
    config.use_cache = False
    return config


def is_causal_lm(config: Any) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


def default_seq_len(config: Any) -> int:
    positions = getattr(config, "max_position_embeddings", None) or 0
    if not is_causal_lm(config) or positions <= 1024:
        return 128
    return 2048


def build(config: Any, dtype: Any) -> Any:
    """The model for ``config`` in eval mode (weights as the surrounding device context makes them)."""
    from transformers import AutoModel, AutoModelForCausalLM

    cls = AutoModelForCausalLM if is_causal_lm(config) else AutoModel
    try:
        model = cls.from_config(config, attn_implementation="sdpa", dtype=dtype)
    except ValueError as e:  # an architecture without SDPA support
        if "sdpa" not in str(e).lower():
            raise
        model = cls.from_config(config, dtype=dtype)
    return model.eval()


def vocab_size(config: Any) -> int:
    return int(getattr(config, "vocab_size", 2) or 2)
