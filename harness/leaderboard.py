"""Turning result records into the leaderboard table shown in the terminal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from .decoder import params_text
from .problem import FIXED, track_of


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
    return (problem.get("dictionary", ""), problem.get("noise", 0.0), problem.get("snr") or 0.0,
            problem.get("n", 0), problem.get("k", 0))


def sort_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """By problem, then best bitrate first; errors and unreached estimates last."""
    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        bits = record.get("bits_per_dim")
        return (*problem_key(record), record.get("status") != "ok", bits is None,
                -(bits or 0.0), record.get("decoder", ""), params_text(record.get("params")))
    return sorted(records, key=key)


@dataclass
class _Column:
    """A column of a terminal table; columns with a higher ``drop`` go first when space is short
    (0: never dropped)."""

    header: str
    cells: list[Any]
    justify: str = "right"
    style: str | None = None
    drop: int = 0


#: The column that gives way to the others: cut with an ellipsis, never wrapped.
ELASTIC = "params"
#: The narrowest the elastic column is cut to before other columns are dropped.
ELASTIC_MIN = 12


def _cell_width(cell: Any) -> int:
    return _text(cell).cell_len


def _fitted(title: str | Text, columns: list[_Column], width: int | None) -> Table:
    """A table of ``columns`` no wider than ``width`` (None: every column, uncut).

    Columns are dropped, highest ``drop`` first, until the others fit beside the elastic
    ``params`` column at :data:`ELASTIC_MIN`; ``params`` then gets what is left and is
    cut with an ellipsis. No row ever wraps onto a second line: ``--json`` and ``--wide``
    show everything.
    """
    def natural(column: _Column) -> int:
        return max([len(column.header), *map(_cell_width, column.cells)])

    def total(kept: list[_Column], elastic: int) -> int:
        fixed = sum(natural(c) for c in kept if c.header != ELASTIC)
        return fixed + (elastic if any(c.header == ELASTIC for c in kept) else 0) + 3 * len(kept) + 1

    kept = list(columns)
    elastic_width: int | None = None
    if width is not None:
        for level in sorted({c.drop for c in columns if c.drop}, reverse=True):
            if total(kept, min(ELASTIC_MIN, *(natural(c) for c in kept if c.header == ELASTIC))) <= width:
                break
            kept = [c for c in kept if c.drop != level]
        elastic_width = max(len(ELASTIC), width - total(kept, 0))
    table = Table(title=title, title_justify="left", header_style="bold", show_lines=False)
    for column in kept:
        limit = elastic_width if column.header == ELASTIC else None
        table.add_column(column.header, justify=column.justify,  # type: ignore[arg-type]
                         style=column.style, no_wrap=True, overflow="ellipsis", max_width=limit)
    for row in zip(*(c.cells for c in kept), strict=True):
        table.add_row(*map(_text, row))
    return table


def leaderboard_table(records: Iterable[dict[str, Any]], title: str | Text = "Leaderboard",
                      width: int | None = None) -> Table:
    """A rich table with one row per record: the run's or the store's leaderboard, fitted to
    ``width`` columns (None: every column)."""
    rows = sort_records(records)
    targets = {r.get("target") for r in rows}
    noisy = any((r.get("problem") or {}).get("noise", 0) > 0 or (r.get("problem") or {}).get("snr")
                for r in rows)
    fixed_snr = any((r.get("problem") or {}).get("snr") for r in rows)
    counting = any(r.get("d_counting") is not None for r in rows)
    q_header = f"d*({next(iter(targets)):g})" if len(targets) == 1 and None not in targets else "d*(q)"
    problems = [r.get("problem") or {} for r in rows]
    kinds = {p.get("dictionary", "?") for p in problems}

    def star(record: dict[str, Any]) -> Any:
        if record.get("status") != "ok":
            return Text("error", style="bold red")
        d_star = record.get("d_star")
        return (_fmt_interval(d_star, record.get("d_star_ci")) if d_star is not None
                else f"> {(record.get('search') or {}).get('d_max', '?')}")

    columns = [
        _Column("decoder", [r.get("decoder", "?") for r in rows], "left", "cyan"),
        _Column(ELASTIC, [params_text(r.get("params")) for r in rows], "left"),
        _Column("dict", [p.get("dictionary", "?") for p in problems], "left",
                drop=4 if len(kinds) == 1 else 0),
    ]
    if any(p.get("noise", 0) > 0 for p in problems):
        columns.append(_Column("σ", [f"{p.get('noise', 0):g}" if not p.get("snr") else "-"
                                     for p in problems]))
    if fixed_snr:
        columns.append(_Column("snr", [f"{p['snr']:g}" if p.get("snr") else "-" for p in problems]))
    columns += [_Column("N", [str(p.get("n", "?")) for p in problems]),
                _Column("k", [str(p.get("k", "?")) for p in problems]),
                _Column("H (bits)", [_fmt_float(r.get("entropy_bits"), 1) for r in rows], drop=3)]
    if len(targets) != 1:
        columns.append(_Column("q", [f"{r.get('target', 0):g}" for r in rows]))
    columns += [_Column(f"{q_header} [95% CI]", [star(r) for r in rows], style="bold"),
                _Column("bits/dim", [_fmt_float(r.get("bits_per_dim")) for r in rows], style="green"),
                _Column("dims/bit", [_fmt_float(r.get("dims_per_bit")) for r in rows], drop=3),
                _Column("d*(0.5)", [_fmt_interval(r.get("d_half"), r.get("d_half_ci")) for r in rows],
                        drop=2)]
    if noisy:
        columns += [_Column("d_Sh", [str(r.get("d_shannon") or "-") for r in rows], drop=2),
                    _Column("d*/d_Sh", [_fmt_float(r.get("d_star_over_shannon"), 2) for r in rows])]
    if counting:
        columns += [_Column("d_cnt", [str(r.get("d_counting") or "-") for r in rows], drop=2),
                    _Column("d*/d_cnt", [_fmt_float(r.get("d_star_over_counting"), 2) for r in rows])]
    columns += [_Column("trials", [str(r.get("trials", "-")) for r in rows], drop=1),
                _Column("wall (s)", [_fmt_float(r.get("wall_seconds"), 1) for r in rows], drop=5)]
    return _fitted(title, columns, width)


def is_fixed(record: dict[str, Any]) -> bool:
    """Whether a record belongs to the fixed-dictionary track."""
    return track_of(record.get("problem") or {}) is FIXED


def fixed_table(records: Iterable[dict[str, Any]], title: str | Text = "Fixed dictionaries",
                width: int | None = None) -> Table:
    """The fixed-dictionary track's rows: ``k*`` where the generated track has ``d*``."""
    rows = sorted(records, key=lambda r: (
        (r.get("problem") or {}).get("dictionary_sha256", ""), r.get("status") != "ok",
        -(r.get("bits_per_dim") or 0.0), r.get("decoder", "")))
    targets = {r.get("target") for r in rows}
    q = f"{next(iter(targets)):g}" if len(targets) == 1 and None not in targets else "q"
    problems = [r.get("problem") or {} for r in rows]

    def k_cell(record: dict[str, Any]) -> Any:
        if record.get("status") != "ok":
            return Text("error", style="bold red")
        return (_fmt_interval(record.get("k_star"), record.get("k_star_ci"))
                if record.get("k_star") is not None else "< 1")

    columns = [
        _Column("decoder", [r.get("decoder", "?") for r in rows], "left", "cyan"),
        _Column(ELASTIC, [params_text(r.get("params")) for r in rows], "left"),
        _Column("dictionary", [str(p.get("dictionary_file", "?")).rstrip("/").split("/")[-1]
                               for p in problems], "left", drop=4),
        _Column("d", [str(p.get("d", "?")) for p in problems]),
        _Column("N", [str(p.get("n", "?")) for p in problems]),
        _Column(f"k*({q}) [95% CI]", [k_cell(r) for r in rows], style="bold"),
        _Column("H(N, k*)", [_fmt_float(r.get("entropy_bits"), 1) for r in rows], drop=3),
        _Column("bits/dim", [_fmt_float(r.get("bits_per_dim")) for r in rows], style="green"),
        _Column("dims/bit", [_fmt_float(r.get("dims_per_bit")) for r in rows], drop=3),
        _Column("k*(0.5)", [_fmt_interval(r.get("k_half"), r.get("k_half_ci")) for r in rows], drop=2),
        _Column("trials", [str(r.get("trials", "-")) for r in rows], drop=1),
        _Column("wall (s)", [_fmt_float(r.get("wall_seconds"), 1) for r in rows], drop=5),
    ]
    return _fitted(title, columns, width)


