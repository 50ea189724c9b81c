"""top_k_rows: the k largest entries per row, ties to the lower index, indices ascending."""

from __future__ import annotations

import numpy as np
import pytest
from superposition_harness.kernels import top_k_rows


def reference_top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Sort each row by (-value, index), keep k, return the indices in increasing order."""
    out = np.empty((values.shape[0], k), dtype=np.int64)
    for b, row in enumerate(values):
        order = np.lexsort((np.arange(row.size), -row.astype(np.float64)))
        out[b] = np.sort(order[:k])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width, k", [(1, 1), (2, 1), (10, 3), (10, 10), (257, 16), (1000, 1),
                                      (1000, 999)])
def test_matches_reference_on_random_rows(dtype, width, k):
    """Continuous random rows: the same index sets as the sorting reference."""
    values = np.random.default_rng(width * 31 + k).standard_normal((12, width)).astype(dtype)
    result = top_k_rows(values, k)
    assert result.shape == (12, k) and result.dtype == np.int64
    assert np.array_equal(result, reference_top_k(values, k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", ["random", "ties", "rising", "falling", "nan", "infinite", "few"])
@pytest.mark.parametrize("k", [1, 3, 16])
def test_long_rows_are_selected_in_one_pass_like_the_whole_row(dtype, shape, k):
    """Rows at least 16k long go through a buffer of candidates cut back whenever it
    fills: rising rows cut it at every fill, ties and NaN and infinities cross its
    cuts; the sets are the reference's, ties to the lower index."""
    width = 16 * k + 3000
    rng = np.random.default_rng(k * 7 + len(shape))
    values = {
        "random": rng.standard_normal((6, width)),
        "ties": rng.integers(0, 3, size=(6, width)).astype(float),
        "rising": np.tile(np.arange(width, dtype=float), (6, 1)),
        "falling": np.tile(np.arange(width, 0, -1, dtype=float), (6, 1)),
        "nan": np.where(rng.random((6, width)) < 0.3, np.nan, rng.integers(0, 4, size=(6, width))),
        "infinite": np.where(rng.random((6, width)) < 0.5, -np.inf, rng.integers(0, 2, size=(6, width))),
        "few": np.where(np.arange(width) % 997 == 5, 1.0, np.nan) * np.ones((6, 1)),
    }[shape].astype(dtype)
    values[1] = -0.0
    values[2, ::2] = 0.0
    result = top_k_rows(values, k)
    finite = ~np.isnan(values)
    for b in range(6):
        row = np.where(finite[b], values[b], -np.inf)
        order = np.lexsort((np.arange(width), -row.astype(np.float64)))
        want = np.sort(order[:min(k, int(finite[b].sum()))])
        got = result[b][result[b] >= 0]
        assert np.array_equal(got, want), (shape, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("levels, width, k", [(2, 50, 7), (3, 64, 20), (5, 300, 33), (1, 40, 5),
                                              (4, 1000, 500)])
def test_ties_go_to_the_lower_index(dtype, levels, width, k):
    """Integer-valued rows with many exact ties: ties at the cut go to the lower index."""
    rng = np.random.default_rng(levels * 1000 + width + k)
    values = rng.integers(0, levels, size=(40, width)).astype(dtype)
    result = top_k_rows(values, k)
    assert np.array_equal(result, reference_top_k(values, k))


def test_ties_explicit_example():
    """[1, 3, 3, 2, 3] with k = 2 keeps the first two 3s; with k = 4 all 3s and the 2."""
    row = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert top_k_rows(row, 2).tolist() == [[1, 2]]
    assert top_k_rows(row, 3).tolist() == [[1, 2, 4]]
    assert top_k_rows(row, 4).tolist() == [[1, 2, 3, 4]]
    assert top_k_rows(np.zeros((1, 6)), 3).tolist() == [[0, 1, 2]]


def test_signed_zeros_and_infinities():
    """-0.0 ties with 0.0 (lower index wins) and infinities order correctly."""
    row = np.array([[-0.0, -np.inf, 0.0, np.inf, -1.0, 0.0]])
    assert top_k_rows(row, 1).tolist() == [[3]]
    assert top_k_rows(row, 2).tolist() == [[0, 3]]
    assert top_k_rows(row, 3).tolist() == [[0, 2, 3]]
    assert top_k_rows(row, 6).tolist() == [[0, 1, 2, 3, 4, 5]]


def test_output_rows_are_increasing_and_distinct():
    """Every output row is strictly increasing, so its indices are distinct and sorted."""
    values = np.random.default_rng(2).integers(-3, 3, size=(30, 200)).astype(np.float32)
    result = top_k_rows(values, 50)
    assert np.all(np.diff(result, axis=1) > 0)
    assert result.min() >= 0 and result.max() < 200


def test_selected_values_dominate_the_rest():
    """min over the selected entries >= max over the others, on every row."""
    values = np.random.default_rng(3).standard_normal((25, 300))
    result = top_k_rows(values, 40)
    for row, chosen in zip(values, result, strict=True):
        mask = np.zeros(row.size, dtype=bool)
        mask[chosen] = True
        assert row[mask].min() >= row[~mask].max()


def test_rows_are_independent_of_the_batch():
    """A row's result does not depend on the other rows in the batch."""
    values = np.random.default_rng(4).integers(0, 4, size=(17, 90)).astype(np.float32)
    whole = top_k_rows(values, 9)
    assert np.array_equal(whole, np.vstack([top_k_rows(row[None], 9) for row in values]))


def test_non_contiguous_and_integer_inputs():
    """A strided view and an integer array give the results of their float copies."""
    base = np.random.default_rng(5).integers(-5, 5, size=(10, 120))
    view = base.astype(np.float32)[:, ::2]
    assert np.array_equal(top_k_rows(view, 6), reference_top_k(np.ascontiguousarray(view), 6))
    assert np.array_equal(top_k_rows(base, 6), reference_top_k(base.astype(np.float64), 6))


def test_empty_batch():
    """No rows in gives no rows out."""
    assert top_k_rows(np.zeros((0, 8), dtype=np.float32), 3).shape == (0, 3)


@pytest.mark.parametrize("k", [0, -1, 11, 100])
def test_invalid_k_raises(k):
    """k outside [1, width] raises ValueError."""
    with pytest.raises(ValueError):
        top_k_rows(np.zeros((2, 10), dtype=np.float32), k)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4)])
