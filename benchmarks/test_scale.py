"""The harness at scale: N = 2^16 and 2^20, k = 64, batches of 32 signals.

Four measurements, each printed in the summary at the end of the run (the "other
figures" section, and the per-trial section for times per trial and speed-ups):

1. **Correlation kernel against the float32 GEMM peak.** ``correlate`` of a batch of 32
   lattice signals (sign bits unpacked to ±1 float32 blocks, multiplied on worker threads
   with BLAS on one thread each, as in every run) beside NumPy's float32 GEMM
   ``x @ M`` of the same shape on the same machine (BLAS on its default threads), both
   in GFLOP/s (``2·32·d·N`` per product), and the fraction kernel/GEMM. At N = 2^20 the
   dense reference would take 16 GiB, so it is timed on the first 2^16 columns and its
   time multiplied by 16 (the label says so). The dictionary keeps its packed bits
   (``cache_bytes`` = 2 GiB); at N = 2^20 its unpacked floats do not fit beside them, so
   they are unpacked on every call, as in a real run (the label says which happened).
2. **Decoder trials per second** for ``DECODERS`` at N = 2^16 and ``LARGE_N_DECODERS``
   at N = 2^20, each at a dimension near its d* for k = 64 (see ``decoder_dimension``).
   A timed round is what a run pays per batch: make the dictionary of a new draw,
   superpose the 32 signals, decode them.
3. **Speed-up over a straightforward NumPy implementation** (dense float64 matrix made
   outside the timing, one trial at a time) of ``topk`` and ``mp`` at N = 2^16, against
   the harness's time per trial of measurement 2 (which includes making the draw).
4. **Peak memory and wall time of a whole ``harness run``** of ``topk`` at N = 2^20 (a
   subprocess; the peak is the record's ``peak_memory_bytes``).

Run it with::

    python -m pytest benchmarks/test_scale.py --benchmark-enable

The full sizes need up to about 6 GiB of memory and take minutes (the ``harness run`` at
N = 2^20 the longest). ``HARNESS_BENCH_SMALL=1`` shrinks everything (N = 2^12 and 2^14,
k = 8, d in (128, 256)) for a smoke test of a few seconds. With benchmarks disabled
(the default of the test command) the full sizes are skipped and the small ones run once
untimed. Nothing here asserts on a time: only the results (the kernel's correlations
against the GEMM's, the naive decoders' sets against the harness's, the run's status).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from superposition_harness import Problem
from superposition_harness.dictionary import RademacherDictionary, generated_dictionary
from superposition_harness.plugins import load_registry
from superposition_harness.problem import draw_subsets, entropy_bits

from .conftest import FIGURES, RATIOS

SMALL = os.environ.get("HARNESS_BENCH_SMALL", "").strip() not in ("", "0")

BATCH = 32
if SMALL:
    MID_N, LARGE_N, K = 1 << 12, 1 << 14, 8
    KERNEL_DIMS = (128, 256)
    #: The GEMM reference is timed on at most this many columns and scaled up to N.
    REFERENCE_COLUMNS = 1 << 12
    #: float32 GEMM rounding, which grows with d and k, against the kernel's exact sums.
    GEMM_ATOL = 1e-5
else:
    MID_N, LARGE_N, K = 1 << 16, 1 << 20, 64
    KERNEL_DIMS = (1024, 4096)
    REFERENCE_COLUMNS = 1 << 16
    GEMM_ATOL = 1e-4
SIZES = (MID_N, LARGE_N)

#: Cache of each timed dictionary: room for the packed sign bits at every size here.
CACHE_BYTES = 2 << 30

#: Decoders timed at N = MID_N, and the (fast enough) ones also timed at N = LARGE_N.
DECODERS = ("topk", "mp", "threshold", "amp-binary")
LARGE_N_DECODERS = ("topk", "mp", "threshold")

#: Decoders compared with a plain NumPy version, at N = MID_N only (the dense matrix of
#: N = LARGE_N would not fit), on this many trials one at a time.
NAIVE_DECODERS = ("topk", "mp")
NAIVE_TRIALS = 4

KERNEL_ROUNDS = 3

#: The whole run of measurement 4.
RUN_PLUGIN, RUN_TRIALS, RUN_D_MAX = "topk", 32, 6000


def heavy(benchmark) -> None:
    """Skip a full-size case when benchmarks are disabled (it would run once, untimed)."""
    if benchmark.disabled and not SMALL:
        pytest.skip("full-size benchmark: run with --benchmark-enable (or HARNESS_BENCH_SMALL=1)")


def median_seconds(benchmark) -> float | None:
    """The median of a benchmark's rounds, or None when it timed nothing (disabled)."""
    return None if benchmark.stats is None else benchmark.stats.stats.median


