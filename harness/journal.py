"""Journals of runs in progress: a run stopped midway resumes where it stopped.

A run's search asks for its trials in requests ("``count`` trials from trial ``start``
at dimension ``d``"), and the outcome of a trial depends only on the problem (its seed),
``d``, the trial's index and the decoder, never on when, where or beside what it ran
(docs/contract.md §1). While a run goes on, the store keeps its *journal*: the file
``unfinished/<hash>.journal`` in the results directory, named by a hash of the run's
measurement key (the identity by which the store reuses finished records,
``results.measurement_key``). Every answered request is appended to it as one line and
flushed, so a run killed at any moment loses at most the request it was in.

Started again, the same measurement replays its search: a request the journal answers is
answered from it, without decoding; the rest are decoded and appended. The search is
deterministic given the answers, so the record is the one an uninterrupted run makes; its
provenance says how many trials came from the journal and which processes ran them
(``provenance.resumed``), and its ``wall_seconds`` adds the time the journaled trials
took to this process's. The journal is removed once the record is stored. ``harness
verify`` re-runs a sample of a record's trials whichever process ran them.

The layout, one JSON object a line:

- a header, ``{"journal": 1, "key": KEY}``, ``KEY`` the measurement key itself;
- for each process that wrote to it, a segment line, ``{"segment": {...}}``: the harness
  version, the commit it ran from, the machine and the date;
- the requests that process answered: ``{"value": d, "start": s, "count": c,
  "outcomes": HEX, "seconds": t}``, the outcomes packed as in a record's curve
  (``results.encode_outcomes``) and ``t`` the seconds since the segment began.

A journal is opened under an exclusive lock: a second process running the same
measurement on the same store runs without one rather than writing into it. A line that
is not an entry (a torn last write, or an edit) is skipped, so the trials it held are run
again; a journal whose header names another measurement, or whose entries disagree on a
trial, is not used and is started afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .files import RefusedFile, check_regular
from .results import decode_outcomes, encode_outcomes, provenance
from .runner import MAX_TRIALS

#: The layout version of a journal's header.
JOURNAL_VERSION = 1

#: The directory of a results store that holds the journals of its unfinished runs.
UNFINISHED = "unfinished"

#: A journal larger than this is not read (the longest paper-suite run journals a few
#: hundred kilobytes).
MAX_JOURNAL_BYTES = 64 << 20

#: The provenance fields a segment line states.
SEGMENT_FIELDS = ("harness_version", "git_commit", "git_dirty", "cpu", "cores", "threads", "batch_size",
                  "date")


def journal_path(root: str | os.PathLike[str], key: str) -> Path:
    """Where the store at ``root`` keeps the journal of the measurement ``key``."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return Path(root) / UNFINISHED / f"{digest}.journal"


class Journal:
    """The journal of one run, open for replaying and appending (see the module's notes).

    ``known(value, start, count)`` gives the outcomes the journal holds for a request, or
    None; ``write(value, start, outcomes)`` appends a request's outcomes. ``summary()`` is
    what the record's provenance states of the earlier processes; ``remove()`` deletes the
    journal once the record is stored; ``close()`` releases it.
    """

    def __init__(self, path: Path, fd: int, key: str, segment: dict[str, Any],
                 notes: list[str]) -> None:
        self.path, self._fd, self.key = path, fd, key
        self._known: dict[int, dict[int, bool]] = {}
        self._segments: list[dict[str, Any]] = []
        #: Trials answered from the journal in this process.
        self.replayed = 0
        #: What its user should hear of (lines skipped, a journal not used, a failed write);
        #: the first ``told`` were said when it was opened.
        self.notes = notes
        self.told = 0
        self._began = time.perf_counter()
        self._segment = segment
        self._owner = os.getpid()

    # ------------------------------------------------------------------ reading

    def _load(self, data: bytes) -> bool:
        """Take the entries of ``data``; False if the journal cannot be used at all."""
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if header != {"journal": JOURNAL_VERSION, "key": self.key}:
            self.notes.append(f"{self.path} is not the journal of this run (its first line differs); "
                              "it is started afresh.")
            return False
        segment: dict[str, Any] | None = None
        skipped = 0
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            entry = _parse(line)
            if isinstance(entry, dict):
                segment = {**entry["segment"], "trials": 0, "seconds": 0.0}
                self._segments.append(segment)
                continue
            if entry is None or segment is None:
                skipped += number < len(lines)  # the last line may be a torn write: said nothing of
                continue
            value, start, outcomes, seconds = entry
            done = self._known.setdefault(value, {})
            for trial, outcome in enumerate(outcomes, start=start):
                if done.setdefault(trial, outcome) != outcome:
                    self.notes.append(f"{self.path} gives two outcomes for trial {trial} at {value}; "
                                      "it is not used and is started afresh.")
                    self._known.clear()
                    self._segments.clear()
                    return False
            segment["trials"] += len(outcomes)
            segment["seconds"] = max(segment["seconds"], seconds)
        if skipped:
            self.notes.append(f"{self.path}: {skipped} line(s) are not journal entries and are skipped; "
                              "their trials are run again.")
        return True

    @property
    def known_trials(self) -> int:
        """The trial outcomes the journal holds, at all values."""
        return sum(len(done) for done in self._known.values())

    def known(self, value: int, start: int, count: int) -> list[bool] | None:
        """The outcomes of trials ``start .. start+count-1`` at ``value``, if all are journaled."""
        done = self._known.get(value)
        if done is None or any(trial not in done for trial in range(start, start + count)):
            return None
        self.replayed += count
        return [done[trial] for trial in range(start, start + count)]

    # ------------------------------------------------------------------ writing

    def _append(self, line: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(line, sort_keys=True, allow_nan=False) + "\n").encode("utf-8"))

    def write(self, value: int, start: int, outcomes: list[bool]) -> None:
        """Append the outcomes of a request just decoded (they are in the file when this
        returns). A write that fails (a full disk) ends the journaling, never the run."""
        if self._fd < 0 or os.getpid() != self._owner:  # closed, or a copy of the process
            return
        try:
            if self._segment:
                self._append({"segment": self._segment})
                self._segment = {}
            self._append({"value": int(value), "start": int(start), "count": len(outcomes),
                          "outcomes": encode_outcomes(outcomes),
                          "seconds": round(time.perf_counter() - self._began, 3)})
        except OSError as exc:
            self.notes.append(f"{self.path} could not be written ({exc.strerror or exc}); the rest of "
                              "this run is not journaled.")
            self.close()
        done = self._known.setdefault(value, {})
        done.update(zip(range(start, start + len(outcomes)), outcomes, strict=True))

    # ------------------------------------------------------------------ the record

    @property
    def prior_seconds(self) -> float:
        """The seconds the earlier processes spent on the trials they journaled."""
        return sum(float(segment["seconds"]) for segment in self._segments)

    def summary(self) -> dict[str, Any] | None:
        """``provenance.resumed`` of the record: None unless trials came from the journal."""
        if not self.replayed:
            return None
        return {"trials": self.replayed, "seconds": round(self.prior_seconds, 3),
                "segments": [{**segment, "seconds": round(float(segment["seconds"]), 3)}
                             for segment in self._segments]}

    def remove(self) -> None:
        """Delete the journal: its run's record is stored."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):  # the last unfinished run's: the directory goes too
            os.rmdir(self.path.parent)

    def close(self) -> None:
        """Release the journal (the lock goes with the descriptor); it stays on disk."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


