"""Running one decoder on one problem: batching trials, checking outputs, timing, isolation.

The runner turns the search's requests ("``count`` more trials at dimension ``d``")
into batches of instances, hands them to the decoder and checks what comes back.
A batch never spans two dictionary draws, and each instance is made from its own
(seed, draw, subset) streams, so the outcome of a trial does not depend on the batch
size. A decoder that raises or returns malformed sets stops only its own run: the
outcome carries the reason and the caller goes on with the next decoder.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn, Protocol

import numpy as np

from .decoder import Decoder
from .dictionary import Dictionary, MatrixDictionary, generated_dictionary, release_kept_bits
from .memory import DEFAULT_MEMORY, needed_bytes
from .problem import FIXED, SAE_OFFSET, Problem, draw_noise, draw_subsets, entropy_bits
from .search import DimensionSearch, Estimate, SearchError

#: The success rate of the second, "even odds" estimate (docs/contract.md §2).
HALF = 0.5

#: A trial runner keeps the subsets of recent draws up to this many bytes.
SUBSETS_CACHE_BYTES = 64 << 20


class DecoderFault(RuntimeError):
    """A decoder's output broke the contract; the message says how."""


class ProcessExit(RuntimeError):
    """A decoder called ``os._exit`` while it ran in the harness's process: recorded as its
    error, instead of ending the harness."""


#: ``os._exit`` itself, for the harness's own use while a decoder runs (see :func:`contained`).
_exit = os._exit


_contained_lock = threading.Lock()
_contained_depth = 0


@contextlib.contextmanager
def contained() -> Iterator[None]:
    """What a decoder running in the harness's process must not change, kept for the run:

    - NumPy's floating-point error state, restored when the run ends;
    - the working directory, restored when the run ends (the results store's path is
      absolute anyway), so a decoder that changes it moves nothing of anyone else's;
    - the process itself: ``os._exit`` raises :class:`ProcessExit` instead of ending it,
      and a copy of the process (a decoder that forks) ends as soon as its decoder
      returns, so it cannot run trials or write records of its own.

    Runs on several threads at once (a worker of a distributed backend) nest: ``os._exit``
    is replaced by the first to start and put back by the last to end.
    """
    global _contained_depth
    owner = os.getpid()
    directory = os.getcwd()

    def refuse(status: int) -> NoReturn:
        if os.getpid() != owner:  # a copy made by fork may end itself
            _exit(status)
        raise ProcessExit(f"called os._exit({status}), which would have ended the harness")

    with _contained_lock:
        if _contained_depth == 0:
            os._exit = refuse
        _contained_depth += 1
    try:
        with np.errstate(**np.geterr()):
            yield
    finally:
        with _contained_lock:
            _contained_depth -= 1
            if _contained_depth == 0:
                os._exit = _exit
        if os.getpid() != owner:
            _exit(0)
        with contextlib.suppress(OSError):
            if os.getcwd() != directory:
                os.chdir(directory)


def end_copies_of(owner: int) -> None:
    """End this process at once if it is not ``owner`` but a copy of it (a decoder forked)."""
    if os.getpid() != owner:
        _exit(0)


#: The most trials a probe may run: every outcome is kept, in memory and in the record.
MAX_TRIALS = 1 << 20


