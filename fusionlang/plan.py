"""The planner: how the generated ``forward`` contracts every statement of a checked diagram.

For every statement the tensors to contract are the leaf features, the coupling tensors of its
vertices and its weights. The planner

1. builds **einsum networks** over *stacked* operands: the entries a group of paths reads from a
   leg are concatenated along one component axis (``[n, channel, D]``), and the coupling tensors
   of all paths of the group are laid out block by block in one dense table per vertex (or one
   table per statement, pre-contracted along the tree: MACE's ``U``);
2. orders each network's pairwise contractions to minimise FLOPs with the batch symbolic
   (:func:`optimal_tree`: exact dynamic programming over subsets up to :data:`DP_LIMIT` tensors,
   greedy beyond), costs being ``(per-sample FLOPs, batch-free FLOPs, peak intermediate)``;
3. tries several **strategies** per statement (how paths are grouped and stacked, per-vertex or
   pre-contracted couplings, where the weights enter) and keeps the one with the smallest
   estimated run time (FLOPs by kind of operation, memory traffic and a per-operation overhead);
   a dense stack may execute more FLOPs than the naive count (its zero blocks) and still win;
4. shares every intermediate computed twice (steps are hash-consed: the same operation on the
   same operands is emitted once, across paths, groups and statements);
5. for statements that read one leg on several leaves, symmetrises every path's coupling over
   those leaves and keeps weights only for a maximal linearly independent subset of paths;
6. sizes the chunks in which a large CPU batch runs (:func:`batch_chunk`): chunked, the cost per
   sample hardly depends on the batch size, so the run-time model fitted at one reference batch
   ranks strategies for large batches too.

The result is a :class:`Program` (steps, coupling tables, parameters, external weights) that
:mod:`fusionlang.codegen` renders, and a :class:`PlanReport` that says what was decided.

>>> from fusionlang.frontend import check_source
>>> d = check_source("diagram d { group O3\\n input x : 4x1o\\n input y : 1o\\n output z : 4x(0e + 1e)\\n"
...                  " x, y -> z [weights = path] }").diagram()
>>> report = plan_diagram(d).report
>>> statement = report.statements[0]
>>> statement.strategy == statement.estimates_ms[0][0]   # the fastest estimate is chosen
True
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from . import ir
from .diagnostics import Diagnostic, FusionError
from .groups import Irrep, MulIrrep
from .infer import statement_order

__all__ = [
    "BATCH", "DP_LIMIT", "Block", "Cost", "combined_report", "Network", "OutputReport", "PlanReport", "Program", "Step",
    "StatementReport", "TableSpec", "WeightInput", "contraction_steps", "greedy_tree", "kept_paths",
    "naive_flops", "optimal_tree", "plan_diagram", "table_tensor", "tree_cost", "unique_name",
]

BATCH = "n"
DP_LIMIT = 8

# The run-time model that ranks strategies (CPU, float32, a reference batch). Its constants were
# fitted to the measured times of every strategy on 19 statements (fully connected, channelwise,
# three-leaf and symmetric products of several sizes, tree4; 2 threads) by minimising how much
# slower the strategy it estimates fastest at REFERENCE_BATCH is than the fastest measured:
# `python benchmarks/fit_time_model.py` (on the fit's own measurements, 2% slower on average and
# 8% at worst; the previous constants with the rule "no more FLOPs than the naive count", on an
# earlier run of the same suite, 21% and 2.2x). _choose also weighs LARGE_BATCH, which the fit
# does not measure: `bench_tensor_products.py --sweep` checks those choices against e3nn. The
# constants are what ranks best, not physical rates; reported numbers are exact counts.
REFERENCE_BATCH = 1024
LARGE_BATCH = 16384             # the second batch a chosen strategy must also be fast at
OP_OVERHEAD = 6.7e-5            # s per emitted operation (dispatch, allocation, small tensors)
GEMM_FLOP_RATE = 1.7e11         # FLOP/s of einsums with one batch-free operand (one large product)
BATCHED_FLOP_RATE = 4.5e10      # FLOP/s of einsums batched on both operands (many small products)
ELEMENTWISE_FLOP_RATE = 2.4e12  # FLOP/s of broadcast products and sums
MATRIX_OVERHEAD = 1.6e-11       # s per small matrix product of a batched einsum
SETUP_FLOP_RATE = 2.7e12        # FLOP/s of batch-free work (per call)
BYTE_RATE = 5.2e10              # B/s of memory traffic: every operation reads its operands, writes its result
BYTES_PER_NUMBER = 4

# Large batches run on the CPU in chunks whose intermediates (float32) take about CHUNK_BYTES: the
# largest power of two of samples, at least MIN_CHUNK. Measured at N = 16384 (2 threads), chunks of
# 16-32 MiB beat one pass by 1.4-2.3x forward and 1.4-1.7x forward+backward (fc_tp, uvu, the 3-leaf
# fusion): intermediates stay in cache, and allocations stay below glibc's mmap threshold (32 MiB),
# so they are reused instead of page-faulted in afresh on every call.
CHUNK_BYTES = 1 << 25
MIN_CHUNK = 256
MAX_CHUNK = 1 << 20

# Relative tolerance of the rank test that drops linearly dependent symmetrised paths (the
# component of a path's tensor orthogonal to the kept ones, relative to its norm).
RANK_TOLERANCE = 1e-6


# -- costs and contraction orders ------------------------------------------------------------------

@dataclass(frozen=True, order=True, slots=True)
class Cost:
    """FLOPs of a contraction schedule, compared lexicographically.

    ``per_sample``: FLOPs of contractions that involve the batch index, per sample;
    ``setup``: FLOPs of batch-free contractions (weights with couplings), once per call;
    ``peak``: the largest intermediate, numbers per sample. FLOPs follow opt_einsum's convention:
    a pairwise contraction costs the product of all its index sizes, twice if it sums an index
    (a multiply-add; summing only indices of size 1 is a plain product).

    >>> Cost(10, 2, 4) + Cost(5, 0, 9)
    Cost(per_sample=15, setup=2, peak=9)
    """

    per_sample: int = 0
    setup: int = 0
    peak: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.per_sample + other.per_sample, self.setup + other.setup, max(self.peak, other.peak))


Tree = int | tuple["Tree", "Tree"]


@dataclass(frozen=True, slots=True)
class Network:
    """An einsum network: one index string per tensor, the output's indices and index sizes.

    The batch index (``n`` by default) has no size: costs are counted per sample.

    >>> net = Network(("ni", "ij", "nj"), "n", (("i", 3), ("j", 4)))
    >>> optimal_tree(net)
    ((0, (1, 2)), Cost(per_sample=30, setup=0, peak=3))
    """

    inputs: tuple[str, ...]
    output: str
    sizes: tuple[tuple[str, int], ...]
    batch: str = BATCH

    def size(self, index: str) -> int:
        return 1 if index == self.batch else dict(self.sizes)[index]

    def numel(self, indices: Iterable[str]) -> int:
        return math.prod(self.size(i) for i in indices)


def pair_cost(net: Network, a: str, b: str, keep: Iterable[str]) -> tuple[str, Cost]:
    """Indices and cost of contracting tensors with indices ``a`` and ``b``, keeping ``keep``.

    >>> pair_cost(Network(("ni", "ij"), "nj", (("i", 3), ("j", 4))), "ni", "ij", "nj")
    ('nj', Cost(per_sample=24, setup=0, peak=4))
    """
    kept = set(keep)
    involved = list(dict.fromkeys(a + b))
    result = "".join(i for i in involved if i in kept)
    summed = any(net.size(i) > 1 for i in involved if i not in kept)
    flops = net.numel(involved) * (2 if summed else 1)
    if net.batch in involved:
        return result, Cost(flops, 0, net.numel(result) if net.batch in result else 0)
    return result, Cost(0, flops, 0)


def optimal_tree(net: Network) -> tuple[Tree, Cost]:
    """The contraction tree of least :class:`Cost`: exact (dynamic programming over subsets) up to
    :data:`DP_LIMIT` tensors, :func:`greedy_tree` beyond.

    >>> optimal_tree(Network(("nui", "nvj", "ijk", "uvw"), "nwk",
    ...                      (("u", 8), ("v", 1), ("w", 8), ("i", 3), ("j", 3), ("k", 1))))[0]
    ((0, (1, 2)), 3)
    """
    if len(net.inputs) == 1:
        return 0, tree_cost(net, 0)
    if len(net.inputs) > DP_LIMIT:
        return greedy_tree(net)
    return _subset_dp(net)


def _subset_dp(net: Network) -> tuple[Tree, Cost]:
    """Dynamic programming over subsets; index sets are bitsets, sizes memoised per bitset."""
    count = len(net.inputs)
    full = (1 << count) - 1
    letters = sorted(set("".join(net.inputs) + net.output))
    bit = {letter: 1 << k for k, letter in enumerate(letters)}
    batch_bit = bit.get(net.batch, 0)
    sizes = {bit[letter]: net.size(letter) for letter in letters}
    tensors = [sum(bit[i] for i in set(s)) for s in net.inputs]
    unions = [0] * (full + 1)
    for mask in range(1, full + 1):
        low = (mask & -mask).bit_length() - 1
        unions[mask] = unions[mask & (mask - 1)] | tensors[low]
    output = sum(bit[i] for i in set(net.output))
    keep = [unions[m] & (output | unions[full ^ m]) for m in range(full + 1)]
    numel = _bitset_numel(sizes)
    best: dict[int, tuple[tuple[int, int, int], Tree]] = {}
    for k in range(count):
        reduced = keep[1 << k] != tensors[k]  # indices nobody else needs: summed first
        flops = numel(tensors[k]) if reduced else 0
        batched = bool(tensors[k] & batch_bit)
        peak = numel(keep[1 << k]) if reduced and batched else 0
        best[1 << k] = ((flops, 0, peak) if batched else (0, flops, 0), k)
    for mask in sorted(range(1, full + 1), key=lambda m: (bin(m).count("1"), m)):
        if mask not in best:
            best[mask] = _best_split_bits(mask, best, keep, numel, batch_bit)
    (per_sample, setup, peak), tree = best[full]
    return tree, Cost(per_sample, setup, peak)


def _bitset_numel(sizes: dict[int, int]) -> Callable[[int], int]:
    memo: dict[int, int] = {0: 1}

    def numel(bits: int) -> int:
        if bits not in memo:
            low = bits & -bits
            memo[bits] = sizes[low] * numel(bits ^ low)
        return memo[bits]
    return numel


def _best_split_bits(mask: int, best: dict[int, tuple[tuple[int, int, int], Tree]], keep: list[int],
                     numel: Callable[[int], int], batch_bit: int) -> tuple[tuple[int, int, int], Tree]:
    found: tuple[tuple[int, int, int], Tree] | None = None
    result = keep[mask]
    sub = (mask - 1) & mask
    while sub:
        other = mask ^ sub
        if sub < other:
            involved = keep[sub] | keep[other]
            flops = numel(involved) * (2 if numel(involved) != numel(result) else 1)
            (s1, c1, p1), t1 = best[sub]
            (s2, c2, p2), t2 = best[other]
            if involved & batch_bit:
                peak = numel(result) if result & batch_bit else 0
                cost = (s1 + s2 + flops, c1 + c2, max(p1, p2, peak))
            else:
                cost = (s1 + s2, c1 + c2 + flops, max(p1, p2))
            if found is None or cost < found[0]:
                found = (cost, (t1, t2))
        sub = (sub - 1) & mask
    assert found is not None
    return found


def greedy_tree(net: Network) -> tuple[Tree, Cost]:
    """Contract, again and again, the cheapest pair (pairs sharing an index first).

    >>> greedy_tree(Network(("ni", "ij", "jk"), "nk", (("i", 2), ("j", 2), ("k", 2))))[0]
    (0, (1, 2))
    """
    live: dict[int, tuple[str, Tree, Cost]] = {}
    for k, indices in enumerate(net.inputs):
        others = set(net.output).union(*(s for j, s in enumerate(net.inputs) if j != k))
        kept = "".join(i for i in indices if i in others)
        steps: list[Contraction] = []
        _reduce_leaf(net, k, frozenset(others), steps, itertools.count())
        live[k] = (kept, k, steps[0].cost if steps else Cost())
    fresh = len(net.inputs)
    while len(live) > 1:
        a, b, result, step = _cheapest_pair(net, live)
        (_, ta, ca), (_, tb, cb) = live.pop(a), live.pop(b)
        live[fresh] = (result, (ta, tb), ca + cb + step)
        fresh += 1
    _, tree, cost = next(iter(live.values()))
    return tree, cost


def _cheapest_pair(net: Network, live: dict[int, tuple[str, Tree, Cost]]) -> tuple[int, int, str, Cost]:
    choices = []
    for a, b in itertools.combinations(sorted(live), 2):
        keep = set(net.output).union(*(live[k][0] for k in live if k not in (a, b)))
        result, step = pair_cost(net, live[a][0], live[b][0], keep)
        shares = bool(set(live[a][0]) & set(live[b][0]))
        choices.append(((not shares, step, a, b), a, b, result, step))
    _, a, b, result, step = min(choices)
    return a, b, result, step


def tree_cost(net: Network, tree: Tree) -> Cost:
    """The cost of contracting ``net`` along ``tree`` (any tree, e.g. one from opt_einsum).

    >>> tree_cost(Network(("ni", "ij", "nj"), "n", (("i", 3), ("j", 4))), ((0, 2), 1))
    Cost(per_sample=36, setup=0, peak=12)
    """
    return sum((step.cost for step in contraction_steps(net, tree)), Cost())


@dataclass(frozen=True, slots=True)
class Contraction:
    """One pairwise contraction of a tree: operand positions (inputs are ``0..n-1``, results
    continue the numbering), their indices, the result's indices and the cost. A leaf with
    indices nothing else needs is first summed over them alone (``right == -1``)."""

    left: int
    right: int          # -1 for a reduction of ``left`` alone
    equation: str
    cost: Cost


def contraction_steps(net: Network, tree: Tree) -> list[Contraction]:
    """The pairwise contractions of ``tree`` in execution order (children before parents).

    >>> [s.equation for s in contraction_steps(Network(("ni", "ij", "nj"), "n", (("i", 3), ("j", 4))),
    ...                                          ((0, 1), 2))]
    ['ni,ij->nj', 'nj,nj->n']
    """
    steps: list[Contraction] = []
    counter = itertools.count(len(net.inputs))

    def visit(node: Tree, outside: frozenset[str]) -> tuple[int, str]:
        if isinstance(node, int):
            return _reduce_leaf(net, node, outside, steps, counter)
        left_leaves, right_leaves = _tree_leaves(node[0]), _tree_leaves(node[1])
        left_out = outside | _indices_of(net, right_leaves)
        right_out = outside | _indices_of(net, left_leaves)
        a, sa = visit(node[0], left_out)
        b, sb = visit(node[1], right_out)
        result, cost = pair_cost(net, sa, sb, outside)
        result = _result_order(result, net.output if outside == frozenset(net.output) else "", net.batch)
        steps.append(Contraction(a, b, f"{sa},{sb}->{result}", cost))
        return next(counter), result

    visit(tree, frozenset(net.output))
    return steps


def _reduce_leaf(net: Network, k: int, outside: frozenset[str], steps: list[Contraction],
                 counter: Iterator[int]) -> tuple[int, str]:
    """A leaf, summed over the indices no other tensor and not the output has (one add each)."""
    indices = net.inputs[k]
    kept = "".join(i for i in indices if i in outside)
    if kept == indices:
        return k, indices
    flops = net.numel(indices)
    batched = net.batch in indices
    cost = Cost(flops, 0, net.numel(kept) if batched else 0) if batched else Cost(0, flops, 0)
    steps.append(Contraction(k, -1, f"{indices}->{kept}", cost))
    return next(counter), kept


def _tree_leaves(node: Tree) -> list[int]:
    return [node] if isinstance(node, int) else _tree_leaves(node[0]) + _tree_leaves(node[1])


def _indices_of(net: Network, positions: Iterable[int]) -> frozenset[str]:
    return frozenset().union(*(net.inputs[k] for k in positions))


def _result_order(result: str, output: str, batch: str) -> str:
    """The network's own order at the root; otherwise the batch first, the rest as they came."""
    if output and sorted(result) == sorted(output):
        return output
    return "".join(sorted(result, key=lambda i: i != batch))


