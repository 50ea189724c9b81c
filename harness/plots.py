"""The leaderboard's figures, drawn from result records.

Only successful records of generated dictionaries are drawn, grouped by
``(dictionary, N)``; the noiseless and the noisy tracks are grouped apart:

- ``minimal-d-vs-k-{dictionary}-n{N}``: ``d*(q)`` against ``k`` with its 95% interval,
  the entropy ``H(N, k)`` and guides at 2, 4 and 8 dims/bit (the paper's Figure 2), and
  on the Rademacher dictionary the counting limit ``d_cnt(q)`` below which no decoder
  can go;
- ``success-vs-d-{dictionary}-n{N}``: every probed dimension's success rate, one
  panel per ``k``;
- ``shannon-ratio-{dictionary}-n{N}``: noisy track only, ``d*/d_Sh`` against ``σ``,
  one panel per ``k``; ``shannon-ratio-snr-{dictionary}-n{N}`` the same against the
  signal-to-noise ratio, for the fixed-SNR track.

Successful noiseless records of a fixed dictionary (``harness gap``) give one figure per
``(dictionary file, N, d)``:

- ``kstar-vs-time-{file}-n{N}-d{d}``: each decoder's (or encoder's) ``k*`` with its 95%
  interval against its decoding time per signal as its record states it (``wall_seconds``
  over ``trials``: the maker's machine, not a derived number), log-scaled: what reading
  more of the code back costs at inference.

matplotlib is optional: naming the figures needs none, drawing them does. The files
are the same bytes for the same records and matplotlib version, whatever the clock,
the machine's fonts, its matplotlib settings or the current directory.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .problem import FIXED, counting_dimension, entropy_bits, track_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

__all__ = ["FORMATS", "PlotError", "available", "draw_figures", "figure_names"]

#: The file formats :func:`draw_figures` writes, each figure in each.
FORMATS = ("png", "svg")

Record = Mapping[str, Any]
SeriesKey = tuple[str, str]

_DPI = 150
#: Paul Tol's "muted" colour-blind-safe palette: nine colours, none of them the entropy line's black.
_PALETTE = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933",
            "#AA4499")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
_LINESTYLES = ("-", "--", ":", "-.")
#: Guides at these multiples of ``H`` (1 is the entropy line itself).
_GUIDES = (2, 4, 8)
#: Horizontal offset between neighbouring decoders in the d-vs-k figure, in octaves of k.
_DODGE = 0.025
#: matplotlib settings over its defaults; the machine's own settings are not used.
_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "superposition-harness",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.sans-serif": ["DejaVu Sans"],
    # Decoder names and parameters come from records and plugins: text, never mathtext.
    "text.parse_math": False,
    "figure.dpi": _DPI,
    "savefig.dpi": _DPI,
    "savefig.facecolor": "white",
    "savefig.transparent": False,
}


class PlotError(RuntimeError):
    """A figure cannot be drawn; the message is one sentence saying what to change."""


def available() -> bool:
    """Whether matplotlib can be imported, so that figures can be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------- records


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem(record: Record) -> Mapping[str, Any]:
    problem = record.get("problem")
    return problem if isinstance(problem, Mapping) else {}


def _noise(record: Record) -> float:
    return _number(_problem(record).get("noise")) or 0.0


def _snr(record: Record) -> float:
    return _number(_problem(record).get("snr")) or 0.0


def _k(record: Record) -> int:
    return int(_problem(record)["k"])


def _usable(records: Iterable[Record]) -> list[Record]:
    """The successful records of generated dictionaries, with integer ``N`` and ``k``."""
    out = []
    for record in records:
        problem = _problem(record)
        dictionary = problem.get("dictionary")
        if record.get("status") != "ok" or not isinstance(dictionary, str) or track_of(problem) is FIXED:
            continue
        if _is_int(problem.get("n")) and _is_int(problem.get("k")):
            out.append(record)
    return out


