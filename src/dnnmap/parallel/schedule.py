"""Pipeline stages balanced by predicted time, and the 1F1B schedule on its own timeline.

With ``p`` stages and ``m`` micro-batches, 1F1B runs every stage's forward and backward of
every micro-batch; the step ends when the last backward leaves stage 0:
``sum_s t_s + (m - 1) * max_s t_s`` with ``t_s`` one micro-batch's forward + backward on
stage ``s``. For equal stages that is ``(m + p - 1) t``: the bubble is ``(p - 1) t``, a
fraction ``(p - 1) / (m + p - 1)`` of the step.

>>> one_f_one_b([1.0, 1.0, 1.0, 1.0], microbatches=8)   # (8 + 4 - 1) x 1
11.0
>>> balance_stages([1, 1, 1, 1, 4], 2)   # contiguous, minimise the slowest stage
[(0, 4), (4, 5)]
"""

from __future__ import annotations

from collections.abc import Sequence


def one_f_one_b(stage_s: Sequence[float], microbatches: int) -> float:
    """Seconds of one 1F1B step (see the module docstring)."""
    if not stage_s:
        return 0.0
    return sum(stage_s) + (microbatches - 1) * max(stage_s)


def balance_stages(costs: Sequence[float], stages: int) -> list[tuple[int, int]]:
    """Split ``costs`` (per layer, in order) into ``stages`` contiguous [start, end) ranges,
    minimising the largest stage sum (dynamic programming, exact)."""
    n = len(costs)
    if stages > n:
        raise ValueError(f"{stages} stages for {n} layers")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for k in range(1, stages + 1):
        for j in range(k, n - (stages - k) + 1):
            for i in range(k - 1, j):
                v = max(best[k - 1][i], prefix[j] - prefix[i])
                if v < best[k][j]:
                    best[k][j], cut[k][j] = v, i
    out, j = [], n
    for k in range(stages, 0, -1):
        i = cut[k][j]
        out.append((i, j))
        j = i
    return out[::-1]
