"""Planning a sweep past this machine: its wall time on ``W`` Dask workers, predicted from
what its records measured (docs/distributed.md, "Planning a cluster run").

The model, in four parts:

1. **A job is its search's requests, in order.** A record holds every probe's trial
   outcomes, so the search that made it can be replayed (the same ``runner.measure``
   that ``harness verify`` replays): each call it makes ("``count`` more trials at
   ``d``") is one *request*, and a search sends its next request only when the last
   one is answered. Each request is split into tasks exactly as the Dask backend
   splits it (``dask_backend.chunks``: whole dictionary draws, about ``TASK_WORK``
   multiply-adds of correlation per task, and a large draw split into parts when its
   search's share of the workers, ``⌈W / searches in flight⌉``, is larger).
2. **A task's worker time** is its trials times the job's seconds per trial at that
   ``d``, plus a fixed per-task overhead measured on this machine. A record's seconds
   per trial come from its wall time times the threads it ran on (an upper bound on
   the core-seconds it used), shared among its trials in proportion to ``d`` (the
   correlation ``F·x`` of ``N·d`` multiply-adds dominates every built-in); on the
   fixed track ``d`` is fixed and the share is equal.
3. **Jobs without a record** get a *stand-in*: the curve of the same decoder's record
   nearest in ``k`` (at the largest ``N`` measured for that ``k``), stretched along ``d``
   by the ratio of the two problems' entropies ``H(N, k)``, sampled trial by trial with one fixed
   uniform number per trial (so outcomes grow with ``d``, as the nested dictionaries'
   do), and searched by the real search. Its seconds per trial per dimension per
   feature (``N·d``) follow a power law in ``k`` fitted to all of that decoder's records.
4. **The cluster** runs ``W`` single-threaded workers, each taking the oldest ready
   task; a single scheduler (with the client) spends a fixed time on every task before
   it is ready; at most ``2W`` searches are in flight (as ``run_on_dask`` allows), the
   next job starting as one ends, in the sweep's order.

What the model leaves out: the client's memory and the network (a task's arguments are
a few hundred bytes and its answer one bit per trial), workers of unequal speed, the
dictionary draws a worker keeps from one task to the next, and the draw that each
part of a split draw makes again (a fraction of one trial's correlation per part). The prediction is a
plan, not a measurement: ``benchmarks/test_distributed.py`` measures the overheads it
uses and prints it for the paper suite.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dask_backend import chunks
from .problem import FIXED, Problem, entropy_bits
from .results import decode_outcomes, record_settings
from .runner import DecoderRun, RunSettings, measure, search_limit

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Overheads:
    """What the model adds to every task: ``task`` seconds of a worker's time (sending,
    unpacking, answering), and ``scheduler`` seconds of the one scheduler's and client's
    time, spent on the tasks one at a time."""

    task: float = 0.0
    scheduler: float = 0.0


@dataclass
class JobPlan:
    """One job as the model sees it: its problem, its search's requests ``(value, start,
    count)`` in order, and the worker seconds of a trial per unit of :func:`weight`."""

    label: str
    origin: str
    problem: Problem
    requests: list[tuple[int, int, int]] = field(default_factory=list)
    per_weight: float = 0.0

    def trial_seconds(self, value: int) -> float:
        """Worker seconds of one trial at ``value``."""
        return self.per_weight * weight(self.problem, value)

    def tasks_of(self, request: tuple[int, int, int], spread: int = 1) -> list[float]:
        """The worker seconds of each task the backend makes of ``request`` (trials only)."""
        value, start, count = request
        one = self.trial_seconds(value)
        return [len(task) * one for task in chunks(self.problem, value, range(start, start + count), spread)]

    def tasks(self, spread: int = 1) -> int:
        return sum(len(self.tasks_of(request, spread)) for request in self.requests)

    def work(self, overheads: Overheads = Overheads(), spread: int = 1) -> float:
        """Worker seconds the job needs in all."""
        trials = sum(count * self.trial_seconds(value) for value, _, count in self.requests)
        return trials + overheads.task * self.tasks(spread)

    def path(self, overheads: Overheads = Overheads(), spread: int = 1) -> float:
        """Seconds the job takes alone, however many workers there are, when each request
        is split for ``spread`` of them: its requests one after another, each as long as
        its longest task."""
        return sum(max(self.tasks_of(request, spread)) + overheads.task + overheads.scheduler
                   for request in self.requests)

    def trial_path(self, overheads: Overheads = Overheads()) -> float:
        """What :meth:`path` would be if every trial were a task of its own: the floor
        that the search's sequence of requests sets, whatever the task size."""
        return sum(self.trial_seconds(value) + overheads.task + overheads.scheduler
                   for value, _, _ in self.requests)

    def smallest_task(self, spread: int = 1) -> int:
        """The fewest trials a task of this job holds."""
        return min((len(task) for value, start, count in self.requests
                    for task in chunks(self.problem, value, range(start, start + count), spread)), default=0)


