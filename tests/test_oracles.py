"""Oracles for compiled modules: the naive reference contraction (fusionlang.testing), equivariance
under random group elements (examples and seeded random diagrams, SU(2) included), gradcheck, and
e3nn's tensor products with weights imported by fusionlang.importers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fusionlang import importers, ir, testing
from fusionlang.api import compile as compile_fusion
from fusionlang.frontend import check_source
from fusionlang.graphs import needs_orchestrator
from fusionlang.importers import load_e3nn_weights, statement_parameter

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.fusion"))
# (file, diagram) of every plain diagram of the examples; graph diagrams are checked in test_graphs.py
PLAIN_EXAMPLES = [(path, d.name) for path in EXAMPLES for d in check_source(path).diagrams
                  if not needs_orchestrator(d)]
RANDOM_SEEDS = range(32)


def _compiled(text: str, name: str | None = None, dtype: torch.dtype = torch.float64) -> tuple[Any, ir.Diagram]:
    """A compiled module cast to ``dtype`` and the checked diagram it came from."""
    result = compile_fusion(text)
    diagram = result.diagram(name)
    module = result.module_class(diagram.name)()
    return testing.cast_module(module, dtype), diagram


def _as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


def _relative_error(actual: Any, expected: Any) -> float:
    errors = [0.0]
    for a, e in zip(_as_tuple(actual), _as_tuple(expected), strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype, (a.shape, e.shape, a.dtype, e.dtype)
        a, e = a.detach(), e.detach()
        errors.append(float((a - e).abs().max()) / max(1.0, float(e.abs().max())))
    return max(errors)


def _compare_with_reference(text: str, seed: int, batch: int = 3, name: str | None = None) -> float:
    module, diagram = _compiled(text, name)
    g = torch.Generator().manual_seed(seed)
    weights = testing.random_weights(diagram, batch=(batch,), generator=g)
    inputs = [testing.random_features(leg.irreps, (batch,), generator=g) for leg in diagram.inputs]
    external = importers.load_reference_weights(module, diagram, weights)
    with torch.no_grad():
        ours = module(*inputs, *external)
    return _relative_error(ours, testing.reference_forward(diagram, inputs, weights))





# -- the reference contraction ------------------------------------------------------------------------

@pytest.mark.parametrize("path,name", PLAIN_EXAMPLES, ids=[n for _, n in PLAIN_EXAMPLES])
def test_example_equals_reference(path: Path, name: str) -> None:
    assert _compare_with_reference(path.read_text(), seed=len(name), name=name) <= 1e-10


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_diagram_equals_reference(seed: int) -> None:
    assert _compare_with_reference(testing.random_diagram(seed), seed) <= 1e-10


# Small diagrams that once broke the compiler, each compared with the reference.
EDGE_CASES = {
    # weights = none with several channels on both legs: the output flattens (u, v)
    "uvuv": "diagram a { group O3\n input x : 2x0e + 2x1o\n input y : 3x1o\n"
            " output z : 6x0e + 6x1o + 6x1e + 6x2e\n x, y -> z }",
    # one leg on both leaves, multiplicity 1: 1 x 1 -> 1 is antisymmetric, so no path keeps weights
    "antisymmetric_external": "diagram a { group SO3\n input x : 1\n output z : 1\n x -> z\n"
                              " x, x -> z [weights = external] }",
    "antisymmetric_only": "diagram a { group SO3\n input x : 1\n output z : 1\n x, x -> z [weights = path] }",
    # the same leg three times through an internal edge, uuu
    "repeated_tree": "diagram a { group O3\n input x : 2x(0e + 1o)\n output z : 2x(0e + 1o)\n"
                     " x, x -> e [channels = uuu, weights = none]\n e, x -> z [channels = uuu, weights = channel] }",
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_case_equals_reference(name: str) -> None:
    assert _compare_with_reference(EDGE_CASES[name], seed=1) <= 1e-10


# -- equivariance ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("path,name", PLAIN_EXAMPLES, ids=[n for _, n in PLAIN_EXAMPLES])
def test_example_is_equivariant(path: Path, name: str, dtype: torch.dtype) -> None:
    module, diagram = _compiled(path.read_text(), name, dtype=dtype)
    assert testing.assert_module_equivariant(module, diagram, dtype=dtype, trials=2) <= testing.default_tolerance(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_diagram_is_equivariant(seed: int, dtype: torch.dtype) -> None:
    module, diagram = _compiled(testing.random_diagram(seed), dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    error = testing.assert_module_equivariant(module, diagram, dtype=dtype, generator=generator)
    assert error <= testing.default_tolerance(dtype)


def test_random_diagrams_cover_su2() -> None:
    assert sum(check_source(testing.random_diagram(s)).diagram().group.name == "SU2" for s in RANDOM_SEEDS) >= 5


def test_a_broken_module_is_caught() -> None:
    """The oracles can fail: a compiled module with one weight scaled differs from the reference."""
    text = (Path(__file__).parent.parent / "examples" / "fc_tp.fusion").read_text()
    module, diagram = _compiled(text)
    g = torch.Generator().manual_seed(0)
    weights = testing.random_weights(diagram, generator=g)
    importers.load_reference_weights(module, diagram, weights)
    inputs = [testing.random_features(leg.irreps, (2,), generator=g) for leg in diagram.inputs]
    wrong = {0: weights[0].clone()}
    wrong[0][-1] += 1.0
    assert _relative_error(module(*inputs), testing.reference_forward(diagram, inputs, wrong)) > 1e-6


# -- gradients --------------------------------------------------------------------------------------------

GRADCHECK = """
diagram small {
    group O3
    input x : 2x0e + 1o
    input y : 0e + 1o
    output z : 2x0e + 2x1o + 1e
    x, y -> z  [channels = uvw, weights = path]
}
"""


def test_gradcheck_small_module() -> None:
    module, diagram = _compiled(GRADCHECK)
    g = torch.Generator().manual_seed(3)
    x = testing.random_features(diagram.irreps("x"), (2,), generator=g).requires_grad_()
    y = testing.random_features(diagram.irreps("y"), (2,), generator=g).requires_grad_()
    weight = statement_parameter(module, 0)
    assert weight.requires_grad
    assert torch.autograd.gradcheck(lambda a, b: module(a, b), (x, y))
    weights = torch.randn(weight.numel(), generator=g, dtype=torch.float64, requires_grad=True)

    def with_weights(w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, {_parameter_name(module, weight): w.reshape(weight.shape)},
                                          (x.detach(), y.detach()))

    assert torch.autograd.gradcheck(with_weights, (weights,))


def _parameter_name(module: torch.nn.Module, parameter: torch.Tensor) -> str:
    return next(name for name, p in module.named_parameters() if p is parameter)


# -- e3nn, weights through fusionlang.importers ------------------------------------------------------------

def test_fc_tp_equals_e3nn_fully_connected_tensor_product() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    text = (Path(__file__).parent.parent / "examples" / "fc_tp.fusion").read_text()
    module, diagram = _compiled(text)
    with testing.default_dtype(torch.float64):
        tp = o3.FullyConnectedTensorProduct("32x0e + 32x1o + 32x2e", "0e + 1o + 2e", "32x0e + 32x1o + 32x2e")
    load_e3nn_weights(module, tp)  # the compiled class knows its diagram
    g = torch.Generator().manual_seed(4)
    x, y = (testing.random_features(diagram.irreps(n), (5,), generator=g) for n in ("x", "y"))
    with torch.no_grad():
        assert _relative_error(module(x, y), tp(x, y)) <= 1e-10


def uvu_tensor_product(irreps1: str, irreps2: str) -> Any:
    """e3nn's channelwise uvu product: one output entry per instruction, sorted (as MACE builds it)."""
    pytest.importorskip("e3nn.o3")
    with testing.default_dtype(torch.float64):
        return testing.e3nn_channelwise_product(irreps1, irreps2)


