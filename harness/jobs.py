"""Running jobs: which decoder runs on which problem, where, which runs the store already holds.

A *job* is one decoder on one problem. This room plans the jobs of a sweep, refuses a
sweep that cannot fit the memory budget before any trial, reuses the runs the store
already holds (keyed by the one measurement identity that ``results`` owns), runs the
rest (in this process, side by side in single-threaded worker processes, or each in a
worker process of its own under a time limit) and turns each run into its record, which
it stores as soon as it is made. It reports what happens through one progress interface,
:class:`Events`; it draws nothing and parses nothing, so the command line, the Python
API and any other front end drive it alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from . import __version__, parallel
from .config import ConfigError, Sweep
from .dask_backend import Backend, run_on_dask
from .decoder import Decoder, decoder_identity, params_text, parse_params
from .dictionary import Dictionary
from .journal import Journal, discard_journal, open_journal
from .memory import DEFAULT_MEMORY, check
from .plugins import DecoderEntry, Registry
from .problem import FILE_DICTIONARY, SAE_OFFSET, Problem
from .results import (
    ResultStore,
    make_record,
    provenance,
    search_fields,
    stored_measurement_key,
    well_formed,
)
from .runner import DecoderRun, RunSettings, load_fixed, run_decoder, search_limit
from .search import min_trials_to_pass
from .workers import WorkerJob, can_run_in_a_process, run_in_workers, stdout_to_stderr

#: The distribution of the built-in decoders: ``builtin`` in a sweep selects its decoders.
BUILTIN_PACKAGE = "superposition-harness"


@dataclass(frozen=True)
class Job:
    """One decoder (made with its parameters) on one problem; ``dictionary`` is the
    loaded dictionary of a fixed-dictionary problem, None for a generated one."""

    problem: Problem
    dictionary: Dictionary | None
    decoder: Decoder
    entry: DecoderEntry
    #: The decoder's identity (``Decoder.identity``), or why it could not be had: then the
    #: job is recorded as that error without running.
    identity: dict[str, Any] | None = None
    identity_error: str | None = None

    @staticmethod
    def name_with_params(decoder: Decoder, entry: DecoderEntry) -> str:
        """The decoder's name with the parameters it was given that differ from their defaults:
        what tells two variants of one decoder apart in a label."""
        changed = _changed(decoder.params, entry)
        return f"{entry.name}[{params_text(changed)}]" if changed else entry.name

    @property
    def label(self) -> str:
        """The decoder with its parameters, and the problem: what tells two jobs apart."""
        name = self.name_with_params(self.decoder, self.entry)
        return f"{name} {self.problem.track.where(self.problem.as_record())}"

    def measurement_key(self, settings: RunSettings) -> str | None:
        """The measurement identity the job's record will have (``results.stored_measurement_key``)."""
        return stored_measurement_key({
            "decoder": self.entry.name, "plugin_version": self.entry.version,
            "params": dict(self.decoder.params), "problem": self.problem.as_record(),
            "target": settings.target,
            "search": search_fields(self.problem, settings, search_limit(self.problem, settings)),
            "provenance": {"harness_version": __version__}, "decoder_identity": self.identity})


def _defaults(entry: DecoderEntry) -> dict[str, Any]:
    return {param.name: param.default for param in entry.cls.parameters}


def _changed(params: dict[str, Any], entry: DecoderEntry) -> dict[str, Any]:
    defaults = _defaults(entry)
    return {key: value for key, value in params.items() if defaults.get(key, object()) != value}


class Events(Protocol):
    """What a front end hears of running jobs (each method is called on the calling thread)."""

    def trials(self, index: int, count: int, value: int | None) -> None:
        """Job ``index`` ran ``count`` more trials at ``value`` (its dimension ``d``, or ``k``
        on the fixed track); ``count`` 0 and ``value`` None: it has started."""

    def finished(self, index: int, record: dict[str, Any], reused: bool) -> None:
        """Job ``index`` has its record: just made and stored, or ``reused`` from the store."""


