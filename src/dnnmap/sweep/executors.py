"""Where a sweep's tasks run: a local process pool (``concurrent.futures``) or Ray.

Both take the same :func:`dnnmap.sweep.tasks.run_group` calls and yield their results as they
finish; no home-made distribution. Ray is optional (``pip install 'dnnmap[ray]'``).

>>> parse_ray_address("ray://head:10001"), parse_ray_address("10.0.0.5:6379"), parse_ray_address("auto")
(('head', 10001), ('10.0.0.5', 6379), None)
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from dnnmap.errors import DnnmapError
from dnnmap.sweep.spec import Case, Group
from dnnmap.sweep.tasks import TaskResult, run_group

Task = tuple[Group, tuple[Case, ...]]
LOCAL_RAY = "local"  # --ray without an address: start a local Ray instance
CONNECT_TIMEOUT_S = 5.0


class RayUnavailableError(DnnmapError):
    """Ray is not installed, or its cluster cannot be reached in time."""


def run_inline(tasks: Sequence[Task]) -> Iterator[tuple[int, TaskResult]]:
    """In this process, one task after another (``--workers 0``: debugging, tiny sweeps)."""
    for i, (g, cases) in enumerate(tasks):
        yield i, run_group(g, cases)


def run_local(tasks: Sequence[Task], workers: int) -> Iterator[tuple[int, TaskResult]]:
    """A process pool of ``workers``, forked from this process."""
    # fork (as torch's DataLoader workers do): the workers start with what this process has
    # imported (torch, the model sources) instead of importing it again (a fork server or
    # spawn costs seconds per sweep). Nothing here has run a torch op or holds a lock yet.
    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        pending: dict[Future, int] = {pool.submit(run_group, g, c): i for i, (g, c) in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield pending.pop(f), f.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def parse_ray_address(address: str) -> tuple[str, int] | None:
    """(host, port) to check before connecting; None for ``auto`` (Ray finds a local cluster)."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayUnavailableError(f"Ray address {address!r}: give HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def _init_ray(address: str) -> Callable[[], None]:
    """Connect (or start a local instance); returns how to let go of it. An unreachable address
    fails after :data:`CONNECT_TIMEOUT_S`, before Ray's own (minute-long) retries start."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--ray needs Ray: pip install 'dnnmap[ray]'") from None
    if ray.is_initialized():
        return lambda: None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address == LOCAL_RAY:
        # a single-node instance on loopback only: nothing listens beyond this machine
        kwargs.update(num_cpus=os.cpu_count() or 1, _node_ip_address="127.0.0.1")
    else:
        hostport = parse_ray_address(address)
        if hostport is not None:
            try:
                socket.create_connection(hostport, timeout=CONNECT_TIMEOUT_S).close()
            except OSError as e:
                raise RayUnavailableError(
                    f"cannot reach the Ray cluster at {address}: {e.strerror or e} "
                    f"(gave up after {CONNECT_TIMEOUT_S:g} s)") from None
        kwargs["address"] = address
    where = "a local Ray instance" if address == LOCAL_RAY else f"the Ray cluster at {address}"
    try:
        ray.init(**kwargs)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError ...
        raise RayUnavailableError(f"could not start or join {where}: {e}") from None
    return ray.shutdown


def run_ray(tasks: Sequence[Task], address: str = LOCAL_RAY) -> Iterator[tuple[int, TaskResult]]:
    """The same tasks as Ray remote functions (one CPU each) on ``address``."""
    release = _init_ray(address)
    import ray

    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_group)
        pending = {remote.remote(g, c): i for i, (g, c) in enumerate(tasks)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
        pending = {}
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        release()
