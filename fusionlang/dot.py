"""DOT text, typography and graphviz: what every drawing of :mod:`fusionlang.render` is made of.

A tiny DOT model (nodes, edges, same-rank groups, clusters, attributes in a fixed order, so the
text is deterministic), HTML-like labels with the irreps typeset (SU(2) spins as fractions), and
``dot`` run to SVG or PNG (E902 without graphviz).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from .diagnostics import Diagnostic, FusionError

Format = Literal["svg", "png", "pdf", "dot"]
FORMATS: tuple[Format, ...] = ("svg", "png", "pdf", "dot")

# ---------------------------------------------------------------------------------------------
# A tiny DOT model: nodes, edges and same-rank groups with attributes kept in a fixed order.

FONT = "DejaVu Serif"
INK = "black"
MUTED = "grey40"
SHARED = "#c0392b"
PNG_DPI = 144


@dataclass(frozen=True, slots=True)
class Html:
    """An HTML-like graphviz label (written between ``<`` and ``>`` instead of quotes)."""

    text: str


Value = str | Html | float | int
Attrs = tuple[tuple[str, Value], ...]


@dataclass(frozen=True, slots=True)
class DotNode:
    """A node and its attributes, in the order they are written."""

    name: str
    attrs: Attrs = ()


@dataclass(frozen=True, slots=True)
class DotEdge:
    """An edge and its attributes, in the order they are written."""

    tail: str
    head: str
    attrs: Attrs = ()


@dataclass(frozen=True, slots=True)
class Rank:
    """Nodes kept on one rank (``same``, ``min``, ``max``); ``ordered`` keeps their order too.

    A ``cluster`` name also keeps them next to each other (an invisible cluster: dot never puts
    another node between members of one cluster)."""

    kind: str
    names: tuple[str, ...]
    ordered: bool = False
    cluster: str = ""


@dataclass(frozen=True, slots=True)
class Cluster:
    """A framed group of nodes with a label (HTML-like text)."""

    name: str
    label: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DotGraph:
    """A directed graph ready to be written as DOT text."""

    name: str
    attrs: Attrs
    nodes: tuple[DotNode, ...]
    edges: tuple[DotEdge, ...]
    ranks: tuple[Rank, ...] = ()
    node_defaults: Attrs = ()
    edge_defaults: Attrs = ()
    clusters: tuple[Cluster, ...] = ()


def dot_text(graph: DotGraph) -> str:
    """DOT source for a :class:`DotGraph` (the same graph always gives the same text).

    >>> print(dot_text(DotGraph("g", (("rankdir", "LR"),), (DotNode("a"),), (DotEdge("a", "b"),))))
    digraph "g" {
      rankdir="LR";
      "a";
      "a" -> "b";
    }
    <BLANKLINE>
    """
    lines = [f"digraph {_quote(graph.name)} {{"]
    lines += [f"  {key}={_value(value)};" for key, value in graph.attrs]
    if graph.node_defaults:
        lines.append(f"  node {_attr_list(graph.node_defaults)};")
    if graph.edge_defaults:
        lines.append(f"  edge {_attr_list(graph.edge_defaults)};")
    lines += [f"  {_quote(n.name)}{_attr_suffix(n.attrs)};" for n in graph.nodes]
    lines += [f"  {_quote(e.tail)} -> {_quote(e.head)}{_attr_suffix(e.attrs)};" for e in graph.edges]
    lines += [_rank_text(rank) for rank in graph.ranks if rank.names]
    lines += [_cluster_text(cluster) for cluster in graph.clusters if cluster.names]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _rank_text(rank: Rank) -> str:
    """A same-rank subgraph; invisible edges between neighbours fix the order (top to bottom)."""
    names = " ".join(_quote(n) + ";" for n in rank.names)
    pairs = pairwise(rank.names) if rank.ordered else ()
    chain = "".join(f' {_quote(a)} -> {_quote(b)} [style="invis"];' for a, b in pairs)
    text = f"{{ rank={rank.kind}; {names}{chain} }}"
    if rank.cluster:
        text = f'subgraph {_quote("cluster_" + rank.cluster)} {{ label=""; peripheries=0; margin=2; {text} }}'
    return "  " + text


def _cluster_text(cluster: Cluster) -> str:
    """A framed, labelled subgraph (graphviz draws clusters whose name starts with ``cluster``)."""
    names = " ".join(_quote(n) + ";" for n in cluster.names)
    label = _value(Html(cluster.label)) if cluster.label else '""'
    return (f"  subgraph {_quote('cluster_' + cluster.name)} {{ label={label}; style=\"rounded\"; "
            f'color="grey75"; labeljust="l"; {names} }}')


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _value(value: Value) -> str:
    if isinstance(value, Html):
        return f"<{value.text}>"
    if isinstance(value, float):
        return _quote(f"{value:g}")
    return _quote(str(value))


def _attr_list(attrs: Attrs) -> str:
    return "[" + ", ".join(f"{key}={_value(value)}" for key, value in attrs) + "]"


def _attr_suffix(attrs: Attrs) -> str:
    return " " + _attr_list(attrs) if attrs else ""


def escape(text: str) -> str:
    """Text made safe inside an HTML-like label."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# ---------------------------------------------------------------------------------------------
