"""The front-end driver: text → syntax tree → IR → checks → inference.

``PASSES`` is the ordered tuple of checks run on every lowered diagram; each is a plain function
returning diagnostics, and all of them run so that independent errors are reported together.
Inference runs only on diagrams whose structure is sound.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checks, ir
from .diagnostics import Diagnostic, FusionError, raise_if_errors, render_all, sort_key
from .domains import resolve_domains
from .infer import infer
from .limits import DEFAULT, Limits
from .lower import lower_file
from .resources import check_declared_sizes, check_inferred_sizes
from .source import Source, Span

Check = Callable[[ir.Diagram, Limits], list[Diagnostic]]
PASSES: tuple[Check, ...] = (*checks.STRUCTURE_CHECKS, check_declared_sizes)

SourceLike = str | os.PathLike[str] | Source


@dataclass(frozen=True)
class CheckResult:
    """What checking a file gives: the checked diagrams and every diagnostic, as data."""

    source: Source
    diagrams: tuple[ir.Diagram, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def diagram(self, name: str | None = None) -> ir.Diagram:
        """One diagram by name (the only one when ``name`` is None)."""
        return select_diagram(self.diagrams, name, self.source)

    def raise_for_errors(self) -> CheckResult:
        raise_if_errors(self.diagnostics)
        return self

    def render(self) -> str:
        return render_all(self.diagnostics)

    def _repr_html_(self) -> str:
        """Jupyter shows the diagnostics (rustc-style text), or ``ok`` and the inferred irreps."""
        from html import escape

        return f"<pre>{escape(_summary(self))}</pre>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's text form: the same text."""
        printer.text(_summary(self))


def _summary(result: CheckResult) -> str:
    """The diagnostics; when there is no error, ``ok`` and every diagram's legs (``fusionc ir``)."""
    from .report import ir_report, ir_text

    if not result.ok:
        return result.render()
    found = f"ok: {len(result.diagrams)} diagram{'s' if len(result.diagrams) != 1 else ''}"
    warnings = [result.render()] if result.diagnostics else []
    legs = [ir_text([ir_report(d) for d in result.diagrams])] if result.diagrams else []
    return "\n\n".join([*warnings, found, *legs])


def read_source(source: SourceLike, name: str | None = None) -> Source:
    """A :class:`Source` from text, a path (``pathlib.Path``), or a Source.

    Plain strings are source text; pass a ``Path`` to read a file."""
    if isinstance(source, Source):
        return source
    if isinstance(source, os.PathLike):
        path = Path(source)
        try:
            return Source(path.read_text(encoding="utf-8"), name or str(source))
        except (OSError, UnicodeDecodeError) as failure:
            raise FusionError([Diagnostic("E901", f"cannot read `{path}`: {failure}",
                                          hint="check the path and that the file is UTF-8 text")]) from None
    return Source(source, name or "<string>")


def check_source(source: SourceLike, name: str | None = None, *, limits: Limits = DEFAULT) -> CheckResult:
    """Parse, lower, check and infer every diagram; never raises for user errors.

    ``limits`` bounds every size (:mod:`fusionlang.limits`); a diagram beyond one gets E501. A path
    that cannot be read gives a result with the diagnostic E901 (``compile`` raises it).

    >>> result = check_source("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }")
    >>> result.ok, [len(s.paths) for s in result.diagram("d").statements]
    (True, [2])
    """
    from .parse import parse

    try:
        text = read_source(source, name)
    except FusionError as unreadable:
        return CheckResult(Source("", name or str(source)), (), unreadable.diagnostics)
    problem = _unencodable(text)
    if problem is not None:
        return CheckResult(text, (), (problem,))
    try:
        tree = parse(text)
    except FusionError as failure:
        return CheckResult(text, (), failure.diagnostics)
    lowered, problems = lower_file(tree)
    broken = {d.name for d in lowered if _has_errors(problems, d)}
    diagrams = []
    for diagram in lowered:
        inferred, found = check_diagram(diagram, infer_irreps=diagram.name not in broken, limits=limits)
        problems += found
        if inferred is not None:
            diagrams.append(inferred)
    return CheckResult(text, tuple(diagrams), tuple(sorted(problems, key=sort_key)))


def _unencodable(source: Source) -> Diagnostic | None:
    """E001 at the first lone surrogate: text that is not Unicode cannot be written into a
    module, a file or a terminal (a string given to the API can carry one; a file cannot)."""
    try:
        source.text.encode("utf-8")
    except UnicodeEncodeError as failure:
        return Diagnostic("E001", "the text holds a lone surrogate, which is not a Unicode character",
                          Span(failure.start, failure.start + 1), source, label="here",
                          hint="remove it, or decode the text with errors='replace'")
    return None


def check_diagram(diagram: ir.Diagram, infer_irreps: bool = True,
                  limits: Limits = DEFAULT) -> tuple[ir.Diagram | None, list[Diagnostic]]:
    """Run every pass on one lowered diagram, then inference if the structure is sound."""
    problems = [d for check in PASSES for d in check(diagram, limits)]
    if not infer_irreps or any(d.severity == "error" for d in problems):
        return None, problems
    diagram, problems = resolve_domains(diagram)
    if problems:
        return None, problems
    inferred, problems = infer(diagram, limits)
    if inferred is None:
        return None, problems
    problems = check_inferred_sizes(inferred, limits)
    return (None, problems) if problems else (inferred, [])


def _has_errors(problems: list[Diagnostic], diagram: ir.Diagram) -> bool:
    """Did lowering report an error inside this diagram's block?"""
    return any(d.severity == "error" and d.span is not None
               and diagram.span.start <= d.span.start <= diagram.span.end for d in problems)


def select_diagram(diagrams: Sequence[ir.Diagram], name: str | None, source: Source) -> ir.Diagram:
    """The diagram called ``name``, or the only one; a :class:`FusionError` otherwise."""
    if name is None and len(diagrams) == 1:
        return diagrams[0]
    names = [d.name for d in diagrams]
    if name in names:
        return diagrams[names.index(name)]
    what = f"no diagram `{name}`" if name else f"{len(diagrams)} diagrams: choose one"
    raise FusionError([Diagnostic("E113", f"{what} in {source.name}",
                                  hint=f"the diagrams are {', '.join(names) or '(none)'}")])