# -- coupling tables -------------------------------------------------------------------------------

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
    fan_in: int = 1
    permutation: tuple[int, ...] = ()
    factor: tuple[int, int] = (1, 1)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A dense coupling table: the recipe :func:`fusionlang.runtime.coupling_table` evaluates in
    float64 (complex128 for SU(2)). ``path_axes`` have one position per path; ``symmetrize``
    lists groups of axes over whose permutations the table is averaged."""

    group: str
    shape: tuple[int, ...]
    blocks: tuple[Block, ...]
    path_axes: tuple[int, ...] = ()
    symmetrize: tuple[tuple[int, ...], ...] = ()

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def nonzeros(self) -> int:
        """Structural nonzeros: the sum of the blocks' sizes (an upper bound of the true count)."""
        total = 0
        for block in self.blocks:
            total += math.prod(_tree_dims(block.tree))
        return total


def table_tensor(spec: TableSpec) -> Any:
    """The table a spec describes, float64 (complex128 for SU(2)), as the generated module builds it."""
    from .runtime import coupling_table

    blocks = [block_literal(b) for b in spec.blocks]
    return coupling_table(spec.group, spec.shape, blocks, spec.path_axes, spec.symmetrize)


def block_literal(block: Block) -> tuple[Any, ...]:
    """A block as the runtime takes it: (offsets, tree, fan_in[, permutation, factor])."""
    plain = (block.offsets, block.tree, block.fan_in)
    return plain if (block.permutation, block.factor) == ((), (1, 1)) else plain + (block.permutation, block.factor)


def _tree_dims(tree: TreeSpec) -> tuple[int, ...]:
    """Axis sizes of a tree's coupling tensor: its leaves' dims, then the root's."""
    if isinstance(tree, str):
        dim = _spec_dim(tree)
        return (dim, dim)
    left, right = _tree_dims(tree[0]), _tree_dims(tree[1])
    return left[:-1] + right[:-1] + (_spec_dim(tree[2]),)


def _spec_dim(irrep: str) -> int:
    text = irrep.rstrip("eoy")
    if "/" in text:
        return int(text.split("/")[0]) + 1
    return 2 * int(text) + 1


# -- the program -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Step:
    """One line of the generated ``forward``.

    ``kind`` is one of ``input`` (flatten an input to ``[n, dim]``), ``entry`` (view of
    ``[start:stop]`` of a flat leg as ``shape``), ``narrow`` (``start:stop`` along ``axis`` of a
    stacked tensor, reshaped to ``shape`` when given), ``reshape`` (``args[0]`` as ``shape``, a
    view wherever its layout allows), ``cat`` (concatenate ``args`` along the last axis),
    ``stack`` (stack ``args`` along axis -2), ``select`` (``index_select`` of ``args[0]`` along
    axis ``start`` by the index buffer ``index``), ``mul`` (a broadcast product: every operand
    permuted by ``views[k][0]`` (when not empty) and viewed as ``views[k][1]``; ``equation``
    documents it), ``einsum`` (``equation`` over ``args``), ``weights``
    (a parameter's or external argument's blocks: ``source`` sliced ``[start:stop]`` or gathered by
    the index buffer ``index`` (numbers, or blocks of ``stop`` numbers when ``stop`` is set), viewed
    as ``shape``, times ``scale``), ``add`` (sum of ``args``),
    ``zeros`` (``[n, *shape]`` zeros like ``args[0]``), ``output`` (``args`` reshaped to
    ``[n, widths[k]]``, concatenated, reshaped to the batch).

    ``line`` is the source line the step comes from (the statement, or the leg's declaration);
    ``flops`` are per sample, ``setup_flops`` per call, ``size`` the numbers per sample of the
    result (0 for batch-free results); ``batched`` einsums carry the batch index on both operands
    (torch runs them as many small matrix products, ``matrices`` of them per sample)."""

    target: str
    kind: str
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
    comment: str = ""
    statement: int | None = None
    line: int = 0
    flops: int = 0
    setup_flops: int = 0
    size: int = 0

    @property
    def is_op(self) -> bool:
        """Whether the step launches a tensor operation that computes (views are free)."""
        return self.kind in ("cat", "stack", "select", "einsum", "mul", "add", "zeros", "output") or (
            self.kind == "weights" and bool(self.index or self.scale is not None))


@dataclass(frozen=True, slots=True)
class Table:
    """A coupling table registered as a buffer named ``name``."""

    name: str
    spec: TableSpec
    comment: str
    statement: int


@dataclass(frozen=True, slots=True)
class IndexBuffer:
    """An int64 buffer: for every block start in ``starts``, ``size`` consecutive indices."""

    name: str
    starts: tuple[int, ...]
    size: int
    comment: str = ""
    line: int = 0


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


# -- geometry of legs and paths --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Entry:
    leg: str
    index: int
    item: MulIrrep
    start: int

    @property
    def mul(self) -> int:
        return self.item.mul

    @property
    def irrep(self) -> Irrep:
        return self.item.irrep

    @property
    def dim(self) -> int:
        return self.item.irrep.dim


@dataclass(frozen=True, slots=True)
class _Path:
    position: int                       # in statement.paths
    path: ir.Path
    leaves: tuple[_Entry, ...]
    output: _Entry
    tree: TreeSpec
    block: tuple[int, ...]              # the weight block's shape (() when unweighted)
    offset: int                         # where the block starts in the flat weights
    fan_in: int                         # of its output entry, over every writer

    @property
    def block_size(self) -> int:
        return math.prod(self.block)


@dataclass(frozen=True)
class _Statement:
    statement: ir.Statement
    paths: tuple[_Path, ...]            # the kept paths (all of them unless reduced)
    all_paths: int
    numel: int
    redundant_numel: int
    weight_source: str                  # "self.weight_z_0", an argument name, or ""
    reduced: bool
    symmetric_groups: tuple[tuple[int, ...], ...]

    @property
    def index(self) -> int:
        return self.statement.index

    @property
    def weighted(self) -> bool:
        return self.statement.weights != "none"

    @property
    def external(self) -> bool:
        return self.statement.weights == "external"


def _leg_entries(diagram: ir.Diagram, leg: str) -> tuple[_Entry, ...]:
    irreps = diagram.irreps(leg)
    return tuple(_Entry(leg, k, item, where.start)
                 for k, (item, where) in enumerate(zip(irreps, irreps.slices(), strict=False)))


def _tree_spec(node: ir.Node, leaves: Sequence[Irrep], inner: Iterator[Irrep]) -> TreeSpec:
    """The path's irreps along the tree (inner irreps are consumed in post-order)."""
    if isinstance(node, ir.LeafRef):
        return str(leaves[node.position])
    left = _tree_spec(node.left, leaves, inner)
    right = _tree_spec(node.right, leaves, inner)
    return (left, right, str(next(inner)))


def weight_block(statement: ir.Statement, leaf_muls: Sequence[int], out_mul: int) -> tuple[int, ...]:
    """One path's weight block shape (docs/semantics.md), ``()`` without weights.

    >>> s = ir.Statement(0, ir.Fuse(ir.LeafRef("x", 0), ir.LeafRef("y", 1)), "z", "uvu", "channel")
    >>> weight_block(s, [3, 2], 3)
    (3, 2)
    """
    muls = tuple(leaf_muls)
    if statement.weights == "none":
        return ()
    per_channel = statement.weights != "path"
    if statement.channels == "uvw":
        return muls + (out_mul,)
    if statement.channels == "uvu":
        return muls if per_channel else muls[1:]
    return muls[:1] if per_channel else ()


def path_fan_in(statement: ir.Statement, leaf_muls: Sequence[int]) -> int:
    """Terms one path adds into each number of its output entry (docs/semantics.md)."""
    if statement.channels == "uuu" or (statement.channels == "uvw" and statement.weights == "none"):
        return 1
    return math.prod(leaf_muls[1:] if statement.channels == "uvu" else leaf_muls)


def fan_in_totals(diagram: ir.Diagram) -> dict[tuple[str, int], int]:
    """(target leg, entry) -> the terms every path of every writer adds into one of its numbers."""
    totals: Counter[tuple[str, int]] = Counter()
    for statement in diagram.statements:
        for path in statement.paths:
            muls = [diagram.irreps(r.leg)[e].mul for r, e in zip(statement.leaves, path.leaves, strict=False)]
            totals[(statement.target, path.output)] += path_fan_in(statement, muls)
    return dict(totals)


def _raw_paths(diagram: ir.Diagram, statement: ir.Statement, fan_ins: dict[tuple[str, int], int]) -> list[_Path]:
    entries = {leg.name: _leg_entries(diagram, leg.name) for leg in diagram.legs}
    out: list[_Path] = []
    offset = 0
    for position, path in enumerate(statement.paths):
        leaves = tuple(entries[r.leg][e] for r, e in zip(statement.leaves, path.leaves, strict=False))
        output = entries[statement.target][path.output]
        tree = _tree_spec(statement.tree, [e.irrep for e in leaves], iter(path.inner))
        block = weight_block(statement, [e.mul for e in leaves], output.mul)
        fan_in = fan_ins[(statement.target, path.output)]
        out.append(_Path(position, path, leaves, output, tree, block, offset, fan_in))
        offset += math.prod(block) if statement.weights != "none" else 0
    return out


# -- symmetric reduction ---------------------------------------------------------------------------

def symmetric_groups(statement: ir.Statement) -> tuple[tuple[int, ...], ...]:
    """Leaf positions that read the same leg, for every leg read more than once.

    >>> s = ir.Statement(0, ir.Fuse(ir.Fuse(ir.LeafRef("A", 0), ir.LeafRef("A", 1)), ir.LeafRef("B", 2)),
    ...                  "z", "uuu", "channel")
    >>> symmetric_groups(s)
    ((0, 1),)
    """
    by_leg: dict[tuple[str, str], list[int]] = {}
    for ref in statement.leaves:
        by_leg.setdefault((ref.leg, ref.via), []).append(ref.position)
    return tuple(tuple(p) for p in by_leg.values() if len(p) > 1)