# ------------------------------------------------------------------ jobs from records


def record_problem(record: Record) -> Problem:
    """The problem a record was measured on."""
    return Problem(**dict(record["problem"]))


def replay_requests(record: Record) -> list[tuple[int, int, int]]:
    """The requests ``(value, start, count)`` the record's search made, in order, replayed
    on its stored outcomes; ValueError if the record does not hold them all."""
    problem, settings = record_problem(record), record_settings(record)
    variable = problem.track.variable
    stored: dict[int, np.ndarray] = {}
    for point in record.get("curve") or []:
        if "outcomes" not in point:
            raise ValueError(f"the record of {record.get('decoder')!r} holds no outcomes at "
                             f"{variable} = {point.get(variable)}, so its search cannot be replayed")
        stored[int(point[variable])] = decode_outcomes(str(point["outcomes"]), int(point["trials"]))
    requests: list[tuple[int, int, int]] = []

    def evaluate(value: int, start: int, count: int) -> int:
        bits = stored.get(value)
        if bits is None or start + count > bits.size:
            raise ValueError(f"the search of {record.get('decoder')!r} asks for trials the record does "
                             f"not hold ({variable} = {value})")
        requests.append((value, start, count))
        return int(bits[start:start + count].sum())

    measure(DecoderRun(problem=problem, settings=settings, d_max=search_limit(problem, settings)), evaluate)
    return requests


def core_seconds(record: Record) -> float:
    """The core-seconds a record's job used at most: its wall time times the threads it
    ran on (one in a worker process, else ``threads`` or every core of its machine)."""
    provenance = dict(record.get("provenance") or {})
    threads = provenance.get("threads")
    if not isinstance(threads, int) or threads < 1:
        one = provenance.get("backend") in ("worker processes", "dask")
        threads = 1 if one else int(provenance.get("cores") or 1)
    return float(record.get("wall_seconds") or 0.0) * threads


def weight(problem: Problem, value: int) -> float:
    """How the work of one trial grows with the search's value: ``∝ d`` on the generated
    track (correlation), flat on the fixed one (``d`` is the file's)."""
    return 1.0 if problem.track is FIXED else float(value)


def _label(decoder: str, problem: Problem) -> str:
    return f"{decoder} N={problem.n} k={problem.k}"


def plan_from_record(record: Record) -> JobPlan:
    """The job a record measured, its tasks timed by the record's own seconds per trial."""
    problem = record_problem(record)
    requests = replay_requests(record)
    weighted = sum(count * weight(problem, value) for value, _, count in requests)
    per_weight = core_seconds(record) / weighted if weighted else 0.0
    return JobPlan(_label(str(record["decoder"]), problem), "record", problem, requests, per_weight)


# ------------------------------------------------------------------ stand-ins


def cost_law(records: Sequence[Record]) -> tuple[float, float]:
    """``(a, b)`` with core-seconds per trial ≈ ``a · N · d · k^b`` on the generated track,
    fitted in logs to ``records`` (of one decoder) by least squares; ``b = 0`` from one ``k``."""
    xs, ys = [], []
    for record in records:
        problem = record_problem(record)
        if problem.fixed:
            continue
        weighted = sum(int(p["trials"]) * int(p["d"]) for p in record.get("curve") or [])
        seconds = core_seconds(record)
        if weighted and seconds > 0:
            xs.append(math.log(problem.k))  # type: ignore[arg-type]
            ys.append(math.log(seconds / (weighted * problem.n)))
    if not xs:
        raise ValueError("no record with a wall time and a curve to fit the cost of a trial to")
    if len(set(xs)) < 2:
        return math.exp(sum(ys) / len(ys)), 0.0
    b, log_a = np.polyfit(xs, ys, 1)
    return math.exp(float(log_a)), float(b)


