"""The search for the minimal dimension ``d*(q)`` and its confidence interval (docs/contract.md §2).

The search knows nothing of decoders: it asks a callback for more trials at a
dimension and gets back how many succeeded. It assumes the success probability
``p(d)`` grows with ``d`` and finds the threshold by bracketing and bisection,
spending trials where ``p(d)`` is close to ``q``:

* A *probe* of ``d`` runs trials in stages of 32, 64, 128, … up to ``max_trials``
  and stops as soon as an exact (Clopper–Pearson) bound *decides* it: ``p(d) ≥ q``
  or ``p(d) < q`` with one-sided error 2.5% shared (Bonferroni) among the probe's
  looks, so stopping early does not inflate the error. The verdict that steers the
  search is ``p̂(d) ≥ q``.
* *Bracketing* doubles or halves ``d`` from a starting guess (or starts from probes
  already made for another ``q``) until the verdict changes; *bisection* then
  narrows the bracket until its ends are within the *resolution* (by default two
  neighbouring dimensions), so ``d*`` is a dimension that passed with
  ``d* − resolution`` failing, both measured. A relative resolution of 1% (what
  ``harness run`` uses) is finer than the statistical error of ``d*`` at 256 trials
  (about 2%) and saves the probes closest to the threshold, the costliest ones.
* *Confirmation*: the candidate the bisection ends on is run on ``confirm_trials``
  trials in all (twice ``max_trials`` by default; the new trials are new instances)
  and kept only if ``p̂ ≥ q`` still holds on all of them; otherwise it counts as
  failing and the bisection goes on above it. Of the dimensions near the threshold
  the search probes several, and the first that passes by chance would otherwise be
  reported: confirming it narrows the spread of the true ``p(d*)`` and removes the
  bias towards ``p(d*) < q`` (docs/contract.md §2 gives the measurements). The tests
  below use only each probe's own (first ``max_trials``) trials, so confirmation
  changes none of their error rates.
* The interval ``[lo, hi]`` comes from fixed-sequence tests. ``hi``: walk down the
  probed dimensions from the largest, keeping each one decided as passing, and stop
  at the first that is not; then a few probes at the full trial count halve the gap
  to ``d*`` in the same way. ``lo − 1``: the same walk up from the smallest probe,
  over dimensions decided as failing. A walk stops at its first undecided dimension,
  so at most one dimension on the wrong side of the true ``d*`` is tested per end;
  under monotonicity each end errs with probability at most 2.5% and ``[lo, hi]`` is
  a conservative 95% interval. Where no probe decides an end, probes at growing
  distances from ``d*`` are added; an end that cannot be shown within ``d_max`` is
  reported as ``None``.

The bounds come from exact binomial tails (log-gamma), so no SciPy is needed at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

#: Two-sided confidence of every interval the search reports.
CONFIDENCE = 0.95

#: Relative distances from ``d*`` at which missing interval ends are looked for.
CONFIRM_STEPS = (0.04, 0.08, 0.16, 0.32, 0.64)

#: Probes spent narrowing each end of the interval once it is bracketed.
REFINE_PROBES = 6


class SearchError(ValueError):
    """Search settings that cannot work; the message names what to change."""


# ------------------------------------------------------------------ binomial bounds


@lru_cache(maxsize=64)
def _log_binomials(n: int) -> np.ndarray:
    """``ln C(n, i)`` for ``i = 0 … n``, exact to rounding (log-gamma)."""
    i = np.arange(n + 1, dtype=np.float64)
    return np.array([math.lgamma(n + 1)]) - np.vectorize(math.lgamma)(i + 1) \
        - np.vectorize(math.lgamma)(n - i + 1)


def binomial_tail_upper(n: int, x: int, p: float) -> float:
    """``P(X ≥ x)`` for ``X ~ Binomial(n, p)``."""
    if x <= 0:
        return 1.0
    if x > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    i = np.arange(x, n + 1, dtype=np.float64)
    terms = _log_binomials(n)[x:] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(terms.max())
    return min(1.0, math.exp(top) * float(np.exp(terms - top).sum()))


def _solve(f: Callable[[float], float], target: float, increasing: bool) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        value = f(mid)
        if (value < target) == increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@lru_cache(maxsize=65536)
def clopper_pearson(successes: int, trials: int, alpha: float = 1 - CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided ``1 − alpha`` interval for a binomial proportion."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 ≤ successes ≤ trials, got {successes} of {trials}")
    half = alpha / 2
    lower = 0.0 if successes == 0 else _solve(
        lambda p: binomial_tail_upper(trials, successes, p), half, increasing=True)
    upper = 1.0 if successes == trials else _solve(
        lambda p: 1.0 - binomial_tail_upper(trials, successes + 1, p), half, increasing=False)
    return lower, upper


def stage_counts(max_trials: int, first_stage: int = 32) -> list[int]:
    """The cumulative trial counts at which a probe looks at its tally: 32, 64, … ≤ max."""
    stage = min(first_stage, max_trials)
    out = [stage]
    while stage < max_trials:
        stage = min(2 * stage, max_trials)
        out.append(stage)
    return out


def look_alpha(max_trials: int, first_stage: int = 32) -> float:
    """The one-sided error allowed at each look: 2.5% shared among a probe's looks."""
    return (1 - CONFIDENCE) / 2 / len(stage_counts(max_trials, first_stage))


