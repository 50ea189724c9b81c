"""The AMP decoders (`amp`, `amp-binary`) against their definitions and their state evolution."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, optimize, special
from superposition_harness import MatrixDictionary, ParameterError, Problem
from superposition_harness.conformance import assert_conforms
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.plugins import load_registry
from superposition_harness.problem import draw_noise, draw_subsets
from superposition_harness.runner import RunSettings, check_decoded, run_decoder
from superposition_harness_builtins._message_passing import TILE, row_sums, square_sums
from superposition_harness_builtins.amp import SoftThresholdAMP, minimax_alpha, soft_threshold_risk
from superposition_harness_builtins.amp_binary import BinaryAMP, posterior_denoise, posterior_mean
from superposition_harness_builtins.topk import TopKDecoder

DECODERS = [
    pytest.param(lambda **p: SoftThresholdAMP(**p), id="amp"),
    pytest.param(lambda **p: SoftThresholdAMP(nonnegative=False, **p), id="amp-signed"),
    pytest.param(lambda **p: BinaryAMP(**p), id="amp-binary"),
]


def instances(n=1024, k=8, d=120, seed=21, draw=0, count=32, kind="rademacher", noise=0.0):
    problem = Problem(n=n, k=k, seed=seed, subsets_per_draw=count, dictionary=kind, noise=noise)
    dictionary = generated_dictionary(problem, d, draw)
    subsets = draw_subsets(problem, draw)
    noise_rows = draw_noise(problem, draw, d) if noise else None
    return dictionary, subsets, dictionary.superpose(subsets, noise_rows, noise)


def decode_in_batches(decoder, dictionary, signals, k, batch, noise=0.0):
    sets, last = [], []
    for start in range(0, len(signals), batch):
        chunk = signals[start:start + batch]
        sets += check_decoded(decoder.decode(dictionary, chunk, k=k, noise=noise), len(chunk),
                              dictionary.n)
        states = list(decoder.iterate(dictionary, chunk, k=k, noise=noise))
        last.append(states[-1].estimate.copy())
    return sets, np.concatenate(last)


def test_both_decoders_are_registered_with_their_parameters():
    registry = load_registry(env={"HARNESS_LOAD_PLUGINS": "amp,amp-binary"})
    assert registry.errors == []
    assert registry.get("amp").cls is SoftThresholdAMP
    assert registry.get("amp-binary").cls is BinaryAMP
    assert {p.name for p in SoftThresholdAMP.parameters} == {
        "threshold", "alpha", "iterations", "tol", "damping", "nonnegative"}
    assert {p.name for p in BinaryAMP.parameters} == {"iterations", "tol", "damping"}


@pytest.mark.parametrize("make", DECODERS)
def test_every_set_is_read_back_at_a_generous_dimension(make):
    dictionary, subsets, signals = instances(d=200)
    decoded = check_decoded(make().decode(dictionary, signals, k=8, noise=0.0), 32, 1024)
    assert all(np.array_equal(got, want) for got, want in zip(decoded, subsets, strict=True))


def test_amp_binary_reads_back_every_set_through_small_noise():
    dictionary, subsets, signals = instances(d=200, noise=0.05)
    decoded = check_decoded(BinaryAMP().decode(dictionary, signals, k=8, noise=0.05), 32, 1024)
    assert all(np.array_equal(got, want) for got, want in zip(decoded, subsets, strict=True))


@pytest.mark.parametrize("make", DECODERS)
def test_a_signal_decodes_the_same_bits_in_any_batch(make):
    """Near d* signals stop at different iterations: the sets and the estimates still agree bitwise.

    On a Rademacher dictionary, where the snapped products are exact (README,
    Reproducibility); a Gaussian dictionary's products may differ in the last bit.
    """
    decoder = make()
    dictionary, _, signals = instances(d=64)
    together, estimates = decode_in_batches(decoder, dictionary, signals, 8, batch=32)
    for batch in (1, 5):
        sets, alone = decode_in_batches(decoder, dictionary, signals, 8, batch=batch)
        assert all(np.array_equal(a, b) for a, b in zip(together, sets, strict=True))
        assert np.array_equal(estimates, alone)


def test_signals_stop_at_different_iterations_near_the_threshold():
    """The batch-independence test above is meaningful: some signals freeze while others go on."""
    dictionary, _, signals = instances(d=64)
    for decoder in (BinaryAMP(), SoftThresholdAMP()):
        stopped = [int(np.count_nonzero(~state.active))
                   for state in decoder.iterate(dictionary, signals, k=8)]
        assert any(0 < count < 32 for count in stopped)


@pytest.mark.parametrize("make", DECODERS)
def test_decoding_twice_gives_the_same_sets(make):
    dictionary, _, signals = instances(d=70)
    first = check_decoded(make().decode(dictionary, signals, k=8, noise=0.0), 32, 1024)
    second = check_decoded(make().decode(dictionary, signals, k=8, noise=0.0), 32, 1024)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("make", DECODERS)
def test_the_conformance_suite_passes(make):
    """k = 1, d < k, d = 1, repeated columns, noise, a Gaussian dictionary, B = 1."""
    assert_conforms(make())


@pytest.mark.parametrize("make", DECODERS)
def test_a_batch_of_one_and_a_tiny_dictionary_give_valid_sets(make):
    dictionary = MatrixDictionary(np.array([[1.0, 1.0, -1.0]]))  # d = 1, every codeword ±the same
    signals = np.array([[0.0]], dtype=np.float32)  # x = 0: a perfect fit from the start
    decoded = check_decoded(make().decode(dictionary, signals, k=2, noise=0.0), 1, 3)
    assert decoded[0].size == 2


def test_decoding_leaves_the_signals_unchanged():
    dictionary, _, signals = instances(d=64)
    copy = signals.copy()
    BinaryAMP().decode(dictionary, signals, k=8, noise=0.0)
    SoftThresholdAMP().decode(dictionary, signals, k=8, noise=0.0)
    assert np.array_equal(signals, copy)


@pytest.mark.parametrize("cls, params, word", [
    (SoftThresholdAMP, {"alpha": -1.0}, "at least"),
    (SoftThresholdAMP, {"threshold": "universal"}, "must be one of"),
    (SoftThresholdAMP, {"iterations": 0}, "at least"),
    (SoftThresholdAMP, {"nonnegative": "yes"}, "true or false"),
    (BinaryAMP, {"tol": 2.0}, "at most"),
    (BinaryAMP, {"damping": 0.0}, "at least"),
    (BinaryAMP, {"iterations": 2.5}, "an integer"),
    (BinaryAMP, {"alpha": 2.0}, "has no parameter"),
])
def test_invalid_parameters_are_refused_with_a_sentence(cls, params, word):
    with pytest.raises(ParameterError, match=word):
        cls(**params)


def test_defaults_are_what_the_docs_state():
    assert SoftThresholdAMP().params == {
        "threshold": "minimax", "alpha": 2.0, "iterations": 30, "tol": 1e-4, "damping": 1.0,
        "nonnegative": True}
    assert BinaryAMP().params == {"iterations": 30, "tol": 1e-4, "damping": 1.0}


def test_iterations_bound_the_work():
    dictionary, _, signals = instances(d=40)  # far below d*: no signal converges
    states = list(BinaryAMP(iterations=3).iterate(dictionary, signals, k=8))
    assert [s.iteration for s in states] == [1, 2, 3]


def test_a_fixed_alpha_sets_the_soft_threshold():
    """With threshold='fixed', θ_0 = α·‖x‖/√d: the first estimate is max(Fᵀx − θ_0, 0)."""
    dictionary, _, signals = instances(d=100, count=4)
    decoder = SoftThresholdAMP(threshold="fixed", alpha=1.5)
    first = next(iter(decoder.iterate(dictionary, signals, k=8)))
    x = signals.astype(np.float64)
    theta = 1.5 * np.linalg.norm(x, axis=1) / math.sqrt(100)
    expected = np.maximum(dictionary.correlate(x) - theta[:, None], 0.0)
    np.testing.assert_allclose(first.estimate, expected, atol=1e-5)


def test_the_minimax_threshold_minimises_the_worst_case_risk():
    for rho, nonnegative in ((1 / 256, True), (1 / 256, False), (0.05, True), (1e-5, False)):
        best = optimize.minimize_scalar(lambda a: soft_threshold_risk(a, rho, nonnegative),  # noqa: B023
                                        bounds=(0.0, 6.0), method="bounded",
                                        options={"xatol": 1e-8})
        assert minimax_alpha(rho, nonnegative) == pytest.approx(best.x, abs=1e-5)
    # A sparser signal needs a higher threshold; the positive part needs a lower one.
    assert minimax_alpha(1 / 4096) > minimax_alpha(1 / 256) > minimax_alpha(1 / 16)
    assert minimax_alpha(1 / 256, True) < minimax_alpha(1 / 256, False)


def test_the_posterior_mean_is_a_stable_sigmoid():
    """η = sigmoid((r − ½)/τ² + ln(ρ/(1−ρ))), η' = η(1 − η)/τ²: exact, in [0, 1], no warnings."""
    rho = 1 / 256
    r = np.array([[-1e6, -3.0, 0.0, 0.4, 0.5, 0.6, 1.0, 3.0, 1e6]] * 2)
    tau2 = np.array([0.1, 1e-12])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, slope = posterior_mean(r, tau2, rho)
    logits = (r - 0.5) / tau2[:, None] + math.log(rho / (1 - rho))
    np.testing.assert_allclose(mean, special.expit(logits), rtol=1e-12, atol=1e-300)
    expected_slope = special.expit(logits) * special.expit(-logits) / tau2[:, None]
    np.testing.assert_allclose(slope, expected_slope, rtol=1e-12, atol=1e-300)
    assert np.all((mean >= 0) & (mean <= 1)) and np.all(np.diff(mean, axis=1) >= 0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("batch", "n", "dtype"), [
    (4, (1 << 20) + 77, np.float32), (3, TILE * 2 + 5, np.float32), (1, 300, np.float64), (5, 7, np.float32)])
