"""Costs as exact functions of batch B and context length L, from a few captures.

A decode step's graph has the same ops at every (B, L); only shapes change, and every count a
cost rule or the fusion pass derives from them (FLOPs, bytes, parallelism) is a polynomial
of degree at most one in each: ``f = a + b*B + c*L + d*B*L`` (attention over the cache is
``B x heads x (L + 1) x head_dim``; weights do not depend on either). Four captures at the
corners ``(B0, L0), (B1, L0), (B0, L1), (B1, L1)`` fix every coefficient; bilinear
interpolation then gives the value anywhere, exactly (integer arithmetic, no rounding). That
the counts really are of that form is *checked*, not assumed: :func:`mismatches` compares
the evaluated values with a direct capture at a point that was not used, op by op, and a
model that fails the check (a sliding window reached between the corners) is captured
directly instead (see :mod:`dnnmap.generate`).

>>> f = Bilinear.fit({(1, 10): [5, 7], (4, 10): [5, 37], (1, 20): [5, 17], (4, 20): [5, 77]})
>>> f(2, 15) == [5, 2 * 15 - 3]   # [a constant, B*L - 3]: exact at a point not captured
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from dnnmap.costs import CountedGraph, OpCost
from dnnmap.errors import DnnmapError
from dnnmap.fusion.partition import Parallelism
from dnnmap.mapping.workload import Work

Point = tuple[int, int]  # (batch, length)


class NotBilinearError(DnnmapError):
    """Counts that are not of the form a + bB + cL + dBL (or graphs that differ in structure)."""


@dataclass(frozen=True)
class Bilinear:
    """Integer vectors known at the corners of a (batch, length) rectangle; exact in between."""

    b: tuple[int, int]
    l: tuple[int, int]  # noqa: E741
    corners: tuple[tuple[int, ...], ...]  # v(b0,l0), v(b1,l0), v(b0,l1), v(b1,l1)

    @classmethod
    def fit(cls, samples: Mapping[Point, Sequence[int]]) -> Bilinear:
        """From samples at the rectangle's corners (one batch or one length: a line; one point: constant)."""
        bs = sorted({b for b, _ in samples})
        ls = sorted({n for _, n in samples})
        b0, b1 = bs[0], bs[-1]
        l0, l1 = ls[0], ls[-1]
        need = {(b0, l0), (b1, l0), (b0, l1), (b1, l1)}
        missing = need - set(samples)
        if missing:
            raise DnnmapError(f"bilinear fit needs the rectangle's corners; missing {sorted(missing)}")
        sizes = {len(v) for v in samples.values()}
        if len(sizes) != 1:
            raise NotBilinearError("samples differ in length: the graphs differ in structure")
        return cls((b0, b1), (l0, l1), tuple(tuple(samples[p]) for p in ((b0, l0), (b1, l0), (b0, l1), (b1, l1))))

    def __call__(self, batch: int, length: int, exact: bool = True) -> list[int]:
        """The values at (batch, length). ``exact``: a non-integer result means the samples were
        not bilinear (raise); otherwise round to the nearest integer (counts restated at another
        precision carry a rounding of at most one byte per sample)."""
        (b0, b1), (l0, l1) = self.b, self.l
        db, dl = (b1 - b0) or 1, (l1 - l0) or 1
        wb = (batch - b0, b1 - batch) if b1 != b0 else (0, 1)
        wl = (length - l0, l1 - length) if l1 != l0 else (0, 1)
        w00, w10, w01, w11 = wb[1] * wl[1], wb[0] * wl[1], wb[1] * wl[0], wb[0] * wl[0]
        den = db * dl
        out = []
        for v00, v10, v01, v11 in zip(*self.corners, strict=True):
            num = v00 * w00 + v10 * w10 + v01 * w01 + v11 * w11
            q, r = divmod(num, den)
            if r and not exact:
                q += 2 * r >= den
            elif r:
                raise NotBilinearError(f"value {num}/{den} at (B={batch}, L={length}) is not an integer")
            out.append(q)
        return out


def mismatches(fit: Bilinear, point: Point, actual: Sequence[int]) -> list[int]:
    """Indices where the fit evaluated at ``point`` differs from ``actual`` (empty: exact)."""
    try:
        got = fit(*point)
    except NotBilinearError:
        return list(range(len(actual)))
    if len(got) != len(actual):
        return list(range(max(len(got), len(actual))))
    return [i for i, (a, b) in enumerate(zip(got, actual, strict=True)) if a != b]


# -- op costs -------------------------------------------------------------------------------
_COST_FIELDS = tuple(f.name for f in fields(OpCost))


def signature(counted: CountedGraph) -> tuple[str, ...]:
    """What must agree between captures for their counts to be compared: op ids and targets."""
    return tuple(f"{op.id}:{op.target}" for op in counted.graph.ops)


def cost_vector(counted: CountedGraph) -> list[int]:
    """Every op's :class:`OpCost` fields, op after op."""
    out: list[int] = []
    for op in counted.graph.ops:
        c = counted.costs[op.id]
        out.extend(getattr(c, f) for f in _COST_FIELDS)
    return out


def costs_from(counted: CountedGraph, vector: Sequence[int]) -> dict[str, OpCost]:
    """Op id -> cost, from a vector laid out as :func:`cost_vector` lays it out."""
    n = len(_COST_FIELDS)
    return {op.id: OpCost(*vector[i * n:(i + 1) * n]) for i, op in enumerate(counted.graph.ops)}


