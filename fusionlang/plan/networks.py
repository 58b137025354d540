"""Emission of one planned einsum network: its pairwise contractions as steps (broadcast products
where nothing is summed), whole or with the last contraction split into parts.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

from .builder import Builder
from .paths import BATCH, Contraction, Cost, Network, Tree, contraction_steps, optimal_tree, pair_cost
from .program import Step

SHORT_SUM = 7
"""The longest sum inductor unrolls (PyTorch 2.13: fewer than its ``unroll_reductions_threshold``, 8);
:data:`fusionlang.runtime_sums.SHORT_SUM` is the same number on the runtime's side."""


@dataclass(frozen=True)
class Operand:
    """A tensor of a network: a variable (or buffer), its indices and the key that shares it."""

    var: str
    indices: str
    key: Hashable


@dataclass(frozen=True)
class GroupPlan:
    """How one group of paths is contracted: the operands, the order, the output."""

    operands: tuple[Operand, ...]
    net: Network
    tree: Tree
    cost: Cost
    label: str


def network_sizes(indices: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """A :class:`Network`'s sizes: every index but the batch, sorted."""
    return tuple(sorted((k, v) for k, v in indices.items() if k != BATCH))


def contract(b: Builder, hint: str, operands: tuple[str, str], equation: str, net: Network, comment: str,
             statement: int) -> str:
    """Emit one pairwise contraction (shared when the same one was emitted before).

    Contractions that sum no index larger than 1 are broadcast products: ``a * b`` is much
    cheaper than the batched matrix products ``torch.einsum`` would run for them."""
    va, vb = operands
    inputs, result = equation.split("->")
    left, right = inputs.split(",")
    _, cost = pair_cost(net, left, right, result)
    key = ("einsum", _canonical_equation(equation), va, vb)
    size = net.numel(result) if BATCH in result else 0
    summed = set(left + right) - set(result)
    if all(net.size(i) == 1 for i in summed):
        views = (_broadcast_view(net, left, result), _broadcast_view(net, right, result))
        args = (va, vb)
        if views[0][0] and not views[1][0]:
            # torch lays a product out like its first operand: lead with the one in the result's order
            views, args = views[::-1], args[::-1]
        make = lambda t: Step(t, "mul", args, equation=equation, views=views, comment=comment,  # noqa: E731
                              statement=statement, flops=cost.per_sample, setup_flops=cost.setup, size=size)
    else:
        batched = BATCH in left and BATCH in right
        # torch runs a batched einsum as one small matrix product per value of the indices both
        # operands and the result share: per sample, their count
        matrices = net.numel(set(left) & set(right) & set(result)) if batched else 0
        # a batch-free product keeps its result's shape: a packed table's product needs the sizes
        shape = () if BATCH in result else tuple(net.size(i) for i in result)
        short_sums = batched and _one_row_product(net, left, right, result)
        make = lambda t: Step(t, "einsum", (va, vb), equation=equation, comment=comment,  # noqa: E731
                              statement=statement, flops=cost.per_sample, setup_flops=cost.setup, size=size,
                              batched=batched, matrices=matrices, shape=shape, short_sums=short_sums)
    return b.value(key, hint, make)


def _one_row_product(net: Network, left: str, right: str, result: str) -> bool:
    """Whether ``torch.einsum`` runs ``left,right->result`` as a ``bmm`` with one row or one column
    that sums 8 terms or more: inductor writes that sum as a loop it may parallelise badly, so the
    step is emitted as :func:`fusionlang.runtime.einsum_short_sums`."""
    rows = net.numel(set(left) & set(result) - set(right))
    columns = net.numel(set(right) & set(result) - set(left))
    terms = net.numel(set(left) & set(right) - set(result))
    return min(rows, columns) == 1 and terms > SHORT_SUM


def _broadcast_view(net: Network, indices: str, result: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(permutation or (), view shape) that aligns an operand with the result's axes."""
    kept = [i for i in indices if i in result]
    ordered = sorted(kept, key=result.index)
    permutation: tuple[int, ...] = ()
    if ordered != kept:
        positions = [indices.index(i) for i in ordered]
        dropped = [k for k, i in enumerate(indices) if i not in result]
        permutation = tuple(positions + dropped)
    shape = tuple((-1 if r == net.batch else net.size(r)) if r in kept else 1 for r in result)
    return permutation, shape


def emit_network(b: Builder, group: GroupPlan, hint: str, comment: str, statement: int) -> str:
    """Emit the pairwise contractions of a planned network; returns the result variable."""
    steps = contraction_steps(group.net, group.tree)
    return _emit_steps(b, group, steps, len(steps), hint, comment, statement)[-1]


def _emit_steps(b: Builder, group: GroupPlan, steps: Sequence[Contraction], count: int, hint: str,
                comment: str, statement: int) -> list[str]:
    """Emit the first ``count`` of a network's contractions ``steps``; returns the variables of
    its operands followed by those results."""
    values = [op.var for op in group.operands]
    for number, step in enumerate(steps[:count]):
        text = comment if number == len(steps) - 1 else f"{comment} (step {number + 1} of {len(steps)})"
        if step.right < 0:
            values.append(_reduce(b, hint, values[step.left], step, text, statement))
        else:
            values.append(contract(b, hint, (values[step.left], values[step.right]), step.equation, group.net,
                                   text, statement))
    return values


@dataclass(frozen=True)
class Coupled:
    """Coupled paths in ``var``: exactly the slots of one reader (``whole``), or the layout from
    offset ``start`` on, where a reader's slots lie at their layout offsets less ``start``."""

    var: str
    whole: bool
    start: int = 0


SMALL_PRODUCT = 400
"""Per-sample products of fewer multiply-adds than this, torch runs with a plain loop (``bmm`` on
the CPU: ``contraction_size * res_rows * res_cols < 400`` in at::native's ``bmm_out_or_baddbmm_``):
0.52 µs per ``[16, 4] @ [4, 5]`` here, against 0.14 µs for ``[16, 4] @ [4, 9]`` on its BLAS path, so
parts that small cost more than one product sliced."""


def emit_network_parts(b: Builder, group: GroupPlan, hint: str, comment: str, statement: int,
                       ranges: Sequence[tuple[int, int]], in_parts: bool) -> list[Coupled]:
    """Emit a planned network whose output axis ``k`` is read in parts ``(start, width)``.

    ``in_parts``: every part gets its own last contraction, on a slice of the operand that
    carries ``k``. Each part is then contiguous, so whatever reads it next needs no strided
    gather, and backward writes one gradient per part instead of a zero-filled full-size one per
    slice. A part whose product would be smaller than :data:`SMALL_PRODUCT` shares the next
    one's (the last, the previous one's). Otherwise (or when the last step sums ``k``'s operand
    alone) one tensor holds them all."""
    steps = contraction_steps(group.net, group.tree)
    joined = _joined_parts(group.net, steps[-1], ranges) if steps[-1].right >= 0 else [list(ranges)]
    if not in_parts or len(joined) == 1:
        var = emit_network(b, group, hint, comment, statement)
        return [Coupled(var, len(ranges) == 1)] * len(ranges)
    values = _emit_steps(b, group, steps, len(steps) - 1, hint, comment, statement)
    last = steps[-1]
    left, right = last.equation.split("->")[0].split(",")
    sliced_left = "k" in left
    indices = left if sliced_left else right
    sliced, other = (values[last.left], values[last.right]) if sliced_left else (values[last.right], values[last.left])
    axis = indices.index("k")
    parts = []
    for members in joined:
        start, width = members[0][0], sum(w for _, w in members)
        net = replace(group.net, sizes=tuple((i, width if i == "k" else s) for i, s in group.net.sizes))
        size = net.numel(indices) if BATCH in indices else 0
        cut = Step("", "narrow", (sliced,), start=start, stop=start + width, axis=axis, size=size,
                   comment=f"its part {start}:{start + width} along k")
        piece = b.value(("narrow", sliced, axis, start, width), f"{sliced.removeprefix('self.')}_k",
                        named_step(cut))
        operands = (piece, other) if sliced_left else (other, piece)
        var = contract(b, hint, operands, last.equation, net, f"{comment}, slots {start}:{start + width}", statement)
        parts += [Coupled(var, len(members) == 1, start)] * len(members)
    return parts


def _joined_parts(net: Network, last: Contraction,
                  ranges: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Consecutive ``ranges`` in groups whose share of the last contraction, a per-sample matrix
    product, reaches :data:`SMALL_PRODUCT` multiply-adds; each range alone when it is no such
    product."""
    left, right = last.equation.split("->")[0].split(",")
    if BATCH not in left or BATCH not in right:
        return [[r] for r in ranges]
    per_column = net.numel(set(left + right) - {BATCH, "k"})
    groups: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for part in ranges:
        current.append(part)
        if per_column * sum(w for _, w in current) >= SMALL_PRODUCT:
            groups.append(current)
            current = []
    if current and groups:  # a small remainder joins the last group
        groups[-1] += current
    elif current:
        groups.append(current)
    return groups


def named_step(step: Step) -> Callable[[str], Step]:
    """A maker for :meth:`Builder.value`: ``step`` with the fresh target name."""
    return lambda target: replace(step, target=target)


def _reduce(b: Builder, hint: str, var: str, step: Contraction, comment: str, statement: int) -> str:
    """A one-operand einsum that sums indices no other operand needs."""
    key = ("einsum", _canonical_equation(step.equation), var)
    return b.value(key, hint, lambda t: Step(t, "einsum", (var,), equation=step.equation, comment=comment,
                                             statement=statement, flops=step.cost.per_sample,
                                             setup_flops=step.cost.setup, size=step.cost.peak))


def _canonical_equation(equation: str) -> str:
    names: dict[str, str] = {}
    out = []
    for ch in equation:
        if ch.isalpha():
            names.setdefault(ch, chr(ord("a") + len(names)))
            out.append(names[ch])
        else:
            out.append(ch)
    return "".join(out)


def plan_network(operands: Sequence[Operand], output: str, sizes: dict[str, int], label: str) -> GroupPlan:
    """Order the contraction of ``operands`` into ``output`` (:func:`.paths.optimal_tree`)."""
    net = Network(tuple(op.indices for op in operands), output, network_sizes(sizes))
    tree, cost = optimal_tree(net)
    return GroupPlan(tuple(operands), net, tree, cost, label)


def order_text(group: GroupPlan, names: Sequence[str]) -> str:
    """A contraction tree as text, e.g. ``((y·C)·x)·W``."""
    def text(node: Tree) -> str:
        if isinstance(node, int):
            return names[node]
        return f"({text(node[0])}·{text(node[1])})"
    rendered = text(group.tree)
    return rendered[1:-1] if rendered.startswith("(") else rendered
