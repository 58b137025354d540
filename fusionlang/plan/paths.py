"""Pure contraction-order search over einsum networks (opt_einsum's ``paths.py``).

A :class:`Network` is one index string per tensor, the output's indices and the index sizes (the
batch index has no size: costs are per sample). :func:`optimal_tree` is exact dynamic programming
over subsets up to :data:`DP_LIMIT` tensors and :func:`greedy_tree` beyond; both return a
contraction tree and its :class:`Cost`. Callers choose a search by name from :data:`PATHS`
(:func:`get_path_fn`), never by reaching into this module.

>>> tree, cost = get_path_fn("optimal")(Network(("ni", "ij", "nj"), "n", (("i", 3), ("j", 4))))
>>> tree, cost.per_sample
((0, (1, 2)), 30)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

BATCH = "n"
DP_LIMIT = 8


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


def left_to_right(count: int) -> Tree:
    """The tree that contracts tensors ``0, 1, ..., count - 1`` one after the other."""
    tree: Tree = 0
    for k in range(1, count):
        tree = (tree, k)
    return tree


def left_to_right_from(count: int, first: int) -> Tree:
    """Like :func:`left_to_right`, starting from tensor ``first``."""
    tree: Tree = first
    for k in range(count):
        if k != first:
            tree = (tree, k)
    return tree


PathFn = Callable[[Network], tuple[Tree, Cost]]

PATHS: dict[str, PathFn] = {"optimal": optimal_tree, "greedy": greedy_tree}
"""The order searches by name (opt_einsum's ``_PATH_OPTIONS``)."""


def get_path_fn(name: str) -> PathFn:
    """The order search called ``name``; a ``KeyError`` naming the valid ones otherwise.

    >>> get_path_fn("greedy") is greedy_tree
    True
    """
    if name not in PATHS:
        raise KeyError(f"unknown path search {name!r}; the searches are {', '.join(map(repr, PATHS))}")
    return PATHS[name]
