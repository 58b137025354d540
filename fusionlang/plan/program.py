"""The back-end program: what the planner hands the code generator.

A :class:`Program` is typed, frozen data: the ``forward``'s :class:`Step` s in emission order,
coupling :class:`Table` s (recipes, :class:`TableSpec`), index buffers, internal
:class:`Parameter` s and external :class:`WeightInput` s, and the :class:`~fusionlang.plan.report.PlanReport`.
Nothing here plans; :func:`batch_chunk` sizes the chunks a large CPU batch runs in.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .. import ir
from ..diagnostics import Diagnostic
from .batches import BYTES_PER_NUMBER, CHUNK_BYTES, MAX_CHUNK, MIN_CHUNK
from .report import PlanReport

TreeSpec = str | tuple["TreeSpec", "TreeSpec", str]


@dataclass(frozen=True, slots=True)
class Block:
    """One path's (or sub-path's) coupling inside a table.

    ``tree`` is an irrep (the identity of a linear map) or ``(left, right, irrep)``: the couplings
    along a fusion (sub)tree, whose tensor has one axis per leaf and one for the root.
    ``offsets`` are where that tensor starts along every table axis (path axes take a single
    position); the tensor is scaled by ``1/sqrt(fan_in)`` and by ``factor`` (numerator,
    denominator), its leaf axes permuted (axis ``m`` of the placed tensor is axis
    ``permutation[m]`` of the tree's) when ``permutation`` is given, and added into the table."""

    offsets: tuple[int, ...]
    tree: TreeSpec
    fan_in: int | float = 1
    permutation: tuple[int, ...] = ()
    factor: tuple[int, int] = (1, 1)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A dense coupling table: the recipe :func:`fusionlang.runtime.coupling_table` evaluates in
    float64 (complex128 for SU(2)). ``path_axes`` have one position per path; ``symmetrize``
    lists groups of axes over whose permutations the table is averaged; the last axis is stored in
    the order ``columns`` (when given: slot-major ``q`` layouts, :func:`.builder.slot_major_columns`)."""

    group: str
    shape: tuple[int, ...]
    blocks: tuple[Block, ...]
    path_axes: tuple[int, ...] = ()
    symmetrize: tuple[tuple[int, ...], ...] = ()
    columns: tuple[int, ...] = ()

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def nonzeros(self) -> int:
        """Structural nonzeros: the sum of the blocks' sizes (an upper bound of the true count)."""
        total = 0
        for block in self.blocks:
            total += math.prod(tree_dims(block.tree))
        return total


def table_tensor(spec: TableSpec) -> Any:
    """The table a spec describes, float64 (complex128 for SU(2)), as the generated module builds it."""
    from ..runtime import coupling_table

    blocks = [block_literal(b) for b in spec.blocks]
    return coupling_table(spec.group, spec.shape, blocks, spec.path_axes, spec.symmetrize, spec.columns)


def block_literal(block: Block) -> tuple[Any, ...]:
    """A block as the runtime takes it: (offsets, tree, fan_in[, permutation, factor])."""
    plain = (block.offsets, block.tree, block.fan_in)
    return plain if (block.permutation, block.factor) == ((), (1, 1)) else plain + (block.permutation, block.factor)


def tree_dims(tree: TreeSpec) -> tuple[int, ...]:
    """Axis sizes of a tree's coupling tensor: its leaves' dims, then the root's."""
    if isinstance(tree, str):
        dim = spec_dim(tree)
        return (dim, dim)
    left, right = tree_dims(tree[0]), tree_dims(tree[1])
    return left[:-1] + right[:-1] + (spec_dim(tree[2]),)


def spec_dim(irrep: str) -> int:
    """The dimension of an irrep written as in a :data:`TreeSpec` (``1o``, ``3/2``)."""
    text = irrep.rstrip("eoy")
    if "/" in text:
        return int(text.split("/")[0]) + 1
    return 2 * int(text) + 1


StepKind = Literal["input", "entry", "narrow", "reshape", "cat", "columns", "mul", "einsum", "weights", "add", "zeros",
                   "output", "gather", "scatter", "unpack", "packed"]
"""What a :class:`Step` does (its fields' meaning depends on it)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the generated ``forward``.

    ``kind`` is one of ``input`` (flatten an input to ``[n, dim]``), ``entry`` (view of
    ``[start:stop]`` of a flat leg as ``shape``), ``narrow`` (``start:stop`` along ``axis`` of a
    stacked tensor, reshaped to ``shape`` when given), ``reshape`` (``args[0]`` as ``shape``, a
    view wherever its layout allows), ``cat`` (concatenate ``args`` along ``axis``, each first
    permuted by ``views[k][0]`` when ``views`` are given), ``columns`` (a permutation along
    axis 1 of ``args[0]``, a flat input or weights as blocks, by the column buffer ``index``
    (:func:`fusionlang.runtime.take_columns`), viewed as ``shape``),
    ``mul`` (a broadcast product: every operand
    permuted by ``views[k][0]`` (when not empty) and viewed as ``views[k][1]``; ``equation``
    documents it), ``einsum`` (``equation`` over ``args``), ``weights``
    (a parameter's or external argument's blocks: ``source`` sliced ``[start:stop]`` or gathered by
    the index buffer ``index`` (numbers, or blocks of ``stop`` numbers when ``stop`` is set), viewed
    as ``shape``, times ``scale``), ``add`` (sum of ``args``),
    ``zeros`` (``[n, *shape]`` zeros like ``args[0]``), ``output`` (``args`` reshaped to
    ``[n, widths[k]]``, concatenated, reshaped to the batch), ``gather`` (``args[0]``, its axes
    first permuted by ``views[0][0]`` when given, indexed along ``axis`` by the index buffer
    ``index``), ``scatter`` (the rows of ``args[0]`` added into rows ``index`` of ``shape[0]`` zero rows),
    ``unpack`` (the dense table ``shape`` from a packed table's nonzeros ``args[0]`` at the flat
    positions ``args[1]``: :func:`fusionlang.runtime.unpacked`), ``packed`` (an ``einsum`` of a
    packed table ``args[0]`` and a batch-free ``args[1]``, by the table's nonzeros and the row
    buffers ``index + "_rows"`` and ``index + "_cols"``: :func:`fusionlang.runtime.packed_product`).

    ``line`` is the source line the step comes from (the statement, or the leg's declaration);
    ``flops`` are per sample, ``setup_flops`` per call, ``size`` the numbers per sample of the
    result (0 for batch-free results); ``batched`` einsums carry the batch index on both operands
    (torch runs them as many small matrix products, ``matrices`` of them per sample); ``short_sums``
    einsums run as :func:`fusionlang.runtime.einsum_short_sums` (one-row products of long sums)."""

    target: str
    kind: StepKind
    args: tuple[str, ...] = ()
    equation: str = ""
    shape: tuple[int, ...] = ()
    start: int = 0
    stop: int = 0
    source: str = ""
    index: str = ""
    scale: float | None = None
    widths: tuple[int, ...] = ()
    axis: int = -1
    views: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()
    batched: bool = False
    matrices: int = 0
    short_sums: bool = False
    comment: str = ""
    statement: int | None = None
    line: int = 0
    flops: int = 0
    setup_flops: int = 0
    size: int = 0

    @property
    def is_op(self) -> bool:
        """Whether the step launches a tensor operation that computes (views are free)."""
        return self.kind in ("cat", "columns", "einsum", "mul", "add", "zeros", "output", "gather", "scatter",
                             "unpack", "packed") or (
            self.kind == "weights" and bool(self.index or self.scale is not None))


@dataclass(frozen=True, slots=True)
class Table:
    """A coupling table registered as a buffer named ``name``; ``sparse``: only its nonzeros, with
    their positions (:meth:`fusionlang.runtime.CompiledModule.add_sparse`), the first
    ``leaf_axes`` axes being the leaves'; ``packed``: a dense table kept as its nonzeros and their
    flat positions, made dense again at every call (:meth:`fusionlang.runtime.CompiledModule.add_packed`);
    ``products``: per product by its nonzeros (a ``packed`` step), the table axes its result keeps
    and those it shares with the other operand; ``dense``: some step reads it unpacked."""

    name: str
    spec: TableSpec
    comment: str
    statement: int
    sparse: bool = False
    leaf_axes: int = 0
    packed: bool = False
    products: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()
    dense: bool = True

    @property
    def numbers(self) -> int:
        """Numbers the module holds for it: the dense table, or per nonzero its value and positions."""
        if self.packed:
            return self.packed_numbers(packed_nonzeros(self.spec))
        if not self.sparse:
            return self.spec.numel
        return sparse_nonzeros(self.spec, self.leaf_axes) * (self.leaf_axes + 2)

    def packed_numbers(self, nonzeros: int) -> int:
        """Numbers a packed table of ``nonzeros`` keeps: per nonzero its value, its two int32
        positions per product, and its flat position when some step unpacks it."""
        return nonzeros * (1 + 2 * len(self.products) + self.dense)


NONZERO = 1e-12  # a coupling entry this small is a zero of the selection rules, not a value


def table_nonzeros(spec: TableSpec) -> int:
    """Nonzero numbers of the coupling blocks a table holds (blocks do not overlap; a table
    averaged over permutations may hold more)."""
    return sum(tree_nonzeros(spec.group, block.tree) for block in spec.blocks)


@functools.lru_cache(maxsize=8192)
def tree_nonzeros(group: str, tree: TreeSpec) -> int:
    """Nonzero entries of the couplings chained along ``tree``, as the generated module builds them.

    >>> tree_nonzeros("O3", ("1o", "1o", "2e"))  # of 3 x 3 x 5
    11
    """
    from ..runtime import coupling_table

    dims = tree_dims(tree)
    block = coupling_table(group, dims, [((0,) * len(dims), tree, 1)])
    return int((block.abs() > NONZERO).sum())


@functools.lru_cache(maxsize=1024)
def packed_nonzeros(spec: TableSpec) -> int:
    """Exact nonzeros of the dense table ``spec`` describes (what a packed table keeps)."""
    return int(table_tensor(spec).count_nonzero())


@functools.lru_cache(maxsize=1024)
def sparse_nonzeros(spec: TableSpec, leaf_axes: int) -> int:
    """Nonzeros of a table as the generated module keeps them (:func:`sparse_table`)."""
    return len(sparse_table(spec, leaf_axes).values)


def sparse_table(spec: TableSpec, leaf_axes: int) -> Any:
    """The nonzeros of the table ``spec`` describes, as the generated module builds them."""
    from ..runtime import sparse_coupling

    return sparse_coupling(spec.group, spec.shape, [block_literal(b) for b in spec.blocks], leaf_axes,
                           spec.path_axes, spec.symmetrize)


@dataclass(frozen=True, slots=True)
class IndexBuffer:
    """An int64 buffer: for every block start in ``starts``, ``size`` consecutive indices; or, with
    ``columns``, the columns of a flat leg that hold a stack of its entries ``(start, mul, dim)``
    (:func:`fusionlang.runtime.stack_columns`), with its inverse permutation beside it."""

    name: str
    starts: tuple[int, ...]
    size: int
    comment: str = ""
    line: int = 0
    columns: tuple[tuple[int, int, int], ...] = ()
    component_major: bool = False


@dataclass(frozen=True, slots=True)
class Parameter:
    """The internal weights of one statement: ``nn.Parameter`` of ``numel`` numbers."""

    name: str
    statement: int
    numel: int
    redundant_numel: int
    comment: str


@dataclass(frozen=True, slots=True)
class WeightInput:
    """External weights of one statement: a ``forward`` argument ``[..., numel]``."""

    name: str
    statement: int
    numel: int
    redundant_numel: int


@dataclass(frozen=True, slots=True)
class LegIO:
    """An input or output of ``forward``: the leg, its variable and its layout."""

    leg: str
    var: str
    dim: int
    irreps: str


@dataclass(frozen=True)
class Program:
    """Everything the code generator needs for one diagram, in emission order."""

    diagram: ir.Diagram
    inputs: tuple[LegIO, ...]
    outputs: tuple[LegIO, ...]
    parameters: tuple[Parameter, ...]
    weight_inputs: tuple[WeightInput, ...]
    tables: tuple[Table, ...]
    indices: tuple[IndexBuffer, ...]
    steps: tuple[Step, ...]
    kept_paths: tuple[tuple[int, tuple[int, ...]], ...]
    report: PlanReport
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def chunk(self) -> int:
        """Samples per chunk of a large batch on the CPU (:func:`batch_chunk`)."""
        return batch_chunk(self.steps)

    def kept(self, statement: int) -> tuple[int, ...]:
        """Positions (in ``statement.paths``) of the paths whose weights the module keeps."""
        return dict(self.kept_paths)[statement]


def batch_chunk(steps: Sequence[Step]) -> int:
    """Samples per chunk of a large CPU batch: the largest power of two (``MIN_CHUNK`` to
    ``MAX_CHUNK``) whose intermediates take at most :data:`CHUNK_BYTES` in float32.

    >>> batch_chunk([Step("t", "einsum", size=4096)])   # 16 KiB per sample
    2048
    """
    per_sample = sum(step.size for step in steps if step.is_op) * BYTES_PER_NUMBER
    chunk = MIN_CHUNK
    while chunk < MAX_CHUNK and 2 * chunk * per_sample <= CHUNK_BYTES:
        chunk *= 2
    return chunk
