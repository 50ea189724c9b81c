"""The SAE files beyond one-step encoders: Gemma Scope 2, SAELens' matching-pursuit and gated
SAEs, decoders of SAEs whose encoder the harness cannot run, and how a dictionary file is read
(``--format``, ``--key``). Each file is written with the library's own layout and tensor names,
by the ``safetensors`` package itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from superposition_harness import MatrixDictionary, Problem
from superposition_harness.problem import draw_subsets
from superposition_harness.tensors import WeightsError
from superposition_harness.weights import (
    detect_format,
    fingerprint,
    load_dictionary_file,
    load_sae,
    source_files,
)
from superposition_harness_builtins.sae import SparseAutoencoderEncoder, matching_pursuit_codes

safetensors_numpy = pytest.importorskip("safetensors.numpy",
                                        reason="the safetensors package writes the files")

D_IN, D_SAE = 8, 24


def unit_rows(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    matrix = rng.standard_normal((rows, cols))
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {key: np.ascontiguousarray(value) for key, value in tensors.items()}
    safetensors_numpy.save_file(contiguous, str(path))
    return path


def write_gemmascope2(directory: Path, seed: int = 0, **config: object) -> tuple[Path, dict[str, np.ndarray]]:
    """A Gemma Scope 2 SAE as the release lays it out: ``config.json`` and ``params.safetensors``
    with lower-case ``w_enc`` (d_in, d_sae) and ``w_dec`` (d_sae, d_in)."""
    rng = np.random.default_rng(seed)
    tensors = {"w_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
               "w_dec": unit_rows(rng, D_SAE, D_IN),
               "b_enc": rng.normal(0, 0.1, D_SAE).astype(np.float32),
               "b_dec": rng.normal(0, 0.1, D_IN).astype(np.float32),
               "threshold": rng.uniform(0.05, 0.3, D_SAE).astype(np.float32)}
    save(directory / "params.safetensors", tensors)
    document = {"model_name": "gemma-v3-1b-pt", "width": D_SAE, "l0": 20, "architecture": "jump_relu",
                "hf_hook_point_in": "model.layers.7.output", "hf_hook_point_out": "model.layers.7.output"}
    document.update(config)
    (directory / "config.json").write_text(json.dumps(document))
    return directory, tensors


def write_saelens(directory: Path, tensors: dict[str, np.ndarray], **config: object) -> Path:
    document = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
                "apply_b_dec_to_input": True,
                "normalize_activations": "none", "reshape_activations": "none",
                "metadata": {"sae_lens_version": "6.54.0"}}
    document.update(config)
    save(directory / "sae_weights.safetensors", tensors)
    (directory / "cfg.json").write_text(json.dumps(document))
    return directory


def signals_of(dictionary: MatrixDictionary, k: int, count: int = 64,
               seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    problem = Problem(n=dictionary.n, k=k, seed=seed, subsets_per_draw=count)
    subsets = draw_subsets(problem, 0)
    return subsets, dictionary.superpose(subsets)


# ------------------------------------------------------------------ Gemma Scope 2


def test_gemma_scope_2_is_detected_and_read_as_the_release_writes_it(tmp_path):
    directory, tensors = write_gemmascope2(tmp_path / "resid_post" / "layer_7_width_16k_l0_small")
    for path in (directory, directory / "params.safetensors", directory / "config.json"):
        assert detect_format(path) == "gemmascope"
    sae = load_sae(directory)
    assert (sae.format, sae.activation, sae.apply_b_dec_to_input) == ("gemmascope", "jumprelu", False)
    np.testing.assert_array_equal(sae.W_enc, tensors["w_enc"])
    np.testing.assert_array_equal(sae.W_dec, tensors["w_dec"])
    np.testing.assert_array_equal(sae.threshold, tensors["threshold"])
    assert [p.name for p in source_files(directory)] == ["config.json", "params.safetensors"]


def test_gemma_scope_2_encodes_as_its_jumprelu_without_centring(tmp_path):
    directory, tensors = write_gemmascope2(tmp_path / "g")
    decoder = SparseAutoencoderEncoder(weights=str(directory))
    x = np.random.default_rng(1).standard_normal((40, D_IN)).astype(np.float32)
    pre = x.astype(np.float64) @ tensors["w_enc"] + tensors["b_enc"]  # SAELens' Gemma 3 loader: no b_dec
    expected = [np.flatnonzero((pre_row > threshold) & (pre_row > 0))
                for pre_row, threshold in zip(pre, [tensors["threshold"]] * len(pre), strict=True)]
    got = decoder.decode(decoder.own_dictionary(), x, k=3, noise=0.0)
    assert [list(row) for row in got] == [list(row) for row in expected]


@pytest.mark.parametrize(("change", "fragment"), [
    ({"hf_hook_point_out": "model.layers.7.mlp.output"}, "a transcoder"),
    ({"architecture": "topk"}, "architecture 'topk' is not supported"),
])
def test_gemma_scope_2_transcoders_and_other_architectures_are_refused(tmp_path, change, fragment):
    directory, _ = write_gemmascope2(tmp_path / "t", **change)
    with pytest.raises(WeightsError, match=fragment):
        load_sae(directory)


def test_gemma_scope_2_affine_skip_connection_is_a_transcoder(tmp_path):
    directory, tensors = write_gemmascope2(tmp_path / "t")
    skip = np.eye(D_IN, dtype=np.float32)
    save(directory / "params.safetensors", {**tensors, "affine_skip_connection": skip})
    with pytest.raises(WeightsError, match="affine_skip_connection"):
        load_sae(directory)


# --------------------------------------------------------- SAELens matching pursuit


def reference_matching_pursuit(x: np.ndarray, W_dec: np.ndarray, threshold: float, steps: int | None,
                               stop_on_duplicate_support: bool) -> np.ndarray:
    """SAELens' ``_encode_matching_pursuit`` for one signal, written out step by step."""
    residual = x.astype(np.float64).copy()
    rows = W_dec.astype(np.float64)
    codes = np.zeros(rows.shape[0])
    before = codes != 0
    for _ in range(rows.shape[1] if steps is None else steps):
        correlations = [max(float(residual @ row), 0.0) for row in rows]
        pick = int(np.argmax(correlations))  # the first of ties, as torch.max
        value = max(float(residual @ rows[pick]), 0.0)
        codes[pick] += value
        residual = residual - value * rows[pick]
        support = codes != 0
        done = bool(stop_on_duplicate_support and np.array_equal(support, before))
        before = support
        if threshold > 0 and np.linalg.norm(residual) < threshold:
            done = True
        if done:
            break
    return codes


