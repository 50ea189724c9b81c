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


@pytest.mark.parametrize("d", [1, 64, 100, 129])
def test_sign_products_are_exact_inner_products_over_d(d):
    """(d − 2·popcount(a XOR b)) / d equals the ±1 inner product over d, rounded once."""
    from superposition_harness.kernels import sign_products, unpack_codewords
    rng = np.random.default_rng(d + 7)
    words = (d + 63) // 64
    mask = np.array([(1 << min(64, d - 64 * t)) - 1 if d - 64 * t < 64 else 2**64 - 1
                     for t in range(words)], dtype=np.uint64)
    packed = rng.integers(0, 2**64, size=(300, words), dtype=np.uint64) & mask
    picks = packed[[5, 0, 299, 5]]
    out = np.full((4, 310), np.nan, dtype=np.float32)
    sign_products(packed, np.ascontiguousarray(picks.T), d, out, 10)
    signs = unpack_codewords(packed, d, np.empty((300, d)))
    expected = (signs[[5, 0, 299, 5]] @ signs.T).astype(np.int64)
    assert np.array_equal(out[:, 10:], (expected / d).astype(np.float32))
    assert np.all(np.isnan(out[:, :10]))
    assert np.all(out[0, 15] == 1.0) and np.all(out[1, 10] == 1.0)


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
