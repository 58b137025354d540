"""Drawings of fusion diagrams and of their contraction plans: DOT text, SVG and PNG through `dot`.

**Diagrams** look like the fusion diagrams of papers on SU(2)-symmetric tensor networks: fusion
runs left to right (``rankdir=LR``, arrows in the direction of fusion); external legs are labelled
lines with free ends; a coupling vertex is a filled dot; learnable weights are an open box ``w``
hanging off their vertex (with the weight mode, and the channel mode when it is not ``uvw``); a
linear map is a box ``W``; statements adding into one leg meet in a ⊕ node; a leg read several
times forks after its label. Every edge carries its irreps, SU(2) spins as fractions (½, ³⁄₂);
inferred irreps are grey, italic and say "(inferred)". Tooltips keep the exact ASCII text.

**Plans** (:func:`plan_to_dot`) draw the planner's steps as a DAG: features, coupling tables ``C``
and weights ``w`` are leaves; every contraction, sum or concatenation is a box with its equation
and per-sample FLOPs; statements are framed; intermediates computed once and shared are red.

The DOT text is built here, in the order of the IR (no set or dict order leaks in), so it is
deterministic; ``dot`` lays it out. Without ``dot`` only ``format="dot"`` works; SVG and PNG
raise a :class:`~fusionlang.diagnostics.FusionError` with diagnostic E902.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal, overload

import networkx as nx

from . import ir
from .diagnostics import Diagnostic, FusionError
from .graph import to_networkx, vertex_id

if TYPE_CHECKING:
    from .plan import PlanReport, Program, Step, Table

Format = Literal["svg", "png", "dot"]
FORMATS: tuple[Format, ...] = ("svg", "png", "dot")

__all__ = [
    "FORMATS", "Cluster", "DotEdge", "DotGraph", "DotNode", "Format", "Html", "Rank", "as_format", "clean_svg",
    "diagram_graph", "dot_text", "graphviz_version", "plan_graph", "plan_to_dot", "pretty_irreps", "render",
    "render_plan", "render_svg", "run_dot", "spin_fraction", "to_dot",
]

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


def _leg_html(name: str | None, text: str, inferred: bool) -> Html:
    irreps = _irreps_html(text, inferred)
    if name is None:
        return Html(irreps)
    return Html(font(escape(name), 13, MUTED if inferred else INK, italic=True) + "<BR/>" + irreps)


def group_title(group: object) -> str:
    return _GROUP_NAMES.get(str(group), str(group))


# ---------------------------------------------------------------------------------------------
# A diagram as a DotGraph.

_GRAPH_ATTRS: Attrs = (
    # newrank: rank constraints and clusters together can make dot 2.43's old ranker fail
    # ("trouble in init_rank"); the newer one handles them.
    ("rankdir", "LR"), ("newrank", "true"), ("splines", "spline"), ("nodesep", 0.3), ("ranksep", 0.5),
    ("fontname", FONT), ("fontsize", 12), ("labelloc", "t"), ("labeljust", "c"),
    ("bgcolor", "white"), ("pad", 0.15), ("outputorder", "edgesfirst"),
)
_NODE_DEFAULTS: Attrs = (("fontname", FONT), ("fontsize", 10), ("color", INK))
_EDGE_DEFAULTS: Attrs = (("fontname", FONT), ("fontsize", 11), ("color", INK), ("arrowsize", 0.6),
                         ("penwidth", 1.2))


@dataclass
class _Builder:
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

    def graph(self, name: str, label: Html, attrs: Attrs = _GRAPH_ATTRS) -> DotGraph:
        return DotGraph(name, attrs + (("label", label),), tuple(self.nodes), tuple(self.edges),
                        tuple(self.ranks), _NODE_DEFAULTS, _EDGE_DEFAULTS)


def diagram_graph(diagram: ir.Diagram) -> DotGraph:
    """The drawing of a checked diagram as a :class:`DotGraph` (see :func:`to_dot`)."""
    view = to_networkx(diagram)
    build = _Builder()
    for side, legs in (("in", diagram.inputs + diagram.indices), ("out", diagram.outputs)):
        for leg in legs:
            _draw_free_end(build, leg, side)
        build.rank("min" if side == "in" else "max", [f"{side}:{leg.name}" for leg in legs], ordered=True)
    for statement in diagram.statements:
        _draw_statement(build, diagram, view, statement)
    for leg in diagram.legs:
        if len(diagram.writers(leg.name)) > 1:
            _draw_sum(build, diagram, leg)
    for leg in diagram.legs:
        _draw_leg(build, diagram, leg)
    title = font(escape(diagram.name), 14, bold=True) + "   " + font(f"group {group_title(diagram.group)}", 11)
    return build.graph(diagram.name, Html(title))


def to_dot(diagram: ir.Diagram) -> str:
    """Deterministic DOT text of a checked diagram.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }").diagram()
    >>> text = to_dot(d)
    >>> text.startswith('digraph "d" {') and "½" in text and text == to_dot(d)
    True
    """
    return dot_text(diagram_graph(diagram))


def _irreps_text(leg: ir.Leg) -> str:
    if leg.role == "index":
        return f"{leg.classes} classes"
    text = str(leg.irreps) if leg.irreps is not None else ""
    return text + (" on edges" if leg.domain == "edges" else "")


def _leg_tooltip(leg: ir.Leg) -> str:
    how = "declared" if leg.declared else "inferred"
    dim = f", dim {leg.irreps.dim}" if leg.irreps is not None else ""
    where = f", on {leg.domain}" if leg.domain != "batch" else ""
    return f"{leg.role} {leg.name} : {_irreps_text(leg)} ({how}{dim}{where})"


def _draw_free_end(build: _Builder, leg: ir.Leg, side: str) -> None:
    build.node(f"{side}:{leg.name}", id=f"{side}-{leg.name}", shape="point", width=0.04,
               tooltip=_leg_tooltip(leg))


def _statement_tooltip(statement: ir.Statement) -> str:
    args = " ⊗ ".join(ref.leg for ref in statement.leaves)
    return (f"line {statement.line}: {args} -> {statement.target}; {statement.kind}, "
            f"channels={statement.channels}, weights={statement.weights}, {len(statement.paths)} paths")


def _draw_statement(build: _Builder, diagram: ir.Diagram, view: nx.MultiDiGraph,
                    statement: ir.Statement) -> None:
    tooltip = _statement_tooltip(statement)
    if statement.is_linear:
        name = vertex_id(statement, statement.tree)
        build.node(name, id=name, shape="box", label=Html(_options_html("W", statement)), height=0.3,
                   width=0.3, margin="0.06,0.03", tooltip=tooltip)
        return
    for vertex in statement.vertices:
        name = vertex_id(statement, vertex)
        build.node(name, id=name, shape="circle", style="filled", fillcolor=INK, label="", width=0.11,
                   fixedsize="true", tooltip=tooltip)
    inner = [edge for edge in view.in_edges(_vertex_names(statement), data=True) if edge[2].get("leg") is None]
    for tail, head, data in sorted(inner, key=_edge_order):
        build.edge(tail, head, id=f"inner-{tail}", label=_leg_html(None, str(data["irreps"]), inferred=True),
                   color=MUTED,
                   tooltip=f"inner edge of line {statement.line}: {data['irreps']} (inferred)")
    _draw_tag(build, statement, tooltip)


def _options_html(symbol: str, statement: ir.Statement) -> str:
    """A weight symbol over the statement's options in small type: ``w`` / ``channel · uuu``."""
    options = statement.weights + ("" if statement.channels == "uvw" and symbol == "w" else
                                   f" · {statement.channels}")
    return font(f"<I>{symbol}</I>", 12) + "<BR/>" + font(options, 7, MUTED)


