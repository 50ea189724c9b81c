"""The d* search: exact binomial bounds, and searches on synthetic monotone curves."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from scipy import stats
from superposition_harness.search import (
    DimensionSearch,
    SearchError,
    Tally,
    binomial_tail_upper,
    clopper_pearson,
)

# --------------------------------------------------------------------- binomial bounds

CP_CASES = [(x, n) for n in (1, 2, 5, 10, 32, 64, 100, 257, 1000)
            for x in sorted({0, 1, n // 3, n // 2, n - 1, n})]


@pytest.mark.parametrize("x, n", CP_CASES)
def test_clopper_pearson_matches_beta_quantiles(x, n):
    """The interval is [Beta(α/2; x, n-x+1), Beta(1-α/2; x+1, n-x)] to 1e-6 (0, 1 at the ends)."""
    lower, upper = clopper_pearson(x, n)
    expected_lower = 0.0 if x == 0 else stats.beta.ppf(0.025, x, n - x + 1)
    expected_upper = 1.0 if x == n else stats.beta.ppf(0.975, x + 1, n - x)
    assert lower == pytest.approx(expected_lower, abs=1e-6)
    assert upper == pytest.approx(expected_upper, abs=1e-6)
    assert lower <= x / n <= upper


@pytest.mark.parametrize("x, n, alpha", [(3, 20, 0.1), (17, 40, 0.01), (0, 50, 0.2),
                                         (50, 50, 0.05 / 3)])
def test_clopper_pearson_other_confidence_levels(x, n, alpha):
    """Other alpha values follow the same Beta-quantile formula."""
    lower, upper = clopper_pearson(x, n, alpha)
    expected_lower = 0.0 if x == 0 else stats.beta.ppf(alpha / 2, x, n - x + 1)
    expected_upper = 1.0 if x == n else stats.beta.ppf(1 - alpha / 2, x + 1, n - x)
    assert lower == pytest.approx(expected_lower, abs=1e-6)
    assert upper == pytest.approx(expected_upper, abs=1e-6)


def test_clopper_pearson_edge_cases():
    """No trials gives [0, 1]; impossible counts raise ValueError."""
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)
    with pytest.raises(ValueError):
        clopper_pearson(-1, 4)


BINOM_CASES = [(n, x, p) for n in (1, 7, 32, 256, 1000)
               for x in sorted({1, 2, n // 4, n // 2, n - 1, n})
               for p in (1e-4, 0.05, 0.3, 0.5, 0.9, 0.999)]


@pytest.mark.parametrize("n, x, p", BINOM_CASES)
def test_binomial_tail_upper_matches_scipy(n, x, p):
    """P(X >= x) for X ~ Binomial(n, p) equals scipy's binom.sf(x - 1, n, p)."""
    expected = stats.binom.sf(x - 1, n, p)
    assert binomial_tail_upper(n, x, p) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_binomial_tail_upper_edge_cases():
    """x <= 0 is certain, x > n impossible, and p = 0 or 1 are degenerate."""
    assert binomial_tail_upper(10, 0, 0.3) == 1.0
    assert binomial_tail_upper(10, -2, 0.3) == 1.0
    assert binomial_tail_upper(10, 11, 0.3) == 0.0
    assert binomial_tail_upper(10, 3, 0.0) == 0.0
    assert binomial_tail_upper(10, 3, 1.0) == 1.0
    assert binomial_tail_upper(10, 10, 1.0) == 1.0


def test_tally_rate_and_interval():
    """A Tally's rate is successes/trials (NaN when empty) and its interval is Clopper-Pearson."""
    assert math.isnan(Tally().rate)
    tally = Tally(trials=40, successes=30)
    assert tally.rate == 0.75
    assert tally.interval() == clopper_pearson(30, 40)


# -------------------------------------------------------------------- synthetic curves


def logistic(mid: float, width: float):
    """A logistic success curve p(d) and its exact d*(q) = ceil(mid + width·logit(q))."""
    def p(d: int) -> float:
        return 1.0 / (1.0 + math.exp(-(d - mid) / width))

    def d_star(q: float) -> int:
        return math.ceil(mid + width * math.log(q / (1 - q)))
    return p, d_star