def mp_sae(tmp_path: Path, seed: int = 0, **config: object) -> tuple[Path, dict[str, np.ndarray]]:
    # An MP-SAE is tied: SAELens saves its decoder and decoder bias only.
    rng = np.random.default_rng(seed)
    tensors = {"W_dec": unit_rows(rng, D_SAE, D_IN), "b_dec": rng.normal(0, 0.2, D_IN).astype(np.float32)}
    settings: dict[str, object] = {"architecture": "matching_pursuit", "residual_threshold": 0.01,
                                   "max_iterations": None, "stop_on_duplicate_support": True}
    settings.update(config)
    return write_saelens(tmp_path / f"mp{seed}", tensors, **settings), tensors


def test_a_matching_pursuit_sae_is_read_as_tied(tmp_path):
    directory, tensors = mp_sae(tmp_path)
    sae = load_sae(directory)
    assert sae.activation == "matching_pursuit" and sae.residual_threshold == 0.01
    assert sae.max_iterations is None and sae.stop_on_duplicate_support
    np.testing.assert_array_equal(sae.W_enc, tensors["W_dec"].T)
    np.testing.assert_array_equal(sae.b_enc, np.zeros(D_SAE, np.float32))


@pytest.mark.parametrize("config", [
    {},
    {"residual_threshold": 0.5},
    {"residual_threshold": 0.0, "max_iterations": 3},
    {"stop_on_duplicate_support": False, "max_iterations": 5},
])
def test_the_matching_pursuit_encoder_is_saelens_pursuit(tmp_path, config):
    directory, tensors = mp_sae(tmp_path, **config)
    sae = load_sae(directory)
    x = np.random.default_rng(2).standard_normal((30, D_IN))
    centred = x - tensors["b_dec"]
    got = matching_pursuit_codes(centred, tensors["W_dec"], sae.residual_threshold, sae.max_iterations,
                                 sae.stop_on_duplicate_support)
    expected = np.stack([reference_matching_pursuit(row, tensors["W_dec"], sae.residual_threshold,
                                                    sae.max_iterations, sae.stop_on_duplicate_support)
                         for row in centred])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    decoder = SparseAutoencoderEncoder(weights=str(directory))
    sets = decoder.decode(decoder.own_dictionary(), x.astype(np.float32), k=2, noise=0.0)
    expected_sets = [np.flatnonzero(row) for row in np.stack([
        reference_matching_pursuit(row, tensors["W_dec"], sae.residual_threshold, sae.max_iterations,
                                   sae.stop_on_duplicate_support)
        for row in x.astype(np.float32) - tensors["b_dec"]])]
    assert [list(s) for s in sets] == [list(s) for s in expected_sets]


