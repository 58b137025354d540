"""Equivariance checks: rotate the inputs, rotate the outputs, compare.

* :func:`assert_equivariant` for any function of features; :func:`assert_module_equivariant` for a
  compiled module (plain or graph, real or complex basis) with the irreps read from its diagram;
* :func:`equivariance_error` and :func:`graph_equivariance_error`: the numbers behind them;
* :func:`random_features`, :func:`module_arguments`, :func:`graph_arguments`: random inputs.

Group elements act block by block (:func:`fusionlang.rotations.rotate`, never a ``dim x dim``
matrix), in double precision, with D matrices accurate to about 1e-14 up to spin
:data:`fusionlang.rotations.MAX_SPIN`. An error is relative to ``max(1, |f(x)|)``; the default
tolerance is 1e-10 in float64 and 1e-5 in float32. :mod:`fusionlang.testing` re-exports all of it.

>>> assert_equivariant(lambda x: 2 * x, "3x1o + 2e", "3x1o + 2e", group="O3") < 1e-12
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from . import ir
from .groups import SU2, Group, GroupLike, Irrep, Irreps, MulIrrep, as_group
from .rotations import GroupElement, feature_dtype, random_rotation, real_dtype, rotate
from .weights import path_weight_shape

__all__ = [
    "assert_equivariant", "assert_module_equivariant", "cast_module", "default_tolerance", "equivariance_error",
    "graph_arguments", "graph_equivariance_error", "module_arguments", "module_weight_numel", "random_features",
    "random_graph", "rotation_group",
]

IrrepsLike = Irreps | str
Output = torch.Tensor | tuple[torch.Tensor, ...]


# -- features ------------------------------------------------------------------------------------------

def random_features(irreps: IrrepsLike | None, batch: tuple[int, ...] = (), group: GroupLike | None = None,
                    dtype: torch.dtype = torch.float64,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard-normal features ``[*batch, dim]``: complex for SU(2), real otherwise.

    >>> random_features(Irreps("2x1/2", "SU2"), (3,)).dtype
    torch.complex128
    """
    if irreps is None:
        raise ValueError("the leg's irreps are not known (check the diagram first)")
    irreps = Irreps(irreps, group or (irreps.group if isinstance(irreps, Irreps) else "O3"))
    return torch.randn(*batch, irreps.dim, generator=generator, dtype=feature_dtype(irreps.group, dtype))


# -- equivariance ------------------------------------------------------------------------------------

def default_tolerance(dtype: torch.dtype) -> float:
    """1e-10 for float64/complex128, 1e-5 for float32/complex64, 1e-2 below.

    >>> default_tolerance(torch.complex64)
    1e-05
    """
    return {torch.float64: 1e-10, torch.float32: 1e-5}.get(real_dtype(dtype), 1e-2)


def assert_equivariant(
    module_or_fn: Callable[..., Any], input_irreps: IrrepsLike | Sequence[IrrepsLike],
    output_irreps: IrrepsLike | Sequence[IrrepsLike], *, group: GroupLike,
    dtype: torch.dtype = torch.float64, atol: float | None = None, trials: int = 3, batch: int = 4,
    generator: torch.Generator | None = None, extra_args: Sequence[Any] = (),
) -> float:
    """Check ``f(D x1, D x2, ...) == D f(x1, x2, ...)`` for ``trials`` random group elements.

    ``output_irreps`` is one Irreps (``f`` returns a tensor) or a sequence (``f`` returns a tuple).
    ``extra_args`` (e.g. external weights) are passed after the inputs and are not rotated. For
    O(3), every other trial includes the inversion. The error is the largest
    ``|f(D x) - D f(x)|`` divided by ``max(1, |f(x)|)``; above ``atol`` (default
    :func:`default_tolerance`) an AssertionError says how large it is. Returns the error.

    >>> cross = lambda a, b: torch.linalg.cross(a, b)  # 1o components are (x, y, z) in e3nn >= 0.5
    >>> assert_equivariant(cross, ["1o", "1o"], "1e", group="O3") < 1e-12
    True
    """
    g = as_group(group)
    inputs = [Irreps(x, g) for x in _irreps_list(input_irreps)]
    outputs = [Irreps(x, g) for x in _irreps_list(output_irreps)]
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    tolerance = default_tolerance(dtype) if atol is None else atol
    worst, where = 0.0, ""
    for trial in range(trials):
        element = _trial_element(g, generator, trial)
        error = equivariance_error(module_or_fn, inputs, outputs, element, dtype=dtype, batch=batch,
                                   generator=generator, extra_args=extra_args)
        if error >= worst:
            worst, where = error, repr(element)
    if not worst <= tolerance:
        raise AssertionError(f"not equivariant under {g}: relative error {worst:.3g} > {tolerance:.3g} "
                             f"at {where} (outputs {', '.join(map(str, outputs))})")
    return worst


