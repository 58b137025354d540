"""Tests for fusionlang.rotations: Wigner D matrices against exact values (sympy at small spins,
integer arithmetic up to l = 60), unitarity and the homomorphism property up to the largest
supported spin, e3nn's real basis, and the refusal above it."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import sympy
import torch
from sympy.physics.wigner import wigner_d

from fusionlang import rotations
from fusionlang.rotations import MAX_SPIN, o3_wigner_D, su2_wigner_D

HALF = Fraction(1, 2)
SPINS_UP_TO_7 = [Fraction(n, 2) for n in range(15)]
# (cos(beta/2), sin(beta/2)) = (a/c, b/c): angles whose d matrices are exact square roots of rationals.
PYTHAGOREAN = [(3, 4, 5), (12, 5, 13), (8, 15, 17), (20, 21, 29)]


def _exact_small_d(tj: int, a: int, b: int, c: int) -> torch.Tensor:
    """``d^j(beta)`` with ``cos(beta/2) = a/c``, ``sin(beta/2) = b/c`` from Wigner's formula in integer
    arithmetic: each term times ``(2j)! c^2j`` is a multinomial coefficient times ``a^p b^q``, so the
    entry is ``sign * sqrt(square)`` with an exact rational ``square``, rounded once."""
    f = [math.factorial(k) for k in range(tj + 1)]
    n = tj + 1
    out = torch.zeros(n, n, dtype=torch.float64)
    for row in range(n):  # row = j + m', col = j + m
        for col in range(n):
            total = 0
            for s in range(max(0, col - row), min(col, tj - row) + 1):
                multinomial = f[tj] // (f[col - s] * f[s] * f[row - col + s] * f[tj - row - s])
                term = multinomial * a ** (tj + col - row - 2 * s) * b ** (row - col + 2 * s)
                total += -term if (row - col + s) % 2 else term
            square = Fraction(f[row] * f[tj - row] * f[col] * f[tj - col] * total * total, f[tj] ** 2 * c ** (2 * tj))
            out[row, col] = (1 if total > 0 else -1) * math.sqrt(square) if total else 0.0
    return out


def _su2_angles(U: torch.Tensor) -> tuple[float, float, float]:
    """Euler angles of a spin-1/2 matrix ``D[m', m] = exp(-i m' a) d[m', m](b) exp(-i m g)``."""
    p, q = float(torch.angle(U[0, 0])), float(torch.angle(-U[1, 0]))  # d[1/2, -1/2] = -sin(b/2)
    beta = 2 * math.atan2(float(U[1, 0].abs()), float(U[0, 0].abs()))
    return p - q, beta, p + q


def _random_angles(generator: torch.Generator) -> tuple[float, float, float]:
    return tuple(float(x) for x in rotations.random_rotation_angles(generator))  # type: ignore[return-value]


def _deviation(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max())


# -- exact values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("j", SPINS_UP_TO_7[:9], ids=str)
def test_su2_wigner_D_equals_sympy(j: Fraction) -> None:
    alpha, beta, gamma = sympy.Rational(3, 10), sympy.Rational(7, 5), sympy.Rational(-11, 10)
    exact = wigner_d(sympy.Rational(j.numerator, j.denominator), alpha, beta, gamma)
    expected = torch.tensor([[complex(exact[r, c].evalf(30)) for c in range(exact.shape[1])]
                             for r in range(exact.shape[0])], dtype=torch.complex128)
    assert _deviation(su2_wigner_D(j, 0.3, 1.4, -1.1), expected) < 1e-14


@pytest.mark.parametrize("two_j, angle", [(60, PYTHAGOREAN[0]), (61, PYTHAGOREAN[1]), (120, PYTHAGOREAN[2]),
                                          (120, PYTHAGOREAN[3])], ids=str)
def test_small_d_equals_exact_values_up_to_l_60(two_j: int, angle: tuple[int, int, int]) -> None:
    """Wigner's explicit formula in float64 was off by 1.3e-9 at l = 30 and overflowed at l = 50."""
    a, b, c = angle
    ours = su2_wigner_D(Fraction(two_j, 2), 0.0, 2 * math.atan2(b, a), 0.0)
    assert ours.imag.abs().max() == 0
    assert _deviation(ours.real, _exact_small_d(two_j, a, b, c)) < 1e-13


def test_beta_zero_is_exactly_the_identity() -> None:
    for j in (HALF, 1, 30, 60):
        dim = int(2 * j) + 1
        assert torch.equal(su2_wigner_D(j, 0.0, 0.0, 0.0), torch.eye(dim, dtype=torch.complex128))
    assert _deviation(o3_wigner_D(60, 1, 0.0, 0.0, 0.0), torch.eye(121, dtype=torch.float64)) < 1e-15


# -- unitarity and the homomorphism property ---------------------------------------------------------

@pytest.mark.parametrize("j", [Fraction(59, 2), 60, MAX_SPIN], ids=str)
def test_su2_wigner_D_is_unitary_and_a_homomorphism_at_high_spin(j: Fraction) -> None:
    generator = torch.Generator().manual_seed(int(2 * j))
    dim = int(2 * j) + 1
    for _ in range(2):
        a, b = _random_angles(generator), _random_angles(generator)
        product = _su2_angles(su2_wigner_D(HALF, *a) @ su2_wigner_D(HALF, *b))
        da, db = su2_wigner_D(j, *a), su2_wigner_D(j, *b)
        assert _deviation(da @ da.conj().T, torch.eye(dim, dtype=torch.complex128)) < 1e-12
        assert _deviation(da @ db, su2_wigner_D(j, *product)) < 1e-12


@pytest.mark.parametrize("l", [60, MAX_SPIN])
def test_o3_wigner_D_is_orthogonal_and_a_homomorphism_at_high_l(l: int) -> None:
    generator = torch.Generator().manual_seed(l)
    for _ in range(2):
        a, b = _random_angles(generator), _random_angles(generator)
        # o3_wigner_D(l, p, alpha, beta, gamma) is su2_wigner_D(l, -alpha, beta, -gamma) in the real basis.
        flip = lambda t: (-t[0], t[1], -t[2])  # noqa: E731
        product = flip(_su2_angles(su2_wigner_D(HALF, *flip(a)) @ su2_wigner_D(HALF, *flip(b))))
        da, db = o3_wigner_D(l, -1, *a, k=1), o3_wigner_D(l, -1, *b, k=1)
        assert _deviation(da @ da.T, torch.eye(2 * l + 1, dtype=torch.float64)) < 1e-12
        assert _deviation(da @ db, o3_wigner_D(l, -1, *product, k=2)) < 1e-12


def test_spins_above_the_supported_one_are_refused() -> None:
    with pytest.raises(ValueError, match=f"supported up to spin {MAX_SPIN}.*spin {MAX_SPIN + 1} is above"):
        su2_wigner_D(MAX_SPIN + 1, 0.1, 0.2, 0.3)
    with pytest.raises(ValueError, match=r"spin 401/2 is above"):
        su2_wigner_D(Fraction(2 * MAX_SPIN + 1, 2), 0.1, 0.2, 0.3)
    with pytest.raises(ValueError, match="supported up to spin"):
        o3_wigner_D(MAX_SPIN + 1, 1, 0.1, 0.2, 0.3)


# -- conventions (moved from test_wigner.py) -----------------------------------------------------

def test_su2_wigner_D_spin_half_is_the_known_matrix() -> None:
    alpha, beta, gamma = 0.3, 1.1, -0.7
    c, s = math.cos(beta / 2), math.sin(beta / 2)
    d = torch.tensor([[c, s], [-s, c]], dtype=torch.complex128)  # rows/cols m = -1/2, +1/2
    phases = torch.tensor([0.5, -0.5], dtype=torch.float64)
    left = torch.polar(torch.ones(2, dtype=torch.float64), phases * alpha)
    right = torch.polar(torch.ones(2, dtype=torch.float64), phases * gamma)
    expected = left[:, None] * d * right[None, :]
    torch.testing.assert_close(su2_wigner_D(HALF, alpha, beta, gamma), expected, atol=1e-15, rtol=0)


@pytest.mark.parametrize("j", SPINS_UP_TO_7, ids=str)
def test_su2_wigner_D_is_unitary_and_composes(j: Fraction) -> None:
    dim = int(2 * j) + 1
    d = su2_wigner_D(j, 0.4, 2.2, -1.3)
    torch.testing.assert_close(d @ d.conj().T, torch.eye(dim, dtype=torch.complex128), atol=1e-12, rtol=0)
    beta_product = su2_wigner_D(j, 0.0, 0.5, 0.0) @ su2_wigner_D(j, 0.0, 1.9, 0.0)
    torch.testing.assert_close(beta_product, su2_wigner_D(j, 0.0, 2.4, 0.0), atol=1e-12, rtol=0)


def test_su2_wigner_D_batched() -> None:
    alpha = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    batch = su2_wigner_D(Fraction(3, 2), alpha, 0.5, 0.25)
    assert batch.shape == (3, 4, 4)
    torch.testing.assert_close(batch[1], su2_wigner_D(Fraction(3, 2), 0.2, 0.5, 0.25))
    betas = su2_wigner_D(30, 0.1, torch.tensor([0.5, 2.5], dtype=torch.float64), 0.25)
    torch.testing.assert_close(betas[1], su2_wigner_D(30, 0.1, 2.5, 0.25), atol=1e-14, rtol=0)


def _cartesian_rotation(axis: int, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]  # right-handed rotation in the (i, j) plane
    rotation = torch.eye(3, dtype=torch.float64)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


def test_l1_representation_is_the_cartesian_rotation_matrix() -> None:
    # e3nn: gamma around Y first, then beta around X, then alpha around Y.  Its polar axis is
    # Y, so the textbook real l=1 order (y, z, x) lands on e3nn's Cartesian (x, y, z).
    alpha, beta, gamma = 0.3, 1.2, -0.8
    x_axis, y_axis = 0, 1
    rotation = _cartesian_rotation(y_axis, alpha) @ _cartesian_rotation(x_axis, beta)
    rotation = rotation @ _cartesian_rotation(y_axis, gamma)
    torch.testing.assert_close(o3_wigner_D(1, -1, alpha, beta, gamma), rotation, atol=1e-14, rtol=0)
    torch.testing.assert_close(o3_wigner_D(1, -1, alpha, beta, gamma, 1), -rotation, atol=1e-14, rtol=0)


@pytest.mark.parametrize("l", range(7))
@pytest.mark.parametrize("parity", [1, -1, "o"])
def test_o3_wigner_D_equals_e3nn(l: int, parity: int | str, float64_default: None) -> None:
    o3 = pytest.importorskip("e3nn.o3")
    generator = torch.Generator().manual_seed(l)
    alpha, beta, gamma = rotations.random_rotation_angles(generator, shape=(6,))
    k = torch.tensor([0.0, 1.0, 2.0, 3.0, 0.0, 1.0])
    p = {1: 1, -1: -1, "o": -1}[parity]
    ours = o3_wigner_D(l, parity, alpha, beta, gamma, k)
    reference = o3.Irrep(l, p).D_from_angles(alpha, beta, gamma, k)
    assert ours.shape == (6, 2 * l + 1, 2 * l + 1)
    torch.testing.assert_close(ours, reference, atol=1e-10, rtol=0)
    scalar = o3_wigner_D(l, parity, float(alpha[1]), float(beta[1]), float(gamma[1]), 1)
    torch.testing.assert_close(scalar, reference[1], atol=1e-10, rtol=0)


