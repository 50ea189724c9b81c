"""Each iterative decoder on one batch, timed beside the strongest peer on the same work.

Run with ``python -m pytest benchmarks/test_decoder_speed.py --benchmark-enable`` (the
benchmarks are not part of the test command). At N = 16384, d = 512, k = 32 (64 signals)
the summary prints seconds per trial and the speed-ups of

- ``mp`` against a batched float32 NumPy matching pursuit (``C = X Fᵀ`` once, then per
  step ``C −= F[:, picks]ᵀ F`` as one GEMM and a row-wise argmax: what a careful NumPy
  user would write), and against a plain one-trial-at-a-time float64 loop;
- ``omp`` (with ``k`` picks, the same work) against scikit-learn's ``orthogonal_mp``, one
  trial at a time and on the whole batch in one call, and against SPAMS' ``omp``
  (``pip install spams-bin``; skipped with its reason where it is missing) on the batch
  with all cores;
- ``lasso-cd`` against scikit-learn's ``Lasso`` (coordinate descent) with the same
  penalty per signal (``alpha = λ/d``: scikit-learn scales the squared loss by
  ``1/(2d)``), one trial at a time.

At the paper's scale (N = 2^20, k = 64, d = 1280, 32 signals) ``mp`` is timed once more
beside the batched float32 NumPy peer on the same dense matrix (5 GiB of it; several
minutes, only with ``--benchmark-enable``).

``sp``, ``beam-mp``, ``ista``, ``fista``, ``amp`` and ``amp-binary`` are timed with no peer.
Each peer's decoded sets are checked against the truth beside the harness's, so that a
fast peer doing less work would show.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from superposition_harness import Problem
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.plugins import load_registry
from superposition_harness.problem import draw_subsets

from .conftest import FIGURES, RATIOS

BATCH = 64
N, D, K = 16384, 512, 32

#: Timed rounds of each decoder and of the batched NumPy peer of ``mp``, after one untimed
#: round of the whole batch (the first pays for what a run pays once: the worker threads'
#: start, the first touch of its arrays); the summary takes each one's median.
ROUNDS = 5


@pytest.fixture(scope="module")
def instance():
    problem = Problem(n=N, k=K, seed=1, subsets_per_draw=BATCH)
    dictionary = generated_dictionary(problem, D, 0)
    subsets = draw_subsets(problem, 0)
    signals = dictionary.superpose(subsets)
    # Make and cache the blocks outside the timings: the whole batch, so that the numbers a
    # product of 64 rows unpacks are kept too (one row would be counted on the bits).
    dictionary.correlate(signals)
    SUBSETS[:] = list(subsets)
    return dictionary, signals


#: The true subsets of the instance's signals, for the exact-recovery counts.
SUBSETS: list[np.ndarray] = []


def exact_count(decoded, label: str) -> None:
    """Record how many of the first ``len(decoded)`` signals a decoder or peer decoded exactly."""
    hits = sum(np.array_equal(np.unique(np.asarray(guess, dtype=np.int64)), truth)
               for guess, truth in zip(decoded, SUBSETS, strict=False))
    FIGURES[f"{label}: decoded exactly"] = f"{hits}/{len(decoded)}"


def time_peer(benchmark, per_trial, run, rounds: int, label: str, trials: int, against: str) -> None:
    """Time a peer on ``trials`` signals, record its exact recoveries and its ratio to ``against``."""
    decoded = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    per_trial(label, benchmark, trials)
    exact_count(decoded, label)
    RATIOS.append((against, label))


@pytest.fixture(scope="module")
def dense(instance):
    return instance[0].dense().astype(np.float64)


ITERATIVE = ["mp", "omp", "sp", "beam-mp", "ista", "fista", "lasso-cd", "amp", "amp-binary"]

#: Parameters that make a decoder do its peer's work: ``omp`` with ``k`` picks, as
#: scikit-learn's ``orthogonal_mp`` with ``n_nonzero_coefs = k``.
SAME_WORK = {"omp": {"picks": 1.0}}


@pytest.mark.parametrize("name", ITERATIVE)
def test_iterative_decoder_on_one_batch(benchmark, per_trial, instance, name):
    registry = load_registry()
    if name not in registry.decoders:
        pytest.skip(f"decoder {name!r} is not installed")
    decoder = registry.get(name).cls(**SAME_WORK.get(name, {}))
    dictionary, signals = instance
    decoder.decode(dictionary, signals[:2], k=K, noise=0.0)  # compile kernels first
    decoded = benchmark.pedantic(decoder.decode, args=(dictionary, signals), kwargs={"k": K, "noise": 0.0},
                                 rounds=ROUNDS, iterations=1, warmup_rounds=1)
    per_trial(f"{name} (batch of {BATCH})", benchmark, BATCH)
    exact_count(decoded, f"{name} (batch of {BATCH})")


def test_reference_sklearn_orthogonal_mp(benchmark, per_trial, instance, dense):
    from sklearn.linear_model import orthogonal_mp
    _, signals = instance
    trials = 8

    def one_at_a_time():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x in signals[:trials]:
                orthogonal_mp(dense, x.astype(np.float64), n_nonzero_coefs=K)

    benchmark.pedantic(one_at_a_time, rounds=3, iterations=1, warmup_rounds=1)
    per_trial("reference: sklearn orthogonal_mp, one trial", benchmark, trials)
    RATIOS.append((f"omp (batch of {BATCH})", "reference: sklearn orthogonal_mp, one trial"))


def test_reference_numpy_matching_pursuit(benchmark, per_trial, instance, dense):
    _, signals = instance
    trials = 8

    def one_at_a_time():
        for x in signals[:trials]:
            residual = x.astype(np.float64)
            picks = []
            for _ in range(K):
                j = int(np.argmax(dense.T @ residual))
                picks.append(j)
                residual = residual - dense[:, j]

    benchmark.pedantic(one_at_a_time, rounds=3, iterations=1, warmup_rounds=1)
    per_trial("reference: NumPy matching pursuit, one trial", benchmark, trials)
    RATIOS.append((f"mp (batch of {BATCH})", "reference: NumPy matching pursuit, one trial"))


def test_reference_numpy_matching_pursuit_batched_float32(benchmark, per_trial, instance, dense):
    _, signals = instance
    matrix = np.ascontiguousarray(dense, dtype=np.float32)  # d × N
    x = np.ascontiguousarray(signals, dtype=np.float32)

    def batched():
        correlations = x @ matrix  # B × N
        picks = np.empty((x.shape[0], K), dtype=np.int64)
        for step in range(K):
            picks[:, step] = correlations.argmax(axis=1)
            correlations -= matrix[:, picks[:, step]].T @ matrix
        return [np.unique(row) for row in picks]

    time_peer(benchmark, per_trial, batched, ROUNDS,
              f"reference: NumPy matching pursuit, float32, batch of {BATCH}",
              BATCH, f"mp (batch of {BATCH})")


def test_reference_sklearn_orthogonal_mp_batched(benchmark, per_trial, instance, dense):
    from sklearn.linear_model import orthogonal_mp
    _, signals = instance

    def whole_batch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coefficients = orthogonal_mp(dense, signals.T.astype(np.float64), n_nonzero_coefs=K)
        return [np.flatnonzero(column) for column in coefficients.T]

    time_peer(benchmark, per_trial, whole_batch, 3,
              f"reference: sklearn orthogonal_mp, batch of {BATCH} in one call",
              BATCH, f"omp (batch of {BATCH})")


def test_reference_spams_omp(benchmark, per_trial, instance, dense):
    spams = pytest.importorskip("spams", reason="SPAMS is not installed (pip install spams-bin)")
    _, signals = instance
    fortran_dense = np.asfortranarray(dense)
    fortran_signals = np.asfortranarray(signals.T.astype(np.float64))

    def whole_batch():
        coefficients = spams.omp(fortran_signals, fortran_dense, L=K, numThreads=-1)
        return [np.sort(coefficients[:, b].indices) for b in range(coefficients.shape[1])]

    time_peer(benchmark, per_trial, whole_batch, 3, f"reference: SPAMS omp, batch of {BATCH}, all cores",
              BATCH, f"omp (batch of {BATCH})")


def test_reference_sklearn_lasso(benchmark, per_trial, instance, dense):
    from sklearn.linear_model import Lasso
    from superposition_harness_builtins._penalty import penalties
    from superposition_harness_builtins.lasso_cd import LassoCD
    dictionary, signals = instance
    trials = 8
    decoder = LassoCD()
    lams = penalties(dictionary.correlate(signals[:trials]), N, 0.0, decoder.lam_ratio, decoder.noise_lam)

    def one_at_a_time():
        decoded = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x, lam in zip(signals[:trials], lams, strict=True):
                model = Lasso(alpha=lam / D, fit_intercept=False, max_iter=10_000)
                model.fit(dense, x.astype(np.float64))
                decoded.append(np.sort(np.argsort(-model.coef_, kind="stable")[:K]))  # as lasso-cd: top k
        return decoded

    time_peer(benchmark, per_trial, one_at_a_time, 2, "reference: sklearn Lasso, one trial",
              trials, f"lasso-cd (batch of {BATCH})")


# ------------------------------------------------------------- the paper's scale

#: ``mp`` at the paper's scale: N = 2^20, k = 64, near its d*(0.95) (d = 1280, as
#: ``test_roofline.py``), one batch of 32, against the batched float32 NumPy peer on the
#: same signals and the same dense matrix (5 GiB). Only with ``--benchmark-enable``.
PAPER_N, PAPER_D, PAPER_K, PAPER_BATCH = 1 << 20, 1280, 64, 32
PAPER_LABEL = f"mp (batch of {PAPER_BATCH}, N = 2^20, k = {PAPER_K}, d = {PAPER_D})"
PAPER_PEER = f"reference: NumPy matching pursuit, float32, batch of {PAPER_BATCH}, N = 2^20"


@pytest.fixture(scope="module")
def paper_instance():
    problem = Problem(n=PAPER_N, k=PAPER_K, seed=1, subsets_per_draw=PAPER_BATCH)
    dictionary = generated_dictionary(problem, PAPER_D, 0, cache_bytes=1 << 30)
    subsets = draw_subsets(problem, 0)
    return dictionary, dictionary.superpose(subsets), list(subsets)


def _paper_scale(benchmark, request):
    if benchmark.disabled:
        pytest.skip("paper-scale benchmark: run with --benchmark-enable")
    return request.getfixturevalue("paper_instance")


def _decoded_exactly(decoded, subsets) -> int:
    return sum(np.array_equal(np.unique(np.asarray(guess, dtype=np.int64)), truth)
               for guess, truth in zip(decoded, subsets, strict=True))


def test_mp_at_the_papers_scale(benchmark, per_trial, request):
    dictionary, signals, subsets = _paper_scale(benchmark, request)
    decoder = load_registry().get("mp").cls()
    decoder.decode(dictionary, signals[:2], k=PAPER_K, noise=0.0)  # compile, and make the draw
    decoded = benchmark.pedantic(decoder.decode, args=(dictionary, signals),
                                 kwargs={"k": PAPER_K, "noise": 0.0}, rounds=2, iterations=1)
    per_trial(PAPER_LABEL, benchmark, PAPER_BATCH)
    FIGURES[f"{PAPER_LABEL}: decoded exactly"] = f"{_decoded_exactly(decoded, subsets)}/{PAPER_BATCH}"


def test_reference_numpy_matching_pursuit_batched_float32_at_the_papers_scale(benchmark, per_trial, request):
    dictionary, signals, subsets = _paper_scale(benchmark, request)
    matrix = dictionary.dense(max_bytes=8 << 30)  # d × N float32
    x = np.ascontiguousarray(signals, dtype=np.float32)

    def batched():
        correlations = x @ matrix
        picks = np.empty((x.shape[0], PAPER_K), dtype=np.int64)
        for step in range(PAPER_K):
            picks[:, step] = correlations.argmax(axis=1)
            correlations -= matrix[:, picks[:, step]].T @ matrix
        return [np.unique(row) for row in picks]

    decoded = benchmark.pedantic(batched, rounds=1, iterations=1)
    per_trial(PAPER_PEER, benchmark, PAPER_BATCH)
    FIGURES[f"{PAPER_PEER}: decoded exactly"] = f"{_decoded_exactly(decoded, subsets)}/{PAPER_BATCH}"
    RATIOS.append((PAPER_LABEL, PAPER_PEER))