def _irreps_list(value: IrrepsLike | Sequence[IrrepsLike]) -> list[IrrepsLike]:
    if isinstance(value, (str, Irreps)):
        return [value]
    return list(value)


def _trial_element(group: Group, generator: torch.Generator, trial: int) -> GroupElement:
    element = random_rotation(group, generator)
    return replace(element, inversion=group.has_parity and trial % 2 == 0)


def equivariance_error(fn: Callable[..., Any], inputs: Sequence[Irreps], outputs: Sequence[Irreps],
                       element: GroupElement, *, dtype: torch.dtype = torch.float64, batch: int = 4,
                       generator: torch.Generator | None = None, extra_args: Sequence[Any] = ()) -> float:
    """``max |f(D x) - D f(x)| / max(1, |f(x)|)`` for one element and random inputs.

    Inputs are drawn and rotated in double precision, then cast to ``dtype``; outputs are rotated
    and compared in double precision. ``D`` acts block by block (:func:`rotate`), so the cost is
    linear in the number of channels.

    >>> e = random_rotation("SO3", torch.Generator().manual_seed(0))
    >>> equivariance_error(lambda x: 2 * x, [Irreps("2", "SO3")], [Irreps("2", "SO3")], e) < 1e-12
    True
    """
    xs, rotated = _rotated_inputs(inputs, element, dtype, batch, generator)
    with torch.no_grad():
        plain, turned = _as_tuple(fn(*xs, *extra_args)), _as_tuple(fn(*rotated, *extra_args))
    if not len(plain) == len(turned) == len(outputs):
        raise AssertionError(f"expected {len(outputs)} outputs, got {len(plain)}")
    return max([0.0] + [_output_error(y, y_turned, irreps, element)
                        for y, y_turned, irreps in zip(plain, turned, outputs, strict=True)])


def _rotated_inputs(inputs: Sequence[Irreps], element: GroupElement, dtype: torch.dtype, batch: int,
                    generator: torch.Generator | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random inputs and their rotations, drawn and rotated in double precision, cast to ``dtype``."""
    wide = torch.complex128 if dtype.is_complex else torch.float64
    xs, rotated = [], []
    for irreps in inputs:
        x = random_features(irreps, (batch,), dtype=wide, generator=generator)
        target = feature_dtype(irreps.group, dtype)
        xs.append(x.to(target))
        rotated.append(rotate(x, irreps, element).to(target))
    return xs, rotated


def _output_error(y: torch.Tensor, y_turned: torch.Tensor, irreps: Irreps, element: GroupElement) -> float:
    """``max |y_turned - D y| / max(1, |y|)``, in double precision."""
    if y.shape[-1] != irreps.dim:
        raise AssertionError(f"output of dim {y.shape[-1]} cannot carry {irreps} (dim {irreps.dim})")
    if y_turned.shape != y.shape:
        raise AssertionError(f"rotating the inputs changed the output's shape: {tuple(y.shape)} to "
                             f"{tuple(y_turned.shape)}")
    if not y.numel():
        return 0.0
    y, y_turned = _widen(y), _widen(y_turned)
    expected = rotate(y, irreps, element)
    return float((y_turned.to(expected.dtype) - expected).abs().max()) / max(1.0, float(y.abs().max()))


def _widen(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def _as_tuple(value: Output) -> tuple[torch.Tensor, ...]:
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


def assert_module_equivariant(module: Callable[..., Any], diagram: ir.Diagram, *,
                              dtype: torch.dtype = torch.float64, atol: float | None = None,
                              trials: int = 3, batch: int = 4,
                              generator: torch.Generator | None = None) -> float:
    """:func:`assert_equivariant` for a compiled diagram, with irreps read from the IR.

    Inputs are the diagram's inputs in declaration order, outputs its outputs; one random
    external weight tensor ``[batch, numel]`` is passed per ``weights = external`` statement
    (weights are invariant). An ``nn.Module`` is copied and cast to ``dtype`` first. Features of a
    ``basis complex`` diagram are complex and rotate by SU(2)'s matrices (:func:`rotation_group`);
    a graph module gets a random graph (:func:`module_arguments`, :func:`graph_equivariance_error`).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group SO3\\n input x : 1\\n output y : 0\\n x, x -> y }").diagram()
    >>> assert_module_equivariant(lambda x: (x * x).sum(-1, keepdim=True), d) < 1e-12
    True
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    module = cast_module(module, dtype)
    if hasattr(type(module), "SIGNATURE"):  # a graph orchestrator
        return _assert_graph_equivariant(module, diagram, dtype, atol, trials, generator)
    group = rotation_group(diagram)
    external = [torch.randn(batch, module_weight_numel(module, diagram, s), generator=generator,
                            dtype=real_dtype(dtype)) for s in diagram.statements if s.weights == "external"]
    return assert_equivariant(module, [_as_group(diagram.irreps(leg.name), group) for leg in diagram.inputs],
                              [_as_group(diagram.irreps(leg.name), group) for leg in diagram.outputs], group=group,
                              dtype=dtype, atol=atol, trials=trials, batch=batch, generator=generator,
                              extra_args=external)


