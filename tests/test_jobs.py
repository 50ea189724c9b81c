"""The room that runs jobs: planning, one measurement identity, reuse, and its events."""

from __future__ import annotations

import pytest
from superposition_harness.config import Sweep, parse_decoder_spec
from superposition_harness.jobs import (
    Job,
    choose_decoders,
    execute,
    plan,
    run_settings,
    stored_runs,
)
from superposition_harness.memory import BudgetError
from superposition_harness.plugins import load_registry
from superposition_harness.results import ResultStore, stored_measurement_key


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def jobs_of(registry, *names: str, n: int = 256, k: tuple[int, ...] = (3,)) -> list[Job]:
    sweep = Sweep(n=[n], k=list(k), seed=2, trials=128,
                  decoders=[parse_decoder_spec(name) for name in names])
    return plan([(p, None) for p in sweep.problems()], choose_decoders(sweep, registry))


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def trials(self, index: int, count: int, value: int | None) -> None:
        self.events.append(("trials", index, count, value))

    def finished(self, index: int, record: dict, reused: bool) -> None:
        self.events.append(("finished", index, record["decoder"], reused))


def test_labels_name_the_parameters_that_differ_from_the_defaults(registry):
    default, changed, same = jobs_of(registry, "threshold", "threshold[level=0.4]", "omp[positive=true]")
    assert default.label == "threshold N=256 k=3"
    assert changed.label == "threshold[level=0.4] N=256 k=3"
    assert same.label == "omp N=256 k=3"  # the default, given explicitly


def test_a_jobs_measurement_key_is_its_records(registry):
    jobs = jobs_of(registry, "topk", "mp")
    settings = run_settings(Sweep(trials=128))
    outcome = execute(jobs, settings)
    assert [job.measurement_key(settings) for job in jobs] == [
        stored_measurement_key(record) for record in outcome.records]


@pytest.mark.parametrize("side_by_side", [False, True], ids=["in-process", "worker-processes"])
def test_events_report_every_trial_and_every_record(registry, side_by_side):
    jobs = jobs_of(registry, "topk", "mp")
    heard = Heard()
    outcome = execute(jobs, run_settings(Sweep(trials=128)), events=heard, side_by_side=side_by_side)
    finished = [e for e in heard.events if e[0] == "finished"]
    # Worker processes finish in any order: compared as a set.
    assert sorted(finished) == [("finished", 0, "topk", False), ("finished", 1, "mp", False)]
    assert [r["decoder"] for r in outcome.records] == ["topk", "mp"]  # records come back in job order
    for index, record in enumerate(outcome.records):
        reported = sum(e[2] for e in heard.events if e[0] == "trials" and e[1] == index)
        assert reported == record["trials"]
        # each batch names the dimension it probed: the curve's, and only those
        probed = {e[3] for e in heard.events if e[0] == "trials" and e[1] == index and e[2]}
        assert probed == {point["d"] for point in record["curve"]}
        if not side_by_side:  # a job in this process is announced before it runs
            assert heard.events.index(("trials", index, 0, None)) < heard.events.index(
                ("finished", index, record["decoder"], False))


def test_stored_runs_are_reused_and_reported_as_such(registry, tmp_path):
    jobs = jobs_of(registry, "topk", "mp")
    settings = run_settings(Sweep(trials=128))
    store = ResultStore(tmp_path)
    first = execute(jobs[:1], settings, store=store)
    assert stored_runs(jobs, settings, store) == {0: first.records[0]}
    heard = Heard()
    outcome = execute(jobs, settings, store=store, events=heard)
    assert outcome.reused == {0} and outcome.records[0] == first.records[0]
    assert ("finished", 0, "topk", True) in heard.events and ("finished", 1, "mp", False) in heard.events
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 2
    again = execute(jobs, settings, store=store, reuse=False)
    assert again.reused == set() and len((tmp_path / "records.jsonl").read_text().splitlines()) == 4


def test_a_sweep_over_the_budget_is_refused_before_anything_runs(registry, tmp_path):
    jobs = jobs_of(registry, "mp", n=1 << 20, k=(64,))
    heard = Heard()
    with pytest.raises(BudgetError, match="memory budget"):
        execute(jobs, run_settings(Sweep(trials=128), memory=1 << 29), store=ResultStore(tmp_path),
                events=heard)
    assert heard.events == [] and not (tmp_path / "records.jsonl").exists()


def test_a_trial_cap_too_low_to_pass_is_a_warning(registry):
    heard: list[str] = []
    run_settings(Sweep(trials=32), warn=heard.append)
    assert len(heard) == 1 and "with at most 32 trials per dimension" in heard[0]


# ------------------------------------------------------------------ the display

def _display(registry, terminal: bool, tmp_path) -> str:
    import io

    from rich.console import Console
    from superposition_harness.progress import JobProgress

    jobs = jobs_of(registry, "topk", "threshold[level=0.4]")
    settings = run_settings(Sweep(trials=128))
    store = ResultStore(tmp_path)
    execute(jobs[:1], settings, store=store)  # the first job is stored before the run
    console = Console(file=io.StringIO(), force_terminal=terminal, width=100)
    with JobProgress(jobs, console) as display:
        execute(jobs, settings, store=store, events=display, side_by_side=False)
    return console.file.getvalue()


def test_without_a_terminal_each_finished_job_is_one_plain_line(registry, tmp_path):
    lines = _display(registry, False, tmp_path).splitlines()
    assert lines[0] == "[1/2] topk N=256 k=3: stored, reused"
    assert lines[1].startswith("[2/2] threshold[level=0.4] N=256 k=3: d*=") and " trials, " in lines[1]
    assert len(lines) == 2


def test_on_a_terminal_each_job_has_a_live_row(registry, tmp_path):
    screen = _display(registry, True, tmp_path)
    assert "topk N=256 k=3 (stored)" in screen and "threshold[level=0.4] N=256 k=3 d*=" in screen
    assert "runs" in screen
