"""The one registry of model names, and building a model with example inputs.

Names:

- torchvision classification models: ``resnet18``, ``vit_b_16`` ... (``weights=None``);
  input ``3x224x224`` (``inception_v3``: ``3x299x299``).
- timm: ``timm:<name>`` (``pretrained=False``); input from the model's ``pretrained_cfg``.
- Hugging Face: ``hf:<bundled>`` or ``hf:path/to/config.json`` (see :mod:`dnnmap.capture.hf`);
  input ``input_ids`` int64 ``[batch, seq_len]``.
- a user's module: ``path/to/file.py:factory``; ``factory()`` returns an ``nn.Module`` or
  ``(module, inputs)``.

Fake build (the default): the module is built on the ``meta`` device with ``torch.nn.init``
switched off (no memory, no init compute), then every parameter, buffer and tensor
attribute is replaced by a CPU ``FakeTensor`` of the same shape and dtype, all under one
``FakeTensorMode``. A constructor that needs tensor values (RegNet computes its widths with
tensors) is retried on CPU with uninitialised storage that is never touched, then faked.
``fake=False`` builds real random weights (seed 0) and random inputs, for running for real.

>>> m, (x,) = build_model("resnet18", batch=2)
>>> tuple(x.shape), type(x).__name__
((2, 3, 224, 224), 'FakeTensor')
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from dnnmap.capture import hf
from dnnmap.errors import DnnmapError, UnknownNameError
from dnnmap.ir import DType

_DTYPES = {DType.FLOAT32: torch.float32, DType.BFLOAT16: torch.bfloat16, DType.FLOAT16: torch.float16}
_TIMM = "timm:"


class Family(StrEnum):
    VISION = "vision"  # one image tensor [batch, C, H, W]
    TEXT = "text"  # token ids [batch, seq]
    CUSTOM = "custom"  # the user's factory decides


@dataclass(frozen=True)
class Source:
    """A resolved model name: how to build it and what it eats."""

    name: str
    family: Family
    factory: Callable[[torch.dtype], Any]  # -> nn.Module or (nn.Module, inputs)
    image_shape: tuple[int, ...] = ()  # VISION: (C, H, W)
    config: Any = None  # TEXT: the transformers config


# -- names ----------------------------------------------------------------------------
@functools.cache
def torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


@functools.cache
def timm_names() -> tuple[str, ...]:
    import timm

    return tuple(_TIMM + n for n in timm.list_models())


def list_models() -> list[str]:
    """Every name :func:`build_model` takes (user files and config paths aside)."""
    return [*torchvision_names(), *hf.bundled_names(), *timm_names()]


def resolve(name: str) -> Source:
    """The :class:`Source` for ``name``; unknown names suggest close ones."""
    if ".py:" in name or name.endswith(".py"):
        return _file_source(name)
    if name.startswith("hf:"):
        try:
            config = hf.load_config(name)
        except (TypeError, ValueError, AttributeError, KeyError) as e:  # the config's values, not dnnmap
            raise DnnmapError(f"{name}: not a usable Hugging Face config: {type(e).__name__}: {e}") from None
        return Source(name, Family.TEXT, functools.partial(_hf_factory, config), config=config)
    if name.startswith(_TIMM):
        if name not in timm_names():
            raise UnknownNameError("model", name, timm_names())
        return Source(name, Family.VISION, functools.partial(_timm_factory, name.removeprefix(_TIMM)))
    if name in torchvision_names():
        size = 299 if name == "inception_v3" else 224
        return Source(name, Family.VISION, functools.partial(_tv_factory, name), image_shape=(3, size, size))
    raise UnknownNameError("model", name, [*torchvision_names(), *hf.bundled_names(), *timm_names()])


def _tv_factory(name: str, dtype: torch.dtype) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None)


def _timm_factory(name: str, dtype: torch.dtype) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _hf_factory(config: Any, dtype: torch.dtype) -> nn.Module:
    return hf.build(config, dtype)


def _file_source(spec: str) -> Source:
    file, _, fn = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    path = Path(file).expanduser()
    if not path.is_file():
        raise DnnmapError(f"{spec}: no such file {path}")
    if not fn:
        raise DnnmapError(f"{spec}: name the factory function as {path}:FUNCTION")
    mod_name = "dnnmap_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    loader = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(loader)  # type: ignore[arg-type]
    try:
        with _beside(path):
            loader.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as e:
        raise DnnmapError(f"{spec}: importing {path} failed: {type(e).__name__}: {e}") from e
    factory = getattr(module, fn, None)
    if not callable(factory):
        known = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        raise UnknownNameError("factory", fn, known)

    def call(dtype: torch.dtype) -> Any:
        with _beside(path):  # a factory may import its neighbours lazily, too
            return factory()

    return Source(spec, Family.CUSTOM, call)


@contextlib.contextmanager
def _beside(path: Path) -> Iterator[None]:
    """The one place a user's file gets its directory on the import path (``from mylayers
    import Block`` beside it works from the CLI as from Python), only while it is loaded."""
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


# -- building ---------------------------------------------------------------------------
def build_model(
    name: str,
    *,
    batch: int | None = None,
    input_shape: Sequence[int] | str | None = None,
    seq_len: int | None = None,
    dtype: str = "fp32",
    fake: bool = True,
) -> tuple[nn.Module, tuple]:
    """Build ``name`` in eval mode with example inputs: fake tensors, or real random ones."""
    src = resolve(name)
    tdtype = torch_dtype(dtype)
    shape = parse_shape(input_shape)
    if fake:
        mode = FakeTensorMode()
        built = _build_fake(src, tdtype, mode)
    else:
        mode = None
        with torch.random.fork_rng(), _quiet():
            torch.manual_seed(0)
            try:
                built = src.factory(tdtype)
            except DnnmapError:
                raise
            except Exception as e:
                raise _build_failed(src, e) from e
    module, given = _split_built(src, built)
    module = (module if fake else module.to(tdtype)).eval()  # fake: cast in fakeify
    if src.family is Family.VISION and not src.image_shape:
        src = replace(src, image_shape=_timm_image_shape(module))
    inputs = make_inputs(src, batch, shape, seq_len, tdtype, given, mode)
    return module, inputs


def _timm_image_shape(module: nn.Module) -> tuple[int, ...]:
    """timm's own default input size ``pretrained_cfg["input_size"]`` (3x224x224 if unset)."""
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
    return tuple(cfg.get("input_size", (3, 224, 224)))


