"""Hostile and corrupted files: every weight format, the paths a config names, the results store.

Every refusal is one sentence that names the file, never a traceback, and none allocates
more than a few MiB, whatever size a header claims (each weight-file refusal is run
under tracemalloc). Everything random comes from a fixed seed.
"""

from __future__ import annotations

import json
import math
import os
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from superposition_harness.cli import main
from superposition_harness.config import ConfigError, ConfigString, Sweep, apply_config, read_config
from superposition_harness.decoder import Param, parse_params, resolve_params
from superposition_harness.results import ResultStore, StoreError, read_records
from superposition_harness.tensors import WeightsError
from superposition_harness.weights import load_matrix, load_sae
from superposition_harness_builtins.sae import SparseAutoencoderEncoder
from test_weights import (
    RELU_SIDECAR,
    random_sae,
    saelens_config,
    save_npz,
    write_plain,
    write_saelens,
    write_safetensors,
    write_sparsify,
)

#: The most a refusal may allocate (Python and NumPy allocations, as tracemalloc sees them).
ALLOWED_PEAK = 64 << 20

MATRIX = np.random.default_rng(31).standard_normal((8, 16)).astype(np.float32)
SAE = random_sae(32)
SAE_KINDS = ("saelens", "sparsify", "gemmascope", "plain-npz", "plain-safetensors")
KINDS = ("npy", "npz", "safetensors", *SAE_KINDS)
CONTAINER = {"npy": ".npy", "npz": ".npz", "safetensors": ".safetensors", "saelens": ".safetensors",
             "sparsify": ".safetensors", "gemmascope": ".npz", "plain-npz": ".npz",
             "plain-safetensors": ".safetensors"}
#: The name of the matrix each kind stores (the dictionary itself, or the SAE's encoder).
MATRIX_KEY = {"npy": None, "npz": "F", "safetensors": "F", "saelens": "W_enc", "sparsify": "encoder.weight",
              "gemmascope": "W_enc", "plain-npz": "W_enc", "plain-safetensors": "W_enc"}


