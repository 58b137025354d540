"""The planner: how the generated ``forward`` contracts every statement of a checked diagram.

For every statement the tensors to contract are the leaf features, the coupling tensors of its
vertices and its weights. :func:`plan_diagram` runs the parts in order:

1. :mod:`.model`: each statement's frozen model (paths, entries, weight blocks, kept paths), built
   once; statements that read one leg on several leaves keep weights only for a maximal linearly
   independent subset of their symmetrised paths (:mod:`.symmetric`);
2. :mod:`.strategies`: every strategy that applies (how paths are grouped and stacked, per-vertex
   or pre-contracted couplings, where the weights enter) emits the statement into a fork of the
   :class:`~.builder.Builder`, whose steps are hash-consed (the same operation on the same operands
   is emitted once, across paths, groups and statements); each einsum network is ordered by
   :mod:`.paths` (exact dynamic programming up to :data:`DP_LIMIT` tensors, greedy beyond);
3. :mod:`.cost`: the fitted run-time model keeps the strategy never far from the fastest estimate
   at either of two batch sizes (or the one ``strategy=`` names);
4. :mod:`.assemble`: outputs laid out, dead steps dropped, the :class:`Program` and its
   :class:`PlanReport` (:mod:`.report`) written.

The :class:`Program` (:mod:`.program`: steps, coupling tables, parameters, external weights) is
what :mod:`fusionlang.codegen` renders.

>>> from fusionlang.frontend import check_source
>>> d = check_source("diagram d { group O3\\n input x : 4x1o\\n input y : 1o\\n output z : 4x(0e + 1e)\\n"
...                  " x, y -> z [weights = path] }").diagram()
>>> report = plan_diagram(d).report
>>> statement = report.statements[0]
>>> statement.strategy == statement.estimates_ms[0][0]   # the fastest estimate is chosen
True
>>> plan_diagram(d, strategy="blocks/U/entry").report.statements[0].strategy
'blocks/U/entry'
"""

from __future__ import annotations

from pathlib import PurePath

from .. import ir
from ..diagnostics import Diagnostic, FusionError
from ..infer import statement_order
from ..limits import DEFAULT, Limits
from ..weights import fan_in_totals
from .assemble import build_program, declare_inputs, emit_outputs, statement_report, weight_sources
from .batches import LARGE_BATCH, MIN_CHUNK, REFERENCE_BATCH
from .builder import Builder
from .cost import choose, model_features, model_naive_flops, model_seconds, naive_flops
from .geometry import CHANNELS
from .model import StatementModel, kept_paths, statement_model, statement_models
from .packing import product_axes
from .paths import (
    BATCH,
    DP_LIMIT,
    PATHS,
    Cost,
    Network,
    Tree,
    contraction_steps,
    get_path_fn,
    greedy_tree,
    optimal_tree,
    tree_cost,
)
from .program import (
    Block,
    LegIO,
    Parameter,
    Program,
    Step,
    Table,
    TableSpec,
    WeightInput,
    batch_chunk,
    block_literal,
    table_tensor,
)
from .report import CallLabel, OutputReport, PlanReport, StatementReport, combined_report, explain_report
from .strategies import AUTO, STRATEGIES, Strategy, StrategyChoice, get_strategy

__all__ = [
    "AUTO", "BATCH", "Block", "CallLabel", "Cost", "DP_LIMIT", "LARGE_BATCH", "LegIO", "MIN_CHUNK", "Network",
    "OutputReport", "PATHS", "Parameter", "PlanReport", "Program", "REFERENCE_BATCH", "STRATEGIES", "StatementModel",
    "StatementReport", "Step", "Strategy", "StrategyChoice", "Table", "TableSpec", "Tree", "WeightInput",
    "batch_chunk", "block_literal", "combined_report", "contraction_steps", "explain_report", "fan_in_totals",
    "get_path_fn", "get_strategy", "greedy_tree", "kept_paths", "model_features", "model_seconds", "naive_flops",
    "optimal_tree", "plan_diagram", "product_axes", "statement_model", "statement_models", "table_tensor", "tree_cost",
]


def plan_diagram(diagram: ir.Diagram, file: str | None = None, *, strategy: StrategyChoice = AUTO,
                 limits: Limits = DEFAULT) -> Program:
    """Plan the forward of a checked plain diagram.

    ``file`` names the source in ``# FILE:LINE`` comments (default: the diagram's source name).
    ``strategy`` forces a strategy (:data:`STRATEGIES`) on every statement it applies to, or per
    statement index; ``"auto"`` lets the cost model choose. Raises :class:`FusionError` (E601) for
    graph diagrams and statements beyond the planner's limits, ``KeyError`` for an unknown strategy.
    """
    names = _strategy_names(diagram, strategy)
    _check_limits(diagram, limits)
    b = Builder(diagram, file or _file_name(diagram))
    inputs = declare_inputs(b)
    models = statement_models(diagram)
    weights = weight_sources(b, models)
    reports = []
    for statement in statement_order(diagram):
        model = models[statement.index]
        before = len(b.steps)
        choice = choose(b, model, names[statement.index], limits.max_table_numbers)
        b = choice.builder
        reports.append(statement_report(b, model, choice, model_naive_flops(model), b.steps[before:]))
    outputs = emit_outputs(b)
    return build_program(b, inputs, outputs, models, weights, tuple(sorted(reports, key=lambda r: r.index)))


def _strategy_names(diagram: ir.Diagram, strategy: StrategyChoice) -> dict[int, str]:
    chosen = {s.index: strategy if isinstance(strategy, str) else strategy.get(s.index, AUTO)
              for s in diagram.statements}
    for name in sorted(set(chosen.values()) - {AUTO}):
        get_strategy(name)
    return chosen


def _file_name(diagram: ir.Diagram) -> str:
    name = diagram.source.name if diagram.source is not None else "<string>"
    return PurePath(name).name if not name.startswith("<") else name


def _check_limits(diagram: ir.Diagram, limits: Limits) -> None:
    graph = (any(leg.domain != "batch" for leg in diagram.legs)
             or any(ref.via for s in diagram.statements for ref in s.leaves)
             or any(s.per or s.aggregate for s in diagram.statements))
    if graph:
        raise FusionError([Diagnostic("E601", f"`{diagram.name}` is a graph diagram (or has per-class weights): "
                                      "plan each of its contractions", diagram.span, diagram.source,
                                      hint="use fusionlang.pipeline.plan_unit(diagram), or fusionlang.api.compile")])
    most = min(limits.max_leaves, len(CHANNELS))
    for statement in diagram.statements:
        if statement.arity > most:
            raise FusionError([Diagnostic("E601", f"a statement with {statement.arity} leaves is beyond the "
                                          f"planner (at most {most})", statement.span, diagram.source,
                                          hint="split it through internal edges")])
