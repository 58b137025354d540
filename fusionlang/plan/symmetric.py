"""The reduced symmetric basis (docs/semantics.md, "Repeated inputs").

For a statement that reads one leg on several leaves, the paths' couplings symmetrised over those
leaves are linearly dependent; the planner keeps a maximal linearly independent subset
(:func:`independent_paths`: per class of paths with disjoint supports, a float64 Gram matrix
and an incremental Cholesky factorisation). The kept positions are stored on disk
(:mod:`fusionlang.cache`), keyed by everything that decides them, so the reduction (seconds for a
correlation-4 product basis) runs once per machine; a hit needs no torch.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from .. import cache, ir
from .geometry import PathModel, Stack, stack_of
from .program import Block, TableSpec, table_tensor, tree_dims

# Relative tolerance of the rank test that drops linearly dependent symmetrised paths (the
# component of a path's tensor orthogonal to the kept ones, relative to its norm).
RANK_TOLERANCE = 1e-6
# Bump when the kept positions of the same paths change meaning (code edits change the fingerprint).
_CACHE_FORMAT = 1


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


def reducible(diagram: ir.Diagram, statement: ir.Statement) -> bool:
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


def independent_paths(group: str, paths: Sequence[PathModel], groups: tuple[tuple[int, ...], ...]) -> list[PathModel]:
    """A maximal linearly independent subset of the paths' symmetrised couplings, earliest first
    (:func:`_independent_paths`), read from the disk cache when an earlier run computed it."""
    positions = {p.position for p in paths}
    kept = cache.cached(_reduction_key(group, paths, groups),
                        lambda: tuple(p.position for p in _independent_paths(group, paths, groups)),
                        encode=_encode_positions, decode=_decode_positions,
                        validate=lambda found: set(found) <= positions and list(found) == sorted(set(found)))
    chosen = set(kept)
    return sorted((p for p in paths if p.position in chosen), key=lambda p: p.position)


def _reduction_key(group: str, paths: Sequence[PathModel], groups: tuple[tuple[int, ...], ...]) -> str:
    """The cache key of a reduction: a digest of everything the rank test reads (the paths' entries
    and irreps, trees, output entries, fan-in, in order), the tolerance and the compiler's code."""
    described = repr((group, groups, RANK_TOLERANCE, [
        (p.position, tuple((e.index, str(e.irrep)) for e in p.leaves), p.output.index, str(p.output.irrep), p.tree,
         p.fan_in) for p in paths]))
    digest = hashlib.sha256(described.encode("utf-8")).hexdigest()
    return f"fusionlang.symmetric/v{_CACHE_FORMAT}/{cache.code_fingerprint()}/{digest}"


def _encode_positions(positions: tuple[int, ...]) -> bytes:
    return ",".join(map(str, positions)).encode("ascii")


def _decode_positions(payload: bytes) -> tuple[int, ...]:
    text = payload.decode("ascii")
    return tuple(int(word) for word in text.split(",")) if text else ()


def _independent_paths(group: str, paths: Sequence[PathModel], groups: tuple[tuple[int, ...], ...]) -> list[PathModel]:
    """What :func:`independent_paths` computes when the disk cache has no answer.

    Symmetrising over the repeated leaves maps a path's block of leaf entries onto the blocks of
    its permutations only, so paths into different output entries, or whose repeated leaves read
    different multisets of entries (:func:`entry_key`), have disjoint supports and are
    independent: the rank test runs per such class, on the paths' own small tensors. (One table
    over every entry of the leg grows with the cube of its dimension: gigabytes for a density of
    ten entries.) A path is kept when its symmetrised coupling has a component orthogonal to the
    kept ones larger than ``RANK_TOLERANCE`` times its norm (float64)."""
    kept: list[PathModel] = []
    classes: dict[tuple[Any, ...], list[PathModel]] = {}
    for path in paths:
        classes.setdefault((path.output.index, entry_key(groups, path)), []).append(path)
    for members in classes.values():
        kept += [p for p, flag in zip(members, _class_flags(group, members, groups), strict=True) if flag]
    return sorted(kept, key=lambda p: p.position)