def build(kind: str, root: Path, arrays: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """A valid file of ``kind`` (with ``arrays`` replacing some of its arrays): the path to
    load, and the data file inside it to corrupt."""
    root.mkdir(parents=True, exist_ok=True)
    if kind in ("npy", "npz", "safetensors"):
        matrix = (arrays or {}).get("F", MATRIX)
        path = root / f"F.{kind}"
        if kind == "npy":
            np.save(path, matrix)
        elif kind == "npz":
            save_npz(path, {"F": matrix})
        else:
            write_safetensors(path, {"F": matrix})
        return path, path
    sae = {**SAE, **(arrays or {})}
    if kind == "saelens":
        directory = write_saelens(root / "saelens", sae, saelens_config())
        return directory, directory / "sae_weights.safetensors"
    if kind == "sparsify":
        directory = write_sparsify(root / "sparsify", sae)
        return directory, directory / "sae.safetensors"
    if kind == "gemmascope":
        (root / "gemma").mkdir(exist_ok=True)
        save_npz(root / "gemma" / "params.npz", sae)
        return root / "gemma", root / "gemma" / "params.npz"
    suffix = ".npz" if kind == "plain-npz" else ".safetensors"
    path = write_plain(root / f"plain{suffix}", sae, RELU_SIDECAR)
    return path, path


def load(kind: str, path: Path, **options: int) -> object:
    if kind in SAE_KINDS:
        return load_sae(path, **options)
    return load_matrix(path, **options)


@contextmanager
def refused(prefix: Path | str, *fragments: str) -> Iterator[None]:
    """Expect one WeightsError sentence starting with ``prefix``, raised within ALLOWED_PEAK bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError) as caught:
            yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".") and "Traceback" not in message, message
    assert message.startswith(str(prefix)), (message, str(prefix))
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert peak < ALLOWED_PEAK, (peak, message)


def one_line_error(capsys: pytest.CaptureFixture[str], status: int, *fragments: str) -> str:
    """The CLI's stderr, checked to be one line without a traceback after exit status 2."""
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def raw_npy(text: bytes, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file whose header is ``text`` (padded as NumPy pads it), with ``data`` after it."""
    width = 2 if version == (1, 0) else 4
    text += b" " * (-(8 + width + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + len(text).to_bytes(width, "little") + text + data


def npy_bytes(header: dict, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file with ``header`` (descr, fortran_order, shape) and ``data`` after it."""
    return raw_npy(repr(header).encode("latin1"), data, version)


def npz_bytes(members: dict[str, bytes]) -> bytes:
    """An .npz archive whose members hold the given raw bytes."""
    import io
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return buffer.getvalue()


def safetensors_bytes(header: dict, data: bytes = b"", length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


def put_matrix(kind: str, path: Path, npy: bytes) -> None:
    """Make ``npy`` the bytes of ``kind``'s matrix: the whole file, or its member of the archive."""
    if CONTAINER[kind] == ".npy":
        path.write_bytes(npy)
        return
    with zipfile.ZipFile(path) as archive:
        members = {name[:-4]: archive.read(name) for name in archive.namelist()}
    members[str(MATRIX_KEY[kind])] = npy
    path.write_bytes(npz_bytes(members))


def patch_safetensors(path: Path, key: str, **entry: object) -> None:
    """Rewrite one tensor's header entry of a safetensors file, keeping its data buffer."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    header[key].update(entry)
    path.write_bytes(safetensors_bytes(header, raw[8 + length:]))


# ------------------------------------------------------------ weight files


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_cut_short_anywhere_is_refused(tmp_path: Path, kind: str) -> None:
    target, data_file = build(kind, tmp_path)
    whole = data_file.read_bytes()
    load(kind, target)  # the uncut file is valid
    cuts = sorted({0, 1, 7, 8, 9, 12, 63, 64, 100, 200, len(whole) // 2, len(whole) - 20, len(whole) - 1})
    for cut in cuts:
        data_file.write_bytes(whole[:cut])
        with refused(target):
            load(kind, target)


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_bytes_are_refused(tmp_path: Path, kind: str) -> None:
    target, data_file = build(kind, tmp_path)
    rng = np.random.default_rng(33)
    magic = {".npy": b"\x93NUMPY\x01\x00", ".npz": b"PK\x03\x04", ".safetensors": (64).to_bytes(8, "little")}
    for size in (3, 100, 5000):
        noise = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        for content in (noise, magic[CONTAINER[kind]] + noise):
            data_file.write_bytes(content)
            with refused(target):
                load(kind, target)


@pytest.mark.parametrize("kind", KINDS)
def test_a_header_length_of_2_to_the_63_is_refused_before_it_is_read(tmp_path: Path, kind: str) -> None:
    target, data_file = build(kind, tmp_path)
    container = CONTAINER[kind]
    if container == ".safetensors":
        data_file.write_bytes((2**63).to_bytes(8, "little") + data_file.read_bytes()[8:])
        with refused(target, "header length 9223372036854775808 bytes exceeds the 104857600 bytes allowed"):
            load(kind, target)
        return
    # A .npy header's length field is 2 bytes (1.0) or 4 (2.0, 3.0): the largest of each is claimed.
    for version, length in (((2, 0), 2**32 - 1), ((3, 0), 2**32 - 1), ((1, 0), 2**16 - 1)):
        width = 2 if version == (1, 0) else 4
        put_matrix(kind, data_file, b"\x93NUMPY" + bytes(version) + length.to_bytes(width, "little") + b"{'d")
        with refused(target, f".npy header of {length} bytes, more than the 10000 bytes allowed"):
            load(kind, target)


@pytest.mark.parametrize("kind", [kind for kind in KINDS if CONTAINER[kind] == ".npz"])
def test_an_archive_claiming_a_huge_central_directory_is_refused(tmp_path: Path, kind: str) -> None:
    target, data_file = build(kind, tmp_path)
    whole = bytearray(data_file.read_bytes())
    end = whole.rfind(b"PK\x05\x06")  # the end-of-archive record: its size of the directory is claimed
    whole[end + 12:end + 16] = (2**32 - 16).to_bytes(4, "little")
    data_file.write_bytes(bytes(whole))
    with refused(target, "cannot be read as an .npz archive"):
        load(kind, target)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(2**31, 2**31), (2**62, 4), (2**20, 2**20, 2**20), (2**20, 2**20)])
def test_a_header_claiming_a_huge_shape_is_refused_without_allocating_it(tmp_path: Path, kind: str,
                                                                           shape: tuple[int, ...]) -> None:
    target, data_file = build(kind, tmp_path)
    beyond = math.prod(shape) * 8 >= 2**63  # more elements than any index can address
    if CONTAINER[kind] != ".safetensors":
        put_matrix(kind, data_file, npy_bytes({"descr": "<f4", "fortran_order": False, "shape": shape},
                                              b"\0" * 64))
        with refused(target, *(["which no array can have"] if beyond else
                               ["is truncated", "but only 64 bytes follow the header"])):
            load(kind, target)
        return
    key, claimed = str(MATRIX_KEY[kind]), 4 * int(np.prod(shape, dtype=object))
    whole = data_file.read_bytes()
    patch_safetensors(data_file, key, shape=list(shape))  # its byte count stays that of the real tensor
    needs = f"but its shape {shape} and dtype F32 need {claimed}"
    with refused(target, "which no array can have" if beyond else needs):
        load(kind, target)
    data_file.write_bytes(whole)
    patch_safetensors(data_file, key, shape=list(shape), data_offsets=[0, claimed])  # consistent, not there
    with refused(target, "which no array can have" if beyond else "beyond the end of the"):
        load(kind, target)


def sparse_file(path: Path, prefix: bytes, size: int) -> Path:
    """A file of ``size`` bytes that starts with ``prefix`` and takes no disk (a hole after it)."""
    with open(path, "wb") as handle:
        handle.write(prefix)
        try:
            handle.truncate(size)
        except OSError:
            pytest.skip("this file system cannot hold a sparse file of a terabyte")
    if os.stat(path).st_blocks * 512 > 1 << 20:
        path.unlink()
        pytest.skip("this file system does not make sparse files")
    return path


TERABYTE_SHAPE = (2**18, 2**20)  # float32: 1 TiB, far beyond any budget, and beyond memory


@pytest.mark.parametrize("container", [".npy", ".safetensors"])
def test_an_array_beyond_the_default_memory_budget_is_refused_from_its_header(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], container: str) -> None:
    # A consistent file (its data is all there, as a hole) of a terabyte: only the budget refuses it.
    size = 4 * TERABYTE_SHAPE[0] * TERABYTE_SHAPE[1]
    if container == ".npy":
        prefix = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": TERABYTE_SHAPE})
    else:
        prefix = safetensors_bytes({"F": {"dtype": "F32", "shape": list(TERABYTE_SHAPE),
                                          "data_offsets": [0, size]}}, length=None)
    path = sparse_file(tmp_path / f"F{container}", prefix, len(prefix) + size)
    with refused(path, "needs 1024.0 GiB to read as float32, more than the 4.0 GiB memory budget",
                 "pass --memory 1024GiB to allow it"):
        load_matrix(path)
    status = main(["run", "--dictionary", str(path), "--plugin", "mp", "--no-store"])
    one_line_error(capsys, status, "4.0 GiB memory budget", "--memory")


@pytest.mark.parametrize("kind", KINDS)
def test_the_memory_budget_counts_every_array_before_it_is_read(tmp_path: Path, kind: str) -> None:
    target, _ = build(kind, tmp_path)
    # A matrix of 8 × 16 float32 is 512 bytes. An SAE's arrays are read in the order W_enc
    # (6 × 10: 240 bytes), b_enc (40), W_dec (240): the decoder takes them past 300.
    dtype = {".npy": "float32", ".npz": "float32", ".safetensors": "F32"}[CONTAINER[kind]]
    counted = (", which with the 280 B already read makes 520 B," if kind in SAE_KINDS else
               f"of shape (8, 16) ({dtype}) needs 512 B to read as float32,")
    with refused(target, counted, "more than the 300 B memory budget; pass --memory 1MiB to allow it"):
        load(kind, target, max_bytes=300)
    load(kind, target, max_bytes=4096)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(tmp_path: Path, kind: str, bad: float) -> None:
    if kind in SAE_KINDS:
        decoder = SAE["W_dec"].copy()
        decoder[3, 2] = bad
        target, _ = build(kind, tmp_path, {"W_dec": decoder})
    else:
        matrix = MATRIX.copy()
        matrix[2, 5] = bad
        target, _ = build(kind, tmp_path, {"F": matrix})
    with refused(target, "NaN or infinite"):
        load(kind, target)


class CreatesAFile:
    """Unpickling this creates ``marker``: proof that a file's pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (str(self.marker), "w"))


def pickled_npy(path: Path, marker: Path) -> bytes:
    np.save(path, np.array([CreatesAFile(marker), 1.0], dtype=object), allow_pickle=True)
    return path.read_bytes()


def test_the_pickle_payload_would_run_if_it_were_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    pickled_npy(tmp_path / "control.npy", marker)
    np.load(tmp_path / "control.npy", allow_pickle=True)  # what the loaders must never do
    assert marker.exists()


@pytest.mark.parametrize("kind", [kind for kind in KINDS if CONTAINER[kind] != ".safetensors"])
def test_pickled_object_arrays_are_refused_never_unpickled(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "executed"
    target, data_file = build(kind, tmp_path / "w")
    npy = pickled_npy(tmp_path / "payload.npy", marker)
    put_matrix(kind, data_file, npy)
    with refused(target, "holds Python objects (dtype object)", "never loaded"):
        load(kind, target)
    assert not marker.exists()
    # An object hidden in a structured dtype is refused the same way.
    structured = npy_bytes({"descr": [("a", "<f4"), ("b", "|O")], "fortran_order": False, "shape": (2,)},
                           npy[npy.index(b"\n") + 1:])
    put_matrix(kind, data_file, structured)
    with refused(target, "holds Python objects"):
        load(kind, target)
    assert not marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_dtypes_are_refused(tmp_path: Path, kind: str) -> None:
    target, data_file = build(kind, tmp_path)
    container = CONTAINER[kind]
    if container == ".safetensors":
        for dtype, fragment in (("I32", "dtype I32, which is not supported"),
                                ("BOOL", "holds"), ("Q7", "dtype Q7, which is not supported")):
            build(kind, tmp_path)  # afresh
            patch_safetensors(data_file, str(MATRIX_KEY[kind]), dtype=dtype)
            with refused(target, fragment):
                load(kind, target)
        return
    shape = MATRIX.shape if kind in ("npy", "npz") else SAE["W_enc"].shape
    for values in (np.ones(shape, np.complex64), np.ones(shape, bool), np.full(shape, "abc"),
                   np.zeros(shape, "datetime64[s]"), np.zeros(shape, "V4")):
        npy_file = tmp_path / "values.npy"
        np.save(npy_file, values)
        put_matrix(kind, data_file, npy_file.read_bytes())
        with refused(target, f"has dtype {values.dtype}, which is not supported"):
            load(kind, target)


@pytest.mark.parametrize("kind", KINDS)
def test_mismatched_shapes_are_refused(tmp_path: Path, kind: str) -> None:
    if kind in SAE_KINDS:
        target, _ = build(kind, tmp_path, {"W_dec": np.ones((3, 4), np.float32)})
        with refused(target, "W_dec has shape (3, 4)"):
            load(kind, target)
        return
    target, _ = build(kind, tmp_path, {"F": np.ones((2, 3, 4), np.float32)})
    with refused(target, "shape (2, 3, 4), expected a non-empty 2-D matrix"):
        load(kind, target)


@pytest.mark.parametrize("kind", KINDS)
def test_a_data_file_that_is_a_device_is_never_opened(tmp_path: Path, kind: str) -> None:
    target, data_file = build(kind, tmp_path)
    data_file.unlink()
    data_file.symlink_to("/dev/zero")  # endless: reading it would never stop
    with refused(target):
        load(kind, target)


def test_npy_headers_that_lie_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "F.npy"
    cases = [
        (npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (-1, 4)}, b"\0" * 64), "invalid shape"),
        (npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (2, 2)}, version=(9, 9)),
         "format version 9.9, which is not supported"),
        (raw_npy(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }garbage"),
         "invalid .npy header"),
        (raw_npy(b"{'descr': __import__('os').system('exit 3'), 'fortran_order': False, 'shape': (1,)}"),
         "invalid .npy header"),
        (raw_npy(b"{'descr': '<f4', 'fortran_order': False, 'shape': " + b"(" * 5000 + b")" * 5000 + b"}"),
         "header of"),
        (b"\x80\x04\x95garbage pickle", "is not a .npy array"),
    ]
    for content, fragment in cases:
        path.write_bytes(content)
        with refused(path, fragment):
            load_matrix(path)


