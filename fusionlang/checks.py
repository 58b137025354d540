"""Structural checks on a lowered diagram: usage of every leg, kinds of writers, cycles, size.

Each check is a plain function ``check(diagram) -> list[Diagnostic]``; the driver runs them all,
so independent mistakes are reported together.
"""

from __future__ import annotations

import heapq
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING

from . import ir
from .diagnostics import Diagnostic, Label
from .limits import DEFAULT, Limits

if TYPE_CHECKING:
    import networkx as nx


def _diag(diagram: ir.Diagram, code: str, message: str, span: object, **extra: object) -> Diagnostic:
    return Diagnostic(code, message, span, diagram.source, **extra)  # type: ignore[arg-type]


def check_usage(diagram: ir.Diagram, limits: Limits = DEFAULT) -> list[Diagnostic]:
    """Inputs must be read, outputs written, internal edges both written and read."""
    read = {ref.leg for s in diagram.statements for ref in s.leaves} | {s.per for s in diagram.statements}
    written = {s.target for s in diagram.statements}
    problems = []
    for leg in diagram.legs:
        if leg.role == "index" and leg.name not in read:
            problems.append(_diag(diagram, "E104", f"index input `{leg.name}` is never used", leg.span,
                                  label="declared here", hint=f"select weights with it: `[per = {leg.name}]`"))
        elif leg.role == "input" and leg.name not in read:
            problems.append(_diag(diagram, "E104", f"input `{leg.name}` is never used", leg.span,
                                  label="declared here", hint=f"use `{leg.name}` in a statement or remove it"))
        elif leg.role == "output" and leg.name not in written:
            problems.append(_diag(diagram, "E107", f"output `{leg.name}` is never written", leg.span,
                                  label="declared here", hint=f"add a statement such as `x -> {leg.name}`"))
        elif leg.role == "internal" and leg.name not in written:
            problems.append(_diag(diagram, "E101", f"edge `{leg.name}` is declared but never written",
                                  leg.span, hint=f"write it with a statement `... -> {leg.name}`"))
        elif leg.role == "internal" and leg.name not in read:
            problems.append(_diag(diagram, "E104", f"internal edge `{leg.name}` is written but never used",
                                  leg.span, label="dangling edge",
                                  hint=f"read `{leg.name}` in another statement, or declare it "
                                       f"`output {leg.name}` to return it"))
    return problems


def check_writer_kinds(diagram: ir.Diagram, limits: Limits = DEFAULT) -> list[Diagnostic]:
    """An inferred internal edge written by several statements must get them of one kind.

    Its irreps and multiplicities are inferred from its writers; writers of different arity or
    channel mode would make that ambiguous, so the user declares the edge instead."""
    problems = check_split_writers(diagram)
    split_targets = {s.target for s in diagram.statements if s.paths_mode == "split"}
    for leg in diagram.legs:
        if leg.name in split_targets:
            continue
        writers = diagram.writers(leg.name)
        if leg.role != "internal" or leg.declared or len(writers) < 2:
            continue
        first = writers[0]
        other = next((w for w in writers if (w.kind, w.channels) != (first.kind, first.channels)), None)
        if other is not None:
            problems.append(_diag(
                diagram, "E103", f"edge `{leg.name}` is written by a {other.kind} ({other.channels}) and a "
                f"{first.kind} ({first.channels})", other.span, label="different kind of writer",
                related=(Label(first.span, "first written here"),),
                hint=f"declare its irreps, e.g. `edge {leg.name} : 8x(0e + 1o)`, so the writers add up "
                     "into fixed slots"))
    return problems


