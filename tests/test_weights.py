"""Reading SAE weights and dictionary matrices: every format, dtype and malformed case."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from superposition_harness import MatrixDictionary
from superposition_harness.tensors import MAX_HEADER_BYTES, WeightsError, read_safetensors
from superposition_harness.weights import SAEWeights, detect_format, load_matrix, load_sae

D_IN, D_SAE = 6, 10
RELU_SIDECAR = 'activation = "relu"\napply_b_dec_to_input = true\n'

# The largest relative rounding error of each dtype (half an ulp at 1).
PRECISION = {"F32": 0.0, "F16": 2.0**-11, "BF16": 2.0**-8, "F64": 0.0}


# ------------------------------------------------------------------- writers


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns, rounding to nearest with ties to even (finite inputs)."""
    bits = np.ascontiguousarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values a file of ``dtype`` holds for ``values`` (what a loader must return)."""
    if dtype == "BF16":
        return (bf16_bits(values).astype(np.uint32) << 16).view(np.float32)
    numpy_dtype = {"F32": np.float32, "F16": np.float16, "F64": np.float64}[dtype]
    return np.asarray(values, dtype=numpy_dtype).astype(np.float32)


def encode(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":
        return bf16_bits(values).tobytes()
    little_endian = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I32": "<i4"}[dtype]
    return np.ascontiguousarray(values, dtype=little_endian).tobytes()


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32",
                      header_patch: dict | None = None) -> Path:
    """A safetensors file: 8-byte little-endian header length, JSON header, data buffer."""
    header: dict = {"__metadata__": {"format": "np"}}
    buffer = b""
    for key, values in tensors.items():
        data = encode(values, dtype)
        header[key] = {"dtype": dtype, "shape": list(np.shape(values)),
                       "data_offsets": [len(buffer), len(buffer) + len(data)]}
        buffer += data
    for key, patch in (header_patch or {}).items():
        header[key].update(patch)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the specification pads the header to 8 bytes
    path.write_bytes(len(text).to_bytes(8, "little") + text + buffer)
    return path


def random_sae(seed: int = 0, d_in: int = D_IN, d_sae: int = D_SAE) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W_enc": rng.standard_normal((d_in, d_sae)).astype(np.float32),
        "b_enc": rng.standard_normal(d_sae).astype(np.float32),
        "W_dec": rng.standard_normal((d_sae, d_in)).astype(np.float32),
        "b_dec": rng.standard_normal(d_in).astype(np.float32),
        "threshold": rng.uniform(0.1, 1.0, d_sae).astype(np.float32),
    }


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **cast("dict[str, Any]", arrays))  # NumPy's type hints would read ** as allow_pickle


def write_saelens(directory: Path, sae: dict[str, np.ndarray], config: dict, dtype: str = "F32",
                  keys: tuple[str, ...] = ("W_enc", "b_enc", "W_dec", "b_dec")) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cfg.json").write_text(json.dumps(config))
    write_safetensors(directory / "sae_weights.safetensors", {key: sae[key] for key in keys}, dtype)
    return directory


def saelens_config(architecture: str | None = "standard", **extra: object) -> dict:
    config: dict = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
                    "apply_b_dec_to_input": True, "normalize_activations": "none",
                    "metadata": {"sae_lens_version": "6.5.0"}}
    if architecture is not None:
        config["architecture"] = architecture
    config.update(extra)
    return config


def write_sparsify(directory: Path, sae: dict[str, np.ndarray], dtype: str = "F32", **config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {"activation": "topk", "expansion_factor": 32, "normalize_decoder": True, "num_latents": D_SAE,
           "k": 3, "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": D_IN}
    cfg.update(config)
    (directory / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"encoder.weight": sae["W_enc"].T, "encoder.bias": sae["b_enc"],
               "W_dec": sae["W_dec"], "b_dec": sae["b_dec"]}
    write_safetensors(directory / "sae.safetensors", tensors, dtype)
    return directory


def write_plain(path: Path, sae: dict[str, np.ndarray], sidecar: str, dtype: str = "F32",
                keys: tuple[str, ...] = ("W_enc", "b_enc", "W_dec", "b_dec"),
                sidecar_suffix: str = ".toml") -> Path:
    tensors = {key: sae[key] for key in keys}
    if path.suffix == ".npz":
        save_npz(path, tensors)
    else:
        write_safetensors(path, tensors, dtype)
    Path(f"{path}{sidecar_suffix}").write_text(sidecar)
    return path


def assert_sae_equal(weights: SAEWeights, sae: dict[str, np.ndarray], dtype: str = "F32") -> None:
    for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
        got = getattr(weights, key)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, as_dtype(sae[key], dtype))
        np.testing.assert_allclose(got, sae[key], rtol=PRECISION[dtype], atol=0)


@contextmanager
def raises_weights_error(path: Path | str, *fragments: str) -> Iterator[None]:
    """Expect a WeightsError whose message is one line, starts with ``path`` and ends in a period."""
    with pytest.raises(WeightsError) as caught:
        yield
    message = str(caught.value)
    assert "\n" not in message and message.endswith("."), message
    assert message.startswith(f"{path}: "), (message, str(path))
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ------------------------------------------------------------------ safetensors


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64"])
def test_safetensors_round_trip_in_each_dtype(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(1)
    values = {"a": rng.standard_normal((3, 5)).astype(np.float32),
              "b": rng.standard_normal(7).astype(np.float32), "empty": np.zeros((0, 4), np.float32)}
    path = write_safetensors(tmp_path / "t.safetensors", values, dtype)
    read = read_safetensors(path)
    assert set(read) == {"a", "b", "empty"}
    for key, original in values.items():
        assert read[key].dtype == np.float32 and read[key].shape == original.shape
        np.testing.assert_array_equal(read[key], as_dtype(original, dtype))
        np.testing.assert_allclose(read[key], original, rtol=PRECISION[dtype], atol=0)
    assert set(read_safetensors(path, ["b"])) == {"b"}


def test_bf16_is_decoded_from_the_raw_bits(tmp_path: Path) -> None:
    bits = np.array([0x3F80, 0xC000, 0x3EAB, 0x0000, 0x8000, 0x7F7F], dtype="<u2")
    path = tmp_path / "bits.safetensors"
    header = json.dumps({"x": {"dtype": "BF16", "shape": [6], "data_offsets": [0, 12]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + bits.tobytes())
    got = read_safetensors(path)["x"]
    expected = np.array([1.0, -2.0, 0.333984375, 0.0, -0.0, 3.3895313892515355e38], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert np.signbit(got[4])


def test_bf16_writer_rounds_to_nearest_even() -> None:
    # 1 + 2^-8 lies halfway between bfloat16 neighbours 1 and 1 + 2^-7: ties go to the even one, 1.
    values = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, 1 + 2.0**-8 + 2.0**-20], dtype=np.float32)
    np.testing.assert_array_equal(as_dtype(values, "BF16"), [1.0, 1 + 2.0**-6, 1 + 2.0**-7])


def test_files_written_by_the_safetensors_package_are_read_alike(tmp_path: Path) -> None:
    numpy_api = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(2)
    tensors: dict[str, np.ndarray] = {"f32": rng.standard_normal((4, 3)).astype(np.float32),
               "f16": rng.standard_normal(5).astype(np.float16),
               "f64": rng.standard_normal((2, 2))}
    path = tmp_path / "official.safetensors"
    numpy_api.save_file(tensors, str(path))
    read = read_safetensors(path)
    for key, original in tensors.items():
        np.testing.assert_array_equal(read[key], original.astype(np.float32))


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "t.safetensors", {"a": np.ones((4, 4), np.float32)})
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with raises_weights_error(path, "'a'", "truncated"):
        read_safetensors(path)
    path.write_bytes(data[:5])
    with raises_weights_error(path, "truncated"):
        read_safetensors(path)
    path.write_bytes(data[:30])  # inside the header
    with raises_weights_error(path, "truncated"):
        read_safetensors(path)


def test_oversized_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes((MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b"{}")
    with raises_weights_error(path, "header length", "exceeds"):
        read_safetensors(path)
    path.write_bytes((2**63).to_bytes(8, "little"))
    with raises_weights_error(path, "header length"):
        read_safetensors(path)


@pytest.mark.parametrize(("patch", "fragment"), [
    ({"data_offsets": [0, 10_000]}, "beyond the end"),
    ({"data_offsets": [8, 4]}, "invalid data_offsets"),
    ({"data_offsets": [0, -4]}, "invalid data_offsets"),
    ({"shape": [3, 3]}, "need 36"),
    ({"shape": [2, -8]}, "invalid shape"),
    ({"dtype": 7}, "no valid dtype"),
])
def test_bad_header_entries_are_refused(tmp_path: Path, patch: dict, fragment: str) -> None:
    path = write_safetensors(tmp_path / "t.safetensors", {"a": np.ones((2, 8), np.float32)},
                             header_patch={"a": patch})
    with raises_weights_error(path, "'a'", fragment):
        read_safetensors(path)


def test_overlapping_tensors_are_refused(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "t.safetensors",
                             {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)},
                             header_patch={"b": {"data_offsets": [8, 24]}, "a": {"data_offsets": [0, 16]}})
    with raises_weights_error(path, "'a'", "'b'", "overlap"):
        read_safetensors(path)


@pytest.mark.parametrize(("header", "fragment"), [
    (b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe", "not valid JSON")])
def test_invalid_headers_are_refused(tmp_path: Path, header: bytes, fragment: str) -> None:
    path = tmp_path / "t.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with raises_weights_error(path, fragment):
        read_safetensors(path)


def test_unsupported_dtype_is_refused_when_read(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "t.safetensors", {"n": np.arange(4)}, "I32")
    with raises_weights_error(path, "'n'", "dtype I32", "not supported"):
        read_safetensors(path)


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "t.safetensors", {"a": np.ones(2, np.float32)})
    with raises_weights_error(path, "key 'zz' is missing", "holds: a"):
        read_safetensors(path, ["zz"])


# ------------------------------------------------------------------- SAELens


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk"])
def test_saelens_round_trip(tmp_path: Path, architecture: str, dtype: str) -> None:
    sae = random_sae(3)
    keys = ("W_enc", "b_enc", "W_dec", "b_dec") + (("threshold",) if architecture == "jumprelu" else ())
    extra = {"k": 4} if architecture == "topk" else {}
    directory = write_saelens(tmp_path / "sae", sae, saelens_config(architecture, **extra), dtype, keys)
    weights = load_sae(directory)
    assert weights.format == "saelens" and weights.path == directory
    assert weights.activation == {"standard": "relu", "jumprelu": "jumprelu", "topk": "topk"}[architecture]
    assert weights.k == (4 if architecture == "topk" else None)
    assert weights.apply_b_dec_to_input is True
    assert (weights.d_in, weights.d_sae) == (D_IN, D_SAE)
    assert_sae_equal(weights, sae, dtype)
    if architecture == "jumprelu":
        assert weights.threshold is not None
        np.testing.assert_array_equal(weights.threshold, as_dtype(sae["threshold"], dtype))
    else:
        assert weights.threshold is None


def test_saelens_pre_6_relu_config_uses_the_old_defaults(tmp_path: Path) -> None:
    # Before 6.0: no architecture, activation_fn_str, a bool normalize_activations, and
    # apply_b_dec_to_input absent (SAELens's default: true).
    config = {"d_in": D_IN, "d_sae": D_SAE, "activation_fn_str": "relu", "activation_fn_kwargs": {},
              "normalize_activations": False, "hook_point": "blocks.8.hook_resid_pre", "dtype": "float32"}
    weights = load_sae(write_saelens(tmp_path / "old", random_sae(4), config))
    assert (weights.activation, weights.k, weights.apply_b_dec_to_input) == ("relu", None, True)


def test_saelens_pre_6_topk_config_reads_k_from_activation_fn_kwargs(tmp_path: Path) -> None:
    config = {"d_in": D_IN, "d_sae": D_SAE, "architecture": "standard", "activation_fn_str": "topk",
              "activation_fn_kwargs": {"k": 5}, "apply_b_dec_to_input": False,
              "normalize_activations": "none"}
    weights = load_sae(write_saelens(tmp_path / "old", random_sae(5), config, "BF16"))
    assert (weights.activation, weights.k, weights.apply_b_dec_to_input) == ("topk", 5, False)


def test_saelens_unsupported_architecture_message(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "g", random_sae(), saelens_config("batchtopk"))
    config = directory / "cfg.json"
    with pytest.raises(WeightsError) as caught:
        load_sae(directory)
    assert str(caught.value) == (f"{config}: architecture 'batchtopk' is not supported "
                                 "(supported: standard, jumprelu, topk, gated, matching_pursuit).")


@pytest.mark.parametrize(("config", "fragment"), [
    (saelens_config(normalize_activations="expected_average_only_in"), "normalize_activations"),
    (saelens_config(normalize_activations="layer_norm"), "normalize_activations 'layer_norm'"),
    (saelens_config(None, normalize_activations=True), "normalize_activations true"),
    (saelens_config(None, activation_fn_str="tanh-relu"), "activation_fn_str 'tanh-relu'"),
    (saelens_config("topk"), "k is missing"),
    (saelens_config("topk", k=2.5), "k must be a positive integer"),
    (saelens_config("topk", k=0), "k must be a positive integer"),
    (saelens_config(apply_b_dec_to_input="yes"), "apply_b_dec_to_input must be true or false"),
    (saelens_config(d_sae=99), "d_sae is 99 but W_dec"),
    (saelens_config(d_in=5), "d_in is 5 but b_dec"),
    (saelens_config("jumprelu", rescale_acts_by_decoder_norm=True), "rescale_acts_by_decoder_norm"),
])
def test_saelens_unsupported_or_inconsistent_configs_are_refused(tmp_path: Path, config: dict,
                                                                 fragment: str) -> None:
    directory = write_saelens(tmp_path / "s", random_sae(), config,
                              keys=("W_enc", "b_enc", "W_dec", "b_dec", "threshold"))
    with raises_weights_error(directory / "cfg.json", fragment):
        load_sae(directory)


def test_saelens_k_larger_than_d_sae_is_refused(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "s", random_sae(), saelens_config("topk", k=D_SAE + 1))
    with raises_weights_error(directory, "k must be an integer from 1 to d_sae = 10"):
        load_sae(directory)


def test_saelens_jumprelu_without_threshold_is_refused(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "s", random_sae(), saelens_config("jumprelu"))
    with raises_weights_error(directory / "sae_weights.safetensors", "key 'threshold' is missing"):
        load_sae(directory)


def test_saelens_rescale_acts_by_decoder_norm_is_folded(tmp_path: Path) -> None:
    sae = random_sae(6)
    config = saelens_config("topk", k=3, rescale_acts_by_decoder_norm=True)
    weights = load_sae(write_saelens(tmp_path / "r", sae, config))
    norms = np.linalg.norm(sae["W_dec"].astype(np.float64), axis=1)
    x = np.random.default_rng(7).standard_normal((5, D_IN))
    original = ((x - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"]) * norms
    folded = (x - weights.b_dec) @ weights.W_enc + weights.b_enc
    np.testing.assert_allclose(folded, original, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(weights.W_dec, axis=1), 1.0, rtol=1e-6)


def test_saelens_scaling_factor_is_folded_into_the_decoder(tmp_path: Path) -> None:
    sae = random_sae(8)
    sae["scaling_factor"] = np.linspace(0.5, 2.0, D_SAE).astype(np.float32)
    keys = ("W_enc", "b_enc", "W_dec", "b_dec", "scaling_factor")
    weights = load_sae(write_saelens(tmp_path / "f", sae, saelens_config(finetuning_scaling_factor=True),
                                     keys=keys))
    np.testing.assert_allclose(weights.W_dec, sae["W_dec"] * sae["scaling_factor"][:, None], rtol=1e-6)
    with raises_weights_error(tmp_path / "g" / "cfg.json", "finetuning_scaling_factor is false"):
        load_sae(write_saelens(tmp_path / "g", sae, saelens_config(), keys=keys))
    sae["scaling_factor"] = np.ones(D_SAE, np.float32)  # all ones: nothing to fold
    assert_sae_equal(load_sae(write_saelens(tmp_path / "h", sae, saelens_config(), keys=keys)), sae)


# ------------------------------------------------------------------ orientation


def test_transposed_matrices_are_recognised_from_the_bias_sizes(tmp_path: Path) -> None:
    sae = random_sae(9)
    stored = dict(sae, W_enc=sae["W_enc"].T.copy(), W_dec=sae["W_dec"].T.copy())
    weights = load_sae(write_saelens(tmp_path / "t", stored, saelens_config()))
    assert_sae_equal(weights, sae)
    assert weights.W_enc.flags.c_contiguous and weights.W_dec.flags.c_contiguous


def test_square_sae_is_read_in_the_documented_layout(tmp_path: Path) -> None:
    sae = random_sae(10, d_in=5, d_sae=5)
    config = saelens_config(d_in=5, d_sae=5)
    assert_sae_equal(load_sae(write_saelens(tmp_path / "sq", sae, config)), sae)
    sparsify = load_sae(write_sparsify(tmp_path / "sp", sae, num_latents=5, d_in=5))
    assert_sae_equal(sparsify, sae)  # sparsify's square encoder.weight is still (d_sae, d_in)


@pytest.mark.parametrize(("key", "shape"), [("W_enc", (D_IN, D_SAE + 1)), ("W_dec", (D_SAE, D_IN - 1)),
                                            ("W_enc", (D_IN * D_SAE,)), ("b_enc", (D_SAE, 1))])
def test_wrong_shapes_are_refused(tmp_path: Path, key: str, shape: tuple[int, ...]) -> None:
    sae = random_sae(11)
    sae[key] = np.ones(shape, np.float32)
    directory = write_saelens(tmp_path / "w", sae, saelens_config())
    with raises_weights_error(directory / "sae_weights.safetensors", key, "has shape"):
        load_sae(directory)


# ------------------------------------------------------------- other formats


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_sparsify_round_trip(tmp_path: Path, dtype: str) -> None:
    sae = random_sae(12)
    weights = load_sae(write_sparsify(tmp_path / "layers.6", sae, dtype, k=4))
    assert weights.format == "sparsify"
    assert (weights.activation, weights.k, weights.apply_b_dec_to_input) == ("topk", 4, True)
    assert weights.threshold is None
    assert_sae_equal(weights, sae, dtype)


@pytest.mark.parametrize(("config", "fragment"), [
    ({"activation": "groupmax"}, "activation 'groupmax' is not supported (supported: topk)"),
    ({"transcode": True}, "transcode true is not supported"),
    ({"num_latents": 64}, "num_latents is 64"),
    ({"k": None}, "k must be a positive integer"),
])
def test_sparsify_unsupported_configs_are_refused(tmp_path: Path, config: dict, fragment: str) -> None:
    directory = write_sparsify(tmp_path / "s", random_sae(), **config)
    with raises_weights_error(directory / "cfg.json", fragment):
        load_sae(directory)


def test_gemmascope_round_trip(tmp_path: Path) -> None:
    sae = random_sae(13)
    directory = tmp_path / "layer_20" / "width_16k" / "average_l0_71"
    directory.mkdir(parents=True)
    save_npz(directory / "params.npz", sae)
    for path in (directory, directory / "params.npz"):
        weights = load_sae(path)
        assert weights.format == "gemmascope" and weights.path == directory / "params.npz"
        assert (weights.activation, weights.k, weights.apply_b_dec_to_input) == ("jumprelu", None, False)
        assert_sae_equal(weights, sae)
        assert weights.threshold is not None
        np.testing.assert_array_equal(weights.threshold, sae["threshold"])


def test_gemmascope_accepts_lower_case_matrix_names(tmp_path: Path) -> None:
    sae = random_sae(14)
    path = tmp_path / "params.npz"
    np.savez(path, w_enc=sae["W_enc"], w_dec=sae["W_dec"], b_enc=sae["b_enc"], b_dec=sae["b_dec"],
             threshold=sae["threshold"])
    assert_sae_equal(load_sae(path), sae)


def test_gemmascope_missing_threshold_is_refused(tmp_path: Path) -> None:
    sae = random_sae(15)
    path = tmp_path / "params.npz"
    save_npz(path, {key: sae[key] for key in ("W_enc", "b_enc", "W_dec", "b_dec")})
    with raises_weights_error(path, "key 'threshold' is missing"):
        load_sae(path)


@pytest.mark.parametrize(("name", "dtype", "suffix"), [("sae.npz", "F32", ".toml"),
                                                       ("sae.safetensors", "BF16", ".json"),
                                                       ("sae.safetensors", "F16", ".toml")])
def test_plain_round_trip(tmp_path: Path, name: str, dtype: str, suffix: str) -> None:
    sae = random_sae(16)
    sidecar = ('activation = "topk"\nk = 3\napply_b_dec_to_input = true\n' if suffix == ".toml"
               else json.dumps({"activation": "topk", "k": 3, "apply_b_dec_to_input": True}))
    path = write_plain(tmp_path / name, sae, sidecar, dtype, sidecar_suffix=suffix)
    weights = load_sae(path)
    assert weights.format == "plain" and weights.path == path
    assert (weights.activation, weights.k, weights.apply_b_dec_to_input) == ("topk", 3, True)
    assert_sae_equal(weights, sae, "F32" if name.endswith(".npz") else dtype)


def test_plain_jumprelu_and_relu(tmp_path: Path) -> None:
    sae = random_sae(17)
    keys = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
    sidecar = 'activation = "jumprelu"\napply_b_dec_to_input = false\n'
    jump = load_sae(write_plain(tmp_path / "j.npz", sae, sidecar, keys=keys))
    assert jump.activation == "jumprelu" and jump.threshold is not None
    relu = load_sae(write_plain(tmp_path / "r.npz", sae, RELU_SIDECAR))
    assert (relu.activation, relu.threshold, relu.k, relu.apply_b_dec_to_input) == ("relu", None, None, True)


@pytest.mark.parametrize(("sidecar", "fragment"), [
    ('activation = "topk"\napply_b_dec_to_input = true\n', "k is missing"),
    ('activation = "relu"\nk = 3\napply_b_dec_to_input = true\n', "k is given but activation is relu"),
    ('activation = "gelu"\napply_b_dec_to_input = true\n', "activation 'gelu' is not supported"),
    ('activation = "relu"\n', "apply_b_dec_to_input is missing"),
    ('apply_b_dec_to_input = true\n', "activation is missing"),
    ('activation = "relu"\napply_b_dec_to_input = true\nlayout = "x"\n', "key 'layout' is not known"),
    ('activation = "relu\n', "not valid TOML"),
])
def test_plain_bad_sidecars_are_refused(tmp_path: Path, sidecar: str, fragment: str) -> None:
    path = write_plain(tmp_path / "p.npz", random_sae(), sidecar)
    with raises_weights_error(f"{path}.toml", fragment):
        load_sae(path)


def test_plain_json_sidecar_must_be_valid(tmp_path: Path) -> None:
    path = write_plain(tmp_path / "p.safetensors", random_sae(), '{"activation": "relu",',
                       sidecar_suffix=".json")
    with raises_weights_error(f"{path}.json", "not valid JSON", "line 1"):
        load_sae(path)


def test_plain_threshold_without_jumprelu_is_refused(tmp_path: Path) -> None:
    path = write_plain(tmp_path / "p.npz", random_sae(), RELU_SIDECAR,
                       keys=("W_enc", "b_enc", "W_dec", "b_dec", "threshold"))
    with raises_weights_error(path, "'threshold' is present", "not jumprelu"):
        load_sae(path)


def test_plain_needs_exactly_one_sidecar(tmp_path: Path) -> None:
    sae = random_sae()
    path = tmp_path / "p.npz"
    save_npz(path, sae)
    with raises_weights_error(path, "sidecar not found", "p.npz.toml"):
        load_sae(path, format="plain")
    Path(f"{path}.toml").write_text(RELU_SIDECAR)
    Path(f"{path}.json").write_text('{"activation": "relu", "apply_b_dec_to_input": true}')
    with raises_weights_error(path, "two sidecars"):
        load_sae(path)


# ------------------------------------------------------------------ detection


def test_detection_and_forced_formats(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "s", random_sae(), saelens_config())
    assert detect_format(directory) == "saelens"
    assert detect_format(directory / "sae_weights.safetensors") == "saelens"
    assert detect_format(directory / "cfg.json") == "saelens"
    assert load_sae(directory / "cfg.json").path == directory
    assert load_sae(directory, format="saelens").format == "saelens"
    with raises_weights_error(directory / "sae.safetensors", "file not found"):
        load_sae(directory, format="sparsify")
    with raises_weights_error(directory / "params.npz", "file not found"):
        load_sae(directory, format="gemmascope")
    with raises_weights_error(directory, "format 'torch' is not supported", "saelens, sparsify"):
        load_sae(directory, format="torch")  # type: ignore[arg-type]


def test_a_path_matching_no_format_names_the_expected_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with raises_weights_error(empty, "no SAE weights", "cfg.json with sae_weights.safetensors (SAELens)",
                              "params.npz (Gemma Scope)", "sidecar (plain)"):
        load_sae(empty)
    other = tmp_path / "weights.npz"
    np.savez(other, a=np.ones(3))
    with raises_weights_error(other, "not a recognised SAE file", "sae.safetensors (sparsify)"):
        load_sae(other)
    with raises_weights_error(tmp_path / "absent", "file not found"):
        load_sae(tmp_path / "absent")


def test_a_directory_of_two_formats_is_refused(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "both", random_sae(), saelens_config())
    save_npz(directory / "params.npz", random_sae())
    with raises_weights_error(directory, "several formats", "saelens, gemmascope"):
        load_sae(directory)
    assert load_sae(directory, format="gemmascope").format == "gemmascope"


# ------------------------------------------------------------ malformed weights


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    sae = random_sae()
    sae["W_dec"][3, 2] = np.nan
    directory = write_saelens(tmp_path / "n", sae, saelens_config(), "BF16")
    with raises_weights_error(directory / "sae_weights.safetensors", "W_dec contains NaN", "(3, 2)"):
        load_sae(directory)


def test_f64_overflowing_float32_is_refused_as_infinite(tmp_path: Path) -> None:
    sae = {key: value.astype(np.float64) for key, value in random_sae().items()}
    sae["b_enc"][4] = 1e300
    directory = write_saelens(tmp_path / "o", sae, saelens_config(), "F64")
    with raises_weights_error(directory / "sae_weights.safetensors", "b_enc contains NaN or infinite values",
                              "index 4"):
        load_sae(directory)


def test_missing_key_in_saelens_weights(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "m", random_sae(), saelens_config(),
                              keys=("W_enc", "W_dec", "b_dec"))
    with raises_weights_error(directory / "sae_weights.safetensors", "key 'b_enc' is missing",
                              "holds: W_dec, W_enc, b_dec"):
        load_sae(directory)


def test_missing_and_invalid_config_files(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "c", random_sae(), saelens_config())
    (directory / "cfg.json").write_text("{'single': quotes}")
    with raises_weights_error(directory / "cfg.json", "not valid JSON"):
        load_sae(directory)
    (directory / "cfg.json").write_text("[]")
    with raises_weights_error(directory / "cfg.json", "JSON object"):
        load_sae(directory)
    (directory / "cfg.json").unlink()
    with raises_weights_error(directory / "cfg.json", "file not found"):
        load_sae(directory, format="saelens")


def test_truncated_weights_file_in_a_saelens_directory(tmp_path: Path) -> None:
    directory = write_saelens(tmp_path / "t", random_sae(), saelens_config())
    weights = directory / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    with raises_weights_error(weights, "truncated"):
        load_sae(directory)


def test_truncated_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.npz"
    save_npz(path, random_sae())
    path.write_bytes(path.read_bytes()[:200])
    with raises_weights_error(path, "cannot be read as an .npz archive"):
        load_sae(path)


def test_npz_member_with_a_corrupt_body_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.npz"
    sae = random_sae()
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in sae.items():
            data = np.lib.format.header_data_from_array_1_0(value)
            body = b"" if key == "W_dec" else value.tobytes()
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array_header_1_0(member, data)
                member.write(body)
    with raises_weights_error(path, "array 'W_dec' is truncated", "240 bytes", "only 0 bytes"):
        load_sae(path)


def test_pickled_arrays_are_refused_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "params.npz"
    sae: dict[str, np.ndarray] = dict(random_sae())
    sae["W_enc"] = np.array([{"evil": 1}], dtype=object)
    save_npz(path, sae)
    with raises_weights_error(path, "array 'W_enc' holds Python objects", "never loaded"):
        load_sae(path)
    pickled = tmp_path / "matrix.npy"
    np.save(pickled, np.array([None, 1], dtype=object), allow_pickle=True)
    with raises_weights_error(pickled, "array holds Python objects (dtype object)"):
        load_matrix(pickled)


def test_complex_arrays_are_a_bad_dtype(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    np.savez(path, m=np.ones((3, 3), np.complex64))
    with raises_weights_error(path, "dtype complex64", "not supported"):
        load_matrix(path)


# -------------------------------------------------------------------- weights


def test_sae_weights_are_read_only_and_briefly_shown(tmp_path: Path) -> None:
    weights = load_sae(write_saelens(tmp_path / "s", random_sae(), saelens_config("topk", k=2)))
    with pytest.raises(ValueError, match="read-only"):
        weights.W_enc[0, 0] = 1.0
    with pytest.raises(AttributeError):
        weights.k = 3  # type: ignore[misc]
    assert repr(weights).startswith("SAEWeights(format='saelens', d_in=6, d_sae=10, activation='topk', k=2,")


def test_sae_weights_built_by_hand_are_validated() -> None:
    sae = random_sae()
    built = SAEWeights(W_enc=sae["W_enc"], b_enc=sae["b_enc"], W_dec=sae["W_dec"], b_dec=sae["b_dec"],
                       threshold=None, activation="relu", k=None, apply_b_dec_to_input=False,
                       format="plain", path=Path("by-hand"))
    assert sae["W_enc"].flags.writeable  # the caller's arrays are left alone
    assert built.decoder_matrix().shape == (D_IN, D_SAE)
    with pytest.raises(WeightsError, match="threshold must be given exactly when the activation is jumprelu"):
        SAEWeights(W_enc=sae["W_enc"], b_enc=sae["b_enc"], W_dec=sae["W_dec"], b_dec=sae["b_dec"],
                   threshold=None, activation="jumprelu", k=None, apply_b_dec_to_input=False,
                   format="plain", path=Path("by-hand"))


# --------------------------------------------------------------------- matrices


def dictionary_matrix(seed: int = 20, d: int = 5, n: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((d, n)).astype(np.float32) * 3.0


def test_load_matrix_from_npy_and_npz(tmp_path: Path) -> None:
    matrix = dictionary_matrix()
    np.save(tmp_path / "f.npy", matrix)
    np.savez(tmp_path / "one.npz", F=matrix)
    np.savez(tmp_path / "two.npz", F=matrix, G=matrix[:, :3].astype(np.float64))
    for loaded in (load_matrix(tmp_path / "f.npy"), load_matrix(tmp_path / "one.npz"),
                   load_matrix(tmp_path / "two.npz", key="F")):
        assert loaded.dtype == np.float32 and loaded.flags.c_contiguous
        np.testing.assert_array_equal(loaded, matrix)  # columns are not normalised here
    np.testing.assert_array_equal(load_matrix(tmp_path / "two.npz", key="G"), matrix[:, :3])
    with raises_weights_error(tmp_path / "two.npz", "holds 2 arrays (F, G)", "with key (--key NAME"):
        load_matrix(tmp_path / "two.npz")
    with raises_weights_error(tmp_path / "two.npz", "key 'H' is missing"):
        load_matrix(tmp_path / "two.npz", key="H")
    with raises_weights_error(tmp_path / "f.npy", "key 'F' does not apply"):
        load_matrix(tmp_path / "f.npy", key="F")


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_load_matrix_from_safetensors(tmp_path: Path, dtype: str) -> None:
    matrix = dictionary_matrix()
    single = write_safetensors(tmp_path / "f.safetensors", {"F": matrix}, dtype)
    several = write_safetensors(tmp_path / "g.safetensors", {"F": matrix, "bias": matrix[0]}, dtype)
    np.testing.assert_array_equal(load_matrix(single), as_dtype(matrix, dtype))
    np.testing.assert_array_equal(load_matrix(several, key="F"), as_dtype(matrix, dtype))


def test_load_matrix_from_every_sae_format(tmp_path: Path) -> None:
    sae = random_sae(21)
    gemma = tmp_path / "gemma"
    gemma.mkdir()
    save_npz(gemma / "params.npz", sae)
    sources = [
        write_saelens(tmp_path / "saelens", sae, saelens_config()),
        write_sparsify(tmp_path / "sparsify", sae),
        gemma, gemma / "params.npz",
        write_plain(tmp_path / "plain.safetensors", sae, RELU_SIDECAR),
    ]
    for source in sources:
        matrix = load_matrix(source)
        assert matrix.shape == (D_IN, D_SAE)
        np.testing.assert_array_equal(matrix, sae["W_dec"].T)
    dictionary = MatrixDictionary(load_matrix(sources[0]))
    np.testing.assert_allclose(dictionary.norms(), 1.0, rtol=1e-6)


def test_load_matrix_with_a_key_reads_an_sae_file_literally(tmp_path: Path) -> None:
    sae = random_sae(22)
    save_npz(tmp_path / "params.npz", sae)
    np.testing.assert_array_equal(load_matrix(tmp_path / "params.npz", key="W_enc"), sae["W_enc"])


def test_load_matrix_refuses_bad_columns_by_index(tmp_path: Path) -> None:
    matrix = dictionary_matrix()
    matrix[2, 6] = np.inf
    np.save(tmp_path / "inf.npy", matrix)
    with raises_weights_error(tmp_path / "inf.npy", "column 6 contains NaN or infinite values"):
        load_matrix(tmp_path / "inf.npy")
    matrix = dictionary_matrix()
    matrix[:, 4] = 0.0
    path = write_safetensors(tmp_path / "zero.safetensors", {"F": matrix}, "BF16")
    with raises_weights_error(path, "'F' column 4 is zero"):
        load_matrix(path)
    sae = random_sae()
    sae["W_dec"][7] = 0.0
    directory = write_saelens(tmp_path / "s", sae, saelens_config())
    with raises_weights_error(directory, "W_dec column 7 is zero"):
        load_matrix(directory)


def test_checks_in_chunks_report_the_same_indices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("superposition_harness.weights._CHECK_CHUNK", 7)
    matrix = dictionary_matrix(d=5, n=9)
    matrix[:, 8] = 0.0
    np.save(tmp_path / "zero.npy", matrix)
    with raises_weights_error(tmp_path / "zero.npy", "column 8 is zero"):
        load_matrix(tmp_path / "zero.npy")
    sae = random_sae()
    sae["W_enc"][4, 9] = -np.inf
    directory = write_saelens(tmp_path / "s", sae, saelens_config())
    with raises_weights_error(directory / "sae_weights.safetensors", "W_enc contains NaN", "(4, 9)"):
        load_sae(directory)


@pytest.mark.parametrize(("values", "fragment"), [(np.ones(4), "expected a non-empty 2-D matrix"),
                                                  (np.ones((2, 2, 2)), "expected a non-empty 2-D matrix"),
                                                  (np.ones((3, 0)), "expected a non-empty 2-D matrix")])
def test_load_matrix_refuses_wrong_shapes(tmp_path: Path, values: np.ndarray, fragment: str) -> None:
    np.save(tmp_path / "m.npy", values)
    with raises_weights_error(tmp_path / "m.npy", fragment):
        load_matrix(tmp_path / "m.npy")


def test_load_matrix_refuses_unknown_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("1,2\n3,4\n")
    with raises_weights_error(tmp_path / "m.csv", "file type .csv is not supported"):
        load_matrix(tmp_path / "m.csv")
    with raises_weights_error(tmp_path / "nope.npy", "file not found"):
        load_matrix(tmp_path / "nope.npy")
    with raises_weights_error(tmp_path, "no SAE weights"):
        load_matrix(tmp_path)
    with open(tmp_path / "renamed.npy", "wb") as handle:  # np.savez would append .npz to the name
        np.savez(handle, a=np.ones((2, 2)))
    with raises_weights_error(tmp_path / "renamed.npy", "is an .npz archive"):
        load_matrix(tmp_path / "renamed.npy")


@pytest.mark.parametrize("layout", ["C", "F", "big-endian", "float16", "int16", "version 2.0", "version 3.0",
                                    "compressed npz"])
def test_npy_and_npz_arrays_are_read_header_first_in_every_layout(tmp_path: Path, layout: str) -> None:
    # The loaders parse .npy headers themselves (never np.load); every layout NumPy writes reads back.
    matrix = dictionary_matrix(seed=23, d=5, n=7)
    stored = {"C": matrix, "F": np.asfortranarray(matrix), "big-endian": matrix.astype(">f4"),
              "float16": matrix.astype(np.float16), "int16": np.round(matrix * 100).astype(np.int16),
              "version 2.0": matrix, "version 3.0": matrix, "compressed npz": matrix}[layout]
    path = tmp_path / "m.npy"
    if layout.startswith("version"):
        version = (2, 0) if layout == "version 2.0" else (3, 0)
        with open(path, "wb") as handle:
            np.lib.format.write_array(handle, stored, version=version)
    else:
        np.save(path, stored)
    expected = stored.astype(np.float32)
    np.testing.assert_array_equal(load_matrix(path), expected)
    archive = tmp_path / "m.npz"
    (np.savez_compressed if layout == "compressed npz" else np.savez)(archive, F=stored)
    np.testing.assert_array_equal(load_matrix(archive), expected)