def test_non_2d_input_raises(shape):
    """Only 2-D arrays are accepted."""
    with pytest.raises(ValueError):
        top_k_rows(np.zeros(shape, dtype=np.float32), 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_rows_do_not_crash(dtype):
    """Rows with NaN give a (B, k) array of valid distinct indices or -1 padding."""
    rng = np.random.default_rng(6)
    values = rng.standard_normal((6, 20)).astype(dtype)
    values[0, 3] = np.nan
    values[1, :] = np.nan
    values[2, :15] = np.nan
    values[3, ::2] = np.nan
    result = top_k_rows(values, 8)
    assert result.shape == (6, 8)
    for indices in result:
        valid = indices[indices >= 0]
        assert np.all(indices[len(valid):] == -1)  # padding only at the end
        assert np.all(valid < 20)
        assert len(set(valid.tolist())) == len(valid)
    # Rows without NaN are unaffected.
    assert np.array_equal(result[4:], reference_top_k(values[4:], 8))


# ------------------------------------------------------------- sign bits (Rademacher)


def _bits_of(words: np.ndarray, count: int) -> np.ndarray:
    return np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little")[:count]


@pytest.mark.parametrize("stride, width, rows", [(64, 64, 64), (128, 100, 64), (256, 256, 7),
                                                 (4096, 4096, 1), (192, 130, 33)])
def test_pack_signs_stores_each_codewords_bits(stride, width, rows):
    """Bit r·stride + c of the raw words becomes bit r of word ``word`` of codeword c."""
    from superposition_harness.kernels import pack_signs
    rng = np.random.default_rng(stride + width + rows)
    words = rng.integers(0, 2**64, size=stride, dtype=np.uint64)
    packed = np.zeros((width, 3), dtype=np.uint64)
    pack_signs(words, packed, 1, rows, stride)
    matrix = _bits_of(words, 64 * stride).reshape(64, stride)
    for c in range(width):
        expected = np.zeros(64, dtype=np.uint8)
        expected[:rows] = matrix[:rows, c]
        assert np.array_equal(_bits_of(packed[c, 1:2], 64), expected)
    assert not packed[:, [0, 2]].any()


def test_pack_signs_needs_whole_words():
    from superposition_harness.kernels import pack_signs
    with pytest.raises(ValueError, match="multiple of 64"):
        pack_signs(np.zeros(100, np.uint64), np.zeros((100, 1), np.uint64), 0, 64, 100)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 63, 64, 65, 200])
