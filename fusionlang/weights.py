"""The weight layout of docs/semantics.md ("Weights", "Normalisation"), written once.

A path's weight block is indexed by some of its leaves' channels (and, for ``uvw``, the output
channel); a statement's weights are its (kept) paths' blocks flattened in C order, in path order.
A path adds ``fan_in`` terms into every number of its output entry. The planner, the reference
contraction of :mod:`fusionlang.testing`, the importers and the graph orchestrator all read these
functions.

>>> from fusionlang.frontend import check_source
>>> d = check_source("diagram d { group O3\\n input x : 3x1o\\n input y : 2x1o\\n output z : 3x0e\\n"
...                  " x, y -> z [channels = uvu, weights = path] }").diagram()
>>> s = d.statements[0]
>>> weight_axes(s), path_weight_shape(d, s, s.paths[0]), weight_numel(d, s)
((1,), (2,), 2)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from . import ir

if TYPE_CHECKING:
    import torch

__all__ = ["Normaliser", "fan_in", "fan_in_totals", "leaf_muls", "path_fan_in", "path_normalisers",
           "path_weight_shape", "split_weights", "unordered_channels", "weight_axes", "weight_block", "weight_letters",
           "weight_numel"]

# The number N whose 1/sqrt(N) multiplies a path's component-normalised coupling: an int for e3nn's
# default normalisation (the fan_in of the output entry), a float otherwise.
Normaliser = int | float


def weight_axes(statement: ir.Statement) -> tuple[int, ...]:
    """The leaves whose channel indexes a weight block, in order (``uvw`` adds the output
    channel after them); ``()`` also without weights (see :func:`weight_block`).

    >>> s = ir.Statement(0, ir.Fuse(ir.LeafRef("x", 0), ir.LeafRef("y", 1)), "z", "uvu", "path")
    >>> weight_axes(s)
    (1,)
    """
    if statement.weights == "none":
        return ()
    per_channel = statement.weights != "path"
    count = statement.arity
    if statement.channels in ("uvw", "uvu") and (per_channel or statement.channels == "uvw"):
        return tuple(range(count))
    if statement.channels == "uvu":
        return tuple(range(1, count))
    return (0,) if per_channel else ()


def _has_output_axis(statement: ir.Statement) -> bool:
    return statement.weights != "none" and statement.channels == "uvw"


def weight_block(statement: ir.Statement, leaf_muls: Sequence[int], out_mul: int) -> tuple[int, ...]:
    """One path's weight block shape, ``()`` without weights (or for one shared scalar).

    >>> s = ir.Statement(0, ir.Fuse(ir.LeafRef("x", 0), ir.LeafRef("y", 1)), "z", "uvu", "channel")
    >>> weight_block(s, [3, 2], 3)
    (3, 2)
    """
    block = tuple(leaf_muls[k] for k in weight_axes(statement))
    return block + (out_mul,) if _has_output_axis(statement) else block


def weight_letters(statement: ir.Statement, leaf_channels: Sequence[str], out: str = "w") -> str:
    """The block's axes as einsum letters, given every leaf's channel letter and the output's.

    >>> s = ir.Statement(0, ir.Fuse(ir.LeafRef("x", 0), ir.LeafRef("y", 1)), "z", "uvw", "channel")
    >>> weight_letters(s, "uv")
    'uvw'
    """
    letters = "".join(leaf_channels[k] for k in weight_axes(statement))
    return letters + out if _has_output_axis(statement) else letters


def fan_in(statement: ir.Statement, leaf_muls: Sequence[int]) -> int:
    """Terms one path adds into each number of its output entry (docs/semantics.md).

    >>> s = ir.Statement(0, ir.Fuse(ir.LeafRef("x", 0), ir.LeafRef("y", 1)), "z", "uvu", "channel")
    >>> fan_in(s, [3, 2])
    2
    """
    if statement.channels == "uuu" or (statement.channels == "uvw" and statement.weights == "none"):
        return 1
    return math.prod(leaf_muls[1:] if statement.channels == "uvu" else leaf_muls)


def leaf_muls(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> list[int]:
    """The multiplicity of every leaf's entry along ``path``."""
    return [diagram.irreps(ref.leg)[entry].mul for ref, entry in zip(statement.leaves, path.leaves, strict=True)]


