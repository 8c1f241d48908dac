"""Memory as an answer: weights, peak live activations (liveness), workspace, the fit check.

Liveness walks the ops in execution order. A storage (a tensor and every view of it, via
``alias_of``) is allocated when the op producing it runs and freed after the last op that reads
it, or any view of it; graph outputs live to the end. Inputs other than weights (token ids, a
KV cache) are counted apart by the caller; weights, buffers and constants are resident and
counted as weights. Bytes are per dtype, floating tensors restated at ``precision`` when given
(as mapping restates traffic). The peak is the largest sum of live storages at any op: what an
allocator that frees eagerly (PyTorch's caching allocator in inference) must hold at once.

Workspace is what the runtime holds besides tensors. On a GPU it is the CUDA context,
cuBLAS / cuDNN workspaces and allocator fragmentation: ``GPU_WORKSPACE_BYTES`` = 1 GiB,
estimated (the CUDA context of recent drivers alone takes 300-600 MB; serving engines reserve
5-10 % of the device); on a CPU the process's own memory is not counted (0).

>>> from dnnmap.ir import DType, Graph, Op, OpClass, Role, Tensor
>>> t = {"x": Tensor("x", (4,), DType.FLOAT32, Role.INPUT),
...      "a": Tensor("a", (4,), DType.FLOAT32, Role.ACTIVATION, producer="op0"),
...      "b": Tensor("b", (4,), DType.FLOAT32, Role.OUTPUT, producer="op1")}
>>> g = Graph("g", t, (Op("op0", "aten.relu.default", OpClass.ELEMENTWISE, ("x",), ("a",)),
...                    Op("op1", "aten.relu.default", OpClass.ELEMENTWISE, ("a",), ("b",))))
>>> live_bytes(g), peak_activation_bytes(g)
([32, 32], 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dnnmap.hardware.schema import HardwareProfile, Precision
from dnnmap.ir import Graph, Tensor

GPU_WORKSPACE_BYTES = 1 << 30  # estimated: CUDA context + library workspaces + fragmentation
GIB = 1 << 30


def _bytes(t: Tensor, precision: Precision | None) -> int:
    if precision is None or not t.dtype.is_floating:
        return t.nbytes
    return t.numel * precision.bytes_per_element


def _root(g: Graph, tid: str) -> str:
    seen = {tid}
    t = g.tensors[tid]
    while t.alias_of is not None and t.alias_of in g.tensors and t.alias_of not in seen:
        t = g.tensors[t.alias_of]
        seen.add(t.id)
    return t.id


def live_bytes(g: Graph, precision: Precision | None = None, exclude: Sequence[str] = ()) -> list[int]:
    """Bytes of activation storages live while each op runs (inputs and outputs of the op
    included), in op order. Static tensors, and the ids in ``exclude`` (with their views), are
    not counted."""
    skip = set(exclude)
    root = {tid: _root(g, tid) for tid in g.tensors}
    last: dict[str, int] = {}
    for i, op in enumerate(g.ops):
        for tid in (*op.inputs, *op.outputs):
            last[root[tid]] = i
    for tid in g.outputs:
        last[root[tid]] = len(g.ops)
    counted = {r for r in set(root.values())
               if r not in skip and not g.tensors[r].is_static}
    free_at: dict[int, list[str]] = {}
    for r, i in last.items():
        if r in counted:
            free_at.setdefault(i, []).append(r)
    live = sum(_bytes(g.tensors[r], precision) for r in counted if g.tensors[r].producer is None)
    allocated: set[str] = set()
    out = []
    for i, op in enumerate(g.ops):
        for tid in op.outputs:
            r = root[tid]
            if r in counted and r not in allocated and g.tensors[r].producer is not None:
                allocated.add(r)
                live += _bytes(g.tensors[r], precision)
        out.append(live)
        for r in free_at.get(i, ()):
            if r in allocated or g.tensors[r].producer is None:
                live -= _bytes(g.tensors[r], precision)
    return out


def peak_activation_bytes(g: Graph, precision: Precision | None = None, exclude: Sequence[str] = ()) -> int:
    """The largest :func:`live_bytes` over the graph (0 for a graph without ops)."""
    return max(live_bytes(g, precision, exclude), default=0)


def weight_bytes(g: Graph, precision: Precision | None = None) -> int:
    """Resident bytes: parameters, buffers and constants (each storage once)."""
    roots = {_root(g, t.id) for t in g.tensors.values() if t.is_static}
    return sum(_bytes(g.tensors[r], precision) for r in roots)


def capacity_bytes(profile: HardwareProfile) -> int:
    """The device's main memory (its DRAM / HBM level, all instances)."""
    return int(profile.dram.total_bytes)


def workspace_bytes(profile: HardwareProfile) -> int:
    return GPU_WORKSPACE_BYTES if profile.gpu is not None else 0


@dataclass(frozen=True)
class MemoryFit:
    """Bytes a run needs on one device, by kind, and whether they fit."""

    weights: int
    activations: int  # peak live activation bytes
    kv_cache: int = 0
    workspace: int = 0
    capacity: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.kv_cache + self.workspace

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    @property
    def devices_needed(self) -> int:
        """Devices of this capacity whose memory adds up to the need (ceil; ignores sharding overheads)."""
        return -(-self.total // self.capacity) if self.capacity else 0

    def describe(self) -> str:
        """One line: ``needs 158.2 GB (weights 141.1, ...), the device has 24.0 GB``."""
        parts = [f"weights {self.weights / 1e9:.1f}", f"activations {self.activations / 1e9:.2f}"]
        if self.kv_cache:
            parts.append(f"KV cache {self.kv_cache / 1e9:.2f}")
        if self.workspace:
            parts.append(f"workspace {self.workspace / 1e9:.1f}")
        return (f"needs {self.total / 1e9:.1f} GB ({', '.join(parts)}), the device has "
                f"{self.capacity / 1e9:.1f} GB")

    def to_dict(self) -> dict[str, int | bool]:
        return {"weights_bytes": self.weights, "activation_bytes": self.activations,
                "kv_cache_bytes": self.kv_cache, "workspace_bytes": self.workspace,
                "memory_bytes": self.total, "capacity_bytes": self.capacity, "fits": self.fits}


def fit_of(g: Graph, profile: HardwareProfile, precision: Precision | None = None) -> MemoryFit:
    """Weights + peak live activations + workspace of one graph against ``profile``'s memory.

    A KV cache passed in as graph inputs (``meta["kv_cache"]``) is counted as the KV cache."""
    kv = [tid for tid, _ in g.meta.get("kv_cache", ())]
    kv_bytes = sum(_bytes(g.tensors[t], precision) for t in kv if t in g.tensors)
    return MemoryFit(weights=weight_bytes(g, precision), activations=peak_activation_bytes(g, precision, kv),
                     kv_cache=kv_bytes, workspace=workspace_bytes(profile), capacity=capacity_bytes(profile))
