"""Sweep configurations: TOML files (and the built-in suites) naming problems and decoders.

A sweep is the product of its ``n``, ``k``, ``dictionary`` and ``noise`` (or ``snr``) lists, each
run with every listed decoder. The layout, with every key optional::

    [problem]
    n = [4096]                  # an integer or a list of them
    k = [4, 8, 16, 32]
    dictionary = "rademacher"   # or "gaussian", or a matrix / SAE file, or a list
    noise = 0.0                 # σ, or a list
    snr = 15.0                  # or a fixed signal-to-noise ratio per dimension (a list too), not both
    seed = 0
    subsets_per_draw = 32

    [search]
    target = 0.95               # the headline success rate q
    trials = 256                # trials per probed dimension, at most
    d_max = 4096                # give up above this dimension (default: 16 dims/bit)
    k_max = 256                 # fixed dictionaries: the largest k tried (default: min(d, N − 1))
    resolution = 0.01           # stop narrowing d* at this relative width (0: to one dimension)

    [run]
    batch_size = 32

    decoders = ["mp", "threshold[level=0.6]"]   # or "builtin", or "all"

    [[decoder]]                 # the same, with typed parameters
    name = "threshold"
    params = { level = 0.5 }

A config read from a file names files relative to its own directory: ``[problem]
dictionary`` entries that name files, and the decoder parameters declared with
``Param(..., path=True)`` (the ``sae`` decoder's ``weights``), are joined to it, and a path
that is absolute or that leads outside that directory's tree (through ``..`` or a
symbolic link, also one inside a directory it names) is a :class:`ConfigError`. Paths
given on the command line are not restricted.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .decoder import AnchoredString
from .files import RefusedFile, read_regular
from .problem import DICTIONARY_KINDS, Problem
from .weights import (
    CONFIG_FILE,
    GEMMASCOPE2_CONFIG,
    GEMMASCOPE2_PARAMS,
    SAELENS_WEIGHTS,
    SIDECAR_SUFFIXES,
    SPARSIFY_WEIGHTS,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SUITES = ("quick", "standard", "paper")

#: Every setting a config may give: (section, key) → (accepted types, whether a list
#: is allowed). Each key is also the name of the :class:`Sweep` field it sets.
FIELDS: dict[tuple[str, str], tuple[type | tuple[type, ...], bool]] = {
    ("problem", "n"): (int, True),
    ("problem", "k"): (int, True),
    ("problem", "dictionary"): (str, True),
    ("problem", "dictionary_format"): (str, False),
    ("problem", "dictionary_key"): (str, False),
    ("problem", "noise"): ((int, float), True),
    ("problem", "snr"): ((int, float), True),
    ("problem", "seed"): (int, False),
    ("problem", "subsets_per_draw"): (int, False),
    ("search", "target"): ((int, float), False),
    ("search", "trials"): (int, False),
    ("search", "d_max"): (int, False),
    ("search", "k_max"): (int, False),
    ("search", "resolution"): ((int, float), False),
    ("run", "batch_size"): (int, False),
    ("run", "scheduler"): (str, False),
}
SECTIONS: dict[str, tuple[str, ...]] = {
    section: tuple(key for (owner, key) in FIELDS if owner == section)
    for section in ("problem", "search", "run")
}
TOP_LEVEL = ("problem", "search", "run", "decoders", "decoder", "description")
SPEC_PATTERN = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$", re.DOTALL)

#: A config file larger than this is refused before it is read: sweeps are a few lines.
MAX_CONFIG_BYTES = 1 << 20

#: Files an SAE path stands for besides itself: a file of a SAELens, sparsify or Gemma
#: Scope 2 directory stands for the whole directory (see weights.detect_format).
_DIRECTORY_FILES = (CONFIG_FILE, SAELENS_WEIGHTS, SPARSIFY_WEIGHTS, GEMMASCOPE2_CONFIG, GEMMASCOPE2_PARAMS)


class ConfigError(ValueError):
    """An invalid configuration or decoder selection; the message names what to change."""


class ConfigFile(dict[str, Any]):
    """A parsed config file (what :func:`read_config` returns): its tables, and its path."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        super().__init__(data)
        self.path = path


