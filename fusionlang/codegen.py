"""Code generation: planned diagrams → the source of one Python module, compiled to classes.

The logic is here (a plain render model: names, einsum strings, shapes, ordered steps); the
layout is in ``templates/module.py.jinja``. Generated modules import only ``torch`` and
:mod:`fusionlang.runtime`; every source is passed through ``compile()`` before it is returned,
and the same input always gives the same bytes.

>>> from fusionlang.pipeline import run
>>> text = run("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }", "d.fusion").source_code
>>> "class d(runtime.CompiledModule):" in text
True
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import Any

from . import ir
from ._version import __version__
from .diagnostics import Diagnostic, FusionError
from .names import class_name
from .plan import (
    CallLabel,
    PlanReport,
    Program,
    Step,
    Table,
    block_literal,
    combined_report,
    explain_report,
    product_axes,
)
from .source import Source
from .weights import Normaliser, path_normalisers, path_weight_shape

__all__ = ["Unit", "class_name", "e3nn_instructions", "e3nn_mode", "explain_report", "generate_source",
           "module_name", "render_model"]

TEMPLATE = "module.py.jinja"
STANDALONE_TEMPLATE = "standalone_runtime.py.jinja"
_MANY_PIECES = 3  # more output pieces than this are written one per line


def module_name(file: str, source_code: str) -> str:
    """The deterministic ``sys.modules`` name of a generated source.

    >>> module_name("examples/fc_tp.fusion", "x = 1\\n")
    '_fusionlang_generated.fc_tp_...'
    """
    stem = class_name(PurePath(file).stem if not file.startswith("<") else "source")
    digest = hashlib.sha256(source_code.encode("utf-8")).hexdigest()[:16]
    return f"_fusionlang_generated.{stem}_{digest}"


def file_label(source: Source) -> str:
    """The file name used in comments: the base name (stable across checkouts)."""
    return source.name if source.name.startswith("<") else PurePath(source.name).name


# -- units: what one diagram compiles to -------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """One diagram's classes: a planned class, or (graph diagrams and per-class weights) an
    orchestrator (:mod:`fusionlang.graphs`) over one planned class per contraction."""

    diagram: ir.Diagram                      # as checked
    programs: tuple[Program, ...]
    orchestrator: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return class_name(self.diagram.name)

    @property
    def report(self) -> PlanReport:
        if self.orchestrator is None:
            return self.programs[0].report
        labels = [CallLabel(c["text"], c["target"], c["term"], c["classes"], c["per"])
                  for c in self.orchestrator["calls"]]
        return combined_report(self.diagram.name, [p.report for p in self.programs], labels)


# -- the render model ------------------------------------------------------------------------------

def render_model(source: Source, units: Sequence[Unit], *, standalone: bool = False) -> dict[str, Any]:
    """Everything the template substitutes, as plain data (``standalone``: with the runtime
    inlined, :mod:`fusionlang.standalone`)."""
    from .graphs import render_orchestrator

    file = file_label(source)
    classes: list[dict[str, Any]] = []
    for unit in units:
        classes += [_class_model(file, program) for program in unit.programs]
        if unit.orchestrator is not None:
            classes.append({"name": unit.name, "text": render_orchestrator(unit.orchestrator).rstrip("\n")})
    names = [unit.name for unit in units]
    return {
        "version": __version__,
        "file": file,
        "sha256": hashlib.sha256(source.text.encode("utf-8")).hexdigest(),
        "summary": f"PyTorch modules compiled from {file}: {', '.join(names)}.",
        "public": names,
        "classes": classes,
        "standalone": _standalone_runtime(source, units, classes) if standalone else "",
    }


def _standalone_runtime(source: Source, units: Sequence[Unit], classes: list[dict[str, Any]]) -> str:
    """The inlined runtime of a standalone module (``templates/standalone_runtime.py.jinja``).

    Raises :class:`FusionError` (E602) when a class would shadow one of its names."""
    from .standalone import inlined_names, runtime_model

    taken = sorted({c["name"] for c in classes} & inlined_names())
    if taken:
        raise FusionError([Diagnostic(
            "E602", f"cannot write {source.name} as a standalone module: the class `{taken[0]}` would "
            "shadow the inlined runtime's name", hint=f"rename the diagram `{taken[0]}`, or compile without "
            "--standalone")])
    tables = [(t.spec.group, b.tree) for u in units for p in u.programs for t in p.tables for b in t.spec.blocks]
    return _template(STANDALONE_TEMPLATE).render(version=__version__, **runtime_model(tables)).rstrip("\n")


def _class_model(file: str, program: Program) -> dict[str, Any]:
    diagram = program.diagram
    lines = {s.index: s.line for s in diagram.statements}
    complex_weights = diagram.group.is_complex and bool(program.parameters or program.weight_inputs)
    numel = {p.name: p.numel for p in program.parameters} | {w.name: w.numel for w in program.weight_inputs}
    shapes = {t.name: t.spec.shape for t in program.tables}
    steps = copy_shared_slices(split_slices([_step_model(file, s, numel, complex_weights, shapes)
                                             for s in program.steps]))
    return {
        "name": class_name(diagram.name),
        "text": "",
        "diagram": diagram.name,
        "doc": _docstring(file, program),
        "weights_map": _literal({p.statement: p.name for p in program.parameters}),
        "weight_inputs_map": _literal({w.statement: w.name for w in program.weight_inputs}),
        "kept_map": _literal({k: v for k, v in program.kept_paths if v != tuple(range(_paths(program, k)))}),
        "parameters": [{"name": p.name, "numel": p.numel, "comment": p.comment,
                        "where": f"{file}:{lines[p.statement]}"} for p in program.parameters],
        "tables": [_table_model(file, t, lines) for t in program.tables],
        "indices": [{"name": i.name, "starts": _literal(i.starts), "size": i.size, "comment": i.comment,
                     "columns": _literal(i.columns) if i.columns else "", "component_major": i.component_major,
                     "where": f"{file}:{i.line}"} for i in program.indices],
        "arguments": [io.var for io in program.inputs] + [w.name for w in program.weight_inputs],
        "returns": _returns(len(program.outputs)),
        "batch_source": program.inputs[0].var,
        "complex_weights": complex_weights,
        "input_steps": [step for step in steps if step["kind"] == "input"],
        "steps": [step for step in steps if step["kind"] != "input"],
        "results": [io.var for io in program.outputs],
        "result_dims": [io.dim for io in program.outputs],
        "chunk": program.chunk,
        "where": _literal(diagram.name),
        "checks": _input_checks(program),
        "e3nn": _e3nn_surface(program),
    }


# -- e3nn's attributes (docs/e3nn.md) --------------------------------------------------------------

def _e3nn_surface(program: Program) -> dict[str, Any]:
    """e3nn's attributes of a planned class, as Python literals: the irreps of its inputs
    (``irreps_in`` for one, ``irreps_in1``, ``irreps_in2``, ... otherwise) and outputs (a tuple
    for several), its weights, and its paths as e3nn instructions."""
    group = program.diagram.group.name
    inputs = [_irreps_literal(group, io.irreps) for io in program.inputs]
    outputs = [_irreps_literal(group, io.irreps) for io in program.outputs]
    names = ["irreps_in"] if len(inputs) == 1 else [f"irreps_in{k + 1}" for k in range(len(inputs))]
    external = sum(w.numel for w in program.weight_inputs)
    internal = sum(p.numel for p in program.parameters)
    return {
        "irreps": [*zip(names, inputs, strict=True),
                   ("irreps_out", outputs[0] if len(outputs) == 1 else f"({', '.join(outputs)},)")],
        "weight_numel": external if program.weight_inputs else internal,
        "shared_weights": not program.weight_inputs,
        "internal_weights": bool(program.parameters) and not program.weight_inputs,
        "instructions": [_instruction_literal(i) for i in e3nn_instructions(program.diagram, dict(program.kept_paths))],
    }


def _irreps_literal(group: str, irreps: str) -> str:
    return f"runtime.irreps({_literal(group)}, {_literal(irreps)})"


def e3nn_mode(statement: ir.Statement) -> str:
    """e3nn's ``connection_mode`` of a statement's paths: ``uvw`` without weights is e3nn's
    ``uvuv`` (every pair of channels its own output channel).

    >>> s = ir.Statement(0, ir.Fuse(ir.LeafRef("x", 0), ir.LeafRef("y", 1)), "z", "uvw", "none")
    >>> e3nn_mode(s)
    'uvuv'
    """
    return "uvuv" if statement.channels == "uvw" and statement.weights == "none" else statement.channels


def e3nn_instructions(diagram: ir.Diagram, kept: dict[int, tuple[int, ...]] | None = None) -> list[tuple[Any, ...]]:
    """Every path of the diagram's linear maps and two-leaf couplings as e3nn lists it, in
    statement and path order: ``(i_in, i_out, path_shape, path_weight)`` (``o3.Linear``) and
    ``(i_in1, i_in2, i_out, connection_mode, has_weight, path_weight, path_shape)``
    (``o3.TensorProduct``); statements with three or more leaves have no e3nn instruction.
    ``kept`` are the paths that keep weights in reduced statements (``KEPT_PATHS``).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 2x1o\\n input y : 1o\\n output z : 2x0e\\n"
    ...                  " x, y -> z [channels = uvu, weights = channel] }").diagram()
    >>> e3nn_instructions(d)
    [(0, 0, 0, 'uvu', True, 1.0, (2, 1))]
    """
    normalisers = path_normalisers(diagram)
    found: list[tuple[Any, ...]] = []
    for statement in diagram.statements:
        if statement.arity > 2:
            continue
        weighted = (kept or {}).get(statement.index, tuple(range(len(statement.paths))))
        for position, path in enumerate(statement.paths):
            fan_in = normalisers[(statement.index, path)]
            found.append(_instruction(diagram, statement, path, fan_in, position in weighted))
    return found


def _instruction(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path, fan_in: Normaliser,
                 kept: bool) -> tuple[Any, ...]:
    """One path as e3nn's instruction; ``path_shape`` is the path's weight block, or without
    weights the block e3nn gives the mode (``uvuv`` and ``uvu``: ``(m1, m2)``, ``uuu``: ``(m1,)``)."""
    shape = path_weight_shape(diagram, statement, path)
    muls = tuple(diagram.irreps(ref.leg)[entry].mul for ref, entry in zip(statement.leaves, path.leaves, strict=True))
    if statement.is_linear:
        return (path.leaves[0], path.output, shape or (), 1 / math.sqrt(fan_in))
    dim = diagram.irreps(statement.target)[path.output].irrep.dim
    no_weights = muls[:1] if statement.channels == "uuu" else muls
    mode = e3nn_mode(statement)
    if statement.pairing == "unordered" and path.leaves[0] == path.leaves[1]:  # e3nn's TensorSquare
        mode, no_weights = ("uuu", muls[:1]) if path.diagonal else ("uvu<v", (muls[0] * (muls[0] - 1) // 2,))
    return (path.leaves[0], path.leaves[1], path.output, mode, shape is not None and kept,
            math.sqrt(dim / fan_in), no_weights if shape is None else shape)


def _instruction_literal(instruction: tuple[Any, ...]) -> str:
    kind = "LinearInstruction" if len(instruction) == 4 else "Instruction"
    return f"runtime.{kind}({', '.join(_literal(v) for v in instruction)})"


def _input_checks(program: Program) -> list[dict[str, Any]]:
    """What ``forward`` checks of each argument (``runtime.check_feature``): its last dimension,
    what it holds (for the message), whether it is complex (SU(2) features; weights are real)."""
    is_complex = repr(program.diagram.group.is_complex)
    checks = [{"name": io.var, "dim": io.dim, "what": _literal(str(io.irreps)), "complex": is_complex}
              for io in program.inputs]
    return checks + [{"name": w.name, "dim": w.numel, "what": _literal(f"external weights of statement {w.statement}"),
                      "complex": "False"} for w in program.weight_inputs]


def _paths(program: Program, statement: int) -> int:
    return next(len(s.paths) for s in program.diagram.statements if s.index == statement)


def _returns(count: int) -> str:
    return "torch.Tensor" if count == 1 else "tuple[" + ", ".join(["torch.Tensor"] * count) + "]"


def _docstring(file: str, program: Program) -> list[str]:
    diagram = program.diagram
    args = [io.var for io in program.inputs] + [w.name for w in program.weight_inputs]
    outs = ", ".join(io.var for io in program.outputs)
    lines = [f"`{diagram.name}` ({diagram.group}) from {file}.", "",
             f"forward({', '.join(args)}) -> {outs}"]
    lines += [f"    {io.var}: {io.irreps}, [..., {io.dim}]" for io in program.inputs]
    lines += [f"    {w.name}: external weights of statement {w.statement}, [..., {w.numel}]"
              for w in program.weight_inputs]
    lines += [f"    -> {io.var}: {io.irreps}, [..., {io.dim}]" for io in program.outputs]
    if diagram.group.is_complex:
        lines += ["Features are complex (Condon-Shortley basis); weights are real."]
    if program.parameters:
        lines += ["", "Weights (standard normal at construction):"]
        lines += [f"    {p.name}: {p.numel} numbers" + (f" ({p.redundant_numel} without the symmetric reduction)"
                                                          if p.redundant_numel != p.numel else "")
                  for p in program.parameters]
    return lines


def _table_model(file: str, table: Table, lines: dict[int, int]) -> dict[str, Any]:
    spec = table.spec
    return {
        "name": table.name, "group": spec.group, "shape": _literal(spec.shape),
        "blocks": [_literal(block_literal(b)) for b in spec.blocks],
        "path_axes": _literal(spec.path_axes) if spec.path_axes else "",
        "symmetrize": _literal(spec.symmetrize) if spec.symmetrize else "",
        "columns": _literal(spec.columns) if spec.columns else "",
        "comment": table.comment, "where": f"{file}:{lines[table.statement]}",
        "leaf_axes": table.leaf_axes if table.sparse else 0, "packed": table.packed,
        "products": _literal(table.products) if table.products else "", "dense": table.dense,
    }


def _step_model(file: str, step: Step, numel: dict[str, int], complex_weights: bool,
                table_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    model: dict[str, Any] = {
        "kind": step.kind, "target": step.target, "args": list(step.args), "equation": step.equation,
        "shape": list(step.shape), "start": step.start, "stop": step.stop, "index": step.index, "axis": step.axis,
        "comment": step.comment, "where": f"{file}:{step.line}", "contiguous": False,
        "short_sums": step.short_sums,
    }
    if step.kind == "weights":
        model["weights"] = _weights_expression(step, numel, complex_weights)
    if step.kind == "output":
        model["layout"] = _layout_expression(step)
    if step.kind == "cat":
        model["parts"] = [_aligned(arg, view) for arg, view in zip(step.args, step.views, strict=True)] \
            if step.views else list(step.args)
    if step.kind == "gather":
        permutation = step.views[0][0] if step.views else ()
        model["source"] = _aligned(step.args[0], (permutation, ())) if permutation else step.args[0]
    if step.kind == "packed":
        model["call"] = _packed_call(step, table_shapes[step.args[0].removeprefix("self.")])
    if step.kind == "mul":
        model["product"] = " * ".join(_aligned(arg, view) for arg, view in zip(step.args, step.views, strict=False))
        model["comment"] = f"{step.comment} [{step.equation}]" if step.comment else step.equation
    return model


_SLICE_AXIS = {"entry": 1}  # `entry` slices an input `[n, dim]` along its last axis


def split_slices(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several slices of one tensor along one axis become one ``torch.split`` and indexing.

    Why: in backward every ``narrow``/``[:, a:b]`` slice allocates and zero-fills a gradient as
    large as the whole tensor, while ``split`` has one backward that concatenates the pieces'
    gradients (at N = 16384 the fills were 45% of a channelwise product's backward)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for position, step in enumerate(steps):
        # buffers (``self.…``) have no backward to save, and their pieces could not be named
        if step["kind"] in ("narrow", "entry") and not step["args"][0].startswith("self."):
            axis = _SLICE_AXIS.get(step["kind"], step["axis"])
            groups.setdefault((step["args"][0], axis), []).append(position)
    inserts: dict[int, dict[str, Any]] = {}
    for (source, axis), positions in groups.items():
        ranges = sorted((steps[p]["start"], steps[p]["stop"], p) for p in positions)
        if len(ranges) < 2 or any(a[1] > b[0] for a, b in zip(ranges, ranges[1:], strict=False)):
            continue
        inserts[min(positions)] = _split_step(steps, source, axis, ranges)
    out: list[dict[str, Any]] = []
    for position, step in enumerate(steps):
        if position in inserts:
            out.append(inserts[position])
        out.append(step)
    return out


def copy_shared_slices(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A slice of an input's rows that two or more products read is copied once, contiguous.

    Why: a slice ``[n, u, d]`` of a wider row keeps the row's stride, so ``n`` and ``u`` cannot be
    merged into one axis, which ``einsum`` needs for its matrix products: each product copied the
    slice again (the 64-channel MACE product basis: 132 computing operations per forward, 111 with
    the slices copied once)."""
    readers = Counter(arg for step in steps if step["kind"] == "einsum" and len(step["args"]) == 2
                      for arg in set(step["args"]))
    widths = {step["target"]: step["shape"][1] for step in steps if step["kind"] == "input"}

    def strided(step: dict[str, Any]) -> bool:
        if step["kind"] == "entry":   # a slice of the whole row is the row itself
            return step["stop"] - step["start"] != widths.get(step["args"][0])
        return step["kind"] == "piece" and step["view"]
    return [{**step, "contiguous": True} if strided(step) and readers[step["target"]] >= 2 else step
            for step in steps]