def fake_evaluate(p, seed: int, calls: list | None = None):
    """Trial t at dimension d succeeds iff U[seed, d][t] < p(d): deterministic per trial."""
    def evaluate(d: int, start: int, count: int) -> int:
        assert d >= 1 and start >= 0 and count >= 1
        if calls is not None:
            calls.append((d, start, count))
        u = np.random.default_rng([seed, d]).random(start + count)[start:]
        return int(np.count_nonzero(u < p(d)))
    return evaluate


#: The synthetic curve of the statistical tests: d*(0.5) = 3000, d*(0.95) = 3589, over 1..10000.
MID, WIDTH, D_MAX, MAX_TRIALS = 3000, 200, 10_000, 256
CURVE, TRUE_D_STAR = logistic(MID, WIDTH)
SEEDS = range(200)


@cache
def searches(q: float) -> tuple:
    """One search per seed on the logistic curve (computed once, shared by the tests)."""
    out = []
    for seed in SEEDS:
        search = DimensionSearch(fake_evaluate(CURVE, seed), d_max=D_MAX, max_trials=MAX_TRIALS)
        out.append((search.find(q, start=1000), search))
    return tuple(out)


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_estimate_lies_in_its_interval(q):
    """Every estimate is found, and lo <= d* <= hi."""
    for estimate, _ in searches(q):
        lo, hi = estimate.ci
        assert estimate.q == q
        assert estimate.d is not None and lo is not None and hi is not None
        assert lo <= estimate.d <= hi


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_estimate_is_close_to_true_d_star(q):
    """The estimates scatter around the true d*(q) (median within 1%)."""
    estimates = [estimate.d for estimate, _ in searches(q)]
    assert abs(np.median(estimates) - TRUE_D_STAR(q)) < 0.01 * TRUE_D_STAR(q)


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_search_probes_few_dimensions(q):
    """The search probes fewer than 40 distinct dimensions out of 10000 (no dense grid)."""
    for _, search in searches(q):
        assert len(search.curve) < 40
        assert search.total_trials <= 40 * MAX_TRIALS


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_reported_d_star_is_supported_by_the_trials(q):
    """p̂(d*) >= q, and p̂(d* - 1) < q whenever d* - 1 was probed (final tallies)."""
    for estimate, search in searches(q):
        assert search.curve[estimate.d].rate >= q
        below = search.curve.get(estimate.d - 1)
        assert below is not None  # bisection always measures the neighbour
        assert below.rate < q


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_interval_covers_true_d_star(q):
    """The 95% interval covers the true d*(q) for at least 92% of 200 seeds.

    The module promises a conservative 95% interval (each end wrong with probability at
    most 2.5%); 17 or more misses in 200 would happen with probability below 2% if so.
    """
    true = TRUE_D_STAR(q)
    low_misses = sum(estimate.ci[0] > true for estimate, _ in searches(q))
    high_misses = sum(estimate.ci[1] < true for estimate, _ in searches(q))
    assert low_misses + high_misses <= 16, (
        f"d*({q}) = {true}: lower end above it {low_misses} times, upper end below it "
        f"{high_misses} times, in {len(SEEDS)} searches")


@pytest.mark.parametrize("start", [1, 100, 3000, 9000, 50_000])
def test_search_from_any_start(start):
    """Bracketing up or down (or from beyond d_max) finds a supported d* near the truth."""
    search = DimensionSearch(fake_evaluate(CURVE, 7), d_max=D_MAX, max_trials=MAX_TRIALS)
    estimate = search.find(0.95, start=start)
    assert estimate.ci[0] <= estimate.d <= estimate.ci[1]
    assert abs(estimate.d - TRUE_D_STAR(0.95)) < 200
    assert all(1 <= d <= D_MAX for d in search.curve)
    assert len(search.curve) < 40


def test_trials_are_run_in_order_without_gaps():
    """At each dimension evaluate() is asked for consecutive trial numbers starting at 0."""
    calls: list = []
    search = DimensionSearch(fake_evaluate(CURVE, 3, calls), d_max=D_MAX, max_trials=MAX_TRIALS)
    search.find(0.95, start=1000)
    search.find(0.5, start=1000)
    ran: dict[int, int] = {}
    for d, start, count in calls:
        assert start == ran.get(d, 0)
        ran[d] = start + count
    assert ran == {d: t.trials for d, t in search.curve.items()}
    assert max(ran.values()) <= MAX_TRIALS
    points = search.curve_points()
    assert [p["d"] for p in points] == sorted(search.curve)
    assert all(p["trials"] == search.curve[p["d"]].trials
               and p["successes"] == search.curve[p["d"]].successes for p in points)


