"""Does ``d*`` flatter? The reported ``d*(0.95)`` and ``k*(0.95)`` against the true success
rate there, with and without the search's confirmation of its candidate.

For ``topk`` and ``mp`` at ``N = 4096, k = 16`` the harness's search runs with 20 seeds
(the settings of ``harness run``) twice on the same trials: as it runs now (the
candidate ``d*`` is confirmed on ``confirm_trials`` = 512 trials) and as it ran before
confirmation existed (``confirm_trials`` = 256, the probe's own trials). Independently,
the true ``p(d)`` is estimated from ``TRUTH_TRIALS`` trials per dimension on instances of
another seed, at every reported ``d*`` and, by bisection, at the true crossing
``d_true`` (the smallest ``d`` whose estimated ``p`` reaches 0.95). Printed per decoder
and estimator:

- the mean of the true ``p(d*)`` over the seeds, its spread, and how many fall below
  0.95 (an unbiased estimator puts ``p(d*)`` at or above 0.95 on average: ``d*`` is an
  integer, so ``p(d*) ≥ q`` whenever ``d* ≥ d_true``);
- the coverage of the reported 95% interval: how often ``lo ≤ d_true ≤ hi``.

The fixed-dictionary track does the same for ``k*`` (the largest ``k`` with
``p(k) ≥ 0.95``) on one ``256 × 4096`` Rademacher matrix.

The standard error of one true ``p`` near 0.95 at 8,000 trials is about 0.0024; the
truth's instances are shared by all the dimensions it measures, so its error shifts the
whole study at once. Run it with::

    python -m pytest benchmarks/test_estimator.py --benchmark-enable -s

(about half an hour on two cores). Nothing here asserts on a time or on the figures it
measures.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from superposition_harness.dictionary import MatrixDictionary
from superposition_harness.plugins import load_registry
from superposition_harness.problem import FILE_DICTIONARY, Problem
from superposition_harness.runner import DecoderRun, LocalTrials, RunSettings, measure, search_limit

from .conftest import FIGURES

N, K, Q = 4096, 16, 0.95
FIXED_D = 256
SEEDS = range(20)
TRUTH_TRIALS = 8000
TRUTH_SEED = 10_000

#: The search as ``harness run`` makes it, and as it was before it confirmed its candidate.
ESTIMATORS = {"confirmed": RunSettings(), "unconfirmed": RunSettings(confirm_trials=256)}


def fixed_matrix() -> MatrixDictionary:
    rng = np.random.default_rng(4096)
    return MatrixDictionary(rng.choice([-1.0, 1.0], size=(FIXED_D, N)) / np.sqrt(FIXED_D))


def problem_of(track: str, seed: int) -> Problem:
    if track == "generated":
        return Problem(n=N, k=K, seed=seed)
    return Problem(n=N, k=None, dictionary=FILE_DICTIONARY, d=FIXED_D, dictionary_file="F.npy",
                   dictionary_sha256="0" * 64, seed=seed)


class Trials:
    """The outcomes of one decoder on one seed's instances, each trial run once."""

    def __init__(self, track: str, name: str, seed: int, fixed: MatrixDictionary | None) -> None:
        decoder = load_registry().decoders[name].cls()
        self.problem = problem_of(track, seed)
        self.source = LocalTrials(self.problem, decoder, RunSettings(batch_size=64), fixed)
        self.done: dict[tuple[int, int], bool] = {}

    def __call__(self, value: int, start: int, count: int) -> int:
        missing = [t for t in range(start, start + count) if (value, t) not in self.done]
        if missing:
            for trial, ok in zip(missing, self.source.outcomes(value, missing), strict=True):
                self.done[value, trial] = ok
        return sum(self.done[value, t] for t in range(start, start + count))

    def search(self, settings: RunSettings) -> DecoderRun:
        run = DecoderRun(problem=self.problem, settings=settings,
                         d_max=search_limit(self.problem, settings), params={})
        measure(run, self)
        return run


