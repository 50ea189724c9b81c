"""Learned encoders beyond one step: an MLP and LISTA, their file format and their forward pass.

An SAE's encoder is one linear map and a nonlinearity. The two encoders here spend more
computation per signal on the same fixed dictionary ``F`` (``d × N``, unit columns),
and are trained by ``harness train-sae --encoder`` exactly as the SAE is (docs/training.md):

- **mlp** (O'Neill, Gumran & Klindt): one or two hidden ReLU layers, then a linear map
  to the ``N`` latents' scores: ``h₁ = relu(x W₁ + b₁)``, (``h₂ = relu(h₁ W₂ + b₂)``),
  ``scores = h W_out + b_out``.
- **lista** (Gregor & LeCun's unrolled ISTA, in the coupled form of Chen et al. with one
  matrix shared by the layers): ``z₀ = 0``, then for ``t = 1..T``
  ``z_t = relu(z_{t−1} + γ_t (x − z_{t−1} W_dec) W − θ_t)``, with ``W`` (``d × N``), the
  steps ``γ_t`` and the thresholds ``θ_t`` learned; ``scores = z_T``. ``W_dec = Fᵀ`` is
  fixed, so no ``N × N`` matrix is ever formed.

The ``learned`` decoder keeps the ``k`` latents with the largest scores (ties to the lower
index) where they are positive.

The file is a directory with ``encoder.json`` and ``encoder.safetensors``
(docs/weights.md, "Learned encoders"). The JSON object holds ``format``
(``"superposition-harness-encoder"``), ``version`` (1), ``encoder`` (``mlp`` or
``lista``), ``d_in`` (``d``), ``d_sae`` (``N``), ``k`` (the k it was trained at) and, for
an MLP, ``hidden`` (the widths) or, for LISTA, ``layers`` (``T``); what trained it is under
``harness_training``, and what the tensors are stored as under ``dtype``. The tensors,
float32 or float16 (read as float32; each is what is measured): ``W_dec`` (``N × d``, one
codeword per row) and ``b_dec`` (``d``, zeros for a trained encoder: the signals' offset), and for an MLP
``hidden.{i}.weight`` (``in × out``), ``hidden.{i}.bias``, ``out.weight`` (``H × N``),
``out.bias``; for LISTA ``W`` (``d × N``), ``step`` and ``threshold`` (``T`` each).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .memory import DEFAULT_MEMORY
from .tensors import WeightsError, _Arrays, _error, write_safetensors

ENCODER_CONFIG = "encoder.json"
ENCODER_WEIGHTS = "encoder.safetensors"
FORMAT_NAME = "superposition-harness-encoder"
FORMAT_VERSION = 1
KINDS = ("mlp", "lista")
#: An ``encoder.json`` larger than this is refused before it is read: real ones are a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20


def mlp_scores(params: list[np.ndarray], x: np.ndarray, cache: list[Any] | None = None) -> np.ndarray:
    """The MLP's scores of the rows of ``x``: ``params`` is ``[W₁, b₁, (W₂, b₂,) W_out, b_out]``.
    With ``cache``, what the gradient needs is appended to it (each layer's input and mask)."""
    h = x
    for i in range(0, len(params) - 2, 2):
        pre = h @ params[i] + params[i + 1]
        mask = pre > 0
        if cache is not None:
            cache.append((h, mask))
        h = np.where(mask, pre, 0.0).astype(pre.dtype, copy=False)
    if cache is not None:
        cache.append(h)
    return h @ params[-2] + params[-1]


def lista_scores(W: np.ndarray, steps: np.ndarray, thresholds: np.ndarray, W_dec: np.ndarray,
                 x: np.ndarray, cache: list[Any] | None = None) -> np.ndarray:
    """LISTA's scores ``z_T`` of the rows of ``x`` (module docstring). With ``cache``, each
    layer's residual ``r_t``, its product ``r_t W`` and its mask are appended to it."""
    z = np.zeros((x.shape[0], W.shape[1]), dtype=x.dtype)
    for step, threshold in zip(steps, thresholds, strict=True):
        residual = x - z @ W_dec
        product = residual @ W
        pre = z + step * product - threshold
        mask = pre > 0
        if cache is not None:
            cache.append((residual, product, mask))
        z = np.where(mask, pre, 0.0).astype(x.dtype, copy=False)
    return z


@dataclass(frozen=True, eq=False, repr=False)
class LearnedEncoder:
    """An MLP or LISTA encoder and the dictionary it reads (module docstring)."""

    kind: str
    k: int
    tensors: dict[str, np.ndarray]
    path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def d_in(self) -> int:
        return int(self.tensors["W_dec"].shape[1])

    @property
    def d_sae(self) -> int:
        return int(self.tensors["W_dec"].shape[0])

    def hidden(self) -> list[int]:
        return [int(self.tensors[f"hidden.{i}.bias"].shape[0]) for i in range(self._hidden_layers())]

    def layers(self) -> int:
        return int(self.tensors["step"].shape[0]) if self.kind == "lista" else 0

    def _hidden_layers(self) -> int:
        return sum(1 for name in self.tensors if name.startswith("hidden.") and name.endswith(".bias"))

    def mlp_parameters(self, tensors: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """The MLP's parameters in :func:`mlp_scores`' order, from ``tensors`` (default the file's)."""
        names = [f"hidden.{i}.{part}" for i in range(self._hidden_layers()) for part in ("weight", "bias")]
        return [(tensors or self.tensors)[name] for name in [*names, "out.weight", "out.bias"]]

    @cached_property
    def _wide(self) -> dict[str, np.ndarray]:
        """The tensors in float64, made once (``scores`` runs on every batch)."""
        return {name: array.astype(np.float64) for name, array in self.tensors.items()}

    def scores(self, signals: np.ndarray) -> np.ndarray:
        """``(B, N)`` float32 scores of the rows of ``signals``: computed in float64 and
        rounded once, so that a latent's score does not depend on the batch it is in."""
        x = np.asarray(signals, dtype=np.float64)
        wide = self._wide
        if self.kind == "mlp":
            out = mlp_scores(self.mlp_parameters(wide), x)
        else:
            out = lista_scores(wide["W"], wide["step"], wide["threshold"], wide["W_dec"], x)
        return out.astype(np.float32)

    def sha256(self) -> str:
        """The SHA-256 of the encoder's two files (``weights.fingerprint``), as a
        fixed-dictionary record names them: what identifies this encoder in a record."""
        from .weights import fingerprint

        return fingerprint(self.path, "learned")

    @property
    def training(self) -> dict[str, Any] | None:
        """``harness_training`` of ``encoder.json`` (with ``training_flops``), if it is an object."""
        training = self.config.get("harness_training")
        return training if isinstance(training, dict) else None

    def flops_per_signal(self) -> int:
        """Multiply-adds ×2 of one signal's scores (what the ``learned`` decoder spends)."""
        if self.kind == "mlp":
            widths = [self.d_in, *self.hidden(), self.d_sae]
            return 2 * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
        return 2 * self.layers() * 2 * self.d_in * self.d_sae

    def __repr__(self) -> str:
        shape = f"hidden={self.hidden()}" if self.kind == "mlp" else f"layers={self.layers()}"
        return (f"LearnedEncoder(kind={self.kind!r}, d_in={self.d_in}, d_sae={self.d_sae}, {shape}, "
                f"k={self.k}, path={str(self.path)!r})")


def write_encoder(directory: str | os.PathLike[str], kind: str, k: int, tensors: dict[str, np.ndarray],
                  extra: dict[str, Any] | None = None, dtype: str = "float32") -> Path:
    """Write an encoder in the format of the module docstring, its tensors stored as
    ``dtype`` (float32 or float16); return the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    stored = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in tensors.items()}
    W_dec = stored["W_dec"]
    config: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "encoder": kind,
                              "d_in": int(W_dec.shape[1]), "d_sae": int(W_dec.shape[0]), "k": int(k)}
    if kind == "mlp":
        layers = sum(1 for name in stored if name.startswith("hidden.") and name.endswith("bias"))
        config["hidden"] = [int(stored[f"hidden.{i}.bias"].shape[0]) for i in range(layers)]
    else:
        config["layers"] = int(stored["step"].shape[0])
    config.update(extra or {})
    write_safetensors(out / ENCODER_WEIGHTS, stored, dtype)
    (out / ENCODER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def is_encoder_directory(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is (or is a file of) a learned encoder's directory, by its file names."""
    target = Path(path)
    directory = target if target.is_dir() else target.parent
    if not target.is_dir() and target.name not in (ENCODER_CONFIG, ENCODER_WEIGHTS):
        return False
    return (directory / ENCODER_CONFIG).is_file() and (directory / ENCODER_WEIGHTS).is_file()


def _config(path: Path) -> dict[str, Any]:
    from .weights import _read_json_object  # weights.py reads this format's dictionary, so imports us

    return _read_json_object(path, MAX_CONFIG_BYTES)


def _count(path: Path, config: dict[str, Any], name: str) -> int:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(path, f"{name} must be a positive integer, not {value!r}")
    return value


def _expected_shapes(path: Path, config: dict[str, Any], kind: str, d: int,
                     n: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"W_dec": (n, d), "b_dec": (d,)}
    if kind == "mlp":
        hidden = config.get("hidden")
        if (not isinstance(hidden, list) or not 1 <= len(hidden) <= 2
                or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)):
            raise _error(path, f"hidden must list one or two positive widths, not {hidden!r}")
        widths = [d, *hidden]
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            shapes[f"hidden.{i}.weight"], shapes[f"hidden.{i}.bias"] = (a, b), (b,)
        shapes["out.weight"], shapes["out.bias"] = (widths[-1], n), (n,)
    else:
        layers = _count(path, config, "layers")
        shapes.update({"W": (d, n), "step": (layers,), "threshold": (layers,)})
    return shapes


def load_encoder(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MEMORY) -> LearnedEncoder:
    """Read a learned encoder's directory (or one of its two files); every problem raises
    :class:`WeightsError` with one sentence naming the file, the key and the problem."""
    target = Path(path)
    if not target.exists():
        raise _error(target, "file not found")
    directory = target if target.is_dir() else target.parent
    config_path, weights_path = directory / ENCODER_CONFIG, directory / ENCODER_WEIGHTS
    for needed in (config_path, weights_path):
        if not needed.exists():
            raise _error(directory, f"is not a learned encoder: {needed.name} is missing "
                                    f"(expected {ENCODER_CONFIG} with {ENCODER_WEIGHTS})")
    config = _config(config_path)
    if config.get("format") != FORMAT_NAME:
        raise _error(config_path, f"format must be {FORMAT_NAME!r}, not {config.get('format')!r}")
    if config.get("version") != FORMAT_VERSION:
        raise _error(config_path, f"version {config.get('version')!r} is not supported (this harness "
                                  f"reads version {FORMAT_VERSION})")
    kind = config.get("encoder")
    if kind not in KINDS:
        raise _error(config_path, f"encoder must be one of {', '.join(KINDS)}, not {kind!r}")
    d, n, k = (_count(config_path, config, name) for name in ("d_in", "d_sae", "k"))
    if k > n:
        raise _error(config_path, f"k = {k} is more than d_sae = {n}")
    shapes = _expected_shapes(config_path, config, kind, d, n)
    tensors: dict[str, np.ndarray] = {}
    with _Arrays(weights_path, max_bytes=max_bytes) as arrays:
        for name, shape in shapes.items():
            if name not in arrays:
                raise _error(weights_path, f"has no tensor {name!r}, which a {kind} encoder needs")
            array = arrays.read(name)
            if array.shape != shape:
                raise _error(weights_path, f"{name} has shape {array.shape}, expected {shape} "
                                           f"(from {ENCODER_CONFIG})")
            if not np.isfinite(array).all():
                raise _error(weights_path, f"{name} contains NaN or infinite values")
            view = np.ascontiguousarray(array, dtype=np.float32).view()
            view.flags.writeable = False
            tensors[name] = view
    if not np.any(tensors["W_dec"], axis=1).all():
        row = int(np.flatnonzero(~np.any(tensors["W_dec"], axis=1))[0])
        raise _error(weights_path, f"W_dec row {row} is zero (a codeword needs a non-zero norm)")
    return LearnedEncoder(kind=kind, k=k, tensors=tensors, path=directory, config=config)


__all__ = ["ENCODER_CONFIG", "ENCODER_WEIGHTS", "FORMAT_NAME", "KINDS", "LearnedEncoder", "WeightsError",
           "is_encoder_directory", "lista_scores", "load_encoder", "mlp_scores", "write_encoder"]
