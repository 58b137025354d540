"""Syntax errors explained: lark's exceptions turned into diagnostics by a catalogue of rules.

A :class:`Failure` says where the parser stopped, what it found and what it expected, in the
catalogue's terms (terminal keys such as ``"->"`` or ``NAME``, not LALR state numbers, which shift
whenever the grammar changes). :func:`explain` runs the rules of :data:`CATALOGUE` in order; each
carries the examples that trigger it, and the tests check them. :func:`fusionlang.resync.resynchronise`
blanks out the broken part so that :mod:`fusionlang.parse` can go on and report independent
mistakes together. lark's objects never leave this module and :mod:`fusionlang.parse`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from .diagnostics import Diagnostic, Label
from .source import Source, Span

__all__ = ["CATALOGUE", "CatalogueEntry", "Failure", "Report", "explain", "failure_of", "token_span"]

Node = Token | Tree
KEYWORDS = frozenset({"diagram", "group", "basis", "input", "output", "edge", "index", "lmax"})
ITEM_KEYWORDS = ("group", "basis", "input", "output", "edge", "index")


def token_span(token: Token) -> Span:
    assert token.start_pos is not None and token.end_pos is not None
    return Span(token.start_pos, token.end_pos)


@dataclass(frozen=True)
class Failure:
    """A parse error: where, what was found, what was expected, and the parser's value stack."""

    text: str
    pos: int
    end: int
    kind: str  # "$END", "CHAR", or a terminal key: "NAME", "IRREPS", "_SEP", "->", "(", ...
    found: str
    expected: frozenset[str]
    stack: tuple[Node, ...]
    keys: dict[str, str] = field(default_factory=dict, compare=False, hash=False)  # terminal -> key

    @cached_property
    def opened(self) -> list[Token]:
        """Brackets opened on the stack and not closed yet, outermost first."""
        opened: list[Token] = []
        for node in self.stack:
            key = _key(node, self.keys)
            if key in ("{", "(", "[") and isinstance(node, Token):
                opened.append(node)
            elif key in ("}", ")", "]") and opened:
                opened.pop()
        return opened

    @property
    def block(self) -> Token | None:
        """The ``{`` of the diagram the error is in, if any."""
        opened = self.opened
        return opened[0] if opened and _key(opened[0], self.keys) == "{" else None

    @property
    def bracket(self) -> Token | None:
        """The innermost unclosed ``(`` or ``[``."""
        opened = self.opened
        return opened[-1] if opened and _key(opened[-1], self.keys) != "{" else None

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


def _key(node: Node | None, keys: dict[str, str]) -> str:
    """The catalogue key of a token (``"{"``, ``"NAME"``), or ``""`` for a tree."""
    return keys.get(node.type, node.type) if isinstance(node, Token) else ""


def _node_end(node: Node) -> int | None:
    if isinstance(node, Token):
        return node.end_pos
    meta = node.meta
    return None if meta.empty else meta.end_pos


def failure_of(exc: UnexpectedInput, text: str, keys: dict[str, str]) -> Failure:
    """A lark error in the catalogue's terms (``keys``: terminal name -> catalogue key)."""
    interactive = exc.interactive_parser
    stack = tuple(interactive.parser_state.value_stack) if interactive else ()
    expected = frozenset(keys.get(name, name) for name in (interactive.accepts() if interactive else ()))
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        return Failure(text, pos, pos + 1, "CHAR", text[pos], expected, stack, keys)
    token = getattr(exc, "token", None)
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        return Failure(text, len(text), len(text), "$END", "", expected, stack, keys)
    kind, start = keys.get(token.type, token.type), token.start_pos or 0
    if kind == "IRREPS" and "IRREPS" not in expected and token.startswith("("):
        return Failure(text, start, start + 1, "(", "(", expected, stack, keys)  # lexed out of context
    return Failure(text, start, token.end_pos or start, kind, str(token), expected, stack, keys)


# --- the catalogue of mistakes ---------------------------------------------------------------

@dataclass(frozen=True)
class Report:
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


Rule = Callable[[Failure], Report | None]


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


def explain(failure: Failure) -> Report:
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


