"""Training an encoder on the standard problem, with its dictionary known.

The decoder is the problem's own dictionary ``F`` (fixed, ``W_dec = Fᵀ``, ``b_dec = 0``);
only the encoder is learned, on the reconstruction loss ``½‖x − F z‖²`` (plus ``λ‖z‖₁`` for
ReLU) of its latents ``z``: the top ``k`` of its scores (TopK) or their positive part
(ReLU). Three encoders (``encoder``), each starting where it reads exactly what ``topk``
reads or what ISTA does:

- **sae**: ``scores = x W_enc + b_enc``, from the matched filter ``W_enc = F``;
- **mlp**: one or two hidden ReLU layers (:mod:`.encoders`), started as the matched filter
  (``h₁ = relu([x, −x])`` in the first ``2d`` units, passed on by the identity, and
  ``W_out = [F; −F]``; the other units start random with zero output weights);
- **lista**: ``T`` unrolled ISTA layers with one learned matrix ``W`` (from ``F``), learned
  steps and thresholds (:mod:`.encoders`).

What makes SAE training work in practice is used for all three:

- **Adam** with a learning rate that warms up linearly over the first ``warmup`` steps
  and then decays linearly to zero (the schedule of Gao et al.'s TopK SAEs);
- **gradient clipping** to a global norm of ``clip``;
- **AuxK** (Gao et al.): latents that have not fired for ``dead_steps`` steps are
  "dead", and an auxiliary loss ``aux · ½‖e − F z_aux‖²`` asks the top ``2k`` dead
  latents to reconstruct the residual ``e``, so that they receive a gradient again;
- **a held-out loss**: every ``eval_every`` steps the encoder is scored on a fixed set
  of ``heldout`` signals that training never sees, and the encoder kept is the one with
  the lowest held-out reconstruction loss (the starting encoder if none is lower).

The decoder is fixed with unit-norm rows, so no decoder-norm handling is needed. Gradients
are written out by hand (checked against finite differences in the tests). An SAE is
written in SAELens format, an MLP or LISTA in the harness's encoder format
(:mod:`.encoders`): either is a fixed-dictionary problem for ``harness run --dictionary``
and an encoder for ``harness gap``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dictionary import generated_dictionary
from .encoders import lista_scores, mlp_scores, write_encoder
from .kernels import top_k_rows
from .problem import STREAM_TRAINING, Problem, draw_subsets

#: The training streams' draw index of the held-out signals: far from any training step.
HELDOUT_DRAW = 1 << 40
ENCODERS = ("sae", "mlp", "lista")
ACTIVATIONS = ("topk", "relu", "jumprelu")
#: What training minimises: the SAE's reconstruction through the fixed decoder, or (the
#: true codes being known on this problem) one minus the cosine of the scores and the codes.
OBJECTIVES = ("reconstruction", "supervised", "ranking")
#: The temperature of the ranking objective's softmax: at the start (the matched filter)
#: a true latent's score is about 1 and the others' spread is about √(k/d) (0.18 at
#: k = 8, d = 256), so the softmax puts its weight on the few strongest competitors.
RANKING_TEMPERATURE = 0.1
#: What ``--dtype`` stores the weights as.
DTYPES = ("float32", "float16")
#: A JumpReLU SAE's starting threshold on every latent: the ``threshold`` decoder's level.
JUMPRELU_START_THRESHOLD = 0.5
#: The random starting weights of an MLP's extra hidden units come from this seed's stream.
_INIT_SEED = 0x5EED


@dataclass(frozen=True)
class TrainingSpec:
    """What to train: the problem (``N, d, k``, dictionary kind, seed), the encoder and the optimiser."""

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
    l0: float = 0.01
    bandwidth: float = 0.05
    warmup: int = 100
    clip: float = 1.0
    aux: float = 1 / 32
    dead_steps: int = 200
    eval_every: int = 50
    heldout: int = 2048
    encoder: str = "sae"
    objective: str = "reconstruction"
    hidden: tuple[int, ...] = ()
    layers: int = 4
    #: What the weights are stored as: float32, or float16 (half the bytes; each value
    #: rounded once when written, and what is measured is what the file holds).
    dtype: str = "float32"

    def validate(self) -> None:
        Problem(n=self.n, k=self.k, dictionary=self.dictionary, seed=self.seed)
        checks = [(self.d >= 1, f"d must be a positive integer, not {self.d}."),
                  (self.activation in ACTIVATIONS,
                   f"activation must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}."),
                  (self.objective in OBJECTIVES,
                   f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}."),
                  (self.activation != "jumprelu" or self.encoder == "sae",
                   "a JumpReLU activation has a threshold per latent: it is trained for --encoder sae only."),
                  (self.l0 >= 0 and math.isfinite(self.l0), f"l0 must be a number ≥ 0, not {self.l0}."),
                  (self.bandwidth > 0 and math.isfinite(self.bandwidth),
                   f"bandwidth must be a positive number, not {self.bandwidth}."),
                  (self.encoder in ENCODERS,
                   f"encoder must be one of {', '.join(ENCODERS)}, not {self.encoder!r}."),
                  (self.steps >= 1, f"steps must be a positive integer, not {self.steps}."),
                  (self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}."),
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
                  (self.heldout >= 1, f"held-out signals must be a positive integer, not {self.heldout}."),
                  (self.layers >= 1, f"layers must be a positive integer, not {self.layers}.")]
        if self.encoder == "mlp":
            widths = self.hidden_widths()
            checks += [(1 <= len(widths) <= 2, f"an MLP has one or two hidden layers, not {len(widths)}."),
                       (all(w >= 2 * self.d for w in widths),
                        f"hidden widths must be at least 2d = {2 * self.d} (the MLP starts as the matched "
                        f"filter, which needs 2d units), not {', '.join(map(str, widths))}.")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def hidden_widths(self) -> tuple[int, ...]:
        """The MLP's hidden widths: as given, or one layer of ``4d`` units."""
        return self.hidden or (4 * self.d,)

    def rate(self, step: int) -> float:
        """The learning rate of step ``step`` (1-based): linear warm-up, then linear decay to 0."""
        if step <= self.warmup:
            return self.learning_rate * step / max(self.warmup, 1)
        remaining = self.steps - self.warmup
        return self.learning_rate * max(0.0, (self.steps - step + 1) / max(remaining, 1))


