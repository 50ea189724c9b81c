"""SAEs measured in their own frame: on an SAE's dictionary every signal is ``b_dec + Σ f_i``.

An SAE whose encoder is its decoder transposed is exactly the top-k decoder on true
activations, whatever its ``b_dec`` and however it handles it (SAELens subtracts it
from the input when ``apply_b_dec_to_input`` is true, and folds it into ``b_enc``
otherwise; sparsify always subtracts it). ``harness gap`` must then find the same
``k*`` and the same curve, trial by trial, for the SAE's encoder as for ``topk``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from superposition_harness import MatrixDictionary
from superposition_harness.cli import main
from superposition_harness.problem import Problem, draw_subsets
from test_weights import write_saelens, write_sparsify

D_IN, D_SAE = 48, 384


def tied_sae(seed: int = 3) -> dict[str, np.ndarray]:
    """Unit-norm Gaussian decoder rows, the encoder their transpose, ``‖b_dec‖ = 2``."""
    rng = np.random.default_rng(seed)
    decoder = rng.standard_normal((D_SAE, D_IN))
    decoder /= np.linalg.norm(decoder, axis=1, keepdims=True)
    bias = rng.standard_normal(D_IN)
    bias *= 2 / np.linalg.norm(bias)
    w_dec = decoder.astype(np.float32)
    return {"W_dec": w_dec, "W_enc": np.ascontiguousarray(w_dec.T), "b_dec": bias.astype(np.float32),
            "b_enc": np.zeros(D_SAE, np.float32)}


def saelens_topk(directory, apply_b_dec_to_input: bool):
    sae = tied_sae()
    if not apply_b_dec_to_input:  # the encoder sees x itself: b_enc takes b_dec off instead
        sae["b_enc"] = (-(sae["b_dec"].astype(np.float64) @ sae["W_enc"])).astype(np.float32)
    config = {"architecture": "topk", "k": 8, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32",
              "device": "cpu", "apply_b_dec_to_input": apply_b_dec_to_input,
              "normalize_activations": "none", "metadata": {"sae_lens_version": "6.5.0"}}
    return write_saelens(directory, sae, config)


def sparsify_topk(directory):
    return write_sparsify(directory, tied_sae(), k=8, d_in=D_IN, num_latents=D_SAE)


def gap_records(capsys, path, *plugins):
    chosen = [arg for name in plugins for arg in ("--plugin", name)]
    status = main(["gap", str(path), *chosen, "--trials", "128", "--no-store", "--json"])
    records = {r["decoder"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert status == 0, [r["error"] for r in records.values()]
    return records


def curve(record):
    return [(p["k"], p["trials"], p["successes"], p["outcomes"]) for p in record["curve"]]


@pytest.mark.parametrize("write", [lambda d: saelens_topk(d, True), lambda d: saelens_topk(d, False),
                                   sparsify_topk],
                         ids=["saelens-apply-b-dec", "saelens-b-dec-in-b-enc", "sparsify"])
def test_a_tied_topk_sae_is_topk_in_its_own_frame(tmp_path, capsys, write):
    path = write(tmp_path / "sae")
    records = gap_records(capsys, path, f"sae[weights={path}]", "topk")
    sae, topk = records["sae"], records["topk"]
    assert sae["problem"]["offset"] == "b_dec"
    assert sae["k_star"] == topk["k_star"] and sae["k_star"] >= 2
    assert curve(sae) == curve(topk)
    assert sae["k_star_ci"] == topk["k_star_ci"] and sae["k_half"] == topk["k_half"]


def test_the_iterative_decoders_read_the_same_sets_with_b_dec_as_without(tmp_path, capsys):
    """mp subtracts the offset it is told of: on the SAE's dictionary it decodes as on the
    bare matrix, whose signals carry no b_dec."""
    path = saelens_topk(tmp_path / "sae", True)
    matrix = tmp_path / "decoder.npy"
    np.save(matrix, tied_sae()["W_dec"].T)
    in_frame = gap_records(capsys, path, "mp")["mp"]
    status = main(["run", "--dictionary", str(matrix), "--plugin", "mp", "--trials", "128",
                   "--no-store", "--json"])
    [bare] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and "offset" not in bare["problem"]
    assert in_frame["k_star"] == bare["k_star"] and curve(in_frame) == curve(bare)


def test_signals_on_an_sae_dictionary_carry_its_b_dec():
    sae = tied_sae()
    dictionary = MatrixDictionary(sae["W_dec"].T, offset=sae["b_dec"])
    subsets = draw_subsets(Problem(n=D_SAE, k=5, seed=1, subsets_per_draw=6), 0)
    signals = dictionary.superpose(subsets)
    bare = MatrixDictionary(sae["W_dec"].T).superpose(subsets)
    np.testing.assert_allclose(signals, bare + sae["b_dec"], atol=1e-6)
    centred = dictionary.subtract_offset(signals)
    assert centred.dtype == np.float64
    np.testing.assert_array_equal(centred, signals.astype(np.float64) - sae["b_dec"].astype(np.float64))
    assert dictionary.offset is not None and not dictionary.offset.flags.writeable
    plain = MatrixDictionary(sae["W_dec"].T)
    assert plain.offset is None and plain.subtract_offset(bare) is bare


@pytest.mark.parametrize("offset", [np.zeros(3), np.array([0.0, np.nan] + [0.0] * (D_IN - 2))])
def test_an_offset_must_be_a_finite_vector_of_length_d(offset):
    with pytest.raises(ValueError, match="offset must be a finite vector of length d"):
        MatrixDictionary(tied_sae()["W_dec"].T, offset=offset)


def test_gap_says_when_the_decoder_rows_are_not_unit_norm(tmp_path, capsys):
    sae = tied_sae()
    sae["W_dec"][::2] *= 3  # every other feature three times as loud in the SAE's own units
    sae["W_enc"] = np.ascontiguousarray(sae["W_dec"].T)
    config = {"architecture": "topk", "k": 8, "apply_b_dec_to_input": True, "normalize_activations": "none"}
    path = write_saelens(tmp_path / "loud", sae, config)
    assert main(["gap", str(path), "--plugin", "topk", "--trials", "32", "--no-store", "--json"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "decoder rows have norms from 1 to 3" in err and "1/‖W_dec[i]‖" in err
    tied = saelens_topk(tmp_path / "tied", True)
    assert main(["gap", str(tied), "--plugin", "topk", "--trials", "32", "--no-store", "--json"]) == 0
    assert "norms" not in capsys.readouterr().err
