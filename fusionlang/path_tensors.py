"""The dense coupling tensor of one path: its vertices' coupling tensors chained along the tree.

The slow, obviously right form of docs/semantics.md that :mod:`fusionlang.testing`'s reference
contraction and :mod:`fusionlang.importers` read (the planner builds the same tensors block by
block in :func:`fusionlang.runtime.coupling_table`).

>>> from fusionlang.frontend import check_source
>>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 0e\\n x, x -> y }").diagram()
>>> path_coupling(d, d.statements[0], d.statements[0].paths[0]).shape
torch.Size([3, 3, 1])
"""

from __future__ import annotations

import functools
import math

import torch

from . import ir
from .groups import Group, Irrep, coupling

__all__ = ["path_coupling"]

_COMPONENT_LETTERS = "abcdefghijkl"


def path_coupling(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> torch.Tensor:
    """The coupling of one path, ``P[i_1, ..., i_n, k]``: vertex tensors chained along the tree.

    Every vertex is ``fusionlang.coupling(group, a, b, c)``, times ``sqrt(dim c)`` for SO(3)/O(3)
    (component normalisation). A linear map's coupling is the identity.
    """
    leaf_irreps = tuple(diagram.irreps(ref.leg)[e].irrep for ref, e in zip(statement.leaves, path.leaves, strict=True))
    return _tree_coupling(diagram.group, statement.tree, leaf_irreps, path.inner).clone()


@functools.lru_cache(maxsize=4096)
def _tree_coupling(group: Group, tree: ir.Node, leaf_irreps: tuple[Irrep, ...],
                   inner: tuple[Irrep, ...]) -> torch.Tensor:
    vertex_irreps = {id(node): irrep for node, irrep in zip(ir.fuse_nodes(tree), inner, strict=True)}
    tensor, _ = _node_coupling(group, tree, list(leaf_irreps), vertex_irreps)
    return tensor


def _node_coupling(group: Group, node: ir.Node, leaf_irreps: list[Irrep],
                   vertex_irreps: dict[int, Irrep]) -> tuple[torch.Tensor, Irrep]:
    """The coupling of a subtree, indices (its leaves' components..., its own component)."""
    dtype = torch.complex128 if group.is_complex else torch.float64
    if isinstance(node, ir.LeafRef):
        irrep = leaf_irreps[node.position]
        return torch.eye(irrep.dim, dtype=dtype), irrep
    left, a = _node_coupling(group, node.left, leaf_irreps, vertex_irreps)
    right, b = _node_coupling(group, node.right, leaf_irreps, vertex_irreps)
    c = vertex_irreps[id(node)]
    vertex = coupling(group, a, b, c).to(dtype) * (1.0 if group.is_complex else math.sqrt(c.dim))
    n_left, n_right = left.dim() - 1, right.dim() - 1
    l_idx, r_idx = _COMPONENT_LETTERS[:n_left], _COMPONENT_LETTERS[n_left:n_left + n_right]
    spec = f"{l_idx}y,{r_idx}z,yzw->{l_idx}{r_idx}w"
    return torch.einsum(spec, left, right, vertex), c
