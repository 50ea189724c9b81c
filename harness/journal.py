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
verify`` re-runs a sample of a record's trials whichever process ran them, and keeps a
journal of its own of the trials it re-ran (scattered ones: ``keep`` and ``recall``) in
the verifier's directory, so that a check stopped midway resumes too.

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
again, and so are the entries after it up to the next segment line (they are of a
process nothing describes). A journal is not used, and is replaced by a new file, when its header names
another measurement, its entries disagree on a trial, or an earlier process ran other
code (another harness version, commit or state of the checkout: outcomes are the same
only for the same code). Only a regular file with no other name (no hard link), of this
user's and writable by no one else, is ever read, and none is ever cut short in place;
a journal that cannot be kept (an unwritable directory, a full disk) ends the
journaling, never the run. Once a record of the
measurement is stored, or found in the store, a journal of it that no process holds is
removed.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import json
import math
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .files import RefusedFile, check_regular
from .results import decode_outcomes, encode_outcomes, provenance
from .runner import MAX_TRIALS

#: The layout version of a journal's header.
JOURNAL_VERSION = 1

#: The directory of a results store that holds the journals of its unfinished runs.
UNFINISHED = "unfinished"

#: A journal larger than this is not read (the longest paper-suite run journals well under
#: a megabyte; its outcomes take four bytes of memory per hex digit of the file).
MAX_JOURNAL_BYTES = 16 << 20

#: The provenance fields a segment line states; the first three say which code ran.
SEGMENT_FIELDS = ("harness_version", "git_commit", "git_dirty", "cpu", "cores", "threads", "batch_size",
                  "date")
CODE_FIELDS = SEGMENT_FIELDS[:3]

#: The most seconds an entry may say its segment had run (ten years).
MAX_SECONDS = 3.2e8

#: The longest text a segment's field may hold.
MAX_TEXT = 256

_FLAGS = os.O_RDWR | os.O_APPEND | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | \
    getattr(os, "O_NOFOLLOW", 0)


def journal_path(root: str | os.PathLike[str], key: str, folder: str = UNFINISHED) -> Path:
    """Where the store at ``root`` keeps the journal of the measurement ``key`` (in its
    ``folder``; ``harness verify`` keeps its journals in a directory of their own, ``""``)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return Path(root) / folder / f"{digest}.journal"


def _runs_of(trials: Sequence[int]) -> list[tuple[int, int]]:
    """``trials`` (increasing) as runs of consecutive trials: (first, count) pairs."""
    runs: list[tuple[int, int]] = []
    for trial in trials:
        if runs and runs[-1][0] + runs[-1][1] == trial:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((int(trial), 1))
    return runs


class _Runs:
    """The outcomes journaled at one value: disjoint runs of consecutive trials, by first
    trial. A run that only touches another stays apart, so an entry after the last is
    added without copying what is held."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.runs: list[np.ndarray] = []

    def add(self, start: int, outcomes: np.ndarray) -> int | None:
        """Add ``outcomes`` of trials ``start ..``; the first trial on which they disagree
        with what is held (nothing is changed then), or None."""
        end = start + len(outcomes)
        lo = bisect.bisect_right(self.ends, start)  # the runs that overlap [start, end)
        hi = bisect.bisect_left(self.starts, end)
        if lo == hi:
            self.starts.insert(lo, start)
            self.ends.insert(lo, end)
            self.runs.insert(lo, outcomes)
            return None
        first = min(start, self.starts[lo])
        last = max(end, self.ends[hi - 1])
        merged = np.zeros(last - first, dtype=bool)
        held = np.zeros(last - first, dtype=bool)
        for run_start, run in zip(self.starts[lo:hi], self.runs[lo:hi], strict=True):
            merged[run_start - first:run_start - first + len(run)] = run
            held[run_start - first:run_start - first + len(run)] = True
        where = slice(start - first, end - first)
        clash = held[where] & (merged[where] != outcomes)
        if clash.any():
            return start + int(np.argmax(clash))
        merged[where] = outcomes
        self.starts[lo:hi], self.ends[lo:hi], self.runs[lo:hi] = [first], [last], [merged]
        return None

    def get(self, start: int, count: int) -> list[bool] | None:
        """The outcomes of trials ``start .. start+count-1``, if all are held (in one run or
        in runs that follow one another without a gap)."""
        end = start + count
        i = bisect.bisect_right(self.starts, start) - 1
        if i < 0 or self.ends[i] <= start:
            return None
        pieces, position = [], start
        while position < end:
            if i >= len(self.starts) or self.starts[i] > position:
                return None
            stop = min(self.ends[i], end)
            pieces.append(self.runs[i][position - self.starts[i]:stop - self.starts[i]])
            position, i = stop, i + 1
        return [bool(bit) for piece in pieces for bit in piece]

    def each(self, start: int, count: int) -> list[bool | None]:
        """The outcome of each of trials ``start .. start+count-1``, None where none is held."""
        end = start + count
        found: list[bool | None] = [None] * count
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while i < len(self.starts) and self.starts[i] < end:
            lo, hi = max(start, self.starts[i]), min(end, self.ends[i])
            if lo < hi:
                found[lo - start:hi - start] = [bool(bit) for bit in
                                                self.runs[i][lo - self.starts[i]:hi - self.starts[i]]]
            i += 1
        return found

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)


