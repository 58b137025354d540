"""Python objects in the disk cache (:mod:`fusionlang.cache`): whole compilations, so that a warm
``fusionlang.compile`` reads its checked diagrams, plans and generated source instead of
recomputing them.

:func:`cached_objects` stores a value as a zlib-compressed pickle in the sub-folder :data:`FOLDER`
of the cache, framed, checksummed and written atomically like every entry there. The folder is kept
under :data:`MAX_BYTES`: a process looks at its size on its first store and every
:data:`PRUNE_EVERY` stores after, and past the bound deletes the entries used least recently (a
hit refreshes its entry's time). Objects passed as ``shared`` are stored
as references and come back as the caller's own objects (a compilation's
:class:`~fusionlang.source.Source`, which every span of its diagrams points at).

Reading builds only classes (fusionlang's own and a few value types of the standard library) and
calls no other function, so a damaged, foreign or planted entry fails to load and is recomputed,
like any damaged entry of the cache.

>>> import os, tempfile, unittest.mock
>>> with unittest.mock.patch.dict(os.environ, {cache.CACHE_DIR_ENV: tempfile.mkdtemp()}):
...     first = cached_objects("demo", lambda: {"paths": (1, 2)})
...     again = cached_objects("demo", lambda: {"paths": ()})
>>> first == again == {"paths": (1, 2)}
True
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import pickle
import zlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from . import cache

__all__ = ["FOLDER", "MAX_BYTES", "PRUNE_EVERY", "cached_objects", "decode_objects", "encode_objects", "prune"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

FOLDER = "objects"
MAX_BYTES = 256 * 2**20
# Stores between two looks at the folder's size (a look stats every entry: a fuzzing run that
# compiles thousands of diagrams must not pay it each time).
PRUNE_EVERY = 64
# After pruning, the folder holds at most this fraction of MAX_BYTES (the most recently used).
_KEEP = 0.75
_PROTOCOL = 5
# Value types of the standard library that stored objects may contain (classes only).
_STANDARD = frozenset({("fractions", "Fraction"), ("builtins", "frozenset"), ("builtins", "set"),
                       ("builtins", "complex"), ("builtins", "slice"), ("builtins", "range")})


def cached_objects(key: str, compute: Callable[[], T], *, shared: Mapping[str, object] | None = None,
                   validate: Callable[[Any], bool] | None = None) -> T:
    """The value stored under ``key``, or ``compute()`` stored for next time.

    ``shared``: objects stored by reference (by name) and substituted back when read; ``validate``
    rejects a decoded value (then it is recomputed)."""
    references = dict(shared or {})
    payload = cache.load_bytes(key, FOLDER)
    if payload is not None:
        found = cache.decode_or_none(key, payload, lambda data: decode_objects(data, references), validate)
        if found is not None:
            _touch(key)
            return found
    value = compute()
    if cache.cache_enabled():
        _store(key, value, references)
    return value


_stores = itertools.count()


def _store(key: str, value: object, shared: Mapping[str, object]) -> None:
    try:
        payload = encode_objects(value, shared)
    except Exception as error:  # an unpicklable or too deeply nested value: no entry, nothing else
        logger.debug("fusionlang cache: cannot store %r: %s", key, error)
        return
    if cache.store_bytes(key, payload, FOLDER) and next(_stores) % PRUNE_EVERY == 0:
        prune()


def _touch(key: str) -> None:
    """Mark an entry as recently used (best effort: a read-only cache is fine)."""
    with contextlib.suppress(OSError, RuntimeError):
        os.utime(cache.entry_path(key, FOLDER))


def encode_objects(value: object, shared: Mapping[str, object] | None = None) -> bytes:
    """``value`` pickled (``shared`` objects by reference) and compressed.

    >>> decode_objects(encode_objects((1, "a", frozenset({2}))))
    (1, 'a', frozenset({2}))
    """
    stream = io.BytesIO()
    _Pickler(stream, shared or {}).dump(value)
    return zlib.compress(stream.getvalue(), 1)


def decode_objects(payload: bytes, shared: Mapping[str, object] | None = None) -> Any:
    """Inverse of :func:`encode_objects`; raises on damaged input or on anything but stored classes.

    >>> decode_objects(encode_objects(print))
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: builtins.print is not a class that fusionlang stores
    """
    return _Unpickler(io.BytesIO(zlib.decompress(payload)), shared or {}).load()


class _Pickler(pickle.Pickler):
    def __init__(self, stream: io.BytesIO, shared: Mapping[str, object]) -> None:
        super().__init__(stream, protocol=_PROTOCOL)
        self._names = {id(value): name for name, value in shared.items()}

    def persistent_id(self, obj: object) -> str | None:
        return self._names.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream: io.BytesIO, shared: Mapping[str, object]) -> None:
        super().__init__(stream)
        self._shared = shared

    def persistent_load(self, pid: Any) -> object:
        if isinstance(pid, str) and pid in self._shared:
            return self._shared[pid]
        raise pickle.UnpicklingError(f"no shared object {pid!r}")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _STANDARD or module == "fusionlang" or module.startswith("fusionlang."):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not a class that fusionlang stores")


def prune(limit: int = MAX_BYTES) -> int:
    """Once :data:`FOLDER` holds more than ``limit`` bytes, delete its least recently used entries
    until it holds at most 3/4 of it; returns how many were deleted (never raises).

    >>> import os, tempfile, unittest.mock
    >>> with unittest.mock.patch.dict(os.environ, {cache.CACHE_DIR_ENV: tempfile.mkdtemp()}):
    ...     prune()
    0
    """
    entries = _entries()
    total = sum(size for _, size, _ in entries)
    if total <= limit:
        return 0
    removed = 0
    for _, size, path in sorted(entries):
        if total <= _KEEP * limit:
            break
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed += 1
        total -= size
    return removed


def _entries() -> list[tuple[float, int, str]]:
    """(time used, size, path) of every complete entry of the folder (temporary files excluded)."""
    found = []
    try:
        with os.scandir(cache.cache_directory() / FOLDER) as listing:
            for item in listing:
                if item.name.endswith(".flc") and not item.name.startswith("."):
                    with contextlib.suppress(OSError):
                        stat = item.stat()
                        found.append((stat.st_mtime, stat.st_size, item.path))
    except (OSError, RuntimeError):
        return []
    return found
