"""The rich leaderboard table."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from superposition_harness.leaderboard import (
    error_lines,
    fixed_table,
    gap_table,
    leaderboard_table,
    sort_records,
)


def render(records) -> str:
    console = Console(file=io.StringIO(), width=250)
    console.print(leaderboard_table(records))
    return console.file.getvalue()


def rec(decoder, bits, n=4096, k=16, noise=0.0, status="ok", **extra):
    d = None if bits is None else round(100 / bits)
    base = {"decoder": decoder, "params": {}, "problem": {"n": n, "k": k, "dictionary": "rademacher",
                                                          "noise": noise},
            "target": 0.95, "d_star": d, "d_star_ci": [d, d], "bits_per_dim": bits,
            "dims_per_bit": None if bits is None else 1 / bits, "d_half": d, "d_half_ci": [d, d],
            "entropy_bits": 100.0, "trials": 10, "wall_seconds": 1.0, "status": status,
            "error": None if status == "ok" else "decoder 'x' raised ValueError: no",
            "search": {"d_max": 999}}
    base.update(extra)
    return base


def test_rows_are_grouped_by_problem_and_best_first():
    rows = sort_records([rec("a", 0.2), rec("b", 0.8), rec("c", 0.5, k=4), rec("e", None, status="error"),
                         rec("u", None)])
    assert [r["decoder"] for r in rows] == ["c", "b", "a", "u", "e"]


def test_the_table_shows_intervals_errors_and_unreached_estimates():
    text = render([rec("mp", 0.8, d_star_ci=[120, 130]), rec("bad", None, status="error"),
                   rec("slow", None)])
    assert "125 [120, 130]" in text
    assert "error" in text and "> 999" in text
    assert "d_Sh" not in text


def test_noisy_records_add_the_shannon_columns():
    text = render([rec("mp", 0.5, noise=0.1, d_shannon=80, d_star_over_shannon=2.5)])
    assert "d_Sh" in text and "2.50" in text


def test_mixed_targets_get_a_q_column():
    text = render([rec("mp", 0.5), rec("mp", 0.6, target=0.9)])
    assert "d*(q)" in text


def test_error_lines_name_the_decoder_and_problem():
    lines = error_lines([rec("ok", 0.5), rec("bad", None, status="error")])
    assert lines == ["bad (N=4096, k=16): decoder 'x' raised ValueError: no"]


# ------------------------------------------------------------- tables that fit

def render_at(table, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width)
    console.print(table)
    return console.file.getvalue().splitlines()


LONG = {"alpha": 2.0, "damping": 1.0, "iterations": 30, "nonnegative": True, "threshold": "minimax",
        "tol": 0.0001}


@pytest.mark.parametrize("width", [72, 80, 100, 120])
def test_a_table_fits_its_width_without_wrapping_a_row(width):
    records = [rec("amp", 1.2, params=LONG), rec("mp", 0.8), rec("topk", 0.2, k=4)]
    lines = render_at(leaderboard_table(records, width=width), width)
    assert max(map(len, lines)) <= width
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == len(records)  # one line per row: nothing wrapped
    assert any("…" in line for line in body) or width >= 120  # long parameters are cut, not wrapped


def test_columns_give_way_in_their_order_and_the_essentials_stay():
    records = [rec("amp", 1.2, params=LONG)]
    header = render_at(leaderboard_table(records, width=100), 100)[2]
    for kept in ("decoder", "params", "N", "k", "d*(0.95)", "bits/dim", "trials"):
        assert kept in header
    for dropped in ("wall (s)", "H (bits)", "dims/bit"):
        assert dropped not in header


def test_without_a_width_every_column_is_shown_in_full():
    lines = render_at(leaderboard_table([rec("amp", 1.2, params=LONG)]), 400)
    text = "\n".join(lines)
    assert 'threshold="minimax",tol=0.0001' in text and "wall (s)" in text and "dims/bit" in text


def test_the_fixed_track_and_gap_tables_fit_too():
    fixed = rec("sae", 0.5, problem={"n": 4096, "d": 256, "dictionary": "file",
                                     "dictionary_file": "/a/very/long/path/to/an/sae/directory"},
                params={"weights": "/a/very/long/path/to/an/sae/directory", "format": "auto"},
                k_star=7, k_star_ci=[6, 8], k_half=9, k_half_ci=[9, 9])
    for table in (fixed_table([fixed, dict(fixed, decoder="mp", params={})], width=90),
                  gap_table([fixed, dict(fixed, decoder="mp", params={}, bits_per_dim=1.0)], width=90)):
        lines = render_at(table, 90)
        assert max(map(len, lines)) <= 90 and sum(line.startswith("│") for line in lines) == 2


def _cli(env_columns: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": env_columns}
    return subprocess.run([sys.executable, "-m", "superposition_harness.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


def test_the_command_line_honours_columns_when_piped():
    quick = Path(__file__).resolve().parent.parent / "leaderboard" / "quick"
    result = _cli("100", "leaderboard", "--results", str(quick))
    assert result.returncode == 0 and result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 100
    wide = _cli("100", "leaderboard", "--results", str(quick), "--wide")
    assert max(map(len, wide.stdout.splitlines())) > 100 and "wall (s)" in wide.stdout


def test_a_run_at_100_columns_prints_no_longer_line(tmp_path):
    result = _cli("100", "run", "--plugin", "mp", "--plugin", "threshold[level=0.4]", "--n", "1024",
                  "--k", "4", "--no-store")
    assert result.returncode == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert max(map(len, stream.splitlines())) <= 100
    assert "threshold" in result.stdout and "level=0.4" in result.stdout