@dataclass(frozen=True)
class RunSettings:
    """How a run is executed and searched; none of it changes the instances.

    ``batch_size``, ``memory`` and the number of workers change only speed;
    ``target``, ``max_trials`` (trials per probe at most), ``confirm_trials`` (the
    trials in all on which the search's candidate must pass again; None: twice
    ``max_trials``), ``resolution`` (relative width at which the search for ``d*``
    stops narrowing) and ``d_max`` change the estimate and are recorded with it.
    """

    target: float = 0.95
    max_trials: int = 256
    batch_size: int = 32
    d_max: int | None = None
    k_max: int | None = None
    resolution: float = 0.01
    memory: int = DEFAULT_MEMORY
    confirm_trials: int | None = None

    @property
    def confirmation(self) -> int:
        """The trials in all on which a candidate ``d*`` (or ``k*``) is confirmed."""
        if self.confirm_trials is not None:
            return self.confirm_trials
        return min(2 * self.max_trials, MAX_TRIALS)

    def validate(self) -> None:
        if not 0 < self.target < 1:
            raise SearchError(f"target must be a success rate strictly between 0 and 1, not {self.target}.")
        if not 1 <= self.max_trials <= MAX_TRIALS:
            raise SearchError(f"trials must be an integer from 1 to {MAX_TRIALS}, not {self.max_trials}.")
        if self.batch_size < 1:
            raise SearchError(f"batch size must be a positive integer, not {self.batch_size}.")
        if self.d_max is not None and self.d_max < 1:
            raise SearchError(f"the largest dimension must be a positive integer, not {self.d_max}.")
        if self.k_max is not None and self.k_max < 1:
            raise SearchError(f"the largest k must be a positive integer, not {self.k_max}.")
        if not 0 <= self.resolution < 0.5:
            raise SearchError(f"resolution must be a fraction in [0, 0.5), not {self.resolution}.")
        if not self.max_trials <= self.confirmation <= MAX_TRIALS:
            raise SearchError(f"the confirmation trials must be an integer from the {self.max_trials} "
                              f"trials of a probe to {MAX_TRIALS}, not {self.confirmation}.")
        if self.memory < 1:
            raise SearchError(f"the memory budget must be positive, not {self.memory} bytes.")


