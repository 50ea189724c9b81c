"""The Dask backend: the records of this process, whatever runs them; faults; one-sentence refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the Dask backend needs pip install 'superposition-harness[dask]'")

import misbehaving  # noqa: E402  (tests/ is on sys.path, and so importable by the workers too)
from superposition_harness import dask_backend  # noqa: E402
from superposition_harness.cli import main  # noqa: E402
from superposition_harness.config import Sweep, parse_decoder_spec  # noqa: E402
from superposition_harness.dask_backend import (  # noqa: E402
    MIN_TASK_TRIALS,
    SCHEDULER_ENV,
    BackendError,
    Scheduler,
    choose_scheduler,
    chunks,
    connect,
    parse_scheduler,
)
from superposition_harness.jobs import choose_decoders, execute, fixed_problems, plan, run_settings  # noqa: E402
from superposition_harness.planning import replay_requests  # noqa: E402
from superposition_harness.plugins import load_registry  # noqa: E402
from superposition_harness.problem import Problem  # noqa: E402
from superposition_harness.results import strip_volatile  # noqa: E402


@pytest.fixture(scope="module")
def registry():
    return load_registry(extra_plugins=[misbehaving])


@pytest.fixture(scope="module")
def two_workers():
    with connect(Scheduler(workers=2)) as backend:
        yield backend


def sweep_jobs(registry, *names, n=(256,), k=(3, 5), dictionary=None, tmp=None, batch_size=32):
    sweep = Sweep(n=list(n), k=list(k), seed=4, trials=96, batch_size=batch_size,
                  decoders=[parse_decoder_spec(name) for name in names],
                  dictionary=[dictionary] if dictionary else ["rademacher"])
    settings = run_settings(sweep)
    problems = [(p, None) for p in sweep.problems()] + fixed_problems(sweep, settings.memory)
    return plan(problems, choose_decoders(sweep, registry)), settings


def bare(records):
    return [json.dumps(strip_volatile(r), sort_keys=True) for r in records]


@pytest.mark.parametrize("batch_size", [32, 5])
def test_the_records_of_this_process_on_one_or_two_workers(registry, two_workers, batch_size):
    jobs, settings = sweep_jobs(registry, "topk", "mp", "threshold[level=0.4]", batch_size=batch_size)
    here = execute(jobs, settings, side_by_side=False).records
    there = execute(jobs, settings, backend=two_workers).records
    assert bare(there) == bare(here)
    for record in there:
        assert record["provenance"]["backend"] == "dask" and record["provenance"]["workers"] == 2
        assert record["provenance"]["tasks"] >= len(record["curve"])
    with connect(Scheduler(workers=1)) as one:
        assert bare(execute(jobs, settings, backend=one).records) == bare(here)


def test_a_fixed_dictionary_runs_on_the_workers_by_its_file(registry, two_workers, tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "dictionary.npy"
    np.save(path, rng.standard_normal((40, 120)))
    jobs, settings = sweep_jobs(registry, "mp", dictionary=str(path))
    assert jobs[0].problem.fixed
    here = execute(jobs, settings).records
    assert bare(execute(jobs, settings, backend=two_workers).records) == bare(here)


def test_a_large_problem_is_split_into_tasks_of_whole_draws():
    big = Problem(n=1 << 20, k=16)
    groups = chunks(big, 300, range(64))
    assert [len(g) for g in groups] == [32, 32]  # one draw each: two workers share one probe
    small = Problem(n=256, k=3)
    assert [len(g) for g in chunks(small, 20, range(40, 200))] == [160]  # many draws in one task
    assert all(len({big.locate(t)[0] for t in g}) == 1 for g in chunks(big, 300, range(5, 70)))
    # With more workers than draws, a draw is split into parts of at least MIN_TASK_TRIALS.
    assert [len(g) for g in chunks(big, 300, range(32), spread=8)] == [4] * 8
    assert [len(g) for g in chunks(big, 300, range(32), spread=100)] == [MIN_TASK_TRIALS] * 8
    assert [len(g) for g in chunks(big, 300, range(64), spread=3)] == [16] * 4
    assert [len(g) for g in chunks(big, 300, range(32), spread=3)] == [11, 11, 10]
    assert [len(g) for g in chunks(big, 300, range(30, 37), spread=4)] == [2, 5]  # too few to split
    assert [len(g) for g in chunks(small, 20, range(40, 200), spread=8)] == [160]  # small draws stay whole


def test_a_draw_split_over_the_workers_gives_the_same_records(registry, two_workers, monkeypatch):
    jobs, settings = sweep_jobs(registry, "mp", k=(3,), batch_size=5)
    here = execute(jobs, settings, side_by_side=False).records
    monkeypatch.setattr(dask_backend, "TASK_WORK", 1)  # every draw is a task of its own, and split in two
    there = execute(jobs, settings, backend=two_workers).records
    assert bare(there) == bare(here)
    # Each request of one draw went out in two parts (one per worker); wider ones whole.
    problem = jobs[0].problem
    expected = sum(max(2, len({problem.locate(t)[0] for t in range(start, start + count)}))
                   for _, start, count in replay_requests(here[0]))
    assert there[0]["provenance"]["tasks"] == expected > here[0]["trials"] // 32


def test_decoder_errors_are_recorded_and_the_others_finish(registry, two_workers):
    jobs, settings = sweep_jobs(registry, "bad-raises", "topk", k=(3,))
    raised, topk = execute(jobs, settings, backend=two_workers).records
    assert raised["status"] == "error" and raised["error"] == "decoder 'bad-raises' raised RuntimeError: boom"
    assert topk["status"] == "ok"


def test_a_decoder_that_cannot_travel_is_an_error_of_its_own(registry, two_workers):
    from superposition_harness_builtins.topk import TopKDecoder

    class Local(TopKDecoder):  # defined in a function: no worker can import it
        name = "local-topk"

    jobs, settings = sweep_jobs(registry, "topk", k=(3,))
    job = jobs[0]
    local = type(job)(job.problem, job.dictionary, Local(), job.entry)
    stuck, fine = execute([local, job], settings, backend=two_workers).records
    assert stuck["status"] == "error" and "could not be sent to the workers" in stuck["error"]
    assert fine["status"] == "ok"


def test_a_hanging_decoder_is_stopped_at_its_time_limit(registry, two_workers):
    jobs, settings = sweep_jobs(registry, "bad-hangs", "topk", k=(3,))
    hangs, topk = execute(jobs, settings, backend=two_workers, timeout=3).records
    assert hangs["status"] == "error" and "time limit of 3 s" in hangs["error"]
    assert topk["status"] == "ok"
    # the worker that ran it was restarted, and the cluster still works
    again = execute(jobs[1:], settings, backend=two_workers).records
    assert bare(again) == bare([topk])


def test_a_worker_killed_mid_run_changes_no_record(registry):
    jobs, settings = sweep_jobs(registry, "mp", "omp", n=(4096,), k=(16,))
    here = execute(jobs, settings, side_by_side=False).records
    with connect(Scheduler(workers=2)) as backend:
        pids = backend.client.run(os.getpid)
        seen = threading.Event()

        class Heard:
            def trials(self, index, count, value):
                seen.set()

            def finished(self, index, record, reused):
                pass

        def kill_one() -> None:
            seen.wait(timeout=600)
            os.kill(next(iter(pids.values())), signal.SIGKILL)

        killer = threading.Thread(target=kill_one)
        killer.start()
        there = execute(jobs, settings, backend=backend, events=Heard()).records
        killer.join()
        after = backend.client.run(os.getpid)
    assert set(after.values()) != set(pids.values())  # a worker did die (and its nanny started another)
    assert bare(there) == bare(here)


def test_a_scheduler_lost_mid_run_keeps_the_finished_records(registry, tmp_path):
    from superposition_harness.results import ResultStore
    jobs, settings = sweep_jobs(registry, "topk", "mp", "omp", n=(1024,), k=(4, 8))
    store = ResultStore(tmp_path)
    with connect(Scheduler(workers=1)) as backend:

        class LoseItAfterTheFirst:
            def trials(self, index, count, value):
                pass

            def finished(self, index, record, reused):
                backend.client.cluster.close()  # the scheduler and its workers go away

        with pytest.raises(BackendError, match="lost the Dask scheduler .* mid-run .* running the same "
                                               "command again resumes"):
            execute(jobs, settings, store=store, backend=backend, events=LoseItAfterTheFirst())
    stored = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    # what finished is kept (a job finishing while the scheduler went away may be among it)
    assert 1 <= len(stored) < len(jobs) and all(record["status"] == "ok" for record in stored)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_one_sentence_and_exit_2(capsys, tmp_path):
    port = _closed_port()
    status = main(["run", "--plugin", "topk", "--n", "256", "--k", "3", "--results", str(tmp_path),
                   "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("harness: error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "records.jsonl").exists()


def test_the_cli_runs_on_a_local_cluster_and_gives_this_process_records(capsys, tmp_path):
    argv = ["run", "--plugin", "topk", "--plugin", "mp", "--n", "256", "--k", "3", "--seed", "1",
            "--trials", "64", "--no-store", "--json"]
    assert main(argv) == 0
    here = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main([*argv, "--scheduler", "local:2"]) == 0
    there = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert bare(there) == bare(here)
    assert {r["provenance"]["scheduler"] for r in there} == {"local:2"}


@pytest.mark.parametrize(("text", "expected"), [
    ("local", Scheduler(workers=os.cpu_count() or 1)), ("local:3", Scheduler(workers=3)),
    ("tcp://10.0.0.5:8786", Scheduler(address="tcp://10.0.0.5:8786")),
    ("node7:8786", Scheduler(address="tcp://node7:8786"))])
def test_scheduler_names(text, expected):
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize("text", ["local:0", "local:x", "tcp://host", "http://host:8786", "host:99999", ""])
def test_malformed_scheduler_names_are_refused(text):
    with pytest.raises(ValueError, match="scheduler"):
        parse_scheduler(text)


def test_the_command_line_wins_then_the_config_then_the_environment():
    env = {SCHEDULER_ENV: "local:1"}
    assert choose_scheduler("local:3", "local:2", env) == Scheduler(workers=3)
    assert choose_scheduler(None, "local:2", env) == Scheduler(workers=2)
    assert choose_scheduler(None, None, env) == Scheduler(workers=1)
    assert choose_scheduler(None, None, {}) is None
    with pytest.raises(BackendError, match=f"^{SCHEDULER_ENV}: "):
        choose_scheduler(None, None, {SCHEDULER_ENV: "local:none"})


def test_without_dask_the_option_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    status = main(["run", "--plugin", "topk", "--n", "256", "--k", "3", "--no-store",
                   "--scheduler", "local:1"])
    err = capsys.readouterr().err
    assert status == 2 and "pip install 'superposition-harness[dask]'" in err and len(err.splitlines()) == 1


def test_a_config_names_its_scheduler():
    from superposition_harness.config import apply_config
    sweep = apply_config(Sweep(), {"run": {"scheduler": "local:2"}}, "test config")
    assert sweep.scheduler == "local:2"
    assert choose_scheduler(None, sweep.scheduler, {}) == Scheduler(workers=2)
