"""Weights in the emitted code: slices or gathers of a statement's flat weights, the ``q`` form
(couple every path into its own slot, then weight each run of alike output entries), and linear maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .. import ir
from ..weights import weight_letters
from .builder import Builder, Layout, Result, add_result, slots_by_entry
from .geometry import PathModel, leaf_channels, leg_entries, out_channels, statement_text
from .model import StatementModel
from .networks import Coupled, GroupPlan, Operand, contract, emit_network_parts, named_step, network_sizes
from .paths import BATCH, Network
from .program import Step
from .values import entry_piece, irrep_hint, piece_var


def q_channels(statement: ir.Statement) -> str:
    """The distinct channel letters of a statement's leaves (``q`` results keep them all)."""
    return "".join(dict.fromkeys(leaf_channels(statement)))


def weight_operand(b: Builder, model: StatementModel, paths: Sequence[PathModel], sizes: dict[str, int]) -> Operand:
    """The weights of ``paths`` as a network operand ``[(n,) p, *block]``."""
    letters = weight_letters(model.statement, leaf_channels(model.statement))
    var = _weight_value(b, model, paths)
    sizes.setdefault("w", paths[0].output.mul)
    indices = (BATCH if model.external else "") + "p" + letters
    return Operand(var, indices, ("weights", model.index, tuple(p.position for p in paths)))


def _weight_value(b: Builder, model: StatementModel, paths: Sequence[PathModel], scale: float | None = None,
                  split: tuple[int, ...] = ()) -> str:
    """``[(n,) P, *block]``: the weight blocks of ``paths`` (a view when they are consecutive);
    the path axis is viewed as ``split`` when given."""
    if scale == 1.0:  # (a fan-in of 1: no multiplication by 1.0 in the forward and the backward)
        scale = None
    block = paths[0].block
    starts = tuple(p.offset for p in paths)
    size = paths[0].block_size
    consecutive = all(s2 == s1 + size for s1, s2 in zip(starts, starts[1:], strict=False))
    shape = ((-1,) if model.external else ()) + (split or (len(paths),)) + block
    source = b.weight_sources[model.index]
    statement = model.statement
    comment = f"weights of {_paths_text(paths)}" + (f", times 1/sqrt({_number(paths[0].fan_in)})" if scale else "")
    key = ("weights", model.index, starts, scale, split)
    ordered = _ordered_position(b.weight_orders.get(model.index, ()), starts)
    if ordered is not None and scale is None:
        whole = _ordered_weights(b, model, size)
        return b.value(key, f"w_{statement.target}_{statement.index}", lambda t: Step(
            t, "narrow", (whole,), start=ordered * size, stop=(ordered + len(paths)) * size, axis=1, shape=shape,
            comment=comment, statement=statement.index))
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


def order_weights(b: Builder, model: StatementModel, paths: Sequence[PathModel]) -> None:
    """Have the external weights of ``model`` gathered once, in the order of ``paths`` (the order
    its weightings read them), when that order covers every block and differs from theirs: each
    weighting then slices them (one ``torch.split`` in all). Gathered per weighting instead, every
    gather's backward zero-filled and scattered into a whole-size gradient, and autograd summed them
    (the channelwise product: 6 gathers, their backward 5 % of a forward + backward at N = 1024).
    Not for complex features: their weights are cast where each weighting reads them."""
    starts = tuple(p.offset for p in paths)
    size = paths[0].block_size if paths else 0
    blocks = sorted(p.offset for p in model.paths)
    if (not model.external or b.diagram.group.is_complex or len(paths) != len(model.paths)
            or sorted(starts) != blocks or starts == tuple(blocks)
            or any(p.block_size != size for p in model.paths) or size * len(blocks) != model.numel):
        return
    b.weight_orders[model.index] = starts


def _ordered_position(order: tuple[int, ...], starts: tuple[int, ...]) -> int | None:
    """Where ``starts`` stand together in ``order`` (None when they do not)."""
    if not order or not starts or starts[0] not in order:
        return None
    first = order.index(starts[0])
    return first if order[first:first + len(starts)] == starts else None


