"""The decoder conformance suite: the contract every registered decoder must keep.

Run it on any decoder, built-in or third-party, from the command line
(``harness check NAME``) or from a test (``assert_conforms(MyDecoder())``). Each check
decodes a few small batches and looks only at what the harness relies on: valid sets,
determinism, independence from the batch, and graceful behaviour on edge cases. It
does not judge how good a decoder is, except that it must read back a single codeword
when the dictionary is nearly orthogonal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from .decoder import Decoder
from .dictionary import Dictionary, MatrixDictionary, generated_dictionary
from .problem import Problem, draw_noise, draw_subsets
from .runner import DecoderFault, check_decoded


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one conformance check; a skipped check did not apply."""

    name: str
    passed: bool
    detail: str
    skipped: bool = False


class ConformanceError(AssertionError):
    """A decoder that broke its contract; the message lists the failed checks."""


@dataclass(frozen=True)
class _Case:
    dictionary: Dictionary
    signals: np.ndarray
    subsets: np.ndarray
    k: int
    noise: float = 0.0


def _case(n: int, k: int, d: int, *, kind: str = "rademacher", noise: float = 0.0,
          seed: int = 7, count: int = 8) -> _Case:
    problem = Problem(n=n, k=k, dictionary=kind, noise=noise, seed=seed, subsets_per_draw=count)
    dictionary = generated_dictionary(problem, d, draw=0)
    subsets = draw_subsets(problem, 0)
    noise_rows = draw_noise(problem, 0, d) if noise else None
    return _Case(dictionary, dictionary.superpose(subsets, noise_rows, noise), subsets, k, noise)


def _decode(decoder: Decoder, case: _Case, signals: np.ndarray | None = None) -> list[np.ndarray]:
    batch = case.signals if signals is None else signals
    copy = batch.copy()
    output = decoder.decode(case.dictionary, batch, k=case.k, noise=case.noise)
    if not np.array_equal(batch, copy):
        raise DecoderFault("changed the signals it was given")
    return check_decoded(output, batch.shape[0], case.dictionary.n)


def _same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def _valid_output(decoder: Decoder) -> str:
    sets = _decode(decoder, _case(256, 4, 64))
    return f"{len(sets)} valid sets"


def _deterministic(decoder: Decoder) -> str:
    case = _case(256, 4, 48)
    if not _same(_decode(decoder, case), _decode(decoder, case)):
        raise DecoderFault("decoded the same batch differently on a second call")
    return "the same sets twice"


def _batch_independent(decoder: Decoder) -> str:
    case = _case(256, 4, 40, count=12)
    together = _decode(decoder, case)
    alone = [s for row in case.signals for s in _decode(decoder, case, row[None, :])]
    threes = [s for i in range(0, 12, 3) for s in _decode(decoder, case, case.signals[i:i + 3])]
    if not _same(together, alone):
        raise DecoderFault("decoded a signal differently alone than in a batch of 12")
    if not _same(together, threes):
        raise DecoderFault("decoded a signal differently in batches of 3 than in a batch of 12")
    return "batches of 12, 3 and 1 agree"


def _single_codeword(decoder: Decoder) -> str:
    case = _case(128, 1, 128, count=16)
    sets = _decode(decoder, case)
    correct = sum(np.array_equal(s, t) for s, t in zip(sets, case.subsets, strict=True))
    if correct < 15:
        raise DecoderFault(f"read back only {correct} of 16 single codewords at d = N = 128")
    return f"{correct} of 16 single codewords read back at d = N"


def _fewer_dimensions_than_k(decoder: Decoder) -> str:
    sets = _decode(decoder, _case(64, 8, 4))
    return f"valid sets at d = 4 < k = 8 (sizes {sorted({s.size for s in sets})})"


def _one_dimension(decoder: Decoder) -> str:
    _decode(decoder, _case(32, 2, 1))
    return "valid sets at d = 1"


def _repeated_columns(decoder: Decoder) -> str:
    rng = np.random.default_rng(11)
    matrix = rng.choice([-1.0, 1.0], size=(24, 60))
    matrix[:, 30:] = matrix[:, :30]  # every codeword appears twice
    dictionary = MatrixDictionary(matrix)
    subsets = np.sort(np.stack([rng.choice(60, 3, replace=False) for _ in range(6)]), axis=1)
    case = _Case(dictionary, dictionary.superpose(subsets), subsets, 3)
    sets = _decode(decoder, case)
    if not _same(sets, _decode(decoder, case)):
        raise DecoderFault("decoded a dictionary with repeated columns differently on a second call")
    return "valid, repeatable sets with every codeword repeated"