def peak_memory_bytes() -> int | None:
    """The most memory this process has held so far (Linux: ``VmHWM``, which unlike
    ``ru_maxrss`` does not count what the process held before it was exec'd)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def default_d_max(problem: Problem) -> int:
    """Where the search gives up by default: 16 dims/bit, well past every one-step rule."""
    return 16 * math.ceil(problem.entropy_bits) + 64


def default_k_max(problem: Problem) -> int:
    """The largest ``k`` the fixed track tries by default: ``k ≤ d``, and ``k < N``."""
    assert problem.d is not None
    return max(1, min(problem.d, problem.n - 1))


def search_limit(problem: Problem, settings: RunSettings) -> int:
    """Where the search stops: ``d_max`` (generated track) or ``k_max`` (fixed track)."""
    if problem.fixed:
        return min(settings.k_max or default_k_max(problem), problem.n - 1)
    return settings.d_max or default_d_max(problem)


def first_k_guess(n: int, d: int, k_max: int) -> int:
    """Where the fixed track starts: the largest ``k`` with ``H(N, k) ≤ d`` (1 dim/bit)."""
    k = 1
    while k < k_max and entropy_bits(n, k + 1) <= d:
        k += 1
    return k


@dataclass
class DecoderRun:
    """What one decoder did on one problem: estimates, the success curve, or its error.

    The problem's track says what the search varied (``variable``): ``"d"`` on generated
    dictionaries (estimates are ``d*``) or ``"k"`` on a fixed dictionary (estimates are
    ``k*`` and ``d_max`` is the largest ``k`` tried). The curve's points are keyed by it.
    """

    problem: Problem
    settings: RunSettings
    d_max: int
    #: The parameters the decoder was made with.
    params: dict[str, Any] = field(default_factory=dict)
    estimate: Estimate | None = None
    half: Estimate | None = None
    curve: list[dict[str, int]] = field(default_factory=list)
    #: Each probe's trial outcomes in trial order, keyed like the curve (True: decoded exactly).
    outcomes: dict[int, list[bool]] = field(default_factory=dict)
    trials: int = 0
    trials_target: int = 0
    wall_seconds: float = 0.0
    peak_memory_bytes: int | None = None
    error: str | None = None

    @property
    def variable(self) -> str:
        return self.problem.track.variable

    @property
    def ok(self) -> bool:
        return self.error is None


def check_decoded(decoded: Any, batch: int, n: int) -> list[np.ndarray]:
    """The decoded sets as sorted int64 arrays; DecoderFault if they break the contract."""
    if isinstance(decoded, np.ndarray):
        if decoded.ndim != 2 or decoded.shape[0] != batch:
            raise DecoderFault(
                f"returned an array of shape {decoded.shape}; expected ({batch}, m), one row per signal")
        rows: Sequence[Any] = list(decoded)
    else:
        try:
            rows = list(decoded)
        except TypeError:
            raise DecoderFault(
                f"returned {type(decoded).__name__}; expected an integer array or a list of index arrays"
            ) from None
        if len(rows) != batch:
            raise DecoderFault(f"returned {len(rows)} sets for a batch of {batch} signals")
    out = []
    for row in rows:
        values = np.asarray(row)
        if values.ndim != 1:
            raise DecoderFault(f"returned a set of shape {values.shape}; each set must be 1-D")
        if values.dtype.kind == "f":
            if not np.all(np.isfinite(values)):
                raise DecoderFault("returned NaN or infinite indices")
            if not np.all(values == np.round(values)):
                raise DecoderFault("returned non-integer indices")
        elif values.dtype.kind not in "iu" and values.size:
            raise DecoderFault(f"returned indices of type {values.dtype}; expected integers")
        indices = np.sort(values.astype(np.int64))
        if indices.size and (indices[0] < 0 or indices[-1] >= n):
            bad = indices[0] if indices[0] < 0 else indices[-1]
            raise DecoderFault(f"returned index {bad}, outside [0, {n})")
        if indices.size > 1 and np.any(indices[1:] == indices[:-1]):
            raise DecoderFault("returned a set with a repeated index")
        out.append(indices)
    return out


class TrialRunner:
    """Runs trials of one decoder on one problem, a dictionary draw at a time."""

    def __init__(self, problem: Problem, decoder: Decoder, batch_size: int,
                 on_trials: Callable[[int], None] | None = None,
                 fixed: Dictionary | None = None, cache_bytes: int | None = None) -> None:
        self.problem = problem
        self.decoder = decoder
        self.batch_size = batch_size
        self.on_trials = on_trials
        self.fixed = fixed
        self.cache_bytes = cache_bytes
        self._subsets: dict[int, np.ndarray] = {}
        self._dictionary: tuple[int, int, Dictionary] | None = None
        self._outcomes: dict[int, dict[int, bool]] = {}  # d -> trial -> decoded exactly
        self._owner = os.getpid()

    def subsets(self, draw: int) -> np.ndarray:
        if draw not in self._subsets:
            per_draw = 8 * self.problem.subsets_per_draw * max(1, self.problem.k or 1)
            if len(self._subsets) >= max(1, min(64, SUBSETS_CACHE_BYTES // per_draw)):
                self._subsets.clear()
            self._subsets[draw] = draw_subsets(self.problem, draw)
        return self._subsets[draw]

    def dictionary(self, d: int, draw: int) -> Dictionary:
        if self.fixed is not None:
            return self.fixed
        if self._dictionary is None or self._dictionary[:2] != (d, draw):
            self._dictionary = None  # let the last draw's blocks go before the next are made
            options = {} if self.cache_bytes is None else {"cache_bytes": self.cache_bytes}
            self._dictionary = (d, draw, generated_dictionary(self.problem, d, draw, **options))
        return self._dictionary[2]

    def __call__(self, d: int, start: int, count: int) -> int:
        """Run trials ``start .. start+count-1`` at dimension ``d``; return the successes.

        The outcomes are kept (see ``outcomes``) only once all ``count`` trials have
        run, so they always match the counts the search holds.
        """
        outcomes = self.outcomes_of(d, range(start, start + count))
        self._outcomes.setdefault(d, {}).update(zip(range(start, start + count), outcomes, strict=True))
        return sum(outcomes)

    def outcomes(self, d: int, trials: int) -> list[bool] | None:
        """The outcomes of trials ``0 .. trials-1`` at ``d``, or None unless all have run."""
        done = self._outcomes.get(d, {})
        if any(trial not in done for trial in range(trials)):
            return None
        return [done[trial] for trial in range(trials)]

    def outcomes_of(self, d: int, trials: Iterable[int]) -> list[bool]:
        """Whether each of ``trials`` (indices, increasing) is decoded exactly at ``d``.

        Each trial is made from its own streams and decoded per row, so the outcomes do
        not depend on which other trials run beside it: ``harness verify`` re-runs a
        sample this way.
        """
        problem = self.problem
        by_draw: dict[int, list[int]] = {}
        for trial in trials:
            draw, row = problem.locate(trial)
            by_draw.setdefault(draw, []).append(row)
        outcomes: list[bool] = []
        for draw, rows in by_draw.items():
            outcomes += self._draw_outcomes(d, draw, rows)
        return outcomes

    def _draw_outcomes(self, d: int, draw: int, rows: list[int]) -> list[bool]:
        problem = self.problem
        dictionary = self.dictionary(d, draw)
        subsets = self.subsets(draw)
        noise = draw_noise(problem, draw, d) if problem.noisy else None
        sigma = problem.sigma(d)
        outcomes: list[bool] = []
        for lo in range(0, len(rows), self.batch_size):
            chosen = np.asarray(rows[lo:lo + self.batch_size])
            batch = subsets[chosen]
            signals = dictionary.superpose(batch, None if noise is None else noise[chosen], sigma)
            decoded = self.decoder.decode(dictionary, signals, k=int(problem.k or 0), noise=sigma)
            end_copies_of(self._owner)
            for truth, guess in zip(batch, check_decoded(decoded, len(chosen), problem.n), strict=True):
                outcomes.append(guess.size == truth.size and bool(np.all(guess == truth)))
            if self.on_trials is not None:
                self.on_trials(len(chosen))
        return outcomes


def warm_up(problem: Problem, dictionary: Dictionary | None = None) -> None:
    """Compile the harness's own kernels for this kind of problem (numba compiles a kernel
    on its first call, and that can take seconds on a busy machine): what a worker does
    before a time limit starts, so that the limit counts the decoder's work alone."""
    from .dictionary import grid_steps, snap_to_grid
    from .kernels import top_k_rows

    small = problem.with_k(1)
    # Room for a Rademacher draw's bits at d = 64 (one word a codeword), so that the
    # kernels that run over all of them are compiled too.
    operator = dictionary if dictionary is not None else generated_dictionary(small, 64, 0,
                                                                              cache_bytes=8 * small.n)
    subsets = draw_subsets(small, 0)[:2]
    signals = operator.superpose(subsets)
    top_k_rows(operator.correlate(snap_to_grid(signals, grid_steps(signals))), 1)
    correlations = operator.correlate(signals).astype(np.float64)
    operator.gram_rows(subsets[:, 0])
    operator.subtract_gram_rows(correlations, subsets[:, 0])
    operator.remove(signals, subsets[:, 0])


