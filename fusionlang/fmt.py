"""Canonical formatting of ``.fusion`` files (what ``fusionc fmt`` prints).

>>> print(format_source("diagram d { group O3; input x,y:0e+1o; x,y->z [weights=none] }"), end="")
diagram d {
    group O3
    input  x, y : 0e + 1o
    x, y -> z  [weights = none]
}

The style: four-space indent; declaration keywords padded to six columns (``input  a``,
``output z``, ``edge   ab``); ``group O3`` unpadded; two spaces before an option list, with the
``[`` aligned across a run of consecutive statements (a blank line ends the run); trailing
comments two spaces after the code; one blank line between diagrams, and at most one between
items where the source had any. Irreps are respelled by :class:`~fusionlang.groups.Irreps`
(``32x0e+32x1o`` → ``32x0e + 32x1o``) when the diagram's group is known and the text parses;
otherwise they are kept as written.

Formatting is idempotent and ``parse(format_file(f)) == f`` whenever ``f``'s irreps are already
canonical (always with ``canonical_irreps=False``); comments are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from . import syntax as sx
from .diagnostics import FusionError
from .groups import Irreps, as_group
from .parse import parse
from .source import Source

__all__ = ["format_file", "format_source"]

INDENT = " " * 4
KEYWORD_WIDTH = 6
_BLANK_LINE = re.compile(r"\n[ \t\f\r]*\n")


def format_source(text: str, name: str = "<string>") -> str:
    """Parse ``text`` and format it; syntax errors raise :class:`FusionError`.

    >>> format_source("diagram d {\\n  a,b->c   # why\\n}")
    'diagram d {\\n    a, b -> c  # why\\n}\\n'
    """
    return format_file(parse(text, name))


def format_file(file: sx.File, *, canonical_irreps: bool = True) -> str:
    """The canonical text of ``file``, ending with one new line (empty for an empty file).

    >>> format_file(sx.File(()))
    ''
    """
    lines: list[str] = []
    for index, diagram in enumerate(file.diagrams):
        if index:
            lines.append("")
        lines += _comment_lines(diagram.comments, "")
        lines += _diagram_lines(diagram, file.source, canonical_irreps)
    if file.closing_comments:
        lines += [""] if lines else []
        lines += _comment_lines(file.closing_comments, "")
    return "".join(line + "\n" for line in lines)


def _diagram_lines(diagram: sx.Diagram, source: Source, canonical_irreps: bool) -> list[str]:
    group = _group_name(diagram) if canonical_irreps else None
    blanks = _blank_lines_before(diagram, source)
    codes = _item_codes(diagram.items, blanks, group)
    lines = [_with_trailing(f"diagram {diagram.name.text} {{", diagram.trailing)]
    for item, code, blank in zip(diagram.items, codes, blanks, strict=True):
        lines += [""] if blank and len(lines) > 1 else []
        lines += _comment_lines(item.comments, INDENT)
        lines.append(INDENT + _with_trailing(code, item.trailing))
    if diagram.closing_comments:
        lines += [""] if diagram.items and _blank_before_closing(diagram, source) else []
        lines += _comment_lines(diagram.closing_comments, INDENT)
    return lines + ["}"]


def _item_codes(items: Sequence[sx.Item], blanks: Sequence[bool], group: str | None) -> list[str]:
    """Each item's code without its comment, statement option lists aligned per run."""
    codes = [_code(item, group) for item in items]
    for run in _statement_runs(items, blanks):
        with_options = [i for i in run if _statement_options(items[i])]
        width = max((len(codes[i]) for i in with_options), default=0)
        for i in with_options:
            codes[i] = codes[i].ljust(width) + _options(_statement_options(items[i]))
    return codes


def _statement_runs(items: Sequence[sx.Item], blanks: Sequence[bool]) -> list[list[int]]:
    """Indices of consecutive statements, split where the source had a blank line."""
    runs: list[list[int]] = []
    for index, item in enumerate(items):
        if not isinstance(item, sx.Statement):
            continue
        if runs and runs[-1][-1] == index - 1 and not blanks[index]:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _statement_options(item: sx.Item) -> tuple[sx.Option, ...]:
    return item.options if isinstance(item, sx.Statement) else ()


def _code(item: sx.Item, group: str | None) -> str:
    """The code of an item; a statement's options come later (they are aligned)."""
    if isinstance(item, sx.GroupDecl):
        return f"group {item.group.text}"
    if isinstance(item, sx.BasisDecl):
        return f"basis {item.basis.text}"
    if isinstance(item, sx.Statement):
        return ", ".join(_arg(a) for a in item.args) + f" -> {item.target.text}"
    names = ", ".join(name.text for name in item.names)
    return f"{item.kind:<{KEYWORD_WIDTH}} {names}" + _type(item.type, group) + _options(item.options)


def _type(leg_type: sx.IrrepsText | sx.Lmax | sx.Count | None, group: str | None) -> str:
    if leg_type is None:
        return ""
    if isinstance(leg_type, sx.Count):
        return f" : {leg_type.value}"
    if isinstance(leg_type, sx.Lmax):
        return f" : lmax {leg_type.value}"
    return f" : {_irreps(leg_type.text, group)}"


def _irreps(text: str, group: str | None) -> str:
    """``text`` respelled canonically for ``group``; as written if either is not valid."""
    if group is None:
        return text
    try:
        return str(Irreps(text, group))
    except (FusionError, ValueError, RecursionError):
        return text


def _group_name(diagram: sx.Diagram) -> str | None:
    """The group of the diagram's first ``group`` declaration, if it names a known group."""
    name = next((item.group.text for item in diagram.items if isinstance(item, sx.GroupDecl)), None)
    if name is None:
        return None
    try:
        return as_group(name).name
    except FusionError:
        return None


def _arg(arg: sx.Arg) -> str:
    if isinstance(arg, sx.Leaf):
        return arg.name.text if arg.via is None else f"{arg.via.text}({arg.name.text})"
    return "(" + ", ".join(_arg(item) for item in arg.items) + ")"


def _options(options: tuple[sx.Option, ...]) -> str:
    return "  " + _option_list(options) if options else ""


def _option_list(options: tuple[sx.Option, ...]) -> str:
    return "[" + ", ".join(f"{o.key.text} = {o.value.text}" for o in options) + "]"


def _with_trailing(code: str, comment: str) -> str:
    return f"{code}  #{comment}" if comment else code


def _comment_lines(comments: Sequence[str], indent: str) -> list[str]:
    return [f"{indent}#{comment}" for comment in comments]


def _blank_lines_before(diagram: sx.Diagram, source: Source) -> list[bool]:
    """Whether the source had a blank line between each item and the one before it."""
    items = diagram.items
    return [i > 0 and _has_blank_line(source, items[i - 1].span.end, items[i].span.start)
            for i in range(len(items))]


def _blank_before_closing(diagram: sx.Diagram, source: Source) -> bool:
    """Whether a blank line separated the last item from the closing comments."""
    end = diagram.items[-1].span.end
    line_end = source.text.find("\n", end)
    comment = source.text.find("#", line_end) if line_end >= 0 else -1
    return comment >= 0 and _has_blank_line(source, line_end, comment)


def _has_blank_line(source: Source, start: int, end: int) -> bool:
    if not 0 <= start <= end <= len(source.text):
        return False  # spans that do not come from this source (a tree built by hand)
    return _BLANK_LINE.search(source.text, start, end) is not None
