"""The microbenchmarks: each times one kind of kernel at many sizes and returns typed points.

Nothing here knows about models: GEMMs, convolutions, copies, elementwise adds, tiny ops
and transcendental functions on random tensors, timed in eager PyTorch the way an eager
model runs them (``torch.inference_mode``, the default thread count). GEMM / conv grids and
tiny ops run round-robin (:func:`time_problems`): each call follows a different kernel on
different data, as layers do in a network; streaming sweeps run back to back, because what
they measure is the bandwidth of the level their working set sits in.

>>> from dnnmap.calibrate.timing import CpuTimer
>>> p = time_gemm(CpuTimer(), "float32", 8, 8, 8, runs=2, min_seconds=0.0)
>>> p.flops == 2 * 8 * 8 * 8 and p.seconds > 0
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dnnmap.calibrate.timing import Timer


@dataclass(frozen=True, slots=True)
class GemmPoint:
    dtype: str
    m: int
    n: int
    k: int
    seconds: float  # median per call
    spread: float

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k  # one multiply + one add per MAC


@dataclass(frozen=True, slots=True)
class ConvPoint:
    kind: str  # "conv", "conv1x1", "grouped"
    hw: int  # output height = width
    cin: int  # grouped: input channels per group (1 = depthwise)
    cout: int
    kernel: int
    seconds: float
    spread: float

    @property
    def gemm_mnk(self) -> tuple[int, int, int]:
        """The implicit-GEMM view: M = Ho*Wo, N = Cout, K = (Cin per group)*k*k."""
        return self.hw * self.hw, self.cout, self.kernel * self.kernel * self.cin

    @property
    def flops(self) -> int:
        m, n, k = self.gemm_mnk
        return 2 * m * n * k


@dataclass(frozen=True, slots=True)
class ConvBackwardPoint(ConvPoint):
    """``convolution_backward`` (grad input + grad weight) of the forward conv ``ConvPoint``
    describes: twice the forward's FLOPs (the rule in ``costs/rules/conv.py``)."""

    @property
    def flops(self) -> int:
        m, n, k = self.gemm_mnk
        return 2 * (2 * m * n * k)


@dataclass(frozen=True, slots=True)
class StreamPoint:
    """One weight-streaming GEMM: ``x[m, k]`` against a cold weight (``layout`` "nt": [n, k]
    read as x @ W.T; "nn": [k, n] with a bias, ``addmm``)."""

    layout: str
    m: int
    n: int
    k: int
    seconds: float  # median per call
    spread: float

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k


@dataclass(frozen=True, slots=True)
class BandwidthPoint:
    kind: str  # "copy" (read + write), "add" (2 reads + 1 write) or "read" (stride-0 sum)
    working_set_bytes: int
    bytes_moved: int
    seconds: float
    spread: float


@dataclass(frozen=True, slots=True)
class ScalarPoint:
    """One named figure: a tiny-op latency, a thread-scaling time, a transcendental rate."""

    name: str
    value: float
    unit: str
    spread: float = 0.0


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[name]


def dtype_supported(device: str, dtype: str) -> bool:
    """Whether a tiny matmul in ``dtype`` runs on ``device`` (bf16 on an old CPU may not)."""
    if dtype == "tf32":
        return device == "cuda"
    try:
        a = torch.ones(4, 4, dtype=_torch_dtype(dtype), device=device)
        (a @ a).sum().item()
        return True
    except (RuntimeError, TypeError):
        return False


def time_gemm(timer: Timer, dtype: str, m: int, n: int, k: int, *, runs: int, min_seconds: float,
              warmup: int = 2) -> GemmPoint:
    """``a[m,k] @ b[k,n]`` with ``torch.mm`` (what ``aten.mm`` / ``addmm`` dispatch to)."""
    dev = timer.device
    a = torch.randn(m, k, device=dev).to(_torch_dtype(dtype))
    b = torch.randn(k, n, device=dev).to(_torch_dtype(dtype))
    out = torch.empty(m, n, device=dev, dtype=a.dtype)
    tf32 = dtype == "tf32"
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        with torch.inference_mode():
            t = timer.time(lambda: torch.mm(a, b, out=out), min_runs=runs, min_seconds=min_seconds,
                           inner=_inner_for(2.0 * m * n * k), warmup=warmup)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return GemmPoint(dtype, m, n, k, t.median_s, t.spread)


