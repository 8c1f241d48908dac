"""Capture one training step (forward, loss, backward, optimizer) at the ATen level.

The real model runs on fake tensors in ``train()`` mode under a ``TorchDispatchMode``
installed at the Python key, i.e. *below* autograd: it sees the ops autograd actually runs
(``addmm``, ``convolution``, ``native_layer_norm`` in forward; ``convolution_backward``,
``native_layer_norm_backward``, ``mm`` ... in backward) and the optimizer's ops, exactly as
``FlopCounterMode`` does. The ops are recorded in execution order and ``meta["phases"]``
names the contiguous spans: ``forward``, ``loss``, ``backward``, ``optimizer``.

Module attribution: forward ops carry the module running them (forward hooks). Backward ops
carry the module whose forward created the autograd node that runs them: each module's
forward hook labels the autograd nodes it created (walking back from its outputs to its
inputs' nodes), and the recorder reads ``torch._C._current_autograd_node()`` in backward.
Optimizer ops carry the module owning the parameter they update.

Mixed precision is PyTorch AMP: forward and loss under ``torch.autocast`` (bf16 / fp16
compute, fp32 master weights, the casts recorded as ``_to_copy``). Activation recomputation
wraps every repeated block in ``torch.utils.checkpoint`` (``full``), or with a selective
policy that saves only GEMM / conv / attention outputs (``selective``); recomputed ops run in
the backward span and are counted in ``meta["recomputed_ops"]``.

Mixture of experts: Hugging Face's experts run one grouped GEMM per projection
(``torch._grouped_mm``), which takes only bf16 operands (fp16 needs cuBLASLt's grouped GEMM,
fp32 none: the op refuses it on GPUs, and its meta kernel, which fake tensors run, says so).
Frameworks train such models in bf16 with fp32 master weights held for the optimizer
(Megatron-Core's grouped GEMM experts, Hugging Face with AMP), so under AMP the capture casts
the grouped GEMM's fp32 operands to bf16 exactly as autocast casts a ``linear``'s (the op is on
no autocast list): a ``_to_copy`` of the routed rows and of the expert weights per forward, the
GEMM in bf16 in forward and backward, the weight gradients cast back to the fp32 master weights'
dtype by the copy's backward. The weights, gradients and optimizer state stay fp32 and
:mod:`dnnmap.training.memory` counts them so. Under fp16 AMP the expert GEMMs are captured in
bf16, a stand-in of the same width (``meta["expert_gemm_dtype"]`` says so). A plain fp32 step
of such a model cannot run with this torch: a :class:`DnnmapError` says so and suggests
``--precision bf16``.

>>> g = capture_train_step("resnet18", batch=2, optimizer="sgd")
>>> [p[0] for p in g.meta["phases"]]
['forward', 'loss', 'backward', 'optimizer']
"""

from __future__ import annotations

import contextlib
import copy
import functools
import weakref
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

from dnnmap.capture._build import GraphBuilder, Ref, op_info
from dnnmap.capture._diagnose import ModuleStack
from dnnmap.capture._model import module_constants, static_tensors
from dnnmap.errors import DnnmapError
from dnnmap.ir import DType, Graph, Role

OPTIMIZERS = ("none", "sgd", "adam", "adamw")
RECOMPUTE = ("none", "selective", "full")
_LABEL = "dnnmap_module"
# device queries and profiler markers: no kernel, no dispatch worth a name
_NOT_KERNELS = frozenset({"prim", "profiler"})


