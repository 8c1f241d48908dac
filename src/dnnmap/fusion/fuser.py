"""The fuser: asks :func:`should_fuse` about a proposed pair, applies it when legal, keeps
the log of reasons. It is also the decision's oracle (working sets, fan-in / fan-out).

>>> from dnnmap.fusion.kinds import GraphIndex
>>> from dnnmap.fusion.toy import residual_block
>>> f = Fuser(GraphIndex(residual_block()), Strategy.COMPILER)
>>> f.propose(0, 1, Relation.VERTICAL).reason   # conv1 -> bn1
'pointwise epilogue into the GEMM/conv'
"""

from __future__ import annotations

from collections import Counter

from dnnmap.fusion.decide import (
    FusionConfig,
    FusionContext,
    FusionDecision,
    GroupSummary,
    Pattern,
    Relation,
    should_fuse,
)
from dnnmap.fusion.groups import GroupState
from dnnmap.fusion.kinds import FusionKind, GraphIndex, is_row_wise, reduction_domain
from dnnmap.fusion.partition import Strategy
from dnnmap.ir import OpClass

_FOLLOWERS = (OpClass.ELEMENTWISE, OpClass.NORMALIZATION, OpClass.VIEW)


class Fuser:
    """Holds the grouping while a strategy runs; ``propose`` = decide + apply."""

    def __init__(self, index: GraphIndex, strategy: Strategy, config: FusionConfig | None = None,
                 onchip_budget_bytes: int | None = None) -> None:
        self.index = index
        self.state = GroupState(index)
        self.strategy = strategy
        self.config = config or FusionConfig()
        self.budget = onchip_budget_bytes
        self.fused: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._summary: dict[int, GroupSummary] = {}
        self.static_gemms = self._weight_gemms()
        # per op: storages it reads, storages it writes (a view writes none)
        self._op_storages = [
            (frozenset(index.storage[t] for t in op.inputs),
             frozenset() if k is FusionKind.VIEW else frozenset(index.storage[t] for t in op.outputs))
            for op, k in zip(index.graph.ops, index.kinds, strict=True)
        ]

    # -- propose = decide + apply ------------------------------------------------------------
    def propose(self, a: int, b: int, relation: Relation, pattern: Pattern | None = None) -> FusionDecision:
        """Fuse the groups of ops ``a`` and ``b`` if :func:`should_fuse` agrees and no cycle forms."""
        ra, rb = self.state.find(a), self.state.find(b)
        if ra == rb:
            return FusionDecision(True, "already one group")
        ctx = FusionContext(self.strategy, relation, pattern, self.config, self.budget, self)
        d = should_fuse(self.summary(ra), self.summary(rb), ctx)
        if d and not self.state.try_merge(ra, rb):
            d = FusionDecision(False, "would create a cycle through another kernel")
        (self.fused if d else self.refused)[d.reason] += 1
        if d:
            self._summary.pop(ra, None)
            self._summary.pop(rb, None)
        return d

    def attach(self, view: int, target: int) -> FusionDecision:
        """Put a view op (no edges of its own) into the group of op ``target``."""
        rv, rt = self.state.find(view), self.state.find(target)
        ctx = FusionContext(self.strategy, Relation.VERTICAL, Pattern.VIEW_FOLD, self.config, self.budget, self)
        d = should_fuse(self.summary(rt), self.summary(rv), ctx)
        if d:
            self.state.attach(rv, rt)
            self._summary.pop(rt, None)
        (self.fused if d else self.refused)[d.reason] += 1
        return d

    def seal(self, op: int) -> None:
        self.state.sealed.add(self.state.find(op))

    # -- summaries -----------------------------------------------------------------------------
    def summary(self, root: int) -> GroupSummary:
        s = self._summary.get(root)
        if s is None:
            s = self._summary[root] = self._summarize(root)
        return s

    def _summarize(self, root: int) -> GroupSummary:
        idx, ops = self.index, self.index.graph.ops
        members = self.state.members[root]
        kinds = Counter(idx.kinds[i] for i in members)
        templates = [i for i in members if idx.kinds[i] is FusionKind.TEMPLATE]
        reductions = [i for i in members if idx.kinds[i] is FusionKind.REDUCTION]
        domains = frozenset(reduction_domain(ops[i], idx.graph) for i in reductions)
        return GroupSummary(
            root=root,
            n_template=len(templates),
            n_reduction=len(reductions),
            n_pointwise=kinds[FusionKind.POINTWISE] + kinds[FusionKind.SOURCE],
            n_opaque=kinds[FusionKind.OPAQUE],
            template_classes=frozenset(ops[i].op_class.value for i in templates),
            weight_gemms_only=bool(templates) and all(i in self.static_gemms for i in templates),
            reduction_domains=domains,
            row_wise=all(is_row_wise(ops[i], idx.graph) for i in reductions),
            max_row=max((d[1] for d in domains), default=0),
            follower_only=all(ops[i].op_class in _FOLLOWERS for i in members)
            and any(ops[i].op_class is not OpClass.VIEW for i in members),
        )

    def _weight_gemms(self) -> frozenset[int]:
        """MATMUL ops with one static (weight) operand: linear layers, not activation GEMMs."""
        idx = self.index
        out = set()
        for i, op in enumerate(idx.graph.ops):
            if op.op_class is OpClass.MATMUL and any(idx.is_static_storage(idx.storage[t]) for t in op.inputs):
                out.add(i)
        return frozenset(out)

    # -- oracle ----------------------------------------------------------------------------------
    def sealed(self, a: int) -> bool:
        return a in self.state.sealed

    def fanout(self, a: int) -> int:
        return len(self.state.succ[a])

    def fanin(self, b: int) -> int:
        return len(self.state.pred[b])

    def storages(self, root: int) -> tuple[set[str], set[str]]:
        """(storages the group reads, storages it writes), internal ones included."""
        members = self.state.members[root]
        return (set().union(*(self._op_storages[i][0] for i in members)),
                set().union(*(self._op_storages[i][1] for i in members)))

    def shared_readers(self, a: int, b: int) -> int:
        """How many groups besides ``a`` read the results of ``a`` that ``b`` reads."""
        idx, st = self.index, self.state
        b_reads, a_out = self.storages(b)[0], self.storages(a)[1]
        readers = {st.find(r) for s in a_out & b_reads for r in idx.storage_readers.get(s, ())}
        readers.discard(a)
        return len(readers)

    def epilogue_single_consumer(self, a: int, b: int) -> bool:
        """Every GEMM/conv result of ``a`` that ``b`` reads is read only inside ``a`` and ``b``."""
        idx, st = self.index, self.state
        b_reads = set().union(*(self._op_storages[i][0] for i in st.members[b]))
        for i in st.members[a]:
            if idx.kinds[i] is not FusionKind.TEMPLATE:
                continue
            for s in self._op_storages[i][1] & b_reads:
                if s in idx.output_storages:
                    return False
                if any(st.find(r) not in (a, b) for r in idx.storage_readers.get(s, ())):
                    return False
        return True

    def working_set(self, a: int, b: int) -> int:
        """Bytes the merged group touches: boundary reads + writes + internal tensors."""
        members = [*self.state.members[a], *self.state.members[b]]
        io = group_io(self.index, members, lambda i: self.state.find(i) in (a, b))
        return io.read_bytes + io.write_bytes + io.internal_bytes


