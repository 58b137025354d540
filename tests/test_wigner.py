"""Tests for fusionlang.wigner: exact symbols against sympy, tensors against e3nn."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys
from fractions import Fraction

import pytest
import sympy
import torch
from sympy.physics import wigner as sympy_wigner

from fusionlang import rotations, wigner
from fusionlang.wigner import SignedSqrt

HALF = Fraction(1, 2)
SPINS_UP_TO_3 = [Fraction(n, 2) for n in range(7)]
SPINS_UP_TO_7 = [Fraction(n, 2) for n in range(15)]


def _triangle(a: Fraction, b: Fraction, c: Fraction) -> bool:
    return abs(a - b) <= c <= a + b and (a + b + c).denominator == 1


def _projections(j: Fraction) -> list[Fraction]:
    return [-j + k for k in range(int(2 * j) + 1)]


def _sym(value: Fraction) -> sympy.Rational:
    return sympy.Rational(value.numerator, value.denominator)


def _assert_exactly_equal(ours: SignedSqrt, reference: sympy.Expr) -> None:
    """Exact comparison: same sign and same (rational) square."""
    square = sympy.expand(reference**2)
    assert square.is_Rational, f"sympy value {reference} is not a signed square root"
    expected_sign = 1 if reference > 0 else (-1 if reference < 0 else 0)
    assert ours.sign == expected_sign, (ours, reference)
    assert sympy.Rational(ours.square.numerator, ours.square.denominator) == square, (ours, reference)


def _sympy_or_zero(function, *args: Fraction) -> sympy.Expr:
    """sympy raises for a non-integer perimeter, where the symbol is zero by convention."""
    try:
        return function(*(_sym(a) for a in args))
    except ValueError:
        return sympy.Integer(0)


TRIPLES_UP_TO_3 = [t for t in itertools.product(SPINS_UP_TO_3, repeat=3) if _triangle(*t)]
BAD_TRIPLES_UP_TO_3 = [t for t in itertools.product(SPINS_UP_TO_3, repeat=3) if not _triangle(*t)]


# ---------------------------------------------------------------- SignedSqrt and inputs


def test_signed_sqrt_arithmetic_and_canonical_form() -> None:
    value = SignedSqrt(-1, Fraction(3, 10))
    assert float(value) == pytest.approx(-math.sqrt(0.3), rel=1e-15)
    assert (value * value) == SignedSqrt(1, Fraction(9, 100))
    assert value * Fraction(-2) == SignedSqrt(1, Fraction(6, 5))
    assert -value == SignedSqrt(1, Fraction(3, 10))
    assert sympy.simplify(value.to_sympy() + sympy.sqrt(sympy.Rational(3, 10))) == 0
    with pytest.raises(ValueError):
        SignedSqrt(1, Fraction(0))
    with pytest.raises(ValueError):
        SignedSqrt(0, Fraction(1))


def test_spins_must_be_exact_half_integers() -> None:
    with pytest.raises(TypeError):
        wigner.su2_clebsch_gordan(0.5, 0.5, 0.5, -0.5, 0, 0)
    with pytest.raises(ValueError):
        wigner.wigner_6j(Fraction(1, 3), 1, 1, 1, 1, 1)
    with pytest.raises(ValueError):
        wigner.su2_coupling(-1, 1, 0)
    assert wigner.su2_clebsch_gordan(sympy.Rational(1, 2), HALF, HALF, -HALF, 0, 0) == SignedSqrt(
        1, Fraction(1, 2)
    )


# ---------------------------------------------------------------- Clebsch-Gordan vs sympy


@pytest.mark.parametrize("j1, j2, j", TRIPLES_UP_TO_3, ids=str)
def test_clebsch_gordan_equals_sympy(j1: Fraction, j2: Fraction, j: Fraction) -> None:
    for m1, m2 in itertools.product(_projections(j1), _projections(j2)):
        m = m1 + m2
        if abs(m) > j:
            continue
        reference = sympy_wigner.clebsch_gordan(_sym(j1), _sym(j2), _sym(j), _sym(m1), _sym(m2), _sym(m))
        _assert_exactly_equal(wigner.su2_clebsch_gordan(j1, m1, j2, m2, j, m), reference)


@pytest.mark.parametrize("j1, j2, j", TRIPLES_UP_TO_3[::7], ids=str)
def test_clebsch_gordan_zero_off_selection(j1: Fraction, j2: Fraction, j: Fraction) -> None:
    m1, m2 = j1, j2
    assert not wigner.su2_clebsch_gordan(j1, m1, j2, m2, j, m1 + m2 - 1)
    assert not wigner.su2_clebsch_gordan(j1, j1 + 1, j2, m2, j, j1 + 1 + m2)


def test_clebsch_gordan_zero_when_triangle_fails() -> None:
    for j1, j2, j in BAD_TRIPLES_UP_TO_3[::5]:
        for m1, m2 in itertools.product(_projections(j1), _projections(j2)):
            assert not wigner.su2_clebsch_gordan(j1, m1, j2, m2, j, m1 + m2)


# ---------------------------------------------------------------- 6j and 9j vs sympy


@pytest.mark.parametrize("j1, j2, j3", TRIPLES_UP_TO_3, ids=str)
def test_6j_equals_sympy(j1: Fraction, j2: Fraction, j3: Fraction) -> None:
    for j4, j5, j6 in itertools.product(SPINS_UP_TO_3, repeat=3):
        valid = _triangle(j1, j5, j6) and _triangle(j4, j2, j6) and _triangle(j4, j5, j3)
        ours = wigner.wigner_6j(j1, j2, j3, j4, j5, j6)
        if not valid:
            assert not ours
            continue
        _assert_exactly_equal(ours, sympy_wigner.wigner_6j(*(_sym(x) for x in (j1, j2, j3, j4, j5, j6))))


def test_6j_zero_when_triangle_fails() -> None:
    for bad in BAD_TRIPLES_UP_TO_3[::3]:
        args = (*bad, Fraction(1), Fraction(1), Fraction(1))
        assert not wigner.wigner_6j(*args)
        assert _sympy_or_zero(sympy_wigner.wigner_6j, *args) == 0


def _nine_j_is_valid(t: tuple[Fraction, ...]) -> bool:
    triads = (t[0:3], t[3:6], t[6:9], t[0::3], t[1::3], t[2::3])
    return all(_triangle(*triad) for triad in triads)


def _sample_valid_9j(count: int, seed: int) -> list[tuple[Fraction, ...]]:
    rng = random.Random(seed)
    samples: list[tuple[Fraction, ...]] = []
    while len(samples) < count:
        candidate = tuple(rng.choice(SPINS_UP_TO_3) for _ in range(9))
        if _nine_j_is_valid(candidate):
            samples.append(candidate)
    return samples


NINE_J_SAMPLES = _sample_valid_9j(1200, seed=2024)


@pytest.mark.parametrize("chunk", range(40))
def test_9j_equals_sympy_on_sampled_spins(chunk: int) -> None:
    for spins in NINE_J_SAMPLES[chunk::40]:
        reference = sympy_wigner.wigner_9j(*(_sym(x) for x in spins))
        _assert_exactly_equal(wigner.wigner_9j(*spins), reference)


@pytest.mark.parametrize("spins", list(itertools.product(range(2), repeat=9))[::3], ids=str)
def test_9j_equals_sympy_small_integer_spins(spins: tuple[int, ...]) -> None:
    reference = _sympy_or_zero(sympy_wigner.wigner_9j, *(Fraction(s) for s in spins))
    ours = wigner.wigner_9j(*spins)
    if reference == 0:
        assert not ours
    else:
        _assert_exactly_equal(ours, reference)


def test_9j_symmetries() -> None:
    for spins in NINE_J_SAMPLES[:100]:
        value = wigner.wigner_9j(*spins)
        transposed = wigner.wigner_9j(*(spins[i] for i in (0, 3, 6, 1, 4, 7, 2, 5, 8)))
        cycled_rows = wigner.wigner_9j(*spins[3:], *spins[:3])
        assert value == transposed == cycled_rows


# ---------------------------------------------------------------- SU(2) tensors


@pytest.mark.parametrize("j1, j2, j", TRIPLES_UP_TO_3[::3], ids=str)
def test_su2_coupling_matches_scalar_coefficients(j1: Fraction, j2: Fraction, j: Fraction) -> None:
    tensor = wigner.su2_coupling(j1, j2, j)
    assert tensor.dtype == torch.complex128
    assert tensor.shape == (int(2 * j1) + 1, int(2 * j2) + 1, int(2 * j) + 1)
    for (i1, m1), (i2, m2), (i3, m) in itertools.product(
        enumerate(_projections(j1)), enumerate(_projections(j2)), enumerate(_projections(j))
    ):
        expected = float(wigner.su2_clebsch_gordan(j1, m1, j2, m2, j, m))
        assert tensor[i1, i2, i3].item() == pytest.approx(expected, abs=1e-15)


def _su2_triples_with_first(j1: Fraction) -> list[tuple[Fraction, Fraction, Fraction]]:
    return [(j1, j2, j) for j2 in SPINS_UP_TO_7 for j in SPINS_UP_TO_7 if _triangle(j1, j2, j)]


@pytest.mark.parametrize("j1", SPINS_UP_TO_7, ids=str)
def test_su2_coupling_orthogonality(j1: Fraction) -> None:
    for _, j2, j in _su2_triples_with_first(j1):
        c = wigner.su2_coupling(j1, j2, j)
        gram = torch.einsum("abm,abn->mn", c, c.conj())
        torch.testing.assert_close(gram, torch.eye(c.shape[2], dtype=torch.complex128), atol=1e-12, rtol=0)


@pytest.mark.parametrize("j1", SPINS_UP_TO_7[::2], ids=str)
def test_su2_coupling_completeness(j1: Fraction) -> None:
    # Summing over every allowed j as well gives the identity on the product space.
    for j2 in SPINS_UP_TO_7[::3]:
        allowed = [abs(j1 - j2) + k for k in range(int(2 * min(j1, j2)) + 1)]
        blocks = [wigner.su2_coupling(j1, j2, j) for j in allowed]
        full = torch.cat([b.reshape(b.shape[0] * b.shape[1], -1) for b in blocks], dim=1)
        identity = torch.eye(full.shape[0], dtype=torch.complex128)
        torch.testing.assert_close(full @ full.conj().T, identity, atol=1e-12, rtol=0)


@pytest.mark.parametrize("j1", SPINS_UP_TO_7, ids=str)
def test_su2_coupling_invariant_under_rotations(j1: Fraction) -> None:
    generator = torch.Generator().manual_seed(int(2 * j1))
    for _, j2, j in _su2_triples_with_first(j1)[::2]:
        angles = rotations.random_rotation_angles(generator)
        d1, d2, d3 = (rotations.su2_wigner_D(x, *angles) for x in (j1, j2, j))
        c = wigner.su2_coupling(j1, j2, j)
        rotated_inputs = torch.einsum("ia,jb,abk->ijk", d1, d2, c)
        torch.testing.assert_close(rotated_inputs, c @ d3, atol=1e-11, rtol=0)


# ---------------------------------------------------------------- real (e3nn) tensors

L_TRIPLES = [t for t in itertools.product(range(7), repeat=3) if abs(t[0] - t[1]) <= t[2] <= t[0] + t[1]]


@pytest.mark.parametrize("l1, l2, l3", L_TRIPLES, ids=str)
def test_real_coupling_equals_e3nn_wigner_3j(l1: int, l2: int, l3: int) -> None:
    o3 = pytest.importorskip("e3nn.o3")
    ours = wigner.real_coupling(l1, l2, l3)
    reference = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
    assert ours.dtype == torch.float64 and ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)


@pytest.mark.parametrize("l", range(7))
def test_real_basis_change_is_conjugate_of_e3nn(l: int) -> None:
    o3 = pytest.importorskip("e3nn.o3")
    q = wigner.real_basis_change(l)
    reference = o3.change_basis_real_to_complex(l, dtype=torch.float64).conj().T
    torch.testing.assert_close(q, reference, atol=1e-15, rtol=0)
    torch.testing.assert_close(q @ q.conj().T, torch.eye(2 * l + 1, dtype=torch.complex128))


@pytest.mark.parametrize("l1, l2, l3", L_TRIPLES[::2], ids=str)
def test_real_coupling_invariant_under_o3_rotations(l1: int, l2: int, l3: int) -> None:
    generator = torch.Generator().manual_seed(100 * l1 + 10 * l2 + l3)
    angles = rotations.random_rotation_angles(generator)
    d1, d2, d3 = (rotations.o3_wigner_D(x, 1, *angles) for x in (l1, l2, l3))
    c = wigner.real_coupling(l1, l2, l3)
    torch.testing.assert_close(torch.einsum("ia,jb,abk->ijk", d1, d2, c), c @ d3, atol=1e-11, rtol=0)


@pytest.mark.parametrize("l1, l2, l3", L_TRIPLES[::3], ids=str)
def test_normalizations_have_documented_norms(l1: int, l2: int, l3: int) -> None:
    w3j = wigner.real_coupling(l1, l2, l3)
    unitary = wigner.real_coupling(l1, l2, l3, "unitary")
    component = wigner.real_coupling(l1, l2, l3, "component")
    norm = wigner.real_coupling(l1, l2, l3, "norm")
    dim1, dim2, dim3 = 2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1
    assert torch.linalg.norm(w3j).item() == pytest.approx(1.0, rel=1e-13)
    torch.testing.assert_close((unitary**2).sum(dim=(0, 1)), torch.ones(dim3, dtype=torch.float64))
    torch.testing.assert_close(component, unitary, atol=0, rtol=0)
    torch.testing.assert_close(unitary, w3j * math.sqrt(dim3))
    assert (norm**2).sum().item() == pytest.approx(dim1 * dim2, rel=1e-12)
    torch.testing.assert_close(norm, w3j * math.sqrt(dim1 * dim2))


@pytest.mark.parametrize("normalization", ["component", "norm"])
@pytest.mark.parametrize("l1, l2, l3", [(1, 1, 2), (2, 1, 1), (3, 2, 4), (2, 2, 0)], ids=str)
def test_normalizations_match_e3nn_tensor_product(
    l1: int, l2: int, l3: int, normalization: str, float64_default: None
) -> None:
    o3 = pytest.importorskip("e3nn.o3")
    tp = o3.FullTensorProduct(
        f"1x{l1}e", f"1x{l2}e", filter_ir_out=[o3.Irrep(l3, 1)], irrep_normalization=normalization
    )
    x1 = torch.randn(5, 2 * l1 + 1, generator=torch.Generator().manual_seed(1))
    x2 = torch.randn(5, 2 * l2 + 1, generator=torch.Generator().manual_seed(2))
    ours = torch.einsum("ijk,bi,bj->bk", wigner.real_coupling(l1, l2, l3, normalization), x1, x2)
    torch.testing.assert_close(ours, tp(x1, x2), atol=1e-10, rtol=0)


def test_unknown_normalization_rejected() -> None:
    with pytest.raises(ValueError, match="normalization"):
        wigner.real_coupling(1, 1, 1, "bogus")
    with pytest.raises(ValueError, match="normalization"):
        wigner.coupling_tensor("SU2", 1, 1, 1, "bogus")


# ---------------------------------------------------------------- coupling_tensor


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONLANG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FUSIONLANG_NO_CACHE", raising=False)
    wigner.clear_coupling_memory_cache()
    yield tmp_path / "cache"
    wigner.clear_coupling_memory_cache()


@pytest.mark.parametrize("normalization", wigner.NORMALIZATIONS)
def test_coupling_tensor_so3_and_o3(isolated_cache, normalization: str) -> None:
    for l1, l2, l3 in L_TRIPLES[::5]:
        expected = wigner.real_coupling(l1, l2, l3, normalization)
        for group in ("SO3", "O3"):
            got = wigner.coupling_tensor(group, l1, l2, l3, normalization)
            assert got.dtype == torch.float64
            torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_coupling_tensor_su2(isolated_cache) -> None:
    j1, j2, j = Fraction(3, 2), Fraction(1), Fraction(5, 2)
    raw = wigner.su2_coupling(j1, j2, j)
    for normalization in ("wigner_3j", "unitary", "component"):
        torch.testing.assert_close(wigner.coupling_tensor("SU2", j1, j2, j, normalization), raw)
    norm = wigner.coupling_tensor("SU2", j1, j2, j, "norm")
    torch.testing.assert_close(norm, raw * math.sqrt(4 * 3 / 6))


def test_coupling_tensor_returns_fresh_tensors(isolated_cache) -> None:
    first = wigner.coupling_tensor("SO3", 1, 1, 1)
    first.zero_()
    second = wigner.coupling_tensor("SO3", 1, 1, 1)
    torch.testing.assert_close(second, wigner.real_coupling(1, 1, 1))


@pytest.mark.parametrize(
    "group, spins",
    [("SO3", (1, 1, 3)), ("O3", (0, 2, 1)), ("SU2", (HALF, HALF, Fraction(3, 2))), ("SU2", (HALF, 1, 1))],
)
def test_coupling_tensor_rejects_triangle_failures(isolated_cache, group: str, spins: tuple) -> None:
    with pytest.raises(ValueError, match="triangle"):
        wigner.coupling_tensor(group, *spins)


def test_coupling_tensor_rejects_half_integer_so3_and_unknown_group(isolated_cache) -> None:
    with pytest.raises(ValueError):
        wigner.coupling_tensor("SO3", HALF, HALF, 1)
    with pytest.raises(ValueError, match="group"):
        wigner.coupling_tensor("SU3", 1, 1, 1)


def test_coupling_tensor_uses_and_survives_the_disk_cache(isolated_cache) -> None:
    expected = wigner.real_coupling(3, 2, 4)
    torch.testing.assert_close(wigner.coupling_tensor("SO3", 3, 2, 4), expected, atol=0, rtol=0)
    files = list(isolated_cache.rglob("*.flc"))
    assert len(files) == 1
    wigner.clear_coupling_memory_cache()
    files[0].write_bytes(files[0].read_bytes()[:-10])  # truncate
    torch.testing.assert_close(wigner.coupling_tensor("SO3", 3, 2, 4), expected, atol=0, rtol=0)
    wigner.clear_coupling_memory_cache()
    torch.testing.assert_close(wigner.coupling_tensor("SO3", 3, 2, 4), expected, atol=0, rtol=0)


def test_coupling_tensor_without_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FUSIONLANG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUSIONLANG_NO_CACHE", "1")
    wigner.clear_coupling_memory_cache()
    torch.testing.assert_close(wigner.coupling_tensor("SO3", 2, 2, 2), wigner.real_coupling(2, 2, 2))
    assert not (tmp_path / "cache").exists()
    wigner.clear_coupling_memory_cache()


def test_importing_wigner_does_not_import_torch() -> None:
    code = (
        "import sys, fusionlang\n"
        "if 'torch' in sys.modules: print('skip'); raise SystemExit\n"
        "import fusionlang.wigner, fusionlang.cache\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if result.stdout.strip() == "skip":
        pytest.skip("the fusionlang package itself imports torch")
    assert result.stdout.strip() == "False"
