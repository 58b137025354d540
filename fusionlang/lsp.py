"""The language server behind ``fusionc lsp``: editor support for ``.fusion`` files over stdio.

Features (docs/editors.md):

* **diagnostics** on open, change and save: exactly what ``fusionc check`` reports (code, message,
  span); a diagnostic's label and hint come along as related information at the same place;
* **hover** on a leg name: its role, irreps and dimension (inferred ones too) and every statement
  it takes part in, with the statement's path counts and the irreps of the leg on those paths;
* **formatting**: what ``fusionc fmt`` prints, as one edit of the whole document (none when the
  text does not parse, or is already formatted);
* **go to definition** from a use of a leg to its ``input``/``output``/``edge``/``index``
  declaration, or, for an inferred edge, to the first statement that writes it.

The analysis (spans, occurrences, hover text) is plain Python and needs no editor; pygls and
lsprotocol are imported only when the server is built (:func:`create_server`), so this module and
``import fusionlang`` stay light.

>>> analysis = analyse("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }")
>>> [d.code for d in analysis.result.diagnostics], analysis.definition(analysis.text.rindex("a,"))
([], Span(start=29, end=30))
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

from . import syntax as sx
from ._version import __version__
from .diagnostics import Diagnostic, FusionError
from .frontend import CheckResult, check_source
from .source import Span

if TYPE_CHECKING:
    from lsprotocol import types as lsp
    from pygls.lsp.server import LanguageServer

    from . import ir

__all__ = ["Analysis", "LineIndex", "Occurrence", "Session", "analyse", "create_server", "document_name", "format_edit",
           "hover_markdown", "lsp_diagnostics", "lsp_range", "serve"]

LOG = logging.getLogger(__name__)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
Use = Literal["declaration", "write", "read", "per"]


class LineIndex:
    """Character offsets (what a :class:`~fusionlang.source.Span` holds) ↔ LSP positions.

    LSP lines and columns are 0-based and a column counts code units of the negotiated encoding
    (UTF-16 unless the client asks for another); a Span counts characters from 0.

    >>> index = LineIndex("a\\n😀b")
    >>> index.position(4), index.offset(1, 2)
    ((1, 3), 3)
    """

    def __init__(self, text: str, encoding: str = "utf-16"):
        self.text = text
        self.encoding = encoding.lower()
        self.starts = [0] + [match.end() for match in _LINE_BREAK.finditer(text)]

    def position(self, offset: int) -> tuple[int, int]:
        """The 0-based (line, column in code units) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        # an offset between the \r and \n of a line break stays at the end of its line
        return line, self._units(self.text[self.starts[line] : offset].rstrip("\r\n"))

    def offset(self, line: int, character: int) -> int:
        """The character offset of an LSP position, clamped into the text and its line."""
        if line < 0:
            return 0
        if line >= len(self.starts):
            return len(self.text)
        start, units = self.starts[line], 0
        for offset, char in enumerate(self._line(line), start):
            units += self._units(char)
            if units > character:
                return offset
        return start + len(self._line(line))

    def _line(self, line: int) -> str:
        end = self.starts[line + 1] if line + 1 < len(self.starts) else len(self.text)
        return _LINE_BREAK.sub("", self.text[self.starts[line] : end])

    def _units(self, text: str) -> int:
        if self.encoding == "utf-8":
            return len(text.encode("utf-8", "surrogatepass"))
        if self.encoding == "utf-32":
            return len(text)
        return len(text) + sum(ord(char) > 0xFFFF for char in text)


@dataclass(frozen=True)
class Occurrence:
    """One place where a leg's name is written: declared, written by a statement (its target),
    read by one (a leaf), or named by ``[per = NAME]``."""

    name: str
    span: Span
    diagram: str
    use: Use
    item: sx.Item
    block: int = 0  # the diagram's place in the file (two diagrams may share a name: E110)


