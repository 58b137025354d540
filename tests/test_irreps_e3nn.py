"""`Irrep`/`Irreps` answer e3nn's questions as e3nn does, and refuse the calls whose meanings differ."""

from __future__ import annotations

import pytest
import torch

from fusionlang import FusionError, Irrep, Irreps

o3 = pytest.importorskip("e3nn.o3")

CASES = ["16x0e", "16x0e + 16x1o", "0e + 1o + 2e + 1o", "2x1e + 1e + 0o", "3x2o + 0e + 0e + 5x1y", "1o", ""]


@pytest.mark.parametrize("text", CASES)
def test_answers_equal_e3nn(text: str) -> None:
    ours, theirs = Irreps(text), o3.Irreps(text)
    assert (ours.dim, ours.ls, ours.num_irreps) == (theirs.dim, theirs.ls, theirs.num_irreps)
    assert [(mul, str(ir)) for mul, ir in ours] == [(mul, str(ir)) for mul, ir in theirs]
    assert [(mul, l, p) for mul, (l, p) in ours] == [(mul, l, p) for mul, (l, p) in theirs]
    for ir in ("0e", "1o", "1e", "2o", "2e"):
        assert ours.count(ir) == theirs.count(ir) and (ir in ours) == (ir in theirs)
    assert ours.simplify() == str(theirs.simplify()) and ours.regroup() == str(theirs.regroup())
    assert ours * 2 == str(theirs * 2) and 3 * ours == str(3 * theirs)
    assert ours == theirs and ours == str(theirs) and Irreps(theirs) == ours
    if text:
        assert ours.lmax == theirs.lmax
        mine, e3 = ours.sort(), theirs.sort()
        assert (mine.irreps, mine.p, mine.inv) == (str(e3.irreps), e3.p, e3.inv)


def test_e3nn_forms_are_understood() -> None:
    assert Irrep("1o") == Irrep(o3.Irrep("1o")) == Irrep((1, -1)) == Irrep(two_j=2, parity=-1)
    assert Irreps([(16, (0, 1))]) == "16x0e"     # e3nn's tuple form: (mul, (l, p))
    assert Irreps([(16, (0, 1))]).dim == 16      # not 16 copies of a misread irrep
    assert Irreps([(2, "1o"), "0e", (1, o3.Irrep("2e"))]) == "2x1o + 0e + 2e"
    assert Irreps("0e") + "1o" == "0e + 1o" and "1o" + Irreps("0e") == "1o + 0e"
    assert Irreps("16x1o").count("1o") == 16
    mul, ir = Irreps("16x1o")[0]
    assert (mul, ir.l, ir.p, ir.dim) == (16, 1, -1, 3)


def test_spherical_harmonics_and_randn_equal_e3nn() -> None:
    for lmax, p in ((0, -1), (3, -1), (4, 1)):
        assert Irreps.spherical_harmonics(lmax, p) == o3.Irreps.spherical_harmonics(lmax, p)
    x = Irreps("5x0e + 10x1o")
    assert x.randn(4, -1).shape == o3.Irreps("5x0e + 10x1o").randn(4, -1).shape == (4, 35)
    assert x.randn(-1, dtype=torch.float64).dtype == torch.float64
    unit = Irreps("2o").randn(2, -1, 3, normalization="norm")
    assert unit.shape == (2, 5, 3) and torch.allclose(unit.norm(dim=1), torch.ones(2, 3))
    with pytest.raises(ValueError, match="exactly one -1"):
        x.randn(4, 35)


def test_ambiguous_int_irrep_is_refused() -> None:
    # e3nn reads Irrep(1, -1) as l=1 odd; fusionlang used to read it as twice-j, spin 1/2 ("0o", dim 2).
    with pytest.raises(TypeError, match=r'ambiguous.*Irrep\("1o"\).*two_j=1'):
        Irrep(1, -1)
    with pytest.raises(TypeError, match="ambiguous"):
        Irrep(2)
    with pytest.raises(TypeError, match="ambiguous"):
        Irreps([(4, 1)])


@pytest.mark.parametrize("call, error", [
    (lambda: Irreps([(16, (0, 1))], "SU2"), TypeError),      # (l, p) means nothing for SU(2)
    (lambda: Irreps([(0, "1o")]), ValueError),               # e3nn allows empty entries; fusionlang has none
    (lambda: Irreps([(16, (1, 0))]), ValueError),             # parity 0
    (lambda: Irreps([("16", "1o")]), ValueError),
    (lambda: Irreps([16]), TypeError),
    (lambda: Irreps("1/2 + 1", "SU2").ls, ValueError),         # half-integer spins have no l
    (lambda: Irreps.spherical_harmonics(2, p=0), ValueError),
    (lambda: Irreps("1o") * Irreps("1o"), TypeError),          # a tensor product is a diagram
    (lambda: Irrep(two_j=1), ValueError),                      # spin 1/2 is no O(3) irrep
    (lambda: Irrep(two_j=2, parity=0), ValueError),            # O(3) needs a parity
    (lambda: Irrep("1o", two_j=2), TypeError),
])
def test_meanings_that_differ_are_refused(call, error) -> None:
    with pytest.raises(error):
        call()


def test_strings_that_do_not_parse_are_unequal() -> None:
    assert Irreps("16x0e") == "16x0e" and Irreps("16x0e") != "16x1o"
    assert Irreps("0e") != "(" and Irreps("1/2", "SU2") != "1/2 + 1"
    with pytest.raises(FusionError):
        Irreps("0e").count("x")
    assert len({Irreps("16x0e"), Irreps("16x(0e)")}) == 1


def test_internal_twice_j_form_still_works() -> None:
    half = Irrep(two_j=1, parity=0, group="SU2")
    assert (half.dim, str(half), half.p) == (2, "1/2", 0)
    assert Irrep("3/2", "SU2") == Irrep(two_j=3, parity=0, group="SU2")
    assert [str(i) for i in Irrep("1o") * Irrep("1o")] == ["0e", "1e", "2e"]
