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
  (``[weights = none]``) are free words and may coincide with keywords.
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
  (:data:`CATALOGUE`), keyed on what the parser expected and what it found rather than on LALR
  state numbers (``UnexpectedInput.match_examples`` matches states, which shift whenever the
  grammar changes); every rule carries the examples that trigger it and the tests check them.
  After an error the parser resynchronises (the broken item, or at top level everything up to the
  next ``diagram`` line, is blanked out, offsets unchanged) and parses again, so independent
  mistakes are reported together (at most :data:`MAX_ERRORS`). Parenthesised arguments and irreps
  nest at most :data:`MAX_DEPTH` deep (E011), which keeps every later recursive pass safe. The
  checks made on the finished tree (keywords as names E010, nesting E011, ``lmax`` size E006) run
  only when the text has no syntax error.

The lark parser is built once, lazily, behind a lock; each call parses with its own state, so
:func:`parse` is thread-safe. lark trees and exceptions never leave this module.
"""

from __future__ import annotations

import difflib
import re
import threading
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from . import syntax as sx
from ._resources import read_resource
from .diagnostics import Diagnostic, FusionError, Label
from .source import Source, Span

__all__ = ["CATALOGUE", "KEYWORDS", "MAX_DEPTH", "MAX_ERRORS", "explain_first_error", "parse"]

KEYWORDS = frozenset({"diagram", "group", "basis", "input", "output", "edge", "index", "lmax"})
ITEM_KEYWORDS = ("group", "basis", "input", "output", "edge", "index")
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


def _parser() -> Lark:
    """The LALR parser with the contextual lexer, built on first use."""
    parser = _CACHE.get("parser")
    if parser is None:
        with _LOCK:
            parser = _CACHE.get("parser")
            if parser is None:
                parser = Lark(read_resource("grammars", "fusion.lark"), parser="lalr",
                              lexer="contextual", strict=True, propagate_positions=True)
                _CACHE["keys"] = _terminal_keys(parser)
                _CACHE["parser"] = parser
    return parser


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
            failure = _failure(exc, text)
        report = explain(failure)
        diagnostic = report.diagnostic(source)
        if any(_same(diagnostic, seen) for seen in found):
            return None, found
        found.append(diagnostic)
        resumed = _resynchronise(failure, report)
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
        report = explain(_failure(exc, text))
        return report.rule, report.diagnostic(Source(text))
    return None


def _same(a: Diagnostic, b: Diagnostic) -> bool:
    return (a.code, a.span) == (b.code, b.span)


# --- what went wrong: a failure, in terms the catalogue understands -----------------------

@dataclass(frozen=True)
class _Failure:
    """A parse error: where, what was found, what was expected, and the parser's value stack."""

    text: str
    pos: int
    end: int
    kind: str  # "$END", "CHAR", or a terminal key: "NAME", "IRREPS", "_SEP", "->", "(", ...
    found: str
    expected: frozenset[str]
    stack: tuple[Node, ...]

    @cached_property
    def opened(self) -> list[Token]:
        """Brackets opened on the stack and not closed yet, outermost first."""
        opened: list[Token] = []
        for node in self.stack:
            key = _key(node)
            if key in ("{", "(", "[") and isinstance(node, Token):
                opened.append(node)
            elif key in ("}", ")", "]") and opened:
                opened.pop()
        return opened

    @property
    def block(self) -> Token | None:
        """The ``{`` of the diagram the error is in, if any."""
        opened = self.opened
        return opened[0] if opened and _key(opened[0]) == "{" else None

    @property
    def bracket(self) -> Token | None:
        """The innermost unclosed ``(`` or ``[``."""
        opened = self.opened
        return opened[-1] if opened and _key(opened[-1]) != "{" else None

    @property
    def diagram_name(self) -> str:
        block = self.block
        index = next(i for i, node in enumerate(self.stack) if node is block) if block else 0
        return str(self.stack[index - 1]) if index >= 1 else "?"

    @cached_property
    def item_start(self) -> int:
        """Start of the item the error is in: after the last new line, ``;`` or ``{``."""
        line_start = self.text.rfind("\n", 0, self.pos) + 1
        code_end = self.text.find("#", line_start, self.pos)  # the line may end in a comment
        code_end = self.pos if code_end < 0 else code_end
        cut = max(line_start, *(self.text.rfind(c, line_start, code_end) + 1 for c in ";{"))
        return cut + len(self.text[cut:code_end]) - len(self.text[cut:code_end].lstrip())

    @property
    def item(self) -> str:
        """The text of the current item before the error."""
        return " ".join(self.text[self.item_start:self.pos].split("#", 1)[0].split())

    @property
    def first_word(self) -> str:
        words = self.item.split(None, 1)
        return words[0] if words else ""

    @cached_property
    def prev_end(self) -> int:
        """Where the last token the parser accepted ends (``pos`` when there is none)."""
        for node in reversed(self.stack):
            end = _node_end(node)
            if end is not None:
                return end
        return self.pos

    @property
    def prev(self) -> Node | None:
        return self.stack[-1] if self.stack else None

    @property
    def adjacent(self) -> bool:
        return self.prev_end == self.pos and bool(self.stack)

    @property
    def span(self) -> Span:
        return Span(self.pos, self.end)

    @property
    def line_end(self) -> int:
        found = self.text.find("\n", self.pos)
        return len(self.text) if found < 0 else found

    @property
    def rest_of_line(self) -> str:
        return self.text[self.pos:self.line_end].split("#", 1)[0]

    def at_line_end(self) -> Span:
        """An empty span just after the last accepted token: where something is missing."""
        return Span(self.prev_end, self.prev_end)


