"""The paper's matching pursuit with unit steps."""

from __future__ import annotations

import numpy as np
from superposition_harness import Decoder, Dictionary, hookimpl


class MatchingPursuit(Decoder):
    """Unit-step matching pursuit (SPEC §3).

    Start at ``y = 0``; ``k`` times, add 1 to ``y_j`` for
    ``j = argmax_i ⟨f_i, x − F y⟩``; decode the indices with ``y_j > 0``. Because the
    codewords of the standard problem carry unit coefficients, a unit step removes a
    correct codeword exactly; a wrong pick leaves its error in the residual. Ties go
    to the lower index. All signals of the batch advance together, so each step is one
    matrix product of the batch's residuals with the dictionary.
    """

    name = "mp"
    description = "Iterative: k unit steps of matching pursuit on the residual x − F y."

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        residual = np.array(signals, dtype=np.float32, copy=True)
        picks = np.empty((residual.shape[0], k), dtype=np.int64)
        for step in range(k):
            best = dictionary.correlate(residual).argmax(axis=1)
            picks[:, step] = best
            residual -= dictionary.columns(best).T
        return [np.unique(row) for row in picks]


@hookimpl
def register_decoders(register):
    register(MatchingPursuit)
