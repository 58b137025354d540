"""``pairing = unordered`` (e3nn's TensorSquare): every path of ``x, x -> y`` coupled by one
network into ``[n, u, v, k]``, then laid out as the path's own target entry: every channel pair
(two entries), the pairs ``u < v`` gathered by an index buffer, or the diagonal ``u = v`` coupled
directly (docs/semantics.md, "Paths").
"""

from __future__ import annotations

import math

from ..weights import unordered_channels
from .builder import Builder, Layout, add_result
from .geometry import Entry, PathModel, statement_text
from .model import StatementModel
from .networks import Operand, emit_network, order_text, plan_network
from .paths import BATCH
from .program import Block, Step, TableSpec
from .values import entry_piece, piece_var


def emit_unordered(b: Builder, model: StatementModel) -> list[str]:
    """Emit every path of an unordered-pairs statement; returns the orders chosen."""
    return [_emit_path(b, model, path) for path in model.paths]


def _emit_path(b: Builder, model: StatementModel, path: PathModel) -> str:
    statement = model.statement
    first, second = path.leaves
    out = path.output
    diagonal = path.path.diagonal
    right = "u" if diagonal else "v"
    sizes = {"u": first.mul, "v": second.mul, "i": first.dim, "j": second.dim, "k": out.dim}
    block = Block((0, 0, 0), path.tree, path.fan_in)
    spec = TableSpec(b.diagram.group.name, (first.dim, second.dim, out.dim), (block,))
    table = b.table(spec, f"cg_{statement.target}_{statement.index}", f"{statement_text(statement)}: coupling of "
                    f"path {path.position}", statement.index)
    operands = [Operand(_entry_var(b, first), BATCH + "ui", ("entry", first.leg, first.index)),
                Operand(_entry_var(b, second), BATCH + right + "j", ("entry", second.leg, second.index)),
                Operand(table, "ijk", ("table", spec))]
    channels = "u" if diagonal else "uv"
    group = plan_network(operands, BATCH + channels + "k", sizes, "pairs")
    kind = "u = v" if diagonal else "u < v" if first.index == second.index else "every u, v"
    comment = f"{statement_text(statement)}: path {path.position} ({kind}) → {out.leg}[{out.item}]"
    var = emit_network(b, group, f"{statement.target}_t", comment, statement.index)
    if not diagonal:
        var = _flat_pairs(b, model, path, var)
    add_result(b, statement.target, var, (out.mul,), Layout(((None, out),), (out.dim,)))
    return order_text(group, [first.leg, second.leg, "C"])


def _entry_var(b: Builder, entry: Entry) -> str:
    """The entry as ``[n, mul, dim]``."""
    var = piece_var(b, entry_piece(b, entry))
    shape = (-1, entry.mul, entry.dim)
    return b.value(("reshape", var, shape), f"{entry.leg}_{entry.index}", lambda t: Step(
        t, "reshape", (var,), shape=shape, size=entry.mul * entry.dim))


def _flat_pairs(b: Builder, model: StatementModel, path: PathModel, var: str) -> str:
    """``[n, u, v, k]`` as the target entry ``[n, mul, k]``: flattened, and for two copies of one
    entry only the pairs ``u < v`` (gathered)."""
    first, second = path.leaves
    out = path.output
    shape = (-1, first.mul * second.mul, out.dim)
    flat = b.value(("reshape", var, shape), f"{out.leg}_pairs", lambda t: Step(
        t, "reshape", (var,), shape=shape, size=math.prod(shape[1:])))
    if first.index != second.index:
        return flat
    positions = tuple(unordered_channels(first.mul, False))
    index = b.index_buffer(positions, 1, f"idx_{out.leg}_{model.index}",
                           f"the channel pairs u < v of {first.leg}[{first.item}] ⊗ itself")
    return b.value(("gather", flat, index), f"{out.leg}_upper", lambda t: Step(
        t, "gather", (flat,), index=index, axis=1, comment=f"pairs u < v → {out.leg}[{out.item}]",
        statement=model.index, size=out.mul * out.dim))