def test_channelwise_uvu_equals_e3nn_tensor_product() -> None:
    pytest.importorskip("e3nn")
    tp = uvu_tensor_product("32x0e + 32x1o + 32x2e", "0e + 1o + 2e + 3o")
    out = " + ".join(f"{mul}x{ir}" for mul, ir in tp.irreps_out)
    text = f"""
diagram uvu {{
    group O3
    input x : 32x(0e + 1o + 2e)
    input y : 0e + 1o + 2e + 3o
    output z : {out}
    x, y -> z  [channels = uvu, weights = channel]
}}
"""
    module, diagram = _compiled(text)
    load_e3nn_weights(module, tp, diagram=diagram)
    g = torch.Generator().manual_seed(5)
    x, y = (testing.random_features(diagram.irreps(n), (3,), generator=g) for n in ("x", "y"))
    with torch.no_grad():
        assert _relative_error(module(x, y), tp(x, y)) <= 1e-10


def test_linear_equals_e3nn_linear() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    text = """
diagram lin {
    group O3
    input x : 8x0e + 4x1o + 2x2e
    output y : 4x0e + 8x1o
    x -> y  [weights = path]
}
"""
    module, diagram = _compiled(text)
    with testing.default_dtype(torch.float64):
        linear = o3.Linear("8x0e + 4x1o + 2x2e", "4x0e + 8x1o")
    load_e3nn_weights(module, linear, diagram=diagram)
    x = testing.random_features(diagram.irreps("x"), (4,), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert _relative_error(module(x), linear(x)) <= 1e-10