class ConfigString(AnchoredString):
    """A decoder parameter's text or value as a config file gave it.

    It remembers the config, so that a parameter declared with ``path=True`` resolves it
    against the config's directory (:meth:`resolve`); every other parameter takes it as
    the plain string.
    """

    base: Path
    source: str

    def __new__(cls, value: str, base: Path, source: str) -> ConfigString:
        self = super().__new__(cls, value)
        self.base, self.source = base, source
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConfigString, (str(self), self.base, self.source))

    def resolve(self, parameter: str, decoder: str) -> str:
        """The path, joined to the config's directory; ConfigError if it leaves that directory."""
        return config_path(str(self), base=self.base, source=self.source,
                           key=f"parameter {parameter!r} of decoder {decoder!r}",
                           instead=f"--plugin '{decoder}[{parameter}=PATH]'")


def config_path(value: str, *, base: Path, source: str, key: str, instead: str) -> str:
    """``value``, a path named by the config file ``source``, joined to its directory ``base``.

    ConfigError, naming ``key`` and the command-line option ``instead``, if ``value`` is
    absolute or leads (through ``..`` or a symbolic link, also one inside the directory it
    names or beside it, where an SAE's loader looks) outside ``base``'s tree. An empty
    ``value`` names nothing and is returned as it is (for the decoder to refuse).
    """
    if not value:
        return value
    if Path(value).is_absolute():
        raise ConfigError(
            f"{key} in {source} is an absolute path ({value!r}), but a config may name only files in "
            f"its own directory tree; give a path relative to the config's directory, or pass the file "
            f"on the command line ({instead}).")
    joined = base / value
    root = os.path.realpath(base)
    escape = _escape(joined, root)
    if escape is not None:
        raise ConfigError(
            f"{key} in {source} names {value!r}, which leads to {escape}, outside the config's directory "
            f"{root}; place the file beside the config, or pass it on the command line ({instead}).")
    return str(joined)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _escape(path: Path, root: str) -> str | None:
    """Where ``path``, or a file read along with it, leads outside ``root``; None if nowhere."""
    real = os.path.realpath(path)
    if not _inside(real, root):
        return real
    if os.path.isdir(real):
        # Only a symbolic link can lead out of a real directory; links to directories
        # are checked themselves and not walked into.
        entries = [os.path.join(folder, name) for folder, folders, files in os.walk(real)
                   for name in folders + files]
    else:
        entries = [f"{path}{suffix}" for suffix in SIDECAR_SUFFIXES]
        if path.name in _DIRECTORY_FILES:
            entries += [str(path.parent / name) for name in _DIRECTORY_FILES]
    for entry in entries:
        if os.path.islink(entry) and not _inside(os.path.realpath(entry), root):
            return os.path.realpath(entry)
    return None


@dataclass(frozen=True)
class DecoderSpec:
    """A decoder selected by name, with parameters as text (CLI) or typed values (TOML)."""

    name: str
    texts: tuple[tuple[str, str], ...] = ()
    values: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        pairs = [f"{k}={v}" for k, v in self.texts] + [f"{k}={v}" for k, v in self.values]
        return f"{self.name}[{','.join(pairs)}]" if pairs else self.name


def parse_decoder_spec(text: str) -> DecoderSpec:
    """Parse ``NAME`` or ``NAME[key=value,...]``."""
    match = SPEC_PATTERN.match(text)
    if not match:
        raise ConfigError(f"cannot read decoder {text!r}; write NAME or NAME[key=value,...].")
    name, inner = match.group(1), match.group(2)
    pairs: list[tuple[str, str]] = []
    if inner and inner.strip():
        for part in inner.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"cannot read parameter {part.strip()!r} of decoder {name!r}; write key=value.")
            if any(key.strip() == k for k, _ in pairs):
                raise ConfigError(f"parameter {key.strip()!r} of decoder {name!r} is given twice.")
            pairs.append((key.strip(), value.strip()))
    return DecoderSpec(name=name, texts=tuple(pairs))


