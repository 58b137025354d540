"""``fusionc render``: draw a diagram, or its contraction plan, as SVG, PNG, PDF or DOT.

Wired into :mod:`fusionlang.cli` as ``("render", cmd_render, configure_render, EXAMPLE)``.
Exit codes: 0 written, 1 diagnostics (errors in the file, E902 without graphviz, E901 on a failed
write), 2 bad usage (E903, e.g. PNG without ``-o``, or ``-o`` with a suffix that names no format).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_io import read_inputs, write_atomically
from .diagnostics import Diagnostic, FusionError, render_all
from .source import Source

EXAMPLE = "fusionc render examples/spins.fusion -o spins.svg"
FORMATS = ("svg", "png", "pdf", "dot")
_SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
_BINARY = ("png", "pdf")


class _Usage(Exception):
    """Bad command-line usage (exit code 2)."""


def configure_render(sub: argparse.ArgumentParser) -> None:
    """Arguments of ``fusionc render``."""
    sub.add_argument("file", metavar="FILE", help="a `.fusion` file, or - for stdin")
    sub.add_argument("-o", "--output", metavar="OUT.svg",
                     help="where to write; the suffix (.svg, .png, .pdf, .dot) chooses the format "
                          "(default stdout for svg and dot; required for png and pdf)")
    sub.add_argument("--diagram", metavar="NAME", help="the diagram to draw (needed when the file has several)")
    sub.add_argument("--plan", action="store_true", help="draw the contraction plan instead of the diagram")
    sub.add_argument("--format", choices=FORMATS, default=None,
                     help="svg, png, pdf or dot (default: from the suffix of -o, else svg)")


def cmd_render(args: argparse.Namespace) -> int:
    """Draw a diagram (or, with --plan, its contraction plan) as SVG, PNG, PDF or DOT."""
    try:
        return _render(args)
    except FusionError as failure:
        print(render_all(failure.diagnostics), file=sys.stderr)
        return 1
    except _Usage as problem:
        print(Diagnostic("E903", str(problem), hint="see `fusionc render --help`").render(), file=sys.stderr)
        return 2


def output_format(args: argparse.Namespace) -> str:
    """``--format``, else the suffix of ``-o`` (refused when it names no format), else svg."""
    if args.format:
        return str(args.format)
    if args.output in (None, "-"):
        return "svg"
    suffix = Path(args.output).suffix.lower()
    if suffix not in _SUFFIXES:
        raise _Usage(f"cannot tell the format of `{args.output}` from its suffix: end it in "
                     f"{', '.join(_SUFFIXES)}, or add --format")
    return _SUFFIXES[suffix]


def _render(args: argparse.Namespace) -> int:
    fmt = output_format(args)
    to_stdout = args.output in (None, "-")
    if fmt in _BINARY and to_stdout:
        raise _Usage(f"{fmt.upper()} output needs a file: add `-o OUT.{fmt}`")
    (source,) = read_inputs([args.file])
    name, drawing = _drawing(source, args.diagram, args.plan, fmt)
    if to_stdout:
        sys.stdout.write(drawing if isinstance(drawing, str) else drawing.decode("utf-8"))
    else:
        write_atomically(Path(args.output), drawing)
        what = "plan of diagram" if args.plan else "diagram"
        print(f"wrote {args.output}: {what} {name} as {fmt}", file=sys.stderr)
    return 0


def _drawing(source: Source, name: str | None, plan: bool, fmt: str) -> tuple[str, str | bytes]:
    """The name of the diagram and its drawing (or its plan's), after checking the file."""
    from . import pipeline, render

    result = pipeline.run(source, until="check").checked
    assert result is not None
    if result.diagnostics:
        print(result.render(), file=sys.stderr)
    diagram = result.diagram(name)
    if not plan:
        return diagram.name, render.render(diagram, render.as_format(fmt))
    unit = pipeline.plan_unit(diagram)
    if unit.orchestrator is None:
        return diagram.name, render.render_plan(unit.programs[0], render.as_format(fmt))
    dot = render.dot_text(render.plans_graph(unit.programs, f"plan of {diagram.name}"))
    return diagram.name, render.from_dot(dot, render.as_format(fmt))
