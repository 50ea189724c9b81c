"""The lasso decoders (`lasso-cd`, `ista`, `fista`) against scikit-learn and their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import Lasso
from superposition_harness import MatrixDictionary, ParameterError, Problem
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.plugins import load_registry
from superposition_harness.problem import draw_noise, draw_subsets
from superposition_harness.runner import RunSettings, check_decoded, run_decoder
from superposition_harness_builtins.ista import Fista, Ista
from superposition_harness_builtins.lasso_cd import LassoCD, penalties

#: Tight settings under which each solver runs to its solution.
EXACT_CD = {"tol": 1e-10, "max_sweeps": 100_000}
EXACT_ITERATIONS = {"ista": 20_000, "fista": 3_000}

DECODERS = [
    pytest.param(LassoCD, id="lasso-cd"),
    pytest.param(Ista, id="ista"),
    pytest.param(Fista, id="fista"),
]


def instances(n=256, k=5, d=40, seed=5, draw=0, count=6, kind="rademacher", noise=0.0):
    problem = Problem(n=n, k=k, seed=seed, subsets_per_draw=count, dictionary=kind, noise=noise)
    dictionary = generated_dictionary(problem, d, draw)
    subsets = draw_subsets(problem, draw)
    noise_rows = draw_noise(problem, draw, d) if noise else None
    return dictionary, subsets, dictionary.superpose(subsets, noise_rows, noise)


def objective(matrix, signals, solution, lam, nonnegative=False):
    residual = signals.astype(np.float64) - solution @ matrix.T
    if nonnegative:
        assert solution.min() >= 0
    return 0.5 * np.sum(residual**2, axis=1) + lam * np.abs(solution).sum(axis=1)


def sklearn_lasso(matrix, signal, lam, positive):
    """scikit-learn's Lasso minimises (1 / 2d)‖x − F y‖² + α‖y‖₁: the same problem for α = λ / d."""
    model = Lasso(alpha=lam / matrix.shape[0], fit_intercept=False, tol=1e-12, max_iter=1_000_000,
                  positive=positive)
    return model.fit(matrix, signal.astype(np.float64)).coef_


CASES = [
    pytest.param({}, 0.05, id="rademacher-lam0.05"),
    pytest.param({"seed": 6, "k": 8, "d": 48}, 0.2, id="rademacher-lam0.2"),
    pytest.param({"seed": 7, "kind": "gaussian", "d": 32}, 0.1, id="gaussian-lam0.1"),
    pytest.param({"seed": 8, "noise": 0.1}, 0.3, id="noisy-lam0.3"),
]


@pytest.mark.parametrize("nonnegative", [False, True], ids=["signed", "nonnegative"])
@pytest.mark.parametrize(("case", "lam"), CASES)
def test_coordinate_descent_matches_scikit_learn(case, lam, nonnegative):
    """(a) lasso-cd's solution is scikit-learn's Lasso(alpha = λ / d) to 1e-4, with and without y ≥ 0."""
    dictionary, _, signals = instances(**case)
    matrix = dictionary.dense().astype(np.float64)
    solution = LassoCD(nonnegative=nonnegative, **EXACT_CD).solve(dictionary, signals, lam)
    assert solution.shape == (len(signals), dictionary.n) and solution.dtype == np.float64
    for got, signal in zip(solution, signals, strict=True):
        want = sklearn_lasso(matrix, signal, lam, nonnegative)
        assert np.max(np.abs(got - want)) < 1e-4
        assert np.count_nonzero(got) > 0


@pytest.mark.parametrize("nonnegative", [False, True], ids=["signed", "nonnegative"])
@pytest.mark.parametrize("make", [Ista, Fista], ids=["ista", "fista"])
@pytest.mark.parametrize(("case", "lam"), CASES[:3])
def test_proximal_gradient_reaches_the_coordinate_descent_objective(case, lam, make, nonnegative):
    """(b) ista and fista, run long enough, reach lasso-cd's objective to a relative 1e-6."""
    dictionary, _, signals = instances(**case)
    matrix = dictionary.dense().astype(np.float64)
    reference = LassoCD(nonnegative=nonnegative, **EXACT_CD).solve(dictionary, signals, lam)
    decoder = make(nonnegative=nonnegative, tol=0.0)
    estimate = decoder.solve(dictionary, signals, lam, max_iter=EXACT_ITERATIONS[make.name])
    best = objective(matrix, signals, reference, lam, nonnegative)
    reached = objective(matrix, signals, estimate, lam, nonnegative)
    assert np.all(reached <= best * (1 + 1e-6))
    assert np.all(reached >= best * (1 - 1e-9))  # nothing beats the exact solution