def test_the_denoiser_row_by_row_gives_the_whole_array_bits(threads, batch, n, dtype):
    """posterior_denoise (tiles of a row, rows on threads) gives posterior_mean's means and
    row_sums of its slopes to the bit, whatever the row length and the thread count:
    a sum formed tile by tile would differ in its last bits."""
    import numba
    rng = np.random.default_rng(batch * n)
    pseudo = (rng.standard_normal((batch, n)) * 0.3).astype(dtype)
    pseudo[:, ::97] += 1.0
    tau2 = rng.uniform(1e-6, 0.3, size=batch)
    rho = min(16 / n, 0.25)
    mean, slope = posterior_mean(pseudo, tau2, rho)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        got_mean, got_sums = posterior_denoise(pseudo, tau2, rho)
        got_change = square_sums(mean, pseudo.astype(mean.dtype))
        got_norm = square_sums(mean)
    finally:
        numba.set_num_threads(previous)
    assert got_mean.dtype == mean.dtype and np.array_equal(got_mean, mean)
    assert np.array_equal(got_sums, row_sums(slope))
    assert np.array_equal(got_change, row_sums(np.square(mean - pseudo.astype(mean.dtype), dtype=np.float64)))
    assert np.array_equal(got_norm, row_sums(np.square(mean, dtype=np.float64)))


