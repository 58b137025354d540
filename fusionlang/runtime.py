"""The small runtime every generated module imports (besides torch).

* :func:`coupling_table` builds a dense coupling table in float64 (complex128 for SU(2)) from
  its recipe: blocks of coupling tensors chained along fusion (sub)trees, scaled by
  ``1/sqrt(fan_in)``, optionally averaged over permutations of axes;
* :class:`CompiledModule` is the base class of generated modules: it keeps an exact float64 copy
  of every table and derives the working buffers from it whenever the module changes dtype or
  device, and it pickles modules built in memory by their generated source;
* :func:`load_generated` turns a generated source into an importable module (registered in
  ``sys.modules`` under its name, source lines registered with ``linecache`` so that
  ``inspect``, tracebacks and ``torch.jit.script`` can read them).

Nothing here is called inside ``forward``: generated forwards use plain torch operations, so they
run eagerly and under ``torch.compile(fullgraph=True)``, ``torch.jit.script`` and
``torch.export``.
"""

from __future__ import annotations

import itertools
import linecache
import math
import sys
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

import torch

__all__ = ["CompiledModule", "TreeSpec", "coupling_table", "in_one_pass", "index_table", "load_generated", "rebuild"]

TreeSpec = str | tuple["TreeSpec", "TreeSpec", str]
BlockSpec = tuple[Any, ...]  # (offsets, tree, fan_in[, permutation, (numerator, denominator)])

_LOCK = threading.Lock()


# -- coupling tables -------------------------------------------------------------------------------

def coupling_table(group: str, shape: Sequence[int], blocks: Iterable[BlockSpec],
                   path_axes: Sequence[int] = (), symmetrize: Sequence[Sequence[int]] = ()) -> torch.Tensor:
    """A dense table of couplings, float64 (SO(3)/O(3)) or complex128 (SU(2)).

    Every block ``(offsets, tree, fan_in)`` adds the coupling tensor of ``tree`` (an irrep: the
    identity; or ``(left, right, irrep)``: component-normalised couplings chained along the tree,
    one axis per leaf, then the root) times ``1/sqrt(fan_in)``, starting at ``offsets``. A block
    ``(offsets, tree, fan_in, permutation, (p, q))`` first permutes the leaf axes (placed axis
    ``m`` is the tree's axis ``permutation[m]``) and scales by ``p / q``.
    ``path_axes`` get a single position per block; ``symmetrize`` lists groups of axes over
    whose permutations the table is averaged.

    >>> t = coupling_table("O3", (3, 3, 1), [((0, 0, 0), ("1o", "1o", "0e"), 1)])
    >>> round(float(t[0, 0, 0]), 6)
    0.57735
    """
    table = torch.zeros(tuple(shape), dtype=torch.complex128 if group == "SU2" else torch.float64)
    for offsets, tree, fan_in, *extra in blocks:
        tensor = _scaled(_tree_tensor(group, tree), fan_in)
        if extra:
            permutation, (numerator, denominator) = extra
            tensor = tensor.permute(*permutation, len(permutation)) * (numerator / denominator)
        for axis in sorted(path_axes):
            tensor = tensor.unsqueeze(axis)
        region = tuple(slice(start, start + size) for start, size in zip(offsets, tensor.shape, strict=False))
        table[region] += tensor
    for axes in symmetrize:
        table = _symmetrized(table, tuple(axes))
    return table


