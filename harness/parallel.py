"""Worker threads for the dictionary operator's block products.

Products with a dictionary are split into parts (column blocks, or slices of one block
when there are fewer blocks than workers); worker threads take the parts, each making
its block (unpacking signs, say) and multiplying it on one BLAS thread, so the
compiled kernels and BLAS never fight over the cores. Every part writes its own
columns of the result, so the arithmetic, hence every bit of the result, is the same
for any number of workers.
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


def run_parts(function: Callable[[T], Any], parts: Sequence[T]) -> None:
    """Call ``function`` on every part, on the workers when there are several of both."""
    global _pool
    if _workers == 1 or len(parts) <= 1:
        for part in parts:
            function(part)
        return
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_workers, thread_name_prefix="harness-worker")
        pool = _pool
    for _ in pool.map(function, parts):
        pass


def split(stop: int, pieces: int) -> Iterator[tuple[int, int]]:
    """``[0, stop)`` cut into at most ``pieces`` contiguous ranges of near-equal length."""
    pieces = max(1, min(pieces, stop))
    for piece in range(pieces):
        yield stop * piece // pieces, stop * (piece + 1) // pieces


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block, when the workers supply the parallelism."""
    if _workers == 1:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield
