"""e3nn semantics written in the language itself, each equal to e3nn's module to 1e-12 in
float64: ``only = {...}``, e3nn's instruction subsets (docs/language.md, "Choosing paths")."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import testing
from fusionlang.frontend import check_source
from fusionlang.importers import load_e3nn_weights
from fusionlang.parse import parse

o3 = pytest.importorskip("e3nn.o3")

TOLERANCE = 1e-12

CHOSEN = """
diagram chosen {
    group O3
    input  x : 3x0e + 2x1o + 2x2e
    input  y : 0e + 1o + 2e
    output z : 2x0e + 3x1o + 2x2e
    x, y -> z  [weights = channel, only = {2 2 -> 0, 0 1 -> 1, 1 1 -> 0, 1 0 -> 1, 2 1 -> 1, 2 0 -> 2}]
}
"""
# the same instructions, in another order than the list above: the weights follow path order
INSTRUCTIONS = [(0, 1, 1), (1, 0, 1), (1, 1, 0), (2, 0, 2), (2, 1, 1), (2, 2, 0)]


@pytest.fixture(autouse=True)
def _float64(float64_default: None) -> Iterator[None]:
    torch.manual_seed(0)
    yield


def _randomised(module: Any) -> Any:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_()
    return module


def _difference(ours: Any, theirs: Any, *args: torch.Tensor) -> float:
    with torch.no_grad():
        return float((ours(*args) - theirs(*args)).abs().max())


def _inputs(module: Any, batch: int = 9) -> tuple[torch.Tensor, ...]:
    return module.irreps_in1.randn(batch, -1), module.irreps_in2.randn(batch, -1)


def test_a_hand_written_subset_equals_e3nn_with_those_instructions() -> None:
    theirs = _randomised(o3.TensorProduct("3x0e + 2x1o + 2x2e", "0e + 1o + 2e", "2x0e + 3x1o + 2x2e",
                                          [(*key, "uvw", True) for key in INSTRUCTIONS]))
    result = fusionlang.compile(CHOSEN)
    ours = load_e3nn_weights(result.module_class()(dtype=torch.float64), theirs, diagram=result.diagram())
    assert [tuple(ins[:3]) for ins in ours.instructions] == INSTRUCTIONS
    assert ours.weight_numel == theirs.weight_numel
    assert _difference(ours, theirs, *_inputs(theirs)) < TOLERANCE


@pytest.mark.parametrize("external", [False, True])
def test_from_e3nn_converts_instruction_subsets_with_only(external: bool) -> None:
    options = {"shared_weights": False, "internal_weights": False} if external else {}
    theirs = _randomised(o3.TensorProduct("3x0e + 2x1o + 2x2e", "0e + 1o + 2e", "2x0e + 3x1o + 2x2e",
                                          [(*key, "uvw", True) for key in INSTRUCTIONS], **options))
    converted = fusionlang.from_e3nn(theirs)
    assert "only = {0 1 -> 1, 1 0 -> 1, 1 1 -> 0, 2 0 -> 2, 2 1 -> 1, 2 2 -> 0}" in converted.source
    args = _inputs(theirs) + ((torch.randn(9, theirs.weight_numel),) if external else ())
    assert _difference(converted.module, theirs, *args) < TOLERANCE


@pytest.mark.parametrize(("irreps1", "irreps2"), [("16x0e + 16x1o", "8x1o + 24x0e"), ("2x0e + 2x1o", "4x1o"),
                                                  ("4x0e + 4x1o + 4x2e", "4x1o + 8x0e")])
def test_elementwise_tensor_products_with_cross_pairs(irreps1: str, irreps2: str) -> None:
    theirs = o3.ElementwiseTensorProduct(irreps1, irreps2)
    converted = fusionlang.from_e3nn(theirs)
    assert "pairing = elementwise" in converted.source and "only" not in converted.source
    assert converted.module.irreps_out == theirs.irreps_out
    assert _difference(converted.module, theirs, *_inputs(theirs)) < TOLERANCE


def test_linear_instruction_subsets() -> None:
    theirs = _randomised(o3.Linear("2x0e + 3x0e + 2x1o", "3x0e + 1o", instructions=[(1, 0), (2, 1)]))
    converted = fusionlang.from_e3nn(theirs)
    assert "only = {1 -> 0, 2 -> 1}" in converted.source
    x = theirs.irreps_in.randn(5, -1)
    assert _difference(converted.module, theirs, x) < TOLERANCE


def test_only_round_trips_through_the_formatter() -> None:
    messy = "diagram d { group O3; input x,y:0e+1o; output z:0e+1o\n x,y->z [only={1   1->0 ,0 1->1}] }"
    text = fusionlang.format_source(messy)
    assert "    x, y -> z  [only = {1 1 -> 0, 0 1 -> 1}]" in text
    assert fusionlang.format_source(text) == text
    only = [o.value for o in parse(text).diagrams[0].items[-1].options]
    assert only == [o.value for o in parse(messy).diagrams[0].items[-1].options]
    assert [p.leaves + (p.output,) for p in fusionlang.check(text).diagram().statements[0].paths] == \
        [(0, 1, 1), (1, 1, 0)]


def test_only_keeps_paths_of_trees_and_counts_fan_in_over_kept_paths() -> None:
    text = """
