"""Fallback capture path: run the model eagerly and record every ATen call.

A ``TorchDispatchMode`` installed at the **PreDispatch** key (the key ``torch.export``
itself traces at) sees each ATen op as the model calls it, before autograd and before
composite ops such as ``aten.linear`` are decomposed; while it runs an op it is popped, so
the op's own decomposition is not recorded. It therefore records the same op set as the
export path. Tensors are identified by object: inputs, parameters and buffers are
numbered first, every op output gets a fresh id, and every tensor seen is kept alive until
the capture ends so ``id()`` values are never reused. An in-place op returns its input
object, which from then on names the op's output: reads after it depend on it.

Module attribution uses forward pre/post hooks that keep a module stack. Under fake tensors
data-dependent scalars (``if x.sum() > 0``, ``.item()``) have no value; the recorder answers
``True`` / ``1`` / ``1.0``, follows that branch, and lists each assumption in the graph's
``meta["assumed_values"]``. Ops whose output *shape* depends on data (``nonzero``) cannot
be run on fake tensors and raise :class:`~dnnmap.errors.CaptureError`.

>>> import torch
>>> from torch._subclasses.fake_tensor import FakeTensorMode
>>> with FakeTensorMode():
...     m, x = torch.nn.Linear(4, 2), torch.empty(3, 4)
>>> [op.target for op in capture_dispatch(m, (x,), "lin").ops]
['aten.linear.default']
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch._dispatch.python import enable_python_dispatcher
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensor
from torch._subclasses.schema_check_mode import SchemaCheckMode
from torch.utils._python_dispatch import TorchDispatchMode

from dnnmap.capture._build import GraphBuilder, Ref, op_info
from dnnmap.capture._diagnose import Failure, ModuleStack, raise_failure
from dnnmap.capture._model import module_constants, output_leaves, static_tensors
from dnnmap.ir import Graph, Role


def capture_dispatch(model: nn.Module, inputs: tuple, name: str) -> Graph:
    """Run ``model(*inputs)`` once under the recorder; errors become Dnnmap errors."""
    b, st = static_tensors(model, inputs, name)
    stack = ModuleStack(model)
    rec = _Recorder(b, st.by_object, module_constants(model), stack)
    fake_mode = _fake_mode_of(model, inputs)
    try:
        with stack, fake_mode or contextlib.nullcontext(), torch.no_grad(), _recording(rec):
            out = model(*inputs)
    except Exception as e:  # any failure: say which op and module
        raise_failure(rec.failure or Failure.outside_op(stack), e)
    outputs = [rec.tid(t) for t in output_leaves(out)]
    meta = {"assumed_values": tuple(rec.assumed)} if rec.assumed else {}
    return b.finish(st.inputs, outputs, meta)


@contextlib.contextmanager
def _recording(rec: TorchDispatchMode):
    # nn.MultiheadAttention's eval "fast path" runs one fused _native_multi_head_attention op
    # that hides the q/k/v/out projections inside attention; export never takes it, so the
    # recorder turns it off too and both paths see the same linear + sdpa ops.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with enable_python_dispatcher(), torch._C._EnablePreDispatch(), rec:
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _fake_mode_of(model: nn.Module, inputs: tuple) -> Any:
    for t in [*model.parameters(), *model.buffers(), *inputs]:
        if isinstance(t, FakeTensor):
            return t.fake_mode
    return None


_SCALAR_TYPES = frozenset({"bool", "int", "float", "Scalar", "number", "SymInt", "SymFloat", "SymBool"})


def _returns_scalar(func: Any) -> bool:
    """``item``, ``is_nonzero``, ``equal`` ...: one Python scalar out (which can be assumed)."""
    rets = getattr(func, "_schema", None) and func._schema.returns
    return bool(rets) and len(rets) == 1 and str(rets[0].type) in _SCALAR_TYPES


def _view_key(t: torch.Tensor) -> tuple:
    """What makes two tensor objects the same value: storage, offset, sizes, strides, dtype.

    Factory ops (``arange``, ``zeros`` ...) hand the caller a detached alias of the tensor the
    recorder saw: a new object on the same storage with the same view.
    """
    try:
        storage = t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # tensors without storage (some subclasses)
        return (id(t),)
    return (storage, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


# The PreDispatch mode slot accepts only a few mode classes (torch/_ops.py
# ``_set_mode_pre_dispatch``); SchemaCheckMode's slot is the one meant for eager,
# stand-alone observers, so the recorder takes that slot. Its checking code is not used.
class _Recorder(SchemaCheckMode):
    def __init__(self, b: GraphBuilder, ids: dict, constants: dict[int, str], stack: ModuleStack) -> None:
        TorchDispatchMode.__init__(self, _dispatch_key=torch._C.DispatchKey.PreDispatch)
        self.b, self.ids, self.constants, self.stack = b, ids, constants, stack
        self.by_view: dict[tuple, str] = {}  # storage + view metadata -> latest tensor id
        self.failure: Failure | None = None
        self.assumed: list[str] = []
        self._lifted = 0

    def tid(self, t: torch.Tensor) -> str:
        """The id of tensor ``t``; a tensor never seen before is a constant."""
        hit = self.ids.get(id(t))
        if hit is not None:
            return hit[0]
        known = self.by_view.get(_view_key(t))
        if known is not None:  # a new Python object for a tensor already seen
            self.ids[id(t)] = (known, t)
            return known
        name = self.constants.get(id(t))
        if name is None:
            name = f"lifted_tensor_{self._lifted}"
            self._lifted += 1
        tid = self.b.add_tensor(t, Role.CONSTANT, name)
        self.ids[id(t)] = (tid, t)
        return tid

    def _ref(self, a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return Ref(self.tid(a))
        if isinstance(a, (list, tuple)):
            return [self._ref(x) for x in a]
        return a

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except DataDependentOutputException as e:
            if not _returns_scalar(func):
                self.failure = self.failure or Failure.in_op(str(func), self.stack, args, e)
                raise
            out = self._assume(func, args)
        except Exception as e:
            if self.failure is None:
                self.failure = Failure.in_op(str(func), self.stack, args, e)
            raise
        if not isinstance(func, torch._ops.OpOverload) or op_info(func).dropped:
            return out
        path, mtype = self.stack.top()
        ids = self.b.add_op(func, tuple(self._ref(a) for a in args),
                            {k: self._ref(v) for k, v in kwargs.items()}, out, path, mtype)
        self._remember(out, ids)
        return out

    def _remember(self, out: Any, ids: Any) -> None:
        if isinstance(out, torch.Tensor):
            self.ids[id(out)] = (ids, out)
            self.by_view[_view_key(out)] = ids
        elif isinstance(out, (list, tuple)) and isinstance(ids, list):
            for o, i in zip(out, ids, strict=True):
                self._remember(o, i)

    def _assume(self, func: Any, args: tuple) -> Any:
        """A data-dependent scalar on fake tensors: answer True / 1 / 1.0 and note it."""
        kind = str(func._schema.returns[0].type)
        t = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if kind == "bool" or (t is not None and t.dtype == torch.bool):
            value: Any = True
        elif kind == "int" or (t is not None and not t.is_floating_point()):
            value = 1
        else:
            value = 1.0
        path, mtype = self.stack.top()
        self.assumed.append(f"{func} in '{path}' ({mtype}) -> {value}")
        return value
