"""Generated modules never read tensor values on the host off the CPU: every example's module runs
forward and backward on the ``meta`` device, where a read (``.item()``, ``.tolist()``, ``bool()``,
``nonzero``, a copy to the CPU) raises. On a GPU such a read would wait for the device, and would keep
``torch.compile(mode="reduce-overhead")`` from capturing the forward in a CUDA graph. (On the CPU
the input checks read index values, which costs nothing there: ``runtime_checks._readable``.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusionlang import api
from fusionlang.equivariance import module_arguments

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(path.stem for path in (ROOT / "examples").glob("*.fusion"))


def test_a_host_read_of_a_meta_tensor_raises() -> None:
    """What the test below relies on."""
    with pytest.raises(RuntimeError, match="meta"):
        torch.ones(3, device="meta").sum().item()


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_runs_forward_and_backward_without_reading_values(example: str) -> None:
    result = api.compile(ROOT / "examples" / f"{example}.fusion")
    for diagram in result.diagrams:
        module = result.module_class(diagram.name)()
        cpu = module_arguments(module, diagram, batch=5, dtype=torch.float32)
        expected = module(*cpu)
        module = module.to("meta")
        args = [a.to("meta").requires_grad_(a.is_floating_point() or a.is_complex()) for a in cpu]
        out = module(*args)
        outs, wanted = (out, expected) if isinstance(out, tuple) else ((out,), (expected,))
        assert [(o.device.type, o.shape, o.dtype) for o in outs] == [("meta", e.shape, e.dtype) for e in wanted]
        loss = sum(torch.view_as_real(o).sum() if o.is_complex() else o.sum() for o in outs)
        leaves = [a for a in args if a.requires_grad] + [p for p in module.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        assert all(g is None or g.device.type == "meta" for g in grads) and any(g is not None for g in grads)
