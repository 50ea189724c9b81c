"""Shared fixtures."""

from __future__ import annotations

import pytest
from superposition_harness import Problem


@pytest.fixture
def small_problem() -> Problem:
    """A problem small enough for a full search in well under a second."""
    return Problem(n=256, k=4, seed=3, subsets_per_draw=8)


def pytest_terminal_summary(terminalreporter) -> None:
    """End the session with how many generated inputs the fault-injection tests ran."""
    import fault_counts  # tests/fault_counts.py; tests/ is on sys.path (rootdir-relative imports)

    line = fault_counts.summary()
    if line:
        terminalreporter.write_line(line)
