"""Jupyter support: rich displays of what fusionlang hands a user, and the ``%%fusion`` cell magic.

Compile results, diagrams, check results and plan reports display themselves (their
``_repr_svg_``, ``_repr_html_`` and ``_repr_pretty_`` methods call the helpers here). Drawings need
graphviz's ``dot``: without it (E902) the SVG forms give None and Jupyter shows the text forms.

``%load_ext fusionlang`` (or ``fusionlang.notebook``) adds the ``%%fusion [NAME]`` cell magic,
which compiles the cell and binds every diagram's module class under the diagram's name and the
:class:`~fusionlang.api.CompileResult` as ``NAME`` (``_fusion`` by default). It also draws
compiled modules (instances of the generated classes); :func:`display_module` does that without
the extension. IPython is imported only by the functions that need it.

>>> from fusionlang.frontend import check_source
>>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }").diagram()
>>> print(diagram_text(d).splitlines()[0])
diagram d (group O3)
"""

from __future__ import annotations

import keyword
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import ir
from .diagnostics import FusionError, render_all

if TYPE_CHECKING:
    from .api import CompileResult

__all__ = ["RESULT_NAME", "SOURCE_NAME", "ModuleView", "diagram_svg", "diagram_text", "display_module",
           "fusion_cell", "load_ipython_extension", "module_diagram", "module_svg", "result_name", "svg_or_none"]

# The name the `%%fusion` magic binds the compile result to when the cell names none.
RESULT_NAME = "_fusion"
# The file name that diagnostics of a `%%fusion` cell point at.
SOURCE_NAME = "<cell>"
_USAGE = "usage: %%fusion [NAME], where NAME is the Python name for the compile result (default _fusion)"


# ---------------------------------------------------------------------------------------------
# Displays.


def svg_or_none(draw: Callable[[], str]) -> str | None:
    """What ``draw()`` returns, or None when graphviz's ``dot`` is missing (E902).

    Jupyter then shows the object's text form; every other error propagates.

    >>> svg_or_none(lambda: "<svg/>")
    '<svg/>'
    """
    try:
        return draw()
    except FusionError as failure:
        if any(d.code == "E902" for d in failure.diagnostics):
            return None
        raise


def diagram_svg(diagram: ir.Diagram) -> str | None:
    """The drawing of a checked diagram as SVG text, or None without ``dot``."""
    from .render import render_svg

    return svg_or_none(lambda: render_svg(diagram))


def diagram_text(diagram: ir.Diagram) -> str:
    """A diagram as text: its legs with their irreps and its statements (as ``fusionc ir`` prints).

    A diagram whose irreps were never inferred (its file has errors) gives only its name and group.
    """
    from .report import ir_report, ir_text

    try:
        return ir_text([ir_report(diagram)])
    except ValueError:
        return f"diagram {diagram.name} (group {diagram.group}), irreps not inferred"


def module_diagram(module: Any) -> ir.Diagram | None:
    """The checked diagram a compiled module (instance or class) was generated from, else None.

    ``fusionlang.compile`` sets it on every class as ``__fusion_diagram__``."""
    cls = module if isinstance(module, type) else type(module)
    diagram = getattr(cls, "__fusion_diagram__", None)
    return diagram if isinstance(diagram, ir.Diagram) else None


def module_svg(module: Any) -> str | None:
    """The drawing of a compiled module's diagram; None for other objects or without ``dot``."""
    diagram = module_diagram(module)
    return diagram_svg(diagram) if diagram is not None else None


@dataclass(frozen=True)
class ModuleView:
    """How a compiled module displays: its diagram drawn, or as text (``repr``) without ``dot``.

    >>> import fusionlang
    >>> result = fusionlang.compile("diagram lin { group O3\\n input x : 2x1o\\n output y : 1o\\n x -> y }")
    >>> print(repr(ModuleView(result.module_class()())).splitlines()[0])
    lin: compiled from diagram lin, 2 parameters
    """

    module: Any

    def _repr_svg_(self) -> str | None:
        return module_svg(self.module)

    def __repr__(self) -> str:
        diagram = module_diagram(self.module)
        if diagram is None:
            return repr(self.module)
        name = self.module.__name__ if isinstance(self.module, type) else type(self.module).__name__
        return f"{name}: compiled from diagram {diagram.name}{_parameters(self.module)}\n{diagram_text(diagram)}"


def _parameters(module: Any) -> str:
    """``", 12 parameters"`` for a module instance; nothing for a class."""
    if isinstance(module, type) or not hasattr(module, "parameters"):
        return ""
    return f", {sum(p.numel() for p in module.parameters()):,} parameters"


def display_module(module: Any) -> None:
    """Show a compiled module (instance or class) in Jupyter: its diagram drawn, or its text.

    Needs no ``%load_ext``; generated classes define no display of their own."""
    from IPython.display import display

    display(ModuleView(module))


# ---------------------------------------------------------------------------------------------
# The IPython extension.


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%%fusion`` cell magic and the drawing of compiled modules with ``ipython``."""
    ipython.register_magic_function(lambda line, cell: fusion_cell(ipython, line, cell), magic_kind="cell",
                                    magic_name="fusion")
    svg = ipython.display_formatter.formatters["image/svg+xml"]
    svg.for_type_by_name("torch.nn.modules.module", "Module", module_svg)


def fusion_cell(ipython: Any, line: str, cell: str) -> CompileResult | None:
    """The ``%%fusion [NAME]`` magic: compile ``cell``, bind its classes and the result in ``ipython``.

    Every diagram's ``nn.Module`` class is bound under the diagram's name and the compile result
    under NAME (``_fusion``); the result is returned, so Jupyter draws it. On errors the
    diagnostics are printed (to stderr, no traceback), nothing is bound and None is returned.
    """
    from .api import compile

    target = result_name(line)
    try:
        result = compile(cell, name=SOURCE_NAME)
    except FusionError as failure:
        print(failure, file=sys.stderr)
        return None
    if result.diagnostics:
        print(render_all(result.diagnostics), file=sys.stderr)
    ipython.push({**result.classes, target: result})
    return result


def result_name(line: str) -> str:
    """The Python name a ``%%fusion`` line asks for (``_fusion`` when empty).

    >>> result_name(""), result_name(" layers ")
    ('_fusion', 'layers')
    """
    words = line.split()
    if not words:
        return RESULT_NAME
    if len(words) > 1 or not words[0].isidentifier() or keyword.iskeyword(words[0]):
        from IPython.core.error import UsageError

        raise UsageError(f"%%fusion {line.strip()}: {_USAGE}")
    return words[0]
