"""Resynchronising after a syntax error: the text to parse next, with the broken part blanked
out, so that :mod:`fusionlang.parse` can go on and report independent mistakes together.

>>> _blank("ab\\ncd", 1, 4)
'a   d'
"""

from __future__ import annotations

import re

from lark import Token

from .syntax_errors import Failure, Report

__all__ = ["resynchronise"]

_NEXT_DIAGRAM = re.compile(r"^[ \t]*diagram\b", re.MULTILINE)
_ITEM_END = re.compile(r"[\n;}#]")


def resynchronise(f: Failure, report: Report) -> str | None:
    """The text to parse next: the broken part blanked out, or None to stop.

    Blanking keeps every offset, so later diagnostics point into the original text. Everything
    before the resumption point (known good) is blanked too, so each retry only parses the rest.
    """
    if f.kind == "$END":
        return None
    block = f.block
    if report.drop_block and block is not None:
        return _blank(f.text, 0, f.item_start)
    if block is None:
        return _skip_to_next_diagram(f)
    found = _ITEM_END.search(f.text, f.pos)
    end = found.start() if found else len(f.text)
    start = min(f.item_start, end)
    if not f.text[start:end].strip():
        return None
    return _blank(_blank(f.text, 0, _diagram_start(f)), start, end)


def _diagram_start(f: Failure) -> int:
    block = f.block
    index = next(i for i, node in enumerate(f.stack) if node is block)
    keyword = f.stack[max(0, index - 2)]
    return keyword.start_pos if isinstance(keyword, Token) and keyword.start_pos is not None else 0


def _skip_to_next_diagram(f: Failure) -> str | None:
    """At top level, go on with the next line that starts with ``diagram``."""
    found = _NEXT_DIAGRAM.search(f.text, f.line_end)
    return None if found is None else _blank(f.text, 0, found.start())


def _blank(text: str, start: int, end: int) -> str:
    """``text`` with ``[start, end)`` replaced by spaces (new lines become spaces too)."""
    return text[:start] + " " * (end - start) + text[end:]