# Labels: irreps as a physicist writes them.

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_GROUP_NAMES = {"SU2": "SU(2)", "SO3": "SO(3)", "O3": "O(3)"}


def spin_fraction(numerator: int, denominator: int = 2) -> str:
    """A spin as a typeset fraction: ``spin_fraction(1) == "½"``, ``spin_fraction(3) == "³⁄₂"``."""
    if (numerator, denominator) == (1, 2):
        return "½"
    return f"{str(numerator).translate(_SUPERSCRIPT)}⁄{str(denominator).translate(_SUBSCRIPT)}"


def pretty_irreps(text: str) -> str:
    """Irreps text for a label: fractions typeset, ``x`` as ``×``.

    >>> pretty_irreps("1/2 + 3x3/2"), pretty_irreps("32x(0e + 1o)")
    ('½ + 3×³⁄₂', '32×(0e + 1o)')
    """
    text = re.sub(r"(\d+)/(\d+)", lambda m: spin_fraction(int(m[1]), int(m[2])), text)
    return re.sub(r"(\d+)x", r"\1×", text)


def _wrap_terms(text: str, width: int = 28) -> list[str]:
    """Split a long sum of irreps after a ``+`` into lines of about equal length (≤ ``width``).

    >>> _wrap_terms("8x0e + 8x1o + 8x1e + 8x2o + 8x2e", 20)
    ['8x0e + 8x1o + 8x1e +', '8x2o + 8x2e']
    """
    if len(text) <= width:
        return [text]
    terms = _top_level_terms(text)
    target = len(text) / -(-len(text) // width)
    lines: list[str] = []
    for term in terms:
        if lines and len(lines[-1]) + len(term) + 3 <= max(target, len(term)) + 2:
            lines[-1] += " + " + term
        else:
            lines.append(term)
    return [line + (" +" if i < len(lines) - 1 else "") for i, line in enumerate(lines)]


def _top_level_terms(text: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "+" and depth == 0:
            terms.append(text[start:i].strip())
            start = i + 1
    terms.append(text[start:].strip())
    return [t for t in terms if t]


def font(text: str, size: int | None = None, color: str | None = None, italic: bool = False,
         bold: bool = False) -> str:
    """``text`` (already escaped) in the house font, as HTML-like label markup.

    graphviz falls back to its own default face inside a ``<FONT>`` without ``FACE``, so every
    run of text names the face; an empty ``<FONT>`` is a syntax error to graphviz, so no text
    gives no markup."""
    if not text:
        return ""
    attrs = f'FACE="{FONT}"' + (f' POINT-SIZE="{size}"' if size else "") + (f' COLOR="{color}"' if color else "")
    if italic:
        text = f"<I>{text}</I>"
    if bold:
        text = f"<B>{text}</B>"
    return f"<FONT {attrs}>{text}</FONT>"


def _irreps_html(text: str, inferred: bool, size: int = 11) -> str:
    lines = "<BR/>".join(escape(line) for line in _wrap_terms(pretty_irreps(text)))
    if not inferred:
        return font(lines, size)
    return font(lines, size, MUTED, italic=True) + "<BR/>" + font("(inferred)", size - 3, MUTED)


def leg_html(name: str | None, text: str, inferred: bool) -> Html:
    irreps = _irreps_html(text, inferred)
    if name is None:
        return Html(irreps)
    return Html(font(escape(name), 13, MUTED if inferred else INK, italic=True) + "<BR/>" + irreps)


def group_title(group: object) -> str:
    return _GROUP_NAMES.get(str(group), str(group))


# ---------------------------------------------------------------------------------------------
# Building a graph.

GRAPH_ATTRS: Attrs = (
    # newrank: rank constraints and clusters together can make dot 2.43's old ranker fail
    # ("trouble in init_rank"); the newer one handles them.
    ("rankdir", "LR"), ("newrank", "true"), ("splines", "spline"), ("nodesep", 0.3), ("ranksep", 0.5),
    ("fontname", FONT), ("fontsize", 12), ("labelloc", "t"), ("labeljust", "c"),
    ("bgcolor", "white"), ("pad", 0.15), ("outputorder", "edgesfirst"),
)
NODE_DEFAULTS: Attrs = (("fontname", FONT), ("fontsize", 10), ("color", INK))
EDGE_DEFAULTS: Attrs = (("fontname", FONT), ("fontsize", 11), ("color", INK), ("arrowsize", 0.6),
                        ("penwidth", 1.2))


@dataclass
class GraphBuilder:
    """Collects nodes, edges and rank groups while a diagram is walked (used once, then dropped)."""

    nodes: list[DotNode] = field(default_factory=list)
    edges: list[DotEdge] = field(default_factory=list)
    ranks: list[Rank] = field(default_factory=list)

    def node(self, name: str, **attrs: Value) -> None:
        self.nodes.append(DotNode(name, tuple(attrs.items())))

    def edge(self, tail: str, head: str, **attrs: Value) -> None:
        self.edges.append(DotEdge(tail, head, tuple(attrs.items())))

    def rank(self, kind: str, names: Sequence[str], ordered: bool = False, cluster: str = "") -> None:
        self.ranks.append(Rank(kind, tuple(names), ordered, cluster))

    def graph(self, name: str, label: Html, attrs: Attrs = GRAPH_ATTRS) -> DotGraph:
        return DotGraph(name, attrs + (("label", label),), tuple(self.nodes), tuple(self.edges),
                        tuple(self.ranks), NODE_DEFAULTS, EDGE_DEFAULTS)


# ---------------------------------------------------------------------------------------------
# Running graphviz.


def _missing_dot(reason: str) -> FusionError:
    return FusionError([Diagnostic(
        "E902", f"graphviz `dot` is not installed or failed: {reason}",
        hint="install graphviz (`apt-get install graphviz`, `brew install graphviz` or "
             "`conda install -c conda-forge graphviz`), or ask for `format=\"dot\"` / `--format dot`",
    )])


def run_dot(text: str, format: Literal["svg", "png", "pdf"], dpi: int | None = None) -> bytes:
    """Lay out DOT text with the ``dot`` program; raises E902 when it is missing or fails."""
    program = shutil.which("dot")
    if program is None:
        raise _missing_dot("`dot` is not on PATH")
    try:
        extra = [f"-Gdpi={dpi}"] if dpi else []
        done = subprocess.run([program, f"-T{format}", *extra], input=text.encode("utf-8"), capture_output=True,
                              timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as failure:
        raise _missing_dot(str(failure)) from None
    if done.returncode != 0:
        raise _missing_dot(done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}")
    return done.stdout


def graphviz_version() -> str | None:
    """The installed graphviz's version (``"2.43.0"``), or None without ``dot``.

    SVG layout depends on it: golden files are only comparable under the same version."""
    program = shutil.which("dot")
    if program is None:
        return None
    try:
        done = subprocess.run([program, "-V"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"version (\S+)", done.stderr.decode("utf-8", "replace") + done.stdout.decode())
    return found[1] if found else None


# Comments graphviz writes into SVG that name its version or repeat the graph title.
_SVG_NOISE = re.compile(r"^<!-- (?:Generated by|Title:)[^>]*-->\n", re.MULTILINE)


def clean_svg(svg: str) -> str:
    """SVG without the generator comment lines, so the bytes do not depend on graphviz's version."""
    return _SVG_NOISE.sub("", svg)


def as_format(text: str) -> Format:
    """A format name checked against :data:`FORMATS`."""
    for known in FORMATS:
        if text == known:
            return known
    raise ValueError(f"unknown format {text!r}; choose one of {', '.join(FORMATS)}")


def from_dot(text: str, format: Format) -> str | bytes:
    """DOT text laid out as SVG text, PNG or PDF bytes (or returned as it is for ``dot``)."""
    if format == "dot":
        return text
    if format == "svg":
        return clean_svg(run_dot(text, "svg").decode("utf-8"))
    if format == "png":
        return run_dot(text, "png", dpi=PNG_DPI)
    if format == "pdf":
        return run_dot(text, "pdf")
    raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")


