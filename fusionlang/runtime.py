"""The small runtime every generated module imports (besides torch).

* :func:`coupling_table` builds a dense coupling table in float64 (complex128 for SU(2)) from
  its recipe: blocks of coupling tensors chained along fusion (sub)trees;
* :class:`CompiledModule` is the base class of generated modules: it keeps an exact float64 copy
  of every table, derives the working buffers from it, and pickles by generated source;
* ``check_*`` are the input checks at the top of every generated ``forward``: a mis-shaped input
  raises a ``ValueError`` that names it, rather than being silently reshaped;
* :func:`in_chunks` and :func:`join` run large CPU batches in chunks and join them.

What ``forward`` calls here (the checks, :func:`in_one_pass`) is plain torch and Python that
TorchScript compiles and ``torch.compile``/``torch.export`` trace, so generated forwards run
eagerly and under ``torch.compile(fullgraph=True)``, ``torch.jit.script`` and ``torch.export``;
the one exception is :func:`in_chunks`, which ``torch.compile`` runs eagerly (a graph break) on
the CPU unless :func:`single_graph` says otherwise (see :data:`EAGER_CONTRACTION_UNDER_COMPILE`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import torch

# Loading generated sources lives apart (generated code never calls it, and standalone modules do not
# inline it); re-exported here, where callers and pickles of in-memory modules look for it.
from fusionlang.loader import (  # noqa: F401
    _PENDING,
    COLLECT_EVERY,
    PACKAGE,
    _unregister,
    load_generated,
    release_collected,
)

# Running a batch in one pass or in chunks, and joining pieces: apart too, called as runtime.*.
from fusionlang.runtime_batches import in_chunks, in_one_pass, join  # noqa: F401

# The input checks live apart (a module of their own); generated code calls them as runtime.check_*.
from fusionlang.runtime_checks import (  # noqa: F401
    _readable,
    check_batch,
    check_count,
    check_edge_index,
    check_feature,
    check_index,
    check_rows,
)

# Selecting entries (index_select, columns), eagerly and while tracing: apart too, called as runtime.*.
from fusionlang.runtime_gathers import (  # noqa: F401
    index_select,
    select_by_gather,
    select_weights,
    take_columns,
)
from fusionlang.runtime_sums import einsum_short_sums  # noqa: F401

__all__ = ["CompiledModule", "Instruction", "LinearInstruction", "TreeSpec", "check_batch", "check_count",
           "check_edge_index", "check_feature", "check_index", "check_rows", "coupling_table",
           "eager_under_compile", "einsum_short_sums", "eagerly", "in_chunks", "in_one_pass",
           "index_select", "index_table", "irreps", "join", "load_generated", "rebuild",
           "release_collected", "select_by_gather", "select_weights", "single_graph", "sparse_coupling",
           "stack_columns", "packed_product", "take_columns", "traced_batch", "traced_batch_with_grad",
           "unpacked"]

TreeSpec = str | tuple["TreeSpec", "TreeSpec", str]
BlockSpec = tuple[Any, ...]  # (offsets, tree, fan_in[, permutation, (numerator, denominator)])


# -- e3nn's surface (docs/e3nn.md) ------------------------------------------------------------------

class Instruction(NamedTuple):
    """One path of a two-leaf statement, as e3nn's ``TensorProduct.instructions`` lists it."""

    i_in1: int
    i_in2: int
    i_out: int
    connection_mode: str
    has_weight: bool
    path_weight: float
    path_shape: tuple[int, ...]


class LinearInstruction(NamedTuple):
    """One path of a linear map, as e3nn's ``Linear.instructions`` lists it."""

    i_in: int
    i_out: int
    path_shape: tuple[int, ...]
    path_weight: float


def irreps(group: str, text: str) -> Any:
    """The :class:`fusionlang.Irreps` value of a generated class attribute (``irreps_in1``, ...).

    >>> irreps("O3", "2x0e + 1o") == "2x0e+1x1o"
    True
    """
    from .groups import Irreps

    return Irreps(text, group)


