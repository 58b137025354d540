"""Graph diagrams: an orchestrator over planned plain contractions.

A graph diagram (``[on = nodes | edges]``, ``sender``/``receiver``/``neighbours``, ``per``) is
compiled as one ``nn.Module`` that gathers node features onto edges, calls one planned contraction
per statement (each a plain one-statement diagram that :mod:`fusionlang.plan` plans like any
other), adds edge values into their receiving nodes, selects per-class weights, and sums the
statements into their targets. docs/semantics.md ("Graphs") says what is computed.

A fusion over k distinct neighbours (``neighbours(m)`` on k leaves) is evaluated without
enumerating tuples, by Möbius inversion over the set partitions of those k leaves: every
partition contributes the same contraction (same paths, same weights) with the leaves of each
block of size >= 2 reading the edge value ``m_e`` and the singletons reading the neighbourhood
density ``A_i = Σ_{e→i} m_e``, times ``Π_blocks (-1)^(|B|-1) (|B|-1)!``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import ir
from .domains import is_graph_like, statement_domain
from .groups import SU2, Irrep, Irreps, MulIrrep
from .infer import statement_order
from .names import Names, class_name, unique_name
from .weights import fan_in_totals

__all__ = ["Call", "GraphModel", "as_complex_su2", "graph_model", "needs_orchestrator", "set_partitions"]


def needs_orchestrator(diagram: ir.Diagram) -> bool:
    """Graph diagrams and diagrams with per-class weights are compiled by this module."""
    return is_graph_like(diagram) or any(s.per for s in diagram.statements)


# -- the complex SO(3) basis ---------------------------------------------------------------------

def as_complex_su2(diagram: ir.Diagram) -> ir.Diagram:
    """A ``basis complex`` SO(3) diagram as the same diagram over SU(2) with integer spins:
    complex Condon–Shortley couplings, complex features (docs/semantics.md)."""
    if diagram.basis != "complex":
        return diagram
    legs = tuple(replace(leg, irreps=_su2_irreps(leg.irreps)) for leg in diagram.legs)
    statements = tuple(replace(s, paths=tuple(replace(p, inner=tuple(_su2(i) for i in p.inner)) for p in s.paths))
                       for s in diagram.statements)
    return replace(diagram, group=SU2, legs=legs, statements=statements)


def _su2(irrep: Irrep) -> Irrep:
    return Irrep(two_j=irrep.two_j, parity=0, group=SU2)


def _su2_irreps(irreps: Irreps | None) -> Irreps | None:
    return None if irreps is None else Irreps([MulIrrep(e.mul, _su2(e.irrep)) for e in irreps], SU2)


# -- set partitions (Möbius inversion) -----------------------------------------------------------

def set_partitions(items: Sequence[int]) -> Iterator[tuple[tuple[int, ...], ...]]:
    """Every partition of ``items`` into blocks, deterministic order.

    >>> [p for p in set_partitions([0, 1])]
    [((0, 1),), ((0,), (1,))]
    """
    if not items:
        yield ()
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        for index in range(len(partition)):
            yield partition[:index] + ((first,) + partition[index],) + partition[index + 1:]
        yield ((first,),) + partition


def mobius(partition: tuple[tuple[int, ...], ...]) -> int:
    """μ(0̂, π) on the partition lattice: Π (-1)^(|B|-1) (|B|-1)!."""
    return math.prod((-1) ** (len(b) - 1) * math.factorial(len(b) - 1) for b in partition)


# -- the model ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One planned contraction the orchestrator runs: a plain one-statement diagram."""

    attr: str                      # submodule attribute
    diagram: ir.Diagram            # planned and generated like any diagram
    args: tuple[str, ...]          # orchestrator variables, in the sub-diagram's input order
    weights: str | None            # per-sample weights passed as the last argument
    shares: str | None             # the call whose parameter this one uses (Möbius terms)
    statement: int                 # index of the statement in the original diagram