def test_unpack_codewords_gives_minus_one_for_set_bits(dtype, d):
    from superposition_harness.kernels import unpack_codewords
    rng = np.random.default_rng(d)
    words = (d + 63) // 64
    packed = rng.integers(0, 2**64, size=(9, words), dtype=np.uint64)
    out = unpack_codewords(packed, d, np.empty((9, d), dtype=dtype))
    for c in range(9):
        bits = _bits_of(packed[c], d)
        assert np.array_equal(out[c], np.where(bits == 1, -1.0, 1.0).astype(dtype))


@pytest.mark.parametrize(("k", "d"), [(1, 1), (3, 64), (5, 100), (64, 129)])
def test_sign_sums_add_up_the_unpacked_codewords(k, d):
    """Sums of k codewords' signs counted on their bits are the sums of the unpacked rows,
    whatever the bits past d hold."""
    from superposition_harness.kernels import sign_sums, unpack_codewords
    rng = np.random.default_rng(k * 1000 + d)
    words = (d + 63) // 64
    packed = rng.integers(0, 2**64, size=(4 * k, words), dtype=np.uint64)
    rows = unpack_codewords(packed, d, np.empty((4 * k, d), dtype=np.float64))
    assert np.array_equal(sign_sums(packed, k, d), rows.reshape(4, k, d).sum(axis=1))


def test_sign_sums_refuse_rows_that_are_not_whole_sets():
    from superposition_harness.kernels import sign_sums
    with pytest.raises(ValueError, match="B·k"):
        sign_sums(np.zeros((5, 2), dtype=np.uint64), 2, 100)
    with pytest.raises(ValueError, match="B·k"):
        sign_sums(np.zeros((4, 1), dtype=np.uint64), 2, 100)


#: Pick counts for every path of the counts: groups of eight picks, then of four, then
#: single ones, each with and without the others.
PICK_COUNTS = [1, 4, 7, 15, 16, 21, 24, 29, 33]


@pytest.mark.parametrize("d", [1, 64, 100, 129, 300])
@pytest.mark.parametrize("batch", PICK_COUNTS)
def test_sign_products_are_exact_inner_products_over_d(d, batch):
    """(d − 2·popcount(a XOR b)) / d equals the ±1 inner product over d, rounded once,
    with the picks counted eight, four and one at a time."""
    from superposition_harness.kernels import sign_products, unpack_codewords
    rng = np.random.default_rng(d + 7)
    words = (d + 63) // 64
    mask = np.array([(1 << min(64, d - 64 * t)) - 1 if d - 64 * t < 64 else 2**64 - 1
                     for t in range(words)], dtype=np.uint64)
    packed = rng.integers(0, 2**64, size=(301, words), dtype=np.uint64) & mask
    chosen = np.resize([5, 0, 300, 5], batch)
    chosen[4:] = rng.integers(0, 301, size=max(0, batch - 4))
    out = np.full((batch, 311), np.nan, dtype=np.float32)
    sign_products(packed, np.ascontiguousarray(packed[chosen].T), d, out, 10)
    signs = unpack_codewords(packed, d, np.empty((301, d)))
    expected = (signs[chosen] @ signs.T).astype(np.int64)
    assert np.array_equal(out[:, 10:], (expected / d).astype(np.float32))
    assert np.all(np.isnan(out[:, :10]))
    assert out[0, 15] == 1.0 and (batch == 1 or out[1, 10] == 1.0)


