"""`harness publish`: the leaderboard's files are a function of its records, exactly."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from superposition_harness import plots
from superposition_harness.cli import main
from superposition_harness.publish import COLUMNS, CSV, HTML, JSON, README, publish
from superposition_harness.results import StoreError

LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"
TEXT_FILES = (README, HTML, CSV, JSON)
SMALL = ["--n", "256", "--trials", "96", "--seed", "5"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Real records: mp, topk and threshold at k = 2 and 3, made by `harness run`."""
    root = tmp_path_factory.mktemp("store")
    assert main(["run", *SMALL, "--k", "2", "--k", "3", "--plugin", "mp", "--plugin", "topk",
                 "--plugin", "threshold", "--results", str(root)]) == 0
    return [json.loads(line) for line in (root / "records.jsonl").read_text().splitlines()]


def write(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return path


def committed_figures_made_with() -> str | None:
    """The matplotlib version the committed SVG figures name, if any."""
    for svg in sorted((LEADERBOARD / "figures").glob("*.svg")):
        found = re.search(r"Matplotlib v([0-9][^,\s<]*)", svg.read_text(encoding="utf-8"))
        if found:
            return found.group(1)
    return None


def test_the_committed_leaderboard_is_what_publish_makes_of_its_records(tmp_path):
    """The committed tables (and, with the same matplotlib, figures) equal a fresh publish."""
    copy_of = tmp_path / "leaderboard"
    for source in sorted(LEADERBOARD.rglob("*.jsonl")):
        target = copy_of / source.relative_to(LEADERBOARD)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    made_with = committed_figures_made_with()
    same_matplotlib = plots.available() and made_with is not None and \
        made_with == __import__("matplotlib").__version__
    result = publish([copy_of], copy_of, figures=same_matplotlib)
    assert result.records >= 1
    for name in TEXT_FILES:
        assert (copy_of / name).read_bytes() == (LEADERBOARD / name).read_bytes(), \
            f"leaderboard/{name} is stale: run `harness publish`"
    committed = sorted(p.name for p in (LEADERBOARD / "figures").glob("*"))
    if same_matplotlib:
        assert sorted(p.name for p in (copy_of / "figures").glob("*")) == committed
        for name in committed:
            fresh = (copy_of / "figures" / name).read_bytes()
            assert fresh == (LEADERBOARD / "figures" / name).read_bytes(), \
                f"leaderboard/figures/{name} is stale: run `harness publish`"
    readme = (LEADERBOARD / README).read_text(encoding="utf-8")
    for stem in re.findall(r"\]\(figures/([^)]+)\.svg\)", readme):
        assert f"{stem}.svg" in committed and f"{stem}.png" in committed


def test_the_committed_leaderboard_shows_every_built_in_on_quick_and_standard():
    from superposition_harness.jobs import BUILTIN_PACKAGE
    from superposition_harness.plugins import load_registry

    builtins = {name for name, entry in load_registry().decoders.items()
                if entry.package == BUILTIN_PACKAGE and entry.cls.any_dictionary}
    rows = json.loads((LEADERBOARD / JSON).read_text())["rows"]
    for n, ks in ((4096, {4, 8, 16, 32}), (65536, {4, 16, 64})):
        for k in ks:
            shown = {r["decoder"] for r in rows if r["n"] == n and r["k"] == k and r["status"] == "ok"}
            assert shown == builtins, f"N = {n}, k = {k} lacks {sorted(builtins - shown)}"
    readme = (LEADERBOARD / README).read_text(encoding="utf-8")
    assert "![Minimal dimension d* against k" in readme


def test_publishing_twice_gives_the_same_bytes_wherever_it_runs(records, tmp_path, monkeypatch):
    write(tmp_path / "a" / "runs" / "records.jsonl", records)
    publish([tmp_path / "a"], tmp_path / "a", figures=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b",
                    ignore=shutil.ignore_patterns("*.md", "*.html", "*.csv", "*.json"))
    monkeypatch.chdir(tmp_path / "b")
    publish(["."], ".", figures=False)
    for name in TEXT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_tables_rank_decoders_best_first_within_each_k(records, tmp_path):
    write(tmp_path / "records.jsonl", records)
    publish([tmp_path], tmp_path, figures=False)
    rows = json.loads((tmp_path / JSON).read_text())["rows"]
    assert [r["k"] for r in rows] == sorted(r["k"] for r in rows)
    for k in (2, 3):
        bits = [r["bits_per_dim"] for r in rows if r["k"] == k]
        assert bits == sorted(bits, reverse=True) and len(bits) == 3
    readme = (tmp_path / README).read_text()
    assert "## Rademacher dictionary, N = 256, noiseless" in readme
    assert "d*(0.95) and dims/bit by k" in readme and "| decoder | k = 2 | k = 3 |" in readme
    mp = next(r for r in rows if r["decoder"] == "mp" and r["k"] == 3)
    assert f"| {mp['d_star']} [{mp['d_star_lo']}, {mp['d_star_hi']}] |" in readme
    assert "superposition-harness 0.1.0" in readme and f"{mp['cores']} cores" in readme


def test_the_counting_limit_and_the_ratio_to_it_are_shown(records, tmp_path):
    """Noiseless Rademacher rows carry d_cnt and d*/d_cnt; the summary by k ends with the
    limit; the d-against-k figure draws it."""
    from superposition_harness.problem import counting_dimension

    write(tmp_path / "records.jsonl", records)
    publish([tmp_path], tmp_path, figures=plots.available())
    rows = json.loads((tmp_path / JSON).read_text())["rows"]
    for row in rows:
        assert row["d_counting"] == counting_dimension(256, row["k"], 0.95)
        assert row["d_star_over_counting"] == pytest.approx(row["d_star"] / row["d_counting"])
    readme = (tmp_path / README).read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| # |"))
    assert header.endswith("| d_cnt | d*/d_cnt | trials | evidence | version | machine | date |")
    limits = [counting_dimension(256, k, 0.95) for k in (2, 3)]
    assert f"| counting limit d\\_cnt | {limits[0]} | {limits[1]} |" in readme
    if plots.available():
        svg = (tmp_path / "figures" / "minimal-d-vs-k-rademacher-n256.svg").read_text()
        assert "counting limit d_cnt(0.95)" in svg


def test_csv_and_json_hold_the_same_rows(records, tmp_path):
    write(tmp_path / "records.jsonl", records)
    publish([tmp_path], tmp_path, figures=False)
    table = list(csv.DictReader(io.StringIO((tmp_path / CSV).read_text())))
    rows = json.loads((tmp_path / JSON).read_text())["rows"]
    assert len(table) == len(rows) == len(records)
    assert list(table[0]) == list(COLUMNS)
    for line, row in zip(table, rows, strict=True):
        assert line["decoder"] == row["decoder"] and int(line["d_star"]) == row["d_star"]
        assert float(line["bits_per_dim"]) == row["bits_per_dim"]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.links = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("src", "href")]


