"""The sae decoder on its own dictionary from the command line, for every weight format,
and the one-line refusal of malformed weight files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from superposition_harness.cli import main
from test_weights import random_sae, saelens_config, save_npz, write_plain, write_saelens, write_sparsify

D_IN, D_SAE = 6, 10


def make(kind: str, tmp_path):
    sae = random_sae(seed=5)
    if kind == "saelens-topk":
        return write_saelens(tmp_path / kind, sae, saelens_config("topk", k=2))
    if kind == "saelens-relu-bf16":
        return write_saelens(tmp_path / kind, sae, saelens_config("standard"), dtype="BF16")
    if kind == "saelens-pre-6":
        config = saelens_config(None, activation_fn_str="relu")
        return write_saelens(tmp_path / kind, sae, config, dtype="F16")
    if kind == "sparsify":
        return write_sparsify(tmp_path / kind, sae, k=2)
    if kind == "gemmascope":
        path = tmp_path / "params.npz"
        save_npz(path, {k: sae[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")})
        return path
    if kind == "plain":
        return write_plain(tmp_path / "plain.safetensors", sae,
                           'activation = "relu"\napply_b_dec_to_input = true\n')
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["saelens-topk", "saelens-relu-bf16", "saelens-pre-6", "sparsify",
                                  "gemmascope", "plain"])
def test_the_sae_runs_on_its_own_dictionary_for_every_format(tmp_path, capsys, kind):
    path = make(kind, tmp_path)
    status = main(["run", "--plugin", f"sae[weights={path}]", "--dictionary", str(path),
                   "--trials", "64", "--k-max", "4", "--no-store", "--json"])
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and record["status"] == "ok", record["error"]
    assert record["problem"]["d"] == D_IN and record["problem"]["n"] == D_SAE
    assert len(record["problem"]["dictionary_sha256"]) == 64


def _truncated(tmp_path):
    path = make("saelens-topk", tmp_path)
    weights = path / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-20])
    return path


def _missing_key(tmp_path):
    sae = random_sae()
    return write_saelens(tmp_path / "m", sae, saelens_config("standard"), keys=("W_enc", "b_enc", "W_dec"))


def _wrong_shape(tmp_path):
    sae = random_sae()
    sae["b_enc"] = np.zeros(D_SAE + 3, np.float32)
    return write_saelens(tmp_path / "w", sae, saelens_config("standard"))


def _nan(tmp_path):
    sae = random_sae()
    sae["W_enc"][0, 0] = np.nan
    return write_saelens(tmp_path / "n", sae, saelens_config("standard"))


def _unsupported(tmp_path):
    return write_saelens(tmp_path / "u", random_sae(), saelens_config("batchtopk"))


@pytest.mark.parametrize("build, fragment, decoder_broken", [
    (_truncated, "sae_weights.safetensors", True), (_missing_key, "b_dec", True),
    (_wrong_shape, "has shape", False), (_nan, "W_enc", False), (_unsupported, "batchtopk", False)])
def test_a_malformed_weight_file_exits_2_with_one_line(tmp_path, build, fragment, decoder_broken):
    # gap runs the SAE's encoder, so any fault refuses it; --dictionary reads the decoder
    # alone (W_dec and b_dec), so a fault in the encoder does not stop it.
    path = build(tmp_path)
    for command in (["gap", str(path)], ["run", "--dictionary", str(path), "--plugin", "mp", "--no-store",
                                         "--trials", "128"]):
        result = subprocess.run([sys.executable, "-m", "superposition_harness.cli", *command],
                                capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if command[0] == "run" and not decoder_broken:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and fragment in lines[0], lines
        assert "Traceback" not in result.stderr