def test_rows_are_shared_safely_by_callers_on_several_threads():
    """Threads (a Dask worker's, say) calling the row helper at once, with batches that
    are shared among different numbers of threads (8 of numba's, in a process of its
    own): every row is worked on exactly once each call, and nothing fails."""
    import os
    import subprocess
    import sys
    script = """
import threading
import numba
import numpy as np
from superposition_harness import PARALLEL_ENTRIES
from superposition_harness_builtins._message_passing import for_rows
problems = []

def caller(batch):
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for _ in range(300):
        counts = np.zeros(batch, dtype=np.int64)

        def work(rows, counts=counts):
            for i in rows:
                counts[i] += 1
        try:
            for_rows(work, batch, PARALLEL_ENTRIES)
        except Exception as error:
            problems.append(repr(error))
            return
        if not np.all(counts == 1):
            problems.append(f"batch {batch}: rows worked on {counts.tolist()} times")
            return

callers = [threading.Thread(target=caller, args=(batch,)) for batch in (3, 1, 4, 2, 7)]
for thread in callers:
    thread.start()
for thread in callers:
    thread.join()
print(problems)
"""
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "NUMBA_NUM_THREADS": "8"},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_numpys_error_state_holds_on_the_row_threads():
    """np.errstate set by the caller reaches the threads the rows are shared among: an
    overflow raises whether the rows run here or on two threads."""
    import numba
    pseudo = np.zeros((4, (1 << 20) + 1), dtype=np.float32)
    pseudo[3, 5] = 1e35
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            with np.errstate(over="raise"), pytest.raises(FloatingPointError):
                posterior_denoise(pseudo, np.full(4, 1e-6), 1e-3)
    finally:
        numba.set_num_threads(previous)


