"""The XOR-popcount floor of this machine: ``python popcount_floor.py WORDS BATCH``
(``BATCH`` a multiple of four: the blocked kernels take four picks at a time).

Prints, as JSON, the rate (64-bit words a second, all cores) of several kernels doing
the work of ``gram_rows``: ``BATCH`` picked codewords against a block of codewords of
``WORDS`` words each, XOR then population count, summed per pair. The block (4 MiB)
stays in the last-level cache, so the rates are what the cores can do, not what memory
allows. Each kernel's sums are checked against NumPy's ``bitwise_count``. Run by
``test_roofline.py`` with LLVM's loop vectoriser on and off (``NUMBA_LOOP_VECTORIZE``).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from numba import njit, prange
from superposition_harness.kernels import _popcount as popcount
from superposition_harness.kernels import _sign_products
from superposition_harness.lanes import (
    lane,
    lanes_add,
    lanes_load,
    lanes_popcount,
    lanes_splat,
    lanes_xor,
    lanes_zero,
)

TILE = 64


@njit(parallel=True, nogil=True)
def blocked(packed, picks, out):  # pragma: no cover - compiled
    """Two codewords against four picks at a time: eight sums in registers."""
    width, words = packed.shape
    batch = picks.shape[0]
    for part in prange(width // TILE):
        for c in range(part * TILE, part * TILE + TILE, 2):
            w0 = packed[c]
            w1 = packed[c + 1]
            for b in range(0, batch, 4):
                p0, p1, p2, p3 = picks[b], picks[b + 1], picks[b + 2], picks[b + 3]
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.uint64(0)
                for t in range(words):
                    x0 = w0[t]
                    x1 = w1[t]
                    a0 += popcount(x0 ^ p0[t])
                    a1 += popcount(x0 ^ p1[t])
                    a2 += popcount(x0 ^ p2[t])
                    a3 += popcount(x0 ^ p3[t])
                    a4 += popcount(x1 ^ p0[t])
                    a5 += popcount(x1 ^ p1[t])
                    a6 += popcount(x1 ^ p2[t])
                    a7 += popcount(x1 ^ p3[t])
                out[b, c], out[b + 1, c], out[b + 2, c], out[b + 3, c] = a0, a1, a2, a3
                out[b, c + 1], out[b + 1, c + 1], out[b + 2, c + 1], out[b + 3, c + 1] = a4, a5, a6, a7


@njit(parallel=True, nogil=True)
def pairs(packed, picks, out):  # pragma: no cover - compiled
    """One codeword against one pick at a time, the sum in a register."""
    width, words = packed.shape
    batch = picks.shape[0]
    for part in prange(width // TILE):
        for c in range(part * TILE, part * TILE + TILE):
            w = packed[c]
            for b in range(batch):
                p = picks[b]
                total = np.uint64(0)
                for t in range(words):
                    total += popcount(w[t] ^ p[t])
                out[b, c] = total


@njit(parallel=True, nogil=True)
def four_lanes(packed, transposed, out):  # pragma: no cover - compiled
    """One codeword against four picks at a time: each word in four lanes, XOR-ed with four
    picks' words, counted and summed as one vector (``transposed`` is ``(words, B)``)."""
    width, words = packed.shape
    batch = transposed.shape[1]
    for part in prange(width // TILE):
        for c in range(part * TILE, part * TILE + TILE):
            for b in range(0, batch, 4):
                total = lanes_zero()
                for t in range(words):
                    total = lanes_add(total, lanes_popcount(lanes_xor(lanes_splat(packed[c, t]),
                                                                      lanes_load(transposed, (t, b)))))
                out[b, c], out[b + 1, c] = lane(total, 0), lane(total, 1)
                out[b + 2, c], out[b + 3, c] = lane(total, 2), lane(total, 3)


def main(words: int, batch: int) -> dict[str, float]:
    if batch < 4 or batch % 4:
        raise SystemExit(f"BATCH must be a positive multiple of four, not {batch}")
    width = max(TILE, (4 << 20) // (8 * words) // TILE * TILE)
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 2**63, size=(width, words), dtype=np.uint64)
    picks = rng.integers(0, 2**63, size=(batch, words), dtype=np.uint64)
    truth = np.bitwise_count(packed[None, :, :] ^ picks[:, None, :]).sum(axis=2)
    counts = np.zeros((batch, width), dtype=np.uint64)
    identity = np.arange(64 * words + 1, dtype=np.float32)  # the harness's table, without scaling
    values = np.zeros((batch, width), dtype=np.float32)
    transposed = np.ascontiguousarray(picks.T)
    kernels = {
        "register-blocked": (lambda: blocked(packed, picks, counts), counts),
        "pairwise": (lambda: pairs(packed, picks, counts), counts),
        "four-lane": (lambda: four_lanes(packed, transposed, counts), counts),
        "harness": (lambda: _sign_products(packed, transposed, identity, values, 0), values),
    }
    rates = {}
    for name, (run, result) in kernels.items():
        result[...] = 0
        run()
        if not np.array_equal(result, truth):
            raise AssertionError(f"the {name} kernel's sums are wrong")
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(8):
                run()
            best = min(best, (time.perf_counter() - began) / 8)
        rates[name] = width * words * batch / best
    return rates


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
