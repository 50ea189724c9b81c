"""sp: subspace pursuit against a one-signal reference written from Dai and Milenkovic's paper."""

from __future__ import annotations

import numpy as np
import pytest
from superposition_harness import Problem
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.problem import draw_subsets
from superposition_harness_builtins.mp import MatchingPursuit
from superposition_harness_builtins.subspace_pursuit import SubspacePursuit


def reference(matrix: np.ndarray, x: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """Algorithm 1 of the paper, with magnitudes, one signal, plain NumPy."""
    def fit(support):
        coef, *_ = np.linalg.lstsq(matrix[:, support], x, rcond=None)
        return coef, x - matrix[:, support] @ coef

    support = np.argsort(-np.abs(matrix.T @ x), kind="stable")[:k]
    _, residual = fit(support)
    for _ in range(iterations):
        if np.linalg.norm(residual) <= 1e-9 * np.linalg.norm(x):
            break
        scores = np.abs(matrix.T @ residual)
        scores[support] = -np.inf
        wide = np.concatenate([support, np.argsort(-scores, kind="stable")[:k]])
        coef, _ = fit(wide)
        narrow = np.sort(wide[np.argsort(-np.abs(coef), kind="stable")[:k]])
        _, new_residual = fit(narrow)
        if np.linalg.norm(new_residual) >= np.linalg.norm(residual):
            break
        support, residual = narrow, new_residual
    return np.sort(support)


@pytest.mark.parametrize("seed, n, k, d", [(0, 512, 8, 40), (1, 1024, 4, 24), (2, 300, 6, 30)])
def test_textbook_subspace_pursuit_matches_the_reference(seed, n, k, d):
    """positive=false on a Gaussian dictionary, noisy signals: the same sets as the reference
    on 16 instances each (the residual is rounded to its grid before it is correlated, far
    below any gap between correlations here)."""
    problem = Problem(n=n, k=k, dictionary="gaussian", seed=seed, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, d, 0)
    rng = np.random.default_rng(seed)
    noise = 0.05 * rng.normal(size=(16, d))
    signals = (dictionary.superpose(draw_subsets(problem, 0)) + noise).astype(np.float32)
    decoded = SubspacePursuit(positive=False).decode(dictionary, signals, k=k, noise=0.05)
    matrix = dictionary.dense().astype(np.float64)
    for x, got in zip(signals.astype(np.float64), decoded, strict=True):
        assert np.array_equal(got, reference(matrix, x, k))


def test_subspace_pursuit_decodes_what_matching_pursuit_misses():
    """N = 4096, k = 16, d = 130 (below mp's d* of 185), 64 instances, fixed seed."""
    problem = Problem(n=4096, k=16, seed=3, subsets_per_draw=64)
    dictionary = generated_dictionary(problem, 130, 0)
    subsets = draw_subsets(problem, 0)
    signals = dictionary.superpose(subsets)

    def exact(decoder) -> int:
        decoded = decoder.decode(dictionary, signals, k=16, noise=0.0)
        return sum(np.array_equal(np.sort(g), s) for g, s in zip(decoded, subsets, strict=True))

    assert exact(MatchingPursuit()) < 40 and exact(SubspacePursuit()) >= 50


def test_the_decoded_sets_do_not_depend_on_the_batch():
    problem = Problem(n=1024, k=8, seed=2, subsets_per_draw=24)
    dictionary = generated_dictionary(problem, 40, 0)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    decoder = SubspacePursuit()
    whole = decoder.decode(dictionary, signals, k=8, noise=0.0)
    for i in range(len(signals)):
        assert np.array_equal(whole[i], decoder.decode(dictionary, signals[i:i + 1], k=8, noise=0.0)[0])


def test_every_decoded_set_has_k_distinct_features():
    problem = Problem(n=512, k=6, seed=5, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, 20, 0)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    for got in SubspacePursuit(iterations=3).decode(dictionary, signals, k=6, noise=0.0):
        assert got.size == 6 == np.unique(got).size
