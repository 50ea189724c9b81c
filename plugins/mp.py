"""The paper's matching pursuit with unit steps."""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from superposition_harness import PARALLEL_ENTRIES, Decoder, Dictionary, Register, hookimpl

#: Columns per chunk of the update-and-argmax pass: a chunk's maximum is found without a
#: branch (vectorised), and only a chunk that beats the best so far is scanned for it.
CHUNK = 1024


def _step_body(correlations: np.ndarray, gram: np.ndarray, best: np.ndarray) -> None:  # pragma: no cover
    rows, width = correlations.shape
    for b in prange(rows):
        top = -np.inf
        pick = 0
        for first in range(0, width, CHUNK):
            last = min(width, first + CHUNK)
            high = -np.inf
            for i in range(first, last):
                value = correlations[b, i] - gram[b, i]
                correlations[b, i] = value
                high = max(high, value)
            if high > top:  # the first of ties: a later chunk must be strictly higher
                top = high
                for i in range(first, last):
                    if correlations[b, i] == high:
                        pick = i
                        break
        best[b] = pick


_step_serial = njit(cache=True)(_step_body)
_step_parallel = njit(cache=True, parallel=True)(_step_body)


def subtract_and_pick(correlations: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``correlations -= gram`` in place, and each row's argmax (first of ties), in one pass."""
    best = np.empty(correlations.shape[0], dtype=np.int64)
    step = _step_parallel if correlations.size >= PARALLEL_ENTRIES else _step_serial
    step(correlations, gram, best)
    return best


class MatchingPursuit(Decoder):
    """Unit-step matching pursuit (docs/contract.md §3).

    Start at ``y = 0``; ``k`` times, add 1 to ``y_j`` for
    ``j = argmax_i ⟨f_i, x − F y⟩``; decode the indices with ``y_j > 0``. Because the
    codewords of the standard problem carry unit coefficients, a unit step removes a
    correct codeword exactly; a wrong pick leaves its error in the residual.

    The correlations are computed once, ``c = Fᵀx``, and then updated,
    ``c ← c − Fᵀf_j``, with the dictionary's ``gram_rows`` (on a Rademacher dictionary,
    counted on its sign bits, far cheaper than a product with the residual). In exact
    arithmetic that is the same as correlating the residual; here the float32 terms
    are summed in float64, so values equal in exact arithmetic may differ in their last
    bits, always the same way for the same signal. Ties go to the lower index.
    """

    name = "mp"
    description = "Iterative: k unit steps of matching pursuit on the residual x − F y."
    batch_arrays = 2.5

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        correlations = dictionary.correlate(dictionary.subtract_offset(signals)).astype(np.float64)
        picks = np.empty((correlations.shape[0], k), dtype=np.int64)
        picks[:, 0] = correlations.argmax(axis=1)
        for step in range(1, k):
            picks[:, step] = subtract_and_pick(correlations, dictionary.gram_rows(picks[:, step - 1]))
        return [np.unique(row) for row in picks]


@hookimpl
def register_decoders(register: Register) -> None:
    register(MatchingPursuit)