def _ordered_weights(b: Builder, model: StatementModel, size: int) -> str:
    """``[n, numel]``: a statement's external weights, their blocks in :func:`order_weights`' order."""
    statement = model.statement
    order = b.weight_orders[model.index]
    # whole blocks gathered along [n, blocks, size]: 2-3x faster than one index per number
    blocks = (-1, model.numel // size, size)
    source = b.weight_sources[model.index]
    by_block = b.value(("reshape", source, blocks), f"{source}_blocks", lambda t: Step(
        t, "reshape", (source,), shape=blocks, comment=f"{source} as blocks of {size}", statement=statement.index))
    buffer = b.column_buffer(tuple((start // size, 1, 1) for start in order), False,
                             f"cols_{statement.target}_{statement.index}",
                             f"the weight blocks of {statement_text(statement)}, in the order its entries read them")
    return b.value(("ordered weights", model.index), f"w_{statement.target}_{statement.index}_ordered",
                   lambda t: Step(t, "columns", (by_block,), index=buffer, shape=(-1, model.numel),
                                  comment=f"the weights of {len(order)} paths, in the order their entries read them",
                                  statement=statement.index))


def _number(value: float) -> str:
    """A normaliser as the comment shows it: ints as they are, others to 6 significant digits."""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def _paths_text(paths: Sequence[PathModel]) -> str:
    if len(paths) == 1:
        return f"path {paths[0].position}"
    positions = [p.position for p in paths]
    if positions == list(range(positions[0], positions[-1] + 1)):
        return f"paths {positions[0]}..{positions[-1]}"
    return f"{len(paths)} paths"


def emit_q_weights(b: Builder, model: StatementModel, paths: list[PathModel], layout: Layout, group: GroupPlan,
                   comment: str, order: str, in_parts: bool, slot_major: str | None = None) -> str:
    """Couple the paths (run by run of alike output entries, ``in_parts``), then weight each run
    at once (:func:`weigh_q_runs`; ``slot_major``, the coupled paths' order from
    :func:`slot_major_output`: entry by entry).

    Parts pay off for stacked operands, whose coupled tensor is wide (a hand-written prototype of
    the 32-channel channelwise product, N = 16384: 283 → 196 ms forward); for one-entry groups
    they only add small products (8 channels: 3.4 → 4.7 ms at N = 1024, 72 → 92 ms at 16384),
    so those slice one coupled tensor."""
    statement = model.statement

    def couple(ranges: list[tuple[int, int]]) -> list[Coupled]:
        return emit_network_parts(b, group, f"{statement.target}_t", comment, statement.index, ranges, in_parts)
    weigh_q_runs(b, model, layout, couple, slot_major)
    if slot_major:
        return f"{order}, coupled slot-major and then ·W per output entry (one matrix product each)"
    return f"{order}, coupled and then ·W per run of alike output entries"


def slot_major_output(model: StatementModel, paths: Sequence[PathModel]) -> str | None:
    """The index order of the coupled paths when a ``q`` group is weighted slot-major, else None.

    Slot-major: the table's columns interleaved (:func:`.builder.slot_major_columns`) and the
    coupled paths laid out ``[n, K·P, u]`` (size-1 channels anywhere, ``k`` before the one larger
    channel), so each entry's weighting is one matrix product over ``(p, u)``. It applies when the
    weights are shared and sum every coupled channel (``uvw``) and at most one channel is larger
    than 1 (``fc_tp``: ``32x... ⊗ 1x...``); otherwise the product needs a transposing copy anyway."""
    statement = model.statement
    channels = q_channels(statement)
    letters = weight_letters(statement, leaf_channels(statement))
    if model.external or out_channels(statement) in channels or not set(channels) <= set(letters):
        return None
    sizes = _q_channel_sizes(model, paths)
    wide = "".join(c for c in channels if sizes[c] > 1)
    if len(wide) > 1:
        return None
    return BATCH + "".join(c for c in channels if sizes[c] == 1) + "k" + wide


def weigh_q_runs(b: Builder, model: StatementModel, layout: Layout,
                 couple: Callable[[list[tuple[int, int]]], list[Coupled]], slot_major: str | None = None) -> None:
    """Weight the coupled paths of a ``q`` layout, one operation per run of alike output entries
    (``slot_major``: per entry); ``couple(ranges)`` gives the coupled paths ``[n, *channels, Q]``
    of every run's slots (``slot_major``: in :func:`slot_major_output`'s order)."""
    statement = model.statement
    channels = q_channels(statement)
    chan_sizes = _q_channel_sizes(model, [path for path, _ in layout.slots if path is not None])
    by_entry = slots_by_entry(layout)
    entry_runs = [[e] for e in by_entry] if slot_major else _entry_runs(layout, by_entry)
    runs = [[by_entry[e] for e in run] for run in entry_runs]
    read = [layout.slots[k][0] for run in runs for positions in run for k in positions]
    order_weights(b, model, [path for path in read if path is not None])
    ranges = [(layout.offset(run[0][0]), sum(layout.dims[k] for positions in run for k in positions))
              for run in runs]
    for run, part in zip(runs, couple(ranges), strict=True):
        if len(run) == 1:
            _q_entry(b, model, layout, run[0], part, channels, chan_sizes, slot_major)
        else:
            _q_run(b, model, layout, run, part, channels, chan_sizes)


def weigh_merged(b: Builder, model: StatementModel, coupled: Sequence[tuple[Layout, str]]) -> None:
    """Weight each output entry once over every group: ``coupled`` holds each group's ``q`` layout
    and its coupled paths ``[n, *channels, K]``. An entry's slots of all groups (of one channel
    shape) are put side by side (one ``cat``; the pieces of one group are cut by one ``split``)
    and contracted with their weights at once: one weighting per entry, not one per group and
    entry (fully connected l = 5: 69 weight contractions and 63 additions become 6)."""
    channels = q_channels(model.statement)
    found: dict[tuple[tuple[int, ...], int], list[tuple[str, Layout, list[int]]]] = {}
    sizes: dict[tuple[int, ...], dict[str, int]] = {}
    for layout, var in coupled:
        chan_sizes = _q_channel_sizes(model, [path for path, _ in layout.slots if path is not None])
        shape = tuple(chan_sizes[c] for c in channels)
        sizes[shape] = chan_sizes
        for entry_index, positions in slots_by_entry(layout).items():
            found.setdefault((shape, entry_index), []).append((var, layout, positions))
    for (shape, _), pieces in sorted(found.items(), key=lambda item: (item[0][1], item[0][0])):
        slots = tuple(layout.slots[k] for _, layout, positions in pieces for k in positions)
        merged = Layout(slots, tuple(entry.dim for _, entry in slots))
        _q_entry(b, model, merged, list(range(len(slots))), _side_by_side(b, model, pieces, shape),
                 channels, sizes[shape])


def _side_by_side(b: Builder, model: StatementModel, pieces: Sequence[tuple[str, Layout, list[int]]],
                  shape: tuple[int, ...]) -> Coupled:
    """``[n, *shape, Σ widths]``: the slots ``positions`` of every piece's coupled ``var``, in order."""
    statement = model.statement
    entry = pieces[0][1].slots[pieces[0][2][0]][1]
    parts = []
    for var, layout, positions in pieces:
        start, width = layout.offset(positions[0]), sum(layout.dims[k] for k in positions)
        if width == layout.size:
            parts.append(var)
            continue
        step = Step("", "narrow", (var,), start=start, stop=start + width, size=math.prod(shape) * width,
                    comment=f"its slots into {statement.target}[{entry.item}]")
        parts.append(b.value(("narrow", var, start, width, ()), f"{var}_k", named_step(step)))
    if len(parts) == 1:
        return Coupled(parts[0], True)
    count = sum(len(positions) for _, _, positions in pieces)
    size = math.prod(shape) * count * entry.dim
    text = f"the {count} coupled paths into {statement.target}[{entry.item}], from {len(parts)} blocks"
    var = b.value(("cat",) + tuple(parts), f"{statement.target}_slots",
                  lambda t: Step(t, "cat", tuple(parts), comment=text, size=size, statement=statement.index))
    return Coupled(var, True)


def _entry_runs(layout: Layout, by_entry: dict[int, list[int]]) -> list[list[int]]:
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


def _q_run(b: Builder, model: StatementModel, layout: Layout, positions: list[list[int]], coupled: Coupled,
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
    w_indices = (BATCH if model.external else "") + "ep" + weight_letters(statement, leaf_channels(statement))
    out_chan = out_channels(statement)
    equation = f"{BATCH}{channels}epk,{w_indices}->{BATCH}e{out_chan}k"
    sizes = {**chan_sizes, "w": entries[0].mul, "e": count, "p": per, "k": dim}
    net = Network((BATCH + channels + "epk", w_indices), BATCH + "e" + out_chan + "k", network_sizes(sizes))
    text = (f"{statement.target}[{entries[0].item} x {count}] = Σ_p W_p · coupled path p, "
            f"entries {entries[0].index}..{entries[-1].index} in their mul_ir layout")
    var = contract(b, f"{statement.target}_{irrep_hint(entries[0], leg_entries(b.diagram, entries[0].leg))}",
                   (view, weights), equation, net, text, statement.index)
    result = Result(var, (entries[0].mul,), tuple((e.index, k) for k, e in enumerate(entries)), dim, True)
    b.results.setdefault(statement.target, []).append(result)


def _coupled_view(b: Builder, coupled: Coupled, offset: int, chan_shape: tuple[int, ...],
                  slot_shape: tuple[int, ...], hint: str, comment: str, slot_axis: int = -1) -> str:
    """``[n, *channels, *slot_shape]`` (or, slot-major, ``[n, *slot_shape, *channels]``, the
    coupled slots on axis ``slot_axis``): the slots from layout offset ``offset`` of ``coupled``. A
    whole part is only reshaped: a slice would cost a zero-filled gradient in backward."""
    var, start, width = coupled.var, offset, math.prod(slot_shape)
    shape = (-1, *chan_shape, *slot_shape) if slot_axis < 0 else (-1, *slot_shape, *chan_shape)
    size = math.prod(chan_shape) * width
    if coupled.whole:
        return b.value(("reshape", var, shape), hint,
                       lambda t: Step(t, "reshape", (var,), shape=shape, size=size, comment=comment))
    start -= coupled.start
    return b.value(("narrow", var, slot_axis, start, width, shape), hint,
                   lambda t: Step(t, "narrow", (var,), start=start, stop=start + width, axis=slot_axis, shape=shape,
                                  size=size, comment=comment))


def _q_channel_sizes(model: StatementModel, paths: Sequence[PathModel]) -> dict[str, int]:
    """The leaves' channel sizes (alike for a group's paths); the output's ``w`` is each entry's own."""
    letters = leaf_channels(model.statement)
    found: dict[str, int] = {}
    for k, letter in enumerate(letters):
        found.setdefault(letter, paths[0].leaves[k].mul)
    return found


def _q_entry(b: Builder, model: StatementModel, layout: Layout, positions: list[int], coupled: Coupled,
             channels: str, chan_sizes: dict[str, int], slot_major: str | None = None) -> None:
    statement = model.statement
    paths = [layout.slots[k][0] for k in positions]
    entry = layout.slots[positions[0]][1]
    chan_shape = tuple(chan_sizes[c] for c in channels)
    text = f"the {len(positions)} coupled path{'s' * (len(positions) != 1)} into {statement.target}[{entry.item}]"
    if slot_major:
        view = _coupled_view(b, coupled, layout.offset(positions[0]), chan_shape, (entry.dim, len(positions)),
                             f"{statement.target}_paths", text + ", component by component", slot_major.index("k"))
    else:
        view = _coupled_view(b, coupled, layout.offset(positions[0]), chan_shape, (len(positions), entry.dim),
                             f"{statement.target}_paths", text)
    weights = _weight_value(b, model, [p for p in paths if p is not None])
    w_indices = (BATCH if model.external else "") + "p" + weight_letters(statement, leaf_channels(statement))
    out_chan = out_channels(statement)
    coupled_indices = f"{BATCH}kp{channels}" if slot_major else f"{BATCH}{channels}pk"
    equation = f"{coupled_indices},{w_indices}->{BATCH}{out_chan}k"
    sizes = {**chan_sizes, "w": entry.mul, "p": len(positions), "k": entry.dim}
    net = Network((coupled_indices, w_indices), BATCH + out_chan + "k", network_sizes(sizes))
    text = f"{statement.target}[{entry.item}] = Σ_p W_p · coupled path p"
    hint = f"{statement.target}_{irrep_hint(entry, leg_entries(b.diagram, entry.leg))}"
    var = contract(b, hint, (view, weights), equation, net, text, statement.index)
    add_result(b, statement.target, var, (entry.mul,), Layout(((None, entry),), (entry.dim,)))


def linear_groups(model: StatementModel) -> list[list[PathModel]]:
    """A linear map's kept paths, grouped by output entry."""
    found: dict[int, list[PathModel]] = {}
    for path in model.paths:
        found.setdefault(path.output.index, []).append(path)
    return list(found.values())


def emit_linear(b: Builder, model: StatementModel, paths: list[PathModel]) -> str:
    """One output entry of a linear map: ``Σ_paths x_e · W_p / sqrt(fan_in)``."""
    statement = model.statement
    entry = paths[0].output
    terms = []
    for path in paths:  # one fan_in per output entry by default; `path_normalization` may differ per path
        x = piece_var(b, entry_piece(b, path.leaves[0]))
        w = _weight_value(b, model, [path], 1.0 / math.sqrt(path.fan_in))
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
    add_result(b, statement.target, var, (entry.mul,), Layout(((None, entry),), (entry.dim,)))
    return "x·W"


def _linear_term(b: Builder, model: StatementModel, path: PathModel, x: str, w: str) -> str:
    statement = model.statement
    entry_in, entry = path.leaves[0], path.output
    w_indices = (BATCH if model.external else "") + "p" + {"uvw": "uw", "uvu": "u", "uuu": "u"}[statement.channels]
    if statement.weights == "path" and statement.channels != "uvw":
        w_indices = "p"
    out = "w" if statement.channels == "uvw" else "u"
    equation = f"nuk,{w_indices}->n{out}k"
    sizes = {"u": entry_in.mul, "w": entry.mul, "k": entry.dim, "p": 1}
    net = Network(("nuk", w_indices), f"n{out}k", network_sizes(sizes))
    comment = f"{statement.target}[{entry.item}] ← {entry_in.leg}[{entry_in.item}] · W"
    hint = f"{statement.target}_{irrep_hint(entry, leg_entries(b.diagram, entry.leg))}"
    return contract(b, hint, (x, w), equation, net, comment, statement.index)
