"""Lowering: the surface syntax tree of one diagram → the semantic IR (:mod:`fusionlang.ir`).

Resolves the group, declarations, names and options, and turns argument lists into binary fusion
trees (left-associative unless parentheses give the shape). Irreps of internal edges are left for
:mod:`fusionlang.infer`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import ir, syntax
from .diagnostics import Diagnostic, FusionError, Label
from .groups import GROUPS, Group, Irreps, MulIrrep
from .source import Source, Span

DEFAULT_CHANNELS: ir.Channels = "uvw"


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` did you mean `x`?`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


@dataclass
class _Lowering:
    """The state of lowering one diagram: what was declared so far and what went wrong."""

    source: Source
    group: Group | None = None
    legs: dict[str, ir.Leg] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)

    def report(self, code: str, message: str, span: Span | None, **extra: object) -> None:
        self.problems.append(Diagnostic(code, message, span, self.source, **extra))  # type: ignore[arg-type]


def lower_file(tree: syntax.File) -> tuple[list[ir.Diagram], list[Diagnostic]]:
    """Lower every diagram of a file; diagrams with errors are left out of the result."""
    diagrams, problems = [], []
    seen: dict[str, syntax.Name] = {}
    for block in tree.diagrams:
        if block.name.text in seen:
            problems.append(Diagnostic(
                "E110", f"diagram `{block.name.text}` is defined twice", block.name.span, tree.source,
                label="second definition", related=(Label(seen[block.name.text].span, "first defined here"),),
                hint="rename one of the diagrams"))
        seen.setdefault(block.name.text, block.name)
        diagram, found = lower_diagram(block, tree.source)
        problems += found
        if diagram is not None:
            diagrams.append(diagram)
    return diagrams, problems


def lower_diagram(block: syntax.Diagram, source: Source) -> tuple[ir.Diagram | None, list[Diagnostic]]:
    """Lower one ``diagram`` block.

    Statements with errors stay in the IR (with default options) so that the structural checks
    still see every use of every name; the caller skips inference when there are errors.
    Returns None only when the diagram has no group or no statement at all."""
    state = _Lowering(source)
    state.group = _group(block, state)
    basis = _basis(block, state)
    for decl in _items(block, syntax.LegDecl):
        _declare(decl, state)
    statements = _statements(block, state)
    if state.group is None:
        return None, state.problems
    if not statements:
        state.report("E114", f"diagram `{block.name.text}` has no statements", block.name.span,
                     hint="write a statement such as `x, y -> z`")
        return None, state.problems
    legs = tuple(state.legs.values())
    diagram = ir.Diagram(block.name.text, state.group, legs, tuple(statements), block.span, source, basis)
    _graph_normalization(diagram, state)
    return diagram, state.problems


def _graph_normalization(diagram: ir.Diagram, state: _Lowering) -> None:
    """Graph diagrams normalise their statements' sub-diagrams by e3nn's defaults only (E118)."""
    if not diagram.is_graph:
        return
    for statement in diagram.statements:
        if (statement.irrep_normalization, statement.path_normalization) != ("component", "element"):
            state.report("E118", "graph diagrams take the default normalisation only", statement.span,
                         label="`irrep_normalization`/`path_normalization` set on a graph statement",
                         hint="drop the option, or scale the features outside the module")
        if statement.pairing != "all":
            state.report("E118", "graph diagrams pair every entry (`pairing = all`)", statement.span,
                         label=f"`pairing = {statement.pairing}` on a graph statement",
                         hint="compute it in a diagram without graph legs and pass the result in")


def _items(block: syntax.Diagram, kind: type) -> list:  # type: ignore[type-arg]
    return [item for item in block.items if isinstance(item, kind)]


def _group(block: syntax.Diagram, state: _Lowering) -> Group | None:
    decls = _items(block, syntax.GroupDecl)
    if not decls:
        state.report("E105", f"diagram `{block.name.text}` does not say its group", block.name.span,
                     label="no `group` line", hint="add `group O3` (or SO3, SU2) as the first line")
        return None
    for extra in decls[1:]:
        state.report("E106", "the group is declared twice", extra.span, label="second declaration",
                     related=(Label(decls[0].span, "first declared here"),), hint="keep one `group` line")
    name = decls[0].group
    group = GROUPS.get(name.text)
    if group is None:
        hint = did_you_mean(name.text.upper(), GROUPS) or "the groups are SU2, SO3 and O3"
        state.report("E022", f"unknown group `{name.text}`", name.span, label="not a group", hint=hint)
    return group


def _basis(block: syntax.Diagram, state: _Lowering) -> ir.Basis:
    decls = _items(block, syntax.BasisDecl)
    for extra in decls[1:]:
        state.report("E116", "the basis is declared twice", extra.span, hint="keep one `basis` line")
    if not decls:
        return "real"
    value = decls[0].basis.text
    if value not in ("real", "complex"):
        hint = did_you_mean(value, ("real", "complex")) or "the bases are `real` (e3nn's) and `complex`"
        state.report("E116", f"unknown basis `{value}`", decls[0].basis.span, hint=hint)
        return "real"
    if value == "complex" and state.group is not None and state.group.name != "SO3":
        state.report("E116", f"`basis complex` is for SO3, not {state.group}", decls[0].span,
                     hint="SU2 is always complex; O3 features use e3nn's real basis")
    return value  # type: ignore[return-value]


def _declare(decl: syntax.LegDecl, state: _Lowering) -> None:
    domain = _domain(decl, state)
    irreps, lmax = _declared_type(decl, state)
    classes = decl.type.value if isinstance(decl.type, syntax.Count) else 0
    role: ir.Role = "internal" if decl.kind == "edge" else decl.kind  # type: ignore[assignment]
    for name in decl.names:
        if name.text in state.legs:
            first = state.legs[name.text]
            state.report("E102", f"`{name.text}` is declared twice", name.span, label="declared again",
                         related=(Label(first.span, "first declared here"),),
                         hint="every input, output and edge needs its own name")
            continue
        declared = irreps is not None or role == "index"
        state.legs[name.text] = ir.Leg(name.text, role, irreps, declared, lmax, name.span, domain, classes)


def _domain(decl: syntax.LegDecl, state: _Lowering) -> ir.Domain:
    """The ``[on = nodes | edges]`` option of a declaration ("batch" when absent)."""
    domain: ir.Domain = "batch"
    for option in decl.options:
        if option.key.text != "on":
            hint = did_you_mean(option.key.text, ("on",)) or "declarations take `[on = nodes]` or `[on = edges]`"
            state.report("E111", f"declarations take no option `{option.key.text}`", option.key.span, hint=hint)
        elif option.value.text not in ("nodes", "edges"):
            hint = did_you_mean(option.value.text, ("nodes", "edges")) or "`on` is `nodes` or `edges`"
            state.report("E111", f"`{option.value.text}` is not a value of `on`", option.value.span, hint=hint)
        else:
            domain = option.value.text  # type: ignore[assignment]
    return domain


def _declared_type(decl: syntax.LegDecl, state: _Lowering) -> tuple[Irreps | None, int | None]:
    if decl.kind == "index" or isinstance(decl.type, syntax.Count):
        if decl.kind != "index" or not isinstance(decl.type, syntax.Count) or decl.type.value < 1:
            state.report("E006", "an index input is declared `index NAME : COUNT` with COUNT >= 1", decl.span,
                         hint="e.g. `index species : 3`")
        return None, None
    if isinstance(decl.type, syntax.Lmax):
        if decl.kind not in ("edge", "output"):
            state.report("E006", f"`lmax` constrains inferred edges and outputs, not an {decl.kind}", decl.type.span,
                         hint=f"give the {decl.kind} its irreps, e.g. `{decl.kind} x : 0e + 1o`")
        return None, decl.type.value
    if decl.type is None:
        if decl.kind == "input":
            state.report("E008", "an input needs its irreps", decl.span,
                         hint=f"write `input {decl.names[0].text} : 16x0e + 16x1o`")
        return None, None
    return parse_irreps(decl.type, state), None


def parse_irreps(text: syntax.IrrepsText, state: _Lowering) -> Irreps | None:
    """Irreps text of the file in the diagram's group; errors point into the file."""
    if state.group is None:
        return None
    try:
        irreps = Irreps(text.text, state.group)
    except FusionError as failure:
        state.problems += [d.located(state.source, text.span.start) for d in failure.diagnostics]
        return None
    if not len(irreps):
        state.report("E020", "empty irreps", text.span, hint="write at least one irrep, e.g. `0e`")
        return None
    return irreps


