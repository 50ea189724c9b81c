"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from superposition_harness import Decoder, Problem, hookimpl, top_k_rows


@pytest.fixture
def small_problem() -> Problem:
    """A problem small enough for a full search in well under a second."""
    return Problem(n=256, k=4, seed=3, subsets_per_draw=8)


class Marks(Decoder):
    """Top-k that leaves a file behind: a test can tell whether any decoder ran."""

    name = "marks"
    description = "Leaves a mark when it decodes (refusal tests)."
    marker = Path("unused")

    def decode(self, dictionary, signals, *, k, noise):
        self.marker.write_text("decoded")
        return top_k_rows(dictionary.correlate(signals), k)


@pytest.fixture
def marker(monkeypatch, tmp_path) -> Path:
    """The decoder ``marks`` made available to ``harness`` commands run in the test, and the
    file it writes when it decodes: a refusal "before any decoder runs" leaves none."""
    import superposition_harness.cli as cli_module
    from superposition_harness.plugins import load_registry

    class Plugin:
        @hookimpl
        def register_decoders(self, register):
            register(Marks)

    monkeypatch.setattr(Marks, "marker", tmp_path / "decoded")
    real = load_registry
    monkeypatch.setattr(cli_module, "load_registry", lambda: real(extra_plugins=[Plugin()]))
    return tmp_path / "decoded"


def pytest_terminal_summary(terminalreporter) -> None:
    """End the session with how many generated inputs the fault-injection tests ran."""
    import fault_counts  # tests/fault_counts.py; tests/ is on sys.path (rootdir-relative imports)

    line = fault_counts.summary()
    if line:
        terminalreporter.write_line(line)
