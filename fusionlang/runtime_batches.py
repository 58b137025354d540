"""How a generated ``forward`` runs a batch: in one pass or in chunks, and how pieces are joined
(part of the runtime: re-exported by :mod:`fusionlang.runtime`, and inlined with it into
standalone modules).

TorchScript compiles these; ``torch.compile`` and ``torch.export`` trace :func:`in_one_pass` and
:func:`join`, and run :func:`in_chunks` eagerly behind a graph break (``runtime.eagerly``).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

CHUNKS_IN_PARALLEL = True
"""Whether :func:`in_chunks` may run an inference batch's chunks side by side, one per thread of
torch's (each operation on one thread), rather than one after another with every operation
spread over all of them. Side by side, a thread that loses its core to another program slows down
only its own chunks; spread, every operation waits for it at OpenMP's barrier. Measured with two
threads (N = 16384, forward, ``docs/performance.md``): with a busy loop on one core, 1.4-3.9x
faster than spread; on a quiet machine level (``fc_tp``, three-leaf) or 1.23x faster (``uvu``)."""

PARALLEL_CHUNKS_PER_THREAD = 4
"""Side by side only when every thread gets at least this many chunks: with fewer, a thread left
with one chunk more than the others costs more than the barriers saved."""

_BORROWING = threading.Lock()  # one batch at a time holds torch's threads (set to 1 while it runs)
_POOLS: dict[tuple[int, int], concurrent.futures.ThreadPoolExecutor] = {}


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
    faster than concatenating), and where :func:`_parallel_threads` allows, the chunks run side by
    side (:data:`CHUNKS_IN_PARALLEL`), each of ``chunk`` over the thread count samples: the threads
    share the cache that ``chunk`` is sized for (chunks of ``chunk`` side by side made ``fc_tp`` at
    N = 16384 1.19x slower). Other chunk boundaries can change the last bits of the values. With
    gradients they are joined (:func:`join`): writes into slices would chain one ``CopySlices`` per
    chunk, each copying the whole gradient in backward."""
    threads = _parallel_threads(chunk, arguments)
    if threads > 1 and _BORROWING.acquire(blocking=False):
        try:
            return _side_by_side(contract, max(1, chunk // threads), arguments, threads)
        finally:
            _BORROWING.release()
    pieces = [torch.split(argument, chunk) for argument in arguments]
    first = contract(*[piece[0] for piece in pieces])
    parts = itertools.chain([_as_tuple(first)], (_as_tuple(contract(*[piece[k] for piece in pieces]))
                                                  for k in range(1, len(pieces[0]))))
    if any(result.requires_grad for result in _as_tuple(first)):
        joined = tuple(join(list(column), 0) for column in zip(*parts, strict=True))
    else:
        joined = _outputs_like(_as_tuple(first), arguments[0].shape[0])
        for k, part in enumerate(parts):
            _write(joined, part, k * chunk)
    return joined[0] if isinstance(first, torch.Tensor) else joined


def _outputs_like(part: tuple[torch.Tensor, ...], samples: int) -> tuple[torch.Tensor, ...]:
    """Outputs for ``samples`` samples, shaped and typed as one chunk's results ``part``."""
    return tuple(r.new_empty((samples, *r.shape[1:])) for r in part)


def _write(outputs: tuple[torch.Tensor, ...], part: tuple[torch.Tensor, ...], start: int) -> None:
    """One chunk's results into the outputs, from sample ``start`` on."""
    for out, result in zip(outputs, part, strict=True):
        out[start:start + result.shape[0]] = result


def _parallel_threads(chunk: int, arguments: Sequence[torch.Tensor]) -> int:
    """How many threads run the chunks side by side: torch's thread count, or 1 (one after
    another). Side by side only for inference on the CPU with more than one thread and at least
    :data:`PARALLEL_CHUNKS_PER_THREAD` chunks each, and only where the worker threads would compute
    what the caller's thread does: they do not inherit its autocast or its Python modes (a
    ``TorchDispatchMode`` that counts operations would not see theirs), so not under those."""
    threads = torch.get_num_threads()
    if not CHUNKS_IN_PARALLEL or threads < 2 or torch.is_grad_enabled():
        return 1
    if torch.is_autocast_enabled("cpu") or torch._C._len_torch_function_stack() or \
            torch._C._len_torch_dispatch_stack():
        return 1
    if not all(argument.is_cpu for argument in arguments):
        return 1
    size = max(1, chunk // threads)
    return threads if -(-arguments[0].shape[0] // size) >= PARALLEL_CHUNKS_PER_THREAD * threads else 1


def _side_by_side(contract: Callable[..., Any], size: int, arguments: Sequence[torch.Tensor], threads: int) -> Any:
    """:func:`in_chunks` without gradients, its chunks of ``size`` samples taken in order by
    ``threads`` threads (this one and a pool's), every operation on one thread: torch's thread
    count is 1 while it runs (every thread of the process sees that), and restored after."""
    pieces = [torch.split(argument, size) for argument in arguments]
    order, taking = iter(range(len(pieces[0]))), threading.Lock()
    outputs: list[tuple[bool, tuple[torch.Tensor, ...]]] = []  # (one tensor, not a tuple; the outputs)
    allocated, failed = threading.Event(), threading.Event()
    inference = torch.is_inference_mode_enabled()

    def work() -> None:
        try:
            with torch.inference_mode(inference), torch.no_grad():
                while not failed.is_set() and (k := _next(order, taking)) is not None:
                    result = contract(*[piece[k] for piece in pieces])
                    if k == 0:
                        outputs.append((isinstance(result, torch.Tensor),
                                        _outputs_like(_as_tuple(result), arguments[0].shape[0])))
                        allocated.set()
                    allocated.wait()
                    if not failed.is_set():
                        _write(outputs[0][1], _as_tuple(result), k * size)
        except BaseException:
            failed.set()
            allocated.set()  # a thread waiting for the outputs stops waiting
            raise

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        helpers = [_pool(threads - 1).submit(work) for _ in range(threads - 1)]
        try:
            work()
        finally:
            for helper in helpers:  # every helper done (or never started) before the threads are restored
                if not helper.cancel():
                    helper.exception()
        for helper in helpers:
            if not helper.cancelled():
                helper.result()
    finally:
        torch.set_num_threads(previous)
    single, found = outputs[0]
    return found[0] if single else found


def _next(order: Iterator[int], taking: threading.Lock) -> int | None:
    with taking:
        return next(order, None)


def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """The helper threads of :func:`_side_by_side`, made once per process: a child made by
    ``fork`` (a ``DataLoader`` worker) inherits the parent's pool without its threads, so it makes
    its own. The caller's thread takes chunks too, and a helper that never starts is cancelled."""
    key = (os.getpid(), workers)
    if key not in _POOLS:  # each helper thread's own OpenMP and MKL counts set to 1 once, as it starts
        _POOLS[key] = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fusionlang-chunks",
                                                            initializer=torch.set_num_threads, initargs=(1,))
    return _POOLS[key]


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