def _scaled(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    return tensor if fan_in == 1 else tensor * (1.0 / math.sqrt(fan_in))


def _symmetrized(table: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    total = torch.zeros_like(table)
    perms = list(itertools.permutations(axes))
    for perm in perms:
        order = list(range(table.dim()))
        for source, destination in zip(axes, perm, strict=False):
            order[destination] = source
        total += table.permute(order)
    return total / len(perms)


@lru_cache(maxsize=4096)
def _tree_tensor(group: str, tree: TreeSpec) -> torch.Tensor:
    """The couplings chained along ``tree``: axes are its leaves' components, then the root's."""
    from .groups import Irrep, coupling

    if isinstance(tree, str):
        dim = Irrep.parse(tree, group).dim
        return torch.eye(dim, dtype=torch.complex128 if group == "SU2" else torch.float64)
    left, right, root = tree
    vertex = coupling(group, _root(left), _root(right), root, normalization="component")
    # Leaves are identities: skipping them keeps one-vertex tables bit-equal to `coupling`.
    if not isinstance(left, str):
        a = _tree_tensor(group, left)
        vertex = torch.einsum("la,abc->lbc", a.reshape(-1, a.shape[-1]), vertex).reshape(
            *a.shape[:-1], *vertex.shape[1:])
    if not isinstance(right, str):
        b = _tree_tensor(group, right)
        flat = torch.einsum("xbc,rb->xrc", vertex.reshape(-1, *vertex.shape[-2:]), b.reshape(-1, b.shape[-1]))
        vertex = flat.reshape(*vertex.shape[:-2], *b.shape[:-1], vertex.shape[-1])
    return vertex


def _root(tree: TreeSpec) -> str:
    return tree if isinstance(tree, str) else tree[2]


def index_table(starts: Sequence[int], size: int) -> torch.Tensor:
    """int64 indices: ``size`` consecutive numbers from every start.

    >>> index_table([4, 0], 2).tolist()
    [4, 5, 0, 1]
    """
    return (torch.tensor(list(starts), dtype=torch.int64)[:, None]
            + torch.arange(size, dtype=torch.int64)).reshape(-1)


# -- the base class of generated modules -----------------------------------------------------------

_COMPLEX_OF = {torch.float16: torch.complex32, torch.bfloat16: torch.complex64,
               torch.float32: torch.complex64, torch.float64: torch.complex128}


def in_one_pass(x: torch.Tensor, chunk: int) -> bool:
    """Whether a generated ``forward`` contracts the batch of ``x`` in one pass rather than in
    chunks of ``chunk`` samples: off the CPU (a GPU wants the whole batch), for batches up to
    ``chunk``, and always while ``torch.compile`` or ``torch.export`` traces it (the graph stays
    free of a branch on the batch size, so a dynamic batch dimension stays dynamic)."""
    if torch.jit.is_scripting():
        return not x.is_cpu or x.shape[0] <= chunk
    else:
        return torch.compiler.is_compiling() or torch.compiler.is_exporting() or not x.is_cpu or x.shape[0] <= chunk


def _working(table: torch.Tensor, real: torch.dtype) -> torch.Tensor:
    """A float64/complex128 table at the module's precision."""
    return table.to(_COMPLEX_OF.get(real, torch.complex128) if table.is_complex() else real)


class CompiledModule(torch.nn.Module):
    """Base class of generated modules: exact coupling tables and pickling by source.

    Every coupling table is kept twice: an exact float64 (complex128) master outside the buffers,
    and a non-persistent buffer at the module's precision that ``forward`` uses. Whenever the
    module is converted (``.double()``, ``.to(dtype)``, ``.to(device)``, ...) the buffers are
    derived again from the masters, so a float64 module holds the exact float64 values, never
    float32 values cast up. Tables are not in the ``state_dict``: they are a function of the
    source; the state is the weights.
    """

    def __init__(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        self._float64_tables: dict[str, torch.Tensor] = {}
        self._real_dtype = dtype if dtype is not None else torch.get_default_dtype()
        self._device = torch.device(device) if device is not None else torch.device("cpu")

    @property
    def real_dtype(self) -> torch.dtype:
        """The precision of the weights and buffers (complex tables use the matching complex)."""
        return self._real_dtype

    def add_table(self, name: str, table: torch.Tensor) -> None:
        """Register ``table`` (float64 or complex128) as the buffer ``name``."""
        master = table.to(self._device)
        self._float64_tables[name] = master
        self.register_buffer(name, _working(master, self._real_dtype), persistent=False)

    def add_index(self, name: str, starts: Sequence[int], size: int) -> None:
        """Register the int64 buffer :func:`index_table` ``(starts, size)`` as ``name``."""
        self.register_buffer(name, index_table(starts, size).to(self._device), persistent=False)

    def add_weights(self, name: str, numel: int) -> None:
        """Register ``numel`` standard-normal weights as the parameter ``name``."""
        weights = torch.randn(numel, dtype=self._real_dtype, device=self._device)
        self.register_parameter(name, torch.nn.Parameter(weights))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        # The working tables are derived from the masters below: keep them out of the conversion
        # (it would round them, or drop the imaginary part of complex ones).
        for name in self._float64_tables:
            self._buffers.pop(name, None)
        result = super()._apply(fn, recurse)
        probe = fn(torch.zeros((), dtype=self._real_dtype, device=self._device))
        if probe.is_floating_point():
            self._real_dtype = probe.dtype
        self._device = probe.device
        for name, master in self._float64_tables.items():
            master = master.to(self._device)
            self._float64_tables[name] = master
            self._buffers[name] = _working(master, self._real_dtype)
        return result

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Modules built in memory pickle as (generated source, class name, state)."""
        cls = type(self)
        module = sys.modules.get(cls.__module__)
        source = getattr(module, "__fusion_source__", None)
        if source is None:
            return super().__reduce_ex__(protocol)
        return rebuild, (cls.__module__, source, cls.__qualname__), self.__dict__.copy()


def rebuild(module_name: str, source: str, qualname: str) -> CompiledModule:
    """An empty instance of a generated class (pickle then restores its state)."""
    cls = getattr(load_generated(module_name, source), qualname)
    return cls.__new__(cls)


def load_generated(name: str, source: str) -> types.ModuleType:
    """Execute a generated source as the module ``name`` (once: a module already registered under
    that name with the same source is returned as is).

    >>> m = load_generated("_fusionlang_doctest", "ANSWER = 42\\n")
    >>> m.ANSWER, m is load_generated("_fusionlang_doctest", "ANSWER = 42\\n")
    (42, True)
    """
    with _LOCK:
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__fusion_source__", None) == source:
            return existing
        filename = f"<fusionlang-generated {name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        module = types.ModuleType(name)
        module.__file__ = filename
        module.__fusion_source__ = source  # type: ignore[attr-defined]
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own generated code
        sys.modules[name] = module
        return module