def capture_train_step(
    model: str | nn.Module,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    input_shape: Any = None,
    inputs: tuple | None = None,
    optimizer: str = "adamw",
    amp: str | None = None,
    recompute: str = "none",
    foreach: bool = False,
    layers: int | None = None,
    attn_implementation: str | None = None,
) -> Graph:
    """The training step of ``model`` as one graph (see the module docstring).

    ``amp``: ``bf16`` / ``fp16`` autocast (None: the model's dtype); ``foreach``: the
    optimizer's multi-tensor kernels (what it runs on GPUs) instead of its per-tensor loop
    (what it runs on CPUs); ``layers``: build a Hugging Face model with this many blocks."""
    from dnnmap.capture import hf

    if optimizer not in OPTIMIZERS:
        raise DnnmapError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    if recompute not in RECOMPUTE:
        raise DnnmapError(f"recompute must be one of {', '.join(RECOMPUTE)}, not {recompute!r}")
    with hf.attention(attn_implementation):
        name, module, example, vocab = _build(model, batch, seq_len, input_shape, inputs, layers)
    module.train()
    stack = ModuleStack(module)
    blocks = _wrap_blocks(module, recompute, stack) if recompute != "none" else 0
    fake_mode = _fake_mode_of(module, example)
    b, st = static_tensors(module, example, name)
    rec = _Recorder(b, st.by_object, module_constants(module), stack)
    opt = _optimizer(module, optimizer, foreach)
    with fake_mode or contextlib.nullcontext(), _labels(module):
        target = _target(module, example, vocab)
        rec.static(target, Role.INPUT, "target")
        with stack:
            with _expert_gemms(name, amp, rec):
                with rec, _autocast(amp):
                    rec.phase("forward")
                    out = module(*example)
                    rec.phase("loss")
                    loss = _loss(out, target)
                with rec:
                    rec.phase("backward")
                    loss.backward()
        if opt is not None:
            opt.step()  # the first step creates the optimizer state: not part of a steady step
            _register_state(rec, module, opt)
            with rec:
                rec.phase("optimizer")
                opt.step()
        rec.phase("end")
    meta = {
        "phases": tuple(rec.spans), "optimizer": optimizer, "amp": amp or "none", "recompute": recompute,
        "recomputed_ops": tuple(rec.recomputed), "checkpointed_blocks": blocks, "foreach": foreach,
        "phase": "train_step",
    }
    if rec.assumed:
        meta["assumed_values"] = tuple(rec.assumed)
    if rec.expert_gemms:
        meta["expert_gemm_dtype"] = rec.expert_gemms
    g = b.finish(st.inputs + [rec.tid(target)], [rec.tid(loss)], meta)
    ran = getattr(module, "dnnmap_attention", None)
    base = {"model": name, "batch": batch, "dtype": DType.parse(_dtype_of(module)).value,
            "capture_path": "dispatch", "torch_version": torch.__version__}
    if ran is not None:
        base["attention"] = ran
    if layers is not None:
        base["layers_built"] = layers
    return replace(g, meta={**base, **g.meta})


# -- the model, its inputs, its loss ------------------------------------------------------
def _build(model: Any, batch: int, seq_len: int | None, input_shape: Any, inputs: tuple | None,
           layers: int | None) -> tuple[str, nn.Module, tuple, int | None]:
    from dnnmap.capture import sources

    if not isinstance(model, str):
        if inputs is None:
            raise DnnmapError("capture_train_step of an nn.Module needs inputs=(tensor, ...)")
        return type(model).__name__, model, inputs if isinstance(inputs, tuple) else (inputs,), None
    src = sources.resolve(model)
    if layers is not None:
        src = _with_layers(src, layers)
    tdtype = sources.torch_dtype("fp32")
    mode = sources.FakeTensorMode()
    built = sources._build_fake(src, tdtype, mode)
    module, given = sources._split_built(src, built)
    if src.family is sources.Family.VISION and not src.image_shape:
        src = replace(src, image_shape=sources._timm_image_shape(module))
    example = sources.make_inputs(src, batch, sources.parse_shape(input_shape), seq_len, tdtype, given, mode)
    vocab = int(src.config.vocab_size) if src.config is not None else None
    return model, module, example, vocab


def _with_layers(src: Any, layers: int) -> Any:
    from dnnmap.capture import sources

    if src.config is None:
        raise DnnmapError(f"{src.name}: layers= applies to Hugging Face models only")
    config = copy.deepcopy(src.config)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(config, key):
            setattr(config, key, layers)
    return replace(src, config=config, factory=functools.partial(sources._hf_factory, config))