def _nearest(problem: Problem, records: Sequence[Record]) -> Record:
    """The record nearest to ``problem``: nearest ``k`` (in logs; dims/bit moves with
    ``k`` far more than with ``N``), then largest ``N``."""
    def key(record: Record) -> tuple[float, float]:
        other = record_problem(record)
        return abs(math.log(other.k / problem.k)), -other.n  # type: ignore[operator]
    return min(records, key=key)


def stand_in(decoder: str, problem: Problem, settings: RunSettings, records: Sequence[Record],
             seed: int = 0) -> JobPlan:
    """A job no record measured, modelled on ``records`` of the same decoder (see the
    module's notes): a stretched curve, searched by the real search, timed by the fitted
    cost law. The same inputs give the same plan."""
    usable = [r for r in records if r.get("status") == "ok" and not record_problem(r).fixed
              and r.get("curve")]
    if not usable:
        raise ValueError(f"no successful generated-track record of {decoder!r} to model its job on")
    reference = _nearest(problem, usable)
    base = record_problem(reference)
    stretch = entropy_bits(problem.n, problem.k) / base.entropy_bits  # type: ignore[arg-type]
    points = sorted((int(p["d"]) * stretch, int(p["successes"]) / int(p["trials"]))
                    for p in reference["curve"])
    ds = np.array([d for d, _ in points])
    rates = np.maximum.accumulate(np.array([rate for _, rate in points]))  # a monotone curve
    uniforms = np.random.default_rng([seed, problem.n, int(problem.k or 0)]).random(settings.confirmation)
    requests: list[tuple[int, int, int]] = []

    def evaluate(d: int, start: int, count: int) -> int:
        requests.append((d, start, count))
        p = float(np.interp(d, ds, rates))
        return int((uniforms[start:start + count] < p).sum())

    measure(DecoderRun(problem=problem, settings=settings, d_max=search_limit(problem, settings)), evaluate)
    a, b = cost_law(usable)
    per_weight = a * problem.n * float(problem.k) ** b  # type: ignore[arg-type]
    origin = f"stand-in from {_label(decoder, base)} (curve x {stretch:.2f})"
    return JobPlan(_label(decoder, problem), origin, problem, requests, per_weight)


def plan_sweep(jobs: Sequence[tuple[str, Problem]], settings: RunSettings,
               records: Sequence[Record]) -> list[JobPlan]:
    """A plan for each ``(decoder, problem)`` of a sweep, in order: from its own record
    when ``records`` hold one (same decoder, problem and search settings), else a stand-in
    modelled on that decoder's other records."""
    plans = []
    for decoder, problem in jobs:
        own = [r for r in records if r.get("decoder") == decoder and r.get("status") == "ok"
               and record_problem(r) == problem and record_settings(r).max_trials == settings.max_trials]
        if own:
            plans.append(plan_from_record(own[0]))
        else:
            plans.append(stand_in(decoder, problem, settings,
                                  [r for r in records if r.get("decoder") == decoder]))
    return plans


# ------------------------------------------------------------------ the cluster


@dataclass(frozen=True)
class Prediction:
    """The model's wall time for a sweep on ``workers`` workers, and its three floors:
    the work shared evenly (``work``), the longest job's requests one after another on
    every worker (``path``), and the scheduler's time for every task (``scheduler``);
    with what the path is made of."""

    workers: int
    wall: float
    work: float
    path: float
    scheduler: float
    tasks: int
    longest: str
    #: The longest job's requests, the most tasks any of them makes, the fewest trials
    #: a task of it holds, and its path if every trial were a task.
    requests: int = 0
    widest: int = 0
    smallest: int = 0
    trial_path: float = 0.0

    @property
    def binding(self) -> str:
        """Which floor the wall time is closest to."""
        floors = {"work": self.work, "path": self.path, "scheduler": self.scheduler}
        return max(floors, key=lambda name: floors[name])


