"""The decoder contract: what a plugin registers, and how its parameters are declared."""

from __future__ import annotations

import difflib
import inspect
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .dictionary import Dictionary

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]*$")
PARAM_TYPES = (int, float, bool, str)


class ParameterError(ValueError):
    """A decoder parameter that is unknown or has an invalid value."""


class AnchoredString(str):
    """A parameter's text from a source that relative paths are anchored to (a config file).

    A parameter declared with ``path=True`` asks it for :meth:`resolve`; any other
    parameter takes it as the plain string. The contract knows only this interface; the
    config reader (``ConfigString``) decides what anchoring means, so that declaring a
    decoder never imports the config parser.
    """

    def resolve(self, parameter: str, decoder: str) -> str:
        """The path this text names, as the decoder should open it."""
        return str(self)


@dataclass(frozen=True)
class Param:
    """One declared decoder parameter: its name, type, default and meaning.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``; ``choices`` restricts
    the allowed values; ``minimum`` and ``maximum`` bound numbers (inclusive).
    ``path=True`` marks a ``str`` parameter that names a file or directory the decoder
    reads: given in a config file, it is resolved against the config's directory and
    may not lead outside it (given on the command line, it is taken as it is).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    path: bool = False

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise TypeError(f"parameter {self.name!r}: type must be one of int, float, bool, str")
        if self.path and self.type is not str:
            raise TypeError(f"parameter {self.name!r}: only a str parameter can be a path")
        self.check(self.default, owner="(default)")

    def parse(self, text: str, owner: str = "") -> Any:
        """Convert the text of ``name=value`` to this parameter's type, then check it."""
        if self.path and isinstance(text, AnchoredString):
            return self.check(text, owner)  # resolved as the config file's path, not stripped
        where = _where(owner, self.name)
        text = text.strip()
        try:
            if self.type is bool:
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value: Any = lowered in ("true", "1", "yes")
            elif self.type is int:
                value = int(text)
            elif self.type is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise ParameterError(
                f"{where} must be {_type_name(self.type)}, not {text!r}."
            ) from None
        return self.check(value, owner)

    def check(self, value: Any, owner: str = "") -> Any:
        """Return ``value`` converted to this parameter's type, or raise ParameterError."""
        where = _where(owner, self.name)
        if isinstance(value, AnchoredString):
            # A path from a config file is joined to the config's directory (and must stay
            # in it); any other string from a config is the string itself.
            value = value.resolve(self.name, owner) if self.path else str(value)
        if isinstance(value, np.bool_):
            value = bool(value)
        elif isinstance(value, np.integer):
            value = int(value)
        elif isinstance(value, np.floating):
            value = float(value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is bool and not isinstance(value, bool):
            raise ParameterError(f"{where} must be true or false, not {value!r}.")
        if self.type is not bool and (isinstance(value, bool) or not isinstance(value, self.type)):
            raise ParameterError(f"{where} must be {_type_name(self.type)}, not {value!r}.")
        if self.type is float and not math.isfinite(value):
            raise ParameterError(f"{where} must be a finite number, not {value!r}.")
        if self.choices is not None and value not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            raise ParameterError(f"{where} must be one of {options}, not {value!r}.")
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(f"{where} must be at least {self.minimum}, not {value!r}.")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f"{where} must be at most {self.maximum}, not {value!r}.")
        return value

    def describe(self) -> dict[str, Any]:
        """The declaration as plain data, for ``harness plugins --json``."""
        out: dict[str, Any] = {
            "name": self.name, "type": self.type.__name__, "default": self.default,
            "help": self.help,
        }
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.path:
            out["path"] = True
        return out


def _where(owner: str, name: str) -> str:
    return f"decoder {owner!r} parameter {name!r}" if owner else f"parameter {name!r}"


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]


