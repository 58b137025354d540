"""Packed coupling tables: a dense table that is mostly zeros is kept as its nonzeros.

Why: the stacked tables the fast strategies multiply are 0.3-4 % nonzero at low degree, so a
module held up to 57x the buffers of e3nn's per-path couplings (fully connected l = 3: 368 against
6.5 KiB). A product of such a table with a batch-free operand (weights, a setup intermediate)
runs over the nonzeros (a ``packed`` step, :func:`fusionlang.runtime.packed_product`), so the
per-call setup shrinks by the table's density; any other use unpacks the table once, before its
first use, into a local of the same name (an ``unpack`` step, :func:`fusionlang.runtime.unpacked`:
about 18 us for 65 536 numbers, one thread).

The choice times every candidate packed (its steps rewritten here before the time model reads
them), and the program is packed the same way once chosen. A candidate fits the memory budget if
its dense tables do (the rule before packing) or if what it holds while running does
(:func:`running_numbers`: the packed tables, those unpacked at every call dense, and what its
packed products make at every call). Fully connected l = 5 then takes the joint form (3.2 million
dense numbers, 195 345 running; measured 2x faster forward), while l = 6 keeps its per-block plan:
its joint form would make a table of 470 596 numbers at every call, and its forward + backward
measured 0.72x the per-block plan's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from .program import Step, Table, TableSpec, table_nonzeros

__all__ = ["PACK_MAX_DENSITY", "PACK_MIN_NUMBERS", "ProductAxes", "nonzero_bound", "packed_tables", "product_axes",
           "running_numbers", "worth_packing"]

PACK_MIN_NUMBERS = 4096  # smaller dense tables stay as they are (unpacking costs an operation per call)
PACK_MAX_DENSITY = 1 / 8  # packed: a value and a position per nonzero, at most a quarter of the table

Products = dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]]


def worth_packing(table: Table) -> bool:
    """Whether a table is packed: dense, large, and at most :data:`PACK_MAX_DENSITY` nonzero."""
    if table.sparse or table.spec.numel < PACK_MIN_NUMBERS:
        return False
    return nonzero_bound(table.spec) <= PACK_MAX_DENSITY * table.spec.numel


def nonzero_bound(spec: TableSpec) -> int:
    """The nonzeros of a table without building it: its coupling blocks' (cached per tree), each
    spread over every ordering of a group of axes it is averaged over."""
    return table_nonzeros(spec) * math.prod(math.factorial(len(axes)) for axes in spec.symmetrize)


def packed_tables(tables: tuple[Table, ...], steps: tuple[Step, ...],
                  nonzeros: Callable[[TableSpec], int] = nonzero_bound
                  ) -> tuple[tuple[Table, ...], tuple[Step, ...]]:
    """The tables worth packing marked ``packed``, and the steps that read them rewritten:
    ``packed`` products where they apply, an ``unpack`` before any other first use.
    ``nonzeros`` counts a table's nonzeros for the products' setup FLOPs (exact for a program,
    :func:`nonzero_bound` while choosing)."""
    sources = {step.source.removeprefix("self.") for step in steps}
    specs = {t.name: t.spec for t in tables if t.name not in sources and worth_packing(t)}
    if not specs:
        return tables, steps
    products: Products = {name: [] for name in specs}
    out: list[Step] = []
    unpacked: set[str] = set()
    for step in steps:
        product = _packed_product(step, specs, products, nonzeros)
        if product is not None:
            out.append(product)
            continue
        read = {a: _table_name(a, specs) for a in step.args if _table_name(a, specs)}
        for name in sorted(set(read.values()) - unpacked):
            unpacked.add(name)
            out.append(Step(name, "unpack", (f"self.{name}", f"self.{name}_at"), shape=specs[name].shape,
                            comment="the table from its nonzeros", statement=step.statement, line=step.line))
        out.append(replace(step, args=tuple(read.get(a, a) for a in step.args)) if read else step)
    packed = tuple(replace(t, packed=True, products=tuple(products[t.name]), dense=t.name in unpacked)
                   if t.name in specs else t for t in tables)
    return packed, tuple(out)


def running_numbers(tables: tuple[Table, ...], steps: tuple[Step, ...]) -> int:
    """Numbers a plan holds while it runs, packed: each packed table's values and positions, a
    table unpacked at every call whole, and the result of every packed product (made per call)."""
    held = sum(math.prod(step.shape) for step in steps if step.kind == "packed")
    for table in tables:
        if table.packed and not table.dense:
            held += table.packed_numbers(nonzero_bound(table.spec))
        else:
            held += table.numbers if table.sparse else table.spec.numel
    return held


def _packed_product(step: Step, specs: dict[str, TableSpec], products: Products,
                    nonzeros: Callable[[TableSpec], int]) -> Step | None:
    """A batch-free ``einsum`` of a packed table and a dense operand as a ``packed`` step (its
    setup FLOPs: two per nonzero and per number of the operand's own axes), or None where it
    does not apply: a batch, the other operand packed too, an index summed within one operand
    alone, or one repeated."""
    if step.kind != "einsum" or len(step.args) != 2 or not step.shape:
        return None
    inputs, result = step.equation.split("->")
    letters = inputs.split(",")
    names = [_table_name(a, specs) for a in step.args]
    if all(names) or not any(names):
        return None
    side = 0 if names[0] else 1
    name = names[side]
    axes = product_axes(f"{letters[side]},{letters[1 - side]}->{result}", step.shape, specs[name].shape)
    if any(len(set(x)) != len(x) for x in (axes.mine, axes.theirs, result)) or any(i not in result for i in axes.own):
        return None
    kept = tuple(k for k, i in enumerate(axes.mine) if i in result)
    shared = tuple(axes.mine.index(i) for i in axes.shared)
    if (kept, shared) not in products[name]:
        products[name].append((kept, shared))
    number = products[name].index((kept, shared))
    setup = 2 * nonzeros(specs[name]) * math.prod(axes.sizes[i] for i in axes.own)
    return replace(step, kind="packed", args=(f"self.{name}", step.args[1 - side]), index=f"self.{name}_p{number}",
                   equation=axes.equation, setup_flops=setup)


class ProductAxes(NamedTuple):
    """The indices of a product of a packed table (``mine``) and another operand (``theirs``):
    those they share, the other operand's own, and every index's size."""

    equation: str
    mine: str
    theirs: str
    shared: list[str]
    own: list[str]
    sizes: dict[str, int]


def product_axes(equation: str, result_shape: tuple[int, ...], table_shape: tuple[int, ...]) -> ProductAxes:
    """:class:`ProductAxes` of ``equation`` (the table first), read by the planner (which products
    apply, their setup) and by the code generator (how the other operand is laid out)."""
    inputs, result = equation.split("->")
    mine, theirs = inputs.split(",")
    sizes = dict(zip(result, result_shape, strict=True)) | dict(zip(mine, table_shape, strict=True))
    return ProductAxes(equation, mine, theirs, [i for i in mine if i in theirs], [i for i in theirs if i not in mine],
                       sizes)


def _table_name(arg: str, specs: dict[str, TableSpec]) -> str:
    """The packed table a step argument names (``self.<name>``), or ``""``."""
    name = arg.removeprefix("self.")
    return name if name != arg and name in specs else ""