def _found(f: Failure) -> str:
    """The unexpected thing, as a message shows it."""
    if f.kind == "$END":
        return "the end of the input"
    if f.kind == "_SEP":
        return "the end of the line" if f.found.startswith("\n") else "`;`"
    if f.kind == "CHAR":
        return f"`{f.found}`" if f.found.isprintable() else repr(f.found)
    return f"`{f.found[:24]}`" + ("..." if len(f.found) > 24 else "")


def _opened_here(token: Token, text: str) -> tuple[Label, ...]:
    return (Label(token_span(token), text),)


def _keyword_like(word: str) -> str | None:
    """The keyword ``word`` is probably a typo of (``inptu`` → ``input``), if any."""
    if word in KEYWORDS or not word.isidentifier():
        return None
    close = difflib.get_close_matches(word.lower(), sorted(KEYWORDS), n=1, cutoff=0.7)
    return close[0] if close else None


def _at_token_or_line_end(f: Failure) -> Span:
    """Point at the unexpected token, or just after the line's code when the line ended."""
    return f.at_line_end() if f.kind in ("_SEP", "$END", "}") else f.span


@_rule("diagram d {\n    group O3\n", "diagram d {\n    (a, b", "diagram d")
def _end_of_input(f: Failure) -> Report | None:
    """The input stops early: an unclosed block or bracket, or a half-written item."""
    if f.kind != "$END":
        return None
    span, bracket, block = Span(len(f.text), len(f.text)), f.bracket, f.block
    if bracket is not None:
        closer = ")" if bracket == "(" else "]"
        return Report("E003", f"unexpected end of input: `{bracket}` is never closed", span,
                       f"expected `{closer}`", f"add `{closer}` to close it",
                       _opened_here(bracket, "opened here"))
    if block is not None and "}" in f.expected:
        name = f.diagram_name
        return Report("E003", f"unexpected end of input: diagram `{name}` is never closed", span,
                       "expected `}`", f"add `}}` on a line after the last item of `{name}`",
                       _opened_here(block, "this block is never closed"))
    return Report("E003", "unexpected end of input", span, f"expected {_describe(f.expected)}",
                   "finish the item, or remove the incomplete text at the end")


@_rule("diagram a {\n    x -> y\ndiagram b {\n}\n")
def _nested_diagram(f: Failure) -> Report | None:
    """``diagram`` inside a block: the previous block lacks its ``}``."""
    block = f.block
    if block is None or f.first_word != "diagram" or f.bracket is not None:
        return None
    start = f.item_start
    return Report("E004", f"diagram `{f.diagram_name}` is not closed before the next `diagram`",
                   Span(start, start + len("diagram")), "a new diagram starts here",
                   "add `}` on its own line before this `diagram`",
                   _opened_here(block, "this block is never closed"), drop_block=True)


@_rule("a, b -> c\n", "input x : 0e\n", "}\n", "diagam d {\n}\n", "(a, b) -> c\n")
def _outside_block(f: Failure) -> Report | None:
    """Something other than ``diagram`` at the top level of the file."""
    if f.block is not None or "diagram" not in f.expected or f.kind == "CHAR":
        return None
    if f.kind == "}":
        return Report("E013", "unmatched `}`", f.span, "no block is open here",
                       "remove it: every `}` closes the block of one `diagram NAME {`")
    if f.kind in ITEM_KEYWORDS:
        return Report("E009", f"`{f.kind}` declaration outside a diagram block", f.span,
                       "not inside `diagram NAME { ... }`", "move it into the block of a diagram")
    typo = _keyword_like(f.found) if f.kind == "NAME" else None
    if typo == "diagram":
        return Report("E002", f"unknown keyword `{f.found}`", f.span, "not a keyword",
                       "did you mean `diagram`?")
    if f.kind in ("NAME", "("):
        return Report("E009", "statement outside a diagram block", f.span,
                       "not inside `diagram NAME { ... }`",
                       "items go inside a block: `diagram NAME {`, one item per line, `}`")
    return Report("E002", f"expected `diagram`, found {_found(f)}", f.span,
                   "a file is a list of `diagram NAME { ... }` blocks")