def op_of_index(counted: CountedGraph, index: int) -> str:
    op = counted.graph.ops[index // len(_COST_FIELDS)]
    return f"{op.id} ({op.target}, {_COST_FIELDS[index % len(_COST_FIELDS)]}, in {op.module_path or '<root>'})"


# -- mapped work ----------------------------------------------------------------------------
_WORK_INTS = ("tensor_flops", "vector_flops", "transcendentals", "activation_read_bytes", "weight_bytes",
              "write_bytes", "internal_bytes", "dispatches", "module_entries")
_PAR_INTS = tuple(f.name for f in fields(Parallelism) if f.name != "depthwise")


def work_signature(works: Sequence[Work]) -> tuple:
    return tuple((w.subgraph_id, w.name, w.op_class, w.op_name, w.gemm_like, w.pointwise, w.leaf_module,
                  w.parallelism.depthwise, tuple(t for t, _ in w.reads), tuple(t for t, _ in w.writes))
                 for w in works)


def work_vector(works: Sequence[Work]) -> list[int]:
    out: list[int] = []
    for w in works:
        out.extend(getattr(w, f) for f in _WORK_INTS)
        out.extend(getattr(w.parallelism, f) for f in _PAR_INTS)
        out.extend(b for _, b in w.reads)
        out.extend(b for _, b in w.writes)
    return out


def works_from(template: Sequence[Work], vector: Sequence[int]) -> tuple[Work, ...]:
    """``template``'s works with every count taken from ``vector`` (laid out as :func:`work_vector`)."""
    out, i = [], 0
    for w in template:
        ints = dict(zip(_WORK_INTS, vector[i:i + len(_WORK_INTS)], strict=True))
        i += len(_WORK_INTS)
        par = dict(zip(_PAR_INTS, vector[i:i + len(_PAR_INTS)], strict=True))
        i += len(_PAR_INTS)
        reads = tuple((t, vector[i + j]) for j, (t, _) in enumerate(w.reads))
        i += len(w.reads)
        writes = tuple((t, vector[i + j]) for j, (t, _) in enumerate(w.writes))
        i += len(w.writes)
        out.append(replace(w, parallelism=replace(w.parallelism, **par), reads=reads, writes=writes, **ints))
    return tuple(out)


@dataclass(frozen=True)
class WorkFunction:
    """A phase's mapped work as an exact function of (batch, length)."""

    template: tuple[Work, ...]
    fit: Bilinear

    def __call__(self, batch: int, length: int) -> tuple[Work, ...]:
        return works_from(self.template, self.fit(batch, length, exact=False))

    @classmethod
    def of(cls, samples: Mapping[Point, Sequence[Work]]) -> WorkFunction:
        sigs = {work_signature(w) for w in samples.values()}
        if len(sigs) != 1:
            raise NotBilinearError("the partitions differ between captures (different kernels)")
        first = next(iter(samples.values()))
        return cls(tuple(first), Bilinear.fit({p: work_vector(w) for p, w in samples.items()}))


# -- graphs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphFamily:
    """One phase's graph at any (batch, length): every tensor dimension is a bilinear function
    of (B, L) fitted from captures at the rectangle's corners (token-major flattenings such as
    ``B * L`` rows included). :meth:`at` rebuilds the graph with those shapes, so the cost rules
    and the fusion pass run on real shapes: counts that are not bilinear (a gather capped at its
    table, a window) still come out exact."""

    template: Any  # ir.Graph at the first corner
    dims: Bilinear  # every tensor's dims, tensor after tensor

    @classmethod
    def of(cls, graphs: Mapping[Point, Any]) -> GraphFamily:
        """From graphs at the corners. Three corners ``(B0, L0), (B1, L0), (B0, L1)`` are enough
        when no single dimension mixes batch and length (a dimension is ``a + b*B`` or
        ``a + c*L``): the fourth is then ``v(B1, L0) + v(B0, L1) - v(B0, L0)``."""
        sigs = {tuple(f"{op.id}:{op.target}" for op in g.ops) for g in graphs.values()}
        ids = {tuple(g.tensors) for g in graphs.values()}
        if len(sigs) != 1 or len(ids) != 1:
            raise NotBilinearError("the captured graphs differ in structure between the corners")
        vecs = {p: [d for t in g.tensors.values() for d in t.shape] for p, g in graphs.items()}
        bs, ls = sorted({b for b, _ in vecs}), sorted({n for _, n in vecs})
        far = (bs[-1], ls[-1])
        if len(vecs) == 3 and far not in vecs:
            v00, v10, v01 = vecs[(bs[0], ls[0])], vecs[(bs[-1], ls[0])], vecs[(bs[0], ls[-1])]
            vecs[far] = [b + c - a for a, b, c in zip(v00, v10, v01, strict=True)]
        first = graphs[min(graphs)]
        return cls(first, Bilinear.fit(vecs))

    def at(self, batch: int, length: int) -> Any:
        from dnnmap.ir import Graph

        flat = iter(self.dims(batch, length))
        tensors = {tid: replace(t, shape=tuple(next(flat) for _ in t.shape)) for tid, t in self.template.tensors.items()}
        g = self.template
        meta = {**g.meta, "batch": batch, "context": length}
        return Graph(g.name, tensors, g.ops, g.inputs, g.outputs, meta)


def regroup(template: Any, counted: CountedGraph) -> Any:
    """``template``'s kernels (same op groups) over ``counted``, a graph with the same ops."""
    from dnnmap.fusion.build import build_partition
    from dnnmap.fusion.kinds import GraphIndex

    pos = {op.id: i for i, op in enumerate(counted.graph.ops)}
    groups = [[pos[o] for o in sg.op_ids] for sg in template.subgraphs]
    return build_partition(counted, GraphIndex(counted.graph), groups, template.strategy, template.meta)