def _assert_graph_equivariant(module: Any, diagram: ir.Diagram, dtype: torch.dtype, atol: float | None,
                              trials: int, generator: torch.Generator) -> float:
    arguments = module_arguments(module, diagram, generator, dtype=real_dtype(dtype))
    error = graph_equivariance_error(module, diagram, arguments, trials=trials, generator=generator)
    tolerance = default_tolerance(dtype) if atol is None else atol
    if not error <= tolerance:
        raise AssertionError(f"graph module not equivariant under {rotation_group(diagram)}: relative error "
                             f"{error:.3g} > {tolerance:.3g}")
    return error


def module_weight_numel(module: Any, diagram: ir.Diagram, statement: ir.Statement) -> int:
    """The weights a compiled module takes for a statement: all paths' blocks (docs/semantics.md),
    or only those of the paths in the class's ``KEPT_PATHS`` when the planner shares weights
    across repeated leaves."""
    kept = getattr(type(module), "KEPT_PATHS", None)
    positions = kept.get(statement.index) if isinstance(kept, dict) else None
    shapes = [path_weight_shape(diagram, statement, p) for k, p in enumerate(statement.paths)
              if positions is None or k in positions]
    return sum(math.prod(shape) for shape in shapes if shape is not None)


def cast_module(module: Callable[..., Any], dtype: torch.dtype) -> Callable[..., Any]:
    """A copy of an ``nn.Module`` with real tensors cast to ``dtype``'s real precision and complex
    ones to its complex precision (``Module.to`` would drop imaginary parts); other callables as is.

    >>> cast_module(torch.nn.Linear(2, 2), torch.float64).weight.dtype
    torch.float64
    """
    if not isinstance(module, torch.nn.Module):
        return module
    real, complex_ = real_dtype(dtype), feature_dtype(SU2, real_dtype(dtype))

    def convert(t: torch.Tensor) -> torch.Tensor:
        if t.is_complex():
            return t.to(complex_)
        return t.to(real) if t.is_floating_point() else t

    return copy.deepcopy(module)._apply(convert)


# -- graph diagrams --------------------------------------------------------------------------------

def random_graph(nodes: int, generator: torch.Generator | None = None, density: float = 0.7) -> torch.Tensor:
    """A random directed graph without self-loops as an ``edge_index`` ``[2, E]`` (sender, receiver).

    >>> random_graph(3, torch.Generator().manual_seed(0), density=1.0).shape
    torch.Size([2, 6])
    """
    pairs = [(j, i) for i in range(nodes) for j in range(nodes)
             if i != j and float(torch.rand(1, generator=generator)) < density]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T


