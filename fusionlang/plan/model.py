"""Each statement's frozen model, computed once: its paths (entries, trees, weight blocks and
offsets, fan-in), which of them keep weights, and its weight sizes.

Everything the strategies, the cost model and the report know about a statement comes from its
:class:`StatementModel`.

>>> from fusionlang.frontend import check_source
>>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 0e + 1e\\n"
...                  " x, x -> y [channels = uuu, weights = channel] }").diagram()
>>> model = statement_models(d)[0]
>>> model.all_paths, [p.position for p in model.paths], model.numel, model.redundant_numel
(2, [0], 1, 2)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .. import ir
from ..weights import Normaliser, path_normalisers, weight_block
from .geometry import PathModel, leg_entries, tree_spec
from .symmetric import independent_paths, reducible, symmetric_groups


@dataclass(frozen=True)
class StatementModel:
    """One statement as every later stage reads it.

    ``every_path``: all its paths (entries, coupling tree, weight block, ``fan_in``), offsets in
    the full weight layout; ``paths``: those that keep weights (all of them unless ``reduced``, the
    reduced symmetric basis over ``symmetric_groups``), offsets in the kept layout; ``numel``: the
    weights the module has, ``redundant_numel``: what every path would need."""

    statement: ir.Statement
    every_path: tuple[PathModel, ...]
    paths: tuple[PathModel, ...]
    numel: int
    redundant_numel: int
    reduced: bool
    symmetric_groups: tuple[tuple[int, ...], ...]

    @property
    def index(self) -> int:
        return self.statement.index

    @functools.cached_property
    def partitions(self) -> dict[str, list[list[PathModel]]]:
        """The kept paths partitioned by a stacking, filled once per stacking by
        :mod:`fusionlang.plan.strategies` (every candidate and count reads it: with 20 000 paths,
        recomputing took a second)."""
        return {}

    def __getstate__(self) -> dict[str, object]:
        # the partitions are a memo of the planner: not stored with a cached plan
        return {k: v for k, v in self.__dict__.items() if k != "partitions"}

    @property
    def all_paths(self) -> int:
        return len(self.every_path)

    @property
    def weighted(self) -> bool:
        return self.statement.weights != "none"

    @property
    def external(self) -> bool:
        return self.statement.weights == "external"


def statement_models(diagram: ir.Diagram) -> dict[int, StatementModel]:
    """Every statement's model, by statement index."""
    normalisers = path_normalisers(diagram)
    return {s.index: statement_model(diagram, s, normalisers) for s in diagram.statements}


def statement_model(diagram: ir.Diagram, statement: ir.Statement,
                    normalisers: dict[tuple[int, ir.Path], Normaliser]) -> StatementModel:
    """One statement's model; ``normalisers`` are :func:`fusionlang.weights.path_normalisers` of the diagram."""
    every = _laid_out(_paths(diagram, statement, normalisers), statement)
    groups = symmetric_groups(statement)
    reduced = reducible(diagram, statement)
    paths = every
    if reduced:
        paths = _laid_out(independent_paths(diagram.group.name, every, groups),
                          statement)
    return StatementModel(statement, every, paths, _numel(paths, statement), _numel(every, statement), reduced,
                          groups if reduced else ())


def kept_paths(diagram: ir.Diagram, statement: int = 0) -> tuple[int, ...]:
    """Positions of the paths of ``statement`` that keep weights (the reduced symmetric basis;
    every path unless the statement reads one leg on several leaves).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 0e + 1e\\n"
    ...                  " x, x -> y [channels = uuu, weights = channel] }").diagram()
    >>> kept_paths(d)
    (0,)
    """
    found = next(s for s in diagram.statements if s.index == statement)
    return tuple(p.position for p in statement_model(diagram, found, path_normalisers(diagram)).paths)


def _paths(diagram: ir.Diagram, statement: ir.Statement,
           normalisers: dict[tuple[int, ir.Path], Normaliser]) -> list[PathModel]:
    # only this statement's legs: a diagram may have thousands
    entries = {name: leg_entries(diagram, name) for name in {r.leg for r in statement.leaves} | {statement.target}}
    out: list[PathModel] = []
    for position, path in enumerate(statement.paths):
        leaves = tuple(entries[r.leg][e] for r, e in zip(statement.leaves, path.leaves, strict=False))
        output = entries[statement.target][path.output]
        tree = tree_spec(statement.tree, [e.irrep for e in leaves], iter(path.inner))
        block = weight_block(statement, [e.mul for e in leaves], output.mul)
        out.append(PathModel(position, path, leaves, output, tree, block, 0, normalisers[(statement.index, path)]))
    return out


def _laid_out(paths: Sequence[PathModel], statement: ir.Statement) -> tuple[PathModel, ...]:
    """The paths with the offsets of their blocks in the concatenation of theirs (path order)."""
    found, offset = [], 0
    for path in paths:
        found.append(replace(path, offset=offset))
        offset += path.block_size if statement.weights != "none" else 0
    return tuple(found)


def _numel(paths: Sequence[PathModel], statement: ir.Statement) -> int:
    return sum(p.block_size for p in paths) if statement.weights != "none" else 0
