"""Checking result records: does every number in a record follow from its own evidence?

A record stores, for every probed dimension (or ``k``), how many trials ran, how many
succeeded and which ones: one outcome bit per trial. ``harness verify`` derives again,
from that evidence alone, every field that the leaderboard shows or ranks by, and says
a record is **verified** only when all of it holds:

1. **Its counts come from its outcomes**: each probe's outcome bits number its trials
   and add up to its successes; the probes' trials add up to the record's.
2. **Its estimates come from its counts**: the search is replayed on the stored
   outcomes with the record's settings, and must probe the same points and reach the
   same ``d*``, ``d*(0.5)`` (or ``k*``, ``k*(0.5)``), intervals, trial counts and note.
3. **Its score comes from its estimates**: ``entropy_bits``, ``bits_per_dim`` and its
   interval, ``dims_per_bit`` and its interval, the limit of its track (``d_shannon``
   or ``d_counting``) and the ratio to it are computed again from the problem, the
   estimates and the target (``results.score_fields``).
4. **Its outcomes come from its trials**: a random sample of its trials is re-run from
   the problem's seed with the installed decoder, and each must succeed or fail as stored.
   A decoder that reads files (an encoder's weights) must first say it reads the same
   ones: its ``identity()`` (their SHA-256) must equal the record's ``decoder_identity``.

Any field that differs from its derivation makes the record **failed** (exit status 1).
A record whose evidence is incomplete is **unverifiable** (exit status 3), never
verified: it has no per-trial outcomes, it was made by another harness version (whose
search cannot be replayed here), its decoder is not installed here at the package and
version it names, it holds fields this harness does not make, or its dictionary file
or the files its decoder reads are not here as they were. Steps 1 and 3 run whatever
the versions, so an edited count or score fails even then. What a record says of where
and how it was made (``provenance``: machine, date, command; ``wall_seconds``,
``peak_memory_bytes``) is the maker's statement: it is shown, never derived.

**The sample.** ``DEFAULT_SAMPLE`` trials (all of them in a smaller record) are drawn
uniformly without replacement, from a seed taken from fresh entropy unless ``--seed``
fixes it, so whoever wrote a record cannot know which of its trials will be re-run; the
seed is reported so that the same check can be repeated. If a fraction ``f`` of a
record's trials came out otherwise than stored, a sample of ``m`` trials misses all of
them with probability at most ``(1 − f)^m``: 459 trials catch a record with 1% of its
trials flipped with probability at least 0.99 (:func:`detection_probability` gives the
exact figure for a record's size).

**Resuming.** Re-running a sample of a large record takes long (a paper-suite record's
459 trials are over a hundred dictionary draws at ``N = 2^20``). The trials re-run are
journaled as they come, draw by draw (``journal.Journal``), in a directory of the
verifier's own (``--journal``, by default under ``$XDG_CACHE_HOME``): a check stopped
midway and run again with the same seed takes from its journal the trials an earlier
process of it re-ran, and re-runs the rest; the journal is removed once every trial of
the sample is re-run, and the verdict says how many came from it (``resumed``). A
journal is named by the record's measurement key, since an outcome does not depend on
the sample that re-runs it; it is used only by the same code (harness version, commit,
state of the checkout) that wrote it. It is never looked for beside the records
checked: a journal is the word of whoever wrote it, and a record's author must not be
able to answer for the trials that check it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .decoder import Decoder, ParameterError, decoder_identity, resolve_params
from .journal import Journal, open_journal
from .memory import DEFAULT_MEMORY
from .plugins import DecoderEntry, Registry
from .problem import Problem, ProblemError, Track, track_of
from .results import (
    READABLE_SCHEMAS,
    VOLATILE,
    decode_outcomes,
    make_record,
    record_settings,
    score_fields,
    stored_measurement_key,
)
from .runner import DecoderRun, LocalTrials, RunSettings, fixed_dictionary, measure, search_limit
from .units import format_size

#: The default sample is sized so that a record with this fraction of its trials
#: flipped is caught with at least this probability.
DETECT_FRACTION, DETECT_PROBABILITY = 0.01, 0.99

#: Trials re-run per record by default: the smallest ``m`` with ``(1 − f)^m ≤ 1 − p``.
DEFAULT_SAMPLE = math.ceil(math.log(1 - DETECT_PROBABILITY) / math.log(1 - DETECT_FRACTION))

VERIFIED, FAILED, UNVERIFIABLE, SKIPPED = "verified", "failed", "unverifiable", "skipped"

#: Floats derived again may differ from a record's in their last bits when the record was
#: made on another platform (``lgamma`` is not correctly rounded everywhere); anything
#: further apart is a different number.
RELATIVE_TOLERANCE = 1e-9


def detection_probability(trials: int, sample: int, fraction: float = DETECT_FRACTION) -> float:
    """The probability that re-running ``sample`` of a record's ``trials`` trials, drawn
    uniformly without replacement, meets at least one of the ``⌈fraction·trials⌉`` that
    came out otherwise than stored (1 when the sample holds every trial)."""
    flipped = math.ceil(fraction * trials)
    if flipped == 0:
        return 0.0
    if sample >= trials or trials - flipped < sample:
        return 1.0
    missed = math.exp(math.lgamma(trials - flipped + 1) - math.lgamma(trials - flipped - sample + 1)
                      - math.lgamma(trials + 1) + math.lgamma(trials - sample + 1))
    return 1.0 - missed


def fresh_seed() -> int:
    """A seed for the sample that nobody could have known when the record was written."""
    return secrets.randbits(63)


@dataclass
class Verdict:
    """What verification found for one record."""

    source: str
    label: str
    status: str = VERIFIED
    reasons: list[str] = field(default_factory=list)
    rerun_trials: int = 0
    sample_seed: int | None = None
    #: Of the trials re-run, those an earlier process of this check re-ran (its journal's
    #: ``summary()``), or None.
    resumed: dict[str, Any] | None = None

    def fail(self, reason: str) -> None:
        self.status = FAILED
        self.reasons.append(reason)

    def cannot(self, reason: str) -> None:
        if self.status != FAILED:
            self.status = UNVERIFIABLE
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "record": self.label, "status": self.status,
                "reasons": self.reasons, "rerun_trials": self.rerun_trials, "sample_seed": self.sample_seed,
                "resumed": self.resumed}


def label(record: dict[str, Any]) -> str:
    """A record's short name: decoder, parameters and problem."""
    problem = record.get("problem") or {}
    params = record.get("params") or {}
    text = str(record.get("decoder", "?"))
    if params:
        text += "[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]"
    return f"{text} {_track(record).where(problem)} seed={problem.get('seed')}"


