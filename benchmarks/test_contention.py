"""No cliff under contention: whole ``harness run`` commands idle, then beside two CPU-bound processes.

A shared machine (a CI runner, a cluster node) has other work on its cores. Two
workloads are timed as subprocesses, each idle and then with two processes spinning
on the CPU (as many as this machine's two cores), and the summary prints loaded/idle:

- the quick suite (``harness run --suite quick``: small problems side by side in
  single-threaded worker processes);
- one ``mp`` run at N = 65536, k = 64 (one process, the operator's and numba's threads
  on every core).

Each is timed under ``OMP_WAIT_POLICY=PASSIVE`` (what the harness sets when the user
has not: waiting threads sleep); the ``mp`` run also under OpenMP's default (waiting
threads spin a while before they sleep: what the harness had before; passed as an empty
``OMP_WAIT_POLICY``, which libgomp reports as invalid and ignores) and ``ACTIVE`` (they
only spin), so one run shows the cliff and its absence on the same machine.
With two burners on two cores a process gets about half the cores it had, so a ratio
near 2 is the floor.

Run it with::

    python -m pytest benchmarks/test_contention.py --benchmark-enable -s

It takes about 40 minutes at full size. ``HARNESS_BENCH_SMALL=1`` caps the trials per
probe at 32 (a few minutes). Nothing here asserts on a time; the runs must succeed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .conftest import FIGURES

SMALL = os.environ.get("HARNESS_BENCH_SMALL", "").strip() not in ("", "0")
CAP = ["--trials", "32"] if SMALL else []

WORKLOADS = {
    "quick suite": ["run", "--suite", "quick", "--no-store", *CAP],
    "mp N=65536 k=64": ["run", "--plugin", "mp", "--n", "65536", "--k", "64", "--no-store", *CAP],
}
BURNERS = 2
SPIN = "while True: pass"


def _timed(arguments: list[str], policy: str) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "COLUMNS": "100"}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "superposition_harness.cli", *arguments], env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    assert done.returncode == 0, done.stderr[-2000:]
    return seconds


def _loaded(arguments: list[str], policy: str) -> float:
    burners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(BURNERS)]
    try:
        return _timed(arguments, policy)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


#: The quick suite runs its jobs in single-threaded worker processes, where no thread
#: waits for another, so only the threaded ``mp`` run is timed under every policy.
CASES = [("quick suite", "PASSIVE"), ("mp N=65536 k=64", "PASSIVE"), ("mp N=65536 k=64", ""),
         ("mp N=65536 k=64", "ACTIVE")]


@pytest.mark.parametrize(("workload", "policy"), CASES, ids=[f"{w}-{p or 'default'}" for w, p in CASES])
def test_loaded_over_idle(benchmark, workload, policy):
    if not benchmark.enabled:
        pytest.skip("a contention measurement takes minutes: run with --benchmark-enable")
    arguments = WORKLOADS[workload]
    idle = _timed(arguments, policy)
    loaded = benchmark.pedantic(_loaded, args=(arguments, policy), rounds=1, iterations=1)
    benchmark.extra_info.update(idle_seconds=idle, loaded_seconds=loaded, ratio=loaded / idle)
    label = f"{workload}, OMP_WAIT_POLICY={policy or '(default)'}: idle, with {BURNERS} CPU-bound processes"
    FIGURES[label] = f"{idle:7.1f} s, {loaded:7.1f} s: loaded/idle {loaded / idle:.2f}"
