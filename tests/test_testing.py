"""superposition_harness.testing: the conformance suite as one pytest test per check."""

from __future__ import annotations

import textwrap

import pytest
from superposition_harness.conformance import CHECKS
from superposition_harness.testing import parametrize_with_checks

pytest_plugins = ["pytester"]


def test_one_test_per_decoder_and_check_with_failures_and_skips_of_their_own(pytester):
    pytester.makepyfile(textwrap.dedent('''
        import numpy as np
        from superposition_harness import Decoder
        from superposition_harness.testing import parametrize_with_checks
        from superposition_harness_builtins.topk import TopKDecoder


        class BatchDependent(Decoder):
            name = "batch-dependent"
            description = "Centres each batch, so a signal's set depends on its batch."

            def decode(self, dictionary, signals, *, k, noise):
                centred = signals - signals.mean(axis=0)
                return np.argsort(-dictionary.correlate(centred), axis=1, kind="stable")[:, :k]


        @parametrize_with_checks([TopKDecoder(), BatchDependent()])
        def test_conforms(decoder, check):
            check(decoder)
    '''))
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "-rA")
    per_decoder = len(CHECKS)
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] + outcomes["failed"] + outcomes["skipped"] == 2 * per_decoder
    # TopK declares it uses k: its "k unused" check is skipped with that reason, the rest pass.
    result.stdout.fnmatch_lines(["*SKIPPED*k unused: it declares needs_k = True*"])
    result.stdout.fnmatch_lines(["*FAILED*test_conforms?BatchDependent()-batch independent?*"])
    result.stdout.fnmatch_lines(["*PASSED*test_conforms?TopKDecoder()-valid output?*"])
    result.stdout.fnmatch_lines(["*batch independent: decoder 'batch-dependent' decoded a signal*"])
    assert outcomes["failed"] == 1 and "FAILED" not in " ".join(
        line for line in result.stdout.lines if "TopKDecoder()" in line)


def test_it_takes_decoder_instances():
    from superposition_harness_builtins.topk import TopKDecoder
    with pytest.raises(TypeError, match="Decoder instances"):
        parametrize_with_checks([TopKDecoder])
