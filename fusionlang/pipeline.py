"""The compiler's passes in order, and the one driver that runs them (sqlglot's optimizer).

``fusionlang.api``, ``fusionc`` (``compile``, ``explain``, ``render``) and
``scripts/render_docs.py`` all call :func:`run` (or :func:`plan_unit` for one checked diagram);
nobody sequences the back end by hand. Every pass is a plain function
``pass_(compilation, options) -> compilation`` on frozen data:

=================  =========================================================================
``check``          parse, lower, check and infer every diagram (:mod:`fusionlang.frontend`)
``lower_basis``    ``basis complex`` SO(3) diagrams as SU(2) diagrams with integer spins (IR→IR)
``lower_graphs``   graph diagrams and per-class weights as an orchestrator over plain,
                   one-statement diagrams (:mod:`fusionlang.graphs`); plain diagrams unchanged
``plan``           every plain diagram planned (:mod:`fusionlang.plan`)
``generate``       the Python source of one module (:mod:`fusionlang.codegen`)
=================  =========================================================================

Runs up to ``plan`` or ``generate`` are stored in the disk cache (:mod:`fusionlang.object_cache`),
keyed by the source's name and text, the options, the stage and the compiler's code
(:func:`fusionlang.cache.code_fingerprint`): the next run of the same source, in any process,
reads the result instead of checking, planning and generating again (``FUSIONLANG_NO_CACHE=1``
turns this off with the rest of the cache).

>>> result = run("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }", until="plan")
>>> result.source_code, result.units[0].report.diagram
('', 'd')
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from . import cache, ir
from .codegen import Unit, file_label, generate_source
from .diagnostics import Diagnostic, FusionError
from .frontend import CheckResult, SourceLike, check_source, read_source
from .graphs import GraphModel, as_complex_su2, graph_model, needs_orchestrator, orchestrator_model
from .limits import DEFAULT, Limits
from .object_cache import cached_objects
from .plan import AUTO, Program, StrategyChoice, kept_paths, plan_diagram
from .source import Source

__all__ = ["PASSES", "Compilation", "Lowered", "Options", "plan_unit", "run"]

Stage = Literal["check", "lower_basis", "lower_graphs", "plan", "generate"]
# the stages whose results are worth the disk cache (the earlier ones take milliseconds)
CACHED_STAGES: frozenset[Stage] = frozenset({"plan", "generate"})
# Bump when a stored Compilation changes meaning (code edits change the fingerprint anyway).
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class Options:
    """What a compilation may be told: the file named in ``# FILE:LINE`` comments (default: the
    source's base name), the resource limits, the planner's strategy, and the only diagram to
    lower and plan (default: every diagram)."""

    file: str | None = None
    limits: Limits = DEFAULT
    strategy: StrategyChoice = AUTO
    diagram: str | None = None


@dataclass(frozen=True)
class Lowered:
    """One checked diagram as the planner takes it: ``planned`` (plain, SU(2) for the complex
    basis) and, for graph diagrams, the orchestrator whose calls are the plain diagrams to plan."""

    diagram: ir.Diagram
    planned: ir.Diagram
    graph: GraphModel | None = None


@dataclass(frozen=True)
class Compilation:
    """What the passes have made so far."""

    source: Source
    checked: CheckResult | None = None
    lowered: tuple[Lowered, ...] = ()
    units: tuple[Unit, ...] = ()
    source_code: str = ""

    @property
    def diagrams(self) -> tuple[ir.Diagram, ...]:
        """The checked diagrams (all of them, whatever ``Options.diagram`` selects)."""
        return self.checked.diagrams if self.checked is not None else ()

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """The checker's warnings, then the planner's."""
        found = tuple(d for d in (self.checked.diagnostics if self.checked else ()) if d.severity != "error")
        return found + tuple(w for unit in self.units for p in unit.programs for w in p.warnings)


def check(state: Compilation, options: Options) -> Compilation:
    """Every diagram checked; a :class:`FusionError` with every error otherwise (E114: none)."""
    checked = check_source(state.source, limits=options.limits).raise_for_errors()
    if not checked.diagrams:
        raise FusionError([Diagnostic("E114", f"{state.source.name} has no diagram",
                                      hint="write `diagram NAME { ... }`")])
    if options.diagram is not None:
        checked.diagram(options.diagram)  # an unknown name is a diagnostic
    return replace(state, checked=checked)


def lower_basis(state: Compilation, options: Options) -> Compilation:
    """The selected diagrams, ``basis complex`` ones as SU(2) diagrams."""
    selected = [d for d in state.diagrams if options.diagram in (None, d.name)]
    return replace(state, lowered=tuple(Lowered(d, as_complex_su2(d)) for d in selected))


def lower_graphs(state: Compilation, options: Options) -> Compilation:
    """Graph diagrams (and per-class weights) as orchestrators over plain diagrams."""
    return replace(state, lowered=tuple(_lower_graph(item) for item in state.lowered))


def _lower_graph(item: Lowered) -> Lowered:
    if not needs_orchestrator(item.planned):
        return item
    return replace(item, graph=graph_model(item.planned, kept_paths))


def plan(state: Compilation, options: Options) -> Compilation:
    """Every plain diagram (and every call of an orchestrator) planned."""
    label = options.file or file_label(state.source)
    return replace(state, units=tuple(_plan(item, label, options) for item in state.lowered))


def _plan(item: Lowered, file: str, options: Options) -> Unit:
    def planned(diagram: ir.Diagram) -> Program:
        return plan_diagram(diagram, file, strategy=options.strategy, limits=options.limits)
    if item.graph is None:
        return Unit(item.diagram, (planned(item.planned),))
    programs = {call.attr: planned(call.diagram) for call in item.graph.calls}
    orchestrator = orchestrator_model(item.graph, programs, file)
    return Unit(item.diagram, tuple(programs[call.attr] for call in item.graph.calls), orchestrator)


def generate(state: Compilation, options: Options) -> Compilation:
    """The Python source of one module with every unit's classes."""
    return replace(state, source_code=generate_source(state.source, state.units))


