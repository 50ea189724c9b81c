"""The leaderboard's figures: their names, their files, their contents and their bytes."""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from superposition_harness import plots
from superposition_harness.problem import entropy_bits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rec(decoder="mp", n=4096, k=16, noise=0.0, dictionary="rademacher", params=None, status="ok",
        d_star="auto", d_star_ci="auto", target=0.95, ratio=None, seed=0):
    """A result record as the store holds it, with a success curve rising through ``d_star``."""
    h = entropy_bits(n, k)
    d = round(1.3 * h) if d_star == "auto" else d_star
    ci = ([round(0.9 * d), round(1.1 * d)] if d is not None else [None, None]) if d_star_ci == "auto" \
        else d_star_ci
    rng = np.random.default_rng(seed)
    centre = d or 2 * h
    curve = []
    for d_probe in sorted({max(1, round(centre * f)) for f in (0.5, 0.8, 0.95, 1.0, 1.2, 2.0)}):
        trials = int(rng.choice([32, 64, 128, 256]))
        p = 1 / (1 + math.exp(-12 * (d_probe / centre - 0.85)))
        curve.append({"d": d_probe, "trials": trials, "successes": int(round(p * trials)),
                      "outcomes": "ignored"})
    return {
        "schema": 1, "decoder": decoder, "params": dict(params or {}),
        "problem": {"dictionary": dictionary, "n": n, "k": k, "noise": noise, "seed": seed,
                    "subsets_per_draw": 32},
        "target": target, "status": status, "error": None if status == "ok" else "decoder raised",
        "d_star": d, "d_star_ci": ci, "d_half": None if d is None else round(0.85 * d),
        "entropy_bits": h, "curve": curve,
        "d_star_over_shannon": ratio, "d_shannon": None if ratio is None else round(d / ratio),
    }


def mixed_records():
    return [
        rec("mp", n=4096, k=4), rec("mp", n=4096, k=16), rec("topk", n=4096, k=16, d_star=None),
        rec("mp", n=256, k=4),
        rec("mp", n=4096, k=16, noise=0.1, ratio=1.8), rec("mp", n=4096, k=16, noise=0.3, ratio=2.4),
        rec("mp", n=1024, k=8, noise=0.2, ratio=None),   # noisy without a Shannon ratio: no figure
        rec("mp", n=512, k=4, dictionary="file"),        # the fixed-dictionary track: no figure
        rec("mp", n=8192, k=4, status="error"),          # a failed run: no figure
    ]


EXPECTED = ["minimal-d-vs-k-rademacher-n256", "minimal-d-vs-k-rademacher-n4096",
            "shannon-ratio-rademacher-n4096", "success-vs-d-rademacher-n256",
            "success-vs-d-rademacher-n4096"]


def test_figure_names_are_the_sorted_stems_of_the_generated_successful_records():
    assert plots.figure_names(mixed_records()) == EXPECTED
    assert plots.figure_names(list(reversed(mixed_records()))) == EXPECTED
    assert plots.figure_names(iter(mixed_records())) == EXPECTED
    assert plots.figure_names([]) == []
    assert plots.figure_names([rec(status="error"), rec(dictionary="file")]) == []


def test_without_matplotlib_names_work_and_drawing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plots.available() is False
    assert plots.figure_names(mixed_records()) == EXPECTED
    with pytest.raises(plots.PlotError, match="pip install") as caught:
        plots.draw_figures(mixed_records(), tmp_path / "figures")
    assert str(caught.value).count(".") >= 1 and "\n" not in str(caught.value)
    assert not (tmp_path / "figures").exists()


def test_an_unknown_format_is_refused():
    with pytest.raises(plots.PlotError, match="choose from png, svg"):
        plots.draw_figures([rec()], "unused", formats=("pdf",))


def test_draw_figures_writes_every_figure_in_every_format(tmp_path):
    pytest.importorskip("matplotlib")
    assert plots.available()
    paths = plots.draw_figures(mixed_records(), tmp_path / "out")
    assert paths == sorted(paths)
    assert [p.name for p in paths] == sorted(f"{stem}.{fmt}" for stem in EXPECTED for fmt in plots.FORMATS)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE)
        else:
            assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"
    only_svg = plots.draw_figures([rec()], tmp_path / "svg", formats=["svg"])
    assert [p.name for p in only_svg] == ["minimal-d-vs-k-rademacher-n4096.svg",
                                          "success-vs-d-rademacher-n4096.svg"]
    assert [p.name for p in plots.draw_figures([rec()], tmp_path / "one", formats="png")] == [
        "minimal-d-vs-k-rademacher-n4096.png", "success-vs-d-rademacher-n4096.png"]
    assert plots.draw_figures([], tmp_path / "none") == []


