"""Publishing the leaderboard: merging record files and writing its tables and figures.

``harness publish`` reads every record file it is given (by default the ``*.jsonl``
files under ``leaderboard/``), merges them and writes, into the output directory:

- ``README.md``: Markdown tables, one section per track and problem size, best first;
- ``leaderboard.html``: the same tables in one self-contained page, sortable by any
  column, with no network access needed to view it;
- ``leaderboard.csv`` and ``leaderboard.json``: one row per published result;
- ``figures/``: the figures of :mod:`.plots`, when matplotlib is installed.

Everything written is a function of the records alone (dates come from the records,
never the clock), so publishing the same records again gives the same bytes; a test
holds the committed ``leaderboard/`` to that.

**Merging.** Two records are the same measurement when their problem (seed included),
decoder, parameters, versions, target and search settings agree
(``results.stored_measurement_key``). Copies of one measurement are merged into one;
two successful records of one measurement whose results differ are a conflict, and
publishing stops, naming both.

**Evidence.** Every record is checked as ``harness verify`` checks it, short of
re-running trials (``verify.check_without_trials``): its counts must follow from its
per-trial outcomes, its estimates from its counts (the search replayed), its score from
its estimates, and the decoder it names must be installed at the package and version it
names. A record that fails any of it stops publishing: a wrong number never reaches the
page. A record whose evidence is incomplete (no outcomes, another harness version, a
decoder that is not installed here) is *unverifiable*; each row says which it is.

**One row per decoder, parameters, problem and target.** Nothing a record merely claims
(more trials, a later date, a version) decides between two records of the same row:
a checked record is shown and the unverifiable ones of its row are listed as not shown;
two checked records of one row (other search settings, say), or two unverifiable ones,
are conflicting claims, and publishing stops, naming both and how they differ, so that
a person removes one. An error record is shown only where its row has no measurement.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import plots
from .leaderboard import params_text
from .plugins import Registry, load_registry
from .results import (
    StoreError,
    Warn,
    read_records,
    record_files,
    record_key,
    stored_measurement_key,
    strip_volatile,
)
from .verify import FAILED, SKIPPED, VERIFIED, Verdict, check_without_trials, label

#: The generated files, relative to the output directory.
README, HTML, CSV, JSON = "README.md", "leaderboard.html", "leaderboard.csv", "leaderboard.json"
FIGURES = "figures"


@dataclass(frozen=True)
class Sourced:
    """A record and where it was read from (``path`` relative to the output directory)."""

    record: dict[str, Any]
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path} line {self.line}"


# --------------------------------------------------------------------------- merging


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()


def load_sources(paths: Iterable[str | os.PathLike[str]], out: Path,
                 warn: Warn | None = None) -> list[Sourced]:
    """Every record in the record files under ``paths``, in file and line order."""
    return [Sourced(record, _relative(path, out), line)
            for path in record_files(paths) for line, record in read_records(path, warn=warn)]


def _without_outcomes(record: dict[str, Any]) -> str:
    stripped = strip_volatile(record)
    stripped["curve"] = [{k: v for k, v in point.items() if k != "outcomes"}
                         for point in stripped.get("curve") or [] if isinstance(point, dict)]
    return json.dumps(stripped, sort_keys=True)


Evidence = dict[int, Verdict]  # id(record) → what checking it without trials found


def check_evidence(items: Sequence[Sourced], registry: Registry) -> Evidence:
    """Each record checked without re-running trials; StoreError, naming the first, if any fails."""
    evidence = {id(item.record): check_without_trials(item.record, item.where, registry) for item in items}
    failed = [item for item in items if evidence[id(item.record)].status == FAILED]
    if failed:
        first = failed[0]
        more = f" ({len(failed) - 1} more records fail too)" if len(failed) > 1 else ""
        raise StoreError(f"{first.where} cannot be published: {evidence[id(first.record)].reasons[0]}{more}; "
                         f"`harness verify {first.path}` reports every finding, and the record must be fixed "
                         "or removed.")
    return evidence


def _state(evidence: Evidence, item: Sourced) -> str:
    return evidence[id(item.record)].status


def _preference(evidence: Evidence, item: Sourced) -> tuple[Any, ...]:
    """Among copies of one measurement: a checked one, then the earliest in file order."""
    return (_state(evidence, item) != VERIFIED, item.path, item.line)


def merge(items: Sequence[Sourced], evidence: Evidence) -> list[Sourced]:
    """One record per measurement: copies merged, errors dropped where the same
    measurement also succeeded; StoreError on two successful copies that disagree."""
    groups: dict[str, list[Sourced]] = {}
    for item in items:
        key = stored_measurement_key(item.record)
        if key is None:
            raise StoreError(f"{item.where} lacks a field every record has (decoder, plugin_version, params, "
                             "problem, target, search or provenance.harness_version); fix or remove it.")
        groups.setdefault(key, []).append(item)
    merged = []
    for group in groups.values():
        ok = [item for item in group if item.record.get("status") == "ok"]
        candidates = sorted(ok or group, key=lambda item: _preference(evidence, item))
        first = candidates[0]
        for other in candidates[1:] if ok else []:
            if _without_outcomes(other.record) != _without_outcomes(first.record):
                both_checked = _state(evidence, other) == VERIFIED
                advice = ("both follow from their outcomes, so only re-running trials tells them apart: "
                          "run `harness verify` on both and remove the one that fails" if both_checked else
                          "remove the one that is not checked (`harness verify` both)")
                raise StoreError(
                    f"{first.where} ({_describe(evidence, first)}) and {other.where} "
                    f"({_describe(evidence, other)}) are the same measurement with different results; "
                    f"{advice}.")
        merged.append(first)
    return sorted(merged, key=lambda item: (item.path, item.line))


def _describe(evidence: Evidence, item: Sourced) -> str:
    verdict = evidence[id(item.record)]
    if verdict.status == VERIFIED:
        return "checked"
    if verdict.status == SKIPPED:
        return "an error record"
    return f"unverifiable: {verdict.reasons[0]}" if verdict.reasons else "unverifiable"


#: What tells two measurements of one row apart.
_IDENTITY = (("plugin package", lambda r: r.get("plugin_package")),
             ("plugin version", lambda r: r.get("plugin_version")),
             ("harness version", lambda r: (r.get("provenance") or {}).get("harness_version")),
             ("search settings", lambda r: r.get("search")))


def _differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    named = [f"{name} {get(a)!r} against {get(b)!r}" for name, get in _IDENTITY if get(a) != get(b)]
    return "; ".join(named) or "other settings"


@dataclass(frozen=True)
class Withheld:
    """A record that is not shown, and why."""

    item: Sourced
    reason: str


def published(items: Sequence[Sourced], evidence: Evidence) -> tuple[list[Sourced], list[Withheld]]:
    """The rows of the tables, one per (decoder, parameters, problem, target), and the
    measurements left out (see the module's documentation for the rule)."""
    rows: dict[str, list[Sourced]] = {}
    for item in items:
        rows.setdefault(record_key(item.record), []).append(item)
    shown: list[Sourced] = []
    withheld: list[Withheld] = []
    for group in rows.values():
        ok = [item for item in group if item.record.get("status") == "ok"]
        if not ok:
            shown.append(group[0])
            continue
        checked = [item for item in ok if _state(evidence, item) == VERIFIED]
        contenders = checked or ok
        if len(contenders) > 1:
            a, b = contenders[:2]
            kind = "checked" if checked else "unverifiable"
            raise StoreError(
                f"{a.where} and {b.where} are two {kind} measurements of one row ({label(a.record)}) that "
                f"differ in {_differences(a.record, b.record)}; the leaderboard shows one measurement per "
                "decoder, parameters and problem, so remove one of them.")
        shown.append(contenders[0])
        withheld += [Withheld(item, f"superseded by the checked {contenders[0].where}")
                     for item in ok if item is not contenders[0]]
    return sorted(shown, key=lambda item: (item.path, item.line)), withheld


# ------------------------------------------------------------------------------ rows

#: The columns of the CSV file and the fields of each JSON row, in order.
COLUMNS = ("track", "dictionary", "n", "k", "d", "noise", "snr", "seed", "decoder", "params",
           "plugin_package", "plugin_version", "harness_version", "target", "status", "d_star", "d_star_lo",
           "d_star_hi", "d_half", "d_half_lo", "d_half_hi", "d_max", "k_star", "k_star_lo", "k_star_hi",
           "k_half",
           "k_half_lo", "k_half_hi", "entropy_bits", "bits_per_dim", "bits_per_dim_lo", "bits_per_dim_hi",
           "dims_per_bit", "d_shannon", "d_star_over_shannon", "d_counting", "d_star_over_counting", "trials",
           "evidence", "evidence_note", "weights_sha256", "training_flops",
           "wall_seconds", "peak_memory_bytes", "cpu", "cores", "date", "git_commit", "source", "error")

#: A row's ``evidence``: every number follows from its record's outcomes and its decoder
#: is installed (``checked``), or its evidence is incomplete (``unverifiable``, and why).
CHECKED, UNVERIFIABLE = "checked", "unverifiable"


def track(record: dict[str, Any]) -> str:
    """``fixed`` (a dictionary from a file), ``noisy`` or ``noiseless``."""
    problem = record.get("problem") or {}
    if problem.get("dictionary") == "file":
        return "fixed"
    return "noisy" if (problem.get("noise") or 0) > 0 or problem.get("snr") else "noiseless"


def _pair(value: Any) -> tuple[Any, Any]:
    return tuple(value[:2]) if isinstance(value, list) and len(value) >= 2 else (None, None)  # type: ignore[return-value]


def make_row(item: Sourced, verdict: Verdict | None = None) -> dict[str, Any]:
    """The flat row of one published record (see ``COLUMNS``), with what checking it found."""
    record = item.record
    problem = record.get("problem") or {}
    prov = record.get("provenance") or {}
    fixed = problem.get("dictionary") == "file"
    row: dict[str, Any] = {
        "track": track(record),
        "dictionary": Path(str(problem.get("dictionary_file"))).name if fixed else problem.get("dictionary"),
        "n": problem.get("n"), "k": problem.get("k"), "d": problem.get("d"),
        "noise": problem.get("noise"), "snr": problem.get("snr"), "seed": problem.get("seed"),
        "decoder": record.get("decoder"), "params": params_text(record.get("params")),
        "plugin_package": record.get("plugin_package"), "plugin_version": record.get("plugin_version"),
        "harness_version": prov.get("harness_version"), "target": record.get("target"),
        "status": record.get("status"),
    }
    for name in ("d_star", "d_half", "k_star", "k_half"):
        row[name] = record.get(name)
        row[f"{name}_lo"], row[f"{name}_hi"] = _pair(record.get(f"{name}_ci"))
    row.update({name: record.get(name) for name in ("entropy_bits", "bits_per_dim", "dims_per_bit",
                                                    "d_shannon", "d_star_over_shannon", "d_counting",
                                                    "d_star_over_counting", "trials",
                                                    "wall_seconds", "peak_memory_bytes")})
    row["bits_per_dim_lo"], row["bits_per_dim_hi"] = _pair(record.get("bits_per_dim_ci"))
    row["d_max"] = None if fixed else (record.get("search") or {}).get("d_max")
    given = record.get("decoder_identity")
    identity: dict[str, Any] = given if isinstance(given, dict) else {}
    trained = identity.get("training")
    training: dict[str, Any] = trained if isinstance(trained, dict) else {}
    row["weights_sha256"] = identity.get("sha256") if isinstance(identity.get("sha256"), str) else None
    flops = training.get("training_flops")
    row["training_flops"] = flops if isinstance(flops, (int, float)) and not isinstance(flops, bool) else None
    if verdict is not None and verdict.status != SKIPPED:
        row["evidence"] = CHECKED if verdict.status == VERIFIED else UNVERIFIABLE
        row["evidence_note"] = "; ".join(verdict.reasons) or None
    row.update({"cpu": prov.get("cpu"), "cores": prov.get("cores"), "date": prov.get("date"),
                "git_commit": prov.get("git_commit"), "source": item.where, "error": record.get("error")})
    return {column: row.get(column) for column in COLUMNS}


def _score(row: dict[str, Any]) -> tuple[Any, ...]:
    bits = row["bits_per_dim"]
    return (row["status"] != "ok", bits is None, -(bits or 0.0), row["decoder"] or "", row["params"])


def sort_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """By track, dictionary, N, σ, k (or d), then best bitrate first."""
    order = {"noiseless": 0, "noisy": 1, "fixed": 2}
    return sorted(rows, key=lambda r: (order[r["track"]], str(r["dictionary"]), r["n"] or 0,
                                       r["noise"] or 0.0, r["snr"] or 0.0, r["k"] or 0, r["d"] or 0,
                                       r["target"] or 0.0,
                                       *_score(r)))


# ------------------------------------------------------------------------ formatting


def _interval(value: Any, lo: Any, hi: Any) -> str:
    if value is None:
        return "-"
    return f"{value} [{'?' if lo is None else lo}, {'?' if hi is None else hi}]"


def _float(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _estimate(row: dict[str, Any], name: str, search_limit: Any = None) -> str:
    if row["status"] != "ok":
        return "error"
    if row[name] is None:
        return "not reached" if search_limit is None else f"> {search_limit}"
    return _interval(row[name], row[f"{name}_lo"], row[f"{name}_hi"])


def _machine(row: dict[str, Any]) -> str:
    cpu = row["cpu"] or "?"
    return f"{cpu}, {row['cores']} cores" if row["cores"] else str(cpu)


def _version(row: dict[str, Any]) -> str:
    return f"{row['plugin_package']} {row['plugin_version']}"


@dataclass
class Table:
    """A titled table of text cells; ``sort`` holds each cell's sort key for HTML."""

    title: str
    columns: list[str]
    cells: list[list[str]]
    sort: list[list[Any]]
    figures: list[str]
    #: The columns whose cells hold text from the records (escaped in Markdown).
    text_columns: tuple[str, ...] = ("decoder", "params", "version", "machine", "date")
    #: What the pages say, under the title, about the order of the rows.
    note: str = ""


def _sections(rows: list[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(track, heading, rows) per track and problem size, in table order."""
    sections: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key: tuple[Any, ...] = (row["track"], row["dictionary"], row["n"])
        if row["track"] == "fixed":
            key += (row["d"],)
        sections.setdefault(key, []).append(row)
    out = []
    for key, members in sections.items():
        if key[0] == "fixed":
            heading = f"Fixed dictionary {key[1]}: d = {key[3]}, N = {key[2]}"
        else:
            noise = "noiseless" if key[0] == "noiseless" else "noisy"
            heading = f"{str(key[1]).capitalize()} dictionary, N = {key[2]}, {noise}"
        out.append((key[0], heading, members))
    return out


def _q(rows: list[dict[str, Any]]) -> str:
    targets = {r["target"] for r in rows}
    return f"{next(iter(targets)):g}" if len(targets) == 1 and None not in targets else "q"


def _noise_text(row: dict[str, Any]) -> str:
    """A noisy row's noise: ``σ = 0.2``, or ``snr = 15`` on the fixed-SNR track."""
    return f"snr = {row['snr']:g}" if row["snr"] is not None else f"σ = {row['noise']:g}"


def _generated_table(heading: str, rows: list[dict[str, Any]], noisy: bool) -> Table:
    q = _q(rows)
    snr = any(row["snr"] is not None for row in rows)
    columns = ["#", "decoder", "params", "k"] + ([("noise" if snr else "σ")] if noisy else []) + [
        "H (bits)", f"d*({q}) [95% CI]", "bits/dim [95% CI]", "dims/bit", "d*(0.5) [95% CI]"]
    columns += ["d_Sh", "d*/d_Sh"] if noisy else []
    counting = any(row["d_counting"] is not None for row in rows)
    columns += ["d_cnt", "d*/d_cnt"] if counting else []
    columns += ["trials", "evidence", "version", "machine", "date"]
    cells, sort = [], []
    rank, previous = 0, None
    for index, row in enumerate(rows):
        group = (row["k"], row["noise"], row["snr"], row["target"])
        rank = rank + 1 if group == previous else 1
        previous = group
        text = [str(rank), row["decoder"], row["params"], str(row["k"])]
        keys: list[Any] = [index, row["decoder"], row["params"], row["k"]]
        if noisy:
            text.append(_noise_text(row) if snr else f"{row['noise']:g}")
            keys.append(row["snr"] if row["snr"] is not None else row["noise"])
        text += [_float(row["entropy_bits"], 1), _estimate(row, "d_star", row["d_max"]),
                 f"{_float(row['bits_per_dim'], 3)} [{_float(row['bits_per_dim_lo'], 3)}, "
                 f"{_float(row['bits_per_dim_hi'], 3)}]" if row["bits_per_dim"] is not None else "-",
                 _float(row["dims_per_bit"]), _estimate(row, "d_half")]
        keys += [row["entropy_bits"], row["d_star"], row["bits_per_dim"], row["dims_per_bit"], row["d_half"]]
        if noisy:
            text += [str(row["d_shannon"] or "-"), _float(row["d_star_over_shannon"])]
            keys += [row["d_shannon"], row["d_star_over_shannon"]]
        if counting:
            text += [str(row["d_counting"] or "-"), _float(row["d_star_over_counting"])]
            keys += [row["d_counting"], row["d_star_over_counting"]]
        text += [str(row["trials"]), row["evidence"] or "-", _version(row), _machine(row),
                 str(row["date"] or "-")[:10]]
        keys += [row["trials"], row["evidence"] or "", _version(row), _machine(row), row["date"]]
        cells.append(text)
        sort.append(keys)
    return Table(heading, columns, cells, sort, [])


def _ms_per_signal(row: dict[str, Any]) -> float | None:
    """A row's decoding time per signal in ms, as its record states it (wall time over trials)."""
    wall, trials = row["wall_seconds"], row["trials"]
    if not isinstance(wall, (int, float)) or not isinstance(trials, int) or not trials:
        return None
    return wall / trials * 1e3


def _flops_text(value: Any) -> str:
    return "-" if value is None else f"{value:.2g}"


#: What the training and time columns of a fixed-dictionary table are, as its note says.
FIXED_NOTE = ("training FLOPs: the compute that trained an encoder, from the training settings its "
              "weights carry (`harness train-sae`; `-` for a decoder that is not trained); ms/signal: "
              "decoding time per signal as the record states it (wall time over trials, on the machine "
              "and threads its provenance names).")


def _fixed_table(heading: str, rows: list[dict[str, Any]]) -> Table:
    q = _q(rows)
    snr = any(row["snr"] is not None for row in rows)
    columns = ["#", "decoder", "params", "noise" if snr else "σ", f"k*({q}) [95% CI]", "H(N, k*)",
               "bits/dim", "dims/bit", "k*(0.5) [95% CI]", "training FLOPs", "ms/signal", "trials",
               "evidence", "version", "machine", "date"]
    cells, sort = [], []
    for index, row in enumerate(rows):
        time = _ms_per_signal(row)
        cells.append([str(index + 1), row["decoder"], row["params"],
                      _noise_text(row) if snr else f"{row['noise']:g}",
                      _estimate(row, "k_star"), _float(row["entropy_bits"], 1),
                      _float(row["bits_per_dim"], 3), _float(row["dims_per_bit"]), _estimate(row, "k_half"),
                      _flops_text(row["training_flops"]), "-" if time is None else f"{time:.3g}",
                      str(row["trials"]), row["evidence"] or "-", _version(row), _machine(row),
                      str(row["date"] or "-")[:10]])
        level = row["snr"] if row["snr"] is not None else row["noise"]
        sort.append([index, row["decoder"], row["params"], level, row["k_star"], row["entropy_bits"],
                     row["bits_per_dim"], row["dims_per_bit"], row["k_half"], row["training_flops"], time,
                     row["trials"], row["evidence"] or "", _version(row), _machine(row), row["date"]])
    return Table(heading, columns, cells, sort, [], note=FIXED_NOTE)


#: Marks a summary cell whose row is unverifiable.
UNVERIFIED_MARK = " †"

#: The order of the summary's rows, as the pages state it.
SUMMARY_ORDER = ("Best first: a decoder that reaches d* at more of these k comes first, then the one "
                 "with the lower mean dims/bit (the number in brackets) over the k it reaches, then by name "
                 "and parameters.")

#: The summary's last row on the noiseless Rademacher track: the counting limit at each k.
LIMIT_ROW = "counting limit d_cnt"
LIMIT_NOTE = (" The last row is the counting limit d_cnt at the same q: no decoder can reach d* below it "
              "(docs/contract.md §2).")


def _headline(found: dict[int, dict[str, Any]]) -> tuple[int, float]:
    """A summary row's place in :data:`SUMMARY_ORDER`: (minus) the number of k it reaches
    d* at, and its mean dims/bit over them."""
    reached = [cell["dims_per_bit"] for cell in found.values()
               if cell["status"] == "ok" and cell["d_star"] is not None and cell["dims_per_bit"] is not None]
    return -len(reached), sum(reached) / len(reached) if reached else 0.0


def _summary_table(rows: list[dict[str, Any]]) -> Table | None:
    """Decoders against k: each cell ``d*`` (dims/bit), marked † when unverifiable, the rows
    in the order :data:`SUMMARY_ORDER` states.
    A decoder run with several parameter settings has a row for each, named with them."""
    ks = sorted({r["k"] for r in rows if r["k"] is not None})
    if len(ks) < 2:
        return None
    by_decoder: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in rows:
        by_decoder.setdefault((row["decoder"], row["params"]), {})[row["k"]] = row

    settings = {decoder: sum(d == decoder for d, _ in by_decoder) for decoder, _ in by_decoder}
    entries = sorted(by_decoder.items(), key=lambda item: (*_headline(item[1]), *item[0]))
    cells, sort = [], []
    for (decoder, params), found in entries:
        text: list[str] = [decoder if settings[decoder] == 1 else f"{decoder} [{params}]"]
        keys: list[Any] = [decoder]
        for k in ks:
            cell = found.get(k)
            if cell is None:
                text.append("-")
                keys.append(None)
            elif cell["status"] != "ok" or cell["d_star"] is None:
                text.append("error" if cell["status"] != "ok" else f"> {cell['d_max']}")
                keys.append(None)
            else:
                mark = UNVERIFIED_MARK if cell["evidence"] == UNVERIFIABLE else ""
                text.append(f"{cell['d_star']} ({_float(cell['dims_per_bit'])}){mark}")
                keys.append(cell["d_star"])
        cells.append(text)
        sort.append(keys)
    limits = {r["k"]: r["d_counting"] for r in rows if r["d_counting"] is not None}
    if limits:
        cells.append([LIMIT_ROW, *(str(limits.get(k, "-")) for k in ks)])
        sort.append([LIMIT_ROW, *(limits.get(k) for k in ks)])
    return Table(f"d*({_q(rows)}) and dims/bit by k", ["decoder", *(f"k = {k}" for k in ks)], cells, sort, [],
                 note=SUMMARY_ORDER + (LIMIT_NOTE if limits else ""))


def build_tables(items: Sequence[Sourced], rows: list[dict[str, Any]]) -> list[tuple[str, list[Table]]]:
    """(heading, tables) per section of ``rows`` (the sorted rows of ``items``): a summary
    by k (when there are several), then the rows."""
    sections = []
    for kind, heading, members in _sections(rows):
        tables: list[Table] = []
        if kind == "fixed":
            tables.append(_fixed_table("All rows, best first", members))
            tables[0].figures = plots.figure_names(
                [item.record for item in items if _in_section(item.record, kind, members)])
        else:
            summary = _summary_table(members) if kind == "noiseless" else None
            if summary is not None:
                tables.append(summary)
            tables.append(_generated_table("All rows, by k, best first", members, kind == "noisy"))
            tables[0].figures = plots.figure_names(
                [item.record for item in items if _in_section(item.record, kind, members)])
        sections.append((heading, tables))
    return sections


def _in_section(record: dict[str, Any], kind: str, members: list[dict[str, Any]]) -> bool:
    problem = record.get("problem") or {}
    first = members[0]
    if kind == "fixed":
        name = Path(str(problem.get("dictionary_file"))).name
        return track(record) == kind and name == first["dictionary"] and problem.get("n") == first["n"] \
            and problem.get("d") == first["d"]
    return track(record) == kind and problem.get("dictionary") == first["dictionary"] \
        and problem.get("n") == first["n"]


# ------------------------------------------------------------------------- renderers


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


#: Characters that can make Markdown (GitHub's included: tables, strikethrough, raw HTML
#: and entities) out of text; backslash-escaped in text that comes from records.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#+!|~&])")


def md_text(text: Any) -> str:
    """Text from a record as Markdown that shows exactly that text: every character that
    could start markup, a link or HTML is escaped, and line breaks become spaces."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_code(text: Any) -> str:
    """Text from a record as a code span when it can be one, else as :func:`md_text`."""
    flat = " ".join(str(text).split())
    return f"`{_md_cell(flat)}`" if flat and "`" not in flat else md_text(flat)


def _md_table(table: Table) -> list[str]:
    right = {"#", "k", "σ", "noise", "H (bits)", "dims/bit", "trials", "d_Sh", "d*/d_Sh", "d_cnt", "H(N, k*)",
             "bits/dim"}
    align = ["---:" if c in right or c.startswith(("d*", "k*", "k =", "bits/dim")) else "---"
             for c in table.columns]
    texts = [column in table.text_columns for column in table.columns]
    lines = ["| " + " | ".join(table.columns) + " |", "| " + " | ".join(align) + " |"]
    for row in table.cells:
        cells = (md_text(cell) if text else _md_cell(cell) for cell, text in zip(row, texts, strict=True))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _figure_caption(stem: str) -> str:
    if stem.startswith("minimal-d-vs-k"):
        return "Minimal dimension d* against k, with the entropy H(N, k) and guides at 2, 4 and 8 dims/bit"
    if stem.startswith("success-vs-d"):
        return "Success probability against d at each k"
    if stem.startswith("kstar-vs-time"):
        return "k* against decoding time per signal, each decoder and encoder on the same dictionary"
    if stem.startswith("shannon-ratio-snr"):
        return "d*/d_Sh against the signal-to-noise ratio per dimension (fixed-SNR track)"
    return "d*/d_Sh against the noise level"


def _facts(all_items: Sequence[Sourced]) -> tuple[str, list[tuple[str, int, list[str]]]]:
    """The day of the latest record, and each file with its number of records and the
    distinct commands (from the records' provenance) that made them."""
    dates = sorted(str((i.record.get("provenance") or {}).get("date", "")) for i in all_items)
    latest = dates[-1][:10] if dates and dates[-1] else "unknown"
    files: dict[str, tuple[int, set[str]]] = {}
    for item in all_items:
        count, commands = files.get(item.path, (0, set()))
        command = (item.record.get("provenance") or {}).get("command")
        if isinstance(command, list) and command:
            commands.add(" ".join(["harness", *map(str, command)]))
        files[item.path] = (count + 1, commands)
    return latest, [(path, count, sorted(commands)) for path, (count, commands) in sorted(files.items())]


INTRO = """\
Each row is one decoder's score on the standard problem (§1–2 of the harness's contract,
`docs/contract.md`): the minimal
dimension `d*(q)` at which it reads a uniform k-subset of N features back exactly with
probability at least `q`, with its 95% confidence interval, and its bitrate
`H(N, k) / d*` in bits per dimension (`H(N, k) = log2 C(N, k)`; higher is better).
`d*(0.5)` is the even-odds dimension. Rows are ranked by bitrate within each `k`.
A fixed-dictionary section (the amortisation gap, `harness gap`) holds the dimension
instead: each decoder or learned encoder on one dictionary file is scored by `k*(q)`,
the most active features it reads back at that `d`, and its bitrate `H(N, k*) / d`."""

FOOTER = """\
## Reproduce, check, submit

- Every row's record holds the command, seed, versions and machine it came from
  (`provenance`); the same harness and decoder versions give the same counts on any
  machine.
- `harness verify leaderboard/` re-runs a random sample of every record's trials and
  confirms the stored outcomes; `harness publish` regenerates this page, the HTML, CSV
  and JSON files and the figures from the records, byte for byte.
- To add your decoder's rows, see "Submitting results" in CONTRIBUTING.md.

This file is generated by `harness publish`; edit the records, not this file."""


EVIDENCE = """\
`harness publish` checks every record as `harness verify` does, short of re-running its
trials: a row's counts must follow from its per-trial outcomes, its `d*`, `d*(0.5)` and
intervals from its counts (the search replayed), its bits/dim from its `d*`. A row is
**checked** when all of that holds and the decoder it names is installed at the package
and version it names; it is **unverifiable** when its evidence is incomplete (why is listed
below; a summary cell marked † is such a row). A record that fails the check is never
published. `harness verify` also re-runs a random sample of each record's trials. The
machine, date and timings of a row are what its record states."""


@dataclass(frozen=True)
class Notes:
    """The rows whose evidence is incomplete, and the records not shown, each as
    (where, record label, why)."""

    unverifiable: list[tuple[str, str, str]]
    withheld: list[tuple[str, str, str]]


def _link(path: str) -> str:
    return urllib.parse.quote(path, safe="/")


def _commands(commands: list[str], most: int = 3) -> str:
    shown = "<br>".join(md_code(c) for c in commands[:most])
    return (shown + (f"<br>and {len(commands) - most} more" if len(commands) > most else "")) or "-"


def render_markdown(sections: list[tuple[str, list[Table]]], items: Sequence[Sourced],
                    all_items: Sequence[Sourced], notes: Notes) -> str:
    latest, files = _facts(all_items)
    lines = ["# Leaderboard", "", INTRO, "",
             f"Made from {len(all_items)} records in {len(files)} files, latest measured {latest}. "
             f"Also as [HTML]({HTML}), [CSV]({CSV}) and [JSON]({JSON}).", ""]
    lines += ["| records file | records | made with |", "|---|---:|---|"]
    lines += [f"| [{md_code(path)}](<{_link(path)}>) | {count} | {_commands(commands)} |"
              for path, count, commands in files]
    lines.append("")
    for heading, tables in sections:
        lines += [f"## {md_text(heading)}", ""]
        for stem in tables[0].figures if tables else []:
            lines += [f"![{_figure_caption(stem)}]({FIGURES}/{stem}.svg)", ""]
        for table in tables:
            note = [table.note, ""] if table.note else []
            lines += [f"**{table.title}**", "", *note, *_md_table(table), ""]
    lines += ["## Evidence", "", EVIDENCE, ""]
    if not notes.unverifiable and not notes.withheld:
        lines += ["Every row is checked, and every record is shown.", ""]
    for title, entries in (("Unverifiable rows", notes.unverifiable), ("Records not shown", notes.withheld)):
        if entries:
            lines += [f"**{title}**", ""]
            lines += [f"- {md_text(where)} ({md_text(name)}): {md_text(why)}" for where, name, why in entries]
            lines.append("")
    lines.append(FOOTER)
    return "\n".join(lines) + "\n"


_STYLE = """\
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:90rem;\
padding:0 1rem;color:#222}
h1,h2,h3,p,li{overflow-wrap:anywhere}
.scroll{overflow:auto;max-width:100%;max-height:80vh;margin:.5rem 0 1.5rem}
table{border-collapse:separate;border-spacing:0;font-size:.85rem}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
th{cursor:pointer;background:#f4f4f4;position:sticky;top:0;z-index:1}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
img{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 .2rem}"""

#: Sorts a table by the clicked column: best first on the first click (``data-best``: ``low``
#: or ``high``; other columns ascending, as numbers in ``num`` columns, else as text),
#: reversed on the next; cells without a value stay last, ties keep the page's order, and
#: the rank column is renumbered 1..n in the new order.
_SCRIPT = """\
document.querySelectorAll("table.sortable").forEach(function(table){
  var heads=Array.prototype.slice.call(table.tHead.rows[0].cells),body=table.tBodies[0];
  var rank=heads.findIndex(function(h){return h.classList.contains("rank");});
  Array.prototype.forEach.call(body.rows,function(r,i){r.dataset.index=i;});
  heads.forEach(function(th,col){
    th.addEventListener("click",function(){
      var first=th.dataset.best==="high"?"descending":"ascending";
      var dir=th.getAttribute("aria-sort")!==first?first:first==="ascending"?"descending":"ascending";
      heads.forEach(function(h){h.removeAttribute("aria-sort");});
      th.setAttribute("aria-sort",dir);
      var sign=dir==="ascending"?1:-1,numeric=th.classList.contains("num");
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.sort,y=b.cells[col].dataset.sort,i=a.dataset.index-b.dataset.index;
        if(x===""||y==="")return (x==="")-(y==="")||i;
        return sign*((numeric?Number(x)-Number(y):x.localeCompare(y))||i);});
      rows.forEach(function(r,n){body.appendChild(r);if(rank>=0)r.cells[rank].textContent=String(n+1);});
    });});});"""


def _sort_text(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _best(column: str) -> str | None:
    """Which end of a score column is best (``low`` or ``high``); None for other columns."""
    if column in ("#", "dims/bit", "ms/signal", "training FLOPs") or column.startswith(("d*", "k =")):
        return "low"  # a rank, d* (or d*(0.5), d*/d_Sh), and the summary's d* by k
    if column.startswith(("bits/dim", "k*", "H(N, k*)")):
        return "high"
    return None


def _html_table(table: Table) -> list[str]:
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in table.sort)
               for i in range(len(table.columns))]
    out = [f"<h3>{html.escape(table.title)}</h3>"]
    if table.note:
        out.append(f"<p>{html.escape(table.note)}</p>")
    out += ['<div class="scroll">', '<table class="sortable">', "<thead><tr>"]
    for i, column in enumerate(table.columns):
        classes = " ".join(name for name, on in (("num", numeric[i]), ("rank", column == "#")) if on)
        best = _best(column)
        attributes = (f' class="{classes}"' if classes else "") + (f" data-best={best}" if best else "")
        out.append(f"<th{attributes}>{html.escape(column)}</th>")
    out += ["</tr></thead>", "<tbody>"]
    for cells, keys in zip(table.cells, table.sort, strict=True):
        row = zip(cells, keys, strict=True)
        tds = "".join(f'<td{" class=num" if numeric[i] else ""} data-sort="{html.escape(_sort_text(key))}">'
                      f"{html.escape(cell)}</td>" for i, (cell, key) in enumerate(row))
        out.append(f"<tr>{tds}</tr>")
    out += ["</tbody>", "</table>", "</div>"]
    return out


def render_html(sections: list[tuple[str, list[Table]]], items: Sequence[Sourced],
                all_items: Sequence[Sourced], notes: Notes) -> str:
    latest, files = _facts(all_items)
    intro = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(INTRO).replace("\n", " "))
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>Sparse decoder leaderboard</title>", f"<style>\n{_STYLE}\n</style>", "</head>", "<body>",
           "<h1>Sparse decoder leaderboard</h1>", f"<p>{intro}</p>",
           f"<p>Made from {len(all_items)} records in {len(files)} files, latest measured {latest}: "
           + ", ".join(f"<code>{html.escape(p)}</code> ({n})" for p, n, _ in files)
           + f'. Also as <a href="{CSV}">CSV</a> and <a href="{JSON}">JSON</a>. '
             "Click a column's header to sort by it, best first; click again to reverse.</p>"]
    for heading, tables in sections:
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for stem in tables[0].figures if tables else []:
            out.append(f'<p><img src="{FIGURES}/{stem}.svg" alt="{html.escape(_figure_caption(stem))}"></p>')
        for table in tables:
            out += _html_table(table)
    evidence = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(EVIDENCE).replace("\n", " "))
    evidence = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", evidence)
    out += ["<h2>Evidence</h2>", f"<p>{evidence}</p>"]
    if not notes.unverifiable and not notes.withheld:
        out.append("<p>Every row is checked, and every record is shown.</p>")
    for title, entries in (("Unverifiable rows", notes.unverifiable), ("Records not shown", notes.withheld)):
        if entries:
            out += [f"<h3>{title}</h3>", "<ul>"]
            out += [f"<li><code>{html.escape(where)}</code> ({html.escape(name)}): {html.escape(why)}</li>"
                    for where, name, why in entries]
            out.append("</ul>")
    out += ["<p>Generated by <code>harness publish</code> from the records; see the README for how to "
            "reproduce, verify and submit results.</p>", f"<script>\n{_SCRIPT}\n</script>",
            "</body>", "</html>"]
    return "\n".join(out) + "\n"


def render_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v
                         for k, v in row.items()})
    return buffer.getvalue()


