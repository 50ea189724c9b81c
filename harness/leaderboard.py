"""Turning result records into the leaderboard table shown in the terminal."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text

from .decoder import params_text


def _text(cell: Any) -> Any:
    """A table cell as text, never markup: records and plugins are data."""
    return Text(str(cell)) if not isinstance(cell, Text) else cell


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
                -(bits or 0.0), record.get("decoder", ""), params_text(record.get("params")))
    return sorted(records, key=key)


def leaderboard_table(records: Iterable[dict[str, Any]], title: str | Text = "Leaderboard") -> Table:
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
        cells: list[Any] = [record.get("decoder", "?"), params_text(record.get("params")),
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
        table.add_row(*map(_text, cells))
    return table


def is_fixed(record: dict[str, Any]) -> bool:
    """Whether a record belongs to the fixed-dictionary track."""
    return (record.get("problem") or {}).get("dictionary") == "file"


def fixed_table(records: Iterable[dict[str, Any]], title: str | Text = "Fixed dictionaries") -> Table:
    """The fixed-dictionary track's rows: ``k*`` where the generated track has ``d*``."""
    rows = sorted(records, key=lambda r: (
        (r.get("problem") or {}).get("dictionary_sha256", ""), r.get("status") != "ok",
        -(r.get("bits_per_dim") or 0.0), r.get("decoder", "")))
    targets = {r.get("target") for r in rows}
    q = f"{next(iter(targets)):g}" if len(targets) == 1 and None not in targets else "q"
    table = Table(title=title, title_justify="left", header_style="bold")
    for column, justify in (("decoder", "left"), ("params", "left"), ("dictionary", "left"),
                            ("d", "right"), ("N", "right"), (f"k*({q}) [95% CI]", "right"),
                            ("H(N, k*)", "right"), ("bits/dim", "right"), ("dims/bit", "right"),
                            ("k*(0.5)", "right"), ("trials", "right"), ("wall (s)", "right")):
        table.add_column(column, justify=justify,  # type: ignore[arg-type]
                         style="cyan" if column == "decoder" else None)
    for record in rows:
        problem = record.get("problem") or {}
        ok = record.get("status") == "ok"
        name = str(problem.get("dictionary_file", "?")).rstrip("/").split("/")[-1]
        k_cell: Any = (_fmt_interval(record.get("k_star"), record.get("k_star_ci"))
                       if record.get("k_star") is not None else "< 1") if ok \
            else Text("error", style="bold red")
        cells = (record.get("decoder", "?"), params_text(record.get("params")), name,
                 str(problem.get("d", "?")), str(problem.get("n", "?")), k_cell,
                 _fmt_float(record.get("entropy_bits"), 1),
                 _fmt_float(record.get("bits_per_dim")), _fmt_float(record.get("dims_per_bit")),
                 _fmt_interval(record.get("k_half"), record.get("k_half_ci")), str(record.get("trials", "-")),
                 _fmt_float(record.get("wall_seconds"), 1))
        table.add_row(*map(_text, cells))
    return table


def leaderboard_tables(records: Iterable[dict[str, Any]], title: str | Text = "Leaderboard") -> list[Table]:
    """One table per track present in ``records``: generated dictionaries, then files."""
    records = list(records)
    generated = [r for r in records if not is_fixed(r)]
    fixed = [r for r in records if is_fixed(r)]
    tables = []
    if generated or not fixed:
        tables.append(leaderboard_table(generated, title=title))
    if fixed:
        tables.append(fixed_table(fixed, title=Text.assemble(title, ": fixed dictionaries")))
    return tables


def gap_table(records: Iterable[dict[str, Any]]) -> Table:
    """Each decoder's ``k*`` and bits/dim beside the SAE encoder's, on the SAE's dictionary."""
    records = [r for r in records if r.get("status") == "ok"]
    encoder = next((r for r in records if r.get("decoder") == "sae"), None)
    table = Table(title="Amortisation gap (ratios to the SAE's own encoder)", title_justify="left",
                  header_style="bold")
    for column in ("decoder", "params", "k*", "bits/dim", "k* / k*(sae)", "bits/dim / bits/dim(sae)"):
        table.add_column(column, justify="left" if column in ("decoder", "params") else "right",
                         style="cyan" if column == "decoder" else None)
    base_k = encoder.get("k_star") if encoder else None
    base_bits = encoder.get("bits_per_dim") if encoder else None
    for record in sorted(records, key=lambda r: -(r.get("bits_per_dim") or 0.0)):
        k_star, bits = record.get("k_star"), record.get("bits_per_dim")
        table.add_row(*map(_text, (record.get("decoder", "?"), params_text(record.get("params")),
                                   "-" if k_star is None else str(k_star), _fmt_float(bits),
                                   "-" if not (k_star and base_k) else f"{k_star / base_k:.2f}",
                                   "-" if not (bits and base_bits) else f"{bits / base_bits:.2f}")))
    return table


def error_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per failed record, to print under the table."""
    return [f"{r.get('decoder')} (N={(r.get('problem') or {}).get('n')}, "
            f"k={(r.get('problem') or {}).get('k')}): {r.get('error')}"
            for r in records if r.get("status") != "ok"]