def test_names_and_parameters_from_records_are_drawn_as_text_never_as_mathtext(tmp_path):
    pytest.importorskip("matplotlib")
    # As mathtext, "$\\frac$" is a syntax error that would stop the drawing, and "$x^2$"
    # would be typeset; a record's decoder name and parameters are data.
    records = [rec(r"x$\frac$", k=4), rec(r"x$\frac$", k=8, params={"w": "$x^2$"}),
               rec(r"x$\frac$", k=8, params={"w": "$y$"})]
    assert [p.name for p in plots.draw_figures(records, tmp_path, formats="png")] == [
        "minimal-d-vs-k-rademacher-n4096.png", "success-vs-d-rademacher-n4096.png"]
    with plots._settings():
        figure = plots._minimal_d_figure(records)
        texts = figure.legends[0].get_texts()
        assert [t.get_text() for t in texts][:3] == ["x$\\frac$", "x$\\frac$[w=$x^2$]", "x$\\frac$[w=$y$]"]
        assert not any(t.get_parse_math() for t in texts)


def test_drawing_twice_gives_the_same_bytes_whatever_the_clock_directory_or_settings(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    records = [r for r in mixed_records() if r["problem"]["n"] != 256]  # one figure of each kind
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    first = plots.draw_figures(records, tmp_path / "first")
    monkeypatch.chdir(tmp_path / "b")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with matplotlib.rc_context({"lines.linewidth": 4.0, "font.family": "serif", "svg.hashsalt": None,
                                "axes.prop_cycle": matplotlib.cycler(color=["red"])}):
        second = plots.draw_figures(records, "second")
    assert [p.name for p in first] == [p.name for p in second]
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == (tmp_path / "b" / two).read_bytes(), one.name
    svg = first[1].read_text(encoding="utf-8")
    assert first[1].suffix == ".svg" and f"Matplotlib v{matplotlib.__version__}" in svg
    assert "<dc:date>" not in svg
    assert f"matplotlib {matplotlib.__version__}".encode() in first[0].read_bytes()


def _by_label(container_or_lines, label):
    found = [item for item in container_or_lines if item.get_label() == label]
    assert len(found) == 1, label
    return found[0]


def test_the_minimal_dimension_figure_shows_entropy_intervals_and_a_dims_per_bit_axis():
    pytest.importorskip("matplotlib")
    n = 4096
    h = {k: entropy_bits(n, k) for k in (4, 8, 16)}
    records = [
        rec("mp", n=n, k=4, d_star=60, d_star_ci=[55, 70]),
        rec("mp", n=n, k=8, d_star=None),                        # not reached: left out
        rec("mp", n=n, k=16, d_star=200, d_star_ci=[190, None]),  # no upper end: no bar above
        rec("topk", n=n, k=4, d_star=120, d_star_ci=[None, 130]),
        rec("topk", n=n, k=16, d_star=round(2.5 * h[16]), d_star_ci=[300, round(3.5 * h[16])]),
    ]
    figure = plots._minimal_d_figure(records)
    left, right = figure.axes
    entropy = _by_label(left.get_lines(), "H(N, k)")
    assert list(entropy.get_xdata()) == list(range(4, 17))
    assert np.allclose(entropy.get_ydata(), [entropy_bits(n, k) for k in range(4, 17)])
    assert entropy.get_linestyle() == "--" and entropy.get_color() == "black"

    mp = _by_label(left.containers, "mp")
    data_line, _caps, (bars,) = mp.lines
    xs = np.asarray(data_line.get_xdata(), dtype=float)
    assert np.allclose(np.log2(xs), [2, 4], atol=0.1)  # k = 8 (d* not reached) is not plotted
    assert list(data_line.get_ydata()) == [60, 200]
    assert [[tuple(map(float, point)) for point in segment] for segment in bars.get_segments()] == [
        [(xs[0], 55.0), (xs[0], 70.0)], [(xs[1], 190.0), (xs[1], 200.0)]]
    topk = _by_label(left.containers, "topk")
    assert [(float(s[0][1]), float(s[1][1])) for s in topk.lines[2][0].get_segments()] == [
        (120.0, 130.0), (300.0, float(round(3.5 * h[16])))]

    assert [t.get_text() for t in left.get_xticklabels()] == ["4", "8", "16"]
    assert right.get_ylim() == left.get_ylim()
    assert [t.get_text() for t in right.get_yticklabels()] == ["1", "2", "4"]
    assert np.allclose(right.get_yticks(), [c * h[16] for c in (1, 2, 4)])
    assert right.get_ylabel() == "dims/bit (d / H) at k = 16"
    assert left.get_ylabel() == "d*(0.95)"
    assert left.get_title() == "Minimal dimension for exact recovery, N = 4096 (Rademacher)"
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["mp", "topk", "H(N, k)", "2H, 4H, 8H"]

    mixed = plots._minimal_d_figure([rec("mp", k=4), rec("mp", k=16, target=0.5)])
    assert mixed.axes[0].get_ylabel() == "d*(q)"


def test_one_decoder_with_two_parameter_sets_gets_a_label_for_each():
    pytest.importorskip("matplotlib")
    records = [rec("threshold", k=4, params={"level": 0.5}), rec("threshold", k=4, params={"level": 0.6}),
               rec("mp", k=4), rec("mp", k=8), rec("mp", n=256, k=4)]
    styles = plots._styles(records)
    labels = sorted({style.label for style in styles.values()})
    assert labels == ["mp", "threshold[level=0.5]", "threshold[level=0.6]"]
    assert len({(style.color, style.marker) for style in styles.values()}) == 3
    for build in (plots._minimal_d_figure, plots._success_figure):
        figure = build(records[:4], styles)
        assert [t.get_text() for t in figure.legends[0].get_texts()][:3] == labels
    other = plots._minimal_d_figure([records[4]], styles)
    assert _by_label(other.axes[0].containers, "mp").lines[0].get_color() == styles[("mp", "{}")].color


def test_colours_follow_the_sorted_labels_and_wrap_to_hollow_markers():
    names = [f"decoder-{i:02d}" for i in range(10)]
    styles = plots._styles([rec(name) for name in reversed(names)])
    ordered = [styles[(name, "{}")] for name in names]
    assert [s.color for s in ordered[:9]] == list(plots._PALETTE)
    assert ordered[9].color == ordered[0].color and ordered[9].face == "white" != ordered[0].face
    assert len({(s.color, s.marker, s.face) for s in ordered}) == 10


def test_the_decoders_of_a_figure_differ_in_colour_and_keep_it_across_figures():
    names = [f"decoder-{i:02d}" for i in range(12)]
    records = [rec(name) for name in names]
    # decoder-00 and decoder-09 would share the first colour if colours went by the
    # sorted labels alone; they meet in the second figure, so they must not.
    figures = [records[:9], [records[0], records[9], records[10]], [records[11]]]
    styles = plots._styles(records, figures)
    for rows in figures:
        shades = [(styles[(r["decoder"], "{}")].color, styles[(r["decoder"], "{}")].face) for r in rows]
        assert len(set(shades)) == len(rows)
    assert all(styles[(name, "{}")].face == styles[(name, "{}")].color for name in names)
    assert styles[("decoder-11", "{}")].color == plots._PALETTE[0]  # meets nobody
    # Past nine in one figure the colours come again, hollow, still distinct.
    crowded = plots._styles(records, [records])
    assert len({(s.color, s.face) for s in crowded.values()}) == 12
    assert sum(s.face == "white" for s in crowded.values()) == 3


def test_the_success_figure_has_a_panel_per_k_with_the_probed_rates():
    pytest.importorskip("matplotlib")
    ks = (2, 4, 8, 16, 32)
    records = [rec("mp", k=k, seed=k) for k in ks] + [rec("topk", k=4)]
    figure = plots._success_figure(records)
    assert [ax.get_title() for ax in figure.axes] == [f"k = {k}" for k in ks]
    assert figure.axes[0].get_ylabel() == "P(exact recovery)"
    second = figure.axes[1]
    mp = _by_label(second.get_lines(), "mp")
    curve = records[1]["curve"]
    assert list(mp.get_xdata()) == [p["d"] for p in curve]
    assert np.allclose(mp.get_ydata(), [p["successes"] / p["trials"] for p in curve])
    levels = sorted(line.get_ydata()[0] for line in second.get_lines() if line.get_linestyle() == "--")
    assert levels == [0.5, 0.95]


def test_the_shannon_figure_plots_the_ratio_against_noise_with_the_limit_at_one():
    pytest.importorskip("matplotlib")
    records = [rec("mp", noise=0.3, ratio=2.4), rec("mp", noise=0.1, ratio=1.8),
               rec("amp", noise=0.1, ratio=1.2), rec("mp", k=4, noise=0.1, ratio=1.5)]
    assert plots.figure_names(records) == ["shannon-ratio-rademacher-n4096"]
    figure = plots._shannon_figure(records)
    assert [ax.get_title() for ax in figure.axes] == ["k = 4", "k = 16"]
    mp = _by_label(figure.axes[1].get_lines(), "mp")
    assert list(mp.get_xdata()) == [0.1, 0.3] and list(mp.get_ydata()) == [1.8, 2.4]
    assert [t.get_text() for t in figure.axes[1].get_xticklabels()] == ["0.1", "0.3"]
    limit = _by_label(figure.axes[1].get_lines(), "Shannon limit")
    assert list(limit.get_ydata()) == [1.0, 1.0]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["amp", "mp", "Shannon limit"]