# --------------------------------------------------------------------- exact curves


def step(threshold: int):
    """p(d) = 1 for d >= threshold, else 0."""
    return lambda d: 1.0 if d >= threshold else 0.0


@pytest.mark.parametrize("threshold", [1, 2, 777, 1234, 9999, 10_000])
@pytest.mark.parametrize("q", [0.5, 0.95])
@pytest.mark.parametrize("start", [1, 1000, 20_000])
def test_step_curve_gives_exact_answer(threshold, q, start):
    """A step at D gives d* = D exactly with the interval [D, D]."""
    search = DimensionSearch(fake_evaluate(step(threshold), 0), d_max=10_000, max_trials=256)
    estimate = search.find(q, start=start)
    assert estimate.d == threshold
    assert estimate.ci == (threshold, threshold)
    assert len(search.curve) < 40


@pytest.mark.parametrize("threshold", [1, 1234])
def test_step_curve_with_certain_target(threshold):
    """q = 1: d* = D, but no finite number of trials shows p >= 1 with confidence."""
    search = DimensionSearch(fake_evaluate(step(threshold), 0), d_max=10_000, max_trials=256)
    estimate = search.find(1.0, start=1000)
    assert estimate.d == threshold
    assert estimate.ci == (threshold, None)


def test_unreachable_target_gives_none():
    """A curve that never reaches q gives d = None and no upper end."""
    p_max_80 = lambda d: 0.8 * CURVE(d)  # noqa: E731
    search = DimensionSearch(fake_evaluate(p_max_80, 1), d_max=5000, max_trials=256)
    estimate = search.find(0.95, start=100)
    assert estimate.d is None
    assert estimate.ci[1] is None
    assert estimate.ci[0] is not None and estimate.ci[0] > 1
    assert 5000 in search.curve  # the search looked as far as it was allowed to
    assert len(search.curve) < 40


def test_never_succeeding_curve_gives_none():
    """p ≡ 0 gives d = None; the interval says d* > d_max."""
    search = DimensionSearch(fake_evaluate(lambda d: 0.0, 1), d_max=4000, max_trials=64)
    estimate = search.find(0.5, start=10)
    assert estimate.d is None
    assert estimate.ci == (4001, None)


# ------------------------------------------------------------------- shared curves


def test_searches_for_two_targets_share_the_curve():
    """A repeated search reuses its tallies; q = 0.5 after q = 0.95 never costs more than alone."""
    p, _ = logistic(2000, 100)
    search = DimensionSearch(fake_evaluate(p, 5), d_max=D_MAX, max_trials=MAX_TRIALS)
    reliable = search.find(0.95, start=1000)
    after_first = search.total_trials
    probed_first = {d: t.trials for d, t in search.curve.items()}
    again = search.find(0.95, start=1000)
    assert again.d == reliable.d
    assert search.total_trials - after_first <= 0.25 * after_first

    before_even = search.total_trials
    even = search.find(0.5, start=reliable.d)
    extra = search.total_trials - before_even
    fresh = DimensionSearch(fake_evaluate(p, 5), d_max=D_MAX, max_trials=MAX_TRIALS)
    fresh_even = fresh.find(0.5, start=reliable.d)
    # Near-threshold probes of the first search make the second one's interval walks
    # stop earlier, so it may refine a little more; it never costs much more.
    assert extra <= 1.25 * fresh.total_trials
    assert even.d < reliable.d
    assert abs(even.d - fresh_even.d) < 50
    # Dimensions measured by the first search were extended, never measured afresh.
    assert all(search.curve[d].trials >= n for d, n in probed_first.items())
    # Both estimates are still supported by the shared, final tallies.
    for estimate in (reliable, even):
        assert search.curve[estimate.d].rate >= estimate.q
        assert search.curve[estimate.d - 1].rate < estimate.q


# ------------------------------------------------------------------ settings, stages


def _never(d: int, start: int, count: int) -> int:
    raise AssertionError("evaluate must not be called")


