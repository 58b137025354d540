"""Test helpers for fusionlang users and for fusionlang's own tests.

* :func:`random_rotation` and :func:`representation`: random group elements and the
  block-diagonal matrices by which they act on features in the ``mul_ir`` layout;
* :func:`assert_equivariant` and :func:`assert_module_equivariant`: rotate the inputs, rotate the
  outputs, compare;
* :func:`reference_forward`: a naive contraction of a checked diagram written straight from
  ``docs/semantics.md`` (slow, obviously right, independent of the planner and code generator),
  with :func:`path_weight_shape`, :func:`weight_numel` and :func:`random_weights` for the weights;
* :func:`random_diagram`: a seeded generator of valid ``.fusion`` sources for property tests.

>>> from fusionlang.frontend import check_source
>>> diagram = check_source(random_diagram(0)).diagram()
>>> outputs = reference_forward(diagram, [random_features(leg.irreps, (2,), diagram.group)
...                                       for leg in diagram.inputs], random_weights(diagram, batch=(2,)))
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from . import ir
from .frontend import check_source
from .groups import SU2, Group, GroupLike, Irrep, Irreps, MulIrrep, as_group, coupling

__all__ = [
    "GroupElement", "assert_equivariant", "assert_module_equivariant", "cast_module", "default_tolerance",
    "equivariance_error", "feature_dtype", "irrep_matrix", "iter_random_diagrams", "path_coupling",
    "path_fan_in", "path_weight_shape", "random_diagram", "random_features", "random_rotation",
    "random_weights", "real_dtype", "reference_forward", "representation", "split_weights", "weight_numel",
]

IrrepsLike = Irreps | str
Output = torch.Tensor | tuple[torch.Tensor, ...]


# -- group elements and their representations -----------------------------------------------------

@dataclass(frozen=True)
class GroupElement:
    """A rotation given by Euler angles, followed by the inversion ``x -> -x`` when ``inversion``.

    The angles follow :func:`fusionlang.wigner.su2_wigner_D` (SU(2): ``gamma`` in ``[0, 4 pi)``
    reaches the whole double cover) and :func:`fusionlang.wigner.o3_wigner_D` (SO(3)/O(3), e3nn's
    convention). Only O(3) elements can be inversions.

    >>> GroupElement(SU2, 0.0, 0.0, 2 * math.pi).inversion
    False
    """

    group: Group
    alpha: float
    beta: float
    gamma: float
    inversion: bool = False

    def __post_init__(self) -> None:
        if self.inversion and not self.group.has_parity:
            raise ValueError(f"{self.group} has no inversion")


def random_rotation(group: GroupLike, generator: torch.Generator | None = None,
                    parity: bool = True) -> GroupElement:
    """A Haar-random element of ``group``; for O(3) an inversion half of the time when ``parity``.

    >>> element = random_rotation("O3", torch.Generator().manual_seed(1))
    >>> element.group.name, 0 <= element.beta <= math.pi
    ('O3', True)
    """
    from .wigner import random_rotation_angles

    g = as_group(group)
    alpha, beta, gamma = (float(a) for a in random_rotation_angles(generator))
    if g == SU2 and _coin(generator):
        gamma += 2 * math.pi  # the other preimage in SU(2) of the same rotation
    return GroupElement(g, alpha, beta, gamma, g.has_parity and parity and _coin(generator))


def _coin(generator: torch.Generator | None) -> bool:
    return bool(torch.rand((), generator=generator, dtype=torch.float64) < 0.5)


def irrep_matrix(irrep: Irrep, element: GroupElement) -> torch.Tensor:
    """``D(element)`` of one irrep: complex128 for SU(2), float64 for SO(3)/O(3).

    >>> inversion = GroupElement(Irrep.parse("1o").group, 0.0, 0.0, 0.0, True)
    >>> [round(x, 9) for x in irrep_matrix(Irrep.parse("1o"), inversion).diagonal().tolist()]
    [-1.0, -1.0, -1.0]
    """
    from .wigner import o3_wigner_D, su2_wigner_D

    angles = (element.alpha, element.beta, element.gamma)
    if element.group == SU2:
        return su2_wigner_D(irrep.j, *angles)
    return o3_wigner_D(irrep.l, irrep.parity or 1, *angles, k=int(element.inversion))


def representation(irreps: IrrepsLike, element: GroupElement, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The block-diagonal matrix ``D`` of ``element`` on features of ``irreps`` (``mul_ir`` layout).

    A feature vector ``x`` (shape ``[..., dim]``) transforms as ``x @ D.T``. ``dtype`` is made
    complex for SU(2) (float32 → complex64); by default it is complex128 / float64.

    >>> D = representation("2x0e + 1o", GroupElement(Irrep.parse("0e").group, 0.1, 0.2, 0.3, True))
    >>> D.shape, bool(torch.allclose(D @ D.T, torch.eye(5, dtype=torch.float64)))
    (torch.Size([5, 5]), True)
    """
    irreps = Irreps(irreps, element.group)
    if irreps.group != element.group:
        raise ValueError(f"irreps of {irreps.group} cannot be acted on by an element of {element.group}")
    blocks = [irrep_matrix(entry.irrep, element) for entry in irreps for _ in range(entry.mul)]
    matrix = torch.block_diag(*blocks) if blocks else torch.zeros(0, 0, dtype=torch.float64)
    return matrix.to(feature_dtype(irreps.group, dtype))


