"""SU(2) spins (examples/spins.fusion): chains fused to total spin, and closed diagrams
(tetrahedron, theta graph) that evaluate to sympy's Wigner 6j symbols."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from sympy import Rational
from sympy.physics.wigner import wigner_6j

from fusionlang import api
from fusionlang.testing import fusion_tensor, glue

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "spins.fusion"


@pytest.fixture(scope="module")
def spins() -> api.CompileResult:
    return api.compile(EXAMPLE)


def tensors(result: api.CompileResult, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    diagram = result.diagram(name)
    module = result.module_class(name)(dtype=torch.float64)
    return fusion_tensor(module, diagram, "left"), fusion_tensor(module, diagram, "right")


def recoupling(a: Fraction, b: Fraction, c: Fraction, ab: Fraction, bc: Fraction, total: Fraction) -> float:
    """<((a b) ab, c) J | (a, (b c) bc) J> from sympy's exact 6j symbol."""
    six_j = wigner_6j(*(Rational(x.numerator, x.denominator) for x in (a, b, ab, c, total, bc)))
    sign = (-1) ** int(a + b + c + total)
    return sign * math.sqrt((2 * ab + 1) * (2 * bc + 1)) * float(six_j)


def test_tetrahedron_is_a_6j_symbol(spins: api.CompileResult) -> None:
    left, right = tensors(spins, "tetrahedron")
    value = glue(left, right) / left.shape[-1]
    half = Fraction(1, 2)
    expected = recoupling(half, Fraction(1), 3 * half, 3 * half, 3 * half, Fraction(2))
    assert abs(value.imag) < 1e-14
    assert abs(value.real - expected) < 1e-14
    assert abs(expected) > 0.1


def test_theta_graph(spins: api.CompileResult) -> None:
    left, right = tensors(spins, "theta")
    value = glue(left, right) / left.shape[-1]
    half = Fraction(1, 2)
    expected = recoupling(3 * half, Fraction(1), Fraction(0), half, Fraction(1), half)
    assert abs(value - expected) < 1e-14 and abs(abs(expected) - 1) < 1e-14
    # a tree glued with itself: the theta graph of its vertices, the dimension of the total spin
    assert abs(glue(left, left) - left.shape[-1]) < 1e-12


def test_chains_have_the_right_multiplicities(spins: api.CompileResult) -> None:
    for name, counts in (("spins", {"1/2": 2, "3/2": 1}), ("chain4", {"0": 2, "1": 3, "2": 1})):
        diagram = spins.diagram(name)
        found: dict[str, int] = {}
        for path in diagram.statements[-1].paths:
            irrep = str(diagram.irreps("total")[path.output].irrep)
            found[irrep] = found.get(irrep, 0) + 1
        assert found == counts


def test_chain4_total_spin_states_are_orthonormal(spins: api.CompileResult) -> None:
    diagram = spins.diagram("chain4")
    module = spins.module_class("chain4")(dtype=torch.float64)
    tensor = fusion_tensor(module, diagram).reshape(16, -1)
    # the paths into one total spin are orthonormal states, each scaled by 1/sqrt(number of paths):
    # every output component is a unit vector of the 16-dimensional product space, all orthogonal
    gram = tensor.conj().T @ tensor
    assert gram.shape == (1 + 3 + 5, 1 + 3 + 5)
    assert (gram - torch.eye(9, dtype=gram.dtype)).abs().max() < 1e-12