def _track(record: dict[str, Any]) -> Track:
    return track_of(record.get("problem") or {})


def _variable(record: dict[str, Any]) -> str:
    return _track(record).variable


def _same(a: Any, b: Any) -> bool:
    """Equal as the JSON of a record, floats to within :data:`RELATIVE_TOLERANCE`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b if isinstance(a, int) and isinstance(b, int) else \
            math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return type(a) is type(b) and a == b


def _problem(record: dict[str, Any], verdict: Verdict) -> Problem | None:
    """The record's problem, if it reads as one and is stored as the harness stores it."""
    stored = record.get("problem")
    try:
        problem = Problem(**stored)  # type: ignore[arg-type]
    except (TypeError, ProblemError) as exc:
        verdict.fail(f"its problem cannot be read ({exc})")
        return None
    if not _same(problem.as_record(), stored):
        verdict.fail(f"its problem {stored!r} is not one the harness writes ({problem.as_record()!r})")
        return None
    return problem


def _check_score(record: dict[str, Any], problem: Problem, verdict: Verdict) -> None:
    """Step 3: the score fields, derived again from the problem and the stored estimates."""
    try:
        derived = score_fields(problem, record, float(record["target"]), int(record["schema"]))
    except (KeyError, TypeError, ValueError) as exc:
        verdict.fail(f"its score cannot be derived from its estimates ({exc})")
        return
    for key, value in derived.items():
        if key not in record:
            verdict.fail(f"it lacks {key}, which its estimates give as {value!r}")
        elif not _same(record[key], value):
            verdict.fail(f"its {key} is {record[key]!r} but its estimates give {value!r}")


