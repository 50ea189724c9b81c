"""The published HTML page in a real headless Chromium: sorting, ranks, the summary's order
and scrolling tables, checked in the DOM after real clicks.

Needs the ``selenium`` package and Debian's ``chromium`` and ``chromium-driver`` (at
``/usr/bin/chromium`` and ``/usr/bin/chromedriver``); without them every test here is skipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from superposition_harness.publish import HTML, JSON, _best, publish

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None  # type: ignore[assignment]

LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WIDTH, HEIGHT = 600, 700
WAIT = 60  # seconds; generous, for a loaded machine

#: The body rows of the page's table number ``arguments[0]``, as their cells' sort keys.
_KEYS = """return Array.from(document.querySelectorAll("table.sortable")[arguments[0]].tBodies[0].rows,
    r => Array.from(r.cells, c => c.dataset.sort));"""
#: The texts of that table's rank column, in the displayed order.
_RANKS = """var t=document.querySelectorAll("table.sortable")[arguments[0]],
    col=Array.from(t.tHead.rows[0].cells).findIndex(h => h.classList.contains("rank"));
return Array.from(t.tBodies[0].rows, r => r.cells[col].textContent);"""
#: Each summary table: its section's heading, the paragraph above it and its decoders in order.
_SUMMARIES = """var out=[], heading="";
document.querySelectorAll("h2, table.sortable").forEach(function(e){
  if(e.tagName==="H2"){heading=e.textContent;return;}
  if(!e.tHead.rows[0].cells[0].textContent.startsWith("decoder"))return;
  out.push({heading: heading, note: e.parentElement.previousElementSibling.textContent,
            decoders: Array.from(e.tBodies[0].rows, r => r.cells[0].textContent)});});
