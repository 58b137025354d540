"""Weights from e3nn: make a compiled statement compute exactly what an e3nn module computes.

e3nn is not imported here: the importers read e3nn objects duck-typed (``irreps_in1``,
``instructions``, ``weight``, ...), so e3nn stays a test-only dependency.

Every e3nn instruction carries its final normalisation coefficient (``path_weight``: irrep and
path normalisation, ``in*_var``/``out_var`` and the user's path weight folded together). A
fusionlang path multiplies its weights by ``sqrt(dim out) / sqrt(fan_in)`` (docs/semantics.md)
around the same ``wigner_3j``, so an imported weight block is e3nn's block times the ratio of the
two coefficients; outputs are then identical whatever normalisation e3nn was built with.

mace-torch's ``SymmetricContraction`` is imported by a change of basis (no mace import either):
for every correlation order and output irrep, its ``U`` tensors and our kept paths span the same
space of symmetric equivariant maps, so a least-squares fit on the dense tensors gives the exact
matrix between the two bases (docs/mace.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import torch

from . import ir
from .names import class_name
from .path_tensors import path_coupling
from .weights import Normaliser, path_normalisers, path_weight_shape, split_weights

__all__ = ["diagram_of", "from_e3nn_linear", "from_e3nn_tensor_product", "from_mace_symmetric_contraction",
           "kept_paths", "load_e3nn_weights", "load_mace_symmetric_contraction", "per_class_parameter",
           "statement_parameter", "to_module_layout"]

# e3nn's connection mode that matches each (channels, weighted) of a fusionlang coupling.
_E3NN_MODES = {("uvw", True): "uvw", ("uvw", False): "uvuv", ("uvu", True): "uvu", ("uvu", False): "uvu",
               ("uuu", True): "uuu", ("uuu", False): "uuu"}


def diagram_of(diagram_or_module: Any) -> ir.Diagram:
    """The checked IR diagram of a compiled module (or the diagram itself).

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group O3\\n input x : 0e\\n output y : 0e\\n x -> y }").diagram()
    >>> diagram_of(d).name
    'd'
    """
    if isinstance(diagram_or_module, ir.Diagram):
        return diagram_or_module
    for name in ("diagram", "__fusion_diagram__", "DIAGRAM", "_diagram"):
        found = getattr(diagram_or_module, name, None)
        if isinstance(found, ir.Diagram):
            return found
    raise TypeError(f"cannot find the fusionlang diagram of {type(diagram_or_module).__name__}; "
                    "pass the ir.Diagram (e.g. `check_source(text).diagram(name)`)")


def _statement(diagram: ir.Diagram, index: int) -> ir.Statement:
    for statement in diagram.statements:
        if statement.index == index:
            return statement
    raise ValueError(f"{diagram.name} has no statement {index} (it has "
                     f"{', '.join(str(s.index) for s in diagram.statements)})")


def _e3nn_entries(irreps: Any) -> list[tuple[int, int, int]]:
    """(mul, l, parity) of every entry of an e3nn Irreps."""
    return [(int(mul), int(irrep.l), int(irrep.p)) for mul, irrep in irreps]


def _check_irreps(diagram: ir.Diagram, leg: str, e3nn_irreps: Any, what: str) -> None:
    ours = [(e.mul, e.irrep.l, e.irrep.parity) for e in diagram.irreps(leg)]
    theirs = _e3nn_entries(e3nn_irreps)
    if not diagram.group.has_parity:  # SO(3): e3nn's parities carry no information for us
        theirs = [(mul, l, 0) for mul, l, _ in theirs]
    if ours != theirs:
        raise ValueError(f"{what} of the e3nn module is {e3nn_irreps} but `{leg}` is {diagram.irreps(leg)}: "
                         "entries must match one for one (same order, same multiplicities)")


def _split(flat: torch.Tensor, shapes: Iterable[tuple[int, ...]]) -> list[torch.Tensor]:
    """e3nn's flat weights ``[..., numel]`` cut into blocks ``[..., *shape]``."""
    shapes = list(shapes)
    sizes = [math.prod(s) for s in shapes]
    if flat.shape[-1] != sum(sizes):
        raise ValueError(f"e3nn weights have {flat.shape[-1]} numbers, its instructions need {sum(sizes)}")
    pieces = torch.split(flat, sizes, dim=-1)
    return [p.reshape(*flat.shape[:-1], *s) for p, s in zip(pieces, shapes, strict=True)]


