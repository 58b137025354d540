"""The parser: tree shapes, spans, comments, and every syntax diagnostic with its position."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fusionlang import parse as parse_module
from fusionlang.diagnostics import CODES, FusionError
from fusionlang.parse import CATALOGUE, KEYWORDS, MAX_DEPTH, MAX_ERRORS, explain_first_error, parse
from fusionlang.source import Source, Span
from fusionlang.syntax import (
    BasisDecl,
    Diagram,
    File,
    GroupDecl,
    IrrepsText,
    Leaf,
    LegDecl,
    Lmax,
    Name,
    Option,
    Paren,
    Statement,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))
ERROR_CASES = sorted((ROOT / "tests" / "cases" / "errors").glob("*.fusion"))
EXPECT = re.compile(r"#\s*expect:\s*(E\d{3})\s+(\d+):(\d+)")
SYNTAX_CODES = {f"E{n:03d}" for n in range(1, 20)}


def n(text: str) -> Name:
    return Name(text)


def leaf(text: str) -> Leaf:
    return Leaf(Name(text))


def paren(*items: Leaf | Paren) -> Paren:
    return Paren(tuple(items))


def opts(**values: str) -> tuple[Option, ...]:
    return tuple(Option(n(k), n(v)) for k, v in values.items())


def block(text: str) -> str:
    """A diagram around some items, for short tests."""
    return "diagram d {\n" + text + "\n}\n"


def items(text: str) -> tuple:
    return parse(block(text)).diagrams[0].items


def first_error(text: str) -> tuple[str, int | None, int | None]:
    with pytest.raises(FusionError) as caught:
        parse(text, "t.fusion")
    d = caught.value.diagnostics[0]
    return d.code, d.line, d.column


def errors(text: str) -> list[tuple[str, int | None, int | None]]:
    with pytest.raises(FusionError) as caught:
        parse(text, "t.fusion")
    return [(d.code, d.line, d.column) for d in caught.value.diagnostics]


# --- examples and tree shapes -------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_parses_with_spans_on_its_text(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    file = parse(text, path.name)
    assert file.source.text == text and file.source.name == path.name
    names = [d.name.text for d in file.diagrams]
    assert names and len(set(names)) == len(names)
    for diagram in file.diagrams:
        assert file.source.snippet(diagram.span).startswith("diagram ")
        assert file.source.snippet(diagram.span).endswith("}")
        for item in diagram.items:
            snippet = file.source.snippet(item.span)
            assert "\n" not in snippet and snippet == snippet.strip()
            assert snippet.split()[0] in ("group", "basis", "input", "output", "edge", "index") or "->" in snippet
        for name in _names(diagram):
            assert file.source.snippet(name.span) == name.text


def _names(diagram: Diagram) -> list[Name]:
    found = [diagram.name]
    for item in diagram.items:
        if isinstance(item, GroupDecl):
            found.append(item.group)
        elif isinstance(item, BasisDecl):
            found.append(item.basis)
        elif isinstance(item, LegDecl):
            found += item.names
        else:
            found += [item.target, *_arg_names(item.args)]
        if not isinstance(item, (GroupDecl, BasisDecl)):
            found += [name for o in item.options for name in (o.key, o.value)]
    return found


def _arg_names(args: tuple) -> list[Name]:
    return [name for a in args
            for name in ([a.name, *([a.via] if a.via else [])] if isinstance(a, Leaf) else _arg_names(a.items))]


def test_tree4_parses_to_the_expected_tree() -> None:
    file = parse((ROOT / "examples" / "tree4.fusion").read_text())
    expected = Diagram(n("tree4"), (
        GroupDecl(n("O3")),
        LegDecl("input", (n("a"), n("b"), n("c"), n("d")), IrrepsText("8x(0e + 1o + 2e)")),
        LegDecl("edge", (n("ab"),), Lmax(2)),
        LegDecl("output", (n("out"),), IrrepsText("8x(0e + 1o)")),
        Statement((paren(leaf("a"), leaf("b")),), n("ab"), opts(channels="uuu", weights="none")),
        Statement((paren(leaf("ab"), paren(leaf("c"), leaf("d"))),), n("out"),
                  opts(channels="uuu", weights="channel")),
    ))
    assert file == File((expected,))


def test_spins_parses_to_the_expected_tree() -> None:
    file = parse((ROOT / "examples" / "spins.fusion").read_text())
    assert file.diagrams[0] == Diagram(n("spins"), (
        GroupDecl(n("SU2")),
        LegDecl("input", (n("s1"), n("s2"), n("s3")), IrrepsText("1/2")),
        LegDecl("output", (n("total"),), IrrepsText("1/2 + 3/2")),
        Statement((leaf("s1"), leaf("s2")), n("s12")),
        Statement((leaf("s12"), leaf("s3")), n("total")),
    ))


def test_spans_map_to_lines_and_columns() -> None:
    file = parse((ROOT / "examples" / "spins.fusion").read_text())
    source, items_ = file.source, file.diagrams[0].items
    last = items_[-1]
    assert isinstance(last, Statement)
    assert (source.position(last.target.span.start).line, source.position(last.target.span.start).column) == (7, 16)
    assert (source.position(last.span.start).line, source.position(last.span.start).column) == (7, 5)
    output = items_[2]
    assert isinstance(output, LegDecl) and isinstance(output.type, IrrepsText)
    assert source.snippet(output.type.span) == "1/2 + 3/2"
    assert source.position(output.type.span.start).column == 20
    assert source.snippet(file.diagrams[0].name.span) == "spins"


def test_spans_of_parens_options_and_lmax() -> None:
    text = block("    edge e : lmax 3\n    (a, (b, c)) -> e  [k = v, w = 2]")
    file = parse(text)
    edge, stmt = file.diagrams[0].items
    assert isinstance(edge, LegDecl) and isinstance(stmt, Statement)
    assert file.source.snippet(edge.type.span) == "lmax 3"  # type: ignore[union-attr]
    assert file.source.snippet(edge.span) == "edge e : lmax 3"
    outer = stmt.args[0]
    assert isinstance(outer, Paren)
    assert file.source.snippet(outer.span) == "(a, (b, c))"
    assert file.source.snippet(outer.items[1].span) == "(b, c)"
    assert file.source.snippet(stmt.options[1].span) == "w = 2"
    assert file.source.snippet(stmt.span) == "(a, (b, c)) -> e  [k = v, w = 2]"


# --- small positive cases -----------------------------------------------------------------------

def test_one_liners_with_semicolons() -> None:
    file = parse("diagram d { group O3; input x : 0e; x -> y }")
    assert file.diagrams[0].items == (GroupDecl(n("O3")), LegDecl("input", (n("x"),), IrrepsText("0e")),
                                      Statement((leaf("x"),), n("y")))


def test_several_diagrams_and_separators() -> None:
    file = parse("diagram a {}\n\n\ndiagram b { ;; x -> y ;; }; diagram c {\n\n}")
    assert [d.name.text for d in file.diagrams] == ["a", "b", "c"]
    assert [len(d.items) for d in file.diagrams] == [0, 1, 0]


@pytest.mark.parametrize("text", ["", "\n\n", "   \t", "# only a comment", "# a\n\n# b\n", "\ufeff"])
def test_files_without_diagrams(text: str) -> None:
    assert parse(text).diagrams == ()


def test_single_paren_gives_one_argument_and_plain_list_gives_leaves() -> None:
    grouped, plain, single = items("    (a, b) -> ab\n    a, b -> c\n    (a) -> z")
    assert isinstance(grouped, Statement) and grouped.args == (paren(leaf("a"), leaf("b")),)
    assert isinstance(plain, Statement) and plain.args == (leaf("a"), leaf("b"))
    assert isinstance(single, Statement) and single.args == (paren(leaf("a")),)


def test_declaration_forms() -> None:
    found = items("    output z\n    edge e\n    edge f : 2x1o\n    edge g : lmax 0  [k = v]\n"
                  "    input  x_1, _y2 : 1y  [weights = 3]")
    assert found == (
        LegDecl("output", (n("z"),), None),
        LegDecl("edge", (n("e"),), None),
        LegDecl("edge", (n("f"),), IrrepsText("2x1o")),
        LegDecl("edge", (n("g"),), Lmax(0), opts(k="v")),
        LegDecl("input", (n("x_1"), n("_y2")), IrrepsText("1y"), opts(weights="3")),
    )


@pytest.mark.parametrize("irreps", ["32x0e + 32x1o", "8x(0e + 1o + 2e)", "1y", "0 + 1 + 2", "1/2 + 3x3/2",
                                    "0e+1o", "(0e + 1o)", "2x(1/2 +\t1)"])
def test_irreps_text_is_captured_exactly(irreps: str) -> None:
    (decl,) = items(f"    input x :   {irreps}   # comment")
    assert isinstance(decl, LegDecl) and decl.type == IrrepsText(irreps)


def test_irreps_text_is_not_validated_by_the_parser() -> None:
    (decl,) = items("    input x : 1/2 + 9x9e")  # wrong for every group, still text
    assert isinstance(decl, LegDecl) and decl.type == IrrepsText("1/2 + 9x9e")


def test_crlf_tabs_and_keywords_as_option_words() -> None:
    text = "diagram d {\r\n\tgroup O3\r\n\tx ,y->z\t[input = edge, lmax = 4]\r\n}\r\n"
    (group, stmt) = parse(text).diagrams[0].items
    assert group == GroupDecl(n("O3"))
    assert stmt == Statement((leaf("x"), leaf("y")), n("z"), opts(input="edge", lmax="4"))


def test_source_objects_keep_their_name() -> None:
    source = Source("diagram d {}", "mine.fusion")
    assert parse(source).source is source
    with pytest.raises(FusionError) as caught:
        parse(Source("diagram {}", "mine.fusion"))
    assert caught.value.diagnostics[0].file == "mine.fusion"


def test_deep_but_allowed_nesting() -> None:
    deep = "(" * MAX_DEPTH + "a, b" + ")" * MAX_DEPTH
    (stmt,) = items(f"    {deep} -> c")
    assert isinstance(stmt, Statement)
    depth, arg = 0, stmt.args[0]
    while isinstance(arg, Paren):
        depth, arg = depth + 1, arg.items[0]
    assert depth == MAX_DEPTH


# --- comments -----------------------------------------------------------------------------------

COMMENTED = """\
# file header
#   indented text is kept
diagram d {  # header comment
    # about the group
    group O3  # trailing group

    # first
    # second
    x -> y  # trailing statement
    a -> b; c -> d  # belongs to the last item on the line
    # closing
}  # after the brace
# before e
diagram e { x -> y }  # one-liner
# the end
"""


def test_comments_are_attached_to_the_right_nodes() -> None:
    file = parse(COMMENTED)
    d, e = file.diagrams
    assert d.comments == (" file header", "   indented text is kept")
    assert d.trailing == " header comment"
    group, xy, ab, cd = d.items
    assert (group.comments, group.trailing) == ((" about the group",), " trailing group")
    assert (xy.comments, xy.trailing) == ((" first", " second"), " trailing statement")
    assert (ab.comments, ab.trailing) == ((), "")
    assert cd.trailing == " belongs to the last item on the line"
    assert d.closing_comments == (" closing",)
    assert e.comments == (" after the brace", " before e")
    assert e.items[0].trailing == " one-liner"
    assert file.closing_comments == (" the end",)


def test_comments_do_not_change_equality() -> None:
    assert parse(COMMENTED) == parse(re.sub(r"#[^\n]*", "", COMMENTED))


def test_comment_only_and_empty_block_comments() -> None:
    file = parse("diagram d {\n    # nothing yet\n}\n# tail #1\n#\n")
    assert file.diagrams[0].closing_comments == (" nothing yet",)
    assert file.closing_comments == (" tail #1", "")


# --- errors: every case file, with its exact positions -------------------------------------------

def _syntax_case(path: Path) -> bool:
    codes = {code for code, _, _ in EXPECT.findall(path.read_text(encoding="utf-8"))}
    return bool(codes) and (codes <= SYNTAX_CODES or path.stem.startswith(("syntax_", "E020_comma")))


SYNTAX_CASES = [p for p in ERROR_CASES if _syntax_case(p)]


def test_there_is_a_case_file_for_every_syntax_code() -> None:
    covered = {code for p in SYNTAX_CASES for code, _, _ in EXPECT.findall(p.read_text())}
    assert SYNTAX_CODES & set(CODES) <= covered


@pytest.mark.parametrize("path", SYNTAX_CASES, ids=[p.stem for p in SYNTAX_CASES])
def test_syntax_error_case(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    expected = {(code, int(line), int(col)) for code, line, col in EXPECT.findall(text)}
    with pytest.raises(FusionError) as caught:
        parse(text, path.name)
    found = {(d.code, d.line, d.column) for d in caught.value.diagnostics}
    assert found == expected, "\n" + str(caught.value)
    for diagnostic in caught.value.diagnostics:
        assert diagnostic.message and diagnostic.hint and diagnostic.label
        assert diagnostic.render().startswith(f"error[{diagnostic.code}]")


NEGATIVE = [
    # (source, code, line, column)
    ("diagram d { a -> b @ }", "E001", 1, 20),
    ("diagram d {\n    x -> ÿ\n}", "E001", 2, 10),
    ("diagram d {\n    a, b c -> d\n}", "E002", 2, 10),
    ("diagram d {\n    a -> b, c\n}", "E002", 2, 11),
    ("diagram d {\n    outptu z\n}", "E002", 2, 5),
    ("diagam d {\n}", "E002", 1, 1),
    ("diagram d {\n    x ->\n}", "E002", 2, 9),
    ("diagram d {\n    -> x\n}", "E002", 2, 5),
    ("diagram d {\n    x -> y {\n}", "E002", 2, 12),
    ("diagram d {", "E003", 1, 12),
    ("diagram d {\n    x -> y [a = b", "E003", 2, 18),
    ("diagram", "E003", 1, 8),
    ("diagram d {\n    ((a, b), c -> d\n}", "E004", 2, 16),
    ("diagram d {\n    x -> y [a = b\n}", "E004", 2, 18),
    ("diagram d {\n    x -> y [a = b }", "E004", 2, 18),
    ("diagram a {\n    x -> y\n  diagram b {\n}", "E004", 3, 3),
    ("diagram d {\n    a, b\n}", "E005", 2, 9),
    ("diagram d {\n    a, b c\n}", "E005", 2, 10),
    ("diagram d {\n    a =>b\n}", "E005", 2, 7),
    ("diagram d {\n    a - > b\n}", "E005", 2, 7),
    ("diagram d {\n    a > b\n}", "E005", 2, 7),
    ("diagram d {\n    a ⇒ b\n}", "E005", 2, 7),
    ("diagram { }", "E006", 1, 9),
    ("diagram d {\n    input a\n}", "E006", 2, 12),
    ("diagram d {\n    input a :\n}", "E006", 2, 14),
    ("diagram d {\n    input : 0e\n}", "E006", 2, 11),
    ("diagram d {\n    input y : lmax 3\n}", "E006", 2, 15),
    ("diagram d {\n    edge e : lmax\n}", "E006", 2, 18),
    ("diagram d {\n    edge e : lmax 12345678\n}", "E006", 2, 19),
    ("diagram d {\n    group O(3)\n}", "E006", 2, 12),
    ("diagram d {\n    x -> y [a]\n}", "E007", 2, 14),
    ("diagram d {\n    x -> y [a =]\n}", "E007", 2, 16),
    ("diagram d {\n    x -> y []\n}", "E007", 2, 13),
    ("diagram d {\n    x -> y [a = b,]\n}", "E007", 2, 19),
    ("diagram d {\n    x -> y [a = b = c]\n}", "E007", 2, 19),
    ("diagram d {\n    output z 1o\n}", "E008", 2, 14),
    ("diagram d {\n    input z = 1o\n}", "E008", 2, 13),
    ("x -> y", "E009", 1, 1),
    ("(x, y) -> z", "E009", 1, 1),
    ("\n\n  edge e\ndiagram d {}", "E009", 3, 3),
    ("diagram input {}", "E010", 1, 9),
    ("diagram d {\n    group lmax\n}", "E010", 2, 11),
    ("diagram d {\n    x -> diagram\n}", "E010", 2, 10),
    ("diagram d {\n    (lmax, x) -> y\n}", "E010", 2, 6),
    ("diagram d {\n    edge, x -> y\n}", "E010", 2, 5),
    ("diagram d {\n    a -> b c -> d\n}", "E012", 2, 12),
    ("diagram d {\n    input x : 0e output y\n}", "E012", 2, 18),
    ("diagram d {\n    x -> y (z)\n}", "E012", 2, 12),
    ("diagram d {\n    a, b) -> c\n}", "E013", 2, 9),
    ("diagram d {\n    a -> b ]\n}", "E013", 2, 12),
    ("diagram d {\n    ]\n}", "E013", 2, 5),
    ("}", "E013", 1, 1),
    ("diagram d {\n    input x : 0e + 1q\n}", "E020", 2, 21),
    ("diagram d {\n    input x : 0e,1o\n}", "E020", 2, 17),
    ("diagram d {\n    input x : abc\n}", "E020", 2, 15),
]


@pytest.mark.parametrize(("text", "code", "line", "column"), NEGATIVE, ids=[f"{c}-{i}" for i, (_, c, _, _)
                                                                             in enumerate(NEGATIVE)])
def test_first_error(text: str, code: str, line: int, column: int) -> None:
    assert first_error(text) == (code, line, column)


@pytest.mark.parametrize("keyword", sorted(KEYWORDS))
def test_keywords_are_reserved_wherever_a_name_is_declared_or_used(keyword: str) -> None:
    text = (f"diagram {keyword} {{\n    group {keyword}\n    input {keyword} : 0e\n"
            f"    x, ({keyword}, y) -> {keyword}\n}}")
    target = 17 + len(keyword)
    assert errors(text) == [("E010", 1, 9), ("E010", 2, 11), ("E010", 3, 11), ("E010", 4, 9), ("E010", 4, target)]


def test_nesting_beyond_the_limit_is_a_diagnostic() -> None:
    deep = "(" * (MAX_DEPTH + 1) + "a, b" + ")" * (MAX_DEPTH + 1)
    assert errors(block(f"    {deep} -> c")) == [("E011", 2, 5 + MAX_DEPTH)]
    irreps = "(" * (MAX_DEPTH + 1) + "0e" + ")" * (MAX_DEPTH + 1)
    assert errors(block(f"    input x : {irreps}")) == [("E011", 2, 15)]


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_very_deep_nesting_never_crashes(depth: int) -> None:
    assert errors(block("    " + "(" * depth + "a, b" + ")" * depth + " -> c")) == [("E011", 2, 5 + MAX_DEPTH)]
    assert first_error(block("    " + "(" * depth + "a -> b"))[0] == "E004"
    assert first_error("diagram d {\n" + "(" * depth) == ("E003", 2, depth + 1)
    assert first_error("(" * depth) == ("E009", 1, 1)
    assert first_error(block("    x -> y " + "[" * depth))[0] == "E007"


# --- the catalogue ------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_every_catalogue_example_is_explained_by_its_rule(entry: parse_module.CatalogueEntry) -> None:
    assert entry.examples, f"rule {entry.name} has no example"
    for example in entry.examples:
        explained = explain_first_error(example)
        assert explained is not None, f"{example!r} parses"
        rule, diagnostic = explained
        assert rule == entry.name, f"{example!r} is explained by {rule}: {diagnostic.message}"
        assert diagnostic.code in CODES and diagnostic.message and diagnostic.label


def test_explain_first_error_on_valid_text() -> None:
    assert explain_first_error("diagram d { x -> y }") is None


def test_messages_say_how_to_fix() -> None:
    with pytest.raises(FusionError) as caught:
        parse(block("    input x 8x0e"), "m.fusion")
    text = str(caught.value)
    assert "error[E008]: missing `:` before irreps" in text
    assert " --> m.fusion:2:13" in text
    assert "= help: write `input x : 8x0e`" in text
    assert caught.value.__context__ is None and caught.value.__cause__ is None  # no lark exception


# --- several errors in one run ------------------------------------------------------------------

def test_independent_errors_are_all_reported() -> None:
    text = ("diagram a {\n    x => y\n    ok -> fine\n    z -> w [k v]\n}\n"
            "junk -> here\n"
            "diagram b {\n    input p 0e\n    (p, p -> q\n")
    assert errors(text) == [("E005", 2, 7), ("E007", 4, 15), ("E009", 6, 1), ("E008", 8, 13),
                            ("E004", 9, 11), ("E003", 10, 1)]


def test_error_count_is_capped_and_each_is_reported_once() -> None:
    found = errors(block("\n".join(f"    a{i} => b" for i in range(200))))
    assert len(found) == MAX_ERRORS == len(set(found))
    assert found[:2] == [("E005", 2, 8), ("E005", 3, 8)]


def test_a_broken_header_does_not_cascade_into_its_block() -> None:
    assert errors("diagram {\n    x -> y\n    a, b -> c\n}\ndiagram ok {\n    x => y\n}") == [
        ("E006", 1, 9), ("E005", 6, 7)]


# --- robustness ---------------------------------------------------------------------------------

def test_long_inputs_are_linear() -> None:
    example = (ROOT / "examples" / "tree4.fusion").read_text()
    text = "".join(example.replace("tree4", f"t{i}") for i in range(600))  # ~260 kB
    parse(example)  # builds lark's parser first: that is not what is timed
    start = time.perf_counter()
    assert len(parse(text).diagrams) == 600
    assert first_error(text + "@") == ("E001", text.count("\n") + 1, 1)
    assert time.perf_counter() - start < 30  # about 2 s here; quadratic would take many minutes


def test_spans_of_diagnostics_lie_in_the_text() -> None:
    for text in ("", "diagram d {", "diagram d {\n", "@", "diagram d { x -> }", "\n\n}"):
        try:
            parse(text)
        except FusionError as error:
            for d in error.diagnostics:
                assert d.span is not None and 0 <= d.span.start <= d.span.end <= len(text)


def test_parse_is_thread_safe_including_the_first_build(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [p.read_text() for p in EXAMPLES] + [t for t, _, _, _ in NEGATIVE]
    expected = [_outcome(t) for t in texts]
    monkeypatch.setattr(parse_module, "_CACHE", {})
    barrier = threading.Barrier(8)

    def run(offset: int) -> list[object]:
        barrier.wait()
        return [_outcome(texts[(offset + i) % len(texts)]) for i in range(len(texts))]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    for offset, result in enumerate(results):
        assert result == [expected[(offset + i) % len(texts)] for i in range(len(texts))]


def _outcome(text: str) -> object:
    try:
        return parse(text)
    except FusionError as error:
        return [(d.code, d.span, d.message) for d in error.diagnostics]


def test_span_type_is_used_for_every_node() -> None:
    file = parse((ROOT / "examples" / "tree4.fusion").read_text())
    spans = [file.diagrams[0].span] + [item.span for item in file.diagrams[0].items]
    assert all(isinstance(s, Span) and s.end > s.start for s in spans)


# --- the parser's tables in the disk cache ------------------------------------------------------

def _lark_outcome(parser: object, text: str) -> object:
    """The tree, or where and why lark stopped: what the diagnostics are made from."""
    from lark.exceptions import UnexpectedInput

    try:
        tree = parser.parse(text)  # type: ignore[attr-defined]
    except UnexpectedInput as failure:
        return (type(failure).__name__, failure.line, failure.column,
                sorted(getattr(failure, "expected", None) or getattr(failure, "allowed", None) or ()))
    spans = [(t.data, t.meta.start_pos, t.meta.end_pos) for t in tree.iter_subtrees() if not t.meta.empty]
    return tree, spans  # the spans too: every diagnostic's caret comes from them


def test_the_parser_tables_come_back_from_the_cache_unchanged(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from fusionlang import cache
    from fusionlang._resources import read_resource

    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(cache.NO_CACHE_ENV, raising=False)
    grammar = read_resource("grammars", "fusion.lark")
    built = parse_module._cached_parser(grammar)  # an empty cache: built, then stored

    def no_building(grammar: str) -> None:
        raise AssertionError("built again although the tables are cached")

    with monkeypatch.context() as patched:
        patched.setattr(parse_module, "_build_parser", no_building)
        loaded = parse_module._cached_parser(grammar)
    examples = [p.read_text() for p in sorted((ROOT / "examples").glob("*.fusion"))]
    texts = examples + [text[:cut] + junk for text in examples for cut in range(0, len(text), 97)
                        for junk in ("", "@", " -> ", "\n}", "[x = ")]
    outcomes = [_lark_outcome(built, text) for text in texts]
    assert outcomes == [_lark_outcome(loaded, text) for text in texts]
    assert 0 < sum(isinstance(o[0], str) for o in outcomes) < len(outcomes)  # both kinds compared

    entries = list(tmp_path.rglob("*.flc"))
    assert len(entries) == 1
    entries[0].write_bytes(entries[0].read_bytes()[:-100])  # damaged: rebuilt, not a crash
    assert _lark_outcome(parse_module._cached_parser(grammar), examples[0]) == outcomes[0]
