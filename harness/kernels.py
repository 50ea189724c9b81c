"""Compiled kernels for what BLAS cannot express: selections (shared with plugin authors),
and the storage of Rademacher dictionaries as sign bits: packing random bits codeword by
codeword, unpacking them into blocks of ±1, and inner products of signs by XOR and
population count."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

#: Below this many entries a selection runs on one thread: waking numba's threads costs
#: more than it saves, and they would fight BLAS's threads still spinning from the last
#: product (measured: 8 ms parallel against about 1 ms serial for 256 × 1024).
PARALLEL_ENTRIES = 1 << 22


@njit(cache=True)
def keep_largest(score: np.ndarray, positions: np.ndarray, limit: int) -> int:  # pragma: no cover
    """Keep the entries with the ``limit`` largest scores, ties to the earlier entry.

    ``positions[t]`` belongs to ``score[t]``; the kept positions are moved, in their
    order, to the front of ``positions``, and their number is returned (fewer than
    ``limit`` when scores are NaN). Compiled; callable from other numba kernels.
    """
    found = score.shape[0]
    if found <= limit:
        return found
    cut = -np.partition(-score, limit - 1)[limit - 1]
    above = 0
    for t in range(found):
        if score[t] > cut:
            above += 1
    ties = limit - above
    taken = 0
    for t in range(found):
        value = score[t]
        if value > cut or (value == cut and ties > 0):
            if value <= cut:
                ties -= 1
            positions[taken] = positions[t]
            taken += 1
    return taken


def _top_k_rows_body(values: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - compiled
    rows, width = values.shape
    out = np.full((rows, k), -1, dtype=np.int64)
    for b in prange(rows):
        positions = np.arange(width)
        taken = keep_largest(values[b], positions, k)
        out[b, :taken] = positions[:taken]
    return out


_top_k_rows_serial = njit(cache=True)(_top_k_rows_body)
_top_k_rows_parallel = njit(parallel=True, cache=True)(_top_k_rows_body)


def top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest entries of each row, as ``(B, k)`` column indices in increasing order.

    Ties at the cut are broken towards the lower index, so the result is a function of
    the row alone. A row with NaN entries may yield fewer than ``k`` indices; the rest
    of its output is ``-1``.
    """
    array = np.ascontiguousarray(values)
    if array.ndim != 2:
        raise ValueError(f"top_k_rows needs a 2-D array, not {array.ndim}-D")
    if not 1 <= k <= array.shape[1]:
        raise ValueError(f"k must lie in [1, {array.shape[1]}], not {k}")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    kernel = _top_k_rows_parallel if array.size >= PARALLEL_ENTRIES else _top_k_rows_serial
    return kernel(array, int(k))