def _split_step(steps: list[dict[str, Any]], source: str, axis: int,
                ranges: list[tuple[int, int, int]]) -> dict[str, Any]:
    """The ``split`` step, and each slice rewritten in place as a piece of it."""
    target = f"{source}_pieces"
    sizes, edge = [], 0
    for start, stop, position in ranges:
        if start > edge:
            sizes.append(str(start - edge))
        piece = steps[position]
        view = piece["kind"] == "entry"
        steps[position] = {**piece, "kind": "piece", "args": [target], "index": len(sizes), "view": view}
        sizes.append(str(stop - start))
        edge = stop
    sizes.append(f"{source}.shape[{axis}] - {edge}")
    first = steps[ranges[0][2]]
    return {"kind": "split", "target": target, "args": [source], "sizes": ", ".join(sizes), "axis": axis,
            "comment": f"{source} cut once along axis {axis} (one backward for every piece)",
            "where": first["where"], "shape": [], "equation": "", "start": 0, "stop": 0, "index": ""}


def _packed_call(step: Step, shape: tuple[int, ...]) -> str:
    """``runtime.packed_product(...)`` for a ``packed`` step: the other operand's shared axes (in
    the table's order) then its own as a matrix; the result's axes put in the equation's order."""
    found = product_axes(step.equation, step.shape, shape)
    result, sizes = step.equation.split("->")[1], found.sizes
    permutation = tuple(found.theirs.index(i) for i in found.shared + found.own)
    matrix = (math.prod(sizes[i] for i in found.shared), math.prod(sizes[i] for i in found.own))
    other = _aligned(step.args[1], (permutation if permutation != tuple(range(len(found.theirs))) else (), ()))
    other += f".reshape({matrix[0]}, {matrix[1]})"
    axes = [i for i in found.mine if i in result] + found.own
    table, buffers = step.args[0], step.index
    text = (f"runtime.packed_product({table}, {buffers}_rows, {buffers}_cols, {other}, "
            f"[{', '.join(str(sizes[i]) for i in axes)}])")
    if axes != list(result):
        text += f".permute({', '.join(str(axes.index(i)) for i in result)}).contiguous()"
    return text