def _reducible(diagram: ir.Diagram, statement: ir.Statement) -> bool:
    """Weights can be shared across permutations of repeated leaves when the channels permute
    along: one channel index (``uuu``) or multiplicity 1 on every repeated leaf."""
    groups = symmetric_groups(statement)
    if not groups or statement.weights == "none":
        return False
    if statement.channels == "uuu":
        return True
    repeated = {p for g in groups for p in g}
    return all(e.mul == 1 for ref in statement.leaves if ref.position in repeated
               for e in diagram.irreps(ref.leg))


def _independent_paths(group: str, paths: Sequence[_Path], stacks: dict[int, _Stack],
                       groups: tuple[tuple[int, ...], ...]) -> list[_Path]:
    """A maximal linearly independent subset of the paths' symmetrised couplings, earliest first.

    Per output entry (paths into different entries are independent): one table with a path axis,
    symmetrised over the repeated leaves; a path is kept when its column has a component
    orthogonal to the kept ones larger than ``RANK_TOLERANCE`` times its norm (float64)."""
    kept: list[_Path] = []
    by_output: dict[int, list[_Path]] = {}
    for path in paths:
        by_output.setdefault(path.output.index, []).append(path)
    arity = len(paths[0].leaves)
    for members in by_output.values():
        dims = tuple(stacks[k].dim for k in range(arity))
        problem = tuple((tuple(stacks[k].offset(e) for k, e in enumerate(p.leaves)), p.tree, p.fan_in)
                        for p in members)
        keep = _independent_columns(group, dims, members[0].output.dim, problem, groups)
        kept += [p for p, flag in zip(members, keep, strict=False) if flag]
    return sorted(kept, key=lambda p: p.position)


@lru_cache(maxsize=1024)
def _independent_columns(group: str, dims: tuple[int, ...], out_dim: int,
                         problem: tuple[tuple[Any, ...], ...], groups: tuple[tuple[int, ...], ...]) -> tuple[bool, ...]:
    arity = len(dims)
    blocks = tuple(Block(offsets + (number, 0), tree, fan_in)
                   for number, (offsets, tree, fan_in) in enumerate(problem))
    shape = dims + (len(problem), out_dim)
    raw = table_tensor(TableSpec(group, shape, blocks, (arity,)))
    scale = raw.movedim(arity, -1).reshape(-1, len(problem)).abs().norm(dim=0)
    table = table_tensor(TableSpec(group, shape, blocks, (arity,), groups))
    columns = table.movedim(arity, -1).reshape(-1, len(problem))
    columns = columns[columns.abs().sum(dim=1) > 0]
    return _gram_schmidt_flags(columns, [float(x) for x in scale])


def _gram_schmidt_flags(columns: Any, scales: Sequence[float] | None = None) -> tuple[bool, ...]:
    """Which columns add a direction to the earlier ones, by more than ``RANK_TOLERANCE`` times
    their scale (``scales[k]``: the norm of the path's tensor before symmetrisation, so that a
    path whose symmetrised tensor is round-off zero is dropped; default: the column's norm).

    One Gram matrix ``G = M^H M`` (float64), then an incremental Cholesky factorisation in column
    order that skips dependent columns: column ``k``'s squared residual against the kept ones is
    ``G_kk - |L^-1 G_kept,k|^2``. (Forming G squares the condition number, hence a residual
    tolerance of 1e-6 relative rather than machine precision; roundoff leaves dependent columns
    near 1e-8.)"""
    import torch

    gram = (columns.conj().T @ columns).to(torch.complex128 if columns.is_complex() else torch.float64)
    factor = gram.new_zeros((0, 0))
    kept: list[int] = []
    flags = []
    for k in range(gram.shape[0]):
        norm2 = float(gram[k, k].real)
        if kept:
            y = torch.linalg.solve_triangular(factor, gram[kept, k][:, None], upper=False)[:, 0]
            residual2 = norm2 - float((y.conj() @ y).real)
        else:
            y, residual2 = gram.new_zeros(0), norm2
        scale2 = norm2 if scales is None else scales[k] ** 2
        flags.append(norm2 > 0.0 and residual2 > (RANK_TOLERANCE ** 2) * scale2)
        if flags[-1]:
            factor = _extend_cholesky(factor, y, residual2 ** 0.5)
            kept.append(k)
    return tuple(flags)


def _extend_cholesky(factor: Any, row: Any, diagonal: float) -> Any:

    size = factor.shape[0]
    grown = factor.new_zeros((size + 1, size + 1))
    grown[:size, :size] = factor
    grown[size, :size] = row.conj()
    grown[size, size] = diagonal
    return grown


def kept_paths(diagram: ir.Diagram, statement: int = 0) -> tuple[int, ...]:
    """Positions of the paths of ``statement`` that keep weights (the reduced symmetric basis;
    every path unless the statement reads one leg on several leaves).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 0e + 1e\\n"
    ...                  " x, x -> y [channels = uuu, weights = channel] }").diagram()
    >>> kept_paths(d)
    (0,)
    """
    found = next(s for s in diagram.statements if s.index == statement)
    model = _statement_model(diagram, found, fan_in_totals(diagram), "")
    return tuple(p.position for p in model.paths)


# -- statements with their kept paths and weight layout -------------------------------------------

def _statement_model(diagram: ir.Diagram, statement: ir.Statement, fan_ins: dict[tuple[str, int], int],
                     source: str) -> _Statement:
    paths = _raw_paths(diagram, statement, fan_ins)
    redundant = sum(p.block_size for p in paths) if statement.weights != "none" else 0
    groups = symmetric_groups(statement)
    reduced = _reducible(diagram, statement)
    if reduced:
        stacks = _symmetric_stacks(statement, paths)
        paths = _independent_paths(diagram.group.name, paths, stacks, groups)
    kept, offset = [], 0
    for path in paths:
        kept.append(replace(path, offset=offset))
        offset += path.block_size if statement.weights != "none" else 0
    return _Statement(statement, tuple(kept), len(statement.paths), offset, redundant, source, reduced,
                      groups if reduced else ())


# -- stacks: entries of a leg concatenated along one component axis --------------------------------

@dataclass(frozen=True, slots=True)
class _Stack:
    """Entries of one leg (equal multiplicities) side by side: ``[n, mul, sum of dims]``."""

    leg: str
    entries: tuple[_Entry, ...]

    @property
    def mul(self) -> int:
        return self.entries[0].mul

    @property
    def dim(self) -> int:
        return sum(e.dim for e in self.entries)

    def offset(self, entry: _Entry) -> int:
        total = 0
        for e in self.entries:
            if e.index == entry.index:
                return total
            total += e.dim
        raise KeyError(entry)

    @property
    def key(self) -> tuple[str, tuple[int, ...]]:
        return self.leg, tuple(e.index for e in self.entries)


def _stack_of(entries: Iterable[_Entry]) -> _Stack:
    unique = sorted({e.index: e for e in entries}.values(), key=lambda e: e.index)
    return _Stack(unique[0].leg, tuple(unique))


def _symmetric_stacks(statement: ir.Statement, paths: Sequence[_Path]) -> dict[int, _Stack]:
    """One stack per leaf; leaves reading the same leg share the union of their entries."""
    stacks: dict[int, _Stack] = {}
    for ref in statement.leaves:
        same = [r.position for r in statement.leaves if r.leg == ref.leg]
        stacks[ref.position] = _stack_of(p.leaves[k] for p in paths for k in same)
    return stacks


# -- index letters ---------------------------------------------------------------------------------

_CHANNELS = "uvxyrstgh"
_COMPONENTS = "ijlmoqabcdef"
_INNER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_LEAVES = len(_CHANNELS)


def _leaf_channels(statement: ir.Statement) -> tuple[str, ...]:
    """The channel letter of every leaf: its own (uvw), shared (uuu), first carried (uvu)."""
    count = statement.arity
    if statement.channels == "uuu":
        return ("u",) * count
    return tuple(_CHANNELS[:count])


def _out_channels(statement: ir.Statement) -> str:
    channels = _leaf_channels(statement)
    if statement.channels == "uvw":
        return "w" if statement.weights != "none" else "".join(channels)
    return "u"


def _weight_letters(statement: ir.Statement) -> str:
    """The weight block's axes (docs/semantics.md), after the path axis ``p``."""
    channels = "".join(_leaf_channels(statement))
    if statement.weights == "none":
        return ""
    per_channel = statement.weights != "path"
    if statement.channels == "uvw":
        return channels + "w"
    if statement.channels == "uvu":
        return channels if per_channel else channels[1:]
    return "u" if per_channel else ""


# -- the builder: emits hash-consed steps ---------------------------------------------------------

@dataclass
class _Builder:
    """Steps emitted so far, with a memo so that every value is computed once."""

    diagram: ir.Diagram
    file: str
    steps: list[Step] = field(default_factory=list)
    memo: dict[Hashable, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    tables: dict[TableSpec, Table] = field(default_factory=dict)
    indices: dict[tuple[tuple[int, ...], int], IndexBuffer] = field(default_factory=dict)
    users: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    results: dict[str, list[_Result]] = field(default_factory=dict)
    leg_pieces: dict[str, dict[int, _Piece]] = field(default_factory=dict)
    group_id: tuple[int, int] = (0, 0)
    line: int = 0
    zero_entries: list[_Entry] = field(default_factory=list)

    def fork(self) -> _Builder:
        return _Builder(self.diagram, self.file, list(self.steps), dict(self.memo), set(self.names),
                        dict(self.tables), dict(self.indices), {k: set(v) for k, v in self.users.items()},
                        {k: list(v) for k, v in self.results.items()},
                        {k: dict(v) for k, v in self.leg_pieces.items()}, self.group_id, self.line,
                        list(self.zero_entries))

    def fresh(self, hint: str) -> str:
        return unique_name(_identifier(hint), self.names)

    def value(self, key: Hashable, hint: str, make: Callable[[str], Step]) -> str:
        """The variable holding ``key``, emitting its step the first time."""
        if key not in self.memo:
            target = self.fresh(hint)
            step = make(target)
            self.steps.append(step if step.line else replace(step, line=self.line))
            self.memo[key] = target
        var = self.memo[key]
        self.users.setdefault(var, set()).add(self.group_id)
        return var

    def table(self, spec: TableSpec, hint: str, comment: str, statement: int) -> str:
        if spec not in self.tables:
            self.tables[spec] = Table(self.fresh(hint), spec, comment, statement)
        table = self.tables[spec]
        self.users.setdefault(table.name, set()).add(self.group_id)
        return f"self.{table.name}"

    def index_buffer(self, starts: tuple[int, ...], size: int, hint: str, comment: str = "") -> str:
        key = (starts, size)
        if key not in self.indices:
            self.indices[key] = IndexBuffer(self.fresh(hint), starts, size, comment, self.line)
        return f"self.{self.indices[key].name}"


_RESERVED = {"self", "torch", "runtime", "batch", "cdtype", "Tensor", "chunks", "parts", "part"}


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first not in ``taken``, which it joins."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _identifier(hint: str) -> str:
    import keyword

    text = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in hint) or "t"
    if text[0].isdigit():
        text = "_" + text
    return text + "_" if keyword.iskeyword(text) or text in _RESERVED else text


@dataclass(frozen=True, slots=True)
class _Piece:
    """Where one entry of a leg lives: ``var[..., start:start + dim]`` with channel shape
    ``channels`` (``(m,)``, or ``(m1, m2)`` for unweighted ``uvw`` before flattening)."""

    var: str
    start: int
    dim: int
    channels: tuple[int, ...]
    width: int                          # the last axis of ``var``
    select: int = -1                    # entry-major results: the piece is ``var[:, select]``


@dataclass(frozen=True, slots=True)
class _Result:
    """A network's output: ``var[n, *channels, K]`` holding several entries of one leg (or, entry
    major, ``var[n, E, *channels, dim]``)."""

    var: str
    channels: tuple[int, ...]
    entries: tuple[tuple[int, int], ...]    # (entry index, offset along K) or (entry, position along E)
    width: int
    entry_major: bool = False               # ``var[n, E, *channels, dim]``: entry j is ``var[:, j]``


# -- leaf values: entries and stacks of legs --------------------------------------------------------

def _irrep_hint(entry: _Entry, entries: Sequence[_Entry]) -> str:
    text = str(entry.irrep).replace("/", "_")
    same = [e for e in entries if e.irrep == entry.irrep]
    return text if len(same) == 1 else f"{text}_{same.index(entry)}"


