"""The search for the minimal dimension ``d*(q)`` and its confidence interval (SPEC §2).

The search knows nothing of decoders: it asks a callback for more trials at a
dimension and gets back how many succeeded. It assumes the success probability
``p(d)`` grows with ``d`` and finds the threshold by bracketing and bisection,
spending trials where ``p(d)`` is close to ``q``:

* A *probe* of ``d`` runs trials in stages of 32, 64, 128, … up to ``max_trials``
  and stops as soon as the exact (Clopper–Pearson) 95% interval for ``p(d)`` lies
  wholly above or below ``q``; the verdict is ``p̂(d) ≥ q``.
* *Bracketing* doubles or halves ``d`` from a starting guess until the verdict
  changes; *bisection* then narrows the bracket to two neighbouring dimensions, so
  ``d*`` is a dimension that passed with ``d* − 1`` failing, both measured.
* The interval ``[lo, hi]``: ``hi`` is the smallest probed dimension whose one-sided
  97.5% lower bound on ``p`` reaches ``q`` (``p(hi) ≥ q`` with confidence), ``lo − 1``
  the largest below ``d*`` whose upper bound falls short of ``q``. If the bisection
  left no such dimension, extra probes are placed at growing distances from ``d*``;
  each end is then narrowed by a few bisection probes at the full trial count. Under monotonicity each end errs with probability at most 2.5%, so
  ``[lo, hi]`` is a (conservative) 95% interval; a side that cannot be established
  within ``d_max`` is reported as ``None``.

The counts are computed with exact binomial tails, so no SciPy is needed at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

#: Two-sided confidence of every interval the search reports.
CONFIDENCE = 0.95

#: Relative distances from ``d*`` at which missing interval ends are looked for.
CONFIRM_STEPS = (0.04, 0.08, 0.16, 0.32, 0.64)

#: Probes spent narrowing each end of the interval once it is bracketed.
REFINE_PROBES = 6


class SearchError(ValueError):
    """Search settings that cannot work; the message names what to change."""


# ------------------------------------------------------------------ binomial bounds


def _log_binom_pmf(n: int, i: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p))


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
    terms = [_log_binom_pmf(n, i, p) for i in range(x, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


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


# --------------------------------------------------------------------- the search


@dataclass
class Tally:
    """Trials run and successes seen at one dimension."""

    trials: int = 0
    successes: int = 0

    @property
    def rate(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.successes, self.trials)


@dataclass
class Estimate:
    """``d*(q)`` with its interval; ``d`` is None if ``p(d) ≥ q`` was not reached."""

    q: float
    d: int | None
    ci: tuple[int | None, int | None]


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
    curve: dict[int, Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_max < 1:
            raise SearchError(f"the largest dimension must be at least 1, not {self.d_max}.")
        if self.max_trials < 1:
            raise SearchError(f"trials must be a positive integer, not {self.max_trials}.")

    @property
    def total_trials(self) -> int:
        return sum(t.trials for t in self.curve.values())

    def stages(self) -> list[int]:
        """The cumulative trial counts at which a probe checks whether it is decided."""
        stage = min(self.first_stage, self.max_trials)
        out = [stage]
        while stage < self.max_trials:
            stage = min(2 * stage, self.max_trials)
            out.append(stage)
        return out

    def run_to(self, d: int, trials: int) -> Tally:
        """Make sure at least ``trials`` trials have run at ``d``."""
        tally = self.curve.setdefault(d, Tally())
        if tally.trials < trials:
            tally.successes += self.evaluate(d, tally.trials, trials - tally.trials)
            tally.trials = trials
        return tally

    def decided(self, d: int, q: float) -> int:
        """+1 if ``p(d) ≥ q`` with confidence, −1 if ``p(d) < q`` with confidence, else 0."""
        tally = self.curve.get(d)
        if tally is None or tally.trials == 0:
            return 0
        lower, upper = tally.interval()
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
        """``d*(q)`` by bracketing from ``start`` and bisection, with its interval."""
        if not 0 < q <= 1:
            raise SearchError(f"the target success rate must lie in (0, 1], not {q}.")
        d = min(max(int(start), 1), self.d_max)
        lo, hi = 0, None  # lo: a failing dimension (0 when none), hi: a passing one
        if self.passes(d, q):
            hi = d
            while hi > 1:
                down = hi // 2
                if self.passes(down, q):
                    hi = down
                else:
                    lo = down
                    break
        else:
            lo = d
            while lo < self.d_max:
                up = min(2 * lo, self.d_max)
                if self.passes(up, q):
                    hi = up
                    break
                lo = up
            if hi is None:
                return Estimate(q=q, d=None, ci=(self._lower_end(q, self.d_max + 1), None))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.passes(mid, q):
                hi = mid
            else:
                lo = mid
        return Estimate(q=q, d=hi, ci=(self._lower_end(q, hi), self._upper_end(q, hi)))

    def _lower_end(self, q: float, d_star: int) -> int:
        failing = [d for d in self.curve if d < d_star and self.decided(d, q) < 0]
        for step in CONFIRM_STEPS:
            if failing or d_star <= 1:
                break
            probe = min(d_star - 1, max(1, math.floor(d_star * (1 - step))))
            self.run_to(probe, self.max_trials)
            if self.decided(probe, q) < 0:
                failing.append(probe)
        if not failing:
            return 1
        low, high = max(failing), d_star
        for _ in range(REFINE_PROBES):
            if high - low <= 1:
                break
            mid = (low + high) // 2
            self.run_to(mid, self.max_trials)
            if self.decided(mid, q) < 0:
                low = mid
            else:
                high = mid
        return low + 1

    def _upper_end(self, q: float, d_star: int) -> int | None:
        passing = [d for d in self.curve if d >= d_star and self.decided(d, q) > 0]
        for step in CONFIRM_STEPS:
            if passing or d_star >= self.d_max:
                break
            probe = max(d_star + 1, min(self.d_max, math.ceil(d_star * (1 + step))))
            self.run_to(probe, self.max_trials)
            if self.decided(probe, q) > 0:
                passing.append(probe)
        if not passing:
            return None
        low, high = d_star - 1, min(passing)
        for _ in range(REFINE_PROBES):
            if high - low <= 1:
                break
            mid = (low + high) // 2
            self.run_to(mid, self.max_trials)
            if self.decided(mid, q) > 0:
                high = mid
            else:
                low = mid
        return high

    def curve_points(self) -> list[dict[str, int]]:
        """The probed points, by increasing dimension, as stored in a record."""
        return [{"d": d, "trials": t.trials, "successes": t.successes}
                for d, t in sorted(self.curve.items())]