def test_matching_pursuit_reads_an_orthonormal_code_back_exactly(tmp_path):
    # On orthonormal codewords every step removes one active codeword exactly; the residual
    # then vanishes below the threshold and the support is the active set.
    basis = np.linalg.qr(np.random.default_rng(4).standard_normal((D_IN, D_IN)))[0].T.astype(np.float32)
    directory = write_saelens(tmp_path / "ortho", {"W_dec": basis, "b_dec": np.zeros(D_IN, np.float32)},
                              d_sae=D_IN, architecture="matching_pursuit", residual_threshold=1e-3)
    decoder = SparseAutoencoderEncoder(weights=str(directory))
    dictionary = decoder.own_dictionary()
    subsets, signals = signals_of(dictionary, k=3)
    decoded = decoder.decode(dictionary, signals, k=3, noise=0.0)
    assert all(np.array_equal(got, truth) for got, truth in zip(decoded, subsets, strict=True))


def test_a_matching_pursuit_sae_without_b_dec_on_its_input_adds_none_to_its_signals(tmp_path):
    directory, _ = mp_sae(tmp_path, apply_b_dec_to_input=False)
    _, offset = load_dictionary_file(directory)
    assert offset is not None and not offset.any()
    centred, with_b_dec = mp_sae(tmp_path, seed=1)
    _, offset = load_dictionary_file(centred)
    np.testing.assert_array_equal(offset, with_b_dec["b_dec"])


# ------------------------------------------------------------------- gated SAEs


def test_a_gated_sae_encodes_as_saelens_gated_encoder(tmp_path):
    rng = np.random.default_rng(5)
    tensors = {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
               "W_dec": unit_rows(rng, D_SAE, D_IN), "b_dec": rng.normal(0, 0.1, D_IN).astype(np.float32),
               "b_gate": rng.normal(0, 0.5, D_SAE).astype(np.float32),
               "b_mag": rng.normal(0, 0.5, D_SAE).astype(np.float32),
               "r_mag": rng.normal(0, 0.3, D_SAE).astype(np.float32)}
    directory = write_saelens(tmp_path / "gated", tensors, architecture="gated")
    sae = load_sae(directory)
    assert sae.activation == "gated"
    np.testing.assert_array_equal(sae.b_enc, tensors["b_gate"])
    x = rng.standard_normal((50, D_IN)).astype(np.float32)
    centred = x.astype(np.float64) - tensors["b_dec"]
    gate = centred @ tensors["W_enc"] + tensors["b_gate"] > 0
    magnitude = np.maximum(centred @ (tensors["W_enc"] * np.exp(tensors["r_mag"].astype(np.float64)))
                           + tensors["b_mag"], 0)
    expected = [np.flatnonzero(row) for row in gate * magnitude]
    decoder = SparseAutoencoderEncoder(weights=str(directory))
    got = decoder.decode(decoder.own_dictionary(), x, k=3, noise=0.0)
    assert [list(row) for row in got] == [list(row) for row in expected]
    assert any(len(row) for row in got) and any(row.size < D_SAE for row in got)


