"""e3nn's ``irrep_normalization`` and ``path_normalization`` as statement options (docs/semantics.md,
"Normalisation"): every combination equals e3nn's module to 1e-12 in float64 on the uvw, uvu and
uuu modes, written by hand and converted by ``from_e3nn``; the reference contraction and the
equivariance helper agree; misuse is E118; the formatter keeps the options."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import importers, testing

o3 = pytest.importorskip("e3nn.o3")

TOLERANCE = 1e-12
COMBINATIONS = list(itertools.product(("component", "norm", "none"), ("element", "path", "none")))
# irreps of (x, y, z) per channel mode; several paths write each output entry, with different fan_ins
LEGS = {"uvw": ("3x0e + 2x1o + 2x2e", "2x0e + 1o + 2e", "2x0e + 3x1o + 2x2e"),
        "uvu": ("2x0e + 2x1o", "2x0e + 3x1o", "2x0e + 2x1o + 2x1e"),
        "uuu": ("2x0e + 2x1o", "2x0e + 2x1o", "2x0e + 2x1o + 2x1e")}


@pytest.fixture(autouse=True)
def _float64(float64_default: None) -> Iterator[None]:
    torch.manual_seed(0)
    yield


def _source(mode: str, irrep: str, path: str, weights: str = "external") -> str:
    x, y, z = LEGS[mode]
    return (f"diagram d {{\n    group O3\n    input  x : {x}\n    input  y : {y}\n    output z : {z}\n"
            f"    x, y -> z  [channels = {mode}, weights = {weights}, irrep_normalization = {irrep}, "
            f"path_normalization = {path}]\n}}\n")


def _e3nn(mode: str, irrep: str, path: str, **options: Any) -> Any:
    """e3nn's TensorProduct with every admissible instruction of ``mode`` (the statement's paths)."""
    irreps = [o3.Irreps(text) for text in LEGS[mode]]
    instructions = [(i, j, k, mode, True) for i, (_, a) in enumerate(irreps[0]) for j, (_, b) in enumerate(irreps[1])
                    for k, (_, c) in enumerate(irreps[2]) if c in a * b]
    return o3.TensorProduct(*irreps, instructions, irrep_normalization=irrep, path_normalization=path, **options)


def _inputs(module: Any, batch: int = 7) -> tuple[torch.Tensor, ...]:
    return module.irreps_in1.randn(batch, -1), module.irreps_in2.randn(batch, -1)


@pytest.mark.parametrize("mode", sorted(LEGS))
@pytest.mark.parametrize(("irrep", "path"), COMBINATIONS)
def test_every_normalisation_equals_e3nn(mode: str, irrep: str, path: str) -> None:
    """External weights feed both modules unchanged: nothing is folded into them."""
    theirs = _e3nn(mode, irrep, path, shared_weights=False, internal_weights=False)
    ours = fusionlang.compile(_source(mode, irrep, path)).module_class()(dtype=torch.float64)
    args = (*_inputs(theirs), torch.randn(7, theirs.weight_numel))
    assert ours.weight_numel == theirs.weight_numel
    for mine, reference in zip(ours.instructions, theirs.instructions, strict=True):
        assert abs(mine.path_weight - reference.path_weight) < TOLERANCE
    with torch.no_grad():
        assert float((ours(*args) - theirs(*args)).abs().max()) < TOLERANCE


@pytest.mark.parametrize("mode", sorted(LEGS))
@pytest.mark.parametrize(("irrep", "path"), COMBINATIONS)
@pytest.mark.parametrize("weights", ["channel", "external"])
def test_from_e3nn_converts_every_normalisation(mode: str, irrep: str, path: str, weights: str) -> None:
    options = {"shared_weights": False, "internal_weights": False} if weights == "external" else {}
    theirs = _e3nn(mode, irrep, path, **options)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.normal_()
    converted = fusionlang.from_e3nn(theirs)
    # options that give e3nn's factors (the defaults where they do, e.g. one path per output entry):
    # internal weights are copied unchanged, not rescaled
    for mine, reference in zip(converted.module.instructions, theirs.instructions, strict=True):
        assert abs(mine.path_weight - reference.path_weight) < TOLERANCE
    args = _inputs(theirs) + ((torch.randn(7, theirs.weight_numel),) if weights == "external" else ())
    with torch.no_grad():
        assert float((converted.module(*args) - theirs(*args)).abs().max()) < TOLERANCE


@pytest.mark.parametrize(("irrep", "path"), COMBINATIONS)
def test_unweighted_products_convert_with_their_normalisation(irrep: str, path: str) -> None:
    for theirs in (o3.FullTensorProduct("2x0e + 2x1o", "0e + 1o + 2e", irrep_normalization=irrep,
                                        path_normalization=path),
                   o3.ElementwiseTensorProduct("2x0e + 2x1o", "2x1o + 2x0e", irrep_normalization=irrep,
                                               path_normalization=path)):
        converted = fusionlang.from_e3nn(theirs)
        with torch.no_grad():
            x, y = _inputs(theirs)
            assert float((converted.module(x, y) - theirs(x, y)).abs().max()) < TOLERANCE


def test_linear_path_normalisation_converts_as_an_option() -> None:
    theirs = o3.Linear("4x0e + 2x0e + 2x1o", "3x0e + 1o", path_normalization="path")
    converted = fusionlang.from_e3nn(theirs)
    assert "path_normalization = path" in converted.source
    x = theirs.irreps_in.randn(5, -1)
    with torch.no_grad():
        assert float((converted.module(x) - theirs(x)).abs().max()) < TOLERANCE


@pytest.mark.parametrize(("irrep", "path"), COMBINATIONS)
def test_the_reference_contraction_and_equivariance_agree(irrep: str, path: str) -> None:
    text = """
