"""Tree shapes: move a statement's weights exactly from one fusion tree shape to another.

``a, b, c -> out`` may be fused as ``(a, b), c`` or as ``a, (b, c)``. When every intermediate
irrep is kept, both shapes span the same equivariant maps, and the change of basis between their
paths is the recoupling (the F-move: ``sqrt((2 j12 + 1)(2 j23 + 1))`` times a 6j symbol, up to
phases and the normalisation of docs/semantics.md). It is computed here from the dense path
couplings, not from a formula: per block of paths with the same leaf entries and output entry,
``M = D_B^+ D_A`` where ``D[p]`` is path ``p``'s coupling times its ``1 / sqrt(fan_in)``, and the
fit is checked to be exact (a target that cannot express a path is refused, naming it).

An internal edge written by one unweighted ``channels = uuu`` statement is inlined where the two
diagrams' leaves differ, so a chain ``(a, b) -> ab; ab, c -> out`` compares with ``(a, b), c ->
out`` (docs/recoupling.md says what that can and cannot express).

>>> from fusionlang.frontend import check_source
>>> text = '''diagram l { group SU2
...   input a, b, c : 1/2
...   output out : 1/2
...   (a, b), c -> out [channels = uuu, weights = path] }
... diagram r { group SU2
...   input a, b, c : 1/2
...   output out : 1/2
...   a, (b, c) -> out [channels = uuu, weights = path] }'''
>>> checked = check_source(text)
>>> recoupling_matrix(checked.diagram("l"), checked.diagram("r"))  # rows j23 = 0, 1; columns j12 = 0, 1
tensor([[-0.5000,  0.8660],
        [ 0.8660,  0.5000]], dtype=torch.float64)
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import torch

from . import ir
from .importers import diagram_of, kept_paths, statement_parameter, to_module_layout
from .path_tensors import path_coupling
from .plan import statement_model
from .plan.symmetric import group_permutations
from .weights import Normaliser, path_normalisers, path_weight_shape, split_weights

__all__ = ["Recoupling", "map_weights", "move_weights", "recouple", "recoupling_matrix"]

# relative residual above which a path counts as not expressible (exact fits give ~1e-15)
TOLERANCE = 1e-9
_LETTERS = string.ascii_letters
Key = tuple[tuple[int, ...], int]


@dataclass(frozen=True)
class _Leaf:
    """A leaf that stays a leaf: it reads ``ref.leg``."""

    ref: ir.LeafRef


@dataclass(frozen=True)
class _Inline:
    """An internal edge replaced by the unweighted statement that writes it (its children)."""

    statement: ir.Statement
    children: tuple[_Leaf | _Inline, ...]


_Item = _Leaf | _Inline


@dataclass(frozen=True)
class _Side:
    """One statement of one diagram, with the leaves inlined to compare it with the other side."""

    diagram: ir.Diagram
    statement: ir.Statement
    children: tuple[_Item, ...]
    normalisers: dict[tuple[int, ir.Path], Normaliser]
    groups: tuple[tuple[int, ...], ...]
    kept: frozenset[int]
    # the tensors of inlined statements, by (id of the item, entry, first position, dense positions)
    cache: dict[tuple[int, int, int, frozenset[int]], torch.Tensor]


@dataclass(frozen=True)
class Recoupling:
    """The exact map between one statement's paths in two diagrams.

    ``matrix[q, p]``: the weight of target path ``q`` per unit weight of source path ``p`` (zero
    rows for target paths a reduced statement stores no weights for); ``residual``: the largest
    relative residual of the fit; ``source_inlined`` / ``target_inlined``: indices of the
    unweighted statements folded into the comparison."""

    matrix: torch.Tensor
    residual: float
    source_statement: int
    target_statement: int
    source_inlined: frozenset[int]
    target_inlined: frozenset[int]


def recoupling_matrix(source: Any, target: Any, statement: int = 0) -> torch.Tensor:
    """``M[q, p]`` (float64): statement ``statement`` of ``source`` with weights ``W`` computes
    what its counterpart in ``target`` computes with weights ``M @ W`` (per path, per channel).

    Both are checked diagrams (or modules that carry theirs). The counterpart writes the same
    leg, at the same rank among its writers. Raises ``ValueError`` naming a source path that the
    target cannot express (an ``lmax`` cut, or an intermediate irrep its tree does not keep).

    >>> from fusionlang.frontend import check_source
    >>> text = '''diagram l { group O3
    ...   input a, b, c : 1o
    ...   output out : 1o
    ...   (a, b), c -> out [channels = uuu, weights = path] }
    ... diagram r { group O3
    ...   input a, b, c : 1o
    ...   output out : 1o
    ...   a, (b, c) -> out [channels = uuu, weights = path] }'''
    >>> checked = check_source(text)
    >>> m = recoupling_matrix(checked.diagram("l"), checked.diagram("r"))
    >>> m.shape, bool(torch.allclose(m @ m.T, torch.eye(3, dtype=torch.float64)))
    (torch.Size([3, 3]), True)
    """
    return recouple(diagram_of(source), diagram_of(target), statement).matrix


def recouple(source: ir.Diagram, target: ir.Diagram, statement: int = 0) -> Recoupling:
    """:func:`recoupling_matrix` with its residual and the statements it inlined.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group SU2\\n input a, b, c : 1/2\\n output o : 1/2\\n"
    ...                  " a, b, c -> o [channels = uuu, weights = path] }").diagram()
    >>> found = recouple(d, d)  # the same shape: the identity
    >>> bool(torch.allclose(found.matrix, torch.eye(2, dtype=torch.float64))), found.residual < 1e-12
    (True, True)
    """
    first = _statement(source, statement)
    partner = _partner(source, first, target)
    if partner is None:
        raise ValueError(f"`{target.name}` has no statement writing `{first.target}` to match statement "
                         f"{statement} of `{source.name}`")
    a, b = _align(_side(source, first), _side(target, partner))
    _check_compatible(a, b)
    dense = _dense_positions(a, b)
    blocks_a, blocks_b = _blocks(a, dense), _blocks(b, dense)
    matrix = torch.zeros(len(b.statement.paths), len(first.paths), dtype=torch.float64)
    worst = 0.0
    for key, columns in blocks_a.items():
        rows = [q for q in blocks_b.get(key, []) if q in b.kept]
        block, residual = _fit_block(a, b, dense, columns, rows)
        matrix[torch.tensor(rows, dtype=torch.long).unsqueeze(1), torch.tensor(columns, dtype=torch.long)] = block
        worst = max(worst, residual)
    return Recoupling(matrix, worst, first.index, partner.index, _inlined(a), _inlined(b))


def map_weights(weights: torch.Tensor, source: Any, target: Any, statement: int = 0) -> torch.Tensor:
    """A statement's weights ``[..., numel]`` in ``source``'s layout (docs/semantics.md: every
    path's block in path order) mapped to its counterpart's in ``target``, exactly: internal
    weights, external ones (``forward`` arguments) or per-class tables alike.

    >>> from fusionlang.frontend import check_source
    >>> text = '''diagram l { group O3
    ...   input a, b, c : 2x1o
    ...   output out : 2x1o
    ...   (a, b), c -> out [channels = uuu, weights = channel] }
    ... diagram r { group O3
    ...   input a, b, c : 2x1o
    ...   output out : 2x1o
    ...   a, (b, c) -> out [channels = uuu, weights = channel] }'''
    >>> checked = check_source(text)
    >>> map_weights(torch.ones(5, 6, dtype=torch.float64), checked.diagram("l"), checked.diagram("r")).shape
    torch.Size([5, 6])
    """
    found = recouple(diagram_of(source), diagram_of(target), statement)
    return _apply(found, diagram_of(source), diagram_of(target), weights)


def _apply(found: Recoupling, source: ir.Diagram, target: ir.Diagram, weights: torch.Tensor) -> torch.Tensor:
    """``M`` applied block by block: target block ``q`` is ``sum_p M[q, p] W_p``."""
    a, b = _statement(source, found.source_statement), _statement(target, found.target_statement)
    if a.weights == "none" or b.weights == "none":
        raise ValueError(f"statement {a.index} has no weights to map (`weights = none`)")
    blocks = split_weights(source, a, weights.to(torch.float64))
    lead = tuple(weights.shape[:-1])
    out = []
    for q, path in enumerate(b.paths):
        shape = path_weight_shape(target, b, path) or ()
        total = torch.zeros((*lead, *shape), dtype=torch.float64)
        for p in found.matrix[q].nonzero().flatten().tolist():
            total = total + found.matrix[q, p] * blocks[p]
        out.append(total.reshape(*lead, -1))
    return torch.cat(out, dim=-1).to(weights.dtype)


def move_weights(module_from: Any, module_to: Any, diagram_from: ir.Diagram | None = None,
                 diagram_to: ir.Diagram | None = None) -> Any:
    """Write ``module_from``'s internal weights, mapped, into ``module_to`` (returned), so that
    both compute the same function of their inputs; raises ``ValueError`` where they cannot.

    The diagrams are the checked diagrams the modules were compiled from (needed unless the
    modules carry them). Every statement of ``diagram_to`` is matched with the statement of
    ``diagram_from`` that writes the same leg (unweighted ``uuu`` feeders inlined where the
    leaves differ); an unweighted statement must compute the same function in both. External
    weights stay ``forward`` arguments: map them with :func:`map_weights`.

    >>> move_weights(trained, Reassociated(dtype=torch.float64), d_from, d_to)  # doctest: +SKIP
    """
    source, target = diagram_from or diagram_of(module_from), diagram_to or diagram_of(module_to)
    _check_diagrams(source, target)
    paired: list[Recoupling] = []
    writes: list[tuple[torch.Tensor, torch.Tensor]] = []
    for stmt in target.statements:
        partner = _partner(target, stmt, source)
        if partner is not None:
            paired.append(recouple(source, target, partner.index))
            writes += _mapped_parameter(paired[-1], module_from, module_to, source, target)
    _check_all_used(source, target, paired)
    with torch.no_grad():  # only once everything is known to fit
        for parameter, value in writes:
            parameter.copy_(value.reshape(parameter.shape).to(parameter.dtype))
    return module_to


def _mapped_parameter(found: Recoupling, module_from: Any, module_to: Any, source: ir.Diagram,
                      target: ir.Diagram) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(target parameter, its new value) of one matched statement; none for external weights, and
    for an unweighted statement after checking that it computes the same function."""
    a, b = _statement(source, found.source_statement), _statement(target, found.target_statement)
    if b.weights == "none":
        _check_same_function(found, a, target)
    if b.weights in ("none", "external"):
        return []
    flat = _full_layout(module_from, source, a, statement_parameter(module_from, a.index).detach())
    mapped = to_module_layout(module_to, target, b.index, _apply(found, source, target, flat))
    return [(statement_parameter(module_to, b.index), mapped)]


def _check_same_function(found: Recoupling, source_statement: ir.Statement, target: ir.Diagram) -> None:
    """An unweighted statement has every weight 1: the map must send all ones to all ones."""
    implied = found.matrix.sum(dim=1)
    wrong = (implied - 1).abs().gt(1e-9).nonzero().flatten().tolist()
    if wrong:
        stmt = _statement(target, found.target_statement)
        raise ValueError(f"statement {stmt.index} of `{target.name}` has no weights (`weights = none`) and "
                         f"computes another function than statement {source_statement.index}: path {wrong[0]} "
                         f"would need weight {float(implied[wrong[0]]):.6g}, not 1; give it weights")


def _check_all_used(source: ir.Diagram, target: ir.Diagram, paired: Sequence[Recoupling]) -> None:
    """Every statement is matched with one on the other side or inlined into a matched one."""
    for diagram, matched, inlined in ((source, "source_statement", "source_inlined"),
                                      (target, "target_statement", "target_inlined")):
        used = {getattr(r, matched) for r in paired} | {k for r in paired for k in getattr(r, inlined)}
        unused = [s.index for s in diagram.statements if s.index not in used]
        if unused:
            raise ValueError(f"statements {unused} of `{diagram.name}` have no counterpart in the other diagram "
                             "(statements are matched by the leg they write, or inlined where leaves differ)")


def _check_diagrams(source: ir.Diagram, target: ir.Diagram) -> None:
    for diagram in (source, target):
        if diagram.is_graph:
            raise ValueError(f"`{diagram.name}` is a graph diagram: map each statement's weights with map_weights")
    for role in ("input", "output"):
        ours = [(leg.name, leg.irreps) for leg in source.legs_of(role)]
        theirs = [(leg.name, leg.irreps) for leg in target.legs_of(role)]
        if ours != theirs:
            raise ValueError(f"the {role}s differ: `{source.name}` has {_legs_text(ours)}, "
                             f"`{target.name}` has {_legs_text(theirs)}")


def _legs_text(legs: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{name} : {irreps}" for name, irreps in legs) or "none"


def _full_layout(module: Any, diagram: ir.Diagram, stmt: ir.Statement, flat: torch.Tensor) -> torch.Tensor:
    """A module's weights of ``stmt`` in every path's layout (zero blocks for paths a reduced
    statement does not store)."""
    kept = kept_paths(module, stmt.index)
    if kept is None:
        return flat
    sizes = [math.prod(path_weight_shape(diagram, stmt, p) or ()) for p in stmt.paths]
    pieces = iter(torch.split(flat, [sizes[k] for k in kept], dim=-1))
    return torch.cat([next(pieces) if k in kept else flat.new_zeros(*flat.shape[:-1], size)
                      for k, size in enumerate(sizes)], dim=-1)


# -- matching the two statements ----------------------------------------------------------------

def _statement(diagram: ir.Diagram, index: int) -> ir.Statement:
    for stmt in diagram.statements:
        if stmt.index == index:
            return stmt
    raise ValueError(f"`{diagram.name}` has no statement {index}")


def _partner(diagram: ir.Diagram, stmt: ir.Statement, other: ir.Diagram) -> ir.Statement | None:
    """The statement of ``other`` writing the same leg at the same rank among its writers."""
    ours, theirs = diagram.writers(stmt.target), other.writers(stmt.target)
    if theirs and len(ours) != len(theirs):
        raise ValueError(f"`{diagram.name}` writes `{stmt.target}` in {len(ours)} statements, `{other.name}` in "
                         f"{len(theirs)}: statements are matched one to one by the leg they write")
    return theirs[ours.index(stmt)] if theirs else None


def _side(diagram: ir.Diagram, stmt: ir.Statement) -> _Side:
    if diagram.basis != "real":
        raise ValueError(f"`{diagram.name}` uses `basis complex`; recoupling is implemented for the real basis "
                         "and SU2")
    normalisers = path_normalisers(diagram)
    return _Side(diagram, stmt, tuple(_Leaf(ref) for ref in stmt.leaves), normalisers,
                 *_reduction(diagram, stmt, normalisers),
                 {})


def _effective(items: Sequence[_Item]) -> list[_Leaf]:
    """The leaves after inlining, left to right."""
    found: list[_Leaf] = []
    for item in items:
        found += [item] if isinstance(item, _Leaf) else _effective(item.children)
    return found


def _reads(side: _Side) -> list[tuple[str, str]]:
    return [(leaf.ref.leg, leaf.ref.via) for leaf in _effective(side.children)]


def _align(a: _Side, b: _Side) -> tuple[_Side, _Side]:
    """Inline unweighted feeders, where the leaves differ, until both read the same legs."""
    for _ in range(1000):
        reads_a, reads_b = _reads(a), _reads(b)
        if reads_a == reads_b:
            return a, b
        where = next((k for k, (x, y) in enumerate(zip(reads_a, reads_b, strict=False)) if x != y),
                     min(len(reads_a), len(reads_b)) - 1)
        expanded = _expand(a, where)
        if expanded is not None:
            a = expanded
            continue
        expanded = _expand(b, where)
        if expanded is None:
            raise ValueError(_leaves_differ(a, b, reads_a, reads_b, where))
        b = expanded
    raise ValueError("inlining did not converge")  # pragma: no cover - a diagram has no cycles (E109)


def _leaves_differ(a: _Side, b: _Side, reads_a: list[tuple[str, str]], reads_b: list[tuple[str, str]],
                   where: int) -> str:
    return (f"statement {a.statement.index} of `{a.diagram.name}` reads {[leg for leg, _ in reads_a]}, statement "
            f"{b.statement.index} of `{b.diagram.name}` reads {[leg for leg, _ in reads_b]}: leaf {where} differs "
            "and neither is an internal edge written by one unweighted `channels = uuu` statement (which "
            "could be inlined); re-association keeps the leaves and their order")


def _expand(side: _Side, where: int) -> _Side | None:
    children = _expand_items(side, side.children, where)
    return None if children is None else replace(side, children=children)


def _expand_items(side: _Side, items: tuple[_Item, ...], where: int) -> tuple[_Item, ...] | None:
    start = 0
    for k, item in enumerate(items):
        size = len(_effective([item]))
        if start <= where < start + size:
            new = _expand_item(side, item, where - start)
            return None if new is None else items[:k] + (new,) + items[k + 1:]
        start += size
    return None


def _expand_item(side: _Side, item: _Item, where: int) -> _Item | None:
    if isinstance(item, _Leaf):
        feeder = _feeder(side, item.ref)
        return None if feeder is None else _Inline(feeder, tuple(_Leaf(r) for r in feeder.leaves))
    children = _expand_items(side, item.children, where)
    return None if children is None else _Inline(item.statement, children)


def _feeder(side: _Side, ref: ir.LeafRef) -> ir.Statement | None:
    """The statement that can stand for leaf ``ref``: the only, unweighted, ``uuu`` writer of an
    internal edge, read by a ``uuu`` statement (the channel passes through unchanged)."""
    writers = side.diagram.writers(ref.leg)
    if ref.via or side.diagram.leg(ref.leg).role != "internal" or len(writers) != 1:
        return None
    feeder = writers[0]
    if side.statement.channels != "uuu" or feeder.channels != "uuu" or feeder.weights != "none":
        return None
    return feeder if feeder.paths_mode == "sum" and not feeder.is_linear else None


def _inlined(side: _Side) -> frozenset[int]:
    found: set[int] = set()
    stack: list[_Item] = list(side.children)
    while stack:
        item = stack.pop()
        if isinstance(item, _Inline):
            found.add(item.statement.index)
            stack += item.children
    return frozenset(found)


def _check_compatible(a: _Side, b: _Side) -> None:
    sa, sb = a.statement, b.statement
    what = f"statement {sa.index} of `{a.diagram.name}` and statement {sb.index} of `{b.diagram.name}`"
    if a.diagram.group != b.diagram.group:
        raise ValueError(f"{what}: groups {a.diagram.group} and {b.diagram.group} differ")
    options = ("channels", "weights", "paths_mode", "aggregate", "per", "irrep_normalization", "path_normalization",
               "pairing")
    for option in options:
        if getattr(sa, option) != getattr(sb, option):
            raise ValueError(f"{what}: `{option}` differs ({getattr(sa, option)} vs {getattr(sb, option)})")
    legs = {leaf.ref.leg for leaf in _effective(a.children)} | {sa.target}
    for leg in sorted(legs):
        if a.diagram.irreps(leg) != b.diagram.irreps(leg):
            raise ValueError(f"{what}: `{leg}` is {a.diagram.irreps(leg)} in one and {b.diagram.irreps(leg)} "
                             "in the other")
    if sa.paths_mode == "split" and sa.tree != sb.tree:
        raise ValueError(f"{what}: `paths = split` gives every path its own entry of `{sa.target}`; another tree "
                         "shape has other paths, so the layout of the output would change")


# -- dense columns and the fit ------------------------------------------------------------------

def _dense_positions(a: _Side, b: _Side) -> frozenset[int]:
    """Effective leaves taken over all their leg's components: inlined ones (on either side), and
    the repeated leaves of a statement the planner reduces (their couplings are symmetrised)."""
    dense = _inlined_positions(a) | _inlined_positions(b)
    groups = a.groups or b.groups
    if groups and dense:
        raise ValueError(f"statement {a.statement.index}: inlining into a statement with repeated leaves that "
                         "share weights is not supported")
    return frozenset(dense | {k for group in groups for k in group})


def _inlined_positions(side: _Side) -> set[int]:
    found, start = set(), 0
    for item in side.children:
        size = len(_effective([item]))
        if isinstance(item, _Inline):
            found |= set(range(start, start + size))
        start += size
    return found


def _reduction(diagram: ir.Diagram, stmt: ir.Statement,
               normalisers: dict[tuple[int, ir.Path], Normaliser]
               ) -> tuple[tuple[tuple[int, ...], ...], frozenset[int]]:
    """The planner's repeated-leaf groups of a reduced statement (else none) and its kept paths."""
    every = frozenset(range(len(stmt.paths)))
    if stmt.weights == "none" or not stmt.paths:
        return (), every
    model = statement_model(diagram, stmt, normalisers)
    return (model.symmetric_groups, frozenset(p.position for p in model.paths)) if model.reduced else ((), every)


def _positions(side: _Side) -> list[int]:
    """The effective position of every direct leaf of the statement."""
    found, start = [], 0
    for item in side.children:
        found.append(start)
        start += len(_effective([item]))
    return found


def _blocks(side: _Side, dense: frozenset[int]) -> dict[Key, list[int]]:
    """Path positions by (entries of the non-dense leaves, output entry)."""
    starts = _positions(side)
    found: dict[Key, list[int]] = {}
    for k, path in enumerate(side.statement.paths):
        entries = tuple(e for e, start in zip(path.leaves, starts, strict=True) if start not in dense)
        found.setdefault((entries, path.output), []).append(k)
    return found


def _fit_block(a: _Side, b: _Side, dense: frozenset[int], columns: list[int],
               rows: list[int]) -> tuple[torch.Tensor, float]:
    """``M`` on one block: least squares of the target's columns on the source's, checked exact
    (residuals relative to the block's largest column: a column may vanish once symmetrised)."""
    theirs = _columns(a, dense, columns)
    norms = theirs.norm(dim=0)
    if not rows:
        if float(norms.max()) > TOLERANCE:
            _refuse(a, b, columns, norms, "it has no path with these leaf and output entries")
        return torch.zeros(0, len(columns), dtype=torch.float64), 0.0
    ours = _columns(b, dense, rows)
    nonzero = ours.abs().sum(dim=1).add(theirs.abs().sum(dim=1)).gt(0)
    ours, theirs = ours[nonzero], theirs[nonzero]  # couplings are sparse: fit the rows that count
    solution = torch.linalg.lstsq(ours, theirs, driver="gelsd" if not ours.is_complex() else None).solution
    residuals = (ours @ solution - theirs).norm(dim=0) / max(float(norms.max()), 1e-300)
    if bool(residuals.gt(TOLERANCE).any()):
        _refuse(a, b, columns, residuals, _why(b))
    if solution.is_complex():
        _check_real(solution, a, columns)
        solution = solution.real
    return solution.to(torch.float64), float(residuals.max())


def _refuse(a: _Side, b: _Side, columns: list[int], residuals: torch.Tensor, why: str) -> NoReturn:
    worst = int(residuals.argmax())
    path = a.statement.paths[columns[worst]]
    raise ValueError(f"path {columns[worst]} of statement {a.statement.index} of `{a.diagram.name}`, "
                     f"{_describe(a, path)}, is not in the span of the paths of statement {b.statement.index} of "
                     f"`{b.diagram.name}` (relative residual {float(residuals[worst]):.2e}): {why}")


def _why(side: _Side) -> str:
    """What makes the target's span smaller: its inlined unweighted statements, or its tree."""
    inlined = [_statement(side.diagram, k) for k in sorted(_inlined(side))]
    if not inlined:
        return "its tree does not keep an intermediate irrep the path needs"
    reasons = [f"`{s.target}` is cut at lmax {side.diagram.leg(s.target).lmax}" for s in inlined
               if side.diagram.leg(s.target).lmax is not None]
    shared = [f"`{s.target}`" for s in inlined if len({p.output for p in s.paths}) < len(s.paths)]
    if shared:
        reasons.append(f"{', '.join(shared)} {'is' if len(shared) == 1 else 'are'} written without weights by "
                       "several paths per entry, which then share one weight")
    return "; ".join(reasons) or "the inlined unweighted statements do not span it"


def _check_real(solution: torch.Tensor, a: _Side, columns: list[int]) -> None:
    imaginary = solution.imag.abs().amax(dim=0)
    if bool(imaginary.gt(TOLERANCE * max(1.0, float(solution.abs().max()))).any()):
        worst = columns[int(imaginary.argmax())]
        raise ValueError(f"path {worst} of statement {a.statement.index} maps with complex coefficients; "
                         "weights are real")


def _columns(side: _Side, dense: frozenset[int], positions: list[int]) -> torch.Tensor:
    """``[numbers, paths]``: every path's dense coupling times 1/sqrt(fan_in), flattened."""
    found = []
    for k in positions:
        path = side.statement.paths[k]
        tensor = _path_tensor(side, dense, side.statement, side.children, path, 0) * _alpha(side, side.statement, path)
        found.append(_symmetrised(tensor, side.groups).reshape(-1))
    return torch.stack(found, dim=-1)


def _alpha(side: _Side, stmt: ir.Statement, path: ir.Path) -> float:
    return 1.0 / math.sqrt(side.normalisers[(stmt.index, path)])


def _path_tensor(side: _Side, dense: frozenset[int], stmt: ir.Statement, children: tuple[_Item, ...],
                 path: ir.Path, start: int) -> torch.Tensor:
    """A path's coupling with every child's tensor contracted into its leaf axis."""
    coupling = path_coupling(side.diagram, stmt, path)
    operands = []
    for child, entry in zip(children, path.leaves, strict=True):
        operands.append(_item_tensor(side, dense, child, entry, start))
        start += len(_effective([child]))
    return _contract(coupling, operands)


def _item_tensor(side: _Side, dense: frozenset[int], item: _Item, entry: int, start: int) -> torch.Tensor:
    """``[components of the item's leaves..., components of its entry]``."""
    if isinstance(item, _Leaf):
        return _embedding(side.diagram, item.ref.leg, entry, start in dense)
    key = (id(item), entry, start, dense)
    if key not in side.cache:
        side.cache[key] = _inlined_tensor(side, dense, item, entry, start)
    return side.cache[key]


def _inlined_tensor(side: _Side, dense: frozenset[int], item: _Inline, entry: int, start: int) -> torch.Tensor:
    """What an inlined statement writes into one entry of its edge: its paths into it, summed."""
    total = torch.zeros(*_full_dims(side, item), side.diagram.irreps(item.statement.target)[entry].irrep.dim,
                        dtype=_dtype(side.diagram))
    for path in item.statement.paths:
        if path.output == entry:
            term = _path_tensor(side, dense, item.statement, item.children, path, start)
            total = total + term * _alpha(side, item.statement, path)
    return total


def _full_dims(side: _Side, item: _Inline) -> list[int]:
    return [sum(e.irrep.dim for e in side.diagram.irreps(leaf.ref.leg)) for leaf in _effective(item.children)]


def _embedding(diagram: ir.Diagram, leg: str, entry: int, dense: bool) -> torch.Tensor:
    """The identity on the entry's components, placed among all of the leg's when ``dense``."""
    irreps = diagram.irreps(leg)
    dim = irreps[entry].irrep.dim
    if not dense:
        return torch.eye(dim, dtype=_dtype(diagram))
    offset = sum(e.irrep.dim for e in list(irreps)[:entry])
    total = sum(e.irrep.dim for e in irreps)
    found = torch.zeros(total, dim, dtype=_dtype(diagram))
    found[offset:offset + dim] = torch.eye(dim, dtype=_dtype(diagram))
    return found


def _dtype(diagram: ir.Diagram) -> torch.dtype:
    return torch.complex128 if diagram.group.is_complex else torch.float64


def _contract(coupling: torch.Tensor, operands: Sequence[torch.Tensor]) -> torch.Tensor:
    """``coupling[i_1..i_n, k]`` with operand ``t`` (``[axes..., i_t]``) contracted over ``i_t``."""
    letters = iter(_LETTERS)
    leaf_axes = [next(letters) for _ in operands]
    out_axis = next(letters)
    specs, result = [], ""
    for axis, operand in zip(leaf_axes, operands, strict=True):
        free = "".join(next(letters) for _ in range(operand.dim() - 1))
        specs.append(free + axis)
        result += free
    spec = f"{''.join(leaf_axes)}{out_axis},{','.join(specs)}->{result}{out_axis}"
    return torch.einsum(spec, coupling, *(o.to(coupling.dtype) for o in operands))


def _symmetrised(tensor: torch.Tensor, groups: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """The mean over permutations within each group of leaf axes (what repeated inputs see)."""
    if not groups:
        return tensor
    arity = tensor.dim() - 1
    perms = list(group_permutations(groups, arity))
    return sum((tensor.permute(*p, arity) for p in perms), torch.zeros_like(tensor)) / len(perms)


def _describe(side: _Side, path: ir.Path) -> str:
    """A path as its tree with irreps, e.g. ``((a 1o, b 1o) -> 2e, c 2e) -> 1o``."""
    stmt = side.statement
    inner = {id(node): irrep for node, irrep in zip(stmt.vertices, path.inner, strict=True)}

    def text(node: ir.Node) -> str:
        if isinstance(node, ir.LeafRef):
            return f"{node.leg} {side.diagram.irreps(node.leg)[path.leaves[node.position]].irrep}"
        return f"({text(node.left)}, {text(node.right)}) -> {inner[id(node)]}"

    return f"{text(stmt.tree)} into {stmt.target}[{path.output}]"
