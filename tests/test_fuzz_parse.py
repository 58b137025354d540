"""Fuzzing the parser: generated programs round-trip, mutated programs fail only with diagnostics.

The strategies here (random syntax trees, random layouts) are also used by ``test_fmt.py``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionlang.diagnostics import CODES, FusionError
from fusionlang.fmt import format_file
from fusionlang.parse import KEYWORDS, MAX_ERRORS, parse
from fusionlang.syntax import (
    Arg,
    Diagram,
    File,
    GroupDecl,
    IrrepsText,
    Item,
    Leaf,
    LegDecl,
    Lmax,
    Name,
    Option,
    Paren,
    Statement,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").glob("*.fusion"))]
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- random syntax trees ------------------------------------------------------------------------

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
names = identifiers.map(Name)
comment_texts = st.text(st.characters(exclude_characters="\n\r", exclude_categories=["Cs"]),
                        max_size=12).map(str.rstrip)
trailing_texts = st.one_of(st.just(""), comment_texts.filter(bool))
comment_lists = st.lists(comment_texts, max_size=2).map(tuple)

_atoms = st.sampled_from(["0e", "1o", "2e", "3o", "1y", "0", "1", "2", "1/2", "3/2", "5/2"])
_terms = st.one_of(
    _atoms,
    st.tuples(st.integers(1, 64), _atoms).map(lambda t: f"{t[0]}x{t[1]}"),
    st.tuples(st.integers(1, 64), st.lists(_atoms, min_size=1, max_size=3))
    .map(lambda t: f"{t[0]}x(" + " + ".join(t[1]) + ")"),
)
irreps_texts = st.tuples(st.lists(_terms, min_size=1, max_size=4), st.sampled_from([" + ", "+"])) \
    .map(lambda t: t[1].join(t[0]))
option_values = st.one_of(names, st.integers(0, 10_000).map(lambda i: Name(str(i))))
options = st.lists(st.builds(Option, names, option_values), max_size=3).map(tuple)
arguments: st.SearchStrategy[Arg] = st.recursive(
    names.map(Leaf), lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda xs: Paren(tuple(xs))),
    max_leaves=8)


def _leg(kind: str) -> st.SearchStrategy[LegDecl]:
    types: st.SearchStrategy[IrrepsText | Lmax | None] = irreps_texts.map(IrrepsText)
    if kind != "input":
        types = st.one_of(types, st.none())
    if kind == "edge":
        types = st.one_of(types, st.integers(0, 999_999).map(Lmax))
    return st.builds(LegDecl, st.just(kind), st.lists(names, min_size=1, max_size=3).map(tuple), types,
                     options, comments=comment_lists, trailing=trailing_texts)


items: st.SearchStrategy[Item] = st.one_of(
    st.builds(GroupDecl, st.one_of(st.sampled_from(["O3", "SO3", "SU2"]).map(Name), names),
              comments=comment_lists, trailing=trailing_texts),
    _leg("input"), _leg("output"), _leg("edge"),
    st.builds(Statement, st.lists(arguments, min_size=1, max_size=3).map(tuple), names, options,
              comments=comment_lists, trailing=trailing_texts),
)
diagrams = st.builds(Diagram, names, st.lists(items, max_size=6).map(tuple), comments=comment_lists,
                     closing_comments=comment_lists, trailing=trailing_texts)
syntax_files = st.builds(File, st.lists(diagrams, max_size=3).map(tuple), closing_comments=comment_lists)


def comments_of(file: File) -> object:
    """Every comment of a tree, in order (equality of trees ignores them)."""
    return (file.closing_comments, [(d.comments, d.trailing, d.closing_comments,
                                     [(i.comments, i.trailing) for i in d.items]) for d in file.diagrams])


# --- rendering a tree with a random layout ------------------------------------------------------

class Layout:
    """Random but valid spelling: spaces, tabs, blank lines, CRLF, `;`-joined one-liners."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.one_line = rnd.random() < 0.2  # no comments can survive on one line
        self.newline = "\r\n" if rnd.random() < 0.2 else "\n"

    def space(self, least: int = 0) -> str:
        return "".join(self.rnd.choice(" \t") for _ in range(self.rnd.randint(least, least + 2)))

    def comment(self, text: str) -> str:
        return "" if not text or self.one_line else self.space() + "#" + text

    def file(self, file: File) -> str:
        lines: list[str] = []
        for d in file.diagrams:
            lines += self.comments(d.comments) + self.diagram(d)
        lines += self.comments(file.closing_comments)
        if self.one_line:
            return " ".join(lines)
        return "".join(line + self.newline * self.rnd.choice([1, 1, 1, 2]) for line in lines)

    def comments(self, texts: tuple[str, ...]) -> list[str]:
        return [] if self.one_line else [self.space() + "#" + t for t in texts]

    def diagram(self, d: Diagram) -> list[str]:
        head = f"diagram{self.space(1)}{d.name.text}{self.space()}{{" + self.comment(d.trailing)
        body = []
        for item in d.items:
            body += self.comments(item.comments)
            body.append(self.space() + self.item(item) + self.comment(item.trailing))
        body += self.comments(d.closing_comments)
        if self.one_line:
            return [head + " " + "; ".join(body) + self.rnd.choice(["", ";", " ;;"]) + " }"]
        return [head, *body, self.space() + "}"]

    def item(self, item: Item) -> str:
        if isinstance(item, GroupDecl):
            return f"group{self.space(1)}{item.group.text}"
        if isinstance(item, Statement):
            args = self.joined(self.arg(a) for a in item.args)
            return f"{args}{self.space()}->{self.space()}{item.target.text}" + self.options(item.options)
        names_ = self.joined(name.text for name in item.names)
        return f"{item.kind}{self.space(1)}{names_}" + self.leg_type(item.type) + self.options(item.options)

    def leg_type(self, leg_type: IrrepsText | Lmax | None) -> str:
        if leg_type is None:
            return ""
        value = leg_type.text if isinstance(leg_type, IrrepsText) else f"lmax{self.space(1)}{leg_type.value}"
        return f"{self.space()}:{self.space()}{value}"

    def arg(self, arg: Arg) -> str:
        if isinstance(arg, Leaf):
            return arg.name.text
        return "(" + self.space() + self.joined(self.arg(a) for a in arg.items) + self.space() + ")"

    def options(self, options: tuple[Option, ...]) -> str:
        if not options:
            return ""
        pairs = (f"{o.key.text}{self.space()}={self.space()}{o.value.text}" for o in options)
        return f"{self.space()}[{self.space()}{self.joined(pairs)}{self.space()}]"

    def joined(self, parts: object) -> str:
        return ",".join(self.space() + str(p) + self.space() for p in parts)  # type: ignore[attr-defined]