@dataclass
class Sweep:
    """What a run does: problems × decoders, with the search settings."""

    n: list[int] = field(default_factory=lambda: [4096])
    k: list[int] = field(default_factory=lambda: [16])
    dictionary: list[str] = field(default_factory=lambda: ["rademacher"])
    #: How the dictionary files are read: an SAE layout (weights.FORMATS) instead of the
    #: detected one, or the array of a matrix file that holds several; None: as detected.
    dictionary_format: str | None = None
    dictionary_key: str | None = None
    noise: list[float] = field(default_factory=lambda: [0.0])
    #: Fixed signal-to-noise ratios per dimension (the fixed-SNR track); empty: none.
    snr: list[float] = field(default_factory=list)
    seed: int = 0
    subsets_per_draw: int = 32
    target: float = 0.95
    trials: int = 256
    d_max: int | None = None
    k_max: int | None = None
    resolution: float = 0.01
    batch_size: int = 32
    #: Where jobs run: None (this machine), ``local``, ``local:W`` or a Dask scheduler's address.
    scheduler: str | None = None
    decoders: list[DecoderSpec] = field(default_factory=list)
    decoder_sets: list[str] = field(default_factory=list)  # "builtin" / "all"

    def problems(self) -> list[Problem]:
        """Every problem of the sweep on a generated dictionary, validated, in a fixed order.

        Entries of ``dictionary`` that are not a generated kind are dictionary files;
        :meth:`dictionary_files` lists them.
        """
        kinds = [kind for kind in self.dictionary if not is_dictionary_file(kind)]
        return [Problem(n=n, k=k, dictionary=kind, noise=noise, snr=snr, seed=self.seed,
                        subsets_per_draw=self.subsets_per_draw)
                for kind, (noise, snr), n, k in itertools.product(kinds, self.noise_levels(), self.n, self.k)]

    def noise_levels(self) -> list[tuple[float, float | None]]:
        """The sweep's noise as ``(σ, snr)`` pairs: its ``snr`` values if it has any, else
        its ``noise`` levels; ConfigError if it has both."""
        if not self.snr:
            return [(noise, None) for noise in self.noise]
        if any(self.noise):
            raise ConfigError("a sweep has noise levels σ or signal-to-noise ratios (snr), not both; "
                              "drop one of noise and snr.")
        return [(0.0, snr) for snr in self.snr]

    def dictionary_files(self) -> list[str]:
        """The entries of ``dictionary`` that name files (the fixed-dictionary track)."""
        return [kind for kind in self.dictionary if is_dictionary_file(kind)]


def is_dictionary_file(kind: str) -> bool:
    """Whether a ``dictionary`` entry names a file rather than a generated kind.

    Anything with a path separator or a file suffix, or that exists on disk, is a file;
    other words must be one of the generated kinds.
    """
    if kind in DICTIONARY_KINDS:
        return False
    return "/" in kind or "." in kind or Path(kind).exists()


