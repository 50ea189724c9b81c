"""The standard problem: entropy, validation, subsets, noise, Shannon limit, streams."""

from __future__ import annotations

import itertools
import math
import re
from decimal import Decimal, getcontext

import numpy as np
import pytest
from scipy import stats
from superposition_harness.problem import (
    ROWS_PER_BLOCK,
    Problem,
    ProblemError,
    draw_noise,
    draw_subsets,
    entropy_bits,
    entropy_bits_approx,
    random_bits,
    shannon_dimension,
    standard_normal,
    stream,
    uniform01,
)

# ---------------------------------------------------------------------------- entropy


def test_entropy_matches_exact_binomial_for_small_n():
    """entropy_bits(n, k) equals log2(comb(n, k)) for every 0 <= k <= n < 120."""
    for n in range(1, 120):
        for k in range(0, n + 1):
            exact = math.log2(math.comb(n, k))
            assert entropy_bits(n, k) == pytest.approx(exact, rel=1e-12, abs=1e-9), (n, k)


def test_entropy_at_paper_scale_matches_high_precision_value():
    """H(2**20, 256) agrees with a 50-digit evaluation of log2 C(2**20, 256)."""
    getcontext().prec = 50
    n, k = 2**20, 256
    exact = Decimal(math.comb(n, k)).ln() / Decimal(2).ln()
    assert abs(entropy_bits(n, k) - float(exact)) < 1e-7
    assert Problem(n=n, k=k).entropy_bits == entropy_bits(n, k)


@pytest.mark.parametrize("n, k", [(10, 1), (10, 5), (4096, 4), (4096, 32), (65536, 64),
                                  (2**20, 256), (2**20, 4), (100, 99)])
def test_entropy_approx_is_an_upper_bound(n, k):
    """k log2(eN/k) bounds H(N, k) from above, strictly (the approximation is not H)."""
    assert entropy_bits_approx(n, k) > entropy_bits(n, k)


def test_entropy_approx_is_not_used_as_entropy():
    """H differs from the k log2(eN/k) approximation by more than rounding at a suite point."""
    n, k = 4096, 32
    assert entropy_bits_approx(n, k) - entropy_bits(n, k) > 1.0


@pytest.mark.parametrize("n, k", [(5, 6), (5, -1)])
def test_entropy_rejects_k_outside_range(n, k):
    """entropy_bits needs 0 <= k <= n."""
    with pytest.raises(ValueError):
        entropy_bits(n, k)


# ------------------------------------------------------------------------- validation

VALID = dict(n=64, k=4, dictionary="rademacher", noise=0.0, seed=0, subsets_per_draw=8)

INVALID = [
    ("n", 1, "N"), ("n", 0, "N"), ("n", -8, "N"), ("n", 8.0, "N"), ("n", True, "N"),
    ("n", "64", "N"), ("n", None, "N"),
    ("k", 0, "k"), ("k", -1, "k"), ("k", 2.0, "k"), ("k", True, "k"), ("k", 64, "k"),
    ("k", 65, "k"), ("k", None, "k"),
    ("dictionary", "bernoulli", "dictionary"), ("dictionary", "Rademacher", "dictionary"),
    ("dictionary", None, "dictionary"),
    ("noise", -0.1, "noise"), ("noise", float("nan"), "noise"), ("noise", float("inf"), "noise"),
    ("noise", "0.1", "noise"), ("noise", True, "noise"), ("noise", None, "noise"),
    ("seed", -1, "seed"), ("seed", 1.5, "seed"), ("seed", True, "seed"), ("seed", "0", "seed"),
    ("subsets_per_draw", 0, "subsets_per_draw"), ("subsets_per_draw", -2, "subsets_per_draw"),
    ("subsets_per_draw", 2.0, "subsets_per_draw"), ("subsets_per_draw", True, "subsets_per_draw"),
]


@pytest.mark.parametrize("field, value, name", INVALID,
                         ids=[f"{f}={v!r}" for f, v, _ in INVALID])
def test_invalid_field_raises_one_sentence_naming_it(field, value, name):
    """Each invalid field raises ProblemError with one sentence that names the field."""
    with pytest.raises(ProblemError) as info:
        Problem(**{**VALID, field: value})
    message = str(info.value)
    assert re.search(rf"\b{re.escape(name)}\b", message), message
    assert message.endswith("."), message
    # One sentence: no sentence break (terminator, space, capital) before the end.
    assert not re.search(r"[.!?]\s+[A-Z]", message[:-1]), message
    assert "\n" not in message


