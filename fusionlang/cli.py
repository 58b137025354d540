"""The ``fusionc`` command line (also ``python -m fusionlang``).

Exit codes: 0 success, 1 diagnostics (the input has errors), 2 bad usage.
Every subcommand takes ``-`` for standard input and, where a machine reads the output,
``--format json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .cli_io import read_inputs, write_atomically
from .cli_render import EXAMPLE as _RENDER_EXAMPLE
from .cli_render import cmd_render, configure_render
from .diagnostics import Diagnostic, FusionError, diagnostics_json, render_all
from .limits import Limits

EPILOG = """\
examples:
  fusionc check examples/spins.fusion          report errors rustc-style (exit 1 if any)
  fusionc check --format json model.fusion     the same diagnostics as JSON
  fusionc ir examples/product_basis.fusion     inferred irreps of every edge and path counts
  fusionc compile examples/fc_tp.fusion -o fc_tp.py   write a PyTorch module
  fusionc compile --standalone examples/fc_tp.fusion -o fc_tp.py   one that needs only torch
  fusionc explain examples/tree4.fusion        contraction plan: FLOPs, order, parameters
  fusionc tune examples/fc_tp.fusion --batch 4096   time every strategy here, print the fastest
  fusionc render examples/spins.fusion -o spins.svg   draw the diagram
  fusionc fmt --check examples/*.fusion        is every file canonically formatted?
  fusionc train examples/train/ethanol.yaml    train a potential (docs/training.md)
  cat model.fusion | fusionc check -           read standard input
"""


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


def _emit_diagnostics(diagnostics: Sequence[Diagnostic], fmt: str) -> None:
    if fmt == "json":
        print(diagnostics_json(diagnostics))
    elif diagnostics:
        print(render_all(diagnostics), file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    """Parse, check and infer; print diagnostics."""
    from .frontend import check_source

    found: list[Diagnostic] = []
    for source in read_inputs(args.files):
        found += check_source(source, limits=_limits(args)).diagnostics
    _emit_diagnostics(found, args.format)
    if args.format == "text" and not found:
        print(f"ok: {len(args.files)} file{'s' if len(args.files) != 1 else ''} checked", file=sys.stderr)
    return 1 if any(d.severity == "error" for d in found) else 0


def cmd_ir(args: argparse.Namespace) -> int:
    """Print the inferred irreps of every edge and the path counts of every statement."""
    from .frontend import check_source
    from .report import ir_report, ir_text

    reports: list[dict[str, Any]] = []
    found: list[Diagnostic] = []
    for source in read_inputs(args.files):
        result = check_source(source, limits=_limits(args))
        found += result.diagnostics
        reports += [ir_report(d) for d in result.diagrams if args.diagram in (None, d.name)]
    if not found and not reports:
        found.append(_no_diagram(args.diagram))
    if found:
        _emit_diagnostics(found, args.format)
        return 1
    print(json.dumps({"diagrams": reports}, indent=2) if args.format == "json" else ir_text(reports))
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    """Canonical formatting: print, rewrite in place, or ``--check``."""
    from .fmt import format_source

    status = 0
    for source in read_inputs(args.files):
        formatted = format_source(source.text, source.name)
        if args.check:
            if formatted != source.text:
                print(f"would reformat {source.name}", file=sys.stderr)
                status = 1
        elif args.in_place and source.name != "<stdin>":
            if formatted != source.text:
                write_atomically(Path(source.name), formatted)
        else:
            sys.stdout.write(formatted)
    return status


def cmd_compile(args: argparse.Namespace) -> int:
    """Compile one file to a Python module."""
    from . import api

    (source,) = read_inputs([args.file])
    result = api.compile(source, limits=_limits(args), strategy=args.strategy)
    text = result.standalone_source() if args.standalone else result.source_code
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        write_atomically(Path(args.output), text)
        kind = " (standalone: needs only torch)" if args.standalone else ""
        print(f"wrote {args.output}{kind}: {', '.join(result.classes)}", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Show the contraction plan of every diagram."""
    from . import pipeline

    (source,) = read_inputs([args.file])
    reports = [unit.report for unit in pipeline.run(source, until="plan", limits=_limits(args),
                                                    strategy=args.strategy).units
               if args.diagram in (None, unit.diagram.name)]
    if not reports:
        raise FusionError([_no_diagram(args.diagram)])
    if args.format == "json":
        print(json.dumps({"diagrams": [report.to_dict() for report in reports]}, indent=2))
    else:
        print("\n\n".join(report.explain() for report in reports))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Time every strategy of every statement of one plain diagram on this machine."""
    from .tuning import tune

    (source,) = read_inputs([args.file])
    tuning = tune(source, diagram=args.diagram, batch=args.batch, repeat=args.repeat, backward=args.backward,
                  threads=args.threads)
    print(json.dumps(tuning.to_dict(), indent=2) if args.format == "json" else tuning.table())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train an interatomic potential from a YAML or JSON configuration (docs/training.md)."""
    from .training import command  # torch and the data readers: only for this command

    return command(args.config, args.out, args.resume)


def cmd_from_e3nn(args: argparse.Namespace) -> int:
    """Print the `.fusion` source of an e3nn module saved with torch.save (docs/e3nn.md)."""
    from .e3nn_convert import command  # torch and the unpickled e3nn module: only for this command

    return command(args.module, args.output, args.state)


def cmd_lsp(args: argparse.Namespace) -> int:
    """Run the language server over stdin and stdout, for editors (docs/editors.md)."""
    from .lsp import serve  # pygls: only for this command

    serve()
    return 0


def _limits(args: argparse.Namespace) -> Limits:
    """The limits of ``--limit NAME=VALUE`` options (E903 for a malformed one)."""
    try:
        return Limits.parse_overrides(args.limit or [])
    except ValueError as problem:
        raise FusionError([Diagnostic("E903", f"--limit: {problem}",
                                      hint=f"the limits are {', '.join(Limits.names())}")]) from None


def _no_diagram(name: str | None) -> Diagnostic:
    return Diagnostic("E113", f"no diagram `{name}`" if name else "no diagram in the input",
                      hint="`fusionc check FILE` lists the file's problems; the diagram names follow `diagram`")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionc", description="Compile SU(2)/O(3) fusion diagrams into equivariant PyTorch modules.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fusionc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, handler, configure, example in _COMMANDS:
        sub = commands.add_parser(name, help=handler.__doc__, description=handler.__doc__,
                                  epilog=f"example:\n  {example}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        configure(sub)
        sub.set_defaults(handler=handler)
    return parser


def _files(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("files", nargs="+", metavar="FILE", help="`.fusion` files, or - for stdin")


def _format(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def _limit(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--limit", action="append", metavar="NAME=VALUE",
                     help="raise (or lower) a resource limit, e.g. max_l=80 (docs/language.md, Limits)")


def _configure_check(sub: argparse.ArgumentParser) -> None:
    _files(sub)
    _format(sub)
    _limit(sub)


def _configure_ir(sub: argparse.ArgumentParser) -> None:
    _files(sub)
    _format(sub)
    _limit(sub)
    sub.add_argument("--diagram", help="only this diagram")


def _configure_fmt(sub: argparse.ArgumentParser) -> None:
    _files(sub)
    sub.add_argument("--check", action="store_true", help="exit 1 if a file is not formatted")
    sub.add_argument("-i", "--in-place", action="store_true", help="rewrite the files")


def _configure_compile(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("file", metavar="FILE", help="a `.fusion` file, or - for stdin")
    sub.add_argument("-o", "--output", metavar="OUT.py", help="where to write the module (default stdout)")
    sub.add_argument("--standalone", action="store_true",
                     help="inline the runtime and the couplings: the module needs only torch, not fusionlang")
    _strategy(sub)
    _limit(sub)


def _configure_explain(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("file", metavar="FILE", help="a `.fusion` file, or - for stdin")
    sub.add_argument("--diagram", help="only this diagram")
    _strategy(sub)
    _format(sub)
    _limit(sub)


def _configure_tune(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("file", metavar="FILE", help="a `.fusion` file, or - for stdin")
    sub.add_argument("--diagram", help="the plain diagram to tune (default: the file's first)")
    sub.add_argument("--batch", type=_positive, default=1024, help="samples per call (default 1024)")
    sub.add_argument("--repeat", type=_positive, default=5, help="alternating runs per strategy (default 5)")
    sub.add_argument("--threads", type=_positive, help="torch's intra-op threads (default: torch's)")
    sub.add_argument("--backward", action="store_true", help="time forward and backward (default: forward)")
    _format(sub)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _StrategyNames:
    """argparse's ``choices`` for ``--strategy``, read only when the option is given: importing the
    planner to list them would double the time of ``fusionc check``, which never plans."""

    def _names(self) -> list[str]:
        from .plan.strategies import AUTO, STRATEGIES  # torch-free

        return [AUTO, *STRATEGIES]

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def _strategy(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--strategy", default="auto", choices=_StrategyNames(), metavar="NAME",
                     help="plan every statement with this strategy where it applies (default: auto, the time "
                          "model's choice); e.g. full/sparse/q skips every zero of the couplings")


def _configure_from_e3nn(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("module", metavar="MODULE.pt", help="an e3nn TensorProduct or Linear saved whole with torch.save "
                     "(it is unpickled: only files you trust)")
    sub.add_argument("-o", "--output", metavar="OUT.fusion", help="where to write the source (default stdout)")
    sub.add_argument("--state", metavar="STATE.pt", help="also save the converted module's state_dict (its weights)")


def _configure_train(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("config", metavar="CONFIG", help="a .yaml or .json training configuration")
    sub.add_argument("--out", metavar="DIR", help="the output folder (default: `out` of the configuration)")
    sub.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                     help="continue from DIR/checkpoint.pt when it exists (default: yes)")


def _configure_lsp(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--stdio", action="store_true", help="accepted for editor clients; stdio is the only transport")


Configure = Callable[[argparse.ArgumentParser], None]
_COMMANDS: list[tuple[str, Callable[[argparse.Namespace], int], Configure, str]] = [
    ("check", cmd_check, _configure_check, "fusionc check examples/spins.fusion --format json"),
    ("ir", cmd_ir, _configure_ir, "fusionc ir examples/product_basis.fusion"),
    ("compile", cmd_compile, _configure_compile, "fusionc compile examples/fc_tp.fusion -o fc_tp.py"),
    ("explain", cmd_explain, _configure_explain, "fusionc explain examples/tree4.fusion --format json"),
    ("tune", cmd_tune, _configure_tune, "fusionc tune examples/fc_tp.fusion --batch 4096 --repeat 7"),
    ("render", cmd_render, configure_render, _RENDER_EXAMPLE),
    ("fmt", cmd_fmt, _configure_fmt, "fusionc fmt --check examples/*.fusion"),
    ("from-e3nn", cmd_from_e3nn, _configure_from_e3nn, "fusionc from-e3nn tp.pt -o tp.fusion --state tp_state.pt"),
    ("lsp", cmd_lsp, _configure_lsp, "fusionc lsp   # started by an editor, which talks to it over stdio"),
    ("train", cmd_train, _configure_train, "fusionc train examples/train/ethanol.yaml --out runs/ethanol"),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fusionc``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _run(args.handler, args)


def _run(handler: Callable[[argparse.Namespace], int], args: Any) -> int:
    try:
        return handler(args)
    except FusionError as failure:
        _emit_diagnostics(failure.diagnostics, getattr(args, "format", "text"))
        return 1
    except BrokenPipeError:
        return 0