def feature_dtype(group: GroupLike, dtype: torch.dtype | None = None) -> torch.dtype:
    """The dtype of features of ``group`` at precision ``dtype`` (complex for SU(2)).

    >>> feature_dtype("SU2", torch.float32), feature_dtype("O3")
    (torch.complex64, torch.float64)
    """
    dtype = dtype or torch.float64
    if as_group(group).is_complex and not dtype.is_complex:
        return {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, torch.complex128)
    return dtype


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (complex64 → float32).

    >>> real_dtype(torch.complex128)
    torch.float64
    """
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


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

    >>> e = random_rotation("SO3", torch.Generator().manual_seed(0))
    >>> equivariance_error(lambda x: 2 * x, [Irreps("2", "SO3")], [Irreps("2", "SO3")], e) < 1e-12
    True
    """
    xs = [random_features(irreps, (batch,), dtype=dtype, generator=generator) for irreps in inputs]
    rotated = [x @ representation(irreps, element, x.dtype).T for x, irreps in zip(xs, inputs, strict=True)]
    with torch.no_grad():
        plain, turned = _as_tuple(fn(*xs, *extra_args)), _as_tuple(fn(*rotated, *extra_args))
    if not len(plain) == len(turned) == len(outputs):
        raise AssertionError(f"expected {len(outputs)} outputs, got {len(plain)}")
    errors = [0.0]
    for y, y_turned, irreps in zip(plain, turned, outputs, strict=True):
        if y.shape[-1] != irreps.dim:
            raise AssertionError(f"output of dim {y.shape[-1]} cannot carry {irreps} (dim {irreps.dim})")
        expected = y @ representation(irreps, element, y.dtype).T
        scale = max(1.0, float(y.abs().max())) if y.numel() else 1.0
        errors.append(float((y_turned - expected).abs().max()) / scale if y.numel() else 0.0)
    return max(errors)


def _as_tuple(value: Output) -> tuple[torch.Tensor, ...]:
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


