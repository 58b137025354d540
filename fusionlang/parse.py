"""Text → surface syntax tree (:mod:`fusionlang.syntax`), with rustc-style syntax diagnostics.

>>> file = parse("diagram d {\\n    group O3\\n    input x : 0e\\n    x -> y\\n}\\n")
>>> [type(item).__name__ for item in file.diagrams[0].items]
['GroupDecl', 'LegDecl', 'Statement']

Decisions (the grammar is ``grammars/fusion.lark``):

* **Separators.** Items are separated by new lines or ``;``; an item never spans two lines, and
  ``{`` stays on the ``diagram NAME`` line. ``}`` may follow the last item on its line, so
  ``diagram d { group O3; input x : 0e; x -> y }`` is a whole diagram.
* **Keywords are reserved.** ``diagram group input output edge lmax`` cannot name a diagram, a
  group or a leg (E010), so ``input -> x`` never means two things. Option keys and values
  (``[weights = none]``) are free words and may coincide with keywords. The one structured value
  is a path list, ``only = {0 1 -> 2, 1 0 -> 2}`` (integers only, on the statement's line).
* **Irreps are text.** After ``:`` the parser captures the irreps region (digits, ``x e o y / + ( )``
  and blanks, stripped) as :class:`~fusionlang.syntax.IrrepsText`; the group is not known yet, so
  :class:`~fusionlang.groups.Irreps` validates it later.
* **Comments.** ``#`` runs to the end of the line. A comment after code on its line is that item's
  ``trailing`` comment (or the diagram's, on the ``diagram NAME {`` line); full-line comments go to
  the next item's ``comments``, to ``closing_comments`` before a ``}``, to the next diagram's
  ``comments`` between diagrams and to :attr:`File.closing_comments` at the end. The text kept is
  what follows ``#``, right-stripped, so ``#`` + text reprints the comment (an empty trailing
  ``#`` is dropped). A comment after a ``}`` goes to the next diagram or the file's end.
* **Errors.** lark's exceptions are turned into diagnostics by a catalogue of rules
  (:data:`CATALOGUE`, in :mod:`fusionlang.syntax_errors`), keyed on what the parser expected and
  what it found rather than on LALR state numbers (``UnexpectedInput.match_examples`` matches
  states, which shift whenever the grammar changes); every rule carries the examples that
  trigger it and the tests check them. After an error the parser resynchronises (the broken
  item, or at top level everything up to the next ``diagram`` line, is blanked out, offsets
  unchanged) and parses again, so independent mistakes are reported together (at most
  :data:`MAX_ERRORS`). Parenthesised arguments and irreps nest at most :data:`MAX_DEPTH` deep
  (E011), which keeps every later recursive pass safe. The checks made on the finished tree
  (keywords as names E010, nesting E011, ``lmax`` size E006) run only when the text has no
  syntax error.

The lark parser is built once, lazily, behind a lock (its tables are kept in the disk cache);
each call parses with its own state, so :func:`parse` is thread-safe. lark trees and exceptions
never leave this module.
"""

from __future__ import annotations

import ast
import hashlib
import re
import threading
from bisect import bisect_right
from dataclasses import dataclass, replace
from typing import Any

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput
from lark.grammar import Rule
from lark.lexer import TerminalDef

from . import cache
from . import syntax as sx
from ._resources import read_resource
from .diagnostics import Diagnostic, FusionError
from .resync import resynchronise
from .source import Source, Span
from .syntax_errors import CATALOGUE, KEYWORDS, explain, failure_of, token_span

__all__ = ["CATALOGUE", "KEYWORDS", "MAX_DEPTH", "MAX_ERRORS", "explain_first_error", "parse"]

MAX_DEPTH = 64  # parentheses in arguments or irreps
MAX_ERRORS = 20  # syntax errors reported in one run
MAX_LMAX_DIGITS = 6

Node = Token | Tree


def parse(text: str | Source, name: str = "<string>") -> sx.File:
    """Parse a ``.fusion`` file; raise :class:`FusionError` with every syntax error found.

    >>> try:
    ...     parse("diagram d {\\n    a, b => c\\n}\\n", "d.fusion")
    ... except FusionError as error:
    ...     print(error.diagnostics[0].render())
    error[E005]: use `->`, not `=>`
     --> d.fusion:2:10
      |
    2 |     a, b => c
      |          ^^ write `->` here
      = help: statements are written `a, b -> c`
    """
    source = text if isinstance(text, Source) else Source(text, name)
    tree, found = _parse_tree(source)
    if tree is None or found:
        raise FusionError(found)
    builder = _Builder(source)
    file = builder.file(tree)
    if builder.diagnostics:
        raise FusionError(builder.diagnostics)
    return file


