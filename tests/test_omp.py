"""OMP against scikit-learn's orthogonal_mp and its own definition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import orthogonal_mp
from superposition_harness import MatrixDictionary, Problem
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.problem import draw_subsets
from superposition_harness_builtins.omp import OrthogonalMatchingPursuit


def reference_support(matrix: np.ndarray, x: np.ndarray, k: int, picks: int | None = None) -> np.ndarray:
    """sklearn's OMP with ``picks`` selections (k by default), then the k largest |coefficients|."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when a refit is early-exact
        coef = orthogonal_mp(matrix, x, n_nonzero_coefs=picks or k)
    chosen = np.flatnonzero(coef)
    return np.sort(chosen[np.argsort(-np.abs(coef[chosen]), kind="stable")[:k]])


@pytest.mark.parametrize("seed, n, k, d", [(0, 512, 8, 60), (1, 1024, 4, 40), (2, 300, 12, 90),
                                          (3, 2048, 6, 70)])
def test_omp_selects_the_same_sets_as_scikit_learn(seed, n, k, d):
    """Textbook OMP (|⟨f_i, r⟩| picks, k of them) equals sklearn's on 4 × 16 = 64 instances."""
    problem = Problem(n=n, k=k, dictionary="gaussian", seed=seed, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, d, 0)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    decoded = OrthogonalMatchingPursuit(positive=False, picks=1.0).decode(dictionary, signals, k=k,
                                                                          noise=0.0)
    matrix = dictionary.dense().astype(np.float64)
    for x, got in zip(signals, decoded, strict=True):
        assert np.array_equal(np.sort(got), reference_support(matrix, x.astype(np.float64), k))


@pytest.mark.parametrize("seed, n, k, d, picks", [(0, 512, 8, 40, 2.0), (1, 1024, 4, 30, 1.5),
                                                 (2, 300, 12, 50, 3.0)])
def test_more_picks_keep_the_k_largest_coefficients_of_scikit_learns_fit(seed, n, k, d, picks):
    """With ⌈picks·k⌉ selections the decoded set is the k largest |coefficients| of
    sklearn's OMP with as many non-zeros (noisy signals, so no early exact fit)."""
    problem = Problem(n=n, k=k, dictionary="gaussian", seed=seed, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, d, 0)
    rng = np.random.default_rng(seed)
    signals = dictionary.superpose(draw_subsets(problem, 0)) + 0.05 * rng.normal(size=(16, d))
    decoded = OrthogonalMatchingPursuit(positive=False, picks=picks).decode(dictionary, signals, k=k,
                                                                            noise=0.05)
    matrix = dictionary.dense().astype(np.float64)
    for x, got in zip(signals, decoded, strict=True):
        want = reference_support(matrix, x.astype(np.float64), k, picks=int(np.ceil(picks * k)))
        assert np.array_equal(np.sort(got), want)


def test_more_picks_decode_what_k_picks_miss():
    """Noiseless: any chosen superset of the support (fewer than d codewords) gives the
    exact coefficients, so 2k picks decode instances that k picks get wrong (fixed seed:
    N = 1024, k = 8, d = 64, 64 instances)."""
    problem = Problem(n=1024, k=8, seed=7, subsets_per_draw=64)
    dictionary = generated_dictionary(problem, 64, 0)
    subsets = draw_subsets(problem, 0)
    signals = dictionary.superpose(subsets)

    def exact(picks: float) -> int:
        decoded = OrthogonalMatchingPursuit(picks=picks).decode(dictionary, signals, k=8, noise=0.0)
        return sum(np.array_equal(np.sort(got), want) for got, want in zip(decoded, subsets, strict=True))

    assert exact(2.0) > exact(1.0)
    assert exact(2.0) >= 0.9 * len(subsets)


def test_signed_picks_ignore_negative_correlations():
    """With positive=true a codeword anti-correlated with x is never picked first."""
    dictionary = MatrixDictionary(np.eye(4))
    signals = np.array([[0.2, -3.0, 1.0, 0.0]], dtype=np.float32)
    assert list(OrthogonalMatchingPursuit().decode(dictionary, signals, k=1, noise=0.0)[0]) == [2]
    textbook = OrthogonalMatchingPursuit(positive=False)
    assert list(textbook.decode(dictionary, signals, k=1, noise=0.0)[0]) == [1]


def test_the_residual_is_orthogonal_to_every_chosen_codeword():
    """After the refit, x − F_S c ⟂ F_S: no chosen codeword is ever picked again."""
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(30, 80))
    dictionary = MatrixDictionary(matrix)
    signals = rng.normal(size=(6, 30)).astype(np.float32)
    for decoded in OrthogonalMatchingPursuit().decode(dictionary, signals, k=10, noise=0.0):
        assert decoded.size == len(set(decoded.tolist())) == 10


def test_a_repeated_codeword_ends_the_selection_early():
    """When only a copy of a chosen codeword remains useful, OMP stops instead of failing."""
    base = np.eye(3)
    dictionary = MatrixDictionary(np.concatenate([base, base], axis=1))  # columns 3..5 copy 0..2
    signals = dictionary.superpose(np.array([[0, 1, 2]]))
    decoded = OrthogonalMatchingPursuit().decode(dictionary, signals, k=5, noise=0.0)
    assert list(decoded[0]) == [0, 1, 2]


def test_omp_recovers_every_instance_at_a_generous_dimension():
    problem = Problem(n=1024, k=8, seed=4, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, 200, 0)
    subsets = draw_subsets(problem, 0)
    decoded = OrthogonalMatchingPursuit().decode(dictionary, dictionary.superpose(subsets), k=8,
                                                 noise=0.0)
    assert all(np.array_equal(np.sort(got), want) for got, want in zip(decoded, subsets, strict=True))
