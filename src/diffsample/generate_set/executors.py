"""Where shards run: local processes (the default), Ray (an optional extra), or the calling process.

Each is a context manager giving an object with ``submit(fn, *args) -> concurrent.futures.Future``:

* :func:`processes` — :class:`~concurrent.futures.ProcessPoolExecutor` with the *spawn* start method (a fresh
  interpreter per worker: no inherited torch thread pools or locks);
* :func:`ray_cluster` — a Ray task per shard (``ray.init(address)``: a local Ray instance without an address),
  its futures from ``ObjectRef.future()``; Ray itself retries tasks whose worker died (``max_retries``);
* :func:`in_process` — runs each call at once in this process (tests, debugging).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Protocol

from ..errors import DiffsampleError

__all__ = ["Submitter", "completed", "in_process", "processes", "ray_cluster"]


class Submitter(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...  # noqa: ANN401


@contextlib.contextmanager
def processes(workers: int) -> Iterator[Submitter]:
    """``workers`` local worker processes (spawn)."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


class _InProcess:
    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:  # noqa: ANN401
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # a failed shard is reported through its future, as from a process
            future.set_exception(exc)
        return future


@contextlib.contextmanager
def in_process() -> Iterator[Submitter]:
    """Every call run at once in the calling process."""
    yield _InProcess()


class _RaySubmitter:
    def __init__(self, ray: Any, retries: int) -> None:  # noqa: ANN401 - the ray module
        self._ray = ray
        self._retries = retries
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:  # noqa: ANN401
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(max_retries=self._retries)(fn)
        return remote.remote(*args).future()


def import_ray() -> Any:  # noqa: ANN401 - the ray module
    """The ``ray`` module, or an error saying how to get it (Ray is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise DiffsampleError(
            "running on Ray needs the optional 'ray' package (pip install 'ray'); without --ray the same job runs "
            "with local processes"
        ) from None
    return ray


@contextlib.contextmanager
def ray_cluster(address: str | None, retries: int) -> Iterator[Submitter]:
    """Ray tasks on the cluster at ``address`` (a local Ray instance when ``None``)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        yield _RaySubmitter(ray, retries)
    finally:
        if started:
            ray.shutdown()


def completed(
    pool: Submitter, fn: Callable[..., Any], jobs: Iterable[tuple[Any, ...]]
) -> Iterator[tuple[Future, tuple]]:
    """``(future, args)`` for every ``fn(*args)`` as it finishes; in this process each runs only when reached, so
    progress and the manifest follow every shard there too."""
    if isinstance(pool, _InProcess):
        yield from ((pool.submit(fn, *args), args) for args in jobs)
        return
    futures = {pool.submit(fn, *args): args for args in jobs}
    yield from ((future, futures[future]) for future in as_completed(futures))