def decoder_dimension(name: str, n: int, k: int) -> int:
    """A dimension near ``name``'s d* at (n, k): the one-step decoders' bounds, and 1.3
    times the entropy ``log2 C(n, k)`` for the iterative ones."""
    if name == "threshold":
        return math.ceil(8 * k * math.log(n))
    if name == "topk":
        return math.ceil(4 * k * math.log(k * n))
    return math.ceil(1.3 * entropy_bits(n, k))


def make_decoder(name: str):
    registry = load_registry()
    if name not in registry.decoders:
        pytest.skip(f"decoder {name!r} is not installed")
    return registry.get(name).cls()


def exact(decoded, subsets: np.ndarray) -> list[bool]:
    """Whether each decoded set is its subset."""
    return [np.array_equal(np.unique(np.asarray(guess, dtype=np.int64)), truth)
            for guess, truth in zip(decoded, subsets, strict=True)]


def gflops(d: int, n: int, seconds: float) -> float:
    return 2.0 * BATCH * d * n / seconds / 1e9


# ----------------------------------------------------------- 1. kernel against GEMM


@pytest.mark.parametrize("d", KERNEL_DIMS)
@pytest.mark.parametrize("n", SIZES)
def test_correlate_against_float32_gemm(benchmark, n, d):
    heavy(benchmark)
    problem = Problem(n=n, k=K, seed=0, subsets_per_draw=BATCH)
    dictionary = RademacherDictionary(d, n, seed=0, draw=0, cache_bytes=CACHE_BYTES)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    floats_kept = dictionary.packed_bytes() + n * d * 4 <= CACHE_BYTES
    kernel = dictionary.correlate(signals)  # compile, make the sign bits (and keep floats)
    benchmark.pedantic(dictionary.correlate, args=(signals,), rounds=KERNEL_ROUNDS, iterations=1)

    # The reference: the same product as a dense float32 GEMM. Above REFERENCE_COLUMNS
    # (N = 2^20: 16 GiB at d = 4096) it runs on the first columns (the same codewords:
    # column blocks do not depend on N) and its time is scaled by N / columns.
    columns = min(n, REFERENCE_COLUMNS)
    matrix = RademacherDictionary(d, columns, seed=0, draw=0).dense(max_bytes=CACHE_BYTES)
    x32 = np.ascontiguousarray(signals, dtype=np.float32)
    reference = x32 @ matrix  # warm up BLAS
    np.testing.assert_allclose(kernel[:, :columns], reference, rtol=0, atol=GEMM_ATOL)

    kernel_seconds = median_seconds(benchmark)
    if kernel_seconds is None:
        return
    times = []
    for _ in range(KERNEL_ROUNDS):
        began = time.perf_counter()
        x32 @ matrix
        times.append(time.perf_counter() - began)
    gemm_seconds = statistics.median(times) * (n / columns)
    scaled = f" on (d, {columns}) x {n // columns}" if columns < n else ""
    kept = "floats kept" if floats_kept else "unpacked per call"
    FIGURES[f"correlate / float32 GEMM{scaled}, N={n}, d={d}"] = (
        f"{gemm_seconds / kernel_seconds:5.2f}   (correlate {gflops(d, n, kernel_seconds):6.1f} GFLOP/s, "
        f"{kept}; GEMM {gflops(d, n, gemm_seconds):6.1f} GFLOP/s)")


