"""The merged weighting (``blocks/U/merged``, ``blocks/chain/merged``): every block's paths coupled
into slots, then each output entry weighted once over all blocks (``fusionlang.plan.weighted.weigh_merged``).

Forced on every example and on random diagrams it must equal both references; its modules must be
equivariant, have second derivatives, run under TorchScript, ``torch.export`` and
``torch.compile(fullgraph)``; and where the choice takes it, it must issue fewer operations than the
per-block weighting it replaces."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from fusionlang import api, testing
from fusionlang.source import Source

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_codegen import assert_close, assert_scripts_exports_and_compiles, example_inputs, plain, run_and_references  # noqa: E402

MERGED = ("blocks/U/merged", "blocks/chain/merged")
EXAMPLES = sorted(ROOT.glob("examples/*.fusion"))
MACE = ROOT / "examples" / "mace.fusion"


def forced(text: str, name: str, label: str = "blocks/U/merged") -> api.CompileResult:
    return api._compile(Source(text + f"# {label}\n", name), strategy=label)


def used(result: api.CompileResult) -> set[str]:
    return {s.strategy for p in result.programs for s in p.report.statements}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_with_merged_weighting_matches_both_references(path: Path) -> None:
    results = [forced(path.read_text(), path.name, label) for label in MERGED]
    for result in results:
        for diagram in plain(result):
            ours, dense, shared = run_and_references(result, diagram)
            assert_close(ours, dense, 1e-10)
            assert_close(ours, shared, 1e-10)


def test_the_weighted_examples_use_it_when_forced() -> None:
    assert "blocks/U/merged" in used(forced((ROOT / "examples" / "fc_tp.fusion").read_text(), "fc_tp.fusion"))
    tree4 = ROOT / "examples" / "tree4.fusion"
    assert "blocks/chain/merged" in used(forced(tree4.read_text(), "tree4.fusion", "blocks/chain/merged"))


@pytest.mark.parametrize("seed", range(16))
def test_random_diagrams_with_merged_weighting_match_the_reference(seed: int) -> None:
    for label in MERGED:
        result = forced(testing.random_diagram(seed), f"r{seed}.fusion", label)
        for diagram in plain(result):
            ours, dense, _ = run_and_references(result, diagram, seed=seed)
            assert_close(ours, dense, 1e-10)


def test_merged_modules_are_equivariant_in_both_precisions() -> None:
    result = forced(MACE.read_text(), "mace.fusion")
    for diagram in plain(result):
        module = result.module_class(diagram.name)()
        assert testing.assert_module_equivariant(module, diagram, dtype=torch.float64) < 1e-10
        assert testing.assert_module_equivariant(module, diagram, dtype=torch.float32) < 1e-5


def test_merged_modules_have_second_derivatives() -> None:
    text = ("diagram d { group O3\n input x : 2x(0e + 1o + 2e)\n input y : 0e + 1o + 2e\n"
            " output z : 2x(0e + 1o + 2e)\n x, y -> z [channels = uvw, weights = path] }")
    module = forced(text, "d.fusion").module_class()(dtype=torch.float64)
    x = torch.randn(3, 18, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: module(a, b), (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: module(a, b), (x, y))


def test_merged_modules_script_export_and_compile() -> None:
    result = forced((ROOT / "examples" / "fc_tp.fusion").read_text(), "fc_tp.fusion")
    assert_scripts_exports_and_compiles(result.module_class()(), example_inputs(result, batch=6), 1e-5)


def test_the_choice_takes_it_where_it_saves_operations() -> None:
    """Fully connected l = 6 (2 channels): 49 blocks write paths into 7 output entries. (At l = 5
    the joint form now fits: packed, its per-call products are small, docs/performance.md.)"""
    irreps = " + ".join(f"{l}{'eo'[l % 2]}" for l in range(7))  # noqa: E741
    doubled = " + ".join(f"2x{l}{'eo'[l % 2]}" for l in range(7))  # noqa: E741
    text = (f"diagram fc {{ group O3\n input x : {doubled}\n input y : {irreps}\n output z : {doubled}\n"
            " x, y -> z [channels = uvw, weights = path] }")
    chosen = api.compile(text, name="fc6.fusion").program().report.statements[0]
    per_block = forced(text, "fc6.fusion", "blocks/U/q").program().report.statements[0]
    assert chosen.strategy == "blocks/U/merged"
    assert chosen.operations < 0.7 * per_block.operations
    assert chosen.planned_flops <= per_block.planned_flops


def test_merged_weighting_of_entries_with_different_multiplicities() -> None:
    """One block's slots write 2x0e and 3x1e: each entry's weighting uses its own multiplicity
    (it used the block's first path's, and a broadcast product of 1x1 channels crashed)."""
    text = ("diagram sq { group O3\n input x : 3x0e + 1x1o + 2x2e\n output z : 2x0e + 3x1e + 2x2e + 2x3o\n"
            " x, x -> z [channels = uvw, weights = path] }")
    for label in MERGED:
        result = forced(text, "sq.fusion", label)
        for diagram in plain(result):
            ours, dense, shared = run_and_references(result, diagram)
            assert_close(ours, dense, 1e-10)
            assert_close(ours, shared, 1e-10)
