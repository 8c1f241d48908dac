"""Proposals: which groups *might* become one kernel. Nothing here decides or merges; each
proposal goes through :meth:`Fuser.propose` (decision + legality).

Pattern finders work on the op graph (indices into ``graph.ops``) and return op groups;
pair finders work on the current grouping and return scored pairs.

>>> from dnnmap.fusion.kinds import GraphIndex
>>> from dnnmap.fusion.toy import attention_block
>>> idx = GraphIndex(attention_block())
>>> [[idx.graph.ops[i].target.split(".")[1] for i in grp] for grp in attention_cores(idx)]
[['matmul', 'div', '_softmax', 'matmul']]
"""

from __future__ import annotations

from dnnmap.fusion.decide import Pattern, Relation
from dnnmap.fusion.fuser import Fuser
from dnnmap.fusion.kinds import FusionKind, GraphIndex, is_global_pool
from dnnmap.ir import OpClass
from dnnmap.ir.classify import op_name

_PASS_THROUGH = (FusionKind.POINTWISE,)
_GATES = frozenset({"sigmoid", "hardsigmoid", "sigmoid_", "hardsigmoid_"})


# -- views -----------------------------------------------------------------------------------------
def attach_views(f: Fuser) -> None:
    """Views are metadata: they take part in no fusion decision (the op graph's edges run
    from the writer of a storage to its readers) and at the end each joins a kernel: the one
    all its readers are in, else the one writing its storage, else its first reader's.
    Where a view goes changes no byte: reads resolve to the storage underneath."""
    idx, st, g = f.index, f.state, f.index.graph
    for i in reversed([i for i, k in enumerate(idx.kinds) if k is FusionKind.VIEW]):
        op = g.ops[i]
        readers = sorted({st.find(idx.pos[c.id]) for t in op.outputs for c in g.consumers(t)},
                         key=lambda r: st.pos[r])
        writer = g.tensors[idx.storage[op.inputs[0]]].producer if op.inputs else None
        if len(readers) == 1:
            target = readers[0]
        elif writer is not None:
            target = st.find(idx.pos[writer])
        elif readers:
            target = readers[0]
        else:
            continue
        f.attach(i, target)


# -- patterns on the op graph ---------------------------------------------------------------------------
def _main_neighbour(idx: GraphIndex, cur: int, forward: bool) -> int | None:
    """Forward: the single consumer. Backward: the producer of the largest input (a mask or
    a scale is a side input; the scores are the main one)."""
    if forward:
        nxt = idx.succs[cur]
        return nxt[0] if len(nxt) == 1 else None
    g = idx.graph
    best, best_bytes = None, -1
    for t in g.ops[cur].inputs:
        s = g.tensors[idx.storage[t]]
        if s.producer is not None and g.tensors[t].nbytes > best_bytes:
            best, best_bytes = idx.pos[s.producer], g.tensors[t].nbytes
    return best


def _single_consumer_chain(idx: GraphIndex, start: int, forward: bool, stop) -> list[int]:  # noqa: ANN001
    """Ops met walking from ``start`` through single-consumer pointwise ops (views carry no
    edges, they are walked through) until ``stop(op_index)`` holds (that op included); [] if
    the walk leaves the pattern."""
    chain: list[int] = []
    cur = start
    for _ in range(16):  # attention / SE chains are short
        nxt = _main_neighbour(idx, cur, forward)
        if nxt is None or (not forward and len(idx.succs[nxt]) != 1):
            return []
        cur = nxt
        if stop(cur):
            return [*chain, cur]
        if idx.kinds[cur] not in _PASS_THROUGH:
            return []
        chain.append(cur)
    return []


def _activation_gemm(idx: GraphIndex, i: int) -> bool:
    """A matmul of two activations (QK^T or P.V), not a linear layer."""
    op = idx.graph.ops[i]
    return op.op_class is OpClass.MATMUL and not any(
        idx.is_static_storage(idx.storage[t]) for t in op.inputs
    )


def attention_cores(idx: GraphIndex) -> list[list[int]]:
    """Decomposed attention: matmul(q, k^T) -> pointwise (scale, mask) -> softmax ->
    (dropout, views) -> matmul(., v), found around each softmax. (A fused SDPA op is one
    op already; its pointwise neighbours join it as epilogues.)"""
    groups = []
    for s, op in enumerate(idx.graph.ops):
        if op.op_class is not OpClass.SOFTMAX:
            continue
        back = _single_consumer_chain(idx, s, False, lambda i: _activation_gemm(idx, i))
        fwd = _single_consumer_chain(idx, s, True, lambda i: _activation_gemm(idx, i))
        if back and fwd:
            groups.append(sorted({*back, s, *fwd}))
    return groups


