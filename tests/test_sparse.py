"""The sparse form (``full/sparse/q``): coupling tables
kept as their nonzeros, contracted by gathering and scatter-adding rows.

Its nonzeros must be exactly the dense table's; its modules must equal the naive reference, be
equivariant, run under TorchScript, ``torch.export``, ``torch.compile`` and standalone; and its
planned FLOPs must come within 2x of the zero-skipping limit where the dense forms are 4-5x above
(the three-leaf fusion and the product basis)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from fusionlang import api, runtime, testing
from fusionlang.plan.program import sparse_table, table_tensor
from fusionlang.source import Source

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_codegen import assert_close, assert_scripts_exports_and_compiles, example_inputs, plain, run_and_references  # noqa: E402

SPARSE = ("full/sparse/q",)
EXAMPLES = sorted(ROOT.glob("examples/*.fusion"))


def sparse_compiled(text: str, name: str, label: str = "full/sparse/q") -> api.CompileResult:
    return api._compile(Source(text, name), strategy=label)


def used_strategies(result: api.CompileResult) -> set[str]:
    return {s.strategy for p in result.programs for s in p.report.statements}


# fuzz seed 1218: legs repeated within one product, so its tables are averaged over permutations of
# two groups of axes; built densely, they took 12 s of a compile
REPEATED = """diagram repeated {
    group O3
    input  x0 : 2o
    input  x2 : 2e
    output e1 : lmax 3
    x0, (x0, x2, x2) -> e1  [channels = uvu, weights = path, paths = split]
}"""


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_nonzeros_are_exactly_the_dense_tables(path: Path) -> None:
    results = [sparse_compiled(path.read_text(), path.name, label) for label in SPARSE]
    assert_nonzeros_are_the_dense_tables(results)


def test_tables_averaged_over_permutations_keep_exactly_the_dense_nonzeros() -> None:
    results = [sparse_compiled(REPEATED, "repeated.fusion", label) for label in SPARSE]
    assert {len(t.spec.symmetrize) for r in results for p in r.programs for t in p.tables} == {2}
    assert_nonzeros_are_the_dense_tables(results)


def assert_nonzeros_are_the_dense_tables(results: list[api.CompileResult]) -> None:
    """Every sparse table of ``results`` holds exactly the dense table's entries above ``NONZERO``."""
    tables = [t for result in results for p in result.programs for t in p.tables if t.sparse]
    assert tables, "no statement of the example took the sparse form"
    for table in tables:
        dense = table_tensor(table.spec)
        kept = sparse_table(table.spec, table.leaf_axes)
        rebuilt = torch.zeros(*dense.shape[:table.leaf_axes], dense[(0,) * table.leaf_axes].numel(),
                              dtype=dense.dtype)
        rebuilt[kept.rows + (kept.out,)] += kept.values
        assert torch.equal(rebuilt.reshape(dense.shape)[dense.abs() > runtime.NONZERO],
                           dense[dense.abs() > runtime.NONZERO])
        assert not rebuilt.reshape(dense.shape)[dense.abs() <= runtime.NONZERO].any()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_in_the_sparse_form_matches_both_references(path: Path) -> None:
    results = [sparse_compiled(path.read_text() + f"# {label}\n", path.name, label) for label in SPARSE]
    assert any("sparse" in s for result in results for s in used_strategies(result))
    for result in results:
        for diagram in plain(result):
            ours, dense, shared = run_and_references(result, diagram)
            assert_close(ours, dense, 1e-10)
            assert_close(ours, shared, 1e-10)


@pytest.mark.parametrize("seed", range(24))
def test_random_diagrams_in_the_sparse_form_match_the_reference(seed: int) -> None:
    for label in SPARSE:
        result = sparse_compiled(testing.random_diagram(seed) + f"# {label}\n", f"r{seed}.fusion", label)
        for diagram in plain(result):
            ours, dense, _ = run_and_references(result, diagram, seed=seed)
            assert_close(ours, dense, 1e-10)