@pytest.mark.parametrize("options", [dict(d_max=0, max_trials=32), dict(d_max=-5, max_trials=32),
                                     dict(d_max=100, max_trials=0),
                                     dict(d_max=100, max_trials=-1),
                                     dict(d_max=100, max_trials=32, resolution=-0.1),
                                     dict(d_max=100, max_trials=32, resolution=0.5)])
def test_invalid_settings_raise(options):
    """A non-positive d_max or max_trials raises SearchError."""
    with pytest.raises(SearchError):
        DimensionSearch(_never, **options)


@pytest.mark.parametrize("first_stage", [0, -4])
def test_invalid_first_stage_raises(first_stage):
    """A non-positive first stage cannot work and raises SearchError (instead of looping)."""
    with pytest.raises(SearchError):
        DimensionSearch(_never, d_max=100, max_trials=64, first_stage=first_stage)


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5, float("nan")])
def test_invalid_target_raises(q):
    """q outside (0, 1] raises SearchError before any trial runs."""
    search = DimensionSearch(_never, d_max=100, max_trials=32)
    with pytest.raises(SearchError):
        search.find(q, start=10)


@pytest.mark.parametrize("max_trials, first_stage, expected", [
    (1000, 32, [32, 64, 128, 256, 512, 1000]),
    (256, 32, [32, 64, 128, 256]),
    (33, 32, [32, 33]),
    (32, 32, [32]),
    (20, 32, [20]),
    (1, 32, [1]),
    (100, 10, [10, 20, 40, 80, 100]),
])
def test_stages_double_up_to_max_trials(max_trials, first_stage, expected):
    """Stages are first_stage, doubling, capped at (and ending with) max_trials."""
    search = DimensionSearch(_never, d_max=100, max_trials=max_trials, first_stage=first_stage)
    assert search.stages() == expected


def test_probe_stops_as_soon_as_decided():
    """A clear pass or failure is decided after the first stage of 32 trials."""
    search = DimensionSearch(fake_evaluate(step(50), 0), d_max=100, max_trials=1024)
    assert search.passes(10, 0.5) is False
    assert search.curve[10].trials == 32
    assert search.decided(10, 0.5) == -1
    assert search.passes(60, 0.5) is True
    assert search.curve[60].trials == 32
    assert search.decided(60, 0.5) == 1
    assert search.decided(70, 0.5) == 0  # never probed


def test_probe_undecided_runs_to_max_trials():
    """p̂(d) = q exactly stays undecided and is run to max_trials (stages 32, ..., 256, 300)."""
    calls: list = []

    def half(d: int, start: int, count: int) -> int:
        calls.append(count)
        return count // 2

    search = DimensionSearch(half, d_max=100, max_trials=300)
    assert search.passes(10, 0.5) is True
    assert search.curve[10].trials == 300
    assert calls == [32, 32, 64, 128, 44]
    assert search.decided(10, 0.5) == 0


# ------------------------------------------------------------------- resolution


@cache
def resolved_searches(q: float, resolution: float) -> tuple:
    out = []
    for seed in range(60):
        search = DimensionSearch(fake_evaluate(CURVE, seed), d_max=D_MAX, max_trials=MAX_TRIALS,
                                 resolution=resolution)
        out.append((search.find(q, start=1000), search))
    return tuple(out)


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_a_coarser_resolution_stops_bisection_within_it(q):
    """d* passes and some probe at most ``resolution·d*`` below it fails: the bracket
    was narrowed to the resolution and no further than needed."""
    for estimate, search in resolved_searches(q, 0.02):
        gap = search.gap(estimate.d)
        assert gap == math.floor(0.02 * estimate.d)
        assert search.curve[estimate.d].rate >= q
        assert any(estimate.d - gap <= d < estimate.d and t.rate < q for d, t in search.curve.items())


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_a_coarser_resolution_saves_trials_and_keeps_the_estimate(q):
    fine = resolved_searches(q, 0.0)
    coarse = resolved_searches(q, 0.02)
    assert sum(s.total_trials for _, s in coarse) < 0.85 * sum(s.total_trials for _, s in fine)
    medians = [np.median([e.d for e, _ in runs]) for runs in (fine, coarse)]
    assert abs(medians[1] - medians[0]) < 0.02 * medians[0]
    covered = sum(e.ci[0] <= TRUE_D_STAR(q) <= e.ci[1] for e, _ in coarse)
    assert covered >= 0.9 * len(coarse)