class _SAE:
    """``scores = x W + b`` (float64, as earlier versions trained it); a JumpReLU SAE also
    learns its threshold per latent (the third parameter)."""

    kind = "sae"

    def __init__(self, matrix: np.ndarray, jump: bool = False) -> None:
        self.dtype = np.float64
        self.parameters: list[np.ndarray] = [matrix.astype(np.float64), np.zeros(matrix.shape[1])]
        if jump:
            self.parameters.append(np.full(matrix.shape[1], JUMPRELU_START_THRESHOLD))

    def scores(self, x: np.ndarray, cache: list[Any] | None = None) -> np.ndarray:
        if cache is not None:
            cache.append(x)
        return x @ self.parameters[0] + self.parameters[1]

    def backward(self, cache: list[Any], upstream: np.ndarray) -> list[np.ndarray]:
        return [cache[0].T @ upstream, upstream.sum(axis=0)]

    def flops(self, batch: int) -> int:
        """Multiply-adds ×2 of one step's forward and backward pass."""
        d, n = self.parameters[0].shape
        return 3 * 2 * batch * d * n

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"W_enc": self.parameters[0], "b_enc": self.parameters[1]}
        if len(self.parameters) == 3:
            out["threshold"] = self.parameters[2]
        return out


class _MLP:
    """One or two hidden ReLU layers (:func:`.encoders.mlp_scores`), started as the matched filter."""

    kind = "mlp"

    def __init__(self, matrix: np.ndarray, widths: tuple[int, ...], dtype: type = np.float32) -> None:
        d, n = matrix.shape
        rng = np.random.default_rng(_INIT_SEED)
        self.dtype = dtype
        params: list[np.ndarray] = []
        fan_in = d
        for i, width in enumerate(widths):
            weight = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, width))
            if i == 0:
                weight[:, :2 * d] = np.hstack([np.eye(d), -np.eye(d)])
            else:  # the identity carries relu(x) and relu(−x) on
                weight[:2 * d, :] = 0.0
                weight[:, :2 * d] = 0.0
                weight[:2 * d, :2 * d] = np.eye(2 * d)
            params += [weight, np.zeros(width)]
            fan_in = width
        out = np.zeros((fan_in, n))
        out[:2 * d] = np.vstack([matrix, -matrix])
        params += [out, np.zeros(n)]
        self.parameters: list[np.ndarray] = [p.astype(dtype) for p in params]

    def scores(self, x: np.ndarray, cache: list[Any] | None = None) -> np.ndarray:
        return mlp_scores(self.parameters, x, cache)

    def backward(self, cache: list[Any], upstream: np.ndarray) -> list[np.ndarray]:
        last = cache[-1]
        grads = [last.T @ upstream, upstream.sum(axis=0)]
        g = upstream @ self.parameters[-2].T
        for i in range(len(cache) - 2, -1, -1):
            h, mask = cache[i]
            g = np.where(mask, g, 0.0).astype(g.dtype, copy=False)
            grads = [h.T @ g, g.sum(axis=0), *grads]
            if i:
                g = g @ self.parameters[2 * i].T
        return grads

    def flops(self, batch: int) -> int:
        shapes = [p.shape for p in self.parameters[::2]]
        return 3 * 2 * batch * sum(a * b for a, b in shapes)

    def tensors(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(self.parameters) - 2, 2):
            out[f"hidden.{i // 2}.weight"], out[f"hidden.{i // 2}.bias"] = self.parameters[i:i + 2]
        out["out.weight"], out["out.bias"] = self.parameters[-2:]
        return out