def _aligned(var: str, view: tuple[tuple[int, ...], tuple[int, ...]]) -> str:
    permutation, shape = view
    text = var + (f".permute({', '.join(map(str, permutation))})" if permutation else "")
    return text + (f".view({', '.join(map(str, shape))})" if shape else "")


def _weights_expression(step: Step, numel: dict[str, int], complex_weights: bool) -> str:
    """``self.w[a:b].view(...)`` (or a gather), cast to complex for SU(2), times a scale."""
    name = step.source.removeprefix("self.")
    external = not step.source.startswith("self.")
    # A module's own weights are the same for every sample: a selection of them never needs the
    # feature gathers' traced operation (runtime.select_weights)
    select = "runtime.index_select" if external else "runtime.select_weights"
    if step.index and step.stop:
        blocks = f"{'-1, ' if external else ''}{numel[name] // step.stop}, {step.stop}"
        text = f"{select}({step.source}.view({blocks}), -2, {step.index})"
    elif step.index:
        text = f"{select}({step.source}, -1, {step.index})"
    elif (step.start, step.stop) == (0, numel[name]):
        text = step.source
    else:
        text = f"{step.source}[{':, ' if external else ''}{step.start}:{step.stop}]"
    text += f".view({', '.join(map(str, step.shape))})"
    if complex_weights:
        text += ".to(cdtype)"
    if step.scale is not None:
        text += f" * {step.scale!r}"
    return text


