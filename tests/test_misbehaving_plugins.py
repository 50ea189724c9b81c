"""Misbehaving plugins: each is recorded as its own error and nobody else's result changes."""

from __future__ import annotations

import json

import misbehaving
import numpy as np
import pytest
import superposition_harness.cli as cli_module
from superposition_harness.cli import main
from superposition_harness.plugins import load_registry
from superposition_harness.results import strip_volatile

# The `divides` decoder divides by zero on purpose; NumPy's warning is its expected output.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")

SMALL = ["--n", "256", "--k", "3", "--trials", "64", "--seed", "5", "--no-store", "--json"]
#: What each misbehaving decoder's record must say.
EXPECTED = {
    "bad-raises": "raised RuntimeError: boom",
    "bad-exits": "raised SystemExit: 3",
    "bad-shape": "returned an array of shape",
    "bad-nan": "returned NaN or infinite indices",
    "bad-duplicates": "returned a set with a repeated index",
    "bad-range": "outside [0, 256)",
    "bad-garbage": "sets for a batch of 32 signals",
    "bad-huge": "raised",
    "bad-writes": "read-only",
    "bad-os-exit": "raised ProcessExit: called os._exit(0), which would have ended the harness",
    "bad-markup": "raised RuntimeError: [/4] at [weights=PATH] [bold]x[/bold]",
    "bad-identity": "its identity() failed: OSError: weights vanished",
    "bad-identity-json": "its identity() failed: TypeError",
}
#: Misbehaving decoders whose side effects must not reach the record or anyone else's.
HARMLESS = ("bad-prints", "bad-numpy-state", "divides", "bad-forks", "bad-chdir")


@pytest.fixture
def with_misbehaving(monkeypatch):
    real = load_registry
    monkeypatch.setattr(cli_module, "load_registry", lambda: real(extra_plugins=[misbehaving]))


def run(capfd, *args):
    status = main(["run", *SMALL, *args])
    captured = capfd.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def reference(capfd):
    """topk and mp run on their own: what they must record whatever runs beside them."""
    status, records, _ = run(capfd, "--plugin", "topk", "--plugin", "mp")
    assert status == 0
    return [strip_volatile(r) for r in records]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_each_misbehaving_decoder_is_recorded_and_the_others_are_unchanged(with_misbehaving, capfd,
                                                                             workers):
    """In-process (1 worker) and side by side in worker processes (2)."""
    before = np.geterr()
    names = [cls.name for cls in misbehaving.IN_PROCESS]
    plugins = [arg for name in ["topk", *names, "mp"] for arg in ("--plugin", name)]
    status, records, err = run(capfd, *plugins, "--workers", workers)
    assert status == 1  # some decoders failed; stdout is still nothing but the records
    by_name = {r["decoder"]: r for r in records}
    assert list(by_name) == ["topk", *names, "mp"]
    for name, fragment in EXPECTED.items():
        assert by_name[name]["status"] == "error" and fragment in by_name[name]["error"], by_name[name]
    for name in HARMLESS:
        assert by_name[name]["status"] == "ok", by_name[name]["error"]
    # These decode as `plain` does, after their side effects: the results must be plain's.
    plain = strip_volatile(by_name["plain"])["curve"]
    for name in HARMLESS:
        assert strip_volatile(by_name[name])["curve"] == plain
    assert [strip_volatile(by_name["topk"]), strip_volatile(by_name["mp"])] == reference(capfd)
    assert np.geterr() == before
    if workers == "1":
        assert "noise from print()" in err and "noise from os.write(1)" in err


#: A limit far beyond what the decoders that keep it need (they return at once), and far
#: below what the one that hangs takes (forever): the outcome cannot depend on the machine's speed.
GENEROUS = "20"


def test_a_hanging_decoder_is_stopped_at_its_time_limit_and_the_run_goes_on(with_misbehaving, capfd):
    plugins = [arg for name in ("plain", "bad-hangs", "bad-crashes", "bad-prints", "instant")
               for arg in ("--plugin", name)]
    status, records, _ = run(capfd, *plugins, "--timeout", GENEROUS)
    assert status == 1
    by_name = {r["decoder"]: r for r in records}
    assert sorted(by_name) == sorted(["plain", "bad-hangs", "bad-crashes", "bad-prints", "instant"])
    hang = by_name["bad-hangs"]
    assert hang["status"] == "error"
    assert f"did not finish within its time limit of {GENEROUS} s and was stopped" in hang["error"]
    assert hang["wall_seconds"] >= float(GENEROUS)
    assert by_name["bad-crashes"]["status"] == "error"
    assert "stopped its worker process" in by_name["bad-crashes"]["error"]
    for name in ("plain", "bad-prints", "instant"):
        assert by_name[name]["status"] == "ok", by_name[name]["error"]
    assert strip_volatile(by_name["bad-prints"])["curve"] == strip_volatile(by_name["plain"])["curve"]


def test_a_time_limit_changes_nothing_for_decoders_that_keep_it(capfd):
    status, records, _ = run(capfd, "--plugin", "topk", "--plugin", "mp", "--timeout", "3600")
    assert status == 0 and [strip_volatile(r) for r in records] == reference(capfd)


def test_a_hanging_decoder_on_a_store_leaves_the_finished_records(with_misbehaving, tmp_path, capfd):
    store = tmp_path / "store"
    status = main(["run", *SMALL[:-2], "--plugin", "instant", "--plugin", "bad-hangs", "--timeout", GENEROUS,
                   "--results", str(store)])
    assert status == 1
    lines = [json.loads(line) for line in (store / "records.jsonl").read_text().splitlines()]
    # Runs side by side finish in any order: the store is compared as a set.
    assert sorted((r["decoder"], r["status"]) for r in lines) == [("bad-hangs", "error"), ("instant", "ok")]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_time_limit_exits_2_with_one_line(capfd, value):
    assert main(["run", *SMALL, "--plugin", "topk", "--timeout", value]) == 2
    err = capfd.readouterr().err.strip()
    assert "--timeout" in err and "positive number of seconds" in err and len(err.splitlines()) == 1
