"""Diagnostics as data: one registry of codes, a value type, and two renderings (text, JSON).

Passes return diagnostics instead of raising; the driver collects them and raises one
:class:`FusionError` at the end, so independent mistakes are all reported in one run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .source import Source, Span

Severity = Literal["error", "warning", "note"]

# Every code fusionlang can emit, with its one-line title (the registry mypy-style tools keep).
# Ranges: E0xx text (syntax, irreps strings), E1xx names and structure, E2xx selection rules,
# E3xx irreps inference, E4xx channels and weights, E5xx limits, E7xx graphs, E9xx files and tools.
CODES: dict[str, str] = {
    "E001": "unexpected character",
    "E002": "unexpected token",
    "E003": "unexpected end of input",
    "E004": "unclosed bracket",
    "E005": "missing `->` in a statement",
    "E006": "misplaced or malformed declaration",
    "E007": "malformed option list",
    "E008": "missing `:` before irreps",
    "E009": "statement outside a diagram block",
    "E010": "keyword used as a name",
    "E011": "nesting too deep",
    "E012": "two items on one line",
    "E013": "unmatched closing bracket",
    "E020": "malformed irreps string",
    "E021": "half-integer spin outside SU(2)",
    "E022": "unknown group",
    "E023": "parity does not fit the group",
    "E024": "multiplicity must be a positive integer",
    "E101": "unknown name",
    "E102": "duplicate declaration",
    "E103": "edge written by statements of different kinds",
    "E104": "unused input",
    "E105": "missing group declaration",
    "E106": "group declared twice",
    "E107": "output never written",
    "E108": "input written by a statement",
    "E109": "cycle between edges",
    "E110": "duplicate diagram name",
    "E111": "unknown option or option value",
    "E112": "a linear map needs weights",
    "E113": "unknown diagram",
    "E114": "empty diagram",
    "E115": "unknown graph function",
    "E116": "basis does not fit the group",
    "E117": "malformed `only` path list",
    "E118": "a statement option that the statement cannot honour",
    "E201": "coupling violates the triangle rule",
    "E202": "coupling violates parity",
    "E203": "coupling violates integrality of j1 + j2 + j3",
    "E204": "a path listed in `only` is not a path of the statement",
    "E301": "internal edge has no admissible irreps",
    "E302": "declared output is unreachable",
    "E401": "channel mode needs equal multiplicities",
    "E402": "output multiplicity does not match the channel mode",
    "E501": "diagram too large",
    "E701": "node feature read directly in a statement on edges",
    "E702": "graph function applied to the wrong kind of leg",
    "E703": "edge statement and node target need `aggregate = sum`",
    "E704": "malformed fusion over neighbour tuples",
    "E705": "per-class weights need an index input",
    "E706": "domain of an edge does not match its writer",
    "E707": "the number of nodes is unknown",
    "E601": "statement beyond the planner's limits",
    "E602": "generated code does not compile (internal error)",
    "E603": "output entry is identically zero after the symmetric reduction",
    "E901": "cannot read or write a file",
    "E902": "graphviz `dot` is not installed",
    "E903": "bad command-line usage",
}


@dataclass(frozen=True)
class Label:
    """A secondary span with a short text, shown under the primary one."""

    span: Span
    text: str


@dataclass(frozen=True)
class Diagnostic:
    """One message about one place in the user's input.

    >>> d = Diagnostic("E101", "unknown name `x`", Span(0, 1), Source("x -> y", "a.fusion"),
    ...                label="not declared", hint="declare it with `input x : 0e`")
    >>> print(d.render())
    error[E101]: unknown name `x`
     --> a.fusion:1:1
      |
    1 | x -> y
      | ^ not declared
      = help: declare it with `input x : 0e`
    """

    code: str
    message: str
    span: Span | None = None
    source: Source | None = field(default=None, compare=False, repr=False)
    label: str = ""
    hint: str = ""
    severity: Severity = "error"
    notes: tuple[str, ...] = ()
    related: tuple[Label, ...] = ()

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise KeyError(f"diagnostic code {self.code} is not registered in CODES")

    @property
    def file(self) -> str:
        return self.source.name if self.source is not None else "<unknown>"

    @property
    def line(self) -> int | None:
        return self._position(self.span.start).line if self.span else None

    @property
    def column(self) -> int | None:
        return self._position(self.span.start).column if self.span else None

    def _position(self, offset: int) -> Any:
        assert self.source is not None
        return self.source.position(offset)

    def located(self, source: Source, offset: int = 0) -> Diagnostic:
        """The same diagnostic moved into ``source``, ``offset`` characters further on.

        Used when a piece of a file (an irreps string) was parsed on its own."""
        spans = self.span.shift(offset) if self.span else None
        related = tuple(Label(r.span.shift(offset), r.text) for r in self.related)
        return replace(self, span=spans, source=source, related=related)

    def render(self) -> str:
        """rustc-style text: header, location, caret snippet, notes and help."""
        lines = [f"{self.severity}[{self.code}]: {self.message}"]
        gutter = 1
        if self.span is not None and self.source is not None:
            gutter = len(str(self.source.position(self.span.start).line))
            lines += _snippet(self.source, self.span, self.label)
            for extra in self.related:
                lines += _snippet(self.source, extra.span, extra.text, arrow="...")
        pad = " " * (gutter + 1)
        lines += [f"{pad}= note: {note}" for note in self.notes]
        if self.hint:
            lines.append(f"{pad}= help: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (what ``--format json`` prints)."""
        out: dict[str, Any] = {
            "severity": self.severity, "code": self.code, "title": CODES[self.code],
            "message": self.message, "file": self.file, "line": None, "column": None,
            "end_line": None, "end_column": None, "label": self.label, "hint": self.hint,
            "notes": list(self.notes),
        }
        if self.span is not None and self.source is not None:
            start, end = self.source.position(self.span.start), self.source.position(self.span.end)
            out.update(line=start.line, column=start.column, end_line=end.line, end_column=end.column)
        return out


