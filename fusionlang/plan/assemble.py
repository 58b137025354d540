"""The ends of a program: inputs declared, weights sourced, outputs laid out, dead steps dropped,
and the report written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .. import ir
from ..diagnostics import Diagnostic
from .builder import Builder, Piece
from .cost import Choice
from .geometry import Entry, leg_entries, statement_text
from .model import StatementModel
from .packing import packed_tables
from .program import (
    LegIO,
    Parameter,
    Program,
    Step,
    Table,
    WeightInput,
    packed_nonzeros,
    sparse_nonzeros,
    table_nonzeros,
)
from .report import OutputReport, PlanReport, StatementReport
from .sparsity import zero_skipping_flops
from .values import leg_pieces, piece_var


def _leg_line(diagram: ir.Diagram, leg: ir.Leg) -> int:
    return diagram.source.position(leg.span.start).line if diagram.source is not None else 0


def declare_inputs(b: Builder) -> tuple[LegIO, ...]:
    """Flatten every input to ``[n, dim]`` (the first steps of ``forward``)."""
    found = []
    for leg in b.diagram.inputs:
        var = b.fresh(leg.name)
        irreps = b.diagram.irreps(leg.name)
        b.steps.append(Step(var, "input", (var,), shape=(-1, irreps.dim), line=_leg_line(b.diagram, leg),
                            comment=f"{leg.name}: {irreps} as [n, {irreps.dim}]"))
        b.memo[("input", leg.name)] = var
        found.append(LegIO(leg.name, var, irreps.dim, str(irreps)))
    return tuple(found)


def weight_sources(b: Builder, models: dict[int, StatementModel]) -> list[Parameter | WeightInput]:
    """Every weighted statement's parameter or ``forward`` argument, named in ``b``."""
    weights: list[Parameter | WeightInput] = []
    for index, model in models.items():
        statement = model.statement
        if not model.weighted:
            continue
        name = b.fresh(f"{'weights' if model.external else 'weight'}_{statement.target}_{index}")
        b.weight_sources[index] = name if model.external else f"self.{name}"
        if model.external:
            weights.append(WeightInput(name, index, model.numel, model.redundant_numel))
            if model.numel:
                b.steps.append(Step(name, "input", (name,), shape=(-1, model.numel), line=statement.line,
                                    comment=f"external weights of {statement_text(statement)} as [n, {model.numel}]"))
        else:
            weights.append(Parameter(name, index, model.numel, model.redundant_numel,
                                     f"{statement_text(statement)}: {len(model.paths)} weighted paths"))
    return weights


def emit_outputs(b: Builder) -> tuple[LegIO, ...]:
    """Every output assembled in its ``mul_ir`` layout from the results written into it."""
    found = []
    for leg in b.diagram.outputs:
        irreps = b.diagram.irreps(leg.name)
        b.line = _leg_line(b.diagram, leg)
        pieces = leg_pieces(b, leg.name)
        args, widths = _output_pieces(b, leg.name, pieces)
        var = b.fresh(leg.name)
        b.steps.append(Step(var, "output", args, widths=widths, shape=(irreps.dim,), line=_leg_line(b.diagram, leg),
                            comment=f"{leg.name}: {irreps} in the mul_ir layout", size=irreps.dim))
        found.append(LegIO(leg.name, var, irreps.dim, str(irreps)))
    return tuple(found)