SAE_TEXT_FILES = {"saelens": "cfg.json", "sparsify": "cfg.json", "plain-npz": "plain.npz.toml"}


@pytest.mark.parametrize("kind", list(SAE_TEXT_FILES))
@pytest.mark.parametrize("content", ["[" * 100_000, '{"architecture": "topk", "k": ' + "9" * 5000 + "}",
                                     b"\xff\xfe\x00garbage", "k = [" * 50_000, "[1, 2]"])
def test_hostile_sae_configurations_are_refused(tmp_path: Path, kind: str, content: str | bytes) -> None:
    target, _ = build(kind, tmp_path)
    text_file = (target if target.is_dir() else target.parent) / SAE_TEXT_FILES[kind]
    text_file.write_bytes(content if isinstance(content, bytes) else content.encode())
    with refused(target):
        load(kind, target)


def test_an_sae_configuration_too_large_is_refused_before_it_is_read(tmp_path: Path) -> None:
    target, _ = build("saelens", tmp_path)
    sparse_file(target / "cfg.json", b"{", 1 << 30)
    with refused(target / "cfg.json", "more than the 16777216 allowed"):
        load_sae(target)


# ------------------------------------------------------------ config paths


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sweep.toml").write_text(text)
    return directory / "sweep.toml"


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A config directory with a dictionary and an SAE in it, and the same outside it."""
    inside, outside = tmp_path / "sweeps", tmp_path / "elsewhere"
    for root in (inside, outside):
        build("npy", root)
        build("saelens", root)
        build("plain-safetensors", root)
    return {"inside": inside, "outside": outside}


def dictionary_entry(config: Path) -> list[str]:
    return apply_config(Sweep(), read_config(config), str(config)).dictionary


def weights_param(config: Path) -> str:
    """What the sae decoder's weights parameter becomes, from the config's first decoder."""
    sweep = apply_config(Sweep(), read_config(config), str(config))
    [spec] = sweep.decoders
    given = {**parse_params(SparseAutoencoderEncoder, dict(spec.texts)), **dict(spec.values)}
    return SparseAutoencoderEncoder(**given).params["weights"]


def test_config_paths_are_relative_to_the_config(layout: dict[str, Path]) -> None:
    inside = layout["inside"]
    os.symlink("F.npy", inside / "alias.npy")  # a link that stays inside is fine
    config = write_config(inside, '[problem]\ndictionary = ["rademacher", "F.npy", "alias.npy", "saelens"]\n')
    assert dictionary_entry(config) == ["rademacher", str(inside / "F.npy"), str(inside / "alias.npy"),
                                        str(inside / "saelens")]
    np.testing.assert_array_equal(load_matrix(dictionary_entry(config)[1]), MATRIX)
    for text in ('decoders = ["sae[weights=saelens]"]\n',
                 '[[decoder]]\nname = "sae"\nparams = { weights = "plain.safetensors" }\n'):
        write_config(inside, text)
        named = "saelens" if "saelens" in text else "plain.safetensors"
        assert weights_param(config) == str(inside / named)


def test_a_config_reached_through_a_symlinked_directory_names_its_own_files(layout: dict[str, Path]) -> None:
    link = layout["outside"] / "link-to-sweeps"
    link.symlink_to(layout["inside"], target_is_directory=True)
    config = write_config(layout["inside"], '[problem]\ndictionary = "F.npy"\n')
    assert dictionary_entry(link / "sweep.toml") == [str(link / "F.npy")]
    assert dictionary_entry(config) == [str(layout["inside"] / "F.npy")]


def escapes(layout: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """Ways out of the config's directory: the entry to name, and a fragment of the refusal."""
    inside, outside = layout["inside"], layout["outside"]
    (inside / "file-link.npy").symlink_to(outside / "F.npy")
    (inside / "dir-link").symlink_to(outside / "saelens", target_is_directory=True)
    planted = inside / "planted"  # a real directory whose weights file is a link out
    planted.mkdir()
    (planted / "cfg.json").write_text(json.dumps(saelens_config()))
    (planted / "sae_weights.safetensors").symlink_to(outside / "saelens" / "sae_weights.safetensors")
    (inside / "sidecar.safetensors").write_bytes((outside / "plain.safetensors").read_bytes())
    (inside / "sidecar.safetensors.toml").symlink_to(outside / "plain.safetensors.toml")
    nested = inside / "deep" / "er"
    nested.mkdir(parents=True)
    (nested / "up").symlink_to(outside, target_is_directory=True)
    return {
        "absolute": (str(outside / "F.npy"), "is an absolute path"),
        "dot-dot": ("../elsewhere/F.npy", "which leads to"),
        "dot-dot inside a longer path": ("saelens/../../elsewhere/saelens", "which leads to"),
        "symlinked file": ("file-link.npy", "which leads to"),
        "symlinked directory": ("dir-link", "which leads to"),
        "link inside a directory": ("planted", "which leads to"),
        "link beside a file, where its sidecar is": ("sidecar.safetensors", "which leads to"),
        "link in a directory named through it": ("deep/er/up/F.npy", "which leads to"),
        "link deep in a directory": ("deep", "which leads to"),
        "the file a cfg.json stands for": ("planted/cfg.json", "which leads to"),
    }