# -- coupling tables -------------------------------------------------------------------------------

def coupling_table(group: str, shape: Sequence[int], blocks: Iterable[BlockSpec], path_axes: Sequence[int] = (),
                   symmetrize: Sequence[Sequence[int]] = (), columns: Sequence[int] = ()) -> torch.Tensor:
    """A dense table of couplings, float64 (SO(3)/O(3)) or complex128 (SU(2)).

    Every block ``(offsets, tree, fan_in)`` adds the coupling tensor of ``tree`` (an irrep: the
    identity; or ``(left, right, irrep)``: component-normalised couplings chained along the tree,
    one axis per leaf, then the root) times ``1/sqrt(fan_in)``, starting at ``offsets``. A block
    ``(offsets, tree, fan_in, permutation, (p, q))`` first permutes the leaf axes (placed axis
    ``m`` is the tree's axis ``permutation[m]``) and scales by ``p / q``.
    ``path_axes`` get a single position per block; ``symmetrize`` lists groups of axes over
    whose permutations the table is averaged; ``columns`` stores the last axis in that order.

    >>> t = coupling_table("O3", (3, 3, 1), [((0, 0, 0), ("1o", "1o", "0e"), 1)])
    >>> round(float(t[0, 0, 0]), 6)
    0.57735
    """
    table = torch.zeros(tuple(shape), dtype=_dtype(group))
    for block in blocks:
        tensor = _block_tensor(group, block, path_axes)
        table[tuple(slice(start, start + size) for start, size in zip(block[0], tensor.shape, strict=False))] += tensor
    for axes in symmetrize:
        table = _symmetrized(table, tuple(axes))
    return table[..., list(columns)] if columns else table


