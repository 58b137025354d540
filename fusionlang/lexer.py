"""A Pygments lexer for ``.fusion`` files (registered as the ``fusion`` lexer, docs/editors.md).

It follows ``grammars/fusion.lark``: keywords, the diagram's name, group and basis names, leg
names, irreps (``16x0e``, ``1/2``, ``3x(0e + 1o)``), integers, graph functions, option lists in
brackets, comments and punctuation. The language has no string literals. The token classes are
those of the TextMate grammar in ``editors/textmate/fusion.tmLanguage.json``.

>>> from pygments.token import Name, Number
>>> tokens = list(FusionLexer().get_tokens("input x : 16x0e"))
>>> (Name, "x") in tokens, (Number, "0e") in tokens
(True, True)
"""

from __future__ import annotations

from typing import Any, ClassVar

from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, Whitespace

__all__ = ["FusionLexer"]

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
GROUPS = r"(?:SU2|SO3|O3)"
BASES = r"(?:real|complex)"
GRAPH_FUNCTIONS = r"(?:sender|receiver|neighbours)"
# an irrep with its spin and, for O(3), its parity; `1/2` is a spin of SU(2)
IRREP = r"[0-9]+(?:/[0-9]+)?[eoy]?(?![A-Za-z0-9_])"


class FusionLexer(RegexLexer):
    """Pygments lexer for the ``.fusion`` language of fusion diagrams."""

    name = "fusion"
    aliases: ClassVar[list[str]] = ["fusion"]
    filenames: ClassVar[list[str]] = ["*.fusion"]
    mimetypes: ClassVar[list[str]] = ["text/x-fusion"]

    tokens: ClassVar[dict[str, list[Any]]] = {
        "root": [
            (r"\s+", Whitespace),
            (r"#.*", Comment.Single),
            (rf"(diagram)([ \t]+)({NAME})", bygroups(Keyword, Whitespace, Name.Class)),
            (rf"(group)([ \t]+)({GROUPS})\b", bygroups(Keyword, Whitespace, Name.Builtin)),
            (rf"(basis)([ \t]+)({BASES})\b", bygroups(Keyword, Whitespace, Name.Builtin)),
            (r"(?:diagram|group|basis|lmax)\b", Keyword),
            (r"(?:input|output|edge|index)\b", Keyword.Declaration),
            (rf"{GRAPH_FUNCTIONS}(?=[ \t]*\()", Name.Builtin),
            (r"->", Operator),
            (r"\[", Punctuation, "options"),
            (r"([0-9]+)(x)(?=[ \t]*[0-9(])", bygroups(Number.Integer, Operator)),
            (r"[0-9]+(?![A-Za-z0-9_/])", Number.Integer),
            (IRREP, Number),
            (NAME, Name),
            (r"\+", Operator),
            (r"[{}(),;:]", Punctuation),
        ],
        "options": [
            (r"[ \t]+", Whitespace),
            (rf"({NAME})([ \t]*)(=)", bygroups(Name.Attribute, Whitespace, Operator)),
            (NAME, Name.Constant),
            (r"[0-9]+", Number.Integer),
            (r",", Punctuation),
            (r"[{}]", Punctuation),       # a path list: only = {0 0 -> 0, ...}
            (r"->", Operator),
            (r"\]", Punctuation, "#pop"),
            # an unclosed list ends with its line (the parser reports E004)
            (r"\n", Whitespace, "#pop"),
            (r"#.*", Comment.Single, "#pop"),
            (r";", Punctuation, "#pop"),
        ],
    }
