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
from dataclasses import dataclass, replace
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


class _Cases:
    """Where a check's batches come from: generated dictionaries of the sizes it asks for."""

    def case(self, n: int, k: int, d: int, *, noise: float = 0.0, count: int = 8) -> _Case:
        return _case(n, k, d, noise=noise, count=count)


class _OwnCases(_Cases):
    """A decoder tied to its own dictionary: every batch comes from that dictionary, with a
    few active features, whatever size the check would ask of a generated one."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary

    def case(self, n: int, k: int, d: int, *, noise: float = 0.0, count: int = 8) -> _Case:
        dictionary = self.dictionary
        k = max(1, min(3, dictionary.n - 1))
        problem = Problem(n=dictionary.n, k=k, noise=noise, seed=7, subsets_per_draw=count)
        subsets = draw_subsets(problem, 0)
        noise_rows = draw_noise(problem, 0, dictionary.d) if noise else None
        return _Case(dictionary, dictionary.superpose(subsets, noise_rows, noise), subsets, k, noise)


def _valid_output(decoder: Decoder, cases: _Cases) -> str:
    sets = _decode(decoder, cases.case(256, 4, 64))
    return f"{len(sets)} valid sets"


def _deterministic(decoder: Decoder, cases: _Cases) -> str:
    case = cases.case(256, 4, 48)
    if not _same(_decode(decoder, case), _decode(decoder, case)):
        raise DecoderFault("decoded the same batch differently on a second call")
    return "the same sets twice"


def _batch_independent(decoder: Decoder, cases: _Cases) -> str:
    case = cases.case(256, 4, 40, count=12)
    together = _decode(decoder, case)
    alone = [s for row in case.signals for s in _decode(decoder, case, row[None, :])]
    threes = [s for i in range(0, 12, 3) for s in _decode(decoder, case, case.signals[i:i + 3])]
    if not _same(together, alone):
        raise DecoderFault("decoded a signal differently alone than in a batch of 12")
    if not _same(together, threes):
        raise DecoderFault("decoded a signal differently in batches of 3 than in a batch of 12")
    return "batches of 12, 3 and 1 agree"


def _single_codeword(decoder: Decoder, cases: _Cases) -> str:
    case = cases.case(128, 1, 128, count=16)
    sets = _decode(decoder, case)
    correct = sum(np.array_equal(s, t) for s, t in zip(sets, case.subsets, strict=True))
    if correct < 15:
        raise DecoderFault(f"read back only {correct} of 16 single codewords at d = N = 128")
    return f"{correct} of 16 single codewords read back at d = N"


def _fewer_dimensions_than_k(decoder: Decoder, cases: _Cases) -> str:
    sets = _decode(decoder, cases.case(64, 8, 4))
    return f"valid sets at d = 4 < k = 8 (sizes {sorted({s.size for s in sets})})"


def _one_dimension(decoder: Decoder, cases: _Cases) -> str:
    _decode(decoder, cases.case(32, 2, 1))
    return "valid sets at d = 1"


def _repeated_columns(decoder: Decoder, cases: _Cases) -> str:
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


def _offset(decoder: Decoder, cases: _Cases) -> str:
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


def _noisy(decoder: Decoder, cases: _Cases) -> str:
    _decode(decoder, cases.case(256, 4, 64, noise=0.2))
    return "valid sets at σ = 0.2"


def _gaussian(decoder: Decoder, cases: _Cases) -> str:
    case = _case(256, 4, 64, kind="gaussian")
    _decode(decoder, case)
    return "valid sets on a Gaussian dictionary"


def _k_unused(decoder: Decoder, cases: _Cases) -> str:
    case = cases.case(256, 4, 64)
    told = _decode(decoder, case)
    if not _same(told, _decode(decoder, _Case(case.dictionary, case.signals, case.subsets, case.k + 3))):
        raise DecoderFault("declares needs_k = False but decoded the same signals differently when told "
                           "another k; declare needs_k = True")
    return "the same sets whatever k it is told"


def _noise_unused(decoder: Decoder, cases: _Cases) -> str:
    case = cases.case(256, 4, 64, noise=0.2)
    told = _decode(decoder, case)
    if not _same(told, _decode(decoder, _Case(case.dictionary, case.signals, case.subsets, case.k, 0.0))):
        raise DecoderFault("declares uses_noise = False but decoded the same signals differently when "
                           "told another noise level; declare uses_noise = True")
    return "the same sets whatever noise level it is told"


def _always(cls: type[Decoder]) -> bool:
    return True


def _any_dictionary(cls: type[Decoder]) -> bool:
    return cls.any_dictionary


@dataclass(frozen=True)
class Check:
    """One check of the contract, and the decoders it applies to, read from their declared
    capabilities (``applies``): a decoder tied to its own dictionary (``any_dictionary``
    false) takes the checks that need no particular dictionary, on its own one; a
    decoder that declares it ignores ``k`` or the noise level is held to it."""

    name: str
    run: Callable[[Decoder, _Cases], str]
    applies: Callable[[type[Decoder]], bool] = _always
    #: Why it does not apply, when it does not.
    otherwise: str = ""


_GENERATED_ONLY = "does not apply to a decoder tied to its own dictionary"

#: Every check, in the order they run.
CHECKS: tuple[Check, ...] = (
    Check("valid output", _valid_output),
    Check("deterministic", _deterministic),
    Check("batch independent", _batch_independent),
    Check("k = 1", _single_codeword, _any_dictionary, _GENERATED_ONLY),
    Check("d < k", _fewer_dimensions_than_k, _any_dictionary, _GENERATED_ONLY),
    Check("d = 1", _one_dimension, _any_dictionary, _GENERATED_ONLY),
    Check("repeated columns", _repeated_columns, _any_dictionary, _GENERATED_ONLY),
    Check("offset", _offset, _any_dictionary, _GENERATED_ONLY),
    Check("noise", _noisy),
    Check("gaussian dictionary", _gaussian, _any_dictionary, _GENERATED_ONLY),
    Check("k unused", _k_unused, lambda cls: not cls.needs_k, "it declares needs_k = True"),
    Check("noise unused", _noise_unused, lambda cls: not cls.uses_noise, "it declares uses_noise = True"),
)


def conformance_checks(decoder: Decoder, dictionary: Dictionary | None = None
                       ) -> list[tuple[str, Callable[[], CheckResult]]]:
    """Every check by name, each as a call that runs it on ``decoder`` and returns its result.

    The checks come from the decoder's declared capabilities (see :class:`Check`). A
    decoder tied to its own dictionary is checked on ``dictionary``, or on what its
    :meth:`~superposition_harness.Decoder.own_dictionary` returns; without one, every
    check is skipped, and if it raises, every check fails with its error.
    """
    cases: _Cases = _Cases()
    refused: CheckResult | None = None
    if not decoder.any_dictionary:
        if dictionary is None:
            try:
                dictionary = decoder.own_dictionary()
            except Exception as exc:
                refused = CheckResult("", False, f"own_dictionary() raised {type(exc).__name__}: {exc}")
        if dictionary is None and refused is None:
            refused = CheckResult("", True, "needs its own dictionary; none was given", skipped=True)
        if dictionary is not None:
            cases = _OwnCases(dictionary)

    def one(check: Check) -> Callable[[], CheckResult]:
        if refused is not None:
            return partial(replace, refused, name=check.name)
        if not check.applies(type(decoder)):
            return partial(CheckResult, check.name, True, check.otherwise, True)
        return partial(_attempt, decoder, check.name, partial(check.run, decoder, cases))

    return [(check.name, one(check)) for check in CHECKS]


def run_conformance(decoder: Decoder, dictionary: Dictionary | None = None) -> list[CheckResult]:
    """Run every check on ``decoder`` (see :func:`conformance_checks`); a check that raises is
    a failed check, one that does not apply to it is skipped."""
    return [run() for _, run in conformance_checks(decoder, dictionary)]


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