@_rule("diagram {\n}\n", "diagram d\n{\n}\n", "diagram 3 {\n}\n")
def _diagram_header(f: Failure) -> Report | None:
    """``diagram`` without a name, or without ``{`` on its line."""
    if f.block is not None or f.first_word != "diagram":
        return None
    if f.kind == "CHAR":
        return None
    if f.expected == {"NAME"}:
        return Report("E006", "`diagram` needs a name", _at_token_or_line_end(f),
                       "expected a name here", "write `diagram NAME {`")
    where = f.at_line_end() if f.kind == "_SEP" else f.span
    return Report("E002", f"expected `{{` after `{f.item}`, found {_found(f)}", where,
                   "expected `{`", f"write `{f.item} {{` with the `{{` on the same line")


def _keyword_name(f: Failure, span: Span, word: str) -> Report:
    return Report("E010", f"`{word}` is a keyword and cannot be used as a name", span,
                   "reserved keyword", f"choose another name, e.g. `{word}_`")


@_rule("diagram d {\n    a, b => c\n}\n", "diagram d {\n    a → c\n}\n")
def _arrow_lookalike(f: Failure) -> Report | None:
    """``=>``, ``→``, ``-`` ... where ``->`` belongs."""
    if "->" not in f.expected or f.bracket is not None:
        return None
    rest = f.text[f.pos:f.pos + 3]
    lookalike = next((a for a in _ARROW_LOOKALIKES if rest.startswith(a)), None)
    if lookalike is None:
        return None
    message = (f"use `->`, not `{lookalike}`" if len(lookalike) > 1 or lookalike in "→⟶⇒"
               else f"expected `->`, found `{lookalike}`")
    return Report("E005", message, Span(f.pos, f.pos + len(lookalike)), "write `->` here",
                   "statements are written `a, b -> c`")


@_rule("diagram d {\n    input x : 8x0e + 1q\n}\n", "diagram d {\n    input x : 0e, 1o\n}\n",
       "diagram d {\n    input x : 0e@\n}\n", "diagram d {\n    input x : 0e & 1o\n}\n")
def _bad_irreps_character(f: Failure) -> Report | None:
    """A character glued to irreps that cannot belong to irreps."""
    prev = f.prev
    if not (isinstance(prev, Token) and prev.type == "IRREPS"):
        return None
    new_item = ("NAME", "(", "[", "_SEP", "}", "$END", "->", *ITEM_KEYWORDS)
    if not f.adjacent and f.kind in new_item or f.kind in ("[", "_SEP", "}", "$END"):
        return None
    char = f.text[f.pos]
    hint = "separate irreps with `+`, e.g. `0e + 1o`" if char == "," else _IRREPS_HINT
    return Report("E020", f"`{char}` cannot appear in irreps", Span(f.pos, f.pos + 1),
                   "not part of the irreps", hint)


@_rule("diagram d {\n    a, b -> c @\n}\n", "diagram d $ {\n}\n", "@\n", "diagram d {\n    (a, %) -> b\n}\n")
def _unexpected_character(f: Failure) -> Report | None:
    """A character that starts no token at all."""
    if f.kind != "CHAR" or "IRREPS" in f.expected:
        return None
    hint = ("names use ASCII letters, digits and `_`" if f.found.isalpha()
            else "remove it, or turn the rest of the line into a comment with `#`")
    return Report("E001", f"unexpected character {_found(f)}", f.span,
                   f"expected {_describe(f.expected)}", hint)


@_rule("diagram d {\n    input -> x\n}\n")
def _keyword_instead_of_name(f: Failure) -> Report | None:
    """A keyword where a name was meant: ``input -> x``, ``edge, a -> b``."""
    if f.expected != {"NAME"} or f.item not in ITEM_KEYWORDS:
        return None
    if f.kind not in ("->", ",", ")", "=", "["):
        return None
    start = f.item_start
    return _keyword_name(f, Span(start, start + len(f.item)), f.item)


@_rule("diagram d {\n    input x 0e\n}\n", "diagram d {\n    edge e lmax 2\n}\n")
def _missing_colon(f: Failure) -> Report | None:
    """Irreps or ``lmax`` right after the names of a declaration."""
    if f.first_word not in ("input", "output", "edge") or ":" not in f.expected:
        return None
    if f.kind not in ("IRREPS", "INT", "lmax", "="):
        return None
    what = "irreps" if f.kind != "lmax" else "`lmax`"
    return Report("E008", f"missing `:` before {what}", f.span, "expected `:` before this",
                   f"write `{f.item} : {f.rest_of_line.strip()}`")


