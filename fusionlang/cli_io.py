"""What the ``fusionc`` commands read and write: FILE arguments (``-`` is standard input) and
files written whole or not at all (E901 on a failed read or write)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .diagnostics import Diagnostic, FusionError
from .source import Source

__all__ = ["read_inputs", "write_atomically"]


def read_inputs(paths: Sequence[str]) -> list[Source]:
    """Sources for the command-line FILE arguments (``-`` is standard input)."""
    sources = []
    for path in paths:
        if path == "-":
            sources.append(Source(sys.stdin.read(), "<stdin>"))
            continue
        try:
            sources.append(Source(Path(path).read_text(encoding="utf-8"), path))
        except (OSError, UnicodeDecodeError) as failure:
            raise FusionError([Diagnostic("E901", f"cannot read `{path}`: {failure.__class__.__name__}: "
                                          f"{getattr(failure, 'strerror', None) or failure}",
                                          hint="check the path and that the file is UTF-8 text")]) from None
    return sources


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write through a temporary file next to ``path`` and a rename: never half a file."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{os.getpid()}.fusionc-tmp")
    try:
        temporary.write_bytes(payload)
        temporary.replace(path)
    except OSError as failure:
        temporary.unlink(missing_ok=True)
        raise FusionError([Diagnostic("E901", f"cannot write `{path}`: {failure.strerror or failure}",
                                      hint="check that the folder exists and is writable")]) from None
