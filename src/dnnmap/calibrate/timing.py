"""Timing on a real device: wall clock on the CPU, CUDA events on a GPU.

Both timers return the same :class:`Timing` (median, min and every sample of the
per-call seconds), so the microbenchmarks and the validation runs never care which
device they time.

>>> t = CpuTimer().time(lambda: sum(range(100)), min_runs=3, min_seconds=0.0)
>>> t.runs >= 3 and 0.0 < t.min_s <= t.median_s
True
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from dnnmap.errors import DnnmapError


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per call of one timed function: the median is what reports use."""

    median_s: float
    min_s: float
    runs: int
    samples: tuple[float, ...] = ()

    @property
    def spread(self) -> float:
        """(median - min) / median: 0 on a quiet machine, large when others share the cores."""
        return (self.median_s - self.min_s) / self.median_s if self.median_s > 0 else 0.0


class Timer(Protocol):
    device: str

    def time(
        self,
        fn: Callable[[], object],
        *,
        min_runs: int = 5,
        min_seconds: float = 0.05,
        warmup: int = 2,
        inner: int = 1,
        max_runs: int = 200,
    ) -> Timing: ...

    def synchronize(self) -> None: ...

    def time_each(self, fns: list[Callable[[], object]], *, rounds: int, warmup_rounds: int = 1) -> list[Timing]: ...


def _summarise(samples: list[float]) -> Timing:
    return Timing(statistics.median(samples), min(samples), len(samples), tuple(samples))


@dataclass
class CpuTimer:
    """``time.perf_counter`` around ``inner`` back-to-back calls; one sample per batch.

    ``inner`` > 1 amortises the timer's own ~0.1 us for ops that take a few microseconds.
    Runs until both ``min_runs`` samples and ``min_seconds`` of timed work are collected.
    """

    device: str = "cpu"

    def synchronize(self) -> None:
        return None

    def time(
        self,
        fn: Callable[[], object],
        *,
        min_runs: int = 5,
        min_seconds: float = 0.05,
        warmup: int = 2,
        inner: int = 1,
        max_runs: int = 200,
    ) -> Timing:
        for _ in range(warmup):
            fn()
        samples: list[float] = []
        spent = 0.0
        while len(samples) < max_runs and (len(samples) < min_runs or spent < min_seconds):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            dt = time.perf_counter() - start
            spent += dt
            samples.append(dt / inner)
        return _summarise(samples)

    def time_each(self, fns: list[Callable[[], object]], *, rounds: int, warmup_rounds: int = 1) -> list[Timing]:
        """Round-robin: call ``fns[0], fns[1], ...`` in turn, ``rounds`` times, timing every call.

        Consecutive calls run different kernels on different data, as the layers of a network
        do, so no call finds its predecessor's code, primitive or operands hot (the hot-loop
        :meth:`time` of one call measures the best case a network never sees)."""
        samples: list[list[float]] = [[] for _ in fns]
        for r in range(warmup_rounds + rounds):
            for i, fn in enumerate(fns):
                start = time.perf_counter()
                fn()
                dt = time.perf_counter() - start
                if r >= warmup_rounds:
                    samples[i].append(dt)
        return [_summarise(s) for s in samples]


@dataclass
class CudaTimer:
    """CUDA events recorded on the current stream around ``inner`` calls.

    Events measure device time between the two records, so host-side Python overhead only
    shows when it starves the GPU (which is what an eager model run sees, too).
    """

    device: str = "cuda"

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize()

    def time(
        self,
        fn: Callable[[], object],
        *,
        min_runs: int = 5,
        min_seconds: float = 0.05,
        warmup: int = 2,
        inner: int = 1,
        max_runs: int = 200,
    ) -> Timing:
        import torch

        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        samples: list[float] = []
        spent = 0.0
        while len(samples) < max_runs and (len(samples) < min_runs or spent < min_seconds):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            dt = start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
            spent += dt
            samples.append(dt / inner)
        return _summarise(samples)

    def time_each(self, fns: list[Callable[[], object]], *, rounds: int, warmup_rounds: int = 1) -> list[Timing]:
        """Round-robin over ``fns`` (see :meth:`CpuTimer.time_each`), one event pair per call."""
        import torch

        samples: list[list[float]] = [[] for _ in fns]
        for r in range(warmup_rounds + rounds):
            for i, fn in enumerate(fns):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                if r >= warmup_rounds:
                    samples[i].append(start.elapsed_time(end) / 1e3)
        return [_summarise(s) for s in samples]


def timer_for(device: str) -> Timer:
    """The timer for ``device`` ("cpu" or "cuda"); a clear error when CUDA is missing."""
    if device == "cpu":
        return CpuTimer()
    if device == "cuda":
        require_cuda()
        return CudaTimer()
    raise DnnmapError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise DnnmapError("--device cuda asked for, but torch.cuda.is_available() is False on this machine")


def load_average() -> float:
    """1-minute load average (0.0 where the OS has none): recorded beside every measurement."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - Windows
        return 0.0


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_signature() -> dict[str, str]:
    """Vendor, family, model and stepping from /proc/cpuinfo (identify a CPU a VM hides)."""
    keys = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping"}
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # first processor only
                k, _, v = line.partition(":")
                if k.strip() in keys:
                    out[keys[k.strip()]] = v.strip()
    except OSError:
        pass
    return out


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return cpu_model_name()


def library_versions() -> dict[str, str]:
    """torch (with its BLAS / oneDNN / CUDA build), python: what a measured figure depends on."""
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if torch.backends.mkldnn.is_available():
        versions["onednn"] = _onednn_version()
    versions["blas"] = "mkl" if torch.backends.mkl.is_available() else "other"
    if torch.cuda.is_available():
        versions["cuda"] = str(torch.version.cuda)
        versions["cudnn"] = str(torch.backends.cudnn.version())
    return versions


def _onednn_version() -> str:
    import torch

    for line in torch.__config__.show().splitlines():
        if "MKL-DNN" in line or "oneDNN" in line:
            parts = [p for p in line.split() if p.startswith("v") and p[1:2].isdigit()]
            if parts:
                return parts[0].lstrip("v")
    return "unknown"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat; None where it is unreadable."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(interval_s: float = 0.25) -> float:
    """Share of all CPUs busy over ``interval_s`` while this process sleeps: the load other
    processes put on the machine right now (0.0 where /proc/stat is unreadable)."""
    a = _cpu_jiffies()
    time.sleep(interval_s)
    b = _cpu_jiffies()
    if a is None or b is None or b[1] == a[1]:
        return 0.0
    return (b[0] - a[0]) / (b[1] - a[1])


def wait_until_idle(max_busy: float = 0.15, max_wait_s: float = 60.0, interval_s: float = 0.25) -> float:
    """Sleep until other processes use at most ``max_busy`` of the CPUs (or ``max_wait_s``
    passes); returns the last busy fraction seen. Timing a model while another process holds a
    core makes OpenMP threads wait for each other, which no model of the device predicts."""
    deadline = time.monotonic() + max_wait_s
    busy = busy_fraction(interval_s)
    while busy > max_busy and time.monotonic() < deadline:
        busy = busy_fraction(interval_s)
    return busy