def test_the_html_page_is_self_contained_and_sortable(records, tmp_path):
    write(tmp_path / "records.jsonl", records)
    publish([tmp_path], tmp_path, figures=False)
    page = _Page()
    page.feed((tmp_path / HTML).read_text())
    assert page.tags.count("table") == 2 and "script" in page.tags and "style" in page.tags
    assert not [link for link in page.links if "://" in link or link.startswith("//")]
    assert 'class="sortable"' in (tmp_path / HTML).read_text()


def test_records_from_several_files_merge_without_duplicates(records, tmp_path):
    write(tmp_path / "ours" / "records.jsonl", records)
    copies = copy.deepcopy(records[:2])
    for record in copies:
        record["provenance"]["date"] = "2030-01-01T00:00:00+00:00"
        record["wall_seconds"] = 99.0
    write(tmp_path / "theirs.jsonl", copies)
    result = publish([tmp_path / "ours", tmp_path / "theirs.jsonl"], tmp_path / "out", figures=False)
    assert result.records == len(records) + 2 and result.rows == len(records)
    rows = json.loads((tmp_path / "out" / JSON).read_text())["rows"]
    assert all(r["source"].startswith("../ours/records.jsonl") for r in rows)  # the earliest copy


def test_a_record_whose_counts_do_not_follow_from_its_outcomes_stops_publishing(records, tmp_path, capsys):
    changed = copy.deepcopy(records[0])
    changed["curve"][0]["successes"] += 1
    write(tmp_path / "a.jsonl", records)
    write(tmp_path / "b.jsonl", [changed])
    with pytest.raises(StoreError, match="b.jsonl line 1 cannot be published: at d = .* claims"):
        publish([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "out", figures=False)
    assert main(["publish", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
                 "--out", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_two_copies_of_one_measurement_with_different_results_stop_publishing(records, tmp_path):
    changed = copy.deepcopy(records[0])
    for point in changed["curve"]:  # without outcomes nothing shows which copy is right
        del point["outcomes"]
    changed["wall_seconds"] += 1
    changed["d_half"] += 1
    write(tmp_path / "a.jsonl", records)
    write(tmp_path / "b.jsonl", [changed])
    with pytest.raises(StoreError, match=r"a.jsonl line 1 \(checked\) and .*b.jsonl line 1 \(unverifiable"):
        publish([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "out", figures=False)


def test_two_checked_measurements_of_one_row_stop_publishing(records, tmp_path, capsys):
    assert main(["run", *SMALL, "--k", "2", "--plugin", "mp", "--trials", "128", "--no-store", "--json"]) == 0
    other = json.loads(capsys.readouterr().out)
    write(tmp_path / "a.jsonl", records)
    write(tmp_path / "b.jsonl", [other])
    with pytest.raises(StoreError, match="two checked measurements of one row .* differ in search settings"):
        publish([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "out", figures=False)


def test_an_error_record_gives_way_to_a_success_of_the_same_measurement(records, tmp_path):
    failed = copy.deepcopy(records[0])
    failed.update(status="error", error="decoder 'mp' raised RuntimeError: boom", d_star=None)
    write(tmp_path / "records.jsonl", [failed, *records])
    result = publish([tmp_path], tmp_path, figures=False)
    assert result.rows == len(records)
    assert "error" not in {r["status"] for r in json.loads((tmp_path / JSON).read_text())["rows"]}


def test_a_record_without_outcomes_is_a_copy_of_the_one_with_them(records, tmp_path):
    older = copy.deepcopy(records[0])
    for point in older["curve"]:
        del point["outcomes"]
    write(tmp_path / "old.jsonl", [older])
    write(tmp_path / "new.jsonl", records)
    result = publish([tmp_path], tmp_path / "out", figures=False)
    assert result.rows == len(records)
    rows = json.loads((tmp_path / "out" / JSON).read_text())["rows"]
    assert not any(r["source"].startswith("../old.jsonl") for r in rows)


def test_without_matplotlib_the_tables_are_written_and_the_figures_left_alone(records, tmp_path, monkeypatch):
    write(tmp_path / "records.jsonl", records)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "kept.svg").write_text("<svg/>")
    monkeypatch.setattr(plots, "available", lambda: False)
    result = publish([tmp_path], tmp_path, figures=True)
    assert "matplotlib is not installed" in (result.figures_skipped or "")
    assert (tmp_path / "figures" / "kept.svg").exists() and (tmp_path / README).exists()
    assert "figures/minimal-d-vs-k-rademacher-n256.svg" in (tmp_path / README).read_text()


def test_publish_draws_the_figures_and_removes_stale_ones(records, tmp_path):
    pytest.importorskip("matplotlib")
    write(tmp_path / "records.jsonl", records)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "gone.svg").write_text("<svg/>")
    publish([tmp_path], tmp_path)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "minimal-d-vs-k-rademacher-n256.png", "minimal-d-vs-k-rademacher-n256.svg",
        "success-vs-d-rademacher-n256.png", "success-vs-d-rademacher-n256.svg"]


def test_fixed_and_noisy_tracks_get_their_own_sections(records, tmp_path, capsys):
    assert main(["run", *SMALL, "--k", "2", "--plugin", "mp", "--noise", "0.1", "--no-store", "--json"]) == 0
    noisy = json.loads(capsys.readouterr().out)
    rng = np.random.default_rng(2)
    np.save(tmp_path / "F.npy", rng.standard_normal((48, 256)).astype(np.float32))
    assert main(["run", "--dictionary", str(tmp_path / "F.npy"), "--plugin", "mp", "--k-max", "12",
                 "--no-store", "--json"]) == 0
    fixed = json.loads(capsys.readouterr().out)
    assert None not in fixed["k_star_ci"]
    write(tmp_path / "out" / "records.jsonl", [*records, noisy, fixed])
    publish([tmp_path / "out"], tmp_path / "out", figures=False)
    readme = (tmp_path / "out" / README).read_text()
    assert "## Rademacher dictionary, N = 256, noisy" in readme and "| d_Sh | d*/d_Sh |" in readme
    assert "## Fixed dictionary F.npy: d = 48, N = 256" in readme
    assert f"| {fixed['k_star']} [{fixed['k_star_ci'][0]}, {fixed['k_star_ci'][1]}] |" in readme


@pytest.mark.parametrize("content, fragment", [("[1, 2]\n{}\n", "line 1 is not a result record"),
                                               ('{"decoder": "mp"}\n', "its plugin_package is not a string")])
def test_bad_record_files_exit_2_with_one_line(tmp_path, capsys, content, fragment):
    (tmp_path / "records.jsonl").write_text(content)
    assert main(["publish", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_plot_draws_from_a_store(records, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write(tmp_path / "store" / "records.jsonl", records)
    assert main(["plot", str(tmp_path / "store"), "--out", str(tmp_path / "fig"), "--format", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "minimal-d-vs-k-rademacher-n256.png", "success-vs-d-rademacher-n256.png"]


HOSTILE = {
    "plugin_package": '<img src=x onerror="alert(1)">',
    "plugin_version": "[click](javascript:alert(1))",
    "params": {"x": "</td><script>alert(1)</script>", "y": "a|b\n# heading", "z": "**bold** `code` ~~gone~~"},
}


def test_text_from_a_record_is_text_in_the_markdown_and_the_html(records, tmp_path):
    """A decoder that is not installed here is published as unverifiable, with whatever text
    its record holds: none of it may become markup, a link or HTML on either page."""
    from markdown_it import MarkdownIt

    hostile = copy.deepcopy(records[0])
    hostile.update(decoder="not-installed", **copy.deepcopy(HOSTILE))
    hostile["provenance"].update(cpu="AMD | EPYC\n\n<b>x</b>", date="2026-01-01 [a](http://evil)",
                                 command=["run", "`rm -rf /`", "<script>", "|"])
    write(tmp_path / "records.jsonl", [hostile])
    publish([tmp_path], tmp_path, figures=False)
    page = MarkdownIt("commonmark", {"html": True}).enable("table").render((tmp_path / README).read_text())
    assert page.count("<img") == 2 and 'onerror="' not in page  # the two figures, nothing else
    assert "<script" not in page and "<b>" not in page and "<strong>bold" not in page and "<del>" not in page
    assert "javascript:" not in "".join(re.findall(r'href="([^"]*)"', page))
    assert "http://evil" not in "".join(re.findall(r'href="([^"]*)"', page))
    rows = [line for line in (tmp_path / README).read_text().splitlines() if "| not-installed |" in line]
    assert len(rows) == 1
    header = next(line for line in (tmp_path / README).read_text().splitlines() if line.startswith("| # |"))
    assert len(re.findall(r"(?<!\\)\|", rows[0])) == len(re.findall(r"\|", header))  # no cell was added
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page  # shown, as text
    html_page = _Page()
    html_page.feed((tmp_path / HTML).read_text())
    assert html_page.tags.count("script") == 1 and html_page.tags.count("img") == 2
    assert "b" not in html_page.tags


@pytest.mark.parametrize("name", ["MP", "mp|x", "mp [/4]", "<b>mp</b>", ""])
def test_a_decoder_name_that_breaks_the_rule_is_refused(records, tmp_path, capsys, name):
    odd = copy.deepcopy(records[0])
    odd["decoder"] = name
    write(tmp_path / "records.jsonl", [odd])
    assert main(["publish", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "line 1 is not a result record" in err and "decoder-name rule" in err
    assert not (tmp_path / "out").exists()


def test_the_committed_gap_table_verifies_against_its_committed_encoders(monkeypatch, capsys):
    """leaderboard/gap/ holds its encoders' weights: every record there re-runs from the
    repository's root (their paths are relative to it) with the files it names."""
    from superposition_harness.cli import main

    monkeypatch.chdir(LEADERBOARD.parent)
    records = [json.loads(line) for line in (LEADERBOARD / "gap" / "records.jsonl").read_text().splitlines()]
    encoders = {r["params"]["weights"] for r in records if "weights" in r["params"]}
    assert len(encoders) >= 5 and all((LEADERBOARD.parent / path).is_dir() for path in encoders)
    assert {r["decoder"] for r in records} >= {"topk", "sae", "learned", "mp", "omp", "amp-binary"}
    assert main(["verify", "leaderboard/gap", "--sample", "4", "--seed", "0", "--json"]) == 0
    verdicts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(verdicts) == len(records) and {v["status"] for v in verdicts} == {"verified"}
    readme = (LEADERBOARD / README).read_text(encoding="utf-8")
    assert "![k* against decoding time per signal" in readme
