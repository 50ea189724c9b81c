"""The memory budget: what a run needs, refusals up front."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from superposition_harness import parallel
from superposition_harness.memory import BASE_BYTES, DEFAULT_MEMORY, check, needed_bytes
from superposition_harness.problem import Problem
from superposition_harness.units import BudgetError


def test_need_grows_with_n_batch_and_the_decoders_arrays():
    small = Problem(n=4096, k=8)
    large = Problem(n=1 << 20, k=64)
    assert needed_bytes(small, 1, 32, 500) < needed_bytes(large, 1, 32, 500)
    assert needed_bytes(large, 1, 8, 500) < needed_bytes(large, 1, 32, 500)
    assert needed_bytes(large, 1, 32, 500) < needed_bytes(large, 6, 32, 500)
    # A batch is never larger than a draw.
    assert needed_bytes(Problem(n=4096, k=8, subsets_per_draw=4), 6, 64, 100) == \
        needed_bytes(Problem(n=4096, k=8, subsets_per_draw=4), 6, 4, 100)
    assert needed_bytes(small, 0, 1, 1) >= BASE_BYTES


def test_the_working_arrays_of_a_batch_are_counted_in_float64():
    problem = Problem(n=1 << 20, k=64)
    extra = needed_bytes(problem, 3, 32, 100) - needed_bytes(problem, 2, 32, 100)
    assert extra == 32 * (1 << 20) * 8


def test_a_run_that_fits_gets_the_rest_as_cache():
    problem = Problem(n=1 << 20, k=64)
    left = check(problem, 2.5, 32, 16000, DEFAULT_MEMORY, "mp")
    assert left == DEFAULT_MEMORY - needed_bytes(problem, 2.5, 32, 16000) > 1 << 30


def test_a_run_that_cannot_fit_is_refused_with_the_budget_it_needs():
    problem = Problem(n=1 << 20, k=64)
    need = needed_bytes(problem, 6, 32, 16000)
    with pytest.raises(BudgetError) as caught:
        check(problem, 6, 32, 16000, 1 << 30, "ista")
    message = str(caught.value)
    assert "'ista'" in message and "N = 1048576" in message and "1.0 GiB" in message
    assert f"--memory {need / (1 << 30):.1f}GiB" in message and "--batch-size" in message


def test_the_need_includes_each_workers_scratch():
    problem = Problem(n=4096, k=8)
    previous = parallel.workers()
    try:
        parallel.set_workers(1)
        one = needed_bytes(problem, 1, 32, 4000)
        parallel.set_workers(2)
        two = needed_bytes(problem, 1, 32, 4000)
    finally:
        parallel.set_workers(previous)
    assert two > one


_REUSE = """
import resource, sys
import numpy as np
from superposition_harness.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None

def faults_of_a_fresh_array():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    array = np.ones(1 << 24)  # 128 MiB: served by mmap unless freed memory is kept
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del array
    return after - before

first = faults_of_a_fresh_array()
print(kept, first, max(faults_of_a_fresh_array() for _ in range(3)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is Linux's")
def test_freed_memory_is_kept_for_the_next_array():
    """With freed memory kept, an array made again after one of its size was freed lands
    on pages already touched: no page faults, where glibc's default unmaps each large
    array and faults on every page of the next (a behaviour, not a speed)."""
    def run(mode: str) -> tuple[str, int, int]:
        done = subprocess.run([sys.executable, "-c", _REUSE, mode], capture_output=True, text=True,
                              check=True)
        kept, first, again = done.stdout.split()
        return kept, int(first), int(again)

    kept, first, again = run("keep")
    if kept != "True":
        pytest.skip("this C library does not take glibc's mallopt settings")
    assert first > 0 and again * 8 < first
    _, first_plain, again_plain = run("plain")
    assert again_plain * 2 > first_plain  # glibc's default: fresh pages every time


def test_the_harness_command_keeps_freed_memory(monkeypatch):
    """The console script that pyproject.toml installs as ``harness`` keeps freed memory,
    then runs ``main`` and exits with its status; ``main`` alone (as tests call it) does not."""
    import superposition_harness.cli as cli
    project = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'harness = "superposition_harness.cli:console"' in project
    calls: list[str] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 3)
    with pytest.raises(SystemExit) as exit_:
        cli.console()
    assert exit_.value.code == 3 and calls == ["keep", "main"]
