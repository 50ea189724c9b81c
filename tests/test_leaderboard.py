"""The rich leaderboard table."""

from __future__ import annotations

import io

from rich.console import Console
from superposition_harness.leaderboard import error_lines, leaderboard_table, sort_records


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