@dataclass(frozen=True)
class Analysis:
    """A document checked once: the front end's result, its syntax tree and every name in it."""

    text: str
    result: CheckResult
    file: sx.File | None  # None when the text does not parse
    occurrences: tuple[Occurrence, ...]

    def occurrence_at(self, offset: int) -> Occurrence | None:
        """The name under the cursor (a cursor just after a name still counts)."""
        return next((o for o in self.occurrences if o.span.start <= offset <= o.span.end), None)

    def definition(self, offset: int) -> Span | None:
        """Where the name under the cursor is declared (or first written, for an inferred edge)."""
        found = self.occurrence_at(offset)
        return self.declaration(found).span if found else None

    def declaration(self, use: Occurrence) -> Occurrence:
        """The declaration of ``use``'s leg in its diagram; else its first writer; else itself."""
        same = [o for o in self.occurrences if o.block == use.block and o.name == use.name]
        declared = [o for o in same if o.use == "declaration"]
        return (declared or [o for o in same if o.use == "write"] or [use])[0]

    def checked_diagram(self, name: str) -> ir.Diagram | None:
        """The inferred diagram called ``name``; None when it has errors."""
        found = [d for d in self.result.diagrams if d.name == name]
        return found[0] if len(found) == 1 else None


def analyse(text: str, name: str = "<string>") -> Analysis:
    """Check ``text`` with the front end and index the names in its syntax tree."""
    from .parse import parse

    result = check_source(text, name)
    try:
        file: sx.File | None = parse(text, name)
    except FusionError:
        file = None
    found = tuple(_occurrences(file)) if file is not None else ()
    return Analysis(text, result, file, found)


def _occurrences(file: sx.File) -> Iterator[Occurrence]:
    """Every leg name of every diagram, in source order within each item."""
    for block, diagram in enumerate(file.diagrams):
        for item in diagram.items:
            for name, use in _names_of(item):
                yield Occurrence(name.text, name.span, diagram.name.text, use, item, block)


def _names_of(item: sx.Item) -> Iterator[tuple[sx.Name, Use]]:
    if isinstance(item, sx.LegDecl):
        yield from ((name, "declaration") for name in item.names)
    elif isinstance(item, sx.Statement):
        yield from ((leaf.name, "read") for leaf in _leaves(item.args))
        yield item.target, "write"
        yield from ((o.value, "per") for o in item.options if o.key.text == "per")


def _leaves(args: tuple[sx.Arg, ...]) -> Iterator[sx.Leaf]:
    """The leaves of a statement's arguments, left to right (nesting is capped at 64 by the parser)."""
    for arg in args:
        if isinstance(arg, sx.Leaf):
            yield arg
        else:
            yield from _leaves(arg.items)


def format_edit(text: str, name: str = "<string>") -> str | None:
    """What ``fusionc fmt`` prints for ``text``; None when it does not parse or is already formatted.

    >>> format_edit("diagram d { group O3; input x : 0e; x -> y [weights=path] }")
    'diagram d {\\n    group O3\\n    input  x : 0e\\n    x -> y  [weights = path]\\n}\\n'
    """
    from .fmt import format_source

    try:
        formatted = format_source(text, name)
    except FusionError:
        return None
    return formatted if formatted != text else None


# --- hover -------------------------------------------------------------------------------------


def hover_markdown(analysis: Analysis, offset: int) -> tuple[Span, str] | None:
    """The hover text (Markdown) of the leg name under the cursor, and the name's span.

    >>> analysis = analyse("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }")
    >>> print(hover_markdown(analysis, analysis.text.rindex("c"))[1])
    **output** `c` : `0 + 1` (dim 4, declared)
    <BLANKLINE>
    - line 4 `a, b -> c`: writes it · coupling · 2 paths (0: 1, 1: 1) · uses 0, 1
    """
    found = analysis.occurrence_at(offset)
    if found is None:
        return None
    diagram = analysis.checked_diagram(found.diagram)
    if diagram is not None and _has_leg(diagram, found.name):
        return found.span, _checked_hover(diagram, found.name)
    return found.span, _syntax_hover(analysis, found)


def _has_leg(diagram: ir.Diagram, name: str) -> bool:
    return any(leg.name == name for leg in diagram.legs)


