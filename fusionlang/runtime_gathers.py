"""Selecting entries of a tensor, eagerly and while ``torch.compile`` traces (part of the runtime:
re-exported by :mod:`fusionlang.runtime`, and inlined with it into standalone modules).

Eagerly these are ``torch.index_select``. Traced, they are a ``torch.gather`` where gradients are
wanted (inductor's backward of ``index_select`` is wrong with several CPU threads:
:func:`index_select`), and, for inference on the CPU, the operation ``fusionlang::index_select``,
which inductor calls as it is instead of inlining the gather into the product that reads it
(:func:`_selection_operation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch


def index_select(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """``torch.index_select(x, axis, index)``; while ``torch.compile`` or ``torch.export``
    traces, the same numbers by :func:`_traced_selection`.

    With several CPU threads, inductor (PyTorch 2.13) fuses ``index_select``'s backward into a tiled
    kernel whose atomic add applies an offset twice (pytorch/pytorch#191837): heap corruption or
    wrong gradients. Eagerly ``index_select`` stays: the gather cost up to 12 % there.

    >>> index_select(torch.arange(12.0).view(2, 3, 2), -2, torch.tensor([2, 0]))[0].tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    if not torch.jit.is_scripting():  # noqa: SIM102 (TorchScript skips only a block of its own)
        if torch.compiler.is_compiling():
            return _traced_selection(x, axis, index)
    return torch.index_select(x, axis, index)


def select_weights(weights: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """``torch.index_select(weights, axis, index)`` for a module's own weights, or any tensor
    without a batch axis (the operand of ``runtime.packed_product``): a few numbers, the same for
    every sample. Traced, :func:`_traced_selection` without the operation that features use.

    >>> select_weights(torch.arange(6.0).view(3, 2), -2, torch.tensor([2, 0])).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    if not torch.jit.is_scripting():  # noqa: SIM102 (TorchScript skips only a block of its own)
        if torch.compiler.is_compiling():
            return _traced_selection(weights, axis, index, batched=False)
    return torch.index_select(weights, axis, index)


def take_columns(x: torch.Tensor, columns: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``x[:, columns]`` for a permutation ``columns`` (``inverse`` its inverse): a stack in one
    gather, 2.4x faster than concatenating transposed views (fc_tp's, 2048 samples). Eagerly with
    gradients on 65 536 numbers or more, its backward gathers by ``inverse`` (1.4x faster than
    ``index_select``'s adds into zeros; below, the autograd function's 0.1 ms costs more); traced,
    :func:`_traced_selection`."""
    if torch.jit.is_scripting():
        return torch.index_select(x, 1, columns)
    else:
        if torch.compiler.is_compiling():
            return _traced_selection(x, 1, columns)
        if x.requires_grad and x.numel() >= 1 << 16:
            return _TakeColumns.apply(x, columns, inverse)
        return torch.index_select(x, 1, columns)


class _TakeColumns(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, columns: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 1, columns)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[1], inputs[2])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        columns, inverse = ctx.saved_tensors
        return take_columns(grad, inverse, columns), None, None


def _traced_selection(x: torch.Tensor, axis: int, index: torch.Tensor, batched: bool = True) -> torch.Tensor:
    """``torch.index_select(x, axis, index)`` while ``torch.compile`` traces: with gradients, under
    ``torch.export`` or off the CPU, :func:`select_by_gather`; for inference on the CPU, the
    operation ``fusionlang::index_select`` (:data:`_SELECTION`) for a batch of features (``x``'s
    first axis), and ``index_select`` itself otherwise.

    The operation keeps inductor from inlining the gather into the product that reads it, which
    pays for large batches only: its Python dispatch costs 30-40 µs a call. Without it, ``fc_tp``'s
    compiled forward at N = 1 ran 1.65-1.70x faster for its weights' selections, and 1.25x (``fc_tp``),
    1.34-1.39x (``uvu``) and 1.30x (three-leaf) for one sample's features. Inductor writes weights
    into a small buffer for the matrix product anyway. A dynamic batch axis starts at 2, so the test
    on one sample adds no guard to the graphs of larger batches."""
    if x.is_cpu and not torch.is_grad_enabled() and not torch.compiler.is_exporting():
        if batched and x.shape[0] != 1:
            return _SELECTION(x, axis, index)
        return torch.index_select(x, axis, index)
    return select_by_gather(x, axis, index)


def _selection_operation() -> Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]:
    """``fusionlang::index_select``: ``torch.index_select`` as an operation of its own, which
    inductor calls as it is. A gather it inlines into the product that reads it, loading indices
    for every entry of the product: the three-leaf fusion's outer product at N = 1024 (one thread)
    took 8 ms of a 13 ms forward so, 6.3 ms in all with this operation. It has no derivative (with
    gradients the traced gather stays), and ``torch.vmap`` maps it. Registered once per process (a
    standalone module finds the package's)."""
    try:
        return cast(Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor], torch.ops.fusionlang.index_select)
    except AttributeError:
        pass

    @torch.library.custom_op("fusionlang::index_select", mutates_args=())
    def operation(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, axis, index)

    def batched(info: Any, dims: tuple[int | None, None, int | None], x: torch.Tensor, axis: int,
                index: torch.Tensor) -> tuple[torch.Tensor, int]:  # torch.vmap: the batch axis first
        if dims[0] is None or dims[2] is not None:
            raise ValueError("fusionlang::index_select: vmap batches the features, not the index")
        return operation(x.movedim(dims[0], 0), axis % (x.dim() - 1) + 1, index), 0

    operation.register_fake(lambda x, axis, index: torch.index_select(x, axis, index))
    operation.register_vmap(batched)
    return operation


_SELECTION = _selection_operation()


def select_by_gather(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """``torch.index_select(x, axis, index)`` written as ``torch.gather``.

    >>> select_by_gather(torch.arange(12.0).view(2, 6), 1, torch.tensor([5, 1])).tolist()
    [[5.0, 1.0], [11.0, 7.0]]
    """
    axis = axis % x.dim()
    shape = list(x.shape)
    shape[axis] = index.shape[0]
    return torch.gather(x, axis, index.view([-1] + [1] * (x.dim() - 1 - axis)).expand(shape))
