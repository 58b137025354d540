"""Swap fusionlang-compiled blocks into a mace-torch model, in place, with its weights.

:func:`swap_blocks` replaces every layer's product basis (``products[i].symmetric_contractions``,
mace-torch's ``SymmetricContraction``) and, optionally, every interaction's ``conv_tp`` (an e3nn
``TensorProduct`` whose weights come from the radial MLP) with modules compiled from ``.fusion``
source generated for that layer's irreps, its correlation order and its number of elements. The
weights are carried over by :mod:`fusionlang.importers`, so the model computes what it computed
before (docs/mace.md, "Swapping compiled blocks into a mace-torch model").

Thin adapters keep mace-torch's calling conventions: :class:`TensorProductAdapter` reorders and
rescales the radial MLP's ``[E, weight_numel]`` output into the compiled statement's layout,
and :class:`SymmetricContractionAdapter` takes mace's ``[N, channels, sum(2l+1)]`` features and
one-hot ``node_attrs``, and gives the compiled product basis flat ``mul_ir`` features and an
integer species index. mace-torch is read duck-typed, never imported: it stays a test oracle.
"""

# No `from __future__ import annotations`: TorchScript reads the adapters' class annotations as types.
import math
from typing import Any

import torch

from . import runtime
from .diagnostics import FusionError
from .fmt import format_source
from .groups import Irreps
from .importers import (
    diagram_of,
    from_e3nn_tensor_product,
    from_mace_symmetric_contraction,
    kept_paths,
    per_class_parameter,
)
from .weights import path_weight_shape

__all__ = ["SUPPORTED_INTERACTIONS", "SUPPORTED_MODELS", "SymmetricContractionAdapter", "TensorProductAdapter",
           "compile_symmetric_contraction", "compile_tensor_product", "one_hot_index", "product_basis_source",
           "swap_blocks", "tensor_product_source"]

SUPPORTED_MODELS = frozenset({"MACE", "ScaleShiftMACE"})
# Interaction blocks of mace-torch 0.3.x that call `conv_tp(node_feats[sender], edge_attrs, tp_weights)`
# and sum the messages into the receivers themselves (no fused convolution).
SUPPORTED_INTERACTIONS = frozenset({
    "RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock", "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock", "RealAgnosticAttResidualInteractionBlock",
    "RealAgnosticResidualNonLinearInteractionBlock",
})
_SOURCE_NAME = "mace_swap.fusion"
# The compiled product basis with one input per leg takes the features this many times: the adapter
# marks it with one of these attributes, so that TorchScript compiles only the matching call.
_LEG_MARKS = {2: "two_legs", 3: "three_legs", 4: "four_legs"}
_Swap = tuple[torch.nn.Module, str, torch.nn.Module]  # (owner, attribute, replacement)


def swap_blocks(model: Any, *, interaction: bool = True, product_basis: bool = True, reduced: bool = False,
                dtype: torch.dtype | None = None) -> Any:
    """Replace, in place, the blocks of a mace-torch ``MACE``/``ScaleShiftMACE`` ``model`` with
    fusionlang-compiled modules carrying the same weights; returns ``model``.

    ``product_basis`` swaps every ``products[i].symmetric_contractions``; ``interaction`` every
    ``interactions[i].conv_tp`` (the radial MLP that makes its weights stays, and so do the
    linear maps and the skip connection). ``dtype`` is the compiled modules' precision (default:
    the model's). Energies and forces stay equal to round-off (1e-15 in float64), and the model
    trains as before: the product basis' weights become the compiled modules' parameters.

    ``reduced=False`` gives the product basis one weight per coupling path, as many as mace-torch
    has (its ν legs are distinct inputs fed the same features). ``reduced=True`` gives it
    fusionlang's reduced symmetric basis (``A, A, A -> B``, docs/semantics.md): the function space
    is the same, only the linearly dependent weights are gone (per element and channel, 29
    instead of 86 into ``0e + 1o`` and 13 instead of 28 into ``0e`` at correlation 3 and l <= 3),
    and the weights are converted exactly by a change of basis, so the outputs stay equal too.

    Everything is checked and compiled before the first block is replaced: a model with blocks
    it does not know (other interaction classes, cuequivariance or OpenEquivariance kernels, fused
    convolutions, other mace-torch versions' layouts) raises ``TypeError`` naming them, and is
    left untouched.

    >>> from fusionlang.mace import swap_blocks  # doctest: +SKIP
    >>> swap_blocks(model, reduced=True)(batch)["energy"]  # the same energies  # doctest: +SKIP
    """
    _check_model(model)
    target = {"dtype": dtype or _model_dtype(model), "device": _model_device(model)}
    swaps: list[_Swap] = []
    for layer, (block, product) in enumerate(zip(model.interactions, model.products, strict=True)):
        if interaction:
            tp = _conv_tp(block, f"interactions[{layer}]")
            swaps.append((block, "conv_tp", _built(compile_tensor_product, tp, f"interactions[{layer}].conv_tp",
                                                   **target)))
        if product_basis:
            sc = _symmetric_contraction(product, f"products[{layer}]")
            where = f"products[{layer}].symmetric_contractions"
            swaps.append((product, "symmetric_contractions",
                          _built(compile_symmetric_contraction, sc, where, reduced=reduced, **target)))
    for owner, name, replacement in swaps:  # only once every block is built: never a partial swap
        setattr(owner, name, replacement)
    return model