def test_gap_is_at_least_one_dimension():
    search = DimensionSearch(_never, d_max=100, max_trials=32, resolution=0.01)
    assert search.gap(5) == 1 and search.gap(250) == 2 and search.gap(1000) == 10


# ----------------------------------------------------------------------- confirmation


@cache
def confirmed_searches() -> tuple:
    """The searches of :func:`searches` at q = 0.95, each candidate confirmed on 512 trials."""
    out = []
    for seed in SEEDS:
        search = DimensionSearch(fake_evaluate(CURVE, seed), d_max=D_MAX, max_trials=MAX_TRIALS,
                                 confirm_trials=2 * MAX_TRIALS)
        out.append((search.find(0.95, start=1000), search))
    return tuple(out)


def test_a_confirmed_d_star_does_not_flatter_and_scatters_less():
    """Over 200 seeds the true p(d*) averages at least q − 0.005 and spreads less than without
    confirmation; the interval still covers the true d* in at least 92% of them."""
    confirmed = [CURVE(estimate.d) for estimate, _ in confirmed_searches()]
    plain = [CURVE(estimate.d) for estimate, _ in searches(0.95)]
    assert np.mean(confirmed) >= 0.95 - 0.005
    assert np.std(confirmed) < np.std(plain)
    true = TRUE_D_STAR(0.95)
    assert sum(e.ci[0] <= true <= e.ci[1] for e, _ in confirmed_searches()) >= 184


def test_a_confirmed_d_star_passes_on_all_its_trials():
    """d* has run its confirmation trials and p̂ ≥ q holds on all of them; the neighbour
    below it fails."""
    for estimate, search in confirmed_searches():
        tally = search.curve[estimate.d]
        assert tally.trials == 2 * MAX_TRIALS and tally.rate >= 0.95
        assert search.curve[estimate.d - 1].rate < 0.95


def test_a_candidate_its_further_trials_contradict_is_never_reported():
    """Trials past the probe's 256 all fail: no candidate survives its confirmation, so
    none is reported, although every probe of the curve passes from d = 500 up."""
    def evaluate(d: int, start: int, count: int) -> int:
        return sum(d >= 500 and t < MAX_TRIALS for t in range(start, start + count))

    search = DimensionSearch(evaluate, d_max=2000, max_trials=MAX_TRIALS, confirm_trials=2 * MAX_TRIALS)
    estimate = search.find(0.95, start=700)
    assert estimate.d is None and estimate.ci[1] is None


def test_confirmation_trials_never_decide_a_dimension():
    """The tests behind the interval use a probe's own trials only: a dimension whose
    further trials all fail is decided as passing on its first 256."""
    def evaluate(d: int, start: int, count: int) -> int:
        return sum(t < MAX_TRIALS for t in range(start, start + count))

    search = DimensionSearch(evaluate, d_max=100, max_trials=MAX_TRIALS, confirm_trials=4 * MAX_TRIALS)
    tally = search.run_to(50, 4 * MAX_TRIALS)
    assert (tally.trials, tally.successes, tally.probe_trials, tally.probe_successes) == (1024, 256, 256, 256)
    assert search.decided(50, 0.95) == 1 and tally.rate < 0.95


def test_confirmation_asks_for_its_trials_in_order_after_the_probe():
    calls: list = []
    search = DimensionSearch(fake_evaluate(CURVE, 3, calls), d_max=D_MAX, max_trials=MAX_TRIALS,
                             confirm_trials=3 * MAX_TRIALS)
    estimate = search.find(0.95, start=1000)
    ran: dict[int, int] = {}
    for d, start, count in calls:
        assert start == ran.get(d, 0) and (start >= MAX_TRIALS or start + count <= MAX_TRIALS)
        ran[d] = start + count
    assert ran[estimate.d] == 3 * MAX_TRIALS
    assert max(ran.values()) == 3 * MAX_TRIALS


def test_a_confirmation_smaller_than_a_probe_is_refused():
    with pytest.raises(SearchError, match="confirmation needs at least the 256 trials of a probe"):
        DimensionSearch(fake_evaluate(CURVE, 0), d_max=D_MAX, max_trials=MAX_TRIALS, confirm_trials=100)