def simulate(plans: Sequence[JobPlan], workers: int, overheads: Overheads = Overheads(),
             concurrent: int | None = None, spread: bool = True) -> Prediction:
    """The wall time of ``plans`` on ``workers`` workers (see the module's notes). With
    ``spread``, a request is split as the backend splits it, for its search's share of
    the workers (``dask_backend.chunks``); without, into whole draws only."""
    if workers < 1:
        raise ValueError(f"a cluster needs at least one worker, not {workers}")
    width = concurrent or max(2, 2 * workers)
    events: list[tuple[float, int, int, int]] = []  # (time, order, job, request) of a finished task
    order = 0
    scheduler_free = 0.0
    ready: deque[tuple[float, int, int, float]] = deque()  # (ready at, job, request, seconds)
    idle = workers
    left: dict[tuple[int, int], int] = {}
    upcoming = deque(range(len(plans)))
    unfinished = len(plans)  # the searches in flight are min(width, unfinished), as in run_on_dask
    tasks = 0
    work = 0.0
    now = 0.0

    def issue(job: int, request: int, at: float) -> None:
        nonlocal scheduler_free, tasks, work
        share = max(1, -(-workers // max(1, min(width, unfinished)))) if spread else 1
        pieces = plans[job].tasks_of(plans[job].requests[request], share)
        left[(job, request)] = len(pieces)
        tasks += len(pieces)
        for seconds in pieces:
            work += seconds + overheads.task
            scheduler_free = max(scheduler_free, at) + overheads.scheduler
            ready.append((scheduler_free, job, request, seconds))

    def start_next(at: float) -> None:
        nonlocal unfinished
        while upcoming:
            job = upcoming.popleft()
            if plans[job].requests:
                issue(job, 0, at)
                return
            unfinished -= 1

    def dispatch(at: float) -> None:
        nonlocal idle, order
        while idle and ready:
            ready_at, job, request, seconds = ready.popleft()
            idle -= 1
            order += 1
            heapq.heappush(events, (max(at, ready_at) + seconds + overheads.task, order, job, request))

    for _ in range(min(width, len(plans))):
        start_next(0.0)
    dispatch(0.0)
    while events:
        now, _, job, request = heapq.heappop(events)
        idle += 1
        left[(job, request)] -= 1
        if left[(job, request)] == 0:
            if request + 1 < len(plans[job].requests):
                issue(job, request + 1, now)
            else:
                unfinished -= 1
                start_next(now)
        dispatch(now)
    alone = workers if spread else 1
    paths = [(plan.path(overheads, alone), plan) for plan in plans if plan.requests]
    path, longest = max(paths, key=lambda item: item[0]) if paths else (0.0, None)
    if longest is None:
        return Prediction(workers, now, 0.0, 0.0, 0.0, 0, "")
    return Prediction(workers=workers, wall=now, work=work / workers, path=path,
                      scheduler=tasks * overheads.scheduler, tasks=tasks, longest=longest.label,
                      requests=len(longest.requests),
                      widest=max(len(longest.tasks_of(request, alone)) for request in longest.requests),
                      smallest=longest.smallest_task(alone), trial_path=longest.trial_path(overheads))


def where_it_stops(predictions: Sequence[Prediction], overheads: Overheads = Overheads()) -> str:
    """Where the speed-up among ``predictions`` (of one sweep) stops, and why."""
    if not predictions:
        return "nothing was predicted."
    base = min(predictions, key=lambda p: p.workers)
    serial = base.wall * base.workers
    stalled = [p for p in predictions if serial / (p.workers * p.wall) < 0.5]
    if not stalled:
        return (f"The speed-up holds up to {max(p.workers for p in predictions)} workers (efficiency "
                "above 50%).")
    first = min(stalled, key=lambda p: p.workers)
    parallelism = first.work * first.workers / first.path if first.path else math.inf
    text = (f"The speed-up stops near {parallelism:,.0f} workers, the sweep's work "
            f"({first.work * first.workers / 3600:,.1f} core-hours) over its longest job's path "
            f"({first.path / 3600:,.2f} h); at {first.workers} workers the efficiency is "
            f"{serial / (first.workers * first.wall):.0%}. ")
    if first.binding == "scheduler":
        return text + (f"The scheduler binds: {overheads.scheduler * 1e3:.2f} ms on each of "
                       f"{first.tasks:,} tasks, one at a time.")
    if first.binding == "work":
        return text + "The work itself binds: the workers are busy."
    verdict = ("the task size, not the search's sequence, sets it" if first.trial_path < first.path / 2
               else "the search's sequence itself sets it")
    return text + (f"The searches' probes bind: {first.longest} asks for {first.requests} batches of "
                   f"trials one after another, none in more than {first.widest} tasks (the smallest "
                   f"holds {first.smallest} trials). With a task per trial its path would be "
                   f"{first.trial_path / 3600:,.2f} h: {verdict}.")