def test_config_paths_may_not_leave_the_config_directory(layout: dict[str, Path]) -> None:
    for name, (entry, fragment) in escapes(layout).items():
        config = write_config(layout["inside"], f'[problem]\ndictionary = {json.dumps(entry)}\n')
        with pytest.raises(ConfigError) as caught:
            dictionary_entry(config)
        message = str(caught.value)
        assert "\n" not in message and message.endswith("."), (name, message)
        assert message.startswith(f"[problem] dictionary in {config}"), (name, message)
        assert fragment in message and "--dictionary PATH" in message, (name, message)
        for text in (f'decoders = ["sae[weights={entry}]"]\n',
                     f'[[decoder]]\nname = "sae"\nparams = {{ weights = {json.dumps(entry)} }}\n'):
            write_config(layout["inside"], text)
            with pytest.raises(ConfigError) as caught:
                weights_param(config)
            message = str(caught.value)
            assert message.startswith(f"parameter 'weights' of decoder 'sae' in {config}"), (name, message)
            assert fragment in message and "--plugin 'sae[weights=PATH]'" in message, (name, message)


def test_config_path_refusals_reach_the_command_line_as_one_line(
        layout: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    outside = layout["outside"]
    for text in (f'[problem]\ndictionary = "{outside / "F.npy"}"\n',
                 'decoders = ["sae[weights=../elsewhere/saelens]"]\n',
                 '[[decoder]]\nname = "sae"\nparams = { weights = "../elsewhere/saelens" }\n'):
        config = write_config(layout["inside"], text)
        status = main(["run", "--config", str(config), "--no-store"])
        one_line_error(capsys, status, str(config), "outside" if "dictionary" not in text else "absolute")


def test_paths_on_the_command_line_are_not_restricted(layout: dict[str, Path]) -> None:
    outside = layout["outside"] / "saelens"
    assert parse_params(SparseAutoencoderEncoder, {"weights": str(outside)}) == {"weights": str(outside)}
    assert resolve_params(SparseAutoencoderEncoder, {"weights": "../x"})["weights"] == "../x"
    # A config's other strings, and its paths in a program's own dictionaries, are taken as they are.
    spec = apply_config(Sweep(), {"decoders": ["sae[format=auto]"]}, "a dict").decoders[0]
    assert spec.texts == (("format", "auto"),) and not isinstance(spec.texts[0][1], ConfigString)
    sweep = apply_config(Sweep(), {"problem": {"dictionary": "/abs/F.npy"}}, "a dict")
    assert sweep.dictionary == ["/abs/F.npy"]
    assert SparseAutoencoderEncoder.parameters[0].describe()["path"] is True  # shown by `harness plugins`
    with pytest.raises(TypeError, match="only a str parameter can be a path"):
        Param("weights", int, 0, "a file", path=True)


@pytest.mark.parametrize("content", ["[problem]\nn = " + "[" * 50_000, "n = " + "9" * 5000,
                                     b"\x00\xff\xfebinary", None, "directory"])
def test_hostile_config_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 content: str | bytes | None) -> None:
    config = tmp_path / "sweep.toml"
    if content is None:  # a terabyte of nothing: refused from its size
        sparse_file(config, b"# ", 1 << 40)
    elif content == "directory":
        config.mkdir()
    else:
        config.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError):
        read_config(config)
    one_line_error(capsys, main(["run", "--config", str(config), "--no-store"]), str(config))
    if content is None:
        config.unlink()
        config.symlink_to("/dev/zero")
        one_line_error(capsys, main(["run", "--config", str(config), "--no-store"]), "not a regular file")


