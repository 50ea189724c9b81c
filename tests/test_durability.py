"""The store under stress: concurrent writers, and sweeps killed with SIGKILL at random moments."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import fault_counts
import numpy as np
from superposition_harness.results import ResultStore, strip_volatile

#: Nine runs, a few seconds in all: long enough that ten kills at most two seconds after
#: each start (start-up included) cannot let it finish first.
SWEEP = ["run", "--n", "4096", "--k", "4", "--k", "8", "--k", "16", "--plugin", "mp", "--plugin", "topk",
         "--plugin", "omp", "--seed", "5", "--trials", "128"]
JOBS = 9


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "superposition_harness.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)


def measured(records):
    return sorted(json.dumps(strip_volatile(r), sort_keys=True) for r in records)


def _append_many(root: str, writer: int, count: int) -> None:
    store = ResultStore(root)
    for i in range(count):
        # Large lines: several pages each, so that unlocked writes could interleave.
        store.append({"decoder": f"writer-{writer}", "i": i, "pad": "x" * (20_000 + 997 * writer)})


def test_concurrent_writers_lose_nothing_and_tear_nothing(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(str(tmp_path), w, 40)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 160
    records = [json.loads(line) for line in lines]
    for w in range(4):
        assert sorted(r["i"] for r in records if r["decoder"] == f"writer-{w}") == list(range(40))


def test_two_sweeps_sharing_one_store_at_once_keep_every_record(tmp_path):
    store = tmp_path / "shared"
    small = ["run", "--n", "256", "--k", "2", "--k", "3", "--k", "4", "--k", "5", "--seed", "5",
             "--results", str(store), "--workers", "1"]
    first = start(*small, "--plugin", "mp")
    second = start(*small, "--plugin", "topk")
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    records = ResultStore(store).load()
    assert len(records) == 8
    assert sorted((r["decoder"], r["problem"]["k"]) for r in records) == sorted(
        (name, k) for name in ("mp", "topk") for k in (2, 3, 4, 5))


def test_a_sweep_killed_ten_times_at_random_moments_ends_as_if_never_killed(tmp_path):
    """SIGKILL at ten random moments (start-up, mid-run, mid-write), resuming each time; the
    store then holds exactly the records of an uninterrupted sweep, each once."""
    store = tmp_path / "killed"
    rng = np.random.default_rng(2024)
    kills = 0
    lines_seen = []
    for _ in range(10):
        process = start(*SWEEP, "--results", str(store))
        time.sleep(float(rng.uniform(0.2, 2.0)))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        path = store / "records.jsonl"
        lines = path.read_bytes().count(b"\n") if path.exists() else 0
        assert lines >= (lines_seen[-1] if lines_seen else 0)  # nothing finished is ever lost
        lines_seen.append(lines)
        assert len(ResultStore(store).load()) <= JOBS
    fault_counts.add("kill points (SIGKILL of a running sweep)", kills)
    finish = start(*SWEEP, "--results", str(store), "--json")
    out, _ = finish.communicate(timeout=300)
    assert finish.returncode == 0
    assert len(out.decode().splitlines()) == JOBS
    whole = start(*SWEEP, "--no-store", "--json")
    reference, _ = whole.communicate(timeout=300)
    stored = ResultStore(store).load()
    assert len(stored) == JOBS  # each finished run once: resumed sweeps never measure one again
    assert measured(stored) == measured(json.loads(line) for line in reference.decode().splitlines())
    assert kills >= 5, f"only {kills} of 10 sweeps were still running when killed"