@_rule("diagram d {\n    input x\n}\n", "diagram d {\n    input x :\n}\n", "diagram d {\n    output a b\n}\n",
       "diagram d {\n    group O(3)\n}\n",
       "diagram d {\n    group\n}\n", "diagram d {\n    edge e : lmax\n}\n",
       "diagram d {\n    input x : lmax 2\n}\n", "diagram d {\n    input : 0e\n}\n")
def _declaration(f: Failure) -> Report | None:
    """A declaration that lacks a part: a name, irreps, an integer after ``lmax``."""
    word = f.first_word
    if word not in ITEM_KEYWORDS or f.bracket is not None:
        return None
    if word == "group" and f.expected == {"NAME"}:
        return Report("E006", "`group` needs a group name", _at_token_or_line_end(f),
                       "expected a group name", "write `group SU2`, `group SO3` or `group O3`")
    if f.expected == {"NAME"}:
        return Report("E006", f"expected a name in this `{word}` declaration, found {_found(f)}",
                       _at_token_or_line_end(f), "expected a name",
                       f"write `{word} a, b : ...` with one or more names")
    if ":" in f.expected and f.kind == "NAME":
        return Report("E002", "missing `,` between names", f.span, "expected `,` before this",
                       f"write `{word} a, b : ...`")
    if word == "group" and f.kind in ITEM_KEYWORDS:
        return None  # two items on one line
    if word == "group" and f.kind not in ("_SEP", "}", "$END"):
        return Report("E006", "`group` takes a single group name", f.span, "unexpected here",
                       "write `group SU2`, `group SO3` or `group O3` on a line of its own")
    if ":" in f.expected and word == "input" and f.kind in ("_SEP", "}"):
        return Report("E006", "`input` needs irreps", f.at_line_end(), "expected `: IRREPS`",
                       f"write `{f.item} : 8x0e` (inputs have no inferred type)")
    if "IRREPS" in f.expected:
        return _irreps_expected(f, word)
    if f.expected == {"INT"}:
        return Report("E006", f"`lmax` needs an integer, found {_found(f)}",
                       _at_token_or_line_end(f), "expected an integer", "write `edge ab : lmax 2`")
    return None


def _irreps_expected(f: Failure, word: str) -> Report:
    if f.kind == "lmax":
        return Report("E006", f"`lmax` only constrains internal edges and outputs, not an `{word}`", f.span,
                       "only after `edge NAME :` or `output NAME :`",
                       f"give the {word} irreps, e.g. `{word} x : 8x0e`")
    if f.kind in ("_SEP", "}"):
        return Report("E006", "missing irreps after `:`", f.at_line_end(), "expected irreps",
                       _IRREPS_HINT)
    return Report("E020", f"expected irreps after `:`, found {_found(f)}", f.span,
                   "not irreps", _IRREPS_HINT)


@_rule("diagram d {\n    x, y -> z  [only = {0 1 -> }]\n}\n", "diagram d {\n    x, y -> z  [only = {0 1 2}]\n}\n",
       "diagram d {\n    x, y -> z  [only = {0 1 -> 2]\n}\n", "diagram d {\n    x, y -> z  [only = {}]\n}\n",
       "diagram d {\n    x, y -> z  [only = {0 1 -> 2 3 -> 4}]\n}\n")
def _path_set(f: Failure) -> Report | None:
    """Inside ``only = {...}`` (a ``{`` opened after a ``[``): a malformed path list."""
    opened = f.opened
    if len(opened) < 3 or _key(opened[-1], f.keys) != "{" or _key(opened[-2], f.keys) != "[":
        return None
    hint = ("a path list is `{0 1 -> 2, 1 0 -> 2}`: the entry index of every argument, `->`, "
            "the entry index of the target, paths separated by `,`")
    if "}" in f.expected and f.kind in ("_SEP", "]", "$END"):
        return Report("E004", "unclosed `{`", _at_token_or_line_end(f), "expected `}`",
                      "add `}` after the last path", _opened_here(opened[-1], "opened here"))
    if "->" in f.expected and f.kind != "INT":
        return Report("E007", f"expected `->` in a path, found {_found(f)}", _at_token_or_line_end(f),
                      "expected `->`", hint)
    if "}" in f.expected and f.found[:1].isdigit():
        return Report("E007", "missing `,` between paths", f.span, "expected `,` before this", hint)
    return Report("E007", f"malformed path list: expected {_describe(f.expected)}, found {_found(f)}",
                  _at_token_or_line_end(f), "unexpected here", hint)


