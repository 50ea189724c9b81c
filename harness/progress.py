"""The live display of running jobs: one row per job and one for the whole run (rich).

It implements :class:`jobs.Events`. Every name in it is data, never markup: a row's
label is escaped before rich sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from .jobs import Job


class _Elapsed(ProgressColumn):
    """A job's time: running, the time so far; finished, its record's own wall time (a job run
    in a worker process is shown only when it ends); reused, that it came from the store."""

    def render(self, task: Task) -> Text:
        wall = task.fields.get("wall")
        if wall == "stored":
            return Text("stored", style="progress.elapsed")
        seconds = wall if isinstance(wall, (int, float)) else (task.finished_time if task.finished
                                                                else task.elapsed) or 0.0
        return Text(str(timedelta(seconds=int(seconds))), style="progress.elapsed")


class JobProgress:
    """Rows for the jobs of a run on ``console``; use it as a context manager.

    The display starts at the first event, so that a run refused before any job starts
    (memory budget, results folder) prints its one sentence and nothing else. When the
    console is not a terminal (a log file, a pipe), there is no live display: one plain
    line per finished job, as it finishes.
    """

    def __init__(self, jobs: Sequence[Job], console: Console) -> None:
        self.jobs = jobs
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[probe]}"),
                                  TextColumn("{task.fields[trials]} trials"),
                                  _Elapsed(), console=console, transient=False)
        self._overall = self._progress.add_task("runs", total=len(jobs), trials=0, probe="")
        self._rows: dict[int, TaskID] = {}
        self._trials: dict[int, int] = {}
        self._total = 0
        self._started = False
        self._console = console
        self._live = console.is_terminal
        self._done = 0

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self._progress.stop()

    def _label(self, index: int) -> str:
        return escape(self.jobs[index].label)

    def _row(self, index: int, description: str | None = None) -> TaskID:
        if not self._started and self._live:
            self._started = True
            self._progress.start()
        if index not in self._rows:
            self._rows[index] = self._progress.add_task(description or self._label(index), total=None,
                                                        trials=0, probe="")
        return self._rows[index]

    def trials(self, index: int, count: int, value: int | None) -> None:
        if not self._live:
            return
        row = self._row(index)
        if value is not None:  # the value being probed: the dimension, or k on the fixed track
            self._progress.update(row, probe=f"{self.jobs[index].problem.track.variable}={value}")
        if count:
            self._trials[index] = self._trials.get(index, 0) + count
            self._total += count
            self._progress.update(row, trials=self._trials[index])
            self._progress.update(self._overall, trials=self._total)

    def _line(self, index: int, record: dict[str, Any], reused: bool) -> None:
        """One plain line for a finished job, where no live display can be drawn."""
        self._done += 1
        estimate = self.jobs[index].problem.track.estimate
        if reused:
            outcome = "stored, reused"
        elif record.get("status") != "ok":
            outcome = f"error: {record.get('error')}"
        else:
            score = f"{estimate[0]}*={record[estimate]}"
            outcome = f"{score}, {record['trials']} trials, {record.get('wall_seconds', 0):.1f} s"
        self._console.print(f"[{self._done}/{len(self.jobs)}] {self.jobs[index].label}: {outcome}",
                            markup=False, highlight=False, soft_wrap=True)

    def finished(self, index: int, record: dict[str, Any], reused: bool) -> None:
        if not self._live:
            self._line(index, record, reused)
            return
        if reused:
            self._row(index, f"{self._label(index)} (stored)")
            self._progress.update(self._rows[index], total=1, completed=1, trials=record["trials"],
                                  wall="stored")
        else:
            if index not in self._trials:  # a job whose trials were not reported one by one
                self._total += record["trials"]
                self._progress.update(self._overall, trials=self._total)
            estimate = self.jobs[index].problem.track.estimate
            score = f"{estimate[0]}*={record[estimate]}"
            ok = record.get("status") == "ok"
            description = f"{self._label(index)} {score}" if ok else f"{self._label(index)} [red]error[/red]"
            self._progress.update(self._row(index), total=1, completed=1, trials=record["trials"],
                                  wall=record.get("wall_seconds"), description=description, probe="")
        self._progress.advance(self._overall)
