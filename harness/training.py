"""Training a sparse-autoencoder encoder on the standard problem, with its dictionary known.

The decoder of the SAE is the problem's own dictionary ``F`` (fixed, ``W_dec = Fᵀ``,
``b_dec = 0``); only the encoder ``W_enc``, ``b_enc`` is learned, by Adam on the
reconstruction loss ``½‖x − F z‖²`` (plus ``λ‖z‖₁`` for ReLU), from the matched filter
``W_enc = F`` (which is exactly the ``topk`` decoder). Gradients are written out by
hand: TopK passes them through the kept latents, ReLU through the positive ones. The
encoder kept is the one with the lowest mean loss over a window of 50 steps. The
result is written in SAELens format, so it is a fixed-dictionary problem for
``harness run --dictionary`` and an encoder for ``harness gap``: how far training moves
a one-step encoder from ``topk``, and how far it stays from ``mp``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .dictionary import generated_dictionary
from .kernels import top_k_rows
from .problem import STREAM_TRAINING, Problem, draw_subsets

#: Steps over which the loss is averaged to pick the encoder that is kept.
WINDOW = 50


@dataclass(frozen=True)
class TrainingSpec:
    """What to train: the problem (``N, d, k``, dictionary kind, seed) and the optimiser."""

    n: int
    d: int
    k: int
    dictionary: str = "rademacher"
    seed: int = 0
    activation: str = "topk"
    steps: int = 2000
    batch_size: int = 256
    learning_rate: float = 1e-4
    l1: float = 0.05

    def validate(self) -> None:
        Problem(n=self.n, k=self.k, dictionary=self.dictionary, seed=self.seed)
        checks = [(self.d >= 1, f"d must be a positive integer, not {self.d}."),
                  (self.activation in ("topk", "relu"),
                   f"activation must be topk or relu, not {self.activation!r}."),
                  (self.steps >= 1, f"steps must be a positive integer, not {self.steps}."),
                  (self.batch_size >= 1, f"batch size must be a positive integer, not {self.batch_size}."),
                  (self.learning_rate > 0 and math.isfinite(self.learning_rate),
                   f"learning rate must be a positive number, not {self.learning_rate}."),
                  (self.l1 >= 0 and math.isfinite(self.l1), f"l1 must be a number ≥ 0, not {self.l1}.")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class TrainedEncoder:
    """The learned encoder, the fixed decoder, and the loss after every step."""

    spec: TrainingSpec
    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    losses: list[float] = field(default_factory=list)
    best_step: int = 0


def _training_batch(spec: TrainingSpec, step: int) -> np.ndarray:
    """``batch_size`` uniform k-subsets for one step, from the training family of streams
    (never the instances a run measures)."""
    problem = Problem(n=spec.n, k=spec.k, seed=spec.seed, subsets_per_draw=spec.batch_size)
    return draw_subsets(problem, step, family=STREAM_TRAINING)


def _latents(spec: TrainingSpec, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The latents ``z`` and the mask their gradient passes through."""
    if spec.activation == "topk":
        mask = np.zeros(pre.shape, dtype=bool)
        np.put_along_axis(mask, top_k_rows(pre, spec.k), True, axis=1)
        mask &= pre > 0
    else:
        mask = pre > 0
    return np.where(mask, pre, 0.0), mask


def train_encoder(spec: TrainingSpec,
                  on_step: Callable[[int, float], None] | None = None) -> TrainedEncoder:
    """Train an encoder for ``spec``; ``on_step(step, loss)`` follows the progress."""
    spec.validate()
    problem = Problem(n=spec.n, k=spec.k, dictionary=spec.dictionary, seed=spec.seed)
    dictionary = generated_dictionary(problem, spec.d, draw=0)
    matrix = dictionary.dense()  # d × N float32, unit columns
    encoder = matrix.copy()
    bias = np.zeros(spec.n, dtype=np.float32)
    moments = [np.zeros_like(encoder), np.zeros_like(encoder), np.zeros_like(bias), np.zeros_like(bias)]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    result = TrainedEncoder(spec=spec, W_enc=encoder, b_enc=bias, W_dec=matrix.T.copy())
    # The straight-through gradient of TopK only reaches the latents already chosen, so
    # the loss can rise once the encoder's ranking drifts; the encoder kept is the one
    # with the lowest mean loss over a window of steps (the matched filter if none is).
    best, best_loss = (encoder.copy(), bias.copy()), math.inf
    for step in range(1, spec.steps + 1):
        subsets = _training_batch(spec, step)
        x = matrix[:, subsets].sum(axis=2).T  # (B, d)
        latents, mask = _latents(spec, x @ encoder + bias)
        residual = x - latents @ matrix.T
        loss = 0.5 * float(np.mean(np.sum(residual**2, axis=1)))
        upstream = -(residual @ matrix)  # ∂loss/∂z, per signal
        if spec.activation == "relu":
            loss += spec.l1 * float(np.mean(np.sum(latents, axis=1)))
            upstream += spec.l1
        upstream = np.where(mask, upstream, 0.0) / spec.batch_size
        gradients = (x.T @ upstream, upstream.sum(axis=0))
        for i, (parameter, gradient) in enumerate(zip((encoder, bias), gradients, strict=True)):
            first, second = moments[2 * i], moments[2 * i + 1]
            first *= beta1
            first += (1 - beta1) * gradient
            second *= beta2
            second += (1 - beta2) * gradient**2
            corrected = first / (1 - beta1**step)
            parameter -= spec.learning_rate * corrected / (np.sqrt(second / (1 - beta2**step)) + eps)
        result.losses.append(loss)
        if step % WINDOW == 0:
            window = float(np.mean(result.losses[-WINDOW:]))
            if window < best_loss:
                best_loss, result.best_step = window, step
                best = (encoder.copy(), bias.copy())
        if on_step is not None:
            on_step(step, loss)
    result.W_enc, result.b_enc = best
    return result


def write_saelens(trained: TrainedEncoder, directory: str | Path) -> Path:
    """Write ``trained`` as a SAELens SAE (``cfg.json`` + ``sae_weights.safetensors``) and
    its loss curve (``losses.csv``); return the directory."""
    from .tensors import write_safetensors

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    spec = trained.spec
    config = {
        "architecture": "topk" if spec.activation == "topk" else "standard",
        "d_in": spec.d, "d_sae": spec.n, "dtype": "float32", "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "harness_training": {**asdict(spec), "best_step": trained.best_step},
    }
    if spec.activation == "topk":
        config["k"] = spec.k
    write_safetensors(out / "sae_weights.safetensors", {
        "W_enc": trained.W_enc.astype(np.float32), "b_enc": trained.b_enc.astype(np.float32),
        "W_dec": trained.W_dec.astype(np.float32), "b_dec": np.zeros(spec.d, np.float32)})
    (out / "cfg.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    lines = ["step,loss"] + [f"{i},{loss:.6g}" for i, loss in enumerate(trained.losses, start=1)]
    (out / "losses.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