diagram t {
    group O3
    input  a, b, c : 0e + 1o
    output z : 0e
    a, b, c -> z  [weights = none, only = {1 1 0 -> 0}]
}
"""
    statement = fusionlang.check(text).diagram().statements[0]
    assert [(p.leaves, p.output) for p in statement.paths] == [((1, 1, 0), 0)]
    module = fusionlang.compile(text).module_class()(dtype=torch.float64)
    a, b, c = (torch.randn(4, 4) for _ in range(3))
    expected = (a[:, 1:] * b[:, 1:]).sum(-1) / 3 ** 0.5 * c[:, 0]   # component-normalised 1o ⊗ 1o -> 0e
    assert float((module(a, b, c)[:, 0] - expected).abs().max()) < TOLERANCE


@pytest.mark.parametrize("text", [
    """diagram tree {
    group O3
    input  a : 2x0e + 2x1o
    input  b, c : 0e + 1o + 2e
    output z : 2x0e + 2x1o
    a, b, c -> z  [channels = uvu, weights = channel, only = {0 1 1 -> 0, 1 2 0 -> 1, 1 1 1 -> 1}]
}""",
    """diagram two_writers {
    group O3
    input  x : 3x0e + 3x1o
    input  y : 0e + 1o
    output z : 3x0e + 3x1o + 3x1o
    x, y -> z  [channels = uvu, weights = external, only = {0 1 -> 1, 1 1 -> 0}]
    x -> z     [weights = channel, only = {1 -> 2}]
}""",
    """diagram su2 {
    group SU2
    input  x : 2x1/2 + 1
    input  y : 1/2
    output z : 2x0 + 2x1 + 2x1/2
    x, y -> z  [weights = path, only = {0 0 -> 1, 0 0 -> 0, 1 0 -> 2}]
}"""])
def test_only_matches_the_reference_contraction(text: str) -> None:
    from fusionlang import importers, testing

    result = fusionlang.compile(text)
    diagram = result.diagram()
    module = testing.cast_module(result.module_class()(), torch.float64)
    generator = torch.Generator().manual_seed(1)
    weights = testing.random_weights(diagram, batch=(3,), generator=generator)
    inputs = [testing.random_features(leg.irreps, (3,), generator=generator) for leg in diagram.inputs]
    external = importers.load_reference_weights(module, diagram, weights)
    with torch.no_grad():
        ours = module(*inputs, *external)
    expected = testing.reference_forward(diagram, inputs, weights)
    assert float((ours - expected).abs().max()) < TOLERANCE


@pytest.mark.parametrize(("options", "code", "words"), [
    ("channels = {0 0 -> 0}", "E111", "takes a word, not a list of paths"),
    ("only = {0 0 -> 0}, only = {1 1 -> 0}", "E111", "given twice"),
    ("only = {0 0 -> 0, 1 1 -> 0, 0 1 -> 9}", "E204", "`z` has no entry 9"),
    ("only = {0 0 0 -> 0}", "E117", "3 argument entries, but the statement has 2 arguments"),
])
def test_misused_path_lists_are_diagnosed(options: str, code: str, words: str) -> None:
    text = ("diagram d {\n    group O3\n    input  x : 2x0e + 2x1o\n    input  y : 0e + 1o\n"
            f"    output z : 2x0e + 2x1o\n    x, y -> z  [{options}]\n}}\n")
    found = fusionlang.check(text).diagnostics
    assert [d.code for d in found if words in d.message] == [code], [d.message for d in found]
    assert all(d.hint for d in found)


def _with_only(text: str, rng: random.Random) -> str:
    """``text`` with an ``only`` list on every plain statement: one path into each of the target's
    entries (so every entry stays written) and about 40 % of the others."""
    diagram = check_source(text).diagram()
    edits = []
    for statement in diagram.statements:
        written = text[statement.span.start:statement.span.end]
        if statement.is_linear or "split" in written:
            continue
        into: dict[int, list[Any]] = {}
        for path in statement.paths:
            into.setdefault(path.output, []).append(path)
        keep = [rng.choice(paths) for paths in into.values()]
        keep += [p for p in statement.paths if p not in keep and rng.random() < 0.4]
        listed = ", ".join(" ".join(map(str, p.leaves)) + f" -> {p.output}" for p in keep)
        option = f"only = {{{listed}}}"
        new = written[:-1] + f", {option}]" if written.rstrip().endswith("]") else f"{written} [{option}]"
        edits.append((statement.span.start, statement.span.end, new))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def test_random_diagrams_with_only_are_refused_or_pass_the_fuzz_oracle() -> None:
    """Accepted means correct for ``only`` too: random diagrams with path lists either get a
    diagnostic (E117: an inferred target) or compile, run, are equivariant, equal the reference
    contraction and format round-trip (``fusionlang.fuzz.run_case``)."""
    from fusionlang.fuzz import run_case
    kinds = []
    for seed in range(30):
        text = _with_only(testing.random_diagram(seed), random.Random(seed))
        outcome = run_case(text, seed)
        assert not outcome.is_defect, (text, outcome.signature, outcome.detail[-2000:])
        if outcome.kind == "rejected":
            assert {d.code for d in check_source(text).diagnostics} == {"E117"}, text
        kinds.append(outcome.kind)
    assert kinds.count("ok") >= 10
