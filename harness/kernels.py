"""Compiled kernels for the selections BLAS cannot express, shared with plugin authors."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _top_k_rows(values: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - compiled
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
    return _top_k_rows(array, int(k))
