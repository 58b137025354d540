"""Loading generated sources as importable modules, and releasing them once collected
(:func:`load_generated`); :mod:`fusionlang.runtime` re-exports it. Generated code never calls it, so
it stays out of the runtime that standalone modules inline.
"""

from __future__ import annotations

import gc
import linecache
import sys
import threading
import types
import weakref
from typing import Any

_LOCK = threading.Lock()
COLLECT_EVERY = 256  # modules loaded between two garbage collections (see load_generated)
_EXECUTED = [0]
PACKAGE = "_fusionlang_generated"  # the parent of every module compiled in memory


def load_generated(name: str, source: str) -> types.ModuleType:
    """Execute a generated source as the module ``name`` (once: while a module of that name and
    source is alive, it is returned as is).

    The module is registered in ``sys.modules`` and its lines in ``linecache`` for as long as it
    lives, and it lives as long as anything of it does (the module, a class, an instance: they
    all hold its globals, which hold the module). Once the last of them is collected, the next
    call (or :func:`release_collected`) drops both registrations; every ``COLLECT_EVERY`` new
    modules the garbage is collected. So compiling thousands of diagrams in one process keeps
    those still in use and at most ``COLLECT_EVERY`` others.

    >>> m = load_generated("_fusionlang_doctest", "ANSWER = 42\\n")
    >>> m.ANSWER, m is load_generated("_fusionlang_doctest", "ANSWER = 42\\n")
    (42, True)
    """
    with _LOCK:
        _release_pending()
        module = _alive(name, source)
        if module is not None:
            return module
        module = _execute(name, source)
        _EXECUTED[0] += 1
        due = _EXECUTED[0] % COLLECT_EVERY == 0
    if due:
        # A released module is cyclic garbage (its classes and functions hold its globals), which
        # Python collects only in its rare full collections: collect now and then (about 0.1 s
        # with torch loaded), so the registrations stay within the live modules + COLLECT_EVERY.
        gc.collect()
        release_collected()
    return module


def release_collected() -> None:
    """Drop the ``sys.modules`` and ``linecache`` entries of generated modules that were garbage
    collected (:func:`load_generated` does it on every call).

    >>> import gc
    >>> m = load_generated("_fusionlang_generated.doctest", "A = 1\\n")
    >>> del m; _ = gc.collect(); release_collected()
    >>> import sys; "_fusionlang_generated.doctest" in sys.modules
    False
    """
    with _LOCK:
        _release_pending()


class _Registration(types.ModuleType):
    """What ``sys.modules`` holds for a module compiled in memory: a view that reaches the module
    through a weak reference (``import``, ``pickle`` and ``inspect`` find its classes through it),
    so that the registration keeps nothing alive."""

    def __init__(self, module: types.ModuleType) -> None:
        super().__init__(module.__name__, module.__doc__)
        self.__file__ = module.__file__
        self.__fusion_source__ = module.__fusion_source__  # type: ignore[attr-defined]
        self.__fusion_weakref__ = weakref.ref(module)

    def __getattr__(self, name: str) -> Any:
        module = self.__fusion_weakref__()
        if module is None:
            raise AttributeError(f"module {self.__name__!r} was released")
        return getattr(module, name)


def _alive(name: str, source: str) -> types.ModuleType | None:
    """The live module registered as ``name`` with this source, if any."""
    registered = sys.modules.get(name)
    if getattr(registered, "__fusion_source__", None) != source:
        return None
    if isinstance(registered, _Registration):
        return registered.__fusion_weakref__()
    return registered


def _execute(name: str, source: str) -> types.ModuleType:
    filename = f"<fusionlang-generated {name}>"
    lines = source.splitlines(keepends=True)
    module = types.ModuleType(name)
    module.__file__ = filename
    module.__fusion_source__ = source  # type: ignore[attr-defined]
    # The globals hold the module: it lives exactly as long as anything defined in it.
    module.__fusion_module__ = module  # type: ignore[attr-defined]
    linecache.cache[filename] = (len(source), None, lines, filename)
    try:
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    except BaseException:
        _unregister(name, filename, None, lines)
        raise
    registration = _Registration(module)
    if name.startswith(PACKAGE + ".") and PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE, "Modules that fusionlang compiled in memory.")
        package.__path__ = []  # a package, so that `pickle` can import its modules by name
        sys.modules[PACKAGE] = package
    sys.modules[name] = registration
    weakref.finalize(module, _collected, name, filename, registration, lines).atexit = False
    return module


# The registrations of collected modules, dropped at the next load. The collector runs finalisers
# in any thread at any allocation, possibly while other code walks `sys.modules` or
# `linecache.cache` (`linecache.checkcache` indexes a list of keys taken before): a finaliser only
# appends here (atomic), it never changes either mapping itself.
_PENDING: list[tuple[str, str, types.ModuleType | None, list[str]]] = []


def _collected(name: str, filename: str, registration: types.ModuleType | None, lines: list[str]) -> None:
    _PENDING.append((name, filename, registration, lines))


def _release_pending() -> None:
    while _PENDING:
        _unregister(*_PENDING.pop())


def _unregister(name: str, filename: str, registration: types.ModuleType | None, lines: list[str]) -> None:
    """Remove exactly these registrations (a module loaded again under the same name keeps its own)."""
    if registration is not None and sys.modules.get(name) is registration:
        del sys.modules[name]
    entry = linecache.cache.get(filename)
    if entry is not None and len(entry) == 4 and entry[2] is lines:
        del linecache.cache[filename]