def _draw_tag(build: _Builder, statement: ir.Statement, tooltip: str) -> None:
    """The statement's options hanging off its root vertex, on the vertex's rank.

    Weights are an open box ``w`` (the learnable tensor attached to the coupling, as in tensor
    network drawings) with the weight mode and a channel mode other than ``uvw`` under it; an
    unweighted statement with a channel mode other than ``uvw`` gets the mode as small text.
    Being nodes, the tags take part in the layout, so no edge or label is drawn over them."""
    if statement.weights == "none" and statement.channels == "uvw":
        return
    root, name = vertex_id(statement, statement.tree), f"opt:s{statement.index}"
    if statement.weights == "none":
        build.node(name, id=f"opt-s{statement.index}", shape="plain", label=Html(font(statement.channels, 8, MUTED)),
                   tooltip=tooltip)
        build.edge(name, root, id=f"tag-s{statement.index}", dir="none", color=MUTED, style="dotted",
                   penwidth=0.8, tooltip=tooltip)
    else:
        build.node(name, id=f"w-s{statement.index}", shape="box", label=Html(_options_html("w", statement)),
                   width=0.3, height=0.3, margin="0.04,0.02", tooltip=f"weights of {tooltip}")
        build.edge(name, root, id=f"tag-s{statement.index}", dir="none", color=MUTED, penwidth=0.8,
                   tooltip=f"weights of {tooltip}")
    build.rank("same", [name, root], cluster=name)


