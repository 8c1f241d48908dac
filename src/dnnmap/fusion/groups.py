"""Applying fusions: op groups, their contracted DAG, and the no-cycle check.

Ops start as singleton groups. Merging groups ``A`` and ``B`` is legal only if no path
``A -> X -> B`` runs through a third group ``X`` (the merged kernel would have to wait for
``X``, which waits for it). The check is local, not O(n) per merge: the groups keep a
valid topological order (``pos``), so a path from ``A`` (earlier) into ``B`` can only visit
groups positioned between them; a breadth-first search from ``A`` bounded by ``pos[B]``
decides it. After a legal merge the order is repaired inside that window only (the
descendants of ``A`` found by the search move behind the merged group) -- the classic
dynamic topological order of Pearce & Kelly, specialised to edge contraction.

>>> from dnnmap.fusion.kinds import GraphIndex
>>> from dnnmap.fusion.toy import residual_block
>>> st = GroupState(GraphIndex(residual_block()))
>>> st.try_merge(0, 1), st.try_merge(0, 6)   # conv1 + bn1; conv1 + final relu: cycle
(True, False)
"""

from __future__ import annotations

from dnnmap.fusion.kinds import FusionKind, GraphIndex


class GroupState:
    """Union-find over op indices plus the contracted DAG of group roots (mutable work state)."""

    def __init__(self, index: GraphIndex) -> None:
        n = len(index.graph.ops)
        self.index = index
        self._parent = list(range(n))
        self.members: dict[int, list[int]] = {i: [i] for i in range(n)}
        self.succ: dict[int, set[int]] = {i: set(index.succs[i]) for i in range(n)}
        self.pred: dict[int, set[int]] = {i: set(index.preds[i]) for i in range(n)}
        self.order: list[int | None] = list(range(n))  # a topological order of roots; None = hole
        self.pos: list[int] = list(range(n))  # root -> index in ``order``
        self.sealed: set[int] = set()  # roots closed to further fusion (e.g. SE squeeze kernels)

    # -- union-find --------------------------------------------------------------------------
    def find(self, i: int) -> int:
        root = i
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[i] != root:  # path compression
            self._parent[i], i = root, self._parent[i]
        return root

    def roots(self) -> list[int]:
        """Current groups in topological order."""
        return [r for r in self.order if r is not None]

    def kinds(self, root: int) -> set[FusionKind]:
        k = self.index.kinds
        return {k[i] for i in self.members[root]}

    # -- legality ----------------------------------------------------------------------------
    def _descendants_before(self, x: int, y: int) -> set[int] | None:
        """Groups reachable from ``x`` positioned before ``y``; ``None`` if ``y`` is reachable
        from ``x`` through another group (merging them would make a cycle)."""
        limit = self.pos[y]
        seen: set[int] = set()
        stack = [s for s in self.succ[x] if s != y]
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            if self.pos[g] > limit:
                continue
            seen.add(g)
            for s in self.succ[g]:
                if s == y:
                    return None
                if s not in seen:
                    stack.append(s)
        return seen

    def can_merge(self, a: int, b: int) -> bool:
        a, b = self.find(a), self.find(b)
        if a == b:
            return True
        x, y = (a, b) if self.pos[a] < self.pos[b] else (b, a)
        return self._descendants_before(x, y) is not None

    def try_merge(self, a: int, b: int) -> bool:
        """Merge the groups of ops ``a`` and ``b`` if that creates no cycle; True when merged
        (or already one group)."""
        a, b = self.find(a), self.find(b)
        if a == b:
            return True
        x, y = (a, b) if self.pos[a] < self.pos[b] else (b, a)
        desc = self._descendants_before(x, y)
        if desc is None:
            return False
        self._reorder(x, y, desc)
        self._union(x, y)
        return True

    def attach(self, i: int, root: int) -> None:
        """Put op ``i``, a singleton without edges (a view), into group ``root``: no order
        repair is needed, its slot becomes a hole."""
        if self.find(i) != i or len(self.members[i]) != 1 or self.succ[i] or self.pred[i]:
            raise ValueError(f"op index {i} is not an isolated singleton")
        root = self.find(root)
        if root == i:
            return
        self._parent[i] = root
        self.members[root].extend(self.members.pop(i))
        del self.succ[i], self.pred[i]
        self.order[self.pos[i]] = None

    # -- applying ----------------------------------------------------------------------------
    def _reorder(self, x: int, y: int, desc: set[int]) -> None:
        """Window ``order[pos[x]..pos[y]]`` becomes: others, merged group (kept as ``x``'s slot
        owner), descendants of ``x``, then a hole where ``y`` was."""
        lo, hi = self.pos[x], self.pos[y]
        window = [g for g in self.order[lo + 1 : hi] if g is not None]
        before = [g for g in window if g not in desc]
        after = [g for g in window if g in desc]
        new = [*before, x, *after]
        new += [None] * (hi - lo + 1 - len(new))
        self.order[lo : hi + 1] = new
        for k, g in enumerate(new):
            if g is not None:
                self.pos[g] = lo + k

    def _union(self, keep: int, gone: int) -> None:
        """Fold root ``gone`` into root ``keep`` (``keep`` holds the merged group's order slot)."""
        self._parent[gone] = keep
        mk, mg = self.members[keep], self.members.pop(gone)
        if len(mk) < len(mg):  # extend the longer list
            mk, mg = mg, mk
        mk.extend(mg)
        self.members[keep] = mk
        for s in self.succ.pop(gone):
            self.pred[s].discard(gone)
            if s != keep:
                self.pred[s].add(keep)
                self.succ[keep].add(s)
        for p in self.pred.pop(gone):
            self.succ[p].discard(gone)
            if p != keep:
                self.succ[p].add(keep)
                self.pred[keep].add(p)
        self.succ[keep].discard(keep)
        self.pred[keep].discard(keep)
        if gone in self.sealed:
            self.sealed.discard(gone)
            self.sealed.add(keep)
