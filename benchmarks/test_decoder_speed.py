"""Each iterative decoder on one batch, timed beside an independent reference in the same run.

Run with ``python -m pytest benchmarks --benchmark-enable`` (the benchmarks are not
part of the test command). The summary at the end prints seconds per trial and the
speed-ups: ``omp`` (with ``k`` picks, the same work) against scikit-learn's
``orthogonal_mp`` one trial at a time at N = 16384, d = 512, k = 32, and ``mp`` against a
plain NumPy loop on a dense matrix. ``sp`` and ``beam-mp`` are timed with no peer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from superposition_harness import Problem
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.plugins import load_registry
from superposition_harness.problem import draw_subsets

from .conftest import RATIOS

BATCH = 64
N, D, K = 16384, 512, 32


@pytest.fixture(scope="module")
def instance():
    problem = Problem(n=N, k=K, seed=1, subsets_per_draw=BATCH)
    dictionary = generated_dictionary(problem, D, 0)
    signals = dictionary.superpose(draw_subsets(problem, 0))
    dictionary.correlate(signals[:1])  # make and cache the blocks outside the timings
    return dictionary, signals


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
    benchmark.pedantic(decoder.decode, args=(dictionary, signals), kwargs={"k": K, "noise": 0.0},
                       rounds=3, iterations=1)
    per_trial(f"{name} (batch of {BATCH})", benchmark, BATCH)


def test_reference_sklearn_orthogonal_mp(benchmark, per_trial, instance, dense):
    from sklearn.linear_model import orthogonal_mp
    _, signals = instance
    trials = 8

    def one_at_a_time():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x in signals[:trials]:
                orthogonal_mp(dense, x.astype(np.float64), n_nonzero_coefs=K)

    benchmark.pedantic(one_at_a_time, rounds=3, iterations=1)
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

    benchmark.pedantic(one_at_a_time, rounds=3, iterations=1)
    per_trial("reference: NumPy matching pursuit, one trial", benchmark, trials)
    RATIOS.append((f"mp (batch of {BATCH})", "reference: NumPy matching pursuit, one trial"))
