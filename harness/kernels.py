"""Compiled kernels for what BLAS cannot express: selections (shared with plugin authors)
and the unpacking of random bits into dictionary blocks."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Below this many entries a selection runs on one thread: waking numba's threads costs
#: more than it saves, and they would fight BLAS's threads still spinning from the last
#: product (measured: 8 ms parallel against about 1 ms serial for 256 × 1024).
PARALLEL_ENTRIES = 1 << 22


def _top_k_rows_body(values: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - compiled
    rows, width = values.shape
    out = np.full((rows, k), -1, dtype=np.int64)
    for b in prange(rows):
        row = values[b]
        cut = -np.partition(-row, k - 1)[k - 1]
        above = 0
        for i in range(width):
            if row[i] > cut:
                above += 1
        equal_needed = k - above
        filled = 0
        for i in range(width):
            value = row[i]
            if value > cut:
                out[b, filled] = i
                filled += 1
            elif value == cut and equal_needed > 0:
                out[b, filled] = i
                filled += 1
                equal_needed -= 1
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
