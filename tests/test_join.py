"""``runtime.join``: ``torch.cat`` whose backward is one ``torch.split`` (eagerly, with gradients).

A double backward (training on forces) through ``torch.cat`` zero-fills, for every piece, a
gradient as large as the whole: for a chunked batch that is one whole-size fill per chunk. The
generated outputs and the chunks of ``runtime.in_chunks`` are joined by ``runtime.join``, so a
force-training step of a chunked module fills no whole-size tensor per chunk; its values, first
and second derivatives equal ``torch.cat``'s."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusionlang import api, runtime, runtime_batches

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_codegen import example_inputs  # noqa: E402


def test_join_is_cat_with_first_and_second_derivatives() -> None:
    parts = [torch.randn(3, k, dtype=torch.float64, requires_grad=True) for k in (2, 1, 4)]
    assert torch.equal(runtime.join(parts, -1), torch.cat(parts, -1))
    assert torch.autograd.gradcheck(lambda *p: runtime.join(list(p), 1), parts)
    assert torch.autograd.gradgradcheck(lambda *p: runtime.join(list(p), 1), parts)
    rows = [torch.randn(k, 2, dtype=torch.complex128, requires_grad=True) for k in (1, 3)]
    assert torch.autograd.gradgradcheck(lambda *p: runtime.join(list(p), 0), rows)
    assert not runtime.join([torch.ones(1), torch.ones(2)], 0).requires_grad


class Fills(TorchDispatchMode):
    """The sizes of the tensors that zero-filling operations write (``slice_backward``: zeros as
    large as the sliced tensor, the slice's gradient copied in)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.fill_, torch.ops.aten.zero_, torch.ops.aten.zeros,
                                   torch.ops.aten.new_zeros, torch.ops.aten.zeros_like,
                                   torch.ops.aten.slice_backward):
            self.sizes.append(out.numel())
        return out


def whole_size_fills() -> int:
    """A force-training step's double backward through ``fc_tp`` in 8 chunks of 4 samples: how
    many tensors of the whole output's size (32 x 288 numbers) it zero-fills."""
    result = api.compile((ROOT / "examples" / "fc_tp.fusion").read_text(), name="fc_tp.fusion")
    cls = result.module_class()
    module = type(cls.__name__, (cls,), {"CHUNK": 4})(dtype=torch.float64)
    x, y = (a.double().requires_grad_() for a in example_inputs(result, batch=32))
    with Fills() as fills:
        energy = module(x, y).square().sum()
        (force,) = torch.autograd.grad(energy, y, create_graph=True)
        force.square().sum().backward()
    return sum(size == 32 * 288 for size in fills.sizes)


def test_a_chunked_double_backward_fills_no_whole_size_tensor_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    assert whole_size_fills() == 0
    # torch.cat, for contrast: every chunk's slice of the gradient is zero-filled at full size
    # (in_chunks reads join in its own module, runtime_batches; generated code as runtime.join)
    for module in (runtime, runtime_batches):
        monkeypatch.setattr(module, "join", lambda parts, axis: torch.cat(parts, axis))
    assert whole_size_fills() >= 8
