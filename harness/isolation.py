"""Keeping one decoder's misbehaviour away from the others' results.

Decoders run **in the harness's process** by default: a run shares the operator's
dictionary caches and thread pools, costs no process start-up or serialisation, and a
plugin author can debug it with a plain ``breakpoint()``. What a decoder can do there
is contained as follows:

- an exception, a ``sys.exit``, a malformed or out-of-range output: caught by the
  runner and recorded as that decoder's error (``runner._search_both``);
- NumPy's floating-point error state and the working directory: saved before each run
  and restored after it; ``os._exit`` raises instead of ending the process, and a copy
  made by ``fork`` ends as soon as its decoder returns (``runner.contained``);
- writing to standard output: while decoders run, file descriptor 1 points at
  standard error, so ``--json`` output cannot be corrupted, even by compiled code;
- the dictionary: arrays it hands out are read-only.

What cannot be contained in a process a decoder shares is **time** (a decoder stuck in
a loop never returns control) and a crash in compiled code. With ``--timeout SECONDS``
every run therefore goes to a worker process of its own (``run_isolated``), which is
stopped when the limit passes and recorded as an error; a worker that dies is recorded
the same way. The limit starts once the worker has compiled the harness's own kernels
(``runner.warm_up``), so it counts the decoder's work, not the worker's start-up; and
every worker ends within about a second of the harness's death
(``runner.exit_with_parent``). The other runs go on either way, and the records already
stored are never touched.
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
from .problem import Problem
from .runner import (
    DecoderRun,
    RunSettings,
    exit_with_parent,
    failed_run,
    fixed_dictionary,
    output_to_stderr,
    run_decoder,
    warm_up,
)

#: How long a worker process may take to start (import the harness and the plugin)
#: before its run counts as failed; its time limit starts once it has.
START_SECONDS = 120.0


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


@dataclass
class IsolatedJob:
    """One run for a worker process: the problem, the decoder and its worker's threads."""

    problem: Problem
    decoder: Decoder
    threads: int | None = None


def _child(connection: Any, job: IsolatedJob, settings: RunSettings, parent: int) -> None:
    """A worker process of the harness ``parent``: run one job and send its progress and its run back."""
    exit_with_parent(parent)
    try:
        _work(connection, job, settings)
    except Exception as exc:  # the harness's own failure here, reported as the job's
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))


def _work(connection: Any, job: IsolatedJob, settings: RunSettings) -> None:
    output_to_stderr()
    if job.threads is not None:
        from . import parallel
        parallel.use_threads(job.threads)
    dictionary = None
    if job.problem.fixed:
        from .weights import WeightsError
        try:
            dictionary = fixed_dictionary(job.problem, settings.memory)
        except WeightsError as exc:
            connection.send(("failed", f"its dictionary changed while the sweep ran ({exc})"))
            return
    warm_up(job.problem, dictionary)
    connection.send(("started", None))
    run = run_decoder(job.problem, job.decoder, settings, dictionary=dictionary,
                      on_trials=lambda count: connection.send(("trials", count)))
    connection.send(("done", run))


def _error_run(job: IsolatedJob, settings: RunSettings, error: str, seconds: float = 0.0) -> DecoderRun:
    return failed_run(job.problem, job.decoder, settings, error, seconds)


@dataclass
class _Worker:
    index: int
    process: Any
    connection: Any
    launched: float
    started: float | None = None


def run_isolated(jobs: Sequence[IsolatedJob], settings: RunSettings, *, timeout: float | None,
                 processes: int = 1,
                 on_trials: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, DecoderRun]]:
    """Run each job in a worker process of its own, at most ``processes`` at a time;
    yield ``(index, run)`` as they finish.

    A job still running ``timeout`` seconds after its worker started it is stopped
    (the process is killed) and yields a run whose ``error`` says so; so does a job
    whose worker dies. ``on_trials(index, count)`` reports progress.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    waiting = list(range(len(jobs)))
    running: dict[Any, _Worker] = {}

    def launch(index: int) -> None:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(sender, jobs[index], settings, os.getpid()),
                                  daemon=True)
        process.start()
        sender.close()
        running[receiver] = _Worker(index, process, receiver, time.monotonic())

    def stop(worker: _Worker) -> None:
        del running[worker.connection]
        worker.connection.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()

    try:
        while waiting or running:
            while waiting and len(running) < max(1, processes):
                launch(waiting.pop(0))
            now = time.monotonic()
            limits = [(w.launched + START_SECONDS) if w.started is None
                      else (w.started + timeout) if timeout is not None else now + 3600
                      for w in running.values()]
            ready: list[Any] = wait(list(running), timeout=max(0.0, min(limits) - now))
            for connection in ready:
                worker = running[connection]
                try:
                    kind, value = connection.recv()
                except (EOFError, OSError):
                    stop(worker)
                    code = worker.process.exitcode
                    yield worker.index, _error_run(jobs[worker.index], settings,
                                                   f"stopped its worker process (exit code {code})")
                    continue
                if kind == "started":
                    worker.started = time.monotonic()
                elif kind == "trials":
                    if on_trials is not None:
                        on_trials(worker.index, value)
                elif kind == "done":
                    stop(worker)
                    finished: DecoderRun = value
                    yield worker.index, finished
                else:
                    stop(worker)
                    yield worker.index, _error_run(jobs[worker.index], settings, f"could not start: {value}")
            now = time.monotonic()
            for worker in list(running.values()):
                if worker.started is None and now > worker.launched + START_SECONDS:
                    stop(worker)
                    yield worker.index, _error_run(jobs[worker.index], settings,
                                                   f"did not start within {START_SECONDS:g} s")
                elif timeout is not None and worker.started is not None and now > worker.started + timeout:
                    stop(worker)
                    yield worker.index, _error_run(
                        jobs[worker.index], settings,
                        f"did not finish within its time limit of {timeout:g} s and was stopped (--timeout)",
                        seconds=now - worker.started)
    finally:
        for worker in list(running.values()):
            stop(worker)
