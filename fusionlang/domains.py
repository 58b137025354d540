"""Where features live in a graph diagram: per node or per edge.

A diagram is a graph diagram when a leg says ``[on = edges]`` (or ``nodes``) or a statement reaches a
leg through ``sender(...)``, ``receiver(...)`` or ``neighbours(...)``. Declared legs without ``on``
then live on nodes; internal edges take the domain of their writer. A statement runs

* on **edges** when it reads an edge feature or gathers a node feature with ``sender``/``receiver``;
  ``aggregate = sum`` adds its values into the receiving nodes;
* on **nodes** otherwise; ``neighbours(m)`` leaves make it a sum over tuples of *distinct* incoming
  edges of each node (the other leaves are the node's own features).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import ir
from .diagnostics import Diagnostic
from .infer import statement_order

MAX_NEIGHBOURS = 3


@dataclass
class _Domains:
    diagram: ir.Diagram
    domain: dict[str, ir.Domain] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)

    def report(self, code: str, message: str, span: object, hint: str) -> None:
        self.problems.append(Diagnostic(code, message, span, self.diagram.source, hint=hint))  # type: ignore[arg-type]


def is_graph_like(diagram: ir.Diagram) -> bool:
    return diagram.is_graph or any(leg.domain != "batch" for leg in diagram.legs)


def resolve_domains(diagram: ir.Diagram) -> tuple[ir.Diagram, list[Diagnostic]]:
    """Give every leg of a graph diagram its domain and check each statement's use of them."""
    if not is_graph_like(diagram):
        return diagram, []
    state = _Domains(diagram)
    for leg in diagram.legs:
        if leg.domain != "batch":
            state.domain[leg.name] = leg.domain
        elif leg.role != "internal":
            state.domain[leg.name] = "nodes"
    for statement in statement_order(diagram):
        _statement(state, statement)
    _node_count_known(state)
    legs = tuple(replace(leg, domain=state.domain.get(leg.name, "nodes")) for leg in diagram.legs)
    return replace(diagram, legs=legs), state.problems


def statement_domain(diagram: ir.Diagram, statement: ir.Statement) -> ir.Domain:
    """Where a statement of a resolved graph diagram is computed ("batch" outside graphs)."""
    if any(ref.via == "neighbours" for ref in statement.leaves):
        return "nodes"
    if any(ref.via in ("sender", "receiver") or diagram.leg(ref.leg).domain == "edges" for ref in statement.leaves):
        return "edges"
    return diagram.leg(statement.leaves[0].leg).domain


def _statement(state: _Domains, statement: ir.Statement) -> None:
    neighbours = [ref for ref in statement.leaves if ref.via == "neighbours"]
    domain = _tuple_domain(state, statement, neighbours) if neighbours else _plain_domain(state, statement)
    target: ir.Domain = "nodes" if statement.aggregate else domain
    if statement.aggregate and domain != "edges":
        state.report("E703", "`aggregate = sum` adds edge values into nodes, but this statement runs on nodes",
                     statement.span, hint="drop `aggregate = sum`")
    _check_target(state, statement, domain, target)
    _check_per(state, statement, domain)


def _plain_domain(state: _Domains, statement: ir.Statement) -> ir.Domain:
    on_edges = any(ref.via or state.domain.get(ref.leg) == "edges" for ref in statement.leaves)
    for ref in statement.leaves:
        leg_domain = state.domain.get(ref.leg, "nodes")
        if ref.via and leg_domain != "nodes":
            state.report("E702", f"`{ref.via}` gathers a node feature onto edges, but `{ref.leg}` is on edges",
                         ref.span, hint=f"write `{ref.leg}` directly")
        elif on_edges and not ref.via and leg_domain == "nodes":
            state.report("E701", f"`{ref.leg}` lives on nodes, but this statement runs on edges", ref.span,
                         hint=f"write `sender({ref.leg})` (the neighbour's) or `receiver({ref.leg})` (the node's own)")
    return "edges" if on_edges else "nodes"


def _tuple_domain(state: _Domains, statement: ir.Statement, neighbours: list[ir.LeafRef]) -> ir.Domain:
    if len(neighbours) > MAX_NEIGHBOURS:
        state.report("E704", f"a fusion over {len(neighbours)} distinct neighbours (at most {MAX_NEIGHBOURS})",
                     statement.span, hint="fuse the neighbourhood density instead: aggregate the messages "
                     "into a node feature and repeat it on several legs (MACE's product basis)")
    for ref in statement.leaves:
        if ref.via in ("sender", "receiver") or (not ref.via and state.domain.get(ref.leg) != "nodes"):
            state.report("E704", f"in a fusion over neighbours, `{ref.leg}` must be the node's own feature "
                         "or `neighbours(...)`", ref.span,
                         hint="the other legs of the tree are the centre node's features")
    return "nodes"


def _check_target(state: _Domains, statement: ir.Statement, domain: ir.Domain, target: ir.Domain) -> None:
    leg = state.diagram.leg(statement.target)
    known = state.domain.get(leg.name)
    if known is None:
        state.domain[leg.name] = target
    elif known != target and domain == "edges" and not statement.aggregate:
        state.report("E703", f"this statement runs on edges but `{leg.name}` lives on nodes", statement.span,
                     hint="add `aggregate = sum` to add the values of the incoming edges into each node")
    elif known != target:
        state.report("E706", f"`{leg.name}` lives on {known}, but this statement gives it values on {target}",
                     statement.span, hint=f"declare `{leg.name}` with `[on = {target}]` or write another edge")


def _check_per(state: _Domains, statement: ir.Statement, domain: ir.Domain) -> None:
    if statement.per is not None and domain != state.domain.get(statement.per, "nodes"):
        state.report("E705", f"`per = {statement.per}` selects weights per node, but this statement runs on "
                     f"{domain}", statement.span, hint="use per-node weights in a statement on nodes")


def _node_count_known(state: _Domains) -> None:
    """Node outputs need some node-sized input to say how many nodes there are."""
    node_inputs = [leg for leg in state.diagram.legs if leg.role in ("input", "index")
                   and state.domain.get(leg.name) == "nodes"]
    if node_inputs or all(state.domain.get(leg.name) != "nodes" for leg in state.diagram.outputs):
        return
    state.report("E707", f"diagram `{state.diagram.name}` returns node features but takes none",
                 state.diagram.span, hint="add a node input (e.g. the node features, or `index species : 3`)")
