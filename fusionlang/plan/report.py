"""The planner's report (opt_einsum's ``PathInfo``): plain data that formats itself.

>>> from fusionlang.frontend import check_source
>>> from fusionlang.plan import plan_diagram
>>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }").diagram()
>>> plan_diagram(d).report.explain().splitlines()[0].startswith("plan of d: ")
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .batches import LARGE_BATCH, REFERENCE_BATCH


@dataclass(frozen=True)
class StatementReport:
    """What the planner decided for one statement."""

    index: int
    line: int
    text: str
    target: str
    paths: int
    kept_paths: int
    strategy: str
    orders: tuple[str, ...]
    naive_flops: int
    planned_flops: int
    setup_flops: int
    operations: int
    parameters: int
    redundant_parameters: int
    # every strategy tried, with its estimated milliseconds at REFERENCE_BATCH, in order of preference
    estimates_ms: tuple[tuple[str, float], ...] = ()
    zero_skipping_flops: int = 0    # with every coupling zero skipped (fusionlang.plan.sparsity)
    classes: int = 1                # weights per class (`per = INDEX`): `parameters` for each of them
    per: str = ""                   # the index input that selects the class

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class OutputReport:
    """Costs of everything an output needs (every statement it depends on)."""

    leg: str
    statements: tuple[int, ...]
    naive_flops: int
    planned_flops: int
    setup_flops: int
    peak_intermediate: int
    zero_skipping_flops: int
    orders: tuple[str, ...]
    shared: tuple[str, ...]
    parameters: int
    redundant_parameters: int
    classes: int = 1                # as in StatementReport
    per: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class CallLabel:
    """How the report names one planned sub-diagram of a graph diagram: by the statement the
    user wrote (``text``: ``sender(h), Y -> A``; ``target``), the Möbius ``term`` it computes if
    any, and the ``classes`` of its weights when they are per class of the index ``per``."""

    text: str
    target: str
    term: str = ""
    classes: int = 1
    per: str = ""


@dataclass(frozen=True)
class PlanReport:
    """The planner's report on one diagram (FLOPs are per sample unless called setup).

    ``naive``: every path contracted on its own in the worse natural order; ``planned``: what
    the generated forward executes (stacked tables count their zeros), shared steps once."""

    diagram: str
    outputs: tuple[OutputReport, ...]
    statements: tuple[StatementReport, ...]
    shared: tuple[str, ...]
    operations: int
    tables: int
    table_numbers: int
    table_nonzeros: int = 0
    table_stored: int = 0  # numbers the module keeps for them (packed tables: value and position per nonzero)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"diagram": self.diagram, "outputs": [o.to_dict() for o in self.outputs],
                "statements": [s.to_dict() for s in self.statements], "shared": list(self.shared),
                "operations": self.operations, "tables": self.tables, "table_numbers": self.table_numbers,
                "table_nonzeros": self.table_nonzeros, "table_stored": self.table_stored}

    def explain(self) -> str:
        """A plain-text table of the plan (:func:`explain_report`)."""
        return explain_report(self)

    def _repr_html_(self) -> str:
        """Jupyter shows the report as its text table, preformatted."""
        from html import escape

        return f"<pre>{escape(self.explain())}</pre>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's text form: the same table."""
        printer.text(self.explain())


def _stored(report: PlanReport) -> str:
    """Where packed tables make the module keep fewer numbers than the tables hold."""
    if report.table_stored in (0, report.table_numbers):
        return ""
    return f", kept as {report.table_stored:,}"


def combined_report(diagram: str, reports: Sequence[PlanReport], labels: Sequence[CallLabel]) -> PlanReport:
    """One report for a diagram compiled as several planned sub-diagrams (graph diagrams), one
    label per sub-diagram: statements and outputs carry the user's text and names, not the
    sub-diagrams' internal ones."""
    pairs = list(zip(reports, labels, strict=True))
    statements = tuple(_labelled_statement(s, label) for r, label in pairs for s in r.statements)
    outputs = tuple(replace(o, leg=_output_name(r, label), classes=label.classes, per=label.per)
                    for r, label in pairs for o in r.outputs)
    return PlanReport(diagram, outputs, statements, tuple(v for r in reports for v in r.shared),
                      sum(r.operations for r in reports), sum(r.tables for r in reports),
                      sum(r.table_numbers for r in reports), sum(r.table_nonzeros for r in reports),
                      sum(r.table_stored for r in reports))