def _vertex_names(statement: ir.Statement) -> list[str]:
    return [vertex_id(statement, v) for v in statement.vertices]


def _edge_order(edge: tuple[str, str, dict[str, Any]]) -> tuple[str, str, int]:
    tail, head, data = edge
    return (head, tail, int(data.get("position", -1)))


def _draw_sum(build: _Builder, diagram: ir.Diagram, leg: ir.Leg) -> None:
    """A ⊕ node where several statements add into one leg."""
    name = f"sum:{leg.name}"
    writers = diagram.writers(leg.name)
    build.node(name, id=f"sum-{leg.name}", shape="circle", label="+", width=0.22, fixedsize="true",
               fontsize=14, tooltip=f"{leg.name} = sum of {len(writers)} statements")
    for writer in writers:
        build.edge(vertex_id(writer, writer.tree), name, id=f"add-s{writer.index}",
                   label=_leg_html(None, _irreps_text(leg), not leg.declared),
                   tooltip=f"line {writer.line} adds into {leg.name} : {_irreps_text(leg)}", **_muted(leg))


def _muted(leg: ir.Leg) -> dict[str, Value]:
    return {} if leg.declared else {"color": MUTED}


def _source(diagram: ir.Diagram, leg: ir.Leg) -> str:
    """The node a leg's value leaves from: its free end, its ⊕ node or its writer's root."""
    if leg.role in ("input", "index"):
        return f"in:{leg.name}"
    writers = diagram.writers(leg.name)
    if len(writers) > 1:
        return f"sum:{leg.name}"
    return vertex_id(writers[0], writers[0].tree)


def _consumers(diagram: ir.Diagram, leg: ir.Leg) -> list[tuple[str, str]]:
    """(node, how) of every reader of a leg: each leaf's vertex in statement order with its graph
    function (``sender``, ``neighbours``, ...), the weighted root of ``per`` statements, and the
    leg's free end."""
    found: list[tuple[str, str]] = [(vertex_id(s, _parent(s.tree, ref)), str(ref.via))
                                    for s in diagram.statements for ref in s.leaves if ref.leg == leg.name]
    found += [(vertex_id(s, s.tree), "per") for s in diagram.statements if s.per == leg.name]
    return found + ([(f"out:{leg.name}", "")] if leg.role == "output" else [])


def _parent(tree: ir.Node, leaf: ir.LeafRef) -> ir.Node:
    """The vertex a leaf hangs from (the leaf itself for a linear map)."""
    if isinstance(tree, ir.LeafRef):
        return tree
    for child in (tree.left, tree.right):
        if child is leaf:
            return tree
        if isinstance(child, ir.Fuse) and leaf in ir.leaves(child):
            return _parent(child, leaf)
    raise ValueError(f"leaf {leaf.leg} is not in the tree")


def _draw_leg(build: _Builder, diagram: ir.Diagram, leg: ir.Leg) -> None:
    """One labelled line per leg; a leg read several times forks after its label."""
    source, consumers = _source(diagram, leg), _consumers(diagram, leg)
    name = leg.name + (" Σ" if any(w.aggregate for w in diagram.writers(leg.name)) else "")
    label, tooltip = _leg_html(name, _irreps_text(leg), not leg.declared), _leg_tooltip(leg)
    style = {"style": "dashed"} if leg.role == "index" else {}
    if len(consumers) == 1 and not consumers[0][1]:
        build.edge(source, consumers[0][0], id=f"leg-{leg.name}", label=label, tooltip=tooltip, **style,
                   **_muted(leg))
        return
    fork = f"fork:{leg.name}"
    build.node(fork, id=f"fork-{leg.name}", shape="point", width=0.05, tooltip=tooltip, **_muted(leg))
    build.edge(source, fork, id=f"leg-{leg.name}", label=label, arrowhead="none", tooltip=tooltip, **style,
               **_muted(leg))
    for k, (consumer, how) in enumerate(consumers):
        marks = {"label": Html(font(escape(how), 9, MUTED, italic=True))} if how else {}
        build.edge(fork, consumer, id=f"leg-{leg.name}-{k}", tooltip=f"{how} {tooltip}".strip(), **marks,
                   **style, **_muted(leg))


# ---------------------------------------------------------------------------------------------
# Running graphviz.