def torch_dtype(dtype: str) -> torch.dtype:
    try:
        d = DType.parse(dtype)
    except ValueError as e:
        raise DnnmapError(str(e)) from None
    if d not in _DTYPES:
        raise DnnmapError(f"capture dtype must be fp32, bf16 or fp16, not {dtype!r}")
    return _DTYPES[d]


def parse_shape(shape: Sequence[int] | str | None) -> tuple[int, ...] | None:
    """``"3,224,224"`` / ``"3x224x224"`` / ``[3, 224, 224]`` -> ``(3, 224, 224)``."""
    if shape is None:
        return None
    parts = shape.replace("x", ",").split(",") if isinstance(shape, str) else list(shape)
    try:
        dims = tuple(int(p) for p in parts if str(p).strip())
    except ValueError:
        raise DnnmapError(f"input shape {shape!r}: expected integers like 3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise DnnmapError(f"input shape {shape!r}: expected positive integers like 3,224,224")
    return dims


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """``torch.nn.init.*`` as no-ops: fake weights have no values to initialise."""
    saved = {}
    for k, fn in vars(nn.init).items():
        if inspect.isfunction(fn) and fn.__module__ == nn.init.__name__ and k.endswith("_") and k[0] != "_":
            saved[k] = fn
            setattr(nn.init, k, lambda tensor, *a, **kw: tensor)
    try:
        yield
    finally:
        for k, fn in saved.items():
            setattr(nn.init, k, fn)


def _build_fake(src: Source, dtype: torch.dtype, mode: FakeTensorMode) -> Any:
    with _quiet(), _no_init():
        try:
            with torch.device("meta"):
                built = src.factory(dtype)
        except DnnmapError:
            raise
        except Exception as e:
            if src.family is Family.CUSTOM and not _needs_values(e):
                raise _build_failed(src, e) from e  # the user's factory failed: once, not twice
            try:  # the constructor needs tensor values: build on CPU, untouched
                built = src.factory(dtype)
            except Exception as e2:
                raise _build_failed(src, e2) from e2
    module, inputs = _split_built(src, built)
    memo: dict[int, torch.Tensor] = {}
    module = fakeify(module, mode, dtype, memo)
    return module if inputs is None else (module, _fake_tree(inputs, mode, memo))


def _needs_values(e: Exception) -> bool:
    """A failure of building on the meta device (not of the constructor itself)."""
    return isinstance(e, NotImplementedError) or "meta" in str(e).lower()


def _build_failed(src: Source, e: Exception) -> Exception:
    """The user's factory or config failed: their mistake, said as such; ours stays internal."""
    if src.family is Family.CUSTOM:
        return DnnmapError(f"{src.name}: the factory raised {type(e).__name__}: {e}")
    if src.family is Family.TEXT:
        return DnnmapError(f"{src.name}: transformers cannot build a model from this config: "
                           f"{type(e).__name__}: {e}")
    return e


def _split_built(src: Source, built: Any) -> tuple[nn.Module, Any]:
    """``module`` or ``(module, inputs)`` from a factory; anything else is the user's mistake."""
    module, inputs = built if isinstance(built, tuple) and len(built) == 2 else (built, None)
    if not isinstance(module, nn.Module):
        what = f"a {len(built)}-tuple" if isinstance(built, tuple) else type(built).__name__
        raise DnnmapError(f"{src.name}: the factory returned {what}; it must return an nn.Module "
                          "or (nn.Module, inputs)")
    return module, inputs


def _fake_like(t: torch.Tensor, mode: FakeTensorMode, memo: dict[int, torch.Tensor],
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU fake tensor like ``t``; floating tensors take ``dtype`` (as ``Module.to`` does)."""
    new = memo.get(id(t))
    if new is None:
        with mode:
            f = torch.empty(t.shape, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype)
            new = nn.Parameter(f, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else f
        memo[id(t)] = new
    return new


def _fake_tree(x: Any, mode: FakeTensorMode, memo: dict) -> Any:
    if isinstance(x, torch.Tensor):
        return _fake_like(x, mode, memo)
    if isinstance(x, (list, tuple)):
        return type(x)(_fake_tree(v, mode, memo) for v in x)
    if isinstance(x, dict):
        return {k: _fake_tree(v, mode, memo) for k, v in x.items()}
    return x


def fakeify(model: nn.Module, mode: FakeTensorMode, dtype: torch.dtype | None = None,
            memo: dict | None = None) -> nn.Module:
    """Replace every parameter, buffer and tensor attribute by a CPU fake tensor (ties kept);
    floating ones are cast to ``dtype`` when given."""
    memo = {} if memo is None else memo
    for m in model.modules():
        for k, p in m._parameters.items():
            if p is not None:
                m._parameters[k] = _fake_like(p, mode, memo, dtype)
        for k, b in m._buffers.items():
            if b is not None:
                m._buffers[k] = _fake_like(b, mode, memo, dtype)
        for k, v in list(vars(m).items()):
            if isinstance(v, torch.Tensor):
                m.__dict__[k] = _fake_like(v, mode, memo, dtype)
    return model


def make_inputs(
    src: Source,
    batch: int | None,
    shape: tuple[int, ...] | None,
    seq_len: int | None,
    dtype: torch.dtype,
    given: Any,
    mode: FakeTensorMode | None,
) -> tuple:
    """Example inputs for ``src``: fake under ``mode``, else real random (seed 0)."""
    full = _input_shape(src, batch, shape, seq_len, given)
    if full is None:  # the factory's own inputs
        inputs = given if isinstance(given, tuple) else (given,)
        return tuple(x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs)
    ctx = mode if mode is not None else contextlib.nullcontext()
    with ctx, torch.random.fork_rng():
        torch.manual_seed(0)
        if src.family is Family.TEXT:
            return (torch.randint(0, hf.vocab_size(src.config), full, dtype=torch.long),)
        return (torch.randn(full, dtype=dtype),)


def _input_shape(src: Source, batch: int | None, shape: tuple[int, ...] | None,
                 seq_len: int | None, given: Any) -> tuple[int, ...] | None:
    b = 1 if batch is None else batch
    if src.family is Family.TEXT:
        if shape is not None and len(shape) not in (1, 2):
            raise DnnmapError(f"{src.name}: input shape is [seq] or [batch, seq], not {list(shape)}")
        if shape is not None and len(shape) == 2:
            _check_batch(src, batch, shape[0])
        seq = shape[-1] if shape is not None else seq_len or hf.default_seq_len(src.config)
        if seq_len is not None and seq != seq_len:
            raise DnnmapError(f"{src.name}: --seq-len {seq_len} disagrees with input shape {list(shape or ())}")
        _check_positions(src, seq)
        return (shape[0] if shape is not None and len(shape) == 2 else b, seq)
    if src.family is Family.VISION:
        if seq_len is not None:
            raise DnnmapError(f"{src.name} takes images, not tokens: --seq-len does not apply "
                              f"(its input is {list(src.image_shape) or 'an image'}; --input-shape changes it)")
        shape = shape or src.image_shape
        if len(shape) == len(src.image_shape) + 1:
            _check_batch(src, batch, shape[0])
            return shape
        return (b, *shape)
    if shape is not None:
        return (b, *shape)
    if given is None:
        raise DnnmapError(f"{src.name}: give an input shape (without batch), or let the factory "
                          "return (module, inputs)")
    lead = _leading(given)
    if batch is not None and lead is not None and batch != lead:
        raise DnnmapError(f"{src.name}: the factory returns its own inputs, at batch {lead}; --batch {batch} "
                          "cannot change them. Drop --batch, or return only the module and give --input-shape")
    return None


def _leading(given: Any) -> int | None:
    """The batch (leading dimension) of the first tensor among the factory's inputs."""
    from torch.utils._pytree import tree_leaves

    for t in tree_leaves(given):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return None


def _check_positions(src: Source, seq: int) -> None:
    """A sequence longer than the model has positions for is the user's mistake: say so before
    the model fails somewhere inside with a shape that names neither."""
    limit = getattr(src.config, "max_position_embeddings", None)
    if isinstance(limit, int) and 0 < limit < seq:
        raise DnnmapError(f"{src.name}: sequence length {seq:,} exceeds the model's max_position_embeddings "
                          f"({limit:,}); use --seq-len {limit} or less")


def _check_batch(src: Source, batch: int | None, leading: int) -> None:
    if batch is not None and batch != leading:
        raise DnnmapError(f"{src.name}: batch {batch} disagrees with the input shape's leading {leading}")
