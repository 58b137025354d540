"""`paths = split` with trees, `lmax`, channel modes and other writers: each variant is refused with a
diagnostic or compiles to a module that is equivariant and equal to the reference contraction.

These are the families a fuzzing campaign found accepted-but-wrong (issue [1/5]): split sharing its
target with a linear map or a tree, split trees into an output cut by `lmax`, `uuu` on unequal
multiplicities."""

from __future__ import annotations

import itertools

import pytest
import torch

from fusionlang import testing
from fusionlang.api import compile
from fusionlang.diagnostics import FusionError

TEMPLATE = """diagram d {{
    group O3
    input  x : {x}
    input  y : {y}
{c}    output z{target}
    {args} -> z  [paths = split{options}]
{other}}}"""

VARIANTS = list(itertools.product(
    ["0e + 1o", "2x1o", "1o + 2e"],                       # x
    ["1o", "0e + 1o"],                                    # y
    ["", " : lmax 1"],                                    # target
    ["x, y", "x, y, x", "(x, y), (x, y)", "x, (y, x)"],  # args
    ["", ", channels = uuu", ", channels = uvu, weights = channel"],
    ["", "    c -> z\n", "    (x, y), c -> z  [channels = uvw, weights = path]\n"],
))


def _variant(x: str, y: str, target: str, args: str, options: str, other: str) -> str:
    c = "    input  c : 2x1o\n" if other else ""
    return TEMPLATE.format(x=x, y=y, c=c, target=target, args=args, options=options, other=other)


@pytest.mark.parametrize("seed", range(7))
def test_split_variants_are_refused_or_correct(seed: int) -> None:
    accepted = refused = 0
    for variant in VARIANTS[seed::7]:  # 7 is prime to every axis: each share mixes them all
        text = _variant(*variant)
        try:
            result = compile(text)
        except FusionError as failure:
            assert all(d.code.startswith("E") and d.hint for d in failure.diagnostics), text
            refused += 1
            continue
        accepted += 1
        diagram = result.diagram()
        module = result.module_class()(dtype=torch.float64)
        testing.assert_module_equivariant(module, diagram)
        if all(s.weights == "none" for s in diagram.statements):
            inputs = [testing.random_features(leg.irreps, (5,)) for leg in diagram.inputs]
            torch.testing.assert_close(module(*inputs), testing.reference_forward(diagram, inputs, {}))
    assert accepted and refused


def test_split_with_another_writer_is_refused() -> None:
    with pytest.raises(FusionError) as caught:
        compile(_variant("0e + 1o", "1o", "", "x, y", "", "    c -> z\n"))
    assert [d.code for d in caught.value.diagnostics] == ["E103"]