def assert_module_equivariant(module: Callable[..., Any], diagram: ir.Diagram, *,
                              dtype: torch.dtype = torch.float64, atol: float | None = None,
                              trials: int = 3, batch: int = 4,
                              generator: torch.Generator | None = None) -> float:
    """:func:`assert_equivariant` for a compiled diagram, with irreps read from the IR.

    Inputs are the diagram's inputs in declaration order, outputs its outputs; one random
    external weight tensor ``[batch, numel]`` is passed per ``weights = external`` statement
    (weights are invariant). An ``nn.Module`` is copied and cast to ``dtype`` first.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group SO3\\n input x : 1\\n output y : 0\\n x, x -> y }").diagram()
    >>> assert_module_equivariant(lambda x: (x * x).sum(-1, keepdim=True), d) < 1e-12
    True
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    module = cast_module(module, dtype)
    external = [torch.randn(batch, module_weight_numel(module, diagram, s), generator=generator,
                            dtype=real_dtype(dtype)) for s in diagram.statements if s.weights == "external"]
    return assert_equivariant(module, [diagram.irreps(leg.name) for leg in diagram.inputs],
                              [diagram.irreps(leg.name) for leg in diagram.outputs], group=diagram.group,
                              dtype=dtype, atol=atol, trials=trials, batch=batch, generator=generator,
                              extra_args=external)


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


# -- weights -------------------------------------------------------------------------------------------

def _leaf_muls(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> list[int]:
    return [diagram.irreps(ref.leg)[entry].mul for ref, entry in zip(statement.leaves, path.leaves, strict=True)]


def path_weight_shape(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> tuple[int, ...] | None:
    """The shape of one path's weight block (docs/semantics.md, "Weights"); None without weights.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 3x1o\\n input y : 2x1o\\n output z : 3x0e\\n"
    ...                  " x, y -> z [channels = uvu, weights = path] }").diagram()
    >>> s = d.statements[0]
    >>> path_weight_shape(d, s, s.paths[0])
    (2,)
    """
    if statement.weights == "none":
        return None
    muls = tuple(_leaf_muls(diagram, statement, path))
    per_channel = statement.weights != "path"
    if statement.channels == "uvw":
        return muls + (diagram.irreps(statement.target)[path.output].mul,)
    if statement.channels == "uvu":
        return muls if per_channel else muls[1:]
    return muls[:1] if per_channel else ()


def weight_numel(diagram: ir.Diagram, statement: ir.Statement) -> int:
    """How many numbers the weights of one statement have (0 without weights).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 2x0e\\n output y : 3x0e\\n x -> y }").diagram()
    >>> weight_numel(d, d.statements[0])
    6
    """
    shapes = [path_weight_shape(diagram, statement, p) for p in statement.paths]
    return sum(math.prod(shape) for shape in shapes if shape is not None)


def random_weights(diagram: ir.Diagram, *, batch: tuple[int, ...] = (), dtype: torch.dtype = torch.float64,
                   generator: torch.Generator | None = None, internal: bool = True) -> dict[int, torch.Tensor]:
    """Standard-normal weights for every weighted statement, keyed by statement index.

    Internal weights are ``[numel]``, external ones ``[*batch, numel]``; with ``internal=False``
    only the external ones are made.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 2x0e\\n output y : 3x0e\\n x -> y }").diagram()
    >>> {k: v.shape for k, v in random_weights(d).items()}
    {0: torch.Size([6])}
    """
    weights = {}
    for statement in diagram.statements:
        external = statement.weights == "external"
        if statement.weights == "none" or not (internal or external):
            continue
        shape = (*batch, weight_numel(diagram, statement)) if external else (weight_numel(diagram, statement),)
        weights[statement.index] = torch.randn(*shape, generator=generator, dtype=dtype)
    return weights


def split_weights(diagram: ir.Diagram, statement: ir.Statement,
                  flat: torch.Tensor | None) -> list[torch.Tensor | None]:
    """One block per path, ``[..., *path_weight_shape]``, cut from the flat weights in path order.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 2x0e\\n output y : 3x0e\\n x -> y }").diagram()
    >>> [b.shape for b in split_weights(d, d.statements[0], torch.zeros(6))]
    [torch.Size([2, 3])]
    """
    shapes = [path_weight_shape(diagram, statement, p) for p in statement.paths]
    if statement.weights == "none":
        return [None] * len(shapes)
    numel = weight_numel(diagram, statement)
    if flat is None or flat.shape[-1:] != (numel,):
        got = "nothing" if flat is None else f"shape {tuple(flat.shape)}"
        raise ValueError(f"statement {statement.index} needs weights [..., {numel}], got {got}")
    sizes = [math.prod(shape or ()) for shape in shapes]
    pieces = torch.split(flat, sizes, dim=-1)
    return [piece.reshape((*flat.shape[:-1], *(shape or ()))) for piece, shape in zip(pieces, shapes, strict=True)]


# -- the reference contraction ----------------------------------------------------------------------

_COMPONENT_LETTERS = "abcdefghijkl"
_CHANNEL_LETTERS = "mnopqrstuvwx"


def path_coupling(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> torch.Tensor:
    """The coupling of one path, ``P[i_1, ..., i_n, k]``: vertex tensors chained along the tree.

    Every vertex is ``fusionlang.coupling(group, a, b, c)``, times ``sqrt(dim c)`` for SO(3)/O(3)
    (component normalisation). A linear map's coupling is the identity.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 1o\\n output y : 0e\\n x, x -> y }").diagram()
    >>> path_coupling(d, d.statements[0], d.statements[0].paths[0]).shape
    torch.Size([3, 3, 1])
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