def _inner_for(flops: float) -> int:
    """Back-to-back calls per sample so a sample lasts ~50 us at ~1e11 FLOP/s: tiny problems
    are timed in batches (the timer itself costs ~0.1 us)."""
    return int(min(64, max(1, 5e6 / max(flops, 1.0))))


def time_bandwidth(timer: Timer, kind: str, working_set_bytes: int, *, runs: int,
                   min_seconds: float) -> BandwidthPoint:
    """Bytes per second of one streaming kernel whose operands total ``working_set_bytes``.

    - ``copy``: ``out.copy_(a)``, 2 arrays of n fp32: moves 2*4*n bytes;
    - ``add``: ``torch.add(a, b, out=out)``, 3 arrays: moves 3*4*n bytes;
    - ``read``: ``a.expand(r, n).sum()``: the same n fp32 (stride-0 rows) read r times in one
      kernel, so a working set as small as L1 is streamed for milliseconds and the dispatch
      cost vanishes; moves r*4*n bytes, all reads. This is how each cache level gets a figure.

    ``seconds`` is per call; ``bytes_moved`` over it is the bandwidth *including* the call's
    fixed dispatch cost (``build`` subtracts the 1-element time of the same call).
    """
    dev = timer.device
    if kind == "read":
        n = max(1, working_set_bytes // 4)
        reps = max(1, (64 << 20) // (4 * n))  # ~64 MiB streamed per call
        a = torch.randn(n, device=dev).expand(reps, n)
        moved, fn = reps * 4 * n, (lambda: a.sum())
        ws = 4 * n
    else:
        arrays = 2 if kind == "copy" else 3
        n = max(1, working_set_bytes // (4 * arrays))
        a, b, out = (torch.randn(n, device=dev) for _ in range(3))
        fn = (lambda: out.copy_(a)) if kind == "copy" else (lambda: torch.add(a, b, out=out))
        moved = ws = arrays * 4 * n
    with torch.inference_mode():
        t = timer.time(fn, min_runs=runs, min_seconds=min_seconds, inner=_inner_for(moved / 4))
    return BandwidthPoint(kind, ws, moved, t.median_s, t.spread)


def tiny_op_latencies(timer: Timer, *, runs: int) -> list[ScalarPoint]:
    """Seconds per call of ops on 1-element tensors: the fixed dispatch cost of each kind of
    eager op (Python binding + dispatcher + allocation + kernel selection, no data).

    Each kind is measured called directly (``dispatch.<kind>``: ``F.conv2d``) and through the
    ``torch.nn`` module that provides it (``dispatch.module_<kind>``: ``nn.Conv2d``, whose
    Python ``forward`` adds its own checks), plus the cost of entering one module level
    (``dispatch.module_call``: ``nn.Identity``). They run round-robin, one kind after another,
    as a network calls them. The bandwidth sweeps' own calls (``copy_out``, ``add_out``) are
    timed back to back, as those sweeps run."""
    from torch import nn

    dev = timer.device
    x = torch.randn(1, 1, 1, 1, device=dev)
    w = torch.randn(1, 1, 1, 1, device=dev)
    v = torch.randn(1, device=dev)
    mat = torch.randn(1, 1, device=dev)
    mods = {k: m.to(dev).eval() for k, m in {
        "conv": nn.Conv2d(1, 1, 1), "normalization": nn.BatchNorm2d(1), "layer_norm": nn.LayerNorm(1),
        "matmul": nn.Linear(1, 1), "elementwise": nn.ReLU(), "reduction": nn.AdaptiveAvgPool2d(1),
        "softmax": nn.Softmax(-1), "call": nn.Identity()}.items()}
    ops: dict[str, Callable[[], object]] = {
        "elementwise": lambda: torch.relu(x),
        "binary": lambda: x + x,
        "view": lambda: x.view(-1),
        "conv": lambda: F.conv2d(x, w, v),
        "matmul": lambda: F.linear(mat, mat, v),
        "normalization": lambda: F.batch_norm(x, v, v, v, v, False),
        "layer_norm": lambda: F.layer_norm(mat, (1,), v, v),
        "softmax": lambda: torch.softmax(mat, -1),
        "reduction": lambda: mat.sum(-1),
        **{f"module_{k}": (lambda m=m, a=(mat if k in ("layer_norm", "matmul", "softmax") else x): m(a))
           for k, m in mods.items()},
    }
    with torch.inference_mode():
        timings = timer.time_each(list(ops.values()), rounds=max(runs, 30), warmup_rounds=5)
        out = [ScalarPoint(f"dispatch.{k}", t.median_s, "s", t.spread) for k, t in zip(ops, timings, strict=True)]
        for name, fn in {"copy_out": lambda: v.copy_(mat.view(-1)), "add_out": lambda: torch.add(v, v, out=v)}.items():
            t = timer.time(fn, min_runs=runs, min_seconds=0.0, warmup=20, inner=50)
            out.append(ScalarPoint(f"dispatch.{name}", t.median_s, "s", t.spread))
    return out


# gaps (us) after which a tiny op's first call is timed: a layer of a decode step takes ~1-5 ms
# (the default; a calibration takes its plan's ``cold_gaps_us``)
COLD_GAPS_US = (100, 300, 1000, 3000, 10000, 30000)
# the ops whose curve every op kind without its own takes (their median)
GENERIC_COLD_OPS = ("relu", "add", "mean", "mul")


def cold_ops(device: str) -> dict[str, Callable[[], object]]:
    """The small ops whose cold extra is measured one by one, by the ATen name capture records
    (``tests/test_calibrate.py`` checks the names): the elementwise, normalization, reduction,
    attention and data-movement kernels networks call once a layer. Tiny inputs (768 floats; a
    2-head KV cache of 16 tokens; an 8-channel 8 x 8 map): the cold extra is the op's code path,
    not its work. GEMMs and convolutions take the generic curve (their work dwarfs it)."""
    y = torch.randn(1, 1, 768, device=device)
    w, b = torch.ones(768, device=device), torch.zeros(768, device=device)
    kv, new, q = (torch.randn(1, 2, n, 64, device=device) for n in (16, 1, 1))
    img = torch.randn(1, 8, 8, 8, device=device)
    c = torch.ones(8, device=device)
    table, ids = torch.randn(256, 64, device=device), torch.tensor([[3]], device=device)
    return {
        "relu": lambda: torch.relu(y), "add": lambda: y + y, "mean": lambda: y.mean(-1), "mul": lambda: y * y,
        "sub": lambda: y - y, "div": lambda: y / w, "neg": lambda: torch.neg(y), "pow": lambda: y.pow(2),
        "rsqrt": lambda: torch.rsqrt(w), "tanh": lambda: torch.tanh(y), "sigmoid": lambda: torch.sigmoid(y),
        "gelu": lambda: F.gelu(y), "silu": lambda: F.silu(y),
        "layer_norm": lambda: F.layer_norm(y, (768,), w, b), "softmax": lambda: torch.softmax(y, -1),
        "cat": lambda: torch.cat([kv, new], -2),
        "scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(q, kv, kv),
        "embedding": lambda: F.embedding(ids, table),
        "batch_norm": lambda: F.batch_norm(img, c, c, c, c, False),
        "max_pool2d": lambda: F.max_pool2d(img, 3, 2, 1), "adaptive_avg_pool2d": lambda: F.adaptive_avg_pool2d(img, 1),
    }


def cold_dispatch_costs(timer: Timer, *, samples: int = 12, gaps_us: tuple[int, ...] = COLD_GAPS_US,
                        clock: Callable[[], float] | None = None,
                        ops: Mapping[str, Callable[[], object]] | None = None) -> list[ScalarPoint]:
    """Extra seconds of a small op's call when ``gap`` of other work ran since that op last ran.

    A network calls each kind of small op once a layer, with the layer's other kernels in
    between: by then that op's code and data (its kernel, its TensorIterator path) have left
    the caches and the TLBs, on this machine and to the other tenants of a shared host. For each
    sample and each op of :func:`cold_ops` in turn, other kernels' work runs for ``gap`` (an
    8 MiB buffer copied 256 KiB at a time, each copy also allocating a small output as every
    kernel of a network does, so the dispatcher and the allocator stay warm; each copy takes a
    few us, so the gap overshoots by little), then that op is called twice: the first call is
    the cold one, the second the warm one. Per op, the median over samples of first minus second
    is its curve (``dispatch.cold_<op>_gap_<us>``); the median over the :data:`GENERIC_COLD_OPS`
    samples is the curve of every other op (``dispatch.cold_gap_<us>``).
    Every op is timed as the first call after its own gap: a call timed right after another
    tiny op finds part of its path warmed by it (measured 2026-12-02: ``add`` right after
    ``relu`` 11 us extra, first after a 3 ms gap 42 us; the protocol before that date timed the
    four ops one after another after one gap). The extra depends on the op: in the calibration of
    04:27 that day, after 3-10 ms, 20-29 us for ``relu`` / ``add`` / ``mul``, 32-35 for ``cat``,
    35-41 for ``tanh``, 84-93 for ``mean`` and ``batch_norm``, 96-104 for SDPA at one query row,
    121-130 for ``adaptive_avg_pool2d`` and ``gelu`` (not in the round-robin tiny-op timings,
    whose code stays warm). Under ~1 ms it also depends on the traffic in between: after 0.3 ms
    of 24 KiB copies it is about a third of the value after 0.3 ms of 8 MiB copies (the filler
    here); after 1-3 ms the two agree (docs/llm.md, small models).

    >>> # simulated: each clock read takes 1 us; an op takes 10 us when no op ran in the last 3 us
    >>> from dnnmap.calibrate.timing import CpuTimer
    >>> t, last = [0.0], [0.0]
    >>> def clock():
    ...     t[0] += 1e-6; return t[0]
    >>> def op():
    ...     t[0] += 10e-6 if t[0] - last[0] > 3e-6 else 1e-6; last[0] = t[0]
    >>> pts = cold_dispatch_costs(CpuTimer(), samples=2, gaps_us=(5,), clock=clock, ops={"relu": op, "add": op})
    >>> [(p.name, round(p.value * 1e6)) for p in pts]   # cold 10 + 1 (clock) minus warm 1 + 1
    [('dispatch.cold_gap_5', 9), ('dispatch.cold_relu_gap_5', 9), ('dispatch.cold_add_gap_5', 9)]
    """
    import statistics
    import time

    now = clock or time.perf_counter
    dev = timer.device
    src, dst = torch.randn(32, 1 << 16, device=dev), torch.empty(32, 1 << 16, device=dev)
    fns = dict(ops) if ops is not None else cold_ops(dev)
    out = []
    with torch.inference_mode():
        for op in fns.values():  # each op has run once before the first gap
            op()
        for gap in gaps_us:
            extra: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(samples):
                for name, op in fns.items():
                    end, j = now() + gap * 1e-6, 0
                    while now() < end:
                        dst[j % 32].copy_(src[j % 32])
                        torch.empty(768, device=dev)
                        j += 1
                    timer.synchronize()
                    t0 = now()
                    op()
                    cold = now() - t0
                    t0 = now()
                    op()
                    extra[name].append(cold - (now() - t0))
            generic = [e for name in GENERIC_COLD_OPS if name in extra for e in extra[name]]
            generic = generic or [e for v in extra.values() for e in v]  # none of them measured: all ops
            out.append(ScalarPoint(f"dispatch.cold_gap_{gap}", max(statistics.median(generic), 0.0), "s"))
            out += [ScalarPoint(f"dispatch.cold_{name}_gap_{gap}", max(statistics.median(v), 0.0), "s")
                    for name, v in extra.items()]
    return out


def fresh_page_cost(timer: Timer, *, runs: int) -> ScalarPoint:
    """Seconds per 4 KiB page of memory the allocator gets fresh from the OS: a 64 MiB tensor
    (above glibc's largest mmap threshold, so every allocation is a new mapping) zero-filled,
    minus the same fill into a reused buffer. Eager runs pay it whenever the allocator hands
    out fresh pages, which depends on its state, not on the model's kernels."""
    n = (64 << 20) // 4
    buf = torch.empty(n, device=timer.device)
    with torch.inference_mode():
        fresh = timer.time(lambda: torch.empty(n, device=timer.device).fill_(0.0), min_runs=runs, min_seconds=0.0)
        reused = timer.time(lambda: buf.fill_(0.0), min_runs=runs, min_seconds=0.0)
    pages = (64 << 20) // 4096
    return ScalarPoint("fresh_page", max(fresh.median_s - reused.median_s, 0.0) / pages, "s", fresh.spread)


def transcendental_rates(timer: Timer, *, runs: int) -> list[ScalarPoint]:
    """Evaluations per second of exp / tanh / erf on an L2-resident fp32 vector (64 K elements,
    256 KiB), so the unit's throughput is measured, not DRAM."""
    n = 1 << 16
    a = torch.randn(n, device=timer.device)
    out = torch.empty_like(a)
    res = []
    with torch.inference_mode():
        for name, fn in {"exp": torch.exp, "tanh": torch.tanh, "erf": torch.erf}.items():
            t = timer.time(lambda fn=fn: fn(a, out=out), min_runs=runs, min_seconds=0.005)
            res.append(ScalarPoint(f"transcendental.{name}", n / t.median_s, "1/s", t.spread))
    return res


PROBE_PREFIX = "probe."


PROBE_RUNS = 5  # samples per yardstick, the same in the calibration and in a later check


def host_probes(timer: Timer) -> list[ScalarPoint]:
    """Two fixed yardsticks of the host's speed, in hot loops of ~50 ms each: ``probe.gemm512``
    (seconds of one 512^3 fp32 GEMM at the current thread count: the cores) and
    ``probe.copy64mib`` (one copy over a 64 MiB working set, beyond the L3 of most hosts: the
    memory system a noisy neighbour shares; on a host with a larger L3 it measures that cache). The calibration times them once a pass and keeps
    the medians; a later run times them again, and the ratios say how much faster or slower the
    host is than when it was calibrated (:mod:`dnnmap.calibrate.probe`)."""
    g = time_gemm(timer, "float32", 512, 512, 512, runs=PROBE_RUNS, min_seconds=0.05)
    c = time_bandwidth(timer, "copy", 64 << 20, runs=PROBE_RUNS, min_seconds=0.05)
    return [ScalarPoint(f"{PROBE_PREFIX}gemm512", g.seconds, "s", g.spread),
            ScalarPoint(f"{PROBE_PREFIX}copy64mib", c.seconds, "s", c.spread)]


def thread_scaling(timer: Timer, threads: tuple[int, ...], *, runs: int) -> list[ScalarPoint]:
    """Seconds of a 512^3 GEMM and of a 16 MiB add at each thread count (CPU only)."""
    if timer.device != "cpu":
        return []
    before = torch.get_num_threads()
    res = []
    try:
        for th in threads:
            torch.set_num_threads(th)
            g = time_gemm(timer, "float32", 512, 512, 512, runs=runs, min_seconds=0.01)
            res.append(ScalarPoint(f"threads.{th}.gemm512", g.seconds, "s", g.spread))
            b = time_bandwidth(timer, "add", 1 << 24, runs=runs, min_seconds=0.01)
            res.append(ScalarPoint(f"threads.{th}.add16MiB", b.seconds, "s", b.spread))
    finally:
        torch.set_num_threads(before)
    return res


# --- round-robin sweeps: many different problems in turn, as a network runs its layers -------
@dataclass(frozen=True)
class Problem:
    """One grid point: ``make()`` allocates its operands and returns the call to time;
    ``point(seconds, spread)`` builds the result record."""

    key: tuple
    nbytes: int
    make: Callable[[], Callable[[], object]]
    point: Callable[[float, float], GemmPoint | ConvPoint]


def gemm_problem(device: str, dtype: str, m: int, n: int, k: int) -> Problem:
    def make() -> Callable[[], object]:
        a = torch.randn(m, k, device=device).to(_torch_dtype(dtype))
        b = torch.randn(k, n, device=device).to(_torch_dtype(dtype))
        return lambda: torch.mm(a, b)

    size = _torch_dtype(dtype).itemsize * (m * k + k * n + m * n)
    return Problem((dtype, m, n, k), size, make, lambda s, sp: GemmPoint(dtype, m, n, k, s, sp))


def conv_problem(device: str, kind: str, kernel: int, hw: int, cin: int, cout: int) -> Problem:
    """A batch-1 NCHW conv, 'same' padding, stride 1, output hw x hw; ``grouped`` has ``cout``
    channels in and out, in groups of ``cin`` channels (1 = depthwise)."""
    groups = cout // cin if kind == "grouped" else 1
    c_in = cout if kind == "grouped" else cin

    def make() -> Callable[[], object]:
        x = torch.randn(1, c_in, hw, hw, device=device)
        w = torch.randn(cout, c_in // groups, kernel, kernel, device=device)
        b = torch.randn(cout, device=device)
        return lambda: F.conv2d(x, w, b, padding=kernel // 2, groups=groups)

    size = 4 * (c_in * hw * hw + cout * (c_in // groups) * kernel * kernel + cout * hw * hw)
    return Problem((kind, kernel, hw, cin, cout), size, make,
                   lambda s, sp: ConvPoint(kind, hw, c_in // groups, cout, kernel, s, sp))


def conv_backward_problem(device: str, kind: str, kernel: int, hw: int, cin: int, cout: int) -> Problem:
    """``aten.convolution_backward`` of :func:`conv_problem`'s conv (grad input, grad weight and
    grad bias, as autograd asks for a conv with a bias whose input needs a gradient)."""
    groups = cout // cin if kind == "grouped" else 1
    c_in = cout if kind == "grouped" else cin
    pad = kernel // 2

    def make() -> Callable[[], object]:
        x = torch.randn(1, c_in, hw, hw, device=device)
        w = torch.randn(cout, c_in // groups, kernel, kernel, device=device)
        g = torch.randn(1, cout, hw, hw, device=device)
        return lambda: torch.ops.aten.convolution_backward(
            g, x, w, [cout], [1, 1], [pad, pad], [1, 1], False, [0, 0], groups, [True, True, True])

    size = 4 * (2 * c_in * hw * hw + 2 * cout * (c_in // groups) * kernel * kernel + 2 * cout * hw * hw)
    return Problem(("bwd", kind, kernel, hw, cin, cout), size, make,
                   lambda s, sp: ConvBackwardPoint(kind, hw, c_in // groups, cout, kernel, s, sp))


def weight_pool(device: str, nbytes: int) -> torch.Tensor:
    """One flat fp32 buffer the streaming GEMMs carve their weights from (filled once)."""
    return torch.empty(max(1, nbytes // 4), device=device).uniform_(-1.0, 1.0)


def time_gemm_stream(timer: Timer, pool: torch.Tensor, layout: str, m: int, n: int, k: int, *, runs: int,
                     warmup: int = 1) -> StreamPoint:
    """Seconds per call of ``F.linear(x, W)`` ("nt", W [n, k]) or ``torch.addmm(b, x, W)`` ("nn",
    W [k, n]) when every call reads a different weight: one round calls it on each of the
    ``len(pool) // (n k)`` distinct weights the pool holds (at least two, each touched once a
    round, the pool several times the last-level cache), so the weight always arrives from DRAM.
    A sample is one round; the median round over the call count is kept."""
    count = pool.numel() // (n * k)
    if count < 2:
        raise ValueError(f"weight pool of {pool.numel() * 4} bytes holds fewer than 2 [{n}, {k}] weights")
    ws = [pool[i * n * k:(i + 1) * n * k].view((n, k) if layout == "nt" else (k, n)) for i in range(count)]
    x = torch.randn(m, k, device=timer.device)
    b = torch.randn(n, device=timer.device)

    def nt() -> None:
        for w in ws:
            F.linear(x, w)

    def nn_() -> None:
        for w in ws:
            torch.addmm(b, x, w)

    with torch.inference_mode():
        t = timer.time(nt if layout == "nt" else nn_, min_runs=runs, min_seconds=0.0, warmup=warmup)
    return StreamPoint(layout, m, n, k, t.median_s / count, t.spread)


def time_problems(timer: Timer, problems: list[Problem], *, rounds: int, warmup_rounds: int = 1,
                  seed: int = 0, max_bytes: int = 256 << 20, max_chunk: int = 16,
                  on_chunk: Callable[[int, Problem], None] | None = None) -> list[Any]:
    """Time every problem with :meth:`Timer.time_each`, in a shuffled order, a chunk of up to
    ``max_chunk`` problems (``max_bytes`` of operands) at a time: each call follows a call of
    a different shape on different data, so it pays what a layer in a network pays (its
    kernel's code, the library's plan and the operands fetched afresh), not the hot-loop
    best case. ``on_chunk(n, last)`` reports progress."""
    import random

    order = list(problems)
    random.Random(seed).shuffle(order)
    out: list[Any] = []
    chunk: list[Problem] = []
    for i, prob in enumerate(order):
        chunk.append(prob)
        nxt = order[i + 1] if i + 1 < len(order) else None
        full = nxt is None or len(chunk) >= max_chunk or sum(p.nbytes for p in chunk) + nxt.nbytes > max_bytes
        if not full:
            continue
        calls = [p.make() for p in chunk]
        with torch.inference_mode():
            timings = timer.time_each(calls, rounds=rounds, warmup_rounds=warmup_rounds)
        out += [p.point(t.median_s, t.spread) for p, t in zip(chunk, timings, strict=True)]
        if on_chunk is not None:
            on_chunk(len(chunk), chunk[-1])
        del calls
        chunk = []
    return out
