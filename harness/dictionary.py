"""Dictionaries as linear operators: the only way decoders see the ``d × N`` matrix.

A :class:`Dictionary` is made of column blocks. Generated dictionaries make each block
on demand from counter-based streams keyed by (seed, draw, row block, column block),
keep it while a cache budget allows and otherwise make it again, so nothing here
needs the whole matrix in memory at once.

Products are accumulated in float64 and rounded once to float32. For a Rademacher
dictionary the float64 sums of ±1 times float32 values are exact, so correlations do
not depend on the order of summation, hence not on batch size, thread count or BLAS
build; ties between codewords (frequent there) are broken the same way everywhere.

A Rademacher dictionary is stored as its sign bits (one bit an entry, 32 times less
than float32), and signals on its lattice (integer combinations of codewords, as
``superpose`` makes them) are correlated in float32, where their integer sums are
exact too, at float32 GEMM speed. Products are split into column parts that worker
threads take side by side (:mod:`.parallel`); each part writes only its own columns.
"""

from __future__ import annotations

import math
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np

from . import parallel
from .kernels import (
    grid_exponent_steps,
    integer_rows,
    lattice_products,
    lattice_syntheses,
    make_sign_blocks,
    pack_signs,
    scale_rows_into,
    sign_products,
    sign_sums,
    signed_sums,
    snap_rows,
    subtract_and_pick,
    subtract_sign_products,
    unpack_codewords,
)
from .problem import (
    ROWS_PER_BLOCK,
    STREAM_DICTIONARY,
    Problem,
    random_bits,
    standard_normal,
    stream,
    stream_entropy,
)

#: Columns of a generated dictionary come in blocks of this many, each from its own streams.
COLUMNS_PER_BLOCK = 4096

#: Default bound on the bytes of column blocks an operator keeps between calls.
DEFAULT_CACHE_BYTES = 1 << 30

#: A dictionary of one column block is cut in this many parts for large products.
SPLIT_PIECES = 4

#: Largest unpacked part of a compactly stored dictionary, per worker and number type.
SCRATCH_BYTES = 64 << 20

#: Largest piece of numbers unpacked and multiplied at once by an exact (lattice)
#: product: small enough to stay in a core's cache between the two (measured at
#: d = 1280 and 4614: 1.4-1.6 times faster than unpacking a whole block first).
UNPACKED_PIECE_BYTES = 2 << 20

#: A part of a product with at least this many multiply-adds goes to a worker even when
#: its block is in memory (``Dictionary._on_workers``). Measured on two cores: matching
#: pursuit at N = 16384, d = 512, 64 signals (parts of 134 M) took 75-93 ms instead of
#: 128-139 ms, its steps slowed by BLAS threads spinning after the product on the calling
#: thread; FISTA and AMP at d = 128-200 (parts of 17-26 M) were 10-15% slower on the
#: workers, where handing parts over costs more than the spin. OMP, whose steps between
#: products are NumPy's, lost a little at the 134 M shape (-2% to +18% over five pairs of
#: runs, median +6%).
WORKER_PART_WORK = 1 << 25

#: Up to this many exact rows, a Rademacher dictionary whose bits are in memory counts
#: its products on the bits (``kernels.lattice_products``) instead of unpacking them for
#: a float32 product. Measured with four-lane look-ups, AVX2, two cores, the same numbers
#: either way (benchmarks/test_scale.py, ``test_products_on_the_bits_against_unpacking``):
#: at N = 2^18 the look-ups are 1.4-1.7x faster for 64 rows (d = 1280, 4614) and 1.5x for
#: 128 (d = 788, 4614); at N = 16384, d = 512, where the unpacked numbers stay in memory,
#: 1.3x faster for 64 rows, 0.9x for 128 and 0.8x for 256.
LOOKUP_MAX_ROWS = 128

#: Up to this many grid rows ``synthesize`` counts its sums on the bits: each task of
#: ``kernels.lattice_syntheses`` keeps ``d`` sums per row, so its memory grows with the
#: rows. Measured at 32 rows (AMP's estimates, one per signal of a batch).
SYNTHESIS_LOOKUP_MAX_ROWS = 32

#: ... and from this many codewords on: the tables (``⌈d/64⌉ · 64 KiB`` per eight rows,
#: made whatever ``N``) then cost under a tenth of the look-ups and take no more than
#: the bits' own bytes, well within each worker's share of the unpacking buffers that
#: the memory budget sets aside (``memory.needed_bytes``) and this route does not use.
#: Below it, a float32 product is faster (4x at N = 2048, d = 8192, 32 rows).
LOOKUP_MIN_CODEWORDS = 16384

#: ``synthesize`` counts the sums of up to ``SYNTHESIS_LOOKUP_MAX_ROWS`` grid rows on the bits
#: (``kernels.lattice_syntheses``) from this many dimensions on: its tables, made for
#: every 64 codewords whatever ``d``, are then a small part of the work. Measured at
#: N = 2^20 and 32 rows on AVX2: 2.4x faster than unpacking for a float32 product at
#: d = 2749, 1.2x at d = 750, as fast at d = 400, 1.6x slower at d = 82.
SYNTHESIS_LOOKUP_MIN_D = 512

#: Default bound on the bytes :meth:`Dictionary.dense` may allocate.
DEFAULT_DENSE_BYTES = 1 << 30

#: ``synthesize`` sums codewords one by one when at most one coefficient in this many is
#: non-zero; above about 1% the dense product is faster (measured at d = 50, 200, 1000).
SPARSE_SYNTHESIS = 128

#: Power iterations behind :meth:`Dictionary.lipschitz`, and the stream of its start vector.
POWER_ITERATIONS = 40
STREAM_POWER_ITERATION = 99


