"""The threshold decoder: every codeword whose correlation with x reaches 1/2."""

from __future__ import annotations

import numpy as np
from superposition_harness import Decoder, Dictionary, Param, Register, hookimpl


class ThresholdDecoder(Decoder):
    """``Ŷ = {i : ⟨f_i, x⟩ ≥ level}``, the paper's Definition 1 with ``level = 1/2``.

    A one-step estimate that does not use ``k``: the decoded set may have any size.
    """

    name = "threshold"
    description = "One-step: every codeword whose correlation with x is at least 1/2."
    batch_arrays = 1.5
    level: float

    parameters = (
        Param("level", float, 0.5, "the correlation a codeword needs to be decoded"),
    )
    needs_k = False

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        correlations = dictionary.correlate(dictionary.subtract_offset(signals))
        return [np.flatnonzero(row >= self.level) for row in correlations]


@hookimpl
def register_decoders(register: Register) -> None:
    register(ThresholdDecoder)