class Truth:
    """The true ``p`` of one decoder at each value, from ``TRUTH_TRIALS`` trials."""

    def __init__(self, track: str, name: str, fixed: MatrixDictionary | None) -> None:
        self.trials = Trials(track, name, TRUTH_SEED, fixed)
        self.track = track
        self.cache: dict[int, float] = {}

    def p(self, value: int) -> float:
        if value not in self.cache:
            self.cache[value] = self.trials(value, 0, TRUTH_TRIALS) / TRUTH_TRIALS
        return self.cache[value]

    def crossing(self, guess: int) -> int:
        """``d_true`` (smallest ``d`` with ``p ≥ Q``) or ``k_true`` (largest ``k``)."""
        sign = 1 if self.track == "generated" else -1

        def ok(m: int) -> bool:  # grows with m on both tracks
            return self.p(sign * m) >= Q

        lo = hi = sign * guess
        while not ok(hi):
            hi += max(1, abs(hi) // 20)
        while ok(lo) and abs(lo) > 1:
            lo -= max(1, abs(lo) // 20)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return sign * hi


@pytest.mark.parametrize("track", ["generated", "fixed"])
@pytest.mark.parametrize("decoder", ["topk", "mp"])
def test_the_true_success_rate_at_the_reported_estimate(benchmark, pytestconfig, track, decoder, capsys):
    if not pytestconfig.getoption("benchmark_enable"):
        pytest.skip("the estimator study takes many minutes: run with --benchmark-enable")
    fixed = fixed_matrix() if track == "fixed" else None
    name = "d" if track == "generated" else "k"

    def study() -> tuple[dict[str, list[DecoderRun]], Truth, int]:
        runs: dict[str, list[DecoderRun]] = {label: [] for label in ESTIMATORS}
        for seed in SEEDS:
            trials = Trials(track, decoder, seed, fixed)
            for label, settings in ESTIMATORS.items():
                runs[label].append(trials.search(settings))
        truth = Truth(track, decoder, fixed)
        reported = [run.estimate.d for run in runs["confirmed"] if run.estimate and run.estimate.d]
        true = truth.crossing(round(statistics.median(reported)))
        return runs, truth, true

    runs, truth, true = benchmark.pedantic(study, rounds=1, iterations=1)
    where = f"{decoder} N={N} " + (f"k={K}" if track == "generated" else f"d={FIXED_D} (fixed)")
    step = 1 if track == "generated" else -1
    with capsys.disabled():
        print(f"\n{where}: {name}_true = {true} (p = {truth.p(true):.4f}; "
              f"p({name}_true {'-' if step > 0 else '+'} 1) = {truth.p(true - step):.4f})")
    for label, label_runs in runs.items():
        values = [run.estimate.d for run in label_runs]
        at = [truth.p(v) for v in values]
        covered = sum((run.estimate.ci[0] or 0) <= true <= (run.estimate.ci[1] or 10**9)
                      for run in label_runs)
        trials = statistics.mean(run.trials_target for run in label_runs)
        with capsys.disabled():
            print(f"  {label}: {name}* = {values}")
            print(f"    true p({name}*) mean {statistics.mean(at):.4f} sd {statistics.stdev(at):.4f}, "
                  f"{sum(p < Q for p in at)} below {Q:g}; coverage {covered}/{len(at)}; "
                  f"trials for {name}* {trials:.0f}")
        below = sum(p < Q for p in at)
        FIGURES[f"estimator {where} {label}: mean true p({name}*) over {len(at)} seeds"] = (
            f"{statistics.mean(at):.4f} (sd {statistics.stdev(at):.4f}, {below} below {Q:g})")
        FIGURES[f"estimator {where} {label}: 95% interval covers {name}_true = {true}"] = \
            f"{covered}/{len(at)}; {trials:.0f} trials for {name}*"
