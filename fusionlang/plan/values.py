"""Leaf values: entries and stacks of legs as views of the inputs, and written legs assembled
from the results of the statements that write them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .builder import Builder, Piece, Result
from .geometry import Entry, Stack, leg_entries
from .program import Step


def irrep_hint(entry: Entry, entries: Sequence[Entry]) -> str:
    """A variable-name part for ``entry``: its irrep, numbered when the leg repeats it."""
    text = str(entry.irrep).replace("/", "_")
    same = [e for e in entries if e.irrep == entry.irrep]
    return text if len(same) == 1 else f"{text}_{same.index(entry)}"


def _entry_value(b: Builder, entry: Entry, var: str) -> Piece:
    """An input entry as a view ``[n, mul, dim]`` of the flat input."""
    entries = leg_entries(b.diagram, entry.leg)
    name = b.value(("entry", entry.leg, entry.index), f"{var}_{irrep_hint(entry, entries)}",
                   lambda t: Step(t, "entry", (var,), start=entry.start, stop=entry.start + entry.item.dim,
                                  shape=(-1, entry.mul, entry.dim), size=entry.item.dim,
                                  comment=f"{entry.leg}[{entry.item}] as [n, {entry.mul}, {entry.dim}]"))
    return Piece(name, 0, entry.dim, (entry.mul,), entry.dim)


def stack_value(b: Builder, stack: Stack, component_major: bool = False) -> str:
    """``[n, mul, D]``: the stack's entries side by side (a view when possible, the entry itself
    when there is only one); ``component_major``: ``[n, D, mul]``, always a copy (a slot-major
    coupling multiplies it as the contiguous right operand of its matrix products)."""
    if component_major:
        comment = f"{_stack_text(stack)} component-major: [n, {stack.dim}, {stack.mul}]"
        return b.value(("stack_t",) + stack.key, _stack_hint(stack) + "_t",
                       lambda t: _columns_step(b, stack, t, comment, True) or _transposed_cat(b, stack, t, comment))
    key = ("stack",) + stack.key
    if key not in b.memo:
        flat = _flat_input_view(b, stack)
        pieces = [] if flat is not None else [entry_piece(b, e) for e in stack.entries]
        if len(pieces) == 1 and _piece_is_whole(pieces[0]):
            b.memo[key] = pieces[0].var
    return b.value(key, _stack_hint(stack), lambda t: _make_stack(b, stack, t))


def _piece_is_whole(piece: Piece) -> bool:
    return (piece.start, piece.dim) == (0, piece.width) and len(piece.channels) == 1 and piece.select < 0


def _stack_hint(stack: Stack) -> str:
    if len(stack.entries) > 4:
        return f"{stack.leg}_{len(stack.entries)}e"
    return stack.leg + "_" + "_".join(str(e.irrep).replace("/", "_") for e in stack.entries)


def _stack_text(stack: Stack) -> str:
    """``x[0e + 1o]``: a stack's leg and entries, for comments."""
    return f"{stack.leg}[{' + '.join(str(e.irrep) for e in stack.entries)}]"


def _transposed_cat(b: Builder, stack: Stack, target: str, comment: str) -> Step:
    args = tuple(piece_var(b, entry_piece(b, e)) for e in stack.entries)
    transposed = tuple(((0, 2, 1), ()) for _ in args)
    return Step(target, "cat", args, axis=1, views=transposed, comment=comment, size=stack.mul * stack.dim)


def _make_stack(b: Builder, stack: Stack, target: str) -> Step:
    comment = f"{_stack_text(stack)} side by side: [n, {stack.mul}, {stack.dim}]"
    flat = _flat_input_view(b, stack)
    if flat is not None:
        return replace(flat, target=target, comment=comment)
    pieces = [entry_piece(b, e) for e in stack.entries]
    run = _single_run(pieces)
    if run is not None:
        var, start, stop, width = run
        return Step(target, "narrow", (var,), start=start, stop=stop, comment=comment, size=stack.mul * stack.dim)
    columns = _columns_step(b, stack, target, comment, False)
    if columns is not None:
        return columns
    args = tuple(piece_var(b, p) for p in pieces)
    return Step(target, "cat", args, comment=comment, size=stack.mul * stack.dim)


def _columns_step(b: Builder, stack: Stack, target: str, comment: str, component_major: bool) -> Step | None:
    """A stack of every entry of an input, in any order, as one gather of the flat input's columns:
    faster than concatenating the entries' views (2.4x for fc_tp's transposed ones), and its
    backward is one gather too (docs/performance.md, "Stacks as one gather")."""
    leg = b.diagram.leg(stack.leg)
    entries = leg_entries(b.diagram, stack.leg)
    if leg.role != "input" or sorted(e.index for e in stack.entries) != [e.index for e in entries]:
        return None
    columns = tuple((e.start, e.mul, e.dim) for e in stack.entries)
    layout = "component-major" if component_major else "side by side"
    buffer = b.column_buffer(columns, component_major, f"cols_{stack.leg}",
                             f"the columns of {_stack_text(stack)} {layout}")
    shape = (-1, stack.dim, stack.mul) if component_major else (-1, stack.mul, stack.dim)
    return Step(target, "columns", (_input_var(b, stack.leg),), index=buffer, shape=shape, comment=comment,
                size=stack.mul * stack.dim)


