"""The formatter: canonical layout, idempotence, comments kept, parse(format(x)) == x."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from test_fuzz_parse import comments_of, syntax_files

from fusionlang.diagnostics import FusionError
from fusionlang.fmt import format_file, format_source
from fusionlang.groups import Irreps
from fusionlang.parse import parse
from fusionlang.syntax import Diagram, File, GroupDecl, IrrepsText, Leaf, LegDecl, Lmax, Name, Option, Paren, Statement

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_format_idempotently_to_the_same_tree(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    once = format_source(text)
    assert format_source(once) == once
    assert parse(once) == parse(text)
    assert comments_of(parse(once)) == comments_of(parse(text))
    assert _comment_texts(once) == _comment_texts(text)


def _comment_texts(text: str) -> list[str]:
    return [m.rstrip() for m in re.findall(r"#[^\n]*", text)]


def test_canonical_layout() -> None:
    messy = """\
#  header   kept as written
diagram   d{# on the header
  group O3;input x,y:32x0e+32x1o   [k=1]
\toutput   z:1y


  edge e:lmax   2
  x,y->e[channels=uuu,weights=none]
  # about the tree
  ((x,y),e)->z  [weights=channel]   # trailing
  e->z


  x -> z [weights = path]
  # closing
}
# between
diagram empty {
}
# at the end
"""
    assert format_source(messy) == """\
#  header   kept as written
diagram d {  # on the header
    group O3
    input  x, y : 32x0e + 32x1o  [k = 1]
    output z : 1o

    edge   e : lmax 2
    x, y -> e         [channels = uuu, weights = none]
    # about the tree
    ((x, y), e) -> z  [weights = channel]  # trailing
    e -> z

    x -> z  [weights = path]
    # closing
}

# between
diagram empty {
}

# at the end
"""


def test_alignment_is_per_run_of_statements() -> None:
    text = format_source("diagram d {\n a -> b [w = none]\n long, names -> here [w = path]\n"
                         " edge e\n a -> e [w = path]\n}")
    assert text.splitlines()[1:5] == [
        "    a -> b               [w = none]",
        "    long, names -> here  [w = path]",
        "    edge   e",
        "    a -> e  [w = path]",
    ]


def test_irreps_are_canonicalised_for_a_known_group_only() -> None:
    def typed(group: str, irreps: str) -> str:
        out = format_source(f"diagram d {{\n group {group}\n input x : {irreps}\n}}")
        return out.splitlines()[2].split(" : ", 1)[1]

    assert typed("O3", "32x0e+32x1o") == "32x0e + 32x1o"
    assert typed("O3", "1y+2y") == "1o + 2e"
    assert typed("SU2", "1/2+3x3/2") == "1/2 + 3x3/2"
    assert typed("SO3", "8x( 1 + 2 )") == "8x(1 + 2)"
    assert typed("O3", "1/2+1o") == "1/2+1o"  # not O(3) irreps: kept for the checks to report
    assert typed("G2", "0e+1o") == "0e+1o"  # unknown group: kept
    no_group = format_source("diagram d {\n input x : 0e+1o\n}")
    assert "input  x : 0e+1o" in no_group
    tree = parse("diagram d {\n group O3\n input x : 0e+1o\n}")
    assert "input  x : 0e+1o" in format_file(tree, canonical_irreps=False)


def test_hand_built_trees_without_a_source() -> None:
    tree = File((Diagram(Name("d"), (
        GroupDecl(Name("O3"), comments=(" the group",)),
        LegDecl("input", (Name("a"), Name("b")), IrrepsText("0e")),
        LegDecl("edge", (Name("ab"),), Lmax(1), (Option(Name("k"), Name("v")),)),
        Statement((Paren((Leaf(Name("a")), Leaf(Name("b")))),), Name("ab"), trailing=" why"),
    )),), closing_comments=(" end",))
    text = format_file(tree)
    assert text == ("diagram d {\n    # the group\n    group O3\n    input  a, b : 0e\n"
                    "    edge   ab : lmax 1  [k = v]\n    (a, b) -> ab  # why\n}\n\n# end\n")
    assert parse(text) == tree and comments_of(parse(text)) == comments_of(tree)


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n", "diagram d {}", "diagram d { }  # c"])
def test_small_files(text: str) -> None:
    once = format_source(text)
    assert format_source(once) == once and parse(once) == parse(text)


def test_format_source_reports_syntax_errors() -> None:
    with pytest.raises(FusionError) as caught:
        format_source("diagram d {\n    a => b\n}", "bad.fusion")
    assert caught.value.diagnostics[0].code == "E005"


@settings(FAST, max_examples=200)
@given(syntax_files)
def test_random_trees_round_trip(tree: File) -> None:
    text = format_file(tree, canonical_irreps=False)
    parsed = parse(text)
    assert parsed == tree
    assert comments_of(parsed) == comments_of(tree)
    assert format_file(parsed, canonical_irreps=False) == text


@settings(FAST, max_examples=150)
@given(syntax_files)
def test_random_trees_format_idempotently_with_canonical_irreps(tree: File) -> None:
    text = format_file(tree)
    parsed = parse(text)
    assert format_file(parsed) == text
    assert parsed == _canonical(tree)


def _canonical(tree: File) -> File:
    """What the formatter should make of ``tree``: irreps respelled where the group allows."""
    return replace(tree, diagrams=tuple(_canonical_diagram(d) for d in tree.diagrams))


def _canonical_diagram(diagram: Diagram) -> Diagram:
    group = next((i.group.text for i in diagram.items if isinstance(i, GroupDecl)), None)
    items = tuple(replace(i, type=IrrepsText(_respelled(i.type.text, group)))
                  if isinstance(i, LegDecl) and isinstance(i.type, IrrepsText) else i for i in diagram.items)
    return replace(diagram, items=items)


def _respelled(text: str, group: str | None) -> str:
    if group not in ("O3", "SO3", "SU2"):
        return text
    try:
        return str(Irreps(text, group))
    except FusionError:
        return text


def test_generated_diagrams_format_and_round_trip() -> None:
    testing = pytest.importorskip("fusionlang.testing")
    for seed in range(60):
        text = testing.random_diagram(seed)
        once = format_source(text)
        assert format_source(once) == once
        assert parse(once) == parse(text)
