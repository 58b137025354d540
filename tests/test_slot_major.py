"""The slot-major ``q`` weighting (``fusionlang.plan.weighted.slot_major_output``): shared ``uvw``
weights over one wide channel, the coupling table's columns interleaved component by component
(``fusionlang.plan.builder.slot_major_columns``), the coupled paths laid out ``[n, K·P, u]`` and
each output entry weighted by one matrix product.

It must equal both references (random diagrams, two and three leaves, ``U`` and ``chain`` tables),
be equivariant, have second derivatives, script, export and compile; and it must do what it is
for: weight ``fc_tp`` without copying its coupled paths, which the channel-major layout did."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusionlang import api, runtime, testing
from fusionlang.plan import builder, strategies
from fusionlang.source import Source

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_codegen import assert_close, assert_scripts_exports_and_compiles, example_inputs, plain, run_and_references  # noqa: E402

FC_TP = (ROOT / "examples" / "fc_tp.fusion").read_text()
THREE = ("diagram three { group O3\n input x : 3x(0e + 1o + 2e)\n input y : 0e + 1o\n input s : 0e + 1o + 2e\n"
         " output z : 3x(0e + 1o + 2e)\n (x, y), s -> z [channels = uvw, weights = path] }")
# random diagrams whose forced ``full/U/q`` plan weights some statement slot-major (seeds 0-40)
SEEDS = (4, 16, 21, 28, 31, 32, 35)


def forced(text: str, name: str, label: str) -> api.CompileResult:
    return api._compile(Source(text + f"# {label}\n", name), strategy=label)


def slot_major_used(result: api.CompileResult) -> bool:
    return any("slot-major" in order for p in result.programs for s in p.report.statements for order in s.orders)


def test_the_choice_weights_fc_tp_slot_major() -> None:
    result = api.compile(FC_TP, name="fc_tp.fusion")
    assert slot_major_used(result)
    assert "columns=" in result.source_code


@pytest.mark.parametrize("label", ["full/U/q", "full/chain/q"])
def test_three_leaves_slot_major_match_both_references(label: str) -> None:
    result = forced(THREE, "three.fusion", label)
    assert slot_major_used(result)
    for diagram in plain(result):
        ours, dense, shared = run_and_references(result, diagram)
        assert_close(ours, dense, 1e-10)
        assert_close(ours, shared, 1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_diagrams_weighted_slot_major_match_the_reference(seed: int) -> None:
    result = forced(testing.random_diagram(seed), f"r{seed}.fusion", "full/U/q")
    assert slot_major_used(result)
    for diagram in plain(result):
        ours, dense, _ = run_and_references(result, diagram, seed=seed)
        assert_close(ours, dense, 1e-10)


def test_slot_major_modules_are_equivariant_differentiable_and_traceable() -> None:
    result = forced(THREE, "three.fusion", "full/U/q")
    diagram = result.diagrams[0]
    module = result.module_class()(dtype=torch.float64)
    assert testing.assert_module_equivariant(module, diagram, dtype=torch.float64) < 1e-10
    assert testing.assert_module_equivariant(result.module_class()(), diagram, dtype=torch.float32) < 1e-5
    xs = [torch.randn(3, dim, dtype=torch.float64, requires_grad=True) for dim in (27, 4, 9)]
    assert torch.autograd.gradgradcheck(lambda *a: module(*a), xs)
    assert_scripts_exports_and_compiles(result.module_class()(), example_inputs(result, batch=6), 1e-5)


class CopySizes(TorchDispatchMode):
    """The sizes of the tensors every copying aten operation writes."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.clone, torch.ops.aten.copy_, torch.ops.aten._unsafe_view) \
                and isinstance(out, torch.Tensor):
            self.sizes.append(tuple(out.shape))
        return out


def coupled_copies() -> list[tuple[int, ...]]:
    """The copies of fc_tp's coupled paths (batch 64, 4 paths into 32x2e: 64·20·32 numbers)."""
    result = api._compile(Source(FC_TP, "fc_tp.fusion"))
    module = result.module_class()()
    with torch.no_grad(), CopySizes() as mode:
        module(torch.randn(64, 288), torch.randn(64, 9))
    return [s for s in mode.sizes if torch.Size(s).numel() == 64 * 20 * 32]


def test_fc_tp_weights_its_coupled_paths_without_copying_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert coupled_copies() == []
    # the channel-major layout, for contrast: the weighting copied the coupled paths transposed
    monkeypatch.setenv("FUSIONLANG_NO_CACHE", "1")
    monkeypatch.setattr(strategies, "slot_major_output", lambda model, paths: None)
    assert coupled_copies() != []


def test_slot_major_columns_interleave_each_entrys_slots() -> None:
    result = api._compile(Source(FC_TP, "fc_tp.fusion"))
    table = result.program().tables[0].spec
    # 0e: 3 paths of 1 component; 1o: 4 of 3 (slots 3-14); 2e: 4 of 5 (slots 15-34)
    assert table.columns[:7] == (0, 1, 2, 3, 6, 9, 12)
    assert sorted(table.columns) == list(range(35))
    layout = builder.Layout(table_slots(), (3, 3))
    assert builder.slot_major_columns(layout) == (0, 3, 1, 4, 2, 5)


def table_slots() -> tuple[tuple[Any, Any], ...]:
    """Two slots of one output entry (the paths themselves do not matter to the column order)."""
    entry = type("Entry", (), {"index": 0})()
    return ((None, entry), (None, entry))


def test_coupling_table_stores_its_last_axis_in_the_columns_order() -> None:
    blocks = [((0, 0, 0), ("1o", "1o", "0e"), 1), ((0, 0, 1), ("1o", "1o", "2e"), 1)]
    dense = runtime.coupling_table("O3", (3, 3, 6), blocks)
    columns = (5, 0, 4, 1, 3, 2)
    assert torch.equal(runtime.coupling_table("O3", (3, 3, 6), blocks, columns=columns), dense[..., list(columns)])
