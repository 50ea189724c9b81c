"""Checking result records: do their counts hold up when their trials are run again?

A record stores, for every probed dimension, how many trials ran, how many succeeded
and (since per-trial outcomes are kept) which ones. ``harness verify`` checks a record
in three steps, each of which a hand-edited or mistaken record fails:

1. **Its counts add up**: each probe's stored outcomes have as many trials as it
   claims and as many successes; the probes' trials sum to the record's total.
2. **Its estimates follow from its counts**: the search is replayed on the stored
   outcomes, with the record's settings, and must probe the same points and reach the
   same ``d*``, ``d*(0.5)``, intervals and trial counts.
3. **Its trials happen again**: a random sample of its trials is re-run from the
   problem's seed with the installed decoder, and each must succeed or fail as stored.
   A record made before outcomes were stored has whole probes re-run instead.

Step 3 needs the very decoder and harness that made the record. A record from another
decoder or harness version, a decoder that is not installed, or a dictionary file that
is not at hand is **unverifiable**: reported as such, never as passing. Steps 1 and 2
need nothing but the record, and run whatever the versions (step 2 only with this
harness's version, since the search may change between versions).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .decoder import Decoder, ParameterError
from .plugins import Registry
from .problem import Problem, ProblemError
from .results import decode_outcomes, stored_measurement_key
from .runner import RunSettings, TrialRunner, fixed_dictionary, run_decoder

#: Trials re-run per record by default.
DEFAULT_SAMPLE = 32

VERIFIED, FAILED, UNVERIFIABLE, SKIPPED = "verified", "failed", "unverifiable", "skipped"


@dataclass
class Verdict:
    """What verification found for one record."""

    source: str
    label: str
    status: str = VERIFIED
    reasons: list[str] = field(default_factory=list)
    rerun_trials: int = 0

    def fail(self, reason: str) -> None:
        self.status = FAILED
        self.reasons.append(reason)

    def cannot(self, reason: str) -> None:
        if self.status != FAILED:
            self.status = UNVERIFIABLE
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "record": self.label, "status": self.status,
                "reasons": self.reasons, "rerun_trials": self.rerun_trials}


def label(record: dict[str, Any]) -> str:
    """A record's short name: decoder, parameters and problem."""
    problem = record.get("problem") or {}
    params = record.get("params") or {}
    text = str(record.get("decoder", "?"))
    if params:
        text += "[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]"
    where = f"d={problem.get('d')}" if problem.get("dictionary") == "file" else f"k={problem.get('k')}"
    return f"{text} N={problem.get('n')} {where} seed={problem.get('seed')}"


def _variable(record: dict[str, Any]) -> str:
    return "k" if (record.get("problem") or {}).get("dictionary") == "file" else "d"


def _stored_outcomes(record: dict[str, Any], verdict: Verdict) -> dict[int, np.ndarray] | None:
    """Step 1: each probe's outcomes, checked against its counts; None if a probe
    has none stored (a record made before they were)."""
    variable = _variable(record)
    curve = record.get("curve")
    if not isinstance(curve, list) or not curve:
        verdict.fail("it has no curve of probes")
        return None
    outcomes: dict[int, np.ndarray] = {}
    complete = True
    total = 0
    for point in curve:
        try:
            value, trials, successes = int(point[variable]), int(point["trials"]), int(point["successes"])
        except (KeyError, TypeError, ValueError):
            verdict.fail(f"a probe lacks its {variable}, trials or successes: {point!r}")
            return None
        total += trials
        if not 0 <= successes <= trials:
            verdict.fail(f"at {variable} = {value} it claims {successes} successes in {trials} trials")
        if "outcomes" not in point:
            complete = False
            continue
        try:
            bits = decode_outcomes(str(point["outcomes"]), trials)
        except ValueError as exc:
            verdict.fail(f"at {variable} = {value} its outcomes do not fit {trials} trials ({exc})")
            continue
        if int(bits.sum()) != successes:
            verdict.fail(f"at {variable} = {value} it claims {successes} successes but its outcomes "
                         f"hold {int(bits.sum())}")
        outcomes[value] = bits
    if total != record.get("trials"):
        verdict.fail(f"its probes hold {total} trials but it claims {record.get('trials')}")
    return outcomes if complete else None


#: The fields a replayed search must reproduce.
ESTIMATES = ("d_star", "d_star_ci", "d_half", "d_half_ci", "k_star", "k_star_ci", "k_half", "k_half_ci",
             "trials", "trials_by_estimate")


def _settings(record: dict[str, Any]) -> RunSettings:
    search: dict[str, Any] = record.get("search") or {}
    limit: Any = search.get("k_max") if _variable(record) == "k" else search.get("d_max")
    trials: Any = search.get("max_trials_per_k", search.get("max_trials_per_dimension"))
    settings = RunSettings(target=float(record["target"]), max_trials=int(trials),
                           resolution=float(search.get("resolution", RunSettings.resolution)),
                           **({"k_max": int(limit)} if _variable(record) == "k" else {"d_max": int(limit)}))
    settings.validate()
    return settings