class _Silent:
    def trials(self, index: int, count: int, value: int | None) -> None:
        pass

    def finished(self, index: int, record: dict[str, Any], reused: bool) -> None:
        pass


def run_settings(sweep: Sweep, memory: int | None = None,
                 warn: Callable[[str], None] | None = None) -> RunSettings:
    """The search settings of ``sweep``, checked; ``warn`` hears of a trial cap too low to pass."""
    settings = RunSettings(target=sweep.target, max_trials=sweep.trials, batch_size=sweep.batch_size,
                           d_max=sweep.d_max, k_max=sweep.k_max, resolution=sweep.resolution,
                           memory=memory if memory is not None else DEFAULT_MEMORY)
    settings.validate()
    needed = min_trials_to_pass(settings.target, settings.max_trials)
    if settings.max_trials < needed and warn is not None:
        warn(f"with at most {settings.max_trials} trials per dimension no dimension can show "
             f"p ≥ {settings.target:g} with 95% confidence (that takes {needed}); the upper ends of "
             "the intervals will be unknown.")
    return settings


def fixed_problems(sweep: Sweep, memory: int) -> list[tuple[Problem, Dictionary | None]]:
    """The fixed-dictionary problems of the sweep, each with its loaded dictionary."""
    out: list[tuple[Problem, Dictionary | None]] = []
    for path in sweep.dictionary_files():
        dictionary, sha256 = load_fixed(path, memory, sweep.dictionary_format, sweep.dictionary_key)
        for noise, snr in sweep.noise_levels():
            out.append((Problem(n=dictionary.n, k=None, dictionary=FILE_DICTIONARY, noise=noise, snr=snr,
                                seed=sweep.seed, subsets_per_draw=sweep.subsets_per_draw,
                                d=dictionary.d, dictionary_file=path, dictionary_sha256=sha256,
                                offset=None if dictionary.offset is None else SAE_OFFSET,
                                dictionary_format=sweep.dictionary_format,
                                dictionary_key=sweep.dictionary_key), dictionary))
    return out


def choose_decoders(sweep: Sweep, registry: Registry) -> list[tuple[Decoder, DecoderEntry]]:
    """The decoders a sweep names, made with their parameters; ConfigError if none or one twice."""
    chosen: list[tuple[Decoder, DecoderEntry]] = []
    seen: set[str] = set()
    # A decoder tied to particular dictionaries (any_dictionary = False, such as an SAE's
    # encoder) needs its parameters, so it runs only when named.
    for which in sweep.decoder_sets:
        for name, entry in sorted(registry.decoders.items()):
            if not entry.cls.any_dictionary:
                continue
            if (which == "all" or entry.package == BUILTIN_PACKAGE) and name not in seen:
                seen.add(name)
                chosen.append((entry.cls(), entry))
    for spec in sweep.decoders:
        entry = registry.get(spec.name)
        given = {**parse_params(entry.cls, dict(spec.texts)), **dict(spec.values)}
        chosen.append((entry.cls(**given), entry))
    if not chosen:
        raise ConfigError("no decoder to run; name one with --plugin NAME (see `harness plugins`).")
    listed: set[str] = set()
    for decoder, entry in chosen:
        identity = json.dumps([entry.name, decoder.params], sort_keys=True, default=str)
        if identity in listed:
            shown = f"{entry.name}[{params_text(decoder.params)}]" if decoder.params else entry.name
            raise ConfigError(f"decoder {shown} is named twice (the same decoder with the same parameters); "
                              "name it once.")
        listed.add(identity)
    return chosen


def plan(problems: Sequence[tuple[Problem, Dictionary | None]],
         decoders: Sequence[tuple[Decoder, DecoderEntry]]) -> list[Job]:
    """Every decoder on every problem, problem by problem; each decoder's identity is asked once."""
    identities = [decoder_identity(decoder) for decoder, _ in decoders]
    return [Job(problem, dictionary, decoder, entry, *identity) for problem, dictionary in problems
            for (decoder, entry), identity in zip(decoders, identities, strict=True)]


