"""Weight and cache storage that differs from the compute precision; experts a batch reaches.

Applied to a partition's :class:`~dnnmap.mapping.workload.Work` (already at the compute
precision ``--precision``), subgraph by subgraph, before mapping:

- **Quantized weights** (``int8`` / ``int4`` / ``fp8``, weight-only, as AWQ / GPTQ / Marlin /
  FP8 checkpoints run): every weight a matmul reads (``linear``, ``mm``, grouped expert
  matmuls) except vocabulary-sized ones (embedding, output head: kept at the compute precision,
  as those toolkits do) is stored as

  - ``int8``: 1 byte per element + one fp16 scale per output row (``rows x 2`` bytes);
  - ``int4``: 1/2 byte per element + one fp16 scale per group of ``group_size`` elements along
    the reduction (last) dimension: ``rows x ceil(K / group_size) x 2`` bytes;
  - ``fp8``: 1 byte per element + one fp32 scale per tensor (4 bytes).

  The matmul still runs at the compute precision: the kernel dequantizes in registers, which
  costs ``DEQUANT_FLOPS_PER_ELEMENT`` = 2 vector operations per weight element read (convert,
  multiply by the scale), counted in the same kernel.
- **KV cache dtype** (``fp16`` / ``bf16`` / ``fp8`` / ``fp32``): the cache inputs and the cache
  tensors written from them (``cat`` / ``index_copy_`` results) are read and written at that size.
- **Mixture of experts**: a grouped expert matmul over ``S`` routed rows (``T = S / k`` tokens,
  top-``k`` of ``E`` experts) reads only the experts some token is routed to. With routing
  independent and uniform, the expected number of distinct experts is
  ``E * (1 - (1 - k/E) ** T)`` (each expert is missed by one token with probability
  ``1 - k/E``). Dropless dispatch (grouped GEMM over exactly ``S`` rows, as Hugging Face,
  vLLM and SGLang run it) is the default; a ``capacity_factor`` ``c`` instead pads every
  expert to ``C = ceil(c * T * k / E)`` rows (GShard / Switch dispatch): ``E * C`` rows computed.

>>> round(expected_experts(8, 2, 1), 3), round(expected_experts(8, 2, 64), 3)
(2.0, 8.0)
>>> quantized_bytes((4096, 4096), "int4", 128) == 4096 * 4096 // 2 + 4096 * (4096 // 128) * 2
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from dnnmap.errors import DnnmapError
from dnnmap.fusion.partition import Partition, Subgraph
from dnnmap.hardware.schema import Precision
from dnnmap.ir import Graph, OpClass
from dnnmap.mapping.moe import expert_weight_ids, is_grouped_matmul
from dnnmap.mapping.moe import root as _root
from dnnmap.mapping.workload import Work

WEIGHT_FORMATS = ("int8", "int4", "fp8")
KV_DTYPES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}
DEQUANT_FLOPS_PER_ELEMENT = 2  # convert to the compute type + multiply by the scale


@dataclass(frozen=True)
class Storage:
    """How weights and the KV cache are stored, and how experts are dispatched."""

    weights: str | None = None  # None: at the compute precision
    group_size: int = 128
    kv_dtype: str | None = None  # None: at the compute precision
    capacity_factor: float | None = None  # None: dropless grouped GEMM
    expert_parallel: int = 1  # experts split over this many devices, each receiving the tokens of as many

    def __post_init__(self) -> None:
        if self.weights is not None and self.weights not in WEIGHT_FORMATS:
            raise DnnmapError(f"--weights must be one of {', '.join(WEIGHT_FORMATS)}, not {self.weights!r}")
        if self.kv_dtype is not None and self.kv_dtype not in KV_DTYPES:
            raise DnnmapError(f"--kv-dtype must be one of {', '.join(KV_DTYPES)}, not {self.kv_dtype!r}")
        if self.group_size < 1:
            raise DnnmapError(f"--group-size must be >= 1, got {self.group_size}")
        if self.capacity_factor is not None and not self.capacity_factor > 0:
            raise DnnmapError(f"capacity factor must be > 0, got {self.capacity_factor}")

    @property
    def is_default(self) -> bool:
        return (self.weights is None and self.kv_dtype is None and self.capacity_factor is None
                and self.expert_parallel == 1)

    def kv_itemsize(self, precision: Precision) -> int:
        return KV_DTYPES[self.kv_dtype] if self.kv_dtype else precision.bytes_per_element


def expected_experts(experts: int, top_k: int, tokens: float) -> float:
    """Distinct experts ``tokens`` tokens reach with uniform top-``top_k`` routing."""
    if tokens <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


def quantized_bytes(shape: Sequence[int], fmt: str, group_size: int = 128) -> int:
    """Stored bytes of one weight of ``shape`` in ``fmt`` (scales included; see the module doc)."""
    numel = math.prod(shape)
    k = shape[-1] if shape else 1
    rows = numel // k if k else 0
    if fmt == "int8":
        return numel + rows * 2
    if fmt == "int4":
        return -(-numel // 2) + rows * -(-k // group_size) * 2
    if fmt == "fp8":
        return numel + 4
    raise DnnmapError(f"unknown weight format {fmt!r}")


def quantizable(g: Graph) -> set[str]:
    """Weights a matmul reads, except vocabulary-sized ones (see the module doc)."""
    vocab = g.meta.get("vocab_size") or next(
        (g.tensors[op.inputs[0]].shape[0] for op in g.ops if op.op_class is OpClass.EMBEDDING and op.inputs
         and len(g.tensors[op.inputs[0]].shape) == 2), None)
    out: set[str] = set()
    for op in g.ops:
        if op.op_class is not OpClass.MATMUL:
            continue
        for tid in op.inputs:
            w = _root(g, tid)
            if w.role.value == "weight" and len(w.shape) >= 2 and (vocab is None or vocab not in w.shape):
                out.add(w.id)
    return out


def resident_weight_bytes(g: Graph, precision: Precision, storage: Storage) -> int:
    """Bytes of every static tensor as stored (quantized ones in their format)."""
    quant = quantizable(g) if storage.weights else set()
    total = 0
    for t in g.tensors.values():
        if not t.is_static or (t.alias_of and t.alias_of in g.tensors):
            continue
        if t.id in quant:
            total += quantized_bytes(t.shape, storage.weights or "", storage.group_size)
        else:
            total += t.numel * precision.bytes_per_element if t.dtype.is_floating else t.nbytes
    return total


def kv_tensors(g: Graph) -> set[str]:
    """Cache inputs and the cache tensors written from them (cat / index_copy_ results)."""
    kv = {tid for tid, _ in g.meta.get("kv_cache", ())}
    for op in g.ops:
        if op.op_class in (OpClass.VIEW, OpClass.DATA_MOVEMENT) and any(_root(g, t).id in kv for t in op.inputs):
            kv.update(_root(g, t).id for t in op.outputs)
    return kv


def adjust(partition: Partition, works: Sequence[Work], precision: Precision, storage: Storage,
           moe: dict | None = None) -> tuple[Work, ...]:
    """``works`` with weight, KV and expert traffic as ``storage`` stores and routes them
    (``moe``: experts and top-k when the graph's meta does not say)."""
    g = partition.graph
    moe = moe or g.meta.get("moe")
    if storage.is_default and not moe:
        return tuple(works)
    quant = quantizable(g) if storage.weights else set()
    kv = kv_tensors(g) if storage.kv_dtype else set()
    by_id = {sg.id: sg for sg in partition.subgraphs}
    return tuple(_adjust_one(g, by_id[w.subgraph_id], w, precision, storage, quant, kv, moe) for w in works)


def _adjust_one(g: Graph, sg: Subgraph, w: Work, precision: Precision, storage: Storage, quant: set[str],
                kv: set[str], moe: dict | None) -> Work:
    p = precision.bytes_per_element
    weight_delta, dequant, flops_delta = 0, 0, 0
    reach = _expert_reach(g, sg, moe, storage) if moe else None
    seen: set[str] = set()
    for tid in sg.inputs:
        t = _root(g, tid)
        if t.id in seen or not t.is_static:
            continue
        seen.add(t.id)
        share = reach[0] if reach and t.id in reach[2] else 1.0
        full = t.numel * p if t.dtype.is_floating else t.nbytes
        stored = quantized_bytes(t.shape, storage.weights or "", storage.group_size) if t.id in quant else full
        weight_delta += round(stored * share) - full
        if t.id in quant:
            dequant += round(t.numel * share) * DEQUANT_FLOPS_PER_ELEMENT
    if reach:
        flops_delta = reach[1]
    kv_scale = storage.kv_itemsize(precision) / p
    read_kv = sum(b for tid, b in w.reads if tid in kv)
    write_kv = sum(b for tid, b in w.writes if tid in kv)
    return replace(
        w,
        weight_bytes=max(0, w.weight_bytes + weight_delta),
        vector_flops=w.vector_flops + dequant,
        tensor_flops=w.tensor_flops + flops_delta,
        activation_read_bytes=w.activation_read_bytes - read_kv + round(read_kv * kv_scale),
        write_bytes=w.write_bytes - write_kv + round(write_kv * kv_scale),
        reads=tuple((tid, round(b * kv_scale) if tid in kv else b) for tid, b in w.reads),
        writes=tuple((tid, round(b * kv_scale) if tid in kv else b) for tid, b in w.writes),
    )


def expert_weight_bytes(g: Graph, precision: Precision) -> int:
    """Bytes of the expert weights (:func:`dnnmap.mapping.moe.expert_weight_ids`: by parameter
    name, whichever kernel runs them), at ``precision``."""
    return sum(g.tensors[t].numel * precision.bytes_per_element for t in expert_weight_ids(g))


def _expert_reach(g: Graph, sg: Subgraph, moe: dict, storage: Storage) -> tuple[float, int, set[str]] | None:
    """(share of expert weights read, extra tensor FLOPs of capacity padding, expert weight ids)
    for the grouped expert matmuls in ``sg``; None when it has none."""
    experts, top_k = int(moe["experts"]), int(moe["top_k"])
    expert_ids = expert_weight_ids(g)
    share, extra, ids = None, 0, set()
    for oid in sg.op_ids:
        op = g.op(oid)
        # a grouped expert matmul, or an op reading a stacked expert weight (transformers' fp32 path)
        if len(op.inputs) < 2 or not (is_grouped_matmul(op.target) or _root(g, op.inputs[1]).id in expert_ids):
            continue
        x, w = g.tensors[op.inputs[0]], _root(g, op.inputs[1])
        rows = x.shape[0] if len(x.shape) == 2 else math.prod(x.shape[:-1])
        tokens = rows / top_k
        # expert parallelism: this device holds E / ep experts and serves the tokens of ep devices
        ep = storage.expert_parallel
        share = expected_experts(experts, top_k, tokens * ep) / experts / ep
        ids.add(w.id)
        if storage.capacity_factor is not None and rows:
            cap = math.ceil(storage.capacity_factor * tokens * top_k / experts)
            out = g.tensors[op.outputs[0]]
            flops = 2 * out.numel * x.shape[-1]
            extra += round(flops * (experts * cap / rows - 1))
    return None if share is None else (share, extra, ids)
