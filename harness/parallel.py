"""Worker threads for the dictionary operator's block products.

Products with a dictionary are split into parts (column blocks, or slices of a lone
block), by sizes alone. When the parts' blocks must be made first (unpacking sign bits,
say), worker threads take the parts, each making its block and multiplying it on one
BLAS thread, so the compiled kernels and BLAS never fight over the cores. When every
block is already in memory and the parts are small, they run one after another on the
calling thread and BLAS spreads each product over the cores itself, which costs less
(the operator decides: ``Dictionary._on_workers``).
Every part writes its own columns of the result, so the arithmetic, hence every bit of
the result, is the same for any number of workers and either way of running.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: Below this many multiply-adds a product runs as one part on the calling thread:
#: handing it to workers would cost more than it saves.
PARALLEL_WORK = 1 << 22

_lock = threading.Lock()
_workers = max(1, os.cpu_count() or 1)
_pool: ThreadPoolExecutor | None = None


def workers() -> int:
    """How many worker threads products use (default: one per core)."""
    return _workers


def set_workers(count: int) -> None:
    """Use ``count`` worker threads from now on (1: everything on the calling thread)."""
    global _workers, _pool
    if int(count) < 1:
        raise ValueError(f"workers must be a positive integer, not {count}")
    with _lock:
        if _pool is not None and int(count) != _workers:
            _pool.shutdown(wait=True)
            _pool = None
        _workers = int(count)


def use_threads(count: int) -> Any:
    """Run the operator's workers, numba's kernels and BLAS on ``count`` threads; the
    returned threadpoolctl limiter undoes the BLAS part (``.unregister()``)."""
    import numba
    from threadpoolctl import threadpool_limits

    set_workers(count)
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    return threadpool_limits(limits=count)


def run_parts(function: Callable[[T], Any], parts: Sequence[T], threaded: bool = True) -> None:
    """Call ``function`` on every part: on the workers with BLAS on one thread each
    (``threaded``, when there are several workers and parts), else in order on the
    calling thread with BLAS on ``workers()`` threads."""
    global _pool
    if not threaded or _workers == 1 or len(parts) <= 1:
        with blas_threads(_workers):
            for part in parts:
                function(part)
        return
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_workers, thread_name_prefix="harness-worker")
        pool = _pool
    with blas_threads(1):
        for _ in pool.map(function, parts):
            pass


_blas: list[Any] | None = None


def _blas_libraries() -> list[Any]:
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    return _blas


@contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """BLAS on at most ``count`` threads inside the block (never more than it had).

    Switches the loaded BLAS libraries directly (well under a microsecond), so it can
    wrap every product; threadpoolctl's own context takes a fraction of a millisecond.
    """
    libraries = _blas_libraries()
    before = [lib.num_threads for lib in libraries]
    for lib, threads in zip(libraries, before, strict=True):
        if threads != min(threads, count):
            lib.set_num_threads(min(threads, count))
    try:
        yield
    finally:
        for lib, threads in zip(libraries, before, strict=True):
            if lib.num_threads != threads:
                lib.set_num_threads(threads)


def split(stop: int, pieces: int) -> Iterator[tuple[int, int]]:
    """``[0, stop)`` cut into at most ``pieces`` contiguous ranges of near-equal length."""
    pieces = max(1, min(pieces, stop))
    for piece in range(pieces):
        yield stop * piece // pieces, stop * (piece + 1) // pieces