# --- the lark parser -----------------------------------------------------------------------

_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}


_OPTIONS: dict[str, Any] = {"parser": "lalr", "lexer": "contextual", "strict": True, "propagate_positions": True}


def _parser() -> Lark:
    """The LALR parser with the contextual lexer, made on first use (from the disk cache if there)."""
    parser = _CACHE.get("parser")
    if parser is None:
        with _LOCK:
            parser = _CACHE.get("parser")
            if parser is None:
                parser = _cached_parser(read_resource("grammars", "fusion.lark"))
                _CACHE["keys"] = _terminal_keys(parser)
                _CACHE["parser"] = parser
    return parser


def _cached_parser(grammar: str) -> Lark:
    """Building the tables takes 0.4 s (most of a ``fusionc check``); loading them takes 0.03 s.

    The tables are stored as a Python literal and read back with ``ast.literal_eval``, not pickled
    (what ``Lark(cache=...)`` does), so a cache entry can never run code. The key holds the grammar,
    the options and lark's version; a damaged or foreign entry is rebuilt (see :mod:`.cache`).
    """
    digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()
    key = f"lark-parser/{digest}/{lark.__version__}/{sorted(_OPTIONS.items())}"
    return cache.cached(key, lambda: _build_parser(grammar), encode=_encode_parser, decode=_decode_parser)


def _build_parser(grammar: str) -> Lark:
    return Lark(grammar, **_OPTIONS)


def _encode_parser(parser: Lark) -> bytes:
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    return repr({"data": data, "memo": memo}).encode("utf-8")


def _decode_parser(payload: bytes) -> Lark:
    tables = ast.literal_eval(payload.decode("utf-8"))
    return Lark._load_from_dict(tables["data"], tables["memo"])  # the options travel in the tables


def _terminal_keys(parser: Lark) -> dict[str, str]:
    """Terminal name → the key the catalogue uses: the literal (``"->"``) or the name (``NAME``)."""
    keys = {t.name: t.pattern.value if t.pattern.type == "str" else t.name for t in parser.terminals}
    return keys | {"$END": "$END"}


def _parse_tree(source: Source) -> tuple[Tree | None, list[Diagnostic]]:
    """Parse, resynchronising after each error; the tree is only meaningful with no errors."""
    text = source.text
    found: list[Diagnostic] = []
    while True:
        try:
            return _parser().parse(text), found
        except UnexpectedInput as exc:
            failure = failure_of(exc, text, _CACHE["keys"])
        report = explain(failure)
        diagnostic = report.diagnostic(source)
        if any(_same(diagnostic, seen) for seen in found):
            return None, found
        found.append(diagnostic)
        resumed = resynchronise(failure, report)
        if resumed is None or len(found) >= MAX_ERRORS:
            return None, found
        text = resumed


def explain_first_error(text: str) -> tuple[str, Diagnostic] | None:
    """The catalogue rule that explains the first syntax error in ``text``, and its diagnostic.

    >>> rule, diagnostic = explain_first_error("diagram d {\\n    input x 0e\\n}")
    >>> rule, diagnostic.code, diagnostic.message
    ('missing_colon', 'E008', 'missing `:` before irreps')
    """
    try:
        _parser().parse(text)
    except UnexpectedInput as exc:
        report = explain(failure_of(exc, text, _CACHE["keys"]))
        return report.rule, report.diagnostic(Source(text))
    return None


def _same(a: Diagnostic, b: Diagnostic) -> bool:
    return (a.code, a.span) == (b.code, b.span)


# --- lark tree → syntax tree ---------------------------------------------------------------