#: :func:`grid_steps` puts a row on multiples of ``2^-GRID_BITS`` times a power of two at
#: least as large as the row's L1 norm: its entries then add up, with any signs, to
#: integers of at most ``2^23 + d/2`` steps, exact in float32.
GRID_BITS = 23


def grid_steps(values: np.ndarray, min_exponent: int | None = None) -> np.ndarray:
    """Per row of ``values``, a power-of-two step ``2^-23`` of the row's L1 norm.

    Rows rounded to such a grid (:func:`snap_to_grid`), times the ±1 entries of a
    Rademacher dictionary, add up exactly even in float32 (every partial sum is an
    integer number of steps below ``2^24``), so ``correlate`` gives each row the same
    bits whatever else is in the batch and whatever path BLAS takes, and multiplies it
    at float32 speed. Iterative decoders round the vectors they hand to the operator
    this way to stay independent of the batch. The step depends on the row alone;
    ``min_exponent`` keeps it a normal number for rows all but zero.
    """
    array = np.asarray(values)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if array.ndim != 2:
        raise ValueError(f"grid_steps needs a 2-D array, not {array.ndim}-D")
    return grid_exponent_steps(array, GRID_BITS, -1074 if min_exponent is None else int(min_exponent))


def snap_to_grid(values: np.ndarray, steps: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """``values`` rounded, row by row, to multiples of that row's step (a power of two, so
    only the rounding rounds), as ``dtype``."""
    array = np.asarray(values)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    return snap_rows(array, steps, np.empty(array.shape, dtype=dtype))


class _Kept:
    """The sign bits of the last draw, kept for the next draw of the same shape.

    A new draw's bits go into memory the process has never touched, and the first
    touch of a page costs a fault; on a virtual machine that hands freed memory back to
    its host that was up to 2.5 s a GB, up to twenty times the writing itself (measured:
    0.13-1.5 s to touch 0.6 GB once, 0.04-0.08 s to write it again). A run makes draw
    after draw of one shape at each dimension, so the last draw's array is held here and
    given to the next draw of the same shape, once nothing else refers to it: no
    dictionary and no view of it (a view holds its base array, so the reference count
    tells). Otherwise it is let go before a new array is made, so a run never holds
    more than one draw's bits besides those of live dictionaries.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._array: np.ndarray | None = None

    def empty(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` whose contents are undefined."""
        with self._lock:
            kept, self._array = self._array, None
            probe = np.empty(0)  # held as ``kept`` is: by one name and the call's argument
            if (kept is not None and kept.shape == shape and kept.dtype == np.dtype(dtype)
                    and sys.getrefcount(kept) == sys.getrefcount(probe)):
                out = kept
            else:
                del kept  # let it go first: a draw at a time
                out = np.empty(shape, dtype=dtype)
            self._array = out
            return out

    def release(self) -> None:
        """Let the kept array go (what live dictionaries hold stays theirs)."""
        with self._lock:
            self._array = None


_KEPT = _Kept()


def release_kept_bits() -> None:
    """Free the sign bits kept for a next draw (:class:`_Kept`); a run does this when it ends."""
    _KEPT.release()


class DictionaryTooLarge(MemoryError):
    """Raised when a dense copy of a dictionary would exceed the allowed bytes."""


class Dictionary(ABC):
    """A ``d × N`` matrix ``F`` with unit-norm columns (codewords), as an operator.

    Batches are row-major: ``signals`` has shape ``(B, d)``, one signal per row, and
    ``correlate(signals)[b, i] = ⟨f_i, signals[b]⟩``. All results are float32.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, d: int, n: int, block_width: int = COLUMNS_PER_BLOCK,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.d = int(d)
        self.n = int(n)
        self.block_width = int(block_width)
        self._cache: dict[Hashable, np.ndarray] = {}
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._cache_lock = threading.Lock()
        self._lipschitz: float | None = None

    #: Whether blocks are stored compactly and unpacked into scratch buffers for products
    #: (then parts are cut so that a part's float64 values fit in ``SCRATCH_BYTES``).
    unpacks: bool = False

    #: ``s`` when every codeword is ``s`` times a vector of integers (the lattice that
    #: ``correlate`` computes on exactly in float32), else None.
    lattice_scale: float | None = None

    #: The vector every signal carries besides its codewords (``(d,)`` float32, read-only),
    #: or None: on a dictionary taken from a sparse autoencoder, the SAE's decoder bias
    #: ``b_dec``, so that signals are activations in the SAE's own frame (docs/contract.md §1).
    offset: np.ndarray | None = None

    # -- what a subclass provides ---------------------------------------------------

    @property
    @abstractmethod
    def scale(self) -> float:
        """``F = scale × base``; the base blocks hold small exact values where possible."""

    @abstractmethod
    def _make_block(self, block: int) -> np.ndarray:
        """The float64 base values of column block ``block``, one codeword per row:
        shape ``(width, d)``, C-contiguous, so that gathering codewords reads rows."""

    # -- the operator ---------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """``(d, N)``."""
        return (self.d, self.n)

    @property
    def n_blocks(self) -> int:
        """How many column blocks make up the dictionary."""
        return (self.n + self.block_width - 1) // self.block_width

    def block_range(self, block: int) -> tuple[int, int]:
        """The column range ``[start, stop)`` of column block ``block``."""
        start = block * self.block_width
        return start, min(start + self.block_width, self.n)

    def correlate(self, signals: np.ndarray) -> np.ndarray:
        """``F.T @ X`` for a batch: ``(B, d)`` signals to ``(B, N)`` correlations.

        On a lattice dictionary (``lattice_scale`` is ``s``), a row that is exactly the
        float32 rounding of ``s·m`` for integers ``m`` with ``Σ|m| ≤ 2^24`` (as
        ``superpose`` and ``remove`` make them) is correlated as that lattice point:
        ``s²·Σ_r base_ri m_r`` with the integer sum exact in float32, then divided by
        ``d`` once. That is within a float32 rounding of the product with the rounded
        row, and keeps the exact ties of the lattice. A row on a power-of-two grid (see
        :func:`grid_steps`) is multiplied in float32 too, exactly, with the float64
        path's result to the bit. Other rows are summed in float64. When every row is
        exact, a dictionary may count the same numbers a faster way (``_counted_products``).
        """
        x = self._as_batch(signals, self.d, "signals")
        exact, integers, factors, _ = self._integer_rows(x)
        counted = self._counted_products(integers, factors) if exact.all() else None
        if counted is not None:
            return counted
        out = np.empty((x.shape[0], self.n), dtype=np.float32)
        others = np.flatnonzero(~exact)
        on_lattice = np.flatnonzero(exact)
        rest = x[others] if others.size else None

        def part(piece: tuple[int, int, int]) -> None:
            block, lo, hi = piece
            start = block * self.block_width
            # Exact integer sums: any cut of the columns gives the same bits, so numbers
            # unpacked on the fly are made and multiplied a cache-sized piece at a time.
            for first, last in self._unpacked_pieces(block, np.float32, lo, hi) if on_lattice.size else ():
                product = np.matmul(integers, self._block_values(block, np.float32, first, last).T)
                scale_rows_into(product, factors, out, on_lattice, start + first)
            if rest is not None:
                product64 = rest @ self._block_values(block, np.float64, lo, hi).T
                product64 *= self.scale
                out[others, start + lo:start + hi] = product64

        kinds = ([np.float32] if on_lattice.size else []) + ([np.float64] if others.size else [])
        parts = self._parts(x.shape[0])
        parallel.run_parts(part, parts, threaded=self._on_workers(x.shape[0], parts, *kinds))
        return out

    def gram_rows(self, indices: np.ndarray) -> np.ndarray:
        """``Fᵀ f_j`` for each ``j`` of ``indices``: ``(B,)`` indices to ``(B, N)`` rows.

        Row ``b`` holds the inner products of codeword ``indices[b]`` with every
        codeword, each the exact (float64) value rounded once to float32: what greedy
        decoders subtract from their correlations when they take a codeword away.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        picked = self._base_rows(idx)
        out = np.empty((idx.size, self.n), dtype=np.float32)
        factor = self.scale * self.scale

        def part(piece: tuple[int, int, int]) -> None:
            block, lo, hi = piece
            start = block * self.block_width
            product = picked @ self._block_values(block, np.float64, lo, hi).T
            product *= factor
            out[:, start + lo:start + hi] = product

        parts = self._parts(idx.size)
        parallel.run_parts(part, parts, threaded=self._on_workers(idx.size, parts, np.float64))
        return out

    def subtract_gram_rows(self, correlations: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """A greedy step: ``correlations[b] −= Fᵀ f_j`` for ``j = indices[b]``, in place, and
        each row's largest entry after it.

        ``correlations`` is a writable, C-contiguous float64 ``(B, N)`` array; what is
        subtracted is :meth:`gram_rows` ``(indices)`` (float32, widened), so the result is
        exactly ``correlations -= gram_rows(indices)``. Returns ``(B,)`` int64 column
        indices: each row's first maximal entry, NaN never picked (0 where no entry
        exceeds −∞). A dictionary may do it in one pass without making the Gram rows (a
        Rademacher dictionary counts them on its sign bits as it subtracts them).
        """
        idx = self._step_indices(correlations, indices)
        return subtract_and_pick(correlations, self.gram_rows(idx))

    def _step_indices(self, correlations: np.ndarray, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if (not isinstance(correlations, np.ndarray) or correlations.dtype != np.float64
                or correlations.shape != (idx.size, self.n) or not correlations.flags.c_contiguous
                or not correlations.flags.writeable):
            raise ValueError(f"correlations must be a writable, C-contiguous float64 array of shape "
                             f"({idx.size}, {self.n}), one row per index, not "
                             f"{getattr(correlations, 'dtype', type(correlations).__name__)} "
                             f"{np.shape(correlations)}")
        return idx

    def remove(self, signals: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``x_b − f_{indices[b]}`` for each row, as float32, rounded once.

        Rows on a lattice dictionary's lattice stay on it exactly (the integer
        coordinates lose the codeword's signs), so unit-step greedy decoders keep
        ``correlate``'s exact arithmetic from step to step.
        """
        x = self._as_batch(signals, self.d, "signals")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size != x.shape[0]:
            raise ValueError(f"remove needs one index per signal, not {idx.size} for {x.shape[0]}")
        base = self._base_rows(idx)
        exact, integers, factors, _ = self._integer_rows(x)
        on_lattice = factors > 0  # among the exact rows, those on the lattice (not a grid)
        out = (x - base * self.scale).astype(np.float32)
        if on_lattice.any():
            assert self.lattice_scale is not None
            rows = np.flatnonzero(exact)[on_lattice]
            moved = integers[on_lattice].astype(np.float64) - base[rows]
            out[rows] = (moved * self.lattice_scale).astype(np.float32)
        return out

    def _counted_products(self, integers: np.ndarray, factors: np.ndarray) -> np.ndarray | None:
        """The products of rows that are all exact, counted some faster way than the
        float32 product, or None: a dictionary that keeps sign bits counts them on the
        bits (``RademacherDictionary``)."""
        return None

    def _counted_syntheses(self, integers: np.ndarray) -> np.ndarray | None:
        """``integers @ base`` for rows of integers, ``(R, N)`` to ``(R, d)``, counted
        exactly some faster way than the float32 product, or None (as
        :meth:`_counted_products` for ``correlate``)."""
        return None

    def _integer_rows(self, x: np.ndarray, lattice: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rows of ``x`` a lattice dictionary multiplies in float32: their mask, their
        integers (float32), what each integer product is divided by (``d``, for rows on
        the lattice) or, as a negative number, multiplied by, and the grid rows' steps.

        A row on the lattice is ``s·m`` rounded to float32 (see ``correlate``). A row on
        the power-of-two grid of :func:`grid_steps` (every entry a multiple of ``h``,
        ``2^-23`` of the row's L1 norm) is ``h·m`` exactly with ``Σ|m| ≤ 2^24``; its
        product ``h·Σ base·m`` times ``s`` is the float64 path's result to the bit.
        """
        if self.lattice_scale is None or x.shape[0] == 0:
            return (np.zeros(x.shape[0], dtype=bool), np.empty((0, x.shape[1]), dtype=np.float32),
                    np.empty(0), np.empty(0))
        integers, factors, steps = integer_rows(x, self.lattice_scale, self.d, lattice)
        mask = factors != 0.0
        if mask.all():  # the usual case: no copy of the integers
            return mask, integers, factors, steps
        return mask, np.ascontiguousarray(integers[mask]), factors[mask], steps[mask]

    def _unpacked_pieces(self, block: int, dtype: type, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Columns ``[lo, hi)`` of ``block`` in pieces whose numbers stay in a core's cache
        while they are used (``UNPACKED_PIECE_BYTES``, at least 64 columns) where they are
        unpacked for each product, or in one piece where they are kept."""
        if not self.unpacks or (block, np.dtype(dtype).char) in self._cache:
            yield lo, hi
            return
        step = max(64, UNPACKED_PIECE_BYTES // (np.dtype(dtype).itemsize * self.d) // 64 * 64)
        for first in range(lo, hi, step):
            yield first, min(hi, first + step)

    def _parts(self, rows: int) -> list[tuple[int, int, int]]:
        """``(block, lo, hi)`` column ranges of a product with ``rows`` rows, for the
        workers: the column blocks, and a lone block cut in ``SPLIT_PIECES`` when the
        product is large. The cut depends on the sizes alone, never on the number of
        workers, so sums that are not exact (Gaussian or loaded dictionaries) are formed
        the same way by one worker or many."""
        parts: list[tuple[int, int, int]] = []
        for block in range(self.n_blocks):
            start, stop = self.block_range(block)
            width = stop - start
            pieces = 1
            if self.n_blocks == 1 and rows * self.d * width >= parallel.PARALLEL_WORK:
                pieces = SPLIT_PIECES
            if self.unpacks:
                pieces = max(pieces, -(-width * self.d * 8 // SCRATCH_BYTES))
            parts.extend((block, lo, hi) for lo, hi in parallel.split(width, pieces))
        return parts

    def synthesize(self, coefficients: np.ndarray) -> np.ndarray:
        """``F @ Y`` for a batch: ``(B, N)`` coefficients to ``(B, d)`` signals.

        Sparse coefficients (at most 1 in 128 non-zero, as iterative decoders' estimates
        mostly are) are summed codeword by codeword instead of by a dense product.
        """
        # float32 coefficients are kept as they are (float64 holds the same numbers): a
        # decoder's dense (B, N) estimate is not copied in full to be looked at.
        y = self._as_batch(coefficients, self.n, "coefficients", keep=np.float32)
        if np.count_nonzero(y) * SPARSE_SYNTHESIS <= y.size:
            rows, cols = np.nonzero(y)
            return self._synthesize_sparse(y, rows, cols)
        # Rows on a power-of-two grid (see grid_steps) sum in float32, exactly; the rest
        # in float64. Either way each part's sum is exact for a Rademacher dictionary.
        exact, integers, _, steps = self._integer_rows(y, lattice=False)
        on_grid = np.flatnonzero(exact)
        others = np.flatnonzero(~exact)
        counted = self._counted_syntheses(integers) if on_grid.size else None
        if counted is not None:
            counted = counted.astype(np.float64) * steps[:, None]  # exact: powers of two
            if not others.size:  # every row counted: no product to make
                counted *= self.scale
                return counted.astype(np.float32)
        parts = self._parts(y.shape[0])
        partial = np.zeros((len(parts), y.shape[0], self.d), dtype=np.float64)
        rest = np.asarray(y[others] if on_grid.size else y, dtype=np.float64)
        by_parts = on_grid.size > 0 and counted is None  # grid rows' products made part by part
        if counted is not None:  # the grid rows' exact sums; the others' products below
            partial[0, on_grid] = counted

        def part(number: int) -> None:
            block, lo, hi = parts[number]
            start = block * self.block_width
            if by_parts:
                piece32 = integers[:, start + lo:start + hi]
                if piece32.any():
                    product = piece32 @ self._block_values(block, np.float32, lo, hi)
                    partial[number, on_grid] = product * steps[:, None]  # exact: powers of two
            if rest.shape[0]:
                piece = rest[:, start + lo:start + hi]
                if piece.any():
                    values = self._block_values(block, np.float64, lo, hi)
                    if on_grid.size:
                        partial[number, others] = piece @ values
                    else:
                        np.matmul(piece, values, out=partial[number])

        kinds = ([np.float32] if by_parts else []) + ([np.float64] if rest.shape[0] else [])
        parallel.run_parts(part, range(len(parts)), threaded=self._on_workers(y.shape[0], parts, *kinds))
        total = partial[0].copy() if parts else np.zeros((y.shape[0], self.d))
        for number in range(1, len(parts)):
            total += partial[number]
        total *= self.scale
        return total.astype(np.float32)

    def _synthesize_sparse(self, y: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.zeros((y.shape[0], self.d), dtype=np.float64)
        if rows.size:
            terms = self._base_rows(cols) * y[rows, cols].astype(np.float64)[:, None]
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            out[rows[starts]] = np.add.reduceat(terms, starts, axis=0)
        out *= self.scale
        return out.astype(np.float32)

    def lipschitz(self) -> float:
        """``‖F‖₂²``, the largest eigenvalue of ``FᵀF``, by power iteration (cached).

        The step size of proximal-gradient decoders is ``1 / lipschitz()``. Power
        iteration approaches from below, slowly when the top singular values crowd
        together (as for random dictionaries), so 5% is added: the result is an upper
        bound in practice, and a step never overshoots. The start vector is fixed, so
        the value is the same on every call.
        """
        if self._lipschitz is None:
            vector = standard_normal(stream(0, STREAM_POWER_ITERATION), self.n)[None, :]
            value = 0.0
            for _ in range(POWER_ITERATIONS):
                vector = vector / np.linalg.norm(vector)
                # On the grid (see grid_steps): exact products, in float32 where they can be.
                image = self.synthesize(snap_to_grid(vector, grid_steps(vector))).astype(np.float64)
                value = float(np.sum(image * image))
                vector = self.correlate(snap_to_grid(image, grid_steps(image))).astype(np.float64)
            self._lipschitz = 1.05 * value
        return self._lipschitz

    def columns(self, indices: np.ndarray) -> np.ndarray:
        """The codewords ``F[:, indices]`` as a ``(d, len(indices))`` array."""
        return self._columns64(indices).astype(np.float32)

    def superpose(self, subsets: np.ndarray, noise: np.ndarray | None = None,
                  sigma: float = 0.0) -> np.ndarray:
        """Signals ``x = offset + Σ_{i∈Y} f_i + σ z`` for each row ``Y`` of ``subsets``, as
        float32 (summed in float64, rounded once); ``offset`` is zero unless the dictionary
        has one (see :attr:`offset`)."""
        subsets = np.asarray(subsets, dtype=np.int64)
        x = self._base_sums(subsets) * self.scale
        if self.offset is not None:
            x = x + self.offset.astype(np.float64)
        if sigma and noise is not None:
            x = x + sigma * noise
        return np.ascontiguousarray(x, dtype=np.float32)

    def _base_sums(self, subsets: np.ndarray) -> np.ndarray:
        """``Σ_{i∈Y}`` of the base values of the codewords of each row ``Y`` of ``subsets``
        (``(B, k)``), in float64: ``(B, d)``."""
        rows = self._base_rows(subsets.reshape(-1))
        return rows.reshape(subsets.shape[0], subsets.shape[1], self.d).sum(axis=1)

    def subtract_offset(self, signals: np.ndarray) -> np.ndarray:
        """``signals`` less :attr:`offset`: what the codewords themselves add up to.

        Without an offset the signals are returned as they are (the same array). With
        one, the difference is taken in float64, where the difference of two float32
        numbers is exact, so nothing is rounded that the signal did not already hold.
        A decoder that reads codewords out of a signal calls this first.
        """
        if self.offset is None:
            return signals
        return np.asarray(signals, dtype=np.float64) - self.offset.astype(np.float64)

    def norms(self) -> np.ndarray:
        """The Euclidean norms of the codewords (all 1 up to rounding)."""
        out = np.empty(self.n, dtype=np.float32)
        for block in range(self.n_blocks):
            start, stop = self.block_range(block)
            out[start:stop] = np.linalg.norm(self._codewords(block), axis=1) * self.scale
        return out

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, F[:, start:start+width])`` for every column block, as float32."""
        for block in range(self.n_blocks):
            start, _ = self.block_range(block)
            yield start, (self._codewords(block).T * self.scale).astype(np.float32)

    def nbytes_dense(self) -> int:
        """Bytes of a float32 dense copy."""
        return self.d * self.n * 4

    def dense(self, max_bytes: int = DEFAULT_DENSE_BYTES) -> np.ndarray:
        """The whole matrix as float32 ``(d, N)``, if it fits in ``max_bytes``."""
        need = self.nbytes_dense()
        if need > max_bytes:
            raise DictionaryTooLarge(
                f"a dense {self.d} × {self.n} dictionary needs {need / 2**30:.2f} GiB, "
                f"more than the {max_bytes / 2**30:.2f} GiB allowed; use the operator's "
                "correlate() and blocks() instead."
            )
        out = np.empty((self.d, self.n), dtype=np.float32)
        for start, block in self.blocks():
            out[:, start:start + block.shape[1]] = block
        return out

    # -- internals ------------------------------------------------------------------

    def _codewords(self, block: int) -> np.ndarray:
        return self._cached(block, lambda: self._make_block(block))

    def _cached(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The array cached under ``key``, or made by ``make`` (and kept if it fits)."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        values = make()
        self._keep(key, values)
        return values

    def _keep(self, key: Hashable, values: np.ndarray) -> bool:
        """Cache ``values`` under ``key`` if the budget allows; whether it is cached."""
        with self._cache_lock:
            if key in self._cache:
                return True
            if self._cached_bytes + values.nbytes > self._cache_bytes:
                return False
            values.flags.writeable = False  # shared by every later product: nobody may change it
            self._cache[key] = values
            self._cached_bytes += values.nbytes
            return True

    def _on_workers(self, rows: int, parts: Sequence[tuple[int, int, int]], *dtypes: type) -> bool:
        """Whether the parts of a product with ``rows`` rows go to the workers: when their
        blocks must be made first, or when each is large enough (``WORKER_PART_WORK``) that
        handing it over costs nothing beside it. Small parts already in memory run one
        after another on the calling thread, BLAS spreading each over the cores. Large
        ones do not: OpenBLAS's threads spin for a while after each call (up to 2^28
        cycles by default), taking the cores from the compiled kernels that come next."""
        if not self._ready(*dtypes):
            return True
        largest = max((hi - lo for _, lo, hi in parts), default=0)
        return rows * self.d * largest >= WORKER_PART_WORK

    def _ready(self, *dtypes: type) -> bool:
        """Whether every block's values are in memory as ``dtypes`` (then small products run
        on the calling thread with a multi-threaded BLAS instead of on the workers)."""
        return all(block in self._cache for block in range(self.n_blocks))

    def _block_values(self, block: int, dtype: type, lo: int, hi: int) -> np.ndarray:
        """The base values of codewords ``lo … hi-1`` of column block ``block`` as
        ``dtype`` (float64, or float32 for a lattice dictionary), codewords as rows;
        valid until this thread's next call."""
        return self._codewords(block)[lo:hi]

    def _columns64(self, indices: np.ndarray) -> np.ndarray:
        return self._base_rows(indices).T * self.scale

    def _base_rows(self, indices: np.ndarray) -> np.ndarray:
        """The base values of the codewords ``indices``, one per row: ``(m, d)``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"codeword index out of range [0, {self.n})")
        if self.n_blocks == 1:
            return self._codewords(0)[idx]
        out = np.empty((idx.size, self.d), dtype=np.float64)
        owner = idx // self.block_width
        for block in np.unique(owner):
            where = np.flatnonzero(owner == block)
            start, _ = self.block_range(int(block))
            out[where] = self._codewords(int(block))[idx[where] - start]
        return out

    @staticmethod
    def _as_batch(values: np.ndarray, width: int, name: str, keep: type | None = None) -> np.ndarray:
        """``values`` as a C-contiguous ``(B, width)`` float64 array (one signal: ``B = 1``),
        or left in its type if that is ``keep``."""
        array = np.asarray(values)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"{name} must have shape (B, {width}), not {np.shape(values)}")
        return np.ascontiguousarray(array, dtype=array.dtype if array.dtype == keep else np.float64)


class GeneratedDictionary(Dictionary):
    """A random dictionary of a problem's draw, made block by block and nested in ``d``.

    Entry ``(r, c)`` comes from the stream keyed by (seed, draw, ``r // 64``,
    ``c // block_width``) alone, so any block can be made again anywhere, in any order.
    """

    def __init__(self, d: int, n: int, seed: int, draw: int, **options: int) -> None:
        super().__init__(d, n, **options)
        self.seed = seed
        self.draw = draw

    @abstractmethod
    def _entries(self, bitgen: np.random.Philox, count: int) -> np.ndarray:
        """``count`` raw entries, row-major over one block of 64 rows."""

    def _finish(self, codewords: np.ndarray) -> np.ndarray:
        """The base values of a block from its raw entries, one codeword per row."""
        return codewords

    def _row_streams(self, block: int) -> Iterator[tuple[int, int, np.random.Philox]]:
        """``(first row, rows, stream)`` of each 64-row block of column block ``block``."""
        for row_block in range((self.d + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK):
            row0 = row_block * ROWS_PER_BLOCK
            rows = min(ROWS_PER_BLOCK, self.d - row0)
            yield row0, rows, stream(self.seed, STREAM_DICTIONARY, self.draw, row_block, block)

    def _make_block(self, block: int) -> np.ndarray:
        start, stop = self.block_range(block)
        rows = []
        for _, count, bitgen in self._row_streams(block):
            entries = self._entries(bitgen, ROWS_PER_BLOCK * self.block_width)
            rows.append(entries.reshape(ROWS_PER_BLOCK, self.block_width)[:count])
        entries = np.concatenate(rows)[:, : stop - start]
        return self._finish(np.ascontiguousarray(entries.T))


class RademacherDictionary(GeneratedDictionary):
    """Entries ``±1/√d``, independent and fair (docs/contract.md §1); the base values are the signs.

    Column blocks are kept as sign bits, codeword by codeword (bit ``r`` of word
    ``r // 64``; 1 is −1): ``d/8`` bytes a codeword, so the packed dictionary at
    ``N = 2^20, d = 4096`` takes 512 MiB where float32 would take 16 GiB. Blocks of
    numbers are unpacked from the bits when a product needs them, into a buffer of each
    worker's own unless the cache has room to keep them. Inner products between
    codewords (``gram_rows``) are counted on the bits directly.
    """

    def __init__(self, d: int, n: int, seed: int, draw: int, **options: int) -> None:
        super().__init__(d, n, seed, draw, **options)
        self._scratch = threading.local()
        #: Every codeword's sign bits in one ``(N, words)`` array, column blocks as its
        #: slices, when they fit in the cache: made all at once on first use, in
        #: parallel, and kernels then run over all ``N`` in one call.
        self._bits: np.ndarray | None = None
        self._bits_complete = False  # every block made into ``_bits`` and cached
        self._bits_lock = threading.Lock()

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.d)

    @property
    def lattice_scale(self) -> float:  # type: ignore[override]
        return self.scale

    @property
    def words(self) -> int:
        """64-bit words of sign bits per codeword."""
        return (self.d + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK

    def packed_bytes(self) -> int:
        """Bytes of the whole dictionary as sign bits."""
        return self.n * self.words * 8

    def _entries(self, bitgen: np.random.Philox, count: int) -> np.ndarray:
        return random_bits(bitgen, count)

    def _finish(self, codewords: np.ndarray) -> np.ndarray:
        return np.where(codewords.astype(bool), -1.0, 1.0)

    def _packed(self, block: int) -> np.ndarray:
        """Column block ``block`` as sign bits: ``(width, words)`` uint64."""
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        if self._make_bits():
            cached = self._cache.get(block)
            if cached is not None:
                return cached
        return self._cached(block, lambda: self._make_packed(block))

    def _make_bits(self) -> bool:
        """Make every block not made yet into the one array of bits, if it fits in the
        cache; whether it does. Blocks whose width fills whole words are made by one
        compiled kernel on all cores (the same words as the streams of
        :meth:`_make_packed`, which makes the others)."""
        if self._bits_complete:
            return True
        if self.packed_bytes() > self._cache_bytes:
            return False
        with self._bits_lock:
            if self._bits is None:
                self._bits = _KEPT.empty((self.n, self.words), np.uint64)
            missing = [block for block in range(self.n_blocks) if block not in self._cache]
            if missing and self.block_width % ROWS_PER_BLOCK == 0:
                prefix = stream_entropy(self.seed, STREAM_DICTIONARY, self.draw)
                make_sign_blocks(prefix, np.array(missing), self.d, self.block_width, self._bits)
            for block in missing:
                start, stop = self.block_range(block)
                if self.block_width % ROWS_PER_BLOCK:
                    self._make_packed(block, self._bits[start:stop])
                self._keep(block, self._bits[start:stop])
            self._bits_complete = all(block in self._cache for block in range(self.n_blocks))
        return True

    def _all_packed(self) -> np.ndarray | None:
        """The sign bits of every codeword as one ``(N, words)`` array, or None when they
        do not fit in the cache."""
        return self._bits if self._make_bits() and self._bits_complete else None

    def _parts(self, rows: int) -> list[tuple[int, int, int]]:
        # Make the bits here, on the calling thread, before workers take the parts.
        self._make_bits()
        return super()._parts(rows)

    def _make_packed(self, block: int, out: np.ndarray | None = None) -> np.ndarray:
        """Make column block ``block``'s sign bits, into ``out`` when given (every word of
        it is written)."""
        start, stop = self.block_range(block)
        width = stop - start
        if out is None:
            out = np.empty((width, self.words), dtype=np.uint64)
        for row0, rows, bitgen in self._row_streams(block):
            raw = bitgen.random_raw(ROWS_PER_BLOCK * self.block_width // 64)
            word = row0 // ROWS_PER_BLOCK
            if self.block_width % 64 == 0:
                pack_signs(raw, out, word, rows, self.block_width)
            else:  # the same bits, the slow way, for widths that do not fill words
                bits = np.unpackbits(raw.astype("<u8").view(np.uint8), bitorder="little")
                columns = bits.reshape(ROWS_PER_BLOCK, self.block_width)[:rows, :width].T
                padded = np.zeros((width, ROWS_PER_BLOCK), dtype=np.uint8)
                padded[:, :rows] = columns
                out[:, word] = np.packbits(padded, axis=1, bitorder="little").view("<u8")[:, 0]
        return out

    def _make_block(self, block: int) -> np.ndarray:
        packed = self._packed(block)
        return unpack_codewords(packed, self.d, np.empty((packed.shape[0], self.d), dtype=np.float64))

    unpacks = True

    def _ready(self, *dtypes: type) -> bool:
        return all((block, np.dtype(kind).char) in self._cache
                   for kind in dtypes for block in range(self.n_blocks))

    def _codewords(self, block: int) -> np.ndarray:
        start, stop = self.block_range(block)
        return self._block_values(block, np.float64, 0, stop - start)

    def _block_values(self, block: int, dtype: type, lo: int, hi: int) -> np.ndarray:
        kind = np.dtype(dtype)
        key = (block, kind.char)
        cached = self._cache.get(key)
        if cached is not None:
            return cached[lo:hi]
        packed = self._packed(block)
        width = packed.shape[0]
        # Numbers are kept only when all of them fit beside the bits: a product passes
        # over every block, so keeping some of them would save little and fill memory.
        if self.packed_bytes() + self.n * self.d * kind.itemsize <= self._cache_bytes:
            values = unpack_codewords(packed, self.d, np.empty((width, self.d), dtype=kind))
            self._keep(key, values)
            return values[lo:hi]
        buffer = getattr(self._scratch, kind.char, None)
        if buffer is None or buffer.shape[0] < hi - lo:
            buffer = np.empty((hi - lo, self.d), dtype=kind)
            setattr(self._scratch, kind.char, buffer)
        return unpack_codewords(packed[lo:hi], self.d, buffer[:hi - lo])

    def _packed_rows(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"codeword index out of range [0, {self.n})")
        bits = self._all_packed()
        if bits is not None:
            return bits[idx]
        out = np.empty((idx.size, self.words), dtype=np.uint64)
        owner = idx // self.block_width
        for block in np.unique(owner):
            where = np.flatnonzero(owner == block)
            out[where] = self._packed(int(block))[idx[where] - int(block) * self.block_width]
        return out

    def _base_rows(self, indices: np.ndarray) -> np.ndarray:
        packed = self._packed_rows(indices)
        return unpack_codewords(packed, self.d, np.empty((packed.shape[0], self.d), dtype=np.float64))

    def _base_sums(self, subsets: np.ndarray) -> np.ndarray:
        # Counted on the sign bits: the same integers as adding the unpacked rows.
        if subsets.ndim != 2 or subsets.shape[1] == 0:
            return super()._base_sums(subsets)
        return sign_sums(self._packed_rows(subsets.reshape(-1)), subsets.shape[1], self.d)

    def _counted_products(self, integers: np.ndarray, factors: np.ndarray) -> np.ndarray | None:
        """Up to ``LOOKUP_MAX_ROWS`` exact rows, from ``LOOKUP_MIN_CODEWORDS`` codewords on,
        with the sign bits all in memory: the integer products counted on the bits by table
        look-up (:func:`kernels.lattice_products`), the same exact sums as the float32
        product of the unpacked signs, so the same numbers, without unpacking."""
        if not 0 < integers.shape[0] <= LOOKUP_MAX_ROWS or self.n < LOOKUP_MIN_CODEWORDS or \
                self.packed_bytes() > self._cache_bytes:
            return None
        bits = self._all_packed()
        return None if bits is None else lattice_products(bits, integers, self.d, factors)

    def _synthesize_sparse(self, y: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # The same sums as the base class's, term by term on the bits: no (terms, d) array
        # of numbers (1.6 GB for AMP's estimates of 32 signals at N = 2^20, d = 788).
        out = np.zeros((y.shape[0], self.d), dtype=np.float64)
        if rows.size:
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            bounds = np.append(starts, rows.size)
            out[rows[starts]] = signed_sums(self._packed_rows(cols), bounds, y[rows, cols], self.d)
            if not np.isfinite(out).all():
                # An overflow, an infinity or a NaN: the general path, which reports it as
                # NumPy does (np.errstate) and gives its NaNs' bits.
                return super()._synthesize_sparse(y, rows, cols)
        out *= self.scale
        return out.astype(np.float32)

    def _counted_syntheses(self, integers: np.ndarray) -> np.ndarray | None:
        """Up to ``SYNTHESIS_LOOKUP_MAX_ROWS`` rows of integers, from ``LOOKUP_MIN_CODEWORDS``
        codewords and ``SYNTHESIS_LOOKUP_MIN_D`` dimensions on, with the sign bits all in
        memory: their sums over the codewords counted on the bits by table look-up
        (:func:`kernels.lattice_syntheses`), exactly, without unpacking."""
        if not 0 < integers.shape[0] <= SYNTHESIS_LOOKUP_MAX_ROWS or self.n < LOOKUP_MIN_CODEWORDS or \
                self.d < SYNTHESIS_LOOKUP_MIN_D or self.packed_bytes() > self._cache_bytes:
            return None
        bits = self._all_packed()
        return None if bits is None else lattice_syntheses(bits, integers, self.d)

    def gram_rows(self, indices: np.ndarray) -> np.ndarray:
        """As :meth:`Dictionary.gram_rows`, counted on the sign bits: ``⟨f_i, f_j⟩`` is
        ``(d − 2·popcount(bits_i XOR bits_j)) / d``, exact before its one rounding."""
        picks = np.ascontiguousarray(self._packed_rows(indices).T)
        out = np.empty((picks.shape[1], self.n), dtype=np.float32)
        bits = self._all_packed()
        if bits is not None:  # one pass over all N: one parallel region, not one per block
            sign_products(bits, picks, self.d, out, 0)
            return out
        for block in range(self.n_blocks):
            sign_products(self._packed(block), picks, self.d, out, block * self.block_width)
        return out

    def subtract_gram_rows(self, correlations: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """As :meth:`Dictionary.subtract_gram_rows`; when the sign bits fit in the cache,
        the Gram rows are counted and subtracted in one pass over them, never stored."""
        idx = self._step_indices(correlations, indices)
        bits = self._all_packed()
        if bits is None:
            return super().subtract_gram_rows(correlations, idx)
        return subtract_sign_products(bits, self._packed_rows(idx).T, self.d, correlations)


class GaussianDictionary(GeneratedDictionary):
    """Independent N(0, 1) entries, each column scaled to unit norm (nested before scaling)."""

    @property
    def scale(self) -> float:
        return 1.0

    def _entries(self, bitgen: np.random.Philox, count: int) -> np.ndarray:
        return standard_normal(bitgen, count)

    def _finish(self, codewords: np.ndarray) -> np.ndarray:
        return codewords / np.linalg.norm(codewords, axis=1, keepdims=True)


class MatrixDictionary(Dictionary):
    """A dictionary given as a matrix; its columns are normalised to unit norm.

    ``offset`` (a ``(d,)`` vector, an SAE's ``b_dec``) is added to every signal
    :meth:`superpose` makes; see :attr:`Dictionary.offset`.
    """

    def __init__(self, matrix: np.ndarray, offset: np.ndarray | None = None, **options: int) -> None:
        values = np.asarray(matrix, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"a dictionary matrix must be 2-D (d × N), not {values.ndim}-D")
        if not np.all(np.isfinite(values)):
            raise ValueError("a dictionary matrix must not contain NaN or infinite values")
        norms = np.linalg.norm(values, axis=0)
        if np.any(norms == 0):
            raise ValueError(f"dictionary column {int(np.argmin(norms))} is zero and cannot be normalised")
        super().__init__(values.shape[0], values.shape[1], **options)
        #: The norms of the matrix's columns as given, before they were normalised.
        self.given_norms = norms
        self.given_norms.flags.writeable = False
        self._rows = np.ascontiguousarray((values / norms).T)
        self._rows.flags.writeable = False  # one matrix serves every decoder of a sweep
        if offset is not None:
            shift = np.array(offset, dtype=np.float32)
            if shift.shape != (self.d,) or not np.all(np.isfinite(shift)):
                raise ValueError(f"a dictionary's offset must be a finite vector of length d = {self.d}, "
                                 f"not of shape {shift.shape}")
            shift.flags.writeable = False
            self.offset = shift

    @property
    def scale(self) -> float:
        return 1.0

    def _make_block(self, block: int) -> np.ndarray:
        start, stop = self.block_range(block)
        return self._rows[start:stop]


def generated_dictionary(problem: Problem, d: int, draw: int, **options: int) -> GeneratedDictionary:
    """The generated dictionary of ``problem`` at dimension ``d`` for draw ``draw``."""
    kinds: dict[str, type[GeneratedDictionary]] = {
        "rademacher": RademacherDictionary, "gaussian": GaussianDictionary}
    return kinds[problem.dictionary](d, problem.n, problem.seed, draw, **options)
