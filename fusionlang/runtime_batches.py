"""How a generated ``forward`` runs a batch: in one pass or in chunks, and how pieces are joined
(part of the runtime: re-exported by :mod:`fusionlang.runtime`, and inlined with it into
standalone modules).

TorchScript compiles these; ``torch.compile`` and ``torch.export`` trace :func:`in_one_pass` and
:func:`join`, and run :func:`in_chunks` eagerly behind a graph break (``runtime.eagerly``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch


def in_one_pass(x: torch.Tensor, chunk: int) -> bool:
    """Whether a generated ``forward`` contracts the batch of ``x`` in one pass rather than through
    :func:`in_chunks`: off the CPU (a GPU wants the whole batch), for CPU batches up to ``chunk``,
    and always while ``torch.compile`` or ``torch.export`` traces it (a batch that compiled code
    should run in chunks went to :func:`eagerly` before; the graph stays free of a branch on the
    batch size, so a dynamic batch dimension stays dynamic)."""
    if torch.jit.is_scripting():
        return not x.is_cpu or x.shape[0] <= chunk
    else:
        if torch.compiler.is_compiling() or not x.is_cpu:
            return True
        return x.shape[0] <= chunk


def in_chunks(contract: Callable[..., Any], chunk: int, arguments: Sequence[torch.Tensor]) -> Any:
    """``contract(*arguments)`` on ``chunk`` samples at a time: the intermediates stay cache-sized.

    Without gradients every chunk writes into outputs allocated once (uvu at N = 16384: 1.11-1.17x
    faster than concatenating). With gradients they are joined (:func:`join`): writes into slices
    would chain one ``CopySlices`` per chunk, each copying the whole gradient in backward."""
    pieces = [torch.split(argument, chunk) for argument in arguments]
    first = contract(*[piece[0] for piece in pieces])
    parts = itertools.chain([_as_tuple(first)], (_as_tuple(contract(*[piece[k] for piece in pieces]))
                                                  for k in range(1, len(pieces[0]))))
    if any(result.requires_grad for result in _as_tuple(first)):
        joined = tuple(join(list(column), 0) for column in zip(*parts, strict=True))
    else:
        joined = tuple(r.new_empty((arguments[0].shape[0], *r.shape[1:])) for r in _as_tuple(first))
        start = 0
        for part in parts:
            for out, result in zip(joined, part, strict=True):
                out[start:start + result.shape[0]] = result
            start += part[0].shape[0]
    return joined[0] if isinstance(first, torch.Tensor) else joined


def _as_tuple(result: Any) -> tuple[torch.Tensor, ...]:
    return (result,) if isinstance(result, torch.Tensor) else tuple(result)


def join(parts: list[torch.Tensor], axis: int) -> torch.Tensor:
    """``torch.cat(parts, axis)``; run eagerly with gradients, its backward is one ``torch.split``.
    ``cat``'s own backward slices the gradient, and in a double backward (training on forces) every
    slice's backward zero-fills a tensor as large as the whole: for the chunks of the MACE
    interaction at 1 000 nodes, 7.7 of 13.7 s per step (docs/performance.md)."""
    if torch.jit.is_scripting():
        return torch.cat(parts, axis)
    else:
        if torch.compiler.is_compiling() or not any(part.requires_grad for part in parts):
            return torch.cat(parts, axis)
        return _Join.apply(axis, *parts)


class _Join(torch.autograd.Function):
    # forward and setup_context apart: torch.func (grad, jacrev) accepts only this form
    @staticmethod
    def forward(axis: int, *parts: torch.Tensor) -> torch.Tensor:
        return torch.cat(parts, axis)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.axis, ctx.sizes = inputs[0], [part.shape[inputs[0]] for part in inputs[1:]]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return (None, *torch.split(grad, ctx.sizes, ctx.axis))
