"""L2 residency on GPUs: which activation reads hit in L2 because their producer ran recently.

A GPU's L2 is a write-back cache in front of HBM / GDDR shared by every kernel. A tensor one
kernel writes and a later kernel reads is still in L2 when the bytes every kernel moved in
between (its reuse distance) plus the tensor itself fit in the L2 — an LRU cache holds the
most recently touched ``capacity`` bytes. Such reads are served from L2; writes still reach
DRAM (dirty lines are written back when evicted). The walk follows the order the kernels run
(the partition's order on one stream).

Assumptions (documented, not fitted): full associativity and LRU; the whole L2 capacity is
usable (no set conflicts, no duplication across A100's two L2 partitions); weights and other
kernels' traffic count toward the distance. Weights that fit in L2 together with the largest
activation set stay there across repeated calls (``engine.weights_home``).

>>> from dnnmap.mapping.workload import Work
>>> from dnnmap.fusion.partition import Parallelism
>>> def w(i, reads, writes):
...     return Work(i, f"k{i}", None, 0, 0, 0, sum(b for _, b in reads), 0, sum(b for _, b in writes), 0,
...                 Parallelism(output_elements=1), False, reads=tuple(reads), writes=tuple(writes))
>>> ws = (w(0, [("x", 10)], [("a", 40)]), w(1, [("a", 40)], [("b", 40)]), w(2, [("x", 10), ("b", 40)], []))
>>> l2_hits(ws, capacity=80)   # a, b: read right after their write; x: 40+40 B moved since, +10 > 80
{1: 40, 2: 40}
"""

from __future__ import annotations

from collections.abc import Sequence

from dnnmap.mapping.workload import Work


def l2_hits(works: Sequence[Work], capacity: int) -> dict[int, int]:
    """Bytes of each kernel's activation reads served from an L2 of ``capacity`` bytes
    (only kernels with hits appear)."""
    clock = 0  # bytes moved by every kernel so far
    touched: dict[str, int] = {}  # tensor -> clock just after its last write or read
    hits: dict[int, int] = {}
    for w in works:
        hit = 0
        for tid, nbytes in w.reads:
            last = touched.get(tid)
            if last is not None and clock - last + nbytes <= capacity:
                hit += nbytes
        if hit:
            hits[w.subgraph_id] = hit
        clock += w.activation_read_bytes + w.weight_bytes + w.write_bytes
        for tid, _ in (*w.reads, *w.writes):
            touched[tid] = clock
    return hits