def _stored_outcomes(record: dict[str, Any], verdict: Verdict) -> dict[int, np.ndarray] | None:
    """Step 1: each probe's outcomes, checked against its counts; None if any probe
    lacks them (the record cannot then be checked trial by trial)."""
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
        if value in outcomes:
            verdict.fail(f"it holds two probes at {variable} = {value}")
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
    if not complete:
        verdict.cannot("its probes do not hold their trials' outcomes, so nothing in it can be checked "
                       "trial by trial (it was made before they were stored, or they were removed)")
        return None
    return outcomes


def _replay(record: dict[str, Any], problem: Problem, outcomes: dict[int, np.ndarray],
            verdict: Verdict) -> None:
    """Step 2: the search, replayed on the stored outcomes, must give the record back, field
    by field (the provenance, timings and the outcome bits themselves aside)."""
    try:
        settings = record_settings(record)
    except (KeyError, TypeError, ValueError) as exc:
        verdict.fail(f"its search settings cannot be read ({exc})")
        return
    variable = _variable(record)

    def stored(value: int, start: int, count: int) -> int:
        bits = outcomes.get(value)
        if bits is None or start + count > bits.size:
            raise LookupError(f"the search needs trials {start}..{start + count - 1} at {variable} = "
                              f"{value}, which the record does not hold")
        return int(bits[start:start + count].sum())

    run = DecoderRun(problem=problem, settings=settings, d_max=search_limit(problem, settings),
                     params=dict(record.get("params") or {}))
    try:
        measure(run, stored)
    except Exception as exc:  # the search needs trials the record does not hold, or its counts break it
        verdict.fail(f"its search does not replay: {exc}")
        return
    run.wall_seconds = float(record.get("wall_seconds") or 0.0)
    again = make_record(run, decoder_name=str(record.get("decoder")),
                        plugin_package=str(record.get("plugin_package")),
                        plugin_version=str(record.get("plugin_version")), provenance={},
                        schema=int(record.get("schema") or 0),
                        identity=record.get("decoder_identity"))  # checked against the decoder in step 4
    for key in sorted(set(again) | set(record)):
        if key in VOLATILE:
            continue
        if key not in again:
            verdict.cannot(f"it holds a field the harness does not make, {key}, which nothing derives")
        elif key not in record:
            verdict.fail(f"it lacks {key}, which its counts give as {again[key]!r}")
        elif key == "curve":
            bare = [{k: v for k, v in point.items() if k != "outcomes"} for point in record["curve"]]
            if not _same(bare, again["curve"]):
                probed = [p.get(variable) for p in again["curve"]]
                verdict.fail(f"its search probes {probed} with other trial counts than its curve holds")
        elif not _same(record[key], again[key]):
            verdict.fail(f"its {key} is {record[key]!r} but its counts give {again[key]!r}")


def _installed(record: dict[str, Any], registry: Registry, verdict: Verdict) -> DecoderEntry | None:
    """The installed decoder entry the record names (package and version included), or
    None, and why, if it is not installed so; its parameters must be the decoder's own."""
    name = record.get("decoder")
    entry = registry.decoders.get(str(name))
    if entry is None:
        verdict.cannot(f"decoder {name!r} is not installed")
        return None
    if (entry.package, entry.version) != (record.get("plugin_package"), record.get("plugin_version")):
        verdict.cannot(f"it names {record.get('plugin_package')} {record.get('plugin_version')}, but "
                       f"decoder {name!r} is installed from {entry.package} {entry.version}")
        return None
    params = record.get("params")
    try:
        resolved = resolve_params(entry.cls, params if isinstance(params, dict) else {})
    except ParameterError as exc:
        verdict.fail(f"its params are not {name!r}'s ({exc})")
        return None
    if not _same(resolved, params):
        verdict.fail(f"its params {params!r} are not what {name!r} {entry.version} runs with ({resolved!r})")
        return None
    return entry


def _decoder(record: dict[str, Any], registry: Registry, verdict: Verdict) -> Decoder | None:
    """The installed decoder that made the record, made with its parameters, or None (and why)."""
    entry = _installed(record, registry, verdict)
    if entry is None:
        return None
    try:
        return entry.cls(**record["params"])
    except (ParameterError, TypeError, ValueError, OSError) as exc:  # an SAE's weights that are not here
        verdict.cannot(f"decoder {entry.name!r} cannot be made with the record's parameters ({exc})")
        return None


