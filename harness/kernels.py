"""Compiled kernels for what BLAS cannot express: selections (shared with plugin authors),
and the storage of Rademacher dictionaries as sign bits: packing random bits codeword by
codeword, unpacking them into blocks of ±1, and inner products of signs by XOR and
population count."""

from __future__ import annotations

import math
import types as pytypes
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .lanes import (
    lane,
    lanes_add,
    lanes_load,
    lanes_popcount,
    lanes_splat,
    lanes_store,
    lanes_xor,
    lanes_zero,
)

#: Below this many entries a selection runs on one thread: waking numba's threads costs
#: more than it saves, and they would fight BLAS's threads still spinning from the last
#: product (measured: 8 ms parallel against about 1 ms serial for 256 × 1024).
PARALLEL_ENTRIES = 1 << 22


def serial_and_parallel(body: Callable[..., Any], **flags: Any) -> tuple[Any, Any]:
    """``body`` compiled twice, on one thread and with its ``prange`` loops on numba's
    threads, each under a name of its own. numba's on-disk cache knows a function by
    its module, name and line, not by its ``parallel`` flag: two compilations of one
    function would share a cache entry, and whichever was compiled first would be
    loaded for both (the parallel kernel then ran on one thread)."""
    def variant(suffix: str) -> Callable[..., Any]:
        clone = pytypes.FunctionType(body.__code__, body.__globals__, f"{body.__name__}_{suffix}",
                                     body.__defaults__, body.__closure__)
        clone.__qualname__ = f"{body.__qualname__}_{suffix}"
        clone.__doc__ = body.__doc__
        return clone

    return (njit(cache=True, **flags)(variant("serial")),
            njit(cache=True, parallel=True, **flags)(variant("parallel")))


@njit(cache=True)
def keep_largest(score: np.ndarray, positions: np.ndarray, limit: int) -> int:  # pragma: no cover
    """Keep the entries with the ``limit`` largest scores, ties to the earlier entry.

    ``positions[t]`` belongs to ``score[t]``; the kept positions are moved, in their
    order, to the front of ``positions``, and their number is returned (fewer than
    ``limit`` when scores are NaN). Compiled; callable from other numba kernels.
    """
    found = score.shape[0]
    if found <= limit:
        return found
    cut = -np.partition(-score, limit - 1)[limit - 1]
    above = 0
    for t in range(found):
        if score[t] > cut:
            above += 1
    ties = limit - above
    taken = 0
    for t in range(found):
        value = score[t]
        if value > cut or (value == cut and ties > 0):
            if value <= cut:
                ties -= 1
            positions[taken] = positions[t]
            taken += 1
    return taken


@njit(cache=True, nogil=True)
def _top_k_streaming(row: np.ndarray, k: int, out: np.ndarray) -> int:  # pragma: no cover
    """:func:`keep_largest` of a long row in one pass: entries other than NaN go to a
    buffer of ``4k`` while they beat the ``k``-th largest kept so far (a later tie never
    does: ties go to the earlier entry), and a full buffer is cut back to its ``k`` largest."""
    size = 4 * k
    score = np.empty(size, dtype=row.dtype)
    positions = np.empty(size, dtype=np.int64)
    used = 0
    full = False  # whether k entries have been kept at a cut, so that ``bar`` is set
    bar = row.dtype.type(0)
    for t in range(row.shape[0]):
        value = row[t]
        if value != value or (full and not value > bar):  # NaN is never kept
            continue
        if used == size:
            used = keep_largest(score[:used], positions[:used], k)
            for i in range(used):
                score[i] = row[positions[i]]
            full = used == k
            if full:
                bar = score[0]
                for i in range(1, used):
                    bar = min(bar, score[i])
                if not value > bar:
                    continue
        score[used] = value
        positions[used] = t
        used += 1
    taken = keep_largest(score[:used], positions[:used], k)
    out[:taken] = positions[:taken]
    return taken


def _top_k_rows_body(values: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - compiled
    rows, width = values.shape
    out = np.full((rows, k), -1, dtype=np.int64)
    for b in prange(rows):
        if width >= 16 * k:
            _top_k_streaming(values[b], k, out[b])
        else:
            positions = np.arange(width)
            taken = keep_largest(values[b], positions, k)
            out[b, :taken] = positions[:taken]
    return out


_top_k_rows_serial, _top_k_rows_parallel = serial_and_parallel(_top_k_rows_body)


def top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest entries of each row, as ``(B, k)`` column indices in increasing order.

    Ties at the cut are broken towards the lower index, so the result is a function of
    the row alone. A row with NaN entries may yield fewer than ``k`` indices; the rest
    of its output is ``-1``.
    """
    array = np.ascontiguousarray(values)
    if array.ndim != 2:
        raise ValueError(f"top_k_rows needs a 2-D array, not {array.ndim}-D")
    if not 1 <= k <= array.shape[1]:
        raise ValueError(f"k must lie in [1, {array.shape[1]}], not {k}")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    kernel = _top_k_rows_parallel if array.size >= PARALLEL_ENTRIES else _top_k_rows_serial
    return kernel(array, int(k))


@intrinsic
def _popcount(typingctx, word):  # pragma: no cover - compiled
    """The number of set bits of a uint64, as the processor's population count."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


# ---------------------------------------------------------------- the contract's streams
#
# The dictionary's bits come from NumPy's ``SeedSequence`` and ``Philox`` (docs/contract.md
# §1). Made one stream at a time from Python, creating the streams alone costs more than
# drawing their words (about 85 µs a stream; a draw at N = 2^20, d = 4614 has 18,688).
# The same two algorithms compiled below yield the same words, many streams side by side;
# tests compare them with NumPy's word for word.

_MASK32 = 0xFFFFFFFF
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_POOL = 4
_PHILOX_M0, _PHILOX_M1 = 0xD2E7470EE14C6C93, 0xCA5A826395121157
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B


@intrinsic
def _mulhilo(typingctx, a, b):  # pragma: no cover - compiled
    """The high and low 64 bits of the 128-bit product of two uint64."""
    if a != types.uint64 or b != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        high = builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))
        low = builder.trunc(product, ir.IntType(64))
        return context.make_tuple(builder, signature.return_type, (high, low))

    return types.UniTuple(types.uint64, 2)(types.uint64, types.uint64), codegen