def _listify(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown key {key!r} in {where} of {source}{hint}; allowed keys: {', '.join(allowed)}.")


def _expect(value: Any, kind: type | tuple[type, ...], key: str, source: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join({int: "an integer", float: "a number", str: "a string"}[k] for k in kinds)
        raise ConfigError(f"{key} in {source} must be {names}, not {value!r}.")
    return value


def apply_config(sweep: Sweep, data: dict[str, Any], source: str, base: str | Path | None = None) -> Sweep:
    """Fill ``sweep`` from a parsed TOML document; unknown keys are errors.

    ``base`` is the directory the document's paths are relative to, and may not leave
    (see the module's documentation): by default the directory of the file
    :func:`read_config` read. A document not read from a file (a built-in suite, one a
    program builds) has no base unless given one, and its paths are taken as they are.
    """
    if base is None and isinstance(data, ConfigFile):
        base = data.path.parent
    directory = Path(base) if base is not None else None
    _check_keys(data, TOP_LEVEL, "the top level", source)
    for section, keys in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in {source} must be a table.")
        _check_keys(table, keys, f"[{section}]", source)
    for (section, key), (kinds, many) in FIELDS.items():
        table = data.get(section, {})
        if key not in table:
            continue
        if many and table[key] == []:
            raise ConfigError(f"{key} in [{section}] of {source} is an empty list, which would run nothing; "
                              "give at least one value, or leave the key out for the default.")
        values = [_expect(v, kinds, key, source)
                  for v in (_listify(table[key]) if many else [table[key]])]
        if isinstance(kinds, tuple) and float in kinds:
            values = [float(v) for v in values]
        setattr(sweep, key, values if many else values[0])
    if directory is not None and "dictionary" in data.get("problem", {}):
        sweep.dictionary = [_config_dictionary(kind, directory, source) for kind in sweep.dictionary]
    if data.get("decoders") == []:
        raise ConfigError(f"decoders in {source} is an empty list, which would run nothing; name at least "
                          "one decoder, or leave the key out for the built-ins.")
    for item in _listify(data.get("decoders", [])):
        text = _expect(item, str, "each entry of decoders", source)
        if text in ("builtin", "all"):
            sweep.decoder_sets.append(text)
        else:
            spec = parse_decoder_spec(text)
            if directory is not None:
                spec = DecoderSpec(spec.name, texts=tuple((key, ConfigString(value, directory, source))
                                                          for key, value in spec.texts))
            sweep.decoders.append(spec)
    tables = data.get("decoder", [])
    if not isinstance(tables, list):
        raise ConfigError(f"[[decoder]] in {source} must be an array of tables.")
    for table in tables:
        if not isinstance(table, dict):
            raise ConfigError(f"each [[decoder]] in {source} must be a table.")
        _check_keys(table, ("name", "params"), "[[decoder]]", source)
        if "name" not in table:
            raise ConfigError(f"a [[decoder]] table in {source} has no name.")
        params = table.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"params of decoder {table['name']!r} in {source} must be a table.")
        if directory is not None:
            params = {key: ConfigString(value, directory, source) if isinstance(value, str) else value
                      for key, value in params.items()}
        sweep.decoders.append(DecoderSpec(name=_expect(table["name"], str, "name", source),
                                          values=tuple(sorted(params.items()))))
    return sweep


def _config_dictionary(kind: str, base: Path, source: str) -> str:
    """A ``dictionary`` entry of a config file: a generated kind as it is, a file joined to ``base``."""
    if kind in DICTIONARY_KINDS or not ("/" in kind or "." in kind or (base / kind).exists()):
        return kind
    return config_path(kind, base=base, source=source, key="[problem] dictionary",
                       instead="--dictionary PATH")


def read_config(path: str | Path) -> ConfigFile:
    """Parse a TOML file; ConfigError names the file and the problem.

    The result remembers the file, so that :func:`apply_config` resolves the paths it
    names against the file's directory.
    """
    file = Path(path)
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config file {file} is not a regular file; pass a .toml file.")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {file} has {info.st_size} bytes, more than the "
                              f"{MAX_CONFIG_BYTES} allowed; pass a TOML sweep (a few lines).")
        # A byte-order mark (as some editors write) is not part of the TOML.
        text = read_regular(file, MAX_CONFIG_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist.") from None
    except RefusedFile as exc:
        raise ConfigError(f"config file {file} {exc.problem}; pass a .toml file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {_one_line(exc)}.") from None
    try:
        return ConfigFile(tomllib.loads(text), file)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError; so is a huge integer
        raise ConfigError(f"config file {file} is not valid TOML: {_one_line(exc)}.") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def suite_text(name: str) -> str:
    """The TOML text of a built-in suite (docs/contract.md §6)."""
    if name not in SUITES:
        raise ConfigError(f"no suite named {name!r}; the suites are: {', '.join(SUITES)}.")
    suites = resources.files("superposition_harness").joinpath("suites")
    return suites.joinpath(f"{name}.toml").read_text("utf-8")


def read_suite(name: str) -> dict[str, Any]:
    return tomllib.loads(suite_text(name))