def test_a_gated_sae_without_its_magnitude_tensors_is_refused(tmp_path):
    rng = np.random.default_rng(6)
    tensors = {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
               "W_dec": unit_rows(rng, D_SAE, D_IN), "b_dec": np.zeros(D_IN, np.float32),
               "b_gate": np.zeros(D_SAE, np.float32)}
    directory = write_saelens(tmp_path / "g", tensors, architecture="gated")
    with pytest.raises(WeightsError, match="key 'b_mag' is missing"):
        load_sae(directory)


# ------------------------------------------- decoders of SAEs whose encoder is unsupported


@pytest.mark.parametrize("config", [{"architecture": "batchtopk", "k": 4},
                                    {"architecture": "standard", "normalize_activations": "layer_norm"}])
def test_the_dictionary_of_an_sae_whose_encoder_is_unsupported_is_its_decoder(tmp_path, config):
    rng = np.random.default_rng(7)
    tensors = {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
               "b_enc": np.zeros(D_SAE, np.float32), "W_dec": unit_rows(rng, D_SAE, D_IN),
               "b_dec": rng.normal(0, 0.1, D_IN).astype(np.float32)}
    directory = write_saelens(tmp_path / "u", tensors, **config)
    with pytest.raises(WeightsError):
        load_sae(directory)  # the encoder cannot be run...
    matrix, offset = load_dictionary_file(directory)  # ...but the decoder is a dictionary
    np.testing.assert_array_equal(matrix, tensors["W_dec"].T)
    np.testing.assert_array_equal(offset, tensors["b_dec"])


def test_finetuning_scaling_factor_under_its_own_key_is_refused_as_saelens_refuses_it(tmp_path):
    rng = np.random.default_rng(8)
    tensors = {"W_enc": rng.standard_normal((D_IN, D_SAE)).astype(np.float32),
               "b_enc": np.zeros(D_SAE, np.float32), "W_dec": unit_rows(rng, D_SAE, D_IN),
               "b_dec": np.zeros(D_IN, np.float32),
               "finetuning_scaling_factor": rng.uniform(0.5, 2, D_SAE).astype(np.float32)}
    directory = write_saelens(tmp_path / "f", tensors, architecture="standard",
                              finetuning_scaling_factor=True)
    for load in (load_sae, load_dictionary_file):
        with pytest.raises(WeightsError, match="rename the key to scaling_factor"):
            load(directory)


# ----------------------------------------------------- reading a dictionary file: format and key


def run_cli(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "superposition_harness.cli", *arguments],
                          capture_output=True,
                          text=True, timeout=600, check=False, cwd=tmp_path)


