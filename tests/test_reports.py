"""The command reports: one decoder in full, conformance and verification rows labelled by variant."""

from __future__ import annotations

import json

import pytest
from superposition_harness.cli import main


def test_plugins_name_shows_one_decoder_in_full(capsys):
    assert main(["plugins", "threshold"]) == 0
    out = capsys.readouterr().out
    for fragment in ("decoder", "threshold", "description", "superposition-harness", "needs_k", "no",
                     "Parameters of threshold", "level", "float", "0.5",
                     "the correlation a codeword needs to be decoded", "Ŷ = {i : ⟨f_i, x⟩ ≥ level}"):
        assert fragment in out, fragment


def test_plugins_name_shows_bounds_choices_and_paths(capsys):
    assert main(["plugins", "sae", "amp"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "a path (relative to a config file's folder when given there)" in out  # sae's weights
    assert "one of 'minimax', 'fixed'" in out  # amp's threshold
    assert "≥ 1" in out  # amp's iterations


def test_a_decoder_without_parameters_says_so(capsys):
    assert main(["plugins", "mp"]) == 0
    assert "mp takes no parameters." in capsys.readouterr().out


def test_plugins_name_json_holds_only_that_decoder(capsys):
    assert main(["plugins", "omp", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    [decoder] = document["decoders"]
    assert decoder["name"] == "omp" and decoder["parameters"][0]["name"] == "positive"
    assert decoder["capabilities"] == {"needs_k": True, "any_dictionary": True, "uses_noise": False}


def test_an_unknown_name_is_one_sentence_and_exit_2(capsys):
    assert main(["plugins", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no decoder named 'nosuch'" in err


@pytest.mark.slow
def test_check_labels_two_variants_of_one_decoder_apart(capsys):
    assert main(["check", "threshold", "threshold[level=0.4]"]) == 0
    out = capsys.readouterr().out
    assert "threshold[level=0.4]" in out
    assert out.count("threshold") >= 2


@pytest.mark.parametrize("columns", [80, 100])
def test_the_decoders_table_is_one_line_per_decoder_within_the_width(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= columns
    header = next(line for line in lines if "name" in line and "plugin" in line)
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
        "name", "plugin", "package", "uses", "parameters", "description"]
    rows = [line for line in lines if line.startswith("│ ")]
    names = [row.split("│")[1].strip() for row in rows]
    assert {"mp", "sae", "lasso-cd", "amp-binary"} <= set(names)  # names in full, one line each
    fista = next(row for row in rows if row.split("│")[1].strip() == "fista")
    assert fista.split("│")[2].strip() == "ista"  # the plugin (entry point) that registered it
    sae = next(row for row in rows if row.split("│")[1].strip() == "sae")
    assert sae.split("│")[4].strip() == "k, own dict"


def test_check_without_names_says_which_decoders_it_leaves_out(capsys):
    assert main(["check", "topk"]) == 0
    assert "not checked" not in capsys.readouterr().err  # named: nothing left out
    from superposition_harness.plugins import load_registry
    from superposition_harness.reports import unchecked_note
    note = unchecked_note(load_registry())
    # Every decoder tied to its own dictionary is named (in order), and one of them is shown
    # with the parameter it needs.
    assert note is not None and "not checked: learned, sae," in note
    assert "harness check 'learned[weights=PATH]'" in note
