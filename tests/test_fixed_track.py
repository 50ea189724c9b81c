"""The fixed-dictionary track, the sae decoder and `harness gap` (docs/contract.md §2, §3)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file
from superposition_harness import MatrixDictionary, Problem, ProblemError, entropy_bits
from superposition_harness.cli import main
from superposition_harness.problem import FILE_DICTIONARY, draw_subsets
from superposition_harness.results import decode_outcomes, make_record, provenance, strip_volatile
from superposition_harness.runner import RunSettings, run_decoder
from superposition_harness_builtins.mp import MatchingPursuit
from superposition_harness_builtins.sae import SparseAutoencoderEncoder
from superposition_harness_builtins.topk import TopKDecoder

D, N = 64, 512


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rng = np.random.default_rng(21)
    return (rng.choice([-1.0, 1.0], size=(D, N)) / np.sqrt(D)).astype(np.float32)


def fixed_problem(**extra) -> Problem:
    return Problem(n=N, k=None, dictionary=FILE_DICTIONARY, d=D, dictionary_file="F.npy",
                   dictionary_sha256="0" * 64, seed=2, subsets_per_draw=16, **extra)


def write_saelens(directory, encoder, decoder, *, architecture="topk", k=4, threshold=None,
                  b_enc=None):
    directory.mkdir()
    d_in, d_sae = encoder.shape
    tensors = {"W_enc": np.ascontiguousarray(encoder), "W_dec": np.ascontiguousarray(decoder),
               "b_enc": np.zeros(d_sae, np.float32) if b_enc is None else b_enc,
               "b_dec": np.zeros(d_in, np.float32)}
    config = {"architecture": architecture, "d_in": d_in, "d_sae": d_sae,
              "apply_b_dec_to_input": False, "normalize_activations": "none"}
    if architecture == "topk":
        config["k"] = k
    if threshold is not None:
        tensors["threshold"] = threshold
    save_file(tensors, str(directory / "sae_weights.safetensors"))
    (directory / "cfg.json").write_text(json.dumps(config))
    return directory


def test_a_fixed_problem_has_d_and_a_file_but_may_leave_k_open():
    problem = fixed_problem()
    assert problem.fixed and problem.k is None
    record = problem.as_record()
    assert record["d"] == D and record["dictionary_file"] == "F.npy" and record["k"] is None
    assert "d" not in Problem(n=8, k=2).as_record()
    with pytest.raises(ProblemError, match="path and SHA-256"):
        Problem(n=N, k=None, dictionary=FILE_DICTIONARY, d=D)
    with pytest.raises(ProblemError, match="k must be given"):
        Problem(n=N, k=None)
    with pytest.raises(ProblemError, match="only for a dictionary from a file"):
        Problem(n=N, k=3, d=D)


def test_the_fixed_track_searches_the_largest_reliable_k(matrix):
    dictionary = MatrixDictionary(matrix)
    settings = RunSettings(max_trials=128)
    runs = {cls.name: run_decoder(fixed_problem(), cls(), settings, dictionary=dictionary)
            for cls in (TopKDecoder, MatchingPursuit)}
    for run in runs.values():
        assert run.ok and run.variable == "k"
        lo, hi = run.estimate.ci
        assert lo <= run.estimate.k <= hi
        assert run.half.k >= run.estimate.k
        points = {p["k"]: p for p in run.curve}
        star, above = points[run.estimate.k], points.get(run.estimate.k + 1)
        assert star["successes"] / star["trials"] >= 0.95
        assert above is None or above["successes"] / above["trials"] < 0.95
    assert runs["mp"].estimate.k > runs["topk"].estimate.k


def test_a_fixed_record_carries_k_star_and_bits_per_dim_of_the_file(matrix):
    run = run_decoder(fixed_problem(), MatchingPursuit(), RunSettings(max_trials=128),
                      dictionary=MatrixDictionary(matrix))
    record = make_record(run, decoder_name="mp", plugin_package="p", plugin_version="0",
                         provenance=provenance(argv=[]))
    k = record["k_star"]
    assert record["d_star"] is None and record["k_star_ci"][0] <= k <= record["k_star_ci"][1]
    assert record["bits_per_dim"] == pytest.approx(entropy_bits(N, k) / D)
    assert record["dims_per_bit"] == pytest.approx(1 / record["bits_per_dim"])
    assert record["problem"]["d"] == D
    assert all(set(p) == {"k", "trials", "successes", "outcomes"} for p in record["curve"])
    assert all(decode_outcomes(p["outcomes"], p["trials"]).sum() == p["successes"] for p in record["curve"])


def test_the_fixed_track_needs_the_problems_own_dictionary(matrix):
    with pytest.raises(ValueError, match="own d × N dictionary"):
        run_decoder(fixed_problem(), MatchingPursuit(), RunSettings(),
                    dictionary=MatrixDictionary(matrix[:10]))


def test_a_topk_sae_with_the_dictionary_as_encoder_decodes_as_topk(tmp_path, matrix):
    """SAELens TopK with W_enc = F (so pre = Fᵀx) and zero biases: the same sets as topk."""
    path = write_saelens(tmp_path / "sae", matrix, matrix.T, k=4)
    dictionary = MatrixDictionary(matrix)
    problem = fixed_problem().with_k(4)
    subsets = draw_subsets(problem, 0)
    signals = dictionary.superpose(subsets)
    expected = TopKDecoder().decode(dictionary, signals, k=4, noise=0.0)
    for mode in ("file", "problem"):
        got = SparseAutoencoderEncoder(weights=str(path), topk=mode).decode(
            dictionary, signals, k=4, noise=0.0)
        assert all(np.array_equal(np.sort(a), b) for a, b in zip(got, expected, strict=True))


def test_a_jumprelu_sae_with_zero_thresholds_is_a_relu_sae(tmp_path, matrix):
    rng = np.random.default_rng(3)
    b_enc = rng.normal(scale=0.3, size=N).astype(np.float32)
    relu = write_saelens(tmp_path / "relu", matrix, matrix.T, architecture="standard", b_enc=b_enc)
    jump = write_saelens(tmp_path / "jump", matrix, matrix.T, architecture="jumprelu", b_enc=b_enc,
                         threshold=np.zeros(N, np.float32))
    dictionary = MatrixDictionary(matrix)
    signals = dictionary.superpose(draw_subsets(fixed_problem().with_k(3), 0))
    a = SparseAutoencoderEncoder(weights=str(relu)).decode(dictionary, signals, k=3, noise=0.0)
    b = SparseAutoencoderEncoder(weights=str(jump)).decode(dictionary, signals, k=3, noise=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(len(x) for x in a)


def test_the_sae_decoder_refuses_a_dictionary_of_another_shape(tmp_path, matrix):
    path = write_saelens(tmp_path / "sae", matrix, matrix.T)
    other = MatrixDictionary(matrix[:, :100])
    with pytest.raises(ValueError, match="latents, but the dictionary is 64 × 100"):
        SparseAutoencoderEncoder(weights=str(path)).decode(other, np.zeros((1, D), np.float32),
                                                           k=2, noise=0.0)


def test_run_on_a_matrix_file_and_gap_on_an_sae(tmp_path, matrix, capsys):
    np.save(tmp_path / "F.npy", matrix)
    args = ["--trials", "96", "--no-store", "--json"]
    assert main(["run", "--dictionary", str(tmp_path / "F.npy"), "--plugin", "topk", *args]) == 0
    [matrix_record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert matrix_record["problem"]["dictionary"] == "file" and matrix_record["k_star"]
    sae = write_saelens(tmp_path / "sae", matrix, matrix.T)
    assert main(["gap", str(sae), *args]) == 0
    records = {r["decoder"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {"sae", "topk", "mp"} <= set(records)
    # The encoder is exactly top-k here, so its whole success curve is top-k's.
    assert strip_volatile(records["sae"])["curve"] == strip_volatile(records["topk"])["curve"]
    assert records["mp"]["k_star"] > records["sae"]["k_star"]
    assert main(["gap", str(sae), "--trials", "96", "--no-store"]) == 0
    assert "Amortisation gap" in capsys.readouterr().out


@pytest.mark.parametrize("value, fragment", [("missing.npy", "missing.npy"),
                                             ("bernoulli", "dictionary must be one of")])
def test_a_bad_dictionary_exits_2_with_one_line(tmp_path, value, fragment):
    result = subprocess.run([sys.executable, "-m", "superposition_harness.cli", "run",
                             "--dictionary", value, "--plugin", "mp"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr
