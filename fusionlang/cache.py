"""A small on-disk cache for bytes and tensors that never crashes its caller.

Where entries live
    ``$FUSIONLANG_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fusionlang``, else
    ``~/.cache/fusionlang``; inside it one sub-folder per package version
    (``importlib.metadata.version("fusionlang")``, or ``"0.1.0.dev0"`` when the
    package is not installed), so an upgrade never reads stale entries.
    Set ``FUSIONLANG_NO_CACHE=1`` to bypass the disk entirely; delete the folder to clear it.
    Entries whose meaning depends on the compiler's code (symmetric bases, plans, generated
    modules) also carry :func:`code_fingerprint` in their key, so an edited checkout never reads
    what an older one wrote under the same version.

File format (one file per request, named ``sha256(key).hex() + ".flc"``)
    a 24-byte header ``struct "<8sIIQ"``: magic (which also records the
    writer's byte order), CRC-32 of key + payload, key length, payload
    length; then the UTF-8 key, then the payload.  A file whose size, magic,
    key or checksum does not match is treated as missing, so truncated,
    garbage or (astronomically unlikely) hash-colliding files are recomputed.

Writers go through a temporary file in the same folder followed by
``os.replace``, which is atomic, so several processes can fill the cache at
once and readers only ever see complete files.  Every file-system failure
(missing, read-only or impossible folder, permission denied) is logged with
``logging.debug`` and the value is simply recomputed: no exception, no warning.

Tensors are stored in a tiny binary format (see :func:`encode_tensors`) that
decodes without ``pickle`` and is several times faster to read than
``torch.load``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "CACHE_DIR_ENV",
    "NO_CACHE_ENV",
    "FALLBACK_VERSION",
    "package_version",
    "code_fingerprint",
    "cache_enabled",
    "cache_directory",
    "entry_path",
    "load_bytes",
    "store_bytes",
    "cached",
    "cached_bytes",
    "cached_tensors",
    "encode_tensors",
    "decode_tensors",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "FUSIONLANG_CACHE_DIR"
NO_CACHE_ENV = "FUSIONLANG_NO_CACHE"
FALLBACK_VERSION = "0.1.0.dev0"

# The last magic byte records endianness: raw tensor bytes written on a
# big-endian machine must not be reinterpreted on a little-endian one.
_MAGIC = b"FLCACHE" + (b"L" if sys.byteorder == "little" else b"B")
_HEADER = struct.Struct("<8sIIQ")
_SUFFIX = ".flc"
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
# libraries whose version can change what the compiler writes (templates, parse trees)
_SHAPING_LIBRARIES = ("jinja2", "lark")


@lru_cache(maxsize=1)
def package_version() -> str:
    """Version string used to separate cache entries of different releases.

    >>> isinstance(package_version(), str)
    True
    """
    try:
        return importlib.metadata.version("fusionlang")
    except importlib.metadata.PackageNotFoundError:
        return FALLBACK_VERSION


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 (first 16 hex digits) of the package's Python files, grammars and templates, and of
    the versions of the libraries that shape the generated code (jinja2, lark).

    Computed once per process (a few milliseconds). If the files cannot be read, a random value:
    entries keyed by it are then never found again, which is safe.

    >>> len(code_fingerprint())
    16
    """
    from ._resources import resource_dir

    digest = hashlib.sha256()
    try:
        package = Path(__file__).resolve().parent
        files = [(p.relative_to(package).as_posix(), p) for p in package.rglob("*.py")]
        files += [(f"{name}/{p.name}", p) for name in ("grammars", "templates")
                  for p in resource_dir(name).iterdir() if p.is_file()]
        for label, path in sorted(files):
            digest.update(label.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
        digest.update(repr([_library_version(name) for name in _SHAPING_LIBRARIES]).encode("utf-8"))
    except (OSError, RuntimeError) as error:
        logger.debug("fusionlang cache: no code fingerprint (%s); code-dependent entries are not reused", error)
        return os.urandom(8).hex()
    return digest.hexdigest()[:16]


def _library_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_enabled() -> bool:
    """False when ``FUSIONLANG_NO_CACHE`` is set to 1/true/yes/on.

    >>> cache_enabled() in (True, False)
    True
    """
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() not in _TRUE_WORDS


def _cache_root() -> Path:
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "fusionlang"


def cache_directory() -> Path:
    """Folder holding this package version's entries (it may not exist yet).

    >>> cache_directory().name == package_version()
    True
    """
    return _cache_root() / package_version()


def entry_path(key: str, folder: str = "") -> Path:
    """File that stores the entry for ``key`` (in the sub-folder ``folder``, if given).

    >>> entry_path("demo").suffix, entry_path("demo", "plans").parent.name
    ('.flc', 'plans')
    """
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return cache_directory() / folder / (digest + _SUFFIX)


def _frame(key: str, payload: bytes) -> bytes:
    key_bytes = key.encode("utf-8")
    checksum = zlib.crc32(payload, zlib.crc32(key_bytes))
    header = _HEADER.pack(_MAGIC, checksum, len(key_bytes), len(payload))
    return header + key_bytes + payload


def _unframe(key: str, blob: bytes) -> bytes | None:
    """The payload of a well-formed file for ``key``, else None."""
    if len(blob) < _HEADER.size:
        return None
    magic, checksum, key_len, payload_len = _HEADER.unpack_from(blob)
    # Exact size check catches truncation and trailing garbage.
    if magic != _MAGIC or len(blob) != _HEADER.size + key_len + payload_len:
        return None
    key_bytes = blob[_HEADER.size : _HEADER.size + key_len]
    payload = blob[_HEADER.size + key_len :]
    if key_bytes != key.encode("utf-8"):
        return None
    if zlib.crc32(payload, zlib.crc32(key_bytes)) != checksum:
        return None
    return payload


def load_bytes(key: str, folder: str = "") -> bytes | None:
    """Payload stored for ``key``, or None if absent, unreadable or damaged.

    >>> load_bytes("fusionlang.doctest/never-stored") is None
    True
    """
    if not cache_enabled():
        return None
    try:
        path = entry_path(key, folder)
        with open(path, "rb") as handle:
            blob = handle.read()
    except (OSError, RuntimeError) as error:  # RuntimeError: no home folder
        logger.debug("fusionlang cache miss for %r: %s", key, error)
        return None
    payload = _unframe(key, blob)
    if payload is None:
        logger.debug("fusionlang cache: damaged entry for %r ignored", key)
    return payload


def _atomic_write(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(blob)
        # Atomic on POSIX and Windows: readers see the old file or the new one.
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def store_bytes(key: str, payload: bytes, folder: str = "") -> bool:
    """Store ``payload`` under ``key``; returns False (never raises) on failure.

    >>> import os, tempfile, unittest.mock
    >>> with unittest.mock.patch.dict(os.environ, {CACHE_DIR_ENV: tempfile.mkdtemp()}):
    ...     store_bytes("demo", b"abc"), load_bytes("demo")
    (True, b'abc')
    """
    if not cache_enabled():
        return False
    try:
        _atomic_write(entry_path(key, folder), _frame(key, payload))
    except (OSError, RuntimeError) as error:
        logger.debug("fusionlang cache: could not store %r: %s", key, error)
        return False
    return True


def cached(
    key: str,
    compute: Callable[[], T],
    *,
    encode: Callable[[T], bytes],
    decode: Callable[[bytes], T],
    validate: Callable[[T], bool] | None = None,
    folder: str = "",
) -> T:
    """Return the value cached under ``key``, computing and storing it if needed.

    A payload that fails to ``decode`` (any exception) or to ``validate`` is
    recomputed and overwritten. ``folder``: a sub-folder of the cache for the entry.

    >>> import os, tempfile, unittest.mock
    >>> with unittest.mock.patch.dict(os.environ, {CACHE_DIR_ENV: tempfile.mkdtemp()}):
    ...     cached("answer", lambda: 42, encode=lambda v: str(v).encode(), decode=int)
    42
    """
    payload = load_bytes(key, folder)
    if payload is not None:
        value = decode_or_none(key, payload, decode, validate)
        if value is not None:
            return value
    value = compute()
    if cache_enabled():
        store_bytes(key, encode(value), folder)
    return value


def decode_or_none(
    key: str,
    payload: bytes,
    decode: Callable[[bytes], T],
    validate: Callable[[T], bool] | None,
) -> T | None:
    """``decode(payload)``, or None (the caller recomputes) when it fails or ``validate`` refuses it."""
    try:
        value = decode(payload)
    except Exception as error:  # any decoding failure just means "recompute"
        logger.debug("fusionlang cache: undecodable entry for %r: %s", key, error)
        return None
    if validate is not None and not validate(value):
        logger.debug("fusionlang cache: invalid entry for %r ignored", key)
        return None
    return value


def cached_bytes(key: str, compute: Callable[[], bytes]) -> bytes:
    """Bytes-valued :func:`cached`.

    >>> import os, tempfile, unittest.mock
    >>> with unittest.mock.patch.dict(os.environ, {CACHE_DIR_ENV: tempfile.mkdtemp()}):
    ...     cached_bytes("greeting", lambda: b"xyz")
    b'xyz'
    """
    return cached(key, compute, encode=bytes, decode=bytes)


def cached_tensors(
    key: str,
    compute: Callable[[], Mapping[str, torch.Tensor]],
    *,
    validate: Callable[[dict[str, torch.Tensor]], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Dict-of-tensors :func:`cached` (tensors come back on the CPU).

    >>> import os, tempfile, torch, unittest.mock
    >>> with unittest.mock.patch.dict(os.environ, {CACHE_DIR_ENV: tempfile.mkdtemp()}):
    ...     cached_tensors("ones", lambda: {"x": torch.ones(2)})["x"].tolist()
    [1.0, 1.0]
    """
    return cached(
        key,
        lambda: dict(compute()),
        encode=encode_tensors,
        decode=decode_tensors,
        validate=validate,
    )


# ---------------------------------------------------------------- tensor codec
#
# payload := u32 count, then per tensor:
#   u16 name length, u8 dtype code, u8 ndim, name (UTF-8), ndim x i64 shape,
#   u64 byte count, raw little/native-endian element bytes (C order).

_COUNT = struct.Struct("<I")
_ITEM = struct.Struct("<HBB")
_NBYTES = struct.Struct("<Q")
_DTYPE_NAMES = (
    "float64",
    "float32",
    "complex128",
    "complex64",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "float16",
    "bfloat16",
)


@lru_cache(maxsize=1)
def _dtype_codes() -> dict[torch.dtype, int]:
    import torch

    return {getattr(torch, name): code for code, name in enumerate(_DTYPE_NAMES)}


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    buffer = bytearray(flat.numel() * flat.element_size())
    if buffer:
        # Copy straight into the bytearray: no numpy, no per-element Python.
        torch.frombuffer(buffer, dtype=torch.uint8).copy_(flat.view(torch.uint8))
    return bytes(buffer)


def encode_tensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise named tensors into the cache's binary payload format.

    >>> import torch
    >>> decode_tensors(encode_tensors({"a": torch.eye(2)}))["a"].shape
    torch.Size([2, 2])
    """
    codes = _dtype_codes()
    parts = [_COUNT.pack(len(tensors))]
    for name, tensor in tensors.items():
        name_bytes = name.encode("utf-8")
        parts.append(_ITEM.pack(len(name_bytes), codes[tensor.dtype], tensor.dim()))
        parts.append(name_bytes)
        parts.append(struct.pack(f"<{tensor.dim()}q", *tensor.shape))
        data = _tensor_bytes(tensor)
        parts.append(_NBYTES.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_tensors(payload: bytes) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encode_tensors`; raises ValueError on malformed input.

    >>> decode_tensors(encode_tensors({}))
    {}
    """
    (count,) = _COUNT.unpack_from(payload, 0)
    offset = _COUNT.size
    tensors: dict[str, torch.Tensor] = {}
    for _ in range(count):
        name, tensor, offset = _decode_one(payload, offset)
        tensors[name] = tensor
    if offset != len(payload):
        raise ValueError("trailing bytes after the last tensor")
    return tensors


def _decode_one(payload: bytes, offset: int) -> tuple[str, torch.Tensor, int]:
    import torch

    name_len, code, ndim = _ITEM.unpack_from(payload, offset)
    offset += _ITEM.size
    name = payload[offset : offset + name_len].decode("utf-8")
    offset += name_len
    shape = struct.unpack_from(f"<{ndim}q", payload, offset)
    offset += 8 * ndim
    (nbytes,) = _NBYTES.unpack_from(payload, offset)
    offset += _NBYTES.size
    dtype = getattr(torch, _DTYPE_NAMES[code])
    tensor = _tensor_from_bytes(payload[offset : offset + nbytes], dtype, shape)
    return name, tensor, offset + nbytes


def _tensor_from_bytes(data: bytes, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    import torch

    expected = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
    if len(data) != expected or any(size < 0 for size in shape):
        raise ValueError(f"tensor byte count {len(data)} does not match shape {shape}")
    if expected == 0:
        return torch.empty(shape, dtype=dtype)
    # A bytearray is writable (no torch warning) and freshly allocated, hence aligned.
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)