def _path_spec(statement: ir.Statement, weighted: bool, external: bool) -> str:
    """The einsum of one path: leaf features, the coupling, the weights → ``[..., channel, k]``."""
    n = statement.arity
    comps = _COMPONENT_LETTERS[:n]
    chans = _CHANNEL_LETTERS[0] * n if statement.channels == "uuu" else _CHANNEL_LETTERS[:n]
    leaves = [f"...{u}{i}" for u, i in zip(chans, comps, strict=True)]
    out_channel = {"uvw": "y" if weighted else chans, "uvu": chans[0], "uuu": chans[0]}[statement.channels]
    operands = leaves + [comps + "z"]
    if weighted:
        weight = {"uvw": chans + "y", "uuu": chans[0] if statement.weights != "path" else "",
                  "uvu": chans if statement.weights != "path" else chans[1:]}[statement.channels]
        operands.append(("..." if external else "") + weight)
    return ",".join(operands) + f"->...{out_channel}z"


def _path_term(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path,
               values: Mapping[str, torch.Tensor], weight: torch.Tensor | None) -> torch.Tensor:
    """One path's contribution ``[..., m_out, dim]`` before the 1/sqrt(fan_in) factor."""
    features = []
    for ref, entry in zip(statement.leaves, path.leaves, strict=True):
        irreps = diagram.irreps(ref.leg)
        item, where = irreps[entry], irreps.slices()[entry]
        x = values[ref.leg]
        features.append(x[..., where].reshape(*x.shape[:-1], item.mul, item.irrep.dim))
    dtype = features[0].dtype
    operands = features + [path_coupling(diagram, statement, path).to(dtype)]
    if weight is not None:
        operands.append(weight.to(dtype))
    spec = _path_spec(statement, weight is not None, statement.weights == "external")
    # The operands are tiny: opt_einsum's search for a contraction order would cost far more.
    with torch.backends.opt_einsum.flags(enabled=False):
        term = torch.einsum(spec, *operands)
    return term.reshape(*term.shape[:-statement.arity - 1], -1, term.shape[-1]) \
        if statement.channels == "uvw" and weight is None else term