#: LISTA's starting step and threshold in every layer: a thresholded matched filter first,
#: then thresholded gradient steps that add what the residual still correlates with
#: (iterative soft thresholding; at N = 4096, d = 256 it already reads k = 16 back in
#: 8 layers; docs/training.md).
LISTA_START_STEP = 0.5
LISTA_START_THRESHOLD = 0.2


class _LISTA:
    """``T`` unrolled ISTA layers with one learned matrix (:func:`.encoders.lista_scores`)."""

    kind = "lista"

    def __init__(self, matrix: np.ndarray, layers: int, dtype: type = np.float32) -> None:
        self.dtype = dtype
        self.W_dec: np.ndarray = np.ascontiguousarray(matrix.T, dtype=dtype)
        self.parameters: list[np.ndarray] = [matrix.astype(dtype), np.full(layers, LISTA_START_STEP, dtype),
                           np.full(layers, LISTA_START_THRESHOLD, dtype)]

    def scores(self, x: np.ndarray, cache: list[Any] | None = None) -> np.ndarray:
        W, steps, thresholds = self.parameters
        return lista_scores(W, steps, thresholds, self.W_dec, x, cache)

    def backward(self, cache: list[Any], upstream: np.ndarray) -> list[np.ndarray]:
        W, steps, _ = self.parameters
        d_W = np.zeros_like(W)
        d_steps, d_thresholds = np.zeros_like(steps), np.zeros_like(steps)
        g = upstream  # ∂loss/∂z_t, from the last layer back
        for t in range(len(cache) - 1, -1, -1):
            residual, product, mask = cache[t]
            q = np.where(mask, g, 0.0).astype(g.dtype, copy=False)  # ∂loss/∂pre_t
            d_thresholds[t] = -q.sum()
            d_steps[t] = np.sum(q * product)
            d_W += steps[t] * (residual.T @ q)
            if t:
                g = q - steps[t] * ((q @ W.T) @ self.W_dec.T)
        return [d_W, d_steps, d_thresholds]

    def flops(self, batch: int) -> int:
        d, n = self.parameters[0].shape
        return 5 * 2 * batch * d * n * self.parameters[1].shape[0]

    def tensors(self) -> dict[str, np.ndarray]:
        return {"W": self.parameters[0], "step": self.parameters[1], "threshold": self.parameters[2]}


def make_model(spec: TrainingSpec, matrix: np.ndarray, dtype: type | None = None) -> _SAE | _MLP | _LISTA:
    """The starting encoder of ``spec`` on the dictionary ``matrix`` (``d × N``)."""
    if spec.encoder == "sae":
        return _SAE(matrix, jump=spec.activation == "jumprelu")
    if spec.encoder == "mlp":
        return _MLP(matrix, spec.hidden_widths(), dtype or np.float32)
    return _LISTA(matrix, spec.layers, dtype or np.float32)


@dataclass
class TrainedEncoder:
    """The learned encoder (its tensors by name), the fixed decoder, the training loss
    after every step and the held-out loss at every evaluation (``(step, loss)``; step 0 is
    the starting encoder), and the arithmetic the training took."""

    spec: TrainingSpec
    tensors: dict[str, np.ndarray]
    W_dec: np.ndarray
    losses: list[float] = field(default_factory=list)
    heldout: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    training_flops: int = 0

    @property
    def W_enc(self) -> np.ndarray:
        return self.tensors["W_enc"]

    @property
    def b_enc(self) -> np.ndarray:
        return self.tensors["b_enc"]


