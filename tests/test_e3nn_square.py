"""``pairing = unordered``, e3nn's TensorSquare (docs/language.md, "Unordered pairs"): equal to
e3nn's module to 1e-12 in float64, written by hand and converted by ``from_e3nn`` (with and
without weights); the reference contraction and the equivariance helper agree; misuse is E118."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import testing

o3 = pytest.importorskip("e3nn.o3")

TOLERANCE = 1e-12
INPUTS = ["2x0e + 2x1o", "3x0e + 1x1o + 2x2e", "1o", "4x1e", "8x0e + 6x1o", "2x1o + 3x2o"]
NORMALISATIONS = ["component", "norm", "none"]


@pytest.fixture(autouse=True)
def _float64(float64_default: None) -> Iterator[None]:
    torch.manual_seed(0)
    yield


def _source(irreps: str, options: str = "pairing = unordered", target: str = "") -> str:
    return (f"diagram d {{\n    group O3\n    input  x : {irreps}\n    output z{target}\n"
            f"    x, x -> z  [{options}]\n}}\n")


def _difference(ours: Any, theirs: Any, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((ours(x) - theirs(x)).abs().max())


@pytest.mark.parametrize("irreps", INPUTS)
@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_hand_written_square_equals_e3nn(irreps: str, normalisation: str) -> None:
    theirs = o3.TensorSquare(irreps, irrep_normalization=normalisation)
    options = "pairing = unordered" + (f", irrep_normalization = {normalisation}" * (normalisation != "component"))
    ours = fusionlang.compile(_source(irreps, options)).module_class()(dtype=torch.float64)
    assert ours.irreps_out == theirs.irreps_out
    for mine, reference in zip(ours.instructions, theirs.instructions, strict=True):
        assert abs(mine.path_weight - reference.path_weight) < TOLERANCE
        assert mine._replace(path_weight=0.0) == reference._replace(path_weight=0.0)
    assert _difference(ours, theirs, theirs.irreps_in.randn(7, -1)) < TOLERANCE


def test_the_square_keeps_the_symmetric_part_only() -> None:
    """e3nn's example size: a 26-dimensional input squares to 351 numbers, not 26 * 26 = 676."""
    square = fusionlang.compile(_source("8x0e + 6x1o")).diagram().irreps("z")
    every = fusionlang.compile(_source("8x0e + 6x1o", "paths = split")).diagram().irreps("z")
    assert (square.dim, every.dim) == (351, 676)


@pytest.mark.parametrize("irreps", INPUTS)
@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_from_e3nn_converts_squares_without_weights(irreps: str, normalisation: str) -> None:
    theirs = o3.TensorSquare(irreps, irrep_normalization=normalisation)
    converted = fusionlang.from_e3nn(theirs)
    assert "x, x -> z  [pairing = unordered, weights = none" in converted.source
    assert converted.module.irreps_out == theirs.irreps_out
    assert _difference(converted.module, theirs, theirs.irreps_in.randn(7, -1)) < TOLERANCE


def test_from_e3nn_converts_filtered_squares() -> None:
    theirs = o3.TensorSquare("3x0e + 2x1o + 2x2e", filter_ir_out=["0e", "2e"])
    converted = fusionlang.from_e3nn(theirs)
    assert converted.module.irreps_out == theirs.irreps_out
    assert _difference(converted.module, theirs, theirs.irreps_in.randn(7, -1)) < TOLERANCE


@pytest.mark.parametrize(("irreps", "out"), [("2x0e + 2x1o", "3x0e + 2x1o + 2x1e + 2x2e"),
                                             ("3x0e + 1x1o + 2x2e", "2x0e + 3x1e + 2x2e + 2x3o"),
                                             ("4x1e", "2x0e + 2x1e + 2x2e")])
@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_from_e3nn_converts_squares_with_weights(irreps: str, out: str, normalisation: str) -> None:
    theirs = o3.TensorSquare(irreps, out, irrep_normalization=normalisation)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.normal_()
    converted = fusionlang.from_e3nn(theirs)
    assert "x, x -> z  [channels = uvw, weights = channel]" in converted.source
    assert _difference(converted.module, theirs, theirs.irreps_in.randn(7, -1)) < TOLERANCE


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_reference_contraction_and_equivariance(normalisation: str) -> None:
    text = _source("2x0e + 3x1o + 1x2e", f"pairing = unordered, irrep_normalization = {normalisation}")
    result = fusionlang.compile(text)
    diagram = result.diagram()
    module = testing.cast_module(result.module_class()(), torch.float64)
    x = testing.random_features(diagram.irreps("x"), (5,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float((module(x) - testing.reference_forward(diagram, [x], {})).abs().max()) < TOLERANCE
    assert testing.assert_module_equivariant(module, diagram) < 1e-10


def test_the_formatter_keeps_the_option() -> None:
    text = fusionlang.format_source("diagram d { group O3; input x:2x1o; output z\n x,x->z [pairing=unordered] }")
    assert "    x, x -> z  [pairing = unordered]" in text
    assert fusionlang.format_source(text) == text
    assert fusionlang.check(text).diagram().statements[0].pairing == "unordered"


@pytest.mark.parametrize(("statement", "words"), [
    ("x, y -> z  [pairing = unordered]", "one argument read twice"),
    ("x, x, x -> z  [pairing = unordered]", "one argument read twice"),
    ("x, x -> z  [pairing = unordered, weights = channel]", "has no weights"),
    ("x, x -> z  [pairing = unordered, channels = uuu]", "sets the channels itself"),
    ("x, x -> z  [pairing = unordered, paths = split]", "lays out the target itself"),
])
def test_misused_unordered_pairing_is_diagnosed(statement: str, words: str) -> None:
    text = ("diagram d {\n    group O3\n    input  x, y : 2x0e + 2x1o\n    output z\n"
            f"    {statement}\n}}\n")
    found = fusionlang.check(text).diagnostics
    assert [d.code for d in found if words in d.message] == ["E118"], [d.message for d in found]
    assert all(d.hint for d in found)


def test_a_declared_target_must_have_the_pairs_entries() -> None:
    found = fusionlang.check(_source("2x1o", target=" : 0e + 1e + 2e")).diagnostics
    assert [d.code for d in found] == ["E402"] and "pairing = unordered" in found[0].message
    assert "declare `z : 0e + 2x0e + 1e + 2e + 2x2e`" in (found[0].hint or "")
    assert fusionlang.check(_source("2x1o", target=" : 0e + 2x0e + 1e + 2e + 2x2e")).ok


@pytest.mark.parametrize(("make", "feature"), [
    (lambda: o3.TensorSquare("2x0e + 2x1o", "2x0e + 2x1e", shared_weights=False), "external weights"),
    (lambda: o3.TensorSquare("0e + 1o", "2x0e + 2x1e"), "multiplicity-1"),
])
def test_what_the_converter_cannot_map_is_refused(make: Any, feature: str) -> None:
    from fusionlang.e3nn_convert import E3nnConversionError

    with pytest.raises(E3nnConversionError) as refused:
        fusionlang.from_e3nn(make())
    assert feature in refused.value.feature