def _key(node: Node | None) -> str:
    """The catalogue key of a token (``"{"``, ``"NAME"``), or ``""`` for a tree."""
    keys: dict[str, str] = _CACHE["keys"]
    return keys.get(node.type, node.type) if isinstance(node, Token) else ""


def _node_end(node: Node) -> int | None:
    if isinstance(node, Token):
        return node.end_pos
    meta = node.meta
    return None if meta.empty else meta.end_pos


def _failure(exc: UnexpectedInput, text: str) -> _Failure:
    keys: dict[str, str] = _CACHE["keys"]
    interactive = exc.interactive_parser
    stack = tuple(interactive.parser_state.value_stack) if interactive else ()
    expected = frozenset(keys.get(name, name) for name in (interactive.accepts() if interactive else ()))
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        return _Failure(text, pos, pos + 1, "CHAR", text[pos], expected, stack)
    token = getattr(exc, "token", None)
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        return _Failure(text, len(text), len(text), "$END", "", expected, stack)
    kind, start = keys.get(token.type, token.type), token.start_pos or 0
    if kind == "IRREPS" and "IRREPS" not in expected and token.startswith("("):
        return _Failure(text, start, start + 1, "(", "(", expected, stack)  # lexed out of context
    return _Failure(text, start, token.end_pos or start, kind, str(token), expected, stack)


# --- the catalogue of mistakes ---------------------------------------------------------------

@dataclass(frozen=True)
class _Report:
    """What a catalogue rule says about a failure."""

    code: str
    message: str
    span: Span
    label: str = ""
    hint: str = ""
    related: tuple[Label, ...] = ()
    rule: str = ""
    drop_block: bool = False  # resynchronise by dropping the open diagram up to the error

    def diagnostic(self, source: Source) -> Diagnostic:
        return Diagnostic(self.code, self.message, self.span, source, label=self.label,
                          hint=self.hint, related=self.related)


Rule = Callable[[_Failure], _Report | None]


@dataclass(frozen=True)
class CatalogueEntry:
    """One rule of the catalogue, with inputs whose first error it explains (tested)."""

    name: str
    rule: Rule
    examples: tuple[str, ...]


CATALOGUE: list[CatalogueEntry] = []


def _rule(*examples: str) -> Callable[[Rule], Rule]:
    """Register a rule; rules are tried in the order they are defined."""
    def register(rule: Rule) -> Rule:
        CATALOGUE.append(CatalogueEntry(rule.__name__.strip("_"), rule, examples))
        return rule
    return register


