"""Tree shapes: weights moved exactly between fusion tree shapes (fusionlang.recouple).

Every case compiles both shapes, gives the source module random weights, moves them and compares
the two modules' outputs on random inputs in float64."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import ir
from fusionlang.equivariance import random_features
from fusionlang.frontend import check_source
from fusionlang.recouple import map_weights, move_weights, recouple, recoupling_matrix
from fusionlang.wigner import wigner_6j

TOLERANCE = 1e-12


def two_shapes(declarations: str, left: str, right: str, options: str, group: str = "O3") -> str:
    """Two diagrams `left` and `right` that differ only in the shape of the statement into `out`."""
    body = f"    group {group}\n{declarations}"
    return (f"diagram left {{\n{body}\n    {left} -> out  [{options}]\n}}\n"
            f"diagram right {{\n{body}\n    {right} -> out  [{options}]\n}}\n")


def compiled(source: str, *names: str) -> tuple[list[Any], list[ir.Diagram]]:
    result = fusionlang.compile(source)
    return ([result.module_class(n)(dtype=torch.float64) for n in names], [result.diagram(n) for n in names])


def inputs(diagram: ir.Diagram, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [random_features(leg.irreps, (5,), diagram.group, generator=generator) for leg in diagram.inputs]


def max_difference(first: Any, second: Any, diagram: ir.Diagram, *extra: Any) -> float:
    """The largest difference of the two modules' outputs, relative to the largest output."""
    x = inputs(diagram)
    with torch.no_grad():
        a, b = first(*x, *extra[:1]), second(*x, *extra[1:])
    assert float(a.abs().max()) > 0.1
    return float((a - b).abs().max() / a.abs().max())


def move_and_compare(source: str, first: str = "left", second: str = "right") -> float:
    torch.manual_seed(0)
    (a, b), (da, db) = compiled(source, first, second)
    move_weights(a, b, da, db)
    return max_difference(a, b, da)


def is_orthogonal(matrix: torch.Tensor) -> bool:
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype)
    return bool((matrix @ matrix.T - eye).abs().max() < 1e-12 and (matrix.T @ matrix - eye).abs().max() < 1e-12)


THREE_LEAVES = two_shapes("    input  a, b, c : 4x(0e + 1o + 2e)\n    output out : 4x(0e + 1o + 2e)",
                          "(a, b), c", "a, (b, c)", "channels = uuu, weights = channel")


def test_three_leaves_both_ways() -> None:
    assert move_and_compare(THREE_LEAVES) < TOLERANCE
    assert move_and_compare(THREE_LEAVES, "right", "left") < TOLERANCE


def test_the_matrix_is_orthogonal_and_exact_when_both_shapes_keep_every_irrep() -> None:
    checked = check_source(THREE_LEAVES)
    found = recouple(checked.diagram("left"), checked.diagram("right"))
    assert found.residual < 1e-13
    assert is_orthogonal(found.matrix)
    back = recoupling_matrix(checked.diagram("right"), checked.diagram("left"))
    assert torch.allclose(back, found.matrix.T, atol=1e-13)


MIXED = ("    input  a : 2x(0e + 1o + 1e)\n    input  b : 2x(0o + 1o)\n    input  c : 2x(1e + 2o)\n"
         "    output out : 2x(0e + 0o + 1o + 1e + 2e)")


@pytest.mark.parametrize("options", ["channels = uuu, weights = path", "channels = uvu, weights = channel",
                                     "channels = uvu, weights = path", "channels = uvw, weights = channel"])
def test_mixed_parity_in_every_channel_mode(options: str) -> None:
    assert move_and_compare(two_shapes(MIXED, "(a, b), c", "a, (b, c)", options)) < TOLERANCE


def test_external_weights_are_mapped_for_forward() -> None:
    (a, b), (da, db) = compiled(two_shapes(MIXED, "(a, b), c", "a, (b, c)", "channels = uvw, weights = external"),
                                "left", "right")
    weights = torch.randn(5, a.weight_numel, dtype=torch.float64)
    assert max_difference(a, b, da, weights, map_weights(weights, da, db)) < TOLERANCE
    move_weights(a, b, da, db)  # nothing to copy, but the map exists


def test_su2_half_integer_spins() -> None:
    source = two_shapes("    input  a, b, c : 2x(1/2 + 1)\n    output out : 2x(1/2 + 3/2)",
                        "(a, b), c", "a, (b, c)", "channels = uuu, weights = channel", group="SU2")
    assert move_and_compare(source) < TOLERANCE
    checked = check_source(source)
    assert is_orthogonal(recoupling_matrix(checked.diagram("left"), checked.diagram("right")))