def test_sign_products_refuse_picks_of_another_length():
    """The kernels read the picks without checking an index: picks with fewer (or more)
    words than the codewords are refused before them."""
    from superposition_harness.kernels import sign_products, subtract_sign_products
    packed = np.zeros((10, 3), dtype=np.uint64)
    for picks in (np.zeros((2, 4), dtype=np.uint64), np.zeros((4, 4), dtype=np.uint64), np.zeros(3)):
        with pytest.raises(ValueError, match="words"):
            sign_products(packed, picks, 150, np.empty((4, 10), dtype=np.float32), 0)
        with pytest.raises(ValueError, match="words"):
            subtract_sign_products(packed, picks, 150, np.zeros((4, 10)))


@pytest.mark.parametrize("width", [1, 127, 128, 129, 3 * 128 + 5])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("extra", [0, 16])
def test_subtract_sign_products_is_sign_products_then_subtract_and_pick(width, threads, extra):
    """The fused greedy step equals its two parts bit for bit: updates, and picks with the
    first of ties inside a tile of codewords and across tiles, NaN never picked, on one
    thread or two."""
    import numba
    from superposition_harness.kernels import sign_products, subtract_and_pick, subtract_sign_products
    d = 70
    rng = np.random.default_rng(width)
    packed = rng.integers(0, 2**64, size=(width, 2), dtype=np.uint64)
    packed[:, 1] &= np.uint64((1 << 6) - 1)
    packed[width // 2:] = packed[0]  # equal codewords: exact ties between tiles
    # 5 or 21 picks: groups of eight, of four and single ones
    chosen = [0, width - 1, width // 3, 0, 0, *rng.integers(0, width, size=extra)]
    picks = np.ascontiguousarray(packed[chosen].T)
    correlations = np.round(rng.standard_normal((len(chosen), width)), 1)
    correlations[2] = 1.0  # every entry ties unless the Gram row breaks it
    correlations[3, width // 2] = np.nan
    correlations[4] = -np.inf
    gram = np.empty((len(chosen), width), dtype=np.float32)
    sign_products(packed, picks, d, gram, 0)
    expected = correlations.copy()
    expected_picks = subtract_and_pick(expected, gram)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        picked = subtract_sign_products(packed, picks, d, correlations)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(correlations, expected)
    np.testing.assert_array_equal(picked, expected_picks)
    assert picked[4] == 0


def test_scale_rows_into_divides_or_multiplies_and_rounds_once():
    from superposition_harness.kernels import scale_rows_into
    rng = np.random.default_rng(3)
    source = rng.integers(-5000, 5000, size=(3, 50)).astype(np.float32)
    out = np.zeros((5, 60), dtype=np.float32)
    scale_rows_into(source, np.array([345.0, -0.125 / 3, 7.0]), out, np.array([4, 0, 2]), 7)
    expected = np.stack([source[0].astype(np.float64) / 345, source[1].astype(np.float64) * (0.125 / 3),
                         source[2].astype(np.float64) / 7]).astype(np.float32)
    assert np.array_equal(out[[4, 0, 2], 7:57], expected)
    assert not out[[1, 3]].any() and not out[:, :7].any() and not out[:, 57:].any()


@pytest.mark.parametrize("d", [1, 7, 8, 63, 64, 65, 200, 600])
@pytest.mark.parametrize("rows", [1, 2, 7, 8, 9, 17])
@pytest.mark.parametrize("width", [1, 100, 2 * 8192 + 3])
def test_lattice_products_are_the_float32_products_of_the_unpacked_signs(d, rows, width):
    """Counted by table look-up on the bits, whatever the bits past d hold: the same
    float32 numbers as the product of the unpacked signs, for any number of rows (groups
    of eight and a part of one), codewords (tasks of LOOKUP_CHUNK and a part of one) and
    words (copied out LOOKUP_WORDS at a time, and a part)."""
    from superposition_harness.kernels import LOOKUP_CHUNK, LOOKUP_WORDS, lattice_products, unpack_codewords
    assert width > 2 * LOOKUP_CHUNK or width < 200
    assert 64 * LOOKUP_WORDS < 600 and 600 % (64 * LOOKUP_WORDS) > 0
    rng = np.random.default_rng(d * 100 + rows)
    words = (d + 63) // 64
    packed = rng.integers(0, 2**64, size=(width, words), dtype=np.uint64)
    integers = rng.integers(-300, 301, size=(rows, d)).astype(np.float32)
    integers[0, : min(d, 3)] = [-256, 0, 255][: min(d, 3)]
    signs = unpack_codewords(packed, d, np.empty((width, d), dtype=np.float32))
    assert np.array_equal(lattice_products(packed, integers, d), integers @ signs.T)


def test_lattice_products_of_large_integers_are_exact_and_scaled_as_scale_rows_into():
    """Rows of a power-of-two grid hold integers up to about 2^23 (Σ|m| up to 2^24): the
    sums are exact, and factors divide or multiply them as :func:`scale_rows_into` does."""
    from superposition_harness.kernels import lattice_products, scale_rows_into, unpack_codewords
    rng = np.random.default_rng(11)
    d, width = 130, 500
    packed = rng.integers(0, 2**64, size=(width, 3), dtype=np.uint64)
    integers = np.zeros((3, d))
    integers[0, :2] = [2**23, -(2**23)]  # Σ|m| = 2^24: every sum still exact
    integers[1] = rng.integers(-(2**17), 2**17, size=d)
    integers[2] = rng.integers(-3, 4, size=d)
    signs = unpack_codewords(packed, d, np.empty((width, d)))
    exact = (integers @ signs.T).astype(np.float32)  # float64 sums of integers: exact
    assert np.abs(exact).max() > 2**22
    assert np.array_equal(lattice_products(packed, integers, d), exact)
    factors = np.array([np.sqrt(130.0) ** 2, -(2.0**-20), 7.0])
    expected = np.zeros((3, width), dtype=np.float32)
    scale_rows_into(exact, factors, expected, np.arange(3), 0)
    assert np.array_equal(lattice_products(packed, integers, d, factors), expected)


def test_lattice_products_refuse_what_they_cannot_count_exactly():
    from superposition_harness.kernels import LOOKUP_MAX_L1, lattice_products
    packed = np.zeros((4, 2), dtype=np.uint64)
    with pytest.raises(ValueError, match="do not fit"):
        lattice_products(packed, np.zeros((2, 129)), 129)
    with pytest.raises(ValueError, match="do not fit"):
        lattice_products(packed, np.zeros((2, 100)), 101)
    too_large = np.zeros((1, 100))
    too_large[0, :2] = [LOOKUP_MAX_L1, 1]
    with pytest.raises(ValueError, match="exceeds"):
        lattice_products(packed, too_large, 100)
    wrapping = np.zeros((1, 100), dtype=np.int64)
    wrapping[0, :4] = 2**62  # an int64 sum of these wraps around to 0
    with pytest.raises(ValueError, match="exceeds"):
        lattice_products(packed, wrapping, 100)
    with pytest.raises(ValueError, match="one a row"):
        lattice_products(packed, np.zeros((3, 100)), 100, np.ones(1))


@pytest.mark.parametrize("d", [1, 63, 65, 600])
@pytest.mark.parametrize("rows", [1, 8, 9, 17])
@pytest.mark.parametrize("width", [1, 100, 2 * (1 << 15) + 70])
def test_lattice_syntheses_are_the_integer_sums_over_the_codewords(d, rows, width):
    """Counted by table look-up along the codewords, whatever the bits past d hold: the
    exact sums ``integers @ S`` for any number of rows (groups of eight and a part of one),
    codewords (64 at a time and a part; tasks of SYNTHESIS_CHUNK and a part) and d."""
    from superposition_harness.kernels import SYNTHESIS_CHUNK, lattice_syntheses, unpack_codewords
    assert width > 2 * SYNTHESIS_CHUNK or width <= 100
    rng = np.random.default_rng(d * 100 + rows + width)
    words = (d + 63) // 64
    packed = rng.integers(0, 2**64, size=(width, words), dtype=np.uint64)
    integers = rng.integers(-300, 301, size=(rows, width)).astype(np.float32)
    integers[0, : min(width, 3)] = [-256, 0, 255][: min(width, 3)]
    signs = unpack_codewords(packed, d, np.empty((width, d))).astype(np.int64)
    counted = lattice_syntheses(packed, integers, d)
    assert counted.dtype == np.int64 and counted.shape == (rows, d)
    assert np.array_equal(counted, integers.astype(np.int64) @ signs)


def test_lattice_syntheses_of_integers_up_to_the_limit_are_exact():
    """A row's Σ|m| may reach LOOKUP_MAX_L1 (2^31 − 1), and its sums stay exact: a lane
    holds at most twice that. Integers come in any numeric type."""
    from superposition_harness.kernels import LOOKUP_MAX_L1, lattice_syntheses, unpack_codewords
    rng = np.random.default_rng(12)
    d, width = 70, 300
    packed = rng.integers(0, 2**64, size=(width, 2), dtype=np.uint64)
    integers = np.zeros((4, width), dtype=np.int64)
    integers[0, 5] = LOOKUP_MAX_L1
    integers[1, :2] = [2**30, -(2**30 - 1)]
    integers[2] = rng.integers(-(2**20), 2**20, size=width)
    integers[3, ::7] = -1
    signs = unpack_codewords(packed, d, np.empty((width, d))).astype(np.int64)
    exact = integers @ signs
    for kind in (np.int64, np.float64, np.int32):
        assert np.array_equal(lattice_syntheses(packed, integers.astype(kind), d), exact)
    small = integers[2:].astype(np.float32)
    assert np.array_equal(lattice_syntheses(packed, small, d), exact[2:])


def test_lattice_syntheses_refuse_what_they_cannot_count_exactly():
    from superposition_harness.kernels import LOOKUP_MAX_L1, lattice_syntheses
    packed = np.zeros((100, 2), dtype=np.uint64)
    with pytest.raises(ValueError, match="do not fit"):
        lattice_syntheses(packed, np.zeros((2, 99)), 100)
    with pytest.raises(ValueError, match="do not fit"):
        lattice_syntheses(packed, np.zeros((2, 100)), 129)
    too_large = np.zeros((2, 100))
    too_large[1, :2] = [LOOKUP_MAX_L1, 1]
    with pytest.raises(ValueError, match="exceeds"):
        lattice_syntheses(packed, too_large, 100)
    wrapping = np.zeros((1, 100), dtype=np.int64)
    wrapping[0, :4] = 2**62  # an int64 sum of these wraps around to 0
    with pytest.raises(ValueError, match="exceeds"):
        lattice_syntheses(packed, wrapping, 100)
    for junk in (0.5, np.nan, np.inf):
        row = np.zeros((1, 100))
        row[0, 3] = junk
        with pytest.raises(ValueError, match="fraction|exceeds"):
            lattice_syntheses(packed, row, 100)
    for kind in (np.complex128, np.longdouble):
        if np.dtype(kind).itemsize > 8 or np.dtype(kind).kind == "c":
            with pytest.raises(ValueError, match="real integers"):
                lattice_syntheses(packed, np.zeros((1, 100), dtype=kind), 100)


def test_signed_sums_add_signed_codewords_in_order_and_refuse_bad_bounds():
    from superposition_harness.kernels import signed_sums, unpack_codewords
    rng = np.random.default_rng(3)
    d, terms = 130, 9
    packed = rng.integers(0, 2**64, size=(terms, 3), dtype=np.uint64)
    values = rng.normal(size=terms) * np.logspace(-8, 8, terms)
    starts = np.array([0, 1, 4, 9])
    signs = unpack_codewords(packed, d, np.empty((terms, d)))
    expected = np.add.reduceat(signs * values[:, None], starts[:-1], axis=0)
    assert np.array_equal(signed_sums(packed, starts, values, d), expected)
    assert signed_sums(packed[:0], np.array([0]), values[:0], d).shape == (0, d)
    for bad in ([1, 9], [0, 4, 4, 9], [0, 8]):
        with pytest.raises(ValueError, match="starts"):
            signed_sums(packed, np.array(bad), values, d)
    with pytest.raises(ValueError, match="values for"):
        signed_sums(packed, starts, values[:-1], d)
    with pytest.raises(ValueError, match="values for"):
        signed_sums(packed, starts, values, 193)


# ------------------------------------------------- the contract's streams, compiled


@pytest.mark.parametrize(("seed", "key"), [(0, ()), (0, (1, 0, 0, 0)), (7, (1, 5, 3, 250)), (123, (9,)),
                                           (2**40 + 3, (1, 2**33 + 1, 3, 4)), (2**140 + 5, (2, 0)),
                                           (5, (0, 0, 0, 0, 0, 2**32 - 1))])
def test_compiled_streams_are_numpys_word_for_word(seed, key):
    """The entropy the harness assembles, hashed by the compiled SeedSequence, is the key
    of NumPy's ``SeedSequence``; the compiled Philox yields ``Philox.random_raw``'s words."""
    from superposition_harness.kernels import philox_words, seed_sequence_key
    from superposition_harness.problem import stream, stream_entropy
    sequence = np.random.SeedSequence(seed, spawn_key=key)
    want = tuple(int(word) for word in sequence.generate_state(2, np.uint64))
    entropy = stream_entropy(seed, *key)
    padded = np.concatenate([entropy, np.zeros(max(0, 4 - entropy.size), dtype=np.uint32)])
    assert seed_sequence_key(padded) == want
    for count in (1, 3, 4, 5, 4099):
        assert np.array_equal(philox_words(want, count), stream(seed, *key).random_raw(count))


@pytest.mark.parametrize(("d", "n", "width"), [(1, 200, 64), (63, 4096, 4096), (64, 300, 128),
                                               (65, 1000, 192), (200, 9000, 4096), (512, 300, 128),
                                               (600, 5000, 256), (1100, 700, 4096)])
def test_sign_blocks_made_in_parallel_are_the_streams_bits(d, n, width):
    """Blocks made by the compiled kernel, all at once, equal those made stream by stream
    from NumPy's generators, rows past d cleared: one cache line of words or several,
    the last one whole or not."""
    from superposition_harness.dictionary import RademacherDictionary
    from superposition_harness.kernels import make_sign_blocks
    from superposition_harness.problem import STREAM_DICTIONARY, stream_entropy
    reference = RademacherDictionary(d, n, seed=11, draw=2**33 + 5, block_width=width, cache_bytes=0)
    out = np.zeros((n, reference.words), dtype=np.uint64)
    blocks = np.arange(reference.n_blocks)[::-1]
    make_sign_blocks(stream_entropy(11, STREAM_DICTIONARY, 2**33 + 5), blocks, d, width, out)
    for block in range(reference.n_blocks):
        start, stop = reference.block_range(block)
        assert np.array_equal(out[start:stop], reference._make_packed(block))
    with pytest.raises(ValueError, match="multiple of 64"):
        make_sign_blocks(stream_entropy(11, STREAM_DICTIONARY, 0), blocks, d, width + 1, out)


# ------------------------------------------------- serial and parallel compilations


def test_each_serial_and_parallel_kernel_has_a_cache_entry_of_its_own():
    """numba's disk cache knows a function by module, name and line, not by its parallel
    flag: the two compilations of one body must carry names of their own, or the parallel
    kernel would load the serial one's code and run on one thread."""
    from superposition_harness import kernels
    pairs = [(kernels._top_k_rows_serial, kernels._top_k_rows_parallel),
             (kernels._subtract_and_pick_serial, kernels._subtract_and_pick_parallel),
             (kernels._integer_rows_serial, kernels._integer_rows_parallel)]
    for serial, parallel in pairs:
        assert not serial.targetoptions.get("parallel") and parallel.targetoptions.get("parallel")
        assert serial._cache._cache_file._index_name != parallel._cache._cache_file._index_name


def test_the_parallel_kernel_never_loads_the_serial_ones_cached_code(tmp_path):
    """In a fresh cache: one process compiles the serial kernel; the next must compile the
    parallel one afresh (a cache hit there would be the serial code), and a third loads it."""
    import os
    import subprocess
    import sys
    script = """
import sys
import numpy as np
from superposition_harness import kernels
kernel = getattr(kernels, "_integer_rows_" + sys.argv[1])
x = np.ones((2, 8), dtype=np.float32)
kernel(x, 0.25, 8, np.zeros(x.shape, np.float32), np.zeros(2), np.zeros(2), True)
print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
"""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def hits_and_misses(which: str) -> str:
        done = subprocess.run([sys.executable, "-c", script, which], env=environment, capture_output=True,
                              text=True, check=True)
        return done.stdout.split()

    assert hits_and_misses("serial") == ["0", "1"]
    assert hits_and_misses("parallel") == ["0", "1"]
    assert hits_and_misses("parallel") == ["1", "0"]
