"""Does ``d*`` flatter? The reported ``d*(0.95)`` against the true success rate there.

For ``topk`` and ``mp`` at ``N = 4096, k = 16`` the harness's search runs with 20 seeds
(the settings of ``harness run``). Independently, the true ``p(d)`` is estimated from
4,000 trials per dimension on instances of another seed, at every reported ``d*`` and,
by bisection, at the true crossing ``d_true`` (the smallest ``d`` whose estimated ``p``
reaches 0.95). Printed per decoder:

- the mean of the true ``p(d*)`` over the seeds, its spread, and how many fall below
  0.95 (an unbiased estimator puts ``p(d*)`` at or above 0.95 on average: ``d*`` is an
  integer, so ``p(d*) ≥ q`` whenever ``d* ≥ d_true``);
- the coverage of the reported 95% interval: how often ``lo ≤ d_true ≤ hi``.

The standard error of one true ``p`` near 0.95 at 4,000 trials is about 0.0034. Run it
with::

    python -m pytest benchmarks/test_estimator.py --benchmark-enable -s

(a few minutes). Nothing here asserts on a time or on the figures it measures.
"""

from __future__ import annotations

import statistics

import pytest
from superposition_harness.api import score
from superposition_harness.plugins import load_registry
from superposition_harness.problem import Problem
from superposition_harness.runner import TrialRunner

from .conftest import FIGURES

N, K, Q = 4096, 16, 0.95
SEEDS = range(20)
TRUTH_TRIALS = 4000
TRUTH_SEED = 10_000


class Truth:
    """The true ``p(d)`` of one decoder, from ``TRUTH_TRIALS`` independent trials per ``d``."""

    def __init__(self, name: str) -> None:
        decoder = load_registry().decoders[name].cls()
        self.runner = TrialRunner(Problem(n=N, k=K, seed=TRUTH_SEED), decoder, batch_size=64)
        self.cache: dict[int, float] = {}

    def p(self, d: int) -> float:
        if d not in self.cache:
            self.cache[d] = self.runner(d, 0, TRUTH_TRIALS) / TRUTH_TRIALS
        return self.cache[d]

    def crossing(self, guess: int) -> int:
        """The smallest ``d`` with ``p(d) ≥ Q``, by bracketing from ``guess`` and bisection."""
        lo, hi = guess, guess
        while self.p(hi) < Q:
            hi = round(hi * 1.05) + 1
        while lo > 1 and self.p(lo) >= Q:
            lo = round(lo * 0.95) - 1
        while hi - lo > 1:  # p(lo) < Q ≤ p(hi)
            mid = (lo + hi) // 2
            if self.p(mid) >= Q:
                hi = mid
            else:
                lo = mid
        return hi


@pytest.mark.parametrize("decoder", ["topk", "mp"])
def test_the_true_success_rate_at_the_reported_d_star(benchmark, pytestconfig, decoder, capsys):
    if not pytestconfig.getoption("benchmark_enable"):
        pytest.skip("the estimator study takes minutes: run with --benchmark-enable")

    def study() -> tuple[list[dict], Truth, int]:
        records = [score(decoder, n=N, k=K, seed=seed).record for seed in SEEDS]
        truth = Truth(decoder)
        d_true = truth.crossing(round(statistics.median(r["d_star"] for r in records)))
        for record in records:
            truth.p(record["d_star"])
        return records, truth, d_true

    records, truth, d_true = benchmark.pedantic(study, rounds=1, iterations=1)
    at_star = [truth.p(r["d_star"]) for r in records]
    covered = sum(r["d_star_ci"][0] <= d_true <= (r["d_star_ci"][1] or 10**9) for r in records)
    with capsys.disabled():
        print(f"\n{decoder} N={N} k={K}: d_true = {d_true} (p = {truth.p(d_true):.4f}; "
              f"p(d_true - 1) = {truth.p(d_true - 1):.4f})")
        for seed, record, p in zip(SEEDS, records, at_star, strict=True):
            print(f"  seed {seed:2d}: d* = {record['d_star']:4d} {record['d_star_ci']}  true p(d*) = {p:.4f}")
    FIGURES[f"estimator {decoder}: mean true p(d*) over {len(records)} seeds"] = (
        f"{statistics.mean(at_star):.4f} (sd {statistics.stdev(at_star):.4f}, "
        f"{sum(p < Q for p in at_star)} below {Q:g})")
    FIGURES[f"estimator {decoder}: 95% interval covers d_true = {d_true}"] = f"{covered}/{len(records)}"