def unpacked(values: torch.Tensor, positions: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """The dense table ``shape`` whose nonzeros ``values`` sit at the flat ``positions``: a table
    kept packed (:meth:`CompiledModule.add_packed`), the same numbers as the dense buffer.

    >>> unpacked(torch.tensor([2.0, 3.0]), torch.tensor([1, 4]), [2, 3]).tolist()
    [[0.0, 2.0, 0.0], [0.0, 3.0, 0.0]]
    """
    table = values.new_zeros(shape)
    table.view(-1).index_put_([positions], values)
    return table


def packed_product(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, other: torch.Tensor,
                   shape: list[int]) -> torch.Tensor:
    """The product of a packed table and a batch-free ``other`` ``[shared, own]``, over the
    table's nonzeros: ``values[e] * other[cols[e]]`` added into row ``rows[e]`` of
    ``[kept, own]``, viewed as ``shape`` (the table's kept axes, then ``other``'s own ones).

    >>> packed_product(torch.tensor([2.0, 3.0]), torch.tensor([1, 1]), torch.tensor([0, 1]),
    ...                torch.tensor([[1.0], [10.0]]), [2, 1]).tolist()
    [[0.0], [32.0]]
    """
    compiling = False
    if not torch.jit.is_scripting():  # noqa: SIM102 (TorchScript skips only a block of its own)
        compiling = torch.compiler.is_compiling()
    if compiling:  # traced: a gather and a scatter (see `index_select`), which take int64 only
        rows, cols = rows.long(), cols.long()
    terms = values.unsqueeze(1) * select_weights(other, 0, cols)  # batch-free: no traced operation
    zeros = terms.new_zeros(shape).view(-1, terms.shape[1])
    if compiling:
        return zeros.scatter_add(0, rows.unsqueeze(1).expand(terms.shape), terms).view(shape)
    return zeros.index_add(0, rows, terms).view(shape)


def _coordinates(positions: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Every flat position's index along each axis, one row per axis: the inverse of :func:`_flat`
    (``torch.unravel_index`` imports sympy, 0.6 s on a first call)."""
    found, rest = [], positions
    for size in reversed(shape):
        found.append(rest % size)
        rest = rest // size
    return torch.stack(found[::-1])


def _dtype(group: str) -> torch.dtype:
    return torch.complex128 if group == "SU2" else torch.float64


def _block_tensor(group: str, block: BlockSpec, path_axes: Sequence[int]) -> torch.Tensor:
    """A block's coupling tensor, scaled, its leaf axes permuted, with its path axes (size 1)."""
    _, tree, fan_in, *extra = block
    tensor = _scaled(_tree_tensor(group, tree), fan_in)
    if extra:
        permutation, (numerator, denominator) = extra
        tensor = tensor.permute(*permutation, len(permutation)) * (numerator / denominator)
    for axis in sorted(path_axes):
        tensor = tensor.unsqueeze(axis)
    return tensor


NONZERO = 1e-12  # a coupling entry this small is a zero of the selection rules (round-off), not a value


class SparseCoupling(NamedTuple):
    """A table's nonzeros: ``values[z]`` at ``rows[k][z]`` along leaf axis ``k``, ``out[z]`` along the rest."""

    rows: tuple[torch.Tensor, ...]
    out: torch.Tensor
    values: torch.Tensor


def sparse_coupling(group: str, shape: Sequence[int], blocks: Iterable[BlockSpec], leaf_axes: int,
                    path_axes: Sequence[int] = (), symmetrize: Sequence[Sequence[int]] = ()) -> SparseCoupling:
    """The nonzeros of :func:`coupling_table` in row-major order (the first ``leaf_axes`` axes are
    the leaves'), block by block and never as the dense table, averaged over permutations too.

    >>> s = sparse_coupling("O3", (3, 3, 1), [((0, 0, 0), ("1o", "1o", "0e"), 1)], leaf_axes=2)
    >>> [r.tolist() for r in s.rows], s.out.tolist(), round(float(s.values[0]), 6)
    ([[0, 1, 2], [0, 1, 2]], [0, 0, 0], 0.57735)
    """
    coordinates, values = _coalesced(group, tuple(shape), blocks, path_axes)
    for axes in symmetrize:
        coordinates, values = _symmetrized_entries(coordinates, values, tuple(shape), tuple(axes))
    keep = values.abs() > NONZERO
    coordinates, values = coordinates[:, keep], values[keep]
    out = _flat(coordinates[leaf_axes:], shape[leaf_axes:])
    return SparseCoupling(tuple(coordinates[:leaf_axes].contiguous()), out, values)


def _flat(coordinates: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Row-major positions of ``coordinates`` (one row per axis of ``shape``)."""
    flat = torch.zeros(coordinates.shape[1], dtype=torch.int64)
    for axis, size in enumerate(shape):
        flat = flat * size + coordinates[axis]
    return flat


def _coalesced(group: str, shape: tuple[int, ...], blocks: Iterable[BlockSpec],
               path_axes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every block's entries that are not exactly zero, placed at its offsets, overlapping ones
    summed in block order (as :func:`coupling_table` adds the blocks)."""
    # A kind of block (tree, scale, permutation) has its nonzeros found once, then gathered for each
    # block in block order: 20 000 blocks of a few dozen kinds took seconds at one operation each
    blocks, kinds = list(blocks), dict[str, int]()
    found = [(torch.zeros(len(shape), 0, dtype=torch.int64), torch.zeros(0, dtype=_dtype(group)))]
    for block in blocks:
        if kinds.setdefault(repr(block[1:]), len(found)) == len(found):
            tensor = _block_tensor(group, block, path_axes)
            found.append(((tensor != 0).nonzero().T, tensor[tensor != 0]))
    counts = torch.tensor([values.numel() for _, values in found])
    kind = torch.tensor([kinds[repr(block[1:])] for block in blocks], dtype=torch.int64)
    owner = torch.repeat_interleave(torch.arange(len(blocks)), counts[kind])  # the block of each entry
    entry = (torch.cumsum(counts, 0) - counts)[kind[owner]] + torch.arange(owner.numel()) \
        - (torch.cumsum(counts[kind], 0) - counts[kind])[owner]  # its number among all kinds' entries
    offsets = torch.tensor([block[0] for block in blocks], dtype=torch.int64).reshape(-1, len(shape)).T
    return _summed(torch.cat([w for w, _ in found], 1)[:, entry] + offsets[:, owner],
                   torch.cat([v for _, v in found])[entry], shape)


def _summed(coordinates: torch.Tensor, values: torch.Tensor,
            shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Entries at equal coordinates summed in their order, in row-major order of the coordinates."""
    places, where = torch.unique(_flat(coordinates, shape), sorted=True, return_inverse=True)
    summed = torch.zeros(len(places), dtype=values.dtype).index_add_(0, where, values)
    return _coordinates(places, shape), summed


def _symmetrized_entries(coordinates: torch.Tensor, values: torch.Tensor, shape: tuple[int, ...],
                         axes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_symmetrized` on a table's entries: the average over the permutations of ``axes``.
    Why: the dense table of a symmetrised product of four legs took seconds to build (fuzz seed
    1218: 4.9 s of a 12.5 s compile), when its entries are a few thousand."""
    orders = _permutation_orders(axes, len(shape))
    # table.permute(order): its coordinate d is the old coordinate order[d]
    placed, summed = _summed(torch.cat([coordinates[order] for order in orders], 1),
                             values.repeat(len(orders)), shape)
    return placed, summed / len(orders)


def _scaled(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    return tensor if fan_in == 1 else tensor * (1.0 / math.sqrt(fan_in))


def _symmetrized(table: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    orders = _permutation_orders(axes, table.dim())
    total = torch.zeros_like(table)
    for order in orders:
        total += table.permute(order)
    return total / len(orders)


def _permutation_orders(axes: tuple[int, ...], dims: int) -> list[list[int]]:
    """For every permutation of ``axes``, the ``permute`` order that moves them (the others stay)."""
    orders = []
    for perm in itertools.permutations(axes):
        order = list(range(dims))
        for source, destination in zip(axes, perm, strict=False):
            order[destination] = source
        orders.append(order)
    return orders


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


def stack_columns(entries: Sequence[tuple[int, int, int]], component_major: bool) -> torch.Tensor:
    """The columns of a flat leg that hold a stack of its entries ``(start, mul, dim)`` (one ``mul``)
    in the stack's order: ``[mul, D]`` side by side, ``[D, mul]`` component-major.

    >>> stack_columns([(0, 2, 1), (2, 2, 3)], True).tolist()
    [0, 1, 2, 5, 3, 6, 4, 7]
    """
    stacked = torch.cat([start + torch.arange(mul * dim).view(mul, dim) for start, mul, dim in entries], 1)
    return (stacked.t() if component_major else stacked).reshape(-1)


# -- the base class of generated modules -----------------------------------------------------------

_COMPLEX_OF = {torch.float16: torch.complex32, torch.bfloat16: torch.complex64,
               torch.float32: torch.complex64, torch.float64: torch.complex128}


EAGER_CONTRACTION_UNDER_COMPILE = True
"""Whether ``torch.compile`` leaves a large CPU batch eager: a generated ``forward`` hands it to
:func:`eagerly` (one graph break, then the eager, chunked forward), because inductor's code for
these contractions was slower on the CPU (the three-leaf fusion at N = 1024, two threads: 7x) and
a dynamic batch would unroll the chunks. Off (:func:`single_graph`), every batch is one traced
graph: what ``fullgraph=True``, ``torch.func`` under compile and GPUs (always traced) need."""


TRACED_BATCH = 1024
"""``torch.compile`` traces CPU batches up to this size (with one thread, up to a module's ``CHUNK``
where that is larger: :func:`traced_batch`). Traced time against eager without gradients, N = 1024
/ 2048 / 4096 (``/tmp/w/lim.py``, 7–9 alternating runs): two threads, ``fc_tp`` 0.97–0.98 / 1.09 /
0.87, ``uvu`` 1.17–1.19 / 1.14 / 0.81, the three-leaf fusion 1.28–1.30 / 1.30 / 1.23, the MACE
product basis 1.37–1.43 / 1.22 / 0.99; one thread 0.90 / 1.24 / 0.95, 1.02 / 0.94 / 0.85,
1.43 / 1.78 / 1.36 and 1.38 / 1.15 / 0.95. It was 64 with several threads (below it the graph
break's fixed cost dominates) while the column gather and the product basis's long sums made the
traced code up to 7x slower there."""


def traced_batch(chunk: int) -> int:
    """The largest CPU batch that ``torch.compile`` traces, for a module of ``CHUNK`` = ``chunk``
    built now: :data:`TRACED_BATCH`, or ``chunk`` with one thread where that is larger (inductor's
    code beat eager at a module's ``CHUNK`` with one thread: ``fc_tp``, 2048, 1.24x). A module reads
    it when built (attribute ``traced_batch``): dynamo cannot read the thread count.

    >>> traced_batch(4096) == (4096 if torch.get_num_threads() == 1 else TRACED_BATCH), traced_batch(256)
    (True, 1024)
    """
    return max(chunk, TRACED_BATCH) if torch.get_num_threads() == 1 else TRACED_BATCH


TRACED_BATCH_WITH_GRAD = 4096
"""With grad mode on, ``torch.compile`` traces batches up to this size (at most 8 ``CHUNK``): a
backward is coming, and inductor's joint forward + backward beat the eager one at N = 1024 in every
benchmark case (1.3–1.7x with two threads, 1.4–1.7x with one) and was level or faster at 4096; at
16384 the eager, chunked one won (with two threads 0.70–0.89x traced)."""


def traced_batch_with_grad(chunk: int) -> int:
    """The largest CPU batch that ``torch.compile`` traces with grad mode on, for a module of
    ``CHUNK`` = ``chunk`` built now: :data:`TRACED_BATCH_WITH_GRAD`, but no more than 8 chunks (a
    traced batch runs in one pass, so its intermediates grow with it) and no less than
    :func:`traced_batch`. A module reads it when built (attribute ``traced_batch_with_grad``).

    >>> traced_batch_with_grad(2048), traced_batch_with_grad(128) == max(1024, traced_batch(128))
    (4096, True)
    """
    return max(traced_batch(chunk), min(TRACED_BATCH_WITH_GRAD, 8 * chunk))


@contextlib.contextmanager
def single_graph() -> Iterator[None]:
    """Within it, ``torch.compile`` traces generated contractions into one graph on the CPU too
    (:data:`EAGER_CONTRACTION_UNDER_COMPILE` off): for ``fullgraph=True``. Compile and call inside
    it (the setting is read while tracing, and the compiled graph is guarded on it).

    >>> import sys
    >>> with single_graph():
    ...     sys.modules[single_graph.__module__].EAGER_CONTRACTION_UNDER_COMPILE
    False
    """
    global EAGER_CONTRACTION_UNDER_COMPILE
    previous, EAGER_CONTRACTION_UNDER_COMPILE = EAGER_CONTRACTION_UNDER_COMPILE, False
    try:
        yield
    finally:
        EAGER_CONTRACTION_UNDER_COMPILE = previous


def eager_under_compile(x: torch.Tensor, largest: int, largest_with_grad: int) -> bool:
    """Whether ``torch.compile`` is tracing a generated ``forward`` that should rather run eagerly
    (:func:`eagerly`): a CPU batch (``x``: ``[..., dim]``) over ``largest`` (``traced_batch``), or
    with grad mode on over the larger of it and ``largest_with_grad`` (``traced_batch_with_grad``),
    unless :data:`EAGER_CONTRACTION_UNDER_COMPILE` is off or ``torch.export`` traces it. Dynamo
    guards on grad mode, so inference and training each get their own graph.

    >>> eager_under_compile(torch.zeros(100000, 3), 64, 4096)
    False
    """
    if not torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    if torch.is_grad_enabled():
        largest = max(largest, largest_with_grad)
    return EAGER_CONTRACTION_UNDER_COMPILE and x.is_cpu and math.prod(x.shape[:-1]) > largest


def eagerly() -> Callable[..., Any]:
    """``call(forward, arguments)``: ``forward(*arguments)`` never traced. Under ``torch.compile``
    a generated ``forward`` hands a large CPU batch to it, one graph break at its top (a break
    around the contraction alone cost 2x more: 0.57 against 0.27 ms, fc_tp at N = 1024).
    ``call`` is :func:`_call` behind ``torch.compiler.disable``, made on first use because that
    imports ``torch._dynamo`` (1.5 s), which a module never compiled must not pay for."""
    call = _EAGER.get("call")
    if call is None:
        call = _EAGER["call"] = torch.compiler.disable(_call)
    return call


_EAGER: dict[str, Callable[..., Any]] = {}


def _call(forward: Callable[..., Any], arguments: Sequence[torch.Tensor]) -> Any:
    return forward(*arguments)


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
        if "torch._dynamo" in sys.modules:  # torch.compile is at hand: make the break's copy outside a trace
            eagerly()
        # the largest CPU batch torch.compile traces, without and with grad mode (larger ones run
        # eagerly: `eager_under_compile`)
        chunk = getattr(self, "CHUNK", TRACED_BATCH)
        self.traced_batch = traced_batch(chunk)
        self.traced_batch_with_grad = traced_batch_with_grad(chunk)
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
        self._add_index(name, index_table(starts, size))

    def add_columns(self, name: str, entries: Sequence[tuple[int, int, int]], component_major: bool) -> None:
        """Register :func:`stack_columns` as the int64 buffer ``name``, its inverse as ``name_inverse``."""
        columns = stack_columns(entries, component_major).to(self._device)
        self.register_buffer(name, columns, persistent=False)
        self.register_buffer(f"{name}_inverse", torch.argsort(columns), persistent=False)

    def add_sparse(self, name: str, coupling: SparseCoupling) -> None:
        """Register a table's nonzeros: the values as the table ``name`` (exact master, working
        copy at the module's precision), their positions as the int64 buffers ``name_i0``, ...
        (leaf axes) and ``name_out`` (the output axes flattened)."""
        for axis, rows in enumerate(coupling.rows):
            self._add_index(f"{name}_i{axis}", rows)
        self._add_index(f"{name}_out", coupling.out)
        self.add_table(name, coupling.values)

    def add_packed(self, name: str, table: torch.Tensor, products: Sequence[tuple[Sequence[int], Sequence[int]]] = (),
                   dense: bool = True) -> None:
        """Register a dense table by its nonzeros: their values as the table ``name`` (exact
        master, working copy); with ``dense``, their flat positions as the int32 buffer
        ``name_at`` (for :func:`unpacked`); per product ``(kept axes, shared axes)``, every
        nonzero's flat index over each as the int32 buffers ``name_p<k>_rows`` and
        ``name_p<k>_cols`` (for :func:`packed_product`). int32: a third of e3nn's bytes per
        coupling number, where int64 made small tables larger than e3nn's dense blocks."""
        flat = table.reshape(-1)
        positions = flat.nonzero().squeeze(1)
        coordinates = _coordinates(positions, table.shape)
        for number, axes in enumerate(products):
            for suffix, chosen in zip(("rows", "cols"), axes, strict=True):
                index = _flat(coordinates[list(chosen)], [table.shape[axis] for axis in chosen])
                self._add_index(f"{name}_p{number}_{suffix}", index.int())
        if dense:
            self._add_index(f"{name}_at", positions.int())
        self.add_table(name, flat[positions])

    def _add_index(self, name: str, index: torch.Tensor) -> None:
        """Register an integer buffer (not in the ``state_dict``: a function of the source)."""
        self.register_buffer(name, index.to(self._device), persistent=False)

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