def _output_pieces(b: Builder, leg: str, pieces: dict[int, Piece]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Per entry a variable and its flat width; runs of mul-1 entries in one variable merge."""
    entries = leg_entries(b.diagram, leg)
    args: list[str] = []
    widths: list[int] = []
    k = 0
    while k < len(entries):
        selected = _select_run(pieces, entries, k)
        if selected:
            first = pieces[k]
            args.append(_select_var(b, first.var, first.select, selected, pieces, entries[k]))
            widths.append(sum(entries[k + j].item.dim for j in range(selected)))
            k += selected
            continue
        run = _mul_one_run(pieces, entries, k)
        if run > 1:
            first, last = pieces[k], pieces[k + run - 1]
            merged = Piece(first.var, first.start, last.start + last.dim - first.start, (1,), first.width)
            args.append(piece_var(b, merged))
            widths.append(merged.dim)
            k += run
            continue
        piece = pieces[k]
        args.append(piece_var(b, piece))
        widths.append(entries[k].item.dim)
        k += 1
    return tuple(args), tuple(widths)


def _select_run(pieces: dict[int, Piece], entries: Sequence[Entry], k: int) -> int:
    """How many entries from ``k`` on are consecutive slices ``var[:, j], var[:, j + 1], ...``."""
    first = pieces[k]
    if first.select < 0:
        return 0
    run = 0
    while k + run < len(entries):
        piece = pieces[k + run]
        if piece.var != first.var or piece.select != first.select + run:
            break
        run += 1
    return run


def _select_var(b: Builder, var: str, start: int, count: int, pieces: dict[int, Piece], entry: Entry) -> str:
    """``var[:, start:start + count]``: consecutive entries of an entry-major result (a view)."""
    total = _producer_entries(b, var)
    if (start, count) == (0, total):
        return var
    piece = pieces[entry.index]
    return b.value(("narrow", var, 1, start, count), f"{var}_part",
                   lambda t: Step(t, "narrow", (var,), start=start, stop=start + count, axis=1,
                                  size=count * math.prod(piece.channels) * piece.dim))


def _producer_entries(b: Builder, var: str) -> int:
    for results in b.results.values():
        for result in results:
            if result.var == var:
                return len(result.entries)
    return -1


def _mul_one_run(pieces: dict[int, Piece], entries: Sequence[Entry], k: int) -> int:
    run = 0
    first = pieces[k]
    position = first.start
    while k + run < len(entries):
        piece = pieces[k + run]
        if piece.channels != (1,) or piece.var != first.var or piece.start != position or piece.select >= 0:
            break
        position += piece.dim
        run += 1
    return run


def statement_report(b: Builder, model: StatementModel, choice: Choice, naive: int,
                     steps: Sequence[Step]) -> StatementReport:
    """What the planner decided for one statement, from its model, the choice and its steps."""
    statement = model.statement
    return StatementReport(
        statement.index, statement.line, statement_text(statement), statement.target, model.all_paths,
        len(model.paths), choice.strategy.label, choice.orders, naive, sum(s.flops for s in steps),
        sum(s.setup_flops for s in steps), sum(1 for s in steps if s.is_op), model.numel, model.redundant_numel,
        tuple((label, round(seconds * 1e3, 3)) for label, seconds in choice.estimates),
        zero_skipping_flops(b.diagram, model))


def build_program(b: Builder, inputs: tuple[LegIO, ...], outputs: tuple[LegIO, ...], models: dict[int, StatementModel],
                  weights: list[Parameter | WeightInput], reports: tuple[StatementReport, ...]) -> Program:
    """The :class:`Program`: live steps, used tables and index buffers, weights and the report."""
    parameters = tuple(w for w in weights if isinstance(w, Parameter))
    externals = tuple(w for w in weights if isinstance(w, WeightInput))
    shared = tuple(sorted(var for var, users in b.users.items() if len({u for u in users}) > 1))
    kept = tuple((index, tuple(p.position for p in m.paths)) for index, m in sorted(models.items()))
    steps = _live_steps(b.steps, [io.var for io in outputs])
    used = {a.removeprefix("self.") for step in steps for a in (*step.args, step.index, step.source)}
    tables = tuple(sorted((t for t in b.tables.values() if t.name in used), key=lambda t: t.name))
    tables, packed_steps = packed_tables(tables, steps, packed_nonzeros)
    reports = _setup_after_packing(reports, steps, packed_steps)
    steps = packed_steps
    report = _plan_report(b, reports, shared, models, tables, sum(1 for s in steps if s.kind == "unpack"))
    indices = tuple(sorted((i for i in b.indices.values() if i.name in used), key=lambda i: i.name))
    warnings = tuple(_zero_warning(b, entry) for entry in b.zero_entries)
    return Program(b.diagram, inputs, outputs, parameters, externals, tables, indices, steps, kept, report, warnings)


def _zero_warning(b: Builder, entry: Entry) -> Diagnostic:
    leg = b.diagram.leg(entry.leg)
    return Diagnostic("E603", f"`{entry.leg}` entry {entry.item} is always zero: every path into it is "
                      "antisymmetric in a leg that is read twice", leg.span, b.diagram.source, severity="warning",
                      hint=f"drop {entry.irrep} from `{entry.leg}`, or read different legs")


def _setup_after_packing(reports: tuple[StatementReport, ...], before: Sequence[Step],
                         after: Sequence[Step]) -> tuple[StatementReport, ...]:
    """The statements' setup FLOPs once products by packed tables skip the zeros."""
    saved: dict[int | None, int] = {}
    for step in before:
        saved[step.statement] = saved.get(step.statement, 0) + step.setup_flops
    for step in after:
        saved[step.statement] = saved.get(step.statement, 0) - step.setup_flops
    return tuple(replace(r, setup_flops=r.setup_flops - saved.get(r.index, 0)) for r in reports)


def _live_steps(steps: Sequence[Step], results: Sequence[str]) -> tuple[Step, ...]:
    """The steps the results depend on (inputs are always kept), in order."""
    needed = set(results)
    kept = []
    for step in reversed(steps):
        if step.target in needed or step.kind == "input":
            kept.append(step)
            needed.update(step.args)
    return tuple(reversed(kept))


def _plan_report(b: Builder, statements: tuple[StatementReport, ...], shared: tuple[str, ...],
                 models: dict[int, StatementModel], tables: tuple[Table, ...], unpacks: int) -> PlanReport:
    outputs = tuple(_output_report(b, leg.name, statements, shared) for leg in b.diagram.outputs)
    ops = sum(1 for s in b.steps if s.is_op)
    # (a sparse table holds only its nonzero values, besides their positions)
    numbers = sum(sparse_nonzeros(t.spec, t.leaf_axes) if t.sparse else t.spec.numel for t in b.tables.values())
    nonzeros = sum(sparse_nonzeros(t.spec, t.leaf_axes) if t.sparse else table_nonzeros(t.spec)
                   for t in b.tables.values())
    ops += unpacks
    packed = {t.name: t for t in tables if t.packed}
    stored = sum(packed.get(t.name, t).numbers for t in b.tables.values())
    return PlanReport(b.diagram.name, outputs, statements, shared, ops, len(b.tables), numbers, nonzeros, stored)


def _upstream(diagram: ir.Diagram, leg: str) -> list[int]:
    found: set[int] = set()
    pending = [leg]
    while pending:
        name = pending.pop()
        for statement in diagram.writers(name):
            if statement.index not in found:
                found.add(statement.index)
                pending += [ref.leg for ref in statement.leaves]
    return sorted(found)


def _output_report(b: Builder, leg: str, statements: tuple[StatementReport, ...],
                   shared: tuple[str, ...]) -> OutputReport:
    indices = _upstream(b.diagram, leg)
    mine = [s for s in statements if s.index in indices]
    steps = [s for s in b.steps if s.statement in indices]
    used = {a for s in steps for a in s.args} | {s.target for s in steps}
    return OutputReport(
        leg, tuple(indices), sum(s.naive_flops for s in mine), sum(s.planned_flops for s in mine),
        sum(s.setup_flops for s in mine), max((s.size for s in steps), default=0),
        sum(s.zero_skipping_flops for s in mine),
        tuple(o for s in mine for o in s.orders), tuple(v for v in shared if v in used),
        sum(s.parameters for s in mine), sum(s.redundant_parameters for s in mine))