def _statements(block: syntax.Diagram, state: _Lowering) -> list[ir.Statement]:
    written = {s.target.text for s in _items(block, syntax.Statement)}
    known = set(state.legs) | written  # built once: diagrams may have thousands of statements
    return [_statement(index, stmt, known, state)
            for index, stmt in enumerate(_items(block, syntax.Statement))]


def _statement(index: int, stmt: syntax.Statement, known: set[str], state: _Lowering) -> ir.Statement:
    tree = _tree(stmt.args, _Counter(), stmt.span)
    for leaf in ir.leaves(tree):
        _resolve(leaf, known, state)
    _target(stmt.target, state)
    chosen = _options(stmt, tree, state)
    only = _only(stmt, len(ir.leaves(tree)), chosen["paths"], state)
    line = state.source.position(stmt.span.start).line
    return ir.Statement(index, tree, stmt.target.text, chosen["channels"], chosen["weights"],  # type: ignore[arg-type]
                        (), stmt.span, line, chosen["paths"], "aggregate" in chosen,  # type: ignore[arg-type]
                        chosen.get("per"), only, chosen["irrep_normalization"],  # type: ignore[arg-type]
                        chosen["path_normalization"], chosen["pairing"])  # type: ignore[arg-type]


class _Counter:
    """Numbers the leaves of one statement left to right."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def _tree(args: tuple[syntax.Arg, ...], counter: _Counter, span: Span) -> ir.Node:
    """Left-associative fold of an argument list; parentheses give their own subtree."""
    nodes = [_arg(arg, counter) for arg in args]
    tree = nodes[0]
    for node in nodes[1:]:
        tree = ir.Fuse(tree, node, tree.span.join(node.span))
    return tree


def _arg(arg: syntax.Arg, counter: _Counter) -> ir.Node:
    if isinstance(arg, syntax.Leaf):
        via = arg.via.text if arg.via is not None else ""
        span = arg.name.span if arg.via is None else arg.via.span.join(arg.name.span)
        return ir.LeafRef(arg.name.text, counter.take(), span, via)  # type: ignore[arg-type]
    tree = _tree(arg.items, counter, arg.span)
    return ir.Fuse(tree.left, tree.right, arg.span) if isinstance(tree, ir.Fuse) else tree


def _resolve(leaf: ir.LeafRef, known: set[str], state: _Lowering) -> None:
    if leaf.via and leaf.via not in ir.VIAS:
        hint = did_you_mean(leaf.via, ir.VIAS) or "the graph functions are sender, receiver and neighbours"
        state.report("E115", f"unknown graph function `{leaf.via}`", leaf.span, hint=hint)
    leg = state.legs.get(leaf.leg)
    if leg is not None and leg.role == "index":
        state.report("E705", f"`{leaf.leg}` is an index input: it selects weights, it is not a feature",
                     leaf.span, hint=f"use it as `[per = {leaf.leg}]` on a statement")
    if leaf.leg not in known:
        hint = did_you_mean(leaf.leg, known) or f"declare it: `input {leaf.leg} : 0e + 1o`"
        state.report("E101", f"unknown name `{leaf.leg}`", leaf.span, label="not declared or written",
                     hint=hint)


def _target(name: syntax.Name, state: _Lowering) -> None:
    leg = state.legs.get(name.text)
    if leg is not None and leg.role == "input":
        state.report("E108", f"`{name.text}` is an input and cannot be written", name.span,
                     label="written here", related=(Label(leg.span, "declared as an input here"),),
                     hint="write the result into an output or a new internal edge")
    elif leg is None:
        state.legs[name.text] = ir.Leg(name.text, "internal", None, False, None, name.span)


_OPTIONS: dict[str, tuple[str, ...]] = {"channels": ir.CHANNEL_MODES, "weights": ir.WEIGHT_MODES,
                                        "paths": ir.PATHS_MODES, "aggregate": ("sum",), "per": (), "only": (),
                                        "irrep_normalization": ir.IRREP_NORMALIZATIONS,
                                        "path_normalization": ir.PATH_NORMALIZATIONS, "pairing": ir.PAIRINGS}
_DEFAULTS = {"channels": DEFAULT_CHANNELS, "paths": "sum", "irrep_normalization": "component",
             "path_normalization": "element", "pairing": "all"}
_ONLY_HINT = ("write `only = {0 1 -> 2, 1 0 -> 2}`: the entry index of every argument, `->`, the entry index "
              "of the target, counted from 0 in the order the irreps list them")


def _options(stmt: syntax.Statement, tree: ir.Node, state: _Lowering) -> dict[str, str]:
    """The statement's channel and weight modes; bad options are reported and defaulted."""
    chosen: dict[str, str] = {}
    for option in stmt.options:
        _option(option, chosen, state)
    linear = isinstance(tree, ir.LeafRef)
    weights = chosen.get("weights", "path" if linear else "none")
    if linear and weights == "none":
        span = next((o.span for o in stmt.options if o.key.text == "weights"), stmt.span)
        state.report("E112", "a linear map (one argument) needs weights", span,
                     label="`weights = none` leaves nothing to learn",
                     hint="use `weights = path`, `channel` or `external`, or couple with a second argument")
        weights = "path"
    if "per" in chosen and weights != "channel":
        state.report("E705", f"`per = {chosen['per']}` selects a table of per-channel weights, but this "
                     f"statement has `weights = {weights}`", stmt.span, hint="write `weights = channel` with `per`")
    _irrep_normalization(stmt, tree, chosen, state)
    if chosen.get("pairing") == "elementwise":
        _elementwise(stmt, tree, chosen, state)
    if chosen.get("pairing") == "unordered":
        _unordered(stmt, tree, chosen, weights, state)
    return {**_DEFAULTS, **chosen, "weights": weights}


