"""Text that comes from a plugin or a record is printed as it is: rich never reads it as markup."""

from __future__ import annotations

import json

import pytest
import superposition_harness.cli as cli_module
from superposition_harness import Decoder, Param, hookimpl, top_k_rows
from superposition_harness.cli import main
from superposition_harness.plugins import load_registry

MARKUP = "[/4] at [weights=PATH] [bold]x[/bold] [red]"
SMALL = ["--n", "256", "--k", "3", "--trials", "96"]


class SaysMarkup(Decoder):
    name = "says-markup"
    description = f"Describes itself with {MARKUP}."
    parameters = (Param("note", str, "[b]", f"a note {MARKUP}"),)

    def decode(self, dictionary, signals, *, k, noise):
        raise RuntimeError(MARKUP)


class Plain(Decoder):
    name = "plain-topk"
    description = "Top-k."
    parameters = (Param("note", str, "[b]", "a note"),)

    def decode(self, dictionary, signals, *, k, noise):
        return top_k_rows(dictionary.correlate(signals), k)


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    class Plugin:
        @hookimpl
        def register_decoders(self, register):
            register(SaysMarkup)
            register(Plain)

    real = load_registry
    monkeypatch.setattr(cli_module, "load_registry", lambda: real(extra_plugins=[Plugin()]))


def flat(text: str) -> str:
    return " ".join(text.split())


def test_run_prints_a_decoders_error_as_it_is(capsys):
    status = main(["run", *SMALL, "--plugin", "says-markup", "--plugin", "plain-topk[note=[x] [/y]]",
                   "--no-store"])
    captured = capsys.readouterr()
    assert status == 1
    assert flat(f"raised RuntimeError: {MARKUP}") in flat(captured.err)
    assert "[x] [/y]" in flat(captured.out) or '"[x] [/y]"' in flat(captured.out)


def test_check_prints_a_decoders_error_as_it_is(capsys):
    assert main(["check", "says-markup"]) == 1
    out = flat(capsys.readouterr().out)
    assert "[/4]" in out and "[weights=PATH]" in out


def test_plugins_prints_descriptions_as_they_are(capsys):
    assert main(["plugins"]) == 0
    out = flat(capsys.readouterr().out)
    assert "[/4]" in out and "[weights=PATH]" in out and "[bold]x[/bold]" in out


def test_leaderboard_and_verify_print_record_text_as_it_is(tmp_path, capsys):
    store = tmp_path / "store"
    status = main(["run", *SMALL, "--plugin", "plain-topk[note=[/4] [weights=P]]", "--results", str(store)])
    assert status == 0
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(store)]) == 0
    assert '[/4] [weights=P]' in flat(capsys.readouterr().out)
    status = main(["verify", str(store), "--sample", "4"])
    captured = capsys.readouterr()
    assert status == 0
    assert "[/4]" in flat(captured.out)
    record = json.loads((store / "records.jsonl").read_text())
    assert record["params"] == {"note": "[/4] [weights=P]"}