@njit(cache=True, nogil=True)
def _hashmix(value: int, hash_const: np.ndarray) -> int:  # pragma: no cover - compiled
    value = (value ^ hash_const[0]) & _MASK32
    hash_const[0] = (hash_const[0] * _MULT_A) & _MASK32
    value = (value * hash_const[0]) & _MASK32
    return value ^ (value >> 16)


@njit(cache=True, nogil=True)
def _mix(x: int, y: int) -> int:  # pragma: no cover - compiled
    result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _MASK32
    return result ^ (result >> 16)


@njit(cache=True, nogil=True)
def _seed_sequence_key(entropy: np.ndarray) -> tuple[int, int]:  # pragma: no cover - compiled
    """``SeedSequence`` of the assembled entropy words (``entropy``, uint32 values in
    int64, at least the pool's 4), its first two uint64 of ``generate_state``."""
    hash_const = np.array([_INIT_A], dtype=np.int64)
    mixer = np.zeros(_POOL, dtype=np.int64)
    for i in range(_POOL):
        mixer[i] = _hashmix(entropy[i], hash_const)
    for source in range(_POOL):
        for target in range(_POOL):
            if source != target:
                mixer[target] = _mix(mixer[target], _hashmix(mixer[source], hash_const))
    for source in range(_POOL, entropy.shape[0]):
        for target in range(_POOL):
            mixer[target] = _mix(mixer[target], _hashmix(entropy[source], hash_const))
    constant = _INIT_B
    words = np.zeros(4, dtype=np.uint64)
    for i in range(4):
        value = (mixer[i % _POOL] ^ constant) & _MASK32
        constant = (constant * _MULT_B) & _MASK32
        value = (value * constant) & _MASK32
        words[i] = value ^ (value >> 16)
    return words[0] | (words[1] << np.uint64(32)), words[2] | (words[3] << np.uint64(32))


def seed_sequence_key(entropy: np.ndarray) -> tuple[int, int]:
    """The Philox key NumPy makes from ``SeedSequence`` entropy: ``entropy`` is the
    assembled uint32 entropy (``SeedSequence.get_assembled_entropy()``, 4 words or
    more); returns ``generate_state(2, np.uint64)`` as two ints."""
    words = np.asarray(entropy, dtype=np.int64)
    if words.ndim != 1 or words.size < _POOL or words.min() < 0 or words.max() > _MASK32:
        raise ValueError("entropy must be at least 4 uint32 words")
    high, low = _seed_sequence_key(words)
    return int(high), int(low)


