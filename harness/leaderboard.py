"""Turning result records into the leaderboard table shown in the terminal."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text


def _fmt_params(params: dict[str, Any] | None) -> str:
    if not params:
        return "-"
    return ",".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in sorted(params.items()))


def _fmt_interval(value: Any, ci: Any) -> str:
    if value is None:
        return "-"
    lo, hi = (ci or [None, None])[:2]
    lo_text = "?" if lo is None else str(lo)
    hi_text = "?" if hi is None else str(hi)
    return f"{value} [{lo_text}, {hi_text}]"


def _fmt_float(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def problem_key(record: dict[str, Any]) -> tuple[Any, ...]:
    problem = record.get("problem") or {}
    return (problem.get("dictionary", ""), problem.get("noise", 0.0), problem.get("n", 0),
            problem.get("k", 0))


def sort_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """By problem, then best bitrate first; errors and unreached estimates last."""
    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        bits = record.get("bits_per_dim")
        return (*problem_key(record), record.get("status") != "ok", bits is None,
                -(bits or 0.0), record.get("decoder", ""), _fmt_params(record.get("params")))
    return sorted(records, key=key)


def leaderboard_table(records: Iterable[dict[str, Any]], title: str = "Leaderboard") -> Table:
    """A rich table with one row per record: the run's or the store's leaderboard."""
    rows = sort_records(records)
    targets = {r.get("target") for r in rows}
    noisy = any((r.get("problem") or {}).get("noise", 0) > 0 for r in rows)
    q_header = f"d*({next(iter(targets)):g})" if len(targets) == 1 and None not in targets else "d*(q)"
    table = Table(title=title, title_justify="left", header_style="bold", show_lines=False)
    table.add_column("decoder", style="cyan", no_wrap=True)
    table.add_column("params")
    table.add_column("dict")
    if noisy:
        table.add_column("σ", justify="right")
    table.add_column("N", justify="right")
    table.add_column("k", justify="right")
    table.add_column("H (bits)", justify="right")
    if len(targets) != 1:
        table.add_column("q", justify="right")
    table.add_column(f"{q_header} [95% CI]", justify="right", style="bold")
    table.add_column("bits/dim", justify="right", style="green")
    table.add_column("dims/bit", justify="right")
    table.add_column("d*(0.5)", justify="right")
    if noisy:
        table.add_column("d_Sh", justify="right")
        table.add_column("d*/d_Sh", justify="right")
    table.add_column("trials", justify="right")
    table.add_column("wall (s)", justify="right")
    for record in rows:
        problem = record.get("problem") or {}
        ok = record.get("status") == "ok"
        cells: list[Any] = [record.get("decoder", "?"), _fmt_params(record.get("params")),
                            problem.get("dictionary", "?")]
        if noisy:
            cells.append(f"{problem.get('noise', 0):g}")
        cells += [str(problem.get("n", "?")), str(problem.get("k", "?")),
                  _fmt_float(record.get("entropy_bits"), 1)]
        if len(targets) != 1:
            cells.append(f"{record.get('target', 0):g}")
        if ok:
            d_star = record.get("d_star")
            cells.append(_fmt_interval(d_star, record.get("d_star_ci")) if d_star is not None
                         else f"> {(record.get('search') or {}).get('d_max', '?')}")
        else:
            cells.append(Text("error", style="bold red"))
        cells += [_fmt_float(record.get("bits_per_dim")), _fmt_float(record.get("dims_per_bit")),
                  _fmt_interval(record.get("d_half"), record.get("d_half_ci"))]
        if noisy:
            cells += [str(record.get("d_shannon") or "-"),
                      _fmt_float(record.get("d_star_over_shannon"), 2)]
        cells += [str(record.get("trials", "-")), _fmt_float(record.get("wall_seconds"), 1)]
        table.add_row(*cells)
    return table


def error_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per failed record, to print under the table."""
    return [f"{r.get('decoder')} (N={(r.get('problem') or {}).get('n')}, "
            f"k={(r.get('problem') or {}).get('k')}): {r.get('error')}"
            for r in records if r.get("status") != "ok"]