def mmse(tau2: float, rho: float) -> float:
    """E[(η(Y + τZ; τ) − Y)²] for Y ~ Bernoulli(ρ), Z ~ N(0, 1), by adaptive quadrature."""
    tau, prior = math.sqrt(tau2), math.log(rho / (1 - rho))

    def error(z, y):
        eta = special.expit((y + tau * z - 0.5) / tau2 + prior)
        return (eta - y) ** 2 * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    total = 0.0
    for y, weight in ((0.0, 1 - rho), (1.0, rho)):
        cut = (0.5 - y - tau2 * prior) / tau  # where η crosses ½, steep when τ is small
        points = [cut] if -12 < cut < 12 else None
        total += weight * integrate.quad(error, -12, 12, args=(y,), points=points, epsabs=1e-13,
                                         limit=200)[0]
    return total


@pytest.mark.parametrize("kind, noise, checked", [("rademacher", 0.0, 4), ("gaussian", 0.1, 6)])
def test_the_error_per_iteration_follows_state_evolution(kind, noise, checked):
    """(1/N)‖y^t − y‖² and τ̂_t² track τ²_{t+1} = σ² + (N/d)·mmse(τ_t²) within 10%.

    N = 16384, k = 32 (ρ = 1/512), d = 240, 32 instances over 2 dictionary draws. The
    noiseless run collapses to the exact set around iteration 7, where finite-size
    effects make the empirical error lag the prediction; the checked iterations come
    before that.
    """
    n, k, d = 16384, 32, 240
    rho, delta = k / n, d / n
    predicted_mse, predicted_tau2 = [], []
    tau2 = noise ** 2 + rho / delta
    for _ in range(checked):
        predicted_tau2.append(tau2)
        predicted_mse.append(mmse(tau2, rho))
        tau2 = noise ** 2 + predicted_mse[-1] / delta
    measured_mse = np.zeros(checked)
    measured_tau2 = np.zeros(checked)
    for draw in range(2):
        dictionary, subsets, signals = instances(n=n, k=k, d=d, seed=5, draw=draw, count=16,
                                                 kind=kind, noise=noise)
        truth = np.zeros((16, n))
        np.put_along_axis(truth, subsets, 1.0, axis=1)
        decoder = BinaryAMP(iterations=checked, tol=0.0)
        for state in decoder.iterate(dictionary, signals, k=k, noise=noise):
            measured_mse[state.iteration - 1] += np.mean((state.estimate - truth) ** 2) / 2
            measured_tau2[state.iteration - 1] += np.mean(state.tau2) / 2
    np.testing.assert_allclose(measured_mse, predicted_mse, rtol=0.10)
    np.testing.assert_allclose(measured_tau2, predicted_tau2, rtol=0.10)
    assert predicted_mse[-1] < 0.8 * predicted_mse[0]  # the checked iterations do make progress


def test_both_need_fewer_dimensions_than_topk():
    """d*(0.95) on N = 1024, k = 8: each AMP at most topk's, and amp-binary at most amp's."""
    problem = Problem(n=1024, k=8, seed=2)
    settings = RunSettings(max_trials=128)
    found = {}
    for name, decoder in (("topk", TopKDecoder()), ("amp", SoftThresholdAMP()),
                          ("amp-binary", BinaryAMP())):
        run = run_decoder(problem, decoder, settings)
        assert run.ok, run.error
        found[name] = run.estimate.d
    assert found["topk"] is not None
    assert found["amp-binary"] <= found["amp"] <= found["topk"]