def _unordered(stmt: syntax.Statement, tree: ir.Node, chosen: dict[str, str], weights: str,
               state: _Lowering) -> None:
    """``pairing = unordered``: one argument read twice, no weights, the target laid out by the pairs
    (e3nn's TensorSquare without ``irreps_out``); E118 for what it cannot honour."""
    span = next(o.span for o in stmt.options if o.key.text == "pairing")
    refs = ir.leaves(tree)
    clash = _first_clash(
        (len(refs) != 2 or (refs[0].leg, refs[0].via) != (refs[1].leg, refs[1].via),
         "pairs copies of one argument read twice (`x, x -> y`)"),
        (weights != "none", "has no weights (e3nn's TensorSquare without irreps_out)"),
        ("channels" in chosen, "sets the channels itself"),
        ("paths" in chosen, "lays out the target itself"),
        (_has_only(stmt), "keeps every unordered pair, which `only` cannot choose among"))
    if clash:
        state.report("E118", f"`pairing = unordered` {clash}", span, label="cannot be honoured here",
                     hint="write `x, x -> y  [pairing = unordered]`; with weights, `x, x -> y  [weights = channel]` "
                          "computes the same functions (e3nn's TensorSquare with irreps_out)")
    chosen.update(channels="uvw", paths="split")


