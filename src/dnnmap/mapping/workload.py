"""A subgraph's work restated at the estimate's precision: what the mappers consume.

Precision choice (documented): the graph is captured once (normally fp32) and each
subgraph's bytes are **rescaled**, tensor by tensor, from the captured element size to the
requested one. Only floating-point tensors change size; integer tensors (token ids, indices)
keep theirs. FLOP counts do not depend on precision. Re-capturing at another dtype would give
the same bytes for the models dnnmap ships, at several seconds per capture; rescaling takes
microseconds and lets ``compare`` share one capture.

>>> from dnnmap.hardware.schema import Precision
>>> _scaled(1000, 4, Precision.BF16)   # 1000 fp32 bytes -> 250 elements x 2 bytes
500
"""

from __future__ import annotations

from dataclasses import dataclass

from dnnmap.fusion.partition import Parallelism, Partition, Subgraph
from dnnmap.hardware.schema import Precision
from dnnmap.ir import Graph, Op, OpClass


@dataclass(frozen=True, slots=True)
class Work:
    """One subgraph's counts at the estimate's precision."""

    subgraph_id: int
    name: str
    op_class: OpClass
    tensor_flops: int  # GEMM / conv / attention FLOPs
    vector_flops: int  # elementwise, reduction, normalization ... (includes transcendentals)
    transcendentals: int
    activation_read_bytes: int  # boundary activations read (not weights)
    weight_bytes: int  # weights / buffers / constants read
    write_bytes: int  # boundary outputs written
    internal_bytes: int  # produced and consumed inside (on chip when it fits)
    parallelism: Parallelism
    gemm_like: bool  # a dense GEMM view exists (not depthwise): tensor-core / MXU eligible
    pointwise: bool = False  # dominant op is a 1x1 convolution
    # (added for calibrated mapping) the dominant op's ATen name ("max_pool2d"), and how many
    # ATen calls run the subgraph eagerly: every op of an unfused subgraph (its folded views
    # included) is dispatched on its own; a fused kernel is one launch
    op_name: str = ""
    dispatches: int = 1
    # eager module structure (unfused partitions only): whether the dominant op is the whole
    # forward of a leaf module (nn.Conv2d -> conv2d), and how many module levels the
    # subgraph's ops enter (each nn.Module.__call__ costs Python time in eager mode)
    leaf_module: bool = False
    module_entries: int = 0
    # the dominant op writes into its input (``copy_``, ``index_copy_``, ``relu_``): it
    # allocates no output (``op_name`` carries the out-of-place name, for the rate tables)
    inplace: bool = False
    # activation tensors read / written, (tensor id, bytes at the precision), for the L2
    # residency pass (mapping/residency.py)
    reads: tuple[tuple[str, int], ...] = ()
    writes: tuple[tuple[str, int], ...] = ()

    @property
    def flops(self) -> int:
        return self.tensor_flops + self.vector_flops

    @property
    def external_bytes(self) -> int:
        return self.activation_read_bytes + self.weight_bytes + self.write_bytes

    @property
    def working_set_bytes(self) -> int:
        return self.external_bytes + self.internal_bytes


def _scaled(nbytes: int, itemsize: int, precision: Precision) -> int:
    """``nbytes`` of a floating tensor stored with ``itemsize`` bytes, restated at ``precision``."""
    return nbytes // itemsize * precision.bytes_per_element


def _storages(graph: Graph, tensor_ids: tuple[str, ...], precision: Precision, static: bool | None):  # noqa: ANN202
    """(storage id, captured bytes, bytes at ``precision``) of each distinct storage behind
    ``tensor_ids`` (views resolved); ``static`` selects weights (True), activations (False) or all."""
    seen: set[str] = set()
    for tid in tensor_ids:
        t = graph.tensors.get(tid)
        if t is None:
            continue
        if t.alias_of and t.alias_of in graph.tensors:
            t = graph.tensors[t.alias_of]
        if t.id in seen or (static is not None and t.is_static != static):
            continue
        seen.add(t.id)
        yield t.id, t.nbytes, _scaled(t.nbytes, t.dtype.itemsize, precision) if t.dtype.is_floating else t.nbytes


def _ratio(graph: Graph, tensor_ids: tuple[str, ...], precision: Precision, static: bool | None) -> float:
    """Bytes at ``precision`` / captured bytes over ``tensor_ids`` (views resolved to storage)."""
    pairs = [(old, new) for _, old, new in _storages(graph, tensor_ids, precision, static)]
    old = sum(o for o, _ in pairs)
    return sum(n for _, n in pairs) / old if old else 1.0


def _tensor_bytes(graph: Graph, tensor_ids: tuple[str, ...], precision: Precision) -> tuple[tuple[str, int], ...]:
    """(storage id, bytes at ``precision``) of the activation tensors among ``tensor_ids``."""
    return tuple((sid, new) for sid, _, new in _storages(graph, tensor_ids, precision, static=False))


