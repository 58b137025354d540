"""Stacks of a whole input as one gather (``runtime.take_columns``, a ``columns`` step): the columns
equal the concatenation they replace, the gather has first and second derivatives (its own backward
on large tensors, ``index_select``'s on small ones, and the traced one), generated modules use it
exactly where a stack covers every entry of an input, and those modules still match the reference,
under TorchScript, export, compile and ``torch.func`` too. External weights read in several runs are
gathered once the same way (``weighted.order_weights``)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusionlang import api, runtime, runtime_gathers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_codegen import assert_close, assert_scripts_exports_and_compiles, example_inputs, run_and_references  # noqa: E402

ENTRIES = ((0, 4, 1), (4, 4, 3), (16, 4, 5))   # 4x0e + 4x1o + 4x2e as (start, mul, dim)
WIDTH = 36
UVU = ("diagram uvu { group O3\n input x : 16x(0e + 1o + 2e)\n input sh : 0e + 1o + 2e\n output z\n"
       " x, sh -> z [channels = uvu, weights = external, paths = split] }")
# x's 0e and 1o stack apart from its 8x2e: the stack does not cover x, so it stays a concatenation
PART = ("diagram part { group O3\n input x : 16x0e + 16x1o + 8x2e\n input sh : 0e + 1o + 2e\n output z\n"
        " x, sh -> z [channels = uvu, weights = external, paths = split] }")


def concatenated(x: torch.Tensor, entries: tuple[tuple[int, int, int], ...], component_major: bool) -> torch.Tensor:
    """What the stack was before: the entries' views, transposed for component-major, side by side."""
    views = [x[:, start:start + mul * dim].view(-1, mul, dim) for start, mul, dim in entries]
    if component_major:
        return torch.cat([v.transpose(1, 2) for v in views], 1).reshape(x.shape[0], -1)
    return torch.cat(views, 2).reshape(x.shape[0], -1)


@pytest.mark.parametrize("component_major", [False, True])
def test_stack_columns_are_the_concatenation(component_major: bool) -> None:
    x = torch.randn(3, WIDTH, dtype=torch.float64)
    columns = runtime.stack_columns(ENTRIES, component_major)
    assert sorted(columns.tolist()) == list(range(WIDTH))
    assert torch.equal(x[:, columns], concatenated(x, ENTRIES, component_major))


@pytest.mark.parametrize("rows", [2, 2048])   # below and above the size where its own backward pays
def test_take_columns_has_first_and_second_derivatives(rows: int) -> None:
    columns = runtime.stack_columns(ENTRIES, True)
    inverse = torch.argsort(columns)
    x = torch.randn(rows, WIDTH, dtype=torch.float64, requires_grad=True)
    taken = runtime.take_columns(x, columns, inverse)
    assert ("TakeColumns" in type(taken.grad_fn).__name__) == (x.numel() >= 1 << 16)
    assert torch.equal(taken, torch.index_select(x, 1, columns))
    upstream = torch.randn(rows, WIDTH, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(taken, x, upstream, create_graph=True)
    assert torch.equal(grad, torch.zeros_like(grad).index_add(1, columns, upstream))
    probe = torch.randn(rows, WIDTH, dtype=torch.float64)
    (second,) = torch.autograd.grad(grad, upstream, probe)
    assert torch.equal(second, torch.index_select(probe, 1, columns))


def test_take_columns_gradchecks_on_its_own_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    columns = runtime.stack_columns(ENTRIES, False)
    x = torch.randn(2, WIDTH, dtype=torch.float64, requires_grad=True)
    own = runtime_gathers._TakeColumns.apply
    monkeypatch.setattr(runtime_gathers, "take_columns", lambda x, c, i: own(x, c, i))  # small x: force it
    assert torch.autograd.gradcheck(lambda t: own(t, columns, torch.argsort(columns)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: own(t, columns, torch.argsort(columns)), (x,))


def test_stacks_of_whole_inputs_gather_and_partial_ones_concatenate() -> None:
    whole = api.compile(UVU, name="uvu.fusion")
    part = api.compile(PART, name="part.fusion")
    assert "runtime.take_columns(x, self.cols_x, self.cols_x_inverse)" in whole.source_code
    # the stack itself stays a concatenation (not only the TorchScript chunk loop's torch.cat(parts))
    assert "take_columns" not in part.source_code and "x_0e_1o = torch.cat([x_0e, x_1o], -1)" in part.source_code
    fc_tp = api.compile((ROOT / "examples" / "fc_tp.fusion").read_text(), name="fc_tp.fusion")
    assert "component_major=True" in fc_tp.source_code


@pytest.mark.parametrize("text", [UVU, PART, (ROOT / "examples" / "fc_tp.fusion").read_text()],
                         ids=["uvu", "part", "fc_tp"])
def test_gathered_stacks_match_both_references(text: str) -> None:
    result = api.compile(text, name="case.fusion")
    ours, dense, shared = run_and_references(result, result.diagrams[0], batch=300)  # 300 rows: its own backward
    assert_close(ours, dense, 1e-10)
    assert_close(ours, shared, 1e-10)


def test_gathered_stacks_script_export_compile_and_take_func_grad() -> None:
    # torch.func needs runtime's autograd functions (the gather, runtime.join) in setup_context form
    result = api.compile(UVU, name="uvu.fusion")
    module = result.module_class()(dtype=torch.float64)
    args = [a.double() for a in example_inputs(result, batch=500)]  # 500 x 144 numbers: the gather's own backward
    assert_scripts_exports_and_compiles(module, args, 1e-10)

    def energy(x: torch.Tensor) -> torch.Tensor:
        return (module(x, *args[1:]) ** 2).sum()
    x = args[0].clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(energy(x), x)
    assert torch.allclose(torch.func.grad(energy)(args[0]), expected, atol=1e-10)


def test_external_weights_are_gathered_once_in_the_order_the_entries_read_them() -> None:
    # weighted.order_weights: the channelwise product's 28 weight blocks in one gather, sliced per run of
    # alike entries; gathered per run instead (6 runs), backward scattered 6 times into whole-size zeros
    result = api.compile(UVU, name="uvu.fusion")
    code = result.source_code
    assert code.count("runtime.take_columns(") == 2 and "runtime.index_select(weights_z_0" not in code
    module = result.module_class()(dtype=torch.float64)
    args = [a.double().requires_grad_(True) for a in example_inputs(result, batch=4)]
    out = module(*args)
    with CountOps() as counted:
        out.backward(torch.ones_like(out))
    assert counted.calls["index_add"] == 2   # the stack of x and the weights, once each


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.calls[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))