def test_problem_error_is_a_value_error():
    """ProblemError can be caught as ValueError."""
    assert issubclass(ProblemError, ValueError)


def test_valid_problem_accepts_python_and_numpy_integers():
    """NumPy integer sizes and a NumPy float64 noise are valid."""
    problem = Problem(n=np.int64(64), k=np.int32(4), noise=np.float64(0.5), seed=np.uint8(3),
                      subsets_per_draw=np.int64(2))
    assert problem.entropy_bits == pytest.approx(math.log2(math.comb(64, 4)))


def test_valid_problem_accepts_numpy_float32_noise():
    """A NumPy float32 noise level is a finite number >= 0 and must be accepted."""
    Problem(n=64, k=4, noise=np.float32(0.5))


def test_locate_and_record():
    """Trial t is (t // S, t % S) and the record holds every field."""
    problem = Problem(n=64, k=4, seed=7, subsets_per_draw=5)
    assert problem.locate(0) == (0, 0)
    assert problem.locate(4) == (0, 4)
    assert problem.locate(5) == (1, 0)
    assert problem.locate(23) == (4, 3)
    assert problem.as_record() == dict(n=64, k=4, dictionary="rademacher", noise=0.0, seed=7,
                                       subsets_per_draw=5)


# ---------------------------------------------------------------------------- subsets


@pytest.mark.parametrize("n, k, count", [(2, 1, 7), (10, 9, 5), (64, 4, 32), (4096, 32, 16),
                                         (2**20, 256, 3)])
def test_subsets_shape_sorted_distinct_in_range(n, k, count):
    """Each row is a sorted k-subset of range(N) and the array is (S, k) int64."""
    problem = Problem(n=n, k=k, seed=11, subsets_per_draw=count)
    subsets = draw_subsets(problem, draw=3)
    assert subsets.shape == (count, k)
    assert subsets.dtype == np.int64
    assert subsets.min() >= 0 and subsets.max() < n
    assert np.all(np.diff(subsets, axis=1) > 0)


def test_subsets_are_deterministic_and_differ_across_draws_and_seeds():
    """Same (seed, draw) gives the same subsets; another draw or seed gives others."""
    problem = Problem(n=4096, k=16, seed=5, subsets_per_draw=8)
    first = draw_subsets(problem, 2)
    assert np.array_equal(first, draw_subsets(problem, 2))
    same = Problem(n=4096, k=16, seed=5, subsets_per_draw=8)
    other_seed = Problem(n=4096, k=16, seed=6, subsets_per_draw=8)
    assert np.array_equal(first, draw_subsets(same, 2))
    assert not np.array_equal(first, draw_subsets(problem, 3))
    assert not np.array_equal(first, draw_subsets(other_seed, 2))
    # The rows of one draw are not copies of each other.
    assert len({tuple(row) for row in first}) == len(first)


@pytest.mark.parametrize("seed", [0, 1])
def test_subsets_uniform_over_all_subsets(seed):
    """N=6, k=2: the 15 subsets are equally frequent (chi-square) over 30000 draws."""
    problem = Problem(n=6, k=2, seed=seed, subsets_per_draw=1000)
    rows = np.concatenate([draw_subsets(problem, draw) for draw in range(30)])
    index = {pair: i for i, pair in enumerate(itertools.combinations(range(6), 2))}
    codes = np.array([index[tuple(row)] for row in rows.tolist()])
    observed = np.bincount(codes, minlength=15)
    assert observed.min() > 0
    assert stats.chisquare(observed).pvalue > 1e-3


def test_subsets_uniform_for_larger_k():
    """N=7, k=3: the 35 subsets are equally frequent (chi-square) over 35000 draws."""
    problem = Problem(n=7, k=3, seed=2, subsets_per_draw=5000)
    rows = np.concatenate([draw_subsets(problem, draw) for draw in range(7)])
    index = {s: i for i, s in enumerate(itertools.combinations(range(7), 3))}
    codes = np.array([index[tuple(row)] for row in rows.tolist()])
    assert stats.chisquare(np.bincount(codes, minlength=35)).pvalue > 1e-3


