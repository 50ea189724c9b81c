"""Dictionary operators: entries, norms, nestedness, products, blocks, caching, errors."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
from superposition_harness import dictionary as dictionary_module
from superposition_harness.dictionary import (
    DictionaryTooLarge,
    GaussianDictionary,
    MatrixDictionary,
    RademacherDictionary,
    generated_dictionary,
    release_kept_bits,
)
from superposition_harness.problem import Problem, draw_subsets

#: float32 results of float64 algebra: a few float32 ulps relative to the typical size.
RTOL, ATOL = 2e-6, 2e-6


def _matrix(d: int = 40, n: int = 350, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((d, n))


def _make(kind: str, d: int, n: int, **options) -> object:
    if kind == "rademacher":
        return RademacherDictionary(d, n, seed=3, draw=1, **options)
    if kind == "gaussian":
        return GaussianDictionary(d, n, seed=3, draw=1, **options)
    return MatrixDictionary(_matrix(d, n), **options)


KINDS = ["rademacher", "gaussian", "matrix"]
#: (d, n, block options): one block, several column blocks, several without a cache.
LAYOUTS = [
    pytest.param(40, 350, {}, id="single-block"),
    pytest.param(70, 350, {"block_width": 100}, id="multi-block"),
    pytest.param(70, 350, {"block_width": 100, "cache_bytes": 0}, id="multi-block-nocache"),
]


# --------------------------------------------------------------------------- entries


@pytest.mark.parametrize("d", [1, 7, 64, 65, 130])
def test_rademacher_entries_are_plus_minus_one_over_sqrt_d(d):
    """Every entry of the dense Rademacher dictionary is exactly ±1/√d (in float32)."""
    dictionary = RademacherDictionary(d, 300, seed=1, draw=0, block_width=128)
    dense = dictionary.dense()
    assert dense.dtype == np.float32 and dense.shape == (d, 300)
    assert np.all(np.abs(dense) == np.float32(1 / math.sqrt(d)))


def test_rademacher_signs_are_fair_and_independent():
    """Signs are fair, and distinct row and column blocks are not copies of each other."""
    d, n = 192, 600
    dense = RademacherDictionary(d, n, seed=2, draw=0, block_width=200).dense()
    signs = np.sign(dense)
    assert abs((signs > 0).mean() - 0.5) < 0.01
    # Row blocks (64 rows each) and column blocks (200 columns each) use distinct streams.
    assert not np.array_equal(signs[:64], signs[64:128])
    assert not np.array_equal(signs[:, :200], signs[:, 200:400])
    # Off-diagonal codeword overlaps have the spread of independent signs, 1/√d.
    gram = dense.astype(np.float64).T @ dense
    off = gram[~np.eye(n, dtype=bool)]
    assert abs(off.mean()) < 0.005
    assert off.std() == pytest.approx(1 / math.sqrt(d), rel=0.05)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d, n, options", LAYOUTS)
def test_unit_column_norms(kind, d, n, options):
    """Every codeword has unit Euclidean norm, in dense() and in norms()."""
    dictionary = _make(kind, d, n, **options)
    dense = dictionary.dense().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(dense, axis=0), 1.0, rtol=1e-6)
    norms = dictionary.norms()
    assert norms.shape == (n,)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_matrix_dictionary_normalises_columns_of_its_matrix():
    """MatrixDictionary keeps the directions of the columns and scales them to unit norm."""
    matrix = _matrix(30, 50)
    matrix[:, 3] *= 1000.0
    dense = MatrixDictionary(matrix).dense()
    np.testing.assert_allclose(dense, matrix / np.linalg.norm(matrix, axis=0), rtol=1e-6, atol=1e-7)


def test_gaussian_entries_look_gaussian():
    """Before normalisation a Gaussian codeword is N(0, I): √d·entries have variance ≈ 1."""
    d, n = 256, 400
    dense = GaussianDictionary(d, n, seed=5, draw=2).dense().astype(np.float64)
    scaled = dense * math.sqrt(d)
    assert abs(scaled.mean()) < 0.01
    assert scaled.var() == pytest.approx(1.0, abs=0.01)
    # Excess kurtosis near 0 (a ±1 dictionary would give -2).
    kurtosis = ((scaled - scaled.mean()) ** 4).mean() / scaled.var() ** 2 - 3
    assert abs(kurtosis) < 0.1


# ------------------------------------------------------------------------ nestedness


@pytest.mark.parametrize("small", [1, 50, 64, 65, 130])
def test_rademacher_is_nested_in_d(small):
    """The first d rows at dimension D, times √(D/d), are the dictionary at dimension d."""
    big_d, n = 200, 300
    big = RademacherDictionary(big_d, n, seed=4, draw=3).dense().astype(np.float64)
    little = RademacherDictionary(small, n, seed=4, draw=3).dense().astype(np.float64)
    assert np.array_equal(np.sign(big[:small]), np.sign(little))
    np.testing.assert_allclose(big[:small] * math.sqrt(big_d / small), little, rtol=1e-6)


@pytest.mark.parametrize("small", [1, 50, 64, 65, 130])
def test_gaussian_is_nested_before_normalisation(small):
    """Renormalising the first d rows at dimension D gives the dictionary at dimension d."""
    big_d, n = 200, 300
    big = GaussianDictionary(big_d, n, seed=4, draw=3).dense().astype(np.float64)
    little = GaussianDictionary(small, n, seed=4, draw=3).dense().astype(np.float64)
    head = big[:small]
    np.testing.assert_allclose(head / np.linalg.norm(head, axis=0), little, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ agreement with the matrix


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d, n, options", LAYOUTS)
def test_operator_agrees_with_dense_algebra(kind, d, n, options):
    """correlate, synthesize, columns, blocks and superpose match float64 dense algebra."""
    dictionary = _make(kind, d, n, **options)
    assert dictionary.shape == (d, n)
    dense = dictionary.dense().astype(np.float64)
    rng = np.random.default_rng(17)

    signals = rng.standard_normal((5, d)).astype(np.float32)
    corr = dictionary.correlate(signals)
    assert corr.dtype == np.float32 and corr.shape == (5, n)
    np.testing.assert_allclose(corr, signals.astype(np.float64) @ dense, rtol=RTOL, atol=1e-5)

    coefficients = np.zeros((4, n))
    coefficients[0, [0, 99, 100, 349]] = 1.0           # straddles column blocks
    coefficients[1] = rng.standard_normal(n)          # dense
    coefficients[3, 200:260] = rng.random(60)         # one block only; row 2 stays zero
    synth = dictionary.synthesize(coefficients)
    assert synth.dtype == np.float32 and synth.shape == (4, d)
    np.testing.assert_allclose(synth, coefficients @ dense.T, rtol=RTOL, atol=1e-4)
    assert np.all(synth[2] == 0)

    indices = np.array([349, 0, 100, 99, 5, 5, 250])
    cols = dictionary.columns(indices)
    assert cols.dtype == np.float32 and cols.shape == (d, len(indices))
    np.testing.assert_allclose(cols, dense[:, indices], rtol=RTOL, atol=1e-7)

    pieces = list(dictionary.blocks())
    starts = [start for start, _ in pieces]
    assert starts == sorted(starts) and starts[0] == 0
    assert len(pieces) == dictionary.n_blocks
    stacked = np.concatenate([block for _, block in pieces], axis=1)
    assert np.array_equal(stacked, dictionary.dense())

    subsets = np.array([[0, 99, 100, 349], [1, 2, 3, 4], [10, 110, 210, 310]])
    x = dictionary.superpose(subsets)
    assert x.dtype == np.float32 and x.shape == (3, d)
    expected = np.stack([dense[:, row].sum(axis=1) for row in subsets])
    np.testing.assert_allclose(x, expected, rtol=RTOL, atol=1e-5)


def test_block_layout():
    """n=350 in blocks of 100 gives 4 blocks with ranges [0,100) ... [300,350)."""
    dictionary = RademacherDictionary(10, 350, seed=0, draw=0, block_width=100)
    assert dictionary.n_blocks == 4
    assert [dictionary.block_range(b) for b in range(4)] == [(0, 100), (100, 200), (200, 300),
                                                             (300, 350)]
    assert [block.shape for _, block in dictionary.blocks()] == [(10, 100)] * 3 + [(10, 50)]


def test_rademacher_correlations_are_exact_sums_rounded_once():
    """Rademacher correlations equal the exact signed sums times 1/√d, rounded once to float32."""
    d, n = 100, 350
    dictionary = RademacherDictionary(d, n, seed=6, draw=0, block_width=100)
    signs = np.sign(dictionary.dense()).astype(np.float64)
    signals = np.random.default_rng(1).standard_normal((8, d)).astype(np.float32)
    exact = (signals.astype(np.float64) @ signs) * (1.0 / math.sqrt(d))
    assert np.array_equal(dictionary.correlate(signals), exact.astype(np.float32))


# --------------------------------------------------------- batch-size independence


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
@pytest.mark.parametrize("d, n, options", [(100, 350, {"block_width": 100}),
                                           (37, 5000, {}), (200, 4096, {})])
def test_correlate_is_batch_size_independent(kind, d, n, options):
    """Correlating a batch equals stacking single-row correlations, bitwise."""
    dictionary = _make(kind, d, n, **options)
    rng = np.random.default_rng(23)
    signals = rng.standard_normal((21, d)).astype(np.float32)
    whole = dictionary.correlate(signals)
    rows = np.vstack([dictionary.correlate(row) for row in signals])
    chunks = np.vstack([dictionary.correlate(signals[i:i + 4]) for i in range(0, 21, 4)])
    assert np.array_equal(whole, rows)
    assert np.array_equal(whole, chunks)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_correlate_of_superposed_signals_is_batch_size_independent(kind):
    """Realistic signals (sums of codewords) correlate bitwise the same in any batch size."""
    problem = Problem(n=1000, k=8, dictionary=kind, seed=2, subsets_per_draw=16)
    dictionary = generated_dictionary(problem, 90, draw=0)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    whole = dictionary.correlate(signals)
    assert np.array_equal(whole, np.vstack([dictionary.correlate(s) for s in signals]))


def test_superpose_is_batch_size_independent():
    """superpose of a batch equals stacking superpose of each subset, bitwise."""
    dictionary = GaussianDictionary(50, 350, seed=1, draw=0, block_width=100)
    subsets = np.random.default_rng(3).integers(0, 350, size=(12, 5))
    whole = dictionary.superpose(subsets)
    assert np.array_equal(whole, np.vstack([dictionary.superpose(row[None]) for row in subsets]))


@pytest.mark.parametrize(("d", "n", "options"), LAYOUTS)
@pytest.mark.parametrize("k", [1, 7])
def test_rademacher_superpose_counted_on_bits_is_the_sum_of_its_codewords(d, n, options, k):
    """The sign-bit sums (every layout, one or several blocks, cached or not) are the
    float32 rounding of the float64 sum of the unpacked codewords, bit for bit."""
    dictionary = RademacherDictionary(d, n, seed=3, draw=1, **options)
    subsets = np.random.default_rng(d + k).integers(0, n, size=(6, k))
    columns = np.sign(dictionary.columns(np.arange(n))).astype(np.float64)  # the signs, ±1
    want = (columns[:, subsets].sum(axis=2).T * dictionary.scale).astype(np.float32)
    assert np.array_equal(dictionary.superpose(subsets), want)
    noise = np.random.default_rng(1).standard_normal((6, d))
    noisy = (columns[:, subsets].sum(axis=2).T * dictionary.scale + 0.1 * noise).astype(np.float32)
    assert np.array_equal(dictionary.superpose(subsets, noise, 0.1), noisy)


# --------------------------------------------------- blocks, caching and regeneration


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_uncached_regeneration_gives_identical_results(kind):
    """cache_bytes=0 (blocks made again on every use) changes nothing, bitwise."""
    cached = _make(kind, 70, 350, block_width=100)
    fresh = _make(kind, 70, 350, block_width=100, cache_bytes=0)
    rng = np.random.default_rng(4)
    signals = rng.standard_normal((6, 70)).astype(np.float32)
    coefficients = rng.standard_normal((3, 350))
    subsets = np.array([[0, 99, 100, 349], [5, 6, 7, 8]])
    for _ in range(2):  # the second round reads from the cache / regenerates again
        assert np.array_equal(cached.dense(), fresh.dense())
        assert np.array_equal(cached.correlate(signals), fresh.correlate(signals))
        assert np.array_equal(cached.synthesize(coefficients), fresh.synthesize(coefficients))
        assert np.array_equal(cached.columns([3, 340, 150]), fresh.columns([3, 340, 150]))
        assert np.array_equal(cached.superpose(subsets), fresh.superpose(subsets))
        assert np.array_equal(cached.norms(), fresh.norms())


def test_multi_block_matrix_dictionary_equals_single_block():
    """A matrix split into column blocks of 100 gives the results of one block of 350."""
    matrix = _matrix(40, 350, seed=8)
    single = MatrixDictionary(matrix)
    assert single.n_blocks == 1
    multi = MatrixDictionary(matrix, block_width=100, cache_bytes=0)
    assert multi.n_blocks == 4
    rng = np.random.default_rng(5)
    signals = rng.standard_normal((7, 40)).astype(np.float32)
    coefficients = rng.standard_normal((3, 350))
    subsets = np.array([[0, 99, 100, 349], [10, 20, 30, 40]])
    assert np.array_equal(single.dense(), multi.dense())
    assert np.array_equal(single.columns([0, 349, 100]), multi.columns([0, 349, 100]))
    assert np.array_equal(single.superpose(subsets), multi.superpose(subsets))
    np.testing.assert_allclose(single.correlate(signals), multi.correlate(signals), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(single.synthesize(coefficients), multi.synthesize(coefficients),
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_multi_block_generated_dictionary_equals_its_single_block_copy(kind):
    """A generated dictionary in 4 column blocks acts like the one-block matrix of its entries."""
    multi = _make(kind, 70, 350, block_width=100, cache_bytes=0)
    single = MatrixDictionary(multi.dense().astype(np.float64))
    rng = np.random.default_rng(6)
    signals = rng.standard_normal((5, 70)).astype(np.float32)
    coefficients = rng.standard_normal((2, 350))
    subsets = np.array([[0, 99, 100, 349]])
    np.testing.assert_allclose(multi.correlate(signals), single.correlate(signals),
                               rtol=RTOL, atol=1e-5)
    np.testing.assert_allclose(multi.synthesize(coefficients), single.synthesize(coefficients),
                               rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(multi.superpose(subsets), single.superpose(subsets),
                               rtol=RTOL, atol=1e-5)


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("kind", KINDS)
def test_superpose_adds_scaled_noise(kind):
    """superpose(Y, z, σ) = Σ_{i∈Y} f_i + σ z; σ = 0 ignores the noise."""
    dictionary = _make(kind, 40, 350, block_width=100)
    dense = dictionary.dense().astype(np.float64)
    subsets = np.array([[0, 1, 2], [100, 200, 300], [7, 77, 177]])
    noise = np.random.default_rng(9).standard_normal((3, 40))
    sigma = 0.3
    x = dictionary.superpose(subsets, noise, sigma)
    expected = np.stack([dense[:, row].sum(axis=1) for row in subsets]) + sigma * noise
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, expected, rtol=RTOL, atol=1e-5)
    clean = dictionary.superpose(subsets)
    assert np.array_equal(dictionary.superpose(subsets, noise, 0.0), clean)
    assert not np.allclose(x, clean)


# -------------------------------------------------------------------------- errors


def test_dense_refuses_over_its_byte_limit():
    """dense() raises DictionaryTooLarge above max_bytes and works at exactly the limit."""
    dictionary = RademacherDictionary(64, 1000, seed=0, draw=0)
    need = dictionary.nbytes_dense()
    assert need == 64 * 1000 * 4
    with pytest.raises(DictionaryTooLarge):
        dictionary.dense(max_bytes=need - 1)
    assert dictionary.dense(max_bytes=need).shape == (64, 1000)
    assert issubclass(DictionaryTooLarge, MemoryError)


def test_dense_refuses_a_paper_scale_dictionary_by_default():
    """A 4096 × 2^20 dictionary (16 GiB) is refused without being built."""
    dictionary = RademacherDictionary(4096, 2**20, seed=0, draw=0)
    with pytest.raises(DictionaryTooLarge, match="correlate"):
        dictionary.dense()


@pytest.mark.parametrize("matrix, match", [
    pytest.param(np.array([[1.0, 0.0], [2.0, 0.0]]), "column 1", id="zero-column"),
    pytest.param(np.array([[1.0, np.nan], [2.0, 1.0]]), "NaN", id="nan"),
    pytest.param(np.array([[1.0, np.inf], [2.0, 1.0]]), "infinite", id="inf"),
    pytest.param(np.ones(5), "2-D", id="1-D"),
    pytest.param(np.ones((2, 3, 4)), "2-D", id="3-D"),
])
def test_matrix_dictionary_rejects_bad_matrices(matrix, match):
    """MatrixDictionary rejects zero columns, non-finite entries and non-2-D arrays."""
    with pytest.raises(ValueError, match=match):
        MatrixDictionary(matrix)


@pytest.mark.parametrize("indices", [[350], [0, 351], [-1], [10**9]])
def test_columns_rejects_out_of_range_indices(indices):
    """columns() and superpose() refuse indices outside [0, N)."""
    dictionary = RademacherDictionary(16, 350, seed=0, draw=0, block_width=100)
    with pytest.raises(IndexError):
        dictionary.columns(np.array(indices))
    with pytest.raises(IndexError):
        dictionary.superpose(np.array([indices]))


@pytest.mark.parametrize("shape", [(3, 15), (3, 17), (2, 3, 16)])
def test_correlate_rejects_wrong_shapes(shape):
    """correlate() needs signals of shape (B, d)."""
    dictionary = RademacherDictionary(16, 50, seed=0, draw=0)
    with pytest.raises(ValueError):
        dictionary.correlate(np.zeros(shape, dtype=np.float32))


def test_synthesize_rejects_wrong_shapes():
    """synthesize() needs coefficients of shape (B, N)."""
    dictionary = RademacherDictionary(16, 50, seed=0, draw=0)
    with pytest.raises(ValueError):
        dictionary.synthesize(np.zeros((2, 49)))


# ------------------------------------------------------------- generated dictionaries


@pytest.mark.parametrize("kind, cls", [("rademacher", RademacherDictionary),
                                       ("gaussian", GaussianDictionary)])
def test_generated_dictionary_is_reproducible_per_draw(kind, cls):
    """The same (seed, draw) gives the same matrix; another draw or seed gives another."""
    problem = Problem(n=500, k=4, dictionary=kind, seed=12)
    first = generated_dictionary(problem, 48, draw=3)
    assert isinstance(first, cls)
    assert first.shape == (48, 500)
    dense = first.dense()
    assert np.array_equal(dense, generated_dictionary(problem, 48, draw=3).dense())
    assert np.array_equal(dense, generated_dictionary(Problem(n=500, k=4, dictionary=kind,
                                                              seed=12), 48, draw=3).dense())
    other_draw = generated_dictionary(problem, 48, draw=4).dense()
    other_seed = generated_dictionary(Problem(n=500, k=4, dictionary=kind, seed=13), 48,
                                      draw=3).dense()
    # Independent draws agree on about half the signs, not on all of them.
    assert 0.4 < np.mean(np.sign(dense) == np.sign(other_draw)) < 0.6
    assert 0.4 < np.mean(np.sign(dense) == np.sign(other_seed)) < 0.6


def test_generated_dictionary_does_not_depend_on_k_or_noise():
    """The dictionary is a function of (N, kind, seed, draw, d), not of k or σ."""
    a = generated_dictionary(Problem(n=300, k=4, seed=1), 32, draw=0).dense()
    b = generated_dictionary(Problem(n=300, k=9, noise=0.5, seed=1, subsets_per_draw=3), 32,
                             draw=0).dense()
    assert np.array_equal(a, b)


@pytest.mark.parametrize("d, n", [(1, 10), (64, 4096), (100, 300), (130, 5000)])
def test_compiled_rademacher_blocks_equal_the_numpy_reference(d, n):
    """The numba sign unpacking gives exactly the blocks of the plain NumPy path."""
    from superposition_harness.dictionary import GeneratedDictionary, RademacherDictionary
    dictionary = RademacherDictionary(d, n, seed=4, draw=2)
    for block in range(dictionary.n_blocks):
        fast = dictionary._make_block(block)
        reference = GeneratedDictionary._make_block(dictionary, block)
        assert fast.flags.c_contiguous and np.array_equal(fast, reference)


def test_sparse_synthesis_matches_the_dense_product():
    """Sparse coefficients take the codeword-by-codeword path and agree with F @ y."""
    from superposition_harness.dictionary import SPARSE_SYNTHESIS, MatrixDictionary
    rng = np.random.default_rng(8)
    matrix = rng.normal(size=(40, 600))
    dictionary = MatrixDictionary(matrix, block_width=128)
    coefficients = np.zeros((4, 600))
    for row, count in enumerate((0, 3, 600 // SPARSE_SYNTHESIS, 1)):
        coefficients[row, rng.choice(600, count, replace=False)] = rng.normal(size=count)
    expected = coefficients @ (matrix / np.linalg.norm(matrix, axis=0)).T
    np.testing.assert_allclose(dictionary.synthesize(coefficients), expected, atol=1e-5)
    one_row = dictionary.synthesize(coefficients[1:2])
    assert np.array_equal(one_row[0], dictionary.synthesize(coefficients)[1])


def test_lipschitz_bounds_the_largest_eigenvalue_from_above():
    from superposition_harness import Problem
    from superposition_harness.dictionary import generated_dictionary
    for kind in ("rademacher", "gaussian"):
        dictionary = generated_dictionary(Problem(n=2048, k=4, dictionary=kind, seed=2), 150, 0)
        exact = np.linalg.norm(dictionary.dense().astype(np.float64), 2) ** 2
        assert exact <= dictionary.lipschitz() <= 1.06 * exact
        assert dictionary.lipschitz() == dictionary.lipschitz()


def test_rows_snapped_to_their_grid_correlate_the_same_in_any_batch():
    """Continuous rows on their power-of-two grid give exact Rademacher sums: bitwise the
    same correlations alone or in a batch, and the grid depends on each row alone."""
    from superposition_harness import Problem
    from superposition_harness.dictionary import generated_dictionary, grid_steps, snap_to_grid
    rng = np.random.default_rng(12)
    values = rng.normal(size=(9, 70)) * np.logspace(-3, 3, 9)[:, None]
    steps = grid_steps(values)
    assert np.all(np.log2(steps) == np.round(np.log2(steps)))
    snapped = snap_to_grid(values, steps)
    assert np.all(np.abs(snapped - values) <= steps[:, None] / 2)
    assert np.array_equal(snap_to_grid(values[3:4], grid_steps(values[3:4])), snapped[3:4])
    dictionary = generated_dictionary(Problem(n=300, k=2, seed=1), 70, 0)
    together = dictionary.correlate(snapped)
    assert all(np.array_equal(together[i], dictionary.correlate(snapped[i:i + 1])[0]) for i in range(9))


# ------------------------------------------------- lattice products, gram rows, workers


def _signs(dictionary) -> np.ndarray:
    """The exact ±1 base matrix (d, N) of a Rademacher dictionary, as int64."""
    return np.rint(dictionary.dense().astype(np.float64) * math.sqrt(dictionary.d)).astype(np.int64)


@pytest.mark.parametrize("d, n, options", [(50, 300, {}), (130, 5000, {}), (70, 350, {"block_width": 100}),
                                           (64, 8192, {"block_width": 4096, "cache_bytes": 0})])
def test_lattice_signals_are_correlated_exactly(d, n, options):
    """Superposed signals lie on the lattice; their correlations are the exact integer
    sums over d, rounded once, whatever the block layout or cache."""
    dictionary = RademacherDictionary(d, n, seed=5, draw=2, **options)
    problem = Problem(n=n, k=6, seed=5)
    subsets = draw_subsets(problem, 0)[:9]
    signals = dictionary.superpose(subsets)
    lattice, integers, factors, _ = dictionary._integer_rows(signals.astype(np.float64))
    assert lattice.all() and np.all(factors == d)
    signs = _signs(dictionary)
    coordinates = signs[:, subsets].sum(axis=2).T          # (B, d) integers
    assert np.array_equal(integers, coordinates)
    expected = ((coordinates @ signs) / d).astype(np.float32)
    assert np.array_equal(dictionary.correlate(signals), expected)


@pytest.mark.parametrize("rows", [1, 8, 13, 33, 128, 129])
def test_products_counted_on_the_bits_are_the_unpacked_products(monkeypatch, rows):
    """Up to LOOKUP_MAX_ROWS exact rows, a Rademacher dictionary whose bits are in memory
    counts its products by table look-up: bitwise the correlations of the unpacking path,
    for lattice rows (superposed, and after a codeword is removed) and rows on a grid."""
    import superposition_harness.dictionary as module
    from superposition_harness.dictionary import grid_steps, snap_to_grid
    assert 8 < module.LOOKUP_MAX_ROWS < 129 and module.LOOKUP_MIN_CODEWORDS <= 16384 + 5
    problem = Problem(n=16384 + 5, k=40, seed=4, subsets_per_draw=130)
    dictionary = RademacherDictionary(333, 16384 + 5, seed=4, draw=1)
    subsets = draw_subsets(problem, 0)[:rows]
    lattice = dictionary.superpose(subsets)
    removed = dictionary.remove(lattice, subsets[:, 0])
    values = np.random.default_rng(rows).normal(size=(rows, 333)) * 1e3
    grid = snap_to_grid(values, grid_steps(values)).astype(np.float32)
    assert grid.dtype == np.float32 and dictionary._integer_rows(grid)[0].all()
    calls: list[int] = []
    real = module.lattice_products
    monkeypatch.setattr(module, "lattice_products", lambda *a: calls.append(1) or real(*a))
    counted = [dictionary.correlate(batch) for batch in (lattice, removed, grid)]
    routed = 3 if rows <= module.LOOKUP_MAX_ROWS else 0
    assert len(calls) == routed
    monkeypatch.setattr(module, "LOOKUP_MAX_ROWS", 0)
    unpacked = [dictionary.correlate(batch) for batch in (lattice, removed, grid)]
    assert len(calls) == routed  # the unpacking path counts nothing on the bits
    for mine, theirs in zip(counted, unpacked, strict=True):
        assert np.array_equal(mine, theirs)


def test_products_are_counted_on_the_bits_only_when_they_are_all_in_memory(monkeypatch):
    import superposition_harness.dictionary as module
    calls: list[int] = []
    real = module.lattice_products
    monkeypatch.setattr(module, "lattice_products", lambda *a: calls.append(1) or real(*a))
    signals = np.ones((2, 64), dtype=np.float32) / 8
    n = module.LOOKUP_MIN_CODEWORDS
    RademacherDictionary(64, n, seed=1, draw=0).correlate(signals)
    assert calls == [1]
    RademacherDictionary(64, n, seed=1, draw=0, cache_bytes=0).correlate(signals)  # bits not kept
    RademacherDictionary(64, n, seed=1, draw=0).correlate(np.full((2, 64), 0.3, dtype=np.float32))  # inexact
    RademacherDictionary(64, n - 1, seed=1, draw=0).correlate(signals)  # too few codewords for the tables
    too_many = module.LOOKUP_MAX_ROWS + 1
    RademacherDictionary(64, n, seed=1, draw=0).correlate(np.ones((too_many, 64), dtype=np.float32) / 8)
    assert calls == [1]


@pytest.mark.parametrize("rows", [1, 8, 13, 32, 33])
def test_syntheses_counted_on_the_bits_are_the_unpacked_products(monkeypatch, rows):
    """Up to SYNTHESIS_LOOKUP_MAX_ROWS rows on their grid, from SYNTHESIS_LOOKUP_MIN_D dimensions
    on, a Rademacher dictionary whose bits are in memory counts ``synthesize``'s sums by
    table look-up: bitwise the signals of the unpacking path, for dense estimates on
    their grid (as AMP's), alone or beside rows off the grid, and for integers."""
    import superposition_harness.dictionary as module
    from superposition_harness.dictionary import grid_steps, snap_to_grid
    assert module.SYNTHESIS_LOOKUP_MIN_D <= 600
    n, d = module.LOOKUP_MIN_CODEWORDS + 70, 600
    dictionary = RademacherDictionary(d, n, seed=4, draw=1)
    rng = np.random.default_rng(rows)
    values = rng.random((rows, n)) ** 6 * np.logspace(-3, 3, rows)[:, None]
    values[:, rng.integers(0, n, size=5)] = -2.5
    grid = snap_to_grid(values, grid_steps(values)).astype(np.float32)
    assert dictionary._integer_rows(grid, lattice=False)[0].all()
    mixed = grid.copy()
    mixed[0, 7] = 1e-30  # off its grid: summed in float64 by the product
    assert not dictionary._integer_rows(mixed, lattice=False)[0][0]
    counts = rng.integers(-5, 6, size=(rows, n)).astype(np.float32)
    batches = (grid, mixed, counts)
    calls: list[int] = []
    real = module.lattice_syntheses
    monkeypatch.setattr(module, "lattice_syntheses", lambda *a: calls.append(1) or real(*a))
    counted = [dictionary.synthesize(batch) for batch in batches]
    # the grid rows of each batch (mixed's first row is off its grid) when there are few enough
    routed = sum(0 < grid_rows <= module.SYNTHESIS_LOOKUP_MAX_ROWS for grid_rows in (rows, rows - 1, rows))
    assert len(calls) == routed
    monkeypatch.setattr(module, "SYNTHESIS_LOOKUP_MIN_D", d + 1)
    unpacked = [dictionary.synthesize(batch) for batch in batches]
    assert len(calls) == routed
    for mine, theirs in zip(counted, unpacked, strict=True):
        assert np.array_equal(mine, theirs)
    assert np.allclose(counted[0], grid.astype(np.float64) @ dictionary.dense().T.astype(np.float64),
                       rtol=1e-5, atol=1e-3)


def test_syntheses_are_counted_on_the_bits_only_when_they_pay(monkeypatch):
    import superposition_harness.dictionary as module
    calls: list[int] = []
    real = module.lattice_syntheses
    monkeypatch.setattr(module, "lattice_syntheses", lambda *a: calls.append(1) or real(*a))
    n, d = module.LOOKUP_MIN_CODEWORDS, module.SYNTHESIS_LOOKUP_MIN_D
    dense = np.full((2, n), 0.25, dtype=np.float32)
    RademacherDictionary(d, n, seed=1, draw=0).synthesize(dense)
    assert calls == [1]
    RademacherDictionary(d, n, seed=1, draw=0, cache_bytes=0).synthesize(dense)  # bits not kept
    RademacherDictionary(d - 1, n, seed=1, draw=0).synthesize(dense)  # too few dimensions
    RademacherDictionary(d, n - 1, seed=1, draw=0).synthesize(dense[:, 1:])  # too few codewords
    RademacherDictionary(d, n, seed=1, draw=0).synthesize(
        np.full((module.SYNTHESIS_LOOKUP_MAX_ROWS + 1, n), 0.25, dtype=np.float32))
    sparse = np.zeros((2, n), dtype=np.float32)
    sparse[:, :3] = 1.0
    RademacherDictionary(d, n, seed=1, draw=0).synthesize(sparse)  # summed codeword by codeword
    assert calls == [1]


@pytest.mark.parametrize("d, n, options", [(70, 3000, {}), (129, 5000, {"cache_bytes": 0}),
                                           (64, 700, {"block_width": 256})])
def test_sparse_syntheses_on_the_bits_are_the_sums_of_the_unpacked_terms(d, n, options):
    """A sparse ``synthesize`` sums the signed codewords on their bits, term by term: the
    same float64 sums, to the bit, as the general path's ``np.add.reduceat`` over the
    unpacked terms, for coefficients off any grid (where the order of the sums shows),
    rows with no coefficient, and the bits kept or made block by block."""
    from superposition_harness.dictionary import SPARSE_SYNTHESIS, Dictionary
    dictionary = RademacherDictionary(d, n, seed=2, draw=1, **options)
    rng = np.random.default_rng(d)
    y = np.where(rng.random((6, n)) < 0.5 / SPARSE_SYNTHESIS,
                 rng.normal(size=(6, n)) * np.logspace(-6, 6, n), 0).astype(np.float32)
    y[2] = 0
    y[4, :3] = [1e-30, -7.0, 3e12]
    rows, cols = np.nonzero(y)
    assert rows.size * SPARSE_SYNTHESIS <= y.size and len(np.unique(rows)) == 5
    general = Dictionary._synthesize_sparse(dictionary, y, rows, cols)
    assert np.array_equal(dictionary.synthesize(y), general)
    assert not general[2].any()
    assert np.allclose(general, (y.astype(np.float64) @ dictionary.dense().T.astype(np.float64)),
                       rtol=1e-5, atol=1e-6 * np.abs(y).max())


def test_sparse_syntheses_that_overflow_are_reported_as_numpy_reports_them():
    """Sums that overflow, or hold an infinity or a NaN, take the general path: NumPy's
    floating-point errors are raised or warned as the decoder's ``np.errstate`` says,
    and the NaNs have the general path's bits."""
    from superposition_harness.dictionary import Dictionary
    dictionary = RademacherDictionary(70, 3000, seed=2, draw=1)
    for pair in ((np.inf, -np.inf), (1e308, 1e308), (np.nan, 1.0)):
        y = np.zeros((2, 3000))
        y[1, [5, 9]] = pair
        rows, cols = np.nonzero(y)
        with np.errstate(all="ignore"):
            general = Dictionary._synthesize_sparse(dictionary, y, rows, cols)
            mine = dictionary.synthesize(y)
        assert np.array_equal(mine.view(np.uint32), general.view(np.uint32))
        if not np.isnan(pair).any():
            with np.errstate(all="raise"), pytest.raises(FloatingPointError):
                dictionary.synthesize(y)


def test_rows_too_small_for_a_grid_are_summed_in_float64():
    """A row whose L1 norm is below 2^-1051 has no grid of normal steps: it is multiplied
    as any other row off the lattice, not divided by a step of zero."""
    dictionary = RademacherDictionary(70, 3000, seed=2, draw=1)
    tiny = np.zeros((2, 70))
    tiny[0, :3] = 5e-324
    tiny[1] = 1.0
    correlations = dictionary.correlate(tiny)
    assert not correlations[0].any() and correlations[1].any()
    coefficients = np.zeros((1, 3000))
    coefficients[0, ::2] = 5e-324
    assert not dictionary.synthesize(coefficients).any()


def test_rows_off_the_lattice_take_the_float64_path_row_by_row():
    """A batch mixing lattice and other rows gives each row what it gets alone."""
    dictionary = RademacherDictionary(40, 700, seed=1, draw=0, block_width=256)
    lattice_rows = dictionary.superpose(draw_subsets(Problem(n=700, k=3, seed=0), 0)[:4])
    other = np.random.default_rng(3).standard_normal((3, 40)).astype(np.float32)
    nearly = lattice_rows[:1] * np.float32(1 + 2**-20)
    batch = np.concatenate([lattice_rows[:2], other, nearly, lattice_rows[2:]])
    together = dictionary.correlate(batch)
    for b in range(batch.shape[0]):
        assert np.array_equal(together[b], dictionary.correlate(batch[b:b + 1])[0])
    dense = dictionary.dense().astype(np.float64)
    np.testing.assert_allclose(together, batch.astype(np.float64) @ dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_gram_rows_are_the_codewords_correlations(kind):
    dictionary = _make(kind, 70, 350, block_width=100)
    indices = np.array([0, 349, 17, 17, 200])
    rows = dictionary.gram_rows(indices)
    assert rows.shape == (5, 350) and rows.dtype == np.float32
    dense = dictionary.dense().astype(np.float64)
    np.testing.assert_allclose(rows, dense[:, indices].T @ dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rows[np.arange(5), indices], 1.0, rtol=1e-6)
    assert np.array_equal(rows[2], rows[3])


def test_rademacher_gram_rows_are_exact_sign_counts():
    dictionary = RademacherDictionary(100, 5000, seed=2, draw=1)
    signs = _signs(dictionary)
    indices = np.array([3, 4095, 4096, 4999])
    expected = ((signs[:, indices].T @ signs) / 100).astype(np.float32)
    assert np.array_equal(dictionary.gram_rows(indices), expected)
    with pytest.raises(IndexError):
        dictionary.gram_rows(np.array([5000]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d, n, options", LAYOUTS)
def test_subtract_gram_rows_is_subtracting_gram_rows_then_the_first_argmax(kind, d, n, options):
    """A greedy step in one call is the two-step reference bit for bit, on one block,
    several, and several without a cache (where a Rademacher dictionary cannot hold all
    its bits at once and falls back to its Gram rows), with exact ties and a NaN."""
    dictionary = _make(kind, d, n, **options)
    rng = np.random.default_rng(7)
    indices = np.array([0, n - 1, 17, 17, 200, 3])
    correlations = np.round(rng.standard_normal((6, n)), 1)  # many exact ties after the update
    correlations[1] = dictionary.gram_rows(indices[1:2])[0]  # all zero after it: pick 0
    correlations[4, 5] = np.nan
    correlations[5] = -np.inf
    expected = correlations - dictionary.gram_rows(indices)
    finite = np.where(np.isnan(expected), -np.inf, expected)
    expected_picks = np.where(np.isneginf(finite).all(axis=1), 0, finite.argmax(axis=1))
    picks = dictionary.subtract_gram_rows(correlations, indices)
    assert picks.dtype == np.int64
    np.testing.assert_array_equal(correlations, expected)
    np.testing.assert_array_equal(picks, expected_picks)
    assert picks[1] == 0


def test_rademacher_bits_in_one_array_are_the_blocks_bits():
    """Bits that fit in the cache are kept as one array whose slices are the blocks; the
    products over it equal those made block by block without a cache."""
    roomy = RademacherDictionary(130, 4096 * 2 + 300, seed=5, draw=2)
    bare = RademacherDictionary(130, 4096 * 2 + 300, seed=5, draw=2, cache_bytes=0)
    bits = roomy._all_packed()
    assert bits is not None and bits.shape == (roomy.n, roomy.words)
    assert bare._all_packed() is None
    for block in range(roomy.n_blocks):
        start, stop = roomy.block_range(block)
        assert np.array_equal(bits[start:stop], bare._packed(block))
        assert np.shares_memory(roomy._packed(block), bits)
    indices = np.array([1, 4096, 8491, 4095])
    assert np.array_equal(roomy.gram_rows(indices), bare.gram_rows(indices))
    rng = np.random.default_rng(3)
    start = rng.standard_normal((4, roomy.n))
    one, two = start.copy(), start.copy()
    assert np.array_equal(roomy.subtract_gram_rows(one, indices), bare.subtract_gram_rows(two, indices))
    assert np.array_equal(one, two)


def _blockwise_bits(d: int, n: int, draw: int) -> np.ndarray:
    bare = RademacherDictionary(d, n, seed=5, draw=draw, cache_bytes=0)
    return np.concatenate([bare._packed(block) for block in range(bare.n_blocks)])


def test_a_finished_draws_bits_are_written_again_by_the_next_of_its_shape():
    """The next draw of the same shape writes its bits into the last draw's array once
    nothing refers to it, and they are that draw's own bits, bit for bit."""
    release_kept_bits()
    d, n = 130, 4096 * 2 + 300
    first = RademacherDictionary(d, n, seed=5, draw=0)
    kept = weakref.ref(first._all_packed())
    del first
    second = RademacherDictionary(d, n, seed=5, draw=1)
    bits = second._all_packed()
    assert bits is kept()
    assert np.array_equal(bits, _blockwise_bits(d, n, 1))
    assert np.array_equal(second.superpose(np.array([[0, 4097, n - 1]])),
                          RademacherDictionary(d, n, seed=5, draw=1, cache_bytes=0).superpose(
                              np.array([[0, 4097, n - 1]])))


@pytest.mark.parametrize("hold", ["dictionary", "view"])
def test_bits_still_referred_to_are_never_written_again(hold):
    """A live dictionary, or any view of its bits, keeps them: the next draw gets new memory."""
    release_kept_bits()
    d, n = 130, 4096 * 2 + 300
    first = RademacherDictionary(d, n, seed=5, draw=0)
    held = first if hold == "dictionary" else first._packed(1)
    before = np.array(first._all_packed())
    if hold == "view":
        del first
    second = RademacherDictionary(d, n, seed=5, draw=1)
    assert not np.shares_memory(second._all_packed(), held._all_packed() if hold == "dictionary" else held)
    assert np.array_equal(second._all_packed(), _blockwise_bits(d, n, 1))
    if hold == "dictionary":
        assert np.array_equal(held._all_packed(), before)
    else:
        assert np.array_equal(held, before[4096:8192])


def test_kept_bits_are_let_go_before_another_shape_is_made_and_on_release():
    release_kept_bits()
    first = RademacherDictionary(130, 4096 * 2, seed=5, draw=0)
    gone = weakref.ref(first._all_packed())
    del first
    assert gone() is not None  # kept for the next draw of its shape
    other = RademacherDictionary(200, 4096 * 2, seed=5, draw=0)
    assert other._all_packed() is not None
    assert gone() is None
    kept = weakref.ref(other._all_packed())
    del other
    assert kept() is not None
    release_kept_bits()
    assert kept() is None


def test_a_run_lets_its_kept_bits_go():
    from superposition_harness.api import score  # noqa: PLC0415
    release_kept_bits()
    result = score("topk", n=4096, k=2, trials=96)
    assert result.d_star is not None
    assert dictionary_module._KEPT._array is None


@pytest.mark.parametrize(("rows", "on_workers"), [(2, False), (4096, True)])
def test_products_in_memory_go_to_the_workers_only_when_their_parts_are_large(rows, on_workers, monkeypatch):
    """Blocks in memory: small parts run on the calling thread (BLAS spreads them), parts of
    WORKER_PART_WORK multiply-adds or more go to the workers; blocks still to be made
    always do. The results are the same bits either way."""
    from superposition_harness import parallel
    from superposition_harness.dictionary import WORKER_PART_WORK
    matrix = MatrixDictionary(_matrix(64, 2 * 4096), block_width=4096)
    matrix.correlate(np.ones((1, 64)))  # its blocks made and kept
    assert (rows * 64 * 4096 >= WORKER_PART_WORK) is on_workers
    seen: list[bool] = []
    run_parts = parallel.run_parts
    monkeypatch.setattr(parallel, "run_parts", lambda *args, threaded: (seen.append(threaded),
                                                                         run_parts(*args, threaded=threaded)))
    signals = np.random.default_rng(0).standard_normal((rows, 64))
    matrix.correlate(signals)
    matrix.synthesize(np.random.default_rng(1).standard_normal((rows, matrix.n)))
    matrix.gram_rows(np.arange(rows) % matrix.n)
    assert seen == [on_workers] * 3
    seen.clear()
    bare = RademacherDictionary(64, 2 * 4096, seed=5, draw=0, cache_bytes=0)
    bare.correlate(bare.superpose(np.array([[0, 1, 2]])))
    assert seen == [True]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("bad", [
    pytest.param(lambda n: np.zeros((3, n), dtype=np.float32), id="float32"),
    pytest.param(lambda n: np.zeros((2, n)), id="rows"),
    pytest.param(lambda n: np.zeros((3, n + 1)), id="columns"),
    pytest.param(lambda n: np.zeros((n, 3)).T, id="not-contiguous"),
    pytest.param(lambda n: np.zeros((3, n)).tolist(), id="list"),
    pytest.param(lambda n: _read_only(np.zeros((3, n))), id="read-only"),
])
@pytest.mark.parametrize("kind", ["rademacher", "matrix"])
def test_subtract_gram_rows_refuses_what_it_cannot_update_in_place(kind, bad):
    dictionary = _make(kind, 20, 300)
    with pytest.raises(ValueError, match="writable, C-contiguous float64 array of shape"):
        dictionary.subtract_gram_rows(bad(300), np.array([1, 2, 3]))


@pytest.mark.parametrize("kind", KINDS)
def test_remove_subtracts_one_codeword_per_row(kind):
    dictionary = _make(kind, 40, 350)
    signals = np.random.default_rng(0).standard_normal((3, 40)).astype(np.float32)
    indices = np.array([5, 0, 349])
    expected = signals.astype(np.float64) - dictionary.dense().astype(np.float64)[:, indices].T
    np.testing.assert_allclose(dictionary.remove(signals, indices), expected, atol=1e-6)
    with pytest.raises(ValueError, match="one index per signal"):
        dictionary.remove(signals, indices[:2])


def test_remove_keeps_lattice_signals_exactly_on_the_lattice():
    """x − f_j for a superposition containing j is, bit for bit, the superposition without it."""
    dictionary = RademacherDictionary(77, 500, seed=4, draw=0)
    subsets = draw_subsets(Problem(n=500, k=5, seed=1), 0)[:6]
    removed = dictionary.remove(dictionary.superpose(subsets), subsets[:, 2])
    assert np.array_equal(removed, dictionary.superpose(np.delete(subsets, 2, axis=1)))


@pytest.mark.parametrize("kind", KINDS)
def test_products_do_not_depend_on_the_number_of_workers(kind, monkeypatch):
    """One worker or three: correlate, synthesize and gram_rows give the same bits, also
    where a lone block is cut into parts and where parts are limited by the scratch size."""
    from superposition_harness import dictionary as module
    from superposition_harness import parallel
    monkeypatch.setattr(module, "SCRATCH_BYTES", 40 * 8 * 300)
    dictionary = _make(kind, 40, 4096)
    rng = np.random.default_rng(1)
    signals = rng.standard_normal((64, 40)).astype(np.float32)
    coefficients = np.where(rng.random((64, 4096)) < 0.05, rng.standard_normal((64, 4096)), 0.0)
    lattice = dictionary.superpose(draw_subsets(Problem(n=4096, k=4, seed=0), 0)) \
        if kind == "rademacher" else signals
    assert len(dictionary._parts(64)) > 1
    results = []
    previous = parallel.workers()
    try:
        for count in (1, 3):
            parallel.set_workers(count)
            results.append((dictionary.correlate(signals), dictionary.correlate(lattice),
                            dictionary.synthesize(coefficients), dictionary.gram_rows(np.arange(64))))
    finally:
        parallel.set_workers(previous)
    for one, three in zip(*results, strict=True):
        assert np.array_equal(one, three)


def test_unpacked_numbers_are_cached_only_when_all_fit():
    """With room for the bits but not for all the numbers, no numbers are kept (rows off
    the lattice and any grid: the products that unpack them)."""
    signals = np.full((1, 64), 0.3, dtype=np.float32)
    small = RademacherDictionary(64, 4096 * 3, seed=0, draw=0, cache_bytes=4096 * 3 * 8 + 4096 * 64 * 8)
    small.correlate(signals)
    assert all(isinstance(key, int) for key in small._cache)
    roomy = RademacherDictionary(64, 4096 * 3, seed=0, draw=0)
    roomy.correlate(signals)
    assert any(isinstance(key, tuple) for key in roomy._cache)
    assert np.array_equal(small.correlate(signals), roomy.correlate(signals))


def test_rows_on_a_power_of_two_grid_are_multiplied_in_float32_to_the_float64_bit():
    """Rows snapped by grid_steps take the float32 integer path and give exactly what
    the float64 path gives (the same rows nudged off the grid by one ulp take it)."""
    from superposition_harness.dictionary import grid_steps, snap_to_grid
    dictionary = RademacherDictionary(300, 5000, seed=2, draw=0)
    rng = np.random.default_rng(4)
    raw = rng.standard_normal((6, 300)) * np.array([[1e-3], [1.0], [7.0], [1e3], [0.5], [2.0]])
    rows = snap_to_grid(raw, grid_steps(raw), np.float32)
    exact, _, factors, _ = dictionary._integer_rows(rows.astype(np.float64))
    assert exact.all() and np.all(factors < 0)
    expected = ((rows.astype(np.float64) @ _signs(dictionary)) * dictionary.scale).astype(np.float32)
    assert np.array_equal(dictionary.correlate(rows), expected)
    for b in range(6):
        assert np.array_equal(dictionary.correlate(rows[b:b + 1])[0], expected[b])


def test_grid_steps_leave_room_for_exact_float32_sums():
    from superposition_harness.dictionary import grid_steps, snap_to_grid
    rng = np.random.default_rng(5)
    values = rng.standard_normal((20, 1000)) * rng.uniform(1e-6, 1e6, size=(20, 1))
    steps = grid_steps(values)
    snapped = snap_to_grid(values, steps)
    integers = snapped / steps[:, None]
    assert np.array_equal(integers, np.round(integers))
    assert np.all(np.sum(np.abs(integers), axis=1) <= 2**24)
    assert np.all(np.log2(steps) == np.round(np.log2(steps)))
    np.testing.assert_allclose(snapped, values, atol=float(np.max(steps)))


def test_synthesis_of_grid_rows_in_float32_equals_the_float64_sum():
    """Dense coefficient rows snapped by grid_steps are summed in float32, exactly: the
    result equals the float64 product to the bit, alone or in any batch."""
    from superposition_harness.dictionary import grid_steps, snap_to_grid
    dictionary = RademacherDictionary(90, 5000, seed=3, draw=0)
    rng = np.random.default_rng(6)
    raw = rng.standard_normal((5, 5000)) * np.array([[1e-2], [1.0], [30.0], [1.0], [0.3]])
    rows = snap_to_grid(raw, grid_steps(raw), np.float32)
    rows[3] = raw[3]  # off the grid: the float64 path
    expected = ((_signs(dictionary) @ rows.astype(np.float64).T).T * dictionary.scale).astype(np.float32)
    assert np.array_equal(dictionary.synthesize(rows), expected)
    for b in range(5):
        assert np.array_equal(dictionary.synthesize(rows[b:b + 1])[0], expected[b])


def test_float32_coefficients_are_synthesised_as_their_float64_copy():
    """A decoder's float32 estimate is not copied to float64 to be synthesised; the
    result is the float64 copy's to the bit, on and off the grid, dense and sparse,
    for the sign-bit dictionary and a loaded one."""
    from superposition_harness.dictionary import MatrixDictionary, grid_steps, snap_to_grid
    rng = np.random.default_rng(12)
    loaded = MatrixDictionary(rng.standard_normal((50, 3000)).astype(np.float32))
    for dictionary in (RademacherDictionary(77, 5000, seed=1, draw=0), loaded):
        n = dictionary.n
        dense = rng.random((5, n)).astype(np.float32)
        dense[1] = snap_to_grid(dense[1:2], grid_steps(dense[1:2]), np.float32)[0]
        dense[2, : n // 2] = 0
        sparse = np.zeros((3, n), dtype=np.float32)
        sparse[0, 5] = 0.3
        sparse[1, [1, 7, n - 1]] = [1.0, -2.5, 1e-3]
        for coefficients in (dense, dense[1:2], sparse):
            got = dictionary.synthesize(coefficients)
            assert got.dtype == np.float32
            assert np.array_equal(got, dictionary.synthesize(coefficients.astype(np.float64)))


@pytest.mark.parametrize("threads", [1, 2])
def test_integer_rows_of_float32_rows_are_those_of_their_float64_copy(threads):
    """integer_rows reads float32 rows as the float64 numbers they are, and works each row
    out on its own: the same integers, factors and steps serial or on the cores."""
    import numba
    from superposition_harness.dictionary import grid_steps, snap_to_grid
    from superposition_harness.kernels import PARALLEL_ENTRIES, integer_rows
    rng = np.random.default_rng(13)
    width = PARALLEL_ENTRIES // 4 + 3  # 4 rows: the parallel kernel
    rows = rng.standard_normal((4, width)).astype(np.float32)
    rows[0] = snap_to_grid(rows[:1], grid_steps(rows[:1]), np.float32)[0]
    rows[1] = (np.float32(0.25) * rng.integers(-3, 4, size=width)).astype(np.float32)
    rows[3] = 0.0
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        for lattice in (True, False):
            got = integer_rows(rows, 0.25, 90, lattice)
            small = [integer_rows(rows[b:b + 1].astype(np.float64), 0.25, 90, lattice) for b in range(4)]
            for part, expected in zip(got, zip(*small, strict=True), strict=True):
                assert np.array_equal(part, np.concatenate(expected))
    finally:
        numba.set_num_threads(previous)
    assert got[1][0] < 0 and got[1][3] == 0.0  # on the grid, and neither