def _training_batch(spec: TrainingSpec, step: int, size: int | None = None) -> np.ndarray:
    """``size`` (default ``batch_size``) uniform k-subsets for one step, from the training
    family of streams (never the instances a run measures)."""
    problem = Problem(n=spec.n, k=spec.k, seed=spec.seed, subsets_per_draw=size or spec.batch_size)
    return draw_subsets(problem, step, family=STREAM_TRAINING)


def _latents(spec: TrainingSpec, pre: np.ndarray,
             threshold: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The latents ``z`` and the mask their gradient passes through."""
    if spec.activation == "topk":
        mask = np.zeros(pre.shape, dtype=bool)
        np.put_along_axis(mask, top_k_rows(pre, spec.k), True, axis=1)
        mask &= pre > 0
    else:
        mask = pre > 0
        if threshold is not None:
            mask &= pre > threshold
    return np.where(mask, pre, 0.0).astype(pre.dtype, copy=False), mask


def _codes(subsets: np.ndarray, n: int, dtype: Any) -> np.ndarray:
    """The true codes of ``subsets``: 1 on each row's subset, 0 elsewhere."""
    codes = np.zeros((subsets.shape[0], n), dtype=dtype)
    np.put_along_axis(codes, subsets, 1.0, axis=1)
    return codes


def _cosine_loss(scores: np.ndarray, codes: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean of ``1 − cos(scores, codes)`` over the rows, and its gradient in ``scores``
    (a row of zero scores counts as cosine 0, its gradient taken at norm 1e-12)."""
    norms = np.asarray(np.maximum(np.sqrt(np.sum(scores.astype(np.float64)**2, axis=1)), 1e-12))[:, None]
    code_norms = np.asarray(np.sqrt(np.sum(codes.astype(np.float64)**2, axis=1)))[:, None]
    cosines = np.asarray(np.sum(scores * codes, axis=1, dtype=np.float64))[:, None] / (norms * code_norms)
    gradient = -(codes / code_norms - cosines * scores / norms) / norms / scores.shape[0]
    return float(np.mean(1.0 - cosines)), gradient.astype(scores.dtype)


def _ranking_loss(scores: np.ndarray, codes: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean over the rows of the softmax cross-entropy of the true latents among all
    ``N`` scores, ``−(1/k) Σ_{j∈S} log softmax(s/τ)_j`` with ``τ = RANKING_TEMPERATURE``, and
    its gradient in ``scores``, ``(softmax(s/τ) − codes/k) / τ`` per row. It falls only as the
    true latents' scores rise above every other's: what reading the set back by top-k needs."""
    logits = scores.astype(np.float64) / RANKING_TEMPERATURE
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    counts = np.sum(codes, axis=1, keepdims=True, dtype=np.float64)
    loss = float(np.mean(-np.sum(codes * log_p, axis=1, keepdims=True) / counts))
    gradient = (np.exp(log_p) - codes / counts) / RANKING_TEMPERATURE / scores.shape[0]
    return loss, gradient.astype(scores.dtype)


#: The loss of each objective that knows the true codes, in the scores and the codes.
_KNOWN_CODES = {"supervised": _cosine_loss, "ranking": _ranking_loss}


def _loss(spec: TrainingSpec, matrix: np.ndarray, x: np.ndarray, model: _SAE | _MLP | _LISTA,
          subsets: np.ndarray | None = None) -> float:
    """The mean loss of an encoder on signals ``x``: ``½‖x − F z‖²`` of its latents, or
    (objective supervised) ``1 − cos(scores, z*)`` with ``z*`` the true codes of ``subsets``,
    or (ranking) the softmax cross-entropy of the true latents (:func:`_ranking_loss`)."""
    if spec.objective in _KNOWN_CODES:
        assert subsets is not None
        return _KNOWN_CODES[spec.objective](model.scores(x), _codes(subsets, spec.n, model.dtype))[0]
    latents, _ = _latents(spec, model.scores(x), _threshold(spec, model))
    residual = x - latents @ matrix.T
    return 0.5 * float(np.mean(np.sum(residual.astype(np.float64)**2, axis=1)))


def _threshold(spec: TrainingSpec, model: _SAE | _MLP | _LISTA) -> np.ndarray | None:
    return model.parameters[2] if spec.activation == "jumprelu" else None


def clipped(gradients: list[np.ndarray], limit: float) -> list[np.ndarray]:
    """``gradients`` scaled together so that their global norm is at most ``limit``."""
    norm = math.sqrt(sum(float(np.sum(g.astype(np.float64)**2)) for g in gradients))
    return gradients if norm <= limit else [g * (limit / norm) for g in gradients]


def loss_and_gradients(spec: TrainingSpec, model: _SAE | _MLP | _LISTA, matrix: np.ndarray, x: np.ndarray,
                       dead: np.ndarray | None = None,
                       subsets: np.ndarray | None = None) -> tuple[float, list[np.ndarray], np.ndarray]:
    """One step's loss, the gradient of each of ``model``'s parameters and the mask of the
    latents that fired, on signals ``x`` (made of ``subsets``, which the supervised
    objective needs); ``dead`` marks the latents AuxK asks to reconstruct the residual."""
    cache: list[Any] = []
    pre = model.scores(x, cache)
    threshold = _threshold(spec, model)
    latents, mask = _latents(spec, pre, threshold)
    if spec.objective in _KNOWN_CODES:
        # Latent regression (O'Neill et al.'s known-codes case, with their cosine loss), or
        # the ranking loss: every latent has a gradient, so AuxK has nothing to do.
        assert subsets is not None
        loss, gradient = _KNOWN_CODES[spec.objective](pre, _codes(subsets, spec.n, pre.dtype))
        return loss, model.backward(cache, gradient), mask
    residual = x - latents @ matrix.T
    loss = 0.5 * float(np.mean(np.sum(residual**2, axis=1)))
    upstream = -(residual @ matrix)  # ∂loss/∂z, per signal
    if spec.activation == "relu":
        loss += spec.l1 * float(np.mean(np.sum(latents, axis=1)))
        upstream += spec.l1
    threshold_gradient = None
    if threshold is not None:
        # JumpReLU (Rajamanoharan et al.): the L0 penalty counts the active latents; the
        # jump's derivative in θ is the straight-through pseudo-derivative with a
        # rectangle kernel of width ε: ∂z/∂θ = −(θ/ε)·K, ∂‖z‖₀/∂θ = −K/ε.
        loss += spec.l0 * float(np.mean(np.sum(mask, axis=1)))
        near = (np.abs(pre - threshold) < spec.bandwidth / 2) / spec.bandwidth
        threshold_gradient = -np.sum(near * (upstream * threshold + spec.l0), axis=0) / x.shape[0]
    upstream = np.where(mask, upstream, 0.0).astype(pre.dtype, copy=False)
    if spec.aux > 0 and dead is not None and dead.any():
        # AuxK: the top 2k dead latents reconstruct what the live ones left.
        masked = np.where(dead, pre, -np.inf)
        chosen = top_k_rows(masked, min(2 * spec.k, int(dead.sum())))
        aux_mask = np.zeros(pre.shape, dtype=bool)
        np.put_along_axis(aux_mask, chosen, True, axis=1)
        aux_mask &= dead & (pre > 0)
        aux_latents = np.where(aux_mask, pre, 0.0)
        aux_residual = residual - aux_latents @ matrix.T
        loss += spec.aux * 0.5 * float(np.mean(np.sum(aux_residual**2, axis=1)))
        upstream += spec.aux * np.where(aux_mask, -(aux_residual @ matrix), 0.0).astype(pre.dtype, copy=False)
    upstream /= x.shape[0]
    gradients = model.backward(cache, upstream)
    if threshold_gradient is not None:
        gradients.append(threshold_gradient)
    return loss, gradients, mask


def train_encoder(spec: TrainingSpec,
                  on_step: Callable[[int, float], None] | None = None) -> TrainedEncoder:
    """Train an encoder for ``spec``; ``on_step(step, loss)`` follows the progress."""
    spec.validate()
    problem = Problem(n=spec.n, k=spec.k, dictionary=spec.dictionary, seed=spec.seed)
    dictionary = generated_dictionary(problem, spec.d, draw=0)
    exact = dictionary.dense().astype(np.float64)  # d × N, unit columns
    model = make_model(spec, exact)
    matrix: np.ndarray = exact.astype(model.dtype)
    parameters = model.parameters
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in parameters]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    held_subsets = _training_batch(spec, HELDOUT_DRAW, spec.heldout)
    held = exact[:, held_subsets].sum(axis=2).T.astype(model.dtype)
    best_loss = _loss(spec, matrix, held, model, held_subsets)
    result = TrainedEncoder(spec=spec, tensors={}, W_dec=exact.T.copy(), heldout=[(0, best_loss)])
    best = [p.copy() for p in parameters]
    idle = np.zeros(spec.n, dtype=np.int64)  # steps since each latent last fired
    for step in range(1, spec.steps + 1):
        subsets = _training_batch(spec, step)
        x = exact[:, subsets].sum(axis=2).T.astype(model.dtype)  # (B, d)
        loss, gradients, mask = loss_and_gradients(spec, model, matrix, x, idle >= spec.dead_steps, subsets)
        idle = np.where(mask.any(axis=0), 0, idle + 1)
        gradients = clipped(gradients, spec.clip)
        rate = spec.rate(step)
        for parameter, gradient, (first, second) in zip(parameters, gradients, moments, strict=True):
            first *= beta1
            first += (1 - beta1) * gradient
            second *= beta2
            second += (1 - beta2) * gradient**2
            corrected = first / (1 - beta1**step)
            parameter -= (rate * corrected / (np.sqrt(second / (1 - beta2**step)) + eps)).astype(
                parameter.dtype, copy=False)
        if spec.activation == "jumprelu":  # a threshold below 0 would be ReLU's; keep it there at most
            np.maximum(parameters[2], 0.0, out=parameters[2])
        result.losses.append(loss)
        if step % spec.eval_every == 0 or step == spec.steps:
            held_loss = _loss(spec, matrix, held, model, held_subsets)
            result.heldout.append((step, held_loss))
            if held_loss < best_loss:
                best_loss, result.best_step = held_loss, step
                best = [p.copy() for p in parameters]
        if on_step is not None:
            on_step(step, loss)
    for parameter, kept in zip(parameters, best, strict=True):
        parameter[...] = kept
    result.tensors = model.tensors()
    result.training_flops = model.flops(spec.batch_size) * spec.steps
    return result


def _losses_csv(trained: TrainedEncoder) -> str:
    held = dict(trained.heldout)
    lines = ["step,loss,heldout_loss"] + [f"0,,{held[0]:.6g}"] + [
        f"{i},{loss:.6g},{held[i]:.6g}" if i in held else f"{i},{loss:.6g},"
        for i, loss in enumerate(trained.losses, start=1)]
    return "\n".join(lines) + "\n"


def _training_record(trained: TrainedEncoder) -> dict[str, Any]:
    spec = asdict(trained.spec)
    spec["hidden"] = list(trained.spec.hidden_widths()) if trained.spec.encoder == "mlp" else []
    return {**spec, "best_step": trained.best_step, "training_flops": trained.training_flops}


def write_saelens(trained: TrainedEncoder, directory: str | Path) -> Path:
    """Write a trained SAE encoder as a SAELens SAE (``cfg.json`` + ``sae_weights.safetensors``)
    and its loss curve (``losses.csv``); return the directory."""
    from .tensors import write_safetensors

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    spec = trained.spec
    config = {
        "architecture": {"topk": "topk", "jumprelu": "jumprelu"}.get(spec.activation, "standard"),
        "d_in": spec.d, "d_sae": spec.n, "dtype": spec.dtype, "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "harness_training": _training_record(trained),
    }
    if spec.activation == "topk":
        config["k"] = spec.k
    tensors = {"W_enc": trained.W_enc.astype(np.float32), "b_enc": trained.b_enc.astype(np.float32),
               "W_dec": trained.W_dec.astype(np.float32), "b_dec": np.zeros(spec.d, np.float32)}
    if spec.activation == "jumprelu":
        tensors["threshold"] = trained.tensors["threshold"].astype(np.float32)
    write_safetensors(out / "sae_weights.safetensors", tensors, spec.dtype)
    (out / "cfg.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "losses.csv").write_text(_losses_csv(trained), encoding="utf-8")
    return out


def write_trained(trained: TrainedEncoder, directory: str | Path) -> Path:
    """Write a trained encoder where ``harness gap`` reads it: an SAE in SAELens format, an
    MLP or LISTA in the harness's encoder format (:mod:`.encoders`); return the directory."""
    if trained.spec.encoder == "sae":
        return write_saelens(trained, directory)
    spec = trained.spec
    tensors = {**trained.tensors, "W_dec": trained.W_dec, "b_dec": np.zeros(spec.d)}
    out = write_encoder(directory, spec.encoder, spec.k, tensors,
                        {"activation": spec.activation, "dtype": spec.dtype,
                         "harness_training": _training_record(trained)}, dtype=spec.dtype)
    (out / "losses.csv").write_text(_losses_csv(trained), encoding="utf-8")
    return out