def check_without_trials(record: dict[str, Any], source: str, registry: Registry) -> Verdict:
    """Everything :func:`verify_record` checks short of re-running trials (steps 1–3, and
    that the decoder it names is installed): what ``harness publish`` checks of every row.
    ``verified`` then means *checked*: every number follows from the record's outcomes."""
    verdict = Verdict(source=source, label=label(record))
    if record.get("status") != "ok":
        verdict.status = SKIPPED
        verdict.reasons.append("it records an error, not a measurement")
        return verdict
    check_record(record, verdict)
    if verdict.status != FAILED:
        _installed(record, registry, verdict)
    return verdict


def _sample(record: dict[str, Any], sample: int | None, seed: int) -> list[tuple[int, list[int]]]:
    """The trials to re-run, as (value, trial indices) pairs: ``sample`` trials drawn
    uniformly without replacement (all if None or if the record has no more, none if 0).
    The draw depends on ``seed`` and the record's measurement, not on where the record
    sits in its file."""
    if sample == 0:
        return []
    variable = _variable(record)
    points = [(int(p[variable]), int(p["trials"])) for p in record["curve"]]
    key = stored_measurement_key(record) or label(record)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    total = sum(trials for _, trials in points)
    chosen = np.arange(total) if sample is None or sample >= total else \
        np.sort(rng.choice(total, size=sample, replace=False))
    offsets = np.cumsum([0] + [trials for _, trials in points])
    picks: list[tuple[int, list[int]]] = []
    for i, (value, _) in enumerate(points):
        mine = chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
        if mine.size:
            picks.append((value, [int(t) for t in mine]))
    return picks


def _by_draw(problem: Problem, trials: list[int]) -> list[list[int]]:
    """``trials`` (increasing) in groups that share a dictionary draw: the unit of work a
    journal keeps, since a draw is made once for all of its trials."""
    groups: dict[int, list[int]] = {}
    for trial in trials:
        groups.setdefault(problem.locate(trial)[0], []).append(trial)
    return list(groups.values())


def _rerun(problem: Problem, variable: str, decoder: Decoder, dictionary: Any,
           picks: list[tuple[int, list[int]]], outcomes: dict[int, np.ndarray],
           verdict: Verdict, on_trials: Callable[[int], None] | None,
           journal: Journal | None = None, memory: int = DEFAULT_MEMORY,
           note: Callable[[str], None] | None = None) -> bool:
    """Step 4: re-run the picked trials and compare them with the record's outcomes; True
    once every one of them was re-run (or found in ``journal``, which keeps each draw's
    outcomes as they come). ``memory`` is the budget of the re-runs (it changes their speed
    only); ``note`` hears when it is too small to keep a draw's sign bits."""
    report = None if on_trials is None else (lambda count, value: on_trials(count))
    try:
        source = LocalTrials(problem, decoder, RunSettings(memory=memory), dictionary, report)
        if note is not None and picks:
            hint = memory_hint(problem, max(value for value, _ in picks), source.working_bytes, memory)
            if hint:
                note(f"{verdict.label}: {hint}")
        for value, trials in picks:
            again: list[bool] = []
            for group in _by_draw(problem, trials):
                known: list[bool | None] = journal.recall(value, group) if journal is not None else \
                    [None] * len(group)
                missing = [trial for trial, outcome in zip(group, known, strict=True) if outcome is None]
                if on_trials is not None and len(missing) < len(group):
                    on_trials(len(group) - len(missing))
                if missing:
                    fresh = source.outcomes(value, missing)
                    if journal is not None:
                        journal.keep(value, missing, fresh)
                    new = iter(fresh)
                    known = [next(new) if outcome is None else outcome for outcome in known]
                again += [bool(outcome) for outcome in known]
            verdict.rerun_trials += len(trials)
            stored = outcomes[value][trials]
            differ = [t for t, a, b in zip(trials, again, stored, strict=True) if a != bool(b)]
            if differ:
                shown = ", ".join(str(t) for t in differ[:5]) + (" …" if len(differ) > 5 else "")
                verdict.fail(f"at {variable} = {value}, {len(differ)} of {len(trials)} re-run trials "
                             f"came out otherwise than stored (trials {shown})")
    except Exception as exc:  # the decoder's failure is a finding about the record
        verdict.fail(f"re-running its trials failed: {type(exc).__name__}: {exc}")
        return False
    return True