@njit(cache=True, nogil=True)
def _philox_words(key0: np.uint64, key1: np.uint64, out: np.ndarray) -> None:  # pragma: no cover
    """The first ``len(out)`` words of ``Philox(key=[key0, key1]).random_raw`` (counter 0):
    Philox4x64-10, four words a counter value, the counter from 1 up."""
    count = out.shape[0]
    m0 = np.uint64(_PHILOX_M0)
    m1 = np.uint64(_PHILOX_M1)
    w0 = np.uint64(_PHILOX_W0)
    w1 = np.uint64(_PHILOX_W1)
    for group in range((count + 3) // 4):
        c0 = np.uint64(group + 1)
        c1 = np.uint64(0)
        c2 = np.uint64(0)
        c3 = np.uint64(0)
        k0 = key0
        k1 = key1
        for round_ in range(10):
            if round_:
                k0 += w0
                k1 += w1
            hi0, lo0 = _mulhilo(m0, c0)  # type: ignore[call-arg,var-annotated]
            hi1, lo1 = _mulhilo(m1, c2)  # type: ignore[call-arg,var-annotated]
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        first = 4 * group
        out[first] = c0
        if first + 1 < count:
            out[first + 1] = c1
        if first + 2 < count:
            out[first + 2] = c2
        if first + 3 < count:
            out[first + 3] = c3


def philox_words(key: tuple[int, int], count: int) -> np.ndarray:
    """``np.random.Philox(key=key).random_raw(count)``, compiled (``count`` < 2^66)."""
    out = np.empty(int(count), dtype=np.uint64)
    _philox_words(np.uint64(key[0]), np.uint64(key[1]), out)
    return out


@njit(inline="always")
def _swap_round(a: np.ndarray, j: int, mask: np.uint64) -> None:  # pragma: no cover - compiled
    """One round of the transposition: the ``j``-bit sub-blocks off the diagonal of every
    ``2j × 2j`` block trade places (``j`` a constant, so each round compiles flat)."""
    for base in range(0, 64, 2 * j):
        for i in range(base, base + j):
            t = ((a[i] >> np.uint64(j)) ^ a[i + j]) & mask
            a[i] ^= t << np.uint64(j)
            a[i + j] ^= t


@njit(cache=True, nogil=True)
def _transpose64(a: np.ndarray) -> None:  # pragma: no cover - compiled
    """Transpose the 64 × 64 bit matrix ``a`` in place: bit ``c`` of ``a[r]`` moves to
    bit ``r`` of ``a[c]`` (recursive block swaps: six rounds of masked exchanges; 1.7
    times faster written round by round than as one loop over the rounds)."""
    _swap_round(a, 32, np.uint64(0x00000000FFFFFFFF))
    _swap_round(a, 16, np.uint64(0x0000FFFF0000FFFF))
    _swap_round(a, 8, np.uint64(0x00FF00FF00FF00FF))
    _swap_round(a, 4, np.uint64(0x0F0F0F0F0F0F0F0F))
    _swap_round(a, 2, np.uint64(0x3333333333333333))
    _swap_round(a, 1, np.uint64(0x5555555555555555))


@njit(cache=True, nogil=True)
def _pack_row_block(words: np.ndarray, packed: np.ndarray, word: int, rows: int,
                    stride: int) -> None:  # pragma: no cover - compiled
    groups = stride // 64
    width = packed.shape[0]
    keep = np.uint64(0xFFFFFFFFFFFFFFFF) if rows == 64 else (np.uint64(1) << np.uint64(rows)) - np.uint64(1)
    tile = np.empty(64, dtype=np.uint64)
    for g in range(groups):
        first = g * 64
        if first >= width:
            break
        for r in range(64):
            tile[r] = words[r * groups + g]
        _transpose64(tile)
        for c in range(min(64, width - first)):
            packed[first + c, word] = tile[c] & keep


#: Words of each codeword that one task of :func:`make_sign_blocks` makes: a 64-byte
#: cache line of the packed array, so each line is written once, whole, instead of a
#: word at a time by eight tasks (each of which would read the line and write it back).
LINE_WORDS = 8


@njit(cache=True, nogil=True, parallel=True)
def _make_sign_blocks(prefix: np.ndarray, blocks: np.ndarray, d: int, block_width: int,
                      out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, words = out.shape
    length = prefix.shape[0]
    lines = (words + LINE_WORDS - 1) // LINE_WORDS
    groups = block_width // 64
    for task in prange(blocks.shape[0] * lines):
        block = blocks[task // lines]
        first_word = (task % lines) * LINE_WORDS
        count = min(LINE_WORDS, words - first_word)
        entropy = np.empty(length + 2, dtype=np.int64)
        entropy[:length] = prefix
        entropy[length + 1] = block
        raw = np.empty((count, block_width), dtype=np.uint64)  # each word's 64 × block_width bits
        keep = np.empty(count, dtype=np.uint64)
        for j in range(count):
            entropy[length] = first_word + j
            key0, key1 = _seed_sequence_key(entropy)
            _philox_words(key0, key1, raw[j])  # type: ignore[arg-type]
            rows = min(64, d - 64 * (first_word + j))
            everything = np.uint64(0xFFFFFFFFFFFFFFFF)
            keep[j] = everything if rows == 64 else (np.uint64(1) << np.uint64(rows)) - np.uint64(1)
        start = block * block_width
        width = min(n, start + block_width) - start
        tile = np.empty(64, dtype=np.uint64)
        line = np.empty((64, LINE_WORDS), dtype=np.uint64)
        for g in range(groups):
            first = g * 64
            if first >= width:
                break
            for j in range(count):
                for r in range(64):
                    tile[r] = raw[j, r * groups + g]
                _transpose64(tile)
                for c in range(64):
                    line[c, j] = tile[c] & keep[j]
            for c in range(min(64, width - first)):
                for j in range(count):
                    out[start + first + c, first_word + j] = line[c, j]


def make_sign_blocks(prefix: np.ndarray, blocks: np.ndarray, d: int, block_width: int,
                     out: np.ndarray) -> None:
    """Make column blocks of a Rademacher dictionary's sign bits in place, in parallel.

    Block ``b``'s rows ``64·w … 64·w + 63`` come from the stream of
    ``SeedSequence(seed, spawn_key=(…, w, b))``: ``prefix`` is the assembled entropy of
    the key without its last two words (``SeedSequence(seed, spawn_key=(…))
    .get_assembled_entropy()``), and each stream's first ``block_width`` Philox words
    hold its 64 × ``block_width`` bits row-major, packed into ``out[b·block_width …]`` as
    :func:`pack_signs` packs them; ``out`` is ``(N, ⌈d/64⌉)`` uint64 and ``block_width``
    a multiple of 64. Word for word what NumPy's streams give.
    """
    if block_width % 64:
        raise ValueError(f"make_sign_blocks needs a block width that is a multiple of 64, not {block_width}")
    words = np.asarray(prefix, dtype=np.int64)
    if words.ndim != 1 or words.size < _POOL - 2 or words.min() < 0 or words.max() > _MASK32:
        raise ValueError("prefix must hold the assembled uint32 entropy words")
    _make_sign_blocks(words, np.ascontiguousarray(blocks, dtype=np.int64), int(d), int(block_width), out)


def pack_signs(words: np.ndarray, packed: np.ndarray, word: int, rows: int, stride: int) -> None:
    """Store one 64-row block of raw sign bits codeword by codeword.

    ``words`` holds the bits of a ``64 × stride`` block row-major (bit ``r·stride + c``,
    bit ``i`` being bit ``i % 64`` of word ``i // 64``); ``packed[c, word]`` receives the
    bits of rows ``0 … rows-1`` of column ``c`` (bit ``r``), the rows past ``rows``
    cleared. ``stride`` must be a multiple of 64.
    """
    if stride % 64:
        raise ValueError(f"pack_signs needs a stride that is a multiple of 64, not {stride}")
    _pack_row_block(np.ascontiguousarray(words, dtype=np.uint64), packed, int(word), int(rows),
                    int(stride))


@njit(cache=True, nogil=True)
def _unpack_sign_bits(packed: np.ndarray, d: int, out: np.ndarray, one: int,
                      top: int) -> None:  # pragma: no cover - compiled
    """Signs written as the bits of floating-point numbers: ``out`` is the float array
    seen as unsigned integers of its width, ``one`` the bits of ``+1.0`` and ``top`` the
    sign bit's place, so a set bit of ``packed`` makes ``one | 1 << top``, which is
    ``−1.0``. Branch-free and the same for every bit, so the compiler vectorises it."""
    kind = out.dtype.type
    ones = kind(one)
    shift = kind(top)
    whole = d // 64
    for c in range(packed.shape[0]):
        for t in range(packed.shape[1]):
            word = packed[c, t]
            base = t * 64
            if t < whole:
                for i in range(64):
                    out[c, base + i] = ones | (kind((word >> np.uint64(i)) & np.uint64(1)) << shift)
            else:
                for i in range(d - base):
                    out[c, base + i] = ones | (kind((word >> np.uint64(i)) & np.uint64(1)) << shift)


def unpack_codewords(packed: np.ndarray, d: int, out: np.ndarray) -> np.ndarray:
    """Signs as numbers: ``out[c, r] = −1`` where bit ``r`` of codeword ``c`` is set, else
    ``+1``, for ``r < d``; ``out`` is float32 or float64 of shape ``(len(packed), d)``.
    Releases the GIL, so worker threads can unpack blocks side by side. Each number's bits
    are made directly, ``+1.0`` with the sign bit set or not (2-3 times faster than
    copying eight float32 signs a byte from a table, measured at d = 19874)."""
    if out.dtype == np.float32:
        _unpack_sign_bits(packed, int(d), out.view(np.uint32), 0x3F800000, 31)
    else:
        _unpack_sign_bits(packed, int(d), out.view(np.uint64), 0x3FF0000000000000, 63)
    return out


#: Codewords per task of the sign-bit kernels: their counts for every pick (uint32, 32 KiB
#: for 64 picks) stay in the first-level cache while they are used.
SIGN_TILE = 128


@njit(inline="always")
def _lanes_into_column(counts: np.ndarray, b: int, i: int, value: Any) -> None:  # pragma: no cover
    """``counts[b:b + 4, i]`` = the four lanes of ``value``."""
    counts[b, i], counts[b + 1, i] = lane(value, 0), lane(value, 1)
    counts[b + 2, i], counts[b + 3, i] = lane(value, 2), lane(value, 3)


@njit(cache=True, nogil=True)
def _sign_counts(packed: np.ndarray, picks: np.ndarray, first: int, last: int,
                 counts: np.ndarray) -> None:  # pragma: no cover - compiled
    """``counts[b, c − first]`` = popcount of ``packed[c] XOR picks[:, b]`` for ``c`` in
    ``[first, last)``, into a ``(B, SIGN_TILE)`` uint32 array: each pick's counts in a row
    of their own, for the pass that reads them.

    Eight picks at a time: each word of a codeword in four lanes (:mod:`.lanes`), XOR-ed
    with two rows of four picks' words and counted, the sums kept in two vectors; then
    four picks at a time, and the rest one at a time. Measured against counting two
    codewords against four picks in eight scalar sums, in the same run at N = 2^16 on
    AVX2: 1.02-1.25 times faster for 4-32 picks of 8, 20 and 72 words."""
    words = packed.shape[1]
    batch = picks.shape[1]
    whole = batch - batch % 8
    fours = batch - batch % 4
    for c in range(first, last):
        i = c - first
        for b in range(0, whole, 8):
            low = lanes_zero()
            high = lanes_zero()
            for t in range(words):
                word = lanes_splat(packed[c, t])
                low = lanes_add(low, lanes_popcount(lanes_xor(word, lanes_load(picks, (t, b)))))
                high = lanes_add(high, lanes_popcount(lanes_xor(word, lanes_load(picks, (t, b + 4)))))
            _lanes_into_column(counts, b, i, low)
            _lanes_into_column(counts, b + 4, i, high)
        for b in range(whole, fours, 4):
            low = lanes_zero()
            for t in range(words):
                word = lanes_splat(packed[c, t])
                low = lanes_add(low, lanes_popcount(lanes_xor(word, lanes_load(picks, (t, b)))))
            _lanes_into_column(counts, b, i, low)
        for b in range(fours, batch):
            total = np.uint64(0)
            for t in range(words):
                total += _popcount(packed[c, t] ^ picks[t, b])  # type: ignore[call-arg]
            counts[b, i] = total


@njit(cache=True, nogil=True, parallel=True)
def _sign_products(packed: np.ndarray, picks: np.ndarray, table: np.ndarray,
                   out: np.ndarray, start: int) -> None:  # pragma: no cover - compiled
    width = packed.shape[0]
    batch = picks.shape[1]
    for part in prange((width + SIGN_TILE - 1) // SIGN_TILE):
        first = part * SIGN_TILE
        last = min(width, first + SIGN_TILE)
        counts = np.empty((batch, SIGN_TILE), dtype=np.uint32)
        _sign_counts(packed, picks, first, last, counts)
        for b in range(batch):
            for c in range(first, last):
                out[b, start + c] = table[counts[b, c - first]]


def _sign_table(d: int, dtype: type | np.dtype) -> np.ndarray:
    """``(d − 2c) / d`` for every count ``c`` of differing signs, rounded once to ``dtype``."""
    return ((d - 2 * np.arange(d + 1, dtype=np.float64)) / d).astype(dtype)


@njit(cache=True, nogil=True, parallel=True)
def _sign_sums(packed: np.ndarray, k: int, d: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    words = packed.shape[1]
    for b in prange(out.shape[0]):
        counts = np.zeros(words * 64, dtype=np.int64)
        for j in range(b * k, (b + 1) * k):
            for t in range(words):
                word = packed[j, t]
                base = t * 64
                for bit in range(64):
                    counts[base + bit] += np.int64((word >> np.uint64(bit)) & np.uint64(1))
        for r in range(d):
            out[b, r] = np.float64(k - 2 * counts[r])


def sign_sums(packed: np.ndarray, k: int, d: int) -> np.ndarray:
    """Sums of signs, ``k`` codewords at a time: ``out[b, r] = Σ_j s_{bk+j, r}`` where
    ``s = −1`` for a set bit of ``packed`` (``(B·k, ⌈d/64⌉)`` uint64, rows as
    :func:`pack_signs` stores them), else ``+1``; ``(B, d)`` float64, exact integers, the
    same numbers as unpacking the ``B·k`` codewords and adding them up."""
    packed = np.ascontiguousarray(packed, dtype=np.uint64)
    if k < 1 or packed.ndim != 2 or packed.shape[0] % k or packed.shape[1] * 64 < d:
        raise ValueError(f"sign_sums needs (B·k, ⌈d/64⌉) words for k = {k}, d = {d}, not {packed.shape}")
    out = np.empty((packed.shape[0] // k, int(d)), dtype=np.float64)
    _sign_sums(packed, int(k), int(d), out)
    return out


def _picks_of(packed: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """``picks`` as the kernels read them: C-contiguous uint64 ``(words, B)``, one row for
    each word of ``packed``'s codewords (the kernels check no index)."""
    picks = np.ascontiguousarray(picks, dtype=np.uint64)
    if packed.ndim != 2 or picks.ndim != 2 or picks.shape[0] != packed.shape[1]:
        raise ValueError(f"picks must be (words, B) for codewords of {packed.shape[-1]} words, "
                         f"not {picks.shape}")
    return picks


def sign_products(packed: np.ndarray, picks: np.ndarray, d: int, out: np.ndarray, start: int) -> None:
    """Normalised inner products of sign vectors, by XOR and population count.

    ``packed`` ``(width, words)`` and ``picks`` ``(words, B)`` (transposed) hold sign
    bits as :func:`pack_signs` stores them, rows past ``d`` cleared; ``out[b, start + c]``
    receives ``(d − 2·popcount(packed[c] XOR picks[:, b])) / d``: the exact inner product
    of the two ±1 vectors over ``d``, rounded once.
    """
    table = _sign_table(d, out.dtype)
    picks = _picks_of(packed, picks)
    _sign_products(packed, picks, table, out, int(start))


#: Columns per chunk of :func:`subtract_and_pick`: a chunk's maximum is found without a
#: branch (vectorised), and only a chunk that beats the best so far is scanned for it.
CHUNK = 1024


def _subtract_and_pick_body(correlations: np.ndarray, gram: np.ndarray,
                            best: np.ndarray) -> None:  # pragma: no cover - compiled
    rows, width = correlations.shape
    for b in prange(rows):
        top = -np.inf
        pick = 0
        for first in range(0, width, CHUNK):
            last = min(width, first + CHUNK)
            high = -np.inf
            for i in range(first, last):
                value = correlations[b, i] - gram[b, i]
                correlations[b, i] = value
                high = max(high, value)
            if high > top:  # the first of ties: a later chunk must be strictly higher
                top = high
                for i in range(first, last):
                    if correlations[b, i] == high:
                        pick = i
                        break
        best[b] = pick


_subtract_and_pick_serial, _subtract_and_pick_parallel = serial_and_parallel(
    _subtract_and_pick_body, nogil=True)


def subtract_and_pick(correlations: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``correlations −= gram`` in place (``gram`` widened to ``correlations``' type), and
    each row's largest entry after it, in one pass: ``(B,)`` int64 column indices, the
    first of ties, NaN never picked (0 where no entry exceeds −∞)."""
    best = np.empty(correlations.shape[0], dtype=np.int64)
    step = _subtract_and_pick_parallel if correlations.size >= PARALLEL_ENTRIES else _subtract_and_pick_serial
    step(correlations, gram, best)
    return best


@njit(cache=True, nogil=True, parallel=True)
def _subtract_sign_products(packed: np.ndarray, picks: np.ndarray, table: np.ndarray,
                            correlations: np.ndarray, best: np.ndarray) -> None:  # pragma: no cover
    width = packed.shape[0]
    batch = picks.shape[1]
    tiles = (width + SIGN_TILE - 1) // SIGN_TILE
    tile_top = np.empty((batch, tiles))
    tile_pick = np.empty((batch, tiles), dtype=np.int64)
    for part in prange(tiles):
        first = part * SIGN_TILE
        last = min(width, first + SIGN_TILE)
        counts = np.empty((batch, SIGN_TILE), dtype=np.uint32)
        _sign_counts(packed, picks, first, last, counts)
        for b in range(batch):
            high = -np.inf
            pick = first
            for c in range(first, last):
                value = correlations[b, c] - table[counts[b, c - first]]
                correlations[b, c] = value
                if value > high:  # the first of ties; NaN never compares higher
                    high = value
                    pick = c
            tile_top[b, part] = high
            tile_pick[b, part] = pick
    for b in range(batch):
        top = -np.inf
        pick = 0
        for part in range(tiles):
            if tile_top[b, part] > top:  # a later tile must be strictly higher
                top = tile_top[b, part]
                pick = tile_pick[b, part]
        best[b] = pick


def subtract_sign_products(packed: np.ndarray, picks: np.ndarray, d: int,
                           correlations: np.ndarray) -> np.ndarray:
    """:func:`sign_products` subtracted from ``correlations`` as they are counted, and each
    row's largest entry after it: ``correlations[b, c] −= (d − 2·popcount(packed[c] XOR
    picks[:, b])) / d`` (that value rounded once to float32, as :func:`sign_products`
    stores it, then widened), in place on a float64 ``(B, width)`` array. Returns the
    picks as :func:`subtract_and_pick` does, with the same ties, in one pass over the
    codewords: what matching pursuit does at each step, without writing the Gram rows."""
    table = _sign_table(d, np.float32).astype(np.float64)
    best = np.empty(correlations.shape[0], dtype=np.int64)
    picks = _picks_of(packed, picks)
    _subtract_sign_products(packed, picks, table, correlations, best)
    return best


#: Rows of a lattice product that share one set of look-up tables (an entry of a table
#: holds their eight sums in four 64-bit words, two 32-bit lanes each); codewords per
#: task of :func:`lattice_products`, and words of each that a task copies out at once
#: (one cache line of each codeword, read once, then each word's column in turn while
#: its table, 64 KiB, is in the second-level cache). Measured at N = 2^18-2^19, d = 4614
#: and 19874 on AVX2: 5-22% faster than a word at a time from the codewords.
LOOKUP_ROWS = 8
LOOKUP_CHUNK = 8192
LOOKUP_WORDS = 8

#: The largest ``Σ|m|`` of a row :func:`lattice_products` takes: a lane then holds at
#: most twice that, and never carries into the next.
LOOKUP_MAX_L1 = (1 << 31) - 1


@njit(inline="always")
def _word_sums(table: np.ndarray, word: np.uint64) -> Any:  # pragma: no cover - compiled
    """The sum (four 64-bit words, two lanes each, as one :class:`lanes.Lanes` value) of
    the entries that the eight bytes of ``word`` index in ``table`` (``(8, 256, 4)``): one
    word's look-ups, kept in a register, for :func:`lattice_products` and
    :func:`lattice_syntheses` alike. Each entry is one 32-byte load and one addition."""
    total = lanes_zero()
    for p in range(8):
        total = lanes_add(total, lanes_load(table, (p, (word >> np.uint64(8 * p)) & np.uint64(255))))
    return total


@njit(cache=True, nogil=True)
def _byte_tables(integers: np.ndarray, d: int, tables: np.ndarray,
                 bias: np.ndarray) -> None:  # pragma: no cover - compiled
    """The tables of up to eight rows of ``integers`` (see :func:`lattice_products`)."""
    sums = np.empty(256, dtype=np.int64)
    tables[:] = 0
    bias[:] = 0
    for w in range(tables.shape[0]):
        for p in range(8):
            first = 64 * w + 8 * p
            for r in range(integers.shape[0]):
                total = 0
                size = 0
                for q in range(min(8, max(0, d - first))):
                    total += integers[r, first + q]
                    size += abs(integers[r, first + q])
                sums[0] = total  # the byte's sum with every sign +1
                for v in range(1, 256):  # v less its lowest set bit q, then m_q's sign turned
                    q = 0
                    while not (v >> q) & 1:
                        q += 1
                    m = integers[r, first + q] if first + q < d else 0
                    sums[v] = sums[v & (v - 1)] - 2 * m
                bias[r] += size  # entries are stored + size: never negative
                shift = np.uint64(32 * (r % 2))
                for v in range(256):
                    tables[w, p, v, r // 2] |= np.uint64(sums[v] + size) << shift


@njit(cache=True, nogil=True, parallel=True)
def _lattice_products(packed: np.ndarray, tables: np.ndarray, bias: np.ndarray, factors: np.ndarray,
                      out: np.ndarray, first_row: int) -> None:  # pragma: no cover - compiled
    width, words = packed.shape
    rows = bias.shape[0]
    for chunk in prange((width + LOOKUP_CHUNK - 1) // LOOKUP_CHUNK):
        first = chunk * LOOKUP_CHUNK
        count = min(width, first + LOOKUP_CHUNK) - first
        sums = np.zeros((count, LOOKUP_ROWS // 2), dtype=np.uint64)
        staged = np.empty((LOOKUP_WORDS, count), dtype=np.uint64)
        for w0 in range(0, words, LOOKUP_WORDS):
            w1 = min(words, w0 + LOOKUP_WORDS)
            for c in range(count):  # one cache line of each codeword, read once
                for w in range(w0, w1):
                    staged[w - w0, c] = packed[first + c, w]
            for w in range(w0, w1):
                table = tables[w]
                column = staged[w - w0]
                for c in range(count):
                    lanes_store(sums, (c,), lanes_add(lanes_load(sums, (c,)), _word_sums(table, column[c])))
        for r in range(rows):
            shift = np.uint64(32 * (r % 2))
            factor = factors[first_row + r]
            target = out[first_row + r]
            for c in range(count):
                field = (sums[c, r // 2] >> shift) & np.uint64(0xFFFFFFFF)
                value = np.float64(np.float32(np.int64(field) - bias[r]))  # as a float32 product holds it
                target[first + c] = np.float32(value / factor if factor > 0.0 else value * -factor)


def lattice_products(packed: np.ndarray, integers: np.ndarray, d: int,
                     factors: np.ndarray | None = None) -> np.ndarray:
    """``integers @ S.T`` for the ±1 codewords ``S`` held as sign bits in ``packed``
    (``(width, words)``, as :func:`pack_signs` stores them; bit set for −1): ``(R, d)``
    integers (in any numeric type) to ``(R, width)`` float32, each sum rounded once to
    float32 (exact while a row's ``Σ|m| ≤ 2^24``), so the same numbers as a float32
    product of the unpacked signs, without unpacking a sign. With ``factors``, row ``r``
    is then divided by ``factors[r]`` when it is positive, multiplied by ``−factors[r]``
    when it is not (in float64, rounded once): what :func:`scale_rows_into` does with a
    float32 product, in the same pass.

    Counted by table look-up: for each byte of a codeword's bits, a table of its 256
    values holds the eight entries' sum ``Σ ±m`` for eight rows at once (two rows to a
    64-bit word, each stored plus the byte's ``Σ|m|``, so a 32-bit lane never goes
    negative nor carries). A codeword then costs ``d/8`` look-ups of four words per
    eight rows, where a float32 product costs ``2d`` flops a row and the unpacking. The
    tables of eight rows, ``words · 64 KiB``, are made and used one group at a time."""
    values = np.asarray(integers)
    if values.ndim != 2 or values.shape[1] != d or packed.shape[1] * 64 < d:
        raise ValueError(f"integers of shape {values.shape} do not fit {packed.shape[1]} words of d = {d}")
    # Σ|m| in float64 (no wrap-around; exact far beyond the limit's 2^31)
    if values.size and np.abs(values.astype(np.float64)).sum(axis=1).max() > LOOKUP_MAX_L1:
        raise ValueError(f"a row's Σ|m| exceeds {LOOKUP_MAX_L1}: its sums could not be counted exactly")
    ints = np.ascontiguousarray(values, dtype=np.int64)
    scale = np.ones(ints.shape[0]) if factors is None else np.ascontiguousarray(factors, dtype=np.float64)
    if scale.shape != (ints.shape[0],):
        raise ValueError(f"{scale.shape} factors for {ints.shape[0]} rows: give one a row")
    out = np.empty((ints.shape[0], packed.shape[0]), dtype=np.float32)
    tables = np.empty((packed.shape[1], 8, 256, LOOKUP_ROWS // 2), dtype=np.uint64)
    for first in range(0, ints.shape[0], LOOKUP_ROWS):
        group = ints[first:first + LOOKUP_ROWS]
        bias = np.empty(group.shape[0], dtype=np.int64)
        _byte_tables(group, int(d), tables, bias)
        _lattice_products(packed, tables, bias, scale, out, first)
    return out


#: Codewords per task of :func:`lattice_syntheses`: each task keeps its own sums, ``d``
#: entries of four words per eight rows, and they are added up at the end (integers, so
#: in any order and by any number of tasks to the same bits).
SYNTHESIS_CHUNK = 1 << 15

@njit(cache=True, nogil=True)
def _codeword_tables(integers: np.ndarray, first_row: int, rows: int, first: int,
                     tables: np.ndarray, bias: np.ndarray) -> None:  # pragma: no cover - compiled
    """The tables of rows ``first_row …`` (up to eight) over codewords ``first … first + 63``
    (see :func:`lattice_syntheses`); ``bias[r]`` gains the codewords' ``Σ|m|``.

    An entry is ``Σ_q (bit q ? |m_q| − m_q : |m_q| + m_q)``, never negative: the sum of
    the byte's eight ``±m`` with the signs its bits give, plus their ``Σ|m|``. The entries
    with bit ``q`` set are those below ``2^q`` plus bit ``q``'s ``−2m`` in each lane, added
    as one signed 64-bit number: both lanes stay in ``[0, 2^32)``, so no lane borrows
    (and each step is one run of contiguous additions, which the compiler vectorises)."""
    width = integers.shape[1]
    delta = np.zeros(4, dtype=np.int64)
    for p in range(8):
        table = tables[p]
        table[0, :] = 0
        for r in range(rows):
            shift = 32 * (r % 2)
            total = 0
            for q in range(8):
                c = first + 8 * p + q
                m = np.int64(integers[first_row + r, c]) if c < width else np.int64(0)
                total += abs(m) + m
                bias[r] += abs(m)
            table[0, r // 2] += np.uint64(total) << np.uint64(shift)
        for q in range(8):
            delta[:] = 0
            c = first + 8 * p + q
            if c < width:
                for r in range(rows):
                    delta[r // 2] += (-2 * np.int64(integers[first_row + r, c])) << (32 * (r % 2))
            half = 1 << q
            for v in range(half):
                for word in range(4):
                    table[half + v, word] = table[v, word] + np.uint64(delta[word])


@njit(cache=True, nogil=True, parallel=True)
def _lattice_syntheses(packed: np.ndarray, integers: np.ndarray, d: int,
                       out: np.ndarray) -> None:  # pragma: no cover - compiled
    width, words = packed.shape
    rows = integers.shape[0]
    groups = (rows + LOOKUP_ROWS - 1) // LOOKUP_ROWS
    codeword_words = (width + 63) // 64
    per_task = SYNTHESIS_CHUNK // 64
    for task in prange(out.shape[0]):
        sums = np.zeros((groups, d, LOOKUP_ROWS // 2), dtype=np.uint64)
        bias = np.zeros(groups * LOOKUP_ROWS, dtype=np.int64)
        tables = np.empty((8, 256, LOOKUP_ROWS // 2), dtype=np.uint64)
        tile = np.empty(64, dtype=np.uint64)
        column = np.empty(words * 64, dtype=np.uint64)  # bit c of column[j]: codeword c's sign j
        for g in range(task * per_task, min(codeword_words, (task + 1) * per_task)):
            first = 64 * g
            for w in range(words):
                for c in range(64):
                    tile[c] = packed[first + c, w] if first + c < width else np.uint64(0)
                _transpose64(tile)
                column[64 * w:64 * w + 64] = tile
            for group in range(groups):
                first_row = group * LOOKUP_ROWS
                _codeword_tables(integers, first_row, min(LOOKUP_ROWS, rows - first_row), first,
                                 tables, bias[first_row:first_row + LOOKUP_ROWS])
                here = sums[group]
                for j in range(d):
                    lanes_store(here, (j,), lanes_add(lanes_load(here, (j,)), _word_sums(tables, column[j])))
        for r in range(rows):
            shift = np.uint64(32 * (r % 2))
            lanes = sums[r // LOOKUP_ROWS, :, (r % LOOKUP_ROWS) // 2]
            for j in range(d):
                out[task, r, j] = np.int64((lanes[j] >> shift) & np.uint64(0xFFFFFFFF)) - bias[r]


@njit(cache=True, nogil=True, parallel=True)
def _l1_norms(values: np.ndarray) -> tuple[float, bool]:  # pragma: no cover - compiled
    """The largest row ``Σ|m|`` of ``values`` (in float64: no wrap-around, and exact far
    beyond ``LOOKUP_MAX_L1``) and whether every entry is an integer, in one pass."""
    norms = np.zeros(values.shape[0])
    whole = np.ones(values.shape[0], dtype=np.bool_)
    for r in prange(values.shape[0]):
        total = 0.0
        for value in values[r]:
            number = np.float64(value)
            total += abs(number)
            if number != np.rint(number):
                whole[r] = False
        norms[r] = total
    return norms.max(), bool(whole.all())


def lattice_syntheses(packed: np.ndarray, integers: np.ndarray, d: int) -> np.ndarray:
    """``integers @ S`` for the ±1 codewords ``S`` held as sign bits in ``packed``
    (``(width, words)``, as :func:`pack_signs` stores them; bit set for −1): ``(R, width)``
    integers (of an integer type, or floats of at most 64 bits that hold integers) to the
    ``(R, d)`` int64 sums ``Σ_c m_c·S[c, j]``, exactly, without unpacking a sign: the
    transpose of :func:`lattice_products`.

    Counted by table look-up along the codewords: the bits of 64 codewords are turned
    into ``d`` words (bit ``c`` of word ``j``: codeword ``c``'s sign ``j``, by 64 × 64
    transposes), and for each byte of those words a table of its 256 values holds the
    eight codewords' ``Σ ±m`` for eight rows at once, two 32-bit lanes to a 64-bit word,
    each stored plus the codewords' ``Σ|m|`` so that it never goes negative; a lane sums
    the entries of all a task's codewords, at most ``2·Σ|m|``, so never carries. A
    dimension then costs ``N/8`` look-ups of four words per eight rows, as a codeword
    does in :func:`lattice_products`; the tables of 64 codewords (64 KiB per eight rows)
    are made once and used ``d`` times."""
    values = np.asarray(integers)
    if values.dtype.kind not in "iufb" or values.dtype.kind == "f" and values.dtype.itemsize > 8:
        raise ValueError(f"lattice_syntheses counts real integers of at most 64 bits, not {values.dtype}")
    if values.ndim != 2 or values.shape[1] != packed.shape[0] or packed.shape[1] * 64 < d:
        raise ValueError(f"integers of shape {values.shape} do not fit {packed.shape[0]} codewords "
                         f"of {packed.shape[1]} words (d = {d})")
    if values.dtype.kind == "b" or values.dtype.kind == "f" and values.dtype.itemsize < 4:
        values = values.astype(np.float64)
    values = np.ascontiguousarray(values)
    if values.size:
        largest, whole = _l1_norms(values)
        if not whole:
            raise ValueError("lattice_syntheses counts integers: a row holds a number with a fraction")
        if largest > LOOKUP_MAX_L1:
            raise ValueError(f"a row's Σ|m| exceeds {LOOKUP_MAX_L1}: its sums could not be counted exactly")
    tasks = max(1, -(-packed.shape[0] // SYNTHESIS_CHUNK))
    out = np.empty((tasks, values.shape[0], int(d)), dtype=np.int64)
    if values.shape[0]:
        _lattice_syntheses(packed, values, int(d), out)
    return out.sum(axis=0)


@njit(cache=True, nogil=True, parallel=True)
def _signed_sums(packed: np.ndarray, starts: np.ndarray, values: np.ndarray, d: int,
                 out: np.ndarray) -> None:  # pragma: no cover - compiled
    for segment in prange(starts.shape[0] - 1):
        target = out[segment]
        first = starts[segment]
        for t in range(first, starts[segment + 1]):
            value = values[t]
            for w in range(packed.shape[1]):
                word = packed[t, w]
                base = 64 * w
                for i in range(min(64, d - base)):
                    term = -value if (word >> np.uint64(i)) & np.uint64(1) else value
                    if t == first:
                        target[base + i] = term
                    else:
                        target[base + i] += term


def signed_sums(packed: np.ndarray, starts: np.ndarray, values: np.ndarray, d: int) -> np.ndarray:
    """Sums of signed codewords: row ``s`` of the ``(S, d)`` float64 result is
    ``Σ_t values[t]·S_t`` over ``t`` in ``[starts[s], starts[s + 1])`` (``starts`` ends with
    the number of terms), where ``S_t`` is the ±1 codeword whose sign bits are
    ``packed[t]`` (bit set for −1). Each sum runs in ``t``'s order, term by term in
    float64, as ``np.add.reduceat`` sums the rows of the unpacked terms, to the same
    bits, with no ``(terms, d)`` array made: what a sparse ``synthesize`` needs."""
    bounds = np.ascontiguousarray(starts, dtype=np.int64)
    numbers = np.ascontiguousarray(values, dtype=np.float64)
    if packed.ndim != 2 or packed.shape[0] != numbers.shape[0] or packed.shape[1] * 64 < d:
        raise ValueError(f"{numbers.shape[0]} values for {packed.shape[0]} codewords of "
                         f"{packed.shape[1]} words (d = {d})")
    if bounds.size and (bounds[0] != 0 or bounds[-1] != numbers.shape[0] or np.any(np.diff(bounds) <= 0)):
        raise ValueError("starts must rise from 0 to the number of terms")
    out = np.empty((max(bounds.size - 1, 0), int(d)))
    if out.size:
        _signed_sums(packed, bounds, numbers, int(d), out)
    return out


@njit(cache=True, nogil=True)
def _scale_rows_into(source: np.ndarray, factors: np.ndarray, out: np.ndarray, rows: np.ndarray,
                     start: int) -> None:  # pragma: no cover - compiled
    for r in range(source.shape[0]):
        target = rows[r]
        factor = factors[r]
        if factor > 0.0:
            for c in range(source.shape[1]):
                out[target, start + c] = np.float32(np.float64(source[r, c]) / factor)
        else:
            for c in range(source.shape[1]):
                out[target, start + c] = np.float32(np.float64(source[r, c]) * -factor)


def scale_rows_into(source: np.ndarray, factors: np.ndarray, out: np.ndarray, rows: np.ndarray,
                    start: int) -> None:
    """``out[rows[r], start + c]`` = ``source[r, c]`` divided by ``factors[r]`` when it is
    positive, multiplied by ``−factors[r]`` when it is not: in float64, rounded once to
    ``out``'s float32, in one pass where NumPy would take three."""
    _scale_rows_into(source, np.ascontiguousarray(factors, dtype=np.float64), out,
                     np.ascontiguousarray(rows, dtype=np.int64), int(start))


@njit(cache=True, nogil=True)
def _integer_row(row: np.ndarray, scale: float, d: int, integers: np.ndarray, factors: np.ndarray,
                 steps: np.ndarray, b: int, lattice_too: bool) -> None:  # pragma: no cover
    limit = 2.0**24
    # On the lattice: every entry is the float32 rounding of scale·m, m an integer.
    total = 0.0
    lattice = lattice_too
    for r in range(row.shape[0] if lattice_too else 0):
        m = np.rint(np.float64(row[r]) / scale)
        if np.float64(np.float32(m * scale)) != np.float64(row[r]):
            lattice = False
            break
        integers[b, r] = m
        total += abs(m)
    if lattice and total <= limit:
        factors[b] = d
        return
    # On a grid: every entry a multiple of the power of two 2^-23 of the L1 norm.
    norm = 0.0
    for r in range(row.shape[0]):
        norm += abs(np.float64(row[r]))
    if norm == 0.0 or not np.isfinite(norm):
        factors[b] = 0.0
        return
    _, exponent = math.frexp(norm)
    step = math.ldexp(1.0, exponent - 23)
    if step == 0.0:  # a norm below 2^-1051: no grid of normal steps (summed in float64)
        factors[b] = 0.0
        steps[b] = 0.0
        return
    total = 0.0
    grid = True
    for r in range(row.shape[0]):
        m = np.float64(row[r]) / step
        if m != np.rint(m):
            grid = False
            break
        integers[b, r] = m
        total += abs(m)
    factors[b] = -step * scale if grid and total <= limit else 0.0
    steps[b] = step


def _integer_rows_body(x: np.ndarray, scale: float, d: int, integers: np.ndarray,
                       factors: np.ndarray, steps: np.ndarray, lattice_too: bool) -> None:  # pragma: no cover
    for b in prange(x.shape[0]):
        _integer_row(x[b], scale, d, integers, factors, steps, b, lattice_too)


_integer_rows_serial, _integer_rows_parallel = serial_and_parallel(_integer_rows_body, nogil=True)


def integer_rows(x: np.ndarray, scale: float, d: int,
                 lattice: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``x`` (float64, or float32: the same numbers) that a ±1 dictionary with
    scale ``scale`` multiplies exactly in float32: their integers (float32, exact) and a
    factor per row: ``d`` (on the lattice: the integer product is divided by it; looked
    for only if ``lattice``), a negative ``−h·scale`` (on the grid of step ``h``,
    ``2^-23`` of the row's L1 norm: multiplied by ``h·scale``), or 0 (neither; its
    integers are junk); and the steps ``h`` of the rows on the grid. Each row is worked
    out on its own (on the cores when there are many numbers), in float64."""
    array = np.ascontiguousarray(x)
    if array.dtype != np.float32:
        array = np.ascontiguousarray(array, dtype=np.float64)
    integers = np.zeros(array.shape, dtype=np.float32)
    factors = np.zeros(array.shape[0])
    steps = np.zeros(array.shape[0])
    kernel = _integer_rows_parallel if array.size >= PARALLEL_ENTRIES else _integer_rows_serial
    kernel(array, float(scale), int(d), integers, factors, steps, bool(lattice))
    return integers, factors, steps


@njit(cache=True, nogil=True)
def _grid_steps(values: np.ndarray, bits: int, min_exponent: int,
                out: np.ndarray) -> None:  # pragma: no cover - compiled
    for b in range(values.shape[0]):
        norm = 0.0
        for i in range(values.shape[1]):
            norm += abs(np.float64(values[b, i]))
        _, exponent = math.frexp(norm)
        out[b] = math.ldexp(1.0, max(exponent, min_exponent) - bits)


def grid_exponent_steps(values: np.ndarray, bits: int, min_exponent: int) -> np.ndarray:
    """Per row, ``2^(max(e, min_exponent) − bits)`` with ``2^e`` the power of two just above
    the row's L1 norm (``frexp``'s exponent), summed in float64 in index order."""
    out = np.empty(values.shape[0])
    _grid_steps(np.ascontiguousarray(values), int(bits), int(min_exponent), out)
    return out


@njit(cache=True, nogil=True)
def _snap(values: np.ndarray, steps: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    for b in range(values.shape[0]):
        step = steps[b]
        for i in range(values.shape[1]):
            out[b, i] = np.rint(np.float64(values[b, i]) / step) * step


def snap_rows(values: np.ndarray, steps: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[b] = rint(values[b] / steps[b]) · steps[b]`` in float64, stored in ``out``'s type:
    NumPy's three passes in one."""
    _snap(np.ascontiguousarray(values), np.ascontiguousarray(steps, dtype=np.float64), out)
    return out