def leaderboard_tables(records: Iterable[dict[str, Any]], title: str | Text = "Leaderboard",
                       width: int | None = None) -> list[Table]:
    """One table per track present in ``records``: generated dictionaries, then files; each
    fitted to ``width`` columns (None: every column)."""
    records = list(records)
    generated = [r for r in records if not is_fixed(r)]
    fixed = [r for r in records if is_fixed(r)]
    tables = []
    if generated or not fixed:
        tables.append(leaderboard_table(generated, title=title, width=width))
    if fixed:
        tables.append(fixed_table(fixed, title=Text.assemble(title, ": fixed dictionaries"), width=width))
    return tables


def gap_table(records: Iterable[dict[str, Any]], width: int | None = None, base: str | None = None) -> Table:
    """Each decoder's ``k*`` and bits/dim beside an encoder's, on that encoder's dictionary:
    the encoder read from ``base`` (its ``weights`` parameter), else the first SAE's."""
    records = sorted((r for r in records if r.get("status") == "ok"),
                     key=lambda r: -(r.get("bits_per_dim") or 0.0))
    encoder = next((r for r in records if base is not None
                    and (r.get("params") or {}).get("weights") == base), None)
    encoder = encoder or next((r for r in records if r.get("decoder") == "sae"), None)
    name = encoder.get("decoder", "sae") if encoder else "sae"
    base_k = encoder.get("k_star") if encoder else None
    base_bits = encoder.get("bits_per_dim") if encoder else None
    k_stars = [r.get("k_star") for r in records]
    bits = [r.get("bits_per_dim") for r in records]
    columns = [
        _Column("decoder", [r.get("decoder", "?") for r in records], "left", "cyan"),
        _Column(ELASTIC, [params_text(r.get("params")) for r in records], "left"),
        _Column("k*", ["-" if k is None else str(k) for k in k_stars]),
        _Column("bits/dim", [_fmt_float(b) for b in bits]),
        _Column(f"k* / k*({name})", ["-" if not (k and base_k) else f"{k / base_k:.2f}" for k in k_stars]),
        _Column(f"bits/dim / bits/dim({name})",
                ["-" if not (b and base_bits) else f"{b / base_bits:.2f}" for b in bits]),
    ]
    title = ("Amortisation gap (ratios to the SAE's own encoder)" if name == "sae"
             else f"Amortisation gap (ratios to the {name} encoder)")
    return _fitted(title, columns, width)


def error_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per failed record, to print under the table."""
    return [f"{r.get('decoder')} (N={(r.get('problem') or {}).get('n')}, "
            f"k={(r.get('problem') or {}).get('k')}): {r.get('error')}"
            for r in records if r.get("status") != "ok"]
