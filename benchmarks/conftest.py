"""Collects the per-trial times of the benchmark run and prints decoder/reference ratios."""

from __future__ import annotations

import pytest
from superposition_harness.memory import keep_freed_memory

#: label -> seconds per trial, filled by the benchmarks of this run.
PER_TRIAL: dict[str, float] = {}

#: (decoder label, reference label) pairs whose ratio the summary prints.
RATIOS: list[tuple[str, str]] = []

#: label -> formatted value: other figures of this run (throughputs, fractions of a peak,
#: memory), printed in a section of their own, in the order they were registered.
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session", autouse=True)
def _keep_freed_memory():
    """The benchmarks run as the ``harness`` command does, which keeps freed memory for
    reuse (docs/scale.md): a large array made again after one was freed is then not a
    run of fresh pages, whichever benchmarks ran before it."""
    keep_freed_memory()


@pytest.fixture
def per_trial():
    """``record(label, benchmark, trials)``: store the median seconds per trial of a benchmark.

    Nothing is stored when the benchmark did not time anything (benchmarks disabled).
    """
    def record(label: str, benchmark, trials: int) -> None:
        if benchmark.stats is None:
            return
        PER_TRIAL[label] = benchmark.stats.stats.median / trials
    return record


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    if PER_TRIAL:
        terminalreporter.section("seconds per trial and speed-ups (same run, same machine)")
        width = max(48, *(len(label) for label in PER_TRIAL))
        for label, seconds in sorted(PER_TRIAL.items()):
            write(f"{label:<{width}} {seconds * 1e3:10.3f} ms/trial")
        for fast, slow in RATIOS:
            if fast in PER_TRIAL and slow in PER_TRIAL:
                write(f"{fast} is {PER_TRIAL[slow] / PER_TRIAL[fast]:.1f}x faster per trial than {slow}")
    if FIGURES:
        terminalreporter.section("other figures (same run, same machine)")
        width = max(len(label) for label in FIGURES)
        for label, value in FIGURES.items():
            write(f"{label:<{width}}  {value}")
