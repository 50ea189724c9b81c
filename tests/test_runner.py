"""The runner: trials from the search, checked decoder outputs, isolated failures."""

from __future__ import annotations

import numpy as np
import pytest
from superposition_harness import Decoder, Problem
from superposition_harness.runner import (
    DecoderFault,
    RunSettings,
    TrialRunner,
    check_decoded,
    default_d_max,
    run_decoder,
)
from superposition_harness.search import SearchError
from superposition_harness_builtins.mp import MatchingPursuit
from superposition_harness_builtins.topk import TopKDecoder

FAST = RunSettings(max_trials=32)


def misbehaving(label, output):
    """A decoder class whose decode() returns ``output(signals, k)`` (or raises it)."""
    class Misbehaving(Decoder):
        name = f"bad-{label}"
        description = "A decoder that breaks the contract on purpose."

        def decode(self, dictionary, signals, *, k, noise):
            return output(signals, k)
    return Misbehaving


def _raise(signals, k):
    raise RuntimeError("boom")


BAD = {
    "raises": (_raise, "raised RuntimeError: boom"),
    "wrong-rows": (lambda s, k: np.zeros((s.shape[0] + 1, k), dtype=np.int64), "expected"),
    "wrong-ndim": (lambda s, k: np.zeros(s.shape[0], dtype=np.int64), "expected"),
    "out-of-range": (lambda s, k: np.full((s.shape[0], k), 10**6), "outside [0, 256)"),
    "negative": (lambda s, k: -np.ones((s.shape[0], 1), dtype=np.int64), "outside [0, 256)"),
    "duplicates": (lambda s, k: np.zeros((s.shape[0], 2), dtype=np.int64), "repeated index"),
    "nan": (lambda s, k: np.full((s.shape[0], k), np.nan), "NaN"),
    "fractional": (lambda s, k: np.full((s.shape[0], 1), 0.5), "non-integer"),
    "not-iterable": (lambda s, k: 42, "expected an integer array"),
    "few-sets": (lambda s, k: [np.arange(k)], "sets for a batch"),
    "strings": (lambda s, k: [np.array(["a"])] * s.shape[0], "expected integers"),
}


@pytest.mark.parametrize("label", sorted(BAD))
def test_a_misbehaving_decoder_is_recorded_as_an_error(label, small_problem):
    output, reason = BAD[label]
    run = run_decoder(small_problem, misbehaving(label, output)(), FAST)
    assert not run.ok
    assert reason in run.error
    assert f"bad-{label}" in run.error


def test_a_failing_decoder_does_not_affect_the_next(small_problem):
    """The same good decoder gives the same result before and after a failing one."""
    first = run_decoder(small_problem, TopKDecoder(), FAST)
    run_decoder(small_problem, misbehaving("raises", _raise)(), FAST)
    second = run_decoder(small_problem, TopKDecoder(), FAST)
    assert first.ok and second.ok
    assert (first.estimate, first.half, first.curve) == (second.estimate, second.half, second.curve)


def test_check_decoded_accepts_both_return_forms():
    rows = check_decoded(np.array([[3, 1], [0, 2]]), 2, 4)
    assert [list(r) for r in rows] == [[1, 3], [0, 2]]
    rows = check_decoded([np.array([2]), np.array([], dtype=np.int64)], 2, 4)
    assert [list(r) for r in rows] == [[2], []]
    with pytest.raises(DecoderFault):
        check_decoded([np.array([[1]]), np.array([1])], 2, 4)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 50])
def test_outcomes_do_not_depend_on_the_batch_size(batch_size, small_problem):
    """Trials 5..40 succeed or fail the same way whatever the batch size."""
    reference = TrialRunner(small_problem, MatchingPursuit(), batch_size=8)
    runner = TrialRunner(small_problem, MatchingPursuit(), batch_size=batch_size)
    for d in (24, 40, 64):
        assert runner(d, 5, 35) == reference(d, 5, 35)


def test_trial_ranges_add_up(small_problem):
    """Running trials in pieces gives the same successes as running them at once."""
    runner = TrialRunner(small_problem, MatchingPursuit(), batch_size=4)
    whole = runner(30, 0, 40)
    pieces = runner(30, 0, 3) + runner(30, 3, 14) + runner(30, 17, 23)
    assert whole == pieces


def test_progress_callback_counts_every_trial(small_problem):
    seen = []
    TrialRunner(small_problem, TopKDecoder(), batch_size=3, on_trials=seen.append)(50, 2, 20)
    assert sum(seen) == 20 and max(seen) <= 3


def test_run_decoder_reports_both_estimates_and_a_supported_curve(small_problem):
    run = run_decoder(small_problem, MatchingPursuit(), RunSettings(max_trials=128))
    assert run.ok
    assert run.estimate.q == 0.95 and run.half.q == 0.5
    assert run.half.d <= run.estimate.d
    lo, hi = run.estimate.ci
    assert lo <= run.estimate.d <= hi
    points = {p["d"]: p for p in run.curve}
    star = points[run.estimate.d]
    assert star["successes"] / star["trials"] >= 0.95
    assert run.trials == sum(p["trials"] for p in run.curve)


