"""Worker processes: the harness's one process pool, and what keeps a decoder's misbehaviour
away from the others' results.

Decoders run **in the harness's process** by default: a run shares the operator's
dictionary caches and thread pools, costs no process start-up or serialisation, and a
plugin author can debug it with a plain ``breakpoint()``. What a decoder can do there
is contained as follows:

- an exception, a ``sys.exit``, a malformed or out-of-range output: caught by the
  runner and recorded as that decoder's error (``runner.run_decoder``);
- NumPy's floating-point error state and the working directory: saved before each run
  and restored after it; ``os._exit`` raises instead of ending the process, and a copy
  made by ``fork`` ends as soon as its decoder returns (``runner.contained``);
- writing to standard output: while decoders run, file descriptor 1 points at
  standard error (:func:`stdout_to_stderr`), so ``--json`` output cannot be corrupted,
  even by compiled code;
- the dictionary: arrays it hands out are read-only.

Jobs go to worker processes (:func:`run_in_workers`) for two reasons: to run small
problems side by side, a single-threaded process per core, and to contain what a shared
process cannot, **time** (a decoder stuck in a loop never returns control) and a crash in
compiled code. A worker runs one job at a time and takes the next when it is done; with
``timeout`` a job still running when its limit passes is stopped with its worker (the
process is killed and another takes its place) and recorded as an error, and a worker
that dies is recorded the same way, so one job's fault never costs another job's run. The
limit starts once the worker has compiled the harness's own kernels for the job
(``runner.warm_up``), so it counts the decoder's work, not the worker's start-up; and
every worker ends within about a second of the harness's death (:func:`exit_with_parent`).
The records already stored are never touched: only the harness's own process writes them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .decoder import Decoder
from .dictionary import Dictionary
from .memory import keep_freed_memory
from .problem import Problem
from .runner import DecoderRun, RunSettings, failed_run, fixed_dictionary, run_decoder, warm_up
from .runner import _exit as exit_now

#: How long a worker process may take to take up a job (start, import the harness and the
#: plugin, read a fixed dictionary) before the job counts as failed. Compiling the
#: harness's kernels next (``warm_up``: minutes on a fresh install on a busy machine) is
#: healthy work and has no limit; a job's time limit starts once it is done.
START_SECONDS = 120.0

#: Jobs of problems with at most this many features run side by side in worker processes
#: (each on one thread): their products are too small to keep two cores busy inside
#: one process, and a process per core has no threads to fight over the cores.
PROCESS_JOBS_MAX_N = 1 << 16

#: What a progress callback hears: job index, trials run, and the value probed (``d`` or ``k``).
OnTrials = Callable[[int, int, int], None]


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to standard output, by Python or by compiled code, to
    standard error until the block ends."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding host): Python-level only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        sys.stderr.flush()
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """In a worker process started by the process ``parent``: end it within about
    ``poll_seconds`` of that process's death (a harness that was killed, even by SIGKILL,
    leaves no workers computing for nobody), or at once if it is gone already.

    It ends the process with the real ``os._exit``, not with whatever ``os._exit`` is at that
    moment: while a decoder runs, :func:`runner.contained` replaces it with one that refuses."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        exit_now(1)

    threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()


def can_run_in_a_process(problem: Problem, decoder: Decoder, dictionary: Dictionary | None) -> bool:
    """Whether a job may go side by side to a worker process: a small generated problem and
    a decoder that can be sent there (its class importable by name)."""
    if dictionary is not None or problem.fixed or problem.n > PROCESS_JOBS_MAX_N:
        return False
    import pickle
    try:
        pickle.loads(pickle.dumps(decoder))
    except Exception:  # defined where no other process can import it (a test, a notebook)
        return False
    return True


@dataclass(frozen=True)
class WorkerJob:
    """One job for a worker process: a decoder on a problem (a fixed dictionary is read
    again there from its file, by the fingerprint the problem names)."""

    problem: Problem
    decoder: Decoder


def _serve(connection: Any, parent: int, threads: int | None) -> None:
    """A worker process of the harness ``parent``: run the jobs it is sent, one at a time,
    sending back their progress and their runs, until it is sent None."""
    exit_with_parent(parent)
    keep_freed_memory()  # the harness's own process, as the harness command's (docs/scale.md)
    os.dup2(2, 1)  # a decoder's output, even from compiled code, goes to standard error
    sys.stdout = sys.stderr
    if threads is not None:
        from . import parallel
        parallel.use_threads(threads)
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        except Exception as exc:  # a job that cannot be rebuilt here (its decoder's class not importable)
            connection.send(("failed", _unsent(exc)))
            continue
        if message is None:
            return
        job, settings = message
        try:
            _work(connection, job, settings)
        except Exception as exc:  # the harness's own failure here, reported as the job's
            connection.send(("failed", f"{type(exc).__name__}: {exc}"))


def _unsent(exc: BaseException) -> str:
    return f"could not be sent to a worker process ({type(exc).__name__}: {exc})"


