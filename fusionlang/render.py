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

The DOT text is built in the order of the IR (no set or dict order leaks in), so it is
deterministic (the DOT model and graphviz are in :mod:`fusionlang.dot`, plans in
:mod:`fusionlang.render_plan`; this module re-exports both); ``dot`` lays it out. Without ``dot``
only ``format="dot"`` works; SVG and PNG raise a :class:`~fusionlang.diagnostics.FusionError`
with diagnostic E902.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import networkx as nx

from . import ir
from .dot import (
    FONT,
    FORMATS,
    INK,
    MUTED,
    SHARED,
    Cluster,
    DotEdge,
    DotGraph,
    DotNode,
    Format,
    GraphBuilder,
    Html,
    Rank,
    Value,
    as_format,
    clean_svg,
    dot_text,
    escape,
    font,
    from_dot,
    graphviz_version,
    group_title,
    leg_html,
    pretty_irreps,
    run_dot,
    spin_fraction,
)
from .graph import to_networkx, vertex_id
from .render_plan import plan_graph, plan_to_dot, plans_graph, render_plan

__all__ = [
    "FONT", "FORMATS", "MUTED", "SHARED", "Cluster", "DotEdge", "DotGraph", "DotNode", "Format", "Html", "Rank",
    "as_format", "clean_svg", "diagram_graph", "dot_text", "from_dot", "graphviz_version", "plan_graph",
    "plan_to_dot", "plans_graph", "pretty_irreps", "render", "render_plan", "render_svg", "run_dot",
    "spin_fraction", "to_dot",
]

# ---------------------------------------------------------------------------------------------
# A diagram as a DotGraph.


def diagram_graph(diagram: ir.Diagram) -> DotGraph:
    """The drawing of a checked diagram as a :class:`DotGraph` (see :func:`to_dot`)."""
    view = to_networkx(diagram)
    build = GraphBuilder()
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


def _draw_free_end(build: GraphBuilder, leg: ir.Leg, side: str) -> None:
    build.node(f"{side}:{leg.name}", id=f"{side}-{leg.name}", shape="point", width=0.04,
               tooltip=_leg_tooltip(leg))


def _statement_tooltip(statement: ir.Statement) -> str:
    args = " ⊗ ".join(ref.leg for ref in statement.leaves)
    return (f"line {statement.line}: {args} -> {statement.target}; {statement.kind}, "
            f"channels={statement.channels}, weights={statement.weights}, {len(statement.paths)} paths")


def _draw_statement(build: GraphBuilder, diagram: ir.Diagram, view: nx.MultiDiGraph,
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
        build.edge(tail, head, id=f"inner-{tail}", label=leg_html(None, str(data["irreps"]), inferred=True),
                   color=MUTED,
                   tooltip=f"inner edge of line {statement.line}: {data['irreps']} (inferred)")
    _draw_tag(build, statement, tooltip)


def _options_html(symbol: str, statement: ir.Statement) -> str:
    """A weight symbol over the statement's options in small type: ``w`` / ``channel · uuu``."""
    options = statement.weights + ("" if statement.channels == "uvw" and symbol == "w" else
                                   f" · {statement.channels}")
    return font(f"<I>{symbol}</I>", 12) + "<BR/>" + font(options, 7, MUTED)


def _draw_tag(build: GraphBuilder, statement: ir.Statement, tooltip: str) -> None:
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


def _draw_sum(build: GraphBuilder, diagram: ir.Diagram, leg: ir.Leg) -> None:
    """A ⊕ node where several statements add into one leg."""
    name = f"sum:{leg.name}"
    writers = diagram.writers(leg.name)
    build.node(name, id=f"sum-{leg.name}", shape="circle", label="+", width=0.22, fixedsize="true",
               fontsize=14, tooltip=f"{leg.name} = sum of {len(writers)} statements")
    for writer in writers:
        build.edge(vertex_id(writer, writer.tree), name, id=f"add-s{writer.index}",
                   label=leg_html(None, _irreps_text(leg), not leg.declared),
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


def _draw_leg(build: GraphBuilder, diagram: ir.Diagram, leg: ir.Leg) -> None:
    """One labelled line per leg; a leg read several times forks after its label."""
    source, consumers = _source(diagram, leg), _consumers(diagram, leg)
    name = leg.name + (" Σ" if any(w.aggregate for w in diagram.writers(leg.name)) else "")
    label, tooltip = leg_html(name, _irreps_text(leg), not leg.declared), _leg_tooltip(leg)
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


@overload
def render(diagram: ir.Diagram, format: Literal["svg", "dot"] = "svg") -> str: ...
@overload
def render(diagram: ir.Diagram, format: Literal["png", "pdf"]) -> bytes: ...
@overload
def render(diagram: ir.Diagram, format: Format) -> str | bytes: ...


def render(diagram: ir.Diagram, format: Format = "svg") -> str | bytes:
    """The drawing of a checked diagram: SVG or DOT text (``str``), or PNG or PDF bytes.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 0e + 1o\\n output y : 1o\\n x, x -> y }").diagram()
    >>> render(d, "dot").startswith("digraph")
    True
    """
    return from_dot(to_dot(diagram), format)


def render_svg(diagram: ir.Diagram) -> str:
    """SVG text of a checked diagram (deterministic bytes for one graphviz version)."""
    return render(diagram, "svg")


