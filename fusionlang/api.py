"""The public compile API: ``.fusion`` source → checked diagrams → plans → one Python module.

>>> result = compile("diagram d { group O3\\n input x : 2x1o\\n output y : 3x1o\\n x -> y }")
>>> module = result.module_class()()
>>> import torch
>>> module(torch.randn(5, 6)).shape
torch.Size([5, 9])

Everything here is a pure function of its input apart from two caches (generated modules in
``sys.modules``, guarded by a lock in :mod:`fusionlang.runtime`; and the last ``_CACHE_SIZE``
compile results), so compiling from several threads is safe. A generated module stays registered
only while something of it is alive (a result still cached, a class, an instance): compiling
thousands of diagrams in one process keeps only those (:func:`fusionlang.runtime.load_generated`).
"""

from __future__ import annotations

import builtins
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import ir, pipeline
from .codegen import Unit, class_name, module_name
from .diagnostics import Diagnostic, FusionError
from .frontend import SourceLike, read_source, select_diagram
from .limits import DEFAULT, Limits
from .plan import AUTO, PlanReport, Program, StrategyChoice, get_strategy
from .source import Source

__all__ = ["CompileResult", "compile", "compile_file", "explain"]

_CACHE_SIZE = 64
_cache: OrderedDict[tuple[Any, ...], CompileResult] = OrderedDict()   # (name, text, limits, strategy)
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class CompileResult:
    """A compiled ``.fusion`` file: the generated module and what led to it.

    ``source_code`` is the generated Python text; ``classes`` maps every diagram's name to its
    ``nn.Module`` class (importable: the module is registered in ``sys.modules`` as
    ``module.__name__`` while any of it is alive); ``diagrams`` are the checked IR; ``diagnostics`` the warnings;
    ``units`` what each diagram compiled to (its planned programs: one, or one per contraction
    of a graph diagram, which an orchestrator class calls).
    """

    source: Source
    source_code: str
    module: ModuleType
    classes: dict[str, type]
    diagrams: tuple[ir.Diagram, ...]
    diagnostics: tuple[Diagnostic, ...]
    units: tuple[Unit, ...]

    @property
    def programs(self) -> tuple[Program, ...]:
        """Every planned program, in class order."""
        return tuple(p for unit in self.units for p in unit.programs)

    def unit(self, name: str | None = None) -> Unit:
        """What one diagram compiled to."""
        wanted = self.diagram(name).name
        return next(u for u in self.units if u.diagram.name == wanted)

    def diagram(self, name: str | None = None) -> ir.Diagram:
        """The checked diagram called ``name`` (the only one when None)."""
        return select_diagram(self.diagrams, name, self.source)

    def module_class(self, name: str | None = None) -> type:
        """The ``nn.Module`` class of one diagram (the only one when ``name`` is None)."""
        return self.classes[self.diagram(name).name]

    def plan(self, name: str | None = None) -> PlanReport:
        """The planner's report for one diagram (graph diagrams: all their contractions)."""
        return self.unit(name).report

    def program(self, name: str | None = None) -> Program:
        """The full plan (steps, tables, weights) of one plain diagram; for a graph diagram,
        see :meth:`unit` (one program per contraction)."""
        unit = self.unit(name)
        if unit.orchestrator is not None:
            raise ValueError(f"`{unit.diagram.name}` is a graph diagram compiled as {len(unit.programs)} "
                             "contractions: use .unit(name).programs")
        return unit.programs[0]

    def standalone_source(self) -> str:
        """The generated module with the runtime it uses inlined: a file that needs only torch
        (``fusionc compile --standalone``; :mod:`fusionlang.standalone`). Deterministic, like
        :attr:`source_code`, whose classes it holds unchanged.

        >>> text = compile("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }").standalone_source()
        >>> "from fusionlang" in text, "class d(runtime.CompiledModule):" in text
        (False, True)
        """
        from .codegen import generate_source

        return generate_source(self.source, self.units, standalone=True)

    def graph(self, name: str | None = None) -> Any:
        """The networkx view of one diagram (:func:`fusionlang.graph.to_networkx`)."""
        from .graph import to_networkx

        return to_networkx(self.diagram(name))

    def svg(self, name: str | None = None) -> str:
        """The drawing of one diagram as SVG text (needs graphviz's ``dot``)."""
        from .render import render_svg

        return render_svg(self.diagram(name))

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a compile result as the drawings of its diagrams, one after the other.

        Without graphviz's ``dot`` (E902) it gives None, and Jupyter falls back to ``__repr__``."""
        drawings = self._drawings()
        return None if drawings is None else "".join(svg for _, svg in drawings)

    def _repr_html_(self) -> str | None:
        """Several diagrams as HTML, each drawing under its name: JupyterLab shows image/svg+xml as
        one image, which holds one drawing. None for one diagram (the SVG) or without ``dot``."""
        drawings = self._drawings() if len(self.diagrams) > 1 else None
        if drawings is None:
            return None
        return "".join(f"<figure><figcaption><code>{name}</code></figcaption>{svg[svg.index('<svg'):]}</figure>"
                       for name, svg in drawings)

    def _drawings(self) -> list[tuple[str, str]] | None:
        """(name, SVG) of every diagram; None without graphviz's ``dot`` (E902)."""
        try:
            return [(diagram.name, self.svg(diagram.name)) for diagram in self.diagrams]
        except FusionError as failure:
            if any(d.code == "E902" for d in failure.diagnostics):
                return None
            raise

    def __repr__(self) -> str:
        return f"<CompileResult of {self.source.name}: diagrams {', '.join(d.name for d in self.diagrams)}>"


