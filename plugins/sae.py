"""The encoder of a sparse autoencoder loaded from a weight file, as a decoder."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from superposition_harness import (
    Decoder,
    Dictionary,
    MatrixDictionary,
    Param,
    Register,
    SAEWeights,
    hookimpl,
    load_sae,
    top_k_rows,
)


@lru_cache(maxsize=4)
def _weights(path: str, format: str) -> tuple[SAEWeights, np.ndarray]:
    """The weights of ``path`` and their encoder in float64, read once per process."""
    sae = load_sae(path, None if format == "auto" else format)  # type: ignore[arg-type]
    return sae, sae.W_enc.astype(np.float64)


def matching_pursuit_codes(x: np.ndarray, W_dec: np.ndarray, residual_threshold: float,
                           max_iterations: int | None = None,
                           stop_on_duplicate_support: bool = True) -> np.ndarray:
    """The latents SAELens' matching-pursuit SAE computes for the rows of ``x`` (already
    centred by ``b_dec`` where the SAE applies it), in float64.

    Each step picks, for every row not yet done, the latent whose decoder row has the
    largest positive inner product with the residual (the first of ties; latent 0 when
    none is positive), adds that product (clipped at 0) to the latent and subtracts that
    multiple of the row from the residual. A row is done when a step leaves its support
    (the non-zero latents) as it was, if ``stop_on_duplicate_support``, or when its
    residual's norm falls below ``residual_threshold`` (if that is positive); at most
    ``max_iterations`` steps (None: ``d_in``).
    """
    residual = np.array(x, dtype=np.float64, ndmin=2)
    rows = np.asarray(W_dec, dtype=np.float64)
    batch = residual.shape[0]
    codes = np.zeros((batch, rows.shape[0]))
    support = np.zeros((batch, rows.shape[0]), dtype=bool)
    done = np.zeros(batch, dtype=bool)
    steps = rows.shape[1] if max_iterations is None else max_iterations
    everyone = np.arange(batch)
    for _ in range(steps):
        picks = np.maximum(residual @ rows.T, 0.0).argmax(axis=1)
        chosen = rows[picks]
        values = np.maximum(np.einsum("bi,bi->b", residual, chosen), 0.0)
        values[done] = 0.0
        codes[everyone, picks] += values
        residual -= values[:, None] * chosen
        now = codes != 0
        if stop_on_duplicate_support:
            done |= (now == support).all(axis=1)
        support = now
        if residual_threshold > 0:
            done |= np.linalg.norm(residual, axis=1) < residual_threshold
        if done.all():
            break
    return codes


class SparseAutoencoderEncoder(Decoder):
    """A sparse-autoencoder encoder read from weights (docs/contract.md §3).

    ``pre = (x − b_dec·a) W_enc + b_enc`` with ``a`` the file's apply-b_dec-to-input flag,
    then the file's activation: ReLU (``pre > 0``), JumpReLU (``pre > threshold`` and
    ``pre > 0``), TopK (the file's ``k`` largest entries of ``pre``, ties to the lower
    index, kept where positive) or gated (``pre > 0`` with ``b_enc`` the gate's bias, and
    a positive magnitude ``(x − b_dec·a)(W_enc·exp(r_mag)) + b_mag``). A SAELens
    matching-pursuit SAE runs its own iterative encoder with its own stopping rule
    (:func:`matching_pursuit_codes`). ``Ŷ`` is the set of non-zero latents. A TopK
    encoder keeps the problem's ``k`` latents by default (``topk=file`` keeps the file's
    ``k``, which can only ever succeed at that one ``k``); the other encoders ignore
    ``k``. The encoder reads the signal as it is, in the SAE's own frame: on the
    fixed-dictionary track of the same file (``--dictionary PATH``, its natural problem)
    every signal is ``b_dec + Σ f_i``, so the encoder sees what it was trained on and,
    unlike the other decoders, does not subtract the dictionary's offset itself. The
    dictionary must have the SAE's shape ``d_in × d_sae``.
    """

    name = "sae"
    description = "One-step (learned): a sparse-autoencoder encoder loaded from a weight file."
    weights: str
    format: str
    topk: str

    parameters = (
        Param("weights", str, "", "the SAE weight file or directory (SAELens, sparsify, "
                                  "Gemma Scope, or a plain .npz/.safetensors with a sidecar)", path=True),
        Param("format", str, "auto", "the weight format; auto detects it",
              choices=("auto", "saelens", "sparsify", "gemmascope", "plain")),
        Param("topk", str, "problem", "TopK SAEs: keep the problem's k latents (so the encoder "
                                      "is measured at every k) or the file's own k",
              choices=("problem", "file")),
    )
    # needs_k: a TopK SAE keeps the problem's k latents by default (topk = "problem").
    any_dictionary = False

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.weights:
            self._loaded()  # a weight file that cannot be used is refused now, before any run starts

    def weights_file(self) -> SAEWeights:
        """The loaded weights (read once per process and path)."""
        return self._loaded()[0]

    def identity(self) -> dict[str, object] | None:
        """The weights' files (their SHA-256) and, for an SAE from ``harness train-sae``, the
        training that made them, as its records store it; None before weights are given."""
        if not self.weights:
            return None
        sae = self.weights_file()
        return {"sha256": sae.sha256(), **({"training": sae.training} if sae.training is not None else {})}

    def own_dictionary(self) -> Dictionary:
        """The SAE's decoder matrix as a dictionary, with its ``b_dec`` as the offset of
        every signal: the activations this encoder was trained to read."""
        weights = self.weights_file()
        return MatrixDictionary(weights.decoder_matrix(), offset=weights.b_dec)

    def _loaded(self) -> tuple[SAEWeights, np.ndarray]:
        if not self.weights:
            raise ValueError("the sae decoder needs weights=PATH, e.g. --plugin 'sae[weights=PATH]'")
        return _weights(self.weights, self.format)

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        sae, encoder = self._loaded()
        if (dictionary.d, dictionary.n) != (sae.d_in, sae.d_sae):
            raise ValueError(
                f"the SAE in {sae.path} reads d_in = {sae.d_in} and has d_sae = {sae.d_sae} "
                f"latents, but the dictionary is {dictionary.d} × {dictionary.n}")
        # Accumulated in float64 and rounded once, like the harness's own products, so a
        # latent's value does not depend on the batch it is computed in.
        x = np.asarray(signals, dtype=np.float64)
        if sae.apply_b_dec_to_input:
            x = x - sae.b_dec
        if sae.activation == "matching_pursuit":
            assert sae.residual_threshold is not None
            codes = matching_pursuit_codes(x, encoder.T, sae.residual_threshold, sae.max_iterations,
                                           sae.stop_on_duplicate_support)
            return [np.flatnonzero(row) for row in codes]
        pre = (x @ encoder + sae.b_enc).astype(np.float32)
        if sae.activation == "gated":
            assert sae.r_mag is not None and sae.b_mag is not None
            gains = np.exp(sae.r_mag.astype(np.float64))
            magnitude = (x @ (encoder * gains) + sae.b_mag).astype(np.float32)
            return [np.flatnonzero(row) for row in (pre > 0) & (magnitude > 0)]
        if sae.activation == "topk":
            keep = sae.k if self.topk == "file" or not k else k
            assert keep is not None
            picks = top_k_rows(pre, min(keep, pre.shape[1]))
            return [row[pre[b, row] > 0] for b, row in enumerate(picks)]
        active = pre > 0
        if sae.activation == "jumprelu":
            assert sae.threshold is not None
            active &= pre > sae.threshold
        return [np.flatnonzero(row) for row in active]


@hookimpl
def register_decoders(register: Register) -> None:
    register(SparseAutoencoderEncoder)
