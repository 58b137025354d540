"""How many coupling numbers are nonzero, and the FLOPs a contraction that skipped every zero
would need: the *zero-skipping limit* that ``fusionc explain`` prints beside the naive and
planned counts.

The couplings are mostly zeros (a real Clebsch-Gordan block of ``l1 ⊗ l2 → l3`` has about
``2 (2 l1 + 1)(2 l2 + 1)`` nonzeros out of ``(2 l1 + 1)(2 l2 + 1)(2 l3 + 1)``), and the dense
tables the strategies stack multiply them all. The limit is one well-defined yardstick, not a
lower bound over every algorithm: every path is evaluated vertex by vertex along its tree, each
vertex visiting only the nonzeros of its coupling (two multiplications and one addition per
nonzero and per combination of the channels it carries), and then weighted and summed into its
output entry exactly as the naive count does.

>>> from fusionlang.frontend import check_source
>>> from fusionlang.weights import path_normalisers
>>> from fusionlang.plan.model import statement_model
>>> d = check_source("diagram d { group O3\\n input x, y : 1o\\n output z : 0e\\n x, y -> z }").diagram()
>>> zero_skipping_flops(d, statement_model(d, d.statements[0], path_normalisers(d)))
9
"""

from __future__ import annotations

import functools
import math

from .. import ir
from ..groups import Group, Irrep, coupling
from ..weights import weight_letters
from .cost import path_sum_flops
from .geometry import leaf_channels, out_channels
from .model import StatementModel
from .networks import network_sizes
from .paths import BATCH, Network, tree_cost
from .program import NONZERO

FLOPS_PER_NONZERO = 3  # left · right · coefficient, added into the result


@functools.lru_cache(maxsize=8192)
def vertex_nonzeros(group: Group, a: Irrep, b: Irrep, c: Irrep) -> int:
    """Nonzero entries of the coupling ``a ⊗ b → c``.

    >>> from fusionlang.groups import Group, Irrep
    >>> o3 = Group("O3")
    >>> vertex_nonzeros(o3, Irrep.parse("1o", o3), Irrep.parse("1o", o3), Irrep.parse("0e", o3))
    3
    """
    return int((coupling(group, a, b, c).abs() > NONZERO).sum())


def zero_skipping_flops(diagram: ir.Diagram, model: StatementModel) -> int:
    """Per-sample FLOPs of the statement with every coupling zero skipped (the module docstring
    says how they are counted); a linear map has no couplings: its naive count."""
    statement = model.statement
    total = path_sum_flops(model)
    for path in model.every_path:
        muls = [entry.mul for entry in path.leaves]
        total += _weighting_flops(statement, muls, path.output.mul, path.output.dim)
        if not statement.is_linear:
            total += _coupling_flops(diagram, statement, path.path, muls)
    return total


def _coupling_flops(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path, muls: list[int]) -> int:
    leaves = [diagram.irreps(ref.leg)[entry].irrep for ref, entry in zip(statement.leaves, path.leaves, strict=True)]
    inner = dict(zip((id(node) for node in ir.fuse_nodes(statement.tree)), path.inner, strict=True))
    letters = leaf_channels(statement)
    sizes = dict(zip(letters, muls, strict=True))
    flops, _, _ = _vertex_flops(diagram.group, statement.tree, leaves, inner, letters, sizes)
    return flops


def _vertex_flops(group: Group, node: ir.Node, leaves: list[Irrep], inner: dict[int, Irrep],
                  letters: tuple[str, ...], sizes: dict[str, int]) -> tuple[int, Irrep, frozenset[str]]:
    """FLOPs of a subtree, its irrep and the channel letters it carries."""
    if isinstance(node, ir.LeafRef):
        return 0, leaves[node.position], frozenset(letters[node.position])
    left, a, left_channels = _vertex_flops(group, node.left, leaves, inner, letters, sizes)
    right, b, right_channels = _vertex_flops(group, node.right, leaves, inner, letters, sizes)
    c = inner[id(node)]
    channels = left_channels | right_channels
    combinations = math.prod(sizes[letter] for letter in channels)
    return left + right + FLOPS_PER_NONZERO * vertex_nonzeros(group, a, b, c) * combinations, c, channels


def _weighting_flops(statement: ir.Statement, muls: list[int], out_mul: int, out_dim: int) -> int:
    """FLOPs of weighting one coupled path ``[n, channels..., k]`` into its output channels,
    counted like the naive network's last contraction (a linear map: its whole naive count)."""
    if statement.weights == "none":
        return 0
    letters = leaf_channels(statement)
    channels = "".join(dict.fromkeys(letters))
    sizes: dict[str, int] = {**dict(zip(letters, muls, strict=True)), "k": out_dim}
    out = out_channels(statement)
    sizes.setdefault("w", out_mul)
    weight = (BATCH if statement.weights == "external" else "") + weight_letters(statement, letters)
    net = Network((BATCH + channels + "k", weight), BATCH + out + "k", network_sizes(sizes))
    return tree_cost(net, (0, 1)).per_sample


