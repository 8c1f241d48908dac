"""``--plan auto``: the plans of N devices, and the one search every command ranks them with.

A training step splits its global batch over ``dp`` replicas and ``m`` micro-batches and may
shard its state over the data-parallel group (ZeRO 0-3); inference replicates the request batch
on each of ``dp`` replicas and splits it into ``m`` micro-batches only to stream them through
``pp > 1`` stages. Either way, tensor parallelism stays inside a node and divides the heads,
pipeline stages are at most the layers, and expert parallelism (MoE) divides the experts and
``dp``.

>>> [str(p) for p in candidate_plans(2, 2, layers=4, heads=2, node=2, training=False)]
['dp2-tp1-pp1-mb1-zero0', 'dp1-tp1-pp2-mb1-zero0', 'dp1-tp1-pp2-mb2-zero0', 'dp1-tp2-pp1-mb1-zero0']
>>> rank([3, 1, 2, 9], evaluate=lambda p: p, fits=lambda r: r < 9, key=lambda r: r, top=2, what="x")
[1, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from dnnmap.errors import DnnmapError
from dnnmap.parallel.plan import ParallelPlan

P = TypeVar("P")
R = TypeVar("R")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_plans(devices: int, batch: int, layers: int, heads: int | None, node: int, *,
                    training: bool = True, max_microbatches: int = 64, experts: int | None = None,
                    ep: int | None = None) -> list[ParallelPlan]:
    """Every plan of ``devices`` the model's shape allows (see the module docstring).

    ``ep``: a fixed expert-parallel degree; None searches every divisor of the experts
    (``experts`` given) or 1."""
    out = []
    for tp in _divisors(devices):
        if tp > node or (heads and heads % tp):
            continue
        for pp in _divisors(devices // tp):
            dp = devices // tp // pp
            if pp > layers or (training and batch % dp):
                continue
            per_replica = batch // dp if training else batch
            eps = [ep] if ep is not None else [e for e in _divisors(dp) if experts and experts % e == 0] or [1]
            for m in _divisors(per_replica):
                if m > max_microbatches or (pp == 1 and m > 1):
                    continue
                for e in eps:
                    if dp % e or (experts and experts % e):
                        continue
                    for zero in ((0, 1, 2, 3) if training and dp > 1 else (0,)):
                        out.append(ParallelPlan(dp=dp, tp=tp, pp=pp, microbatches=m, zero=zero, ep=e))
    return out


def search_plans(devices: int, batch: int, layers: int, heads: int | None, node: int, *, model: str,
                 training: bool = True, experts: int | None = None, ep: int | None = None) -> list[ParallelPlan]:
    """:func:`candidate_plans`, or a :class:`DnnmapError` saying why there is none (``train``,
    ``analyze`` and ``generate`` ``--plan auto`` alike).

    >>> search_plans(3, 1, 2, 4, 8, model="m", training=False, ep=2)
    Traceback (most recent call last):
    ...
    dnnmap.errors.DnnmapError: ep=2: m has no experts (expert parallelism needs a mixture-of-experts model)
    """
    if ep is not None and ep > 1:
        if not experts:
            raise DnnmapError(f"ep={ep}: {model} has no experts (expert parallelism needs a mixture-of-experts model)")
        if experts % ep:
            raise DnnmapError(f"ep={ep} does not divide the {experts} experts of {model}")
        if devices % ep:
            raise DnnmapError(f"ep={ep} does not divide {devices} devices (the expert-parallel group is ep of the "
                              "dp replicas)")
    plans = candidate_plans(devices, batch, layers, heads, node, training=training, experts=experts, ep=ep)
    if not plans:
        raise DnnmapError(f"no plan of {devices} devices suits {model} at batch {batch}: "
                          + ("dp must divide the batch, " if training else "")
                          + f"tp the {heads} heads (within a node of {node}), pp at most the {layers} layers"
                          + (f", ep={ep} divide dp" if ep and ep > 1 else ""))
    return plans


def rank(plans: Iterable[P], *, evaluate: Callable[[P], R], fits: Callable[[R], bool], key: Callable[[R], object],
         top: int, what: str, training: bool = True) -> list[R]:
    """The fitting results of ``evaluate(plan)``, best (smallest ``key``) first, at most ``top``;
    a :class:`DnnmapError` naming ``what`` when none fits."""
    results = [r for r in (evaluate(p) for p in plans) if fits(r)]
    if not results:
        axes = "dp, tp, pp, micro-batches, ZeRO, ep" if training else "dp, tp, pp, micro-batches, ep"
        raise DnnmapError(f"no plan of {what} fits: every ({axes}) needs more memory than a device has")
    results.sort(key=key)
    return results[:top]
