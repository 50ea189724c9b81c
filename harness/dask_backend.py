"""Running jobs on Dask: the same records, from a laptop's cores to a cluster's.

A sweep's searches stay on the client (this process), one thread per job in flight;
each search's requests ("``count`` more trials at ``d``") become **tasks** of whole
dictionary draws, so that one large problem spreads over many workers and many small
ones share them. A task carries the problem's specification, the decoder (its class,
by name, and its parameters), the search settings and the trial indices, never arrays:
the worker makes each instance again from the counter-based streams (or reads the fixed
dictionary's file again, refusing one whose fingerprint differs), decodes it and sends
back one bit per trial. Whatever the number of workers, tasks or the batch size, every
trial's outcome is the one a run in this process gets, so the records are the same.

Only the client writes the store, each record as its job finishes. A worker that dies
mid-task has its tasks run again elsewhere (Dask does so); a decoder that kills every
worker it runs on is recorded as that decoder's error. A job past ``--timeout`` has its
tasks cancelled and the workers running them restarted. A scheduler that cannot be
reached, or is lost mid-run, is a :class:`BackendError`: one sentence, with the finished
records kept.

Worker threads: every task runs the operator, numba and BLAS on one thread, and Dask
runs one task per worker thread, so no worker process has more threads than it was
given cores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import queue
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from .decoder import Decoder
from .problem import Problem
from .runner import (
    DecoderFault,
    DecoderRun,
    LocalTrials,
    RunSettings,
    contained,
    failed_run,
    fixed_dictionary,
    run_decoder,
)

#: The environment variable that names a scheduler when neither the command line nor a
#: config does (``local``, ``local:W`` or an address).
SCHEDULER_ENV = "HARNESS_SCHEDULER"

#: How long connecting to a scheduler may take before the run is refused.
CONNECT_SECONDS = 10.0

#: A task holds whole dictionary draws, as many as make about this many multiply-adds
#: of correlation (``N·d`` per trial), so that small problems do not drown in per-task
#: overhead while a large one is one draw per task.
TASK_WORK = 1 << 28

#: A task that holds part of a draw (when there are more workers than whole draws to
#: give them) holds at least this many of its trials: each part makes the draw again.
MIN_TASK_TRIALS = 4

#: The decoders' trial sources a worker keeps, most recently used first.
WORKER_CACHE = 4

INSTALL_HINT = "pip install 'superposition-harness[dask]'"


class BackendError(RuntimeError):
    """The distributed backend cannot be used, or was lost; the message says what to do."""


class _Lost(BaseException):
    """The scheduler or the client's connection was lost under a job's feet. A
    BaseException, so that the runner does not record it as the decoder's error."""


@dataclass(frozen=True)
class Scheduler:
    """Where tasks go: a Dask scheduler's ``address``, or (None) a local cluster of
    ``workers`` single-threaded worker processes that the harness starts and stops."""

    address: str | None = None
    workers: int | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.workers}"


def parse_scheduler(text: str) -> Scheduler:
    """``local``, ``local:W`` or a scheduler address (``tcp://host:8786``, ``host:8786``);
    ValueError with one sentence otherwise."""
    text = text.strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2]
        if not count:
            return Scheduler(workers=max(1, os.cpu_count() or 1))
        if not count.isdigit() or not 1 <= int(count) <= 1024:
            raise ValueError(f"a local scheduler takes a number of workers from 1 to 1024, like local:2, "
                             f"not {text!r}.")
        return Scheduler(workers=int(count))
    scheme, _, rest = text.rpartition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("", "tcp", "tls") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a scheduler is local, local:W or an address like tcp://host:8786, not {text!r}.")
    return Scheduler(address=text if scheme else f"tcp://{text}")