Pass = Callable[[Compilation, Options], Compilation]

PASSES: tuple[tuple[Stage, Pass], ...] = (
    ("check", check),
    ("lower_basis", lower_basis),
    ("lower_graphs", lower_graphs),
    ("plan", plan),
    ("generate", generate),
)


def run(source: SourceLike, name: str | None = None, *, until: Stage = "generate", limits: Limits = DEFAULT,
        strategy: StrategyChoice = AUTO, diagram: str | None = None, file: str | None = None) -> Compilation:
    """Run the passes on ``source`` up to and including ``until``.

    ``name`` names text sources; ``limits`` bound every size (:mod:`fusionlang.limits`);
    ``strategy`` is the planner's (:data:`fusionlang.plan.STRATEGIES`, or by statement index);
    ``diagram`` lowers and plans only that diagram (``generate`` then writes only its classes).
    Raises :class:`FusionError` for user errors. Results up to ``plan`` and ``generate`` come from
    the disk cache when an earlier run stored them (see the module's docstring).
    """
    options = Options(file, limits, strategy, diagram)
    text = read_source(source, name)
    if until not in CACHED_STAGES:
        return _run(text, options, until)
    return cached_objects(_cache_key(text, options, until), lambda: _run(text, options, until),
                          shared={"source": text}, validate=lambda found: _complete(found, text, until))


def _run(source: Source, options: Options, until: Stage) -> Compilation:
    state = Compilation(source)
    for stage, pass_ in PASSES:
        state = pass_(state, options)
        if stage == until:
            break
    return state


def _cache_key(source: Source, options: Options, until: Stage) -> str:
    """Everything a run's result depends on, digested; the code is in the key, the version in the folder."""
    strategy = options.strategy if isinstance(options.strategy, str) else sorted(options.strategy.items())
    described = repr((source.name, source.text, options.file, options.limits, strategy, options.diagram, until))
    digest = hashlib.sha256(described.encode("utf-8", "surrogatepass")).hexdigest()
    return f"fusionlang.compilation/v{_CACHE_FORMAT}/{cache.code_fingerprint()}/{digest}"


def _complete(found: object, source: Source, until: Stage) -> bool:
    """A stored run is usable when it is a Compilation of this very source, as far as ``until``."""
    return (isinstance(found, Compilation) and found.source is source and found.checked is not None
            and bool(found.units) and (until != "generate" or bool(found.source_code)))


def plan_unit(diagram: ir.Diagram, file: str | None = None, *, strategy: StrategyChoice = AUTO,
              limits: Limits = DEFAULT) -> Unit:
    """The lowering and planning passes on one checked diagram.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }").diagram()
    >>> len(plan_unit(d).programs)
    1
    """
    source = diagram.source or Source("", "<string>")
    options = Options(file or (file_label(source)), limits, strategy)
    state = Compilation(source, lowered=(Lowered(diagram, as_complex_su2(diagram)),))
    return plan(lower_graphs(state, options), options).units[0]