def test_run_reads_the_array_a_key_names_and_records_it(tmp_path):
    rng = np.random.default_rng(9)
    matrix = unit_rows(rng, D_SAE, D_IN).T
    np.savez(tmp_path / "two.npz", F=matrix, G=rng.standard_normal((3, 3)))
    refused = run_cli(tmp_path, "run", "--dictionary", "two.npz", "--plugin", "mp", "--no-store")
    assert refused.returncode == 2 and "--key NAME" in refused.stderr
    result = run_cli(tmp_path, "run", "--dictionary", "two.npz", "--key", "F", "--plugin", "mp", "--trials",
                     "128", "--json", "--results", "store")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["problem"]["dictionary_key"] == "F" and "dictionary_format" not in record["problem"]
    assert record["problem"]["dictionary_sha256"] == fingerprint(tmp_path / "two.npz", key="F")
    verified = run_cli(tmp_path, "verify", "store", "--sample", "16", "--seed", "1")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_gap_applies_its_format_to_the_dictionary_too(tmp_path):
    # A directory holding both a SAELens and a sparsify SAE: detection cannot choose.
    rng = np.random.default_rng(10)
    W_enc, W_dec = rng.standard_normal((D_IN, D_SAE)).astype(np.float32), unit_rows(rng, D_SAE, D_IN)
    b_enc, b_dec = np.zeros(D_SAE, np.float32), np.zeros(D_IN, np.float32)
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    directory = write_saelens(tmp_path / "both", tensors,
                              architecture="topk", k=3)
    save(directory / "sae.safetensors", {"encoder.weight": W_enc.T, "encoder.bias": b_enc, "W_dec": W_dec,
                                         "b_dec": b_dec})
    refused = run_cli(tmp_path, "gap", str(directory), "--plugin", "mp", "--no-store")
    assert refused.returncode == 2 and "--format" in refused.stderr
    result = run_cli(tmp_path, "gap", str(directory), "--format", "saelens", "--plugin", "mp", "--no-store",
                     "--trials", "128", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["problem"]["dictionary_format"] == "saelens"
    assert record["problem"]["dictionary_sha256"] == fingerprint(directory, "saelens")


def test_a_key_and_a_format_together_are_refused(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4, dtype=np.float32))
    with pytest.raises(WeightsError, match="give one of them"):
        load_dictionary_file(tmp_path / "m.npy", format="plain", key="x")


def test_a_config_names_the_key_and_a_bad_format_is_one_sentence(tmp_path):
    rng = np.random.default_rng(11)
    np.savez(tmp_path / "two.npz", F=unit_rows(rng, D_SAE, D_IN).T, G=np.ones((2, 2)))
    (tmp_path / "sweep.toml").write_text('decoders = ["topk"]\n[problem]\ndictionary = "two.npz"\n'
                                         'dictionary_key = "F"\n[search]\ntrials = 128\n')
    result = run_cli(tmp_path, "run", "--config", "sweep.toml", "--no-store", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["problem"]["dictionary_key"] == "F"
    (tmp_path / "bad.toml").write_text('decoders = ["topk"]\n[problem]\ndictionary = "two.npz"\n'
                                       'dictionary_format = "hdf5"\n')
    refused = run_cli(tmp_path, "run", "--config", "bad.toml", "--no-store")
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1 and "format 'hdf5' is not supported" in lines[0], lines


def test_how_a_file_is_read_belongs_only_to_a_fixed_dictionary():
    from superposition_harness.problem import ProblemError
    with pytest.raises(ProblemError, match="how it is read"):
        Problem(n=64, k=2, dictionary_key="F")


def gated_sae(tmp_path: Path) -> Path:
    rng = np.random.default_rng(12)
    W_dec = unit_rows(rng, D_SAE, D_IN)
    tensors = {"W_enc": W_dec.T.copy(), "W_dec": W_dec, "b_dec": np.zeros(D_IN, np.float32),
               "b_gate": np.full(D_SAE, -0.5, np.float32), "b_mag": np.zeros(D_SAE, np.float32),
               "r_mag": np.zeros(D_SAE, np.float32)}
    return write_saelens(tmp_path / "gated_sae", tensors, architecture="gated")


@pytest.mark.parametrize("build", [lambda tmp: write_gemmascope2(tmp / "gs2")[0], lambda tmp: mp_sae(tmp)[0],
                                   gated_sae], ids=["gemma-scope-2", "matching-pursuit", "gated"])
def test_gap_measures_each_kind_of_encoder_on_its_own_dictionary(tmp_path, build):
    directory = build(tmp_path)
    result = run_cli(tmp_path, "gap", str(directory), "--plugin", f"sae[weights={directory}]",
                     "--plugin", "mp", "--trials", "128", "--no-store", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["decoder"] for r in records] == ["sae", "mp"]
    assert all(r["status"] == "ok" and r["problem"]["offset"] == "b_dec" for r in records)