# ------------------------------------------------------------ the results store


def record(name: str, i: int) -> dict:
    """A well-formed record (``results.record_fault`` finds nothing wrong with it)."""
    return {"decoder": name, "i": i, "plugin_package": "p", "plugin_version": "0", "status": "ok",
            "params": {}, "target": 0.95, "trials": 32, "provenance": {"harness_version": "0"},
            "search": {"max_trials_per_dimension": 256, "d_max": 100, "resolution": 0.01},
            "problem": {"n": 256, "k": 3, "dictionary": "rademacher", "noise": 0.0, "seed": 0,
                        "subsets_per_draw": 32},
            "curve": [{"d": 20, "trials": 32, "successes": 30}]}


def write_lines(path: Path, lines: list[bytes], newline_at_end: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end else b""))


GOOD = [json.dumps(record("mp", 0)).encode(), json.dumps(record("topk", 1)).encode()]
BAD_LINES = {
    "torn record": (b'{"decoder": "mp", "i": 2, "curve": [{"d": 1', "not valid JSON"),
    "binary garbage": (bytes(byte for byte in range(256) if byte != ord("\n")) * 4, "not UTF-8 text"),
    "invalid UTF-8 inside a string": (b'{"decoder": "\xc3\x28"}', "not UTF-8 text"),
    "a JSON array": (b"[1, 2, 3]", "a JSON array, not an object"),
    "a JSON string": (b'"decoder"', "a JSON string, not an object"),
    "null": (b"null", "a JSON null, not an object"),
    "no decoder": (b'{"status": "ok"}', "an object without a decoder name"),
    "a decoder that is not a name": (b'{"decoder": 5}', "an object without a decoder name"),
    "nested too deeply": (b"[" * 200_000, "not valid JSON"),
    "an integer too long": (b'{"decoder": "mp", "trials": ' + b"9" * 10_000 + b"}", "not valid JSON"),
}