def _checked_hover(diagram: ir.Diagram, name: str) -> str:
    """Role, irreps and dimension from inference, then every statement the leg takes part in."""
    from .report import ir_report

    report = ir_report(diagram)
    leg = next(item for item in report["legs"] if item["name"] == name)
    lines = [_leg_header(leg), ""]
    for statement, summary in zip(diagram.statements, report["statements"], strict=True):
        how = _part(statement, name)
        if how:
            lines.append(_statement_line(diagram, statement, summary, name, how))
    return "\n".join(lines).rstrip()


def _leg_header(leg: dict[str, Any]) -> str:
    where = "" if leg["domain"] == "batch" else f", on {leg['domain']}"
    if leg["role"] == "index":
        return f"**index** `{leg['name']}` : {leg['classes']} classes{where}"
    how = "declared" if leg["declared"] else "inferred"
    lmax = f", lmax {leg['lmax']}" if leg["lmax"] is not None else ""
    return f"**{leg['role']}** `{leg['name']}` : `{leg['irreps']}` (dim {leg['dim']}, {how}{lmax}{where})"


def _part(statement: ir.Statement, name: str) -> str:
    """How a statement uses a leg: ``writes it``, ``reads it`` (``twice``, ...) or ``per``."""
    reads = sum(ref.leg == name for ref in statement.leaves)
    parts = ["writes it"] if statement.target == name else []
    parts += [f"reads it{_times(reads)}"] if reads else []
    parts += ["selects its weights (per)"] if statement.per == name else []
    return ", ".join(parts)


def _times(count: int) -> str:
    return {1: "", 2: " twice", 3: " three times"}.get(count, f" {count} times")


def _statement_line(diagram: ir.Diagram, statement: ir.Statement, summary: dict[str, Any],
                    name: str, how: str) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in summary["paths_per_output"].items())
    paths = f"{summary['paths']} path{'s' if summary['paths'] != 1 else ''}" + (f" ({counts})" if counts else "")
    used = _irreps_on_paths(diagram, statement, name)
    uses = f" · uses {', '.join(used)}" if used else ""
    return (f"- line {summary['line']} `{summary['args']} -> {summary['target']}`: {how} · "
            f"{summary['kind']} · {paths}{uses}")


def _irreps_on_paths(diagram: ir.Diagram, statement: ir.Statement, name: str) -> list[str]:
    """The irreps of leg ``name`` that the statement's paths go through, in order of appearance."""
    if statement.per == name and statement.target != name and all(r.leg != name for r in statement.leaves):
        return []
    seen: dict[str, None] = {}
    for path in statement.paths:
        for leg, irrep in diagram.path_irreps(statement, path):
            if leg == name:
                seen.setdefault(str(irrep), None)
    return list(seen)


def _syntax_hover(analysis: Analysis, found: Occurrence) -> str:
    """What the text says when the diagram could not be checked: the declaration, the uses."""
    lines = [_declared_header(analysis.declaration(found)), ""]
    source = analysis.result.source
    uses: dict[int, list[Occurrence]] = {}
    for use in analysis.occurrences:
        if use.block == found.block and use.name == found.name and isinstance(use.item, sx.Statement):
            uses.setdefault(use.item.span.start, []).append(use)
    for same in uses.values():
        span = same[0].item.span
        parts = dict.fromkeys(_syntax_part(use.use) for use in same)
        lines.append(f"- line {source.position(span.start).line} `{source.snippet(span)}`: {', '.join(parts)}")
    return "\n".join([*lines, "", "_irreps not inferred: the diagram has errors_"])


def _declared_header(declaration: Occurrence) -> str:
    item = declaration.item
    if declaration.use != "declaration" or not isinstance(item, sx.LegDecl):
        return f"**edge** `{declaration.name}` (inferred)"
    if isinstance(item.type, sx.IrrepsText):
        return f"**{item.kind}** `{declaration.name}` : `{item.type.text}`"
    if isinstance(item.type, sx.Lmax):
        return f"**{item.kind}** `{declaration.name}` : lmax {item.type.value}"
    if isinstance(item.type, sx.Count):
        return f"**{item.kind}** `{declaration.name}` : {item.type.value} classes"
    return f"**{item.kind}** `{declaration.name}` (inferred)"


