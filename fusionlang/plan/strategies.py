"""Strategies: how a statement's paths are grouped, stacked and contracted.

Every strategy is registered by name in :data:`STRATEGIES` and has one signature,
``strategy.apply(builder, model) -> orders``; :func:`applicable_strategies` lists those that apply to
a statement. ``fusionlang.plan.plan_diagram(diagram, strategy=NAME)`` forces one.

>>> sorted(STRATEGIES)[:3]
['blocks/U/entry', 'blocks/U/joint', 'blocks/U/merged']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .builder import Builder, Layout, add_result, joint_layout, layout_text, q_layout, slot_major_columns
from .geometry import PathModel, Stack, out_channels, stack_of, statement_text
from .model import StatementModel
from .networks import GroupPlan, emit_network, order_text, plan_network
from .pairs import emit_unordered
from .paths import BATCH
from .sparse import emit_sparse_group
from .symmetric import entry_key, symmetric_stacks
from .tables import coupling_operands, leaf_operands
from .weighted import (
    emit_linear,
    emit_q_weights,
    linear_groups,
    q_channels,
    slot_major_output,
    weigh_merged,
    weight_operand,
)


@dataclass(frozen=True)
class Strategy:
    """How to group and contract a statement's paths.

    ``stacking``: ``full`` (one stack per leaf and multiplicity signature), ``pairs`` (every path of
    ``pairing = unordered`` on its own, :mod:`.pairs`) or ``blocks`` (one
    group per tuple of leaf entries), ``single`` (one group per path);
    ``form``: ``U`` (couplings pre-contracted along the tree), ``chain`` (one table per vertex) or
    ``sparse`` (only the tables' nonzeros, gathered and scatter-added: :mod:`.sparse`);
    ``outputs``: ``joint`` (every output entry of the group in one network, a path axis where
    weights need it), ``entry`` (one network per output entry), ``q`` (couple all paths into one
    flat axis, then weight each run of alike output entries at once, in their final layout),
    ``merged`` (``blocks`` only: couple every block's paths into slots as ``q`` does, then weight
    each output entry's slots of all blocks in one contraction, :func:`.weighted.weigh_merged`:
    one weighting per output entry instead of one per block and entry)."""

    stacking: str
    form: str
    outputs: str

    @property
    def label(self) -> str:
        return f"{self.stacking}/{self.form}/{self.outputs}"

    def applies(self, model: StatementModel) -> bool:
        """Whether the strategy can emit ``model``'s statement."""
        statement = model.statement
        if statement.pairing == "unordered" or self.stacking == "pairs":
            return statement.pairing == "unordered" and self.stacking == "pairs"
        if statement.is_linear or self.stacking == "linear":
            return statement.is_linear and self.stacking == "linear"
        if self.stacking == "single":
            return self.form == ("U" if model.reduced else "chain")
        if self.form == "sparse":  # (unweighted paths have nothing to weight: summed into their entries)
            return True
        if self.form == "chain" and (statement.arity == 2 or model.reduced):
            return False
        return self.outputs not in ("q", "merged") or model.weighted

    def apply(self, b: Builder, model: StatementModel) -> list[str]:
        """Emit the statement; returns the human-readable orders chosen."""
        return apply_strategy(b, model, self)


def _registry() -> dict[str, Strategy]:
    found = [Strategy(s, f, o) for s in ("full", "blocks") for f in ("U", "chain") for o in ("joint", "entry", "q")]
    found += [Strategy("blocks", f, "merged") for f in ("U", "chain")]
    found += [Strategy("single", "U", "entry"), Strategy("single", "chain", "entry"),
              Strategy("full", "sparse", "q"), Strategy("linear", "-", "entry"), Strategy("pairs", "-", "entry")]
    return {strategy.label: strategy for strategy in found}


STRATEGIES: dict[str, Strategy] = _registry()
"""Every strategy by name, in the order the choice breaks ties."""

AUTO = "auto"

StrategyChoice = str | Mapping[int, str]
"""``"auto"``, one strategy's name for every statement, or names by statement index."""


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; a ``KeyError`` naming the valid ones otherwise.

    >>> get_strategy("full/U/joint").form
    'U'
    """
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; the strategies are {AUTO!r}, {', '.join(map(repr, STRATEGIES))}")
    return STRATEGIES[name]


MAX_GROUPS = 64
"""The choice skips a strategy that would emit more networks than this for one statement (unless
every strategy would): each costs a few operations per call, so such a strategy never wins, and
emitting thousands of them to estimate it made compiling a statement of many paths take seconds."""


def applicable_strategies(model: StatementModel, name: str = AUTO) -> list[Strategy]:
    """The strategies that can emit ``model``'s statement, in order; only ``name`` when it is one
    of them (a strategy that does not apply to a statement leaves it to the choice)."""
    found = [strategy for strategy in STRATEGIES.values() if strategy.applies(model)]
    named = [s for s in found if s.label == name]
    if named:
        return named
    counts = {s.label: group_count(model, s) for s in found}
    return [s for s in found if counts[s.label] <= MAX_GROUPS] or [min(found, key=lambda s: counts[s.label])]


def fallback_strategies(model: StatementModel) -> list[Strategy]:
    """The applicable strategies that :func:`applicable_strategies` leaves out, fewest networks
    first (tried when every candidate's tables are over the budget)."""
    found = [strategy for strategy in STRATEGIES.values() if strategy.applies(model)]
    chosen = {s.label for s in applicable_strategies(model)}
    return sorted((s for s in found if s.label not in chosen), key=lambda s: group_count(model, s))


def group_count(model: StatementModel, strategy: Strategy) -> int:
    """How many networks ``strategy`` emits for ``model``'s statement."""
    if strategy.stacking == "linear":
        return len(linear_groups(model))
    if strategy.stacking == "pairs":
        return len(model.paths)
    return sum(len(_split_by_output(paths, strategy)) for paths in _groups(model, strategy))


def _groups(model: StatementModel, strategy: Strategy) -> list[list[PathModel]]:
    """Partition of the kept paths (each group: equal leaf and output multiplicities), computed
    once per stacking (``model.partitions``); callers do not change it."""
    if strategy.stacking not in model.partitions:
        model.partitions[strategy.stacking] = _partition(model, strategy.stacking)
    return model.partitions[strategy.stacking]


def _partition(model: StatementModel, stacking: str) -> list[list[PathModel]]:
    def key(path: PathModel) -> tuple[Any, ...]:
        muls = tuple(e.mul for e in path.leaves) + (path.output.mul,)
        if stacking == "blocks":
            return muls + entry_key(model.symmetric_groups, path)
        if stacking == "single":
            return muls + entry_key(model.symmetric_groups, path) + (path.position,)
        return muls
    found: dict[tuple[Any, ...], list[PathModel]] = {}
    for path in model.paths:
        found.setdefault(key(path), []).append(path)
    return list(found.values())


def _split_by_output(paths: list[PathModel], strategy: Strategy) -> list[list[PathModel]]:
    if strategy.outputs != "entry":
        return [paths]
    found: dict[int, list[PathModel]] = {}
    for path in paths:
        found.setdefault(path.output.index, []).append(path)
    return list(found.values())


def apply_strategy(b: Builder, model: StatementModel, strategy: Strategy) -> list[str]:
    """Emit the statement with ``strategy``; returns the human-readable orders chosen."""
    orders: list[str] = []
    b.line = model.statement.line
    if strategy.stacking == "linear":
        for number, paths in enumerate(linear_groups(model)):
            b.group_id = (model.index, number)
            orders.append(emit_linear(b, model, paths))
        return orders
    if strategy.stacking == "pairs":
        return emit_unordered(b, model)
    if strategy.outputs == "merged":
        return _emit_merged(b, model, strategy)
    number = 0
    b.line = model.statement.line
    for paths in _groups(model, strategy):
        for part in _split_by_output(paths, strategy):
            b.group_id = (model.index, number)
            number += 1
            orders.append(_emit_group(b, model, part, strategy))
    return orders


def _group_stacks(model: StatementModel, paths: Sequence[PathModel], stacking: str) -> dict[int, Stack]:
    if model.reduced and stacking == "full":
        return symmetric_stacks(model.statement, paths)
    if model.reduced:
        entries = {(e.leg, e.index): e for e in paths[0].leaves}
        key = entry_key(model.symmetric_groups, paths[0])
        legs = [ref.leg for ref in model.statement.leaves]
        return {k: Stack(legs[k], (entries[(legs[k], key[k])],)) for k in range(model.statement.arity)}
    return {k: stack_of(p.leaves[k] for p in paths) for k in range(model.statement.arity)}


def _emit_merged(b: Builder, model: StatementModel, strategy: Strategy) -> list[str]:
    """Every block coupled into its ``q`` slots, then each output entry weighted once."""
    orders, coupled = [], []
    groups = _groups(model, strategy)
    for number, paths in enumerate(groups):
        b.group_id = (model.index, number)
        layout, group, comment, order = _group_network(b, model, paths, strategy, None)
        var = emit_network(b, group, f"{model.statement.target}_t", comment, model.statement.index)
        coupled.append((layout, var))
        orders.append(f"{order}, coupled; then ·W per output entry over every block")
    b.group_id = (model.index, len(groups))
    weigh_merged(b, model, coupled)
    return orders


def _group_network(b: Builder, model: StatementModel, paths: list[PathModel], strategy: Strategy,
                   slot_major: str | None) -> tuple[Layout, GroupPlan, str, str]:
    """The planned network of one group: its output layout, plan, comment and order
    (``slot_major``: the coupled paths' order, :func:`_slot_major`)."""
    statement = model.statement
    stacks = _group_stacks(model, paths, strategy.stacking)
    q_mode = strategy.outputs in ("q", "merged")
    layout = q_layout(paths) if q_mode else joint_layout(paths)
    path_axis = model.weighted and not q_mode
    operands, sizes, names = leaf_operands(b, statement, stacks, bool(slot_major))
    tables, table_names = coupling_operands(b, model, paths, stacks, layout, path_axis, strategy.form,
                                            strategy.stacking, sizes,
                                            slot_major_columns(layout) if slot_major else ())
    operands += tables
    names += table_names
    sizes["k"] = layout.size
    out_chan = out_channels(statement) if not q_mode else q_channels(statement)
    if path_axis:
        operands.append(weight_operand(b, model, paths, sizes))
        names.append("W")
    group = plan_network(operands, slot_major or BATCH + out_chan + "k", sizes, strategy.label)
    comment = f"{statement_text(statement)}: {len(paths)} path{'s' * (len(paths) != 1)} → {layout_text(layout)}"
    return layout, group, comment, order_text(group, names)


def _slot_major(model: StatementModel, paths: list[PathModel], strategy: Strategy) -> str | None:
    """The coupled paths' index order when the group is weighted slot-major (dense ``q`` only)."""
    if strategy.outputs != "q" or strategy.form == "sparse":
        return None
    return slot_major_output(model, paths)


def _emit_group(b: Builder, model: StatementModel, paths: list[PathModel], strategy: Strategy) -> str:
    statement = model.statement
    if strategy.form == "sparse":
        return emit_sparse_group(b, model, paths, _group_stacks(model, paths, strategy.stacking))
    slot_major = _slot_major(model, paths, strategy)
    layout, group, comment, order = _group_network(b, model, paths, strategy, slot_major)
    if strategy.outputs == "q":
        return emit_q_weights(b, model, paths, layout, group, comment, order, strategy.stacking == "full",
                              slot_major)
    var = emit_network(b, group, f"{statement.target}_t", comment, statement.index)
    sizes = dict(group.net.sizes)
    add_result(b, statement.target, var, tuple(sizes[c] for c in out_channels(statement)), layout)
    return order
