"""Result records: their schema, their provenance, and the append-only store.

A record is one JSON object per (problem, decoder, parameters) run; the store is a
directory holding ``records.jsonl``. Each record is written with a single ``write``
on a file opened for appending, under an exclusive lock, then flushed to disk, so a
killed run leaves either the whole line or nothing; a reader skips a torn last line
rather than failing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .decoder import NAME_PATTERN
from .files import RefusedFile, check_regular, kind_of, read_regular, virtual_root
from .problem import (
    FIXED,
    RADEMACHER,
    Problem,
    counting_dimension,
    entropy_bits,
    shannon_dimension,
    shannon_dimension_snr,
    track_of,
)
from .runner import DecoderRun, RunSettings

#: Version of the record layout; bump it when a field changes meaning. Schema 2 added the
#: confirmation of the search's candidate (``search.confirm_trials``) and the counting limit
#: (``d_counting``, ``d_star_over_counting``).
SCHEMA_VERSION = 2

#: The schemas whose records can still be read and verified, each under its own rules:
#: a schema-1 record's search confirmed nothing and its score has no counting limit.
READABLE_SCHEMAS = (1, 2)

RECORDS_FILE = "records.jsonl"
DEFAULT_STORE = "harness-results"


class StoreError(OSError):
    """The results store cannot be used; the message names the path and the problem."""


# ------------------------------------------------------------------------- records


def _ratio(numerator: float, denominator: float | None) -> float | None:
    if denominator in (None, 0):
        return None
    return numerator / denominator


def _common_fields(run: DecoderRun, *, decoder_name: str, plugin_package: str,
                   plugin_version: str, provenance: dict[str, Any], schema: int) -> dict[str, Any]:
    """The fields every record has, whatever its track."""
    return {
        "schema": schema,
        "decoder": decoder_name,
        "plugin_package": plugin_package,
        "plugin_version": plugin_version,
        "params": dict(run.params),
        "problem": run.problem.as_record(),
        "target": run.settings.target,
        "trials": run.trials,
        # The search for the headline estimate ran first; the one at 0.5 reused its
        # probes and paid only for what it added.
        "trials_by_estimate": {f"{run.variable}_star": run.trials_target,
                               f"{run.variable}_half": run.trials - run.trials_target},
        "curve": [_with_outcomes(point, run.outcomes.get(point[run.variable])) for point in run.curve],
        "status": "ok" if run.ok else "error",
        "error": run.error,
        "wall_seconds": round(run.wall_seconds, 3),
        "peak_memory_bytes": run.peak_memory_bytes,
        "provenance": provenance,
    }


def encode_outcomes(outcomes: Iterable[bool]) -> str:
    """Trial outcomes as hex: trial ``i`` is bit ``i % 8`` of byte ``i // 8`` (1: decoded)."""
    return np.packbits(np.fromiter(outcomes, dtype=bool), bitorder="little").tobytes().hex()


def decode_outcomes(text: str, trials: int) -> np.ndarray:
    """The ``trials`` outcomes ``encode_outcomes`` wrote, as booleans; ValueError if
    ``text`` is not hex of exactly that many bits (padding bits zero)."""
    raw = bytes.fromhex(text)
    if len(raw) != (trials + 7) // 8:
        raise ValueError(f"{len(raw)} bytes of outcomes for {trials} trials")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little").astype(bool)
    if bits[trials:].any():
        raise ValueError("outcome bits set past the last trial")
    return bits[:trials]


def _with_outcomes(point: dict[str, int], outcomes: list[bool] | None) -> dict[str, Any]:
    if outcomes is None or len(outcomes) != point["trials"]:
        return dict(point)
    return {**point, "outcomes": encode_outcomes(outcomes)}