@settings(FAST, max_examples=250)
@given(syntax_files, st.randoms(use_true_random=False))
def test_generated_programs_parse_to_their_tree(file: File, rnd: random.Random) -> None:
    layout = Layout(rnd)
    text = layout.file(file)
    parsed = parse(text)
    assert parsed == file
    if not layout.one_line:
        assert comments_of(parsed) == comments_of(file)


@settings(FAST, max_examples=100)
@given(syntax_files)
def test_spans_of_generated_programs_cover_their_text(file: File) -> None:
    parsed = parse(format_file(file, canonical_irreps=False))
    for d in parsed.diagrams:
        assert parsed.source.snippet(d.name.span) == d.name.text
        for item in d.items:
            if isinstance(item, LegDecl) and isinstance(item.type, IrrepsText):
                assert parsed.source.snippet(item.type.span) == item.type.text
            if isinstance(item, Statement):
                assert parsed.source.snippet(item.target.span) == item.target.text


# --- mutations ----------------------------------------------------------------------------------

TOKENS = ["diagram", "group", "input", "output", "edge", "lmax", "->", "=>", "→", "(", ")", "[", "]", "{", "}",
          ",", ":", ";", "=", "\n", "#", " ", "\t", "x", "0e", "1/2", "8x(", "@", "$", "é", "+", "\r\n", "\\",
          "((((((((", "))))", "'", "\"", "\x00", "\ufeff"]


def mutate(text: str, rnd: random.Random, edits: int) -> str:
    """Random insertions, deletions, replacements and duplications of characters and tokens."""
    for _ in range(edits):
        at, op = rnd.randrange(len(text) + 1), rnd.random()
        if op < 0.25:
            text = text[:at] + text[at + rnd.randint(1, 6):]
        elif op < 0.55:
            text = text[:at] + rnd.choice(TOKENS) + text[at:]
        elif op < 0.75:
            text = text[:at] + chr(rnd.randrange(9, 0x2200)) + text[at + 1:]
        else:
            start = rnd.randrange(len(text) + 1)
            text = text[:at] + text[start:start + rnd.randint(1, 30)] + text[at:]
    return text


def check_outcome(text: str) -> File | None:
    """Parse; only a FusionError with well-formed diagnostics may come out."""
    try:
        return parse(text, "fuzz.fusion")
    except FusionError as error:
        assert 1 <= len(error.diagnostics) <= MAX_ERRORS
        for d in error.diagnostics:
            assert d.code in CODES and d.message
            assert d.span is not None and 0 <= d.span.start <= d.span.end <= len(text)
            d.render()
        return None


@settings(FAST, max_examples=1500)
@given(st.sampled_from(EXAMPLES), st.randoms(use_true_random=False), st.integers(1, 6))
def test_mutated_examples_fail_only_with_diagnostics(text: str, rnd: random.Random, edits: int) -> None:
    _build_the_parser()
    start = time.perf_counter()
    check_outcome(mutate(text, rnd, edits))
    assert time.perf_counter() - start < 2.0


def test_many_mutants_with_a_fixed_seed() -> None:
    """Tens of thousands of mutants: no crash, no hang, and what still parses round-trips."""
    rnd, seeds = random.Random(20240611), EXAMPLES + [_joined_examples()]
    slowest, parsed = 0.0, 0
    _build_the_parser()
    for _ in range(20_000):
        text = mutate(rnd.choice(seeds), rnd, rnd.randint(1, 4))
        began = time.perf_counter()
        file = check_outcome(text)
        slowest = max(slowest, time.perf_counter() - began)
        if file is not None:
            parsed += 1
            assert parse(format_file(file, canonical_irreps=False)) == file
    assert slowest < 2.0
    assert 1000 < parsed < 15_000  # the mutations really do both


def _build_the_parser() -> None:
    """Parse once before timing: building lark's parser (0.4 s here, 2 s on a loaded CI machine) is
    not the hang these tests guard against; after it the slowest mutant takes about 55 ms."""
    parse(EXAMPLES[0])


def _joined_examples() -> str:
    return "\n".join(EXAMPLES)
