"""An example decoder plugin: top-k refined by parallel interference cancellation."""

from __future__ import annotations

import numpy as np
from superposition_harness import Decoder, Dictionary, Param, Register, hookimpl, top_k_rows


class InterferenceCancellation(Decoder):
    """Top-k, then ``rounds`` rounds of parallel interference cancellation.

    Start from the set ``S`` of the ``k`` codewords most correlated with ``x``. Each
    round subtracts every codeword of ``S`` from ``x`` and scores codeword ``i`` by

        s_i = ⟨f_i, x − Σ_{j∈S} f_j⟩ + [i ∈ S],

    which, for a codeword of ``S``, is its correlation with ``x`` once the *other*
    picks are removed (codewords have unit norm and the standard problem's
    coefficients are 1). The new ``S`` is the top ``k`` of ``s``; ties go to the
    lower index. With ``rounds=0`` this is the top-k decoder. Each round costs one
    product of the whole batch with the dictionary, and every row depends on its own
    signal only.
    """

    name = "pic"
    description = "Top-k refined by rounds of parallel interference cancellation."
    parameters = (
        Param("rounds", int, 1, "cancellation rounds after the first top-k", minimum=0),
    )
    rounds: int  # set from the declaration above; annotated so that type checkers know it

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> np.ndarray:
        picks = top_k_rows(dictionary.correlate(signals), k)
        rows = np.arange(picks.shape[0])[:, None]
        for _ in range(self.rounds):
            residual = signals - dictionary.superpose(picks)
            scores = dictionary.correlate(residual)
            scores[rows, picks] += 1.0
            picks = top_k_rows(scores, k)
        return picks


@hookimpl
def register_decoders(register: Register) -> None:
    register(InterferenceCancellation)
