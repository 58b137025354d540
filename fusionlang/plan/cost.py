"""The run-time model that ranks strategies, the choice, and the naive FLOP count.

The model's constants were fitted to the measured times of every strategy on 19 statements (fully
connected, channelwise, three-leaf and symmetric products of several sizes, tree4; 2 threads) by
minimising how much slower the strategy it estimates fastest at REFERENCE_BATCH is than the
fastest measured: `python benchmarks/fit_time_model.py` (on the fit's own measurements, 2% slower
on average and 8% at worst; the previous constants with the rule "no more FLOPs than the naive
count", on an earlier run of the same suite, 21% and 2.2x). :func:`choose` also weighs
LARGE_BATCH, which the fit does not measure: `bench_tensor_products.py --sweep` checks those
choices against e3nn. The constants are what ranks best, not physical rates; reported numbers are
exact counts.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .. import ir
from ..diagnostics import Diagnostic, FusionError
from ..limits import DEFAULT
from ..weights import path_normalisers, weight_letters
from .batches import BYTES_PER_NUMBER, LARGE_BATCH, REFERENCE_BATCH
from .builder import Builder
from .geometry import COMPONENTS, INNER, PathModel, leaf_channels, out_channels
from .model import StatementModel, statement_model
from .networks import network_sizes
from .packing import packed_tables, running_numbers
from .paths import BATCH, Network, left_to_right, left_to_right_from, tree_cost
from .program import Step, batch_chunk
from .strategies import AUTO, Strategy, applicable_strategies, fallback_strategies, group_count

# The run-time model (CPU, float32, a reference batch); see the module docstring for the fit.
OP_OVERHEAD = 6.7e-5            # s per emitted operation (dispatch, allocation, small tensors)
GEMM_FLOP_RATE = 1.7e11         # FLOP/s of einsums with one batch-free operand (one large product)
BATCHED_FLOP_RATE = 4.5e10      # FLOP/s of einsums batched on both operands (many small products)
ELEMENTWISE_FLOP_RATE = 2.4e12  # FLOP/s of broadcast products and sums
MATRIX_OVERHEAD = 1.6e-11       # s per small matrix product of a batched einsum
SETUP_FLOP_RATE = 2.7e12        # FLOP/s of batch-free work (per call)
BYTE_RATE = 5.2e10              # B/s of memory traffic: every operation reads its operands, writes its result
# s per number a gather or scatter-add moves (the sparse form: rows of nonzeros; not part of the
# fit above, set from the sparse form's measured times: `benchmarks/bench_sparse.py`)
SPARSE_NUMBER_SECONDS = 1.5e-9

# Memory: a plan's coupling tables may hold at most TABLE_MEMORY_FACTOR times the per-path
# coupling tensors (what e3nn stores), or SMALL_TABLE_NUMBERS (1 MiB of float32), whichever is
# more. Dense stacks of high spins are mostly zeros and reach hundreds of MiB (l = 6 fully
# connected: 48 MiB against 0.2 MiB per path, and 3.4x slower), which the time model alone does
# not see: tables are read once per call, so their bytes vanish next to a large batch.
TABLE_MEMORY_FACTOR = 2
SMALL_TABLE_NUMBERS = 1 << 18


def _path_network(statement: ir.Statement, path: PathModel) -> tuple[list[str], str, dict[str, int]]:
    """The per-path network: leaves, one coupling per vertex, weights (natural order)."""
    channels = leaf_channels(statement)
    sizes: dict[str, int] = {}
    inputs = []
    for k, entry in enumerate(path.leaves):
        sizes[channels[k]] = entry.mul
        sizes[COMPONENTS[k]] = entry.dim
        inputs.append(BATCH + channels[k] + COMPONENTS[k])
    sizes["w"] = path.output.mul
    sizes["k"] = path.output.dim
    if statement.is_linear:
        inputs = [BATCH + channels[0] + "k"]
    else:
        inputs += _path_vertex_indices(statement, path, sizes)
    letters = weight_letters(statement, leaf_channels(statement))
    if statement.weights != "none":
        weight = (BATCH if statement.weights == "external" else "") + letters
        inputs.append(weight if weight else "")
    return inputs, BATCH + out_channels(statement) + "k", sizes


def _path_vertex_indices(statement: ir.Statement, path: PathModel, sizes: dict[str, int]) -> list[str]:
    out = []
    for number, vertex in enumerate(statement.vertices):
        root = number == len(statement.vertices) - 1
        letters = []
        for child in (vertex.left, vertex.right):
            if isinstance(child, ir.LeafRef):
                letters.append(COMPONENTS[child.position])
            else:
                letters.append(INNER[statement.vertices.index(child)])
        own = "k" if root else INNER[number]
        if not root:
            sizes[own] = path.path.inner[number].dim
        out.append("".join(letters) + own)
    return out


def naive_flops(diagram: ir.Diagram, statement: ir.Statement) -> int:
    """Per-sample FLOPs of every path contracted on its own, in the worse of two natural orders
    (left to right: leaves, couplings, weights; or weights first), plus the additions that sum
    the paths into their output entries (:func:`model_naive_flops` of the statement's model).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x, y : 1o\\n output z : 0e\\n x, y -> z }").diagram()
    >>> naive_flops(d, d.statements[0])
    27
    """
    return model_naive_flops(statement_model(diagram, statement, path_normalisers(diagram)))


def model_naive_flops(model: StatementModel) -> int:
    """:func:`naive_flops` of a statement's model (every path, kept or not)."""
    statement = model.statement
    total = path_sum_flops(model)
    for path in model.every_path:
        inputs, output, sizes = _path_network(statement, path)
        total += _naive_path_flops(Network(tuple(inputs), output, network_sizes(sizes)), statement.weights != "none")
    return total


@functools.lru_cache(maxsize=4096)
def _naive_path_flops(net: Network, weighted: bool) -> int:
    """One path's naive FLOPs: the costlier of the left-to-right orders. Paths of equal dimensions
    have equal networks, so this is computed once per shape (a four-statement SU(2) diagram costed
    6 684 paths, 2.4 of its 8 s of planning)."""
    count = len(net.inputs)
    orders = [left_to_right(count)] + ([left_to_right_from(count, count - 1)] if weighted else [])
    return max(tree_cost(net, tree).per_sample for tree in orders)


def per_path_numbers(model: StatementModel) -> int:
    """Numbers of every path's own dense coupling tensor ``P[i_1, ..., i_n, k]`` (what a
    per-path contraction, e3nn's, stores).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x, y : 1o\\n output z : 0e + 2e\\n x, y -> z }").diagram()
    >>> from fusionlang.weights import path_normalisers
    >>> per_path_numbers(statement_model(d, d.statements[0], path_normalisers(d)))
    54
    """
    return sum(math.prod(entry.dim for entry in path.leaves) * path.output.dim for path in model.every_path)


def memory_budget(model: StatementModel) -> int:
    """The most coupling-table numbers a plan of ``model``'s statement should hold (see
    :data:`TABLE_MEMORY_FACTOR`); a soft bound: when no strategy fits, the smallest fit wins."""
    return max(TABLE_MEMORY_FACTOR * per_path_numbers(model), SMALL_TABLE_NUMBERS)


def path_sum_flops(model: StatementModel) -> int:
    """The additions that sum every path into its output entry (per sample)."""
    into = Counter(p.output.index for p in model.every_path)
    dims = {p.output.index: p.output.item.dim for p in model.every_path}
    return sum((count - 1) * dims[entry] for entry, count in into.items())


def traffic(steps: Sequence[Step]) -> int:
    """Numbers per sample that the operations read and write (the memory-traffic estimate)."""
    size = {s.target: s.size for s in steps}
    return sum(s.size + sum(size.get(a, 0) for a in s.args) for s in steps if s.is_op)


def model_features(steps: Sequence[Step], batch: int = REFERENCE_BATCH) -> dict[str, float]:
    """What the run-time model charges for, at ``batch`` samples: operations, FLOPs by kind of
    operation, small matrix products, batch-free FLOPs per call, and bytes of memory traffic."""
    flops = {"gemm": 0, "batched": 0, "elementwise": 0}
    for step in steps:
        kind = "elementwise" if step.kind in ("mul", "add", "scatter") else "batched" if step.batched else "gemm"
        flops[kind] += step.flops * batch
    # a gather moves the rows it writes, a scatter-add those it reads (one per FLOP)
    moved = sum(s.size if s.kind == "gather" else s.flops for s in steps if s.kind in ("gather", "scatter"))
    return {"operations": sum(1 for step in steps if step.is_op), "gemm_flops": flops["gemm"],
            "batched_flops": flops["batched"], "elementwise_flops": flops["elementwise"],
            "batched_matrices": sum(step.matrices for step in steps) * batch,
            "setup_flops": sum(step.setup_flops for step in steps),
            "bytes": traffic(steps) * BYTES_PER_NUMBER * batch, "sparse_numbers": moved * batch}


def model_seconds() -> dict[str, float]:
    """Seconds per unit of every :func:`model_features` entry (the fitted constants)."""
    return {"operations": OP_OVERHEAD, "gemm_flops": 1 / GEMM_FLOP_RATE, "batched_flops": 1 / BATCHED_FLOP_RATE,
            "elementwise_flops": 1 / ELEMENTWISE_FLOP_RATE, "batched_matrices": MATRIX_OVERHEAD,
            "setup_flops": 1 / SETUP_FLOP_RATE,
            "bytes": 1 / BYTE_RATE, "sparse_numbers": SPARSE_NUMBER_SECONDS}


def estimate_large(steps: Sequence[Step]) -> float:
    """Estimated seconds for :data:`LARGE_BATCH` samples, run in CPU chunks as generated code does."""
    chunk = min(batch_chunk(steps), LARGE_BATCH)
    return math.ceil(LARGE_BATCH / chunk) * estimate(steps, chunk)


def estimate(steps: Sequence[Step], batch: int = REFERENCE_BATCH) -> float:
    """Estimated seconds for ``batch`` samples (the ranking model)."""
    unit = model_seconds()
    return sum(value * unit[name] for name, value in model_features(steps, batch).items())


@dataclass(frozen=True)
class Choice:
    """A strategy tried on a fork of the builder, with its orders, FLOPs and estimates."""

    strategy: Strategy
    builder: Builder
    orders: tuple[str, ...]
    flops: int
    seconds: float                                   # estimated at REFERENCE_BATCH
    large: float                                     # estimated at LARGE_BATCH
    estimates: tuple[tuple[str, float], ...] = ()   # every strategy's estimate, chosen first
    tables: int = 0                                  # numbers of the coupling tables it added, dense
    held: int = 0                                    # what the memory budget counts (`_tried`)


def choose(b: Builder, model: StatementModel, strategy: str = AUTO,
           table_budget: int = DEFAULT.max_table_numbers) -> Choice:
    """The strategy that is never far from the fastest estimate, at a small batch (where the
    number of operations counts) and at a large one (where FLOPs and traffic do): the least
    worst ratio to the fastest at either. Dense stacks may execute more FLOPs than the naive
    count (their zero blocks) and still win by running fewer operations. ``strategy`` names the
    only strategy to try (where it applies, whatever its tables hold below ``table_budget``).

    A strategy whose new coupling tables would hold more than ``table_budget`` numbers is not a
    candidate (dense stacks of high spins reach gigabytes), and one over the statement's
    :func:`memory_budget` is one only when no strategy fits it: when every candidate is over, the
    strategies of smaller, per-block tables are tried, fewest networks first. The statement is
    refused (E501) only when none fits ``table_budget`` (the size checks make that rare: the
    per-path tables are what ``max_table_numbers`` bounds before planning)."""
    tried = [c for c in _tried(b, model, applicable_strategies(model, strategy)) if c.tables <= table_budget]
    forced = strategy != AUTO and len(tried) == 1 and tried[0].strategy.label == strategy
    thrifty = tried if forced else [c for c in tried if c.held <= memory_budget(model)]
    fallbacks = [] if forced or _has_dense(thrifty) else fallback_strategies(model)
    # fewest networks first, every fallback of one count at once (the time model ranks them)
    for _, alike in itertools.groupby(fallbacks, key=lambda s: group_count(model, s)):
        tried += [c for c in _tried(b, model, list(alike)) if c.tables <= table_budget]
        thrifty = [c for c in tried if c.held <= memory_budget(model)]
        if _has_dense(thrifty):
            break
    choices = thrifty or tried
    if not choices:
        raise FusionError([Diagnostic(
            "E501", f"every plan of this statement needs coupling tables of more than {table_budget} numbers",
            model.statement.span, b.diagram.source,
            hint="lower the spins of its arguments, or cut intermediate edges with `lmax`; or raise the limit: "
                 "`limits=Limits(max_table_numbers=...)`, `fusionc --limit max_table_numbers=...`")])
    small, large = min(c.seconds for c in choices), min(c.large for c in choices)

    def regret(c: Choice) -> tuple[float, float, int]:
        # (an all-view statement costs nothing: every strategy then ties)
        return max(c.seconds / small if small else 1.0, c.large / large if large else 1.0), c.seconds, c.flops
    ranked = sorted(choices, key=regret)
    return replace(ranked[0], estimates=tuple((c.strategy.label, c.seconds) for c in ranked))


def _has_dense(choices: Sequence[Choice]) -> bool:
    """Whether a dense form is among ``choices``. The sparse form always fits the memory budget
    but runs 2-25x slower on a CPU (`benchmarks/bench_sparse.py`): when it is the only candidate
    that fits, the per-block fallbacks are tried beside it (fully connected l = 8: the sparse form
    423 ms, per-block tables 100 ms at N = 1024) and the time model ranks them."""
    return any(c.strategy.form != "sparse" for c in choices)


def _tried(b: Builder, model: StatementModel, candidates: Sequence[Strategy]) -> list[Choice]:
    """Each candidate applied to a fork of the builder (a linear map's lone strategy in place:
    copying every earlier statement's state per statement is quadratic in long diagrams)."""
    choices = []
    for candidate in candidates:
        in_place = len(candidates) == 1 and model.statement.is_linear
        trial = b if in_place else b.fork()
        before = len(trial.steps)
        orders = tuple(candidate.apply(trial, model))
        added = tuple(table for key, table in trial.tables.items() if key not in b.tables or in_place)
        # timed as the program will run, mostly-zero tables packed (fusionlang.plan.packing)
        packed, new = packed_tables(added, tuple(trial.steps[before:]))
        dense = sum(table.numbers for table in added)
        choices.append(Choice(candidate, trial, orders, sum(s.flops for s in new), estimate(new),
                              estimate_large(new), tables=dense, held=min(dense, running_numbers(packed, new))))
    return choices
