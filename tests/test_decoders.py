"""The built-in decoders against their definitions (docs/contract.md §3) and naive references."""

from __future__ import annotations

import numpy as np
import pytest
from superposition_harness import MatrixDictionary, Problem, subtract_and_pick
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.kernels import CHUNK
from superposition_harness.problem import draw_subsets
from superposition_harness_builtins.mp import MatchingPursuit
from superposition_harness_builtins.threshold import ThresholdDecoder
from superposition_harness_builtins.topk import TopKDecoder


def naive_mp(matrix: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """The paper's unit-step MP, one signal at a time, on a dense float64 matrix."""
    y = np.zeros(matrix.shape[1])
    for _ in range(k):
        j = int(np.argmax(matrix.T @ (x - matrix @ y)))
        y[j] += 1
    return np.flatnonzero(y > 0)


def instances(n=512, k=6, d=96, seed=11, draw=0):
    problem = Problem(n=n, k=k, seed=seed, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, d, draw)
    subsets = draw_subsets(problem, draw)
    return dictionary, subsets, dictionary.superpose(subsets)


def test_mp_matches_a_naive_loop_on_a_dense_matrix():
    """Batched MP decodes the same sets as a one-signal float64 loop."""
    dictionary, subsets, signals = instances()
    decoded = MatchingPursuit().decode(dictionary, signals, k=subsets.shape[1], noise=0.0)
    matrix = dictionary.dense().astype(np.float64)
    agree = sum(np.array_equal(got, naive_mp(matrix, x.astype(np.float64), subsets.shape[1]))
                for got, x in zip(decoded, signals, strict=True))
    # Float32 against float64 may part ways only at exact ties; they are rare here.
    assert agree >= len(subsets) - 1


def exact_mp(signs: np.ndarray, coordinates: np.ndarray, k: int) -> np.ndarray:
    """Unit-step MP in integers on a ±1 matrix: argmax of Sᵀ(m − Σ picks), ties to the
    lower index; no rounding anywhere."""
    correlations = coordinates @ signs
    y = np.zeros(signs.shape[1], dtype=np.int64)
    for _ in range(k):
        j = int(np.argmax(correlations))
        y[j] += 1
        correlations = correlations - signs[:, j] @ signs
    return np.flatnonzero(y > 0)


@pytest.mark.parametrize("d, k", [(64, 6), (256, 12), (16, 4)])
def test_mp_is_exact_integer_matching_pursuit_when_d_is_a_power_of_four(d, k):
    """For d = 4^j every float the decoder forms (1/√d, sums over d) is exact, so its
    picks, ties included, are those of integer arithmetic on the signs, row for row."""
    problem = Problem(n=1000, k=k, seed=4, subsets_per_draw=32)
    dictionary = generated_dictionary(problem, d, 0)
    subsets = draw_subsets(problem, 0)
    signs = np.rint(dictionary.dense().astype(np.float64) * np.sqrt(d)).astype(np.int64)
    decoded = MatchingPursuit().decode(dictionary, dictionary.superpose(subsets), k=k, noise=0.0)
    for got, subset in zip(decoded, subsets, strict=True):
        assert np.array_equal(got, exact_mp(signs, signs[:, subset].sum(axis=1), k))


def test_mp_recovers_orthonormal_codes_exactly():
    """With orthonormal codewords every unit step removes a true codeword."""
    dictionary = MatrixDictionary(np.eye(32))
    truth = np.array([[1, 5, 9], [0, 2, 31]])
    signals = dictionary.superpose(truth)
    decoded = MatchingPursuit().decode(dictionary, signals, k=3, noise=0.0)
    assert [list(s) for s in decoded] == [[1, 5, 9], [0, 2, 31]]


def test_mp_may_pick_a_codeword_twice_and_then_decodes_fewer():
    """A repeated pick leaves a set smaller than k (y_j = 2 is one index)."""
    dictionary = MatrixDictionary(np.eye(8))
    signals = np.array([[2.0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    decoded = MatchingPursuit().decode(dictionary, signals, k=2, noise=0.0)
    assert list(decoded[0]) == [0]


@pytest.mark.parametrize("width", [1, CHUNK - 1, CHUNK, 3 * CHUNK + 5])
def test_mp_update_and_argmax_is_numpys_first_of_ties(width):
    # Ties inside a chunk, across chunks, at chunk edges; a NaN and infinities: the pick is
    # NumPy's argmax among the non-NaN entries, the first of ties, and the update exact.
    rng = np.random.default_rng(5)
    correlations = rng.integers(-3, 4, size=(6, width)).astype(np.float64)
    gram = rng.integers(-3, 4, size=(6, width)).astype(np.float32)
    correlations[1] = 7.0  # every entry ties after the update unless gram breaks it
    gram[1] = 0.0
    correlations[2, -1] = 1e9  # the last entry wins alone
    correlations[3, 0] = np.nan
    correlations[4] = -np.inf
    correlations[5, width // 2] = np.inf
    expected_values = correlations - gram
    finite = np.where(np.isnan(expected_values), -np.inf, expected_values)
    expected_picks = np.where(np.isneginf(finite).all(axis=1), 0, finite.argmax(axis=1))
    picks = subtract_and_pick(correlations, gram)
    np.testing.assert_array_equal(correlations, expected_values)
    np.testing.assert_array_equal(picks, expected_picks)


def test_mp_update_and_argmax_is_the_same_on_many_threads():
    rng = np.random.default_rng(6)
    correlations = np.round(rng.standard_normal((8, 1 << 19)), 2)  # many exact ties
    gram = np.round(rng.standard_normal((8, 1 << 19)), 2).astype(np.float32)
    expected = (correlations - gram).argmax(axis=1)
    np.testing.assert_array_equal(subtract_and_pick(correlations, gram), expected)


def test_topk_picks_the_largest_correlations_with_ties_to_the_lower_index():
    dictionary = MatrixDictionary(np.eye(6))
    signals = np.array([[0.5, 2.0, 0.5, 0.5, 1.0, 0.0]], dtype=np.float32)
    decoded = TopKDecoder().decode(dictionary, signals, k=3, noise=0.0)
    assert list(decoded[0]) == [0, 1, 4]


def test_topk_matches_a_sort_of_the_dense_correlations():
    dictionary, subsets, signals = instances(d=200)
    decoded = TopKDecoder().decode(dictionary, signals, k=subsets.shape[1], noise=0.0)
    correlations = dictionary.correlate(signals)
    for row, got in zip(correlations, decoded, strict=True):
        order = np.lexsort((np.arange(row.size), -row))
        assert list(got) == sorted(order[: subsets.shape[1]])


def test_threshold_is_the_set_reaching_one_half():
    dictionary = MatrixDictionary(np.eye(5))
    signals = np.array([[0.5, 0.49, 1.0, -1.0, 0.7]], dtype=np.float32)
    assert list(ThresholdDecoder().decode(dictionary, signals, k=2, noise=0.0)[0]) == [0, 2, 4]
    assert list(ThresholdDecoder(level=0.6).decode(dictionary, signals, k=2, noise=0.0)[0]) == [2, 4]


@pytest.mark.parametrize("cls", [ThresholdDecoder, TopKDecoder, MatchingPursuit])
def test_decoders_treat_each_signal_independently(cls):
    """Decoding a batch gives, bitwise, the sets of decoding each signal alone."""
    dictionary, subsets, signals = instances(d=120)
    decoder = cls()
    batch = decoder.decode(dictionary, signals, k=subsets.shape[1], noise=0.0)
    for i, x in enumerate(signals):
        alone = decoder.decode(dictionary, x[None, :], k=subsets.shape[1], noise=0.0)
        assert np.array_equal(np.asarray(batch[i]), np.asarray(alone[0]))


@pytest.mark.parametrize("cls", [ThresholdDecoder, TopKDecoder, MatchingPursuit])
def test_decoders_recover_at_a_generous_dimension(cls):
    """Far above every decoder's d*, all of them decode every instance exactly."""
    dictionary, subsets, signals = instances(n=256, k=3, d=600)
    decoded = cls().decode(dictionary, signals, k=3, noise=0.0)
    assert all(np.array_equal(got, truth) for got, truth in zip(decoded, subsets, strict=True))
