"""Highlighting: the Pygments lexer (registered as `fusion`) and the TextMate grammar in editors/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, Whitespace

from fusionlang.lexer import FusionLexer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))
DOCS = sorted((ROOT / "docs").glob("*.md"))
GRAMMAR = ROOT / "editors" / "textmate" / "fusion.tmLanguage.json"
SAMPLE = """\
# a comment
diagram d {
    group SU2;  basis real
    input  a, b : 3x1/2 + 16x(0e + 1o) [on = nodes]
    edge   ab : lmax 2
    index  species : 3
    sender(a), b -> ab  [channels = uuu, per = species]  # trailing
}
"""


def tokens(text: str) -> list[tuple[Any, str]]:
    return [(kind, value) for kind, value in FusionLexer().get_tokens(text) if kind is not Whitespace]


def test_the_lexer_is_registered_with_pygments() -> None:
    assert isinstance(get_lexer_by_name("fusion"), FusionLexer)
    assert isinstance(get_lexer_for_filename("model.fusion"), FusionLexer)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_lexes_without_errors(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = list(FusionLexer().get_tokens(text))
    assert [value for kind, value in found if kind in Error] == []
    assert "".join(value for _, value in found) == (text if text.endswith("\n") else text + "\n")


def test_fusion_blocks_in_the_docs_lex_without_errors() -> None:
    blocks = [body for page in DOCS for body in re.findall(r"```fusion\n(.*?)```", page.read_text("utf-8"), re.S)]
    assert blocks
    for body in blocks:
        assert not [value for kind, value in FusionLexer().get_tokens(body) if kind in Error], body


def test_token_classes() -> None:
    found = tokens(SAMPLE)
    expected = [
        (Comment.Single, "# a comment"), (Keyword, "diagram"), (Name.Class, "d"), (Punctuation, "{"),
        (Keyword, "group"), (Name.Builtin, "SU2"), (Punctuation, ";"), (Keyword, "basis"), (Name.Builtin, "real"),
        (Keyword.Declaration, "input"), (Name, "a"), (Punctuation, ","), (Name, "b"), (Punctuation, ":"),
        (Number.Integer, "3"), (Operator, "x"), (Number, "1/2"), (Operator, "+"), (Number.Integer, "16"),
        (Operator, "x"), (Punctuation, "("), (Number, "0e"), (Operator, "+"), (Number, "1o"), (Punctuation, ")"),
        (Punctuation, "["), (Name.Attribute, "on"), (Operator, "="), (Name.Constant, "nodes"), (Punctuation, "]"),
        (Keyword.Declaration, "edge"), (Name, "ab"), (Punctuation, ":"), (Keyword, "lmax"), (Number.Integer, "2"),
        (Keyword.Declaration, "index"), (Name, "species"), (Punctuation, ":"), (Number.Integer, "3"),
        (Name.Builtin, "sender"), (Punctuation, "("), (Name, "a"), (Punctuation, ")"), (Punctuation, ","),
        (Name, "b"), (Operator, "->"), (Name, "ab"), (Punctuation, "["), (Name.Attribute, "channels"),
        (Operator, "="), (Name.Constant, "uuu"), (Punctuation, ","), (Name.Attribute, "per"), (Operator, "="),
        (Name.Constant, "species"), (Punctuation, "]"), (Comment.Single, "# trailing"), (Punctuation, "}"),
    ]
    assert found == expected


@pytest.mark.parametrize("text,kind", [("inputs", Name), ("group_x", Name), ("s12", Name), ("1y", Number),
                                       ("sender", Name), ("lmax2", Name), ("SU2", Name)])
def test_keywords_and_numbers_stop_at_word_borders(text: str, kind: Any) -> None:
    assert tokens(text) == [(kind, text)]


def test_an_unclosed_option_list_ends_with_its_line() -> None:
    found = tokens("a -> b [weights = none\nx -> y\n")
    assert (Name, "x") in found and (Name.Constant, "y") not in found


def test_junk_is_an_error_token_not_a_crash() -> None:
    assert (Error, "$") in tokens("input $ : 0e")


# --- the TextMate grammar ----------------------------------------------------------------------


def grammar() -> dict[str, Any]:
    return dict(json.loads(GRAMMAR.read_text(encoding="utf-8")))


def rules(node: Any) -> list[dict[str, Any]]:
    """Every rule object in the grammar (top level, repository, nested patterns)."""
    found = []
    if isinstance(node, dict):
        found += [node] if any(key in node for key in ("match", "begin", "end")) else []
        found += [rule for value in node.values() for rule in rules(value)]
    elif isinstance(node, list):
        found += [rule for value in node for rule in rules(value)]
    return found


def test_the_grammar_is_json_and_its_regexes_compile() -> None:
    data = grammar()
    assert data["scopeName"] == "source.fusion" and data["fileTypes"] == ["fusion"]
    found = rules(data)
    assert len(found) > 20
    for rule in found:
        for key in ("match", "begin", "end"):
            if key in rule:
                re.compile(rule[key])


def test_every_include_resolves() -> None:
    data = grammar()
    includes = re.findall(r'"include": "#([^"]+)"', GRAMMAR.read_text(encoding="utf-8"))
    assert includes and set(includes) <= set(data["repository"])


class Scanner:
    """A small TextMate tokenizer: at each position the rule matching earliest wins (the first on a tie),
    ``begin``/``end`` rules nest; enough to check what scopes the grammar gives a line."""

    def __init__(self, data: dict[str, Any]):
        self.repository = data["repository"]
        self.top = self.flatten(data["patterns"])

    def flatten(self, patterns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for pattern in patterns:
            if "include" in pattern:
                found += self.flatten([self.repository[pattern["include"][1:]]])
            elif "match" in pattern or "begin" in pattern:
                found.append(pattern)
            else:
                found += self.flatten(pattern["patterns"])
        return found

    def line(self, text: str) -> list[tuple[str, str]]:
        """(scope, text) of every scoped piece of one line."""
        out: list[tuple[str, str]] = []
        self.scan(text, 0, self.top, None, out)
        return out

    def scan(self, text: str, pos: int, patterns: list[dict[str, Any]], end: str | None,
             out: list[tuple[str, str]]) -> int:
        while pos < len(text):
            candidates = [(m.start(), i, m, p) for i, p in enumerate(patterns)
                          if (m := re.compile(p.get("match") or p["begin"]).search(text, pos))]
            stop = re.compile(end).search(text, pos) if end else None
            first = min(candidates, key=lambda c: (c[0], c[1]), default=None)
            if stop and (first is None or stop.start() <= first[0]):
                out.append(("end", stop.group()))
                return stop.end()
            if first is None:
                return len(text)
            _, _, match, rule = first
            self.record(rule, match, out)
            pos = match.end()
            if "begin" in rule:
                pos = self.scan(text, pos, self.flatten(rule["patterns"]), rule["end"], out)
        return pos

    @staticmethod
    def record(rule: dict[str, Any], match: re.Match[str], out: list[tuple[str, str]]) -> None:
        captures = rule.get("captures") or rule.get("beginCaptures") or {}
        if "name" in rule and "begin" not in rule:
            out.append((rule["name"], match.group()))
        for group, scope in sorted(captures.items()):
            if match.group(int(group)):
                out.append((scope["name"], match.group(int(group))))


def scopes(text: str) -> dict[str, str]:
    """The scope of each piece of text (the last one wins when a text occurs twice)."""
    return {piece: scope for line in text.splitlines() for scope, piece in Scanner(grammar()).line(line)}


def test_the_grammar_scopes_keywords_comments_irreps_and_options() -> None:
    found = scopes(SAMPLE)
    assert found["# a comment"] == "comment.line.number-sign.fusion"
    assert found["diagram"] == "keyword.other.diagram.fusion" and found["d"] == "entity.name.type.diagram.fusion"
    assert found["SU2"] == "support.constant.group.fusion" and found["real"] == "support.constant.basis.fusion"
    assert found["input"] == "storage.type.declaration.fusion" and found["lmax"] == "keyword.other.fusion"
    assert found["1/2"] == found["0e"] == found["1o"] == "constant.numeric.irrep.fusion"
    assert found["16"] == "constant.numeric.multiplicity.fusion"
    assert found["x"] == "keyword.operator.multiplicity.fusion"
    assert found["channels"] == "variable.parameter.option.fusion"
    assert found["uuu"] == "constant.language.option-value.fusion"
    assert found["sender"] == "support.function.graph.fusion" and found["->"] == "keyword.operator.arrow.fusion"
    assert found["ab"] == "variable.other.leg.fusion" and found["# trailing"] == "comment.line.number-sign.fusion"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_grammar_scopes_every_character_of_the_examples(path: Path) -> None:
    scanner = Scanner(grammar())
    for line in path.read_text(encoding="utf-8").splitlines():
        covered = "".join(piece for scope, piece in scanner.line(line) if scope != "meta.options.fusion")
        assert re.sub(r"\s", "", covered) == re.sub(r"\s", "", line), line