def render_json(rows: list[dict[str, Any]], all_items: Sequence[Sourced]) -> str:
    latest, files = _facts(all_items)
    document = {"generator": "harness publish", "latest": latest,
                "sources": [{"path": p, "records": n, "commands": c} for p, n, c in files], "rows": rows}
    return json.dumps(document, indent=1, sort_keys=False, allow_nan=False) + "\n"


# --------------------------------------------------------------------------- publish


@dataclass
class Published:
    """What ``publish`` wrote, and what it could not."""

    written: list[Path]
    records: int
    rows: int
    figures_skipped: str | None = None
    unverifiable: int = 0
    withheld: int = 0


def choose(items: Sequence[Sourced], registry: Registry | None = None) -> tuple[list[Sourced], Evidence,
                                                                                  list[Withheld]]:
    """The records a leaderboard shows, what checking them found, and the ones it leaves out:
    every record checked (:func:`check_evidence`), copies merged, one per row
    (:func:`published`). StoreError on a record that fails or a conflict."""
    evidence = check_evidence(items, registry if registry is not None else load_registry())
    chosen, withheld = published(merge(items, evidence), evidence)
    return chosen, evidence, withheld


def publish(sources: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str],
            figures: bool = True, registry: Registry | None = None, warn: Warn | None = None) -> Published:
    """Check and merge the records under ``sources`` and write the leaderboard into ``out``;
    the records are checked against ``registry`` (by default the installed plugins)."""
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise StoreError(f"--out {out_dir} is a file, not a directory; name a directory to publish into.")
    all_items = load_sources(sources, out_dir, warn)
    if not all_items:
        raise StoreError(f"no records in {', '.join(str(s) for s in sources)}; nothing to publish.")
    chosen, evidence, withheld = choose(all_items, registry)
    rows = sort_rows(make_row(item, evidence[id(item.record)]) for item in chosen)
    sections = build_tables(chosen, rows)
    notes = Notes(
        unverifiable=[(item.where, label(item.record), "; ".join(evidence[id(item.record)].reasons))
                      for item in sorted(chosen, key=lambda i: (i.path, i.line))
                      if evidence[id(item.record)].status not in (VERIFIED, SKIPPED)],
        withheld=[(w.item.where, label(w.item.record), w.reason) for w in withheld])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {out_dir}: {exc.strerror}.") from None
    files = {README: render_markdown(sections, chosen, all_items, notes),
             HTML: render_html(sections, chosen, all_items, notes),
             CSV: render_csv(rows), JSON: render_json(rows, all_items)}
    written = []
    for name, text in files.items():
        path = out_dir / name
        _write(path, text.encode("utf-8"))
        written.append(path)
    skipped = None
    wanted = set(plots.figure_names([item.record for item in chosen]))
    if not figures:
        skipped = "figures not drawn (--no-figures)"
    elif not wanted:
        pass
    elif not plots.available():
        skipped = ("figures not redrawn: matplotlib is not installed "
                   "(pip install 'superposition-harness[plot]')")
    else:
        folder = out_dir / FIGURES
        written += plots.draw_figures([item.record for item in chosen], folder)
        for stale in sorted(folder.glob("*")):
            if stale.is_file() and stale.suffix[1:] in plots.FORMATS and stale.stem not in wanted:
                stale.unlink()
    return Published(written=written, records=len(all_items), rows=len(rows), figures_skipped=skipped,
                     unverifiable=len(notes.unverifiable), withheld=len(notes.withheld))


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a reader sees the old or the new file)."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}.") from None