#: (N, d, rows) of exact products timed on the bits and unpacked, in the same run: the
#: measurements behind ``dictionary.LOOKUP_MAX_ROWS``.
ROUTE_SHAPES = [(16384, 512, 64), (16384, 512, 128), (1 << 18, 1280, 64), (1 << 18, 4614, 64),
                (1 << 18, 788, 128), (1 << 18, 4614, 128)]


@pytest.mark.parametrize(("n", "d", "rows"), ROUTE_SHAPES)
def test_products_on_the_bits_against_unpacking(benchmark, monkeypatch, n, d, rows):
    """An exact product of ``rows`` lattice signals counted on the sign bits by table
    look-up (the route up to ``LOOKUP_MAX_ROWS`` rows) against the same product unpacked
    for a float32 GEMM (the route beyond it): the same numbers, and the ratio of times."""
    heavy(benchmark)
    import superposition_harness.dictionary as module
    if rows > module.LOOKUP_MAX_ROWS:
        pytest.skip(f"{rows} rows are beyond the look-up route (LOOKUP_MAX_ROWS = {module.LOOKUP_MAX_ROWS})")
    if SMALL:  # a smoke run: the smallest size at which the route is taken
        n = module.LOOKUP_MIN_CODEWORDS
    problem = Problem(n=n, k=K, seed=0, subsets_per_draw=rows)
    dictionary = RademacherDictionary(d, n, seed=0, draw=0, cache_bytes=CACHE_BYTES)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    counted = dictionary.correlate(signals)  # compile, make the sign bits
    benchmark.pedantic(dictionary.correlate, args=(signals,), rounds=KERNEL_ROUNDS, iterations=1,
                       warmup_rounds=1)
    counted_seconds = median_seconds(benchmark)
    monkeypatch.setattr(module, "LOOKUP_MAX_ROWS", 0)
    assert np.array_equal(dictionary.correlate(signals), counted)
    if counted_seconds is None:
        return
    times = []
    for _ in range(KERNEL_ROUNDS):
        began = time.perf_counter()
        dictionary.correlate(signals)
        times.append(time.perf_counter() - began)
    FIGURES[f"exact product of {rows} rows, N={n}, d={d}: unpacked / on the bits"] = (
        f"{statistics.median(times) / counted_seconds:5.2f}   ({statistics.median(times) * 1e3:8.1f} ms "
        f"against {counted_seconds * 1e3:8.1f} ms)")


# ------------------------------------------------------ 2. decoder trials per second


def harness_label(name: str, n: int, d: int) -> str:
    return f"{name}, N={n}, d={d} (batch of {BATCH}, new draw)"


DECODER_CASES = [(name, n) for n in SIZES
                 for name in (DECODERS if n == MID_N else LARGE_N_DECODERS)]


@pytest.mark.parametrize(("name", "n"), DECODER_CASES)
def test_decoder_trials_per_second(benchmark, per_trial, name, n):
    heavy(benchmark)
    decoder = make_decoder(name)
    problem = Problem(n=n, k=K, seed=0, subsets_per_draw=BATCH)
    d = decoder_dimension(name, n, K)
    draws = itertools.count()

    def one_batch():
        draw = next(draws)
        dictionary = generated_dictionary(problem, d, draw, cache_bytes=CACHE_BYTES)
        subsets = draw_subsets(problem, draw)
        signals = dictionary.superpose(subsets)
        return subsets, decoder.decode(dictionary, signals, k=K, noise=0.0)

    one_batch()  # compile the kernels, on a draw of its own
    subsets, decoded = benchmark.pedantic(one_batch, rounds=1 if n >= 1 << 20 else 2, iterations=1)
    successes = sum(exact(decoded, subsets))
    per_trial(harness_label(name, n, d), benchmark, BATCH)
    seconds = median_seconds(benchmark)
    if seconds is not None:
        FIGURES[f"{name} trials/s, N={n}, k={K}, d={d}"] = (
            f"{BATCH / seconds:8.2f} trials/s   ({successes}/{BATCH} decoded exactly)")