def _dtype_of(module: nn.Module) -> str:
    p = next(iter(module.parameters()), None)
    return str(p.dtype).removeprefix("torch.") if p is not None else "float32"


def _target(module: nn.Module, example: tuple, vocab: int | None) -> torch.Tensor:
    """What the loss compares with: the token ids themselves (as NeuSight's training step
    did) for a language model, a class index per sample otherwise."""
    x = example[0]
    if vocab is not None and not x.is_floating_point():
        return x.clone()
    return torch.zeros(x.shape[0], dtype=torch.long)


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "prediction_logits", "last_hidden_state"):
        v = getattr(out, key, None)
        if isinstance(v, torch.Tensor):
            return v
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise DnnmapError(f"cannot find the logits in the model's output ({type(out).__name__})")


def _loss(out: Any, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits against the target (token ids or class indices)."""
    logits = _logits(out)
    if target.dim() == 2 and logits.dim() == 3:  # language model: every position
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    if logits.dim() == 2:
        return nn.functional.cross_entropy(logits, target)
    return logits.float().pow(2).mean()  # an encoder without a head: a stand-in scalar loss


def _autocast(amp: str | None) -> Any:
    if amp in (None, "none", "fp32"):
        return contextlib.nullcontext()
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dt is None:
        raise DnnmapError(f"amp must be bf16, fp16 or none, not {amp!r}")
    return torch.autocast("cpu", dtype=dt)


def _optimizer(module: nn.Module, name: str, foreach: bool) -> torch.optim.Optimizer | None:
    params = [p for p in module.parameters() if p.requires_grad]
    if name == "none" or not params:
        return None
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=foreach)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=1e-3, foreach=foreach)


def _register_state(rec: _Recorder, module: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Optimizer state tensors become named buffers of the step (``layer.weight.exp_avg``)."""
    names = {id(p): n for n, p in module.named_parameters()}
    for p, state in opt.state.items():
        fqn = names.get(id(p), "param")
        rec.owner[id(p)] = fqn.rpartition(".")[0]
        if p.grad is not None:
            rec.owner[id(p.grad)] = rec.owner[id(p)]
        for key, v in state.items():
            if isinstance(v, torch.Tensor):
                rec.static(v, Role.BUFFER, f"{fqn}.{key}")
                rec.owner[id(v)] = rec.owner[id(p)]


# -- mixture of experts ------------------------------------------------------------------
@contextlib.contextmanager
def _expert_gemms(name: str, amp: str | None, rec: _Recorder) -> Iterator[None]:
    """The grouped expert matmuls of a mixture of experts, as frameworks train them (see the
    module docstring): under AMP their fp32 operands are cast to the 16-bit compute dtype first,
    as autocast casts a ``linear``'s (``torch._grouped_mm`` is on no autocast list); in plain
    fp32 a clear error, since the op refuses fp32 operands. Active over forward and backward
    (a checkpointed block runs its forward again in backward)."""
    import logging

    orig = torch._grouped_mm
    dt = {"bf16": torch.bfloat16, "fp16": torch.bfloat16}.get(amp or "")  # fp16: see the module docstring
    used: list[bool] = []

    def grouped_mm(a: torch.Tensor, b: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        used.append(True)
        if dt is not None and kwargs.get("out_dtype") is None:
            a = a.to(dt) if a.dtype == torch.float32 else a
            b = b.to(dt) if b.dtype == torch.float32 else b
        # fake tensors log the refused fp32 operands as an error before raising: quiet only here
        log = logging.getLogger("torch._subclasses.fake_tensor")
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            return orig(a, b, *args, **kwargs)
        finally:
            log.setLevel(level)

    torch._grouped_mm = grouped_mm  # torch.nn.functional.grouped_mm calls it by this name
    try:
        yield
    except RuntimeError as e:
        # only a plain fp32 step has fp32 expert operands; under AMP a grouped_mm error is another one
        if dt is not None or ("mat_a to be BFloat16" not in str(e) and "grouped_mm" not in str(e)):
            raise
        raise DnnmapError(f"{name}: its grouped expert matmuls (torch._grouped_mm) take only bf16 (or, with "
                          f"cuBLASLt, fp16) operands in torch {torch.__version__}, so a plain fp32 training step "
                          "of this mixture-of-experts model cannot run; train it in mixed precision "
                          "(--precision bf16: fp32 master weights, bf16 expert GEMMs)") from None
    finally:
        torch._grouped_mm = orig
        if used and dt is not None:
            rec.expert_gemms = "bfloat16" + (" (stand-in for fp16, same width)" if amp == "fp16" else "")


# -- activation recomputation -------------------------------------------------------------
def blocks_of(module: nn.Module) -> list[nn.Module]:
    """The repeated blocks: items of every ``ModuleList``, else of ``Sequential`` containers
    whose children share one type (ResNet's ``layer1`` ... of BasicBlocks)."""
    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList)]
    if lists:
        return [b for m in lists for b in m]
    seqs = [m for m in module.modules() if isinstance(m, nn.Sequential) and len(m) >= 2
            and len({type(c) for c in m}) == 1 and any(True for _ in next(iter(m)).children())]
    return [b for m in seqs for b in m]