def test_subsets_inclusion_frequency_is_k_over_n():
    """Every index is included with frequency k/N (N=50, k=5, 20000 subsets)."""
    n, k = 50, 5
    problem = Problem(n=n, k=k, seed=9, subsets_per_draw=2000)
    rows = np.concatenate([draw_subsets(problem, draw) for draw in range(10)])
    freq = np.bincount(rows.ravel(), minlength=n) / len(rows)
    # Binomial sd of each frequency is sqrt(0.1 * 0.9 / 20000) ≈ 0.0021.
    assert np.abs(freq - k / n).max() < 0.012
    # The top index n-1 (Floyd's collision fallback) is not over-represented.
    assert abs(freq[-1] - k / n) < 0.012


# ------------------------------------------------------------------------------ noise


@pytest.mark.parametrize("small, large", [(1, 5), (10, 64), (64, 65), (70, 200), (128, 129)])
def test_noise_is_nested_in_d(small, large):
    """The first d columns of the noise are the same for every larger dimension."""
    problem = Problem(n=64, k=4, noise=0.1, seed=4, subsets_per_draw=6)
    a = draw_noise(problem, 1, small)
    b = draw_noise(problem, 1, large)
    assert a.shape == (6, small) and b.shape == (6, large)
    assert np.array_equal(a, b[:, :small])


def test_noise_is_deterministic_and_differs_across_draws():
    """Same (seed, draw) gives the same noise; another draw or seed gives other noise."""
    problem = Problem(n=64, k=4, noise=0.1, seed=4, subsets_per_draw=6)
    a = draw_noise(problem, 2, 100)
    assert np.array_equal(a, draw_noise(problem, 2, 100))
    assert not np.allclose(a, draw_noise(problem, 3, 100))
    other = Problem(n=64, k=4, noise=0.1, seed=5, subsets_per_draw=6)
    assert not np.allclose(a, draw_noise(other, 2, 100))
    # Row blocks use different streams: coordinates d and d + 64 differ.
    assert not np.allclose(a[:, :ROWS_PER_BLOCK - 28], a[:, ROWS_PER_BLOCK:100])


def test_noise_is_standard_normal():
    """The noise has mean 0, variance 1 and passes a KS test against N(0, 1)."""
    problem = Problem(n=64, k=4, noise=0.1, seed=8, subsets_per_draw=100)
    z = np.concatenate([draw_noise(problem, draw, 300).ravel() for draw in range(4)])
    assert z.size == 120_000
    assert abs(z.mean()) < 0.02
    assert abs(z.var() - 1.0) < 0.03
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # Neighbouring coordinates are uncorrelated.
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.02


@pytest.mark.parametrize("count", [1, 2, 7, 1001])
def test_standard_normal_count_and_reproducibility(count):
    """standard_normal returns count finite values, the same for the same stream key."""
    a = standard_normal(stream(3, 1, 2), count)
    b = standard_normal(stream(3, 1, 2), count)
    assert a.shape == (count,)
    assert np.all(np.isfinite(a))
    assert np.array_equal(a, b)


# ----------------------------------------------------------------------- Shannon limit

SHANNON_CASES = [(4096, 16, 0.1), (4096, 4, 0.05), (65536, 64, 0.2), (2**20, 256, 0.1),
                 (256, 1, 0.01), (100, 50, 0.3)]


def _capacity(d: int, k: int, noise: float) -> float:
    return 0.5 * d * math.log2(1.0 + k / (d * noise**2))


@pytest.mark.parametrize("n, k, noise", SHANNON_CASES)
def test_shannon_dimension_is_the_smallest_sufficient_d(n, k, noise):
    """The inequality (d/2) log2(1 + k/(d σ²)) >= H holds at d_Sh and fails at d_Sh - 1."""
    d_sh = shannon_dimension(n, k, noise)
    assert d_sh is not None and d_sh >= 1
    h = entropy_bits(n, k)
    assert _capacity(d_sh, k, noise) >= h
    if d_sh > 1:
        assert _capacity(d_sh - 1, k, noise) < h


def test_shannon_dimension_none_when_unreachable():
    """d_Sh is None when k / (2 σ² ln 2) <= H, and finite just inside that limit."""
    n, k = 4096, 16
    h = entropy_bits(n, k)
    critical = math.sqrt(k / (2 * math.log(2) * h))
    assert shannon_dimension(n, k, critical * 1.01) is None
    assert shannon_dimension(n, k, 1.0) is None
    near = shannon_dimension(n, k, critical * 0.98)
    assert near is not None
    assert _capacity(near, k, critical * 0.98) >= h > _capacity(near - 1, k, critical * 0.98)