@_rule("diagram d {\n    x -> y  [channels uuu]\n}\n",
       "diagram d {\n    x -> y  [channels =]\n}\n", "diagram d {\n    x -> y  []\n}\n",
       "diagram d {\n    x -> y  [a = b c = d]\n}\n", "diagram d {\n    x -> y  [a = b\n}\n")
def _options(f: Failure) -> Report | None:
    """Inside ``[...]``: a missing ``=``, value, ``,`` or ``]``."""
    bracket = f.bracket
    if bracket is None or bracket != "[":
        return None
    hint = "options are written `[key = value, key = value]`"
    if "]" in f.expected and f.kind in ("_SEP", "}"):
        return Report("E004", "unclosed `[`", f.at_line_end(), "expected `]`",
                       "add `]` after the last option", _opened_here(bracket, "opened here"))
    if f.expected == {"="}:
        key = str(f.prev) if isinstance(f.prev, Token) else "?"
        return Report("E007", f"expected `=` after option `{key}`, found {_found(f)}",
                       _at_token_or_line_end(f), "expected `=`", hint)
    if "INT" in f.expected:
        return Report("E007", f"missing option value, found {_found(f)}",
                       _at_token_or_line_end(f), "expected a name or an integer", hint)
    if "]" in f.expected and f.kind == "NAME":
        return Report("E007", "missing `,` between options", f.span, "expected `,` before this",
                       hint)
    if f.expected == {"NAME"} and f.kind == "]":
        what = "empty option list" if f.item.endswith("[") else "trailing `,` in option list"
        return Report("E007", what, f.span, "expected an option name", hint +
                       " (leave out `[]` when there are no options)")
    return Report("E007", f"malformed option list: expected {_describe(f.expected)}, found "
                   f"{_found(f)}", _at_token_or_line_end(f), "unexpected here", hint)


@_rule("diagram d {\n    (a, b -> c\n}\n", "diagram d {\n    (a b) -> c\n}\n",
       "diagram d {\n    (a, ) -> c\n}\n")
def _parentheses(f: Failure) -> Report | None:
    """Inside ``(...)``: a missing ``)`` or ``,``."""
    bracket = f.bracket
    if bracket is None or bracket != "(":
        return None
    if ")" in f.expected and f.kind in ("->", "_SEP", "}", "["):
        where = f.at_line_end() if f.kind in ("_SEP", "}") else f.span
        return Report("E004", "unclosed `(`", where, f"expected `)` before {_found(f)}",
                       "add `)` after the last argument of the group",
                       _opened_here(bracket, "opened here"))
    if ")" in f.expected and f.kind in ("NAME", "("):
        return Report("E002", "missing `,` between arguments", f.span, "expected `,` before this",
                       "write `(a, b)`")
    return Report("E002", f"expected {_describe(f.expected)} in parentheses, found {_found(f)}",
                   _at_token_or_line_end(f), "unexpected here",
                   "a group lists two or more arguments: `(a, b)` or `(a, (b, c))`")


@_rule("diagram d {\n    a, b\n}\n", "diagram d {\n    a, b c\n}\n",
       "diagram d {\n    inptu x : 0e\n}\n", "diagram d {\n    a b -> c\n}\n",
       "diagram d {\n    a, b) -> c\n}\n", "diagram d {\n    a, b : 0e\n}\n")
