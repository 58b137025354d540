"""The sparse form: a group's coupling tables kept as their nonzeros only, and contracted by
gathering, multiplying and scatter-adding rows, so no zero of the couplings is ever multiplied.

The couplings are mostly zeros (99.3-99.6 % of the stacked tables of a three-leaf fusion or a
product basis), and the dense forms multiply them all. Here every table (one per vertex, or one
pre-contracted table for two leaves and for symmetric products) is a list of nonzeros ``z``: for
each, the position along every leaf axis, the flat output position and the value. The features
are laid out *component-major* (``[D, n, channels]``), so that gathering the rows of a leaf's
nonzeros and adding rows into the output both move whole contiguous rows:

    g_k = x_k.permute(...).index_select(0, rows_k)          # [z, n, channels of leaf k]
    t   = g_0 * c * g_1 * ...                                 # [z, n, channels], broadcast
    r   = zeros(K).index_add(0, out, t)                       # [K, n, channels]

which is three FLOPs per nonzero and channel at a vertex (the zero-skipping limit counts the same).
The root's result is then weighted into the output by the same einsum the dense forms end with.
Whether it pays is the cost model's call: gathers and scatters move memory at a fraction of
the speed of a dense matrix product, which wins on small dense blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .builder import Builder, add_result, joint_layout, layout_text, q_layout
from .geometry import COMPONENTS, PathModel, Stack, leaf_channels, out_channels, statement_text
from .model import StatementModel
from .networks import Coupled, Operand, contract, network_sizes
from .paths import BATCH, Network
from .program import Step, TableSpec, sparse_nonzeros
from .tables import coupling_operands, leaf_operands
from .weighted import weigh_q_runs

NONZERO_AXIS = "z"


@dataclass(frozen=True)
class Rows:
    """A value laid out for gathering: ``var[D, n, *channels]`` (``permuted``: ``var`` is
    ``[n, *channels, D]`` and is permuted by the gather)."""

    var: str
    channels: str
    permuted: bool = False


def emit_sparse_group(b: Builder, model: StatementModel, paths: list[PathModel], stacks: dict[int, Stack]) -> str:
    """Emit a group's paths in the sparse form; returns the human-readable order. Weighted paths
    are coupled each into its own slot (the ``q`` layout: a path axis would hold every path's
    slots for every output entry, mostly zeros) and weighted run by run as the ``q`` strategies do."""
    statement = model.statement
    layout = q_layout(paths) if model.weighted else joint_layout(paths)
    leaves, sizes, names = leaf_operands(b, statement, stacks)
    tables, _ = coupling_operands(b, model, paths, stacks, layout, False, "sparse", "full", sizes)
    sizes["k"] = layout.size
    channels = leaf_channels(statement)
    rows = {COMPONENTS[k]: Rows(op.var, channels[k], True) for k, op in enumerate(leaves)}
    comment = f"{statement_text(statement)}: {len(paths)} path{'s' * (len(paths) != 1)} → {layout_text(layout)}"
    for number, table in enumerate(tables):
        text = comment if len(tables) == 1 else f"{comment}, vertex {number + 1} of {len(tables)}"
        rows[table.indices[-1]] = _sparse_vertex(b, model, table, rows, sizes, text)
    root = rows["k"]
    # [K, n, *channels] seen as [n, *channels, K]: a view
    equation = f"k{BATCH}{root.channels}->{BATCH}{root.channels}k"
    coupled = b.value(("einsum", equation, root.var), f"{statement.target}_t", lambda t: Step(
        t, "einsum", (root.var,), equation=equation, comment=comment + ", channels first (a view)",
        statement=statement.index))
    order = " · ".join(names) + ", nonzeros only"
    if model.weighted:
        weigh_q_runs(b, model, layout, lambda ranges: [Coupled(coupled, len(ranges) == 1)] * len(ranges))
        return order + ", then ·W per run of alike output entries"
    var = _unweighted(b, model, coupled, root.channels, sizes, comment)
    add_result(b, statement.target, var, tuple(sizes[c] for c in out_channels(statement)), layout)
    return order


def _sparse_vertex(b: Builder, model: StatementModel, table: Operand, rows: dict[str, Rows],
                   sizes: dict[str, int], comment: str) -> Rows:
    """Gather the rows of every leaf axis's nonzeros, multiply them and the values, add them up
    into the output positions: ``[K, n, channels]``."""
    spec = _table_spec(table)
    leaf_axes = len(table.indices) - 1
    count = sparse_nonzeros(spec, leaf_axes)
    statement = model.statement.index
    letters = dict(sizes, **{NONZERO_AXIS: count})
    gathered = [_gather(b, rows[letter], f"{table.var}_i{axis}", count, letters, comment)
                for axis, letter in enumerate(table.indices[:leaf_axes])]
    channels = "".join(dict.fromkeys("".join(g.channels for g in gathered)))
    net = Network((), "", network_sizes(letters))
    var, have = gathered[0].var, NONZERO_AXIS + BATCH + gathered[0].channels
    var = contract(b, "nz", (var, table.var), f"{have},{NONZERO_AXIS}->{have}", net, comment + ": times the values",
                   statement)
    for g in gathered[1:]:
        indices = NONZERO_AXIS + BATCH + g.channels
        result = NONZERO_AXIS + BATCH + "".join(c for c in channels if c in have + g.channels)
        var = contract(b, "nz", (var, g.var), f"{have},{indices}->{result}", net, comment + ": products", statement)
        have = result
    out_size = math.prod(sizes[letter] for letter in table.indices[leaf_axes:])
    width = math.prod(sizes[c] for c in channels)
    target = b.value(("scatter", var, table.var), "rows", lambda t: Step(
        t, "scatter", (var,), shape=(out_size,), index=f"{table.var}_out", comment=comment + ": added up",
        statement=statement, flops=count * width, size=out_size * width))
    return Rows(target, channels)


def _table_spec(table: Operand) -> TableSpec:
    """The recipe of a table operand (its key is ``("table", spec)``)."""
    key: Any = table.key
    assert key[0] == "table" and isinstance(key[1], TableSpec)
    return key[1]


def _gather(b: Builder, value: Rows, index: str, count: int, sizes: dict[str, int], comment: str) -> Rows:
    """``value``'s rows ``index``: ``[z, n, *channels]``."""
    ndim = 2 + len(value.channels)
    permutation = (ndim - 1,) + tuple(range(ndim - 1)) if value.permuted else ()
    size = count * math.prod(sizes[c] for c in value.channels)
    var = b.value(("gather", value.var, index), "rows", lambda t: Step(
        t, "gather", (value.var,), index=index, axis=0, views=((permutation, ()),), comment=comment + ": rows gathered",
        size=size))
    return Rows(var, value.channels)


def _unweighted(b: Builder, model: StatementModel, var: str, channels: str, sizes: dict[str, int],
                comment: str) -> str:
    """The coupled ``[n, *channels, K]`` summed over the channels the output does not keep (``uvu``)."""
    statement = model.statement
    out = out_channels(statement)
    if out == channels:
        return var
    equation = f"{BATCH}{channels}k->{BATCH}{out}k"
    net = Network((BATCH + channels + "k",), BATCH + out + "k", network_sizes(sizes))
    return b.value(("einsum", equation, var), f"{statement.target}_t", lambda t: Step(
        t, "einsum", (var,), equation=equation, comment=comment, statement=statement.index,
        flops=net.numel(BATCH + channels + "k"), size=net.numel(BATCH + out + "k")))