def memory_hint(problem: Problem, d: int, working_bytes: int | None, memory: int) -> str | None:
    """What to say when the sign bits of a Rademacher draw at dimension ``d`` do not fit in
    what a budget of ``memory`` leaves for them besides the run's ``working_bytes`` (each
    product then makes and unpacks its blocks again); None when they fit or the problem
    keeps no such bits."""
    if problem.fixed or problem.dictionary != "rademacher" or working_bytes is None:
        return None
    bits = problem.n * -(-d // 64) * 8
    left = max(0, memory - working_bytes)
    if bits <= left:
        return None
    wanted = math.ceil((working_bytes + bits) / (1 << 30))
    return (f"the sign bits of its draws at d = {d} ({format_size(bits)}) do not fit in what the memory "
            f"budget of {format_size(memory)} leaves for them ({format_size(left)}), so each product "
            f"makes them again, several times slower; give --memory {wanted}GiB or more to check it "
            "faster (the outcomes are the same).")


def check_record(record: dict[str, Any], verdict: Verdict) -> tuple[Problem, dict[int, np.ndarray]] | None:
    """Steps 1–3, which need nothing but the record: its problem and outcomes when they
    hold up, else None with ``verdict`` saying why. ``harness publish`` runs these."""
    if record.get("schema") not in READABLE_SCHEMAS:
        verdict.cannot(f"it is written in record schema {record.get('schema')!r}, which this harness "
                       f"cannot read (it reads {', '.join(map(str, READABLE_SCHEMAS))})")
        return None
    made_by = (record.get("provenance") or {}).get("harness_version")
    if made_by != __version__:
        verdict.cannot(f"it was made with harness {made_by}, this is {__version__}")
    problem = _problem(record, verdict)
    if problem is None:
        return None
    _check_score(record, problem, verdict)
    outcomes = _stored_outcomes(record, verdict)
    if outcomes is None:
        return None
    if made_by == __version__:
        _replay(record, problem, outcomes, verdict)
    return problem, outcomes


def verify_record(record: dict[str, Any], source: str, registry: Registry, *,
                  sample: int | None = DEFAULT_SAMPLE, seed: int | None = None,
                  on_trials: Callable[[int], None] | None = None,
                  journals: str | os.PathLike[str] | None = None,
                  warn: Callable[[str], None] | None = None,
                  note: Callable[[str], None] | None = None,
                  memory: int = DEFAULT_MEMORY) -> Verdict:
    """Verify one record (steps 1–4 of this module's docstring); ``sample=None`` re-runs
    every trial, ``seed=None`` draws the sample from fresh entropy. With ``journals`` (a
    directory of the verifier's own), the re-run trials are journaled there as they come,
    and a check stopped midway resumes with the same seed (see "Resuming" above); ``warn``
    hears of a journal that cannot be kept or used, ``note`` that a check resumes or that
    ``memory``, the re-runs' budget (speed only, as for a run), is too small to keep a
    draw."""
    verdict = Verdict(source=source, label=label(record))
    if record.get("status") != "ok":
        verdict.status = SKIPPED
        verdict.reasons.append("it records an error, not a measurement")
        return verdict
    checked = check_record(record, verdict)
    if verdict.status == FAILED:
        return verdict
    decoder = _decoder(record, registry, verdict)
    if checked is None or decoder is None or verdict.status != VERIFIED:
        return verdict
    problem, outcomes = checked
    identity, failure = decoder_identity(decoder)
    if failure is not None:
        verdict.cannot(f"decoder {record.get('decoder')!r} cannot say what it reads: {failure}")
        return verdict
    if identity is not None and record.get("decoder_identity") is None:
        verdict.cannot(f"it does not name the files decoder {record.get('decoder')!r} read "
                       "(decoder_identity; made before records held it), so they cannot be checked")
        return verdict
    if identity != record.get("decoder_identity"):
        verdict.cannot(f"decoder {record.get('decoder')!r} made with its parameters is not the one it "
                       f"was measured with: its identity is {_shown(identity)}, the record's "
                       f"{_shown(record.get('decoder_identity'))} (the files it reads have changed)")
        return verdict
    dictionary = None
    if problem.fixed:
        try:
            dictionary = fixed_dictionary(problem, max_bytes=memory)
        except ValueError as exc:  # WeightsError: the file is missing, changed or unusable
            verdict.cannot(f"its dictionary file cannot be used ({str(exc).rstrip('.')})")
            return verdict
    verdict.sample_seed = fresh_seed() if seed is None else seed
    picks = _sample(record, sample, verdict.sample_seed)
    journal = _journal(record, journals, warn) if picks else None
    try:
        if journal is not None and note is not None:
            held = sum(outcome is not None for value, trials in picks
                       for outcome in journal.recall(value, trials, replay=False))
            if held:
                total = sum(len(trials) for _, trials in picks)
                note(f"{verdict.label}: resuming from its journal, {held} of the sample's {total} trials "
                     f"already re-run ({journal.path})")
        if _rerun(problem, _variable(record), decoder, dictionary, picks, outcomes, verdict, on_trials,
                  journal, memory, note) and journal is not None:
            journal.remove()  # the check is over: nothing is left to resume
        if journal is not None:
            verdict.resumed = journal.summary()
    finally:
        if journal is not None:
            journal.release(warn)
    return verdict


def verify_journal_key(record: dict[str, Any]) -> str | None:
    """What names the journal of a check of ``record``: its measurement, whatever the
    sample (an outcome does not depend on which sample re-runs it)."""
    key = stored_measurement_key(record)
    return None if key is None else json.dumps(["verify", key])


def _journal(record: dict[str, Any], journals: str | os.PathLike[str] | None,
             warn: Callable[[str], None] | None) -> Journal | None:
    key = verify_journal_key(record)
    if journals is None or key is None:
        return None
    with contextlib.suppress(OSError):  # a directory made here is the verifier's alone
        Path(journals).mkdir(mode=0o700, parents=True, exist_ok=True)
    return open_journal(journals, key, folder="", warn=warn, work="check")


def default_journals() -> Path | None:
    """Where ``harness verify`` keeps its journals unless told otherwise: the verifier's
    own cache (``$XDG_CACHE_HOME``, else ``~/.cache``), never beside the records checked;
    None when the user has neither (no home directory)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(base):
        root = Path(base)
    else:
        try:
            root = Path.home() / ".cache"
        except (RuntimeError, KeyError):  # no HOME and no entry in the user database
            return None
    return root / "superposition-harness" / "verify"


def _shown(identity: Any) -> str:
    """An identity as a verdict shows it: its SHA-256 where it has one, else its JSON."""
    if isinstance(identity, dict) and isinstance(identity.get("sha256"), str):
        return f"sha256 {identity['sha256'][:16]}…"
    return "none" if identity is None else json.dumps(identity, sort_keys=True)[:120]


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
    earlier = sum(v.resumed["trials"] for v in verdicts if v.resumed)
    return (f"{counts[VERIFIED]} verified, {counts[FAILED]} failed, {counts[UNVERIFIABLE]} unverifiable, "
            f"{counts[SKIPPED]} skipped ({len(verdicts)} records, {trials} trials re-run"
            f"{f', {earlier} of them by an earlier process of this check' if earlier else ''})")


def sample_statement(sample: int | None) -> str:
    """What a sample of ``sample`` trials per record proves about flipped trials."""
    if sample is None:
        return "every trial of every record was re-run"
    if sample == 0:
        return "no trial was re-run (--sample 0): only the counts, the search and the score were checked"
    caught = 1.0 - (1.0 - DETECT_FRACTION) ** sample
    return (f"{sample} trials re-run per record (all of a smaller one): a record with "
            f"{DETECT_FRACTION:.0%} of its trials flipped is caught with probability at least {caught:.4f}")


__all__ = ["DEFAULT_SAMPLE", "DETECT_FRACTION", "DETECT_PROBABILITY", "Verdict", "check_record",
           "check_without_trials",
           "detection_probability", "exit_status", "fresh_seed", "label", "planned_trials",
           "sample_statement", "summary", "verify_record"]