@pytest.mark.parametrize("bad", list(BAD_LINES))
def test_the_store_skips_what_is_not_a_record(tmp_path: Path, bad: str) -> None:
    line, _ = BAD_LINES[bad]
    store = ResultStore(tmp_path)
    write_lines(store.path, [GOOD[0], line, GOOD[1]])
    assert [r["i"] for r in store.load()] == [0, 1]
    write_lines(store.path, [*GOOD, line], newline_at_end=False)  # torn by a killed writer
    assert [r["i"] for r in store.load()] == [0, 1]
    store.append(record("omp", 2))  # a new record is not swallowed by the torn line
    assert [r["i"] for r in store.load()] == [0, 1, 2]


#: What a write cut short (a killed writer, a full disk) can leave: not JSON at all.
TORN = {bad for bad, (_, reason) in BAD_LINES.items() if reason in ("not valid JSON", "not UTF-8 text")}


@pytest.mark.parametrize("bad", sorted(TORN))
def test_a_line_that_is_not_json_is_skipped_with_a_warning_wherever_it_is(tmp_path: Path, bad: str) -> None:
    line, reason = BAD_LINES[bad]
    path = tmp_path / "records.jsonl"
    write_lines(path, [*GOOD, line], newline_at_end=False)  # torn last line: skipped quietly
    warnings: list[str] = []
    assert [number for number, _ in read_records(path, warn=warnings.append)] == [1, 2]
    assert warnings == []
    write_lines(path, [GOOD[0], line, GOOD[1]])  # a torn line that a later record follows
    assert [number for number, _ in read_records(path, warn=warnings.append)] == [1, 3]
    assert warnings == [f"{path} line 2 is skipped: it is {reason}, the remains of a write that was "
                        "cut short"]