# ------------------------------------------------- 3. against a plain NumPy version


def naive_topk(dense: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    return np.sort(np.argsort(-(dense.T @ x), kind="stable")[:k])


def naive_mp(dense: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    residual = x.copy()
    picks = []
    for _ in range(k):
        j = int(np.argmax(dense.T @ residual))
        picks.append(j)
        residual -= dense[:, j]
    return np.unique(picks)


NAIVE = {"topk": naive_topk, "mp": naive_mp}


@pytest.mark.parametrize("name", NAIVE_DECODERS)
def test_speed_up_over_naive_numpy(benchmark, per_trial, name):
    heavy(benchmark)
    decoder = make_decoder(name)
    n = MID_N
    problem = Problem(n=n, k=K, seed=0, subsets_per_draw=BATCH)
    d = decoder_dimension(name, n, K)
    dictionary = generated_dictionary(problem, d, 0, cache_bytes=CACHE_BYTES)
    subsets = draw_subsets(problem, 0)[:NAIVE_TRIALS]
    signals = dictionary.superpose(subsets)
    # The dense copy comes from a twin without a cache, so the timed dictionary keeps
    # only what a run would keep.
    twin = generated_dictionary(problem, d, 0, cache_bytes=0)
    dense = twin.dense(max_bytes=CACHE_BYTES).astype(np.float64)
    naive = NAIVE[name]

    def one_at_a_time():
        return [naive(dense, x.astype(np.float64), K) for x in signals]

    decoded = benchmark.pedantic(one_at_a_time, rounds=2, iterations=1)
    harness = decoder.decode(dictionary, signals, k=K, noise=0.0)
    # Ties are broken by rounding in the float64 sums, so only where a set is right need
    # both agree; at d near d* that is most trials.
    assert exact(decoded, subsets) == exact(harness, subsets)
    naive_label = f"NumPy {name}, float64 dense, one trial, N={n}, d={d}"
    per_trial(naive_label, benchmark, NAIVE_TRIALS)
    RATIOS.append((harness_label(name, n, d), naive_label))


# ------------------------------------------------------ 4. memory of a whole run


def run_measured(command: list[str], cwd: Path) -> tuple[int, str, str, float]:
    """Run ``command``; its exit status, stdout, stderr and wall seconds."""
    began = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, result.stderr, time.perf_counter() - began


def test_peak_memory_of_a_large_run(benchmark, tmp_path):
    heavy(benchmark)
    script = Path(sys.executable).with_name("harness")
    if not script.exists():
        pytest.skip("needs the harness console script beside the interpreter")
    command = [str(script), "run", "--plugin", RUN_PLUGIN, "--n", str(LARGE_N), "--k", str(K),
               "--trials", str(RUN_TRIALS), "--d-max", str(RUN_D_MAX), "--no-store", "--json"]
    status, out, err, wall = benchmark.pedantic(
        run_measured, args=(command, tmp_path), rounds=1, iterations=1)
    assert status == 0, err[-2000:]
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(records) == 1 and records[0]["status"] == "ok", out[-2000:]
    record = records[0]
    if benchmark.enabled:
        # The record's own figure: the child's ru_maxrss would also count what this
        # (large) process held when it forked the child.
        label = f"harness run {RUN_PLUGIN}, N={LARGE_N}, k={K}, {RUN_TRIALS} trials/dimension"
        FIGURES[f"{label}: peak memory"] = f"{record['peak_memory_bytes'] / 2**20:8.0f} MiB"
        FIGURES[f"{label}: wall time"] = (
            f"{wall:8.1f} s   ({record['trials']} trials, d* = {record['d_star']})")
