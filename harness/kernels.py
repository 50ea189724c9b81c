"""Compiled kernels for what BLAS cannot express: selections (shared with plugin authors)
and the unpacking of random bits into dictionary blocks."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

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


@njit(cache=True)
def _unpack_signs(words: np.ndarray, out: np.ndarray, row0: int, rows: int,
                  stride: int) -> None:  # pragma: no cover - compiled
    for c in range(out.shape[0]):
        for r in range(rows):
            bit = r * stride + c
            if (words[bit >> 6] >> np.uint64(bit & 63)) & np.uint64(1):
                out[c, row0 + r] = -1.0
            else:
                out[c, row0 + r] = 1.0


def unpack_signs(words: np.ndarray, out: np.ndarray, row0: int, rows: int, stride: int) -> None:
    """Write ±1 from raw 64-bit words into ``out[:, row0:row0+rows]`` (codewords as rows).

    Bit ``r * stride + c`` (bit ``i`` of the stream is bit ``i % 64`` of word
    ``i // 64``) is entry ``(r, c)``: 1 gives −1, 0 gives +1; the same convention as
    :func:`superposition_harness.problem.random_bits` read row-major.
    """
    _unpack_signs(np.ascontiguousarray(words, dtype=np.uint64), out, int(row0), int(rows),
                  int(stride))