@intrinsic
def _popcount(typingctx, word):  # pragma: no cover - compiled
    """The number of set bits of a uint64, as the processor's population count."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(cache=True, nogil=True)
def _transpose64(a: np.ndarray) -> None:  # pragma: no cover - compiled
    """Transpose the 64 × 64 bit matrix ``a`` in place: bit ``c`` of ``a[r]`` moves to
    bit ``r`` of ``a[c]`` (recursive block swaps, six rounds of masked exchanges)."""
    j = 32
    mask = np.uint64(0x00000000FFFFFFFF)
    while j != 0:
        k = 0
        while k < 64:
            t = ((a[k] >> np.uint64(j)) ^ a[k + j]) & mask
            a[k] ^= t << np.uint64(j)
            a[k + j] ^= t
            k = (k + j + 1) & ~j
        j >>= 1
        mask ^= mask << np.uint64(j)


@njit(cache=True, nogil=True)
def _pack_row_block(words: np.ndarray, packed: np.ndarray, word: int, rows: int,
                    stride: int) -> None:  # pragma: no cover - compiled
    groups = stride // 64
    width = packed.shape[0]
    keep = np.uint64(0xFFFFFFFFFFFFFFFF) if rows == 64 else (np.uint64(1) << np.uint64(rows)) - np.uint64(1)
    tile = np.empty(64, dtype=np.uint64)
    for g in range(groups):
        first = g * 64
        if first >= width:
            break
        for r in range(64):
            tile[r] = words[r * groups + g]
        _transpose64(tile)
        for c in range(min(64, width - first)):
            packed[first + c, word] = tile[c] & keep


def pack_signs(words: np.ndarray, packed: np.ndarray, word: int, rows: int, stride: int) -> None:
    """Store one 64-row block of raw sign bits codeword by codeword.

    ``words`` holds the bits of a ``64 × stride`` block row-major (bit ``r·stride + c``,
    bit ``i`` being bit ``i % 64`` of word ``i // 64``); ``packed[c, word]`` receives the
    bits of rows ``0 … rows-1`` of column ``c`` (bit ``r``), the rows past ``rows``
    cleared. ``stride`` must be a multiple of 64.
    """
    if stride % 64:
        raise ValueError(f"pack_signs needs a stride that is a multiple of 64, not {stride}")
    _pack_row_block(np.ascontiguousarray(words, dtype=np.uint64), packed, int(word), int(rows),
                    int(stride))


@njit(cache=True, nogil=True)
def _unpack_codewords(packed: np.ndarray, d: int, out: np.ndarray) -> None:  # pragma: no cover
    one = out.dtype.type(1.0)
    two = out.dtype.type(2.0)
    for c in range(packed.shape[0]):
        for t in range(packed.shape[1]):
            word = packed[c, t]
            base = t * 64
            for bit in range(min(64, d - base)):
                out[c, base + bit] = one - two * out.dtype.type((word >> np.uint64(bit)) & np.uint64(1))


def unpack_codewords(packed: np.ndarray, d: int, out: np.ndarray) -> np.ndarray:
    """Signs as numbers: ``out[c, r] = −1`` where bit ``r`` of codeword ``c`` is set, else
    ``+1``, for ``r < d``; ``out`` is float32 or float64 of shape ``(len(packed), d)``.
    Releases the GIL, so worker threads can unpack blocks side by side."""
    _unpack_codewords(packed, int(d), out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _sign_products(packed: np.ndarray, picks: np.ndarray, table: np.ndarray, out: np.ndarray,
                   start: int) -> None:  # pragma: no cover - compiled
    width, words = packed.shape
    batch = picks.shape[1]
    tile = 128
    for part in prange((width + tile - 1) // tile):
        first = part * tile
        last = min(width, first + tile)
        counts = np.zeros((last - first, batch), dtype=np.int64)
        for c in range(first, last):
            for t in range(words):
                word = packed[c, t]
                for b in range(batch):
                    counts[c - first, b] += _popcount(word ^ picks[t, b])  # type: ignore[call-arg]
        for b in range(batch):
            for c in range(first, last):
                out[b, start + c] = table[counts[c - first, b]]


def sign_products(packed: np.ndarray, picks: np.ndarray, d: int, out: np.ndarray, start: int) -> None:
    """Normalised inner products of sign vectors, by XOR and population count.

    ``packed`` ``(width, words)`` and ``picks`` ``(words, B)`` (transposed) hold sign
    bits as :func:`pack_signs` stores them, rows past ``d`` cleared; ``out[b, start + c]``
    receives ``(d − 2·popcount(packed[c] XOR picks[:, b])) / d``: the exact inner product
    of the two ±1 vectors over ``d``, rounded once.
    """
    table = ((d - 2 * np.arange(d + 1, dtype=np.float64)) / d).astype(out.dtype)
    _sign_products(packed, np.ascontiguousarray(picks), table, out, int(start))


@njit(cache=True, nogil=True)
def _scale_rows_into(source: np.ndarray, factors: np.ndarray, out: np.ndarray, rows: np.ndarray,
                     start: int) -> None:  # pragma: no cover - compiled
    for r in range(source.shape[0]):
        target = rows[r]
        factor = factors[r]
        if factor > 0.0:
            for c in range(source.shape[1]):
                out[target, start + c] = np.float32(np.float64(source[r, c]) / factor)
        else:
            for c in range(source.shape[1]):
                out[target, start + c] = np.float32(np.float64(source[r, c]) * -factor)


def scale_rows_into(source: np.ndarray, factors: np.ndarray, out: np.ndarray, rows: np.ndarray,
                    start: int) -> None:
    """``out[rows[r], start + c]`` = ``source[r, c]`` divided by ``factors[r]`` when it is
    positive, multiplied by ``−factors[r]`` when it is not: in float64, rounded once to
    ``out``'s float32, in one pass where NumPy would take three."""
    _scale_rows_into(source, np.ascontiguousarray(factors, dtype=np.float64), out,
                     np.ascontiguousarray(rows, dtype=np.int64), int(start))


@njit(cache=True, nogil=True)
def _integer_rows(x: np.ndarray, scale: float, d: int, integers: np.ndarray,
                  factors: np.ndarray, steps: np.ndarray, lattice_too: bool) -> None:  # pragma: no cover
    limit = 2.0**24
    for b in range(x.shape[0]):
        row = x[b]
        # On the lattice: every entry is the float32 rounding of scale·m, m an integer.
        total = 0.0
        lattice = lattice_too
        for r in range(row.shape[0] if lattice_too else 0):
            m = np.rint(row[r] / scale)
            if np.float64(np.float32(m * scale)) != row[r]:
                lattice = False
                break
            integers[b, r] = m
            total += abs(m)
        if lattice and total <= limit:
            factors[b] = d
            continue
        # On a grid: every entry a multiple of the power of two 2^-23 of the L1 norm.
        norm = 0.0
        for r in range(row.shape[0]):
            norm += abs(row[r])
        if norm == 0.0 or not np.isfinite(norm):
            factors[b] = 0.0
            continue
        _, exponent = math.frexp(norm)
        step = math.ldexp(1.0, exponent - 23)
        total = 0.0
        grid = True
        for r in range(row.shape[0]):
            m = row[r] / step
            if m != np.rint(m):
                grid = False
                break
            integers[b, r] = m
            total += abs(m)
        factors[b] = -step * scale if grid and total <= limit else 0.0
        steps[b] = step


def integer_rows(x: np.ndarray, scale: float, d: int,
                 lattice: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``x`` (float64) that a ±1 dictionary with scale ``scale`` multiplies
    exactly in float32: their integers (float32, exact) and a factor per row: ``d`` (on
    the lattice: the integer product is divided by it; looked for only if ``lattice``),
    a negative ``−h·scale`` (on the grid of step ``h``, ``2^-23`` of the row's L1 norm:
    multiplied by ``h·scale``), or 0 (neither; its integers are junk); and the steps
    ``h`` of the rows on the grid."""
    integers = np.zeros(x.shape, dtype=np.float32)
    factors = np.zeros(x.shape[0])
    steps = np.zeros(x.shape[0])
    _integer_rows(np.ascontiguousarray(x, dtype=np.float64), float(scale), int(d), integers, factors,
                  steps, bool(lattice))
    return integers, factors, steps


@njit(cache=True, nogil=True)
def _grid_steps(values: np.ndarray, bits: int, min_exponent: int,
                out: np.ndarray) -> None:  # pragma: no cover - compiled
    for b in range(values.shape[0]):
        norm = 0.0
        for i in range(values.shape[1]):
            norm += abs(np.float64(values[b, i]))
        _, exponent = math.frexp(norm)
        out[b] = math.ldexp(1.0, max(exponent, min_exponent) - bits)


def grid_exponent_steps(values: np.ndarray, bits: int, min_exponent: int) -> np.ndarray:
    """Per row, ``2^(max(e, min_exponent) − bits)`` with ``2^e`` the power of two just above
    the row's L1 norm (``frexp``'s exponent), summed in float64 in index order."""
    out = np.empty(values.shape[0])
    _grid_steps(np.ascontiguousarray(values), int(bits), int(min_exponent), out)
    return out


@njit(cache=True, nogil=True)
def _snap(values: np.ndarray, steps: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    for b in range(values.shape[0]):
        step = steps[b]
        for i in range(values.shape[1]):
            out[b, i] = np.rint(np.float64(values[b, i]) / step) * step


def snap_rows(values: np.ndarray, steps: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[b] = rint(values[b] / steps[b]) · steps[b]`` in float64, stored in ``out``'s type:
    NumPy's three passes in one."""
    _snap(np.ascontiguousarray(values), np.ascontiguousarray(steps, dtype=np.float64), out)
    return out