def spins_pair(j1: str, j2: str, j3: str, out: str, group: str) -> tuple[ir.Diagram, ir.Diagram]:
    decl = f"    input a : {j1}\n    input b : {j2}\n    input c : {j3}\n    output out : {out}"
    checked = check_source(two_shapes(decl, "(a, b), c", "a, (b, c)", "channels = uuu, weights = path", group))
    return checked.diagram("left"), checked.diagram("right")


def racah(j1: Fraction, j2: Fraction, j3: Fraction, j: Fraction, j12: Fraction, j23: Fraction) -> float:
    """<j1, (j2 j3) j23; J | (j1 j2) j12, j3; J>: the F-move in closed form."""
    sign = (-1) ** int(j1 + j2 + j3 + j)
    return sign * float((2 * j12 + 1) * (2 * j23 + 1)) ** 0.5 * float(wigner_6j(j1, j2, j12, j3, j, j23))


def closed_form(left: ir.Diagram, right: ir.Diagram, spins: tuple[Fraction, Fraction, Fraction]) -> torch.Tensor:
    """The expected matrix, path by path: paths of one output entry couple with the 6j symbol."""
    (sl,), (sr,) = left.statements, right.statements
    expected = torch.zeros(len(sr.paths), len(sl.paths), dtype=torch.float64)
    for q, qp in enumerate(sr.paths):
        for p, pp in enumerate(sl.paths):
            if pp.output == qp.output:
                expected[q, p] = racah(*spins, pp.inner[1].j, pp.inner[0].j, qp.inner[0].j)
    return expected


@pytest.mark.parametrize("spins", [("1/2", "1/2", "1/2"), ("1/2", "1", "3/2"), ("1", "1", "2"), ("3/2", "1", "1/2")])
def test_su2_matrix_is_the_6j_symbol_with_its_sign(spins: tuple[str, str, str]) -> None:
    j = tuple(Fraction(s) for s in spins)
    lo, hi = min(abs(j[0] - j[1] - j[2]), abs(j[0] - j[1] + j[2]), abs(j[0] + j[1] - j[2])), sum(j)
    outs = [lo + k for k in range(int(hi - lo) + 1) if lo + k >= 0]
    out = " + ".join(str(x) for x in sorted(set(outs)))
    left, right = spins_pair(*spins, out, "SU2")
    found = recoupling_matrix(left, right)
    assert (found - closed_form(left, right, j)).abs().max() < 1e-13  # type: ignore[arg-type]


@pytest.mark.parametrize("irreps", [("1o", "2e", "1o", "0e + 1e + 2e + 3e"), ("2e", "2e", "2e", "0e + 1e + 2e"),
                                    ("3o", "1o", "2e", "0e + 1e + 2e + 3e + 4e"), ("1e", "1o", "0o", "0e + 1e")])
def test_o3_real_basis_matrix_is_the_6j_symbol_with_its_sign(irreps: tuple[str, str, str, str]) -> None:
    # e3nn's real couplings differ from Condon-Shortley's by phases that cancel around the F-move
    left, right = spins_pair(*irreps, "O3")
    spins = tuple(Fraction(int(text[:-1])) for text in irreps[:3])
    assert (recoupling_matrix(left, right) - closed_form(left, right, spins)).abs().max() < 1e-13  # type: ignore[arg-type]


FOUR_LEAVES = ("    input  a, b, c, d : 2x(0e + 1o)\n    output out : 2x(0e + 1o + 1e)")


def test_four_leaves_balanced_and_chain() -> None:
    source = two_shapes(FOUR_LEAVES, "(a, b), (c, d)", "((a, b), c), d", "channels = uuu, weights = channel")
    assert move_and_compare(source) < TOLERANCE
    checked = check_source(source)
    assert is_orthogonal(recoupling_matrix(checked.diagram("left"), checked.diagram("right")))


def test_repeated_leaves_move_between_reduced_bases() -> None:
    source = two_shapes("    input  A : 2x(0e + 1o + 2e)\n    output out : 2x(0e + 1o)", "(A, A), A", "A, (A, A)",
                        "channels = uuu, weights = channel")
    torch.manual_seed(0)
    (a, b), (da, db) = compiled(source, "left", "right")
    assert type(a).KEPT_PATHS and type(b).KEPT_PATHS
    move_weights(a, b, da, db)
    assert max_difference(a, b, da) < TOLERANCE