def _snippet(source: Source, span: Span, label: str, arrow: str = "-->") -> list[str]:
    start = source.position(span.start)
    text = source.line_text(start.line)
    width = len(str(start.line))
    # Carets stop at the end of the first line: multi-line spans are underlined on their first line.
    end_col = min(source.position(span.end).column, len(text) + 1) \
        if source.position(span.end).line == start.line else len(text) + 1
    text, first, last = _window(_printable(text), start.column, end_col)
    carets = "^" * max(1, last - first)
    pad = " " * width
    return [
        f"{pad}{arrow} {source.name}:{start.line}:{start.column}",
        f"{pad} |",
        f"{start.line} | {text}",
        f"{pad} | {' ' * (first - 1)}{carets}{(' ' + label) if label else ''}".rstrip(),
    ]


SNIPPET_WIDTH = 100  # characters of a long line shown around the span


def _window(text: str, first: int, last: int) -> tuple[str, int, int]:
    """A long line cut to the part around columns ``first``..``last`` (1-based), with ``…`` marks;
    the columns are moved to match. A 1000-leaf statement stays readable."""
    if len(text) <= SNIPPET_WIDTH:
        return text, first, last
    begin = max(0, first - 1 - SNIPPET_WIDTH // 4)
    stop = begin + SNIPPET_WIDTH
    prefix, suffix = ("…" if begin else ""), ("…" if stop < len(text) else "")
    shift = begin - len(prefix)
    return prefix + text[begin:stop] + suffix, first - shift, min(last - shift, SNIPPET_WIDTH + len(prefix) + 1)


def _printable(text: str) -> str:
    """Lone surrogates (possible in strings given to the API) as U+FFFD, one for one, so that the
    message can be printed and encoded and the carets stay aligned."""
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def sort_key(diagnostic: Diagnostic) -> tuple[str, int, str]:
    """Order diagnostics by file, then position, then code (deterministic output)."""
    start = diagnostic.span.start if diagnostic.span else -1
    return (diagnostic.file, start, diagnostic.code)


class FusionError(Exception):
    """Raised for every user error; carries one or more :class:`Diagnostic` values.

    ``str(error)`` is the rendered text of all diagnostics; ``error.diagnostics`` is the data.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics: tuple[Diagnostic, ...] = tuple(sorted(diagnostics, key=sort_key))
        if not self.diagnostics:
            raise ValueError("FusionError needs at least one diagnostic")
        super().__init__(render_all(self.diagnostics))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.diagnostics,))

    def to_json(self) -> str:
        return diagnostics_json(self.diagnostics)


def render_all(diagnostics: Iterable[Diagnostic]) -> str:
    """All diagnostics as text, separated by blank lines, with an error count at the end."""
    items = list(diagnostics)
    errors = sum(d.severity == "error" for d in items)
    summary = f"{errors} error{'s' if errors != 1 else ''} found" if errors else ""
    return "\n\n".join([d.render() for d in items] + ([summary] if summary else []))


def diagnostics_json(diagnostics: Iterable[Diagnostic]) -> str:
    """All diagnostics as a JSON document ``{"diagnostics": [...]}``."""
    return json.dumps({"diagnostics": [d.to_dict() for d in diagnostics]}, indent=2)


def error(code: str, message: str, span: Span | None = None, source: Source | None = None,
          **extra: Any) -> Diagnostic:
    """Shorthand for an error diagnostic."""
    return Diagnostic(code, message, span, source, **extra)


def raise_if_errors(diagnostics: Iterable[Diagnostic]) -> None:
    """Raise one :class:`FusionError` if any diagnostic is an error."""
    items = tuple(diagnostics)
    if any(d.severity == "error" for d in items):
        raise FusionError(items)