def _elementwise(stmt: syntax.Statement, tree: ir.Node, chosen: dict[str, str], state: _Lowering) -> None:
    """``pairing = elementwise``: two arguments with aligned entries, ``uuu``, one target entry per
    path in pair order (``paths = split`` without the sorting); E118 for what it cannot honour."""
    span = next(o.span for o in stmt.options if o.key.text == "pairing")
    refs = ir.leaves(tree)
    clash = _first_clash(
        (len(refs) != 2, "pairs two arguments"),
        (chosen.get("channels", "uuu") != "uuu", "wires one channel through both arguments (`channels = uuu`)"),
        ("paths" in chosen, "lays out the target itself"),
        (_has_only(stmt), "couples aligned entries, which `only` cannot choose among"))
    if clash:
        state.report("E118", f"`pairing = elementwise` {clash}", span, label="cannot be honoured here",
                     hint="write `x, y -> z  [pairing = elementwise]`, with `weights` if wanted and no "
                          "`channels`, `paths` or `only`")
    else:
        _aligned(refs, span, state)
    chosen.update(channels="uuu", paths="split")


def _first_clash(*checks: tuple[bool, str]) -> str:
    """The message of the first check that fails (``""`` when none does)."""
    return next((message for failed, message in checks if failed), "")


def _has_only(stmt: syntax.Statement) -> bool:
    return any(option.key.text == "only" for option in stmt.options)


