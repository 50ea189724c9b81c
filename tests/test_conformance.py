"""The conformance suite: every built-in passes it, and each check catches what it names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from superposition_harness import Decoder, hookimpl
from superposition_harness import cli as cli_module
from superposition_harness.conformance import CHECKS, ConformanceError, assert_conforms, run_conformance
from superposition_harness.plugins import load_registry

BUILTINS = sorted(e.name for e in load_registry().decoders.values()
                  if e.package == "superposition-harness" and e.cls.any_dictionary)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_built_in_decoder_conforms(name):
    assert_conforms(load_registry().get(name).cls())


def make(label, body):
    class Made(Decoder):
        name = label
        description = "A decoder made for one conformance test."

        def decode(self, dictionary, signals, *, k, noise):
            return body(dictionary, signals, k)
    return Made()


def top(dictionary, signals, k):
    correlations = dictionary.correlate(dictionary.subtract_offset(signals))
    return np.argsort(-correlations, axis=1, kind="stable")[:, :k]


def careless(dictionary, signals, k):
    """Top-k that forgets the offset an SAE's dictionary puts on every signal (its b_dec)."""
    return np.argsort(-dictionary.correlate(signals), axis=1, kind="stable")[:, :k]


def batch_dependent(dictionary, signals, k):
    return top(dictionary, signals - signals.mean(axis=0), k)


def random_guess(dictionary, signals, k):
    return np.stack([np.random.default_rng().choice(dictionary.n, k, replace=False)
                     for _ in signals])


def mutating(dictionary, signals, k):
    signals *= 2
    return top(dictionary, signals, k)


def fragile(dictionary, signals, k):
    if dictionary.d < k:
        raise ValueError("too few dimensions")
    return top(dictionary, signals, k)


def clueless(dictionary, signals, k):
    return np.tile(np.arange(k), (signals.shape[0], 1))


@pytest.mark.parametrize("body, check", [
    (batch_dependent, "batch independent"),
    (random_guess, "deterministic"),
    (mutating, "valid output"),
    (fragile, "d < k"),
    (clueless, "k = 1"),
    (careless, "offset"),
])
def test_each_check_catches_the_fault_it_names(body, check):
    results = {r.name: r for r in run_conformance(make("faulty", body))}
    assert set(results) == {check.name for check in CHECKS}
    assert not results[check].passed
    assert "faulty" in results[check].detail or "raised" in results[check].detail


def test_a_sound_decoder_passes_every_check():
    assert all(r.passed for r in run_conformance(make("sound", top)))


def test_assert_conforms_lists_the_failed_checks():
    with pytest.raises(ConformanceError, match="fails .* check") as info:
        assert_conforms(make("faulty", batch_dependent))
    assert "batch independent" in str(info.value)


class _FaultyPlugin:
    __name__ = "faulty-plugin"

    @hookimpl
    def register_decoders(self, register):
        register(type(make("faulty", batch_dependent)))


def test_check_command_exits_0_on_built_ins_and_1_on_a_faulty_plugin(monkeypatch, capsys):
    assert cli_module.main(["check", "topk", "mp"]) == 0
    assert "22 of 22 checks passed" in capsys.readouterr().err  # 11 each: 'k unused' is not theirs
    real = cli_module.load_registry
    monkeypatch.setattr(cli_module, "load_registry", lambda: real(extra_plugins=[_FaultyPlugin()]))
    assert cli_module.main(["check", "faulty", "--json"]) == 1
    [report] = json.loads(capsys.readouterr().out)
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    assert "batch independent" in failed


def test_a_decoder_tied_to_its_own_dictionary_is_checked_on_it(tmp_path):
    """The sae decoder: the checks that apply run on the SAE's own dictionary."""
    from superposition_harness_builtins.sae import SparseAutoencoderEncoder
    from test_fixed_track import write_saelens
    rng = np.random.default_rng(4)
    matrix = (rng.choice([-1.0, 1.0], size=(48, 300)) / np.sqrt(48)).astype(np.float32)
    path = write_saelens(tmp_path / "sae", matrix, matrix.T, k=3)
    results = {r.name: r for r in run_conformance(SparseAutoencoderEncoder(weights=str(path)))}
    ran = {name for name, r in results.items() if not r.skipped}
    assert ran == {"valid output", "deterministic", "batch independent", "noise", "noise unused"}
    assert all(results[name].passed for name in ran)
    unconfigured = run_conformance(SparseAutoencoderEncoder())
    assert not any(r.passed for r in unconfigured)  # no weights: own_dictionary() fails
    assert all(r.skipped for r in run_conformance(make_tied()))


def make_tied():
    class Tied(Decoder):
        name = "tied"
        description = "A decoder that works only on a dictionary it was made for."
        any_dictionary = False

        def decode(self, dictionary, signals, *, k, noise):
            return top(dictionary, signals, k)
    return Tied()


class _TellsK(Decoder):
    name = "tells-k"
    description = "Keeps the k largest correlations but declares that it ignores k."
    needs_k = False

    def decode(self, dictionary, signals, *, k, noise):
        return top(dictionary, signals, k)


class _TellsNoise(Decoder):
    name = "tells-noise"
    description = "Keeps one more codeword in noise but declares that it ignores the noise level."

    def decode(self, dictionary, signals, *, k, noise):
        return top(dictionary, signals, k + (noise > 0))


def test_declared_capabilities_are_held_to():
    """A decoder that declares it ignores k or σ is checked to decode the same sets whatever it is told."""
    k_results = {r.name: r for r in run_conformance(_TellsK())}
    assert not k_results["k unused"].passed and "needs_k = True" in k_results["k unused"].detail
    noise_results = {r.name: r for r in run_conformance(_TellsNoise())}
    assert noise_results["k unused"].skipped and "declares needs_k = True" in noise_results["k unused"].detail
    assert not noise_results["noise unused"].passed
    assert "uses_noise = True" in noise_results["noise unused"].detail
    threshold = {r.name: r for r in run_conformance(load_registry().get("threshold").cls())}
    assert threshold["k unused"].passed and not threshold["k unused"].skipped


def test_own_dictionary_is_part_of_the_contract():
    assert Decoder.own_dictionary(make("plain", top)) is None
    assert all(r.skipped and "none was given" in r.detail for r in run_conformance(make_tied()))