class _Entry(NamedTuple):
    value: int
    start: int
    outcomes: list[bool]
    seconds: float


def _parse(line: bytes) -> dict[str, Any] | _Entry | None:
    """A segment line as its object, an entry as ``(value, start, outcomes, seconds)``, or None."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    if set(entry) == {"segment"}:
        return entry if isinstance(entry["segment"], dict) else None
    if set(entry) != {"value", "start", "count", "outcomes", "seconds"}:
        return None
    value, start, count, text, seconds = (entry[name] for name in
                                          ("value", "start", "count", "outcomes", "seconds"))
    if not all(type(number) is int for number in (value, start, count)) or not isinstance(text, str):
        return None
    if value < 0 or start < 0 or not 1 <= count <= MAX_TRIALS or start + count > MAX_TRIALS:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < 0:
        return None
    try:
        outcomes = [bool(bit) for bit in decode_outcomes(text, count)]
    except ValueError:
        return None
    return _Entry(value, start, outcomes, float(seconds))


def open_journal(root: str | os.PathLike[str], key: str, *, fresh: bool = False,
                 argv: list[str] | None = None, threads: int | None = None, batch_size: int | None = None,
                 warn: Callable[[str], None] | None = None) -> Journal | None:
    """The journal of measurement ``key`` in the store at ``root``, opened (created if new;
    emptied if ``fresh``), or None when none can be kept: the directory cannot be written,
    the path is not a regular file, or another process holds it. ``warn`` hears why, and of
    anything the journal held that is not used."""
    path = journal_path(root, key)
    say = warn if warn is not None else (lambda sentence: None)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NONBLOCK", 0) | \
            getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        say(f"this run keeps no journal ({path}: {exc.strerror or exc}); if it is stopped, it starts over.")
        return None
    try:
        check_regular(path, os.fstat(fd), None)
        if not _try_lock(fd):
            say(f"{path} is held by another process running the same measurement; this run keeps no "
                "journal of its own.")
            os.close(fd)
            return None
    except RefusedFile as exc:
        os.close(fd)
        say(f"this run keeps no journal: {exc}.")
        return None
    made = provenance(argv, threads=threads, batch_size=batch_size)
    journal = Journal(path, fd, key, {name: made.get(name) for name in SEGMENT_FIELDS}, notes=[])
    size = os.fstat(fd).st_size
    usable = False
    if size and not fresh:
        if size > MAX_JOURNAL_BYTES:
            journal.notes.append(f"{path} has {size} bytes, more than the {MAX_JOURNAL_BYTES} a journal may "
                                 "have; it is started afresh.")
        else:
            usable = journal._load(os.pread(fd, size, 0))
    try:
        if usable:
            if os.pread(fd, 1, size - 1) != b"\n":  # a torn last line must not swallow the next entry
                os.write(fd, b"\n")
        else:
            os.ftruncate(fd, 0)
            journal._append({"journal": JOURNAL_VERSION, "key": key})
    except OSError as exc:
        journal.close()
        journal.remove()  # what it held could not be used, and nothing can be added to it
        say(f"this run keeps no journal ({path}: {exc.strerror or exc}); if it is stopped, it starts over.")
        return None
    for note in journal.notes:
        say(note)
    journal.told = len(journal.notes)
    return journal


def _try_lock(fd: int) -> bool:
    """An exclusive lock on ``fd`` if no other process holds one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


__all__ = ["JOURNAL_VERSION", "UNFINISHED", "Journal", "journal_path", "open_journal"]
