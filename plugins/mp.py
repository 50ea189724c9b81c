"""The paper's matching pursuit with unit steps."""

from __future__ import annotations

import numpy as np
from superposition_harness import Decoder, Dictionary, Register, hookimpl


class MatchingPursuit(Decoder):
    """Unit-step matching pursuit (docs/contract.md §3).

    Start at ``y = 0``; ``k`` times, add 1 to ``y_j`` for
    ``j = argmax_i ⟨f_i, x − F y⟩``; decode the indices with ``y_j > 0``. Because the
    codewords of the standard problem carry unit coefficients, a unit step removes a
    correct codeword exactly; a wrong pick leaves its error in the residual.

    The correlations are computed once, ``c = Fᵀx``, and then updated,
    ``c ← c − Fᵀf_j``, with the dictionary's ``subtract_gram_rows``, which also finds the
    next pick (on a Rademacher dictionary the Gram rows are counted on its sign bits as
    they are subtracted, far cheaper than a product with the residual). In exact
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
            picks[:, step] = dictionary.subtract_gram_rows(correlations, picks[:, step - 1])
        return [np.unique(row) for row in picks]


@hookimpl
def register_decoders(register: Register) -> None:
    register(MatchingPursuit)