def test_a_decoder_that_never_succeeds_reaches_d_max(small_problem):
    never = misbehaving("empty", lambda s, k: [np.array([], dtype=np.int64)] * s.shape[0])
    run = run_decoder(small_problem, never(), RunSettings(max_trials=32, d_max=100))
    assert run.ok and run.estimate.d is None and run.estimate.ci[1] is None
    assert max(p["d"] for p in run.curve) == 100


def test_default_d_max_is_sixteen_dims_per_bit():
    problem = Problem(n=4096, k=16)
    assert default_d_max(problem) >= 16 * problem.entropy_bits


@pytest.mark.parametrize("settings", [RunSettings(target=1.0), RunSettings(target=0),
                                      RunSettings(max_trials=0), RunSettings(batch_size=0),
                                      RunSettings(d_max=0)])
def test_invalid_settings_are_refused(settings):
    with pytest.raises(SearchError):
        settings.validate()


# --------------------------------------------------------- jobs in worker processes


class ExitsItsProcess(Decoder):
    """A decoder whose process dies under it (as a crash in compiled code would)."""

    name = "exits"
    description = "Ends its process."

    def decode(self, dictionary, signals, *, k, noise):
        import os
        import signal
        os.kill(os.getpid(), signal.SIGKILL)  # os._exit would only be recorded as its error


def test_only_small_generated_problems_with_importable_decoders_go_to_processes():
    from superposition_harness.dictionary import MatrixDictionary
    from superposition_harness.workers import PROCESS_JOBS_MAX_N, can_run_in_a_process

    class Local(TopKDecoder):
        name = "local"

    small = Problem(n=4096, k=4)
    assert can_run_in_a_process(small, MatchingPursuit(), None)
    assert not can_run_in_a_process(Problem(n=PROCESS_JOBS_MAX_N * 2, k=4), MatchingPursuit(), None)
    assert not can_run_in_a_process(small, Local(), None)
    matrix = MatrixDictionary(np.eye(8))
    assert not can_run_in_a_process(small, MatchingPursuit(), matrix)


def test_jobs_in_processes_give_the_runs_of_this_process():
    from superposition_harness.workers import WorkerJob, run_in_workers
    settings = RunSettings(max_trials=64)
    jobs = [(Problem(n=256, k=3, seed=2), MatchingPursuit()), (Problem(n=256, k=5, seed=2), TopKDecoder())]
    here = [run_decoder(problem, decoder, settings) for problem, decoder in jobs]
    heard: list[tuple[int, int, int]] = []
    there = dict(run_in_workers([WorkerJob(*job) for job in jobs], settings, processes=2,
                                on_trials=lambda *event: heard.append(event)))
    # progress comes through live: every trial, and at the dimensions the curves probed
    for index, run in enumerate(here):
        assert sum(count for i, count, _ in heard if i == index) == run.trials
        assert {d for i, _, d in heard if i == index} == {p["d"] for p in run.curve}
    assert sorted(there) == [0, 1]
    for index, run in enumerate(here):
        assert there[index].ok and there[index].curve == run.curve
        assert there[index].estimate == run.estimate and there[index].half == run.half


def test_a_job_whose_process_dies_becomes_an_error_and_the_others_finish():
    from superposition_harness.workers import WorkerJob, run_in_workers
    settings = RunSettings(max_trials=32)
    jobs = [(Problem(n=256, k=3, seed=1), ExitsItsProcess()), (Problem(n=256, k=3, seed=1), TopKDecoder())]
    jobs += [(Problem(n=256, k=4, seed=1), MatchingPursuit())]
    runs = dict(run_in_workers([WorkerJob(*job) for job in jobs], settings, processes=2))
    assert set(runs) == {0, 1, 2}
    assert not runs[0].ok and "'exits'" in runs[0].error and "worker process" in runs[0].error
    assert runs[1].ok and runs[2].ok
    assert runs[1].curve == run_decoder(*jobs[1], settings).curve


def test_a_worker_whose_harness_is_gone_ends_even_while_a_decoder_runs():
    """The watch on the parent ends the worker with the real ``os._exit``: inside
    ``contained`` (a decoder running) the patched one would only raise in the watch thread
    and leave the worker computing for nobody."""
    import subprocess
    import sys
    script = (
        "import time\n"
        "from superposition_harness.runner import contained\n"
        "from superposition_harness.workers import exit_with_parent\n"
        "with contained():\n"
        "    exit_with_parent(parent=-1, poll_seconds=0.01)  # -1 is nobody's pid: gone already\n"
        "    time.sleep(600)\n"
        "print('still running')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "still running" not in done.stdout and "ProcessExit" not in done.stderr


def test_a_worker_compiling_its_kernels_is_not_stopped_for_time():
    """A worker has START_SECONDS to take up a job (start, import); compiling the kernels
    then (minutes on a fresh install on a busy machine) is healthy work with no limit, and
    a job's own time limit counts from when it has started."""
    from superposition_harness.workers import START_SECONDS, job_deadline
    assert job_deadline(10.0, None, None, None) == 10.0 + START_SECONDS
    assert job_deadline(10.0, None, None, 5.0) == 10.0 + START_SECONDS
    assert job_deadline(10.0, 11.0, None, None) == float("inf")
    assert job_deadline(10.0, 11.0, None, 5.0) == float("inf")
    assert job_deadline(10.0, 11.0, 500.0, 5.0) == 505.0
    assert job_deadline(10.0, 11.0, 500.0, None) == float("inf")
