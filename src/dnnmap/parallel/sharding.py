"""Megatron tensor parallelism applied to the captured graph's work.

Megatron-LM splits each attention block (Q/K/V column-parallel, heads split, output
projection row-parallel) and each MLP (first linear column-parallel, second row-parallel)
over ``tp`` devices, and the vocabulary of the embedding, the output layer and the
cross-entropy. Every op inside those regions then does ``1/tp`` of its work on each device:
its FLOPs and bytes divide by ``tp`` and its GEMM view loses ``tp`` from the split
dimension (heads for attention, the larger of N and K for a GEMM — N of a column-parallel
linear, K of a row-parallel one). Norms, residual adds and everything outside stay whole.

A block (attention or MLP) needs one all-reduce of its ``[batch, seq, hidden]`` output in
forward (after the row-parallel linear) and one of its input gradient in backward (before
the column-parallel linear): a transformer layer, two of each.

>>> from dnnmap.ir import Op, OpClass
>>> is_tp_sharded(Op("op0", "aten.addmm.default", OpClass.MATMUL, (), (), "transformer.h.0.mlp.c_fc"))
True
>>> is_tp_sharded(Op("op1", "aten.native_layer_norm.default", OpClass.NORMALIZATION, (), (), "transformer.h.0.ln_1"))
False
"""

from __future__ import annotations

import re
from dataclasses import replace

from dnnmap.fusion.partition import Partition
from dnnmap.ir import Op, OpClass

TP_BLOCKS = re.compile(r"(^|\.)(attn|attention|self_attn|self_attention|mlp|feed_forward|ffn|intermediate|experts|"
                       r"block_sparse_moe|lm_head|wte|embed_tokens|word_embeddings|loss)(\.|$)")
FORWARD_ALL_REDUCES_PER_LAYER = 2  # attention + MLP (Megatron-LM, Shoeybi et al. 2019, section 3)
BACKWARD_ALL_REDUCES_PER_LAYER = 2


def is_tp_sharded(op: Op) -> bool:
    return op.op_class is not OpClass.NORMALIZATION and bool(TP_BLOCKS.search(op.module_path))


def is_tp_param(name: str) -> bool:
    return bool(TP_BLOCKS.search(name.rpartition(".")[0])) and not re.search(r"(norm|ln_|layernorm)", name, re.I)


def _split(p, op_class: OpClass, tp: int):  # noqa: ANN001, ANN202 - fusion.Parallelism
    if op_class is OpClass.ATTENTION and p.gemm_batch >= tp:
        return replace(p, gemm_batch=p.gemm_batch // tp, heads=max(p.heads // tp, 1))
    if p.gemm_n >= p.gemm_k and p.gemm_n >= tp:
        return replace(p, gemm_n=p.gemm_n // tp, output_elements=max(p.output_elements // tp, 1))
    if p.gemm_k >= tp:
        return replace(p, gemm_k=p.gemm_k // tp)
    return replace(p, output_elements=max(p.output_elements // tp, 1))


def shard_works(partition: Partition, works: tuple, tp: int) -> tuple:
    """The works of ``partition`` on one of ``tp`` tensor-parallel devices."""
    if tp <= 1:
        return works
    g = partition.graph
    out = []
    for sg, w in zip(partition.subgraphs, works, strict=True):
        ops = [g.op(o) for o in sg.op_ids]
        if not ops or not all(is_tp_sharded(op) for op in ops if op.op_class is not OpClass.VIEW):
            out.append(w)
            continue
        out.append(replace(
            w, tensor_flops=w.tensor_flops // tp, vector_flops=w.vector_flops // tp,
            transcendentals=w.transcendentals // tp, activation_read_bytes=w.activation_read_bytes // tp,
            weight_bytes=w.weight_bytes // tp, write_bytes=w.write_bytes // tp, internal_bytes=w.internal_bytes // tp,
            parallelism=_split(w.parallelism, w.op_class, tp),
            reads=tuple((t, b // tp) for t, b in w.reads), writes=tuple((t, b // tp) for t, b in w.writes),
        ))
    return tuple(out)
