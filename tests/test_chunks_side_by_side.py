"""``runtime.in_chunks`` runs an inference batch's chunks side by side, one per thread of torch's
(``runtime_batches.CHUNKS_IN_PARALLEL``): the same values as one chunk after another, torch's
thread count restored whatever happens, and one after another wherever the worker threads would
not compute what the caller's thread does (gradients, autocast, Python modes)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusionlang import api, runtime_batches

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_codegen import example_inputs  # noqa: E402


@pytest.fixture(autouse=True)
def two_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def side_by_side_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many batches ran side by side (each call's thread count)."""
    calls: list[int] = []
    real = runtime_batches._side_by_side

    def counted(contract: Any, size: int, arguments: Any, threads: int) -> Any:
        calls.append(threads)
        return real(contract, size, arguments, threads)
    monkeypatch.setattr(runtime_batches, "_side_by_side", counted)
    return calls


def small_chunks(example: str, name: str) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """``name`` of examples/``example`` with ``CHUNK`` 4, in float64, and 37 samples: 19 chunks of 2
    side by side, 10 of 4 one after another (the last one of 1 either way)."""
    result = api.compile(ROOT / "examples" / f"{example}.fusion")
    cls = result.module_class(name)
    module = type(cls.__name__, (cls,), {"CHUNK": 4})(dtype=torch.float64)
    torch.manual_seed(0)
    args = [a.to(torch.complex128) if a.is_complex() else a.double()
            for a in example_inputs(result, name, batch=37)]
    return module, args


def one_after_another(module: torch.nn.Module, args: list[torch.Tensor]) -> Any:
    runtime_batches.CHUNKS_IN_PARALLEL = False
    try:
        with torch.no_grad():
            return module(*args)
    finally:
        runtime_batches.CHUNKS_IN_PARALLEL = True


def as_tuple(result: Any) -> tuple[torch.Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize(("example", "name"), [("fc_tp", "fc_tp"), ("spins", "tetrahedron"),
                                               ("product_basis", "product_basis")])
def test_side_by_side_equals_one_after_another(example: str, name: str, side_by_side_calls: list[int]) -> None:
    """Values equal to 1e-12 (tetrahedron: complex SU(2) features and two outputs), the thread
    count back at 2, and the batch did run side by side."""
    module, args = small_chunks(example, name)
    expected = one_after_another(module, args)
    assert side_by_side_calls == []
    with torch.no_grad():
        found = module(*args)
    assert side_by_side_calls == [2] and torch.get_num_threads() == 2
    for a, b in zip(as_tuple(found), as_tuple(expected), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    with torch.inference_mode():  # the workers keep the caller's inference mode
        inferred = module(*args)
    assert all(t.is_inference() for t in as_tuple(inferred)) and side_by_side_calls == [2, 2]
    for a, b in zip(as_tuple(inferred), as_tuple(expected), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_one_after_another_where_the_workers_would_differ(side_by_side_calls: list[int]) -> None:
    """Gradients, autocast, a Python dispatch mode, the switch off, one thread, few chunks: one
    after another. A dispatch mode that counts operations sees every one of them."""
    module, args = small_chunks("fc_tp", "fc_tp")
    module(*args)   # grad mode on: joined, for backward
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        module(*args)

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.calls += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count() as counted:
        module(*args)
    one_after_another(module, args)
    torch.set_num_threads(1)
    with torch.no_grad():
        module(*args)
    torch.set_num_threads(2)
    with torch.no_grad():
        module(*(a[:13] for a in args))  # 7 chunks of 2: fewer than 4 a thread
    assert side_by_side_calls == []
    with torch.no_grad(), Count() as whole:
        module.contract(*(a[:4] for a in args))
    assert counted.calls > 9 * whole.calls * 0.9   # every chunk's operations were seen


def test_the_thread_count_is_restored_when_a_chunk_fails(side_by_side_calls: list[int]) -> None:
    """An error in any chunk reaches the caller; torch's threads are back at 2 and the next batch
    runs side by side again."""
    x = torch.randn(40, 3, dtype=torch.float64)

    def failing(k: int) -> Any:
        def contract(part: torch.Tensor) -> torch.Tensor:
            if part[0, 0].item() == x[2 * k, 0].item():
                raise ValueError(f"chunk {k}")
            return part * 2
        return contract

    for k in (0, 5, 19):   # the first chunk (which allocates the outputs), one in the middle, the last
        with torch.no_grad(), pytest.raises(ValueError, match=f"chunk {k}"):
            runtime_batches.in_chunks(failing(k), 4, [x])
        assert torch.get_num_threads() == 2
    with torch.no_grad():
        assert torch.equal(runtime_batches.in_chunks(lambda part: part * 2, 4, [x]), x * 2)
    assert side_by_side_calls == [2, 2, 2, 2]


def test_batches_from_two_threads_at_once(side_by_side_calls: list[int]) -> None:
    """Two callers at once: one borrows the threads, the other runs one after another (it does
    not wait); both right, and the thread count ends where it began."""
    module, args = small_chunks("fc_tp", "fc_tp")
    expected = one_after_another(module, args)
    found: list[torch.Tensor] = []
    start = threading.Barrier(2)

    def call() -> None:
        start.wait()
        with torch.no_grad():
            for _ in range(20):
                found.append(module(*args))
    callers = [threading.Thread(target=call) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(found) == 40 and torch.get_num_threads() == 2
    assert all(torch.allclose(f, expected, rtol=1e-12, atol=1e-12) for f in found)
    assert 0 < len(side_by_side_calls) <= 40


def test_a_forked_child_runs_its_batches_without_the_parents_threads(side_by_side_calls: list[int]) -> None:
    """A child made by ``fork`` (a ``DataLoader`` worker) inherits the parent's pool but not its
    threads: it makes its own, and a batch there finishes with the right values instead of
    waiting for a helper that does not exist."""
    import os
    import time

    module, args = small_chunks("fc_tp", "fc_tp")
    with torch.no_grad():
        expected = module(*args)   # the parent's pool exists now
    assert side_by_side_calls == [2]
    pid = os.fork()
    if pid == 0:   # the child: exit 0 only with the right values and the threads restored
        ok = False
        try:
            with torch.no_grad():
                found = module(*args)
            ok = torch.allclose(found, expected, rtol=1e-12, atol=1e-12) and torch.get_num_threads() == 2
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's batch did not finish in 120 s")