def _problem(record: dict[str, Any]) -> Problem:
    return Problem(**record["problem"])


class _Stored(Decoder):
    """Stands in for the decoder while a search is replayed from stored outcomes."""

    name = "stored"
    description = "Answers nothing: a replay reads stored outcomes."

    def decode(self, dictionary: Any, signals: np.ndarray, *, k: int, noise: float) -> Any:
        raise AssertionError("a replayed search never decodes")


class _Unstored(LookupError):
    pass


def _replay(record: dict[str, Any], outcomes: dict[int, np.ndarray], verdict: Verdict) -> None:
    """Step 2: the search, replayed on the stored outcomes, must reach the stored estimates."""
    try:
        problem, settings = _problem(record), _settings(record)
    except (KeyError, TypeError, ValueError, ProblemError) as exc:
        verdict.fail(f"its problem or search settings cannot be read ({exc})")
        return
    variable = _variable(record)

    def stored(value: int, start: int, count: int) -> int:
        bits = outcomes.get(value)
        if bits is None or start + count > bits.size:
            raise _Unstored(f"the search needs trials {start}..{start + count - 1} at {variable} = {value}, "
                            "which the record does not hold")
        return int(bits[start:start + count].sum())

    run = run_decoder(problem, _Stored(), settings, replay=stored)
    if run.error is not None:
        verdict.fail(f"its search does not replay: {run.error.split(': ', 1)[-1]}")
        return
    replayed: dict[str, Any] = {"trials": run.trials,
                                "trials_by_estimate": {f"{variable}_star": run.trials_target,
                                                       f"{variable}_half": run.trials - run.trials_target}}
    for name, estimate in (("star", run.estimate), ("half", run.half)):
        replayed[f"{variable}_{name}"] = estimate.d if variable == "d" else estimate.k  # type: ignore[union-attr]
        replayed[f"{variable}_{name}_ci"] = list(estimate.ci)  # type: ignore[union-attr]
    for key, value in replayed.items():
        if record.get(key) != value:
            verdict.fail(f"its {key} is {record.get(key)!r} but its counts give {value!r}")
    probed = sorted(p[variable] for p in run.curve)
    if probed != sorted(outcomes):
        verdict.fail(f"its search probes {probed}, not the stored {sorted(outcomes)}")


def _decoder(record: dict[str, Any], registry: Registry, verdict: Verdict) -> Decoder | None:
    """The installed decoder that made the record, or None (and why) if there is none."""
    name = record.get("decoder")
    entry = registry.decoders.get(str(name))
    made_by = (record.get("provenance") or {}).get("harness_version")
    if made_by != __version__:
        verdict.cannot(f"it was made with harness {made_by}, this is {__version__}")
    if entry is None:
        verdict.cannot(f"decoder {name!r} is not installed")
        return None
    if (entry.package, entry.version) != (record.get("plugin_package"), record.get("plugin_version")):
        verdict.cannot(f"it was made with {record.get('plugin_package')} {record.get('plugin_version')}; "
                       f"installed is {entry.package} {entry.version}")
    try:
        return entry.cls(**(record.get("params") or {}))
    except (ParameterError, TypeError, ValueError, OSError) as exc:
        verdict.cannot(f"decoder {name!r} cannot be made with the record's parameters ({exc})")
        return None


def _fixed_dictionary(problem: Problem, verdict: Verdict) -> Any:
    from .weights import WeightsError

    try:
        return fixed_dictionary(problem)
    except WeightsError as exc:
        verdict.cannot(f"its dictionary file cannot be used ({str(exc).rstrip('.')})")
        return None


def _sample(record: dict[str, Any], outcomes: dict[int, np.ndarray] | None, sample: int | None,
            seed: int) -> list[tuple[int, list[int]]]:
    """The trials to re-run, as (value, trial indices) pairs: ``sample`` trials drawn
    uniformly (all if None, none if 0); without stored outcomes, whole probes until ``sample``
    trials are reached. The draw depends on ``seed`` and the record's measurement,
    not on where the record sits in its file."""
    if sample == 0:
        return []
    variable = _variable(record)
    points = [(int(p[variable]), int(p["trials"])) for p in record["curve"]]
    key = stored_measurement_key(record) or label(record)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    total = sum(trials for _, trials in points)
    if outcomes is not None:
        chosen = np.arange(total) if sample is None or sample >= total else \
            np.sort(rng.choice(total, size=sample, replace=False))
        offsets = np.cumsum([0] + [trials for _, trials in points])
        picks: list[tuple[int, list[int]]] = []
        for i, (value, _) in enumerate(points):
            mine = chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
            if mine.size:
                picks.append((value, [int(t) for t in mine]))
        return picks
    order = rng.permutation(len(points)) if sample is not None else np.arange(len(points))
    picks, count = [], 0
    for i in order:
        value, trials = points[int(i)]
        if sample is not None and count >= max(sample, 1):
            break
        picks.append((value, list(range(trials))))
        count += trials
    return picks