def min_trials_to_pass(q: float, max_trials: int, first_stage: int = 32) -> int:
    """Fewest trials with which a probe can show ``p ≥ q`` with confidence (all succeed)."""
    if q >= 1:
        return 2**62
    return math.ceil(math.log(look_alpha(max_trials, first_stage)) / math.log(q))


# --------------------------------------------------------------------- the search


@dataclass
class Tally:
    """Trials run and successes seen at one dimension."""

    trials: int = 0
    successes: int = 0
    #: Trials and successes among the probe's own trials (the first ``max_trials``): the
    #: tests that decide a dimension use these, never a confirmation's further trials.
    probe_trials: int = 0
    probe_successes: int = 0

    @property
    def rate(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    def interval(self, alpha: float = 1 - CONFIDENCE) -> tuple[float, float]:
        """The exact two-sided ``1 − alpha`` interval for this dimension's ``p``."""
        return clopper_pearson(self.successes, self.trials, alpha)


@dataclass
class Estimate:
    """``d*(q)`` with its interval; ``d`` is None if ``p(d) ≥ q`` was not reached.

    On the fixed track the same object holds ``k*(q)``; ``k`` names it so.
    """

    q: float
    d: int | None
    ci: tuple[int | None, int | None]

    @property
    def k(self) -> int | None:
        return self.d


#: ``evaluate(d, start, count)`` runs trials ``start .. start+count-1`` at dimension
#: ``d`` and returns how many succeeded.
Evaluate = Callable[[int, int, int], int]


@dataclass
class DimensionSearch:
    """Probes of a monotone success curve, shared by the searches for several ``q``."""

    evaluate: Evaluate
    d_max: int
    max_trials: int
    first_stage: int = 32
    resolution: float = 0.0
    confirm_trials: int = 0
    curve: dict[int, Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_max < 1:
            raise SearchError(f"the largest dimension must be at least 1, not {self.d_max}.")
        if self.max_trials < 1:
            raise SearchError(f"trials must be a positive integer, not {self.max_trials}.")
        if self.first_stage < 1:
            raise SearchError(f"the first stage must be a positive integer, not {self.first_stage}.")
        if not 0 <= self.resolution < 0.5:
            raise SearchError(f"the resolution must be a fraction in [0, 0.5), not {self.resolution}.")
        if self.confirm_trials and self.confirm_trials < self.max_trials:
            raise SearchError(f"confirmation needs at least the {self.max_trials} trials of a probe, "
                              f"not {self.confirm_trials}.")
        self._alpha = look_alpha(self.max_trials, self.first_stage)

    def gap(self, d: int) -> int:
        """The bracket width at which a search near ``d`` stops: ``resolution × d``, at least 1."""
        return max(1, math.floor(self.resolution * d))

    @property
    def total_trials(self) -> int:
        return sum(t.trials for t in self.curve.values())

    def stages(self) -> list[int]:
        """The cumulative trial counts at which a probe checks whether it is decided."""
        return stage_counts(self.max_trials, self.first_stage)

    def run_to(self, d: int, trials: int) -> Tally:
        """Make sure at least ``trials`` trials have run at ``d`` (the probe's own first,
        then a confirmation's, each its own request)."""
        tally = self.curve.setdefault(d, Tally())
        for end in (min(trials, self.max_trials), trials):
            if tally.trials < end:
                successes = self.evaluate(d, tally.trials, end - tally.trials)
                tally.successes += successes
                if tally.trials < self.max_trials:
                    tally.probe_successes += successes
                    tally.probe_trials = end
                tally.trials = end
        return tally

    def decided(self, d: int, q: float) -> int:
        """+1 if ``p(d) ≥ q`` with confidence, −1 if ``p(d) < q`` with confidence, else 0.

        Each side errs with probability at most 2.5% over all the looks a probe takes. Only
        the probe's own trials count: a confirmation's further trials never decide.
        """
        tally = self.curve.get(d)
        if tally is None or tally.probe_trials == 0:
            return 0
        lower, upper = clopper_pearson(tally.probe_successes, tally.probe_trials, 2 * self._alpha)
        if lower >= q:
            return 1
        if upper < q:
            return -1
        return 0

    def passes(self, d: int, q: float) -> bool:
        """Probe ``d``: more trials until decided or at the limit; True if ``p̂(d) ≥ q``."""
        for stage in self.stages():
            tally = self.run_to(d, stage)
            if self.decided(d, q) != 0:
                break
        return tally.rate >= q

    def find(self, q: float, start: int) -> Estimate:
        """``d*(q)`` by bracketing and bisection, with its interval.

        Probes already on the curve (from a search for another ``q``) give the first
        bracket when they straddle ``q``; otherwise bracketing starts at ``start``.
        """
        if not 0 < q <= 1:
            raise SearchError(f"the target success rate must lie in (0, 1], not {q}.")
        bracket = self._bracket_from_curve(q) or self._bracket(q, start)
        while bracket is not None:
            lo, hi = bracket
            while hi - lo > self.gap(hi):
                mid = (lo + hi) // 2
                if self.passes(mid, q):
                    hi = mid
                else:
                    lo = mid
            if self.confirmed(hi, q):
                return Estimate(q=q, d=hi, ci=(self._lower_end(q, hi), self._upper_end(q, hi)))
            bracket = self._bracket_above(q, hi)
        return Estimate(q=q, d=None, ci=(self._lower_end(q, self.d_max + 1), None))

    def confirmed(self, d: int, q: float) -> bool:
        """Run ``d`` on ``confirm_trials`` trials in all; True if ``p̂(d) ≥ q`` on all of them."""
        tally = self.run_to(d, self.confirm_trials) if self.confirm_trials else self.curve[d]
        return tally.rate >= q

    def _bracket_above(self, q: float, failed: int) -> tuple[int, int] | None:
        """A bracket above a candidate that failed its confirmation: the nearest passing
        probe above it, or one found at doubling distances; None if none up to ``d_max``."""
        above = [d for d, t in self.curve.items() if d > failed and t.rate >= q]
        if above:
            return failed, min(above)
        step, lo = self.gap(failed), failed
        while lo < self.d_max:
            up = min(failed + step, self.d_max)
            if self.passes(up, q):
                return lo, up
            lo, step = up, 2 * step
        return None

    def _bracket_from_curve(self, q: float) -> tuple[int, int] | None:
        passing = [d for d, t in self.curve.items() if t.rate >= q]
        if not passing:
            return None
        hi = min(passing)
        failing = [d for d, t in self.curve.items() if d < hi and t.rate < q]
        lo = max(failing) if failing else 0
        if hi == 1 or lo == 0:
            return None
        if self.passes(hi, q) and not self.passes(lo, q):
            return lo, hi
        return None

    def _bracket(self, q: float, start: int) -> tuple[int, int] | None:
        """A failing ``lo`` (0 when none) and a passing ``hi``, by doubling or halving."""
        d = min(max(int(start), 1), self.d_max)
        if self.passes(d, q):
            hi = d
            while hi > 1:
                down = hi // 2
                if not self.passes(down, q):
                    return down, hi
                hi = down
            return 0, 1
        lo = d
        while lo < self.d_max:
            up = min(2 * lo, self.d_max)
            if self.passes(up, q):
                return lo, up
            lo = up
        return None

    # The interval's ends are found by fixed-sequence tests: walking away from ``d*``'s
    # far side towards it and stopping at the first dimension that is not decided, so
    # at most one dimension on the wrong side of the true ``d*`` is ever tested for
    # each end, and each end errs with probability at most 2.5%.

    def _lower_end(self, q: float, d_star: int) -> int:
        """One more than the largest dimension shown to fail, walking up from below."""
        low = 0
        for d in sorted(d for d in self.curve if d < d_star):
            if self.decided(d, q) >= 0:
                break
            low = d
        if low == 0 and d_star > 1:
            probes = sorted({min(d_star - 1, max(1, math.floor(d_star * (1 - step))))
                             for step in CONFIRM_STEPS})
            for probe in probes:
                self.run_to(probe, self.max_trials)
                if self.decided(probe, q) >= 0:
                    break
                low = probe
        for _ in range(REFINE_PROBES):
            if d_star - low <= self.gap(d_star) or low == 0:
                break
            mid = (low + d_star) // 2
            self.run_to(mid, self.max_trials)
            if self.decided(mid, q) >= 0:
                break
            low = mid
        return low + 1

    def _upper_end(self, q: float, d_star: int) -> int | None:
        """The smallest dimension shown to pass, walking down from above."""
        high = None
        for d in sorted((d for d in self.curve if d >= d_star), reverse=True):
            if self.decided(d, q) <= 0:
                break
            high = d
        if high is None:
            probes = sorted({max(d_star, min(self.d_max, math.ceil(d_star * (1 + step))))
                             for step in CONFIRM_STEPS}, reverse=True)
            for probe in probes:
                self.run_to(probe, self.max_trials)
                if self.decided(probe, q) <= 0:
                    break
                high = probe
        if high is None:
            return None
        for _ in range(REFINE_PROBES):
            if high - d_star <= self.gap(d_star) - 1:
                break
            mid = (d_star + high) // 2
            self.run_to(mid, self.max_trials)
            if self.decided(mid, q) <= 0:
                break
            high = mid
        return high

    def curve_points(self) -> list[dict[str, int]]:
        """The probed points, by increasing dimension, as stored in a record."""
        return [{"d": d, "trials": t.trials, "successes": t.successes}
                for d, t in sorted(self.curve.items()) if t.trials]