def _aligned(refs: tuple[ir.LeafRef, ...], span: Span, state: _Lowering) -> None:
    """Both arguments need declared irreps whose entries align: equal multiplicities, entry by entry."""
    found = [state.legs[r.leg].irreps if r.leg in state.legs else None for r in refs]
    irreps = [item for item in found if item is not None]
    if len(irreps) != 2:
        state.report("E118", "`pairing = elementwise` needs the irreps of both arguments declared", span,
                     hint="declare them (inputs always are), e.g. `edge h : 4x0e + 4x1o`")
        return
    copies = [sum(entry.mul for entry in item) for item in irreps]
    if copies[0] != copies[1]:
        state.report("E118", f"`pairing = elementwise` pairs copy i of `{refs[0].leg}` with copy i of "
                     f"`{refs[1].leg}`, but they have {copies[0]} and {copies[1]} copies", span,
                     hint="give both arguments the same number of irreps (sum of multiplicities)")
        return
    first, second = (_split(item, irreps[1 - k]) for k, item in enumerate(irreps))
    if (len(first), len(second)) != (len(irreps[0]), len(irreps[1])):
        state.report("E118", "with `pairing = elementwise`, entry i of each argument must have the same "
                     "multiplicity", span,
                     hint=f"split the entries (the layout is the same): `{refs[0].leg} : {first}`, "
                          f"`{refs[1].leg} : {second}`")


def _split(irreps: Irreps, other: Irreps) -> Irreps:
    """``irreps`` with its entries cut where ``other``'s entries end (e3nn's alignment)."""
    cuts = sorted({sum(item.mul for item in other[:k]) for k in range(1, len(other))}
                  | {sum(item.mul for item in irreps[:k]) for k in range(1, len(irreps))})
    pieces, start = [], 0
    for item in irreps:
        stop = start + item.mul
        edges = [start, *(c for c in cuts if start < c < stop), stop]
        pieces += [MulIrrep(b - a, item.irrep) for a, b in zip(edges, edges[1:], strict=False)]
        start = stop
    return Irreps(pieces, irreps.group)


def _irrep_normalization(stmt: syntax.Statement, tree: ir.Node, chosen: dict[str, str], state: _Lowering) -> None:
    """e3nn's ``irrep_normalization`` scales the coupling of two arguments (E118 elsewhere)."""
    value = chosen.get("irrep_normalization", "component")
    arity = len(ir.leaves(tree))
    if value != "component" and arity != 2:
        span = next(o.span for o in stmt.options if o.key.text == "irrep_normalization")
        what = "a linear map (one argument)" if arity == 1 else f"a fusion tree of {arity} arguments"
        state.report("E118", f"`irrep_normalization = {value}` scales a coupling of two arguments, not {what}",
                     span, label="cannot be honoured here",
                     hint="keep the default (`component`), or couple two arguments per statement through "
                          "internal edges")
        chosen["irrep_normalization"] = "component"


