"""Every refusal is one sentence and exit status 2, before any decoder runs: sizes that no
budget could hold, empty or repeated selections, signs that argparse reads as options,
and weight files given as plugin parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from superposition_harness.cli import main
from test_hostile_files import npy_bytes, safetensors_bytes
from test_weights import random_sae, saelens_config, write_saelens

SMALL = ["--n", "256", "--k", "3", "--trials", "96"]


def one_line(capsys: pytest.CaptureFixture[str], status: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert status == 2, err
    assert len(lines) == 1 and all(fragment in lines[0] for fragment in fragments), err
    assert "Traceback" not in err and err.rstrip().endswith(lines[0])
    return lines[0]


@pytest.mark.parametrize("container", [".npy", ".safetensors"])
@pytest.mark.parametrize("shape", [(0, 2**62), (2**40, 0, 2**30), (0, 2**70)])
def test_an_empty_tensor_with_huge_dimensions_is_refused(tmp_path, capsys, container, shape):
    path = tmp_path / f"F{container}"
    if container == ".npy":
        path.write_bytes(npy_bytes({"descr": "<f4", "fortran_order": False, "shape": shape}))
    else:
        entry = {"dtype": "F32", "shape": list(shape), "data_offsets": [0, 0]}
        path.write_bytes(safetensors_bytes({"F": entry}))
    one_line(capsys, main(["run", "--dictionary", str(path), "--plugin", "mp", "--no-store"]),
             str(path), "which no array can have")


@pytest.mark.parametrize("option, value, fragment", [
    ("--subsets-per-draw", "1000000000", "subsets_per_draw must be an integer from 1 to 1048576"),
    ("--trials", "1000000000000", "trials must be an integer from 1 to 1048576"),
])
def test_sizes_beyond_any_budget_are_refused_before_a_decoder_runs(marker, capsys, option, value, fragment):
    one_line(capsys, main(["run", *SMALL, option, value, "--plugin", "marks", "--no-store"]), fragment)
    assert not marker.exists()


def test_many_subsets_a_draw_count_against_the_memory_budget(marker, capsys):
    status = main(["run", "--n", "4096", "--k", "64", "--subsets-per-draw", "1048576", "--memory", "1GiB",
                   "--plugin", "marks", "--no-store"])
    one_line(capsys, status, "more than the memory budget of 1.0 GiB")
    assert not marker.exists()


@pytest.mark.parametrize("toml, fragment", [
    ("[problem]\nn = []\n", "n in [problem] of"),
    ("[problem]\nk = []\n", "k in [problem] of"),
    ("[problem]\ndictionary = []\n", "dictionary in [problem] of"),
    ("[problem]\nnoise = []\n", "noise in [problem] of"),
    ("[problem]\nsnr = []\n", "snr in [problem] of"),
    ('decoders = []\n', "decoders in"),
])
def test_an_empty_list_in_a_config_is_refused(marker, tmp_path, capsys, toml, fragment):
    config = tmp_path / "sweep.toml"
    config.write_text('decoders = ["marks"]\n' * ("decoders" not in toml) + toml)
    one_line(capsys, main(["run", "--config", str(config), "--no-store"]), fragment, "empty list")
    assert not marker.exists()


@pytest.mark.parametrize("toml", ['decoders = ["marks", "marks"]\n',
                                  'decoders = ["mp[]", "mp"]\n',
                                  'decoders = ["threshold[level=0.5]"]\n[[decoder]]\nname = "threshold"\n'])
def test_a_decoder_named_twice_in_a_config_is_refused(marker, tmp_path, capsys, toml):
    config = tmp_path / "sweep.toml"
    config.write_text(toml + "[problem]\nn = 256\nk = 3\n")
    one_line(capsys, main(["run", "--config", str(config), "--no-store"]), "is named twice")
    assert not marker.exists()
    status = main(["run", *SMALL, "--plugin", "marks", "--plugin", "marks", "--no-store"])
    one_line(capsys, status, "decoder marks is named twice")


def test_the_same_decoder_with_other_parameters_is_not_a_duplicate(capsys):
    status = main(["run", *SMALL, "--plugin", "threshold[level=0.5]", "--plugin", "threshold[level=0.6]",
                   "--no-store", "--json"])
    assert status == 0 and len(capsys.readouterr().out.splitlines()) == 2


def test_a_config_that_starts_with_a_byte_order_mark_is_read(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    text = b'decoders = ["topk"]\n[problem]\nn = 256\nk = 3\n[search]\ntrials = 96\n'
    config.write_bytes(b"\xef\xbb\xbf" + text)
    assert main(["run", "--config", str(config), "--no-store", "--json"]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["problem"]["n"] == 256 and record["decoder"] == "topk"


def test_an_sae_config_that_starts_with_a_byte_order_mark_is_read(tmp_path):
    from superposition_harness.weights import load_sae

    directory = write_saelens(tmp_path / "sae", random_sae(), saelens_config("standard"))
    config = directory / "cfg.json"
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    assert load_sae(directory).activation == "relu"


@pytest.mark.parametrize("args, option", [
    (["--memory", "-1GiB"], "--memory"), (["--noise", "-0.1x"], "--noise"), (["--snr", "-3x"], "--snr"),
    (["--results", "-x"], "--results")])
def test_a_value_that_looks_like_an_option_is_named(capsys, args, option):
    status = main(["run", *SMALL, *args, "--no-store"])
    line = one_line(capsys, status, f"argument {option}: expected a value")
    assert repr(args[1]) in line


@pytest.mark.parametrize("text", ["-1GiB", "0", "-1"])
def test_a_memory_budget_must_be_positive(capsys, text):
    one_line(capsys, main(["run", *SMALL, f"--memory={text}", "--no-store"]), "--memory")


def test_a_broken_weight_file_given_as_a_plugin_parameter_is_refused_before_the_run(marker, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cfg.json").write_text("{not json")
    (broken / "sae_weights.safetensors").write_bytes(b"\0" * 16)
    for weights in (str(broken), str(tmp_path / "missing")):
        status = main(["run", *SMALL, "--plugin", "marks", "--plugin", f"sae[weights={weights}]",
                       "--no-store"])
        one_line(capsys, status, weights)
        assert not marker.exists()
    # the same file given as the dictionary is refused the same way
    one_line(capsys, main(["run", "--dictionary", str(broken), "--plugin", "mp", "--no-store"]), str(broken))


def test_a_sound_weight_file_given_as_a_plugin_parameter_still_runs(tmp_path, capsys):
    sae = random_sae()
    sae["W_dec"] /= np.linalg.norm(sae["W_dec"], axis=1, keepdims=True)
    path = write_saelens(tmp_path / "sae", sae, saelens_config("topk", k=2))
    status = main(["run", "--dictionary", str(path), "--plugin", f"sae[weights={path}]", "--trials", "96",
                   "--no-store", "--json"])
    assert status == 0 and json.loads(capsys.readouterr().out)["status"] == "ok"
