"""The approximate-message-passing loop shared by the ``amp`` and ``amp-binary`` built-ins.

Not a decoder of its own (it registers nothing): the two built-ins differ only in their
denoiser, and keep the loop here as any plugin package keeps code its decoders share.
"""

from __future__ import annotations

import contextvars
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from superposition_harness import PARALLEL_ENTRIES, Decoder, Dictionary, grid_steps, snap_to_grid, top_k_rows

#: Rows whose L1 norm is below 2^MIN_EXPONENT are snapped on the grid of 2^(MIN_EXPONENT − 23).
MIN_EXPONENT = -100

#: The effective noise variance τ² is never taken below this: a perfect fit (z = 0) must
#: not divide by zero, and the standard problem's coefficients are 1, so 1e-12 is far
#: below any scale that matters.
TAU2_FLOOR = 1e-12

#: Entries of a row worked on at once by the row-wise helpers (:func:`square_sums`, the
#: denoisers): a few arrays of this many float32 (128 KiB each) stay in a core's cache,
#: where whole-batch arrays (134 MB each at 32 × 2^20) go through memory once per operation.
TILE = 1 << 15

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def snap(values: np.ndarray) -> np.ndarray:
    """Each row of ``values`` on its own power-of-two grid (``superposition_harness.grid_steps``),
    as float32, exactly: the operator's products are then the same in any batch, and so is
    ``synthesize``'s choice between its dense and sparse sums."""
    array = np.asarray(values, dtype=np.float32)
    return snap_to_grid(array, grid_steps(array, MIN_EXPONENT), np.float32)


@dataclass
class Iterate:
    """The state of every signal of a batch after one AMP iteration ``t`` (``t ≥ 1``).

    ``estimate`` is ``y^t`` (``(B, N)``), ``pseudo`` the pseudo-data ``r^{t-1}`` it was
    made from (``y^t = η(r^{t-1})``, damped), ``tau2`` the effective noise variance
    ``τ²_{t-1}`` the denoiser used (``(B,)``), and ``active`` which signals were still
    iterating (converged signals keep their last values and are not updated).
    """

    iteration: int
    estimate: np.ndarray
    pseudo: np.ndarray
    tau2: np.ndarray
    active: np.ndarray


class MessagePassing(Decoder):
    """The AMP loop shared by ``amp`` and ``amp-binary``; a subclass supplies the denoiser.

    With ``y^0 = 0`` and ``z^0 = x``, iteration ``t = 0, 1, …`` computes, per signal,

        τ_t²    = max(‖z^t‖² / d, σ²)           (the effective noise of r^t)
        r^t     = y^t + Fᵀ z^t                   (pseudo-data ≈ y + τ_t · N(0, 1))
        y^{t+1} = β η(r^t; τ_t) + (1 − β) y^t    (β = ``damping``, 1 = none)
        z^{t+1} = x − F y^{t+1} + z^t · β Σ_i η'(r^t_i; τ_t) / d

    The last term is the Onsager correction ``(1/δ)·⟨η'⟩·z^t`` with ``δ = d/N``: it
    keeps ``r^t − y`` Gaussian-like, which is what lets a scalar denoiser work.
    A signal stops when ``‖y^{t+1} − y^t‖ ≤ tol · ‖y^{t+1}‖`` or after ``iterations``
    iterations; a stopped signal keeps its values while the others go on, so no signal
    depends on the rest of its batch. The decoded set is the top ``k`` of the last
    denoised estimate ``η(r^t)`` (the estimate itself when undamped), ties (zeros,
    posteriors that round to 1) broken by the pseudo-data ``r^t``: η is non-decreasing,
    so this is the top ``k`` of ``r^t``, ties to the lower index.

    A subclass implements :meth:`_denoise` and declares the parameters ``iterations``,
    ``tol`` and ``damping``.
    """

    uses_noise = True

    iterations: int
    tol: float
    damping: float

    @abstractmethod
    def _denoise(self, pseudo: np.ndarray, tau2: np.ndarray, k: int,
                 n: int) -> tuple[np.ndarray, np.ndarray]:
        """``η(r; τ)`` of each row of ``pseudo`` (float32) and the row sums ``Σ_i η'(r_i; τ)``."""

    def iterate(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
                noise: float = 0.0) -> Iterator[Iterate]:
        """Run AMP on a batch and yield the state after each iteration; ``decode`` uses the last.

        ``signals`` is ``(B, d)``; ``k`` sets the prior (``ρ = k/N``) and ``noise`` (σ)
        floors the effective noise variance. The yielded arrays are updated in place
        by the next iteration: copy what you keep. The loop ends after ``iterations``
        iterations or as soon as every signal has stopped, so at least one state is
        yielded and the last one holds every signal's final values.
        """
        x = np.atleast_2d(np.asarray(signals, dtype=np.float64))
        batch, d = x.shape
        n = dictionary.n
        estimate = np.zeros((batch, n), dtype=np.float32)
        pseudo = np.zeros((batch, n), dtype=np.float32)
        tau2 = np.zeros(batch)
        residual = x.copy()
        active = np.ones(batch, dtype=np.bool_)
        floor = max(float(noise) ** 2, TAU2_FLOOR)
        rows = np.arange(batch)  # the signals still iterating
        for iteration in range(1, self.iterations + 1):
            z = residual[rows]
            previous = estimate[rows]
            t2 = np.maximum(row_sums(z * z) / d, floor)
            r = previous + dictionary.correlate(snap(z))
            new, slopes = self._denoise(r, t2, k, n)
            if self.damping < 1.0:
                new = self.damping * new + (1.0 - self.damping) * previous
            # Snapped, the estimate synthesises to the same bits in any batch (see snap).
            new = snap(new)
            onsager = self.damping * slopes / d
            residual[rows] = x[rows] - dictionary.synthesize(new) + z * onsager[:, None]
            change = square_sums(new, previous)
            done = change <= self.tol ** 2 * square_sums(new)
            estimate[rows] = new
            pseudo[rows] = r
            tau2[rows] = t2
            active[rows[done]] = False
            yield Iterate(iteration, estimate, pseudo, tau2, active.copy())
            rows = rows[~done]
            if rows.size == 0:
                break

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> np.ndarray:
        for state in self.iterate(dictionary, dictionary.subtract_offset(signals), k=k, noise=noise):
            pseudo = state.pseudo
        return top_k_rows(pseudo, min(k, dictionary.n))