def _e3nn_weight(module: Any, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is not None:
        return weight.detach()
    stored = getattr(module, "weight", None)
    if not isinstance(stored, torch.Tensor) or stored.numel() == 0 and int(getattr(module, "weight_numel", 0)):
        raise ValueError("the e3nn module has no internal weights: pass `weight=` (its external weights)")
    return stored.detach()


def _our_coefficient(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> float:
    """The factor fusionlang puts on a path's ``wigner_3j`` (or identity): sqrt(dim)/sqrt(fan_in)."""
    irrep = diagram.irreps(statement.target)[path.output].irrep
    scale = 1.0 if statement.is_linear else math.sqrt(irrep.dim)
    return scale / math.sqrt(_target_fan_in(diagram, statement, path))


def _target_fan_in(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> Normaliser:
    """The path's normaliser: by default the fan_in of its output entry, over every path (kept or
    not) of every writer of the target (:func:`fusionlang.weights.path_normalisers`)."""
    return path_normalisers(diagram)[(statement.index, path)]


def _fit_block(block: torch.Tensor, shape: tuple[int, ...], batch: int, what: str) -> torch.Tensor:
    """e3nn's block reshaped to ours; a ``path``-mode block drops a leading channel axis on which
    e3nn's weights must then be constant."""
    if tuple(block.shape[batch:]) == shape:
        return block
    if tuple(block.shape[batch + 1:]) == shape:
        first = block.select(batch, 0)
        if torch.allclose(block, first.unsqueeze(batch).expand_as(block)):
            return first
        raise ValueError(f"{what}: e3nn's weights depend on the first channel, but `weights = path` "
                         "shares them across it; use `weights = channel`")
    raise ValueError(f"{what}: e3nn's weight block {tuple(block.shape[batch:])} does not fit {shape}")


def from_e3nn_tensor_product(tp: Any, diagram_or_module: Any, statement: int = 0,
                             weight: torch.Tensor | None = None) -> torch.Tensor:
    """Flat weights for a two-argument statement that reproduce e3nn's ``TensorProduct`` ``tp``.

    ``tp`` may be any ``e3nn.o3.TensorProduct`` (``FullyConnectedTensorProduct``, ``uvw``,
    ``uvu``, ``uuu`` instructions, any normalisation); its instructions are matched to the
    statement's paths by ``(i_in1, i_in2, i_out)``, whatever their order. Paths e3nn lacks get
    zero weights. ``weight`` are e3nn's external weights (``shared_weights=False``, shape
    ``[..., numel]``), otherwise ``tp.weight`` is used. Returns ``[..., numel]`` in fusionlang's
    layout (docs/semantics.md).

    >>> from e3nn import o3  # doctest: +SKIP
    >>> tp = o3.FullyConnectedTensorProduct("2x0e + 2x1o", "1o", "3x1o")  # doctest: +SKIP
    >>> from_e3nn_tensor_product(tp, diagram).shape  # doctest: +SKIP
    torch.Size([18])
    """
    diagram = diagram_of(diagram_or_module)
    stmt = _statement(diagram, statement)
    if stmt.arity != 2:
        raise ValueError(f"statement {statement} has {stmt.arity} arguments; a TensorProduct couples two")
    _check_irreps(diagram, stmt.leaves[0].leg, tp.irreps_in1, "irreps_in1")
    _check_irreps(diagram, stmt.leaves[1].leg, tp.irreps_in2, "irreps_in2")
    _check_irreps(diagram, stmt.target, tp.irreps_out, "irreps_out")
    instructions = _index_instructions(tp.instructions)
    flat = _e3nn_weight(tp, weight) if any(i.has_weight for i in tp.instructions) else None
    blocks = _e3nn_blocks(tp.instructions, flat)
    lead = tuple(flat.shape[:-1]) if flat is not None else ()
    ours = [_import_path(diagram, stmt, path, instructions, blocks, lead) for path in stmt.paths]
    _check_all_used(instructions, stmt)
    return _concatenate(ours, lead, flat.dtype if flat is not None else torch.get_default_dtype())


def _index_instructions(instructions: Iterable[Any]) -> dict[tuple[int, int, int], tuple[int, Any]]:
    found: dict[tuple[int, int, int], tuple[int, Any]] = {}
    for position, ins in enumerate(instructions):
        key = (ins.i_in1, ins.i_in2, ins.i_out)
        if key in found:
            raise ValueError(f"e3nn has two instructions {key}; fusionlang has one path per triple")
        found[key] = (position, ins)
    return found


def _e3nn_blocks(instructions: Any, flat: torch.Tensor | None) -> dict[int, torch.Tensor]:
    """e3nn's weight block of every weighted instruction, by instruction position."""
    weighted = [(k, ins) for k, ins in enumerate(instructions) if ins.has_weight]
    if flat is None:
        return {}
    pieces = _split(flat, (tuple(ins.path_shape) for _, ins in weighted))
    return {k: piece for (k, _), piece in zip(weighted, pieces, strict=True)}


def _import_path(diagram: ir.Diagram, stmt: ir.Statement, path: ir.Path,
                 instructions: dict[tuple[int, int, int], tuple[int, Any]],
                 blocks: dict[int, torch.Tensor], lead: tuple[int, ...]) -> torch.Tensor | None:
    """Our block ``[*lead, *shape]`` of one path (None for an unweighted statement, once checked)."""
    shape = path_weight_shape(diagram, stmt, path)
    key = (path.leaves[0], path.leaves[1], path.output)
    what = f"path {key} of statement {stmt.index}"
    if key not in instructions:
        if shape is None:
            raise ValueError(f"{what}: e3nn has no such instruction and `weights = none` cannot switch it off")
        return torch.zeros(*lead, *shape, dtype=torch.float64)
    position, ins = instructions[key]
    _check_mode(stmt, ins, shape is not None, what)
    ratio = float(ins.path_weight) / _our_coefficient(diagram, stmt, path)
    if shape is None:
        if not math.isclose(ratio, 1.0, rel_tol=1e-9):
            raise ValueError(f"{what}: e3nn scales it by {ratio:.6g} times fusionlang's normalisation; "
                             "an unweighted statement cannot absorb that (use `weights = path`)")
        return None
    if not ins.has_weight:
        return torch.full((*lead, *shape), ratio, dtype=torch.float64)
    return _fit_block(blocks[position], shape, len(lead), what) * ratio


def _check_mode(stmt: ir.Statement, ins: Any, weighted: bool, what: str) -> None:
    wanted = _E3NN_MODES[(stmt.channels, weighted)]
    if ins.connection_mode != wanted:
        raise ValueError(f"{what}: e3nn's instruction is `{ins.connection_mode}`, but `channels = "
                         f"{stmt.channels}, weights = {stmt.weights}` corresponds to e3nn's `{wanted}`")


def _check_all_used(instructions: dict[tuple[int, int, int], tuple[int, Any]], stmt: ir.Statement) -> None:
    paths = {(p.leaves[0], p.leaves[1], p.output) for p in stmt.paths}
    missing = [key for key, (_, ins) in instructions.items() if key not in paths and ins.path_weight != 0]
    if missing:
        raise ValueError(f"e3nn instructions {missing} have no path in statement {stmt.index}")


def _concatenate(blocks: Iterable[torch.Tensor | None], lead: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Blocks ``[*lead, *shape]`` flattened and joined in path order: ``[*lead, numel]``."""
    present = [b.to(dtype).reshape(*lead, -1) for b in blocks if b is not None]
    return torch.cat(present, dim=-1) if present else torch.zeros(*lead, 0, dtype=dtype)


def from_e3nn_linear(linear: Any, diagram_or_module: Any, statement: int = 0,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """Flat weights for a one-argument ``channels = uvw`` statement that reproduce ``o3.Linear``.

    Instructions are matched to paths by ``(i_in, i_out)``; paths e3nn lacks get zero weights.
    Biases cannot be imported (fusionlang's linear maps have none). ``weight`` are e3nn's
    external weights; otherwise ``linear.weight`` is used.

    >>> from e3nn import o3  # doctest: +SKIP
    >>> from_e3nn_linear(o3.Linear("2x0e + 1o", "3x0e + 1o"), diagram).shape  # doctest: +SKIP
    torch.Size([7])
    """
    diagram = diagram_of(diagram_or_module)
    stmt = _statement(diagram, statement)
    if not stmt.is_linear or stmt.channels != "uvw" or stmt.weights == "none":
        raise ValueError(f"statement {statement} is not a weighted `uvw` linear map; e3nn's Linear mixes channels")
    if getattr(linear, "bias_numel", 0):
        raise ValueError("the e3nn Linear has biases; fusionlang's linear maps have none")
    _check_irreps(diagram, stmt.leaves[0].leg, linear.irreps_in, "irreps_in")
    _check_irreps(diagram, stmt.target, linear.irreps_out, "irreps_out")
    instructions = {(ins.i_in, ins.i_out): (k, ins) for k, ins in enumerate(linear.instructions) if ins.i_in >= 0}
    flat = _e3nn_weight(linear, weight)
    shapes = [tuple(ins.path_shape) for _, ins in sorted(instructions.values(), key=lambda x: x[0])]
    pieces = dict(zip(sorted(k for k, _ in instructions.values()), _split(flat, shapes), strict=True))
    lead = tuple(flat.shape[:-1])
    blocks = [_linear_block(diagram, stmt, path, instructions, pieces, lead) for path in stmt.paths]
    unused = [key for key in instructions if key not in {(p.leaves[0], p.output) for p in stmt.paths}]
    if unused:
        raise ValueError(f"e3nn instructions {unused} have no path in statement {stmt.index}")
    return _concatenate(blocks, lead, flat.dtype)


def _linear_block(diagram: ir.Diagram, stmt: ir.Statement, path: ir.Path,
                  instructions: dict[tuple[int, int], tuple[int, Any]], pieces: dict[int, torch.Tensor],
                  lead: tuple[int, ...]) -> torch.Tensor:
    shape = path_weight_shape(diagram, stmt, path) or ()
    key = (path.leaves[0], path.output)
    if key not in instructions:
        return torch.zeros(*lead, *shape, dtype=torch.float64)
    position, ins = instructions[key]
    ratio = float(ins.path_weight) / _our_coefficient(diagram, stmt, path)
    return _fit_block(pieces[position], shape, len(lead), f"path {key}") * ratio


def load_e3nn_weights(module: Any, e3nn_module: Any, statement: int = 0,
                      diagram: ir.Diagram | None = None) -> Any:
    """Copy the weights of an e3nn ``TensorProduct`` or ``Linear`` into the internal weights of
    ``statement`` of a compiled module; returns the module.

    ``diagram`` is the checked diagram the module was compiled from (needed unless the module
    carries it). e3nn's weights must be internal (``shared_weights=True``); for external
    weights, pass the result of :func:`from_e3nn_tensor_product` to ``forward``.

    >>> load_e3nn_weights(compiled, o3.FullyConnectedTensorProduct(...), diagram=d)  # doctest: +SKIP
    """
    found = diagram or diagram_of(module)
    if hasattr(e3nn_module, "irreps_in1"):
        weights = from_e3nn_tensor_product(e3nn_module, found, statement)
    else:
        weights = from_e3nn_linear(e3nn_module, found, statement)
    weights = to_module_layout(module, found, statement, weights)
    parameter = statement_parameter(module, statement)
    with torch.no_grad():
        parameter.copy_(weights.reshape(parameter.shape).to(parameter.dtype))
    return module


def statement_parameter(module: Any, statement: int) -> torch.Tensor:
    """The ``nn.Parameter`` that holds the internal weights of ``statement`` in a compiled module.

    Generated classes map statement indices to parameter names in ``WEIGHTS``.
    """
    names = getattr(type(module), "WEIGHTS", None)
    if not isinstance(names, dict):
        raise TypeError(f"{type(module).__name__} is not a compiled fusionlang module (no WEIGHTS map)")
    if statement not in names:
        external = statement in getattr(type(module), "WEIGHT_INPUTS", {})
        raise ValueError(f"statement {statement} has no internal weights"
                         + (" (its weights are a forward argument)" if external else ""))
    parameter = getattr(module, names[statement])
    assert isinstance(parameter, torch.Tensor)
    return parameter


def kept_paths(module: Any, statement: int) -> tuple[int, ...] | None:
    """Positions of the paths of ``statement`` whose weights a compiled module stores, or None for
    all of them. Fewer are kept when the planner shares weights across repeated leaves (the
    symmetric reduction: couplings of one leg read twice are symmetrised and only a linearly
    independent subset of paths keeps weights)."""
    kept = getattr(type(module), "KEPT_PATHS", {})
    return kept.get(statement) if isinstance(kept, dict) else None


def to_module_layout(module: Any, diagram: ir.Diagram, statement: int, flat: torch.Tensor) -> torch.Tensor:
    """Weights in docs/semantics.md's layout → the compiled module's layout (the same, except that
    a reduced statement keeps only some paths' blocks: the others must then be zero)."""
    stmt = _statement(diagram, statement)
    kept = kept_paths(module, statement)
    if kept is None:
        return flat
    blocks = split_weights(diagram, stmt, flat)
    dropped = [k for k, b in enumerate(blocks) if k not in kept and b is not None and bool(b.ne(0).any())]
    if dropped:
        raise ValueError(f"statement {statement} shares weights across its repeated leaves (paths {list(kept)} "
                         f"keep weights); paths {dropped} have nonzero weights that cannot be carried over")
    lead = tuple(flat.shape[:-1])
    return _concatenate((blocks[k] for k in kept), lead, flat.dtype)


# -- mace-torch's SymmetricContraction ------------------------------------------------------------

def from_mace_symmetric_contraction(sc: Any, module: Any) -> dict[int, torch.Tensor]:
    """Per-class weights that make a compiled product basis compute what mace-torch's
    ``SymmetricContraction`` ``sc`` computes, keyed by statement index: ``[classes, numel]``
    (float64, the kept paths' blocks in path order, as the module's ``weights_<target>_<index>``).

    The module's statements ``A -> B``, ``A, A -> B``, ... (``channels = uuu, weights = channel,
    per = species``) give correlation orders 1, 2, ...; ``A`` and ``B`` must have ``sc``'s input and
    output irreps, entry for entry. For each order ν and output entry, mace's ``U_ν[k, i_1..i_ν, q]``
    and our kept paths' dense tensors ``D_p`` (coupling times 1/sqrt(fan_in), embedded in one
    channel's components), both symmetrised over the ν legs, span the same space: least squares
    gives ``U = Σ_p D_p M[p, q]`` exactly (a residual above round-off raises ``ValueError``), and our
    weights are ``W[s, p, c] = Σ_q M[p, q] W_mace[s, q, c]``.

    >>> from_mace_symmetric_contraction(sc, module)[2].shape  # examples/mace.fusion  # doctest: +SKIP
    torch.Size([3, 320])
    """
    if isinstance(module, ir.Diagram):
        raise TypeError("pass the compiled module: its KEPT_PATHS say which paths carry weights")
    diagram = diagram_of(module)
    source, target, statements = _product_basis(diagram)
    _check_irreps(diagram, source, sc.irreps_in, "irreps_in")
    _check_irreps(diagram, target, sc.irreps_out, "irreps_out")
    contractions = list(sc.contractions)
    _check_mace_orders(contractions, statements)
    return {stmt.index: _import_order(diagram, module, stmt, contractions) for stmt in statements.values()}


def load_mace_symmetric_contraction(module: Any, sc: Any) -> Any:
    """Copy mace-torch's ``SymmetricContraction`` weights into a compiled product basis (every
    per-class table of its statements, see :func:`from_mace_symmetric_contraction`); returns it.

    >>> load_mace_symmetric_contraction(compiled, sc)(A, species)  # doctest: +SKIP
    """
    diagram = diagram_of(module)
    for index, weights in from_mace_symmetric_contraction(sc, module).items():
        parameter = per_class_parameter(module, diagram, index)
        if tuple(parameter.shape) != tuple(weights.shape):
            raise ValueError(f"{type(module).__name__}: table of statement {index} is {tuple(parameter.shape)}, "
                             f"the imported weights are {tuple(weights.shape)}")
        with torch.no_grad():
            parameter.copy_(weights.to(parameter.dtype))
    return module


def per_class_parameter(module: Any, diagram: ir.Diagram, statement: int) -> torch.Tensor:
    """The ``[classes, numel]`` weight table of a ``per = ...`` statement in a compiled module."""
    stmt = _statement(diagram, statement)
    name = class_name(f"weights_{stmt.target}_{stmt.index}")
    parameter = getattr(module, name, None)
    if not isinstance(parameter, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no per-class table `{name}` for statement {statement}")
    return parameter


def _product_basis(diagram: ir.Diagram) -> tuple[str, str, dict[int, ir.Statement]]:
    """(input leg, output leg, {correlation order: statement}) of a MACE-style product basis."""
    found: dict[int, ir.Statement] = {}
    for stmt in diagram.statements:
        legs = {ref.leg for ref in stmt.leaves}
        if stmt.per is None or len(legs) != 1 or any(ref.via for ref in stmt.leaves):
            continue
        if stmt.channels != "uuu" or stmt.weights != "channel":
            raise ValueError(f"statement {stmt.index} is `channels = {stmt.channels}, weights = {stmt.weights}`; "
                             "mace's product basis is `channels = uuu, weights = channel`")
        if stmt.arity in found:
            raise ValueError(f"statements {found[stmt.arity].index} and {stmt.index} both have "
                             f"correlation {stmt.arity}")
        found[stmt.arity] = stmt
    if not found:
        raise ValueError(f"{diagram.name} has no product-basis statement (`A, A -> B [per = species]`)")
    pairs = {(s.leaves[0].leg, s.target) for s in found.values()}
    if len(pairs) != 1:
        raise ValueError(f"the product-basis statements of {diagram.name} read or write different legs: "
                         f"{sorted(pairs)}")
    source, target = pairs.pop()
    return source, target, found


def _check_mace_orders(contractions: list[Any], statements: dict[int, ir.Statement]) -> None:
    """Every correlation order mace uses with nonzero weights needs a statement here."""
    for slot, contraction in enumerate(contractions):
        for nu in range(1, int(contraction.correlation) + 1):
            if nu in statements:
                continue
            u, weights = _mace_u(contraction, nu), _mace_weights(contraction, nu)
            if bool(u.ne(0).any()) and bool(weights.ne(0).any()):
                raise ValueError(f"mace's output {slot} uses correlation {nu}, which has no statement here "
                                 f"(add `{', '.join(['A'] * nu)} -> B`)")


def _mace_u(contraction: Any, nu: int) -> torch.Tensor:
    """mace's ``U_matrix_ν`` as ``[dim_out, i_1, ..., i_ν, params]`` (mace drops dim_out = 1)."""
    u = dict(contraction.named_buffers())[f"U_matrix_{nu}"].detach()
    return u.unsqueeze(0) if u.dim() == nu + 1 else u


def _mace_weights(contraction: Any, nu: int) -> torch.Tensor:
    """mace's weights of order ν, ``[elements, params, channels]`` (``weights_max`` is the highest)."""
    correlation = int(contraction.correlation)
    found = contraction.weights_max if nu == correlation else contraction.weights[correlation - 1 - nu]
    return found.detach()


def _import_order(diagram: ir.Diagram, module: Any, stmt: ir.Statement, contractions: list[Any]) -> torch.Tensor:
    """The ``[classes, numel]`` table of one statement: each kept path's ``[classes, m]`` block."""
    kept = kept_paths(module, stmt.index)
    kept = tuple(range(len(stmt.paths))) if kept is None else kept
    classes = diagram.leg(stmt.per or "").classes
    mul = diagram.irreps(stmt.target)[0].mul
    blocks: dict[int, torch.Tensor] = {}
    for slot, contraction in enumerate(contractions):
        positions = [k for k in kept if stmt.paths[k].output == slot]
        found = _import_entry(diagram, stmt, positions, contraction, (classes, mul), slot)
        blocks.update(zip(positions, found, strict=True))
    return torch.cat([blocks[k] for k in kept], dim=-1) if kept else torch.zeros(classes, 0, dtype=torch.float64)


def _import_entry(diagram: ir.Diagram, stmt: ir.Statement, positions: list[int], contraction: Any,
                  shape: tuple[int, int], slot: int) -> list[torch.Tensor]:
    """Our ``[classes, m]`` blocks of the kept paths into one output entry (mace's ``slot``)."""
    nu = stmt.arity
    if nu > int(contraction.correlation):
        return [torch.zeros(shape, dtype=torch.float64) for _ in positions]
    theirs = _mace_weights(contraction, nu).to(torch.float64)
    if tuple(theirs.shape[::2]) != shape:
        raise ValueError(f"mace's weights of output {slot}, correlation {nu} are {tuple(theirs.shape)} "
                         f"[elements, params, channels]; the module needs {shape[0]} classes and {shape[1]} channels")
    u = _mace_u(contraction, nu)
    ours = torch.stack([_dense_path(diagram, stmt, stmt.paths[k]) for k in positions], -1) if positions else None
    change = _change_of_basis(ours, u, f"output {slot}, correlation {nu}")
    return list(torch.einsum("pq,sqc->psc", change, theirs)) if positions else []


def _dense_path(diagram: ir.Diagram, stmt: ir.Statement, path: ir.Path) -> torch.Tensor:
    """``D_p[i_1, ..., i_ν, k]``: a path's coupling times 1/sqrt(fan_in), on one channel's components
    (mace's ``x[b, c, :]``: the entries of the input leg side by side)."""
    leg = diagram.irreps(stmt.leaves[0].leg)
    starts = [0]
    for entry in leg:
        starts.append(starts[-1] + entry.irrep.dim)
    coupling = path_coupling(diagram, stmt, path).to(torch.float64) / math.sqrt(_target_fan_in(diagram, stmt, path))
    dense = torch.zeros(*([starts[-1]] * stmt.arity), coupling.shape[-1], dtype=torch.float64)
    where = tuple(slice(starts[e], starts[e + 1]) for e in path.leaves)
    dense[where] = coupling
    return dense


def _symmetrised(tensor: torch.Tensor, legs: int) -> torch.Tensor:
    """The mean over permutations of the first ``legs`` axes (what a repeated input sees)."""
    rest = tuple(range(legs, tensor.dim()))
    perms = list(itertools.permutations(range(legs)))
    return sum((tensor.permute(*p, *rest) for p in perms), torch.zeros_like(tensor)) / len(perms)


def _change_of_basis(ours: torch.Tensor | None, u: torch.Tensor, what: str) -> torch.Tensor:
    """M ``[paths, params]`` with ``Sym U = Σ_p Sym D_p M[p, :]``, refusing an inexact fit.

    ``ours`` is ``[i_1, ..., i_ν, k, paths]``, ``u`` mace's ``[k, i_1, ..., i_ν, params]``."""
    legs = u.dim() - 2
    theirs = _symmetrised(u.to(torch.float64).movedim(0, legs), legs).reshape(-1, u.shape[-1])
    scale = float(theirs.norm())
    if ours is None:
        if scale > 0:
            raise ValueError(f"{what}: mace has a nonzero basis here, the module has no path into it")
        return torch.zeros(0, u.shape[-1], dtype=torch.float64)
    dense = _symmetrised(ours, legs).reshape(-1, ours.shape[-1])
    change = torch.linalg.lstsq(dense, theirs, driver="gelsd").solution
    residual = float((dense @ change - theirs).norm()) / max(scale, 1e-300)
    tolerance = max(1e-9, 1e3 * torch.finfo(u.dtype).eps)
    if residual > tolerance:
        raise ValueError(f"{what}: mace's basis is not in the span of the module's paths (relative residual "
                         f"{residual:.2e}); are the irreps, parities and normalisation the same?")
    return change


def load_reference_weights(module: Any, diagram: ir.Diagram, weights: dict[int, torch.Tensor]) -> list[torch.Tensor]:
    """Weights in docs/semantics.md's layout (``{statement index: flat weights}``, as
    :func:`fusionlang.testing.random_weights` makes them) into a compiled module: internal ones
    copied into its parameters, external ones returned in statement order, for ``forward``.

    For a statement whose weights the module shares across repeated leaves (fewer kept paths),
    the dropped paths' blocks are set to zero in ``weights`` (in place) and only the kept ones go
    to the module: module and reference then compute the same function."""
    external = []
    for statement in diagram.statements:
        if statement.weights == "none":
            continue
        ours = to_module_layout(module, diagram, statement.index, _zero_dropped(module, diagram, statement, weights))
        if statement.weights == "external":
            external.append(ours)
            continue
        parameter = statement_parameter(module, statement.index)
        with torch.no_grad():
            parameter.copy_(ours.reshape(parameter.shape))
    return external


def _zero_dropped(module: Any, diagram: ir.Diagram, statement: ir.Statement,
                  weights: dict[int, torch.Tensor]) -> torch.Tensor:
    kept = kept_paths(module, statement.index)
    if kept is None:
        return weights[statement.index]
    blocks = split_weights(diagram, statement, weights[statement.index])
    lead = weights[statement.index].shape[:-1]
    pieces = [(b if k in kept else torch.zeros_like(b)).reshape(*lead, -1)
              for k, b in enumerate(blocks) if b is not None]
    weights[statement.index] = torch.cat(pieces, dim=-1)
    return weights[statement.index]