def _flat_input_view(b: Builder, stack: Stack) -> Step | None:
    """A mul-1 stack of consecutive entries of an input is a plain view of the input."""
    leg = b.diagram.leg(stack.leg)
    entries = stack.entries
    consecutive = all(e2.index == e1.index + 1 for e1, e2 in zip(entries, entries[1:], strict=False))
    if leg.role != "input" or stack.mul != 1 or not consecutive:
        return None
    start, stop = entries[0].start, entries[-1].start + entries[-1].item.dim
    return Step("", "entry", (_input_var(b, stack.leg),), start=start, stop=stop, shape=(-1, 1, stop - start),
                size=stop - start)


def _single_run(pieces: Sequence[Piece]) -> tuple[str, int, int, int] | None:
    """(var, start, stop, width) when the pieces are consecutive slices of one variable."""
    first = pieces[0]
    position = first.start
    for piece in pieces:
        if piece.var != first.var or piece.start != position or len(piece.channels) != 1 or piece.select >= 0:
            return None
        position += piece.dim
    return first.var, first.start, position, first.width


def piece_var(b: Builder, piece: Piece) -> str:
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


def _input_var(b: Builder, leg: str) -> str:
    return b.memo[("input", leg)]


def entry_piece(b: Builder, entry: Entry) -> Piece:
    """Where ``entry`` lives now: a view of an input, or a piece of a written leg."""
    role = b.diagram.leg(entry.leg).role
    if role == "input":
        return _entry_value(b, entry, _input_var(b, entry.leg))
    return leg_pieces(b, entry.leg)[entry.index]


def leg_pieces(b: Builder, leg: str) -> dict[int, Piece]:
    """Where every entry of ``leg`` lives, assembled once."""
    if leg not in b.leg_pieces:
        b.leg_pieces[leg] = _assemble(b, leg)
    return b.leg_pieces[leg]


def _assemble(b: Builder, leg: str) -> dict[int, Piece]:
    """Sum the results written into ``leg``: whole results with equal layouts first, then per entry."""
    merged = _merge_equal_results(b, leg, b.results.get(leg, []))
    pieces: dict[int, list[Piece]] = {}
    for result in merged:
        for entry, offset in result.entries:
            dim = leg_entries(b.diagram, leg)[entry].dim
            if result.entry_major:
                piece = Piece(result.var, 0, dim, result.channels, dim, offset)
            else:
                piece = Piece(result.var, offset, dim, result.channels, result.width)
            pieces.setdefault(entry, []).append(piece)
    assembled = {entry: _sum_pieces(b, leg, entry, found) for entry, found in sorted(pieces.items())}
    for item in leg_entries(b.diagram, leg):
        if item.index not in assembled:
            assembled[item.index] = _zeros(b, item)
    return assembled


def _zeros(b: Builder, entry: Entry) -> Piece:
    """An entry no kept path reaches (its couplings vanish under the symmetric reduction)."""
    like = _input_var(b, b.diagram.inputs[0].name)
    hint = f"{entry.leg}_{irrep_hint(entry, leg_entries(b.diagram, entry.leg))}"
    var = b.value(("zeros", entry.leg, entry.index), hint,
                  lambda t: Step(t, "zeros", (like,), shape=(entry.mul, entry.dim), size=entry.item.dim,
                                 comment=f"{entry.leg}[{entry.item}] is zero: its paths vanish when symmetrised"))
    b.zero_entries.append(entry)
    return Piece(var, 0, entry.dim, (entry.mul,), entry.dim)


def _merge_equal_results(b: Builder, leg: str, results: list[Result]) -> list[Result]:
    by_layout: dict[tuple[Any, ...], list[Result]] = {}
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


def _sum_pieces(b: Builder, leg: str, entry: int, pieces: list[Piece]) -> Piece:
    if len(pieces) == 1:
        return pieces[0]
    item = leg_entries(b.diagram, leg)[entry]
    args = tuple(piece_var(b, p) for p in pieces)
    size = item.item.dim
    var = b.value(("add",) + args, f"{leg}_{irrep_hint(item, leg_entries(b.diagram, leg))}",
                  lambda t: Step(t, "add", args, comment=f"{leg}[{item.item}]: {len(args)} contributions",
                                 flops=size * (len(args) - 1), size=size))
    return Piece(var, 0, item.dim, (item.mul,), item.dim)
