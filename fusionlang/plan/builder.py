"""The builder: the steps emitted so far, hash-consed so that every value is computed once, and
the layouts of the results written into legs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace

from .. import ir
from ..names import Names, identifier, unique_name
from .geometry import Entry, PathModel
from .program import IndexBuffer, Step, Table, TableSpec


@dataclass
class Builder:
    """Steps emitted so far, with a memo so that every value is computed once."""

    diagram: ir.Diagram
    file: str
    steps: list[Step] = field(default_factory=list)
    memo: dict[Hashable, str] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    tables: dict[tuple[TableSpec, bool], Table] = field(default_factory=dict)   # (spec, sparse)
    indices: dict[tuple[Hashable, ...], IndexBuffer] = field(default_factory=dict)
    users: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    results: dict[str, list[Result]] = field(default_factory=dict)
    leg_pieces: dict[str, dict[int, Piece]] = field(default_factory=dict)
    group_id: tuple[int, int] = (0, 0)
    line: int = 0
    zero_entries: list[Entry] = field(default_factory=list)
    weight_sources: dict[int, str] = field(default_factory=dict)   # "self.weight_z_0" or an argument
    # statement -> where its weight blocks start, in the order its weightings read them (external
    # weights gathered once into that order, then sliced: see weighted.order_weights)
    weight_orders: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def fork(self) -> Builder:
        return Builder(self.diagram, self.file, list(self.steps), dict(self.memo), self.names.copy(),
                       dict(self.tables), dict(self.indices), {k: set(v) for k, v in self.users.items()},
                       {k: list(v) for k, v in self.results.items()},
                       {k: dict(v) for k, v in self.leg_pieces.items()}, self.group_id, self.line,
                       list(self.zero_entries), dict(self.weight_sources), dict(self.weight_orders))

    def fresh(self, hint: str) -> str:
        return unique_name(identifier(hint), self.names)

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

    def table(self, spec: TableSpec, hint: str, comment: str, statement: int, leaf_axes: int = 0) -> str:
        """The buffer of a coupling table (``leaf_axes``: only its nonzeros, the first
        ``leaf_axes`` axes the leaves')."""
        key = (spec, bool(leaf_axes))
        if key not in self.tables:
            self.tables[key] = Table(self.fresh(hint), spec, comment, statement, bool(leaf_axes), leaf_axes)
        table = self.tables[key]
        self.users.setdefault(table.name, set()).add(self.group_id)
        return f"self.{table.name}"

    def index_buffer(self, starts: tuple[int, ...], size: int, hint: str, comment: str = "") -> str:
        key = (starts, size)
        if key not in self.indices:
            self.indices[key] = IndexBuffer(self.fresh(hint), starts, size, comment, self.line)
        return f"self.{self.indices[key].name}"

    def column_buffer(self, columns: tuple[tuple[int, int, int], ...], component_major: bool, hint: str,
                      comment: str) -> str:
        """The buffer of the columns of a flat leg that hold a stack of its entries ``(start, mul,
        dim)``; the module registers its inverse as ``<name>_inverse``, a name kept free here."""
        key = ("columns", columns, component_major)
        if key not in self.indices:
            name = self.fresh(hint)
            while f"{name}_inverse" in self.names:
                name = self.fresh(hint)
            self.names.add(f"{name}_inverse")
            self.indices[key] = IndexBuffer(name, (), 0, comment, self.line, columns, component_major)
        return f"self.{self.indices[key].name}"


@dataclass(frozen=True, slots=True)
class Piece:
    """Where one entry of a leg lives: ``var[..., start:start + dim]`` with channel shape
    ``channels`` (``(m,)``, or ``(m1, m2)`` for unweighted ``uvw`` before flattening)."""

    var: str
    start: int
    dim: int
    channels: tuple[int, ...]
    width: int                          # the last axis of ``var``
    select: int = -1                    # entry-major results: the piece is ``var[:, select]``


@dataclass(frozen=True, slots=True)
class Result:
    """A network's output: ``var[n, *channels, K]`` holding several entries of one leg (or, entry
    major, ``var[n, E, *channels, dim]``)."""

    var: str
    channels: tuple[int, ...]
    entries: tuple[tuple[int, int], ...]    # (entry index, offset along K) or (entry, position along E)
    width: int
    entry_major: bool = False               # ``var[n, E, *channels, dim]``: entry j is ``var[:, j]``


@dataclass(frozen=True)
class Layout:
    """The output axis of a group: output entries (``joint``) or path slots (``q``)."""

    slots: tuple[tuple[PathModel | None, Entry], ...]   # (path for q-slots, entry)
    dims: tuple[int, ...]

    def offset(self, position: int) -> int:
        return sum(self.dims[:position])

    @property
    def size(self) -> int:
        return sum(self.dims)


def joint_layout(paths: Sequence[PathModel]) -> Layout:
    """One slot per output entry the paths write (``joint`` and ``entry`` outputs)."""
    entries = sorted({p.output.index: p.output for p in paths}.values(), key=lambda e: e.index)
    return Layout(tuple((None, e) for e in entries), tuple(e.dim for e in entries))


def q_layout(paths: Sequence[PathModel]) -> Layout:
    """One slot per path, grouped by output entry (``q`` outputs)."""
    ordered = sorted(paths, key=lambda p: (p.output.index, p.position))
    return Layout(tuple((p, p.output) for p in ordered), tuple(p.output.dim for p in ordered))


def slots_by_entry(layout: Layout) -> dict[int, list[int]]:
    """The positions of a ``q`` layout's slots, by the output entry they write (layout order)."""
    found: dict[int, list[int]] = {}
    for position, (_, entry) in enumerate(layout.slots):
        found.setdefault(entry.index, []).append(position)
    return found


def slot_major_columns(layout: Layout) -> tuple[int, ...]:
    """A ``q`` layout's columns with each output entry's slots interleaved component by component.

    A table stored in this order couples an entry's ``P`` paths of dimension ``K`` into columns
    ``(k, p)`` instead of ``(p, k)``; coupled with the channels last, they read ``[n, K, P, u]``,
    and weighting them is one matrix product ``[n·K, P·u] @ [P·u, w]``, without the transposing
    copy ``(p, k)`` costs (``fc_tp``, N = 1024: the copy took about five times the product's time).
    Empty when that order is the layout's own (every entry one path or one component)."""
    columns: list[int] = []
    for positions in slots_by_entry(layout).values():
        starts = [layout.offset(k) for k in positions]
        columns += [start + c for c in range(layout.dims[positions[0]]) for start in starts]
    return tuple(columns) if columns != list(range(layout.size)) else ()


def out_offset(layout: Layout, path: PathModel) -> int:
    """Where ``path`` writes along the layout's axis."""
    for position, (slot_path, entry) in enumerate(layout.slots):
        if (slot_path is None and entry.index == path.output.index) or slot_path is path:
            return layout.offset(position)
    raise KeyError(path.position)


def layout_text(layout: Layout) -> str:
    """The output entries of a layout, for comments."""
    entries = sorted({e.index: e for _, e in layout.slots}.values(), key=lambda e: e.index)
    if len(entries) > 6:
        return f"{entries[0].leg}[{len(entries)} entries: {entries[0].item} ... {entries[-1].item}]"
    return f"{entries[0].leg}[{' + '.join(str(e.item) for e in entries)}]"


def add_result(b: Builder, leg: str, var: str, channels: tuple[int, ...], layout: Layout) -> None:
    """Record that ``var[n, *channels, K]`` holds the layout's entries of ``leg``."""
    entries = tuple((e.index, layout.offset(k)) for k, (_, e) in enumerate(layout.slots))
    b.results.setdefault(leg, []).append(Result(var, channels, entries, layout.size))