def test_fista_needs_far_fewer_iterations_than_ista():
    dictionary, _, signals = instances()
    matrix = dictionary.dense().astype(np.float64)
    best = objective(matrix, signals, LassoCD(**EXACT_CD).solve(dictionary, signals, 0.05), 0.05)
    gaps = {}
    for make in (Ista, Fista):
        estimate = make(tol=0.0).solve(dictionary, signals, 0.05, max_iter=300)
        gaps[make.name] = np.max(objective(matrix, signals, estimate, 0.05) / best - 1)
    assert gaps["fista"] < 1e-6 < gaps["ista"]


@pytest.mark.parametrize("make", DECODERS)
def test_every_set_is_read_back_at_a_generous_dimension(make):
    dictionary, subsets, signals = instances(n=512, k=6, d=120, count=16)
    decoded = check_decoded(make().decode(dictionary, signals, k=6, noise=0.0), 16, 512)
    assert all(np.array_equal(got, want) for got, want in zip(decoded, subsets, strict=True))


@pytest.mark.parametrize("make", DECODERS)
def test_a_signal_gets_the_same_bits_alone_as_in_a_batch(make):
    """Solutions, not only sets, do not depend on the batch: every stopping decision is per signal."""
    dictionary, _, signals = instances(n=512, k=8, d=50, count=12)
    decoder = make()
    lam = 0.05 + 0.01 * np.arange(12)
    together = decoder.solve(dictionary, signals, lam)
    for row in (0, 5, 11):
        alone = decoder.solve(dictionary, signals[row:row + 1], lam[row])
        assert np.array_equal(alone[0], together[row])
    sets = decoder.decode(dictionary, signals, k=8, noise=0.0)
    singles = [decoder.decode(dictionary, signals[i:i + 1], k=8, noise=0.0)[0] for i in range(12)]
    assert np.array_equal(np.stack(singles), sets)


def test_the_decoded_set_is_the_top_k_of_the_solution():
    dictionary, _, signals = instances(d=30)
    decoder = LassoCD()
    lams = penalties(dictionary.correlate(signals), dictionary.n, 0.0, decoder.lam_ratio, decoder.noise_lam)
    solution = decoder.solve(dictionary, signals, lams)
    decoded = decoder.decode(dictionary, signals, k=5, noise=0.0)
    for row, got in zip(solution, decoded, strict=True):
        order = np.lexsort((np.arange(row.size), -row))
        assert list(got) == sorted(order[:5])


@pytest.mark.parametrize("make", DECODERS)
def test_repeated_codewords_share_one_coefficient(make):
    """A codeword stored twice splits its coefficient with its twin: no division by zero, no loop."""
    rng = np.random.default_rng(3)
    base = rng.choice([-1.0, 1.0], size=(40, 50))
    twice = MatrixDictionary(np.concatenate([base, base[:, :10]], axis=1))  # codewords 50..59 repeat 0..9
    once = MatrixDictionary(base)
    signals = once.superpose(np.array([[0, 3, 20], [5, 9, 33]]))
    kwargs = {"max_iter": EXACT_ITERATIONS[make.name]} if make is not LassoCD else {}
    settings = EXACT_CD if make is LassoCD else {"tol": 0.0}
    doubled = make(**settings).solve(twice, signals, 0.1, **kwargs)
    single = make(**settings).solve(once, signals, 0.1, **kwargs)
    merged = doubled[:, :50].copy()
    merged[:, :10] += doubled[:, 50:]
    assert np.all(np.isfinite(doubled))
    assert np.allclose(merged, single, atol=1e-4)
    decoded = check_decoded(make().decode(twice, signals, k=3, noise=0.0), 2, 60)
    assert all(s.size == 3 for s in decoded)