def _built(build: Any, block: Any, where: str, **options: Any) -> torch.nn.Module:
    """``build(block, **options)``, with errors naming the block they are about."""
    try:
        module: torch.nn.Module = build(block, **options)
    except FusionError as error:
        raise ValueError(f"{where}: the generated .fusion source does not compile:\n{error}") from error
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    return module


# -- what is supported -------------------------------------------------------------------------------

def _is(obj: Any, module: str, names: frozenset[str] | set[str]) -> bool:
    """Whether ``obj`` is an instance of exactly one of the classes ``names`` of ``module``."""
    cls = type(obj)
    return cls.__module__ == module and cls.__name__ in names


def _refuse(where: str, obj: Any, wanted: str) -> TypeError:
    cls = type(obj)
    return TypeError(f"fusionlang.mace.swap_blocks: {where} is {cls.__module__}.{cls.__name__}, which it cannot "
                     f"swap (supported: {wanted}); nothing was replaced")


def _check_model(model: Any) -> None:
    if not _is(model, "mace.modules.models", SUPPORTED_MODELS):
        raise _refuse("the model", model, "mace-torch 0.3's " + " and ".join(sorted(SUPPORTED_MODELS)))
    interactions, products = getattr(model, "interactions", None), getattr(model, "products", None)
    if not isinstance(interactions, torch.nn.ModuleList) or not isinstance(products, torch.nn.ModuleList) \
            or len(interactions) != len(products):
        raise TypeError("fusionlang.mace.swap_blocks: the model has no `interactions` and `products` lists of "
                        "the same length (another mace-torch version's layout?); nothing was replaced")


def _accelerated(block: Any) -> str | None:
    """The name of the kernel library a block was built for (cuequivariance, OpenEquivariance)."""
    cueq = getattr(block, "cueq_config", None)
    if cueq is not None and (getattr(cueq, "enabled", False) or getattr(cueq, "layout_str", "mul_ir") != "mul_ir"):
        return "cuequivariance (cueq_config)"
    if getattr(getattr(block, "oeq_config", None), "enabled", False):
        return "OpenEquivariance (oeq_config)"
    return None


def _conv_tp(block: Any, where: str) -> Any:
    """The e3nn ``TensorProduct`` of a supported interaction block."""
    if not _is(block, "mace.modules.blocks", SUPPORTED_INTERACTIONS):
        raise _refuse(where, block, ", ".join(sorted(SUPPORTED_INTERACTIONS)))
    kernels = _accelerated(block)
    if kernels or hasattr(block, "conv_fusion"):
        raise TypeError(f"fusionlang.mace.swap_blocks: {where} is built for {kernels or 'a fused convolution'}; "
                        "only e3nn's TensorProduct (mul_ir layout) can be swapped; nothing was replaced")
    tp: Any = getattr(block, "conv_tp", None)
    if type(tp).__name__ != "TensorProduct" or not type(tp).__module__.startswith("e3nn."):
        raise _refuse(f"{where}.conv_tp", tp, "e3nn.o3.TensorProduct")
    if tp.shared_weights or tp.internal_weights or any(i.connection_mode != "uvu" for i in tp.instructions):
        raise TypeError(f"fusionlang.mace.swap_blocks: {where}.conv_tp is not mace's channelwise convolution "
                        "(uvu instructions, shared_weights=False, internal_weights=False); nothing was replaced")
    return tp


