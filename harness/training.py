"""Training a sparse-autoencoder encoder on the standard problem, with its dictionary known.

The decoder of the SAE is the problem's own dictionary ``F`` (fixed, ``W_dec = Fᵀ``,
``b_dec = 0``); only the encoder ``W_enc``, ``b_enc`` is learned, from the matched filter
``W_enc = F`` (which is exactly the ``topk`` decoder), on the reconstruction loss
``½‖x − F z‖²`` (plus ``λ‖z‖₁`` for ReLU), with what makes SAE training work in practice:

- **Adam** with a learning rate that warms up linearly over the first ``warmup`` steps
  and then decays linearly to zero (the schedule of Gao et al.'s TopK SAEs);
- **gradient clipping** to a global norm of ``clip``;
- **AuxK** (Gao et al.): latents that have not fired for ``dead_steps`` steps are
  "dead", and an auxiliary loss ``aux · ½‖e − F z_aux‖²`` asks the top ``2k`` dead
  latents to reconstruct the residual ``e``, so that they receive a gradient again;
- **a held-out loss**: every ``eval_every`` steps the encoder is scored on a fixed set
  of ``heldout`` signals that training never sees, and the encoder kept is the one with
  the lowest held-out reconstruction loss (the matched filter if none is lower).

The decoder is fixed with unit-norm rows, so no decoder-norm handling is needed. Gradients
are written out by hand: TopK passes them through the kept latents, ReLU through the
positive ones. The result is written in SAELens format, so it is a fixed-dictionary
problem for ``harness run --dictionary`` and an encoder for ``harness gap``: how far
training moves a one-step encoder from ``topk``, and how far it stays from ``mp``.
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

#: The training streams' draw index of the held-out signals: far from any training step.
HELDOUT_DRAW = 1 << 40


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
    learning_rate: float = 5e-5
    l1: float = 0.05
    warmup: int = 100
    clip: float = 1.0
    aux: float = 1 / 32
    dead_steps: int = 200
    eval_every: int = 50
    heldout: int = 2048

    def validate(self) -> None:
        Problem(n=self.n, k=self.k, dictionary=self.dictionary, seed=self.seed)
        checks = [(self.d >= 1, f"d must be a positive integer, not {self.d}."),
                  (self.activation in ("topk", "relu"),
                   f"activation must be topk or relu, not {self.activation!r}."),
                  (self.steps >= 1, f"steps must be a positive integer, not {self.steps}."),
                  (self.batch_size >= 1, f"batch size must be a positive integer, not {self.batch_size}."),
                  (self.learning_rate > 0 and math.isfinite(self.learning_rate),
                   f"learning rate must be a positive number, not {self.learning_rate}."),
                  (self.l1 >= 0 and math.isfinite(self.l1), f"l1 must be a number ≥ 0, not {self.l1}."),
                  (self.warmup >= 0, f"warmup must be a number of steps ≥ 0, not {self.warmup}."),
                  (self.clip > 0 and math.isfinite(self.clip),
                   f"clip must be a positive number, not {self.clip}."),
                  (self.aux >= 0 and math.isfinite(self.aux), f"aux must be a number ≥ 0, not {self.aux}."),
                  (self.dead_steps >= 1, f"dead steps must be a positive integer, not {self.dead_steps}."),
                  (self.eval_every >= 1, f"eval every must be a positive integer, not {self.eval_every}."),
                  (self.heldout >= 1, f"held-out signals must be a positive integer, not {self.heldout}.")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def rate(self, step: int) -> float:
        """The learning rate of step ``step`` (1-based): linear warm-up, then linear decay to 0."""
        if step <= self.warmup:
            return self.learning_rate * step / max(self.warmup, 1)
        remaining = self.steps - self.warmup
        return self.learning_rate * max(0.0, (self.steps - step + 1) / max(remaining, 1))


@dataclass
class TrainedEncoder:
    """The learned encoder, the fixed decoder, the training loss after every step and the
    held-out loss at every evaluation (``(step, loss)``; step 0 is the initial encoder)."""

    spec: TrainingSpec
    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    losses: list[float] = field(default_factory=list)
    heldout: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0


def _training_batch(spec: TrainingSpec, step: int, size: int | None = None) -> np.ndarray:
    """``size`` (default ``batch_size``) uniform k-subsets for one step, from the training
    family of streams (never the instances a run measures)."""
    problem = Problem(n=spec.n, k=spec.k, seed=spec.seed, subsets_per_draw=size or spec.batch_size)
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


def _loss(spec: TrainingSpec, matrix: np.ndarray, x: np.ndarray, encoder: np.ndarray,
          bias: np.ndarray) -> float:
    """The mean reconstruction loss ``½‖x − F z‖²`` of an encoder on signals ``x``."""
    latents, _ = _latents(spec, x @ encoder + bias)
    residual = x - latents @ matrix.T
    return 0.5 * float(np.mean(np.sum(residual**2, axis=1)))


def clipped(gradients: list[np.ndarray], limit: float) -> list[np.ndarray]:
    """``gradients`` scaled together so that their global norm is at most ``limit``."""
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in gradients))
    return gradients if norm <= limit else [g * (limit / norm) for g in gradients]


def train_encoder(spec: TrainingSpec,
                  on_step: Callable[[int, float], None] | None = None) -> TrainedEncoder:
    """Train an encoder for ``spec``; ``on_step(step, loss)`` follows the progress."""
    spec.validate()
    problem = Problem(n=spec.n, k=spec.k, dictionary=spec.dictionary, seed=spec.seed)
    dictionary = generated_dictionary(problem, spec.d, draw=0)
    matrix = dictionary.dense().astype(np.float64)  # d × N, unit columns
    encoder = matrix.copy()
    bias = np.zeros(spec.n)
    moments = [np.zeros_like(encoder), np.zeros_like(encoder), np.zeros_like(bias), np.zeros_like(bias)]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    result = TrainedEncoder(spec=spec, W_enc=encoder, b_enc=bias, W_dec=matrix.T.copy())
    held = matrix[:, _training_batch(spec, HELDOUT_DRAW, spec.heldout)].sum(axis=2).T
    best_loss = _loss(spec, matrix, held, encoder, bias)
    result.heldout.append((0, best_loss))
    best = (encoder.copy(), bias.copy())
    idle = np.zeros(spec.n, dtype=np.int64)  # steps since each latent last fired
    for step in range(1, spec.steps + 1):
        x = matrix[:, _training_batch(spec, step)].sum(axis=2).T  # (B, d)
        pre = x @ encoder + bias
        latents, mask = _latents(spec, pre)
        residual = x - latents @ matrix.T
        loss = 0.5 * float(np.mean(np.sum(residual**2, axis=1)))
        upstream = -(residual @ matrix)  # ∂loss/∂z, per signal
        if spec.activation == "relu":
            loss += spec.l1 * float(np.mean(np.sum(latents, axis=1)))
            upstream += spec.l1
        upstream = np.where(mask, upstream, 0.0)
        fired = mask.any(axis=0)
        idle = np.where(fired, 0, idle + 1)
        dead = idle >= spec.dead_steps
        if spec.aux > 0 and dead.any():
            # AuxK: the top 2k dead latents reconstruct what the live ones left.
            masked = np.where(dead, pre, -np.inf)
            chosen = top_k_rows(masked, min(2 * spec.k, int(dead.sum())))
            aux_mask = np.zeros(pre.shape, dtype=bool)
            np.put_along_axis(aux_mask, chosen, True, axis=1)
            aux_mask &= dead & (pre > 0)
            aux_latents = np.where(aux_mask, pre, 0.0)
            aux_residual = residual - aux_latents @ matrix.T
            loss += spec.aux * 0.5 * float(np.mean(np.sum(aux_residual**2, axis=1)))
            upstream += spec.aux * np.where(aux_mask, -(aux_residual @ matrix), 0.0)
        upstream /= spec.batch_size
        gradients = clipped([x.T @ upstream, upstream.sum(axis=0)], spec.clip)
        rate = spec.rate(step)
        for i, (parameter, gradient) in enumerate(zip((encoder, bias), gradients, strict=True)):
            first, second = moments[2 * i], moments[2 * i + 1]
            first *= beta1
            first += (1 - beta1) * gradient
            second *= beta2
            second += (1 - beta2) * gradient**2
            corrected = first / (1 - beta1**step)
            parameter -= rate * corrected / (np.sqrt(second / (1 - beta2**step)) + eps)
        result.losses.append(loss)
        if step % spec.eval_every == 0 or step == spec.steps:
            held_loss = _loss(spec, matrix, held, encoder, bias)
            result.heldout.append((step, held_loss))
            if held_loss < best_loss:
                best_loss, result.best_step = held_loss, step
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
    held = dict(trained.heldout)
    lines = ["step,loss,heldout_loss"] + [f"0,,{held[0]:.6g}"] + [
        f"{i},{loss:.6g},{held[i]:.6g}" if i in held else f"{i},{loss:.6g},"
        for i, loss in enumerate(trained.losses, start=1)]
    (out / "losses.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
