"""A slice of an input's rows that several products read is copied once (``codegen.copy_shared_slices``):
``einsum`` copies a strided operand every time it reads it, so the copies are counted in a forward,
and the modules that copy still script and export (their values: the examples' tests)."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusionlang import api

ROOT = Path(__file__).resolve().parent.parent

MACE = (ROOT / "examples" / "mace.fusion").read_text()


class SliceCopies(TorchDispatchMode):
    """Counts the copies (``clone``) of each slice of ``source``, by its offset."""

    def __init__(self, source: torch.Tensor) -> None:
        super().__init__()
        self.storage = source.untyped_storage().data_ptr()
        self.copies: Counter[int] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten.clone.default and args[0].untyped_storage().data_ptr() == self.storage:
            self.copies[args[0].storage_offset()] += 1
        return func(*args, **(kwargs or {}))


def test_each_slice_of_the_product_basis_input_is_copied_once_per_statement() -> None:
    result = api.compile(MACE, name="mace.fusion")
    module = result.module_class("mace_product_basis")()
    A, species = torch.randn(6, result.diagram("mace_product_basis").inputs[0].irreps.dim), torch.tensor([0, 1, 2] * 2)
    with torch.no_grad(), SliceCopies(A) as counter:
        module(A, species)
    # the 1o, 2e and 3o slices, each read by several products in the correlation-2 and -3
    # statements: copied once by each statement (before: by every product, 9 times each)
    assert sorted(counter.copies.values()) == [2, 2, 2], counter.copies


def test_modules_that_copy_slices_script_and_export_and_whole_rows_are_not_copied() -> None:
    result = api.compile(MACE, name="mace.fusion")
    assert "A_1o = A_pieces[1].view(-1, 16, 3).contiguous()" in result.source_code
    # the TFN convolution reads all of Y in two products: a slice of the whole row is the row
    tfn = api.compile(ROOT / "examples" / "tfn.fusion").source_code
    assert "Y_0e_1o_2e = Y[:, 0:9].view(-1, 1, 9)\n" in tfn and tfn.count("[Y_0e_1o_2e, ") >= 2
    diagram = result.diagram("mace_product_basis")
    module = result.module_class("mace_product_basis")()
    args = [torch.randn(4, diagram.inputs[0].irreps.dim), torch.tensor([0, 2, 1, 0])]
    expected = module(*args)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        assert torch.allclose(torch.jit.script(module)(*args), expected, atol=1e-6)
    assert torch.allclose(torch.export.export(module, tuple(args)).module()(*args), expected, atol=1e-6)