def test_the_noisy_track_raises_the_penalty_to_the_noise_floor():
    correlations = np.array([[2.0, -1.0, 0.5], [0.1, 0.05, -0.2]], dtype=np.float32)
    floor = 0.3 * math.sqrt(2 * math.log(1000))
    assert np.allclose(penalties(correlations, 1000, 0.0, 0.1, 1.0), [0.2, 0.02])
    assert np.allclose(penalties(correlations, 1000, 0.3, 0.1, 1.0), [floor, floor])
    assert np.allclose(penalties(correlations, 1000, 0.3, 0.1, 0.0), [0.2, 0.02])
    assert LassoCD.uses_noise and Ista.uses_noise and Fista.uses_noise


@pytest.mark.parametrize("make", DECODERS)
def test_pure_noise_decodes_to_a_zero_estimate_at_the_universal_threshold(make):
    """With λ ≥ σ√(2 ln N) (noise_lam = 1), noise alone rarely beats the penalty."""
    problem = Problem(n=512, k=4, seed=9, subsets_per_draw=8, noise=0.5)
    dictionary = generated_dictionary(problem, 64, 0)
    noise = (0.5 * draw_noise(problem, 0, 64)).astype(np.float32)
    floor = 0.5 * math.sqrt(2 * math.log(512))
    default = make()
    lams = penalties(dictionary.correlate(noise), 512, 0.5, default.lam_ratio, default.noise_lam)
    assert np.allclose(lams, default.noise_lam * floor)
    decoder = make(noise_lam=1.0)
    lams = penalties(dictionary.correlate(noise), 512, 0.5, decoder.lam_ratio, decoder.noise_lam)
    assert np.allclose(lams, floor)
    estimate = decoder.solve(dictionary, noise, lams)
    assert np.mean(np.count_nonzero(estimate, axis=1)) <= 2


@pytest.mark.parametrize("make", DECODERS)
def test_noisy_signals_are_read_back_at_a_generous_dimension(make):
    dictionary, subsets, signals = instances(n=512, k=4, d=160, count=16, noise=0.1)
    decoded = check_decoded(make().decode(dictionary, signals, k=4, noise=0.1), 16, 512)
    assert sum(np.array_equal(a, b) for a, b in zip(decoded, subsets, strict=True)) >= 15


@pytest.mark.parametrize("make", DECODERS)
def test_edge_cases_give_valid_sets(make):
    """k = 1, d < k, a single signal and a zero signal."""
    dictionary, subsets, signals = instances(n=128, k=1, d=64, count=4)
    decoded = check_decoded(make().decode(dictionary, signals, k=1, noise=0.0), 4, 128)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, subsets, strict=True))
    small, _, few = instances(n=64, k=8, d=4, count=1)
    assert [s.size for s in check_decoded(make().decode(small, few, k=8, noise=0.0), 1, 64)] == [8]
    zero = np.zeros((1, 64), dtype=np.float32)
    assert make().solve(dictionary, zero, 0.1).max() == 0
    assert list(check_decoded(make().decode(dictionary, zero, k=3, noise=0.0), 1, 128)[0]) == [0, 1, 2]


@pytest.mark.parametrize(("make", "params"), [
    (LassoCD, {"lam_ratio": 0.0}),
    (LassoCD, {"lam_ratio": 1.5}),
    (LassoCD, {"tol": -1.0}),
    (LassoCD, {"max_sweeps": 0}),
    (LassoCD, {"nonnegative": "yes"}),
    (Ista, {"max_iter": 0}),
    (Ista, {"continuation": 0.0}),
    (Fista, {"noise_lam": -1.0}),
    (Fista, {"step": 0.1}),
])
def test_invalid_parameters_are_refused(make, params):
    with pytest.raises(ParameterError):
        make(**params)


@pytest.mark.parametrize("make", DECODERS)
def test_a_negative_or_infinite_penalty_is_refused(make):
    dictionary, _, signals = instances(count=2)
    for lam in (-0.1, math.inf, [0.1, math.nan]):
        with pytest.raises(ValueError, match="penalty"):
            make().solve(dictionary, signals, lam)


def test_one_entry_point_registers_ista_and_fista():
    registry = load_registry(env={"HARNESS_LOAD_PLUGINS": "ista,lasso-cd"})
    assert registry.errors == []
    assert registry.get("ista").cls is Ista
    assert registry.get("fista").cls is Fista
    assert registry.get("lasso-cd").cls is LassoCD


def test_lasso_cd_finds_a_d_star_on_a_small_problem(small_problem):
    run = run_decoder(small_problem, LassoCD(), RunSettings(max_trials=64))
    assert run.ok, run.error
    assert run.estimate is not None and run.estimate.d is not None