def _missing_dot(reason: str) -> FusionError:
    return FusionError([Diagnostic(
        "E902", f"graphviz `dot` is not installed or failed: {reason}",
        hint="install graphviz (`apt-get install graphviz`, `brew install graphviz` or "
             "`conda install -c conda-forge graphviz`), or ask for `format=\"dot\"` / `--format dot`",
    )])


def run_dot(text: str, format: Literal["svg", "png"], dpi: int | None = None) -> bytes:
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
    """DOT text laid out as SVG text or PNG bytes (or returned as it is for ``dot``)."""
    if format == "dot":
        return text
    if format == "svg":
        return clean_svg(run_dot(text, "svg").decode("utf-8"))
    if format == "png":
        return run_dot(text, "png", dpi=PNG_DPI)
    raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")


@overload
def render(diagram: ir.Diagram, format: Literal["svg", "dot"] = "svg") -> str: ...
@overload
def render(diagram: ir.Diagram, format: Literal["png"]) -> bytes: ...
@overload
def render(diagram: ir.Diagram, format: Format) -> str | bytes: ...


def render(diagram: ir.Diagram, format: Format = "svg") -> str | bytes:
    """The drawing of a checked diagram: SVG or DOT text (``str``), or PNG bytes.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 0e + 1o\\n output y : 1o\\n x, x -> y }").diagram()
    >>> render(d, "dot").startswith("digraph")
    True
    """
    return from_dot(to_dot(diagram), format)


def render_svg(diagram: ir.Diagram) -> str:
    """SVG text of a checked diagram (deterministic bytes for one graphviz version)."""
    return render(diagram, "svg")


# ---------------------------------------------------------------------------------------------
# The plan view: the steps of the planned forward as a DAG.
#
# Leaves are the tensors that meet (features, coupling tables C, weights w); every computing step
# (a pairwise contraction, a sum, a concatenation) is a node labelled with its per-sample FLOPs;
# an edge is the value passed on, named as in the generated code. Views (slices, reshapes) are
# free and are folded into the edges. Values the planner computes once and uses several times
# are drawn in red. Steps are grouped by statement.

FEATURE_FILL = "#eef2f8"
TABLE_FILL = "#fbf3dc"


def _program_of(plan: object) -> Program:
    """The planner's :class:`~fusionlang.plan.Program`; anything else is a ``TypeError``."""
    from .plan import Program

    if isinstance(plan, Program):
        return plan
    raise TypeError("the plan view draws the planner's Program (`fusionlang.plan.plan_diagram(diagram)` or "
                    f"`fusionlang.api.compile(...).program(name)`), not {type(plan).__name__}: "
                    "a PlanReport has no steps to draw")


def plan_graph(plan: Program) -> DotGraph:
    """The contraction plan of one diagram as a :class:`DotGraph` (see :func:`plan_to_dot`)."""
    program = _program_of(plan)
    view = _PlanView(program)
    build = _Builder()
    clusters: dict[int, list[str]] = {}
    for step in program.steps:
        node = view.draw_step(build, step)
        if node and step.statement is not None and step.kind != "output":
            clusters.setdefault(step.statement, []).append(node)
    for table in program.tables:
        build.node(f"table:{table.name}", id=f"table-{table.name}", **_table_attrs(table))
        clusters.setdefault(table.statement, []).append(f"table:{table.name}")
    for step in program.steps:
        view.draw_inputs(build, step)
    build.rank("min", [f"in:{io.var}" for io in program.inputs], ordered=True)
    build.rank("max", [f"out:{io.var}" for io in program.outputs], ordered=True)
    graph = build.graph(f"plan of {program.report.diagram}", Html(_plan_title(view)), _PLAN_ATTRS)
    return replace(graph, clusters=tuple(_statement_cluster(program.report, index, names)
                                         for index, names in sorted(clusters.items())))


def plans_graph(programs: Sequence[Program], title: str) -> DotGraph:
    """The plans of several programs side by side (a graph diagram: one per contraction).

    Every program's nodes are renamed with a prefix, so the drawings never share a node."""
    graphs = [_prefixed(plan_graph(program), f"c{k}/") for k, program in enumerate(programs)]
    return DotGraph(title, graphs[0].attrs[:-1] + (("label", Html(font(escape(title), 14, bold=True))),),
                    tuple(n for g in graphs for n in g.nodes), tuple(e for g in graphs for e in g.edges),
                    tuple(r for g in graphs for r in g.ranks), graphs[0].node_defaults, graphs[0].edge_defaults,
                    tuple(c for g in graphs for c in g.clusters))