def search_fields(problem: Problem, settings: RunSettings, limit: int,
                  schema: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The search settings a record states (``limit``: its ``d_max``, or ``k_max``)."""
    track = problem.track
    fields: dict[str, Any] = {track.trials_field: settings.max_trials}
    if schema >= 2:
        fields["confirm_trials"] = settings.confirmation
    fields[track.limit] = limit
    if track.narrows:
        fields["resolution"] = settings.resolution
    return fields


def measurement_key(*, decoder: str, plugin_version: str, params: dict[str, Any],
                    problem: dict[str, Any], target: float, search: dict[str, Any],
                    harness_version: str, identity: dict[str, Any] | None = None) -> str:
    """What makes two records the same measurement: problem (seed included), decoder,
    parameters, the decoder's identity (the files it reads), versions and search settings;
    a run with the same key gives the same record, apart from timings and provenance."""
    key: list[Any] = [decoder, plugin_version, params, problem, target, search, harness_version]
    return json.dumps(key + ([identity] if identity is not None else []), sort_keys=True)


def stored_measurement_key(record: dict[str, Any]) -> str | None:
    """The measurement key of a stored record, or None if it lacks a field of one."""
    try:
        return measurement_key(decoder=record["decoder"], plugin_version=record["plugin_version"],
                               params=record["params"], problem=record["problem"],
                               target=record["target"], search=record["search"],
                               harness_version=record["provenance"]["harness_version"],
                               identity=record.get("decoder_identity"))
    except (KeyError, TypeError):
        return None


def make_record(run: DecoderRun, *, decoder_name: str, plugin_package: str, plugin_version: str,
                provenance: dict[str, Any], schema: int = SCHEMA_VERSION,
                identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result record of ``run`` (see the README's record schema), laid out as
    ``schema`` says (an older one when ``harness verify`` rebuilds an older record);
    ``identity`` is the decoder's (``Decoder.identity``), stored when it has one."""
    record = _common_fields(run, decoder_name=decoder_name, plugin_package=plugin_package,
                            plugin_version=plugin_version, provenance=provenance, schema=schema)
    if identity is not None:
        record["decoder_identity"] = identity
    record.update(_estimate_fields(run, schema))
    return record


def _estimate_fields(run: DecoderRun, schema: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The search settings and the two estimates of the run's track with their intervals
    (``d*`` on generated dictionaries, ``k*`` on a fixed one), then the score they give."""
    track = run.problem.track
    est, half = run.estimate, run.half
    fields: dict[str, Any] = {
        "search": search_fields(run.problem, run.settings, run.d_max, schema),
        track.estimate: est.d if est else None,
        f"{track.estimate}_ci": list(est.ci) if est else [None, None],
        track.half: half.d if half else None,
        f"{track.half}_ci": list(half.ci) if half else [None, None],
    }
    fields.update(score_fields(run.problem, fields, run.settings.target, schema))
    if run.ok and fields[track.estimate] is None:
        fields["note"] = track.unreached(run.settings.target, run.d_max)
    return fields


def record_settings(record: Mapping[str, Any]) -> RunSettings:
    """The search settings a record states (target, trials, confirmation, resolution and
    limit of its track), checked; KeyError, TypeError or ValueError if it does not state
    them. A schema-1 record confirmed nothing: its confirmation is its probes' trials."""
    search: Mapping[str, Any] = record.get("search") or {}
    track = track_of(dict(record.get("problem") or {}))
    max_trials = int(search[track.trials_field])
    confirm = max_trials if record.get("schema") == 1 else int(search["confirm_trials"])
    settings = RunSettings(target=float(record["target"]), max_trials=max_trials, confirm_trials=confirm,
                           resolution=float(search.get("resolution", RunSettings.resolution)),
                           **{track.limit: int(search[track.limit])})
    settings.validate()
    return settings


#: The fields :func:`score_fields` derives from a record's problem and estimates.
SCORE_FIELDS = ("entropy_bits", "bits_per_dim", "bits_per_dim_ci", "dims_per_bit", "dims_per_bit_ci",
                "d_star", "d_shannon", "d_star_over_shannon", "d_counting", "d_star_over_counting")


def score_fields(problem: Problem, estimates: Mapping[str, Any], target: float,
                 schema: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The score of a run, from its problem, its estimates and its target alone
    (docs/contract.md §2).

    ``estimates`` holds ``d_star`` and ``d_star_ci`` (generated track) or ``k_star`` and
    ``k_star_ci`` (fixed track). The entropy ``H``, the bitrate and its interval, dims/bit,
    the physical limit of the track and the ratio to it follow from those: on the noisy
    tracks the Shannon limit ``d_shannon``; on the noiseless Rademacher track the counting
    limit ``d_counting`` at the target (the noiseless Gaussian track has no finite limit:
    its bitrate is bounded by the decoders, not by information). ``harness verify``
    derives them again from a record's own estimates this way; a record of ``schema`` 1
    has no counting limit.
    """
    if problem.fixed:
        d = problem.d
        assert d is not None
        k_star = estimates.get("k_star")
        lo, hi = (list(estimates.get("k_star_ci") or [None, None]) + [None, None])[:2]

        def bits(k: int | None) -> float | None:
            return None if not k else entropy_bits(problem.n, k) / d

        bits_per_dim = bits(k_star)
        return {"d_star": None, "entropy_bits": entropy_bits(problem.n, k_star) if k_star else None,
                "bits_per_dim": bits_per_dim, "bits_per_dim_ci": [bits(lo), bits(hi)],
                "dims_per_bit": 1 / bits_per_dim if bits_per_dim else None}
    h = problem.entropy_bits
    d_star = estimates.get("d_star")
    lo, hi = (list(estimates.get("d_star_ci") or [None, None]) + [None, None])[:2]
    fields: dict[str, Any] = {
        "entropy_bits": h,
        "bits_per_dim": _ratio(h, d_star),
        "bits_per_dim_ci": [_ratio(h, hi), _ratio(h, lo)],
        "dims_per_bit": d_star / h if d_star else None,
        "dims_per_bit_ci": [lo / h if lo else None, hi / h if hi else None],
    }
    if problem.noisy and problem.k is not None:
        d_sh = (shannon_dimension_snr(problem.n, problem.k, problem.snr) if problem.snr is not None
                else shannon_dimension(problem.n, problem.k, problem.noise))
        fields["d_shannon"] = d_sh
        fields["d_star_over_shannon"] = _ratio(d_star, d_sh) if d_star else None
    elif problem.dictionary == RADEMACHER and problem.k is not None and schema >= 2:
        d_cnt = counting_dimension(problem.n, problem.k, target)
        fields["d_counting"] = d_cnt
        fields["d_star_over_counting"] = _ratio(d_star, d_cnt) if d_star else None
    return fields


def record_key(record: dict[str, Any]) -> str:
    """What identifies a result: decoder, parameters, problem and target."""
    return json.dumps([record.get("decoder"), record.get("params"), record.get("problem"),
                       record.get("target")], sort_keys=True)


#: The fields that differ between two runs of the same measurement.
VOLATILE = ("wall_seconds", "peak_memory_bytes", "provenance")


def strip_volatile(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its timings and provenance, for comparing two runs."""
    return {k: v for k, v in record.items() if k not in VOLATILE}


# ---------------------------------------------------------------------- provenance


def _git(*args: str) -> str | None:
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(source), *args],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    """The commit of the checkout the harness runs from, and whether tracked files differ."""
    commit = (_git("rev-parse", "HEAD") or "").strip() or None
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status.strip())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return []
    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: pool.get(k) for k in keys if pool.get(k) is not None}
            for pool in threadpool_info() if pool.get("user_api") == "blas"]