diagram d {
    group O3
    input  x : 2x0e + 2x1o
    input  y : 0e + 1o + 2e
    output z : 2x0e + 2x1o + 2x2e
    x, y -> z  [channels = uvu, weights = external, OPTIONS]
    x -> z     [weights = channel, path_normalization = PATH]
}
""".replace("OPTIONS", f"irrep_normalization = {irrep}, path_normalization = {path}").replace("PATH", path)
    result = fusionlang.compile(text)
    diagram = result.diagram()
    module = testing.cast_module(result.module_class()(), torch.float64)
    generator = torch.Generator().manual_seed(1)
    weights = testing.random_weights(diagram, batch=(3,), generator=generator)
    inputs = [testing.random_features(leg.irreps, (3,), generator=generator) for leg in diagram.inputs]
    external = importers.load_reference_weights(module, diagram, weights)
    with torch.no_grad():
        ours = module(*inputs, *external)
    assert float((ours - testing.reference_forward(diagram, inputs, weights)).abs().max()) < TOLERANCE
    assert testing.assert_module_equivariant(module, diagram) < 1e-10


def test_the_defaults_change_nothing() -> None:
    plain = _source("uvw", "component", "element").replace(", irrep_normalization = component, "
                                                           "path_normalization = element", "")
    assert "normalization" not in plain
    codes = [fusionlang.compile(text).source_code for text in (plain, _source("uvw", "component", "element"))]
    assert [[line for line in code.splitlines() if "sha256" not in line] for code in codes] == \
        [[line for line in codes[0].splitlines() if "sha256" not in line]] * 2


def test_the_formatter_keeps_the_options() -> None:
    messy = ("diagram d { group O3; input x,y:0e+1o; output z:0e+1o\n"
             " x,y->z [irrep_normalization=norm,path_normalization=none] }")
    text = fusionlang.format_source(messy)
    assert "    x, y -> z  [irrep_normalization = norm, path_normalization = none]" in text
    assert fusionlang.format_source(text) == text
    statement = fusionlang.check(text).diagram().statements[0]
    assert (statement.irrep_normalization, statement.path_normalization) == ("norm", "none")


@pytest.mark.parametrize(("statement", "code", "words"), [
    ("x -> z  [weights = channel, irrep_normalization = norm]", "E118", "not a linear map"),
    ("x, y, y -> z  [irrep_normalization = none]", "E118", "not a fusion tree of 3 arguments"),
    ("x, y -> z  [irrep_normalization = nrm]", "E111", "not a value of `irrep_normalization`"),
    ("x, y -> z  [path_normalization = element, path_normalization = path]", "E111", "given twice"),
])
def test_misused_normalisations_are_diagnosed(statement: str, code: str, words: str) -> None:
    text = ("diagram d {\n    group O3\n    input  x : 2x0e + 2x1o\n    input  y : 0e + 1o\n"
            f"    output z : 2x0e + 2x1o\n    {statement}\n}}\n")
    found = fusionlang.check(text).diagnostics
    assert [d.code for d in found if words in d.message] == [code], [d.message for d in found]
    assert all(d.hint for d in found)


def test_graph_statements_keep_the_default_normalisation() -> None:
    text = ("diagram g {\n    group O3\n    input  h : 2x0e  [on = nodes]\n    input  Y : 0e + 1o  [on = edges]\n"
            "    output m : 2x0e + 2x1o  [on = nodes]\n"
            "    sender(h), Y -> m  [channels = uvu, weights = external, aggregate = sum, "
            "path_normalization = none]\n}\n")
    assert [d.code for d in fusionlang.check(text).diagnostics] == ["E118"]
