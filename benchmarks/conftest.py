"""Collects the per-trial times of the benchmark run and prints decoder/reference ratios."""

from __future__ import annotations

import pytest

#: label -> seconds per trial, filled by the benchmarks of this run.
PER_TRIAL: dict[str, float] = {}

#: (decoder label, reference label) pairs whose ratio the summary prints.
RATIOS: list[tuple[str, str]] = []


@pytest.fixture
def per_trial():
    """``record(label, benchmark, trials)``: store the median seconds per trial of a benchmark."""
    def record(label: str, benchmark, trials: int) -> None:
        PER_TRIAL[label] = benchmark.stats.stats.median / trials
    return record


def pytest_terminal_summary(terminalreporter):
    if not PER_TRIAL:
        return
    write = terminalreporter.write_line
    terminalreporter.section("seconds per trial and speed-ups (same run, same machine)")
    for label, seconds in sorted(PER_TRIAL.items()):
        write(f"{label:<48} {seconds * 1e3:10.3f} ms/trial")
    for fast, slow in RATIOS:
        if fast in PER_TRIAL and slow in PER_TRIAL:
            write(f"{fast} is {PER_TRIAL[slow] / PER_TRIAL[fast]:.1f}x faster per trial than {slow}")