class Journal:
    """The journal of one run, open for replaying and appending (see the module's notes).

    ``known(value, start, count)`` gives the outcomes the journal holds for a request, or
    None; ``write(value, start, outcomes)`` appends a request's outcomes. ``summary()`` is
    what the record's provenance states of the earlier processes; ``remove()`` deletes the
    journal once the record is stored; ``close()`` releases it.
    """

    def __init__(self, path: Path, fd: int, key: str, segment: dict[str, Any], work: str = "run",
                 tidy: bool = True) -> None:
        self.path, self._fd, self.key, self.work = path, fd, key, work
        #: Whether the journal's directory is its store's own (``unfinished``), removed
        #: with its last journal; a directory a user named is never removed.
        self.tidy = tidy
        info = os.fstat(fd)
        self._inode = (info.st_dev, info.st_ino)
        self._known: dict[int, _Runs] = {}
        self._segments: list[dict[str, Any]] = []
        #: Trials answered from the journal in this process.
        self.replayed = 0
        #: What its user should hear of (lines skipped, a journal not used, a failed write);
        #: the first ``told`` were said when it was opened.
        self.notes: list[str] = []
        self.told = 0
        self._began = time.perf_counter()
        self._segment = segment
        self._owner = os.getpid()

    # ------------------------------------------------------------------ reading

    def _load(self, data: bytes) -> bool:
        """Take the entries of ``data``; False (with a note saying why) if the journal
        cannot be used at all."""
        lines = data.split(b"\n")
        if _json(lines[0]) != {"journal": JOURNAL_VERSION, "key": self.key}:
            return self._unusable(f"is not the journal of this {self.work} (its first line differs)")
        code = {name: self._segment.get(name) for name in CODE_FIELDS}
        segment: dict[str, Any] | None = None
        skipped = 0
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            entry = _parse(line)
            if entry is None or entry is _BAD_SEGMENT:
                # Not a line this harness writes whole: the entries after it, up to the next
                # segment line, are of a process nothing here describes.
                segment = None
                skipped += number < len(lines)  # the last line may be a torn write: said nothing of
                continue
            if isinstance(entry, dict):
                if {name: entry.get(name) for name in CODE_FIELDS} != code:
                    return self._unusable(f"was written by other code (harness {entry.get('harness_version')}"
                                          f", commit {entry.get('git_commit')}, uncommitted changes "
                                          f"{entry.get('git_dirty')}); outcomes are the same only for the "
                                          "same code")
                segment = {**entry, "trials": 0, "seconds": 0.0}
                self._segments.append(segment)
                continue
            if not isinstance(entry, _Entry) or segment is None:
                skipped += 1
                continue
            runs = self._known.setdefault(entry.value, _Runs())
            clash = runs.add(entry.start, np.asarray(entry.outcomes, dtype=bool))
            if clash is not None:
                return self._unusable(f"gives two outcomes for trial {clash} at {entry.value}")
            segment["trials"] += len(entry.outcomes)
            segment["seconds"] = max(segment["seconds"], entry.seconds)
        if skipped:
            self.notes.append(f"{self.path}: {skipped} line(s) are not journal entries and are skipped; "
                              "their trials are run again.")
        return True

    def _unusable(self, why: str) -> bool:
        self.notes.append(f"{self.path} {why}; it is not used, and a new journal is started.")
        self._known.clear()
        self._segments.clear()
        return False

    @property
    def known_trials(self) -> int:
        """The trial outcomes the journal holds, at all values."""
        return sum(len(runs) for runs in self._known.values())

    def known(self, value: int, start: int, count: int) -> list[bool] | None:
        """The outcomes of trials ``start .. start+count-1`` at ``value``, if all are journaled."""
        runs = self._known.get(value)
        outcomes = runs.get(start, count) if runs is not None else None
        if outcomes is not None:
            self.replayed += count
        return outcomes

    def recall(self, value: int, trials: Sequence[int], *, replay: bool = True) -> list[bool | None]:
        """The outcome of each of ``trials`` (indices, increasing, not necessarily consecutive)
        at ``value``, None for a trial the journal does not hold: what ``harness verify``
        asks of a sample. Those held count as replayed unless ``replay`` is False (a look
        ahead)."""
        runs = self._known.get(value)
        if runs is None:
            return [None] * len(trials)
        found: list[bool | None] = []
        for start, count in _runs_of(trials):
            found += runs.each(start, count)
        if replay:
            self.replayed += sum(outcome is not None for outcome in found)
        return found

    # ------------------------------------------------------------------ writing

    def _append(self, line: dict[str, Any]) -> None:
        """One line, whole or not at all: a short write is cut back and raised as OSError."""
        data = (json.dumps(line, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes could be written")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise

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
                              f"this {self.work} is not journaled.")
            self.close()
            return
        self._known.setdefault(value, _Runs()).add(start, np.asarray(outcomes, dtype=bool))

    def keep(self, value: int, trials: Sequence[int], outcomes: Sequence[bool]) -> None:
        """Append the outcomes of ``trials`` (increasing, not necessarily consecutive), just
        decoded: one entry per run of consecutive trials."""
        position = 0
        for start, count in _runs_of(trials):
            self.write(value, start, [bool(bit) for bit in outcomes[position:position + count]])
            position += count

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

    def _renew(self) -> None:
        """Go on in a new, empty file at the journal's path (see :func:`_renewed`)."""
        fd, self._fd = self._fd, -1  # closed by _renewed: never closed twice
        self._fd = _renewed(self.path, fd)
        info = os.fstat(self._fd)
        self._inode = (info.st_dev, info.st_ino)

    def remove(self) -> None:
        """Delete the journal (its run's record is stored), if its path still names it."""
        _unlink_if(self.path, self._inode, tidy=self.tidy)

    def release(self, warn: Callable[[str], None] | None) -> None:
        """Tell ``warn`` what it has not heard yet (a failed write, say), then :meth:`close`."""
        for sentence in self.notes[self.told:]:
            if warn is not None:
                warn(sentence)
        self.told = len(self.notes)
        self.close()

    def close(self) -> None:
        """Release the journal (the lock goes with the descriptor); it stays on disk."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def _unlink_if(path: Path, inode: tuple[int, int], tidy: bool = True) -> None:
    """Remove ``path`` if it names the file ``inode`` (device, inode), and then, if ``tidy``,
    its directory if that is empty (a store's ``unfinished``, after its last run)."""
    with contextlib.suppress(OSError):
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == inode:
            os.unlink(path)
    if tidy:
        with contextlib.suppress(OSError):
            os.rmdir(path.parent)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a journal holds")


def _json(line: bytes) -> Any:
    """``line`` as JSON, or None (not JSON, NaN or infinities, nested too deep to read)."""
    try:
        return json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


class _Entry(NamedTuple):
    value: int
    start: int
    outcomes: list[bool]
    seconds: float


def _scalar(value: Any) -> bool:
    """A segment field's value as a record may state it: short text, a number, a flag, null."""
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_TEXT


#: What :func:`_parse` makes of a segment line it cannot take.
_BAD_SEGMENT: dict[str, Any] = {}


def _parse(line: bytes) -> dict[str, Any] | _Entry | None:
    """A segment line as its fields (``SEGMENT_FIELDS`` only; ``_BAD_SEGMENT`` if they are not
    what a record may state), an entry as an :class:`_Entry`, or None if the line is neither."""
    entry = _json(line)
    if not isinstance(entry, dict):
        return None
    if set(entry) == {"segment"}:
        fields = entry["segment"]
        if not isinstance(fields, dict) or not all(_scalar(fields.get(name)) for name in SEGMENT_FIELDS):
            return _BAD_SEGMENT
        return {name: fields.get(name) for name in SEGMENT_FIELDS}
    if set(entry) != {"value", "start", "count", "outcomes", "seconds"}:
        return None
    value, start, count, text, seconds = (entry[name] for name in
                                          ("value", "start", "count", "outcomes", "seconds"))
    if not all(type(number) is int for number in (value, start, count)) or not isinstance(text, str):
        return None
    if value < 0 or start < 0 or not 1 <= count <= MAX_TRIALS or start + count > MAX_TRIALS:
        return None
    if type(seconds) not in (int, float) or not 0 <= seconds <= MAX_SECONDS:
        return None
    try:
        outcomes = [bool(bit) for bit in decode_outcomes(text, count)]
    except ValueError:
        return None
    return _Entry(value, start, outcomes, float(seconds))


def _open(path: Path) -> int:
    """``path`` opened for appending (created if absent), checked to be a regular file with
    no other name, of this user's and writable by no one else (a journal is the word of
    whoever wrote it); OSError or RefusedFile if not."""
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        info = os.fstat(fd)
        check_regular(path, info, None)
        if info.st_nlink != 1:
            raise RefusedFile(path, f"has {info.st_nlink} names (hard links), not one")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise RefusedFile(path, f"belongs to another user (uid {info.st_uid})")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RefusedFile(path, "can be written by other users")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _renewed(path: Path, fd: int) -> int:
    """A new, empty file in place of the journal open on ``fd`` (which is closed): the old
    one is unlinked, never cut short, so nothing else can lose its bytes through it."""
    info = os.fstat(fd)
    _unlink_if(path, (info.st_dev, info.st_ino), tidy=False)
    os.close(fd)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
    if not _try_lock(fd):  # pragma: no cover - another process made it in between
        os.close(fd)
        raise OSError(errno.EBUSY, "another process started it first")
    return fd


def open_journal(root: str | os.PathLike[str], key: str, *, fresh: bool = False,
                 argv: list[str] | None = None, threads: int | None = None, batch_size: int | None = None,
                 warn: Callable[[str], None] | None = None, folder: str = UNFINISHED,
                 work: str = "run") -> Journal | None:
    """The journal of measurement ``key`` in the store at ``root`` (in its ``folder``),
    opened (created if new; started afresh if ``fresh``), or None when none can be kept:
    the directory cannot be written, the path is not a regular file of its own, or another
    process holds it. ``warn`` hears why, and of anything the journal held that is not
    used; ``work`` names what keeps the journal in those sentences (a run, a check)."""
    path = journal_path(root, key, folder)
    say = warn if warn is not None else (lambda sentence: None)

    def without(why: str) -> None:
        say(f"this {work} keeps no journal ({why}); if it is stopped, it starts over.")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open(path)
    except RefusedFile as exc:
        without(str(exc))
        return None
    except OSError as exc:
        without(f"{path}: {exc.strerror or exc}")
        return None
    if not _try_lock(fd):
        os.close(fd)
        say(f"{path} is held by another process running the same measurement; this {work} keeps no "
            "journal of its own.")
        return None
    made = provenance(argv, threads=threads, batch_size=batch_size)
    segment = {name: made[name][:MAX_TEXT] if isinstance(made.get(name), str) else made.get(name)
               for name in SEGMENT_FIELDS}
    size = os.fstat(fd).st_size
    journal = Journal(path, fd, key, segment, work, tidy=folder == UNFINISHED)
    usable = False
    if size and not fresh:
        if size > MAX_JOURNAL_BYTES:
            journal._unusable(f"has {size} bytes, more than the {MAX_JOURNAL_BYTES} a journal may have")
        else:
            usable = journal._load(os.pread(fd, size, 0))
    try:
        if usable:
            if os.pread(fd, 1, size - 1) != b"\n":  # a torn last line must not swallow the next entry
                os.write(fd, b"\n")
        else:
            if size:
                journal._renew()
            journal._append({"journal": JOURNAL_VERSION, "key": key})
    except OSError as exc:
        journal.close()
        journal.remove()  # what it held could not be used, and nothing can be added to it
        for note in journal.notes:
            say(note)
        without(f"{path}: {exc.strerror or exc}")
        return None
    for note in journal.notes:
        say(note)
    journal.told = len(journal.notes)
    return journal


def discard_journal(root: str | os.PathLike[str], key: str) -> None:
    """Remove the journal of measurement ``key``, whose record the store now holds, unless
    another process holds it (or its path is not a regular file of its own)."""
    path = journal_path(root, key)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) |
                     getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and _try_lock(fd):
            _unlink_if(path, (info.st_dev, info.st_ino))
    finally:
        os.close(fd)


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


__all__ = ["JOURNAL_VERSION", "UNFINISHED", "Journal", "discard_journal", "journal_path", "open_journal"]