def _entry_value(b: _Builder, entry: _Entry, var: str) -> _Piece:
    """An input entry as a view ``[n, mul, dim]`` of the flat input."""
    entries = _leg_entries(b.diagram, entry.leg)
    name = b.value(("entry", entry.leg, entry.index), f"{var}_{_irrep_hint(entry, entries)}",
                   lambda t: Step(t, "entry", (var,), start=entry.start, stop=entry.start + entry.item.dim,
                                  shape=(-1, entry.mul, entry.dim), size=entry.item.dim,
                                  comment=f"{entry.leg}[{entry.item}] as [n, {entry.mul}, {entry.dim}]"))
    return _Piece(name, 0, entry.dim, (entry.mul,), entry.dim)


def _stack_value(b: _Builder, stack: _Stack) -> str:
    """``[n, mul, D]``: the stack's entries side by side (a view when possible, the entry itself
    when there is only one)."""
    key = ("stack",) + stack.key
    if key not in b.memo:
        flat = _flat_input_view(b, stack)
        pieces = [] if flat is not None else [_piece(b, e) for e in stack.entries]
        if len(pieces) == 1 and _piece_is_whole(pieces[0]):
            b.memo[key] = pieces[0].var
    return b.value(key, _stack_hint(stack), lambda t: _make_stack(b, stack, t))


def _piece_is_whole(piece: _Piece) -> bool:
    return (piece.start, piece.dim) == (0, piece.width) and len(piece.channels) == 1 and piece.select < 0


def _stack_hint(stack: _Stack) -> str:
    if len(stack.entries) > 4:
        return f"{stack.leg}_{len(stack.entries)}e"
    return stack.leg + "_" + "_".join(str(e.irrep).replace("/", "_") for e in stack.entries)


def _make_stack(b: _Builder, stack: _Stack, target: str) -> Step:
    comment = f"{stack.leg}[{' + '.join(str(e.irrep) for e in stack.entries)}] side by side: " \
              f"[n, {stack.mul}, {stack.dim}]"
    flat = _flat_input_view(b, stack)
    if flat is not None:
        return replace(flat, target=target, comment=comment)
    pieces = [_piece(b, e) for e in stack.entries]
    run = _single_run(pieces)
    if run is not None:
        var, start, stop, width = run
        return Step(target, "narrow", (var,), start=start, stop=stop, comment=comment, size=stack.mul * stack.dim)
    args = tuple(_piece_var(b, p) for p in pieces)
    return Step(target, "cat", args, comment=comment, size=stack.mul * stack.dim)


def _flat_input_view(b: _Builder, stack: _Stack) -> Step | None:
    """A mul-1 stack of consecutive entries of an input is a plain view of the input."""
    leg = b.diagram.leg(stack.leg)
    entries = stack.entries
    consecutive = all(e2.index == e1.index + 1 for e1, e2 in zip(entries, entries[1:], strict=False))
    if leg.role != "input" or stack.mul != 1 or not consecutive:
        return None
    start, stop = entries[0].start, entries[-1].start + entries[-1].item.dim
    return Step("", "entry", (_input_var(b, stack.leg),), start=start, stop=stop, shape=(-1, 1, stop - start),
                size=stop - start)


def _single_run(pieces: Sequence[_Piece]) -> tuple[str, int, int, int] | None:
    """(var, start, stop, width) when the pieces are consecutive slices of one variable."""
    first = pieces[0]
    position = first.start
    for piece in pieces:
        if piece.var != first.var or piece.start != position or len(piece.channels) != 1 or piece.select >= 0:
            return None
        position += piece.dim
    return first.var, first.start, position, first.width


def _piece_var(b: _Builder, piece: _Piece) -> str:
    """A variable ``[n, mul, dim]`` holding exactly one piece."""
    if _piece_is_whole(piece):
        return piece.var
    if piece.select >= 0:
        return b.value(("pick", piece.var, piece.select), f"{piece.var}_{piece.select}",
                       lambda t: Step(t, "narrow", (piece.var,), start=piece.select, stop=piece.select + 1,
                                      axis=1, shape=(-1, *piece.channels, piece.dim),
                                      size=math.prod(piece.channels) * piece.dim))
    channels = (math.prod(piece.channels),)
    return b.value(("narrow", piece.var, piece.start, piece.dim, channels), f"{piece.var}_part",
                   lambda t: Step(t, "narrow", (piece.var,), start=piece.start, stop=piece.start + piece.dim,
                                  shape=(-1, *channels, piece.dim) if len(piece.channels) > 1 else (),
                                  size=channels[0] * piece.dim))


def _input_var(b: _Builder, leg: str) -> str:
    return b.memo[("input", leg)]


def _piece(b: _Builder, entry: _Entry) -> _Piece:
    """Where ``entry`` lives now: a view of an input, or a piece of a written leg."""
    role = b.diagram.leg(entry.leg).role
    if role == "input":
        return _entry_value(b, entry, _input_var(b, entry.leg))
    return _leg_pieces(b, entry.leg)[entry.index]


# -- assembling written legs: add the statements' results per entry --------------------------------

def _leg_pieces(b: _Builder, leg: str) -> dict[int, _Piece]:
    if leg not in b.leg_pieces:
        b.leg_pieces[leg] = _assemble(b, leg)
    return b.leg_pieces[leg]


def _assemble(b: _Builder, leg: str) -> dict[int, _Piece]:
    """Sum the results written into ``leg``: whole results with equal layouts first, then per entry."""
    merged = _merge_equal_results(b, leg, b.results.get(leg, []))
    pieces: dict[int, list[_Piece]] = {}
    for result in merged:
        for entry, offset in result.entries:
            dim = _leg_entries(b.diagram, leg)[entry].dim
            if result.entry_major:
                piece = _Piece(result.var, 0, dim, result.channels, dim, offset)
            else:
                piece = _Piece(result.var, offset, dim, result.channels, result.width)
            pieces.setdefault(entry, []).append(piece)
    assembled = {entry: _sum_pieces(b, leg, entry, found) for entry, found in sorted(pieces.items())}
    for item in _leg_entries(b.diagram, leg):
        if item.index not in assembled:
            assembled[item.index] = _zeros(b, item)
    return assembled


def _zeros(b: _Builder, entry: _Entry) -> _Piece:
    """An entry no kept path reaches (its couplings vanish under the symmetric reduction)."""
    like = _input_var(b, b.diagram.inputs[0].name)
    hint = f"{entry.leg}_{_irrep_hint(entry, _leg_entries(b.diagram, entry.leg))}"
    var = b.value(("zeros", entry.leg, entry.index), hint,
                  lambda t: Step(t, "zeros", (like,), shape=(entry.mul, entry.dim), size=entry.item.dim,
                                 comment=f"{entry.leg}[{entry.item}] is zero: its paths vanish when symmetrised"))
    b.zero_entries.append(entry)
    return _Piece(var, 0, entry.dim, (entry.mul,), entry.dim)


def _merge_equal_results(b: _Builder, leg: str, results: list[_Result]) -> list[_Result]:
    by_layout: dict[tuple[Any, ...], list[_Result]] = {}
    for result in results:
        by_layout.setdefault((result.channels, result.entries, result.width, result.entry_major), []).append(result)
    merged = []
    for group in by_layout.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        args = tuple(r.var for r in group)
        size = math.prod(group[0].channels) * group[0].width
        var = b.value(("add",) + args, f"{leg}_sum", _add_maker(args, size, f"{leg}: {len(args)} contributions "
                                                                 "with the same layout"))
        merged.append(replace(group[0], var=var))
    return merged


def _add_maker(args: tuple[str, ...], size: int, comment: str) -> Callable[[str], Step]:
    return lambda target: Step(target, "add", args, comment=comment, flops=size * (len(args) - 1), size=size)


def _sum_pieces(b: _Builder, leg: str, entry: int, pieces: list[_Piece]) -> _Piece:
    if len(pieces) == 1:
        return pieces[0]
    item = _leg_entries(b.diagram, leg)[entry]
    args = tuple(_piece_var(b, p) for p in pieces)
    size = item.item.dim
    var = b.value(("add",) + args, f"{leg}_{_irrep_hint(item, _leg_entries(b.diagram, leg))}",
                  lambda t: Step(t, "add", args, comment=f"{leg}[{item.item}]: {len(args)} contributions",
                                 flops=size * (len(args) - 1), size=size))
    return _Piece(var, 0, item.dim, (item.mul,), item.dim)


# -- networks of one group of paths ---------------------------------------------------------------

@dataclass(frozen=True)
class _Operand:
    """A tensor of a network: a variable (or buffer), its indices and the key that shares it."""

    var: str
    indices: str
    key: Hashable


@dataclass(frozen=True)
class _GroupPlan:
    """How one group of paths is contracted: the operands, the order, the output."""

    operands: tuple[_Operand, ...]
    net: Network
    tree: Tree
    cost: Cost
    label: str


def _network_sizes(indices: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, v) for k, v in indices.items() if k != BATCH))


def _contract(b: _Builder, hint: str, operands: tuple[str, str], equation: str, net: Network, comment: str,
              statement: int) -> str:
    """Emit one pairwise contraction (shared when the same one was emitted before).

    Contractions that sum no index larger than 1 are broadcast products: ``a * b`` is much
    cheaper than the batched matrix products ``torch.einsum`` would run for them."""
    va, vb = operands
    inputs, result = equation.split("->")
    left, right = inputs.split(",")
    _, cost = pair_cost(net, left, right, result)
    key = ("einsum", _canonical_equation(equation), va, vb)
    size = net.numel(result) if BATCH in result else 0
    summed = set(left + right) - set(result)
    if all(net.size(i) == 1 for i in summed):
        views = (_broadcast_view(net, left, result), _broadcast_view(net, right, result))
        args = (va, vb)
        if views[0][0] and not views[1][0]:
            # torch lays a product out like its first operand: lead with the one in the result's order
            views, args = views[::-1], args[::-1]
        make = lambda t: Step(t, "mul", args, equation=equation, views=views, comment=comment,  # noqa: E731
                              statement=statement, flops=cost.per_sample, setup_flops=cost.setup, size=size)
    else:
        batched = BATCH in left and BATCH in right
        # torch runs a batched einsum as one small matrix product per value of the indices both
        # operands and the result share: per sample, their count
        matrices = net.numel(set(left) & set(right) & set(result)) if batched else 0
        make = lambda t: Step(t, "einsum", (va, vb), equation=equation, comment=comment,  # noqa: E731
                              statement=statement, flops=cost.per_sample, setup_flops=cost.setup, size=size,
                              batched=batched, matrices=matrices)
    return b.value(key, hint, make)


