"""Testing a decoder plugin with pytest: the conformance suite as one test per check.

In a plugin's own test suite::

    from superposition_harness.testing import parametrize_with_checks

    @parametrize_with_checks([MyDecoder(), MyDecoder(level=0.4)])
    def test_conforms(decoder, check):
        check(decoder)

gives one test per decoder and check (``test_conforms[MyDecoder(level=0.4)-batch independent]``,
...): a failed check fails its own test with the check's finding, and a check that does
not apply to the decoder (by its declared capabilities) is reported as skipped with the
reason. A decoder tied to its own dictionary (``any_dictionary = False``) is checked on
what its ``own_dictionary()`` returns. The checks are those of ``harness check``
(:mod:`superposition_harness.conformance`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .conformance import CHECKS, CheckResult, ConformanceError, conformance_checks
from .decoder import Decoder

__all__ = ["parametrize_with_checks"]


class _Check:
    """One check of the suite as a pytest parameter: calling it on the decoder runs the
    check, raising :class:`~superposition_harness.conformance.ConformanceError` if it
    fails and skipping the test if it does not apply."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, decoder: Decoder) -> CheckResult:
        import pytest

        result = dict(conformance_checks(decoder))[self.name]()
        if result.skipped:
            pytest.skip(f"{self.name}: {result.detail}")
        if not result.passed:
            raise ConformanceError(f"{self.name}: {result.detail}")
        return result

    def __repr__(self) -> str:
        return self.name


def parametrize_with_checks(decoders: Iterable[Decoder]) -> Callable[[Any], Any]:
    """A ``pytest.mark.parametrize`` over ``decoder`` and ``check``: every conformance check
    of every decoder in ``decoders`` (instances, made with the parameters to check)."""
    import pytest

    made = list(decoders)
    for decoder in made:
        if not isinstance(decoder, Decoder):
            raise TypeError(f"parametrize_with_checks takes Decoder instances, not {decoder!r}")
    cases = [(decoder, _Check(check.name)) for decoder in made for check in CHECKS]
    ids = [f"{decoder!r}-{check.name}" for decoder, check in cases]
    return pytest.mark.parametrize(("decoder", "check"), cases, ids=ids)