CHAIN = """diagram {name} {{
    group O3
    input  a, b : 2x1o
    input  c : 2x(0e + 1o + 2e)
    {edge}
    output out : 2x(0e + 1o)
    (a, b) -> ab  [channels = uuu, weights = none]
    ab, c -> out  [channels = uuu, weights = channel]
}}
diagram tree {{
    group O3
    input  a, b : 2x1o
    input  c : 2x(0e + 1o + 2e)
    output out : 2x(0e + 1o)
    a, (b, c) -> out  [channels = uuu, weights = channel]
}}
"""


def test_a_chain_through_an_unweighted_edge_is_inlined() -> None:
    # a and b have one entry each: every entry of `ab` is one path, so chain and tree are equivalent
    source = CHAIN.format(name="chain", edge="")
    assert move_and_compare(source, "chain", "tree") < TOLERANCE
    assert move_and_compare(source, "tree", "chain") < TOLERANCE


def test_the_second_statement_of_a_chain_changes_shape() -> None:
    # tree4's form: the unweighted first statement is the same on both sides (checked), the second recoupled
    declarations = ("    input  a, b, c, d : 2x(0e + 1o + 2e)\n    edge   ab : lmax 2\n    output out : 2x(0e + 1o)\n"
                    "    (a, b) -> ab  [channels = uuu, weights = none]")
    source = two_shapes(declarations, "ab, (c, d)", "(ab, c), d", "channels = uuu, weights = channel")
    assert move_and_compare(source) < TOLERANCE
    checked = check_source(source)
    found = recouple(checked.diagram("left"), checked.diagram("right"), statement=1)
    assert found.target_statement == 1 and not found.source_inlined and is_orthogonal(found.matrix)


def test_an_lmax_cut_is_refused_naming_the_path() -> None:
    source = CHAIN.format(name="chain", edge="edge   ab : lmax 1")
    assert move_and_compare(source, "chain", "tree") < TOLERANCE  # the cut chain is inside the tree's span
    checked = check_source(source)
    with pytest.raises(ValueError, match=r"path \d+ of statement 0 of `tree`, \(a 1o, .* is not in the span .*"
                                         r"`ab` is cut at lmax 1"):
        recoupling_matrix(checked.diagram("tree"), checked.diagram("chain"))


def test_an_edge_with_several_writers_per_entry_shares_weights_and_is_refused() -> None:
    source = """diagram chain {
    group O3
    input  a, b, c : 2x(0e + 1o)
    output out : 2x(0e + 1o)
    (a, b) -> ab  [channels = uuu, weights = none]
    ab, c -> out  [channels = uuu, weights = channel]
}
diagram tree {
    group O3
    input  a, b, c : 2x(0e + 1o)
    output out : 2x(0e + 1o)
    (a, b), c -> out  [channels = uuu, weights = channel]
}
"""
    assert move_and_compare(source, "chain", "tree") < TOLERANCE
    checked = check_source(source)
    with pytest.raises(ValueError, match="share one weight"):
        recoupling_matrix(checked.diagram("tree"), checked.diagram("chain"))


def test_an_unweighted_statement_must_keep_its_function() -> None:
    checked = check_source(two_shapes("    input  a, b, c : 1o\n    output out : 1o", "(a, b), c", "a, (b, c)",
                                      "channels = uuu, weights = none"))
    with pytest.raises(ValueError, match="has no weights"):
        move_weights(None, None, checked.diagram("left"), checked.diagram("right"))


def test_different_leaves_are_refused() -> None:
    checked = check_source(two_shapes("    input  a, b, c : 1o\n    output out : 1o", "(a, b), c", "(a, c), b",
                                      "channels = uuu, weights = path"))
    with pytest.raises(ValueError, match="re-association keeps the leaves and their order"):
        recoupling_matrix(checked.diagram("left"), checked.diagram("right"))


@pytest.mark.parametrize("declarations,options,message", [
    ("    input  a, b, c : 1o\n    output out", "channels = uuu, weights = path, paths = split", "paths = split"),
    ("    basis complex\n    input  a, b, c : 1\n    output out : 1", "channels = uuu, weights = path",
     "basis complex"),
])
def test_split_paths_and_the_complex_basis_are_refused(declarations: str, options: str, message: str) -> None:
    group = "SO3" if "complex" in declarations else "O3"
    checked = check_source(two_shapes(declarations, "(a, b), c", "a, (b, c)", options, group))
    with pytest.raises(ValueError, match=message):
        recoupling_matrix(checked.diagram("left"), checked.diagram("right"))