def check_memory(jobs: Sequence[Job], settings: RunSettings) -> None:
    """Refuse (BudgetError), before any trial, a sweep with a run that cannot fit the memory budget."""
    for job in jobs:
        # A loaded dictionary is held twice: the matrix read from its file, and its rows.
        held = 2 * job.dictionary.nbytes_dense() if job.dictionary is not None else 0
        limit = int(job.problem.d or 0) if job.problem.fixed else search_limit(job.problem, settings)
        check(job.problem, job.decoder.batch_arrays, settings.batch_size, limit, settings.memory,
              job.entry.name, held)


def stored_runs(jobs: Sequence[Job], settings: RunSettings, store: ResultStore,
                warn: Callable[[str], None] | None = None) -> dict[int, dict[str, Any]]:
    """The jobs whose measurement the store already holds (a successful record with the
    same measurement identity), by job index."""
    stored: dict[str, dict[str, Any]] = {}
    for record in well_formed(store.load(warn=warn)):
        key = stored_measurement_key(record)
        if key is not None and record.get("status") == "ok":
            stored[key] = record
    found = {}
    for index, job in enumerate(jobs):
        key = job.measurement_key(settings)
        if key is not None and key in stored:
            found[index] = stored[key]
    return found


def _journal(job: Job, settings: RunSettings, store: ResultStore | None, reuse: bool,
             argv: Sequence[str] | None, threads: int | None,
             warn: Callable[[str], None] | None) -> Journal | None:
    """The journal a job run in this process keeps in the store (none without a store, or
    for a job whose identity failed); emptied first unless ``reuse``."""
    key = job.measurement_key(settings)
    if store is None or key is None:
        return None
    return open_journal(store.root, key, fresh=not reuse, argv=None if argv is None else list(argv),
                        threads=threads, batch_size=settings.batch_size, warn=warn)


def _discard(job: Job, settings: RunSettings, store: ResultStore | None) -> None:
    """Remove the journal of a job whose record the store holds, unless a process holds it."""
    key = job.measurement_key(settings)
    if store is not None and key is not None:
        discard_journal(store.root, key)


def _report_position(listen: Events, indices: Sequence[int], position: int, count: int, value: int) -> None:
    """A worker pool's progress (by position in its list of jobs) as the job's."""
    listen.trials(indices[position], count, value)


def _report(listen: Events, index: int, count: int, value: int) -> None:
    listen.trials(index, count, value)


@dataclass
class Outcome:
    """The records of the jobs, in job order, and which of them were reused from the store."""

    records: list[dict[str, Any]]
    reused: set[int]