def _work(connection: Any, job: WorkerJob, settings: RunSettings) -> None:
    dictionary = None
    if job.problem.fixed:
        from .weights import WeightsError
        try:
            dictionary = fixed_dictionary(job.problem, settings.memory)
        except WeightsError as exc:
            connection.send(("failed", f"its dictionary changed while the sweep ran ({exc})"))
            return
    connection.send(("warming", None))
    warm_up(job.problem, dictionary)
    connection.send(("started", None))

    def report(count: int, value: int) -> None:
        connection.send(("trials", (count, value)))

    run = run_decoder(job.problem, job.decoder, settings, dictionary=dictionary, on_trials=report)
    connection.send(("done", run))


@dataclass
class _Worker:
    process: Any
    connection: Any
    job: int | None = None
    given: float = 0.0
    warming: float | None = None
    started: float | None = None


def job_deadline(given: float, warming: float | None, started: float | None,
                 timeout: float | None) -> float:
    """When a job given to a worker at ``given`` fails for time: ``START_SECONDS`` later
    until the worker has taken it up (``warming``), never while it compiles the kernels,
    and ``timeout`` after it ``started`` (never without one). Times are ``time.monotonic()``."""
    if started is not None:
        return started + timeout if timeout is not None else float("inf")
    return given + START_SECONDS if warming is None else float("inf")


def run_in_workers(jobs: Sequence[WorkerJob], settings: RunSettings, *, processes: int = 1,
                   threads: int | None = 1, timeout: float | None = None,
                   on_trials: OnTrials | None = None) -> Iterator[tuple[int, DecoderRun]]:
    """Run ``jobs`` in at most ``processes`` worker processes of ``threads`` threads each
    (None: the machine's default); yield ``(index, run)`` as they finish.

    A job still running ``timeout`` seconds after its worker started it is stopped and
    yields a run whose ``error`` says so; so does a job whose worker dies or does not
    start it within :data:`START_SECONDS`. ``on_trials(index, count, value)`` reports progress.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    waiting = list(range(len(jobs)))
    workers: dict[Any, _Worker] = {}

    def launch() -> _Worker:
        mine, theirs = context.Pipe(duplex=True)
        process = context.Process(target=_serve, args=(theirs, os.getpid(), threads), daemon=True)
        process.start()
        theirs.close()
        worker = workers[mine] = _Worker(process, mine)
        return worker

    refused: list[tuple[int, DecoderRun]] = []

    def give(worker: _Worker) -> None:
        worker.job, worker.given = waiting.pop(0), time.monotonic()
        worker.warming = worker.started = None
        try:
            worker.connection.send((jobs[worker.job], settings))
        except Exception as exc:  # pickling: a decoder defined where no other process can import it
            refused.append(failed(worker, _unsent(exc)))

    def stop(worker: _Worker) -> None:
        del workers[worker.connection]
        worker.connection.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()

    def failed(worker: _Worker, error: str, seconds: float = 0.0) -> tuple[int, DecoderRun]:
        index = worker.job
        assert index is not None
        worker.job = None
        job = jobs[index]
        return index, failed_run(job.problem, job.decoder, settings, error, seconds)

    def deadline(worker: _Worker) -> float:
        return job_deadline(worker.given, worker.warming, worker.started, timeout)

    try:
        while waiting or refused or any(w.job is not None for w in workers.values()):
            for worker in list(workers.values()):
                if worker.job is None and waiting:
                    give(worker)
            while waiting and len(workers) < max(1, processes):
                give(launch())
            while refused:
                yield refused.pop(0)
            busy = [w for w in workers.values() if w.job is not None]
            if not busy:
                continue
            now = time.monotonic()
            soonest = min(deadline(w) for w in busy)
            ready: list[Any] = wait([w.connection for w in busy],
                                    timeout=None if soonest == float("inf") else max(0.0, soonest - now))
            for connection in ready:
                worker = workers[connection]
                try:
                    kind, value = connection.recv()
                except (EOFError, OSError):
                    stop(worker)
                    yield failed(worker, f"stopped its worker process (exit code {worker.process.exitcode})")
                    continue
                if kind == "warming":
                    worker.warming = time.monotonic()
                elif kind == "started":
                    worker.started = time.monotonic()
                elif kind == "trials":
                    if on_trials is not None:
                        on_trials(worker.job, *value)  # type: ignore[arg-type]
                elif kind == "done":
                    index, worker.job = worker.job, None
                    assert index is not None
                    yield index, value
                else:
                    yield failed(worker, f"could not start: {value}")
            now = time.monotonic()
            for worker in list(workers.values()):
                if worker.job is None or now <= deadline(worker):
                    continue
                stop(worker)
                if worker.started is None:  # only before warming: see job_deadline
                    yield failed(worker, f"did not start within {START_SECONDS:g} s")
                else:
                    yield failed(worker, f"did not finish within its time limit of {timeout:g} s and was "
                                 "stopped (--timeout)", seconds=now - worker.started)
    finally:
        for worker in list(workers.values()):
            if worker.job is None:  # idle: let it end by itself
                with contextlib.suppress(OSError, ValueError):
                    worker.connection.send(None)
                worker.process.join(timeout=5)
            stop(worker)