def _syntax_part(use: Use) -> str:
    return {"write": "writes it", "read": "reads it", "per": "selects its weights (per)"}.get(use, use)


# --- the protocol ------------------------------------------------------------------------------


def document_name(uri: str) -> str:
    """The file path of a ``file:`` URI (what diagnostics name), else the URI itself.

    >>> document_name("file:///tmp/a%20b.fusion")
    '/tmp/a b.fusion'
    """
    parsed = urlparse(uri)
    return str(Path(unquote(parsed.path))) if parsed.scheme == "file" else uri


def lsp_diagnostics(result: CheckResult, index: LineIndex, uri: str) -> list[lsp.Diagnostic]:
    """The front end's diagnostics as LSP diagnostics: same code, message and span."""
    return [_lsp_diagnostic(d, index, uri) for d in result.diagnostics]


def _lsp_diagnostic(diagnostic: Diagnostic, index: LineIndex, uri: str) -> lsp.Diagnostic:
    from lsprotocol import types as lsp

    span = diagnostic.span or Span(0, 0)
    severity = {"error": lsp.DiagnosticSeverity.Error, "warning": lsp.DiagnosticSeverity.Warning}
    return lsp.Diagnostic(
        range=lsp_range(index, span), message=diagnostic.message, code=diagnostic.code, source="fusionc",
        severity=severity.get(diagnostic.severity, lsp.DiagnosticSeverity.Information),
        related_information=_related(diagnostic, index, uri) or None,
        data={"label": diagnostic.label, "hint": diagnostic.hint, "notes": list(diagnostic.notes)})


def _related(diagnostic: Diagnostic, index: LineIndex, uri: str) -> list[lsp.DiagnosticRelatedInformation]:
    """The label and help at the primary span, then the secondary labels (``first declared here``)."""
    from lsprotocol import types as lsp

    span = diagnostic.span or Span(0, 0)
    texts = [(span, diagnostic.label)] if diagnostic.label else []
    texts += [(span, f"note: {note}") for note in diagnostic.notes]
    texts += [(span, f"help: {diagnostic.hint}")] if diagnostic.hint else []
    texts += [(label.span, label.text) for label in diagnostic.related]
    return [lsp.DiagnosticRelatedInformation(lsp.Location(uri, lsp_range(index, where)), text)
            for where, text in texts]


def lsp_range(index: LineIndex, span: Span) -> lsp.Range:
    """A Span as an LSP range."""
    from lsprotocol import types as lsp

    (line, column), (end_line, end_column) = index.position(span.start), index.position(span.end)
    return lsp.Range(lsp.Position(line, column), lsp.Position(end_line, end_column))


def internal_error(failure: BaseException) -> lsp.Diagnostic:
    """What the editor shows if the front end itself fails on a document (a bug, not the user's)."""
    from lsprotocol import types as lsp

    return lsp.Diagnostic(range=lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)), source="fusionc",
                          message=f"internal error in fusionc, please report it: {failure!r}",
                          severity=lsp.DiagnosticSeverity.Error)