@dataclass
class GraphModel:
    """What the orchestrator template renders, plus the sub-diagrams to plan."""

    diagram: ir.Diagram
    calls: list[Call] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    buffers: list[dict[str, Any]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    kept: dict[int, tuple[int, ...]] = field(default_factory=dict)
    # statement index -> the forward argument of its external weights (as the user passes them,
    # before any call gathers them onto edges)
    externals: dict[int, str] = field(default_factory=dict)
    _cache: dict[tuple[str, ...], str] = field(default_factory=dict)
    _taken: Names = field(default_factory=Names)

    def fresh(self, hint: str) -> str:
        return unique_name(class_name(hint), self._taken)

    def step(self, kind: str, **fields: Any) -> None:
        self.steps.append({"kind": kind, **fields})

    def cached(self, key: tuple[str, ...], make: Any) -> str:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def inputs(self) -> list[str]:
        return [self.names[leg.name] for leg in self.diagram.legs if leg.role == "input"]

    @property
    def indices(self) -> list[str]:
        return [self.names[leg.name] for leg in self.diagram.indices]

    @property
    def outputs(self) -> list[str]:
        return [self.names[leg.name] for leg in self.diagram.outputs]


def graph_model(diagram: ir.Diagram, kept_paths: Any) -> GraphModel:
    """The orchestrator of a graph diagram. ``kept_paths(sub_diagram) -> tuple[int, ...]`` gives
    the paths the planner keeps in a one-statement diagram (the reduced symmetric basis)."""
    model = GraphModel(diagram)
    for name in ("self", "torch", "runtime", "edge_index", "sender", "receiver", "num_nodes"):
        model._taken.add(name)
    for leg in diagram.legs:
        model.names[leg.name] = model.fresh(leg.name)
    written: set[str] = set()
    for statement in statement_order(diagram):
        _statement(model, statement, kept_paths, first=statement.target not in written)
        written.add(statement.target)
    return model


def _statement(model: GraphModel, statement: ir.Statement, kept_paths: Any, first: bool) -> None:
    neighbours = [ref.position for ref in statement.leaves if ref.via == "neighbours"]
    paths = _kept(model, statement, kept_paths, neighbours)
    weights = _weights(model, statement)
    if not neighbours:
        leaves = [_leaf_value(model, ref) for ref in statement.leaves]
        _call(model, statement, leaves, paths, weights, 1, statement.aggregate, first, "")
        return
    for number, partition in enumerate(set_partitions(neighbours)):
        leaves, on_edges = _mobius_leaves(model, statement, partition)
        term_weights = _receiver_weights(model, statement, weights) if on_edges else weights
        comment = _partition_text(statement, partition)
        _call(model, statement, leaves, paths, term_weights, mobius(partition), on_edges, first and number == 0,
              comment)


def _leaf_value(model: GraphModel, ref: ir.LeafRef) -> str:
    """The variable holding a leaf's value: the leg itself, or the leg gathered onto the edges."""
    var = model.names[ref.leg]
    if ref.via in ("sender", "receiver"):
        return _gather(model, var, ref.via)
    return var


def _gather(model: GraphModel, var: str, row: str) -> str:
    def make() -> str:
        name = model.fresh(f"{var}_at_{row}")
        model.step("gather", var=name, source=var, row=row)
        return name
    return model.cached(("gather", var, row), make)


def _density(model: GraphModel, ref: ir.LeafRef) -> str:
    """``A_i = Σ_{e→i} m_e`` for a ``neighbours(m)`` leaf (m on edges, or a node feature at the sender)."""
    def make() -> str:
        values = _edge_values(model, ref)
        name = model.fresh(f"{model.names[ref.leg]}_density")
        model.step("scatter", var=name, source=values, dim=model.diagram.irreps(ref.leg).dim)
        return name
    return model.cached(("density", ref.leg), make)


def _edge_values(model: GraphModel, ref: ir.LeafRef) -> str:
    var = model.names[ref.leg]
    return var if model.diagram.leg(ref.leg).domain == "edges" else _gather(model, var, "sender")


def _mobius_leaves(model: GraphModel, statement: ir.Statement,
                   partition: tuple[tuple[int, ...], ...]) -> tuple[list[str], bool]:
    """The leaf values of one Möbius term, and whether it is computed on edges."""
    on_edges = any(len(block) > 1 for block in partition)
    shared = {p for block in partition if len(block) > 1 for p in block}
    leaves = []
    for ref in statement.leaves:
        if ref.via != "neighbours":
            var = model.names[ref.leg]
            leaves.append(_gather(model, var, "receiver") if on_edges else var)
        elif ref.position in shared:
            leaves.append(_edge_values(model, ref))
        else:
            density = _density(model, ref)
            leaves.append(_gather(model, density, "receiver") if on_edges else density)
    return leaves, on_edges


def _partition_text(statement: ir.Statement, partition: tuple[tuple[int, ...], ...]) -> str:
    names = {ref.position: f"{ref.leg}{ref.position}" for ref in statement.leaves}
    blocks = " ".join("{" + ", ".join(names[p] for p in block) + "}" for block in partition)
    return f"Möbius term {blocks}, coefficient {mobius(partition)}"


# -- weights ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Weights:
    mode: str                 # "none", "internal", "external" (per-sample tensor ``var``)
    var: str | None = None
    table: str | None = None  # per-class table parameter
    index: str | None = None  # index input selecting rows


def _weights(model: GraphModel, statement: ir.Statement) -> _Weights:
    if statement.weights == "none":
        return _Weights("none")
    if statement.weights == "external":
        model.externals[statement.index] = model.fresh(f"weights_{statement.target}_{statement.index}")
        return _Weights("external", model.externals[statement.index])
    if statement.per is None:
        return _Weights("internal")
    table = model.fresh(f"weights_{statement.target}_{statement.index}")
    index = model.names[statement.per]
    var = model.fresh(f"{table}_by_{index}")
    return _Weights("external", var, table, index)


def _receiver_weights(model: GraphModel, statement: ir.Statement, weights: _Weights) -> _Weights:
    """Per-node weights read on edges (Möbius terms on edges use the receiving node's weights)."""
    if weights.mode != "external":
        return weights
    if weights.table is not None:
        index = _gather(model, weights.index or "", "receiver")
        return replace(weights, var=f"{weights.var}_on_edges", index=index)
    return replace(weights, var=_gather(model, weights.var or "", "receiver"))


# -- calls -----------------------------------------------------------------------------------------

def _call(model: GraphModel, statement: ir.Statement, leaves: list[str], paths: tuple[ir.Path, ...],
          weights: _Weights, coefficient: int, scatter: bool, first: bool, comment: str) -> None:
    sub = _sub_diagram(model, statement, leaves, paths, weights)
    attr = model.fresh(f"s{statement.index}_{len([c for c in model.calls if c.statement == statement.index])}")
    shares = next((c.attr for c in model.calls if c.statement == statement.index), None)
    if weights.table is not None:
        _select_weights(model, statement, weights)
    args = tuple(dict.fromkeys(leaves))
    model.calls.append(Call(attr, sub, args, weights.var, shares if weights.mode == "internal" else None,
                            statement.index))
    value = model.fresh(f"{model.names[statement.target]}_{attr}")
    model.step("call", var=value, attr=attr, args=list(args), weights=weights.var, line=statement.line,
               comment=comment, scale=_scale_buffer(model, statement, sub, attr))
    if scatter:
        summed = model.fresh(f"{value}_summed")
        model.step("scatter", var=summed, source=value, dim=model.diagram.irreps(statement.target).dim)
        value = summed
    model.step("accumulate", target=model.names[statement.target], value=value, coefficient=coefficient,
               first=first)


def _select_weights(model: GraphModel, statement: ir.Statement, weights: _Weights) -> None:
    def make() -> str:
        model.step("select", var=weights.var, table=weights.table, index=weights.index)
        return weights.var or ""
    model.cached(("select", weights.var or ""), make)
    if not any(p["name"] == weights.table for p in model.parameters):
        leg = model.diagram.leg(statement.per or "")
        model.parameters.append({"name": weights.table, "classes": leg.classes, "statement": statement.index,
                                 "attr": None})


def _sub_diagram(model: GraphModel, statement: ir.Statement, leaves: list[str], paths: tuple[ir.Path, ...],
                 weights: _Weights) -> ir.Diagram:
    """A plain diagram of one statement reading ``leaves`` (orchestrator variables)."""
    diagram = model.diagram
    inputs: dict[str, ir.Leg] = {}
    for ref, var in zip(statement.leaves, leaves, strict=True):
        inputs.setdefault(var, ir.Leg(var, "input", diagram.irreps(ref.leg), True, span=ref.span))
    target = diagram.leg(statement.target)
    output = ir.Leg("out", "output", target.irreps, True, span=target.span)
    tree = _renamed(statement.tree, dict(zip([r.position for r in statement.leaves], leaves, strict=True)))
    mode = {"none": "none", "internal": statement.weights, "external": "external"}[weights.mode]
    plain = replace(statement, index=0, tree=tree, target="out", weights=mode, paths=paths, aggregate=False,
                    per=None, paths_mode="sum")
    name = f"{diagram.name}__s{statement.index}_{len(model.calls)}"
    return ir.Diagram(name, diagram.group, (*inputs.values(), output), (plain,), statement.span, diagram.source)


def _renamed(node: ir.Node, names: dict[int, str]) -> ir.Node:
    if isinstance(node, ir.LeafRef):
        return ir.LeafRef(names[node.position], node.position, node.span)
    return ir.Fuse(_renamed(node.left, names), _renamed(node.right, names), node.span)


def _kept(model: GraphModel, statement: ir.Statement, kept_paths: Any, neighbours: list[int]) -> tuple[ir.Path, ...]:
    """The paths that carry weights: the reduced symmetric basis of the statement, where the
    ``neighbours(m)`` leaves count as one repeated leg (the sum over distinct tuples is symmetric)."""
    if statement.weights == "none":
        return statement.paths
    names = {ref.position: ref.leg for ref in statement.leaves}
    prototype_leaves = [f"{names[p]}__tuple" if p in neighbours else names[p] for p in sorted(names)]
    prototype = _sub_diagram(GraphModel(model.diagram), statement, prototype_leaves, statement.paths,
                             _Weights("internal"))
    keep = tuple(kept_paths(prototype))
    if keep != tuple(range(len(statement.paths))):
        model.kept[statement.index] = keep
    return tuple(statement.paths[i] for i in keep)


def _scale_buffer(model: GraphModel, statement: ir.Statement, sub: ir.Diagram, attr: str) -> str | None:
    """Per-component factors sqrt(fan_in of the sub-diagram / fan_in of the whole diagram): the
    sub-diagram normalises over its own paths, the semantics over every writer of the target."""
    whole, own = fan_in_totals(model.diagram), fan_in_totals(sub)
    target = model.diagram.irreps(statement.target)
    factors: list[float] = []
    for slot, entry in enumerate(target):
        ratio = own.get(("out", slot), 0) / whole[(statement.target, slot)] if (statement.target, slot) in whole else 0
        factors += [math.sqrt(ratio)] * entry.dim
    if all(abs(f - 1.0) < 1e-15 for f in factors):
        return None

    def make() -> str:
        name = model.fresh(f"scale_{attr}")
        model.buffers.append({"name": name, "values": factors})
        return name
    # The Möbius terms of one statement share their paths, hence their factors: one buffer.
    return model.cached(("scale", *map(repr, factors)), make)


def _runs_literal(values: list[float]) -> str:
    """A list literal of ``values`` by runs of equal numbers (a factor per component repeats over
    an entry's multiplicity and dimension: 256 numbers become two terms).

    >>> _runs_literal([0.5, 0.5, 0.5, 0.25, 1.0, 1.0])
    '[0.5] * 3 + [0.25] + [1.0] * 2'
    """
    runs = [(value, len(list(group))) for value, group in itertools.groupby(values)]
    return " + ".join(f"[{value!r}] * {count}" if count > 1 else f"[{value!r}]" for value, count in runs)


# -- rendering -------------------------------------------------------------------------------------

def orchestrator_model(model: GraphModel, programs: dict[str, Any], file: str) -> dict[str, Any]:
    """The render model of the orchestrator class (``templates/graph_module.py.jinja``).

    ``programs`` maps each call's attribute to the planned :class:`~fusionlang.plan.Program` of
    its sub-diagram."""
    diagram = model.diagram
    terms = {step["attr"]: step["comment"] for step in model.steps if step["kind"] == "call"}
    calls = [_call_model(call, programs[call.attr], diagram, terms[call.attr]) for call in model.calls]
    externals = [_external(model, s, programs) for s in diagram.statements if s.weights == "external"]
    parameters = [{**p, "numel": _numel(model, programs, p["statement"]), "index": _index_of(diagram, p),
                   "line": _line(diagram, p["statement"])} for p in model.parameters]
    steps = [_step_model(step) for step in model.steps]
    uses_edges = diagram.is_graph
    arguments = model.inputs + [e["name"] for e in externals] + (["edge_index"] if uses_edges else []) + model.indices
    return {
        "name": class_name(diagram.name), "diagram": diagram.name, "group": str(diagram.group), "file": file,
        "signature": arguments, "results": model.outputs, "doc": _doc(model, externals),
        "calls": calls, "parameters": parameters,
        "buffers": [{"name": b["name"], "factors": _runs_literal(b["values"])}
                    for b in model.buffers],
        "arguments": ", ".join(f"{a}: torch.Tensor" for a in arguments),
        "returns": "torch.Tensor" if len(model.outputs) == 1 else
                   "tuple[" + ", ".join(["torch.Tensor"] * len(model.outputs)) + "]",
        "uses_edges": uses_edges, "uses_nodes": any(s["kind"] == "scatter" for s in steps),
        "node_source": _node_source(model), "steps": steps,
        "signature_literal": repr(tuple(_signature(model, externals))),
        "kept_literal": repr(dict(sorted(model.kept.items()))),
        "checks": _input_checks(model, externals),
    }


def _input_checks(model: GraphModel, externals: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``forward`` checks first (``runtime.check_*``): every feature and external weights
    ``[N or E, dim]`` at the module's dtype, ``edge_index`` ``[2, E]`` and index inputs ``[N]``
    (their values, where cheap), and one count of nodes and one of edges across the arguments."""
    is_complex = repr(model.diagram.group.is_complex)
    rows: list[dict[str, Any]] = [
        {"name": model.names[leg.name], "dim": leg.irreps.dim if leg.irreps else 0, "what": str(leg.irreps),
         "complex": is_complex, "rows": "E" if leg.domain == "edges" else "N"} for leg in model.diagram.inputs]
    rows += [{"name": e["name"], "dim": e["numel"], "what": "external weights", "complex": "False",
              "rows": "E" if e["domain"] == "edges" else "N"} for e in externals]
    indices: list[dict[str, Any]] = [{"name": model.names[leg.name], "classes": leg.classes}
                                     for leg in model.diagram.indices]
    nodes: list[tuple[str, str]] = [(r["name"], f"{r['name']}.shape[0]") for r in rows if r["rows"] == "N"]
    nodes += [(i["name"], f"{i['name']}.shape[0]") for i in indices]
    edges: list[tuple[str, str]] = [(r["name"], f"{r['name']}.shape[0]") for r in rows if r["rows"] == "E"]
    edges += [("edge_index", "edge_index.shape[1]")] if model.diagram.is_graph else []
    return {"rows": rows, "indices": indices, "edge_index": model.diagram.is_graph,
            "num_nodes": nodes[0][1] if nodes else "-1",
            "counts": [{"what": what, "names": [n for n, _ in pairs], "sizes": [size for _, size in pairs]}
                       for what, pairs in (("nodes", nodes), ("edges", edges)) if len(pairs) > 1]}


def _signature(model: GraphModel, externals: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(argument, kind, size) of every forward argument: kind is the domain of a feature or of
    external weights, ``"graph"`` for ``edge_index`` and ``"index"`` (size = classes) for indices."""
    out: list[tuple[str, str, int]] = [(model.names[leg.name], leg.domain, leg.irreps.dim if leg.irreps else 0)
                                       for leg in model.diagram.legs if leg.role == "input"]
    out += [(e["name"], e["domain"], e["numel"]) for e in externals]
    out += [("edge_index", "graph", 2)] if model.diagram.is_graph else []
    return out + [(model.names[leg.name], "index", leg.classes) for leg in model.diagram.indices]


def _call_model(call: Call, program: Any, diagram: ir.Diagram, term: str) -> dict[str, Any]:
    """One call: its class and the statement it computes as the user wrote it (``text``,
    ``target``, its Möbius ``term``; ``per`` and ``classes`` for weights per class), which the
    template's comments and the plan report (:class:`fusionlang.plan.CallLabel`) show."""
    statement = next(s for s in diagram.statements if s.index == call.statement)
    parameter = next((p.name for p in program.parameters), None)
    classes = diagram.leg(statement.per).classes if statement.per else 1
    return {"attr": call.attr, "cls": class_name(call.diagram.name), "line": statement.line,
            "text": _statement_text(statement), "shares": call.shares, "parameter": parameter,
            "target": statement.target, "term": term, "per": statement.per or "", "classes": classes}


def _statement_text(statement: ir.Statement) -> str:
    from .report import tree_text

    return f"{tree_text(statement.tree)} -> {statement.target}"


def _external(model: GraphModel, statement: ir.Statement, programs: dict[str, Any]) -> dict[str, Any]:
    call = next(c for c in model.calls if c.statement == statement.index)
    return {"name": model.externals[statement.index], "numel": programs[call.attr].weight_inputs[0].numel,
            "domain": statement_domain(model.diagram, statement)}


def _numel(model: GraphModel, programs: dict[str, Any], statement: int) -> int:
    call = next(c for c in model.calls if c.statement == statement)
    return int(programs[call.attr].weight_inputs[0].numel)


def _index_of(diagram: ir.Diagram, parameter: dict[str, Any]) -> str:
    return next(s.per for s in diagram.statements if s.index == parameter["statement"]) or ""


def _line(diagram: ir.Diagram, statement: int) -> int:
    return next(s.line for s in diagram.statements if s.index == statement)


def _step_model(step: dict[str, Any]) -> dict[str, Any]:
    if step["kind"] == "call":
        args = step["args"] + ([step["weights"]] if step["weights"] else [])
        return {**step, "call_args": ", ".join(args)}
    if step["kind"] == "accumulate":
        coefficient = step["coefficient"]
        expression = step["value"] if coefficient == 1 else f"{coefficient} * {step['value']}"
        return {**step, "expression": expression}
    return step


def _node_source(model: GraphModel) -> str:
    for leg in model.diagram.legs:
        if leg.role in ("input", "index") and leg.domain == "nodes":
            return model.names[leg.name]
    return model.inputs[0] if model.inputs else "edge_index"


_SIZE = {"nodes": "N", "edges": "E", "batch": "..."}


def _doc(model: GraphModel, externals: list[dict[str, Any]]) -> list[str]:
    """One docstring line per forward argument and result."""
    lines = [_feature_line(model, leg) for leg in model.diagram.inputs]
    lines += [f"{e['name']}: external weights, [{_SIZE[e['domain']]}, {e['numel']}]" for e in externals]
    if model.diagram.is_graph:
        lines.append("edge_index: int64 [2, E], row 0 the sender, row 1 the receiver of each edge")
    lines += [f"{model.names[leg.name]}: int64 [N], values in 0 .. {leg.classes - 1}" for leg in model.diagram.indices]
    return lines + ["-> " + _feature_line(model, leg) for leg in model.diagram.outputs]


def _feature_line(model: GraphModel, leg: ir.Leg) -> str:
    dim = leg.irreps.dim if leg.irreps is not None else 0
    return f"{model.names[leg.name]}: {leg.irreps}, [{_SIZE[leg.domain]}, {dim}]"


def render_orchestrator(render_model: dict[str, Any]) -> str:
    """The class source of one orchestrator."""
    import jinja2

    from ._resources import read_resource

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True, autoescape=False)
    return environment.from_string(read_resource("templates", "graph_module.py.jinja")).render(**render_model)