@pytest.mark.parametrize("bad", sorted(set(BAD_LINES) - TORN))
def test_read_records_names_a_line_that_is_json_but_not_a_record(tmp_path: Path, bad: str) -> None:
    line, reason = BAD_LINES[bad]
    path = tmp_path / "records.jsonl"
    for lines, end in (([*GOOD, line], False), ([GOOD[0], line, GOOD[1]], True)):
        write_lines(path, lines, newline_at_end=end)
        with pytest.raises(StoreError) as caught:
            read_records(path)
        number = lines.index(line) + 1
        assert str(caught.value) == (f"{path} line {number} is not a result record ({reason}); "
                                     "fix or remove that line.")


def test_a_huge_line_is_read_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = b'{"decoder": "mp", "pad": "' + b"x" * (50 << 20)  # 50 MB, never closed
    store = ResultStore(tmp_path / "store")
    write_lines(store.path, [GOOD[0], huge, GOOD[1]])
    assert [r["i"] for r in store.load()] == [0, 1]
    assert [number for number, _ in read_records(store.path)] == [1, 3]
    main(["verify", str(store.path), "--json"])
    err = capsys.readouterr().err
    assert "line 2 is skipped: it is not valid JSON" in err and "Traceback" not in err


def test_a_store_that_cannot_be_read_is_one_clear_error(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.path.mkdir()  # records.jsonl is a directory
    with pytest.raises(StoreError, match="cannot read records .* it is a directory, not a regular file"):
        store.load()
    with pytest.raises(StoreError, match="cannot read records"):
        read_records(store.path)