def _option(option: syntax.Option, chosen: dict[str, str], state: _Lowering) -> None:
    key, value = option.key.text, option.value.text
    if key not in _OPTIONS:
        hint = did_you_mean(key, _OPTIONS) or ("statements take `channels`, `weights`, `paths`, `only`, "
                                               "`aggregate`, `per`, `irrep_normalization` and "
                                               "`path_normalization`")
        state.report("E111", f"unknown option `{key}`", option.key.span, hint=hint)
        return
    if key == "only":
        return  # read by _only
    if option.paths is not None:
        state.report("E111", f"`{key}` takes a word, not a list of paths", option.value.span,
                     hint="only `only` takes a path list `{...}`")
        return
    if key == "per":
        _per(option, chosen, state)
        return
    if value not in _OPTIONS[key]:
        allowed = " | ".join(_OPTIONS[key])
        hint = did_you_mean(value, _OPTIONS[key]) or f"`{key}` is one of {allowed}"
        state.report("E111", f"`{value}` is not a value of `{key}`", option.value.span,
                     label=f"expected {allowed}", hint=hint)
    elif key in chosen:
        state.report("E111", f"option `{key}` is given twice", option.span, hint="keep one")
    else:
        chosen[key] = value


def _per(option: syntax.Option, chosen: dict[str, str], state: _Lowering) -> None:
    """``per = NAME``: weights chosen by the value of the index input NAME (e.g. a species)."""
    name = option.value.text
    leg = state.legs.get(name)
    if leg is None or leg.role != "index":
        indices = [n for n, candidate in state.legs.items() if candidate.role == "index"]
        hint = did_you_mean(name, indices) or f"declare it: `index {name} : 3` (the number of classes)"
        state.report("E705", f"`per = {name}` needs an index input `{name}`", option.value.span, hint=hint)
    elif "per" in chosen:
        state.report("E111", "option `per` is given twice", option.span, hint="keep one")
    else:
        chosen["per"] = name


def _only(stmt: syntax.Statement, arity: int, paths: str, state: _Lowering) -> tuple[ir.PathChoice, ...] | None:
    """``only = {0 1 -> 2, ...}``: the paths the statement keeps (E117 when the list is malformed)."""
    given = [o for o in stmt.options if o.key.text == "only"]
    for extra in given[1:]:
        state.report("E111", "option `only` is given twice", extra.span, hint="list every path in one `only`")
    if not given:
        return None
    value = given[0].paths
    if value is None:
        word = given[0].value
        state.report("E117", f"`only` takes a list of paths, not `{word.text}`", word.span, hint=_ONLY_HINT)
        return None
    if paths == "split":
        state.report("E117", "`only` and `paths = split` do not combine", given[0].span,
                     hint="`only` numbers the target's entries, which `paths = split` derives from the paths; "
                          "declare the target's entries and use `paths = sum`")
        return None
    target = state.legs.get(stmt.target.text)
    if target is None or target.irreps is None:
        state.report("E117", f"`only` numbers the entries of `{stmt.target.text}`, whose irreps are inferred",
                     given[0].span, hint=f"declare them, e.g. `output {stmt.target.text} : 8x0e + 8x1o`")
        return None
    return _choices(value, arity, state)


def _choices(value: syntax.PathSet, arity: int, state: _Lowering) -> tuple[ir.PathChoice, ...] | None:
    seen: dict[tuple[tuple[int, ...], int], syntax.PathChoice] = {}
    sound = True
    for choice in value.choices:
        key = (choice.leaves, choice.output)
        if len(choice.leaves) != arity:
            entries = f"{len(choice.leaves)} argument entr{'y' if len(choice.leaves) == 1 else 'ies'}"
            state.report("E117", f"this path gives {entries}, but the statement has {arity} "
                         f"argument{'s' * (arity != 1)}", choice.span,
                         label=f"expected {arity} before `->`", hint=_ONLY_HINT)
            sound = False
        elif key in seen:
            state.report("E117", "this path is listed twice", choice.span, label="listed again",
                         related=(Label(seen[key].span, "first listed here"),), hint="list every path once")
            sound = False
        seen.setdefault(key, choice)
    return tuple(ir.PathChoice(c.leaves, c.output, c.span) for c in seen.values()) if sound else None
