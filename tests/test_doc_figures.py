"""The figures the README and the decoder notes quote from committed records are the records'.

Each table below is read from the Markdown as a reader sees it and every cell that comes
from a record is recomputed from ``leaderboard/<suite>/records.jsonl``: a regenerated
record that changes a figure fails here until the prose says the same. A cell of ``-``
stands for a record not yet committed, and fails once one is.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _records(suite: str) -> dict[tuple[str, int], dict]:
    path = ROOT / "leaderboard" / suite / "records.jsonl"
    records: dict[tuple[str, int], dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            key = (record["decoder"], record["problem"]["k"])
            assert key not in records, f"two {suite} records of {key}"
            records[key] = record
    return records


def _table(path: Path, header: str) -> list[list[str]]:
    """The rows (cells stripped of Markdown emphasis) of the table whose header line starts
    with ``header``; exactly one such table must exist."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"{path.name}: {len(starts)} tables start with {header!r}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("*`") for cell in line.strip().strip("|").split("|")])
    assert rows, f"{path.name}: the table {header!r} has no rows"
    return rows


def _interval(record: dict, field: str = "d_star") -> str:
    lo, hi = record[f"{field}_ci"]
    return f"{record[field]} [{lo}, {hi}]"


def test_the_readme_table_at_k16_is_the_quick_suites_records():
    quick = _records("quick")
    rows = _table(ROOT / "README.md", "| decoder | d*(0.95) [95% CI] | bits/dim | dims/bit | d*/d_cnt |")
    assert {row[0] for row in rows} == {name for name, k in quick if k == 16}
    for name, estimate, bits, dims, over_counting, _seconds in rows:
        record = quick[(name, 16)]
        assert estimate == _interval(record), name
        assert bits == f"{record['entropy_bits'] / record['d_star']:.3f}", name
        assert dims == f"{record['dims_per_bit']:.2f}", name
        assert over_counting == f"{record['d_star_over_counting']:.2f}", name


def test_the_readme_table_at_two_to_the_twenty_is_the_paper_suites_records():
    paper = _records("paper")
    rows = _table(ROOT / "README.md", "| decoder | d*(0.95) [95% CI] | dims/bit | d*(0.5) | trials | wall |")
    assert [row[0] for row in rows] == ["topk", "mp"]
    for name, estimate, dims, half, trials, wall, memory in rows:
        record = paper[(name, 64)]
        minutes, seconds = divmod(round(record["wall_seconds"]), 60)
        assert (estimate, dims, half, trials, wall) == (
            _interval(record), f"{record['dims_per_bit']:.2f}", str(record["d_half"]),
            str(record["trials"]), f"{minutes} min {seconds} s"), name
        stated = re.fullmatch(r"\d+(?:\.(\d+))?", memory.removesuffix(" GiB"))
        half_unit = 0.5 * 10.0 ** -len(stated[1] or "") if stated else 0.0
        assert stated and abs(float(stated[0]) - record["peak_memory_bytes"] / 2**30) <= half_unit, name


def _with_rule(record: dict, rule: float) -> str:
    return f"{record['d_star']} / {round(rule)} ({record['d_star'] / rule:.2f})"


def test_the_readme_figure_2_table_is_the_paper_suites_records():
    paper = _records("paper")
    rows = _table(ROOT / "README.md", "| k | H (bits) | mp d* (dims/bit) | amp-binary d* |")
    assert [int(row[0]) for row in rows] == [4, 16, 64, 256]
    for k_text, entropy, mp, amp_binary, topk, threshold in rows:
        k = int(k_text)
        cells = {"mp": mp, "amp-binary": amp_binary, "topk": topk, "threshold": threshold}
        n = 2 ** 20
        for name, cell in cells.items():
            record = paper.get((name, k))
            if record is None:
                assert cell == "-", f"{name} at k = {k} has no committed record but the README shows {cell}"
                continue
            assert record["problem"]["n"] == n
            assert entropy == f"{record['entropy_bits']:.1f}", (name, k)
            if name in ("mp", "amp-binary"):
                assert cell == f"{record['d_star']} ({record['dims_per_bit']:.2f})", (name, k)
            elif name == "topk":
                assert cell == _with_rule(record, 4 * k * math.log(k * n)), (name, k)
            else:
                assert cell == _with_rule(record, 8 * k * math.log(n)), (name, k)


def test_the_convex_decoders_measured_defaults_are_the_quick_suites_records():
    quick = _records("quick")
    rows = _table(ROOT / "docs" / "decoders" / "lasso.md", "| decoder | k | H (bits) | d*(0.95) [95% CI] |")
    assert {(row[0], int(row[1])) for row in rows} == {
        key for key in quick if key[0] in ("lasso-cd", "fista", "ista")}
    for name, k, entropy, estimate, dims, half, trials in rows:
        record = quick[(name, int(k))]
        assert (entropy, estimate, dims, half, trials) == (
            f"{record['entropy_bits']:.1f}", _interval(record), f"{record['dims_per_bit']:.2f}",
            _interval(record, "d_half"), str(record["trials"])), (name, k)


@pytest.mark.parametrize("header, name", [
    ("| k | H (bits) | d*(0.95) [CI] | bits/dim | dims/bit | d*(0.5) | trials |", "amp"),
    ("| k | H (bits) | d*(0.95) [CI] | bits/dim | dims/bit | d*(0.5) | mp d*(0.95) |", "amp-binary"),
])
def test_the_amp_notes_measured_defaults_are_the_quick_suites_records(header, name):
    quick = _records("quick")
    rows = _table(ROOT / "docs" / "decoders" / "amp.md", header)
    assert [int(row[0]) for row in rows] == sorted(k for decoder, k in quick if decoder == name)
    for row in rows:
        record = quick[(name, int(row[0]))]
        expected = [row[0], f"{record['entropy_bits']:.1f}", _interval(record),
                    f"{record['entropy_bits'] / record['d_star']:.3f}", f"{record['dims_per_bit']:.3f}",
                    str(record["d_half"])]
        if name == "amp-binary":
            mp = quick[("mp", int(row[0]))]
            expected += [str(mp["d_star"]), f"{mp['d_star'] / record['d_star']:.2f}×"]
        expected.append(str(record["trials"]))
        assert row == expected, (name, row[0])


def test_the_tables_reader_finds_cells_as_written(tmp_path):
    """The reader itself: emphasis and code marks go, the cells stay in order, and a
    header that matches no table (or two) is an error rather than an empty check."""
    path = tmp_path / "page.md"
    path.write_text("intro\n\n| a | b |\n|---|---|\n| **1** | `x` |\n| 2 | y |\n\nafter\n\n"
                    "| c |\n|---|\n| 3 |\n\n| c |\n|---|\n| 4 |\n", encoding="utf-8")
    assert _table(path, "| a | b |") == [["1", "x"], ["2", "y"]]
    for header, count in (("| d |", 0), ("| c |", 2)):
        with pytest.raises(AssertionError, match=f"{count} tables"):
            _table(path, header)