def _statement_arguments(f: Failure) -> Report | None:
    """After the arguments of a statement: ``->`` (or ``,``) expected."""
    if "->" not in f.expected:
        return None
    typo = _keyword_like(f.first_word) if f.item == f.first_word else None
    if typo is not None and f.kind not in (",", ")"):
        start = f.item_start
        return Report("E002", f"unknown keyword `{f.first_word}`", Span(start, start + len(f.item)),
                       "not a keyword", f"did you mean `{typo}`?")
    if f.kind == ")":
        return Report("E013", "unmatched `)`", f.span, "no `(` is open here",
                       "remove it, or add the `(` it closes")
    if f.kind in ITEM_KEYWORDS:
        return Report("E012", f"missing `;` or new line before `{f.kind}`", f.span,
                       "a declaration starts here", f"`{f.item}` is not an item on its own; "
                       "put each item on its own line")
    if f.kind == ":":
        return Report("E006", "declaration without a keyword", Span(f.item_start, f.item_start),
                       "expected `input`, `output` or `edge` here",
                       f"write `input {f.item} : ...`, `output ...` or `edge ...`")
    if f.kind in ("NAME", "(") and "->" in f.rest_of_line:
        return Report("E002", "missing `,` between arguments", f.span, "expected `,` before this",
                       "write `a, b -> c`")
    if f.kind == "NAME":
        return Report("E005", f"missing `->` in statement `{f.item} {f.found}`", f.span,
                       "expected `->` before this", f"write `{f.item} -> {f.found}`")
    if f.kind in ("_SEP", "}", "["):
        return Report("E005", f"missing `->` in statement `{f.item}`", f.at_line_end(),
                       "expected `->` and a target", f"write `{f.item} -> TARGET`")
    return None


@_rule("diagram d {\n    a -> b c -> d\n}\n", "diagram d {\n    a -> b, c\n}\n",
       "diagram d {\n    a -> b -> c\n}\n", "diagram d {\n    group O3 input x : 0e\n}\n",
       "diagram d {\n    x -> y weights = none\n}\n")
def _after_item(f: Failure) -> Report | None:
    """Something after a complete item on the same line."""
    if f.block is None or not {"_SEP", "}"} <= f.expected:
        return None
    if f.kind == "," and "->" in f.item:
        return Report("E002", "a statement has exactly one target", f.span, "second target",
                       "write one statement per target")
    if f.kind == "->":
        return Report("E002", "statements cannot be chained", f.span, "second `->`",
                       "split it into two statements, e.g. `a -> b` and `b -> c`")
    if f.kind == "NAME" and f.rest_of_line[len(f.found):].lstrip().startswith("="):
        return Report("E007", "options must be inside `[...]`", f.span, "expected `[` before this",
                       f"write `[{f.rest_of_line.strip()}]`")
    if f.kind in ("NAME", "(", *ITEM_KEYWORDS):
        return Report("E012", f"missing `;` or new line before {_found(f)}", f.span,
                       "a new item starts here", "put each item on its own line, or separate "
                       "items on one line with `;`")
    if f.kind in (")", "]"):
        return Report("E013", f"unmatched `{f.kind}`", f.span, "nothing to close here",
                       "remove it")
    return None


@_rule("diagram d {\n    , a -> b\n}\n", "diagram d {\n    -> b\n}\n", "diagram d {\n    0e -> b\n}\n",
       "diagram d {\n    )\n}\n")
def _item_start(f: Failure) -> Report | None:
    """Something that cannot start an item, at the start of an item."""
    if f.block is None or not {"group", "NAME", "}"} <= f.expected or f.kind == "CHAR":
        return None
    if f.kind in (")", "]"):
        return Report("E013", f"unmatched `{f.kind}`", f.span, "nothing to close here", "remove it")
    if f.kind in ("->", "="):
        return Report("E002", f"missing arguments before {_found(f)}", f.span,
                       "expected a name or `(` first", "a statement is written `a, b -> c`")
    return Report("E002", f"expected an item, found {_found(f)}", f.span,
                   "an item starts with a keyword, a name or `(`",
                   "items are `group G`, `input NAMES : IRREPS`, `output NAMES`, `edge NAMES` "
                   "or a statement `ARGS -> NAME`")


@_rule("diagram d {\n    a, b ->\n}\n", "diagram d { x -> }\n", "diagram d {\n    x -> 3\n}\n")
def _missing_target(f: Failure) -> Report | None:
    """``->`` with no name after it."""
    if f.expected != {"NAME"} or not f.item.endswith("->"):
        return None
    return Report("E002", f"missing target after `->`, found {_found(f)}", _at_token_or_line_end(f),
                   "expected the name of the target", f"write `{f.item} NAME`")


@_rule("diagram d {\n    x -> y {\n}\n")
def _unexpected_token(f: Failure) -> Report:
    """Anything else: say what was expected."""
    return Report("E002", f"expected {_describe(f.expected)}, found {_found(f)}",
                   _at_token_or_line_end(f) if f.kind != "}" else f.span,
                   f"expected {_describe(f.expected)}")