def explain(failure: _Failure) -> _Report:
    """The first catalogue rule that recognises ``failure`` (the last rules always do)."""
    for entry in CATALOGUE:
        report = entry.rule(failure)
        if report is not None:
            return replace(report, rule=entry.name)
    raise AssertionError("the generic rules match every failure")  # pragma: no cover


_IRREPS_HINT = ("irreps look like `8x0e + 4x1o` or `4x(0e + 1o)` (O3), `0 + 1 + 2` (SO3) "
                "or `1/2 + 3x3/2` (SU2)")
_DESCRIPTIONS = {"NAME": "a name", "INT": "an integer", "IRREPS": "irreps",
                 "_SEP": "a new line", "$END": "the end of the input"}
_ORDER = ("NAME", "(", ",", "->", ":", "=", "[", "]", ")", "INT", "IRREPS", "lmax", "group",
          "input", "output", "edge", "diagram", "{", "}", "_SEP", "$END")
_ARROW_LOOKALIKES = ("=>", "→", "⟶", "⇒", "~>", "−>", "–>", "- >", "-", ">", "=", ":=")


def _describe(keys: frozenset[str]) -> str:
    """``{"->", ","}`` → ``"`,` or `->`"``, in a stable order."""
    ranked = sorted(keys, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
    shown = [_DESCRIPTIONS.get(k, f"`{k}`") for k in ranked]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def _found(f: _Failure) -> str:
    """The unexpected thing, as a message shows it."""
    if f.kind == "$END":
        return "the end of the input"
    if f.kind == "_SEP":
        return "the end of the line" if f.found.startswith("\n") else "`;`"
    if f.kind == "CHAR":
        return f"`{f.found}`" if f.found.isprintable() else repr(f.found)
    return f"`{f.found[:24]}`" + ("..." if len(f.found) > 24 else "")


def _opened_here(token: Token, text: str) -> tuple[Label, ...]:
    return (Label(_token_span(token), text),)


def _keyword_like(word: str) -> str | None:
    """The keyword ``word`` is probably a typo of (``inptu`` → ``input``), if any."""
    if word in KEYWORDS or not word.isidentifier():
        return None
    close = difflib.get_close_matches(word.lower(), sorted(KEYWORDS), n=1, cutoff=0.7)
    return close[0] if close else None


def _at_token_or_line_end(f: _Failure) -> Span:
    """Point at the unexpected token, or just after the line's code when the line ended."""
    return f.at_line_end() if f.kind in ("_SEP", "$END", "}") else f.span


@_rule("diagram d {\n    group O3\n", "diagram d {\n    (a, b", "diagram d")
def _end_of_input(f: _Failure) -> _Report | None:
    """The input stops early: an unclosed block or bracket, or a half-written item."""
    if f.kind != "$END":
        return None
    span, bracket, block = Span(len(f.text), len(f.text)), f.bracket, f.block
    if bracket is not None:
        closer = ")" if bracket == "(" else "]"
        return _Report("E003", f"unexpected end of input: `{bracket}` is never closed", span,
                       f"expected `{closer}`", f"add `{closer}` to close it",
                       _opened_here(bracket, "opened here"))
    if block is not None and "}" in f.expected:
        name = f.diagram_name
        return _Report("E003", f"unexpected end of input: diagram `{name}` is never closed", span,
                       "expected `}`", f"add `}}` on a line after the last item of `{name}`",
                       _opened_here(block, "this block is never closed"))
    return _Report("E003", "unexpected end of input", span, f"expected {_describe(f.expected)}",
                   "finish the item, or remove the incomplete text at the end")


@_rule("diagram a {\n    x -> y\ndiagram b {\n}\n")
def _nested_diagram(f: _Failure) -> _Report | None:
    """``diagram`` inside a block: the previous block lacks its ``}``."""
    block = f.block
    if block is None or f.first_word != "diagram" or f.bracket is not None:
        return None
    start = f.item_start
    return _Report("E004", f"diagram `{f.diagram_name}` is not closed before the next `diagram`",
                   Span(start, start + len("diagram")), "a new diagram starts here",
                   "add `}` on its own line before this `diagram`",
                   _opened_here(block, "this block is never closed"), drop_block=True)


@_rule("a, b -> c\n", "input x : 0e\n", "}\n", "diagam d {\n}\n", "(a, b) -> c\n")
def _outside_block(f: _Failure) -> _Report | None:
    """Something other than ``diagram`` at the top level of the file."""
    if f.block is not None or "diagram" not in f.expected or f.kind == "CHAR":
        return None
    if f.kind == "}":
        return _Report("E013", "unmatched `}`", f.span, "no block is open here",
                       "remove it: every `}` closes the block of one `diagram NAME {`")
    if f.kind in ITEM_KEYWORDS:
        return _Report("E009", f"`{f.kind}` declaration outside a diagram block", f.span,
                       "not inside `diagram NAME { ... }`", "move it into the block of a diagram")
    typo = _keyword_like(f.found) if f.kind == "NAME" else None
    if typo == "diagram":
        return _Report("E002", f"unknown keyword `{f.found}`", f.span, "not a keyword",
                       "did you mean `diagram`?")
    if f.kind in ("NAME", "("):
        return _Report("E009", "statement outside a diagram block", f.span,
                       "not inside `diagram NAME { ... }`",
                       "items go inside a block: `diagram NAME {`, one item per line, `}`")
    return _Report("E002", f"expected `diagram`, found {_found(f)}", f.span,
                   "a file is a list of `diagram NAME { ... }` blocks")


@_rule("diagram {\n}\n", "diagram d\n{\n}\n", "diagram 3 {\n}\n")
def _diagram_header(f: _Failure) -> _Report | None:
    """``diagram`` without a name, or without ``{`` on its line."""
    if f.block is not None or f.first_word != "diagram":
        return None
    if f.kind == "CHAR":
        return None
    if f.expected == {"NAME"}:
        return _Report("E006", "`diagram` needs a name", _at_token_or_line_end(f),
                       "expected a name here", "write `diagram NAME {`")
    where = f.at_line_end() if f.kind == "_SEP" else f.span
    return _Report("E002", f"expected `{{` after `{f.item}`, found {_found(f)}", where,
                   "expected `{`", f"write `{f.item} {{` with the `{{` on the same line")


def _keyword_name(f: _Failure, span: Span, word: str) -> _Report:
    return _Report("E010", f"`{word}` is a keyword and cannot be used as a name", span,
                   "reserved keyword", f"choose another name, e.g. `{word}_`")


@_rule("diagram d {\n    a, b => c\n}\n", "diagram d {\n    a → c\n}\n")
def _arrow_lookalike(f: _Failure) -> _Report | None:
    """``=>``, ``→``, ``-`` ... where ``->`` belongs."""
    if "->" not in f.expected or f.bracket is not None:
        return None
    rest = f.text[f.pos:f.pos + 3]
    lookalike = next((a for a in _ARROW_LOOKALIKES if rest.startswith(a)), None)
    if lookalike is None:
        return None
    message = (f"use `->`, not `{lookalike}`" if len(lookalike) > 1 or lookalike in "→⟶⇒"
               else f"expected `->`, found `{lookalike}`")
    return _Report("E005", message, Span(f.pos, f.pos + len(lookalike)), "write `->` here",
                   "statements are written `a, b -> c`")


@_rule("diagram d {\n    input x : 8x0e + 1q\n}\n", "diagram d {\n    input x : 0e, 1o\n}\n",
       "diagram d {\n    input x : 0e@\n}\n", "diagram d {\n    input x : 0e & 1o\n}\n")
def _bad_irreps_character(f: _Failure) -> _Report | None:
    """A character glued to irreps that cannot belong to irreps."""
    prev = f.prev
    if not (isinstance(prev, Token) and prev.type == "IRREPS"):
        return None
    new_item = ("NAME", "(", "[", "_SEP", "}", "$END", "->", *ITEM_KEYWORDS)
    if not f.adjacent and f.kind in new_item or f.kind in ("[", "_SEP", "}", "$END"):
        return None
    char = f.text[f.pos]
    hint = "separate irreps with `+`, e.g. `0e + 1o`" if char == "," else _IRREPS_HINT
    return _Report("E020", f"`{char}` cannot appear in irreps", Span(f.pos, f.pos + 1),
                   "not part of the irreps", hint)


@_rule("diagram d {\n    a, b -> c @\n}\n", "diagram d $ {\n}\n", "@\n", "diagram d {\n    (a, %) -> b\n}\n")
def _unexpected_character(f: _Failure) -> _Report | None:
    """A character that starts no token at all."""
    if f.kind != "CHAR" or "IRREPS" in f.expected:
        return None
    hint = ("names use ASCII letters, digits and `_`" if f.found.isalpha()
            else "remove it, or turn the rest of the line into a comment with `#`")
    return _Report("E001", f"unexpected character {_found(f)}", f.span,
                   f"expected {_describe(f.expected)}", hint)


@_rule("diagram d {\n    input -> x\n}\n")
def _keyword_instead_of_name(f: _Failure) -> _Report | None:
    """A keyword where a name was meant: ``input -> x``, ``edge, a -> b``."""
    if f.expected != {"NAME"} or f.item not in ITEM_KEYWORDS:
        return None
    if f.kind not in ("->", ",", ")", "=", "["):
        return None
    start = f.item_start
    return _keyword_name(f, Span(start, start + len(f.item)), f.item)


@_rule("diagram d {\n    input x 0e\n}\n", "diagram d {\n    edge e lmax 2\n}\n")
def _missing_colon(f: _Failure) -> _Report | None:
    """Irreps or ``lmax`` right after the names of a declaration."""
    if f.first_word not in ("input", "output", "edge") or ":" not in f.expected:
        return None
    if f.kind not in ("IRREPS", "INT", "lmax", "="):
        return None
    what = "irreps" if f.kind != "lmax" else "`lmax`"
    return _Report("E008", f"missing `:` before {what}", f.span, "expected `:` before this",
                   f"write `{f.item} : {f.rest_of_line.strip()}`")


@_rule("diagram d {\n    input x\n}\n", "diagram d {\n    input x :\n}\n", "diagram d {\n    output a b\n}\n",
       "diagram d {\n    group O(3)\n}\n",
       "diagram d {\n    group\n}\n", "diagram d {\n    edge e : lmax\n}\n",
       "diagram d {\n    input x : lmax 2\n}\n", "diagram d {\n    input : 0e\n}\n")
def _declaration(f: _Failure) -> _Report | None:
    """A declaration that lacks a part: a name, irreps, an integer after ``lmax``."""
    word = f.first_word
    if word not in ITEM_KEYWORDS or f.bracket is not None:
        return None
    if word == "group" and f.expected == {"NAME"}:
        return _Report("E006", "`group` needs a group name", _at_token_or_line_end(f),
                       "expected a group name", "write `group SU2`, `group SO3` or `group O3`")
    if f.expected == {"NAME"}:
        return _Report("E006", f"expected a name in this `{word}` declaration, found {_found(f)}",
                       _at_token_or_line_end(f), "expected a name",
                       f"write `{word} a, b : ...` with one or more names")
    if ":" in f.expected and f.kind == "NAME":
        return _Report("E002", "missing `,` between names", f.span, "expected `,` before this",
                       f"write `{word} a, b : ...`")
    if word == "group" and f.kind in ITEM_KEYWORDS:
        return None  # two items on one line
    if word == "group" and f.kind not in ("_SEP", "}", "$END"):
        return _Report("E006", "`group` takes a single group name", f.span, "unexpected here",
                       "write `group SU2`, `group SO3` or `group O3` on a line of its own")
    if ":" in f.expected and word == "input" and f.kind in ("_SEP", "}"):
        return _Report("E006", "`input` needs irreps", f.at_line_end(), "expected `: IRREPS`",
                       f"write `{f.item} : 8x0e` (inputs have no inferred type)")
    if "IRREPS" in f.expected:
        return _irreps_expected(f, word)
    if f.expected == {"INT"}:
        return _Report("E006", f"`lmax` needs an integer, found {_found(f)}",
                       _at_token_or_line_end(f), "expected an integer", "write `edge ab : lmax 2`")
    return None


def _irreps_expected(f: _Failure, word: str) -> _Report:
    if f.kind == "lmax":
        return _Report("E006", f"`lmax` only constrains internal edges and outputs, not an `{word}`", f.span,
                       "only after `edge NAME :` or `output NAME :`",
                       f"give the {word} irreps, e.g. `{word} x : 8x0e`")
    if f.kind in ("_SEP", "}"):
        return _Report("E006", "missing irreps after `:`", f.at_line_end(), "expected irreps",
                       _IRREPS_HINT)
    return _Report("E020", f"expected irreps after `:`, found {_found(f)}", f.span,
                   "not irreps", _IRREPS_HINT)


@_rule("diagram d {\n    x -> y  [channels uuu]\n}\n",
       "diagram d {\n    x -> y  [channels =]\n}\n", "diagram d {\n    x -> y  []\n}\n",
       "diagram d {\n    x -> y  [a = b c = d]\n}\n", "diagram d {\n    x -> y  [a = b\n}\n")
def _options(f: _Failure) -> _Report | None:
    """Inside ``[...]``: a missing ``=``, value, ``,`` or ``]``."""
    bracket = f.bracket
    if bracket is None or bracket != "[":
        return None
    hint = "options are written `[key = value, key = value]`"
    if "]" in f.expected and f.kind in ("_SEP", "}"):
        return _Report("E004", "unclosed `[`", f.at_line_end(), "expected `]`",
                       "add `]` after the last option", _opened_here(bracket, "opened here"))
    if f.expected == {"="}:
        key = str(f.prev) if isinstance(f.prev, Token) else "?"
        return _Report("E007", f"expected `=` after option `{key}`, found {_found(f)}",
                       _at_token_or_line_end(f), "expected `=`", hint)
    if "INT" in f.expected:
        return _Report("E007", f"missing option value, found {_found(f)}",
                       _at_token_or_line_end(f), "expected a name or an integer", hint)
    if "]" in f.expected and f.kind == "NAME":
        return _Report("E007", "missing `,` between options", f.span, "expected `,` before this",
                       hint)
    if f.expected == {"NAME"} and f.kind == "]":
        what = "empty option list" if f.item.endswith("[") else "trailing `,` in option list"
        return _Report("E007", what, f.span, "expected an option name", hint +
                       " (leave out `[]` when there are no options)")
    return _Report("E007", f"malformed option list: expected {_describe(f.expected)}, found "
                   f"{_found(f)}", _at_token_or_line_end(f), "unexpected here", hint)


@_rule("diagram d {\n    (a, b -> c\n}\n", "diagram d {\n    (a b) -> c\n}\n",
       "diagram d {\n    (a, ) -> c\n}\n")
def _parentheses(f: _Failure) -> _Report | None:
    """Inside ``(...)``: a missing ``)`` or ``,``."""
    bracket = f.bracket
    if bracket is None or bracket != "(":
        return None
    if ")" in f.expected and f.kind in ("->", "_SEP", "}", "["):
        where = f.at_line_end() if f.kind in ("_SEP", "}") else f.span
        return _Report("E004", "unclosed `(`", where, f"expected `)` before {_found(f)}",
                       "add `)` after the last argument of the group",
                       _opened_here(bracket, "opened here"))
    if ")" in f.expected and f.kind in ("NAME", "("):
        return _Report("E002", "missing `,` between arguments", f.span, "expected `,` before this",
                       "write `(a, b)`")
    return _Report("E002", f"expected {_describe(f.expected)} in parentheses, found {_found(f)}",
                   _at_token_or_line_end(f), "unexpected here",
                   "a group lists two or more arguments: `(a, b)` or `(a, (b, c))`")


@_rule("diagram d {\n    a, b\n}\n", "diagram d {\n    a, b c\n}\n",
       "diagram d {\n    inptu x : 0e\n}\n", "diagram d {\n    a b -> c\n}\n",
       "diagram d {\n    a, b) -> c\n}\n", "diagram d {\n    a, b : 0e\n}\n")
def _statement_arguments(f: _Failure) -> _Report | None:
    """After the arguments of a statement: ``->`` (or ``,``) expected."""
    if "->" not in f.expected:
        return None
    typo = _keyword_like(f.first_word) if f.item == f.first_word else None
    if typo is not None and f.kind not in (",", ")"):
        start = f.item_start
        return _Report("E002", f"unknown keyword `{f.first_word}`", Span(start, start + len(f.item)),
                       "not a keyword", f"did you mean `{typo}`?")
    if f.kind == ")":
        return _Report("E013", "unmatched `)`", f.span, "no `(` is open here",
                       "remove it, or add the `(` it closes")
    if f.kind in ITEM_KEYWORDS:
        return _Report("E012", f"missing `;` or new line before `{f.kind}`", f.span,
                       "a declaration starts here", f"`{f.item}` is not an item on its own; "
                       "put each item on its own line")
    if f.kind == ":":
        return _Report("E006", "declaration without a keyword", Span(f.item_start, f.item_start),
                       "expected `input`, `output` or `edge` here",
                       f"write `input {f.item} : ...`, `output ...` or `edge ...`")
    if f.kind in ("NAME", "(") and "->" in f.rest_of_line:
        return _Report("E002", "missing `,` between arguments", f.span, "expected `,` before this",
                       "write `a, b -> c`")
    if f.kind == "NAME":
        return _Report("E005", f"missing `->` in statement `{f.item} {f.found}`", f.span,
                       "expected `->` before this", f"write `{f.item} -> {f.found}`")
    if f.kind in ("_SEP", "}", "["):
        return _Report("E005", f"missing `->` in statement `{f.item}`", f.at_line_end(),
                       "expected `->` and a target", f"write `{f.item} -> TARGET`")
    return None


@_rule("diagram d {\n    a -> b c -> d\n}\n", "diagram d {\n    a -> b, c\n}\n",
       "diagram d {\n    a -> b -> c\n}\n", "diagram d {\n    group O3 input x : 0e\n}\n",
       "diagram d {\n    x -> y weights = none\n}\n")
def _after_item(f: _Failure) -> _Report | None:
    """Something after a complete item on the same line."""
    if f.block is None or not {"_SEP", "}"} <= f.expected:
        return None
    if f.kind == "," and "->" in f.item:
        return _Report("E002", "a statement has exactly one target", f.span, "second target",
                       "write one statement per target")
    if f.kind == "->":
        return _Report("E002", "statements cannot be chained", f.span, "second `->`",
                       "split it into two statements, e.g. `a -> b` and `b -> c`")
    if f.kind == "NAME" and f.rest_of_line[len(f.found):].lstrip().startswith("="):
        return _Report("E007", "options must be inside `[...]`", f.span, "expected `[` before this",
                       f"write `[{f.rest_of_line.strip()}]`")
    if f.kind in ("NAME", "(", *ITEM_KEYWORDS):
        return _Report("E012", f"missing `;` or new line before {_found(f)}", f.span,
                       "a new item starts here", "put each item on its own line, or separate "
                       "items on one line with `;`")
    if f.kind in (")", "]"):
        return _Report("E013", f"unmatched `{f.kind}`", f.span, "nothing to close here",
                       "remove it")
    return None


@_rule("diagram d {\n    , a -> b\n}\n", "diagram d {\n    -> b\n}\n", "diagram d {\n    0e -> b\n}\n",
       "diagram d {\n    )\n}\n")
def _item_start(f: _Failure) -> _Report | None:
    """Something that cannot start an item, at the start of an item."""
    if f.block is None or not {"group", "NAME", "}"} <= f.expected or f.kind == "CHAR":
        return None
    if f.kind in (")", "]"):
        return _Report("E013", f"unmatched `{f.kind}`", f.span, "nothing to close here", "remove it")
    if f.kind in ("->", "="):
        return _Report("E002", f"missing arguments before {_found(f)}", f.span,
                       "expected a name or `(` first", "a statement is written `a, b -> c`")
    return _Report("E002", f"expected an item, found {_found(f)}", f.span,
                   "an item starts with a keyword, a name or `(`",
                   "items are `group G`, `input NAMES : IRREPS`, `output NAMES`, `edge NAMES` "
                   "or a statement `ARGS -> NAME`")


@_rule("diagram d {\n    a, b ->\n}\n", "diagram d { x -> }\n", "diagram d {\n    x -> 3\n}\n")
def _missing_target(f: _Failure) -> _Report | None:
    """``->`` with no name after it."""
    if f.expected != {"NAME"} or not f.item.endswith("->"):
        return None
    return _Report("E002", f"missing target after `->`, found {_found(f)}", _at_token_or_line_end(f),
                   "expected the name of the target", f"write `{f.item} NAME`")


@_rule("diagram d {\n    x -> y {\n}\n")
def _unexpected_token(f: _Failure) -> _Report:
    """Anything else: say what was expected."""
    return _Report("E002", f"expected {_describe(f.expected)}, found {_found(f)}",
                   _at_token_or_line_end(f) if f.kind != "}" else f.span,
                   f"expected {_describe(f.expected)}")


# --- resynchronising after an error --------------------------------------------------------

_NEXT_DIAGRAM = re.compile(r"^[ \t]*diagram\b", re.MULTILINE)
_ITEM_END = re.compile(r"[\n;}#]")


def _resynchronise(f: _Failure, report: _Report) -> str | None:
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


def _diagram_start(f: _Failure) -> int:
    block = f.block
    index = next(i for i, node in enumerate(f.stack) if node is block)
    keyword = f.stack[max(0, index - 2)]
    return keyword.start_pos if isinstance(keyword, Token) and keyword.start_pos is not None else 0


def _skip_to_next_diagram(f: _Failure) -> str | None:
    """At top level, go on with the next line that starts with ``diagram``."""
    found = _NEXT_DIAGRAM.search(f.text, f.line_end)
    return None if found is None else _blank(f.text, 0, found.start())


def _blank(text: str, start: int, end: int) -> str:
    """``text`` with ``[start, end)`` replaced by spaces (new lines become spaces too)."""
    return text[:start] + " " * (end - start) + text[end:]


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
            return sx.IrrepsText(str(node), _token_span(node))
        digits = node.children[0]
        assert isinstance(digits, Token)
        if len(digits) > MAX_LMAX_DIGITS:
            self.report("E006", f"`lmax {digits[:12]}...` is too large", _token_span(digits),
                        "too many digits", "lmax is a small integer such as 2 or 4")
            return sx.Lmax(0, _span(node))
        return sx.Lmax(int(digits), _span(node))

    def count(self, digits: Token) -> sx.Count:
        if len(digits) > MAX_LMAX_DIGITS:
            self.report("E006", f"`{digits[:12]}...` classes are too many", _token_span(digits),
                        "too many digits", "an index input has a small number of classes, e.g. 3")
            return sx.Count(0, _token_span(digits))
        return sx.Count(int(digits), _token_span(digits))

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
            return sx.Leaf(self.name(name), sx.Name(str(via), _token_span(via)))
        if depth > MAX_DEPTH:
            self.diagnostics.append(_too_deep(self.source, _span(node)))
            return sx.Paren((), _span(node))
        return sx.Paren(tuple(self.arg(child, depth + 1) for child in node.children), _span(node))

    def options(self, node: Node) -> tuple[sx.Option, ...]:
        assert isinstance(node, Tree)
        return tuple(self.option(child) for child in node.children if isinstance(child, Tree))

    def option(self, tree: Tree) -> sx.Option:
        key, value = tree.children
        assert isinstance(key, Token) and isinstance(value, Token)
        return sx.Option(sx.Name(str(key), _token_span(key)), sx.Name(str(value), _token_span(value)),
                         _span(tree))

    def name(self, token: Token) -> sx.Name:
        """A :class:`Name`; a reserved keyword gets an E010 diagnostic."""
        span = _token_span(token)
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
            self.diagnostics.append(_too_deep(self.source, _token_span(token)))

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


def _token_span(token: Token) -> Span:
    assert token.start_pos is not None and token.end_pos is not None
    return Span(token.start_pos, token.end_pos)


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
