"""The microbenchmarks: each times one kind of kernel at many sizes and returns typed points.

Nothing here knows about models: GEMMs, convolutions, copies, elementwise adds, tiny ops
and transcendental functions on random tensors, timed in eager PyTorch the way an eager
model runs them (``torch.inference_mode``, the default thread count).

>>> from dnnmap.calibrate.timing import CpuTimer
>>> p = time_gemm(CpuTimer(), "float32", 8, 8, 8, runs=2, min_seconds=0.0)
>>> p.flops == 2 * 8 * 8 * 8 and p.seconds > 0
True
"""

from __future__ import annotations

from dataclasses import dataclass

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
    kind: str  # "conv", "conv1x1", "depthwise"
    hw: int  # output height = width
    cin: int
    cout: int
    kernel: int
    seconds: float
    spread: float

    @property
    def gemm_mnk(self) -> tuple[int, int, int]:
        """The implicit-GEMM view: M = Ho*Wo, N = Cout, K = Cin*k*k (depthwise: K = k*k)."""
        k = self.kernel * self.kernel * (1 if self.kind == "depthwise" else self.cin)
        return self.hw * self.hw, self.cout, k

    @property
    def flops(self) -> int:
        m, n, k = self.gemm_mnk
        return 2 * m * n * k


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


def time_gemm(timer: Timer, dtype: str, m: int, n: int, k: int, *, runs: int, min_seconds: float) -> GemmPoint:
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
                           inner=_inner_for(2.0 * m * n * k))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return GemmPoint(dtype, m, n, k, t.median_s, t.spread)


def _inner_for(flops: float) -> int:
    """Back-to-back calls per sample so a sample lasts ~50 us at ~1e11 FLOP/s: tiny problems
    are timed in batches (the timer itself costs ~0.1 us)."""
    return int(min(64, max(1, 5e6 / max(flops, 1.0))))


def time_conv(timer: Timer, kind: str, kernel: int, hw: int, cin: int, cout: int, *,
              runs: int, min_seconds: float) -> ConvPoint:
    """A batch-1 NCHW conv with 'same' padding and stride 1, output hw x hw."""
    dev = timer.device
    groups = cout if kind == "depthwise" else 1
    cin = cout if kind == "depthwise" else cin
    x = torch.randn(1, cin, hw, hw, device=dev)
    w = torch.randn(cout, cin // groups, kernel, kernel, device=dev)
    b = torch.randn(cout, device=dev)
    pad = kernel // 2
    flops = 2.0 * hw * hw * cout * (cin // groups) * kernel * kernel
    with torch.inference_mode():
        t = timer.time(lambda: F.conv2d(x, w, b, padding=pad, groups=groups), min_runs=runs,
                       min_seconds=min_seconds, inner=_inner_for(flops))
    return ConvPoint(kind, hw, cin, cout, kernel, t.median_s, t.spread)


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
    eager op (Python binding + dispatcher + allocation + kernel selection, no data)."""
    dev = timer.device
    x = torch.randn(1, 1, 1, 1, device=dev)
    w = torch.randn(1, 1, 1, 1, device=dev)
    v = torch.randn(1, device=dev)
    mat = torch.randn(1, 1, device=dev)
    ops = {
        "elementwise": lambda: torch.relu(x),
        "binary": lambda: x + x,
        "view": lambda: x.view(-1),
        "conv": lambda: F.conv2d(x, w, v),
        "matmul": lambda: F.linear(mat, mat, v),
        "normalization": lambda: F.batch_norm(x, v, v, v, v, False),
        "layer_norm": lambda: F.layer_norm(mat, (1,), v, v),
        "softmax": lambda: torch.softmax(mat, -1),
        "reduction": lambda: mat.sum(-1),
        # the bandwidth sweeps' own calls at one element: their fixed cost, subtracted there
        "copy_out": lambda: v.copy_(mat.view(-1)),
        "add_out": lambda: torch.add(v, v, out=v),
    }
    out = []
    with torch.inference_mode():
        for name, fn in ops.items():
            t = timer.time(fn, min_runs=runs, min_seconds=0.0, warmup=20, inner=50)
            out.append(ScalarPoint(f"dispatch.{name}", t.median_s, "s", t.spread))
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