def graph_arguments(module_class: Any, diagram: ir.Diagram, edge_index: torch.Tensor, nodes: int,
                    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """Random arguments for a compiled graph module, following its ``SIGNATURE``: features (complex
    for SU(2) and the complex SO(3) basis), per-edge or per-node external weights, ``edge_index``,
    index inputs."""
    features = {leg.name for leg in diagram.inputs}
    complex_features = diagram.group.is_complex or diagram.basis == "complex"
    sizes = {"nodes": nodes, "edges": edge_index.shape[1]}
    out = []
    for name, kind, size in module_class.SIGNATURE:
        if kind == "graph":
            out.append(edge_index)
        elif kind == "index":
            out.append(torch.randint(0, size, (nodes,), generator=generator))
        else:
            value = torch.randn(sizes.get(kind, nodes), size, generator=generator, dtype=dtype)
            out.append(value.to(feature_dtype("SU2", dtype)) if name in features and complex_features else value)
    return out


def graph_equivariance_error(module: Any, diagram: ir.Diagram, arguments: Sequence[torch.Tensor],
                             trials: int = 2, generator: torch.Generator | None = None) -> float:
    """max |f(D x) - D f(x)| / max(1, |f(x)|) for a compiled graph module: node and edge features
    rotate, weights, ``edge_index`` and index inputs do not."""
    group = rotation_group(diagram)
    irreps = {leg.name: _as_group(leg.irreps, group) for leg in diagram.legs if leg.irreps is not None}
    with torch.no_grad():
        before = _as_tuple(module(*arguments))
        worst = 0.0
        for _ in range(trials):
            element = random_rotation(group, generator)
            moved = [rotate(_widen(value), irreps[name], element).to(value.dtype) if name in irreps else value
                     for value, (name, _kind, _size) in zip(arguments, type(module).SIGNATURE, strict=True)]
            after = _as_tuple(module(*moved))
            worst = max([worst] + [_output_error(old, new, irreps[leg.name], element)
                                   for leg, old, new in zip(diagram.outputs, before, after, strict=True)])
    return worst


def rotation_group(diagram: ir.Diagram) -> Group:
    """The group whose D matrices act on the diagram's features: SU(2) (integer spins) for the
    complex SO(3) basis, whose features transform by ``su2_wigner_D``; else the diagram's group.

    >>> from fusionlang.frontend import check_source
    >>> rotation_group(check_source("diagram d { group SO3\\n basis complex\\n input x : 1\\n"
    ...                             " output y : 1\\n x -> y }").diagram()).name
    'SU2'
    """
    return SU2 if diagram.basis == "complex" else diagram.group


def _as_group(irreps: Irreps, group: Group) -> Irreps:
    """The same irreps read in another group (SO(3) spins as SU(2) ones for the complex basis)."""
    if irreps.group == group:
        return irreps
    return Irreps([MulIrrep(e.mul, Irrep(two_j=e.irrep.two_j, parity=0, group=group)) for e in irreps], group)


def module_arguments(module: Any, diagram: ir.Diagram, generator: torch.Generator | None = None,
                     batch: int = 4, nodes: int = 6, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """Random ``forward`` arguments for any compiled module: a batch of features and external
    weights for a plain diagram, or a random graph of ``nodes`` nodes for a graph diagram.

    >>> from fusionlang import api
    >>> result = api.compile("diagram d { group O3\\n input x : 2x1o\\n output y : 2x1o\\n x -> y }")
    >>> [a.shape for a in module_arguments(result.module_class()(), result.diagram())]
    [torch.Size([4, 6])]
    """
    if hasattr(type(module), "SIGNATURE"):  # a graph orchestrator
        edge_index = random_graph(nodes, generator)
        return graph_arguments(type(module), diagram, edge_index, nodes, generator, dtype)
    group = rotation_group(diagram)  # complex features for SU(2) and the complex SO(3) basis
    inputs = [random_features(_as_group(diagram.irreps(leg.name), group), (batch,), dtype=dtype, generator=generator)
              for leg in diagram.inputs]
    return inputs + [torch.randn(batch, module_weight_numel(module, diagram, s), dtype=dtype, generator=generator)
                     for s in diagram.statements if s.weights == "external"]
