"""Tensor files without PyTorch: safetensors, ``.npy`` and ``.npz`` read, safetensors written (contract §4).

This module knows files, dtypes, shapes and byte budgets, and nothing of what the arrays
mean: :mod:`.weights` builds the SAE formats and dictionary matrices on it. Every header
is validated, and the bytes an array needs are counted against a memory budget, before
its data is allocated; nothing is unpickled or read through ``np.load``. Values are not
checked here. :class:`WeightsError` is the one error for a weight or tensor file that
cannot be used.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .files import RefusedFile, open_regular
from .memory import DEFAULT_MEMORY
from .units import format_size

#: A safetensors header longer than this is refused before it is read: real headers are
#: kilobytes, and the length field of a corrupt or hostile file could ask for gigabytes.
MAX_HEADER_BYTES = 100 * 2**20

#: A .npy header (alone, or a member of an .npz) longer than this is refused before it is
#: read: NumPy's own limit for files it loads without pickles.
MAX_NPY_HEADER_BYTES = 10_000

#: Bytes per element of every dtype of the safetensors specification, so that byte
#: counts can be checked even for tensors that are never decoded.
SAFETENSORS_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}

#: The safetensors dtypes that are decoded (to float32).
SAFETENSORS_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")

# The NumPy type each decoded dtype is read as (bfloat16 as its raw 16 bits).
_STORED_AS = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "<u2"}

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip
#: Data is read in chunks of this many bytes, so that no read needs a second full-size buffer.
_READ_CHUNK = 16 * 2**20


class WeightsError(ValueError):
    """A weights or matrix file that cannot be used; the message is one sentence naming the file."""


def _error(path: Path | str, problem: str) -> WeightsError:
    # Messages embed paths and library messages: keep them on one line, ending in one period.
    text = f"{path}: {problem}".replace("\r", " ").replace("\n", " ").rstrip()
    return WeightsError(text if text.endswith(".") else text + ".")


def _reason(exc: BaseException, limit: int = 200) -> str:
    """A library's exception message, fit to quote in parentheses inside a sentence (cut
    at ``limit`` characters: some quote the corrupt text they met)."""
    text = " ".join(str(exc).split()).rstrip(".")
    if len(text) > limit:
        text = text[:limit].rstrip() + "…"
    return text or type(exc).__name__


def _names(names: Iterable[str], limit: int = 12) -> str:
    listed = sorted(names)
    if not listed:
        return "nothing"
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_shape(path: Path, label: str, shape: tuple[int, ...]) -> None:
    """Refuse a shape no array can have: one whose extents (each counted as at least 1, so
    that an empty array with a huge other dimension is caught too) multiply past what an
    index of 63 bits can address in bytes."""
    if math.prod(max(n, 1) for n in shape) * 8 >= 2**63:
        raise _error(path, f"{label} has shape {shape}, which no array can have (its extents multiply "
                           "past 2^60 elements); the header is corrupt")


# ------------------------------------------------------------------ safetensors


@dataclass(frozen=True)
class _TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute byte offsets in the file
    end: int


def _safetensors_index(path: Path, handle: io.BufferedReader) -> dict[str, _TensorEntry]:
    """The validated header of an open safetensors file: tensor name → entry."""
    size = os.fstat(handle.fileno()).st_size
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise _error(path, f"file is truncated: it has {size} bytes, fewer than the 8-byte header length "
                           "that starts a safetensors file")
    header_length = int.from_bytes(prefix, "little")
    # Checked before anything is read, so that a corrupt length never becomes an allocation.
    if header_length > MAX_HEADER_BYTES:
        raise _error(path, f"header length {header_length} bytes exceeds the {MAX_HEADER_BYTES} bytes "
                           "allowed (the file is corrupt or not a safetensors file)")
    if 8 + header_length > size:
        raise _error(path, f"file is truncated: its header length is {header_length} bytes but only "
                           f"{size - 8} bytes follow the length field")
    try:
        header = json.loads(handle.read(header_length).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, an integer too long, deep nesting
        raise _error(path, f"header is not valid JSON ({_reason(exc)})") from None
    if not isinstance(header, dict):
        raise _error(path, f"header must be a JSON object, not {type(header).__name__}")
    data_start = 8 + header_length
    data_length = size - data_start
    entries: dict[str, _TensorEntry] = {}
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        entries[key] = _tensor_entry(path, key, spec, data_start, data_length)
    spans = sorted((entry.begin, entry.end, key) for key, entry in entries.items() if entry.end > entry.begin)
    for (_, end0, key0), (begin1, _, key1) in zip(spans, spans[1:], strict=False):
        if begin1 < end0:
            raise _error(path, f"tensors {key0!r} and {key1!r} overlap in the data buffer")
    return entries


def _tensor_entry(path: Path, key: str, spec: Any, data_start: int, data_length: int) -> _TensorEntry:
    if not isinstance(spec, dict):
        raise _error(path, f"tensor {key!r} has no valid description in the header")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if not isinstance(dtype, str):
        raise _error(path, f"tensor {key!r} has no valid dtype in the header")
    if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
        raise _error(path, f"tensor {key!r} has an invalid shape {shape!r} in the header")
    _check_shape(path, f"tensor {key!r}", tuple(shape))
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]):
        raise _error(path, f"tensor {key!r} has invalid data_offsets {offsets!r} in the header")
    begin, end = offsets
    if end > data_length:
        raise _error(path, f"tensor {key!r} has data_offsets [{begin}, {end}] beyond the end of the "
                           f"{data_length}-byte data buffer (the file is truncated or its offsets are wrong)")
    itemsize = SAFETENSORS_DTYPE_SIZES.get(dtype)
    # Unknown dtypes cannot be size-checked; they are refused only if they are read.
    if itemsize is not None and end - begin != math.prod(shape) * itemsize:
        raise _error(path, f"tensor {key!r} holds {end - begin} bytes but its shape {tuple(shape)} and dtype "
                           f"{dtype} need {math.prod(shape) * itemsize}")
    return _TensorEntry(dtype, tuple(shape), data_start + begin, data_start + end)


def _decode_tensor(path: Path, handle: io.BufferedReader, key: str, entry: _TensorEntry,
                   budget: _Budget) -> np.ndarray:
    if entry.dtype not in SAFETENSORS_FLOAT_DTYPES:
        raise _error(path, f"tensor {key!r} has dtype {entry.dtype}, which is not supported "
                           f"(supported: {', '.join(SAFETENSORS_FLOAT_DTYPES)})")
    # Counted from the header alone, before a byte of the tensor is allocated.
    budget.reserve(path, f"tensor {key!r}", entry.shape, entry.dtype, entry.end - entry.begin,
                   converted=entry.dtype != "F32")
    # Read into bytes that the array then shares, so that F32 needs no second copy.
    data = np.empty(entry.end - entry.begin, dtype=np.uint8)
    handle.seek(entry.begin)
    if _read_into(handle, data) != data.size:
        raise _error(path, f"file is truncated: tensor {key!r} could not be read in full")
    stored = data.view(_STORED_AS[entry.dtype])  # shares the bytes read, writeable
    if entry.dtype == "BF16":
        # bfloat16 is the upper half of a float32: widening the bits is exact (shifted in place,
        # so that the widening needs no third copy).
        widened = stored.astype(np.uint32)
        widened <<= np.uint32(16)
        values = widened.view(np.float32)
    else:
        with np.errstate(over="ignore"):  # F64 beyond float32's range becomes inf, refused later
            values = stored.astype(np.float32, copy=False)
    return values.reshape(entry.shape)


def read_safetensors(path: str | os.PathLike[str], keys: Iterable[str] | None = None, *,
                     max_bytes: int = DEFAULT_MEMORY) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (all, or those named in ``keys``) as float32 arrays.

    F32, F16, BF16 and F64 are decoded from the raw little-endian bytes; the header
    is validated first (its length, its JSON, every tensor's offsets and byte count,
    no overlaps). Tensors that together need more than ``max_bytes`` to read as float32
    are refused from the header alone, before they are read. Values are not checked
    for NaN or infinity here.
    """
    with _Arrays(Path(path), kind=".safetensors", max_bytes=max_bytes) as arrays:
        return {key: arrays.read(key) for key in (arrays.names if keys is None else keys)}


