"""Irreps as exact value types: parsing, printing, dimensions, selection rules, errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionlang import O3, SO3, SU2, FusionError, Irrep, Irreps
from fusionlang.groups import as_group, selection_problem

ROUND_TRIPS = [
    ("16x0e + 16x1o", "O3"), ("0e + 1o + 2e", "O3"), ("16x(0e + 1o + 2e)", "O3"),
    ("32x0e + 32x1o + 32x2e", "O3"), ("0 + 1 + 2", "SO3"), ("8x1", "SO3"), ("1/2", "SU2"),
    ("3x3/2", "SU2"), ("0 + 1/2 + 1", "SU2"), ("8x(0e + 1o) + 2e", "O3"),
]


@pytest.mark.parametrize("text,group", ROUND_TRIPS)
def test_str_round_trips(text: str, group: str) -> None:
    irreps = Irreps(text, group)
    assert str(irreps) == text
    assert Irreps(str(irreps), group) == irreps


def test_e3nn_spellings() -> None:
    assert Irreps("0e+1o+2e") == Irreps("0e + 1o + 2e")
    assert str(Irreps("1y")) == "1o" and str(Irreps("2y")) == "2e"
    assert Irreps("16x(0e + 1o)") == Irreps("16x0e + 16x1o")
    assert Irreps("2x(0e + 3x1o)") == Irreps("2x0e + 6x1o")
    assert Irreps("16x0e+16x1o").to_e3nn() == "16x0e+16x1o"


def test_dimensions_and_spins() -> None:
    x = Irreps("16x0e + 8x1o + 2e")
    assert (x.dim, x.num_irreps, x.lmax, len(x)) == (16 + 24 + 5, 25, 2, 3)
    spins = Irreps("0 + 1/2 + 3x3/2", SU2)
    assert spins.dim == 1 + 2 + 12 and spins.lmax == Fraction(3, 2)
    assert all(isinstance(i.j, Fraction) for i in spins.irreps)
    assert [s.stop - s.start for s in x.slices()] == [16, 24, 5]


def test_values_are_hashable_and_immutable() -> None:
    assert len({Irreps("0e + 1o"), Irreps("0e+1o"), Irreps("1o")}) == 2
    with pytest.raises(AttributeError):
        Irreps("0e").entries = ()  # type: ignore[misc]
    assert Irrep.parse("1o") < Irrep.parse("1e") < Irrep.parse("2o")


def test_sort_and_simplify_follow_e3nn() -> None:
    assert str(Irreps("1e + 0e + 0o + 1o + 2e").sort().irreps) == "0o + 0e + 1o + 1e + 2e"
    assert str(Irreps("0e + 0e + 1o").simplify()) == "2x0e + 1o"


@pytest.mark.parametrize("a,b,expected", [
    ("1o", "1o", ["0e", "1e", "2e"]), ("1o", "2e", ["1o", "2o", "3o"]), ("0e", "3o", ["3o"]),
])
def test_o3_products(a: str, b: str, expected: list[str]) -> None:
    assert [str(i) for i in Irrep.parse(a) * Irrep.parse(b)] == expected


def test_su2_products_keep_integrality() -> None:
    half, one = Irrep.parse("1/2", SU2), Irrep.parse("1", SU2)
    assert [str(i) for i in half * one] == ["1/2", "3/2"]
    assert [str(i) for i in half * half] == ["0", "1"]


@pytest.mark.parametrize("a,b,c,code", [
    ("1o", "1o", "1o", "E202"), ("1o", "1o", "3e", "E201"), ("1o", "2e", "1o", None),
])
def test_selection_rule_o3(a: str, b: str, c: str, code: str | None) -> None:
    problem = selection_problem(*(Irrep.parse(x) for x in (a, b, c)))
    assert (problem[0] if problem else None) == code


def test_selection_rule_su2_integrality() -> None:
    a, b, c = (Irrep.parse(x, SU2) for x in ("1/2", "1", "1"))
    problem = selection_problem(a, b, c)
    assert problem is not None and problem[0] == "E203"


@pytest.mark.parametrize("text,group,code,position", [
    ("1/2", "O3", "E021", 0), ("3/2", "SO3", "E021", 0), ("1q", "O3", "E020", 1),
    ("0e + ", "O3", "E020", 5), ("16x(0e", "O3", "E020", 6), ("0x1o", "O3", "E024", 0),
    ("1e", "SO3", "E023", 1), ("2/2", "SU2", "E020", 3), ("1o 2e", "O3", "E020", 3),
    ("x1o", "O3", "E020", 0), ("1o + @", "O3", "E020", 5),
])
def test_bad_strings_name_the_position(text: str, group: str, code: str, position: int) -> None:
    with pytest.raises(FusionError) as caught:
        Irreps(text, group)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == code
    assert diagnostic.span is not None and diagnostic.span.start == position
    if code == "E020":
        assert f"position {position}" in diagnostic.message


def test_unknown_group() -> None:
    with pytest.raises(FusionError, match="E022"):
        as_group("SO2")
    assert as_group("o3") is O3 and as_group(SO3) is SO3


# -- generated strings -------------------------------------------------------------------------

def _irrep_text(group: str) -> st.SearchStrategy[str]:
    if group == "O3":
        return st.builds(lambda l, p: f"{l}{p}", st.integers(0, 12), st.sampled_from("eoy"))
    if group == "SO3":
        return st.integers(0, 12).map(str)
    return st.integers(0, 25).map(lambda two_j: str(two_j // 2) if two_j % 2 == 0 else f"{two_j}/2")


@st.composite
def irreps_text(draw: st.DrawFn, group: str, depth: int = 0) -> str:
    space = draw(st.sampled_from(["", " ", "  "]))
    terms = []
    for _ in range(draw(st.integers(1, 4))):
        mul = draw(st.sampled_from(["", "1x", "2x", "16x", "3x"]))
        if depth < 2 and draw(st.booleans()) and mul:
            terms.append(f"{mul}({draw(irreps_text(group, depth + 1))})")
        else:
            terms.append(mul + draw(_irrep_text(group)))
    return f"{space}+{space}".join(terms)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["O3", "SO3", "SU2"]).flatmap(lambda g: st.tuples(st.just(g), irreps_text(g))))
def test_generated_strings_round_trip(case: tuple[str, str]) -> None:
    group, text = case
    irreps = Irreps(text, group)
    assert Irreps(str(irreps), group) == irreps
    assert str(Irreps(str(irreps), group)) == str(irreps)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="0123456789xeoy/+() \t@a-", max_size=30), st.sampled_from(["O3", "SO3", "SU2"]))
def test_arbitrary_strings_parse_or_fail_with_a_position(text: str, group: str) -> None:
    try:
        Irreps(text, group)
    except FusionError as failure:
        for diagnostic in failure.diagnostics:
            assert diagnostic.span is not None and 0 <= diagnostic.span.start <= len(text)
            assert diagnostic.code.startswith("E02")
