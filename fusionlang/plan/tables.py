"""Coupling tables of one group of paths: one pre-contracted table (``U``) or one per vertex
(``chain``), laid out block by block against the leaves' stacks and the output layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from .. import ir
from .builder import Builder, Layout, out_offset
from .geometry import COMPONENTS, INNER, PathModel, Stack, leaf_channels, statement_text
from .model import StatementModel
from .networks import Operand
from .paths import BATCH
from .program import Block, TableSpec, spec_dim
from .symmetric import entry_key, group_permutations
from .values import stack_value


def leaf_operands(b: Builder, statement: ir.Statement, stacks: dict[int, Stack],
                  component_major: bool = False) -> tuple[list[Operand], dict[str, int], list[str]]:
    """The leaves' stacks as operands ``[n, channel, D]``, with their index sizes and names
    (``component_major``: stacks of several channels as ``[n, D, channel]``)."""
    channels = leaf_channels(statement)
    sizes: dict[str, int] = {}
    operands, names = [], []
    for k, ref in enumerate(statement.leaves):
        stack = stacks[k]
        sizes[channels[k]] = stack.mul
        sizes[COMPONENTS[k]] = stack.dim
        if component_major and stack.mul > 1:
            operands.append(Operand(stack_value(b, stack, True), BATCH + COMPONENTS[k] + channels[k],
                                    ("stack_t",) + stack.key))
        else:
            operands.append(Operand(stack_value(b, stack), BATCH + channels[k] + COMPONENTS[k], ("stack",) + stack.key))
        names.append(ref.leg)
    return operands, sizes, names


def coupling_operands(b: Builder, model: StatementModel, paths: Sequence[PathModel], stacks: dict[int, Stack],
                      layout: Layout, path_axis: bool, form: str, stacking: str, sizes: dict[str, int],
                      columns: tuple[int, ...] = ()) -> tuple[list[Operand], list[str]]:
    """The coupling tables of a group: one ``U`` (or ``C``), or one per vertex (``chain``);
    ``sparse``: one per vertex too, but one ``U`` for two leaves and for symmetric products, every
    table registered as its nonzeros. ``columns``: the order the output axis is stored in."""
    if path_axis:
        sizes["p"] = len(paths)
    sparse = form == "sparse"
    if form == "U" or model.statement.arity <= 2 or (sparse and model.reduced):
        canonical = model.reduced and stacking != "full"
        return ([_u_table(b, model, paths, stacks, layout, path_axis, canonical, sparse, columns)],
                ["U" if model.statement.arity > 2 else "C"])
    return _chain_tables(b, model, paths, stacks, layout, path_axis, sizes, sparse, columns)


def _u_table(b: Builder, model: StatementModel, paths: Sequence[PathModel], stacks: dict[int, Stack],
             layout: Layout, path_axis: bool, canonical: bool, sparse: bool = False,
             columns: tuple[int, ...] = ()) -> Operand:
    arity = model.statement.arity
    shape = tuple(stacks[k].dim for k in range(arity)) + ((len(paths),) if path_axis else ()) + (layout.size,)
    blocks = []
    for number, path in enumerate(paths):
        tail = ((number,) if path_axis else ()) + (out_offset(layout, path),)
        if canonical:
            blocks += _canonical_blocks(model, path, stacks, tail)
            continue
        offsets = tuple(stacks[k].offset(e) for k, e in enumerate(path.leaves))
        blocks.append(Block(offsets + tail, path.tree, path.fan_in))
    symmetrize = () if canonical else model.symmetric_groups
    spec = TableSpec(b.diagram.group.name, shape, tuple(blocks), (arity,) if path_axis else (), symmetrize, columns)
    statement = model.statement
    what = "coupling" if arity <= 2 else "pre-contracted coupling (U)"
    if model.reduced:
        what = f"symmetrised {what}" + (", sorted entries only" if canonical else "")
    name = b.table(spec, f"cg_{statement.target}_{statement.index}",
                   f"{statement_text(statement)}: {what} of {len(paths)} path{'s' * (len(paths) != 1)}",
                   statement.index, arity if sparse else 0)
    indices = "".join(COMPONENTS[:arity]) + ("p" if path_axis else "") + "k"
    return Operand(name, indices, ("table", spec))


def _canonical_blocks(model: StatementModel, path: PathModel, stacks: dict[int, Stack],
                      tail: tuple[int, ...]) -> list[Block]:
    """The symmetrised coupling of ``path`` on the sorted ordering of its repeated entries.

    With ``U_sym = (1/|G|) Σ_σ σ·U`` and equal features on the repeated leaves, every ordering of
    a multiset of entries contributes alike: the sorted ordering, times the number of orderings,
    is all that needs computing. ``σ·U_p`` reaches the sorted window when ``σ`` maps the sorted
    entries onto the path's entries; it is the path's coupling with its leaf axes permuted."""
    arity = len(path.leaves)
    canonical = entry_key(model.symmetric_groups, path)
    found = []
    perms = list(group_permutations(model.symmetric_groups, arity))
    orderings = len({tuple(canonical[s[m]] for m in range(arity)) for s in perms})
    for sigma in perms:
        if tuple(canonical[sigma[m]] for m in range(arity)) != tuple(e.index for e in path.leaves):
            continue
        # placed axis m holds the index of canonical position m, i.e. the path's axis sigma^-1(m)
        inverse = tuple(sigma.index(m) for m in range(arity))
        offsets = tuple(stacks[m].offset(stacks[m].entries[0]) for m in range(arity))
        found.append(Block(offsets + tail, path.tree, path.fan_in, inverse, (orderings, len(perms))))
    return found


def _chain_tables(b: Builder, model: StatementModel, paths: Sequence[PathModel], stacks: dict[int, Stack],
                  layout: Layout, path_axis: bool, sizes: dict[str, int],
                  sparse: bool = False, columns: tuple[int, ...] = ()) -> tuple[list[Operand], list[str]]:
    """One table per vertex: inner vertices stack the distinct sub-paths below them."""
    statement = model.statement
    vertices = statement.vertices
    slots = [_placed(_vertex_slots(statement, v, paths)) for v in vertices[:-1]]
    operands, names = [], []
    for number, vertex in enumerate(vertices):
        root = number == len(vertices) - 1
        spec, indices = _vertex_table(b, model, vertex, number, paths, stacks, slots, layout, path_axis, root)
        if root and columns:
            spec = replace(spec, columns=columns)
        for letter, size in zip(indices, spec.shape, strict=False):
            sizes[letter] = size
        name = b.table(spec, f"cg_{statement.target}_{statement.index}_v{number}",
                       f"{statement_text(statement)}: vertex {number} of {len(paths)} paths", statement.index,
                       2 if sparse else 0)
        operands.append(Operand(name, indices, ("table", spec)))
        names.append(f"C{number}")
    return operands, names


def _vertex_slots(statement: ir.Statement, vertex: ir.Fuse, paths: Sequence[PathModel]) -> list[tuple[Any, ...]]:
    subtree = _subtree(statement, vertex)
    keys = {_subpath_key(subtree, p) for p in paths}
    return sorted(keys, key=repr)


Subtree = tuple[tuple[int, ...], tuple[int, ...]]


def _subtree(statement: ir.Statement, node: ir.Node) -> Subtree:
    """A sub-tree's leaf positions and vertex numbers: found once, read for every path."""
    return (tuple(ref.position for ref in ir.leaves(node)),
            tuple(statement.vertices.index(v) for v in ir.fuse_nodes(node)))