def _labelled_statement(statement: StatementReport, label: CallLabel) -> StatementReport:
    text = f"{label.text}  ({label.term})" if label.term else label.text
    return replace(statement, text=text, target=label.target, classes=label.classes, per=label.per)


def _output_name(report: PlanReport, label: CallLabel) -> str:
    """``A (line 10)``: the user's target and the line of the statement computed."""
    lines = sorted({s.line for s in report.statements})
    where = f"line {', '.join(map(str, lines))}" + (f", {label.term}" if label.term else "")
    return f"{label.target} ({where})"


def parameters_text(count: int, redundant: int, classes: int = 1, per: str = "") -> str:
    """A parameter count as the report shows it: per class when weights are per class.

    >>> parameters_text(320, 320, 3, "species"), parameters_text(96, 208)
    ('320 x 3 species = 960', '96 (of 208)')
    """
    text = f"{count}" + (f" x {classes} {per} = {count * classes}" if per else "")
    return text + (f" (of {redundant}{' each' if per else ''})" if redundant != count else "")


def explain_report(report: PlanReport) -> str:
    """A plain-text table of a :class:`PlanReport`.

    Per statement: the strategy and its estimated time, naive and planned per-sample FLOPs,
    operations and parameters, and the runners-up; per output: totals, the peak intermediate and
    the shared intermediates.
    """
    rows = [("statement", "strategy", "est ms", "paths", "naive", "planned", "zero-skip", "setup", "ops", "params")]
    for s in report.statements:
        params = parameters_text(s.parameters, s.redundant_parameters, s.classes, s.per)
        paths = f"{s.kept_paths}/{s.paths}" if s.kept_paths != s.paths else f"{s.paths}"
        estimate = f"{s.estimates_ms[0][1]:.3f}" if s.estimates_ms else "-"
        rows.append((f"{s.line}: {s.text}", s.strategy, estimate, paths, f"{s.naive_flops:,}",
                     f"{s.planned_flops:,}", f"{s.zero_skipping_flops:,}", f"{s.setup_flops:,}", str(s.operations),
                     params))
    lines = [f"plan of {report.diagram}: {report.operations} operations, {report.tables} coupling tables "
             f"({report.table_numbers:,} numbers, {_share(report.table_nonzeros, report.table_numbers)} nonzero"
             f"{_stored(report)}); "
             f"FLOPs per sample; est ms: the run-time model at N = {REFERENCE_BATCH} on a CPU (the strategy "
             f"chosen is never far from the fastest estimate there and at N = {LARGE_BATCH}); zero-skip: "
             "every coupling zero skipped", ""]
    lines += _table(rows)
    for s in report.statements:
        if len(s.estimates_ms) > 1:
            others = ", ".join(f"{label} {ms:.3f}" for label, ms in s.estimates_ms[1:4])
            lines.append(f"  line {s.line} runners-up (est ms): {others}")
    lines += [above_naive(s) for s in report.statements if s.planned_flops > s.naive_flops]
    for out in report.outputs:
        ratio = out.naive_flops / out.planned_flops if out.planned_flops else float("inf")
        above_limit = out.planned_flops / out.zero_skipping_flops if out.zero_skipping_flops else 1.0
        lines += ["", f"output {out.leg}: naive {out.naive_flops:,} → planned {out.planned_flops:,} FLOPs per sample "
                  f"({ratio:.2f}x; {above_limit:.2f}x the zero-skipping limit {out.zero_skipping_flops:,}), "
                  f"setup {out.setup_flops:,} per call, peak intermediate "
                  f"{out.peak_intermediate:,} numbers per sample, parameters "
                  f"{parameters_text(out.parameters, out.parameters, out.classes, out.per)}"
                  + (f" (redundant basis: {out.redundant_parameters:,}{' each' if out.per else ''})"
                     if out.redundant_parameters != out.parameters else "")]
        lines += [f"  order: {o}" for o in dict.fromkeys(out.orders)]
        if out.shared:
            lines.append(f"  shared: {', '.join(out.shared)}")
    return "\n".join(lines)


def above_naive(s: StatementReport) -> str:
    """Why a statement may be planned above the naive count: said, not hidden in the table."""
    return (f"  line {s.line} is planned above the naive count ({s.planned_flops / max(s.naive_flops, 1):.2f}x): "
            f"its stacked tables multiply zeros; {s.strategy} was chosen by estimated time (fewer, larger "
            f"operations), not by FLOPs")


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    out = []
    for number, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) if k < 2 else cell.rjust(w)
                             for k, (cell, w) in enumerate(zip(row, widths, strict=False))).rstrip())
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return out