def _symmetric_contraction(product: Any, where: str) -> Any:
    """mace's ``SymmetricContraction`` of a product block, its layout checked."""
    if not _is(product, "mace.modules.blocks", {"EquivariantProductBasisBlock"}):
        raise _refuse(where, product, "mace.modules.blocks.EquivariantProductBasisBlock")
    if _accelerated(product):
        raise TypeError(f"fusionlang.mace.swap_blocks: {where} is built for {_accelerated(product)}; only "
                        "mace's own SymmetricContraction (mul_ir layout) can be swapped; nothing was replaced")
    sc: Any = getattr(product, "symmetric_contractions", None)
    where = f"{where}.symmetric_contractions"
    if not _is(sc, "mace.modules.symmetric_contraction", {"SymmetricContraction"}):
        raise _refuse(where, sc, "mace.modules.symmetric_contraction.SymmetricContraction")
    if not getattr(sc, "internal_weights", True) or len(sc.contractions) != len(sc.irreps_out):
        raise TypeError(f"fusionlang.mace.swap_blocks: {where} has external weights or one contraction per "
                        "output irrep is missing; nothing was replaced")
    for slot, contraction in enumerate(sc.contractions):
        _check_contraction(contraction, f"{where}.contractions[{slot}]")
    return sc


def _check_contraction(contraction: Any, where: str) -> None:
    """mace-torch 0.3's ``Contraction`` layout: ``U_matrix_1..ν`` buffers, ``weights_max`` and
    ``weights`` ``[elements, params, channels]`` (what :mod:`fusionlang.importers` reads)."""
    correlation = getattr(contraction, "correlation", None)
    buffers = dict(contraction.named_buffers()) if isinstance(contraction, torch.nn.Module) else {}
    weights = [*getattr(contraction, "weights", []), getattr(contraction, "weights_max", None)]
    if not isinstance(correlation, int) or correlation < 1 \
            or any(f"U_matrix_{nu}" not in buffers for nu in range(1, correlation + 1)) \
            or len(weights) != correlation or any(not isinstance(w, torch.Tensor) or w.dim() != 3 for w in weights):
        raise _refuse(where, contraction, "mace-torch 0.3's Contraction with U_matrix_1..ν buffers, weights_max "
                                          "and weights [elements, params, channels]")


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
    return floating[0] if floating else torch.get_default_dtype()