def _prefixed(graph: DotGraph, prefix: str) -> DotGraph:
    def attrs(values: Attrs) -> Attrs:
        return tuple((k, prefix + v if k == "id" and isinstance(v, str) else v) for k, v in values)

    return replace(
        graph,
        nodes=tuple(DotNode(prefix + n.name, attrs(n.attrs)) for n in graph.nodes),
        edges=tuple(DotEdge(prefix + e.tail, prefix + e.head, attrs(e.attrs)) for e in graph.edges),
        ranks=tuple(replace(r, names=tuple(prefix + n for n in r.names),
                            cluster=prefix + r.cluster if r.cluster else "") for r in graph.ranks),
        clusters=tuple(replace(c, name=f"cluster_{prefix.strip('/')}_{c.name.removeprefix('cluster_')}",
                               names=tuple(prefix + n for n in c.names)) for c in graph.clusters),
    )


_PLAN_ATTRS: Attrs = _GRAPH_ATTRS[:3] + (("nodesep", 0.15), ("ranksep", 0.35)) + _GRAPH_ATTRS[5:]
_SHARED_STYLE: dict[str, Value] = {"color": SHARED, "penwidth": 2.0}


class _PlanView:
    """How one program's steps are drawn: which are folded away, which values are shared."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.steps = {step.target: step for step in program.steps}
        self.shared = frozenset(program.report.shared)
        self.external = frozenset(w.name for w in program.weight_inputs)

    @staticmethod
    def is_view(step: Step) -> bool:
        """A free step folded into the edges: a slice or reshape of an intermediate, a one-part
        concatenation.

        Slices of inputs (``entry``) stay: a feature's entries are where its fan-out starts."""
        return step.kind in ("narrow", "reshape") or (step.kind in ("cat", "stack") and len(step.args) == 1)

    def producer(self, var: str) -> Step | None:
        """The drawn step a value comes from, through any views (None for a coupling table)."""
        step = self.steps.get(var.removeprefix("self."))
        while step is not None and self.is_view(step):
            step = self.steps.get(step.args[0])
        return step

    def is_shared(self, step: Step | None) -> bool:
        """A value the planner computes once for several users (inputs and slices are free)."""
        return step is not None and step.target in self.shared and step.is_op

    def draw_step(self, build: _Builder, step: Step) -> str | None:
        if self.is_view(step):
            return None
        name = _step_node(step)
        build.node(name, id=name.replace(":", "-"), **self.step_attrs(step))
        return name

    def step_attrs(self, step: Step) -> dict[str, Value]:
        shared = _SHARED_STYLE if self.is_shared(step) else {}
        tooltip = step.comment or step.target
        if step.kind == "entry":
            text = pretty_irreps(re.sub(r"\].*", "]", step.comment) or step.target)
            return {"shape": "plain", "label": Html(font(escape(text), 8, MUTED)), "tooltip": tooltip}
        if step.kind in ("input", "output") and step.target not in self.external:
            return dict(_feature_attrs(step.target, self.leg_irreps(step.target)), tooltip=tooltip)
        if step.kind in ("input", "weights"):
            what = f"external {step.target}" if step.kind == "input" else step.target
            label = font("<I>w</I>", 11) + "<BR/>" + font(escape(what), 7, MUTED)
            return {"shape": "box", "style": "dashed" if step.kind == "input" else "solid", "label": Html(label),
                    "margin": "0.04,0.02", "tooltip": tooltip, **shared}
        return dict(_op_attrs(step), tooltip=f"{tooltip} [{step.equation or step.kind}]", **shared)

    def leg_irreps(self, leg: str) -> str:
        found = [io.irreps for io in (*self.program.inputs, *self.program.outputs) if io.leg == leg]
        return str(found[0]) if found else ""

    def draw_inputs(self, build: _Builder, step: Step) -> None:
        """The edges into a drawn step; an edge carrying an intermediate is named as in the code."""
        if self.is_view(step) or step.kind == "input":
            return
        sources = (step.source,) if step.kind == "weights" and step.source in self.steps else ()
        for arg in step.args + sources:
            source = self.producer(arg)
            tail = _step_node(source) if source is not None else f"table:{arg.removeprefix('self.')}"
            style = dict(_SHARED_STYLE) if self.is_shared(source) else {}
            if step.kind == "entry":
                style.update(arrowhead="none", color=MUTED, penwidth=0.8)
            elif source is not None and source.kind not in ("input", "entry", "weights"):
                style["label"] = Html(font(escape(arg), 8, SHARED if self.is_shared(source) else MUTED))
            size = self.steps[arg].size if arg in self.steps else 0
            build.edge(tail, _step_node(step), tooltip=f"{arg}: {size:,} numbers per sample", **style)


