"""Drawings of contraction plans: the planner's steps as a DAG (:func:`plan_to_dot`).

Features, coupling tables ``C`` and weights ``w`` are leaves; every contraction, sum or
concatenation is a box with its equation and per-sample FLOPs; statements are framed;
intermediates computed once and shared are red.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, overload

from .dot import (
    GRAPH_ATTRS,
    MUTED,
    SHARED,
    Attrs,
    Cluster,
    DotEdge,
    DotGraph,
    DotNode,
    Format,
    GraphBuilder,
    Html,
    Value,
    dot_text,
    escape,
    font,
    from_dot,
    pretty_irreps,
)

if TYPE_CHECKING:
    from .plan import PlanReport, Program, Step, Table

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
    build = GraphBuilder()
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


_PLAN_ATTRS: Attrs = GRAPH_ATTRS[:3] + (("nodesep", 0.15), ("ranksep", 0.35)) + GRAPH_ATTRS[5:]
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
        concatenation, a packed table made dense (drawn as the table).

        Slices of inputs (``entry``) stay: a feature's entries are where its fan-out starts."""
        one_part = step.kind == "cat" and len(step.args) == 1 and not step.views
        return step.kind in ("narrow", "reshape", "unpack") or one_part

    def producer(self, var: str) -> Step | None:
        """The drawn step a value comes from, through any views (None for a coupling table)."""
        step = self.steps.get(var.removeprefix("self."))
        while step is not None and self.is_view(step):
            step = self.steps.get(step.args[0])
        return step

    def is_shared(self, step: Step | None) -> bool:
        """A value the planner computes once for several users (inputs and slices are free)."""
        return step is not None and step.target in self.shared and step.is_op

    def draw_step(self, build: GraphBuilder, step: Step) -> str | None:
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

    def draw_inputs(self, build: GraphBuilder, step: Step) -> None:
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
        "add": "+", "cat": "concatenate", "columns": "gather columns"}.get(step.kind, step.kind)
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
def render_plan(plan: Program, format: Literal["png", "pdf"]) -> bytes: ...
@overload
def render_plan(plan: Program, format: Format) -> str | bytes: ...


def render_plan(plan: Program, format: Format = "svg") -> str | bytes:
    """The drawing of a contraction plan: SVG or DOT text, or PNG or PDF bytes."""
    return from_dot(plan_to_dot(plan), format)