def _fmt_params(params: Any) -> str:
    if not isinstance(params, Mapping):
        return ""
    return ",".join(f"{key}={value}" for key, value in sorted(params.items()))


def _series_key(record: Record) -> SeriesKey:
    """What makes one decoder's line: its name and its parameters."""
    params = json.dumps(record.get("params") or {}, sort_keys=True, default=str)
    return str(record.get("decoder", "?")), params


@dataclass(frozen=True)
class _Style:
    """How one decoder (with its parameters) is drawn in every figure of a call."""

    label: str
    color: str
    marker: str
    #: The markers' face: the line's colour, or white (hollow) once the palette has wrapped.
    face: str


def _styles(records: Sequence[Record],
            figures: Sequence[Sequence[Record]] | None = None) -> dict[SeriesKey, _Style]:
    """Each decoder's label, colour and marker, fixed by ``records`` and the figures they make.

    A decoder's label is its name; a decoder met with more than one set of parameters
    gets them appended, ``name[k=v,...]``, so that its lines can be told apart.

    A decoder keeps its style in every figure of a call. ``figures`` are the records of
    each figure (default: one figure of them all). The decoders that appear in the most
    figures are styled first, then in the order of their labels; each gets a colour that
    no decoder already styled in one of its figures has: solid, then, past nine in one
    figure, hollow, choosing the hue that shares the fewest figures with its other owners.
    So the decoders of a figure never share both colour and fill, and a figure of nine or
    fewer, drawn among larger ones, keeps nine solid colours where it can.
    """
    params: dict[str, set[str]] = {}
    for record in records:
        name, key = _series_key(record)
        params.setdefault(name, set()).add(key)
    labels: dict[SeriesKey, str] = {}
    for record in records:
        series = _series_key(record)
        text = _fmt_params(record.get("params"))
        labels[series] = series[0] if len(params[series[0]]) == 1 or not text else f"{series[0]}[{text}]"
    order = {label: i for i, label in enumerate(sorted(set(labels.values())))}
    shared: dict[str, dict[str, int]] = {label: {} for label in order}  # figures two labels share
    appears = dict.fromkeys(order, 0)
    for rows in (figures if figures is not None else [records]):
        present = {labels[key] for key in map(_series_key, rows) if key in labels}
        for label in present:
            appears[label] += 1
            for other in present - {label}:
                shared[label][other] = shared[label].get(other, 0) + 1
    # (colour, marker face): solid, then hollow
    shades = [(color, color) for color in _PALETTE] + [(color, "white") for color in _PALETTE]
    taken: dict[str, int] = {}
    for label in sorted(order, key=lambda label: (-appears[label], order[label])):
        near = {taken[other] for other in shared[label] if other in taken}
        free = [j for j in range(len(shades)) if j not in near] or list(range(len(shades)))
        # the fewest figures shared with decoders of the same hue, then the first shade
        taken[label] = min((sum(n for other, n in shared[label].items()
                                if other in taken and shades[taken[other]][0] == shades[j][0]), j)
                           for j in free)[1]
    styles = {}
    for series, label in labels.items():
        i = order[label]
        color, face = shades[taken[label]]
        styles[series] = _Style(label, color, _MARKERS[i % len(_MARKERS)], face)
    return styles


def _targets(records: Iterable[Record]) -> list[float]:
    return sorted({t for t in (_number(r.get("target")) for r in records) if t is not None})


@dataclass
class _Line:
    """One line of a panel: a decoder at one target, its records in order."""

    label: str
    style: _Style
    linestyle: str
    rows: list[Record]


