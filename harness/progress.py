"""The live display of running jobs: one row per job and one for the whole run (rich).

It implements :class:`jobs.Events`. Every name in it is data, never markup: a row's
label is escaped before rich sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from .jobs import Job


class JobProgress:
    """Rows for the jobs of a run on ``console``; use it as a context manager.

    The display starts at the first event, so that a run refused before any job starts
    (memory budget, results folder) prints its one sentence and nothing else.
    """

    def __init__(self, jobs: Sequence[Job], console: Console) -> None:
        self.jobs = jobs
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[trials]} trials"),
                                  TimeElapsedColumn(), console=console, transient=False)
        self._overall = self._progress.add_task("runs", total=len(jobs), trials=0)
        self._rows: dict[int, TaskID] = {}
        self._trials: dict[int, int] = {}
        self._total = 0
        self._started = False

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self._progress.stop()

    def _label(self, index: int) -> str:
        return escape(self.jobs[index].label)

    def _row(self, index: int, description: str | None = None) -> TaskID:
        if not self._started:
            self._started = True
            self._progress.start()
        if index not in self._rows:
            self._rows[index] = self._progress.add_task(description or self._label(index), total=None,
                                                        trials=0)
        return self._rows[index]

    def trials(self, index: int, count: int) -> None:
        row = self._row(index)
        if count:
            self._trials[index] = self._trials.get(index, 0) + count
            self._total += count
            self._progress.update(row, trials=self._trials[index])
            self._progress.update(self._overall, trials=self._total)

    def finished(self, index: int, record: dict[str, Any], reused: bool) -> None:
        if reused:
            self._row(index, f"{self._label(index)} (stored)")
            self._progress.update(self._rows[index], total=1, completed=1, trials=record["trials"])
        else:
            if index not in self._trials:  # a job whose trials were not reported one by one
                self._total += record["trials"]
                self._progress.update(self._overall, trials=self._total)
            score = f"k*={record['k_star']}" if self.jobs[index].problem.fixed else f"d*={record['d_star']}"
            ok = record.get("status") == "ok"
            self._progress.update(self._row(index), total=1, completed=1, trials=record["trials"],
                                  description=f"{self._label(index)} {score}" if ok
                                  else f"{self._label(index)} [red]error[/red]")
        self._progress.advance(self._overall)