class Decoder(ABC):
    """Base class of every decoder, built-in or third-party.

    A subclass declares, as class attributes:

    - ``name``: the name users select it by (lower case, e.g. ``"mp"``);
    - ``description``: one sentence;
    - ``parameters``: a tuple of :class:`Param`, each with a default;
    - capabilities: ``needs_k`` (uses the number of active features ``k``),
      ``any_dictionary`` (works on any unit-norm dictionary, not only generated ones;
      a decoder that does not implements :meth:`own_dictionary`),
      ``uses_noise`` (uses the noise level σ). They decide which decoders a sweep of
      ``builtin``/``all`` runs (``any_dictionary``) and which conformance checks apply:
      a decoder that declares it ignores ``k`` or σ is checked to decode the same sets
      whatever it is told;
    - ``version`` (optional): defaults to the version of the package that registered it;
    - ``batch_arrays`` (optional): how many ``B × N`` float64 arrays :meth:`decode`
      holds at once (default 6); the harness budgets memory with it before a run starts.

    Parameters are validated and stored unchanged in ``__init__``; ``self.params`` holds
    them, and each is also an attribute. Annotate each one in the class body with its
    type (``level: float`` beside ``Param("level", float, …)``) so that a type checker
    knows ``self.level``; an annotation that disagrees with its declaration is refused.
    The work happens in :meth:`decode`, which must treat each signal of the batch
    independently, so that the decoded set of a signal does not depend on the batch it
    came in.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Param, ...]] = ()
    needs_k: ClassVar[bool] = True
    any_dictionary: ClassVar[bool] = True
    uses_noise: ClassVar[bool] = False
    version: ClassVar[str | None] = None
    batch_arrays: ClassVar[float] = 6

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = resolve_params(type(self), params)
        for key, value in self.params.items():
            setattr(self, key, value)

    @abstractmethod
    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> Sequence[np.ndarray] | np.ndarray:
        """Decode a batch of signals into sets of codeword indices.

        ``signals`` is float32 of shape ``(B, d)``; ``k`` is the number of active
        features and ``noise`` the noise level σ (decoders may ignore either). Return
        either an integer array of shape ``(B, m)`` (each row one set) or a sequence of
        ``B`` one-dimensional integer arrays (sets of any size). Indices must lie in
        ``[0, N)`` and must not repeat within a set.
        """

    def own_dictionary(self) -> Dictionary | None:
        """The dictionary a decoder tied to its own (``any_dictionary = False``, such as an
        SAE's encoder) was made for, or None for one that works on any dictionary.

        The conformance suite checks such a decoder on it; an error here (the weights it
        needs were not given, say) is reported as every check's failure.
        """
        return None

    def identity(self) -> Mapping[str, Any] | None:
        """What identifies this decoder beyond its parameters, as a JSON object, or None.

        A decoder that reads files (an encoder's weights, say) returns their SHA-256 here,
        and may add facts about them a leaderboard shows (``training_flops``: the training
        compute that made them). Every record of the decoder stores it as
        ``decoder_identity``: a run reuses a stored record only when it matches, and
        ``harness verify`` re-makes the decoder and refuses to vouch for a record whose
        files have changed since. Called once per run, before any trial.
        """
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def decoder_identity(decoder: Decoder) -> tuple[dict[str, Any] | None, str | None]:
    """``decoder.identity()`` as a plain JSON object, and None; or None and why it could not be
    had (the plugin raised, or returned what is not a JSON object): then its runs are errors."""
    try:
        given = decoder.identity()
        if given is None:
            return None, None
        if not isinstance(given, Mapping):
            raise TypeError(f"identity() returned {type(given).__name__}, not a mapping")
        return json.loads(json.dumps(dict(given), allow_nan=False, sort_keys=True)), None
    except Exception as exc:  # a plugin's failure is recorded as its error, not raised
        return None, f"its identity() failed: {type(exc).__name__}: {exc}"


def resolve_params(cls: type[Decoder], given: Mapping[str, Any]) -> dict[str, Any]:
    """The full parameter values of ``cls``: declared defaults overridden by ``given``."""
    declared = {p.name: p for p in cls.parameters}
    for key in given:
        if key not in declared:
            raise ParameterError(_unknown_parameter(cls, key))
    values = {}
    for name, param in declared.items():
        values[name] = param.check(given[name], cls.name) if name in given else param.default
    return values


def params_text(params: Mapping[str, Any] | None) -> str:
    """Parameters as ``key=value,...`` in key order (strings quoted); ``-`` if none."""
    if not params:
        return "-"
    return ",".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in sorted(params.items()))


def parse_params(cls: type[Decoder], pairs: Mapping[str, str]) -> dict[str, Any]:
    """Parse ``name=value`` texts against ``cls``'s declared parameters (given ones only)."""
    declared = {p.name: p for p in cls.parameters}
    values = {}
    for key, text in pairs.items():
        if key not in declared:
            raise ParameterError(_unknown_parameter(cls, key))
        values[key] = declared[key].parse(text, cls.name)
    return values


def _unknown_parameter(cls: type[Decoder], key: str) -> str:
    names = [p.name for p in cls.parameters]
    if not names:
        return f"decoder {cls.name!r} takes no parameters, but {key!r} was given."
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"decoder {cls.name!r} has no parameter {key!r}{hint}; "
            f"its parameters are: {', '.join(names)}.")


def check_decoder_class(cls: object) -> str | None:
    """Why ``cls`` cannot be registered as a decoder, or None if it can."""
    if not isinstance(cls, type) or not issubclass(cls, Decoder):
        return f"{cls!r} is not a subclass of superposition_harness.Decoder"
    if not isinstance(cls.name, str) or not NAME_PATTERN.match(cls.name):
        return (f"{cls.__name__}.name must be a lower-case name such as 'mp' "
                f"(letters, digits, '_', '-', '.'), not {cls.name!r}")
    if not isinstance(cls.description, str) or not cls.description.strip():
        return f"decoder {cls.name!r} has no description"
    if inspect.isabstract(cls):
        return f"decoder {cls.name!r} does not implement decode()"
    for flag in ("needs_k", "any_dictionary", "uses_noise"):
        if not isinstance(getattr(cls, flag), bool):
            return f"decoder {cls.name!r}: {flag} must be True or False, not {getattr(cls, flag)!r}"
    if cls.version is not None and not isinstance(cls.version, str):
        return f"decoder {cls.name!r}: version must be a string, not {cls.version!r}"
    if not isinstance(cls.parameters, (tuple, list)):
        return (f"decoder {cls.name!r}: parameters must be a tuple of Param, not "
                f"{type(cls.parameters).__name__} (a single Param needs a trailing comma)")
    seen = set()
    annotated = _annotations(cls)
    for param in cls.parameters:
        if not isinstance(param, Param):
            return f"decoder {cls.name!r} declares a parameter that is not a Param: {param!r}"
        if param.name in seen:
            return f"decoder {cls.name!r} declares parameter {param.name!r} twice"
        seen.add(param.name)
        given = annotated.get(param.name, param.type)
        if given not in (param.type, param.type.__name__):
            return (f"decoder {cls.name!r} declares parameter {param.name!r} as {param.type.__name__} "
                    f"but annotates it as {getattr(given, '__name__', given)}")
    return None


def _annotations(cls: type) -> dict[str, Any]:
    """The class-body annotations of ``cls`` and its bases, nearest first (unevaluated)."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        found.update(inspect.get_annotations(klass))
    return found
