"""The top-k decoder: the k codewords most correlated with x."""

from __future__ import annotations

import numpy as np
from superposition_harness import Decoder, Dictionary, Register, hookimpl, top_k_rows


class TopKDecoder(Decoder):
    """``Ŷ`` = the ``k`` indices with the largest ``⟨f_i, x⟩``, the paper's Definition 2.

    Ties at the cut go to the lower index, so the result depends on the signal alone.
    """

    name = "topk"
    description = "One-step: the k codewords with the largest correlation with x (as TopK SAEs)."
    batch_arrays = 1.5

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> np.ndarray:
        return top_k_rows(dictionary.correlate(dictionary.subtract_offset(signals)), k)


@hookimpl
def register_decoders(register: Register) -> None:
    register(TopKDecoder)