def _layout_expression(step: Step) -> str:
    pieces = [f"{arg}.reshape(-1, {width})" for arg, width in zip(step.args, step.widths, strict=False)]
    if len(pieces) == 1:
        return pieces[0]
    # runtime.join: a double backward of torch.cat zero-fills a whole-size gradient per piece
    if len(pieces) <= _MANY_PIECES:
        return f"runtime.join([{', '.join(pieces)}], -1)"
    inner = "".join(f"\n            {p}," for p in pieces)
    return f"runtime.join([{inner}\n        ], -1)"


def _literal(value: Any) -> str:
    """A Python literal with double-quoted strings (deterministic, like the rest of the module)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in sorted(value.items())) + "}"
    return repr(value)


# -- rendering -------------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def _template(name: str = TEMPLATE) -> Any:
    import jinja2

    from ._resources import read_resource

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True, autoescape=False)
    return environment.from_string(read_resource("templates", name))


def generate_source(source: Source, units: Sequence[Unit], *, standalone: bool = False) -> str:
    """The Python source of one module: one class per planned diagram, and for graph diagrams
    the planned classes of their terms followed by the orchestrator; checked by ``compile()``.
    ``standalone``: a module that needs only torch (:mod:`fusionlang.standalone`).

    Raises :class:`FusionError` (E602) if the generated text is not valid Python (a bug).
    """
    text = _template().render(**render_model(source, units, standalone=standalone))
    try:
        compile(text, f"<fusionlang-generated {file_label(source)}>", "exec")
    except SyntaxError as failure:
        raise FusionError([Diagnostic("E602", f"generated code for {source.name} does not compile: {failure}",
                                      hint="this is a bug in fusionlang; please report it")]) from failure
    return text
