"""The input checks at the top of every generated ``forward`` (part of the runtime: re-exported by
:mod:`fusionlang.runtime`, and inlined with it into standalone modules).

A mis-shaped input raises a ``ValueError`` that names it, rather than being silently reshaped.
"""

from __future__ import annotations

import torch

# TorchScript compiles these (type hints, f-strings, `torch.jit.is_scripting()` branches);
# torch.compile and torch.export trace them: a check on shapes and dtypes costs nothing in the
# graph, and data-dependent checks (index ranges) run only eagerly on the CPU.


def check_feature(where: str, name: str, x: torch.Tensor, dim: int, what: str, real: torch.dtype,
                  is_complex: bool) -> None:
    """``x`` is ``[..., dim]`` at the module's precision (``real``, or its complex type).

    >>> check_feature("d", "y", torch.zeros(5, 18), 9, "0e + 1o + 2e", torch.float32, False)
    Traceback (most recent call last):
    ...
    ValueError: d: `y` (0e + 1o + 2e) must be a tensor [..., 9], got shape [5, 18]
    """
    if x.dim() == 0 or x.shape[-1] != dim:
        raise ValueError(f"{where}: `{name}` ({what}) must be a tensor [..., {dim}], got shape {list(x.shape)}")
    _check_dtype(where, name, x, real, is_complex)


def check_rows(where: str, name: str, x: torch.Tensor, dim: int, what: str, real: torch.dtype,
               is_complex: bool, rows: str) -> None:
    """``x`` is ``[rows, dim]`` (``rows``: ``"N"`` nodes or ``"E"`` edges of a graph) at the
    module's precision.

    >>> check_rows("g", "h", torch.zeros(2, 5, 4), 4, "0e + 1o", torch.float32, False, "N")
    Traceback (most recent call last):
    ...
    ValueError: g: `h` (0e + 1o) must be a tensor [N, 4], got shape [2, 5, 4]
    """
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"{where}: `{name}` ({what}) must be a tensor [{rows}, {dim}], got shape {list(x.shape)}")
    _check_dtype(where, name, x, real, is_complex)


def _check_dtype(where: str, name: str, x: torch.Tensor, real: torch.dtype, is_complex: bool) -> None:
    if is_complex != x.is_complex():
        kind = "complex (SU(2) and `basis complex` features)" if is_complex else "real"
        raise ValueError(f"{where}: `{name}` must be {kind}, got {_dtype_name(x.dtype)}")
    expected = _complex_of(real) if is_complex else real
    if x.dtype != expected and not _autocasting(x):
        raise ValueError(f"{where}: `{name}` is {_dtype_name(x.dtype)} but the module computes in "
                         f"{_dtype_name(expected)}: convert the input, or the module with .to({_dtype_name(x.dtype)})")


def check_batch(where: str, names: list[str], xs: list[torch.Tensor]) -> None:
    """Every input has the batch shape of the first (no broadcasting between inputs).

    >>> check_batch("d", ["x", "y"], [torch.zeros(10, 288), torch.zeros(5, 9)])
    Traceback (most recent call last):
    ...
    ValueError: d: `y` has batch shape [5] but `x` has [10]: all inputs share one batch shape
    """
    first = xs[0].shape[:-1]
    for position in range(1, len(xs)):
        if xs[position].shape[:-1] != first:
            raise ValueError(f"{where}: `{names[position]}` has batch shape {list(xs[position].shape[:-1])} but "
                             f"`{names[0]}` has {list(first)}: all inputs share one batch shape")


def check_count(where: str, what: str, names: list[str], counts: list[int]) -> None:
    """Every input on the nodes (on the edges) of a graph has the same number of them.

    >>> check_count("g", "edges", ["Y", "edge_index"], [7, 6])
    Traceback (most recent call last):
    ...
    ValueError: g: `edge_index` has 6 edges but `Y` has 7
    """
    for position in range(1, len(counts)):
        if counts[position] != counts[0]:
            raise ValueError(f"{where}: `{names[position]}` has {counts[position]} {what} but "
                             f"`{names[0]}` has {counts[0]}")


def check_edge_index(where: str, edge_index: torch.Tensor, num_nodes: int) -> None:
    """``edge_index`` is an integer ``[2, E]`` with node numbers below ``num_nodes`` (a negative
    ``num_nodes`` skips the range; so does a run off the CPU or under tracing: see :func:`_readable`).

    >>> check_edge_index("g", torch.tensor([[0, 3], [1, 0]]), 3)
    Traceback (most recent call last):
    ...
    ValueError: g: `edge_index` holds node numbers 0 .. 3, but there are 3 nodes
    """
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{where}: `edge_index` must be a tensor [2, E] (row 0 the senders, row 1 the receivers), "
                         f"got shape {list(edge_index.shape)}")
    _check_integer(where, "edge_index", edge_index)
    if num_nodes >= 0 and edge_index.numel() > 0 and _readable(edge_index):
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= num_nodes:
            raise ValueError(f"{where}: `edge_index` holds node numbers {low} .. {high}, "
                             f"but there are {num_nodes} nodes")


def check_index(where: str, name: str, index: torch.Tensor, classes: int) -> None:
    """An index input is an integer ``[N]`` with values in ``0 .. classes - 1`` (the range is
    checked where cheap: see :func:`_readable`).

    >>> check_index("g", "species", torch.tensor([0, 2, 3]), 3)
    Traceback (most recent call last):
    ...
    ValueError: g: `species` holds classes 0 .. 3, but it has 3 classes (0 .. 2)
    """
    if index.dim() != 1:
        raise ValueError(f"{where}: `{name}` must be a tensor [N] of classes, got shape {list(index.shape)}")
    _check_integer(where, name, index)
    if index.numel() > 0 and _readable(index):
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= classes:
            raise ValueError(f"{where}: `{name}` holds classes {low} .. {high}, "
                             f"but it has {classes} classes (0 .. {classes - 1})")


def _check_integer(where: str, name: str, index: torch.Tensor) -> None:
    if index.dtype != torch.int64 and index.dtype != torch.int32:
        raise ValueError(f"{where}: `{name}` must be torch.int64 (or torch.int32), got {_dtype_name(index.dtype)}")


def _readable(index: torch.Tensor) -> bool:
    """Whether reading an index tensor's values costs little: on the CPU (on a GPU it would wait
    for the device) and not while ``torch.compile``, ``torch.export`` or ``torch.jit.trace``
    record the module (a branch on values would break the graph)."""
    if torch.jit.is_scripting():
        return index.is_cpu
    else:
        tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
        return index.is_cpu and not tracing


def _autocasting(x: torch.Tensor) -> bool:
    """Inside ``torch.autocast`` the inputs may come at the autocast precision."""
    if torch.jit.is_scripting():
        return False
    else:
        return torch.is_autocast_enabled(x.device.type)


def _complex_of(real: torch.dtype) -> torch.dtype:
    if real == torch.float64:
        return torch.complex128
    if real == torch.float16:
        return torch.complex32
    return torch.complex64


def _dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` and so on (TorchScript's ``str`` of a dtype is a number)."""
    if not torch.jit.is_scripting():
        return str(dtype)
    known = [(torch.float16, "torch.float16"), (torch.bfloat16, "torch.bfloat16"), (torch.float32, "torch.float32"),
             (torch.float64, "torch.float64"), (torch.complex32, "torch.complex32"),
             (torch.complex64, "torch.complex64"), (torch.complex128, "torch.complex128"),
             (torch.int32, "torch.int32"), (torch.int64, "torch.int64")]
    for candidate, name in known:
        if dtype == candidate:
            return name
    return f"dtype number {dtype}"
