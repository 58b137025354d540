"""Locate package data (grammars, templates) both in a wheel and in a source checkout.

The wheel maps the top-level ``grammars/`` and ``templates/`` folders into the package at build
time; an editable or source checkout finds them next to the package folder instead.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The folder ``name`` (``"grammars"`` or ``"templates"``), wherever it was installed."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"fusionlang data folder {name!r} is missing from the installation")


def read_resource(folder: str, filename: str) -> str:
    """The text of one data file, e.g. ``read_resource("grammars", "fusion.lark")``."""
    return (resource_dir(folder) / filename).read_text(encoding="utf-8")