def path_fan_in(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> int:
    """:func:`fan_in` of one path of a checked diagram.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 3x1o\\n output y : 3x1o\\n x -> y }").diagram()
    >>> path_fan_in(d, d.statements[0], d.statements[0].paths[0])
    3
    """
    return fan_in(statement, leaf_muls(diagram, statement, path))


def fan_in_totals(diagram: ir.Diagram) -> dict[tuple[str, int], int]:
    """(target leg, entry) -> the terms every path of every writer adds into one of its numbers."""
    totals: Counter[tuple[str, int]] = Counter()
    for statement in diagram.statements:
        for path in statement.paths:
            totals[(statement.target, path.output)] += path_fan_in(diagram, statement, path)
    return dict(totals)


def path_normalisers(diagram: ir.Diagram) -> dict[tuple[int, ir.Path], Normaliser]:
    """(statement index, path) -> N: the path's coupling (component-normalised, docs/semantics.md)
    is multiplied by ``1/sqrt(N)``. With e3nn's defaults N is the ``fan_in`` total of the output
    entry; ``path_normalization`` and ``irrep_normalization`` change it as e3nn's alpha does.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 2x1o\\n input y : 3x1o\\n output z : 2x0e\\n"
    ...                  " x, y -> z [weights = channel, irrep_normalization = norm, path_normalization = path] }"
    ...                  ).diagram()
    >>> list(path_normalisers(d).values())
    [0.6666666666666666]
    """
    totals = fan_in_totals(diagram)
    counts = Counter((s.target, p.output) for s in diagram.statements for p in s.paths)
    found: dict[tuple[int, ir.Path], Normaliser] = {}
    for statement in diagram.statements:
        for path in statement.paths:
            number = (_normalisation_term(diagram, statement, path, totals, counts)
                      / _irrep_factor(diagram, statement, path))
            if path.diagonal:
                number *= _diagonal_factor(diagram, statement, path)
            found[(statement.index, path)] = int(number) if number.denominator == 1 else float(number)
    return found


def _normalisation_term(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path,
                        totals: dict[tuple[str, int], int], counts: Counter[tuple[str, int]]) -> Fraction:
    """e3nn's path_normalization: the fan_in total of the output entry ("element"), one ("none"),
    or the path's own fan_in times the paths into that entry ("path")."""
    entry = (statement.target, path.output)
    if statement.path_normalization == "element":
        return Fraction(totals[entry])
    if statement.path_normalization == "none":
        return Fraction(1)
    return Fraction(path_fan_in(diagram, statement, path) * counts[entry])


def _irrep_factor(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> Fraction:
    """e3nn's irrep_normalization relative to "component": ``d1 d2 / d_out`` ("norm"), ``1 / d_out``
    ("none") on the squared coefficient of a two-argument coupling."""
    if statement.irrep_normalization == "component":
        return Fraction(1)
    dims = [irrep.dim for _, irrep in diagram.path_irreps(statement, path)]
    top = math.prod(dims[:-1]) if statement.irrep_normalization == "norm" else 1
    return Fraction(top, dims[-1])


def _diagonal_factor(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> Fraction:
    """e3nn's TensorSquare scales the diagonal ``x_u ⊗ x_u → c`` apart from the pairs u < v: by
    ``1 / (d + 2)`` (``c`` scalar) or ``1 / 2`` relative to them with ``component``; with ``norm``,
    ``1 / d`` or ``(d + 2) / (2 d)``; not at all with ``none`` (on the squared coefficient, ``d`` the
    dimension of the argument's irrep)."""
    (_, a), _, (_, c) = diagram.path_irreps(statement, path)
    scalar = c.two_j == 0
    return {"component": Fraction(a.dim + 2) if scalar else Fraction(2),
            "norm": Fraction(a.dim) if scalar else Fraction(2 * a.dim, a.dim + 2),
            "none": Fraction(1)}[statement.irrep_normalization]


def unordered_channels(mul: int, diagonal: bool) -> list[int]:
    """``pairing = unordered`` on two copies of one entry: which of the ``mul * mul`` channel pairs
    ``(u, v)`` (flattened u-major) a path keeps: ``u = v`` on the diagonal, else ``u < v``.

    >>> unordered_channels(3, False), unordered_channels(3, True)
    ([1, 2, 5], [0, 4, 8])
    """
    return [u * mul + v for u in range(mul) for v in range(mul) if (u == v if diagonal else u < v)]


def path_weight_shape(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> tuple[int, ...] | None:
    """The shape of one path's weight block; None without weights."""
    if statement.weights == "none":
        return None
    out_mul = diagram.irreps(statement.target)[path.output].mul
    return weight_block(statement, leaf_muls(diagram, statement, path), out_mul)


def weight_numel(diagram: ir.Diagram, statement: ir.Statement, kept: Sequence[int] | None = None) -> int:
    """The numbers of a statement's weights (0 without weights): every path's block, or only
    those of the paths at positions ``kept`` (the reduced symmetric basis).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 2x0e\\n output y : 3x0e\\n x -> y }").diagram()
    >>> weight_numel(d, d.statements[0])
    6
    """
    shapes = [path_weight_shape(diagram, statement, p) for k, p in enumerate(statement.paths)
              if kept is None or k in kept]
    return sum(math.prod(shape) for shape in shapes if shape is not None)


def split_weights(diagram: ir.Diagram, statement: ir.Statement, flat: torch.Tensor | None) -> list[Any]:
    """One block per path, ``[..., *path_weight_shape]``, cut from the flat weights in path order
    (``None`` per path without weights); a ``ValueError`` when ``flat`` has the wrong size.

    >>> import torch
    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 2x0e\\n output y : 3x0e\\n x -> y }").diagram()
    >>> [b.shape for b in split_weights(d, d.statements[0], torch.zeros(6))]
    [torch.Size([2, 3])]
    """
    import torch

    shapes = [path_weight_shape(diagram, statement, p) for p in statement.paths]
    if statement.weights == "none":
        return [None] * len(shapes)
    numel = weight_numel(diagram, statement)
    if flat is None or flat.shape[-1:] != (numel,):
        got = "nothing" if flat is None else f"shape {tuple(flat.shape)}"
        raise ValueError(f"statement {statement.index} needs weights [..., {numel}], got {got}")
    sizes = [math.prod(shape or ()) for shape in shapes]
    pieces = torch.split(flat, sizes, dim=-1)
    return [piece.reshape((*flat.shape[:-1], *(shape or ()))) for piece, shape in zip(pieces, shapes, strict=True)]