def path_fan_in(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> int:
    """How many terms one path adds into each number of its output entry (semantics.md).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 3x1o\\n output y : 3x1o\\n x -> y }").diagram()
    >>> path_fan_in(d, d.statements[0], d.statements[0].paths[0])
    3
    """
    muls = _leaf_muls(diagram, statement, path)
    if statement.channels == "uuu" or (statement.channels == "uvw" and statement.weights == "none"):
        return 1
    return math.prod(muls[1:] if statement.channels == "uvu" else muls)


def _fan_in(diagram: ir.Diagram, leg: str) -> dict[int, int]:
    """fan_in of every entry of ``leg``, over every path of every statement writing it."""
    totals: dict[int, int] = {}
    for statement in diagram.writers(leg):
        for path in statement.paths:
            totals[path.output] = totals.get(path.output, 0) + path_fan_in(diagram, statement, path)
    return totals


def _evaluation_order(diagram: ir.Diagram) -> list[str]:
    """Written legs such that every leg comes after all legs its writers read."""
    done = {leg.name for leg in diagram.inputs}
    order: list[str] = []
    pending = [leg.name for leg in diagram.legs if leg.role != "input"]
    while pending:
        ready = next((name for name in pending
                      if all(ref.leg in done for s in diagram.writers(name) for ref in s.leaves)), None)
        if ready is None:
            raise ValueError(f"cannot order the legs {pending}: the diagram has a cycle")
        order.append(ready)
        done.add(ready)
        pending.remove(ready)
    return order


def _evaluate_leg(diagram: ir.Diagram, name: str, values: Mapping[str, torch.Tensor],
                  weights: Mapping[int, torch.Tensor], batch: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """All paths of all writers of one leg, normalised and summed into its ``mul_ir`` layout."""
    irreps = diagram.irreps(name)
    fan_in = _fan_in(diagram, name)
    entries = [torch.zeros(*batch, item.mul, item.irrep.dim, dtype=dtype) for item in irreps]
    for statement in diagram.writers(name):
        blocks = split_weights(diagram, statement, weights.get(statement.index))
        for path, block in zip(statement.paths, blocks, strict=True):
            term = _path_term(diagram, statement, path, values, block) / math.sqrt(fan_in[path.output])
            entries[path.output] = entries[path.output] + term
    return torch.cat([e.reshape(*batch, -1) for e in entries], dim=-1)


def reference_forward(diagram: ir.Diagram, inputs: Sequence[torch.Tensor],
                      weights: Mapping[int, torch.Tensor]) -> Output:
    """What ``diagram`` computes, by the naive contraction of docs/semantics.md.

    ``inputs`` follow the declaration order of the inputs, ``[..., dim]`` in the ``mul_ir`` layout
    (complex for SU(2)); ``weights`` maps a statement's index to its flat weights (``[numel]``,
    or ``[..., numel]`` for ``weights = external``). Returns the output, or a tuple of the
    outputs in declaration order when there are several.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x, y : 1o\\n output z : 0e\\n x, y -> z }").diagram()
    >>> x, y = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    >>> reference_forward(d, [x, y], {})  # sqrt(1) * wigner_3j(1, 1, 0) = identity / sqrt(3)
    tensor([[3.4641]], dtype=torch.float64)
    """
    if len(inputs) != len(diagram.inputs):
        raise ValueError(f"{diagram.name} takes {len(diagram.inputs)} inputs, got {len(inputs)}")
    dtype = _common_dtype(diagram.group, inputs)
    values: dict[str, torch.Tensor] = {leg.name: x.to(dtype) for leg, x in zip(diagram.inputs, inputs, strict=True)}
    external = [weights[s.index] for s in diagram.statements if s.weights == "external" and s.index in weights]
    batch = torch.broadcast_shapes(*(x.shape[:-1] for x in [*inputs, *external]))
    for name in _evaluation_order(diagram):
        values[name] = _evaluate_leg(diagram, name, values, weights, batch, dtype)
    results = tuple(values[leg.name] for leg in diagram.outputs)
    return results[0] if len(results) == 1 else results


def _common_dtype(group: Group, inputs: Sequence[torch.Tensor]) -> torch.dtype:
    dtype = inputs[0].dtype
    for x in inputs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return feature_dtype(group, dtype)


# -- random diagrams ------------------------------------------------------------------------------------

_IRREP_POOLS = {
    "SU2": [Irrep(two_j, 0, SU2) for two_j in range(4)],
    "SO3": [Irrep(2 * l, 0, as_group("SO3")) for l in range(3)],
    "O3": [Irrep(2 * l, p, as_group("O3")) for l in range(3) for p in (1, -1)],
}


@dataclass
class _Draft:
    """A diagram being generated: declarations and statements as text, and what each leg carries."""

    group: Group
    rng: random.Random
    lines: list[str]
    carried: dict[str, tuple[frozenset[Irrep], int]]  # leg -> (irreps it can carry, multiplicity)


def random_diagram(seed: int, group: GroupLike | None = None, *, max_leaves: int = 4,
                   max_mul: int = 3, max_attempts: int = 100) -> str:
    """A random, valid ``.fusion`` source (one diagram called ``random``), the same for one seed.

    Random group (unless given), small irreps, 1 to ``max_leaves`` leaves, random channel and
    weight modes consistent with the multiplicity rules, sometimes an internal edge, a second
    statement into the same output, or a second output. The result checks cleanly.

    >>> from fusionlang.frontend import check_source
    >>> random_diagram(3) == random_diagram(3), check_source(random_diagram(3)).ok
    (True, True)
    """
    rng = random.Random(seed)
    for _ in range(max_attempts):
        text = _draft_diagram(rng, as_group(group) if group is not None else None, max_leaves, max_mul)
        if check_source(text).ok:
            return text
    raise RuntimeError(f"no valid random diagram for seed {seed} in {max_attempts} attempts")


def _draft_diagram(rng: random.Random, group: Group | None, max_leaves: int, max_mul: int) -> str:
    g = group or as_group(rng.choice(["SU2", "SO3", "O3"]))
    draft = _Draft(g, rng, [], {})
    n_leaves = rng.randint(1, max_leaves)
    channels = rng.choice(["uvw", "uvw", "uvu", "uuu"]) if n_leaves > 1 else rng.choice(["uvw", "uvu", "uuu"])
    weights = rng.choice(["none", "none", "path", "channel", "external"] if n_leaves > 1
                         else ["path", "channel", "external"])
    inputs = _declare_inputs(draft, min(n_leaves, rng.randint(1, 3)), channels, max_mul)
    leaves = list(inputs) + [rng.choice(inputs) for _ in range(n_leaves - len(inputs))]
    rng.shuffle(leaves)
    args = _main_arguments(draft, leaves)
    _write_output(draft, "out0", args, channels, weights, max_mul)
    if rng.random() < 0.4:
        _extra_writer(draft, "out0", inputs)
    if rng.random() < 0.25:
        _second_output(draft, inputs, max_mul)
    body = "\n".join(f"    {line}" for line in draft.lines)
    return f"diagram random {{\n    group {g}\n{body}\n}}\n"


def _declare_inputs(draft: _Draft, count: int, channels: str, max_mul: int) -> list[str]:
    pool = _IRREP_POOLS[draft.group.name]
    shared = draft.rng.randint(1, max_mul)
    names = []
    for k in range(count):
        irreps = draft.rng.sample(pool, draft.rng.randint(1, 3))
        mul = shared if channels == "uuu" else draft.rng.randint(1, max_mul)
        name = f"x{k}"
        draft.lines.append(f"input {name} : {_irreps_text(draft.group, irreps, mul)}")
        draft.carried[name] = (frozenset(irreps), mul)
        names.append(name)
    return names


def _irreps_text(group: Group, irreps: Sequence[Irrep], mul: int) -> str:
    return str(Irreps([MulIrrep(mul, i) for i in irreps], group))


def _main_arguments(draft: _Draft, leaves: list[str]) -> str:
    """The argument text of the main statement; three or more leaves may go through an edge."""
    rng = draft.rng
    if len(leaves) >= 3 and rng.random() < 0.6:
        split = rng.randint(2, len(leaves) - 1)
        channels = rng.choice(["uvw", "uvu"])
        weights = rng.choice(["none", "path", "channel"])
        edge = _write_edge(draft, leaves[:split], channels, weights)
        leaves = [edge] + leaves[split:]
    if len(leaves) >= 3 and rng.random() < 0.5:
        cut = rng.randint(1, len(leaves) - 1)
        return f"{_group_text(leaves[:cut])}, {_group_text(leaves[cut:])}"
    return ", ".join(leaves)


def _group_text(leaves: list[str]) -> str:
    return leaves[0] if len(leaves) == 1 else "(" + ", ".join(leaves) + ")"


def _write_edge(draft: _Draft, leaves: list[str], channels: str, weights: str) -> str:
    """An inferred internal edge ``e0`` written by ``leaves``; returns its name."""
    muls = [draft.carried[leaf][1] for leaf in leaves]
    draft.lines.append(f"{', '.join(leaves)} -> e0  [channels = {channels}, weights = {weights}]")
    reach = _reachable(draft, leaves)
    mul = muls[0] if channels == "uvu" or weights != "none" else math.prod(muls)
    draft.carried["e0"] = (reach, mul)
    return "e0"


def _reachable(draft: _Draft, leaves: Sequence[str]) -> frozenset[Irrep]:
    """Every irrep the left fold of ``leaves`` can reach (any tree shape reaches the same ones)."""
    found = draft.carried[leaves[0]][0]
    for leaf in leaves[1:]:
        found = frozenset(c for a in found for b in draft.carried[leaf][0] for c in a * b)
    return found


def _write_output(draft: _Draft, name: str, args: str, channels: str, weights: str, max_mul: int) -> None:
    leaves = [a.strip("() ") for a in args.split(",")]
    muls = [draft.carried[leaf][1] for leaf in leaves]
    reach = sorted(_reachable(draft, leaves))
    chosen = sorted(draft.rng.sample(reach, draft.rng.randint(1, min(3, len(reach)))))
    if channels in ("uvu", "uuu"):
        mul = muls[0]
    elif weights == "none":
        mul = math.prod(muls)
    else:
        mul = draft.rng.randint(1, max_mul)
    if draft.rng.random() < 0.2:
        draft.lines.append(f"output {name}")
        chosen = reach
    else:
        draft.lines.append(f"output {name} : {_irreps_text(draft.group, chosen, mul)}")
    draft.lines.append(f"{args} -> {name}  [channels = {channels}, weights = {weights}]")
    draft.carried[name] = (frozenset(chosen), mul)


def _extra_writer(draft: _Draft, target: str, inputs: Sequence[str]) -> None:
    """A second statement into ``target``: a linear map or a weighted uvw coupling."""
    wanted, _ = draft.carried[target]
    weights = draft.rng.choice(["path", "channel", "external"])
    linear = [x for x in inputs if draft.carried[x][0] & wanted]
    if linear and draft.rng.random() < 0.5:
        draft.lines.append(f"{draft.rng.choice(linear)} -> {target}  [weights = {weights}]")
        return
    pairs = [(a, b) for a in inputs for b in inputs if _reachable(draft, [a, b]) & wanted]
    if pairs:
        a, b = draft.rng.choice(pairs)
        draft.lines.append(f"{a}, {b} -> {target}  [channels = uvw, weights = {weights}]")


def _second_output(draft: _Draft, inputs: Sequence[str], max_mul: int) -> None:
    """Another output, written by a linear map of one input."""
    source = draft.rng.choice(list(inputs))
    irreps, mul = draft.carried[source]
    chosen = sorted(draft.rng.sample(sorted(irreps), draft.rng.randint(1, len(irreps))))
    channels = draft.rng.choice(["uvw", "uuu"])
    out_mul = mul if channels == "uuu" else draft.rng.randint(1, max_mul)
    draft.lines.append(f"output out1 : {_irreps_text(draft.group, chosen, out_mul)}")
    draft.lines.append(f"{source} -> out1  [channels = {channels}, weights = channel]")


def iter_random_diagrams(count: int, start: int = 0, group: GroupLike | None = None) -> Iterator[str]:
    """``random_diagram(start)``, ``random_diagram(start + 1)``, ...: ``count`` sources.

    >>> len(list(iter_random_diagrams(2)))
    2
    """
    for seed in range(start, start + count):
        yield random_diagram(seed, group)


# -- closed networks -------------------------------------------------------------------------------

def fusion_tensor(module: Callable[..., Any], diagram: ir.Diagram, output: str | None = None) -> torch.Tensor:
    """The multilinear map of a weightless diagram as a dense tensor ``[dim in_1, ..., dim in_n, dim out]``,
    by feeding every combination of basis vectors (one batch).

    >>> from fusionlang import api
    >>> result = api.compile("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0\\n a, b -> c }")
    >>> fusion_tensor(result.module_class()(), result.diagram()).shape
    torch.Size([2, 2, 1])
    """
    dims = [leg.irreps.dim for leg in diagram.inputs if leg.irreps is not None]
    dtype = feature_dtype(diagram.group, getattr(module, "real_dtype", torch.float64))
    grids = torch.meshgrid(*(torch.arange(d) for d in dims), indexing="ij")
    inputs = [torch.eye(d, dtype=dtype)[grid.reshape(-1)] for d, grid in zip(dims, grids, strict=True)]
    outputs = _as_tuple(module(*inputs))
    names = [leg.name for leg in diagram.outputs]
    value = outputs[names.index(output) if output is not None else 0]
    return value.reshape(*dims, value.shape[-1])


def glue(first: torch.Tensor, second: torch.Tensor) -> complex:
    """Close two networks with the same open legs into a number: ``Σ first · conj(second)``.

    Two fusion trees of the same spins glued together form a closed diagram (a tetrahedron when
    the trees fuse in different orders), whose value is a recoupling coefficient (a 6j symbol)
    times the dimension of the total spin."""
    return complex((first * second.conj()).sum())


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
    group = SU2 if diagram.basis == "complex" else diagram.group
    irreps = {leg.name: _as_group(leg.irreps, group) for leg in diagram.legs if leg.irreps is not None}
    with torch.no_grad():
        before = _as_tuple(module(*arguments))
        worst = 0.0
        for _ in range(trials):
            element = random_rotation(group, generator)
            moved = [value @ representation(irreps[name], element, value.dtype).T if name in irreps else value
                     for value, (name, _kind, _size) in zip(arguments, type(module).SIGNATURE, strict=True)]
            after = _as_tuple(module(*moved))
            for leg, old, new in zip(diagram.outputs, before, after, strict=True):
                expected = old @ representation(irreps[leg.name], element, old.dtype).T
                worst = max(worst, float((new - expected).abs().max()) / max(1.0, float(expected.abs().max())))
    return worst


def _as_group(irreps: Irreps, group: Group) -> Irreps:
    """The same irreps read in another group (SO(3) spins as SU(2) ones for the complex basis)."""
    if irreps.group == group:
        return irreps
    return Irreps([MulIrrep(e.mul, Irrep(e.irrep.two_j, 0, group)) for e in irreps], group)


# -- peers -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily change torch's default dtype, e.g. to build e3nn modules whose ``wigner_3j``
    buffers are made in the default dtype (``.double()`` would only cast float32 values up).

    >>> with default_dtype(torch.float64):
    ...     torch.zeros(1).dtype
    torch.float64
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def e3nn_channelwise_product(irreps_in: str, irreps_edge: str, **options: Any) -> Any:
    """e3nn's channelwise ``uvu`` tensor product built as MACE and NequIP build it: one output
    entry per instruction, sorted (fusionlang's ``paths = split``). Needs e3nn (a test dependency);
    ``options`` go to ``e3nn.o3.TensorProduct`` (e.g. ``shared_weights=False``)."""
    from e3nn import o3

    first, second = o3.Irreps(irreps_in), o3.Irreps(irreps_edge)
    entries: list[tuple[int, Any]] = []
    instructions: list[tuple[int, int, int, str, bool]] = []
    for i1, (mul, ir1) in enumerate(first):
        for i2, (_, ir2) in enumerate(second):
            for ir_out in ir1 * ir2:
                instructions.append((i1, i2, len(entries), "uvu", True))
                entries.append((mul, ir_out))
    out, permutation, _ = o3.Irreps(entries).sort()
    instructions = [(i1, i2, permutation[k], mode, w) for i1, i2, k, mode, w in instructions]
    return o3.TensorProduct(first, second, out, instructions, **options)


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
    inputs = [random_features(leg.irreps, (batch,), group=diagram.group, dtype=dtype, generator=generator)
              for leg in diagram.inputs]
    return inputs + [torch.randn(batch, module_weight_numel(module, diagram, s), dtype=dtype, generator=generator)
                     for s in diagram.statements if s.weights == "external"]