class _Builder:
    """Builds :mod:`syntax` nodes from the lark tree, collecting E006/E010/E011 diagnostics.

    Not a lark ``Transformer``: this keeps the nesting depth under control (``MAX_DEPTH``)
    and no exception gets wrapped in ``VisitError``.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def file(self, tree: Tree) -> sx.File:
        diagrams = tuple(self.diagram(child) for child in tree.children if isinstance(child, Tree))
        return _attach_comments(sx.File(diagrams, self.source))

    def diagram(self, tree: Tree) -> sx.Diagram:
        name, *items = tree.children
        assert isinstance(name, Token)
        return sx.Diagram(self.name(name), tuple(self.item(i) for i in items if isinstance(i, Tree)),
                          _span(tree))

    def item(self, tree: Tree) -> sx.Item:
        if tree.data in ("group_decl", "basis_decl"):
            token = tree.children[0]
            assert isinstance(token, Token)
            kind = sx.GroupDecl if tree.data == "group_decl" else sx.BasisDecl
            return kind(self.name(token), _span(tree))
        if tree.data == "statement":
            return self.statement(tree)
        return self.leg_decl(tree)

    def leg_decl(self, tree: Tree) -> sx.LegDecl:
        names_tree, *rest = tree.children
        assert isinstance(names_tree, Tree)
        names = tuple(self.name(t) for t in names_tree.children if isinstance(t, Token))
        options = self.options(rest[-1]) if rest and _is(rest[-1], "options") else ()
        typed = [node for node in rest if not _is(node, "options")]
        kind = str(tree.data).removesuffix("_decl")
        return sx.LegDecl(kind, names, self.leg_type(typed[0]) if typed else None, options,
                          _span(tree))

    def leg_type(self, node: Node) -> sx.IrrepsText | sx.Lmax | sx.Count:
        if isinstance(node, Token) and node.type == "INT":
            return self.count(node)
        if isinstance(node, Token):
            self.check_depth(node)
            return sx.IrrepsText(str(node), token_span(node))
        digits = node.children[0]
        assert isinstance(digits, Token)
        if len(digits) > MAX_LMAX_DIGITS:
            self.report("E006", f"`lmax {digits[:12]}...` is too large", token_span(digits),
                        "too many digits", "lmax is a small integer such as 2 or 4")
            return sx.Lmax(0, _span(node))
        return sx.Lmax(int(digits), _span(node))

    def count(self, digits: Token) -> sx.Count:
        if len(digits) > MAX_LMAX_DIGITS:
            self.report("E006", f"`{digits[:12]}...` classes are too many", token_span(digits),
                        "too many digits", "an index input has a small number of classes, e.g. 3")
            return sx.Count(0, token_span(digits))
        return sx.Count(int(digits), token_span(digits))

    def statement(self, tree: Tree) -> sx.Statement:
        args_tree, target, *rest = tree.children
        assert isinstance(args_tree, Tree) and isinstance(target, Token)
        args = tuple(self.arg(child, 1) for child in args_tree.children)
        options = self.options(rest[0]) if rest else ()
        return sx.Statement(args, self.name(target), options, _span(tree))

    def arg(self, node: Node, depth: int) -> sx.Arg:
        if isinstance(node, Token):
            return sx.Leaf(self.name(node))
        if node.data == "call":
            via, name = node.children
            assert isinstance(via, Token) and isinstance(name, Token)
            return sx.Leaf(self.name(name), sx.Name(str(via), token_span(via)))
        if depth > MAX_DEPTH:
            self.diagnostics.append(_too_deep(self.source, _span(node)))
            return sx.Paren((), _span(node))
        return sx.Paren(tuple(self.arg(child, depth + 1) for child in node.children), _span(node))

    def options(self, node: Node) -> tuple[sx.Option, ...]:
        assert isinstance(node, Tree)
        return tuple(self.option(child) for child in node.children if isinstance(child, Tree))

    def option(self, tree: Tree) -> sx.Option:
        key, value = tree.children
        assert isinstance(key, Token)
        if isinstance(value, Tree):
            paths = self.path_set(value)
            return sx.Option(sx.Name(str(key), token_span(key)), sx.Name(paths.text, paths.span), _span(tree), paths)
        return sx.Option(sx.Name(str(key), token_span(key)), sx.Name(str(value), token_span(value)),
                         _span(tree))

    def path_set(self, tree: Tree) -> sx.PathSet:
        """``{0 1 -> 2, ...}``: entry indices, each at most ``MAX_LMAX_DIGITS`` digits (E007)."""
        choices = []
        for choice in tree.children:
            assert isinstance(choice, Tree)
            numbers = [self.entry_index(token) for token in choice.children if isinstance(token, Token)]
            choices.append(sx.PathChoice(tuple(numbers[:-1]), numbers[-1], _span(choice)))
        return sx.PathSet(tuple(choices), _span(tree))

    def entry_index(self, digits: Token) -> int:
        if len(digits) > MAX_LMAX_DIGITS:
            self.report("E007", f"entry index `{digits[:12]}...` is too large", token_span(digits),
                        "too many digits", "entries are numbered from 0 in the order the leg's irreps list them")
            return 0
        return int(digits)

    def name(self, token: Token) -> sx.Name:
        """A :class:`Name`; a reserved keyword gets an E010 diagnostic."""
        span = token_span(token)
        if token in KEYWORDS:
            self.report("E010", f"`{token}` is a keyword and cannot be used as a name", span,
                        "reserved keyword", f"choose another name, e.g. `{token}_`")
        return sx.Name(str(token), span)

    def check_depth(self, token: Token) -> None:
        depth = deepest = 0
        for char in str(token):
            depth += (char == "(") - (char == ")")
            deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            self.diagnostics.append(_too_deep(self.source, token_span(token)))

    def report(self, code: str, message: str, span: Span, label: str, hint: str) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, self.source, label=label, hint=hint))


def _too_deep(source: Source, span: Span) -> Diagnostic:
    return Diagnostic("E011", f"parentheses nested more than {MAX_DEPTH} deep", span, source,
                      label="too deep", hint="split the tree into statements with internal edges")


def _is(node: Node, data: str) -> bool:
    return isinstance(node, Tree) and node.data == data


def _span(tree: Tree) -> Span:
    meta = tree.meta
    return Span(0, 0) if meta.empty else Span(meta.start_pos, meta.end_pos)


# --- comments --------------------------------------------------------------------------------

_COMMENT = re.compile(r"#[^\n]*")


@dataclass
class _Slots:
    """Comments gathered per place while walking the file, then put into the frozen nodes."""

    leading: dict[tuple[int, int], list[str]]
    trailing: dict[tuple[int, int], str]


Key = tuple[int, int]


@dataclass
class _Anchors:
    """Sorted offsets where code ends (owners of trailing comments) and where slots start."""

    ends: list[int]
    end_keys: list[Key]
    starts: list[int]
    start_keys: list[Key]


def _attach_comments(file: sx.File) -> sx.File:
    """Attach every ``#`` comment of ``file.source`` to the node it belongs to.

    Keys: ``(d, i)`` is item ``i`` of diagram ``d``; ``i = -1`` is the diagram itself (its
    ``comments`` and ``trailing``), ``i = len(items)`` its closing comments; ``(len(diagrams), 0)``
    is the file's closing comments.
    """
    text = file.source.text
    anchors, slots = _anchors(file, text), _Slots({}, {})
    for match in _COMMENT.finditer(text):
        _place(match.start(), match.group()[1:].rstrip(), text, anchors, slots)
    return _rebuild(file, slots)


def _anchors(file: sx.File, text: str) -> _Anchors:
    anchors = _Anchors([], [], [], [])
    for d, diagram in enumerate(file.diagrams):
        _add(anchors.starts, anchors.start_keys, diagram.span.start, (d, -1))
        _add(anchors.ends, anchors.end_keys, text.find("{", diagram.name.span.end) + 1, (d, -1))
        for i, item in enumerate(diagram.items):
            _add(anchors.starts, anchors.start_keys, item.span.start, (d, i))
            _add(anchors.ends, anchors.end_keys, item.span.end, (d, i))
        _add(anchors.starts, anchors.start_keys, diagram.span.end - 1, (d, len(diagram.items)))
    _add(anchors.starts, anchors.start_keys, len(text) + 1, (len(file.diagrams), 0))
    return anchors


def _add(offsets: list[int], keys: list[Key], offset: int, key: Key) -> None:
    offsets.append(offset)
    keys.append(key)


def _place(at: int, comment: str, text: str, anchors: _Anchors, slots: _Slots) -> None:
    """A comment after code on its line trails that code; otherwise it leads the next slot."""
    line_start = text.rfind("\n", 0, at) + 1
    owner = bisect_right(anchors.ends, at) - 1
    if owner >= 0 and anchors.ends[owner] >= line_start:
        if comment:
            slots.trailing[anchors.end_keys[owner]] = comment
        return
    key = anchors.start_keys[bisect_right(anchors.starts, at)]
    slots.leading.setdefault(key, []).append(comment)


def _rebuild(file: sx.File, slots: _Slots) -> sx.File:
    diagrams = []
    for d, diagram in enumerate(file.diagrams):
        items = tuple(replace(item, comments=tuple(slots.leading.get((d, i), ())),
                              trailing=slots.trailing.get((d, i), ""))
                      for i, item in enumerate(diagram.items))
        diagrams.append(replace(diagram, items=items,
                                comments=tuple(slots.leading.get((d, -1), ())),
                                trailing=slots.trailing.get((d, -1), ""),
                                closing_comments=tuple(slots.leading.get((d, len(items)), ()))))
    closing = tuple(slots.leading.get((len(file.diagrams), 0), ()))
    return replace(file, diagrams=tuple(diagrams), closing_comments=closing)
