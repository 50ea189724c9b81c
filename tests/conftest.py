"""Shared fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from superposition_harness import Decoder, Problem, hookimpl, top_k_rows


@pytest.fixture(autouse=True)
def _no_inherited_terminal_size(monkeypatch) -> None:
    """Every test starts without COLUMNS and LINES: tables are fitted to COLUMNS when it is
    set, and a user's shell or pytest-xdist (which exports the controller's width to its
    workers) must not change what a test sees. A test that needs a width sets it."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path_factory) -> None:
    """Every test keeps what the harness caches (``harness verify``'s journals) in the
    session's temporary directory, never in the user's ``~/.cache``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


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


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core the process may use, at most four (each test may
    start compiled kernels on every core, or processes of its own)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def pytest_sessionfinish(session) -> None:
    """A pytest-xdist worker hands its fault-injection counts to the controller."""
    import fault_counts

    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["fault_counts"] = json.dumps(fault_counts.counts())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """The controller adds up the counts its workers ran (pytest-xdist)."""
    import fault_counts

    for name, n in json.loads(getattr(node, "workeroutput", {}).get("fault_counts", "{}")).items():
        fault_counts.add(name, n)


def pytest_terminal_summary(terminalreporter) -> None:
    """End the session with how many generated inputs the fault-injection tests ran."""
    import fault_counts  # tests/fault_counts.py; tests/ is on sys.path (rootdir-relative imports)

    line = fault_counts.summary()
    if line:
        terminalreporter.write_line(line)