def check_split_writers(diagram: ir.Diagram) -> list[Diagnostic]:
    """A statement with ``paths = split`` must be the only writer of its target.

    Split gives every path its own entry of the target; another writer (a linear map, a
    coupling, a tree, with either paths mode) would have to add into entries that belong to single
    paths, whose layout then depends on both writers. Refusing it keeps the layout one statement's."""
    problems = []
    for leg in diagram.legs:
        writers = diagram.writers(leg.name)
        split = next((w for w in writers if w.paths_mode == "split"), None)
        if split is None or len(writers) < 2:
            continue
        other = next(w for w in writers if w is not split)
        problems.append(_diag(
            diagram, "E103", f"edge `{leg.name}` is written with `paths = split` and by another statement",
            other.span, label="second writer", related=(Label(split.span, "written with `paths = split` here"),),
            hint=f"with `paths = split` every path owns an entry of `{leg.name}`: write the other statement into "
                 "an edge of its own and combine the edges in a later statement"))
    return problems


def dependency_graph(diagram: ir.Diagram) -> nx.DiGraph:
    """Legs as nodes, an edge ``leaf → target`` for every statement."""
    import networkx as nx  # 0.2 s to import: `fusionc check` needs it only to name a cycle

    graph = nx.DiGraph()
    graph.add_nodes_from(leg.name for leg in diagram.legs)
    for statement in diagram.statements:
        for ref in statement.leaves:
            graph.add_edge(ref.leg, statement.target, statement=statement.index)
    return graph


def _readers(diagram: ir.Diagram) -> dict[str, list[str]]:
    """Leg → the targets of the statements that read it, legs in declaration order then first use
    (the node order of :func:`dependency_graph`)."""
    readers: dict[str, list[str]] = {leg.name: [] for leg in diagram.legs}
    for statement in diagram.statements:
        for ref in statement.leaves:
            readers.setdefault(ref.leg, []).append(statement.target)
            readers.setdefault(statement.target, [])
    return readers


def topological_order(diagram: ir.Diagram) -> list[str]:
    """The legs, each after everything it is computed from; among the ready ones the first in
    node order, which is declaration order: lowering declares every inferred edge, in the order
    written. (networkx's ``lexicographical_topological_sort`` keyed on declaration order, which
    ``infer`` used before, gives the same order without being imported.)"""
    readers = _readers(diagram)
    position = {name: i for i, name in enumerate(readers)}
    waiting = dict.fromkeys(readers, 0)
    for targets in readers.values():
        for target in targets:
            waiting[target] += 1
    ready = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names, order = list(readers), []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for target in readers[name]:
            waiting[target] -= 1
            if waiting[target] == 0:
                heapq.heappush(ready, position[target])
    if len(order) != len(readers):
        raise ValueError("the diagram's statements form a cycle (check_cycles reports it)")
    return order


def check_cycles(diagram: ir.Diagram, limits: Limits = DEFAULT) -> list[Diagnostic]:
    """Edges must not depend on themselves (a fusion diagram is a directed acyclic network)."""
    try:  # graphlib reads the mapping as node → predecessors: reversed edges, the same cycles
        TopologicalSorter(_readers(diagram)).prepare()
    except CycleError:
        return [_cycle_problem(diagram)]
    return []


def _cycle_problem(diagram: ir.Diagram) -> Diagnostic:
    import networkx as nx

    graph = dependency_graph(diagram)
    cycle = nx.find_cycle(graph)
    # Report at the statement written last: the one that closed the cycle.
    closing = max(graph.edges[edge]["statement"] for edge in cycle)
    start = next(i for i, edge in enumerate(cycle) if graph.edges[edge]["statement"] == closing)
    rotated = cycle[start + 1:] + cycle[:start + 1]
    names = [u for u, _ in rotated] + [rotated[0][0]]
    statement = next(s for s in diagram.statements if s.index == closing)
    return _diag(diagram, "E109", "edges depend on themselves: " + " -> ".join(names), statement.span,
                 label="closes the cycle", hint="a fusion diagram flows one way; write the result into a new edge")


STRUCTURE_CHECKS = (check_usage, check_writer_kinds, check_cycles)
