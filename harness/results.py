"""Result records: their schema, their provenance, and the append-only store.

A record is one JSON object per (problem, decoder, parameters) run; the store is a
directory holding ``records.jsonl``. Each record is written with a single ``write``
on a file opened for appending, under an exclusive lock, then flushed to disk, so a
killed run leaves either the whole line or nothing; a reader skips a torn last line
rather than failing.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .problem import Problem, entropy_bits, shannon_dimension
from .runner import DecoderRun, RunSettings

#: Version of the record layout; bump it when a field changes meaning.
SCHEMA_VERSION = 1

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
                   plugin_version: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The fields every record has, whatever its track."""
    return {
        "schema": SCHEMA_VERSION,
        "decoder": decoder_name,
        "plugin_package": plugin_package,
        "plugin_version": plugin_version,
        "params": dict(run.decoder.params),
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


def search_fields(problem: Problem, settings: RunSettings, limit: int) -> dict[str, Any]:
    """The search settings a record states (``limit``: its ``d_max``, or ``k_max``)."""
    if problem.fixed:
        return {"max_trials_per_k": settings.max_trials, "k_max": limit}
    return {"max_trials_per_dimension": settings.max_trials, "d_max": limit,
            "resolution": settings.resolution}


def measurement_key(*, decoder: str, plugin_version: str, params: dict[str, Any],
                    problem: dict[str, Any], target: float, search: dict[str, Any],
                    harness_version: str) -> str:
    """What makes two records the same measurement: problem (seed included), decoder,
    parameters, versions and search settings; a run with the same key gives the same
    record, apart from timings and provenance."""
    return json.dumps([decoder, plugin_version, params, problem, target, search, harness_version],
                      sort_keys=True)


def stored_measurement_key(record: dict[str, Any]) -> str | None:
    """The measurement key of a stored record, or None if it lacks a field of one."""
    try:
        return measurement_key(decoder=record["decoder"], plugin_version=record["plugin_version"],
                               params=record["params"], problem=record["problem"],
                               target=record["target"], search=record["search"],
                               harness_version=record["provenance"]["harness_version"])
    except (KeyError, TypeError):
        return None


def make_record(run: DecoderRun, *, decoder_name: str, plugin_package: str,
                plugin_version: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The result record of ``run`` (see the README's record schema)."""
    record = _common_fields(run, decoder_name=decoder_name, plugin_package=plugin_package,
                            plugin_version=plugin_version, provenance=provenance)
    if run.variable == "k":
        record.update(_fixed_fields(run))
    else:
        record.update(_generated_fields(run))
    return record


def _generated_fields(run: DecoderRun) -> dict[str, Any]:
    """``d*`` and the bitrate ``H(N, k) / d*`` of a generated-dictionary run."""
    est, half = run.estimate, run.half
    d_star = est.d if est else None
    fields: dict[str, Any] = {
        "search": search_fields(run.problem, run.settings, run.d_max),
        "d_star": d_star,
        "d_star_ci": list(est.ci) if est else [None, None],
        "d_half": half.d if half else None,
        "d_half_ci": list(half.ci) if half else [None, None],
    }
    fields.update(score_fields(run.problem, fields))
    if run.ok and d_star is None:
        fields["note"] = f"p(d) ≥ {run.settings.target} was not reached for d ≤ {run.d_max}"
    return fields


def _fixed_fields(run: DecoderRun) -> dict[str, Any]:
    """``k*`` where the generated track has ``d*``, and ``bits/dim = H(N, k*) / d``."""
    est, half = run.estimate, run.half
    k_star = est.k if est else None
    fields: dict[str, Any] = {
        "search": search_fields(run.problem, run.settings, run.d_max),
        "k_star": k_star,
        "k_star_ci": list(est.ci) if est else [None, None],
        "k_half": half.k if half else None,
        "k_half_ci": list(half.ci) if half else [None, None],
    }
    fields.update(score_fields(run.problem, fields))
    if run.ok and k_star is None:
        fields["note"] = f"p(k) ≥ {run.settings.target} was not reached even at k = 1"
    return fields


#: The fields :func:`score_fields` derives from a record's problem and estimates.
SCORE_FIELDS = ("entropy_bits", "bits_per_dim", "bits_per_dim_ci", "dims_per_bit", "dims_per_bit_ci",
                "d_star", "d_shannon", "d_star_over_shannon")


def score_fields(problem: Problem, estimates: dict[str, Any]) -> dict[str, Any]:
    """The score of a run, from its problem and its estimates alone (SPEC §2).

    ``estimates`` holds ``d_star`` and ``d_star_ci`` (generated track) or ``k_star`` and
    ``k_star_ci`` (fixed track). The entropy ``H``, the bitrate and its interval, dims/bit
    and, on the noisy track, the Shannon limit and the ratio to it follow from those:
    ``harness verify`` derives them again from a record's own estimates this way.
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
    if problem.noise > 0 and problem.k is not None:
        d_sh = shannon_dimension(problem.n, problem.k, problem.noise)
        fields["d_shannon"] = d_sh
        fields["d_star_over_shannon"] = _ratio(d_star, d_sh) if d_star else None
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


class ResultStore:
    """An append-only directory of result records."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / RECORDS_FILE

    def append(self, record: dict[str, Any]) -> None:
        """Append one record atomically (one locked write of one line, then fsync)."""
        line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot write results to {self.path}: {exc.strerror}.") from None
        try:
            _lock(fd)
            # A torn line left by a killed writer must not swallow this record.
            if os.fstat(fd).st_size and not _ends_with_newline(self.path):
                line = b"\n" + line
            written = os.write(fd, line)
            if written != len(line):
                raise StoreError(f"short write to {self.path}: {written} of {len(line)} bytes.")
            os.fsync(fd)
        finally:
            os.close(fd)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.load())

    def load(self) -> list[dict[str, Any]]:
        """Every complete record in the store, in the order written; torn lines, and any
        other line that is not a record (garbage, JSON that is not a record object), are skipped."""
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read results from {self.path}: {exc.strerror}.") from None
        records = []
        for line in data.split(b"\n"):  # each line decoded on its own: bad bytes spoil only their line
            value = _parse_record(line)
            if isinstance(value, dict):
                records.append(value)
        return records


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND writes are still whole
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def record_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The record files named by ``paths``: a file itself, a directory's ``*.jsonl``
    files at any depth; StoreError if a path holds none."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
            if not files:
                raise StoreError(f"{path} holds no records (*.jsonl files); pass a records file or a store.")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise StoreError(f"{path} does not exist; pass a records file (.jsonl) or a results directory.")
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


def _parse_record(line: str | bytes) -> dict[str, Any] | str | None:
    """The record a line holds; else why it is not one (None for a blank line)."""
    if not line.strip():
        return None
    try:
        value = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except (ValueError, RecursionError):  # bad JSON, an integer too long to convert, nesting too deep
        return "not valid JSON"
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
    **{name: _is_int for name in ("d_star", "d_half", "k_star", "k_half", "d_shannon")},
    **{f"{name}_ci": _pair_of(_is_int) for name in ("d_star", "d_half", "k_star", "k_half")},
    **{name: _is_number for name in ("entropy_bits", "bits_per_dim", "dims_per_bit", "d_star_over_shannon",
                                     "wall_seconds", "peak_memory_bytes")},
    **{f"{name}_ci": _pair_of(_is_number) for name in ("bits_per_dim", "dims_per_bit")},
    "error": lambda v: isinstance(v, str),
    "search": lambda v: isinstance(v, dict) and all(
        _is_number(x) if key == "resolution" else _is_int(x, 1) for key, x in v.items()),
    "trials_by_estimate": lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
}


def record_fault(record: dict[str, Any]) -> str | None:
    """Why ``record`` is not a well-formed result record, or None if it is: every field
    the harness reads has the type it must have, so that a record from elsewhere can
    be shown, published and verified without surprises."""
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
    if problem["dictionary"] == "file" and not (_is_int(problem.get("d"), 1)
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
    variable = "k" if problem["dictionary"] == "file" else "d"
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


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every record in a records file with its line number. A torn last line (a killed
    writer's) is skipped; any other line that is not a well-formed record
    (``record_fault``) is a StoreError naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read records from {path}: {exc.strerror or exc}.") from None
    lines = data.split(b"\n")
    out = []
    for number, line in enumerate(lines, start=1):
        value = _parse_record(line)  # each line decoded on its own, so that bad bytes name their line
        if isinstance(value, dict) and record_fault(value) is not None:
            value = record_fault(value)
        if isinstance(value, dict):
            out.append((number, value))
        elif value is None or number == len(lines):  # no newline after it: cut short by a killed writer
            continue
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
