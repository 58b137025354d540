"""Where a leg's entries and a path's pieces are: entries, paths, stacks and index letters.

Shared vocabulary of the planner's statement model and its emitters; plain frozen data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .. import ir
from ..groups import Irrep, MulIrrep
from .program import TreeSpec


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry ``mul x irrep`` of a leg, starting at ``start`` in its flat layout."""

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
class PathModel:
    """One path of a statement: its leaf and output entries, its coupling tree, its weight block
    (shape and offset in the statement's flat weights) and its normaliser ``fan_in``: the coupling is
    scaled by ``1/sqrt(fan_in)``, the fan_in of its output entry with e3nn's default normalisation
    (:func:`fusionlang.weights.path_normalisers`)."""

    position: int                       # in statement.paths
    path: ir.Path
    leaves: tuple[Entry, ...]
    output: Entry
    tree: TreeSpec
    block: tuple[int, ...]              # the weight block's shape (() when unweighted)
    offset: int                         # where the block starts in the flat weights
    fan_in: int | float                 # of its output entry, over every writer (by default)

    @property
    def block_size(self) -> int:
        return math.prod(self.block)


def leg_entries(diagram: ir.Diagram, leg: str) -> tuple[Entry, ...]:
    """The entries of ``leg`` in order."""
    irreps = diagram.irreps(leg)
    return tuple(Entry(leg, k, item, where.start)
                 for k, (item, where) in enumerate(zip(irreps, irreps.slices(), strict=False)))


def tree_spec(node: ir.Node, leaves: Sequence[Irrep], inner: Iterator[Irrep]) -> TreeSpec:
    """The path's irreps along the tree (inner irreps are consumed in post-order)."""
    if isinstance(node, ir.LeafRef):
        return str(leaves[node.position])
    left = tree_spec(node.left, leaves, inner)
    right = tree_spec(node.right, leaves, inner)
    return (left, right, str(next(inner)))


@dataclass(frozen=True, slots=True)
class Stack:
    """Entries of one leg (equal multiplicities) side by side: ``[n, mul, sum of dims]``."""

    leg: str
    entries: tuple[Entry, ...]
    # where each entry (by index) starts: read once per path and vertex, so a dict, not a scan
    offsets: dict[int, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # the running sums have one more item (the total) than there are entries
        starts = itertools.accumulate((e.dim for e in self.entries), initial=0)
        object.__setattr__(self, "offsets", dict(zip((e.index for e in self.entries), starts, strict=False)))

    @property
    def mul(self) -> int:
        return self.entries[0].mul

    @property
    def dim(self) -> int:
        return sum(e.dim for e in self.entries)

    def offset(self, entry: Entry) -> int:
        return self.offsets[entry.index]

    @property
    def key(self) -> tuple[str, tuple[int, ...]]:
        return self.leg, tuple(e.index for e in self.entries)


def stack_of(entries: Iterable[Entry]) -> Stack:
    """The stack of the distinct ``entries`` (of one leg), in entry order."""
    unique = sorted({e.index: e for e in entries}.values(), key=lambda e: e.index)
    return Stack(unique[0].leg, tuple(unique))


CHANNELS = "uvxyrstgh"
COMPONENTS = "ijlmoqabcdef"
INNER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def leaf_channels(statement: ir.Statement) -> tuple[str, ...]:
    """The channel letter of every leaf: its own (uvw), shared (uuu), first carried (uvu)."""
    count = statement.arity
    if statement.channels == "uuu":
        return ("u",) * count
    return tuple(CHANNELS[:count])


def out_channels(statement: ir.Statement) -> str:
    """The channel letters of a statement's result (before its component axis)."""
    channels = leaf_channels(statement)
    if statement.channels == "uvw":
        return "w" if statement.weights != "none" else "".join(channels)
    return "u"


def statement_text(statement: ir.Statement) -> str:
    """A statement as written, for comments and the report: ``(a, b), c -> z``."""
    def text(node: ir.Node, top: bool) -> str:
        if isinstance(node, ir.LeafRef):
            return node.leg
        inner = ", ".join(text(n, False) for n in (node.left, node.right))
        return inner if top else f"({inner})"
    return f"{text(statement.tree, True)} -> {statement.target}"