def compile(source: SourceLike, *, name: str | None = None,  # noqa: A001
            limits: Limits = DEFAULT, strategy: StrategyChoice = AUTO) -> CompileResult:
    """Compile ``.fusion`` source (text, a ``pathlib.Path``, or a :class:`Source`) to modules.

    ``name`` names text sources in diagnostics and ``# FILE:LINE`` comments; ``limits`` bound
    every size (:mod:`fusionlang.limits`); ``strategy`` forces the planner's strategy where it
    applies (``"auto"``: the time model's choice; a name of ``fusionlang.plan.STRATEGIES``, e.g.
    ``"full/sparse/q"``; a ``KeyError`` names them otherwise). Raises :class:`FusionError` for user
    errors; nothing is written but the disk cache (:mod:`fusionlang.cache`; docs/api.md, "The disk cache").

    >>> compile("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }").classes
    {'d': <class '_fusionlang_generated.source_....d'>}
    """
    if isinstance(strategy, str) and strategy != AUTO:
        get_strategy(strategy)
    text = read_source(source, name)
    key = (text.name, text.text, limits, strategy if isinstance(strategy, str) else tuple(sorted(strategy.items())))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    result = _compile(text, limits=limits, strategy=strategy)
    with _cache_lock:
        _cache[key] = result
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def _compile(text: Source, *, limits: Limits = DEFAULT, strategy: StrategyChoice = AUTO) -> CompileResult:
    from .runtime import load_generated

    compilation = pipeline.run(text, limits=limits, strategy=strategy)
    checked, units, source_code = compilation.checked, compilation.units, compilation.source_code
    assert checked is not None
    module = load_generated(module_name(text.name, source_code), source_code)
    classes = {d.name: getattr(module, class_name(d.name)) for d in checked.diagrams}
    for diagram in checked.diagrams:
        classes[diagram.name].__fusion_diagram__ = diagram  # type: ignore[attr-defined]
    return CompileResult(text, source_code, module, classes, checked.diagrams, compilation.warnings, units)


def compile_file(path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                 standalone: bool = False) -> CompileResult:
    """Compile the ``.fusion`` file ``path`` and write the generated module to ``out_path``
    (``standalone``: the module that needs only torch, :meth:`CompileResult.standalone_source`).

    The file is written atomically (a temporary file in the same folder, then ``os.replace``):
    readers see the old file or the complete new one, never half of it; on any error nothing
    is written.
    """
    result = compile(Path(path))
    target = Path(out_path)
    text = result.standalone_source() if standalone else result.source_code
    try:
        _atomic_write(target, text)
    except OSError as failure:
        raise FusionError([Diagnostic("E901", f"cannot write `{target}`: {failure}",
                                      hint="check that the folder exists and is writable")]) from None
    return result


def _atomic_write(target: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with builtins.open(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def explain(source: SourceLike, name: str | None = None, *, diagram: str | None = None,
            limits: Limits = DEFAULT) -> str:
    """The planner's report as text, for every diagram of ``source`` (or only ``diagram``).

    ``name`` names text sources and ``limits`` bound sizes, as in :func:`compile`. Nothing is
    generated or imported.

    >>> print(explain("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }"))  # doctest: +ELLIPSIS
    plan of d: ...
    """
    planned = pipeline.run(source, name, until="plan", diagram=diagram, limits=limits)
    return "\n\n".join(unit.report.explain() for unit in planned.units)
