"""A learned encoder beyond one step (an MLP or LISTA, from ``harness train-sae --encoder``), as a decoder."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from superposition_harness import (
    Decoder,
    Dictionary,
    LearnedEncoder,
    MatrixDictionary,
    Param,
    Register,
    hookimpl,
    load_encoder,
    top_k_rows,
)


@lru_cache(maxsize=4)
def _encoder(path: str) -> LearnedEncoder:
    """The encoder of ``path``, read once per process."""
    return load_encoder(path)


class LearnedEncoderDecoder(Decoder):
    """A learned encoder read from its directory (``encoder.json`` + ``encoder.safetensors``).

    Its scores come from the file's MLP or unrolled ISTA (LISTA) on the signal as it is
    (docs/training.md; the forward pass is computed in float64 and rounded once, so a
    score does not depend on the batch). ``Ŷ`` is the ``k`` latents with the largest
    scores (ties to the lower index) where they are positive; an encoder trained with
    ReLU latents (the file's ``activation``) gives every positive score instead. The
    dictionary must be the encoder's own ``W_dec`` (``d × N``): on the fixed-dictionary
    track of the same directory (``--dictionary PATH``, or ``harness gap PATH``) the
    signals are what it was trained on.
    """

    name = "learned"
    description = "Learned (beyond one step): an MLP or LISTA encoder from `harness train-sae --encoder`."
    weights: str

    parameters = (
        Param("weights", str, "", "the encoder's directory, as `harness train-sae --encoder mlp|lista` "
                                  "writes it", path=True),
    )
    any_dictionary = False

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.weights:
            self.encoder()  # a file that cannot be used is refused now, before any run starts

    def encoder(self) -> LearnedEncoder:
        if not self.weights:
            raise ValueError("the learned decoder needs weights=PATH, e.g. --plugin 'learned[weights=PATH]'")
        return _encoder(self.weights)

    def identity(self) -> dict[str, object]:
        """The encoder's files (their SHA-256) and the training that made them, as its records store it."""
        encoder = self.encoder()
        training = encoder.training
        return {"sha256": encoder.sha256(), **({"training": training} if training is not None else {})}

    def own_dictionary(self) -> Dictionary:
        encoder = self.encoder()
        return MatrixDictionary(np.ascontiguousarray(encoder.tensors["W_dec"].T),
                                offset=encoder.tensors["b_dec"])

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        encoder = self.encoder()
        if (dictionary.d, dictionary.n) != (encoder.d_in, encoder.d_sae):
            raise ValueError(f"the encoder in {encoder.path} reads d = {encoder.d_in} and has N = "
                             f"{encoder.d_sae} latents, but the dictionary is "
                             f"{dictionary.d} × {dictionary.n}")
        scores = encoder.scores(signals)
        if encoder.config.get("activation") == "relu":
            return [np.flatnonzero(row > 0) for row in scores]
        picks = top_k_rows(scores, min(k or encoder.k, scores.shape[1]))
        return [row[scores[b, row] > 0] for b, row in enumerate(picks)]


@hookimpl
def register_decoders(register: Register) -> None:
    register(LearnedEncoderDecoder)