def _table_attrs(table: Table) -> dict[str, Value]:
    shape = "×".join(str(n) for n in table.spec.shape)
    label = font("<I>C</I>", 11) + "<BR/>" + font(f"{escape(table.name)} · {shape}", 7, MUTED)
    return {"shape": "box", "style": "filled", "fillcolor": TABLE_FILL, "label": Html(label),
            "margin": "0.04,0.02", "tooltip": f"{table.comment}: {table.spec.nonzeros():,} of "
            f"{table.spec.numel:,} numbers structurally nonzero"}


def _step_node(step: Step) -> str:
    if step.kind == "input":
        return f"in:{step.target}"
    if step.kind == "output":
        return f"out:{step.target}"
    if step.kind == "entry":
        return f"slice:{step.target}"
    return f"step:{step.target}"


def _feature_attrs(leg: str, irreps: str) -> dict[str, Value]:
    label = font(escape(leg), 12, italic=True) + "<BR/>" + font(escape(pretty_irreps(irreps)), 9)
    return {"shape": "box", "style": "rounded,filled", "fillcolor": FEATURE_FILL, "label": Html(label),
            "margin": "0.06,0.03"}


def _op_attrs(step: Step) -> dict[str, Value]:
    """A computing step: what it does (an einsum's equation) over its cost."""
    what = escape(step.equation.replace("->", "→")) if step.equation else {
        "add": "+", "cat": "concatenate", "stack": "stack", "select": "gather"}.get(step.kind, step.kind)
    if step.flops or not step.setup_flops:
        cost = font(f"{step.flops:,} FLOPs", 9, bold=True)
        style = "rounded"
    else:
        cost = font(f"setup {step.setup_flops:,} FLOPs/call", 8, MUTED)
        style = "rounded,dashed"
    label = font(what, 9 if step.equation else 11) + "<BR/>" + cost
    return {"shape": "box", "style": style, "label": Html(label), "margin": "0.05,0.02"}


def _plan_title(view: _PlanView) -> str:
    report = view.program.report
    lines = [font(f"plan of {escape(report.diagram)}", 14, bold=True) + "   " + font(
        f"{report.operations} operations, {report.tables} coupling tables; FLOPs per sample", 10)]
    for out in report.outputs:
        ratio = out.naive_flops / out.planned_flops if out.planned_flops else float("inf")
        lines.append(font(f"output {escape(out.leg)}: naive {out.naive_flops:,} → planned "
                          f"{out.planned_flops:,} FLOPs ({ratio:.2f}×)", 10))
    if any(view.is_shared(step) for step in view.program.steps):
        lines.append(font("red: intermediates computed once and shared", 9, SHARED))
    return "<BR/>".join(lines)


def _statement_cluster(report: PlanReport, index: int, names: list[str]) -> Cluster:
    found = [s for s in report.statements if s.index == index]
    if not found:
        return Cluster(f"s{index}", "", tuple(names))
    s = found[0]
    label = (font(f"line {s.line}: {escape(s.text)}", 10, bold=True) + "<BR/>"
             + font(f"{escape(s.strategy)} · {s.planned_flops:,} FLOPs (naive {s.naive_flops:,})", 9, MUTED))
    return Cluster(f"s{index}", label, tuple(names))


def plan_to_dot(plan: Program) -> str:
    """Deterministic DOT text of a diagram's contraction plan (the planner's ``Program``).

    >>> from fusionlang.frontend import check_source
    >>> from fusionlang.plan import plan_diagram
    >>> d = check_source("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }").diagram()
    >>> text = plan_to_dot(plan_diagram(d))
    >>> "FLOPs" in text and text == plan_to_dot(plan_diagram(d))
    True
    """
    return dot_text(plan_graph(plan))


@overload
def render_plan(plan: Program, format: Literal["svg", "dot"] = "svg") -> str: ...
@overload
def render_plan(plan: Program, format: Literal["png"]) -> bytes: ...
@overload
def render_plan(plan: Program, format: Format) -> str | bytes: ...


def render_plan(plan: Program, format: Format = "svg") -> str | bytes:
    """The drawing of a contraction plan: SVG or DOT text, or PNG bytes."""
    return from_dot(plan_to_dot(plan), format)