def choose_scheduler(option: str | None, config: str | None,
                     env: dict[str, str] | None = None) -> Scheduler | None:
    """The scheduler the command line names, else the config, else :data:`SCHEDULER_ENV`;
    None for this machine. BackendError (one sentence) if the one named is malformed."""
    environment = os.environ if env is None else env
    named = option or config or environment.get(SCHEDULER_ENV) or None
    if named is None:
        return None
    try:
        return parse_scheduler(named)
    except ValueError as exc:
        source = "--scheduler" if option else "[run] scheduler" if config else SCHEDULER_ENV
        raise BackendError(f"{source}: {exc}") from None


@dataclass
class Backend:
    """A connected Dask client, and what records say of it."""

    client: Any
    scheduler: Scheduler

    def workers(self) -> int:
        """Worker threads the scheduler has now (each runs one task at a time)."""
        info = self.client.scheduler_info()
        return sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()) or 1

    def provenance(self) -> dict[str, Any]:
        return {"backend": "dask", "scheduler": str(self.scheduler), "workers": self.workers()}


@contextlib.contextmanager
def connect(scheduler: Scheduler) -> Iterator[Backend]:
    """A client of ``scheduler`` (a local cluster started here, or a running scheduler),
    closed when the block ends; BackendError, before any work, if it cannot be had."""
    try:
        import distributed
    except ImportError:
        raise BackendError(f"--scheduler needs Dask's distributed scheduler: {INSTALL_HINT}.") from None
    cluster = None
    try:
        if scheduler.address is None:
            # Worker processes of one thread each, whose BLAS and OpenMP pools are one thread too.
            # The scheduler's HTTP server (unused here) takes another port if 8787 is taken.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                cluster = distributed.LocalCluster(
                    n_workers=scheduler.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                    silence_logs=logging.ERROR,
                    env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                         "NUMBA_NUM_THREADS": "1"})
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(scheduler.address, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BackendError(f"cannot reach the Dask scheduler at {scheduler} ({reason[:200]}); start one "
                           "with `dask scheduler` and workers with `dask worker ADDRESS`, or use "
                           "--scheduler local:W.") from None
    try:
        yield Backend(client, scheduler)
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


# ------------------------------------------------------------------ the worker's side

#: Each worker thread's trial sources (a source caches a dictionary draw, so it is not shared).
_local = threading.local()
_threads_lock = threading.Lock()
_threads_set = False


def _source(problem: Problem, decoder: Decoder, settings: RunSettings) -> LocalTrials:
    """This worker thread's trial source for the job (made once, kept for its next tasks)."""
    global _threads_set
    with _threads_lock:
        if not _threads_set:
            from . import parallel
            parallel.use_threads(1)
            _threads_set = True
    sources: OrderedDict[str, LocalTrials] = getattr(_local, "sources", None) or OrderedDict()
    _local.sources = sources
    key = json.dumps([repr(problem), type(decoder).__module__, type(decoder).__qualname__, decoder.params,
                      settings.batch_size, settings.memory], sort_keys=True, default=str)
    if key in sources:
        sources.move_to_end(key)
        return sources[key]
    dictionary = fixed_dictionary(problem, settings.memory) if problem.fixed else None
    source = sources[key] = LocalTrials(problem, decoder, settings, dictionary)
    while len(sources) > WORKER_CACHE:
        sources.popitem(last=False)
    return source


def run_trials(problem: Problem, decoder: Decoder, settings: RunSettings, value: int,
               trials: Sequence[int]) -> tuple[Any, ...]:
    """A task: decode ``trials`` at ``value`` on this worker. Returns ``("ok", bits)`` (the
    outcomes packed as bytes), or what the decoder did instead (``("fault", message)``,
    ``("raised", kind, message)``), so that any exception out of a task is the backend's."""
    with contained():
        try:
            outcomes = _source(problem, decoder, settings).outcomes(value, trials)
        except DecoderFault as fault:
            return "fault", str(fault)
        except (Exception, SystemExit) as exc:
            return "raised", type(exc).__name__, str(exc)
    return "ok", np.packbits(np.asarray(outcomes, dtype=bool)).tobytes()


# ------------------------------------------------------------------ the client's side


class _Raised(Exception):
    """A decoder's exception on a worker, named by its kind (the runner records it so)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def task_trials(problem: Problem, value: int) -> int:
    """How many trials a task holds at ``value`` (whole draws): about :data:`TASK_WORK`."""
    d = int(problem.d) if problem.fixed else value  # type: ignore[arg-type]
    draws = max(1, TASK_WORK // max(1, problem.n * d * problem.subsets_per_draw))
    return draws * problem.subsets_per_draw


def chunks(problem: Problem, value: int, trials: Sequence[int], spread: int = 1) -> list[list[int]]:
    """``trials`` split into tasks of whole draws (see :func:`task_trials`), and, where a
    draw alone is a task and there are fewer tasks than ``spread`` (workers that would
    otherwise wait), each draw into parts of at least :data:`MIN_TASK_TRIALS` trials, so
    that one large probe keeps ``spread`` workers busy. A part makes its draw again on
    its worker; the outcomes are the same, however the trials are split."""
    size = task_trials(problem, value) // problem.subsets_per_draw
    out: list[list[int]] = []
    current: list[int] = []
    first = None
    for trial in trials:
        draw = problem.locate(trial)[0]
        if first is None or draw - first >= size:
            if current:
                out.append(current)
            current, first = [], draw
        current.append(trial)
    if current:
        out.append(current)
    if size > 1 or len(out) >= spread:
        return out
    parts = -(-spread // len(out))
    split: list[list[int]] = []
    for group in out:
        pieces = min(parts, max(1, len(group) // MIN_TASK_TRIALS))
        split += [list(piece) for piece in np.array_split(np.asarray(group), pieces)]
    return split


class DaskTrials:
    """A run's trials decoded on Dask's workers, a task per group of draws."""

    def __init__(self, backend: Backend, problem: Problem, decoder: Decoder, settings: RunSettings,
                 on_trials: Callable[[int, int], None] | None = None, timeout: float | None = None,
                 spread: Callable[[], int] | None = None) -> None:
        self.backend, self.problem, self.decoder, self.settings = backend, problem, decoder, settings
        self.on_trials = on_trials
        self.timeout = timeout
        self.spread = spread
        self.began: float | None = None
        self.tasks = 0

    def outcomes(self, value: int, trials: Sequence[int]) -> list[bool]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        client = self.backend.client
        if self.began is None:
            self.began = time.monotonic()
        groups = chunks(self.problem, value, trials, self.spread() if self.spread is not None else 1)
        self.tasks += len(groups)
        try:
            futures = {client.submit(run_trials, self.problem, self.decoder, self.settings, value, group,
                                     pure=False): i for i, group in enumerate(groups)}
        except Exception as exc:  # pickling the decoder, or a closed client
            raise _Lost(f"could not submit tasks ({type(exc).__name__}: {exc})") from None
        results: list[list[bool] | None] = [None] * len(groups)
        left = None if self.timeout is None else max(0.0, self.began + self.timeout - time.monotonic())
        try:
            for future in as_completed(list(futures), timeout=left):
                i = futures[future]
                if future.status == "error":  # run_trials raises nothing: the task could not run
                    error = future.exception()
                    if isinstance(error, KilledWorker):
                        raise DecoderFault(f"stopped its worker process ({type(error).__name__})")
                    raise DecoderFault(f"could not run on a worker ({type(error).__name__}: {error})")
                answer = future.result()
                if answer[0] == "fault":
                    raise DecoderFault(answer[1])
                if answer[0] == "raised":
                    raise _Raised(answer[1], answer[2])
                bits = np.unpackbits(np.frombuffer(answer[1], dtype=np.uint8))[:len(groups[i])]
                results[i] = [bool(b) for b in bits]
                if self.on_trials is not None:
                    self.on_trials(len(groups[i]), value)
        except (DecoderFault, _Raised):
            client.cancel(list(futures))
            raise
        except TimeoutError:
            self._stop(list(futures))
            raise DecoderFault(f"did not finish within its time limit of {self.timeout:g} s and was stopped "
                               "(--timeout)") from None
        except _Lost:
            raise
        except Exception as exc:  # the connection to the scheduler
            raise _Lost(f"{type(exc).__name__}: {exc}") from None
        return [outcome for result in results for outcome in (result or [])]

    def _stop(self, futures: list[Any]) -> None:
        """Cancel a timed-out job's tasks and restart the workers still running them (a
        thread stuck in a decoder cannot be stopped any other way)."""
        client = self.backend.client
        keys = {future.key for future in futures}
        with contextlib.suppress(Exception):
            busy = [worker for worker, running in client.processing().items() if keys & set(running)]
            client.cancel(futures)
            if busy:
                client.restart_workers(workers=busy, raise_for_error=False)


def run_on_dask(backend: Backend, jobs: Sequence[tuple[Problem, Decoder]], settings: RunSettings, *,
                timeout: float | None = None, on_trials: Callable[[int, int, int], None] | None = None,
                concurrent: int | None = None) -> Iterator[tuple[int, DecoderRun, int]]:
    """Run ``jobs`` on ``backend``; yield ``(index, run, tasks)`` as they finish, on the
    calling thread (which alone should write the store). ``on_trials(index, count, value)``
    is called on the calling thread too. At most ``concurrent`` searches run at once
    (default: twice the worker threads, so that none waits for work; as many as the
    worker threads under a ``timeout``, which counts from a job's first task);
    BackendError if the scheduler is lost (the jobs finished so far have been yielded)."""
    events: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
    # A job's time limit counts from its first task; with no more searches than worker
    # threads, its tasks wait for no other job's before they start.
    threads = backend.workers()
    width = concurrent or (threads if timeout is not None else max(2, 2 * threads))
    sources: dict[int, DaskTrials] = {}
    unfinished = [len(jobs)]  # the searches in flight are min(width, unfinished)
    lock = threading.Lock()

    def spread() -> int:
        """The tasks a request should make: its search's share of the worker threads."""
        with lock:
            return max(1, -(-threads // max(1, min(width, unfinished[0]))))

    def one(index: int) -> DecoderRun:
        problem, decoder = jobs[index]
        try:
            pickle.dumps(decoder)
        except Exception as exc:  # defined where no other process can import it (a notebook, a test)
            sources[index] = DaskTrials(backend, problem, decoder, settings)
            return failed_run(problem, decoder, settings, f"could not be sent to the workers "
                                                          f"({type(exc).__name__}: {exc})")
        source = sources[index] = DaskTrials(
            backend, problem, decoder, settings, timeout=timeout, spread=spread,
            on_trials=lambda count, value: events.put((index, count, value)))
        try:
            return run_decoder(problem, decoder, settings, trials=source)
        finally:
            with lock:
                unfinished[0] -= 1

    def drain() -> None:
        while True:
            try:
                index, count, value = events.get_nowait()
            except queue.Empty:
                return
            if on_trials is not None:
                on_trials(index, count, value)

    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="harness-search")
    pending = {pool.submit(one, index): index for index in range(len(jobs))}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for future in done:
                index = pending.pop(future)
                try:
                    run = future.result()
                except _Lost as lost:
                    raise BackendError(
                        f"lost the Dask scheduler at {backend.scheduler} mid-run ({lost}); the records "
                        "finished so far are stored, and running the same command again resumes the "
                        "rest.") from None
                yield index, run, sources[index].tasks
    finally:
        # Searches still waiting on a lost scheduler end when the client closes: not waited for here.
        pool.shutdown(wait=not pending, cancel_futures=True)
        drain()
