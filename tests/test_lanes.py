"""Four uint64 lanes as one value in compiled code (harness/lanes.py)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError
from superposition_harness.lanes import (
    lane,
    lanes_add,
    lanes_load,
    lanes_popcount,
    lanes_splat,
    lanes_store,
    lanes_xor,
    lanes_zero,
)


@njit
def _sum_rows(table, rows, out):
    """out[0:4] = Σ_r table[rows[r, 0], rows[r, 1], 0:4], through one ``Lanes`` value."""
    total = lanes_zero()
    for r in range(rows.shape[0]):
        total = lanes_add(total, lanes_load(table, (rows[r, 0], np.uint64(rows[r, 1]))))
    lanes_store(out, (0,), total)
    return lane(total, 0), lane(total, 1), lane(total, 2), lane(total, 3)


@njit
def _accumulate(sums, values):
    """sums[c, 0:4] += values[c, 0:4] for every c, read, added and written as one value."""
    for c in range(sums.shape[0]):
        lanes_store(sums, (c,), lanes_add(lanes_load(sums, (c,)), lanes_load(values, (np.int32(c),))))


def test_loads_adds_stores_and_lanes_equal_numpy_uint64_arithmetic():
    rng = np.random.default_rng(7)
    table = rng.integers(0, 2**64, size=(3, 5, 4), dtype=np.uint64)  # sums wrap modulo 2^64
    rows = rng.integers(0, [3, 5], size=(40, 2)).astype(np.int64)
    out = np.zeros((1, 4), dtype=np.uint64)
    parts = _sum_rows(table, rows, out)
    expected = np.zeros(4, dtype=np.uint64)
    for i, j in rows:
        expected += table[i, j]  # NumPy's uint64 additions wrap the same way
    assert np.array_equal(out[0], expected)
    assert list(parts) == [int(x) for x in expected]


def test_an_empty_sum_is_zero_in_every_lane():
    out = np.full((1, 4), 99, dtype=np.uint64)
    parts = _sum_rows(np.ones((1, 1, 4), dtype=np.uint64), np.empty((0, 2), dtype=np.int64), out)
    assert parts == (0, 0, 0, 0)
    assert np.array_equal(out, np.zeros((1, 4), dtype=np.uint64))


def test_rows_wider_than_four_are_read_and_written_in_their_first_four_entries():
    sums = np.arange(30, dtype=np.uint64).reshape(5, 6)
    values = np.full((5, 4), 2**64 - 1, dtype=np.uint64)  # adding it subtracts one
    before = sums.copy()
    _accumulate(sums, values)
    assert np.array_equal(sums[:, :4], before[:, :4] - np.uint64(1))
    assert np.array_equal(sums[:, 4:], before[:, 4:])


def test_the_four_lanes_are_one_vector_value_in_the_compiled_code():
    sums = np.zeros((2, 4), dtype=np.uint64)
    _accumulate(sums, np.ones((2, 4), dtype=np.uint64))
    (signature,) = _accumulate.signatures
    assert "add <4 x i64>" in _accumulate.inspect_llvm(signature)


@pytest.mark.parametrize("array, index", [
    (np.zeros((2, 4)), (0,)),  # not uint64
    (np.zeros((4, 2), dtype=np.uint64).T, (0,)),  # not C-contiguous
    (np.zeros((2, 2, 4), dtype=np.uint64), (0,)),  # an index missing
    (np.zeros((2, 4), dtype=np.uint64), (0, 1, 0)),  # an index too many
    (np.zeros((2, 4), dtype=np.uint64), (0.0,)),  # not an integer
])
def test_loads_refuse_what_is_not_a_c_contiguous_uint64_row(array, index):
    @njit
    def load(array, index):
        return lane(lanes_load(array, index), 0)

    with pytest.raises(TypingError):
        load(array, index)


@njit
def _window(array, i, j):
    """array[i, j:j + 4] through a load with an index for every axis."""
    value = lanes_load(array, (i, j))
    return lane(value, 0), lane(value, 1), lane(value, 2), lane(value, 3)


def test_a_load_with_an_index_for_every_axis_starts_at_that_entry():
    array = np.arange(24, dtype=np.uint64).reshape(2, 12)
    for i, j in [(0, 0), (0, 5), (1, 8), (1, 3)]:
        assert _window(array, i, j) == tuple(int(x) for x in array[i, j:j + 4])


def test_stores_take_an_index_for_every_axis_but_the_last():
    @njit
    def store_inside_a_row(array):
        lanes_store(array, (0, 1), lanes_zero())

    with pytest.raises(TypingError):
        store_inside_a_row(np.zeros((2, 8), dtype=np.uint64))


@njit
def _xor_counts(words, picks):
    """popcount(words[c] XOR picks[0:4]) for each c, four lanes at a time."""
    out = np.empty((words.shape[0], 4), dtype=np.uint64)
    for c in range(words.shape[0]):
        lanes_store(out, (c,), lanes_popcount(lanes_xor(lanes_splat(words[c]), lanes_load(picks, (0,)))))
    return out


def test_splat_xor_and_popcount_equal_numpy_lane_by_lane():
    rng = np.random.default_rng(11)
    words = np.concatenate([np.array([0, 2**64 - 1, 1 << 63], dtype=np.uint64),
                            rng.integers(0, 2**64, size=61, dtype=np.uint64)])
    picks = np.array([0, 2**64 - 1, 0x5555555555555555, rng.integers(0, 2**64, dtype=np.uint64)],
                     dtype=np.uint64)
    expected = np.array([[bin(int(w) ^ int(p)).count("1") for p in picks] for w in words], dtype=np.uint64)
    assert np.array_equal(_xor_counts(words, picks), expected)
    assert _xor_counts(words[:1], np.zeros(4, dtype=np.uint64)).tolist() == [[0, 0, 0, 0]]
    assert _xor_counts(words[1:2], np.zeros(4, dtype=np.uint64)).tolist() == [[64] * 4]


def test_the_population_count_is_one_vector_operation_in_the_compiled_code():
    _xor_counts(np.zeros(1, dtype=np.uint64), np.zeros(4, dtype=np.uint64))
    (signature,) = _xor_counts.signatures
    assert "@llvm.ctpop.v4i64" in _xor_counts.inspect_llvm(signature)


def test_splat_xor_and_popcount_take_only_their_types():
    @njit
    def splat_a_float():
        return lanes_splat(1.5)

    @njit
    def xor_a_number():
        return lanes_xor(lanes_zero(), 1)

    @njit
    def count_a_number():
        return lanes_popcount(np.uint64(3))

    for function in (splat_a_float, xor_a_number, count_a_number):
        with pytest.raises(TypingError):
            function()


def test_stores_refuse_read_only_arrays():
    @njit
    def store(array):
        lanes_store(array, (0,), lanes_zero())

    frozen = np.frombuffer(bytes(32), dtype=np.uint64).reshape(1, 4)
    with pytest.raises(TypingError):
        store(frozen)
    assert bytes(frozen) == bytes(32)


@pytest.mark.parametrize("position", [4, -1])
def test_a_lane_outside_the_four_is_refused(position):
    @njit
    def outside():
        return lane(lanes_zero(), position)

    with pytest.raises(TypingError):
        outside()


def test_a_lane_is_named_by_a_literal_position():
    @njit
    def by_variable(position):
        return lane(lanes_zero(), position)

    with pytest.raises(TypingError):
        by_variable(1)


def test_additions_and_lanes_take_only_lanes():
    @njit
    def add_a_number():
        return lanes_add(lanes_zero(), 1)

    @njit
    def lane_of_a_number():
        return lane(3, 0)

    @njit
    def store_a_number(array):
        lanes_store(array, (0,), 5)

    for function, args in ((add_a_number, ()), (lane_of_a_number, ()),
                           (store_a_number, (np.zeros((1, 4), dtype=np.uint64),))):
        with pytest.raises(TypingError):
            function(*args)