def test_shannon_dimension_grows_with_noise():
    """More noise needs at least as many dimensions."""
    dims = [shannon_dimension(4096, 16, s) for s in (0.01, 0.05, 0.1, 0.2)]
    assert all(d is not None for d in dims)
    assert dims == sorted(dims) and dims[0] < dims[-1]


@pytest.mark.parametrize("noise", [0.0, -0.5])
def test_shannon_dimension_needs_positive_noise(noise):
    """The Shannon limit is not defined for σ <= 0."""
    with pytest.raises(ValueError):
        shannon_dimension(4096, 16, noise)


# --------------------------------------------------------------------------- streams


def test_stream_is_reproducible_and_keyed():
    """The same (seed, key) gives the same raw words; another seed or key gives others."""
    a = stream(1, 2, 3).random_raw(16)
    assert np.array_equal(a, stream(1, 2, 3).random_raw(16))
    for other in (stream(2, 2, 3), stream(1, 3, 3), stream(1, 2, 4), stream(1, 2, 3, 0),
                  stream(1, 2)):
        assert not np.array_equal(a, other.random_raw(16))


def test_stream_accepts_numpy_integer_keys():
    """NumPy integer keys give the same stream as Python integers."""
    a = stream(np.int64(7), np.int64(2), np.uint32(5)).random_raw(4)
    assert np.array_equal(a, stream(7, 2, 5).random_raw(4))


def test_uniform01_is_in_open_interval():
    """uniform01 maps the extreme words strictly inside (0, 1)."""
    words = np.array([0, 2**64 - 1, 2**63], dtype=np.uint64)
    u = uniform01(words)
    assert np.all(u > 0) and np.all(u < 1)
    assert u[2] == pytest.approx(0.5)


@pytest.mark.parametrize("count", [1, 63, 64, 65, 1000])
def test_random_bits_shape_values_and_reproducibility(count):
    """random_bits gives count 0/1 bytes, the same for the same stream key."""
    bits = random_bits(stream(9, 1, 1), count)
    assert bits.shape == (count,)
    assert bits.dtype == np.uint8
    assert set(np.unique(bits)) <= {0, 1}
    assert np.array_equal(bits, random_bits(stream(9, 1, 1), count))


def test_random_bits_prefix_consistent():
    """Asking for fewer bits gives a prefix of asking for more from the same key."""
    long = random_bits(stream(4, 4), 1000)
    assert np.array_equal(random_bits(stream(4, 4), 100), long[:100])


def test_random_bits_are_fair():
    """Bits are fair and each bit position within a word is fair (200000 bits)."""
    bits = random_bits(stream(12, 5), 200_000).astype(np.float64)
    assert abs(bits.mean() - 0.5) < 0.005
    per_position = bits[: 200_000 // 64 * 64].reshape(-1, 64).mean(axis=0)
    # sd of each per-position mean is 0.5 / sqrt(3125) ≈ 0.009.
    assert np.abs(per_position - 0.5).max() < 0.045
    # Consecutive bits are uncorrelated.
    assert abs(np.corrcoef(bits[:-1], bits[1:])[0, 1]) < 0.01


def test_the_binomial_entropy_is_exact_and_grows_like_half_log_k():
    from superposition_harness.problem import binomial_entropy

    assert binomial_entropy(0) == 0.0
    assert binomial_entropy(1) == pytest.approx(1.0)
    assert binomial_entropy(2) == pytest.approx(1.5)
    for k in (16, 64, 256, 4096):
        assert binomial_entropy(k) == pytest.approx(0.5 * math.log2(math.pi * math.e * k / 2), abs=2e-3)


def test_the_counting_limit_is_h_over_h_bin_less_the_fano_term():
    from superposition_harness.problem import binomial_entropy, counting_dimension

    # The figures the contract quotes: about 49 and 180 dimensions at q → 1.
    assert counting_dimension(4096, 16, 1.0) == math.ceil(entropy_bits(4096, 16) / binomial_entropy(16)) == 49
    assert counting_dimension(65536, 64, 1.0) == 180
    h2 = -(0.95 * math.log2(0.95) + 0.05 * math.log2(0.05))
    bound = (0.95 * entropy_bits(4096, 16) - h2) / binomial_entropy(16)
    assert counting_dimension(4096, 16, 0.95) == math.ceil(bound)
    assert counting_dimension(4096, 16, 0.95) == 46
    assert counting_dimension(4096, 16, 0.5) < counting_dimension(4096, 16, 0.95)
    with pytest.raises(ValueError):
        counting_dimension(4096, 16, 0.0)