def _lines(records: Iterable[Record], styles: Mapping[SeriesKey, _Style], targets: Sequence[float],
           x: Callable[[Record], float]) -> list[_Line]:
    """``records`` split into lines by decoder and target, sorted by label, rows by ``x``.

    Where ``targets`` holds more than one target, a line's label names its own.
    """
    split: dict[tuple[str, float | None], _Line] = {}
    for record in records:
        style = styles[_series_key(record)]
        target = _number(record.get("target"))
        label = style.label if len(targets) < 2 or target is None else f"{style.label} (q = {target:g})"
        linestyle = _LINESTYLES[targets.index(target) % len(_LINESTYLES)] if target in targets else "-"
        split.setdefault((style.label, target), _Line(label, style, linestyle, [])).rows.append(record)
    lines = [split[key] for key in sorted(split, key=lambda key: (key[0], key[1] or 0.0))]
    for line in lines:
        line.rows.sort(key=x)
    return lines


# ----------------------------------------------------------------------- figures


def _stem_part(dictionary: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", dictionary).strip("-") or "dictionary"


def _group(records: Iterable[Record]) -> dict[tuple[str, int], list[Record]]:
    groups: dict[tuple[str, int], list[Record]] = {}
    for record in records:
        problem = _problem(record)
        groups.setdefault((str(problem["dictionary"]), int(problem["n"])), []).append(record)
    return {key: groups[key] for key in sorted(groups)}


Builder = Callable[[Sequence[Record], "Mapping[SeriesKey, _Style] | None"], "Figure"]


def _figure_specs(records: Iterable[Record]) -> list[tuple[str, Builder, list[Record]]]:
    """Every figure the records give: its file stem, how it is drawn and from which records."""
    records = list(records)
    usable = _usable(records)
    noiseless = [r for r in usable if _noise(r) == 0 and _snr(r) == 0]
    noisy = [r for r in usable if _noise(r) > 0 and _number(r.get("d_star_over_shannon")) is not None]
    fixed_snr = [r for r in usable if _snr(r) > 0 and _number(r.get("d_star_over_shannon")) is not None]
    specs: list[tuple[str, Builder, list[Record]]] = []
    for (dictionary, n), rows in _group(noiseless).items():
        specs.append((f"minimal-d-vs-k-{_stem_part(dictionary)}-n{n}", _minimal_d_figure, rows))
        specs.append((f"success-vs-d-{_stem_part(dictionary)}-n{n}", _success_figure, rows))
    for (dictionary, n), rows in _group(noisy).items():
        specs.append((f"shannon-ratio-{_stem_part(dictionary)}-n{n}", _shannon_figure, rows))
    for (dictionary, n), rows in _group(fixed_snr).items():
        specs.append((f"shannon-ratio-snr-{_stem_part(dictionary)}-n{n}", _snr_figure, rows))
    specs += _fixed_specs(records)
    return sorted(specs, key=lambda spec: spec[0])


def _fixed_usable(records: Iterable[Record]) -> list[Record]:
    """The successful noiseless fixed-dictionary records with a ``k*``, a time and trials."""
    out = []
    for record in records:
        problem = _problem(record)
        if record.get("status") != "ok" or track_of(problem) is not FIXED or _noise(record) or _snr(record):
            continue
        if (_is_int(record.get("k_star")) and _is_int(record.get("trials")) and record["trials"] > 0
                and (_number(record.get("wall_seconds")) or 0) > 0 and _is_int(problem.get("n"))
                and _is_int(problem.get("d")) and isinstance(problem.get("dictionary_file"), str)):
            out.append(record)
    return out


def _fixed_specs(records: Iterable[Record]) -> list[tuple[str, Builder, list[Record]]]:
    groups: dict[str, list[Record]] = {}
    for record in _fixed_usable(records):
        problem = _problem(record)
        name = _stem_part(_last_part(str(problem["dictionary_file"])))
        stem = f"kstar-vs-time-{name}-n{problem['n']}-d{problem['d']}"
        groups.setdefault(stem, []).append(record)
    return [(stem, _kstar_time_figure, rows) for stem, rows in groups.items()]


def figure_names(records: Iterable[Record]) -> list[str]:
    """The file stems of the figures ``records`` give, sorted; needs no matplotlib."""
    return [stem for stem, _, _ in _figure_specs(records)]


def _new_figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plain_log_axis(axis: Any) -> None:
    """Ticks at 1, 2 and 5 times powers of ten, labelled as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    axis.set_minor_formatter(NullFormatter())


def _describe(records: Sequence[Record]) -> tuple[str, int]:
    problem = _problem(records[0])
    return str(problem["dictionary"]).capitalize(), int(problem["n"])


def _q_text(targets: Sequence[float]) -> str:
    return f"{targets[0]:g}" if len(targets) == 1 else "q"


def _panels(figure: Figure, count: int) -> list[Axes]:
    """``count`` panels in rows of at most four; the grid's spare cells removed."""
    columns = min(4, count)
    rows = -(-count // columns)
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False)
    cells: list[Axes] = [ax for row in grid for ax in row]
    for spare in cells[count:]:
        spare.remove()
    return cells[:count]


def _panel_size(count: int) -> tuple[float, float]:
    columns = min(4, count)
    return 3.2 * columns + 2.2, 2.9 * -(-count // columns) + 0.6


def _legend(figure: Figure, entries: Mapping[str, Any]) -> None:
    """The figure's legend, outside the panels on the right: ``entries`` maps labels to handles."""
    if entries:
        figure.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize="small")


def _minimal_d_figure(records: Sequence[Record], styles: Mapping[SeriesKey, _Style] | None = None) -> Figure:
    """``d*(q)`` against ``k`` for one noiseless ``(dictionary, N)`` group (the paper's Figure 2).

    Each decoder's ``d*`` with its 95% interval (no bar on a side the record leaves
    open; records without ``d*`` are left out), ``H(N, k)`` dashed, guides at 2, 4 and
    8 dims/bit dotted, the counting limit at the records' target solid where the records
    state one (the Rademacher dictionary), and a right axis reading dims/bit at the
    largest ``k``.
    """
    from matplotlib.ticker import NullLocator

    styles = styles if styles is not None else _styles(records)
    dictionary, n = _describe(records)
    targets = _targets(records)
    ks = sorted({_k(r) for r in records})
    k_lo, k_hi = ks[0], ks[-1]
    h_ks = list(range(k_lo, k_hi + 1)) if k_hi > k_lo else ks
    h = [entropy_bits(n, k) for k in h_ks]

    figure = _new_figure((8.0, 5.0))
    ax = figure.add_subplot()
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    values = list(h)
    entries: dict[str, Any] = {}
    lines = [line for line in _lines(records, styles, targets, _k)
             if any(_number(r.get("d_star")) is not None for r in line.rows)]
    for i, line in enumerate(lines):
        shift = 2.0 ** ((i - (len(lines) - 1) / 2) * _DODGE)
        xs, ds, lower, upper, caps_x, caps_y = [], [], [], [], [], []
        for record in line.rows:
            d = _number(record.get("d_star"))
            if d is None:
                continue
            ci = record.get("d_star_ci")
            ci = list(ci) + [None, None] if isinstance(ci, (list, tuple)) else [None, None]
            lo, hi = _number(ci[0]), _number(ci[1])
            x = _k(record) * shift
            xs.append(x)
            ds.append(d)
            lower.append(0.0 if lo is None else max(d - lo, 0.0))
            upper.append(0.0 if hi is None else max(hi - d, 0.0))
            for end in (lo, hi):
                if end is not None:
                    caps_x.append(x)
                    caps_y.append(end)
            values += [d, *(end for end in (lo, hi) if end is not None)]
        style = line.style
        entries[line.label] = ax.errorbar(
            xs, ds, yerr=[lower, upper], color=style.color, marker=style.marker, markersize=5,
            markerfacecolor=style.face, linestyle=line.linestyle, linewidth=1.2, elinewidth=0.9, capsize=0,
            label=line.label, zorder=3)
        ax.plot(caps_x, caps_y, linestyle="none", marker="_", markersize=6, markeredgewidth=0.9,
                color=style.color, label="_nolegend_", zorder=3)
    single = "_" if len(h_ks) == 1 else "None"  # one k: the lines are short dashes at it
    for c in _GUIDES:
        guide = ax.plot(h_ks, [c * bits for bits in h], color="0.7", linestyle=":", linewidth=1.0,
                        marker=single, markersize=14, label="_nolegend_", zorder=1)[0]
    entropy = ax.plot(h_ks, h, color="black", linestyle="--", linewidth=1.3, marker=single, markersize=14,
                      label="H(N, k)", zorder=2)[0]
    entries["H(N, k)"] = entropy
    entries["2H, 4H, 8H"] = guide
    if targets and any(_number(r.get("d_counting")) is not None for r in records):
        q = max(targets)
        limit = [counting_dimension(n, k, q) for k in h_ks]
        label = f"counting limit d_cnt({q:g})"
        entries[label] = ax.plot(h_ks, limit, color="black", linestyle="-", linewidth=1.0, marker=single,
                                 markersize=14, label=label, zorder=2)[0]
        values += limit

    low, high = min(values) / 1.3, max(values) * 1.3
    ax.set_ylim(low, high)
    ax.set_xlim(k_lo / 2**0.4, k_hi * 2**0.4)
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.xaxis.set_minor_locator(NullLocator())
    _plain_log_axis(ax.yaxis)
    ax.grid(True, which="major", color="0.92", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel("k (active features)")
    ax.set_ylabel(f"d*({_q_text(targets)})")
    ax.set_title(f"Minimal dimension for exact recovery, N = {n} ({dictionary})")

    right = ax.twinx()
    right.set_yscale("log")
    right.set_ylim(low, high)
    h_top = entropy_bits(n, k_hi)
    ticks = [(c * h_top, str(c)) for c in (1, *_GUIDES) if low <= c * h_top <= high]
    right.set_yticks([tick for tick, _ in ticks], labels=[text for _, text in ticks])
    right.yaxis.set_minor_locator(NullLocator())
    right.set_ylabel(f"dims/bit (d / H) at k = {k_hi}")
    _legend(figure, entries)
    return figure


def _last_part(path: str) -> str:
    """The last name of a path as a record states it (``/`` or ``\\`` separated)."""
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1] or path


def encoder_label(record: Record) -> str:
    """A fixed-dictionary row's name in a figure: the decoder, and the directory of the
    weights it reads (``learned (lista-8)``) where it reads some."""
    params = record.get("params")
    weights = params.get("weights") if isinstance(params, Mapping) else None
    if isinstance(weights, str) and weights.strip("/\\"):
        return f"{record.get('decoder')} ({_last_part(weights)})"
    return str(record.get("decoder", "?"))


def _kstar_time_figure(records: Sequence[Record], styles: Mapping[SeriesKey, _Style] | None = None) -> Figure:
    """``k*(q)`` against decoding time per signal on one fixed dictionary: one point per
    decoder with its 95% interval, coloured and marked by its label's place in sorted order."""
    problem = _problem(records[0])
    targets = _targets(records)
    rows = sorted(records, key=lambda r: (encoder_label(r),
                                          json.dumps(r.get("params") or {}, sort_keys=True, default=str)))
    labels = [encoder_label(r) for r in rows]
    repeated = {label for label in labels if labels.count(label) > 1}
    figure = _new_figure((8.0, 5.0))
    ax = figure.add_subplot()
    ax.set_xscale("log")
    entries: dict[str, Any] = {}
    for i, (record, label) in enumerate(zip(rows, labels, strict=True)):
        if label in repeated:
            label = f"{label}[{_fmt_params(record.get('params'))}]"
        seconds = float(record["wall_seconds"]) / int(record["trials"]) * 1e3
        k = float(record["k_star"])
        ci = record.get("k_star_ci")
        ci = list(ci) + [None, None] if isinstance(ci, (list, tuple)) else [None, None]
        lo, hi = _number(ci[0]), _number(ci[1])
        color, marker = _PALETTE[i % len(_PALETTE)], _MARKERS[i % len(_MARKERS)]
        face = color if (i // len(_PALETTE)) % 2 == 0 else "white"
        below, above = 0.0 if lo is None else max(k - lo, 0.0), 0.0 if hi is None else max(hi - k, 0.0)
        entries[label] = ax.errorbar(
            [seconds], [k], yerr=[[below], [above]], color=color, marker=marker, markersize=7,
            markerfacecolor=face, linestyle="none", elinewidth=1.0, capsize=3, label=label, zorder=3)
    _plain_log_axis(ax.xaxis)
    ax.grid(True, which="major", color="0.92", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel("decoding time per signal (ms, as each record states it)")
    ax.set_ylabel(f"k*({_q_text(targets)}) (active features read back)")
    ax.set_ylim(bottom=0)
    name = _last_part(str(problem["dictionary_file"]))
    ax.set_title(f"Features read back against decoding time: {name}, d = {problem['d']}, N = {problem['n']}")
    _legend(figure, entries)
    return figure


def _success_rates(record: Record) -> tuple[list[float], list[float]]:
    points = []
    for point in record.get("curve") or []:
        if not isinstance(point, Mapping):
            continue
        d, trials, successes = (_number(point.get(key)) for key in ("d", "trials", "successes"))
        if d is not None and trials and successes is not None:
            points.append((d, successes / trials))
    points.sort()
    return [d for d, _ in points], [rate for _, rate in points]


def _success_figure(records: Sequence[Record], styles: Mapping[SeriesKey, _Style] | None = None) -> Figure:
    """The success rates of every probed dimension against ``d``, one panel per ``k``.

    One line per decoder, with dashed lines at the target and at 1/2.
    """
    styles = styles if styles is not None else _styles(records)
    dictionary, n = _describe(records)
    targets = _targets(records)
    ks = sorted({_k(r) for r in records})
    figure = _new_figure(_panel_size(len(ks)))
    entries: dict[str, Any] = {}
    for i, (ax, k) in enumerate(zip(_panels(figure, len(ks)), ks, strict=True)):
        for line in _lines([r for r in records if _k(r) == k], styles, targets, _k):
            for record in line.rows:
                ds, rates = _success_rates(record)
                drawn = ax.plot(ds, rates, color=line.style.color, marker=line.style.marker, markersize=3,
                                markerfacecolor=line.style.face,
                                linestyle=line.linestyle, linewidth=1.0, label=line.label)[0]
                entries.setdefault(line.label, drawn)
        for level in sorted({*targets, 0.5}):
            ax.axhline(level, color="0.5", linestyle="--", linewidth=0.8, zorder=1)
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"k = {k}")
        ax.set_xlabel("d")
        if i % 4 == 0:
            ax.set_ylabel("P(exact recovery)")
    figure.suptitle(f"Exact recovery against dimension, N = {n} ({dictionary})")
    _legend(figure, {label: entries[label] for label in sorted(entries)})
    return figure


def _shannon_figure(records: Sequence[Record], styles: Mapping[SeriesKey, _Style] | None = None) -> Figure:
    """``d*/d_Sh`` against the noise ``σ`` for one noisy group, one panel per ``k``.

    One line per decoder, with the Shannon limit at 1; ticks at the noise levels measured.
    """
    return _ratio_figure(records, styles, _noise, "noise σ")


def _snr_figure(records: Sequence[Record], styles: Mapping[SeriesKey, _Style] | None = None) -> Figure:
    """``d*/d_Sh`` against the signal-to-noise ratio per dimension (the fixed-SNR track)."""
    return _ratio_figure(records, styles, _snr, "signal-to-noise ratio per dimension")


def _ratio_figure(records: Sequence[Record], styles: Mapping[SeriesKey, _Style] | None,
                  level: Callable[[Record], float], axis: str) -> Figure:
    from matplotlib.ticker import NullLocator

    styles = styles if styles is not None else _styles(records)
    dictionary, n = _describe(records)
    targets = _targets(records)
    ks = sorted({_k(r) for r in records})
    figure = _new_figure(_panel_size(len(ks)))
    entries: dict[str, Any] = {}
    for i, (ax, k) in enumerate(zip(_panels(figure, len(ks)), ks, strict=True)):
        panel = [r for r in records if _k(r) == k]
        noises = sorted({level(r) for r in panel})
        for line in _lines(panel, styles, targets, level):
            drawn = ax.plot([level(r) for r in line.rows],
                            [float(r["d_star_over_shannon"]) for r in line.rows],
                            color=line.style.color, marker=line.style.marker, markersize=4,
                            markerfacecolor=line.style.face,
                            linestyle=line.linestyle, linewidth=1.1, label=line.label)[0]
            entries.setdefault(line.label, drawn)
        limit = ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0, label="Shannon limit", zorder=1)
        ax.set_xscale("log")
        ax.set_xticks(noises, labels=[f"{noise:g}" for noise in noises])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(f"k = {k}")
        ax.set_xlabel(axis)
        if i % 4 == 0:
            ax.set_ylabel(f"d*({_q_text(targets)}) / d_Sh")
    figure.suptitle(f"Dimension over the Shannon limit, N = {n} ({dictionary})")
    _legend(figure, {**{label: entries[label] for label in sorted(entries)}, "Shannon limit": limit})
    return figure


# ----------------------------------------------------------------------- writing


@contextmanager
def _settings() -> Iterator[None]:
    """matplotlib's default settings with :data:`_RC` over them, whatever the machine's."""
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        yield


def _save(figure: Figure, path: Path, fmt: str) -> None:
    import matplotlib

    if fmt == "png":
        figure.savefig(path, format="png", dpi=_DPI,
                       metadata={"Software": f"matplotlib {matplotlib.__version__}"})
    else:
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
        path.write_text(_stable_ids(buffer.getvalue()), encoding="utf-8")


#: The ids matplotlib gives clip paths and markers: hashes of their coordinates, whose last
#: bits differ between CPUs although the drawing is the same to the digits it prints.
_HASHED_ID = re.compile(r'(?<=["#])([pm])([0-9a-f]{10})(?=[")])')


def _stable_ids(svg: str) -> str:
    """The SVG with each hashed id replaced by its kind and its order of first appearance,
    so that the same figure has the same bytes on every machine."""
    names: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"{match.group(1)}{len(names):010d}")

    return _HASHED_ID.sub(rename, svg)


def draw_figures(records: Iterable[Record], out_dir: str | Path,
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write every figure of :func:`figure_names` to ``out_dir`` in each of ``formats``.

    Returns the paths written, sorted. Each file is drawn from a fresh figure, so its
    bytes do not depend on the other formats asked for. Raises :class:`PlotError` if
    matplotlib is not installed or a format is not one of :data:`FORMATS`.
    """
    wanted = list(dict.fromkeys([formats] if isinstance(formats, str) else formats))
    unknown = [fmt for fmt in wanted if fmt not in FORMATS]
    if unknown:
        raise PlotError(f"unknown figure format {unknown[0]!r}; choose from {', '.join(FORMATS)}.")
    if not available():
        raise PlotError("drawing figures needs matplotlib: pip install 'superposition-harness[plot]'.")
    records = list(records)
    specs = _figure_specs(records)
    styles = _styles(_usable(records), [rows for _, _, rows in specs])
    out = Path(out_dir)
    if specs:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    with _settings():
        for stem, build, rows in specs:
            for fmt in wanted:
                figure = build(rows, styles)
                try:
                    path = out / f"{stem}.{fmt}"
                    _save(figure, path, fmt)
                    written.append(path)
                finally:
                    figure.clear()
    return sorted(written)
