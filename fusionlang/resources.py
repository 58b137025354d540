"""Resource checks: sizes a diagram would reach, measured on the IR before anything is allocated.

Two passes. :func:`check_declared_sizes` runs with the structural checks, on what the user wrote
(declared irreps), so that inference never starts on a diagram whose inputs are already too
large. :func:`check_inferred_sizes` runs after inference, on inferred edges and on every
statement's paths: the numbers of its coupling tables and of its weights. Every limit is a field
of :class:`fusionlang.limits.Limits`; each diagnostic names the field a user can raise.

>>> from fusionlang.frontend import check_source
>>> result = check_source("diagram d { group O3\\n input x : 2x70e\\n output y : 0e\\n x, x -> y }")
>>> [d.message for d in result.diagnostics]
['`x` carries spin 70 (at most 64)']
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from . import ir
from .diagnostics import Diagnostic
from .groups import Irrep, Irreps
from .limits import CEILINGS, DEFAULT, Limits
from .weights import weight_numel

__all__ = ["check_declared_sizes", "check_inferred_sizes", "path_table_numbers", "spin_bound"]


def _too_large(diagram: ir.Diagram, what: str, limit: int, name: str, span: object, hint: str) -> Diagnostic:
    """E501 naming the limit, so that a user who means it knows what to raise (where it can be)."""
    if name not in CEILINGS:
        hint += f"; or raise the limit: `limits=Limits({name}=...)`, `fusionc --limit {name}=...`"
    return Diagnostic("E501", f"{what} (at most {limit})", span, diagram.source,  # type: ignore[arg-type]
                      hint=hint)


def _count_problems(diagram: ir.Diagram, limits: Limits) -> Iterator[Diagnostic]:
    """Statements, legs, leaves of one fusion and classes of an index."""
    if len(diagram.statements) > limits.max_statements:
        yield _too_large(diagram, f"{len(diagram.statements)} statements", limits.max_statements,
                         "max_statements", diagram.span, "split the diagram into several")
    if len(diagram.legs) > limits.max_legs:
        yield _too_large(diagram, f"{len(diagram.legs)} legs", limits.max_legs, "max_legs", diagram.span,
                         "split the diagram into several")
    for statement in diagram.statements:
        if statement.arity > limits.max_leaves:
            yield _too_large(diagram, f"a fusion tree with {statement.arity} leaves", limits.max_leaves,
                             "max_leaves", statement.span, "fuse in stages through internal edges")
    for leg in diagram.legs:
        if leg.role == "index" and leg.classes > limits.max_classes:
            yield _too_large(diagram, f"index `{leg.name}` with {leg.classes} classes", limits.max_classes,
                             "max_classes", leg.span, "use fewer classes")


def _irreps_problems(diagram: ir.Diagram, leg: ir.Leg, irreps: Irreps, limits: Limits) -> Iterator[Diagnostic]:
    """Spin, entries, multiplicity and dimension of one leg's irreps."""
    what = f"`{leg.name}`"
    top = max((item.irrep for item in irreps), key=lambda i: i.two_j, default=None)
    if top is not None and top.j > limits.max_l:
        yield _too_large(diagram, f"{what} carries spin {top.j}", limits.max_l, "max_l", leg.span,
                         "lower its spins, or cut an inferred edge with `lmax`")
    if len(irreps) > limits.max_entries:
        yield _too_large(diagram, f"{what} has {len(irreps)} entries", limits.max_entries, "max_entries",
                         leg.span, "merge equal irreps into one entry (`4x0e` rather than `0e + 0e + 0e + 0e`)")
    widest = max((item.mul for item in irreps), default=0)
    if widest > limits.max_multiplicity:
        yield _too_large(diagram, f"{what} has an entry of multiplicity {widest}", limits.max_multiplicity,
                         "max_multiplicity", leg.span, "use fewer channels")
    if irreps.dim > limits.max_dim:
        yield _too_large(diagram, f"{what} has dimension {irreps.dim}", limits.max_dim, "max_dim", leg.span,
                         "use fewer channels or lower spins")


def check_declared_sizes(diagram: ir.Diagram, limits: Limits = DEFAULT) -> list[Diagnostic]:
    """Counts, and every declared leg, within the limits (runs before inference)."""
    return [*_count_problems(diagram, limits),
            *(problem for leg in diagram.legs if leg.irreps is not None
              for problem in _irreps_problems(diagram, leg, leg.irreps, limits))]


def check_inferred_sizes(diagram: ir.Diagram, limits: Limits = DEFAULT) -> list[Diagnostic]:
    """Inferred legs, and every statement's coupling tables and weights (runs after inference)."""
    problems = [problem for leg in diagram.legs if not leg.declared and leg.irreps is not None
                for problem in _irreps_problems(diagram, leg, leg.irreps, limits)]
    if problems:
        return problems  # statement sizes multiply leg sizes: one diagnostic where it starts
    for statement in diagram.statements:
        problems += _statement_problems(diagram, statement, limits)
    return problems


def _statement_problems(diagram: ir.Diagram, statement: ir.Statement, limits: Limits) -> list[Diagnostic]:
    numbers = sum(path_table_numbers(diagram, statement, path) for path in statement.paths)
    if numbers > limits.max_table_numbers:
        return [_too_large(diagram, f"this statement's coupling tables hold {numbers} numbers",
                           limits.max_table_numbers, "max_table_numbers", statement.span,
                           "lower the spins of its arguments, or cut intermediate edges with `lmax`")]
    weights = statement_weight_numel(diagram, statement)
    if weights > limits.max_weights:
        return [_too_large(diagram, f"this statement has {weights} weights", limits.max_weights, "max_weights",
                           statement.span, "use fewer channels, `channels = uvu`/`uuu`, or `weights = path`")]
    return []


def path_table_numbers(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> int:
    """Numbers of one path's dense coupling tensor ``P[i_1, ..., i_n, k]`` (docs/semantics.md)."""
    dims = [diagram.irreps(ref.leg)[entry].irrep.dim for ref, entry in zip(statement.leaves, path.leaves,
                                                                             strict=True)]
    return math.prod(dims) * diagram.irreps(statement.target)[path.output].irrep.dim


def statement_weight_numel(diagram: ir.Diagram, statement: ir.Statement) -> int:
    """The statement's weights: the blocks of every path, times the classes of ``per``."""
    classes = diagram.leg(statement.per).classes if statement.per else 1
    return weight_numel(diagram, statement) * max(classes, 1)


def spin_bound(node: ir.Node, readable: dict[str, frozenset[Irrep]]) -> tuple[int, int]:
    """Twice the largest spin (the root's, the largest inner vertex's) that a tree could produce
    from ``readable``: a cheap bound computed before any irreps set is built."""
    if isinstance(node, ir.LeafRef):
        return max((i.two_j for i in readable.get(node.leg, ())), default=0), 0
    (left, left_inner), (right, right_inner) = spin_bound(node.left, readable), spin_bound(node.right, readable)
    inner = max(left_inner, right_inner,
                left if isinstance(node.left, ir.Fuse) else 0, right if isinstance(node.right, ir.Fuse) else 0)
    return left + right, inner