@pytest.mark.parametrize("example", ["tree4", "product_basis", "spins"])
def test_sparse_modules_are_equivariant_in_both_precisions(example: str) -> None:
    text = (ROOT / "examples" / f"{example}.fusion").read_text()
    result = sparse_compiled(text, f"{example}.fusion")
    for diagram in plain(result):
        module = result.module_class(diagram.name)()
        assert testing.assert_module_equivariant(module, diagram, dtype=torch.float64) < 1e-10
        assert testing.assert_module_equivariant(module, diagram, dtype=torch.float32) < 1e-5


def test_sparse_modules_script_export_and_compile() -> None:
    result = sparse_compiled((ROOT / "examples" / "tree4.fusion").read_text(), "tree4.fusion")
    assert_scripts_exports_and_compiles(result.module_class()(), example_inputs(result, batch=6), 1e-6)


def test_sparse_modules_have_second_derivatives() -> None:
    text = ("diagram d { group O3\n input x : 2x(0e + 1o)\n input y : 0e + 1o + 2e\n output z : 2x(0e + 1o)\n"
            " x, y -> z [weights = channel] }")
    module = sparse_compiled(text, "d.fusion").module_class()(dtype=torch.float64)
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: module(a, b), (x, y))


def test_the_standalone_sparse_module_needs_only_torch(tmp_path: Path) -> None:
    result = sparse_compiled((ROOT / "examples" / "tree4.fusion").read_text(), "tree4.fusion")
    namespace: dict[str, object] = {"__name__": "standalone_tree4"}
    exec(compile(result.standalone_source(), "standalone_tree4.py", "exec"), namespace)
    mine, theirs = result.module_class()(dtype=torch.float64), namespace["tree4"](dtype=torch.float64)
    theirs.load_state_dict(mine.state_dict())
    args = [a.double() for a in example_inputs(result)]
    assert torch.allclose(mine(*args), theirs(*args), atol=1e-12)


@pytest.mark.parametrize("example", ["tree4", "product_basis"])
def test_the_sparse_form_plans_within_twice_the_zero_skipping_limit(example: str) -> None:
    """The dense forms the choice takes are 4-5x above it (more FLOPs, fewer and faster operations
    on this CPU: docs/performance.md)."""
    result = sparse_compiled((ROOT / "examples" / f"{example}.fusion").read_text(), f"{example}.fusion")
    for output in result.program().report.outputs:
        assert output.planned_flops <= 2 * output.zero_skipping_flops


def test_the_command_line_forces_the_sparse_form_and_refuses_unknown_strategies(
        capsys: pytest.CaptureFixture[str]) -> None:
    from fusionlang.cli import main

    assert main(["explain", str(ROOT / "examples" / "tree4.fusion"), "--strategy", "full/sparse/q"]) == 0
    assert "full/sparse/q" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(["explain", str(ROOT / "examples" / "tree4.fusion"), "--strategy", "sparse"])
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(KeyError, match="full/sparse/q"):
        api.compile("diagram d { group O3\n input x : 1o\n output y : 1o\n x -> y }", strategy="sparse")


def test_the_choice_tries_the_per_block_plans_before_settling_for_the_sparse_form() -> None:
    """At l = 8 only the sparse form fits the memory budget among the strategies of few networks;
    the per-block ones must be tried beside it (measured 100 against 423 ms at N = 1024)."""
    irreps = " + ".join(f"{l}{'eo'[l % 2]}" for l in range(9))  # noqa: E741
    doubled = " + ".join(f"2x{l}{'eo'[l % 2]}" for l in range(9))  # noqa: E741
    text = (f"diagram fc {{ group O3\n input x : {doubled}\n input y : {irreps}\n output z : {doubled}\n"
            " x, y -> z [channels = uvw, weights = path] }")
    report = api.compile(text, name="fc8.fusion").program().report
    assert report.statements[0].strategy.startswith("blocks/")
    assert "full/sparse/q" in dict(report.statements[0].estimates_ms)