def _model_device(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


# -- generated source --------------------------------------------------------------------------------

def _irreps_text(irreps: Any) -> str:
    """fusionlang's text of irreps given as e3nn ``Irreps`` or text (``8x0e+8x1o`` → ``8x0e + 8x1o``)."""
    return str(Irreps(str(irreps)))


def tensor_product_source(irreps_in1: Any, irreps_in2: Any, irreps_out: Any, name: str = "conv_tp") -> str:
    """The ``.fusion`` source of mace's ``conv_tp``: a ``uvu`` tensor product with per-sample
    (external) weights and one output entry per path (``irreps_out`` is mace's ``irreps_mid``).

    >>> print(tensor_product_source("8x0e", "1x0e+1x1o", "8x0e+8x1o"))
    diagram conv_tp {
        group O3
        input  h : 8x0e
        input  Y : 0e + 1o
        output A : 8x0e + 8x1o
        h, Y -> A  [channels = uvu, weights = external, paths = split]
    }
    <BLANKLINE>
    """
    return format_source(f"diagram {name} {{\n group O3\n input h : {_irreps_text(irreps_in1)}\n"
                         f" input Y : {_irreps_text(irreps_in2)}\n output A : {_irreps_text(irreps_out)}\n"
                         " h, Y -> A [channels = uvu, weights = external, paths = split]\n}")


def product_basis_source(irreps_in: Any, irreps_out: Any, correlation: int, species: int, *, reduced: bool,
                         name: str = "product_basis") -> str:
    """The ``.fusion`` source of mace's product basis: orders 1 to ``correlation`` of the node
    features with per-species channel weights. ``reduced`` reads one input on every leg (the
    reduced symmetric basis); otherwise the legs are distinct inputs (one weight per path).

    >>> print(product_basis_source("4x0e+4x1o", "4x0e", 2, 3, reduced=False))
    diagram product_basis {
        group O3
        input  A1, A2 : 4x0e + 4x1o  [on = nodes]
        index  species : 3
        output B : 4x0e
        A1 -> B      [channels = uuu, weights = channel, per = species]
        A1, A2 -> B  [channels = uuu, weights = channel, per = species]
    }
    <BLANKLINE>
    """
    legs = ["A"] * correlation if reduced else [f"A{k}" for k in range(1, correlation + 1)]
    statements = "".join(f" {', '.join(legs[:order])} -> B [channels = uuu, weights = channel, per = species]\n"
                         for order in range(1, correlation + 1))
    return format_source(f"diagram {name} {{\n group O3\n input {', '.join(dict.fromkeys(legs))} : "
                         f"{_irreps_text(irreps_in)} [on = nodes]\n index species : {species}\n"
                         f" output B : {_irreps_text(irreps_out)}\n{statements}}}")


def _compiled(source: str, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    from .api import compile as compile_source

    module: torch.nn.Module = compile_source(source, name=_SOURCE_NAME).module_class()(dtype=dtype, device=device)
    return module


# -- the interaction's tensor product ----------------------------------------------------------------

class TensorProductAdapter(torch.nn.Module):
    """mace's ``conv_tp(x1[E, in1], x2[E, in2], weight[E, weight_numel])`` on a compiled module.

    The radial MLP's output (e3nn's weight layout) is gathered and scaled into the compiled
    statement's layout: ``weight[:, weight_index] * weight_scale`` (e3nn's ``path_weight`` over
    fusionlang's normalisation, :func:`fusionlang.importers.from_e3nn_tensor_product`).
    """

    weight_index: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, compiled: torch.nn.Module, weight_index: torch.Tensor, weight_scale: torch.Tensor,
                 tp: Any) -> None:
        super().__init__()
        self.compiled = compiled
        self.irreps_in1, self.irreps_in2, self.irreps_out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        self.weight_numel = int(tp.weight_numel)
        self.register_buffer("weight_index", weight_index, persistent=False)
        self.register_buffer("weight_scale", weight_scale, persistent=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        weight = runtime.index_select(weight, -1, self.weight_index) * self.weight_scale
        out: torch.Tensor = self.compiled(x1, x2, weight)
        return out


def compile_tensor_product(tp: Any, *, dtype: torch.dtype, device: torch.device | str = "cpu") -> TensorProductAdapter:
    """A compiled stand-in for mace's ``conv_tp`` (e3nn ``TensorProduct``, ``uvu``, external weights).

    >>> adapter = compile_tensor_product(block.conv_tp, dtype=torch.float64)  # doctest: +SKIP
    >>> adapter(h[sender], Y, radial_mlp(edge_feats))  # == block.conv_tp(...)  # doctest: +SKIP
    """
    device = torch.device(device)
    module = _compiled(tensor_product_source(tp.irreps_in1, tp.irreps_in2, tp.irreps_out), dtype, device)
    index, scale = _weight_gather(tp, module)
    return TensorProductAdapter(module, index.to(device), scale.to(dtype=dtype, device=device), tp)


def _weight_gather(tp: Any, module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, scale) with ``ours = theirs[..., index] * scale``: the importer applied to the rows
    of the identity gives the linear map, in which every weight of ours reads one of e3nn's."""
    count = int(tp.weight_numel)
    matrix = from_e3nn_tensor_product(tp, module, 0, weight=torch.eye(count, dtype=torch.float64))  # [theirs, ours]
    if bool((matrix.ne(0).sum(0) > 1).any()):
        raise ValueError("a weight of the compiled statement mixes several of e3nn's; it cannot be a gather")
    index = matrix.abs().argmax(0) if count else torch.zeros(matrix.shape[1], dtype=torch.long)
    scale = matrix.gather(0, index.unsqueeze(0)).squeeze(0) if count else torch.zeros(matrix.shape[1])
    return index, scale


# -- the product basis -------------------------------------------------------------------------------

class SymmetricContractionAdapter(torch.nn.Module):
    """mace's ``symmetric_contractions(x[N, channels, sum(2l+1)], node_attrs[N, elements])`` on a
    compiled product basis: ``x`` is gathered into flat ``mul_ir`` features (``feature_index``),
    the one-hot ``node_attrs`` become the species index, and the features go to each of the
    module's ``legs`` inputs (one for the reduced basis, one per order otherwise, at most 4)."""

    feature_index: torch.Tensor

    def __init__(self, compiled: torch.nn.Module, sc: Any, legs: int) -> None:
        super().__init__()
        _check_legs(legs)
        self.compiled = compiled
        self.irreps_in, self.irreps_out = sc.irreps_in, sc.irreps_out
        self.legs = legs
        if legs in _LEG_MARKS:
            setattr(self, _LEG_MARKS[legs], True)
        index = _feature_index(Irreps(str(sc.irreps_in)))
        self.register_buffer("feature_index", index.to(_buffer_device(compiled)), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = runtime.index_select(x.reshape(x.shape[0], -1), 1, self.feature_index)
        species = one_hot_index(y)
        if hasattr(self, "four_legs"):  # hasattr on a module is resolved when TorchScript compiles
            return self.compiled(a, a, a, a, species)
        if hasattr(self, "three_legs"):
            return self.compiled(a, a, a, species)
        if hasattr(self, "two_legs"):
            return self.compiled(a, a, species)
        return self.compiled(a, species)


def _check_legs(legs: int) -> None:
    if legs != 1 and legs not in _LEG_MARKS:
        raise ValueError(f"correlation {legs} with one input per leg is not supported (at most "
                         f"{max(_LEG_MARKS)}); use reduced=True")


def one_hot_index(node_attrs: torch.Tensor) -> torch.Tensor:
    """The class of every row of one-hot ``node_attrs`` ``[N, classes]``; on the CPU (where it is
    cheap) rows that are not one-hot raise ``ValueError``: mace's contraction is linear in them,
    an index is not.

    >>> one_hot_index(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    tensor([1, 0])
    """
    index = node_attrs.argmax(dim=-1)
    if _readable(node_attrs):
        binary = bool(((node_attrs == 0) | (node_attrs == 1)).all()) and bool((node_attrs.sum(-1) == 1).all())
        if not binary:
            raise ValueError("node_attrs must be one-hot rows [N, elements]: the compiled product basis takes "
                             "each node's element as an index")
    return index


def _readable(x: torch.Tensor) -> bool:
    """Whether checking values costs little: on the CPU, and not while torch.compile, torch.export
    or torch.jit.trace record the model (as in :mod:`fusionlang.runtime`)."""
    if torch.jit.is_scripting():
        return x.is_cpu
    else:
        return x.is_cpu and not (torch.compiler.is_compiling() or torch.compiler.is_exporting()
                                 or torch.jit.is_tracing())


def _buffer_device(module: torch.nn.Module) -> torch.device:
    return next((t.device for t in [*module.parameters(), *module.buffers()]), torch.device("cpu"))


def _feature_index(irreps: Irreps) -> torch.Tensor:
    """Positions in mace's ``x.reshape(N, C * D)`` (``x[n, c, start_l + m]``) of the flat
    ``mul_ir`` features (entry by entry, channel-major), for irreps of one multiplicity C.

    >>> _feature_index(Irreps("2x0e + 2x1o")).tolist()
    [0, 4, 1, 2, 3, 5, 6, 7]
    """
    muls = {entry.mul for entry in irreps}
    if len(muls) != 1:
        raise ValueError(f"mace's node features need one multiplicity for every irrep, got {irreps}")
    channels, width = muls.pop(), sum(entry.irrep.dim for entry in irreps)
    positions, start = [], 0
    for entry in irreps:
        dim = entry.irrep.dim
        positions += [c * width + start + m for c in range(channels) for m in range(dim)]
        start += dim
    return torch.tensor(positions, dtype=torch.long)


def compile_symmetric_contraction(sc: Any, *, reduced: bool, dtype: torch.dtype,
                                  device: torch.device | str = "cpu") -> SymmetricContractionAdapter:
    """A compiled stand-in for mace's ``SymmetricContraction`` ``sc``, with its weights.

    The reduced basis takes the weights of :func:`fusionlang.importers.from_mace_symmetric_contraction`
    (the change of basis); the one-weight-per-path basis takes the same blocks on the kept paths
    and zeros on the others (a reduced statement is the full one with those weights zero).

    >>> compile_symmetric_contraction(sc, reduced=True, dtype=torch.float64)(x, node_attrs)  # doctest: +SKIP
    """
    device = torch.device(device)
    correlation = max(int(c.correlation) for c in sc.contractions)
    species = int(sc.contractions[0].weights_max.shape[0])
    _check_legs(1 if reduced else correlation)
    reduced_module = _compiled(product_basis_source(sc.irreps_in, sc.irreps_out, correlation, species, reduced=True),
                               dtype, device)
    tables = _imported_tables(sc, reduced_module)
    module = reduced_module
    if not reduced:
        module = _compiled(product_basis_source(sc.irreps_in, sc.irreps_out, correlation, species, reduced=False),
                           dtype, device)
        tables = _on_every_path(reduced_module, module, tables)
    _load_tables(module, tables)
    return SymmetricContractionAdapter(module, sc, 1 if reduced else correlation)


def _imported_tables(sc: Any, module: torch.nn.Module) -> dict[int, torch.Tensor]:
    """:func:`from_mace_symmetric_contraction`, with a hint when mace made its U in float32."""
    try:
        return from_mace_symmetric_contraction(sc, module)
    except ValueError as error:
        if not _float32_u(sc):
            raise
        raise ValueError(f"{error}\nmace-torch built its U tensors in float32 and the model was converted "
                         "afterwards: swap the blocks before `.double()` (or build the model under "
                         "torch.set_default_dtype(torch.float64))") from error


def _float32_u(sc: Any) -> bool:
    """Whether every U tensor of ``sc`` holds float32 values (made in float32, maybe cast up)."""
    tensors = [u for c in sc.contractions for name, u in c.named_buffers() if name.startswith("U_matrix_")]
    return all(torch.equal(u, u.float().to(u.dtype)) for u in tensors)


def _on_every_path(reduced: torch.nn.Module, full: torch.nn.Module,
                   tables: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Tables of the reduced module's kept paths → tables of every path (zeros on the dropped)."""
    ours, theirs = diagram_of(full), diagram_of(reduced)
    spread = {}
    for mine, source in zip(ours.statements, theirs.statements, strict=True):
        if mine.paths != source.paths:
            raise ValueError(f"statement {mine.index}: the two product bases enumerate different paths")
        sizes = [math.prod(path_weight_shape(ours, mine, p) or ()) for p in mine.paths]
        kept = kept_paths(reduced, source.index) or tuple(range(len(mine.paths)))
        table = tables[source.index]
        blocks = [table.new_zeros(table.shape[0], size) for size in sizes]
        pieces = torch.split(table, [sizes[k] for k in kept], dim=-1)
        for position, piece in zip(kept, pieces, strict=True):
            blocks[position] = piece
        spread[mine.index] = torch.cat(blocks, dim=-1)
    return spread


def _load_tables(module: torch.nn.Module, tables: dict[int, torch.Tensor]) -> None:
    diagram = diagram_of(module)
    for index, table in tables.items():
        parameter = per_class_parameter(module, diagram, index)
        if tuple(parameter.shape) != tuple(table.shape):
            raise ValueError(f"statement {index}: table {tuple(parameter.shape)}, weights {tuple(table.shape)}")
        with torch.no_grad():
            parameter.copy_(table.to(parameter.dtype))