def work_of(graph: Graph, sg: Subgraph, precision: Precision, eager: bool = False,
            calls: ModuleCalls | None = None) -> Work:
    """Restate ``sg`` at ``precision`` (the partition's byte counts scaled tensor by tensor)."""
    act_read = sg.external_bytes_read - sg.weight_bytes
    r_act = _ratio(graph, sg.inputs, precision, static=False)
    r_w = _ratio(graph, sg.inputs, precision, static=True)
    r_out = _ratio(graph, sg.outputs, precision, static=None)
    r_int = _ratio(graph, sg.internal, precision, static=None)
    p = sg.parallelism
    gemm_like = (
        sg.op_class.is_tensor_core
        and not p.depthwise
        and min(p.gemm_m, p.gemm_n, p.gemm_k) > 0
        and sg.cost.tensor_flops > 0
    )
    return Work(
        subgraph_id=sg.id,
        name=sg.name,
        op_class=sg.op_class,
        tensor_flops=sg.cost.tensor_flops,
        vector_flops=sg.cost.vector_flops,
        transcendentals=sg.cost.transcendentals,
        activation_read_bytes=round(act_read * r_act),
        weight_bytes=round(sg.weight_bytes * r_w),
        write_bytes=round(sg.external_bytes_written * r_out),
        internal_bytes=round(sg.internal_bytes * r_int),
        parallelism=p,
        gemm_like=gemm_like,
        pointwise=sg.op_class is OpClass.CONV and _is_pointwise(graph, sg),
        op_name=_dominant_name(graph, sg),
        inplace=_dominant_inplace(graph, sg),
        dispatches=len(sg.op_ids) if eager else 1,
        leaf_module=bool(calls and calls.is_leaf_op(graph, sg)),
        module_entries=sum(calls.entries.get(o, 0) for o in sg.op_ids) if calls else 0,
        reads=_tensor_bytes(graph, sg.inputs, precision),
        writes=_tensor_bytes(graph, sg.outputs, precision),
    )


@dataclass(frozen=True)
class ModuleCalls:
    """Eager module structure read off the ops' module paths, in execution order.

    ``entries[op]``: module levels entered just before ``op`` runs (path ``a.b.c`` after
    ``a.x`` enters ``a.b`` and ``a.b.c``: 2). ``leaves``: paths no other op's path extends
    (a leaf module: its forward is its own ops)."""

    entries: dict[str, int]
    leaves: frozenset[str]

    @classmethod
    def of(cls, graph: Graph) -> ModuleCalls:
        entries: dict[str, int] = {}
        prev: list[str] = []
        paths = {op.module_path for op in graph.ops}
        inner = _prefixes(paths)
        for op in graph.ops:
            cur = op.module_path.split(".") if op.module_path else []
            common = next((i for i, (a, b) in enumerate(zip(prev, cur, strict=False)) if a != b), min(len(prev), len(cur)))
            entries[op.id] = len(cur) - common
            prev = cur
        return cls(entries, frozenset(p for p in paths if p and p not in inner))

    def is_leaf_op(self, graph: Graph, sg: Subgraph) -> bool:
        main = _dominant_op(graph, sg)
        return main is not None and main.module_path in self.leaves


def _prefixes(paths: set[str]) -> set[str]:
    """Every proper prefix path of the given paths: ``{"a.b.c"} -> {"a", "a.b"}``."""
    out: set[str] = set()
    for p in paths:
        parts = p.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def _dominant_op(graph: Graph, sg: Subgraph) -> Op | None:
    """The first op of the subgraph's dominant class (None if none has it)."""
    return next((graph.op(o) for o in sg.op_ids if graph.op(o).op_class is sg.op_class), None)


def _dominant_name(graph: Graph, sg: Subgraph) -> str:
    """ATen name (no namespace / overload) of the first op of the subgraph's dominant class."""
    from dnnmap.ir.classify import inplace_base, op_name

    main = _dominant_op(graph, sg)
    if main is None:
        return ""
    name = op_name(main.target)
    return inplace_base(name) or name  # relu_ costs what relu costs


def _dominant_inplace(graph: Graph, sg: Subgraph) -> bool:
    """Whether the first op of the subgraph's dominant class writes into its input."""
    from dnnmap.ir.classify import inplace_base, op_name

    main = _dominant_op(graph, sg)
    return main is not None and inplace_base(op_name(main.target)) is not None


def _is_pointwise(graph: Graph, sg: Subgraph) -> bool:
    """Whether the subgraph's (first) convolution has a 1 x 1 kernel."""
    for oid in sg.op_ids:
        try:
            op = graph.op(oid)
        except KeyError:
            continue
        if op.op_class is not OpClass.CONV:
            continue
        w = op.arg("weight") or list(op.inputs[1:2])
        if w and w[0] in graph.tensors:
            return all(d == 1 for d in graph.tensors[w[0]].shape[2:])
    return False


def workload(partition: Partition, precision: Precision) -> tuple[Work, ...]:
    """Every subgraph of ``partition`` restated at ``precision``, in partition order."""
    eager = partition.strategy.value == "unfused"
    calls = ModuleCalls.of(partition.graph) if eager else None
    return tuple(work_of(partition.graph, sg, precision, eager, calls) for sg in partition.subgraphs)