def execute(jobs: Sequence[Job], settings: RunSettings, *, store: ResultStore | None = None,
            reuse: bool = True, timeout: float | None = None, threads: int | None = None,
            events: Events | None = None, warn: Callable[[str], None] | None = None,
            argv: Sequence[str] | None = None, side_by_side: bool = True,
            backend: Backend | None = None, note: Callable[[str], None] | None = None) -> Outcome:
    """Run every job, storing each record as soon as it is made.

    With several workers (and ``side_by_side``), the jobs of small generated problems run
    side by side in worker processes of one thread each (``workers.run_in_workers``); the
    others run here, one after another, with the workers inside their products. With a
    ``timeout``, every job runs in a worker process and is stopped at the limit. With a
    distributed ``backend`` (``dask_backend.connect``), every job runs there, its trials
    spread over the workers in tasks. The records come back in the order of the jobs, and
    are the same either way; their provenance says which way each was made.
    ``warn`` hears of what reading the store skipped; ``argv`` is the command the
    records' provenance states (default: this process's).

    A job run in this process keeps a journal in the store (``journal``): stopped midway
    and run again, it replays the trials its journal holds instead of decoding them again
    (``note`` hears that it does), and its record is the one an uninterrupted run makes.
    Without ``reuse`` the journal is started afresh.
    """
    check_memory(jobs, settings)
    if store is not None:
        store.check_writable()
    listen: Events = events if events is not None else _Silent()
    workers = parallel.workers()
    limiter = None if threads is None else parallel.use_threads(threads)
    records: list[dict[str, Any] | None] = [None] * len(jobs)
    try:
        reused = stored_runs(jobs, settings, store, warn) if store is not None and reuse else {}
        for index, record in reused.items():
            records[index] = record
            _discard(jobs[index], settings, store)
            listen.finished(index, record, True)

        def finish(index: int, run: DecoderRun, where: dict[str, Any],
                   journal: Journal | None = None) -> None:
            job = jobs[index]
            made = {**provenance(argv, threads=threads, batch_size=settings.batch_size), **where}
            resumed = journal.summary() if journal is not None else None
            if resumed is not None:
                made["resumed"] = resumed
                run.wall_seconds += resumed["seconds"]
            record = make_record(run, decoder_name=job.entry.name, plugin_package=job.entry.package,
                                 plugin_version=job.entry.version, provenance=made, identity=job.identity)
            if store is not None:
                store.append(record)
                if journal is not None:
                    journal.remove()
                else:  # one left by an earlier process that ran it here
                    _discard(job, settings, store)
            records[index] = record
            listen.finished(index, record, False)

        for index, job in enumerate(jobs):  # a decoder whose identity failed is that error, not run
            if job.identity_error is not None and records[index] is None:
                finish(index, DecoderRun(problem=job.problem, settings=settings,
                                         d_max=search_limit(job.problem, settings),
                                         params=dict(job.decoder.params), error=job.identity_error),
                       {"backend": "in-process"})
        waiting = {index for index in range(len(jobs)) if records[index] is None}
        if backend is not None:
            remote = sorted(waiting)
            for position, run, tasks in run_on_dask(
                    backend, [(jobs[i].problem, jobs[i].decoder) for i in remote], settings, timeout=timeout,
                    on_trials=partial(_report_position, listen, remote)):
                finish(remote[position], run, {**backend.provenance(), "tasks": tasks})
            return Outcome([record for record in records if record is not None], set(reused))
        pooled = [index for index, job in enumerate(jobs) if side_by_side and index in waiting
                  and can_run_in_a_process(job.problem, job.decoder, job.dictionary)]
        if parallel.workers() < 2 or len(pooled) < 2:
            pooled = []
        # Side by side: a single-threaded worker per core. Under a time limit, the rest too,
        # one at a time, each worker with the run's threads. Otherwise, the rest here.
        groups: list[tuple[list[int], int, int | None]] = [(pooled, parallel.workers(), 1)]
        if timeout is not None:
            groups.append(([index for index in sorted(waiting) if index not in pooled], 1, threads))
        with stdout_to_stderr():
            for indices, processes, job_threads in groups:
                if not indices:
                    continue
                for position, run in run_in_workers(
                        [WorkerJob(jobs[i].problem, jobs[i].decoder) for i in indices], settings,
                        processes=min(processes, len(indices)), threads=job_threads, timeout=timeout,
                        on_trials=partial(_report_position, listen, indices)):
                    finish(indices[position], run, {"backend": "worker processes", "workers": processes})
            for index, job in enumerate(jobs):
                if records[index] is not None:
                    continue
                listen.trials(index, 0, None)
                journal = _journal(job, settings, store, reuse, argv, threads, warn)
                try:
                    if journal is not None and journal.known_trials and note is not None:
                        note(f"{job.label}: resuming from its journal, {journal.known_trials} trials "
                             f"already run ({journal.path})")
                    run = run_decoder(job.problem, job.decoder, settings,
                                      on_trials=partial(_report, listen, index),
                                      dictionary=job.dictionary, memo=journal)
                    finish(index, run, {"backend": "in-process"}, journal)
                finally:
                    if journal is not None:
                        journal.release(warn)
    finally:
        parallel.set_workers(workers)
        if limiter is not None:
            limiter.unregister()
    return Outcome([record for record in records if record is not None], set(reused))
