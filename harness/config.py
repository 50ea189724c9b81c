"""Sweep configurations: TOML files (and the built-in suites) naming problems and decoders.

A sweep is the product of its ``n``, ``k``, ``dictionary`` and ``noise`` lists, each
run with every listed decoder. The layout, with every key optional::

    [problem]
    n = [4096]                  # an integer or a list of them
    k = [4, 8, 16, 32]
    dictionary = "rademacher"   # or "gaussian", or a matrix / SAE file, or a list
    noise = 0.0                 # σ, or a list
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
"""

from __future__ import annotations

import difflib
import itertools
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .problem import DICTIONARY_KINDS, Problem

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
    ("problem", "noise"): ((int, float), True),
    ("problem", "seed"): (int, False),
    ("problem", "subsets_per_draw"): (int, False),
    ("search", "target"): ((int, float), False),
    ("search", "trials"): (int, False),
    ("search", "d_max"): (int, False),
    ("search", "k_max"): (int, False),
    ("search", "resolution"): ((int, float), False),
    ("run", "batch_size"): (int, False),
}
SECTIONS: dict[str, tuple[str, ...]] = {
    section: tuple(key for (owner, key) in FIELDS if owner == section)
    for section in ("problem", "search", "run")
}
TOP_LEVEL = ("problem", "search", "run", "decoders", "decoder", "description")
SPEC_PATTERN = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$", re.DOTALL)


class ConfigError(ValueError):
    """An invalid configuration or decoder selection; the message names what to change."""


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
    noise: list[float] = field(default_factory=lambda: [0.0])
    seed: int = 0
    subsets_per_draw: int = 32
    target: float = 0.95
    trials: int = 256
    d_max: int | None = None
    k_max: int | None = None
    resolution: float = 0.01
    batch_size: int = 32
    decoders: list[DecoderSpec] = field(default_factory=list)
    decoder_sets: list[str] = field(default_factory=list)  # "builtin" / "all"

    def problems(self) -> list[Problem]:
        """Every problem of the sweep on a generated dictionary, validated, in a fixed order.

        Entries of ``dictionary`` that are not a generated kind are dictionary files;
        :meth:`dictionary_files` lists them.
        """
        kinds = [kind for kind in self.dictionary if not is_dictionary_file(kind)]
        return [Problem(n=n, k=k, dictionary=kind, noise=noise, seed=self.seed,
                        subsets_per_draw=self.subsets_per_draw)
                for kind, noise, n, k in itertools.product(kinds, self.noise, self.n, self.k)]

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


def apply_config(sweep: Sweep, data: dict[str, Any], source: str) -> Sweep:
    """Fill ``sweep`` from a parsed TOML document; unknown keys are errors."""
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
        values = [_expect(v, kinds, key, source)
                  for v in (_listify(table[key]) if many else [table[key]])]
        if isinstance(kinds, tuple) and float in kinds:
            values = [float(v) for v in values]
        setattr(sweep, key, values if many else values[0])
    for item in _listify(data.get("decoders", [])):
        text = _expect(item, str, "each entry of decoders", source)
        if text in ("builtin", "all"):
            sweep.decoder_sets.append(text)
        else:
            sweep.decoders.append(parse_decoder_spec(text))
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
        sweep.decoders.append(DecoderSpec(name=_expect(table["name"], str, "name", source),
                                          values=tuple(sorted(params.items()))))
    return sweep


def read_config(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; ConfigError names the file and the problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}.") from None


def suite_text(name: str) -> str:
    """The TOML text of a built-in suite (SPEC §5)."""
    if name not in SUITES:
        raise ConfigError(f"no suite named {name!r}; the suites are: {', '.join(SUITES)}.")
    suites = resources.files("superposition_harness").joinpath("suites")
    return suites.joinpath(f"{name}.toml").read_text("utf-8")


def read_suite(name: str) -> dict[str, Any]:
    return tomllib.loads(suite_text(name))