def load_fixed(path: str, max_bytes: int = DEFAULT_MEMORY, format: str | None = None,
               key: str | None = None) -> tuple[MatrixDictionary, str]:
    """A dictionary file read for the fixed track (an SAE's layout forced by ``format``, a
    matrix file's array chosen by ``key``): the dictionary (with an SAE's ``b_dec`` as its
    offset, so signals are in the SAE's frame) and the file's SHA-256."""
    from .weights import fingerprint, load_dictionary_file

    matrix, offset = load_dictionary_file(path, format=format, key=key,  # type: ignore[arg-type]
                                          max_bytes=max_bytes)  # refuses a file it cannot use, unread
    sha256 = fingerprint(path, format, key)  # type: ignore[arg-type]
    return MatrixDictionary(matrix, offset=offset), sha256


def fixed_dictionary(problem: Problem, max_bytes: int = DEFAULT_MEMORY) -> MatrixDictionary:
    """The dictionary of a fixed-dictionary problem, read again from the file it names;
    WeightsError if that file is not the one the problem was made with."""
    from .weights import WeightsError

    path = str(problem.dictionary_file)
    dictionary, sha256 = load_fixed(path, max_bytes, problem.dictionary_format, problem.dictionary_key)
    if sha256 != problem.dictionary_sha256:
        raise WeightsError(f"{path} is not the file the problem was made with (its SHA-256 differs).")
    if (dictionary.d, dictionary.n) != (problem.d, problem.n) or \
            (dictionary.offset is not None) != (problem.offset == SAE_OFFSET):
        raise WeightsError(f"{path} does not give the {problem.d} × {problem.n} dictionary "
                           f"with offset {problem.offset} that the problem names.")
    return dictionary


#: What a search asks of its trials: the successes among trials ``start .. start+count-1``
#: at ``value`` (the dimension ``d``, or ``k`` on the fixed track).
Evaluate = Callable[[int, int, int], int]


