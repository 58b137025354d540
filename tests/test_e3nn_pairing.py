"""``pairing = elementwise``, e3nn's ElementwiseTensorProduct (docs/language.md, "Elementwise
pairing"): equal to e3nn's module to 1e-12 in float64, written by hand and converted by
``from_e3nn``; the reference contraction and the equivariance helper agree; misuse is E118."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import importers, testing

o3 = pytest.importorskip("e3nn.o3")

TOLERANCE = 1e-12
PAIRS = [("16x0e + 16x1o", "8x1o + 24x0e"), ("2x0e + 2x1o", "4x1o"), ("4x0e + 4x1o + 4x2e", "4x1o + 8x0e"),
         ("2x0e + 2x1o", "2x1o + 2x0e"), ("3x1o + 2x2e", "2x2e + 3x1o"), ("5x0e", "5x0e")]


@pytest.fixture(autouse=True)
def _float64(float64_default: None) -> Iterator[None]:
    torch.manual_seed(0)
    yield


def _source(x: Any, y: Any, options: str = "pairing = elementwise", z: str = "") -> str:
    return (f"diagram d {{\n    group O3\n    input  x : {x}\n    input  y : {y}\n    output z{z}\n"
            f"    x, y -> z  [{options}]\n}}\n")


def _difference(ours: Any, theirs: Any, *args: torch.Tensor) -> float:
    with torch.no_grad():
        return float((ours(*args) - theirs(*args)).abs().max())


def _inputs(module: Any) -> tuple[torch.Tensor, ...]:
    return module.irreps_in1.randn(6, -1), module.irreps_in2.randn(6, -1)


@pytest.mark.parametrize(("irreps1", "irreps2"), PAIRS)
def test_hand_written_elementwise_equals_e3nn(irreps1: str, irreps2: str) -> None:
    theirs = o3.ElementwiseTensorProduct(irreps1, irreps2)
    result = fusionlang.compile(_source(theirs.irreps_in1, theirs.irreps_in2))
    ours = result.module_class()(dtype=torch.float64)
    assert ours.irreps_out == theirs.irreps_out and result.diagram().irreps("z") == theirs.irreps_out
    assert _difference(ours, theirs, *_inputs(theirs)) < TOLERANCE


@pytest.mark.parametrize(("irreps1", "irreps2"), PAIRS)
@pytest.mark.parametrize("options", [{}, {"filter_ir_out": ["0e", "1o"]}, {"irrep_normalization": "norm"}])
def test_from_e3nn_converts_elementwise_products(irreps1: str, irreps2: str, options: dict[str, Any]) -> None:
    try:
        theirs = o3.ElementwiseTensorProduct(irreps1, irreps2, **options)
    except AssertionError:
        pytest.skip("e3nn refuses an empty output")
    if not theirs.instructions:
        pytest.skip("the filter leaves no path")
    converted = fusionlang.from_e3nn(theirs)
    assert "pairing = elementwise" in converted.source and "only" not in converted.source
    assert converted.module.irreps_out == theirs.irreps_out
    assert _difference(converted.module, theirs, *_inputs(theirs)) < TOLERANCE


def test_the_default_pairing_couples_every_entry_pair() -> None:
    """`channels = uuu` also couples entry 0 with entry 1 (0e ⊗ 1o and 1o ⊗ 0e): 64 numbers, not 40."""
    x = y = "4x0e + 4x1o"
    every = fusionlang.compile(_source(x, y, "channels = uuu, paths = split")).diagram().irreps("z")
    paired = fusionlang.compile(_source(x, y)).diagram().irreps("z")
    assert (paired.dim, every.dim) == (40, 64)
    assert paired == o3.ElementwiseTensorProduct(x, y).irreps_out


@pytest.mark.parametrize("weights", ["channel", "external"])
def test_weighted_elementwise_equals_e3nns_uuu_instructions(weights: str) -> None:
    x, y = o3.Irreps("2x0e + 3x1o"), o3.Irreps("2x1o + 3x1o")
    out, instructions = [], []
    for i, ((mul, a), (_, b)) in enumerate(zip(x, y, strict=True)):
        for c in a * b:
            instructions.append((i, i, len(out), "uuu", True))
            out.append((mul, c))
    options = {"shared_weights": False, "internal_weights": False} if weights == "external" else {}
    theirs = o3.TensorProduct(x, y, o3.Irreps(out), instructions, **options)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.normal_()
    converted = fusionlang.from_e3nn(theirs)
    assert "pairing = elementwise" in converted.source
    args = _inputs(theirs) + ((torch.randn(6, theirs.weight_numel),) if weights == "external" else ())
    assert _difference(converted.module, theirs, *args) < TOLERANCE


@pytest.mark.parametrize("weights", ["none", "path", "channel", "external"])
def test_reference_contraction_and_equivariance(weights: str) -> None:
    result = fusionlang.compile(_source("2x0e + 2x1o + 1x2e", "2x1o + 2x1o + 1x1e",
                                        f"pairing = elementwise, weights = {weights}"))
    diagram = result.diagram()
    module = testing.cast_module(result.module_class()(), torch.float64)
    generator = torch.Generator().manual_seed(1)
    weights_ = testing.random_weights(diagram, batch=(3,), generator=generator)
    inputs = [testing.random_features(leg.irreps, (3,), generator=generator) for leg in diagram.inputs]
    external = importers.load_reference_weights(module, diagram, weights_)
    with torch.no_grad():
        ours = module(*inputs, *external)
    assert float((ours - testing.reference_forward(diagram, inputs, weights_)).abs().max()) < TOLERANCE
    assert testing.assert_module_equivariant(module, diagram) < 1e-10


def test_the_formatter_keeps_the_option() -> None:
    text = fusionlang.format_source("diagram d { group O3; input x,y:2x1o; output z\n x,y->z [pairing=elementwise] }")
    assert "    x, y -> z  [pairing = elementwise]" in text
    assert fusionlang.format_source(text) == text
    assert fusionlang.check(text).diagram().statements[0].pairing == "elementwise"


@pytest.mark.parametrize(("x", "y", "options", "words", "hint"), [
    ("2x0e + 2x1o", "4x1o", "pairing = elementwise", "entry i of each argument must have the same multiplicity",
     "`y : 2x1o + 2x1o`"),
    ("2x0e + 2x1o", "3x1o", "pairing = elementwise", "they have 4 and 3 copies", "same number"),
    ("2x0e", "2x0e", "pairing = elementwise, channels = uvw", "wires one channel", ""),
    ("2x0e", "2x0e", "pairing = elementwise, paths = split", "lays out the target itself", ""),
    ("2x0e", "2x0e", "pairing = elementwise, only = {0 0 -> 0}", "`only` cannot choose", ""),
    ("2x0e", "2x0e", "pairing = pairwise", "not a value of `pairing`", "elementwise"),
])
def test_misused_pairing_is_diagnosed(x: str, y: str, options: str, words: str, hint: str) -> None:
    found = fusionlang.check(_source(x, y, options)).diagnostics
    assert [d.code for d in found if words in d.message] == ["E111" if "pairwise" in options else "E118"], \
        [d.message for d in found]
    assert all(d.hint for d in found) and any(hint in (d.hint or "") for d in found)


def test_pairing_needs_two_declared_arguments_and_no_graph() -> None:
    three = "diagram d {\n group O3\n input x : 2x0e\n output z\n x, x, x -> z  [pairing = elementwise]\n}\n"
    assert "pairs two arguments" in fusionlang.check(three).diagnostics[0].message
    inferred = ("diagram d {\n group O3\n input x : 2x0e + 2x1o\n edge h\n output z\n"
                " x -> h  [weights = channel]\n h, x -> z  [pairing = elementwise]\n}\n")
    assert any("declared" in d.message and d.code == "E118" for d in fusionlang.check(inferred).diagnostics)
    graph = ("diagram g {\n group O3\n input h : 2x0e  [on = nodes]\n input Y : 2x1o  [on = edges]\n"
             " output m : 2x1o  [on = nodes]\n sender(h), Y -> m  [pairing = elementwise, aggregate = sum]\n}\n")
    assert "E118" in [d.code for d in fusionlang.check(graph).diagnostics]


def test_a_declared_target_must_have_the_pairs_entries() -> None:
    found = fusionlang.check(_source("2x0e + 2x1o", "2x1o + 2x1o", z=" : 2x0e + 2x1o + 2x1e + 2x2e")).diagnostics
    assert [d.code for d in found] == ["E402"] and "pairing = elementwise" in found[0].message
    assert fusionlang.check(_source("2x0e + 2x1o", "2x1o + 2x1o", z=" : 2x1o + 2x0e + 2x1e + 2x2e")).ok