def _broadcast_view(net: Network, indices: str, result: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(permutation or (), view shape) that aligns an operand with the result's axes."""
    kept = [i for i in indices if i in result]
    ordered = sorted(kept, key=result.index)
    permutation: tuple[int, ...] = ()
    if ordered != kept:
        positions = [indices.index(i) for i in ordered]
        dropped = [k for k, i in enumerate(indices) if i not in result]
        permutation = tuple(positions + dropped)
    shape = tuple((-1 if r == net.batch else net.size(r)) if r in kept else 1 for r in result)
    return permutation, shape


def _emit_network(b: _Builder, group: _GroupPlan, hint: str, comment: str, statement: int) -> str:
    """Emit the pairwise contractions of a planned network; returns the result variable."""
    steps = contraction_steps(group.net, group.tree)
    return _emit_steps(b, group, steps, len(steps), hint, comment, statement)[-1]


def _emit_steps(b: _Builder, group: _GroupPlan, steps: Sequence[Contraction], count: int, hint: str,
                comment: str, statement: int) -> list[str]:
    """Emit the first ``count`` of a network's contractions ``steps``; returns the variables of
    its operands followed by those results."""
    values = [op.var for op in group.operands]
    for number, step in enumerate(steps[:count]):
        text = comment if number == len(steps) - 1 else f"{comment} (step {number + 1} of {len(steps)})"
        if step.right < 0:
            values.append(_reduce(b, hint, values[step.left], step, text, statement))
        else:
            values.append(_contract(b, hint, (values[step.left], values[step.right]), step.equation, group.net,
                                    text, statement))
    return values


@dataclass(frozen=True)
class _Coupled:
    """Coupled paths in ``var``: exactly the slots of one reader (``whole``), or the whole layout,
    where a reader's slots lie at their layout offsets."""

    var: str
    whole: bool


def _emit_network_parts(b: _Builder, group: _GroupPlan, hint: str, comment: str, statement: int,
                        ranges: Sequence[tuple[int, int]], in_parts: bool) -> list[_Coupled]:
    """Emit a planned network whose output axis ``k`` is read in parts ``(start, width)``.

    ``in_parts``: every part gets its own last contraction, on a slice of the operand that
    carries ``k``. Each part is then contiguous, so whatever reads it next needs no strided
    gather, and backward writes one gradient per part instead of a zero-filled full-size one per
    slice. Otherwise (or when the last step sums ``k``'s operand alone) one tensor holds them all."""
    steps = contraction_steps(group.net, group.tree)
    if not in_parts or len(ranges) == 1 or steps[-1].right < 0:
        var = _emit_network(b, group, hint, comment, statement)
        return [_Coupled(var, len(ranges) == 1)] * len(ranges)
    values = _emit_steps(b, group, steps, len(steps) - 1, hint, comment, statement)
    last = steps[-1]
    left, right = last.equation.split("->")[0].split(",")
    sliced_left = "k" in left
    indices = left if sliced_left else right
    sliced, other = (values[last.left], values[last.right]) if sliced_left else (values[last.right], values[last.left])
    axis = indices.index("k")
    parts = []
    for start, width in ranges:
        net = replace(group.net, sizes=tuple((i, width if i == "k" else s) for i, s in group.net.sizes))
        size = net.numel(indices) if BATCH in indices else 0
        cut = Step("", "narrow", (sliced,), start=start, stop=start + width, axis=axis, size=size,
                   comment=f"its part {start}:{start + width} along k")
        piece = b.value(("narrow", sliced, axis, start, width), f"{sliced.removeprefix('self.')}_k",
                        _named(cut))
        operands = (piece, other) if sliced_left else (other, piece)
        var = _contract(b, hint, operands, last.equation, net, f"{comment}, slots {start}:{start + width}", statement)
        parts.append(_Coupled(var, True))
    return parts


def _named(step: Step) -> Callable[[str], Step]:
    """A maker for :meth:`_Builder.value`: ``step`` with the fresh target name."""
    return lambda target: replace(step, target=target)


def _reduce(b: _Builder, hint: str, var: str, step: Contraction, comment: str, statement: int) -> str:
    """A one-operand einsum that sums indices no other operand needs."""
    key = ("einsum", _canonical_equation(step.equation), var)
    return b.value(key, hint, lambda t: Step(t, "einsum", (var,), equation=step.equation, comment=comment,
                                             statement=statement, flops=step.cost.per_sample,
                                             setup_flops=step.cost.setup, size=step.cost.peak))


def _canonical_equation(equation: str) -> str:
    names: dict[str, str] = {}
    out = []
    for ch in equation:
        if ch.isalpha():
            names.setdefault(ch, chr(ord("a") + len(names)))
            out.append(names[ch])
        else:
            out.append(ch)
    return "".join(out)


def _plan_network(operands: Sequence[_Operand], output: str, sizes: dict[str, int], label: str) -> _GroupPlan:
    net = Network(tuple(op.indices for op in operands), output, _network_sizes(sizes))
    tree, cost = optimal_tree(net)
    return _GroupPlan(tuple(operands), net, tree, cost, label)


def order_text(group: _GroupPlan, names: Sequence[str]) -> str:
    """A contraction tree as text, e.g. ``((y·C)·x)·W``."""
    def text(node: Tree) -> str:
        if isinstance(node, int):
            return names[node]
        return f"({text(node[0])}·{text(node[1])})"
    rendered = text(group.tree)
    return rendered[1:-1] if rendered.startswith("(") else rendered


# -- strategies ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Strategy:
    """How to group and contract a statement's paths.

    ``stacking``: ``full`` (one stack per leaf and multiplicity signature) or ``blocks`` (one
    group per tuple of leaf entries), ``single`` (one group per path);
    ``form``: ``U`` (couplings pre-contracted along the tree) or ``chain`` (one table per vertex);
    ``outputs``: ``joint`` (every output entry of the group in one network, a path axis where
    weights need it), ``entry`` (one network per output entry), ``q`` (couple all paths into one
    flat axis, then weight each run of alike output entries at once, in their final layout)."""

    stacking: str
    form: str
    outputs: str

    @property
    def label(self) -> str:
        return f"{self.stacking}/{self.form}/{self.outputs}"


def _strategies(model: _Statement) -> list[_Strategy]:
    statement = model.statement
    if statement.is_linear:
        return [_Strategy("linear", "-", "entry")]
    forms = ["U"] if statement.arity == 2 or model.reduced else ["U", "chain"]
    outputs = ["joint", "entry"] + (["q"] if model.weighted else [])
    found = [_Strategy(s, f, o) for s in ("full", "blocks") for f in forms for o in outputs]
    found.append(_Strategy("single", "U" if model.reduced else "chain", "entry"))
    return found


def _groups(model: _Statement, strategy: _Strategy) -> list[list[_Path]]:
    """Partition of the kept paths (each group: equal leaf and output multiplicities)."""
    def key(path: _Path) -> tuple[Any, ...]:
        muls = tuple(e.mul for e in path.leaves) + (path.output.mul,)
        if strategy.stacking == "blocks":
            return muls + _entry_key(model, path)
        if strategy.stacking == "single":
            return muls + _entry_key(model, path) + (path.position,)
        return muls
    found: dict[tuple[Any, ...], list[_Path]] = {}
    for path in model.paths:
        found.setdefault(key(path), []).append(path)
    return list(found.values())


def _entry_key(model: _Statement, path: _Path) -> tuple[Any, ...]:
    """The leaf entries of a path; for leaves that read one leg (symmetrised), their multiset."""
    entries = [e.index for e in path.leaves]
    for group in model.symmetric_groups:
        ordered = sorted(entries[k] for k in group)
        for k, value in zip(group, ordered, strict=False):
            entries[k] = value
    return tuple(entries)


def _split_by_output(paths: list[_Path], strategy: _Strategy) -> list[list[_Path]]:
    if strategy.outputs != "entry":
        return [paths]
    found: dict[int, list[_Path]] = {}
    for path in paths:
        found.setdefault(path.output.index, []).append(path)
    return list(found.values())


def _apply_strategy(b: _Builder, model: _Statement, strategy: _Strategy) -> list[str]:
    """Emit the statement with ``strategy``; returns the human-readable orders chosen."""
    orders: list[str] = []
    b.line = model.statement.line
    if strategy.stacking == "linear":
        for number, paths in enumerate(_linear_groups(model)):
            b.group_id = (model.index, number)
            orders.append(_emit_linear(b, model, paths))
        return orders
    number = 0
    b.line = model.statement.line
    for paths in _groups(model, strategy):
        for part in _split_by_output(paths, strategy):
            b.group_id = (model.index, number)
            number += 1
            orders.append(_emit_group(b, model, part, strategy))
    return orders


# -- one group: stacks, tables, weights, contraction ----------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """The output axis of a group: output entries (``joint``) or path slots (``q``)."""

    slots: tuple[tuple[_Path | None, _Entry], ...]   # (path for q-slots, entry)
    dims: tuple[int, ...]

    def offset(self, position: int) -> int:
        return sum(self.dims[:position])

    @property
    def size(self) -> int:
        return sum(self.dims)


def _joint_layout(paths: Sequence[_Path]) -> _Layout:
    entries = sorted({p.output.index: p.output for p in paths}.values(), key=lambda e: e.index)
    return _Layout(tuple((None, e) for e in entries), tuple(e.dim for e in entries))


def _q_layout(paths: Sequence[_Path]) -> _Layout:
    ordered = sorted(paths, key=lambda p: (p.output.index, p.position))
    return _Layout(tuple((p, p.output) for p in ordered), tuple(p.output.dim for p in ordered))


def _out_offset(layout: _Layout, path: _Path) -> int:
    for position, (slot_path, entry) in enumerate(layout.slots):
        if (slot_path is None and entry.index == path.output.index) or slot_path is path:
            return layout.offset(position)
    raise KeyError(path.position)


def _group_stacks(model: _Statement, paths: Sequence[_Path], stacking: str) -> dict[int, _Stack]:
    if model.reduced and stacking == "full":
        return _symmetric_stacks(model.statement, paths)
    if model.reduced:
        entries = {(e.leg, e.index): e for e in paths[0].leaves}
        key = _entry_key(model, paths[0])
        legs = [ref.leg for ref in model.statement.leaves]
        return {k: _Stack(legs[k], (entries[(legs[k], key[k])],)) for k in range(model.statement.arity)}
    return {k: _stack_of(p.leaves[k] for p in paths) for k in range(model.statement.arity)}


def _emit_group(b: _Builder, model: _Statement, paths: list[_Path], strategy: _Strategy) -> str:
    statement = model.statement
    stacks = _group_stacks(model, paths, strategy.stacking)
    q_mode = strategy.outputs == "q"
    layout = _q_layout(paths) if q_mode else _joint_layout(paths)
    path_axis = model.weighted and not q_mode
    operands, sizes, names = _leaf_operands(b, statement, stacks)
    tables, table_names = _coupling_operands(b, model, paths, stacks, layout, path_axis, strategy.form,
                                             strategy.stacking, sizes)
    operands += tables
    names += table_names
    sizes["k"] = layout.size
    out_chan = _out_channels(statement) if not q_mode else _q_channels(statement)
    if path_axis:
        operands.append(_weight_operand(b, model, paths, sizes))
        names.append("W")
    group = _plan_network(operands, BATCH + out_chan + "k", sizes, strategy.label)
    comment = f"{_statement_text(statement)}: {len(paths)} path{'s' * (len(paths) != 1)} → {_layout_text(layout)}"
    order = order_text(group, names)
    if q_mode:
        return _emit_q_weights(b, model, paths, layout, group, comment, order, strategy.stacking == "full")
    var = _emit_network(b, group, f"{statement.target}_t", comment, statement.index)
    channels = tuple(sizes[c] for c in out_chan)
    _add_result(b, statement.target, var, channels, layout)
    return order


def _q_channels(statement: ir.Statement) -> str:
    return "".join(dict.fromkeys(_leaf_channels(statement)))


def _layout_text(layout: _Layout) -> str:
    entries = sorted({e.index: e for _, e in layout.slots}.values(), key=lambda e: e.index)
    if len(entries) > 6:
        return f"{entries[0].leg}[{len(entries)} entries: {entries[0].item} ... {entries[-1].item}]"
    return f"{entries[0].leg}[{' + '.join(str(e.item) for e in entries)}]"


def _leaf_operands(b: _Builder, statement: ir.Statement,
                   stacks: dict[int, _Stack]) -> tuple[list[_Operand], dict[str, int], list[str]]:
    channels = _leaf_channels(statement)
    sizes: dict[str, int] = {}
    operands, names = [], []
    for k, ref in enumerate(statement.leaves):
        stack = stacks[k]
        var = _stack_value(b, stack)
        sizes[channels[k]] = stack.mul
        sizes[_COMPONENTS[k]] = stack.dim
        operands.append(_Operand(var, BATCH + channels[k] + _COMPONENTS[k], ("stack",) + stack.key))
        names.append(ref.leg)
    return operands, sizes, names


def _coupling_operands(b: _Builder, model: _Statement, paths: Sequence[_Path], stacks: dict[int, _Stack],
                       layout: _Layout, path_axis: bool, form: str, stacking: str,
                       sizes: dict[str, int]) -> tuple[list[_Operand], list[str]]:
    if path_axis:
        sizes["p"] = len(paths)
    if form == "U" or model.statement.arity <= 2:
        canonical = model.reduced and stacking != "full"
        return ([_u_table(b, model, paths, stacks, layout, path_axis, canonical)],
                ["U" if model.statement.arity > 2 else "C"])
    return _chain_tables(b, model, paths, stacks, layout, path_axis, sizes)


def _u_table(b: _Builder, model: _Statement, paths: Sequence[_Path], stacks: dict[int, _Stack],
             layout: _Layout, path_axis: bool, canonical: bool) -> _Operand:
    arity = model.statement.arity
    shape = tuple(stacks[k].dim for k in range(arity)) + ((len(paths),) if path_axis else ()) + (layout.size,)
    blocks = []
    for number, path in enumerate(paths):
        tail = ((number,) if path_axis else ()) + (_out_offset(layout, path),)
        if canonical:
            blocks += _canonical_blocks(model, path, stacks, tail)
            continue
        offsets = tuple(stacks[k].offset(e) for k, e in enumerate(path.leaves))
        blocks.append(Block(offsets + tail, path.tree, path.fan_in))
    symmetrize = () if canonical else model.symmetric_groups
    spec = TableSpec(b.diagram.group.name, shape, tuple(blocks), (arity,) if path_axis else (), symmetrize)
    statement = model.statement
    what = "coupling" if arity <= 2 else "pre-contracted coupling (U)"
    if model.reduced:
        what = f"symmetrised {what}" + (", sorted entries only" if canonical else "")
    name = b.table(spec, f"cg_{statement.target}_{statement.index}",
                   f"{_statement_text(statement)}: {what} of {len(paths)} path{'s' * (len(paths) != 1)}",
                   statement.index)
    indices = "".join(_COMPONENTS[:arity]) + ("p" if path_axis else "") + "k"
    return _Operand(name, indices, ("table", spec))


def _canonical_blocks(model: _Statement, path: _Path, stacks: dict[int, _Stack],
                      tail: tuple[int, ...]) -> list[Block]:
    """The symmetrised coupling of ``path`` on the sorted ordering of its repeated entries.

    With ``U_sym = (1/|G|) Σ_σ σ·U`` and equal features on the repeated leaves, every ordering of
    a multiset of entries contributes alike: the sorted ordering, times the number of orderings,
    is all that needs computing. ``σ·U_p`` reaches the sorted window when ``σ`` maps the sorted
    entries onto the path's entries; it is the path's coupling with its leaf axes permuted."""
    arity = len(path.leaves)
    canonical = _entry_key(model, path)
    found = []
    perms = list(_group_permutations(model.symmetric_groups, arity))
    orderings = len({tuple(canonical[s[m]] for m in range(arity)) for s in perms})
    for sigma in perms:
        if tuple(canonical[sigma[m]] for m in range(arity)) != tuple(e.index for e in path.leaves):
            continue
        # placed axis m holds the index of canonical position m, i.e. the path's axis sigma^-1(m)
        inverse = tuple(sigma.index(m) for m in range(arity))
        offsets = tuple(stacks[m].offset(stacks[m].entries[0]) for m in range(arity))
        found.append(Block(offsets + tail, path.tree, path.fan_in, inverse, (orderings, len(perms))))
    return found


def _group_permutations(groups: tuple[tuple[int, ...], ...], arity: int) -> Iterator[tuple[int, ...]]:
    """Every permutation of leaf positions that permutes within each group (as tuples:
    position ``m`` takes the entry of position ``sigma[m]``)."""
    choices = [list(itertools.permutations(g)) for g in groups]
    for picked in itertools.product(*choices):
        sigma = list(range(arity))
        for group, image in zip(groups, picked, strict=False):
            for source, target in zip(group, image, strict=False):
                sigma[source] = target
        yield tuple(sigma)


def _chain_tables(b: _Builder, model: _Statement, paths: Sequence[_Path], stacks: dict[int, _Stack],
                  layout: _Layout, path_axis: bool, sizes: dict[str, int]) -> tuple[list[_Operand], list[str]]:
    """One table per vertex: inner vertices stack the distinct sub-paths below them."""
    statement = model.statement
    vertices = statement.vertices
    slots = [_vertex_slots(statement, v, paths) for v in vertices[:-1]]
    operands, names = [], []
    for number, vertex in enumerate(vertices):
        root = number == len(vertices) - 1
        spec, indices = _vertex_table(b, model, vertex, number, paths, stacks, slots, layout, path_axis, root)
        for letter, size in zip(indices, spec.shape, strict=False):
            sizes[letter] = size
        name = b.table(spec, f"cg_{statement.target}_{statement.index}_v{number}",
                       f"{_statement_text(statement)}: vertex {number} of {len(paths)} paths", statement.index)
        operands.append(_Operand(name, indices, ("table", spec)))
        names.append(f"C{number}")
    return operands, names


def _vertex_slots(statement: ir.Statement, vertex: ir.Fuse, paths: Sequence[_Path]) -> list[tuple[Any, ...]]:
    keys = {_subpath_key(statement, vertex, p) for p in paths}
    return sorted(keys, key=repr)


def _subpath_key(statement: ir.Statement, node: ir.Node, path: _Path) -> tuple[Any, ...]:
    """What a sub-tree computes along a path: its leaves' entries and its vertices' irreps."""
    leaves = tuple(ref.position for ref in ir.leaves(node))
    entries = tuple(path.leaves[p].index for p in leaves)
    positions = [statement.vertices.index(v) for v in ir.fuse_nodes(node)]
    return entries, tuple(str(path.path.inner[k]) for k in positions)


def _vertex_table(b: _Builder, model: _Statement, vertex: ir.Fuse, number: int, paths: Sequence[_Path],
                  stacks: dict[int, _Stack], slots: list[list[tuple[Any, ...]]], layout: _Layout,
                  path_axis: bool, root: bool) -> tuple[TableSpec, str]:
    statement = model.statement
    left_axis = _child_axis(statement, vertex.left, stacks, slots)
    right_axis = _child_axis(statement, vertex.right, stacks, slots)
    if root:
        out_letters = ("p" if path_axis else "") + "k"
        shape = (left_axis[1], right_axis[1]) + ((len(paths),) if path_axis else ()) + (layout.size,)
    else:
        out_letters = _INNER[number]
        shape = (left_axis[1], right_axis[1], _slots_dim(slots[number]))
    blocks: dict[tuple[int, ...], Block] = {}
    for index, path in enumerate(paths):
        inner = str(path.path.inner[number])
        tree = (_child_irrep(statement, vertex.left, path), _child_irrep(statement, vertex.right, path), inner)
        offsets: tuple[int, ...] = (left_axis[2](path), right_axis[2](path))
        if root:
            offsets += ((index,) if path_axis else ()) + (_out_offset(layout, path),)
            blocks[offsets] = Block(offsets, tree, path.fan_in)
        else:
            offsets += (_slot_offset(slots[number], _subpath_key(statement, vertex, path)),)
            blocks[offsets] = Block(offsets, tree, 1)
    spec = TableSpec(b.diagram.group.name, shape, tuple(blocks[k] for k in sorted(blocks)),
                     (2,) if root and path_axis else ())
    return spec, left_axis[0] + right_axis[0] + out_letters


def _child_axis(statement: ir.Statement, child: ir.Node, stacks: dict[int, _Stack],
                slots: list[list[tuple[Any, ...]]]) -> tuple[str, int, Callable[[_Path], int]]:
    """(index letter, size, offset of a path) of a vertex's child axis."""
    if isinstance(child, ir.LeafRef):
        stack = stacks[child.position]
        return _COMPONENTS[child.position], stack.dim, lambda p: stack.offset(p.leaves[child.position])
    number = statement.vertices.index(child)
    own = slots[number]
    return _INNER[number], _slots_dim(own), lambda p: _slot_offset(own, _subpath_key(statement, child, p))


def _child_irrep(statement: ir.Statement, child: ir.Node, path: _Path) -> str:
    if isinstance(child, ir.LeafRef):
        return str(path.leaves[child.position].irrep)
    return str(path.path.inner[statement.vertices.index(child)])


def _slot_dim(slot: tuple[Any, ...]) -> int:
    return _spec_dim(slot[1][-1])


def _slots_dim(slots: Sequence[tuple[Any, ...]]) -> int:
    return sum(_slot_dim(s) for s in slots)


def _slot_offset(slots: Sequence[tuple[Any, ...]], key: tuple[Any, ...]) -> int:
    return sum(_slot_dim(s) for s in slots[:slots.index(key)])


# -- weights ---------------------------------------------------------------------------------------

def _weight_operand(b: _Builder, model: _Statement, paths: Sequence[_Path], sizes: dict[str, int]) -> _Operand:
    letters = _weight_letters(model.statement)
    var = _weight_value(b, model, paths)
    sizes.setdefault("w", paths[0].output.mul)
    indices = (BATCH if model.external else "") + "p" + letters
    return _Operand(var, indices, ("weights", model.index, tuple(p.position for p in paths)))


def _weight_value(b: _Builder, model: _Statement, paths: Sequence[_Path], scale: float | None = None,
                  split: tuple[int, ...] = ()) -> str:
    """``[(n,) P, *block]``: the weight blocks of ``paths`` (a view when they are consecutive);
    the path axis is viewed as ``split`` when given."""
    block = paths[0].block
    starts = tuple(p.offset for p in paths)
    size = paths[0].block_size
    consecutive = all(s2 == s1 + size for s1, s2 in zip(starts, starts[1:], strict=False))
    shape = ((-1,) if model.external else ()) + (split or (len(paths),)) + block
    source = model.weight_source
    statement = model.statement
    comment = f"weights of {_paths_text(paths)}" + (f", times 1/sqrt({paths[0].fan_in})" if scale else "")
    key = ("weights", model.index, starts, scale, split)
    if consecutive:
        return b.value(key, f"w_{statement.target}_{statement.index}", lambda t: Step(
            t, "weights", (), source=source, start=starts[0], stop=starts[0] + size * len(paths), shape=shape,
            scale=scale, comment=comment, statement=statement.index, size=0))
    if all(start % size == 0 for start in starts) and model.numel % size == 0:
        # gather whole blocks of a [(n,) blocks, size] view: one index per block, not per number
        # (gathering numbers along the last axis of per-sample weights was 15% of a forward)
        index = b.index_buffer(tuple(start // size for start in starts), 1, f"idx_{statement.target}_{statement.index}",
                               f"which blocks of {size} weights the {_paths_text(paths)} use")
        return b.value(key, f"w_{statement.target}_{statement.index}", lambda t: Step(
            t, "weights", (), source=source, index=index, shape=shape, scale=scale, comment=comment,
            statement=statement.index, size=0, stop=size))
    index = b.index_buffer(starts, size, f"idx_{statement.target}_{statement.index}",
                           f"where the weights of {_paths_text(paths)} start ({size} numbers each)")
    return b.value(key, f"w_{statement.target}_{statement.index}", lambda t: Step(
        t, "weights", (), source=source, index=index, shape=shape, scale=scale, comment=comment,
        statement=statement.index, size=0))


def _paths_text(paths: Sequence[_Path]) -> str:
    if len(paths) == 1:
        return f"path {paths[0].position}"
    positions = [p.position for p in paths]
    if positions == list(range(positions[0], positions[-1] + 1)):
        return f"paths {positions[0]}..{positions[-1]}"
    return f"{len(paths)} paths"


# -- q mode: couple every path into its own slot, then weight each output entry -------------------

def _emit_q_weights(b: _Builder, model: _Statement, paths: list[_Path], layout: _Layout, group: _GroupPlan,
                    comment: str, order: str, in_parts: bool) -> str:
    """Couple the paths (run by run of alike output entries, ``in_parts``), then weight each run
    at once.

    Parts pay off for stacked operands, whose coupled tensor is wide (a hand-written prototype of
    the 32-channel channelwise product, N = 16384: 283 → 196 ms forward); for one-entry groups
    they only add small products (8 channels: 3.4 → 4.7 ms at N = 1024, 72 → 92 ms at 16384),
    so those slice one coupled tensor."""
    statement = model.statement
    channels = _q_channels(statement)
    chan_sizes = _q_channel_sizes(model, paths)
    by_entry: dict[int, list[int]] = {}
    for position, (path, _) in enumerate(layout.slots):
        assert path is not None
        by_entry.setdefault(path.output.index, []).append(position)
    runs = [[by_entry[e] for e in run] for run in _entry_runs(layout, by_entry)]
    ranges = [(layout.offset(run[0][0]), sum(layout.dims[k] for positions in run for k in positions))
              for run in runs]
    coupled = _emit_network_parts(b, group, f"{statement.target}_t", comment, statement.index, ranges, in_parts)
    for run, part in zip(runs, coupled, strict=True):
        if len(run) == 1:
            _q_entry(b, model, layout, run[0], part, channels, chan_sizes)
        else:
            _q_run(b, model, layout, run, part, channels, chan_sizes)
    return f"{order}, coupled and then ·W per run of alike output entries"


def _entry_runs(layout: _Layout, by_entry: dict[int, list[int]]) -> list[list[int]]:
    """Consecutive output entries with equal (paths, dim, multiplicity): weighted in one operation
    whose result ``[n, E, mul, dim]`` is already their ``mul_ir`` layout."""
    runs: list[list[int]] = []
    shape: dict[int, tuple[int, int, int]] = {}
    for entry, positions in by_entry.items():
        item = layout.slots[positions[0]][1]
        shape[entry] = (len(positions), item.dim, item.mul)
        if runs and runs[-1][-1] == entry - 1 and shape[runs[-1][-1]] == shape[entry]:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _q_run(b: _Builder, model: _Statement, layout: _Layout, positions: list[list[int]], coupled: _Coupled,
           channels: str, chan_sizes: dict[str, int]) -> None:
    statement = model.statement
    count, per = len(positions), len(positions[0])
    entries = [layout.slots[p[0]][1] for p in positions]
    dim = entries[0].dim
    chan_shape = tuple(chan_sizes[c] for c in channels)
    text = f"the coupled paths into {statement.target}[{entries[0].item}] x {count}, entry by entry"
    view = _coupled_view(b, coupled, layout.offset(positions[0][0]), chan_shape, (count, per, dim),
                         f"{statement.target}_paths", text)
    paths = [layout.slots[k][0] for p in positions for k in p]
    weights = _weight_value(b, model, [p for p in paths if p is not None], split=(count, per))
    w_indices = (BATCH if model.external else "") + "ep" + _weight_letters(statement)
    out_chan = _out_channels(statement)
    equation = f"{BATCH}{channels}epk,{w_indices}->{BATCH}e{out_chan}k"
    sizes = {**chan_sizes, "e": count, "p": per, "k": dim}
    net = Network((BATCH + channels + "epk", w_indices), BATCH + "e" + out_chan + "k", _network_sizes(sizes))
    text = (f"{statement.target}[{entries[0].item} x {count}] = Σ_p W_p · coupled path p, "
            f"entries {entries[0].index}..{entries[-1].index} in their mul_ir layout")
    var = _contract(b, f"{statement.target}_{_irrep_hint(entries[0], _leg_entries(b.diagram, entries[0].leg))}",
                    (view, weights), equation, net, text, statement.index)
    result = _Result(var, (entries[0].mul,), tuple((e.index, k) for k, e in enumerate(entries)), dim, True)
    b.results.setdefault(statement.target, []).append(result)


def _coupled_view(b: _Builder, coupled: _Coupled, offset: int, chan_shape: tuple[int, ...],
                  slot_shape: tuple[int, ...], hint: str, comment: str) -> str:
    """``[n, *channels, *slot_shape]``: the slots from layout offset ``offset`` of ``coupled``. A
    whole part is only reshaped: a slice would cost a zero-filled gradient in backward."""
    var, start, width = coupled.var, offset, math.prod(slot_shape)
    shape = (-1, *chan_shape, *slot_shape)
    size = math.prod(chan_shape) * width
    if coupled.whole:
        return b.value(("reshape", var, shape), hint,
                       lambda t: Step(t, "reshape", (var,), shape=shape, size=size, comment=comment))
    return b.value(("narrow", var, start, width, shape), hint,
                   lambda t: Step(t, "narrow", (var,), start=start, stop=start + width, shape=shape, size=size,
                                  comment=comment))


def _q_channel_sizes(model: _Statement, paths: Sequence[_Path]) -> dict[str, int]:
    letters = _leaf_channels(model.statement)
    found: dict[str, int] = {}
    for k, letter in enumerate(letters):
        found.setdefault(letter, paths[0].leaves[k].mul)
    found["w"] = paths[0].output.mul
    return found


def _q_entry(b: _Builder, model: _Statement, layout: _Layout, positions: list[int], coupled: _Coupled,
             channels: str, chan_sizes: dict[str, int]) -> None:
    statement = model.statement
    paths = [layout.slots[k][0] for k in positions]
    entry = layout.slots[positions[0]][1]
    chan_shape = tuple(chan_sizes[c] for c in channels)
    text = f"the {len(positions)} coupled path{'s' * (len(positions) != 1)} into {statement.target}[{entry.item}]"
    view = _coupled_view(b, coupled, layout.offset(positions[0]), chan_shape, (len(positions), entry.dim),
                         f"{statement.target}_paths", text)
    weights = _weight_value(b, model, [p for p in paths if p is not None])
    w_indices = (BATCH if model.external else "") + "p" + _weight_letters(statement)
    out_chan = _out_channels(statement)
    equation = f"{BATCH}{channels}pk,{w_indices}->{BATCH}{out_chan}k"
    sizes = {**chan_sizes, "p": len(positions), "k": entry.dim}
    net = Network((BATCH + channels + "pk", w_indices), BATCH + out_chan + "k", _network_sizes(sizes))
    text = f"{statement.target}[{entry.item}] = Σ_p W_p · coupled path p"
    hint = f"{statement.target}_{_irrep_hint(entry, _leg_entries(b.diagram, entry.leg))}"
    var = _contract(b, hint, (view, weights), equation, net, text, statement.index)
    _add_result(b, statement.target, var, (entry.mul,), _Layout(((None, entry),), (entry.dim,)))


def _add_result(b: _Builder, leg: str, var: str, channels: tuple[int, ...], layout: _Layout) -> None:
    entries = tuple((e.index, layout.offset(k)) for k, (_, e) in enumerate(layout.slots))
    b.results.setdefault(leg, []).append(_Result(var, channels, entries, layout.size))


# -- linear maps -------------------------------------------------------------------------------------

def _linear_groups(model: _Statement) -> list[list[_Path]]:
    found: dict[int, list[_Path]] = {}
    for path in model.paths:
        found.setdefault(path.output.index, []).append(path)
    return list(found.values())


def _emit_linear(b: _Builder, model: _Statement, paths: list[_Path]) -> str:
    """One output entry of a linear map: ``Σ_paths x_e · W_p / sqrt(fan_in)``."""
    statement = model.statement
    entry = paths[0].output
    alpha = 1.0 / math.sqrt(paths[0].fan_in)
    terms = []
    for path in paths:
        x = _piece_var(b, _piece(b, path.leaves[0]))
        w = _weight_value(b, model, [path], alpha)
        terms.append(_linear_term(b, model, path, x, w))
    if len(terms) > 1:
        args = tuple(terms)
        size = entry.mul * entry.dim
        var = b.value(("add",) + args, f"{statement.target}_{statement.index}_sum", lambda t: Step(
            t, "add", args, comment=f"{len(args)} paths into {statement.target}[{entry.item}]",
            statement=statement.index,
            flops=size * (len(args) - 1), size=size))
    else:
        var = terms[0]
    _add_result(b, statement.target, var, (entry.mul,), _Layout(((None, entry),), (entry.dim,)))
    return "x·W"


def _linear_term(b: _Builder, model: _Statement, path: _Path, x: str, w: str) -> str:
    statement = model.statement
    entry_in, entry = path.leaves[0], path.output
    w_indices = (BATCH if model.external else "") + "p" + {"uvw": "uw", "uvu": "u", "uuu": "u"}[statement.channels]
    if statement.weights == "path" and statement.channels != "uvw":
        w_indices = "p"
    out = "w" if statement.channels == "uvw" else "u"
    equation = f"nuk,{w_indices}->n{out}k"
    sizes = {"u": entry_in.mul, "w": entry.mul, "k": entry.dim, "p": 1}
    net = Network(("nuk", w_indices), f"n{out}k", _network_sizes(sizes))
    comment = f"{statement.target}[{entry.item}] ← {entry_in.leg}[{entry_in.item}] · W"
    hint = f"{statement.target}_{_irrep_hint(entry, _leg_entries(b.diagram, entry.leg))}"
    return _contract(b, hint, (x, w), equation, net, comment, statement.index)


# -- naive cost ------------------------------------------------------------------------------------

def _path_network(statement: ir.Statement, path: _Path) -> tuple[list[str], str, dict[str, int]]:
    """The per-path network: leaves, one coupling per vertex, weights (natural order)."""
    channels = _leaf_channels(statement)
    sizes: dict[str, int] = {}
    inputs = []
    for k, entry in enumerate(path.leaves):
        sizes[channels[k]] = entry.mul
        sizes[_COMPONENTS[k]] = entry.dim
        inputs.append(BATCH + channels[k] + _COMPONENTS[k])
    sizes["w"] = path.output.mul
    sizes["k"] = path.output.dim
    if statement.is_linear:
        inputs = [BATCH + channels[0] + "k"]
    else:
        inputs += _path_vertex_indices(statement, path, sizes)
    letters = _weight_letters(statement)
    if statement.weights != "none":
        weight = (BATCH if statement.weights == "external" else "") + letters
        inputs.append(weight if weight else "")
    return inputs, BATCH + _out_channels(statement) + "k", sizes


def _path_vertex_indices(statement: ir.Statement, path: _Path, sizes: dict[str, int]) -> list[str]:
    out = []
    for number, vertex in enumerate(statement.vertices):
        root = number == len(statement.vertices) - 1
        letters = []
        for child in (vertex.left, vertex.right):
            if isinstance(child, ir.LeafRef):
                letters.append(_COMPONENTS[child.position])
            else:
                letters.append(_INNER[statement.vertices.index(child)])
        own = "k" if root else _INNER[number]
        if not root:
            sizes[own] = path.path.inner[number].dim
        out.append("".join(letters) + own)
    return out


def naive_flops(diagram: ir.Diagram, statement: ir.Statement) -> int:
    """Per-sample FLOPs of every path contracted on its own, in the worse of two natural orders
    (left to right: leaves, couplings, weights; or weights first), plus the additions that sum
    the paths into their output entries.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x, y : 1o\\n output z : 0e\\n x, y -> z }").diagram()
    >>> naive_flops(d, d.statements[0])
    27
    """
    fan_ins = fan_in_totals(diagram)
    paths = _raw_paths(diagram, statement, fan_ins)
    into = Counter(p.output.index for p in paths)
    total = sum((count - 1) * _leg_entries(diagram, statement.target)[entry].item.dim
                for entry, count in into.items())
    for path in paths:
        inputs, output, sizes = _path_network(statement, path)
        net = Network(tuple(inputs), output, _network_sizes(sizes))
        orders = [_left_to_right(len(inputs))]
        if statement.weights != "none":
            orders.append(_left_to_right_from(len(inputs), len(inputs) - 1))
        total += max(tree_cost(net, tree).per_sample for tree in orders)
    return total


def _left_to_right(count: int) -> Tree:
    tree: Tree = 0
    for k in range(1, count):
        tree = (tree, k)
    return tree


def _left_to_right_from(count: int, first: int) -> Tree:
    tree: Tree = first
    for k in range(count):
        if k != first:
            tree = (tree, k)
    return tree


# -- choosing a strategy ---------------------------------------------------------------------------

def traffic(steps: Sequence[Step]) -> int:
    """Numbers per sample that the operations read and write (the memory-traffic estimate)."""
    size = {s.target: s.size for s in steps}
    return sum(s.size + sum(size.get(a, 0) for a in s.args) for s in steps if s.is_op)


def model_features(steps: Sequence[Step], batch: int = REFERENCE_BATCH) -> dict[str, float]:
    """What the run-time model charges for, at ``batch`` samples: operations, FLOPs by kind of
    operation, small matrix products, batch-free FLOPs per call, and bytes of memory traffic."""
    flops = {"gemm": 0, "batched": 0, "elementwise": 0}
    for step in steps:
        kind = "elementwise" if step.kind in ("mul", "add") else "batched" if step.batched else "gemm"
        flops[kind] += step.flops * batch
    return {"operations": sum(1 for step in steps if step.is_op), "gemm_flops": flops["gemm"],
            "batched_flops": flops["batched"], "elementwise_flops": flops["elementwise"],
            "batched_matrices": sum(step.matrices for step in steps) * batch,
            "setup_flops": sum(step.setup_flops for step in steps),
            "bytes": traffic(steps) * BYTES_PER_NUMBER * batch}


def model_seconds() -> dict[str, float]:
    """Seconds per unit of every :func:`model_features` entry (the fitted constants)."""
    return {"operations": OP_OVERHEAD, "gemm_flops": 1 / GEMM_FLOP_RATE, "batched_flops": 1 / BATCHED_FLOP_RATE,
            "elementwise_flops": 1 / ELEMENTWISE_FLOP_RATE, "batched_matrices": MATRIX_OVERHEAD,
            "setup_flops": 1 / SETUP_FLOP_RATE,
            "bytes": 1 / BYTE_RATE}


def _estimate_large(steps: Sequence[Step]) -> float:
    """Estimated seconds for :data:`LARGE_BATCH` samples, run in CPU chunks as generated code does."""
    chunk = min(batch_chunk(steps), LARGE_BATCH)
    return math.ceil(LARGE_BATCH / chunk) * _estimate(steps, chunk)


def _estimate(steps: Sequence[Step], batch: int = REFERENCE_BATCH) -> float:
    """Estimated seconds for ``batch`` samples (the ranking model)."""
    unit = model_seconds()
    return sum(value * unit[name] for name, value in model_features(steps, batch).items())


@dataclass(frozen=True)
class _Choice:
    strategy: _Strategy
    builder: _Builder
    orders: tuple[str, ...]
    flops: int
    seconds: float                                   # estimated at REFERENCE_BATCH
    large: float                                     # estimated at LARGE_BATCH
    estimates: tuple[tuple[str, float], ...] = ()   # every strategy's estimate, chosen first


def _choose(b: _Builder, model: _Statement) -> _Choice:
    """The strategy that is never far from the fastest estimate, at a small batch (where the
    number of operations counts) and at a large one (where FLOPs and traffic do): the least
    worst ratio to the fastest at either. Dense stacks may execute more FLOPs than the naive
    count (their zero blocks) and still win by running fewer operations."""
    choices = []
    for strategy in _strategies(model):
        trial = b.fork()
        before = len(trial.steps)
        orders = tuple(_apply_strategy(trial, model, strategy))
        new = trial.steps[before:]
        choices.append(_Choice(strategy, trial, orders, sum(s.flops for s in new), _estimate(new),
                               _estimate_large(new)))
    small, large = min(c.seconds for c in choices), min(c.large for c in choices)

    def regret(c: _Choice) -> tuple[float, float, int]:
        # (an all-view statement costs nothing: every strategy then ties)
        return max(c.seconds / small if small else 1.0, c.large / large if large else 1.0), c.seconds, c.flops
    ranked = sorted(choices, key=regret)
    return replace(ranked[0], estimates=tuple((c.strategy.label, c.seconds) for c in ranked))


# -- the report ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatementReport:
    """What the planner decided for one statement."""

    index: int
    line: int
    text: str
    target: str
    paths: int
    kept_paths: int
    strategy: str
    orders: tuple[str, ...]
    naive_flops: int
    planned_flops: int
    setup_flops: int
    operations: int
    parameters: int
    redundant_parameters: int
    # every strategy tried, with its estimated milliseconds at REFERENCE_BATCH, in order of preference
    estimates_ms: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class OutputReport:
    """Costs of everything an output needs (every statement it depends on)."""

    leg: str
    statements: tuple[int, ...]
    naive_flops: int
    planned_flops: int
    setup_flops: int
    peak_intermediate: int
    orders: tuple[str, ...]
    shared: tuple[str, ...]
    parameters: int
    redundant_parameters: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class PlanReport:
    """The planner's report on one diagram (FLOPs are per sample unless called setup).

    ``naive``: every path contracted on its own in the worse natural order; ``planned``: what
    the generated forward executes (stacked tables count their zeros), shared steps once."""

    diagram: str
    outputs: tuple[OutputReport, ...]
    statements: tuple[StatementReport, ...]
    shared: tuple[str, ...]
    operations: int
    tables: int
    table_numbers: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"diagram": self.diagram, "outputs": [o.to_dict() for o in self.outputs],
                "statements": [s.to_dict() for s in self.statements], "shared": list(self.shared),
                "operations": self.operations, "tables": self.tables, "table_numbers": self.table_numbers}

    def explain(self) -> str:
        """A plain-text table of the plan."""
        from .codegen import explain_report

        return explain_report(self)


def combined_report(diagram: str, programs: Sequence[Program]) -> PlanReport:
    """One report for a diagram compiled as several planned sub-diagrams (graph diagrams)."""
    reports = [p.report for p in programs]
    statements = tuple(replace(s, text=f"{s.text}  [{r.diagram}]") for r in reports for s in r.statements)
    outputs = tuple(replace(o, leg=f"{o.leg} [{r.diagram}]") for r in reports for o in r.outputs)
    return PlanReport(diagram, outputs, statements, tuple(v for r in reports for v in r.shared),
                      sum(r.operations for r in reports), sum(r.tables for r in reports),
                      sum(r.table_numbers for r in reports))


# -- the pass --------------------------------------------------------------------------------------

def plan_diagram(diagram: ir.Diagram, file: str | None = None) -> Program:
    """Plan the forward of a checked diagram.

    ``file`` names the source in ``# FILE:LINE`` comments (default: the diagram's source name).
    Raises :class:`FusionError` (E601) for statements beyond the planner's limits.
    """
    _check_limits(diagram)
    file = file or _file_name(diagram)
    b = _Builder(diagram, file)
    inputs = _declare_inputs(b)
    fan_ins = fan_in_totals(diagram)
    models, weights = _weight_sources(b, diagram, fan_ins)
    reports = []
    for statement in statement_order(diagram):
        model = models[statement.index]
        naive = naive_flops(diagram, statement)
        before = len(b.steps)
        choice = _choose(b, model)
        b = choice.builder
        reports.append(_statement_report(b, model, choice, naive, b.steps[before:]))
    outputs = _emit_outputs(b)
    return _program(b, inputs, outputs, models, weights, tuple(sorted(reports, key=lambda r: r.index)))


def _leg_line(diagram: ir.Diagram, leg: ir.Leg) -> int:
    return diagram.source.position(leg.span.start).line if diagram.source is not None else 0


def _file_name(diagram: ir.Diagram) -> str:
    from pathlib import PurePath

    name = diagram.source.name if diagram.source is not None else "<string>"
    return PurePath(name).name if not name.startswith("<") else name


def _check_limits(diagram: ir.Diagram) -> None:
    graph = (any(leg.domain != "batch" for leg in diagram.legs)
             or any(ref.via for s in diagram.statements for ref in s.leaves)
             or any(s.per or s.aggregate for s in diagram.statements))
    if graph:
        raise FusionError([Diagnostic("E601", f"`{diagram.name}` is a graph diagram (or has per-class weights): "
                                      "plan each of its contractions", diagram.span, diagram.source,
                                      hint="use fusionlang.codegen.plan_unit(diagram), or fusionlang.api.compile")])
    for statement in diagram.statements:
        if statement.arity > MAX_LEAVES:
            raise FusionError([Diagnostic("E601", f"a statement with {statement.arity} leaves is beyond the "
                                          f"planner (at most {MAX_LEAVES})", statement.span, diagram.source,
                                          hint="split it through internal edges")])


def _declare_inputs(b: _Builder) -> tuple[LegIO, ...]:
    found = []
    for leg in b.diagram.inputs:
        var = b.fresh(leg.name)
        irreps = b.diagram.irreps(leg.name)
        b.steps.append(Step(var, "input", (var,), shape=(-1, irreps.dim), line=_leg_line(b.diagram, leg),
                            comment=f"{leg.name}: {irreps} as [n, {irreps.dim}]"))
        b.memo[("input", leg.name)] = var
        found.append(LegIO(leg.name, var, irreps.dim, str(irreps)))
    return tuple(found)


def _weight_sources(b: _Builder, diagram: ir.Diagram, fan_ins: dict[tuple[str, int], int]
                    ) -> tuple[dict[int, _Statement], list[Parameter | WeightInput]]:
    models: dict[int, _Statement] = {}
    weights: list[Parameter | WeightInput] = []
    for statement in diagram.statements:
        name = ""
        if statement.weights == "external":
            name = b.fresh(f"weights_{statement.target}_{statement.index}")
        elif statement.weights != "none":
            name = b.fresh(f"weight_{statement.target}_{statement.index}")
        source = f"self.{name}" if statement.weights not in ("none", "external") else name
        model = _statement_model(diagram, statement, fan_ins, source)
        models[statement.index] = model
        if statement.weights == "external":
            weights.append(WeightInput(name, statement.index, model.numel, model.redundant_numel))
            if model.numel:
                b.steps.append(Step(name, "input", (name,), shape=(-1, model.numel), line=statement.line,
                                    comment=f"external weights of {_statement_text(statement)} as [n, {model.numel}]"))
        elif statement.weights != "none":
            weights.append(Parameter(name, statement.index, model.numel, model.redundant_numel,
                                     f"{_statement_text(statement)}: {len(model.paths)} weighted paths"))
    return models, weights


def _emit_outputs(b: _Builder) -> tuple[LegIO, ...]:
    found = []
    for leg in b.diagram.outputs:
        irreps = b.diagram.irreps(leg.name)
        b.line = _leg_line(b.diagram, leg)
        pieces = _leg_pieces(b, leg.name)
        args, widths = _output_pieces(b, leg.name, pieces)
        var = b.fresh(leg.name)
        b.steps.append(Step(var, "output", args, widths=widths, shape=(irreps.dim,), line=_leg_line(b.diagram, leg),
                            comment=f"{leg.name}: {irreps} in the mul_ir layout", size=irreps.dim))
        found.append(LegIO(leg.name, var, irreps.dim, str(irreps)))
    return tuple(found)


def _output_pieces(b: _Builder, leg: str, pieces: dict[int, _Piece]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Per entry a variable and its flat width; runs of mul-1 entries in one variable merge."""
    entries = _leg_entries(b.diagram, leg)
    args: list[str] = []
    widths: list[int] = []
    k = 0
    while k < len(entries):
        selected = _select_run(pieces, entries, k)
        if selected:
            first = pieces[k]
            args.append(_select_var(b, first.var, first.select, selected, pieces, entries[k]))
            widths.append(sum(entries[k + j].item.dim for j in range(selected)))
            k += selected
            continue
        run = _mul_one_run(pieces, entries, k)
        if run > 1:
            first, last = pieces[k], pieces[k + run - 1]
            merged = _Piece(first.var, first.start, last.start + last.dim - first.start, (1,), first.width)
            args.append(_piece_var(b, merged))
            widths.append(merged.dim)
            k += run
            continue
        piece = pieces[k]
        args.append(_piece_var(b, piece))
        widths.append(entries[k].item.dim)
        k += 1
    return tuple(args), tuple(widths)


def _select_run(pieces: dict[int, _Piece], entries: Sequence[_Entry], k: int) -> int:
    """How many entries from ``k`` on are consecutive slices ``var[:, j], var[:, j + 1], ...``."""
    first = pieces[k]
    if first.select < 0:
        return 0
    run = 0
    while k + run < len(entries):
        piece = pieces[k + run]
        if piece.var != first.var or piece.select != first.select + run:
            break
        run += 1
    return run


def _select_var(b: _Builder, var: str, start: int, count: int, pieces: dict[int, _Piece], entry: _Entry) -> str:
    """``var[:, start:start + count]``: consecutive entries of an entry-major result (a view)."""
    total = _producer_entries(b, var)
    if (start, count) == (0, total):
        return var
    piece = pieces[entry.index]
    return b.value(("narrow", var, 1, start, count), f"{var}_part",
                   lambda t: Step(t, "narrow", (var,), start=start, stop=start + count, axis=1,
                                  size=count * math.prod(piece.channels) * piece.dim))


def _producer_entries(b: _Builder, var: str) -> int:
    for results in b.results.values():
        for result in results:
            if result.var == var:
                return len(result.entries)
    return -1


def _mul_one_run(pieces: dict[int, _Piece], entries: Sequence[_Entry], k: int) -> int:
    run = 0
    first = pieces[k]
    position = first.start
    while k + run < len(entries):
        piece = pieces[k + run]
        if piece.channels != (1,) or piece.var != first.var or piece.start != position or piece.select >= 0:
            break
        position += piece.dim
        run += 1
    return run


def _statement_report(b: _Builder, model: _Statement, choice: _Choice, naive: int,
                      steps: Sequence[Step]) -> StatementReport:
    statement = model.statement
    return StatementReport(
        statement.index, statement.line, _statement_text(statement), statement.target, model.all_paths,
        len(model.paths), choice.strategy.label, choice.orders, naive, sum(s.flops for s in steps),
        sum(s.setup_flops for s in steps), sum(1 for s in steps if s.is_op), model.numel, model.redundant_numel,
        tuple((label, round(seconds * 1e3, 3)) for label, seconds in choice.estimates))


def _statement_text(statement: ir.Statement) -> str:
    def text(node: ir.Node, top: bool) -> str:
        if isinstance(node, ir.LeafRef):
            return node.leg
        inner = ", ".join(text(n, False) for n in (node.left, node.right))
        return inner if top else f"({inner})"
    return f"{text(statement.tree, True)} -> {statement.target}"


def _program(b: _Builder, inputs: tuple[LegIO, ...], outputs: tuple[LegIO, ...], models: dict[int, _Statement],
             weights: list[Parameter | WeightInput], reports: tuple[StatementReport, ...]) -> Program:
    parameters = tuple(w for w in weights if isinstance(w, Parameter))
    externals = tuple(w for w in weights if isinstance(w, WeightInput))
    shared = tuple(sorted(var for var, users in b.users.items() if len({u for u in users}) > 1))
    kept = tuple((index, tuple(p.position for p in m.paths)) for index, m in sorted(models.items()))
    steps = _live_steps(b.steps, [io.var for io in outputs])
    used = {a.removeprefix("self.") for step in steps for a in (*step.args, step.index, step.source)}
    report = _plan_report(b, reports, shared, models)
    tables = tuple(sorted((t for t in b.tables.values() if t.name in used), key=lambda t: t.name))
    indices = tuple(sorted((i for i in b.indices.values() if i.name in used), key=lambda i: i.name))
    warnings = tuple(_zero_warning(b, entry) for entry in b.zero_entries)
    return Program(b.diagram, inputs, outputs, parameters, externals, tables, indices, steps, kept, report, warnings)


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


def _zero_warning(b: _Builder, entry: _Entry) -> Diagnostic:
    leg = b.diagram.leg(entry.leg)
    return Diagnostic("E603", f"`{entry.leg}` entry {entry.item} is always zero: every path into it is "
                      "antisymmetric in a leg that is read twice", leg.span, b.diagram.source, severity="warning",
                      hint=f"drop {entry.irrep} from `{entry.leg}`, or read different legs")


def _live_steps(steps: Sequence[Step], results: Sequence[str]) -> tuple[Step, ...]:
    """The steps the results depend on (inputs are always kept), in order."""
    needed = set(results)
    kept = []
    for step in reversed(steps):
        if step.target in needed or step.kind == "input":
            kept.append(step)
            needed.update(step.args)
    return tuple(reversed(kept))


def _plan_report(b: _Builder, statements: tuple[StatementReport, ...], shared: tuple[str, ...],
                 models: dict[int, _Statement]) -> PlanReport:
    outputs = tuple(_output_report(b, leg.name, statements, shared) for leg in b.diagram.outputs)
    ops = sum(1 for s in b.steps if s.is_op)
    numbers = sum(t.spec.numel for t in b.tables.values())
    return PlanReport(b.diagram.name, outputs, statements, shared, ops, len(b.tables), numbers)


def _upstream(diagram: ir.Diagram, leg: str) -> list[int]:
    found: set[int] = set()
    pending = [leg]
    while pending:
        name = pending.pop()
        for statement in diagram.writers(name):
            if statement.index not in found:
                found.add(statement.index)
                pending += [ref.leg for ref in statement.leaves]
    return sorted(found)


def _output_report(b: _Builder, leg: str, statements: tuple[StatementReport, ...],
                   shared: tuple[str, ...]) -> OutputReport:
    indices = _upstream(b.diagram, leg)
    mine = [s for s in statements if s.index in indices]
    steps = [s for s in b.steps if s.statement in indices]
    used = {a for s in steps for a in s.args} | {s.target for s in steps}
    return OutputReport(
        leg, tuple(indices), sum(s.naive_flops for s in mine), sum(s.planned_flops for s in mine),
        sum(s.setup_flops for s in mine), max((s.size for s in steps), default=0),
        tuple(o for s in mine for o in s.orders), tuple(v for v in shared if v in used),
        sum(s.parameters for s in mine), sum(s.redundant_parameters for s in mine))