class LocalTrials:
    """Trials run here, on this process's threads: the harness's default source of outcomes.

    ``outcomes(value, trials)`` decodes the given trials at ``value`` (the dimension, or
    ``k`` on the fixed track) and returns whether each was read back exactly. One
    :class:`TrialRunner` serves the generated track (it draws the dictionary of each
    dimension); the fixed track has one per ``k``. A backend that runs trials elsewhere
    makes one of these where it runs them (``dask_backend``).
    """

    def __init__(self, problem: Problem, decoder: Decoder, settings: RunSettings,
                 dictionary: Dictionary | None = None,
                 on_trials: Callable[[int, int], None] | None = None) -> None:
        self.problem, self.decoder, self.settings = problem, decoder, settings
        self.fixed = problem.track is FIXED
        if self.fixed and (dictionary is None or (dictionary.d, dictionary.n) != (problem.d, problem.n)):
            raise ValueError("the fixed track needs the problem's own d × N dictionary")
        self.dictionary = dictionary
        self.on_trials = on_trials
        self._runners: dict[int, TrialRunner] = {}
        #: What the run needs besides its dictionary cache (None on the fixed track, whose
        #: dictionary is the file's); the budget's rest is the cache.
        self.working_bytes = None if self.fixed else needed_bytes(
            problem, decoder.batch_arrays, settings.batch_size, search_limit(problem, settings))
        self._cache = None if self.working_bytes is None else max(0, settings.memory - self.working_bytes)

    def _runner(self, value: int) -> TrialRunner:
        key = value if self.fixed else 0
        if key not in self._runners:
            problem = self.problem.with_k(value) if self.fixed else self.problem
            self._runners[key] = TrialRunner(problem, self.decoder, self.settings.batch_size,
                                             fixed=self.dictionary, cache_bytes=self._cache)
        return self._runners[key]

    def outcomes(self, value: int, trials: Sequence[int]) -> list[bool]:
        runner = self._runner(value)
        runner.on_trials = None if self.on_trials is None else partial(_report, self.on_trials, value)
        return runner.outcomes_of(int(self.problem.d) if self.fixed else value,  # type: ignore[arg-type]
                                  trials)


class Trials(Protocol):
    """Where a run's trials are decoded: :class:`LocalTrials`, or a backend's."""

    def outcomes(self, value: int, trials: Sequence[int]) -> list[bool]:
        """Whether each of ``trials`` (indices, increasing) is decoded exactly at ``value``."""


class Memo(Protocol):
    """Outcomes kept across processes (``journal.Journal``): a run stopped midway resumes."""

    def known(self, value: int, start: int, count: int) -> list[bool] | None:
        """The outcomes of trials ``start .. start+count-1`` at ``value``, if all are kept."""

    def write(self, value: int, start: int, outcomes: list[bool]) -> None:
        """Keep the outcomes of trials ``start ..`` at ``value``, just decoded."""