def _class_flags(group: str, members: Sequence[PathModel], groups: tuple[tuple[int, ...], ...]) -> tuple[bool, ...]:
    """The rank test of one class, by whichever of two equal computations is cheaper: a dense
    table over the class's entries, symmetrised once (best for many paths on few entries, e.g.
    MACE's product basis), or the Gram matrix from pairs of the paths' own tensors (best for few
    paths on many entries, where the dense table is mostly zeros)."""
    arity = len(members[0].leaves)
    stacks = _class_stacks(members, groups)
    dims = tuple(stacks[k].dim for k in range(arity))
    out_dim = members[0].output.dim
    count, size = len(members), math.prod(e.dim for e in members[0].leaves) * out_dim
    orders = math.prod(math.factorial(len(g)) for g in groups)
    tuples = len({tuple(e.index for e in p.leaves) for p in members})
    dense = math.prod(dims) * out_dim * count * (orders + count)
    pairwise = orders * count * max(1, count // tuples) * size
    if dense <= pairwise:
        problem = tuple((tuple(stacks[k].offset(e) for k, e in enumerate(p.leaves)), p.tree, p.fan_in)
                        for p in members)
        return _dense_columns(group, dims, out_dim, problem, groups)
    return _independent_columns(group, tuple((tuple(e.index for e in p.leaves), p.tree, p.fan_in) for p in members),
                                groups)


def _class_stacks(members: Sequence[PathModel], groups: tuple[tuple[int, ...], ...]) -> dict[int, Stack]:
    """One stack per leaf over the class's entries; the leaves of one symmetric group share theirs."""
    group_of = {k: g for g in groups for k in g}
    return {k: stack_of(p.leaves[j] for p in members for j in group_of.get(k, (k,)))
            for k in range(len(members[0].leaves))}


@lru_cache(maxsize=1024)
def _dense_columns(group: str, dims: tuple[int, ...], out_dim: int, problem: tuple[tuple[Any, ...], ...],
                   groups: tuple[tuple[int, ...], ...]) -> tuple[bool, ...]:
    """The rank test on one table over the class's stacked entries, with a path axis, symmetrised
    over the repeated leaves; columns are the paths (``problem``: offsets, tree, fan_in)."""
    arity = len(dims)
    blocks = tuple(Block(offsets + (number, 0), tree, fan_in)
                   for number, (offsets, tree, fan_in) in enumerate(problem))
    shape = dims + (len(problem), out_dim)
    raw = table_tensor(TableSpec(group, shape, blocks, (arity,)))
    scales = raw.movedim(arity, -1).reshape(-1, len(problem)).abs().norm(dim=0)
    table = table_tensor(TableSpec(group, shape, blocks, (arity,), groups))
    columns = table.movedim(arity, -1).reshape(-1, len(problem))
    columns = columns[columns.abs().sum(dim=1) > 0]
    return _cholesky_flags(columns.conj().T @ columns, [float(x) for x in scales])


@lru_cache(maxsize=4096)
def _independent_columns(group: str, problem: tuple[tuple[Any, ...], ...],
                         groups: tuple[tuple[int, ...], ...]) -> tuple[bool, ...]:
    """Which of one class's paths ``(leaf entries, tree, fan_in)`` add a direction.

    The Gram matrix of the symmetrised couplings without building them: symmetrisation ``S`` is an
    orthogonal projector, so ``<S a, S b> = <a, S b>``, the average over leaf permutations ``g`` of
    ``<a, g b>``, nonzero only where ``g`` moves ``b``'s entries onto ``a``'s."""
    import torch

    tensors = [table_tensor(TableSpec(group, tree_dims(tree), (Block((0,) * (len(entries) + 1), tree, fan_in),)))
               for entries, tree, fan_in in problem]
    permutations = list(group_permutations(groups, len(problem[0][0])))
    # the paths on each tuple of entries, stacked: one product per (tuple, permutation)
    rows: dict[tuple[int, ...], list[int]] = {}
    for i, (entries, _, _) in enumerate(problem):
        rows.setdefault(entries, []).append(i)
    stacked = {entries: torch.stack([tensors[i] for i in members]) for entries, members in rows.items()}
    flat = {entries: block.reshape(len(rows[entries]), -1).conj() for entries, block in stacked.items()}
    gram = torch.zeros((len(problem), len(problem)), dtype=tensors[0].dtype)
    for entries, block in stacked.items():
        for order in permutations:
            onto = tuple(entries[k] for k in order)
            if onto in rows:
                moved = block.permute(0, *(k + 1 for k in order), len(order) + 1).reshape(len(rows[entries]), -1)
                at = torch.tensor(rows[onto])[:, None], torch.tensor(rows[entries])[None, :]
                gram[at] += flat[onto] @ moved.T / len(permutations)
    return _cholesky_flags(gram, [float(t.abs().norm()) for t in tensors])


def _cholesky_flags(gram: Any, scales: Sequence[float]) -> tuple[bool, ...]:
    """Which columns of a Gram matrix add a direction to the earlier ones, by more than
    ``RANK_TOLERANCE`` times their scale (``scales[k]``: the norm of the path's tensor before
    symmetrisation, so that a path whose symmetrised tensor is round-off zero is dropped).

    An incremental Cholesky factorisation in column order that skips dependent columns: column
    ``k``'s squared residual against the kept ones is ``G_kk - |L^-1 G_kept,k|^2``. (A Gram matrix
    squares the condition number, hence a residual tolerance of 1e-6 relative rather than machine
    precision; roundoff leaves dependent columns near 1e-8.)"""
    import torch

    gram = gram.to(torch.complex128 if gram.is_complex() else torch.float64)
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
        flags.append(norm2 > 0.0 and residual2 > (RANK_TOLERANCE ** 2) * scales[k] ** 2)
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


def symmetric_stacks(statement: ir.Statement, paths: Sequence[PathModel]) -> dict[int, Stack]:
    """One stack per leaf; leaves reading the same leg share the union of their entries."""
    stacks: dict[int, Stack] = {}
    for ref in statement.leaves:
        same = [r.position for r in statement.leaves if r.leg == ref.leg]
        stacks[ref.position] = stack_of(p.leaves[k] for p in paths for k in same)
    return stacks


def entry_key(groups: tuple[tuple[int, ...], ...], path: PathModel) -> tuple[Any, ...]:
    """The leaf entries of a path; for leaves that read one leg (symmetrised), their multiset."""
    entries = [e.index for e in path.leaves]
    for group in groups:
        ordered = sorted(entries[k] for k in group)
        for k, value in zip(group, ordered, strict=False):
            entries[k] = value
    return tuple(entries)


def group_permutations(groups: tuple[tuple[int, ...], ...], arity: int) -> Iterator[tuple[int, ...]]:
    """Every permutation of leaf positions that permutes within each group (as tuples:
    position ``m`` takes the entry of position ``sigma[m]``)."""
    choices = [list(itertools.permutations(g)) for g in groups]
    for picked in itertools.product(*choices):
        sigma = list(range(arity))
        for group, image in zip(groups, picked, strict=False):
            for source, target in zip(group, image, strict=False):
                sigma[source] = target
        yield tuple(sigma)