class GroupIO:
    """Boundary of a set of ops, views resolved to storage (see :func:`group_io`)."""

    __slots__ = ("inputs", "outputs", "internal", "read_bytes", "write_bytes", "internal_bytes", "weight_bytes")

    def __init__(self) -> None:
        self.inputs: dict[str, int] = {}  # storage -> bytes read
        self.outputs: list[str] = []
        self.internal: list[str] = []
        self.read_bytes = self.write_bytes = self.internal_bytes = self.weight_bytes = 0


def group_io(index: GraphIndex, members: list[int], inside) -> GroupIO:  # noqa: ANN001
    """Boundary traffic of the ops ``members`` (``inside(op_index)`` tests membership).

    - A storage produced by a member is *internal* unless an op outside reads it (through
      any view) or the model returns it; then it is an *output*, written once in full.
    - A storage read but not produced inside is an *input*, read once; bytes read are the
      distinct views read, capped at the storage size (a slice reads its part, an expanded
      bias its storage; a gather reads the rows it gathers, see ``GraphIndex.read_bytes``).
    """
    g, st = index.graph, index.storage
    io = GroupIO()
    produced: dict[str, None] = {}
    for i in sorted(members):
        for t in g.ops[i].outputs:
            if st[t] == t:
                produced[t] = None
    viewed: dict[str, dict[str, int]] = {}
    for i in sorted(members):
        if index.kinds[i] is FusionKind.VIEW:  # a view reads nothing; its readers do
            continue
        for t, nb in zip(g.ops[i].inputs, index.read_bytes[i], strict=True):
            s = st[t]
            if s not in produced:
                seen = viewed.setdefault(s, {})
                seen[t] = max(seen.get(t, 0), nb)
    for s, views in viewed.items():
        nbytes = min(g.tensors[s].nbytes, sum(views.values()))
        io.inputs[s] = nbytes
        io.read_bytes += nbytes
        if g.tensors[s].is_static:
            io.weight_bytes += nbytes
    for s in produced:
        leaves = s in index.output_storages or any(not inside(r) for r in index.storage_readers.get(s, ()))
        (io.outputs if leaves else io.internal).append(s)
        if leaves:
            io.write_bytes += g.tensors[s].nbytes
        else:
            io.internal_bytes += g.tensors[s].nbytes
    return io