def _subpath_key(subtree: Subtree, path: PathModel) -> tuple[Any, ...]:
    """What a sub-tree computes along a path: its leaves' entries and its vertices' irreps."""
    leaves, vertices = subtree
    return tuple(path.leaves[p].index for p in leaves), tuple(str(path.path.inner[k]) for k in vertices)


def _vertex_table(b: Builder, model: StatementModel, vertex: ir.Fuse, number: int, paths: Sequence[PathModel],
                  stacks: dict[int, Stack], slots: list[Slots], layout: Layout,
                  path_axis: bool, root: bool) -> tuple[TableSpec, str]:
    statement = model.statement
    left_axis = _child_axis(statement, vertex.left, stacks, slots)
    right_axis = _child_axis(statement, vertex.right, stacks, slots)
    if root:
        out_letters = ("p" if path_axis else "") + "k"
        shape = (left_axis[1], right_axis[1]) + ((len(paths),) if path_axis else ()) + (layout.size,)
    else:
        out_letters = INNER[number]
        shape = (left_axis[1], right_axis[1], slots[number].dim)
    blocks: dict[tuple[int, ...], Block] = {}
    subtree = _subtree(statement, vertex)
    for index, path in enumerate(paths):
        inner = str(path.path.inner[number])
        tree = (_child_irrep(statement, vertex.left, path), _child_irrep(statement, vertex.right, path), inner)
        offsets: tuple[int, ...] = (left_axis[2](path), right_axis[2](path))
        if root:
            offsets += ((index,) if path_axis else ()) + (out_offset(layout, path),)
            blocks[offsets] = Block(offsets, tree, path.fan_in)
        else:
            offsets += (slots[number].offsets[_subpath_key(subtree, path)],)
            blocks[offsets] = Block(offsets, tree, 1)
    spec = TableSpec(b.diagram.group.name, shape, tuple(blocks[k] for k in sorted(blocks)),
                     (2,) if root and path_axis else ())
    return spec, left_axis[0] + right_axis[0] + out_letters


def _child_axis(statement: ir.Statement, child: ir.Node, stacks: dict[int, Stack],
                slots: list[Slots]) -> tuple[str, int, Callable[[PathModel], int]]:
    """(index letter, size, offset of a path) of a vertex's child axis."""
    if isinstance(child, ir.LeafRef):
        stack = stacks[child.position]
        return COMPONENTS[child.position], stack.dim, lambda p: stack.offset(p.leaves[child.position])
    number = statement.vertices.index(child)
    own, subtree = slots[number], _subtree(statement, child)
    return INNER[number], own.dim, lambda p: own.offsets[_subpath_key(subtree, p)]


def _child_irrep(statement: ir.Statement, child: ir.Node, path: PathModel) -> str:
    if isinstance(child, ir.LeafRef):
        return str(path.leaves[child.position].irrep)
    return str(path.path.inner[statement.vertices.index(child)])


class Slots(NamedTuple):
    """An inner vertex's distinct sub-paths side by side: where each starts, and their total dim."""

    offsets: dict[tuple[Any, ...], int]
    dim: int


def _placed(keys: Sequence[tuple[Any, ...]]) -> Slots:
    """Offsets computed once: looked up per path and vertex, summing the slots before each was
    quadratic (a four-statement SU(2) diagram spent 10 of its 20 s of planning there)."""
    offsets, total = {}, 0
    for key in keys:
        offsets[key] = total
        total += spec_dim(key[1][-1])
    return Slots(offsets, total)