class Session:
    """The server's state (one analysis per open document) and its feature handlers."""

    def __init__(self, server: LanguageServer):
        self.server = server
        self.analyses: dict[str, Analysis] = {}

    def text(self, uri: str) -> str:
        return self.server.workspace.get_text_document(uri).source

    def index(self, text: str) -> LineIndex:
        """Offsets ↔ positions in the encoding negotiated with the client."""
        encoding = self.server.workspace.position_encoding
        return LineIndex(text, str(getattr(encoding, "value", encoding) or "utf-16"))

    def analysis(self, uri: str) -> Analysis:
        """The analysis of the document's current text (recomputed when the text changed)."""
        text = self.text(uri)
        cached = self.analyses.get(uri)
        if cached is None or cached.text != text:
            cached = self.analyses[uri] = analyse(text, document_name(uri))
        return cached

    def publish(self, uri: str, version: int | None = None) -> None:
        """Check the document and publish its diagnostics; never raises."""
        from lsprotocol import types as lsp

        try:
            analysis = self.analysis(uri)
            found = lsp_diagnostics(analysis.result, self.index(analysis.text), uri)
        except Exception as failure:  # a bug in the front end must not take the editor's server down
            LOG.exception("checking %s failed", uri)
            found = [internal_error(failure)]
        self.server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=found, version=version))

    def did_open(self, params: lsp.DidOpenTextDocumentParams) -> None:
        self.publish(params.text_document.uri, params.text_document.version)

    def did_change(self, params: lsp.DidChangeTextDocumentParams) -> None:
        self.publish(params.text_document.uri, params.text_document.version)

    def did_save(self, params: lsp.DidSaveTextDocumentParams) -> None:
        self.publish(params.text_document.uri)

    def did_close(self, params: lsp.DidCloseTextDocumentParams) -> None:
        """Forget the document and clear its diagnostics."""
        from lsprotocol import types as lsp

        self.analyses.pop(params.text_document.uri, None)
        self.server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))

    def hover(self, params: lsp.HoverParams) -> lsp.Hover | None:
        """Hover on a leg name: its irreps, dimension and statements."""
        from lsprotocol import types as lsp

        analysis, index = self._at(params.text_document.uri)
        found = hover_markdown(analysis, index.offset(params.position.line, params.position.character))
        if found is None:
            return None
        span, text = found
        return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text), lsp_range(index, span))

    def definition(self, params: lsp.DefinitionParams) -> lsp.Location | None:
        """Go from a use of a leg to its declaration."""
        from lsprotocol import types as lsp

        uri = params.text_document.uri
        analysis, index = self._at(uri)
        span = analysis.definition(index.offset(params.position.line, params.position.character))
        return lsp.Location(uri, lsp_range(index, span)) if span is not None else None

    def formatting(self, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
        """``fusionc fmt`` as one edit of the whole document (none if it does not parse)."""
        from lsprotocol import types as lsp

        uri = params.text_document.uri
        text = self.text(uri)
        formatted = format_edit(text, document_name(uri))
        if formatted is None:
            return []
        index = self.index(text)
        return [lsp.TextEdit(lsp_range(index, Span(0, len(text))), formatted)]

    def _at(self, uri: str) -> tuple[Analysis, LineIndex]:
        analysis = self.analysis(uri)
        return analysis, self.index(analysis.text)


def create_server() -> LanguageServer:
    """A pygls server with every feature registered (not started)."""
    from lsprotocol import types as lsp
    from pygls.lsp.server import LanguageServer

    server = LanguageServer("fusionc", __version__)
    session = Session(server)
    features: list[tuple[str, Callable[[Session, Any], Any]]] = [
        (lsp.TEXT_DOCUMENT_DID_OPEN, Session.did_open),
        (lsp.TEXT_DOCUMENT_DID_CHANGE, Session.did_change),
        (lsp.TEXT_DOCUMENT_DID_SAVE, Session.did_save),
        (lsp.TEXT_DOCUMENT_DID_CLOSE, Session.did_close),
        (lsp.TEXT_DOCUMENT_HOVER, Session.hover),
        (lsp.TEXT_DOCUMENT_DEFINITION, Session.definition),
        (lsp.TEXT_DOCUMENT_FORMATTING, Session.formatting),
    ]
    for method, handler in features:
        # a partial, not a bound method: pygls writes attributes onto the function it registers
        server.feature(method)(functools.partial(handler, session))
    return server


def serve() -> None:
    """Run the server over stdin and stdout until the client says ``exit``.

    Without pygls installed this raises a :class:`FusionError` (E903) saying what to install."""
    try:
        server = create_server()
    except ImportError as missing:
        raise FusionError([Diagnostic("E903", f"`fusionc lsp` needs pygls ({missing})",
                                      hint="install pygls 2 or later: pip install 'pygls>=2'")]) from None
    server.start_io()