def _save_gemms(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    name = str(func)
    keep = any(k in name for k in ("mm", "convolution", "linear", "attention", "_flash"))
    return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE


def _wrap_blocks(module: nn.Module, recompute: str, stack: ModuleStack) -> int:
    """Checkpoint every block. The block's forward runs under a frame of its own on ``stack``,
    removed however it ends: PyTorch's non-reentrant checkpoint stops a recomputation early
    (an exception once the tensors backward needs exist), skipping the inner modules'
    forward hooks that would pop their frames; frames left behind made every later backward
    op look recomputed (MFU counted a third of the backward FLOPs)."""
    from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

    paths = {id(m): p for p, m in module.named_modules()}
    blocks = blocks_of(module)
    for blk in blocks:
        fwd = blk.forward
        kw: dict[str, Any] = {"use_reentrant": False}
        if recompute == "selective":
            kw["context_fn"] = functools.partial(create_selective_checkpoint_contexts, _save_gemms)

        def framed(*a: Any, _f: Any = fwd, _frame: tuple = (paths[id(blk)], type(blk).__name__), **k: Any) -> Any:
            depth = len(stack.frames)
            stack.frames.append((*_frame, (), {}))
            try:
                return _f(*a, **k)
            finally:
                del stack.frames[depth:]

        def run(*a: Any, _f: Any = framed, _kw: dict = kw, **k: Any) -> Any:
            return checkpoint(_f, *a, **_kw, **k)

        blk.forward = run
    return len(blocks)


# -- backward attribution -----------------------------------------------------------------
@contextlib.contextmanager
def _labels(model: nn.Module) -> Iterator[None]:
    """Label the autograd nodes each module's forward creates with (path, type)."""
    handles = []
    boundary: list[set[int]] = []
    for path, m in model.named_modules():
        label = (path, type(m).__name__)

        def pre(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            nodes = {id(t.grad_fn) for t in _tensors((args, kwargs)) if t.grad_fn is not None}
            boundary.append(nodes)

        def post(mod: nn.Module, args: tuple, kwargs: dict, out: Any, _label: tuple = label) -> None:
            stop = boundary.pop() if boundary else set()
            todo = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
            seen: set[int] = set()
            while todo:  # inner modules labelled their nodes first: keep those labels
                node = todo.pop()
                if node is None or id(node) in stop or id(node) in seen:
                    continue
                seen.add(id(node))
                node.metadata.setdefault(_LABEL, _label)
                todo.extend(n for n, _ in node.next_functions)

        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _tensors(x: Any) -> list[torch.Tensor]:
    from torch.utils._pytree import tree_leaves

    out = []
    for v in tree_leaves(x):
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif hasattr(v, "__dict__") and not isinstance(v, (nn.Module, type)):
            out.extend(t for t in vars(v).values() if isinstance(t, torch.Tensor))
    return out


def _fake_mode_of(model: nn.Module, inputs: tuple) -> Any:
    for t in [*model.parameters(), *model.buffers(), *inputs]:
        if isinstance(t, FakeTensor):
            return t.fake_mode
    return None


class _Recorder(TorchDispatchMode):
    """Records every ATen op below autograd, with its phase and module."""

    def __init__(self, b: GraphBuilder, ids: dict, constants: dict[int, str], stack: ModuleStack) -> None:
        super().__init__()
        self.b, self.ids, self.constants, self.stack = b, ids, constants, stack
        self.spans: list[tuple[str, int, int]] = []
        self.owner: dict[int, str] = {}  # id(param / grad / state) -> module path (optimizer)
        self.assumed: list[str] = []
        self.recomputed: list[str] = []  # ids of the ops a checkpointed block runs again
        self.expert_gemms = ""  # the dtype the grouped expert matmuls ran in, when cast (AMP)
        self._phase: str | None = None
        self._start = 0
        self._sticky = ""

    def phase(self, name: str) -> None:
        if self._phase is not None:
            self.spans.append((self._phase, self._start, len(self.b.ops)))
        self._phase, self._start = (None if name == "end" else name), len(self.b.ops)

    def static(self, t: torch.Tensor, role: Role, name: str) -> str:
        tid = self.b.add_tensor(t, role, name)
        self.ids[id(t)] = (tid, t)
        return tid

    def tid(self, t: torch.Tensor) -> str:
        hit = self.ids.get(id(t))
        if hit is not None and (hit[1] is t or (isinstance(hit[1], weakref.ref) and hit[1]() is t)):
            return hit[0]
        name = self.constants.get(id(t), f"lifted_tensor_{len(self.b.tensors)}")
        return self.static(t, Role.CONSTANT, name)

    def _ref(self, a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return Ref(self.tid(a))
        if isinstance(a, (list, tuple)):
            return [self._ref(x) for x in a]
        return a

    def _where(self, args: tuple) -> tuple[str, str]:
        if self._phase == "forward":
            return self.stack.top()
        if self._phase == "loss":
            return "loss", "CrossEntropyLoss"
        if self._phase == "optimizer":
            for a in args:
                for t in (a if isinstance(a, (list, tuple)) else (a,)):
                    if isinstance(t, torch.Tensor) and id(t) in self.owner:
                        self._sticky = self.owner[id(t)]
                        break
            return self._sticky, "Optimizer"
        if self.stack.frames:  # a checkpointed block running its forward again
            self.recomputed.append(f"op{len(self.b.ops)}")
            return self.stack.top()
        node = torch._C._current_autograd_node()
        label = node.metadata.get(_LABEL) if node is not None else None
        return label if label is not None else ("loss", "CrossEntropyLoss")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except DataDependentOutputException:  # the optimizer's step count .item(): assume 1
            self.assumed.append(f"{func} -> 1")
            return 1
        if (self._phase is None or not isinstance(func, torch._ops.OpOverload) or op_info(func).dropped
                or func.namespace in _NOT_KERNELS):
            return out
        path, mtype = self._where(args)
        ids = self.b.add_op(func, tuple(self._ref(a) for a in args),
                            {k: self._ref(v) for k, v in kwargs.items()}, out, path, mtype)
        self._remember(out, ids)
        return out

    def _remember(self, out: Any, ids: Any) -> None:
        if isinstance(out, torch.Tensor):
            # a weak reference: holding every tensor would make AccumulateGrad copy gradients
            # it steals in a real run (it checks the reference count)
            self.ids[id(out)] = (ids, weakref.ref(out))
        elif isinstance(out, (list, tuple)) and isinstance(ids, list):
            for o, i in zip(out, ids, strict=True):
                self._remember(o, i)