def _offset(decoder: Decoder) -> str:
    # An SAE's dictionary: every signal carries its b_dec (docs/contract.md §1). Gaussian codewords,
    # so that no exact ties hang on the last bits that subtracting the offset rounds.
    rng = np.random.default_rng(13)
    matrix = rng.standard_normal((48, 192))
    shift = rng.standard_normal(48)
    shift *= 2 / np.linalg.norm(shift)
    plain, shifted = MatrixDictionary(matrix), MatrixDictionary(matrix, offset=shift)
    subsets = np.sort(np.stack([rng.choice(192, 3, replace=False) for _ in range(8)]), axis=1)
    without = _decode(decoder, _Case(plain, plain.superpose(subsets), subsets, 3))
    carried = _decode(decoder, _Case(shifted, shifted.superpose(subsets), subsets, 3))
    if not _same(without, carried):
        raise DecoderFault("decoded signals that carry the dictionary's offset (an SAE's b_dec) otherwise "
                           "than the same signals without it; subtract it first "
                           "(dictionary.subtract_offset(signals))")
    return "the same sets with and without an offset (b_dec) on every signal"


def _noisy(decoder: Decoder) -> str:
    _decode(decoder, _case(256, 4, 64, noise=0.2))
    return "valid sets at σ = 0.2"


def _gaussian(decoder: Decoder) -> str:
    _decode(decoder, _case(256, 4, 64, kind="gaussian"))
    return "valid sets on a Gaussian dictionary"


#: Every check, by name, in the order they run.
CHECKS: dict[str, Callable[[Decoder], str]] = {
    "valid output": _valid_output,
    "deterministic": _deterministic,
    "batch independent": _batch_independent,
    "k = 1": _single_codeword,
    "d < k": _fewer_dimensions_than_k,
    "d = 1": _one_dimension,
    "repeated columns": _repeated_columns,
    "offset": _offset,
    "noise": _noisy,
    "gaussian dictionary": _gaussian,
}


#: The checks that still apply to a decoder tied to its own dictionary (``any_dictionary``
#: false), run on that dictionary.
OWN_DICTIONARY_CHECKS = ("valid output", "deterministic", "batch independent", "noise")


def _own_case(dictionary: Dictionary, *, noise: float = 0.0, count: int = 12) -> _Case:
    k = max(1, min(3, dictionary.n - 1))
    problem = Problem(n=dictionary.n, k=k, noise=noise, seed=7, subsets_per_draw=count)
    subsets = draw_subsets(problem, 0)
    noise_rows = draw_noise(problem, 0, dictionary.d) if noise else None
    return _Case(dictionary, dictionary.superpose(subsets, noise_rows, noise), subsets, k, noise)


def _own_dictionary_checks(decoder: Decoder, dictionary: Dictionary) -> dict[str, Callable[[], str]]:
    case, noisy = _own_case(dictionary), _own_case(dictionary, noise=0.2)

    def valid() -> str:
        return f"{len(_decode(decoder, case))} valid sets on its own dictionary"

    def deterministic() -> str:
        if not _same(_decode(decoder, case), _decode(decoder, case)):
            raise DecoderFault("decoded the same batch differently on a second call")
        return "the same sets twice"

    def independent() -> str:
        together = _decode(decoder, case)
        alone = [s for row in case.signals for s in _decode(decoder, case, row[None, :])]
        if not _same(together, alone):
            raise DecoderFault("decoded a signal differently alone than in a batch of 12")
        return "batches of 12 and 1 agree"

    def noise() -> str:
        _decode(decoder, noisy)
        return "valid sets at σ = 0.2"

    return dict(zip(OWN_DICTIONARY_CHECKS, (valid, deterministic, independent, noise), strict=True))


def run_conformance(decoder: Decoder, dictionary: Dictionary | None = None) -> list[CheckResult]:
    """Run every check on ``decoder``; a check that raises is a failed check.

    A decoder that works only on its own dictionary (``any_dictionary`` false) is
    checked on ``dictionary``, or on what its ``own_dictionary()`` method returns; the
    checks that need generated dictionaries are then skipped.
    """
    if not decoder.any_dictionary:
        own = getattr(decoder, "own_dictionary", None)
        if dictionary is None and callable(own):
            try:
                dictionary = own()
            except Exception as exc:
                return [CheckResult(name, False, f"own_dictionary() raised {type(exc).__name__}: {exc}")
                        for name in CHECKS]
        if dictionary is None:
            return [CheckResult(name, True, "needs its own dictionary; none was given", skipped=True)
                    for name in CHECKS]
        checks = _own_dictionary_checks(decoder, dictionary)
        return [_attempt(decoder, name, checks[name]) if name in checks
                else CheckResult(name, True, "does not apply to a decoder tied to its own dictionary",
                                 skipped=True)
                for name in CHECKS]
    return [_attempt(decoder, name, partial(check, decoder)) for name, check in CHECKS.items()]


def _attempt(decoder: Decoder, name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except DecoderFault as fault:
        return CheckResult(name, False, f"decoder {decoder.name!r} {fault}")
    except Exception as exc:  # a failing plugin is a failed check, not a crash
        return CheckResult(name, False, f"raised {type(exc).__name__}: {exc}")


def assert_conforms(decoder: Decoder) -> None:
    """Raise :class:`ConformanceError` naming every failed check; for use in tests."""
    failed = [r for r in run_conformance(decoder) if not r.passed]
    if failed:
        lines = "; ".join(f"{r.name}: {r.detail}" for r in failed)
        raise ConformanceError(f"decoder {decoder.name!r} fails {len(failed)} check(s): {lines}")