def provenance(argv: Iterable[str] | None = None, threads: int | None = None,
               batch_size: int | None = None) -> dict[str, Any]:
    """Where and how a record was made: versions, commit, machine, date, command."""
    import numba
    import numpy

    from . import __version__
    commit, dirty = _git_state()
    return {
        "harness_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "blas": _blas(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "batch_size": batch_size,
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": list(argv) if argv is not None else sys.argv[1:],
    }


# --------------------------------------------------------------------------- store


#: A records file larger than this is refused before it is read (a record is a few
#: kilobytes: this holds hundreds of thousands).
MAX_RECORDS_BYTES = 1 << 30

#: Called with one sentence for each line a reader skips (a torn write's remains).
Warn = Callable[[str], None]


class ResultStore:
    """An append-only directory of result records.

    Only the process that made the store object writes through it: a copy of the
    process (a decoder that forks) cannot add records. The directory is resolved to an
    absolute path when the store is made, so a decoder that changes the working
    directory cannot move where records go.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        self.path = self.root / RECORDS_FILE
        self._owner = os.getpid()

    def check_writable(self) -> None:
        """StoreError, in one sentence, unless records can be appended here: run before
        the first measurement, so that a bad ``--results`` costs nothing."""
        where = f"--results {self.root}"
        root = virtual_root(self.root)
        if root is not None:
            raise StoreError(f"{where} is in {root}, where results cannot be stored; name a directory of "
                             "your own.")
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{where} is a file, not a directory; name a directory for the results store.")
        fd = self._open()
        os.close(fd)

    def _open(self) -> int:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC,
                         0o644)
        except OSError as exc:
            raise StoreError(f"cannot write results to {self.path}: {exc.strerror or exc}; name a "
                             "directory you can write to with --results.") from None
        try:
            check_regular(self.path, os.fstat(fd), None)
        except RefusedFile as exc:
            os.close(fd)
            raise StoreError(f"cannot write results to {self.path}: it {exc.problem}.") from None
        return fd

    def append(self, record: dict[str, Any]) -> None:
        """Append one record atomically: one locked write of one line, then fsync.

        If the write falls short or fails (a full disk, an I/O error), the file is cut
        back to the length it had, so it holds every record it held and nothing of this
        one, and StoreError says what happened.
        """
        if os.getpid() != self._owner:
            raise StoreError(f"a copy of the process that opened {self.path} (a decoder that forked) "
                             "tried to write to it; only the harness's own process writes records.")
        line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        fd = self._open()
        try:
            _lock(fd)
            size = os.fstat(fd).st_size
            # A torn line left by a killed writer must not swallow this record.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"only {written} of {len(line)} bytes could be written")
                os.fsync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise StoreError(f"cannot write results to {self.path}: {exc.strerror or exc}; the record "
                                 "was not stored and the file holds what it held before.") from None
        finally:
            os.close(fd)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.load())

    def load(self, warn: Warn | None = None) -> list[dict[str, Any]]:
        """Every complete record in the store, in the order written. A line that is not a
        record (a torn write's remains, garbage, JSON that is not a record object) is
        skipped, with a sentence to ``warn`` for each one that is not the torn last line."""
        if not self.path.exists():
            return []
        lines = _read_lines(self.path)
        records = []
        for number, line in enumerate(lines, start=1):  # each line decoded on its own
            value = _parse_record(line)
            if isinstance(value, dict):
                records.append(value)
            elif value is not None and number < len(lines) and warn is not None:
                warn(_skipped(self.path, number, value))
        return records


def _skipped(path: Path, number: int, why: str) -> str:
    if why in TORN:
        return f"{path} line {number} is skipped: it is {why}, the remains of a write that was cut short"
    return f"{path} line {number} is skipped: it is not a record ({why})"


def _read_lines(path: Path) -> list[bytes]:
    """The lines of a records file, read under :func:`~superposition_harness.files.open_regular`'s rules."""
    try:
        data = read_regular(path, MAX_RECORDS_BYTES)
    except RefusedFile as exc:
        raise StoreError(f"cannot read records from {path}: it {exc.problem}.") from None
    return data.split(b"\n")


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND writes are still whole
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def record_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The record files named by ``paths``: a file itself, a directory's ``*.jsonl``
    files at any depth (regular files only); StoreError if a path holds none, or names
    something that is not a regular file."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        root = virtual_root(path)
        if root is not None:
            raise StoreError(f"{path} is in {root}, which holds no records; pass a records file (.jsonl) "
                             "or a results directory.")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.jsonl") if p.is_file() and virtual_root(p) is None)
            if not files:
                raise StoreError(f"{path} holds no records (*.jsonl files); pass a records file or a store.")
            found += files
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise StoreError(f"{path} is {kind_of(path.stat().st_mode)}, not a regular file; pass a records "
                             "file (.jsonl) or a results directory.")
        else:
            raise StoreError(f"{path} does not exist; pass a records file (.jsonl) or a results directory.")
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


#: What :func:`_parse_record` says of a line that a write cut short would leave.
TORN = ("not UTF-8 text", "not valid JSON")


def _parse_record(line: str | bytes) -> dict[str, Any] | str | None:
    """The record a line holds; else why it is not one (None for a blank line)."""
    if not line.strip():
        return None
    try:
        value = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
    except UnicodeDecodeError:
        return TORN[0]
    except (ValueError, RecursionError):  # bad JSON, an integer too long to convert, nesting too deep
        return TORN[1]
    if not isinstance(value, dict):
        return f"a JSON {_JSON_NAMES.get(type(value), type(value).__name__)}, not an object"
    if not isinstance(value.get("decoder"), str):
        return "an object without a decoder name"
    return value


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pair_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == 2 and all(x is None or check(x) for x in v)


#: Optional fields and what their values must be (None is always allowed).
_OPTIONAL: dict[str, Callable[[Any], bool]] = {
    **{name: _is_int for name in ("d_star", "d_half", "k_star", "k_half", "d_shannon", "d_counting")},
    **{f"{name}_ci": _pair_of(_is_int) for name in ("d_star", "d_half", "k_star", "k_half")},
    **{name: _is_number for name in ("entropy_bits", "bits_per_dim", "dims_per_bit", "d_star_over_shannon",
                                     "d_star_over_counting",
                                     "wall_seconds", "peak_memory_bytes")},
    **{f"{name}_ci": _pair_of(_is_number) for name in ("bits_per_dim", "dims_per_bit")},
    "error": lambda v: isinstance(v, str),
    "decoder_identity": lambda v: isinstance(v, dict),
    "search": lambda v: isinstance(v, dict) and all(
        _is_number(x) if key == "resolution" else _is_int(x, 1) for key, x in v.items()),
    "trials_by_estimate": lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
}


def record_fault(record: dict[str, Any]) -> str | None:
    """Why ``record`` is not a well-formed result record, or None if it is: every field
    the harness reads has the type it must have, so that a record from elsewhere can
    be shown, published and verified without surprises."""
    if not isinstance(record.get("decoder"), str) or not NAME_PATTERN.match(record["decoder"]):
        return (f"its decoder name {record.get('decoder')!r} breaks the decoder-name rule (lower-case "
                "letters, digits, '_', '-', '.', starting with a letter)")
    for name in ("plugin_package", "plugin_version", "status"):
        if not isinstance(record.get(name), str):
            return f"its {name} is not a string"
    if not isinstance(record.get("params"), dict):
        return "its params are not an object"
    problem = record.get("problem")
    if not isinstance(problem, dict):
        return "its problem is not an object"
    n, k = problem.get("n"), problem.get("k")
    if not _is_int(n, 1) or not (k is None or (_is_int(k) and k <= n)):
        return "its problem's n and k are not integers with 0 ≤ k ≤ n"
    if not isinstance(problem.get("dictionary"), str) or not _is_number(problem.get("noise")) \
            or problem["noise"] < 0 or not _is_int(problem.get("seed")) \
            or not _is_int(problem.get("subsets_per_draw"), 1):
        return "its problem's dictionary, noise, seed or subsets_per_draw is malformed"
    snr = problem.get("snr")
    if snr is not None and (not _is_number(snr) or snr <= 0):
        return "its problem's snr is not a positive number"
    track = track_of(problem)
    if track is FIXED and not (_is_int(problem.get("d"), 1)
                                                and isinstance(problem.get("dictionary_file"), str)):
        return "its fixed-dictionary problem lacks d or dictionary_file"
    target: Any = record.get("target")
    if not _is_number(target) or not 0 < target < 1:
        return "its target is not a success rate between 0 and 1"
    if not _is_int(record.get("trials")):
        return "its trials is not a non-negative integer"
    if not isinstance(record.get("provenance"), dict):
        return "its provenance is not an object"
    curve = record.get("curve")
    variable = track.variable
    if not isinstance(curve, list) or (record["status"] == "ok" and not curve):
        return "its curve is not a list of probes"
    for point in curve:
        if not (isinstance(point, dict) and _is_int(point.get(variable), 0) and _is_int(point.get("trials"))
                and _is_int(point.get("successes")) and point["successes"] <= point["trials"]
                and isinstance(point.get("outcomes", ""), str)):
            return f"its curve holds a malformed probe ({variable}, trials, successes)"
    for name, check in _OPTIONAL.items():
        if record.get(name) is not None and not check(record[name]):
            return f"its {name} is malformed"
    return None


_JSON_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def read_records(path: Path, warn: Warn | None = None) -> list[tuple[int, dict[str, Any]]]:
    """Every record in a records file with its line number.

    A line that is not JSON (the remains of a write cut short: a killed writer, a full
    disk) is skipped, with a sentence to ``warn`` unless it is the last line; any other
    line that is not a well-formed record (``record_fault``) is a StoreError naming it.
    """
    lines = _read_lines(path)
    out = []
    for number, line in enumerate(lines, start=1):
        value = _parse_record(line)  # each line decoded on its own, so that bad bytes name their line
        if isinstance(value, dict) and record_fault(value) is not None:
            raise StoreError(f"{path} line {number} is not a result record ({record_fault(value)}); "
                             "fix or remove that line.")
        if isinstance(value, dict):
            out.append((number, value))
        elif value is None:
            continue
        elif value in TORN:
            if number < len(lines) and warn is not None:
                warn(_skipped(path, number, value))
        else:
            raise StoreError(f"{path} line {number} is not a result record ({value}); "
                             "fix or remove that line.")
    return out


def well_formed(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without a ``record_fault``."""
    return [record for record in records if record_fault(record) is None]


def best_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (decoder, parameters, problem, target): the successful one with
    the most trials, the latest among equals; an error record only if nothing else."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in records:
        key = record_key(record)
        current = chosen.get(key)
        if current is None or _rank(record) >= _rank(current):
            chosen[key] = record
    return list(chosen.values())


def _rank(record: dict[str, Any]) -> tuple[int, int]:
    trials = record.get("trials")
    return (record.get("status") == "ok", trials if isinstance(trials, int) else 0)
