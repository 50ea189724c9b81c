"""Sparse-autoencoder weights and dictionary matrices read from files, without PyTorch (contract §1, §4).

This module owns the SAE formats (SAELens, sparsify, Gemma Scope 1 and 2, plain): their
detection, their configuration files and sidecars, the orientation of their matrices and
the checks on their values; and the fixed dictionaries read from files
(:func:`load_matrix`, :func:`load_dictionary_file`), with the files they come from and
their fingerprint. The arrays themselves are read by :mod:`.tensors`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np

from .encoders import ENCODER_CONFIG, ENCODER_WEIGHTS, is_encoder_directory, load_encoder
from .files import RefusedFile, open_regular, read_regular
from .memory import DEFAULT_MEMORY
from .tensors import WeightsError as WeightsError  # the error of every function here
from .tensors import _Arrays, _error, _is_int, _load_npy, _names, _reason

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

Format = Literal["saelens", "sparsify", "gemmascope", "plain", "learned"]
Activation = Literal["relu", "jumprelu", "topk", "gated", "matching_pursuit"]

#: The weight file formats, in the order detection tries them: :func:`load_sae` reads the
#: first four; ``learned`` (an MLP or LISTA encoder, :mod:`.encoders`) gives a dictionary
#: (:func:`load_sae_decoder`) and its encoder to the ``learned`` decoder.
FORMATS: tuple[str, ...] = get_args(Format)

#: The encoder activations an :class:`SAEWeights` may have.
ACTIVATIONS: tuple[str, ...] = get_args(Activation)

#: A JSON or TOML file of an SAE (``cfg.json``, a sidecar) larger than this is refused
#: before it is read: real ones are a few kilobytes.
MAX_TEXT_BYTES = 16 * 2**20

CONFIG_FILE = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
GEMMASCOPE_PARAMS = "params.npz"
#: Gemma Scope 2 (the SAEs of Gemma 3): ``params.safetensors`` beside a ``config.json``.
GEMMASCOPE2_PARAMS = "params.safetensors"
GEMMASCOPE2_CONFIG = "config.json"
SIDECAR_SUFFIXES = (".toml", ".json")

_SAELENS_ARCHITECTURES = ("standard", "jumprelu", "topk", "gated", "matching_pursuit")
_SAELENS_ACTIVATION_FNS = ("relu", "topk")
_PLAIN_KEYS = ("activation", "k", "apply_b_dec_to_input")
_EXPECTED_FILES = (
    f"{CONFIG_FILE} with {SAELENS_WEIGHTS} (SAELens), {CONFIG_FILE} with {SPARSIFY_WEIGHTS} "
    f"(sparsify), {GEMMASCOPE_PARAMS} (Gemma Scope) or {GEMMASCOPE2_CONFIG} with {GEMMASCOPE2_PARAMS} "
    "(Gemma Scope 2), a .npz or .safetensors file with a <file>.toml or <file>.json sidecar (plain), "
    f"or {ENCODER_CONFIG} with {ENCODER_WEIGHTS} (a learned encoder)"
)


# ----------------------------------------------------------------------- the weights


@dataclass(frozen=True, eq=False, repr=False)
class SAEWeights:
    """The encoder and decoder of a sparse autoencoder, as float32 arrays.

    The encoder the ``sae`` decoder applies (docs/contract.md §3) is
    ``pre = (x − b_dec · apply_b_dec_to_input) @ W_enc + b_enc`` followed by the
    activation: ``relu``; ``jumprelu`` (``relu(pre)`` where ``pre > threshold``, else 0);
    ``topk`` (the ``k`` largest entries of ``pre``, ReLU applied to them, as SAELens
    and sparsify do); ``gated`` (SAELens' gated SAE: ``b_enc`` is the gate's bias, a
    latent is active where ``pre > 0`` and its magnitude
    ``relu((x − b_dec·a) @ (W_enc · exp(r_mag)) + b_mag)`` is positive); or
    ``matching_pursuit`` (SAELens' MP-SAE, tied: ``W_enc`` is ``W_decᵀ`` and ``b_enc`` is
    zero; the encoder is SAELens' iterative pursuit (the ``sae`` decoder runs it), which
    stops at ``residual_threshold``, after ``max_iterations`` steps (None: ``d_in``), or
    when a step leaves the support as it was, if ``stop_on_duplicate_support``).
    ``W_dec`` holds one codeword per row. The arrays are read-only views; ``path`` is the
    directory (SAELens, sparsify, Gemma Scope 2) or file (Gemma Scope, plain) the
    weights were read from.
    """

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray
    threshold: np.ndarray | None
    activation: Activation
    k: int | None
    apply_b_dec_to_input: bool
    format: Format
    path: Path
    b_mag: np.ndarray | None = None
    r_mag: np.ndarray | None = None
    residual_threshold: float | None = None
    max_iterations: int | None = None
    stop_on_duplicate_support: bool = True
    #: What ``harness train-sae`` wrote of the training that made the file
    #: (``harness_training`` in its SAELens ``cfg.json``, with ``training_flops``), else None.
    training: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # the dataclass is frozen; normalise once, here
        set_field(self, "path", Path(self.path))
        for name in _ARRAYS:
            value = getattr(self, name)
            if value is not None:
                set_field(self, name, _read_only(np.asarray(value)))
        self._validate()
        set_field(self, "apply_b_dec_to_input", bool(self.apply_b_dec_to_input))
        if self.k is not None:
            set_field(self, "k", int(self.k))

    @property
    def d_in(self) -> int:
        """The input dimension (the dimension ``d`` of the codewords)."""
        return int(self.b_dec.shape[0])

    @property
    def d_sae(self) -> int:
        """The number of latents (the number ``N`` of codewords)."""
        return int(self.b_enc.shape[0])

    def decoder_matrix(self) -> np.ndarray:
        """The decoder as a dictionary: ``W_dec`` transposed to ``(d_in, d_sae)``, float32, not normalised."""
        return np.ascontiguousarray(self.W_dec.T)

    def sha256(self) -> str:
        """The SHA-256 of the files the weights were read from (:func:`fingerprint`), as a
        fixed-dictionary record names them: what identifies these weights in a record."""
        return fingerprint(self.path, self.format)

    def __repr__(self) -> str:
        k = f", k={self.k}" if self.k is not None else ""
        return (f"SAEWeights(format={self.format!r}, d_in={self.d_in}, d_sae={self.d_sae}, "
                f"activation={self.activation!r}{k}, apply_b_dec_to_input={self.apply_b_dec_to_input}, "
                f"path={str(self.path)!r})")

    def _validate(self) -> None:
        path = self.path
        if self.format not in FORMATS:
            raise _error(path, f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.activation not in ACTIVATIONS:
            raise _error(path, f"activation {self.activation!r} is not supported "
                               f"(supported: {', '.join(ACTIVATIONS)})")
        for name in ("b_enc", "b_dec"):
            if getattr(self, name).ndim != 1:
                raise _error(path, f"{name} has shape {getattr(self, name).shape}, expected a vector")
        d_in, d_sae = self.d_in, self.d_sae
        expected = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "threshold": (d_sae,),
                    "b_mag": (d_sae,), "r_mag": (d_sae,)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise _error(path, f"{name} has shape {value.shape}, expected {shape} "
                                   f"(d_in = {d_in}, d_sae = {d_sae})")
        if d_in < 1 or d_sae < 1:
            raise _error(path, f"the SAE is empty (d_in = {d_in}, d_sae = {d_sae})")
        if (self.threshold is None) != (self.activation != "jumprelu"):
            raise _error(path, "threshold must be given exactly when the activation is jumprelu "
                               f"(activation {self.activation!r})")
        magnitudes = (self.b_mag is not None, self.r_mag is not None)
        if magnitudes != ((self.activation == "gated"),) * 2:
            raise _error(path, "b_mag and r_mag must be given exactly when the activation is gated "
                               f"(activation {self.activation!r})")
        pursuit = self.activation == "matching_pursuit"
        if (self.residual_threshold is None) == pursuit:
            raise _error(path, "residual_threshold must be given exactly when the activation is "
                               f"matching_pursuit (activation {self.activation!r})")
        if pursuit:
            threshold = self.residual_threshold
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                    or not np.isfinite(threshold) or threshold < 0:
                raise _error(path, f"residual_threshold must be a number of at least 0, not {threshold!r}")
            steps = self.max_iterations
            if steps is not None and (not _is_int(steps) or steps < 1):
                raise _error(path, f"max_iterations must be a positive integer or null, not {steps!r}")
        elif self.max_iterations is not None:
            raise _error(path, f"max_iterations is given but the activation is {self.activation}, "
                               "not matching_pursuit")
        if self.activation == "topk":
            if not _is_int(self.k) or not 1 <= cast(int, self.k) <= d_sae:
                raise _error(path, f"k must be an integer from 1 to d_sae = {d_sae} for a topk SAE, "
                                   f"not {self.k!r}")
        elif self.k is not None:
            raise _error(path, f"k is given but the activation is {self.activation}, not topk")
        if not isinstance(self.apply_b_dec_to_input, (bool, np.bool_)):
            raise _error(path, "apply_b_dec_to_input must be true or false, "
                               f"not {self.apply_b_dec_to_input!r}")
        for name in _ARRAYS:
            value = getattr(self, name)
            if value is not None:
                _check_finite(path, name, value)


#: The array fields of :class:`SAEWeights`.
_ARRAYS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "b_mag", "r_mag")


def _read_only(array: np.ndarray) -> np.ndarray:
    # A view, so that the caller's own array stays writeable and nothing is copied
    # when it is already float32 and C-contiguous (the loaders' arrays are).
    view = np.ascontiguousarray(array, dtype=np.float32).view()
    view.flags.writeable = False
    return view


#: Values are checked in chunks of this many, so that a check never doubles the memory of a big SAE.
_CHECK_CHUNK = 1 << 22


def _check_finite(path: Path, name: str, array: np.ndarray) -> None:
    flat = array.reshape(-1)
    for start in range(0, flat.size, _CHECK_CHUNK):
        finite = np.isfinite(flat[start:start + _CHECK_CHUNK])
        if not finite.all():
            where = np.unravel_index(start + int(np.argmin(finite)), array.shape)
            at = int(where[0]) if len(where) == 1 else tuple(int(i) for i in where)
            raise _error(path, f"{name} contains NaN or infinite values (the first at index {at})")


# ---------------------------------------------------------------- config files


def _read_json_object(path: Path, limit: int = MAX_TEXT_BYTES) -> dict[str, Any]:
    text = _read_text(path, limit)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise _error(path, f"file is not valid JSON ({exc.msg} at {where})") from None
    except (ValueError, RecursionError) as exc:  # an integer too long to convert, nesting too deep
        raise _error(path, f"file is not valid JSON ({_reason(exc)})") from None
    if not isinstance(value, dict):
        raise _error(path, f"file must hold a JSON object, not {type(value).__name__}")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError; so is a huge integer
        raise _error(path, f"file is not valid TOML ({_reason(exc)})") from None


def _read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    if not path.exists():
        raise _error(path, "file not found")
    try:
        data = read_regular(path, limit)
    except RefusedFile as exc:
        problem = exc.problem + (" for an SAE's configuration (the file is corrupt or not a configuration)"
                                 if "allowed" in exc.problem else "")
        raise _error(path, problem) from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is not content
    except UnicodeDecodeError as exc:
        raise _error(path, f"file cannot be read as UTF-8 text ({_reason(exc)})") from None


def _bool_field(path: Path, config: dict[str, Any], name: str, default: bool | None) -> bool:
    if name not in config:
        if default is None:
            raise _error(path, f"{name} is missing (it must be true or false)")
        return default
    value = config[name]
    if not isinstance(value, bool):
        raise _error(path, f"{name} must be true or false, not {value!r}")
    return value


def _int_field(path: Path, name: str, value: Any) -> int:
    # JSON writers sometimes store integers as floats (32.0); anything else is refused.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value) or value < 1:
        raise _error(path, f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _check_size(path: Path, config: dict[str, Any], name: str, actual: int, source: str) -> None:
    if name in config and config[name] is not None and config[name] != 0:
        declared = _int_field(path, name, config[name])
        if declared != actual:
            raise _error(path, f"{name} is {declared} but {source} has {actual} entries")


# --------------------------------------------------------------- detection


def _sidecar(path: Path) -> Path | None:
    """The plain format's sidecar of ``path`` (``<file>.toml`` or ``<file>.json``), if there is one."""
    found = [Path(f"{path}{suffix}") for suffix in SIDECAR_SUFFIXES if Path(f"{path}{suffix}").is_file()]
    if len(found) > 1:
        raise _error(path, f"has two sidecars, {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The SAE format of ``path``, from its file names and structure alone.

    A directory holding ``cfg.json`` and ``sae_weights.safetensors`` is SAELens;
    ``cfg.json`` and ``sae.safetensors`` is sparsify; ``params.npz`` is Gemma Scope, and
    so are ``config.json`` with ``params.safetensors`` (Gemma Scope 2). A file with a
    ``<file>.toml`` or ``<file>.json`` sidecar is plain; a file named ``params.npz`` is
    Gemma Scope; a configuration or weights file of a SAELens, sparsify or Gemma Scope 2
    directory stands for its directory.
    """
    target = Path(path)
    if target.is_dir():
        has_config = (target / CONFIG_FILE).is_file()
        found: list[Format] = []
        if has_config and (target / SAELENS_WEIGHTS).is_file():
            found.append("saelens")
        if has_config and (target / SPARSIFY_WEIGHTS).is_file():
            found.append("sparsify")
        if (target / GEMMASCOPE_PARAMS).is_file() or (
                (target / GEMMASCOPE2_CONFIG).is_file() and (target / GEMMASCOPE2_PARAMS).is_file()):
            found.append("gemmascope")
        if is_encoder_directory(target):
            found.append("learned")
        if len(found) > 1:
            raise _error(target, f"directory holds the files of several formats ({', '.join(found)}); "
                                 "choose one with format (--format on the command line)")
        if not found:
            raise _error(target, f"directory holds no SAE weights (expected {_EXPECTED_FILES})")
        return found[0]
    if not target.exists():
        raise _error(target, "file not found")
    if _sidecar(target) is not None:
        return "plain"
    if target.name == GEMMASCOPE_PARAMS:
        return "gemmascope"
    if target.name in (CONFIG_FILE, SAELENS_WEIGHTS, SPARSIFY_WEIGHTS, GEMMASCOPE2_PARAMS,
                       GEMMASCOPE2_CONFIG, ENCODER_CONFIG, ENCODER_WEIGHTS):
        return detect_format(target.parent)
    raise _error(target, f"file is not a recognised SAE file (expected {_EXPECTED_FILES})")


# --------------------------------------------------------------- the loaders


def load_sae(path: str | os.PathLike[str], format: Format | None = None, *,
             max_bytes: int = DEFAULT_MEMORY) -> SAEWeights:
    """Read a sparse autoencoder's weights from a SAELens, sparsify, Gemma Scope or plain file.

    ``format`` forces the format; by default it is detected (:func:`detect_format`).
    Matrices stored in the transposed layout are transposed back when the sizes
    (``d_in`` from ``b_dec``, ``d_sae`` from ``b_enc``) tell; other shapes are refused.
    Tensors that together need more than ``max_bytes`` to read as float32 (the memory
    budget, ``--memory``) are refused from their headers, before they are read.
    Every problem with the file raises :class:`WeightsError` with one sentence naming
    the file, the key and the problem (docs/weights.md lists them).
    """
    target = Path(path)
    if format is None:
        format = detect_format(target)
    elif format not in FORMATS:
        raise _error(target, f"format {format!r} is not supported (supported: {', '.join(FORMATS)})")
    if format == "learned":
        raise _error(target, "holds a learned encoder (an MLP or LISTA from `harness train-sae --encoder`), "
                             "not an SAE; decode it with the learned decoder "
                             "(--plugin 'learned[weights=PATH]')")
    if format in ("saelens", "sparsify"):
        directory = target if target.is_dir() else target.parent
        if format == "saelens":
            return _load_saelens(directory, max_bytes)
        return _load_sparsify(directory, max_bytes)
    if format == "gemmascope":
        params = _gemmascope_params(target)
        if params.name == GEMMASCOPE2_PARAMS:
            return _load_gemmascope2(params.parent, max_bytes)
        return _load_gemmascope(params, max_bytes)
    return _load_plain(target, max_bytes)


def _gemmascope_params(target: Path) -> Path:
    """The weights file of a Gemma Scope SAE: ``params.npz``, or Gemma Scope 2's ``params.safetensors``."""
    if not target.is_dir():
        return target.parent / GEMMASCOPE2_PARAMS if target.name == GEMMASCOPE2_CONFIG else target
    if (target / GEMMASCOPE_PARAMS).is_file() or not (target / GEMMASCOPE2_PARAMS).is_file():
        return target / GEMMASCOPE_PARAMS
    return target / GEMMASCOPE2_PARAMS


def _layout(path: Path, name: str, array: np.ndarray, rows: int, cols: int, labels: tuple[str, str],
            stored_transposed: bool = False) -> np.ndarray:
    """``array`` as a ``(rows, cols)`` matrix.

    The format documents it stored as ``(rows, cols)``, or as ``(cols, rows)`` when
    ``stored_transposed``. The other layout is recognised, and undone, only where its
    shape differs, i.e. when ``rows != cols``; a square matrix is taken as documented.
    """
    documented, other = ((cols, rows), (rows, cols)) if stored_transposed else ((rows, cols), (cols, rows))
    if array.shape == documented:
        return array.T if stored_transposed else array
    if array.shape == other:
        return array if stored_transposed else array.T
    want = f"({labels[1]}, {labels[0]})" if stored_transposed else f"({labels[0]}, {labels[1]})"
    raise _error(path, f"{name} has shape {array.shape}, expected {want} = {documented} or its transpose")


def _vector(path: Path, name: str, array: np.ndarray, label: str, length: int | None = None) -> np.ndarray:
    if array.ndim != 1 or (length is not None and array.shape[0] != length):
        want = f"({length},)" if length is not None else "a vector"
        raise _error(path, f"{name} has shape {array.shape}, expected ({label},) = {want}")
    return array


def _read_all(arrays: _Arrays,
              names: Mapping[str, tuple[str, ...]]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each wanted array, read under the first of its accepted names the file holds, and that name."""
    out, keys = {}, {}
    for wanted, aliases in names.items():
        keys[wanted] = next((alias for alias in aliases if alias in arrays), aliases[0])
        out[wanted] = arrays.read(keys[wanted])
    return out, keys


def _assemble(path: Path, raw: dict[str, np.ndarray], keys: dict[str, str], *, encoder_transposed: bool,
              ) -> dict[str, np.ndarray]:
    """Orient the four SAE tensors: sizes come from the biases, layouts from the shapes."""
    for name, values in raw.items():  # here, where the file that holds them is known
        _check_finite(path, keys[name], values)
    b_dec = _vector(path, keys["b_dec"], raw["b_dec"], "d_in")
    b_enc = _vector(path, keys["b_enc"], raw["b_enc"], "d_sae")
    d_in, d_sae = b_dec.shape[0], b_enc.shape[0]
    out = {
        "W_enc": _layout(path, keys["W_enc"], raw["W_enc"], d_in, d_sae, ("d_in", "d_sae"),
                         stored_transposed=encoder_transposed),
        "W_dec": _layout(path, keys["W_dec"], raw["W_dec"], d_sae, d_in, ("d_sae", "d_in")),
        "b_enc": b_enc,
        "b_dec": b_dec,
    }
    for name in ("threshold", "b_mag", "r_mag"):  # per-latent vectors of some encoders
        if name in raw:
            out[name] = _vector(path, keys[name], raw[name], "d_sae", d_sae)
    return out


def _weights(tensors: dict[str, np.ndarray], **fields: Any) -> SAEWeights:
    """The :class:`SAEWeights` of a loader's oriented tensors and its other fields."""
    return SAEWeights(W_enc=tensors["W_enc"], b_enc=tensors["b_enc"], W_dec=tensors["W_dec"],
                      b_dec=tensors["b_dec"], threshold=tensors.get("threshold"), b_mag=tensors.get("b_mag"),
                      r_mag=tensors.get("r_mag"), **fields)


def _require_files(*paths: Path) -> None:
    # Both files are looked for first, so that a forced format names what is missing.
    for path in paths:
        if not path.is_file():
            raise _error(path, "file not found")


def _check_normalisation(path: Path, value: Any) -> None:
    # Pre-6.0 configs store a bool (false = none); anything that rescales the input by a
    # statistic of the training data (not stored in the file) cannot be reproduced.
    if value in (None, False, "none"):
        return
    shown = "true (expected_average_only_in)" if value is True else repr(value)
    raise _error(path, f"normalize_activations {shown} is not supported (supported: none)")


def _saelens_activation(path: Path, config: dict[str, Any]) -> tuple[Activation, int | None]:
    architecture = config.get("architecture", "standard")
    if architecture not in _SAELENS_ARCHITECTURES:
        raise _error(path, f"architecture {architecture!r} is not supported "
                           f"(supported: {', '.join(_SAELENS_ARCHITECTURES)})")
    if architecture in ("jumprelu", "gated", "matching_pursuit"):
        return architecture, None
    if architecture == "standard":
        # Before SAELens 6.0 a TopK SAE was a "standard" one with activation_fn_str "topk".
        function = config.get("activation_fn_str", config.get("activation_fn")) or "relu"
        field_name = "activation_fn_str" if "activation_fn_str" in config else "activation_fn"
        if function not in _SAELENS_ACTIVATION_FNS:
            raise _error(path, f"{field_name} {function!r} is not supported "
                               f"(supported: {', '.join(_SAELENS_ACTIVATION_FNS)})")
        if function == "relu":
            return "relu", None
    kwargs = config.get("activation_fn_kwargs") or {}
    k = config.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
    if k is None:
        raise _error(path, "k is missing (a topk SAE needs k, or activation_fn_kwargs.k before SAELens 6.0)")
    return "topk", _int_field(path, "k", k)


def _load_saelens(directory: Path, max_bytes: int) -> SAEWeights:
    config_path, weights_path = directory / CONFIG_FILE, directory / SAELENS_WEIGHTS
    _require_files(config_path, weights_path)
    config = _read_json_object(config_path)
    activation, k = _saelens_activation(config_path, config)
    _check_normalisation(config_path, config.get("normalize_activations"))
    apply_b_dec = _bool_field(config_path, config, "apply_b_dec_to_input", default=True)
    rescale = _bool_field(config_path, config, "rescale_acts_by_decoder_norm", default=False)
    if rescale and activation not in ("relu", "topk"):
        raise _error(config_path, "rescale_acts_by_decoder_norm true is not supported for a "
                                  f"{activation} SAE")
    pursuit = _pursuit_settings(config_path, config) if activation == "matching_pursuit" else {}
    names: dict[str, tuple[str, ...]] = {}
    if activation != "matching_pursuit":  # an MP-SAE is tied: its encoder is W_decᵀ
        names.update({"W_enc": ("W_enc",), "b_enc": ("b_gate",) if activation == "gated" else ("b_enc",)})
    names.update({"W_dec": ("W_dec",), "b_dec": ("b_dec",)})
    if activation == "jumprelu":
        names["threshold"] = ("threshold",)
    if activation == "gated":
        names.update({"b_mag": ("b_mag",), "r_mag": ("r_mag",)})
    with _Arrays(weights_path, max_bytes=max_bytes) as arrays:
        _refuse_finetuning_key(weights_path, arrays)
        raw, keys = _read_all(arrays, names)
        scaling = arrays.read("scaling_factor") if "scaling_factor" in arrays else None
    if activation == "matching_pursuit":
        tensors = _tied(weights_path, raw, keys)
    else:
        tensors = _assemble(weights_path, raw, keys, encoder_transposed=False)
    _check_size(config_path, config, "d_in", tensors["b_dec"].shape[0], f"b_dec in {SAELENS_WEIGHTS}")
    _check_size(config_path, config, "d_sae", tensors["W_dec"].shape[0], f"W_dec in {SAELENS_WEIGHTS}")
    if scaling is not None:
        if activation == "matching_pursuit" and not np.all(scaling == 1.0):
            raise _error(weights_path, "holds a scaling_factor other than 1, which a matching_pursuit SAE "
                                       "cannot apply (its encoder is its decoder)")
        _fold_scaling_factor(config_path, weights_path, config, tensors, scaling)
    if rescale:
        _fold_decoder_norms(weights_path, tensors)
    training = config.get("harness_training")
    return _weights(tensors, activation=activation, k=k, apply_b_dec_to_input=apply_b_dec, format="saelens",
                    path=directory, training=training if isinstance(training, dict) else None, **pursuit)


def _pursuit_settings(config_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """An MP-SAE's stopping rule from its ``cfg.json``, with SAELens' defaults."""
    threshold = config.get("residual_threshold", 1e-2)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold) \
            or threshold < 0:
        raise _error(config_path, f"residual_threshold must be a number of at least 0, not {threshold!r}")
    steps = config.get("max_iterations")
    return {"residual_threshold": float(threshold),
            "max_iterations": None if steps is None else _int_field(config_path, "max_iterations", steps),
            "stop_on_duplicate_support": _bool_field(config_path, config, "stop_on_duplicate_support",
                                                     default=True)}


def _tied(path: Path, raw: dict[str, np.ndarray], keys: dict[str, str]) -> dict[str, np.ndarray]:
    """A tied SAE's tensors from its decoder: ``W_enc = W_decᵀ``, ``b_enc = 0``."""
    tensors = _decoder_tensors(path, raw, keys)
    W_dec = tensors["W_dec"]
    return {**tensors, "W_enc": W_dec.T, "b_enc": np.zeros(W_dec.shape[0], dtype=np.float32)}


def _decoder_rows(path: Path, name: str, array: np.ndarray, d_in: int) -> np.ndarray:
    """A decoder matrix as ``(d_sae, d_in)`` rows, whichever way round it is stored
    (a square one as documented: one codeword per row)."""
    if array.ndim == 2 and array.shape[1] == d_in:
        return array
    if array.ndim == 2 and array.shape[0] == d_in:
        return array.T
    raise _error(path, f"{name} has shape {array.shape}, expected (d_sae, d_in) with d_in = {d_in} "
                       "(the length of b_dec), or its transpose")


def _refuse_finetuning_key(weights_path: Path, arrays: _Arrays) -> None:
    # SAELens up to 5 saved the factor of finetuning_scaling_factor = true under this key,
    # but its loader reads the factor from scaling_factor only and refuses this key
    # (strict load_state_dict); so is it refused here, rather than silently ignored.
    if "finetuning_scaling_factor" in arrays:
        raise _error(weights_path, "holds a tensor finetuning_scaling_factor, which SAELens' loader refuses "
                                   "(it reads the factor from a key named scaling_factor); rename the key "
                                   "to scaling_factor to apply it")


def _fold_scaling_factor(config_path: Path, weights_path: Path, config: dict[str, Any],
                         tensors: dict[str, np.ndarray], scaling: np.ndarray) -> None:
    # Older SAELens files may carry a per-latent factor that decode() applies to the
    # latents before W_dec; folded into W_dec's rows, the decoder is the same linear map.
    scaling = _vector(weights_path, "scaling_factor", scaling, "d_sae", tensors["b_enc"].shape[0])
    if np.all(scaling == 1.0):
        return
    if not config.get("finetuning_scaling_factor", False):
        raise _error(config_path, "finetuning_scaling_factor is false but the weights hold a scaling_factor "
                                  "other than 1")
    tensors["W_dec"] = tensors["W_dec"] * scaling[:, None]


def _fold_decoder_norms(weights_path: Path, tensors: dict[str, np.ndarray]) -> None:
    # rescale_acts_by_decoder_norm multiplies the pre-activations by ‖W_dec row‖ and
    # divides the latents by it before decoding; folding the norms into W_enc and b_enc
    # (and normalising W_dec) gives the same latents and the same reconstruction.
    norms = np.linalg.norm(tensors["W_dec"].astype(np.float64), axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise _error(weights_path, f"W_dec row {int(zero[0])} is zero, so rescale_acts_by_decoder_norm "
                                   "cannot be applied")
    tensors["W_enc"] = (tensors["W_enc"] * norms[None, :]).astype(np.float32)
    tensors["b_enc"] = (tensors["b_enc"] * norms).astype(np.float32)
    tensors["W_dec"] = (tensors["W_dec"] / norms[:, None]).astype(np.float32)


def _load_sparsify(directory: Path, max_bytes: int) -> SAEWeights:
    config_path, weights_path = directory / CONFIG_FILE, directory / SPARSIFY_WEIGHTS
    _require_files(config_path, weights_path)
    config = _read_json_object(config_path)
    activation = config.get("activation", "topk")
    if activation != "topk":
        raise _error(config_path, f"activation {activation!r} is not supported (supported: topk)")
    if config.get("transcode", False):
        raise _error(config_path, "transcode true is not supported "
                                  "(a transcoder does not reconstruct its input)")
    if "k" not in config:
        raise _error(config_path, "k is missing (a sparsify SAE keeps its k largest latents)")
    k = _int_field(config_path, "k", config["k"])
    names = {"W_enc": ("encoder.weight",), "b_enc": ("encoder.bias",), "W_dec": ("W_dec",),
             "b_dec": ("b_dec",)}
    with _Arrays(weights_path, max_bytes=max_bytes) as arrays:
        raw, keys = _read_all(arrays, names)
    # sparsify stores its encoder as a torch Linear weight, (d_sae, d_in).
    tensors = _assemble(weights_path, raw, keys, encoder_transposed=True)
    d_in, d_sae = tensors["b_dec"].shape[0], tensors["b_enc"].shape[0]
    _check_size(config_path, config, "d_in", d_in, f"b_dec in {SPARSIFY_WEIGHTS}")
    _check_size(config_path, config, "num_latents", d_sae, f"encoder.bias in {SPARSIFY_WEIGHTS}")
    # sparsify subtracts b_dec from the input before encoding (SparseCoder.encode).
    return _weights(tensors, activation="topk", k=k, apply_b_dec_to_input=True, format="sparsify",
                    path=directory)


def _load_gemmascope(params: Path, max_bytes: int) -> SAEWeights:
    # SAELens's converter also accepts lower-case "w_enc"/"w_dec" keys.
    names = {"W_enc": ("W_enc", "w_enc"), "b_enc": ("b_enc",), "W_dec": ("W_dec", "w_dec"),
             "b_dec": ("b_dec",), "threshold": ("threshold",)}
    with _Arrays(params, max_bytes=max_bytes) as arrays:
        raw, keys = _read_all(arrays, names)
    tensors = _assemble(params, raw, keys, encoder_transposed=False)
    # Gemma Scope's JumpReLU encoder does not subtract b_dec from its input.
    return _weights(tensors, activation="jumprelu", k=None, apply_b_dec_to_input=False, format="gemmascope",
                    path=params)


def _load_gemmascope2(directory: Path, max_bytes: int) -> SAEWeights:
    # Gemma Scope 2: lower-case keys, the encoder (d_in, d_sae); JumpReLU, and, as in
    # SAELens' loader for it, no b_dec subtracted from the input.
    config_path, params = directory / GEMMASCOPE2_CONFIG, directory / GEMMASCOPE2_PARAMS
    _require_files(config_path, params)
    config = _read_json_object(config_path)
    architecture = config.get("architecture", "jump_relu")
    if architecture != "jump_relu":
        raise _error(config_path, f"architecture {architecture!r} is not supported (supported: jump_relu)")
    hooks = config.get("hf_hook_point_in"), config.get("hf_hook_point_out")
    if None not in hooks and hooks[0] != hooks[1]:
        raise _error(config_path, f"reads {hooks[0]} and writes {hooks[1]}: a transcoder, which does not "
                                  "reconstruct its input, is not supported")
    names = {"W_enc": ("w_enc", "W_enc"), "b_enc": ("b_enc",), "W_dec": ("w_dec", "W_dec"),
             "b_dec": ("b_dec",), "threshold": ("threshold",)}
    with _Arrays(params, max_bytes=max_bytes) as arrays:
        if "affine_skip_connection" in arrays:
            raise _error(params, "holds an affine_skip_connection: a transcoder, which does not reconstruct "
                                 "its input, is not supported")
        raw, keys = _read_all(arrays, names)
    tensors = _assemble(params, raw, keys, encoder_transposed=False)
    width = config.get("width")
    if isinstance(width, int) and not isinstance(width, bool):
        _check_size(config_path, config, "width", tensors["b_enc"].shape[0], f"b_enc in {GEMMASCOPE2_PARAMS}")
    return _weights(tensors, activation="jumprelu", k=None, apply_b_dec_to_input=False, format="gemmascope",
                    path=directory)


def _load_plain(weights_path: Path, max_bytes: int) -> SAEWeights:
    if weights_path.is_dir():
        raise _error(weights_path, "is a directory, but a plain SAE is a .npz or .safetensors file "
                                   "with a <file>.toml or <file>.json sidecar")
    sidecar = _sidecar(weights_path)
    if sidecar is None:
        raise _error(weights_path, f"sidecar not found (expected {weights_path.name}.toml or "
                                   f"{weights_path.name}.json next to it)")
    config = _read_toml(sidecar) if sidecar.suffix == ".toml" else _read_json_object(sidecar)
    unknown = sorted(set(config) - set(_PLAIN_KEYS))
    if unknown:
        raise _error(sidecar, f"key {unknown[0]!r} is not known (known keys: {', '.join(_PLAIN_KEYS)})")
    if "activation" not in config:
        raise _error(sidecar, f"activation is missing (one of {', '.join(ACTIVATIONS)})")
    activation = config["activation"]
    if activation not in ACTIVATIONS:
        raise _error(sidecar, f"activation {activation!r} is not supported "
                              f"(supported: {', '.join(ACTIVATIONS)})")
    apply_b_dec = _bool_field(sidecar, config, "apply_b_dec_to_input", default=None)
    k: int | None = None
    if activation == "topk":
        if "k" not in config:
            raise _error(sidecar, "k is missing (a topk SAE needs it)")
        k = _int_field(sidecar, "k", config["k"])
    elif "k" in config:
        raise _error(sidecar, f"k is given but activation is {activation}, not topk")
    names = {name: (name,) for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    with _Arrays(weights_path, max_bytes=max_bytes) as arrays:
        if activation == "jumprelu":
            names["threshold"] = ("threshold",)
        elif "threshold" in arrays:
            raise _error(weights_path, "key 'threshold' is present but the sidecar's activation is "
                                       f"{activation}, not jumprelu")
        raw, keys = _read_all(arrays, names)
    tensors = _assemble(weights_path, raw, keys, encoder_transposed=False)
    return _weights(tensors, activation=activation, k=k, apply_b_dec_to_input=apply_b_dec, format="plain",
                    path=weights_path)


# ---------------------------------------------------------------- matrices


def load_dictionary_file(path: str | os.PathLike[str], *, format: Format | None = None,
                         key: str | None = None,
                         max_bytes: int = DEFAULT_MEMORY) -> tuple[np.ndarray, np.ndarray | None]:
    """A fixed dictionary (docs/contract.md §1) and what its signals carry besides their codewords.

    For an SAE (anything :func:`detect_format` recognises, or any file or directory when
    ``format`` names an SAE format): its decoder, ``W_dec`` transposed to ``d_in × d_sae``,
    whatever its encoder (:func:`load_sae_decoder`), and what its decode adds to
    ``latents @ W_dec`` (its ``b_dec``), so that the harness makes signals
    ``b_dec + Σ f_i`` in the SAE's own frame. For a matrix file, or any file read with a
    ``key``: the matrix (as :func:`load_matrix` reads it) and None. Columns are not
    normalised here.
    """
    target = Path(path)
    if not target.exists():
        raise _error(target, "file not found")
    if key is not None:
        if format is not None:
            raise _error(target, "key names an array of a matrix file and format an SAE's layout; "
                                 "give one of them, not both")
        return load_matrix(target, key, max_bytes=max_bytes), None
    if format is not None or _looks_like_sae(target):
        rows, offset, origin = load_sae_decoder(target, format, max_bytes=max_bytes)
        return _check_matrix(origin, "W_dec", np.ascontiguousarray(rows.T)), offset
    return load_matrix(target, max_bytes=max_bytes), None


def load_sae_decoder(path: str | os.PathLike[str], format: Format | None = None, *,
                     max_bytes: int = DEFAULT_MEMORY) -> tuple[np.ndarray, np.ndarray, Path]:
    """An SAE's decoder, whatever its encoder: ``(W_dec, offset, origin)``.

    ``W_dec`` is ``(d_sae, d_in)`` float32, one codeword per row (with SAELens' older
    ``scaling_factor`` folded in, as :func:`load_sae` does); ``offset`` is what the SAE's
    decode adds to ``latents @ W_dec``: its ``b_dec``, or zeros for a SAELens
    matching-pursuit SAE that does not apply ``b_dec`` to its input (its decode then adds
    none); ``origin`` is the file or directory it was read from. Only the decoder's
    tensors and what changes them are read, so an SAE whose encoder :func:`load_sae`
    refuses (an unsupported architecture, activation or input normalisation) still gives
    its dictionary.
    """
    target = Path(path)
    if format is None:
        format = detect_format(target)
    elif format not in FORMATS:
        raise _error(target, f"format {format!r} is not supported (supported: {', '.join(FORMATS)})")
    directory = target if target.is_dir() else target.parent
    if format == "learned":
        encoder = load_encoder(target, max_bytes=max_bytes)
        return encoder.tensors["W_dec"], encoder.tensors["b_dec"], encoder.path
    names = {"W_dec": ("W_dec", "w_dec"), "b_dec": ("b_dec",)}
    if format == "saelens":
        config_path, weights_path = directory / CONFIG_FILE, directory / SAELENS_WEIGHTS
        _require_files(config_path, weights_path)
        config = _read_json_object(config_path)
        with _Arrays(weights_path, max_bytes=max_bytes) as arrays:
            _refuse_finetuning_key(weights_path, arrays)
            raw, keys = _read_all(arrays, names)
            scaling = arrays.read("scaling_factor") if "scaling_factor" in arrays else None
        tensors = _decoder_tensors(weights_path, raw, keys)
        tied = config.get("architecture") == "matching_pursuit"
        if scaling is not None:
            if tied and not np.all(scaling == 1.0):
                raise _error(weights_path, "holds a scaling_factor other than 1, which a matching_pursuit "
                                           "SAE cannot apply (its encoder is its decoder)")
            tensors["b_enc"] = np.zeros(tensors["W_dec"].shape[0], dtype=np.float32)  # for the fold's check
            _fold_scaling_factor(config_path, weights_path, config, tensors, scaling)
        offset = tensors["b_dec"]
        if tied and not _bool_field(config_path, config, "apply_b_dec_to_input", default=True):
            offset = np.zeros_like(offset)  # its decode adds b_dec only where its encoder subtracts it
        return tensors["W_dec"], offset, directory
    if format == "sparsify":
        config_path, weights_path = directory / CONFIG_FILE, directory / SPARSIFY_WEIGHTS
        _require_files(config_path, weights_path)
    elif format == "gemmascope":
        weights_path = _gemmascope_params(target)
        if weights_path.name == GEMMASCOPE2_PARAMS:
            _require_files(weights_path.parent / GEMMASCOPE2_CONFIG, weights_path)
    else:
        weights_path = target
        if weights_path.is_dir():
            raise _error(weights_path, "is a directory, but a plain SAE is a .npz or .safetensors file")
    with _Arrays(weights_path, max_bytes=max_bytes) as arrays:
        raw, keys = _read_all(arrays, names)
    tensors = _decoder_tensors(weights_path, raw, keys)
    origin = directory if format == "sparsify" or weights_path.name == GEMMASCOPE2_PARAMS else weights_path
    return tensors["W_dec"], tensors["b_dec"], origin


def _decoder_tensors(path: Path, raw: dict[str, np.ndarray], keys: dict[str, str]) -> dict[str, np.ndarray]:
    """``W_dec`` as ``(d_sae, d_in)`` rows and ``b_dec``, checked finite and oriented by ``b_dec``."""
    for name, values in raw.items():
        _check_finite(path, keys[name], values)
    b_dec = _vector(path, keys["b_dec"], raw["b_dec"], "d_in")
    return {"W_dec": _decoder_rows(path, keys["W_dec"], raw["W_dec"], b_dec.shape[0]), "b_dec": b_dec}


def load_matrix(path: str | os.PathLike[str], key: str | None = None, *,
                max_bytes: int = DEFAULT_MEMORY) -> np.ndarray:
    """A dictionary matrix ``F`` (``d × N``, float32) from a file, columns not normalised.

    ``.npy``: the array. ``.npz`` and ``.safetensors``: the only array, or the one
    named ``key``. An SAE (anything :func:`detect_format` recognises, when no ``key``
    is given): its decoder, ``W_dec`` transposed to ``d_in × d_sae``. The matrix must
    be 2-D and finite with no zero column; :class:`~superposition_harness.MatrixDictionary`
    normalises the columns. Arrays that need more than ``max_bytes`` to read as float32
    (the memory budget, ``--memory``) are refused from their headers, before they are read.
    """
    target = Path(path)
    if not target.exists():
        raise _error(target, "file not found")
    if key is None and _looks_like_sae(target):
        if detect_format(target) == "learned":
            rows, _, origin = load_sae_decoder(target, "learned", max_bytes=max_bytes)
            return _check_matrix(origin, "W_dec", np.ascontiguousarray(rows.T))
        weights = load_sae(target, max_bytes=max_bytes)
        return _check_matrix(weights.path, "W_dec", weights.decoder_matrix())
    suffix = target.suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise _error(target, f"key {key!r} does not apply: a .npy file holds a single array")
        return _check_matrix(target, "array", _load_npy(target, max_bytes))
    if suffix not in (".npz", ".safetensors"):
        raise _error(target, f"file type {suffix or '(none)'} is not supported "
                             "(expected .npy, .npz, .safetensors, or SAE weights)")
    with _Arrays(target, max_bytes=max_bytes) as arrays:
        if key is None:
            if len(arrays.names) != 1:
                raise _error(target, f"file holds {len(arrays.names)} arrays ({_names(arrays.names)}); "
                                     "choose one with key (--key NAME on the command line)")
            key = arrays.names[0]
        return _check_matrix(target, repr(key), arrays.read(key))


def _looks_like_sae(path: Path) -> bool:
    # Decided by names alone, so that a broken SAE gets load_sae's error, not a matrix's.
    if path.is_dir() or path.name in (GEMMASCOPE_PARAMS, CONFIG_FILE, SAELENS_WEIGHTS, SPARSIFY_WEIGHTS,
                                      GEMMASCOPE2_PARAMS, GEMMASCOPE2_CONFIG, ENCODER_CONFIG,
                                      ENCODER_WEIGHTS):
        return True
    return any(Path(f"{path}{suffix}").is_file() for suffix in SIDECAR_SUFFIXES)


def _check_matrix(path: Path, name: str, matrix: np.ndarray) -> np.ndarray:
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise _error(path, f"{name} has shape {matrix.shape}, expected a non-empty 2-D matrix (d × N)")
    step = max(1, _CHECK_CHUNK // matrix.shape[0])
    for start in range(0, matrix.shape[1], step):
        block = matrix[:, start:start + step]
        bad = np.flatnonzero(~np.isfinite(block).all(axis=0))
        if bad.size:
            raise _error(path, f"{name} column {start + int(bad[0])} contains NaN or infinite values")
        zero = np.flatnonzero(~block.any(axis=0))
        if zero.size:
            raise _error(path, f"{name} column {start + int(zero[0])} is zero "
                               "(a codeword needs a non-zero norm)")
    return np.ascontiguousarray(matrix, dtype=np.float32)


def source_files(path: str | os.PathLike[str], format: Format | None = None,
                 key: str | None = None) -> list[Path]:
    """The files :func:`load_dictionary_file` reads for ``path`` (with the same ``format``
    and ``key``), in a fixed order: an SAE's configuration and weights (SAELens, sparsify,
    Gemma Scope 2), ``params.npz`` (Gemma Scope), a plain file and its sidecar, or the
    matrix file itself."""
    target = Path(path)
    if not target.exists():
        raise _error(target, "file not found")
    if key is not None or (format is None and not _looks_like_sae(target)):
        return [target]
    if format is None:
        format = detect_format(target)
    directory = target if target.is_dir() else target.parent
    if format == "saelens":
        return [directory / CONFIG_FILE, directory / SAELENS_WEIGHTS]
    if format == "sparsify":
        return [directory / CONFIG_FILE, directory / SPARSIFY_WEIGHTS]
    if format == "learned":
        return [directory / ENCODER_CONFIG, directory / ENCODER_WEIGHTS]
    if format == "gemmascope":
        params = _gemmascope_params(target)
        if params.name == GEMMASCOPE2_PARAMS:
            return [params.parent / GEMMASCOPE2_CONFIG, params]
        return [params]
    sidecar = _sidecar(target)
    return [target] + ([sidecar] if sidecar is not None else [])


def fingerprint(path: str | os.PathLike[str], format: Format | None = None, key: str | None = None) -> str:
    """The SHA-256 of the files a fixed dictionary is read from (:func:`source_files`):
    their contents in order, each preceded by its name when they lie in an SAE's
    directory. It identifies the dictionary in a record; only regular files are read."""
    root = Path(path)
    files = source_files(root, format, key)
    digest = hashlib.sha256()
    for file in files:
        if root.is_dir():
            digest.update(file.relative_to(root).as_posix().encode())
        try:
            with open_regular(file) as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except RefusedFile as exc:
            raise _error(file, exc.problem) from None
        except OSError as exc:
            raise _error(file, f"cannot be read: {_reason(exc)}") from None
    return digest.hexdigest()