#: The dtypes :func:`write_safetensors` writes: NumPy's name → (safetensors name, layout).
WRITTEN_DTYPES = {"float32": ("F32", "<f4"), "float16": ("F16", "<f2")}


def write_safetensors(path: str | os.PathLike[str], tensors: dict[str, np.ndarray],
                      dtype: str = "float32") -> None:
    """Write tensors as a safetensors file of ``dtype`` (float32 or float16, each value
    rounded to it once; little-endian, header padded to 8 bytes). ValueError if a value
    does not fit float16."""
    stored, layout = WRITTEN_DTYPES[dtype]
    header: dict[str, Any] = {}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        with np.errstate(over="ignore"):  # a value beyond float16 becomes infinite: refused below
            values = np.ascontiguousarray(array, dtype=layout)
        if not np.isfinite(values).all() and np.isfinite(np.asarray(array)).all():
            raise ValueError(f"tensor {name!r} has values beyond the range of {dtype}")
        data = values.tobytes()
        header[name] = {"dtype": stored, "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little"))
        handle.write(text)
        for chunk in chunks:
            handle.write(chunk)


# -------------------------------------------------------- the memory budget


class _Budget:
    """The bytes the arrays read from one file may take together, reserved before each is read.

    An array costs its float32 bytes, plus its stored bytes while they are converted
    (every dtype but float32, which the array shares with the bytes read).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.held = 0

    def reserve(self, path: Path, label: str, shape: tuple[int, ...], dtype: str, stored: int,
                converted: bool) -> None:
        result = 4 * math.prod(shape)
        need = result + (stored if converted else 0)
        total = self.held + need
        if total > self.max_bytes:
            already = (f", which with the {format_size(self.held)} already read makes {format_size(total)},"
                       if self.held else ",")
            raise _error(path, f"{label} of shape {tuple(shape)} ({dtype}) needs {format_size(need)} to read "
                               f"as float32{already} more than the {format_size(self.max_bytes)} memory "
                               f"budget; pass --memory {_budget_hint(total)} to allow it")
        self.held += result


def _budget_hint(size: int) -> str:
    """The smallest power of two of MiB that holds ``size`` bytes, written as --memory takes it."""
    mebibytes = 1 << max(0, math.ceil(math.log2(max(size, 1) / (1 << 20))))
    return f"{mebibytes >> 10}GiB" if mebibytes >= 1024 else f"{mebibytes}MiB"


# -------------------------------------------------------- array containers


class _Arrays:
    """The named arrays of one ``.safetensors`` or ``.npz`` file, each read on demand as float32.

    Arrays are read from their headers first: the shape and dtype are checked, and the
    bytes the arrays need are counted against ``max_bytes``, before the data is allocated.
    """

    def __init__(self, path: Path, kind: str | None = None, max_bytes: int = DEFAULT_MEMORY) -> None:
        self.path = path
        self._handle: io.BufferedReader | None = None
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._index: dict[str, _TensorEntry] = {}
        self._budget = _Budget(max_bytes)
        if not path.exists():
            raise _error(path, "file not found")
        kind = kind or path.suffix.lower()
        if kind == ".safetensors":
            self._open_safetensors()
        elif kind == ".npz":
            self._open_npz()
        else:
            raise _error(path, f"file type {path.suffix or '(none)'} is not supported "
                               "(expected .npz or .safetensors)")

    def _open_safetensors(self) -> None:
        self._handle = _open_binary(self.path)
        try:
            self._index = _safetensors_index(self.path, self._handle)
        except BaseException:
            self.close()
            raise

    def _open_npz(self) -> None:
        # The archive is read member by member, each .npy header first (np.load would
        # allocate whatever shape a member's header claims before reading its data).
        self._handle = _open_binary(self.path)
        try:
            if self._handle.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise _error(self.path, "file is a single .npy array, not an .npz archive")
            self._handle.seek(0)
            self._zip = zipfile.ZipFile(self._handle)
        except WeightsError:
            self.close()
            raise
        except Exception as exc:  # zipfile raises many types for a corrupt archive
            self.close()
            raise _error(self.path, f"file cannot be read as an .npz archive ({_reason(exc)})") from None
        for info in self._zip.infolist():
            if not info.is_dir():  # named as np.load names them: without the .npy suffix
                name = info.filename
                self._members[name[:-4] if name.endswith(".npy") else name] = info

    @property
    def names(self) -> list[str]:
        """The names of the arrays the file holds."""
        return list(self._members) if self._zip is not None else list(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self.names

    def read(self, key: str) -> np.ndarray:
        """The array ``key`` as float32; WeightsError if it is missing, cannot be decoded,
        or does not fit the memory budget with the arrays read before it."""
        if key not in self.names:
            raise _error(self.path, f"key {key!r} is missing (the file holds: {_names(self.names)})")
        if self._zip is None:
            assert self._handle is not None
            return _decode_tensor(self.path, self._handle, key, self._index[key], self._budget)
        info = self._members[key]
        label = f"array {key!r}"
        try:
            with self._zip.open(info) as member:
                return _read_npy(self.path, label, member, info.file_size, self._budget)
        except WeightsError:
            raise
        except Exception as exc:  # a corrupt or encrypted member, a bad CRC, a compression error
            raise _error(self.path, f"{label} cannot be read ({_reason(exc)})") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> _Arrays:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _as_float32(path: Path, label: str, array: np.ndarray) -> np.ndarray:
    # Only real numbers make weights; structured or void dtypes (e.g. a bfloat16 that
    # an extension type wrote into an .npz) are refused rather than reinterpreted.
    _check_npy_dtype(path, label, array.dtype)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused later
        return np.asarray(array, dtype=np.float32)


def _check_npy_dtype(path: Path, label: str, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise _error(path, f"{label} holds Python objects (dtype {dtype}), which would have to be "
                           "unpickled and are never loaded; save it as a floating-point or integer array")
    if dtype.kind not in "fiu":
        raise _error(path, f"{label} has dtype {dtype}, which is not supported "
                           "(supported: floating-point and integer arrays)")


def _open_binary(path: Path) -> io.BufferedReader:
    # A device or a pipe (a symlink to /dev/zero, say) is never read: it could block or
    # never end.
    try:
        return open_regular(path)
    except RefusedFile as exc:
        raise _error(path, exc.problem) from None


def _read_into(stream: Any, buffer: np.ndarray) -> int:
    """Fill ``buffer`` (uint8) from ``stream`` in bounded chunks; the number of bytes read (fewer at EOF)."""
    filled = 0
    with buffer.data as view:
        while filled < len(view):
            count = stream.readinto(view[filled:filled + _READ_CHUNK])
            if not count:
                break
            filled += count
    return filled


def _read_exact(stream: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _npy_header(path: Path, label: str, stream: Any) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """The shape, Fortran order and dtype of the .npy array that ``stream`` starts with, and the
    header's length in bytes; read with a bounded header, never by unpickling."""
    magic = _read_exact(stream, len(_NPY_MAGIC) + 2)
    if len(magic) < len(_NPY_MAGIC) + 2 or not magic.startswith(_NPY_MAGIC):
        raise _error(path, f"{label} is not a .npy array (it does not start with the .npy magic string)")
    version = (magic[-2], magic[-1])
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise _error(path, f"{label} has .npy format version {version[0]}.{version[1]}, which is not "
                           "supported (supported: 1.0, 2.0, 3.0)")
    width = 2 if version == (1, 0) else 4
    length_field = _read_exact(stream, width)
    if len(length_field) < width:
        raise _error(path, f"{label} is truncated within its .npy header")
    length = int.from_bytes(length_field, "little")
    # Checked before the header is read, so that a corrupt length never becomes an allocation.
    if length > MAX_NPY_HEADER_BYTES:
        raise _error(path, f"{label} has a .npy header of {length} bytes, more than the "
                           f"{MAX_NPY_HEADER_BYTES} bytes allowed (the file is corrupt or not a .npy file)")
    header = _read_exact(stream, length)
    if len(header) < length:
        raise _error(path, f"{label} is truncated within its .npy header")
    # 3.0 is 2.0 with a UTF-8 header, needed only for the field names of structured
    # dtypes (refused anyway): an ASCII 3.0 header reads as 2.0.
    if version == (3, 0) and not header.isascii():
        raise _error(path, f"{label} has a .npy header that is not ASCII (a structured dtype), "
                           "which is not supported")
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    try:
        shape, fortran_order, dtype = read_header(io.BytesIO(length_field + header),
                                                  max_header_size=MAX_NPY_HEADER_BYTES)
    except Exception as exc:  # NumPy raises ValueError, SyntaxError, TypeError for bad headers
        raise _error(path, f"{label} has an invalid .npy header ({_reason(exc)})") from None
    if any(n < 0 for n in shape):
        raise _error(path, f"{label} has an invalid shape {shape} in its .npy header")
    _check_shape(path, label, tuple(int(n) for n in shape))
    return tuple(int(n) for n in shape), bool(fortran_order), dtype, len(magic) + width + length


