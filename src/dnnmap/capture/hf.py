"""Hugging Face transformers models built offline from a ``config.json`` (bundled or the user's).

Bundled configs (``capture/configs/*.json``) copy the published values of each checkpoint's
``config.json``; ``_dnnmap_source`` names where. No network: the model is built from the
config with random (or no) weights.

Choices, in one place:

- class: ``AutoModelForCausalLM`` when the config's ``architectures`` names a causal LM
  (``*ForCausalLM``, ``*LMHeadModel``): logits over the vocabulary, as serving runs it.
  Otherwise ``AutoModel`` (the encoder, as ``AutoModel.from_pretrained`` builds it).
- attention: the implementation the caller asks for (:func:`attention`: ``eager`` = matmul,
  scale, mask, softmax, dropout, matmul as the model's own Python runs it, with the
  batch x heads x seq x seq score tensor in memory; ``sdpa`` = one
  ``aten.scaled_dot_product_attention``; ``flash`` = the same op, priced as a FlashAttention
  kernel by the mapper). Default: the value in the config (``attn_implementation`` or
  ``_attn_implementation``), else what transformers itself chooses (SDPA where the
  architecture supports it). An architecture that refuses the requested one is built with its
  own default, and ``attention_ran`` says what ran.
- class: a config name suffixed ``@Arch`` (``hf:bert.json@BertForSequenceClassification``)
  builds that transformers class instead of the choice above.
- ``use_cache=False``: one forward pass over the prompt returns no KV cache.
- sequence length (when not given): 128 for encoders and for decoders with at most 1024
  positions (BERT, GPT-2 class); 2048 for longer-context decoders (Llama class).

>>> sorted(bundled_names())[:2]
['hf:bert-base-uncased', 'hf:bert-large-uncased']
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from dnnmap.errors import DnnmapError, UnknownNameError

_PREFIX = "hf:"
_CONFIG_DIR = "configs"
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash")
# transformers' names for what dnnmap calls "flash": the op captured is SDPA either way
_HF_ATTENTION = {"eager": "eager", "sdpa": "sdpa", "flash": "sdpa"}
_requested: ContextVar[str | None] = ContextVar("attn_implementation", default=None)


@contextmanager
def attention(impl: str | None) -> Iterator[None]:
    """Build HF models inside this block with attention ``impl`` (None: the default)."""
    if impl is not None and impl not in ATTENTION_IMPLEMENTATIONS:
        raise DnnmapError(
            f"attention implementation must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}, not {impl!r}"
        )
    token = _requested.set(impl)
    try:
        yield
    finally:
        _requested.reset(token)


def _split_arch(name: str) -> tuple[str, str | None]:
    """``hf:cfg.json@BertForMaskedLM`` -> (``hf:cfg.json``, ``BertForMaskedLM``)."""
    base, sep, arch = name.rpartition("@")
    if sep and arch.isidentifier() and base:
        return base, arch
    return name, None


def bundled_names() -> list[str]:
    files = resources.files("dnnmap.capture").joinpath(_CONFIG_DIR)
    return sorted(_PREFIX + f.name.removesuffix(".json") for f in files.iterdir() if f.name.endswith(".json"))


def _read(name: str) -> dict[str, Any]:
    """The config dict for ``hf:<bundled name>`` or ``hf:<path to config.json or its folder>``."""
    key = _split_arch(name)[0].removeprefix(_PREFIX)
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
    configured = d.pop("attn_implementation", None) or d.pop("_attn_implementation", None)
    config = CONFIG_MAPPING[model_type](**d)
    config.use_cache = False
    config.dnnmap_configured_attention = configured
    arch = _split_arch(name)[1]
    if arch is not None:
        import transformers

        if not hasattr(transformers, arch):
            raise DnnmapError(f"{name}: transformers has no model class {arch!r}")
        config.architectures = [arch]
        config.dnnmap_model_class = arch
    return config


def is_causal_lm(config: Any) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


def default_seq_len(config: Any) -> int:
    positions = getattr(config, "max_position_embeddings", None) or 0
    if not is_causal_lm(config) or positions <= 1024:
        return 128
    return 2048


def requested_attention(config: Any) -> str:
    """The attention implementation to build: the caller's, else the config's, else SDPA
    (transformers' own default where the architecture supports it)."""
    asked = _requested.get() or getattr(config, "dnnmap_configured_attention", None)
    if asked in ("flash_attention_2", "flash_attention_3"):
        asked = "flash"
    return asked if asked in ATTENTION_IMPLEMENTATIONS else "sdpa"


def build(config: Any, dtype: Any) -> Any:
    """The model for ``config`` in eval mode (weights as the surrounding device context makes them).

    Sets ``model.dnnmap_attention`` to the implementation that was actually built."""
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM

    arch = getattr(config, "dnnmap_model_class", None)
    if arch is not None:
        cls = getattr(transformers, arch)
        build_fn = cls._from_config
    else:
        cls = AutoModelForCausalLM if is_causal_lm(config) else AutoModel
        build_fn = cls.from_config
    want = requested_attention(config)
    try:
        model = build_fn(config, attn_implementation=_HF_ATTENTION[want], dtype=dtype)
        ran = want
    except (ValueError, ImportError, NotImplementedError):
        # an architecture that does not support the requested attention (Bloom, Mamba and
        # Switch refuse SDPA; the error text varies between transformers versions): the
        # model's own Python attention, which every architecture has. The failed attempt left
        # its choice on the config, so the retry names eager rather than "the default".
        if want == "eager":
            raise
        model = build_fn(config, attn_implementation="eager", dtype=dtype)
        ran = "eager"
    if getattr(config, "is_encoder_decoder", False):
        model = EncoderDecoder(model)
    model.dnnmap_attention = ran
    return model.eval()


class EncoderDecoder(nn.Module):
    """An encoder-decoder (T5, Switch, BART) called with token ids only: the decoder reads the
    same ids (decoder length = encoder length, one teacher-forced pass), since the model itself
    refuses a forward without decoder inputs. Module paths keep the model's names under ``model.``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids: Any) -> Any:
        return self.model(input_ids=input_ids, decoder_input_ids=input_ids)


def vocab_size(config: Any) -> int:
    return int(getattr(config, "vocab_size", 2) or 2)