def squeeze_excite(idx: GraphIndex) -> list[list[int]]:
    """SE blocks: global pool -> GEMM/conv -> act -> GEMM/conv -> sigmoid, whose result gates
    (multiplies) the pool's own input. The gate multiply stays outside (it streams the
    full feature map again, after the whole channel vector is known)."""
    groups = []
    st = idx.storage
    for p, op in enumerate(idx.graph.ops):
        if not is_global_pool(op, idx.graph):
            continue
        chain, cur = [p], p
        while len(chain) < 12:
            nxt = idx.succs[cur]
            if len(nxt) != 1 or idx.kinds[nxt[0]] not in (*_PASS_THROUGH, FusionKind.TEMPLATE):
                break
            cur = nxt[0]
            chain.append(cur)
            if op_name(idx.graph.ops[cur].target) in _GATES:
                break
        gate = idx.graph.ops[cur]
        if op_name(gate.target) not in _GATES or not any(idx.kinds[i] is FusionKind.TEMPLATE for i in chain):
            continue
        x = st[op.inputs[0]]
        users = idx.succs[cur]
        if users and all(x in {st[t] for t in idx.graph.ops[u].inputs} for u in users):
            groups.append(chain)
    return groups


def horizontal_gemms(idx: GraphIndex, static_gemms: frozenset[int]) -> list[list[int]]:
    """Weight GEMMs reading the same activation storage (Q/K/V, gate/up projections)."""
    by_input: dict[str, list[int]] = {}
    st = idx.storage
    for i in sorted(static_gemms):
        for t in idx.graph.ops[i].inputs:
            s = st[t]
            if not idx.is_static_storage(s):
                by_input.setdefault(s, []).append(i)
                break
    return [ops for ops in by_input.values() if len(ops) >= 2]


def apply_group(f: Fuser, ops: list[int], pattern: Pattern, relation: Relation) -> bool:
    """Propose the members of one pattern group to each other, in execution order."""
    ok = True
    for i in ops[1:]:
        ok = bool(f.propose(ops[0], i, relation, pattern)) and ok
    return ok


# -- pairs on the grouping ----------------------------------------------------------------------------------
def vertical_pairs(f: Fuser) -> list[tuple[int, int]]:
    """Producer -> consumer group pairs, most shared bytes first (Inductor's score: memory
    traffic saved), then in execution order."""
    st, g = f.state, f.index.graph
    reads: dict[int, set[str]] = {}
    produced: dict[int, set[str]] = {}
    for r in st.roots():
        reads[r], produced[r] = f.storages(r)
    scored = []
    for a in st.roots():
        for b in st.succ[a]:
            shared = sum(g.tensors[s].nbytes for s in produced[a] & reads[b])
            scored.append((-shared, st.pos[a], st.pos[b], a, b))
    scored.sort()
    return [(a, b) for *_, a, b in scored]


def fuse_pairs(f: Fuser) -> None:
    """Rounds of pairwise vertical fusion until nothing changes (at most ``max_rounds``)."""
    for _ in range(f.config.max_rounds):
        merged = 0
        for a, b in vertical_pairs(f):
            ra, rb = f.state.find(a), f.state.find(b)
            if ra == rb or rb not in f.state.succ[ra]:
                continue
            merged += bool(f.propose(ra, rb, Relation.VERTICAL))
        if not merged:
            return


def greedy_chains(f: Fuser) -> None:
    """The classic walk: from each group in topological order, absorb the single consumer
    while the decision allows (forks, joins, non-followers and the budget stop it)."""
    st = f.state
    for r in st.roots():
        if st.find(r) != r:
            continue
        cur = r
        while len(st.succ[cur]) == 1:
            (nxt,) = st.succ[cur]
            if not f.propose(cur, nxt, Relation.VERTICAL):
                break
            cur = st.find(cur)


def fold_dead(f: Fuser) -> None:
    """Groups whose results nobody reads (and the model does not return) launch nothing in a
    compiled model; they join a producer (or the previous kernel) so every op is still counted.
    (Views, still unattached here, are not groups of their own.)"""
    st, idx = f.state, f.index
    g, storage = idx.graph, idx.storage
    roots = [r for r in st.roots() if any(idx.kinds[i] is not FusionKind.VIEW for i in st.members[r])]
    for k, r in enumerate(roots):
        if st.find(r) != r or st.succ[r]:
            continue
        if any(storage[t] in idx.output_storages for i in st.members[r] for t in g.ops[i].outputs):
            continue
        near = sorted(st.pred[r], key=lambda p: -st.pos[p]) + roots[max(k - 1, 0) : k] + roots[k + 1 : k + 2]
        for other in near:
            if f.propose(other, r, Relation.VERTICAL, Pattern.DEAD_CODE):
                break
