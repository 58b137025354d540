"""A networkx view of a checked diagram (built from the IR; never a second source of truth).

Nodes are the diagram's inputs, outputs, coupling vertices (and one ``sum`` junction for each
internal edge written by several statements); edges are legs, carrying their irreps.
"""

from __future__ import annotations

import networkx as nx

from . import ir
from .groups import Irrep


def to_networkx(diagram: ir.Diagram) -> nx.MultiDiGraph:
    """The diagram as a ``MultiDiGraph``.

    Node attributes: ``kind`` (``input``, ``output``, ``vertex``, ``linear``, ``sum``), ``label``,
    ``span`` (character offsets), ``line``; vertex nodes also ``statement``, ``channels`` and
    ``weights``. Edge attributes: ``leg`` (the name, or None inside a tree), ``irreps`` (text),
    ``declared`` (False when inferred), ``channels``.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 0e + 1o\\n output y : 1o\\n x, x -> y }").diagram()
    >>> g = to_networkx(d)
    >>> sorted(k for _, k in g.nodes(data="kind"))
    ['input', 'output', 'vertex']
    """
    graph = nx.MultiDiGraph(name=diagram.name, group=str(diagram.group))
    for leg in diagram.legs:
        if leg.role != "internal":
            graph.add_node(_leg_node(leg), kind=leg.role, label=leg.name, **_where(diagram, leg.span))
    for leg in diagram.legs:
        if leg.role == "internal" and len(diagram.writers(leg.name)) > 1:
            graph.add_node(_leg_node(leg), kind="sum", label=leg.name, **_where(diagram, leg.span))
    for statement in diagram.statements:
        _add_statement(graph, diagram, statement)
    return graph


def _leg_node(leg: ir.Leg) -> str:
    return f"{leg.role}:{leg.name}" if leg.role != "internal" else f"sum:{leg.name}"


def _where(diagram: ir.Diagram, span: object) -> dict[str, object]:
    start, end = span.start, span.end  # type: ignore[attr-defined]
    line = diagram.source.position(start).line if diagram.source else 0
    return {"span": (start, end), "line": line}


def vertex_id(statement: ir.Statement, node: ir.Fuse | ir.LeafRef) -> str:
    """The graph node of one vertex: statement index, post-order position."""
    if isinstance(node, ir.LeafRef):
        return f"s{statement.index}.linear"
    return f"s{statement.index}.v{statement.vertices.index(node)}"


def _add_statement(graph: nx.MultiDiGraph, diagram: ir.Diagram, statement: ir.Statement) -> None:
    options = {"statement": statement.index, "channels": statement.channels, "weights": statement.weights}
    root = statement.tree
    nodes: list[ir.Fuse | ir.LeafRef] = [root] if isinstance(root, ir.LeafRef) else list(statement.vertices)
    for node in nodes:
        kind = "linear" if isinstance(node, ir.LeafRef) else "vertex"
        graph.add_node(vertex_id(statement, node), kind=kind, label="", **options, **_where(diagram, node.span))
    _add_inputs(graph, diagram, statement, root)
    target = diagram.leg(statement.target)
    # An internal edge with one writer is drawn from the writer's root to each reader instead.
    if target.role == "output" or len(diagram.writers(target.name)) > 1:
        graph.add_edge(vertex_id(statement, root), _leg_node(target), **_leg_attrs(diagram, target, statement))


def _add_inputs(graph: nx.MultiDiGraph, diagram: ir.Diagram, statement: ir.Statement, node: ir.Node) -> None:
    if isinstance(node, ir.LeafRef):
        leg = diagram.leg(node.leg)
        graph.add_edge(_source_node(diagram, leg), vertex_id(statement, node), position=node.position,
                       **_leg_attrs(diagram, leg, statement))
        return
    for child in (node.left, node.right):
        if isinstance(child, ir.LeafRef):
            leg = diagram.leg(child.leg)
            graph.add_edge(_source_node(diagram, leg), vertex_id(statement, node), position=child.position,
                           **_leg_attrs(diagram, leg, statement))
        else:
            _add_inputs(graph, diagram, statement, child)
            graph.add_edge(vertex_id(statement, child), vertex_id(statement, node), leg=None,
                           irreps=_inner_irreps(statement, child), declared=False, channels=statement.channels)


def _inner_irreps(statement: ir.Statement, node: ir.Fuse) -> str:
    position = statement.vertices.index(node)
    seen: list[Irrep] = sorted({path.inner[position] for path in statement.paths})
    return " + ".join(str(i) for i in seen)


def _leg_attrs(diagram: ir.Diagram, leg: ir.Leg, statement: ir.Statement) -> dict[str, object]:
    return {"leg": leg.name, "irreps": str(leg.irreps) if leg.irreps is not None else "",
            "declared": leg.declared, "channels": statement.channels}


def _source_node(diagram: ir.Diagram, leg: ir.Leg) -> str:
    """Where a leg's value comes from: an input node, a sum junction, or the writer's root vertex."""
    if leg.role == "input":
        return _leg_node(leg)
    writers = diagram.writers(leg.name)
    if leg.role == "output" or len(writers) > 1:
        return _leg_node(leg)
    return vertex_id(writers[0], writers[0].tree)
