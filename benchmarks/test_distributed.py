"""Planning past this machine: what a Dask task costs, 1 against 2 workers, and the paper
suite on 8, 64 and 512 workers.

Measured here, in one run:

- **the cost of a task**: a sweep of small problems (N = 4096, k = 4 and 16; threshold,
  topk, mp, amp-binary) run in this process on one thread, then on a local Dask cluster
  of one single-threaded worker; the difference over the tasks it sent is what a task
  costs beyond its trials. The scheduler's (and client's) own time per task comes from
  a few thousand empty tasks.
- **1 against 2 workers**: the same sweep on one and on two workers; efficiency is
  ``T(1) / (2 · T(2))``. This machine has two cores, which the client and the
  scheduler share with the workers.
- **the paper suite on a cluster** (``harness.planning``, docs/distributed.md): each job
  from its record in ``leaderboard/paper`` (its search replayed on its outcomes, its time
  from its record) or, where none is published yet, a stand-in modelled on the same
  decoder's records (``leaderboard/standard`` too), then a simulated cluster with the
  overheads measured above. It prints the predicted wall time on 1, 2, 8, 64 and 512
  workers and where the speed-up stops and why, both as the backend sends tasks (a
  large draw split into parts for workers that would otherwise wait) and with tasks of
  whole draws only.

Every record made here is compared across the three ways of running it. Run it with::

    python -m pytest benchmarks/test_distributed.py --benchmark-enable -s

(a few minutes). Nothing here asserts on a time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the Dask backend needs pip install 'superposition-harness[dask]'")

from superposition_harness import planning  # noqa: E402
from superposition_harness.config import Sweep, apply_config, parse_decoder_spec, read_suite  # noqa: E402
from superposition_harness.dask_backend import Scheduler, connect  # noqa: E402
from superposition_harness.jobs import choose_decoders, execute, plan, run_settings  # noqa: E402
from superposition_harness.plugins import load_registry  # noqa: E402
from superposition_harness.results import strip_volatile  # noqa: E402

from .conftest import FIGURES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DECODERS = ("threshold", "topk", "mp", "amp-binary")
EMPTY_TASKS = 2000
WORKERS = (1, 2, 8, 64, 512)

#: What the first benchmarks measured, for the plan (filled in order; measured again if empty).
MEASURED: dict[str, float] = {}


def _small_sweep(seed: int):
    sweep = Sweep(n=[4096], k=[4, 16], seed=seed, decoders=[parse_decoder_spec(name) for name in DECODERS])
    settings = run_settings(sweep)
    jobs = plan([(problem, None) for problem in sweep.problems()], choose_decoders(sweep, load_registry()))
    return jobs, settings


def _bare(records):
    return [json.dumps(strip_volatile(record), sort_keys=True) for record in records]


def _timed(run):
    began = time.perf_counter()
    outcome = run()
    return time.perf_counter() - began, outcome.records


def _empty(index: int) -> int:
    return index


def _enabled(config) -> bool:
    return bool(config.getoption("benchmark_enable"))


def _measure() -> None:
    """The costs of a task and the efficiency of two workers (see the module's notes)."""
    warm, _ = _small_sweep(seed=1)
    jobs, settings = _small_sweep(seed=0)
    execute(warm, settings, side_by_side=False, threads=1)  # compiles the kernels here
    here_seconds, here = _timed(lambda: execute(jobs, settings, side_by_side=False, threads=1))
    seconds: dict[int, float] = {}
    tasks = 0
    for workers in (1, 2):
        with connect(Scheduler(workers=workers)) as backend:
            execute(warm, settings, backend=backend)  # and on the workers
            seconds[workers], there = _timed(lambda backend=backend: execute(jobs, settings, backend=backend))
            assert _bare(there) == _bare(here)
            tasks = sum(record["provenance"]["tasks"] for record in there)
            if workers == 2:
                client = backend.client
                client.gather(client.map(_empty, range(200), pure=False))
                began = time.perf_counter()
                client.gather(client.map(_empty, range(EMPTY_TASKS), pure=False))
                MEASURED["scheduler"] = (time.perf_counter() - began) / EMPTY_TASKS
    MEASURED.update(here=here_seconds, one=seconds[1], two=seconds[2], tasks=tasks,
                    task=max(0.0, (seconds[1] - here_seconds) / tasks - MEASURED["scheduler"]))


@pytest.fixture
def measured(pytestconfig):
    if not _enabled(pytestconfig):
        pytest.skip("the Dask measurements take minutes: run with --benchmark-enable")
    if not MEASURED:
        _measure()
    return MEASURED


def test_the_cost_of_a_task(benchmark, pytestconfig):
    if not _enabled(pytestconfig):
        pytest.skip("the Dask measurements take minutes: run with --benchmark-enable")
    benchmark.pedantic(_measure, rounds=1, iterations=1)
    measured = MEASURED
    FIGURES["dask: small sweep in this process, 1 thread"] = f"{measured['here']:.1f} s"
    FIGURES["dask: same sweep on 1 worker"] = f"{measured['one']:.1f} s ({measured['tasks']:.0f} tasks)"
    FIGURES["dask: a task's cost beyond its trials"] = f"{measured['task'] * 1e3:.1f} ms on a worker"
    FIGURES["dask: the scheduler's and client's time"] = f"{measured['scheduler'] * 1e3:.2f} ms per task"


def test_one_against_two_workers(measured):
    efficiency = measured["one"] / (2 * measured["two"])
    speed_up = measured["one"] / measured["two"]
    FIGURES["dask: same sweep on 2 workers"] = (f"{measured['two']:.1f} s: {speed_up:.2f}x "
                                                f"1 worker, efficiency {efficiency:.0%}")


def test_the_paper_suite_on_a_cluster(measured, capsys):
    sweep = Sweep()
    apply_config(sweep, read_suite("paper"), "suite 'paper'")
    settings = run_settings(sweep)
    records = [json.loads(line) for name in ("paper", "standard")
               for line in (ROOT / "leaderboard" / name / "records.jsonl").read_text().splitlines() if line]
    jobs = [(spec.name, problem) for problem in sweep.problems() for spec in sweep.decoders]
    plans = planning.plan_sweep(jobs, settings, records)
    overheads = planning.Overheads(task=measured["task"], scheduler=measured["scheduler"])
    with capsys.disabled():
        print("\nthe paper suite, job by job (core-hours; path: the job alone, tasks of whole draws)")
        for job in plans:
            hours, path = job.work(overheads) / 3600, job.path(overheads) / 3600
            print(f"  {job.label:<28} {hours:6.2f} core-h  path {path:5.2f} h"
                  f"  {len(job.requests):3d} requests {job.tasks():4d} tasks  {job.origin}")
        for title, spread in (("tasks of whole draws only", False),
                              ("as the backend sends them (large draws split for idle workers)", True)):
            predictions = [planning.simulate(plans, workers, overheads, spread=spread) for workers in WORKERS]
            serial = predictions[0].wall
            print(f"\nthe paper suite on W workers, {title}")
            for p in predictions:
                print(f"  W = {p.workers:4d}: {p.wall / 3600:7.2f} h   speed-up {serial / p.wall:6.1f}   "
                      f"efficiency {serial / (p.workers * p.wall):4.0%}   {p.tasks:6d} tasks   "
                      f"closest floor: {p.binding}")
            print("  " + planning.where_it_stops(predictions, overheads))
            for p in predictions:
                if p.workers in (8, 64, 512):
                    FIGURES[f"paper suite on {p.workers} workers, {title}"] = f"{p.wall / 3600:.2f} h"