return out;"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The committed leaderboard's records (and figures) published afresh into a temporary folder."""
    root = tmp_path_factory.mktemp("leaderboard")
    for source in sorted(LEADERBOARD.rglob("*.jsonl")) + sorted((LEADERBOARD / "figures").glob("*.svg")):
        target = root / source.relative_to(LEADERBOARD)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    publish([root], root, figures=False)
    return root


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium, WIDTH × HEIGHT, that never reaches the network."""
    if webdriver is None:
        pytest.skip("the browser tests need selenium (pip install selenium)")
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.skip(f"the browser tests need Debian's chromium and chromium-driver "
                    f"(apt-get install chromium chromium-driver): {', '.join(missing)} not found")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", f"--window-size={WIDTH},{HEIGHT}",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


def _open(browser, site: Path) -> None:
    browser.get((site / HTML).as_uri())
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return window.innerWidth") == WIDTH)


def _rows_table(browser) -> int:
    """The index of the first table with a rank column (the first section's rows)."""
    return browser.execute_script("""return Array.from(document.querySelectorAll("table.sortable"))
        .findIndex(t => t.querySelector("th.rank"));""")


def _click(browser, header, state: str) -> None:
    """Click a header and check the direction it then sorts in."""
    before = header.get_attribute("aria-sort")
    header.click()
    WebDriverWait(browser, WAIT).until(lambda d: header.get_attribute("aria-sort") != before)
    found = header.get_attribute("aria-sort")
    assert found == state, f"{header.text}: sorted {found}, not {state}"


def _values(keys: list[list[str]], col: int) -> list[float]:
    """The column's numbers in the displayed order; empty cells only at the end."""
    column = [row[col] for row in keys]
    filled = [value for value in column if value != ""]
    assert column[:len(filled)] == filled, "a cell without a value is sorted before one with"
    return [float(value) for value in filled]


def test_a_score_column_sorts_best_first_then_reverses_and_the_ranks_follow(browser, site):
    _open(browser, site)
    table = _rows_table(browser)
    headers = browser.find_elements(By.CSS_SELECTOR, "table.sortable")[table].find_elements(By.TAG_NAME, "th")
    names = [h.text.strip() for h in headers]
    best = {name: h.get_attribute("data-best") for name, h in zip(names, headers, strict=True)}
    assert best["bits/dim [95% CI]"] == "high" and best["dims/bit"] == "low"
    assert best["d*(0.95) [95% CI]"] == "low" and best["d*(0.5) [95% CI]"] == "low"
    assert best["decoder"] is None and best["date"] is None
    rows = json.loads((site / JSON).read_text())["rows"]
    first = [r for r in rows if r["n"] == 4096 and r["track"] == "noiseless"]  # the first section
    top = max(first, key=lambda r: r["bits_per_dim"] or 0)
    scores = [i for i, name in enumerate(names) if best[name]]
    assert len(scores) >= 5
    for col in scores:
        header = headers[col]
        high = best[names[col]] == "high"
        _click(browser, header, "descending" if high else "ascending")
        once = browser.execute_script(_KEYS, table)
        values = _values(once, col)
        assert values == sorted(values, reverse=high), f"{names[col]}: not best first"
        assert browser.execute_script(_RANKS, table) == [str(i + 1) for i in range(len(once))]
        _click(browser, header, "ascending" if high else "descending")
        twice = browser.execute_script(_KEYS, table)
        assert twice[:len(values)] == once[:len(values)][::-1], f"{names[col]}: not reversed"
        assert browser.execute_script(_RANKS, table) == [str(i + 1) for i in range(len(twice))]
    _click(browser, headers[names.index("bits/dim [95% CI]")], "descending")
    shown = browser.execute_script(_KEYS, table)[0]
    assert (shown[names.index("decoder")], int(shown[names.index("k")])) == (top["decoder"], top["k"])
    _click(browser, headers[names.index("decoder")], "ascending")  # text: A to Z on the first click
    decoders = [row[names.index("decoder")] for row in browser.execute_script(_KEYS, table)]
    assert decoders == sorted(decoders) and decoders[0] != decoders[-1]


def _expected_summary(rows: list[dict[str, Any]]) -> list[str]:
    """The decoders in the order the page states: most k reached, then lowest mean dims/bit
    over them, then name and parameters; last, the counting limit where rows state it."""
    found: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        reached = row["status"] == "ok" and row["d_star"] is not None
        found.setdefault((row["decoder"], row["params"]), []).extend([row["dims_per_bit"]] if reached else [])
    order = sorted(found, key=lambda key: (-len(found[key]), sum(found[key]) / max(len(found[key]), 1), key))
    settings = [decoder for decoder, _ in found]
    limit = ["counting limit d_cnt"] if any(row["d_counting"] is not None for row in rows) else []
    return [d if settings.count(d) == 1 else f"{d} [{p}]" for d, p in order] + limit


def test_the_summary_is_in_the_order_its_text_states(browser, site):
    _open(browser, site)
    summaries = browser.execute_script(_SUMMARIES)
    assert len(summaries) >= 2
    rows = json.loads((site / JSON).read_text())["rows"]
    for summary in summaries:
        assert "mean dims/bit" in summary["note"] and summary["note"].startswith("Best first")
        n = int(summary["heading"].split("N = ")[1].split(",")[0])
        section = [r for r in rows if r["n"] == n and r["track"] == "noiseless"]
        assert summary["decoders"] == _expected_summary(section), summary["heading"]


def test_a_wide_table_scrolls_in_its_own_box_with_its_header_in_view(browser, site, tmp_path):
    _open(browser, site)
    table = _rows_table(browser)
    box = browser.find_elements(By.CSS_SELECTOR, "table.sortable")[table].find_element(By.XPATH, "..")
    assert "scroll" in (box.get_attribute("class") or "")
    browser.execute_script("arguments[0].scrollIntoView()", box)
    sizes = browser.execute_script("""var b=arguments[0];
        return {sw: b.scrollWidth, cw: b.clientWidth, sh: b.scrollHeight, ch: b.clientHeight,
                page: document.documentElement.scrollWidth, window: window.innerWidth};""", box)
    assert sizes["sw"] > sizes["cw"], "the wide table does not scroll sideways in its box"
    assert sizes["page"] <= sizes["window"], "the page itself scrolls sideways"
    assert sizes["sh"] > sizes["ch"], "the table is not taller than its box"
    browser.execute_script("arguments[0].scrollTop = 300; arguments[0].scrollLeft = 200;", box)
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script(
        "return arguments[0].scrollTop > 0 && arguments[0].scrollLeft > 0", box))
    tops = browser.execute_script("""var b=arguments[0];
        return [b.getBoundingClientRect().top + b.clientTop,
                b.querySelector("thead th").getBoundingClientRect().top];""", box)
    assert abs(tops[0] - tops[1]) <= 1, f"the header left the top of its box: {tops}"
    browser.save_screenshot(str(tmp_path / "leaderboard.png"))


@pytest.mark.parametrize("columns, best", [
    (["#", "decoder", "params", "k", "σ", "H (bits)", "d*(0.9) [95% CI]", "bits/dim [95% CI]", "dims/bit",
      "d*(0.5) [95% CI]", "d_Sh", "d*/d_Sh", "trials", "evidence", "version", "machine", "date"],
     ["low", None, None, None, None, None, "low", "high", "low", "low", None, "low", None, None, None, None,
      None]),
    (["#", "decoder", "params", "σ", "k*(0.95) [95% CI]", "H(N, k*)", "bits/dim", "dims/bit",
      "k*(0.5) [95% CI]", "trials"], ["low", None, None, None, "high", "high", "high", "low", "high", None]),
    (["decoder", "k = 4", "k = 64"], [None, "low", "low"]),
])
def test_each_score_column_names_its_best_end(columns, best):
    """The noisy, fixed-dictionary and summary tables' headers (no browser needed)."""
    assert [_best(column) for column in columns] == best
