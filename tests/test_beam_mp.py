"""beam-mp: matching pursuit over a beam of sets, verified by the exact residual."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from superposition_harness import MatrixDictionary, Problem
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.problem import draw_subsets
from superposition_harness_builtins import beam_mp
from superposition_harness_builtins.beam_mp import BeamMatchingPursuit
from superposition_harness_builtins.mp import MatchingPursuit


def exact(decoded, subsets) -> int:
    return sum(np.array_equal(np.sort(got), want) for got, want in zip(decoded, subsets, strict=True))


def test_a_beam_as_wide_as_every_set_finds_the_set_of_least_residual():
    """With beam ≥ C(N, k) and branch = N the beam holds every k-set at the last step, so it
    returns the set of least residual energy, found here by brute force (N = 10, k = 3)."""
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(6, 10))
    dictionary = MatrixDictionary(matrix)
    dense = dictionary.dense().astype(np.float64)
    signals = (dense[:, [1, 4, 7]].sum(axis=1) + 0.3 * rng.normal(size=(5, 6))).astype(np.float32)
    decoded = BeamMatchingPursuit(beam=120, branch=10).decode(dictionary, signals, k=3, noise=0.3)
    for x, got in zip(signals.astype(np.float64), decoded, strict=True):
        best = min(itertools.combinations(range(10), 3),
                   key=lambda s: float(np.sum((x - dense[:, list(s)].sum(axis=1)) ** 2)))
        assert tuple(got) == best


def test_a_beam_of_one_is_matching_pursuit_without_repeats():
    """Width 1, branch 1: each step adds the most correlated feature not yet held, as mp
    does while it picks no feature twice."""
    problem = Problem(n=1024, k=8, seed=1, subsets_per_draw=32)
    dictionary = generated_dictionary(problem, 60, 0)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    ours = BeamMatchingPursuit(beam=1, branch=1).decode(dictionary, signals, k=8, noise=0.0)
    theirs = MatchingPursuit().decode(dictionary, signals, k=8, noise=0.0)
    same = [np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True) if b.size == 8]
    assert len(same) >= 16 and all(same)


def test_a_wider_beam_decodes_what_matching_pursuit_misses():
    """N = 4096, k = 16, d = 110 (below mp's d* of 185), 64 instances, fixed seed."""
    problem = Problem(n=4096, k=16, seed=3, subsets_per_draw=64)
    dictionary = generated_dictionary(problem, 110, 0)
    subsets = draw_subsets(problem, 0)
    signals = dictionary.superpose(subsets)
    mp = exact(MatchingPursuit().decode(dictionary, signals, k=16, noise=0.0), subsets)
    beam = exact(BeamMatchingPursuit(beam=128).decode(dictionary, signals, k=16, noise=0.0), subsets)
    assert mp < 32 and beam >= 60


def test_the_decoded_sets_do_not_depend_on_the_batch_or_the_memory_chunks(monkeypatch):
    problem = Problem(n=1024, k=8, seed=2, subsets_per_draw=24)
    dictionary = generated_dictionary(problem, 40, 0)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    decoder = BeamMatchingPursuit(beam=64)
    whole = decoder.decode(dictionary, signals, k=8, noise=0.0)
    alone = [decoder.decode(dictionary, signals[i:i + 1], k=8, noise=0.0)[0] for i in range(len(signals))]
    monkeypatch.setattr(beam_mp, "BEAM_BYTES", 16 * 64 * 1024 * 3)  # three signals per chunk at width 64
    monkeypatch.setattr(beam_mp, "ROW_BYTES", 0)  # and the kept Gram rows emptied at almost every step
    chunked = decoder.decode(dictionary, signals, k=8, noise=0.0)
    for a, b, c in zip(whole, alone, chunked, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_verification_widens_only_what_fails(monkeypatch):
    """A signal whose first, narrow beam verifies is never searched again."""
    problem = Problem(n=1024, k=8, seed=4, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, 200, 0)  # easy: every first beam verifies
    signals = dictionary.superpose(draw_subsets(problem, 0))
    widths: list[int] = []
    search = BeamMatchingPursuit._search

    def spy(self, dictionary, correlations, energy, steps, width, rows):
        widths.append(width)
        return search(self, dictionary, correlations, energy, steps, width, rows)

    monkeypatch.setattr(BeamMatchingPursuit, "_search", spy)
    BeamMatchingPursuit(beam=512).decode(dictionary, signals, k=8, noise=0.0)
    assert widths == [beam_mp.FIRST_WIDTH]


def test_the_widest_beam_is_bounded_by_memory():
    """At N = 2^20 a signal's beam of 512 would need 8 GiB: it is narrowed to 2."""
    assert beam_mp.BEAM_BYTES // (16 * (1 << 20)) == 2
    assert beam_mp.BEAM_BYTES // (16 * 65536) == 40
    assert beam_mp.chunk_of(512, 4096) == 1


def test_the_kept_gram_rows_are_the_dictionarys_and_never_outgrow_their_store():
    problem = Problem(n=512, k=4, seed=6)
    dictionary = generated_dictionary(problem, 40, 0)
    rows = beam_mp.GramRows(512, 8)
    asked = np.array([[3, 9, 3], [500, 9, 0]])
    slots = rows.slots(dictionary, asked)
    want = dictionary.gram_rows(asked.ravel()).reshape(2, 3, 512)
    assert rows.used == 4 and np.array_equal(rows.rows[slots], want)
    again = rows.slots(dictionary, np.array([9, 3]))
    assert rows.used == 4 and np.array_equal(again, slots[0, [1, 0]])  # kept: not computed again
    more = rows.slots(dictionary, np.arange(100, 106))  # 4 + 6 > 8: emptied, then these six
    assert rows.used == 6 and np.array_equal(rows.rows[more], dictionary.gram_rows(np.arange(100, 106)))
    assert rows.slot[9] == -1


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_every_decoded_set_has_k_distinct_features(noise):
    problem = Problem(n=512, k=6, seed=5, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, 24, 0)
    rng = np.random.default_rng(5)
    signals = dictionary.superpose(draw_subsets(problem, 0)) + noise * rng.normal(size=(16, 24))
    for got in BeamMatchingPursuit(beam=32).decode(dictionary, signals.astype(np.float32), k=6, noise=noise):
        assert got.size == 6 == np.unique(got).size and got.min() >= 0 and got.max() < 512