def _read_npy(path: Path, label: str, stream: Any, available: int, budget: _Budget) -> np.ndarray:
    """The .npy array that ``stream`` (``available`` bytes long) holds, as float32.

    The header is read and checked first (dtype, size against the bytes available and
    against ``budget``); only then is the data allocated and read.
    """
    shape, fortran_order, dtype, header_bytes = _npy_header(path, label, stream)
    _check_npy_dtype(path, label, dtype)
    count = math.prod(shape)
    stored = count * dtype.itemsize
    follows = max(0, available - header_bytes)
    if stored > follows:
        raise _error(path, f"{label} is truncated (its header describes shape {shape} of {dtype}, "
                           f"{stored} bytes, but only {follows} bytes follow the header)")
    budget.reserve(path, label, shape, str(dtype), stored, converted=dtype != np.dtype(np.float32))
    data = np.empty(stored, dtype=np.uint8)
    read = _read_into(stream, data)
    if read != stored:
        raise _error(path, f"{label} is truncated (its header describes shape {shape} of {dtype}, "
                           f"{stored} bytes, but only {read} bytes follow the header)")
    values = data.view(dtype)
    array = values.reshape(shape[::-1]).T if fortran_order else values.reshape(shape)
    return _as_float32(path, label, array)


def _load_npy(path: Path, max_bytes: int) -> np.ndarray:
    with _open_binary(path) as handle:
        if handle.read(4) in _ZIP_MAGIC:
            raise _error(path, "file is an .npz archive, not a single .npy array (rename it to .npz)")
        handle.seek(0)
        size = os.fstat(handle.fileno()).st_size
        return _read_npy(path, "array", handle, size, _Budget(max_bytes))