def row_sums(values: np.ndarray) -> np.ndarray:
    """The float64 sum of each row of a 2-D array, each row summed on its own.

    The values are cast first, so that the sum runs over each contiguous row without
    NumPy's casting buffers, whose chunks need not line up with rows: the sum of a row
    is then the same in a batch of any size.
    """
    return np.asarray(values, dtype=np.float64).sum(axis=1)


def for_rows(work: Callable[[range], None], batch: int, size: int) -> None:
    """Call ``work`` on the rows ``0 … batch − 1`` of a batch of ``size`` numbers: shared
    among as many threads as numba's kernels use (the harness sets that number from
    ``--workers``) when the batch is large, else at once on this thread.

    ``work(rows)`` must compute each row of ``rows`` on its own, into its own places,
    with NumPy's loops (which let other threads run): the results are then the same
    bits however the rows are shared. Each thread runs in a copy of the caller's
    context, so NumPy's error state (``np.errstate``) holds there too.
    """
    threads = min(batch, numba.get_num_threads())
    if threads <= 1 or size < PARALLEL_ENTRIES:
        work(range(batch))
        return
    tasks = [_threads().submit(contextvars.copy_context().run, work, range(j, batch, threads))
             for j in range(threads)]
    for task in tasks:
        task.result()


def _threads() -> ThreadPoolExecutor:
    """One pool for the process, as large as numba's largest thread count, never shut
    down: callers on several threads at once (a Dask worker's) only submit to it."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS,  # type: ignore[attr-defined]
                                       thread_name_prefix="message-passing")
        return _pool


def square_sums(values: np.ndarray, minus: np.ndarray | None = None) -> np.ndarray:
    """``row_sums(np.square(values − minus, dtype=np.float64))`` for C-ordered 2-D arrays
    (``minus`` of the same shape, or none), the same bits: each row's difference made
    :data:`TILE` entries at a time, its squares gathered in float64 and summed as one row,
    the rows shared among threads (:func:`for_rows`). Other layouts are summed as the
    C-ordered copy's rows."""
    values = np.ascontiguousarray(values)
    minus = None if minus is None else np.ascontiguousarray(minus)
    batch, n = values.shape
    sums = np.empty(batch)
    kind = values.dtype if minus is None else np.result_type(values, minus)

    def rows(numbers: range) -> None:
        difference = np.empty(min(TILE, n), dtype=kind)
        squares = np.empty(n)
        for i in numbers:
            for start in range(0, n, TILE):
                stop = min(start + TILE, n)
                piece = values[i, start:stop]
                if minus is not None:
                    piece = np.subtract(piece, minus[i, start:stop], out=difference[:stop - start])
                np.square(piece, out=squares[start:stop], dtype=np.float64)
            sums[i] = squares.sum()

    for_rows(rows, batch, values.size)
    return sums