def _rerun(record: dict[str, Any], decoder: Decoder, dictionary: Any,
           picks: list[tuple[int, list[int]]], outcomes: dict[int, np.ndarray] | None,
           verdict: Verdict, on_trials: Callable[[int], None] | None) -> None:
    """Step 3: re-run the picked trials and compare them with the record."""
    problem = _problem(record)
    variable = _variable(record)
    counts = {int(p[variable]): int(p["successes"]) for p in record["curve"]}
    try:
        for value, trials in picks:
            if variable == "k":
                runner = TrialRunner(problem.with_k(value), decoder, 32, on_trials, fixed=dictionary)
                again = runner.outcomes_of(int(problem.d or 0), trials)
            else:
                again = TrialRunner(problem, decoder, 32, on_trials).outcomes_of(value, trials)
            verdict.rerun_trials += len(trials)
            if outcomes is not None:
                stored = outcomes[value][trials]
                differ = [t for t, a, b in zip(trials, again, stored, strict=True) if a != bool(b)]
                if differ:
                    shown = ", ".join(str(t) for t in differ[:5]) + (" …" if len(differ) > 5 else "")
                    verdict.fail(f"at {variable} = {value}, {len(differ)} of {len(trials)} re-run trials "
                                 f"came out otherwise than stored (trials {shown})")
            elif sum(again) != counts[value]:
                verdict.fail(f"at {variable} = {value} it claims {counts[value]} successes in "
                             f"{len(trials)} trials; re-running them gives {sum(again)}")
    except Exception as exc:  # the decoder's failure is a finding about the record
        verdict.fail(f"re-running its trials failed: {type(exc).__name__}: {exc}")


def verify_record(record: dict[str, Any], source: str, registry: Registry, *,
                  sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
                  on_trials: Callable[[int], None] | None = None) -> Verdict:
    """Verify one record (steps 1–3 of this module's docstring); ``sample=None`` re-runs
    every trial."""
    verdict = Verdict(source=source, label=label(record))
    if record.get("status") != "ok":
        verdict.status = SKIPPED
        verdict.reasons.append("it records an error, not a measurement")
        return verdict
    outcomes = _stored_outcomes(record, verdict)
    if verdict.status == FAILED:
        return verdict
    same_harness = (record.get("provenance") or {}).get("harness_version") == __version__
    if outcomes is not None and same_harness:
        _replay(record, outcomes, verdict)
    elif outcomes is None:
        verdict.reasons.append("made before trials' outcomes were stored: whole probes are re-run")
    decoder = _decoder(record, registry, verdict)
    if verdict.status != VERIFIED or decoder is None:
        return verdict
    try:
        problem = _problem(record)
    except (TypeError, ProblemError) as exc:
        verdict.fail(f"its problem cannot be read ({exc})")
        return verdict
    dictionary = _fixed_dictionary(problem, verdict) if problem.fixed else None
    if verdict.status != VERIFIED:
        return verdict
    _rerun(record, decoder, dictionary, _sample(record, outcomes, sample, seed), outcomes, verdict, on_trials)
    return verdict


def planned_trials(record: dict[str, Any], sample: int | None) -> int:
    """About how many trials verifying ``record`` re-runs (for a progress bar)."""
    total = record.get("trials")
    total = total if isinstance(total, int) else 0
    return total if sample is None else min(total, sample)


def exit_status(verdicts: Sequence[Verdict]) -> int:
    """0 if every measurement verified, 1 if any failed, 3 if none failed but some
    could not be verified."""
    statuses = {v.status for v in verdicts}
    if FAILED in statuses:
        return 1
    return 3 if UNVERIFIABLE in statuses else 0


def summary(verdicts: Iterable[Verdict]) -> str:
    """One line: how many records verified, failed, could not be verified, were skipped."""
    verdicts = list(verdicts)
    counts = {s: sum(v.status == s for v in verdicts) for s in (VERIFIED, FAILED, UNVERIFIABLE, SKIPPED)}
    trials = sum(v.rerun_trials for v in verdicts)
    return (f"{counts[VERIFIED]} verified, {counts[FAILED]} failed, {counts[UNVERIFIABLE]} unverifiable, "
            f"{counts[SKIPPED]} skipped ({len(verdicts)} records, {trials} trials re-run)")


__all__ = ["DEFAULT_SAMPLE", "Verdict", "exit_status", "label", "planned_trials", "summary",
           "verify_record"]