def run_decoder(problem: Problem, decoder: Decoder, settings: RunSettings,
                on_trials: Callable[[int, int], None] | None = None,
                dictionary: Dictionary | None = None, trials: Trials | None = None,
                memo: Memo | None = None) -> DecoderRun:
    """Search ``d*(target)`` and ``d*(0.5)`` of ``decoder`` on ``problem``, or, on the
    fixed track (with the problem's own ``dictionary`` given), ``k*`` of both.

    Exceptions raised by the decoder, and outputs that break the contract, end this
    run with ``error`` set; they never propagate. ``on_trials(count, value)`` hears of
    every batch: ``count`` more trials at ``value`` (the dimension, or ``k``). The trials
    are decoded here unless ``trials`` says where else (a distributed backend); the
    search, hence the record, is the same either way. A request whose outcomes ``memo``
    holds (a journal of an earlier, stopped process) is answered from it, and every
    request decoded here is written to it.
    """
    source = trials if trials is not None else LocalTrials(problem, decoder, settings, dictionary, on_trials)
    run = DecoderRun(problem=problem, settings=settings, d_max=search_limit(problem, settings),
                     params=dict(decoder.params))
    seen: dict[int, dict[int, bool]] = {}

    def evaluate(value: int, start: int, count: int) -> int:
        indices = range(start, start + count)
        kept = memo.known(value, start, count) if memo is not None else None
        if kept is not None:
            outcomes = kept
            if on_trials is not None:
                on_trials(count, value)
        else:
            outcomes = source.outcomes(value, indices)
            if len(outcomes) != count:
                raise RuntimeError(f"{count} trials were asked for at {value} but {len(outcomes)} came back")
            if memo is not None:
                memo.write(value, start, list(outcomes))
        seen.setdefault(value, {}).update(zip(indices, outcomes, strict=True))
        return sum(outcomes)

    began = time.perf_counter()
    with contained():
        try:
            measure(run, evaluate)
        except DecoderFault as fault:
            run.error = f"decoder {decoder.name!r} {fault}"
        except (Exception, SystemExit) as exc:  # a plugin's failure is recorded, never propagated
            kind = getattr(exc, "kind", None) or type(exc).__name__
            run.error = f"decoder {decoder.name!r} raised {kind}: {exc}"
    release_kept_bits()  # the last draw's bits are not needed after the run
    run.wall_seconds = time.perf_counter() - began
    run.peak_memory_bytes = peak_memory_bytes()
    for point in run.curve:
        value, done = point[run.variable], seen.get(point[run.variable], {})
        if all(trial in done for trial in range(point["trials"])):
            run.outcomes[value] = [done[trial] for trial in range(point["trials"])]
    return run


def _report(on_trials: Callable[[int, int], None], value: int, count: int) -> None:
    on_trials(count, value)


def measure(run: DecoderRun, evaluate: Evaluate) -> None:
    """The search of both tracks, the one that every run and ``harness verify`` use: fill
    ``run`` with its estimates at the target and at 0.5, its curve and its trial counts,
    asking ``evaluate`` for successes.

    ``k*(q)`` on the fixed track is the largest ``k`` with ``p(k) ≥ q``. The same search
    finds it: with ``m = k_max + 1 − k`` the success rate grows with ``m``, so the smallest
    passing ``m`` is the largest passing ``k``, and the interval maps across the same way.
    An exception from ``evaluate`` propagates; ``run`` then holds the probes made so far.
    """
    problem, settings, limit = run.problem, run.settings, run.d_max
    if problem.track is FIXED:
        assert problem.d is not None

        def to_value(m: int) -> int:
            return limit + 1 - m

        def convert(estimate: Estimate) -> Estimate:
            lo, hi = estimate.ci
            return Estimate(q=estimate.q, d=None if estimate.d is None else to_value(estimate.d),
                            ci=(None if hi is None else to_value(hi), None if lo is None else to_value(lo)))

        search = DimensionSearch(lambda m, start, count: evaluate(to_value(m), start, count),
                                 d_max=limit, max_trials=settings.max_trials,
                                 confirm_trials=settings.confirmation)
        start = to_value(first_k_guess(problem.n, problem.d, limit))
    else:
        def convert(estimate: Estimate) -> Estimate:
            return estimate

        search = DimensionSearch(evaluate, d_max=limit, max_trials=settings.max_trials,
                                 resolution=settings.resolution, confirm_trials=settings.confirmation)
        start = math.ceil(problem.entropy_bits)
    try:
        reliable = search.find(settings.target, start=start)
        run.trials_target = search.total_trials
        run.estimate = convert(reliable)
        run.half = convert(search.find(HALF, start=reliable.d if reliable.d is not None else start))
    finally:
        curve = search.curve_points()
        if problem.track is FIXED:
            curve = sorted(({"k": limit + 1 - p["d"], "trials": p["trials"], "successes": p["successes"]}
                            for p in curve), key=lambda p: p["k"])
        run.curve = curve
        run.trials = search.total_trials


def failed_run(problem: Problem, decoder: Decoder, settings: RunSettings, error: str,
               seconds: float = 0.0) -> DecoderRun:
    """A run that ended before its search could: ``error`` says how (after the decoder's name)."""
    return DecoderRun(problem=problem, settings=settings, d_max=search_limit(problem, settings),
                      params=dict(decoder.params), error=f"decoder {decoder.name!r} {error}",
                      wall_seconds=seconds)
