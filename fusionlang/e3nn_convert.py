"""e3nn modules → ``.fusion`` source and a compiled module with the same weights (docs/e3nn.md).

:func:`from_e3nn` reads an ``o3.TensorProduct`` (``FullyConnectedTensorProduct``,
``FullTensorProduct``, ``ElementwiseTensorProduct``, ``TensorSquare``, or instructions of its own)
or an ``o3.Linear`` duck-typed, as :mod:`fusionlang.importers` does (e3nn is never imported here),
writes the one statement that computes it (an instruction subset keeps just e3nn's instructions
with ``only = {...}``), compiles it and carries the weights over. What the language cannot say (a
connection mode, biases, shared external weights, a normalisation that weights cannot absorb)
raises :class:`E3nnConversionError` naming it; nothing is approximated.

The module is named ``e3nn_convert`` rather than ``from_e3nn`` so that importing it never
replaces the function ``fusionlang.from_e3nn`` with a submodule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .codegen import e3nn_instructions
from .frontend import check_source
from .groups import Irreps
from .ir import IRREP_NORMALIZATIONS, PATH_NORMALIZATIONS

if TYPE_CHECKING:
    import torch

    from . import ir
    from .api import CompileResult

__all__ = ["Conversion", "E3nnConversionError", "from_e3nn", "fusion_source"]

# e3nn's connection mode -> (channels, weighted) of the statement that computes it
_MODES = {"uvw": ("uvw", True), "uvuv": ("uvw", False), "uvu": ("uvu", None), "uuu": ("uuu", None)}
Key = tuple[int, ...]


class E3nnConversionError(ValueError):
    """An e3nn module that ``.fusion`` cannot express; ``feature`` names what the language lacks.

    >>> str(E3nnConversionError("connection mode `uvv`", "channels are uvw, uvu or uuu"))
    'cannot convert the e3nn module: connection mode `uvv`: channels are uvw, uvu or uuu'
    """

    def __init__(self, feature: str, detail: str) -> None:
        super().__init__(f"cannot convert the e3nn module: {feature}: {detail}")
        self.feature = feature


@dataclass(frozen=True)
class Conversion:
    """What :func:`from_e3nn` returns: the ``.fusion`` ``source``, the compiled ``module`` (with
    e3nn's weights) and the ``result`` of compiling the source (plans, generated code)."""

    source: str
    module: torch.nn.Module
    result: CompileResult

    @property
    def diagram(self) -> ir.Diagram:
        """The checked diagram of :attr:`source`."""
        return self.result.diagram()


@dataclass(frozen=True)
class _Spec:
    """The statement an e3nn module becomes, before choosing between ``paths = sum`` and ``split``."""

    name: str
    kind: str
    origin: str                              # the e3nn class name
    legs: tuple[tuple[str, str, str], ...]   # (role, name, irreps)
    statement: str                           # `x, y -> z` without options
    options: tuple[str, ...]
    keys: frozenset[Key]                     # e3nn's instructions as (i_in1, i_in2, i_out) or (i_in, i_out)


def from_e3nn(module: Any, *, name: str | None = None, dtype: torch.dtype | None = None) -> Conversion:
    """The ``.fusion`` source of an e3nn tensor product or ``Linear``, compiled, with its weights.

    Internal weights are copied (a normalisation other than e3nn's default is folded into them);
    external weights (``shared_weights=False``) must be in fusionlang's layout already, which
    e3nn's defaults give, so that the caller's weights (a radial MLP's output) feed both modules
    alike. ``dtype`` defaults to the e3nn module's. Raises :class:`E3nnConversionError`.

    >>> from e3nn import o3  # doctest: +SKIP
    >>> converted = from_e3nn(o3.FullyConnectedTensorProduct("8x0e + 8x1o", "0e + 1o", "8x0e"))  # doctest: +SKIP
    >>> print(converted.source)  # doctest: +SKIP
    """
    from . import api

    spec, source = _normalised(module, _spec(module, name or _snake(type(module).__name__)))
    result = api.compile(source, name=f"{spec.name}.fusion")
    compiled = result.module_class()(dtype=dtype or _dtype(module))
    _carry_weights(module, compiled, result.diagram(), spec)
    return Conversion(source, compiled, result)


def fusion_source(module: Any, *, name: str | None = None) -> str:
    """Only the ``.fusion`` source of :func:`from_e3nn` (nothing is compiled).

    >>> from e3nn import o3  # doctest: +SKIP
    >>> print(fusion_source(o3.Linear("4x0e + 2x1o", "3x0e + 1o")))  # doctest: +SKIP
    """
    return _normalised(module, _spec(module, name or _snake(type(module).__name__)))[1]


# -- reading the e3nn module -----------------------------------------------------------------------

def _spec(module: Any, name: str) -> _Spec:
    kind = type(module).__name__
    if kind == "TensorSquare":
        return _square_spec(module, name)
    if hasattr(type(module), "KEPT_PATHS"):  # a compiled module has e3nn's attributes too
        raise E3nnConversionError("a fusionlang module", "it is compiled from .fusion source already "
                                  "(its class's module holds the generated code)")
    if all(hasattr(module, a) for a in ("irreps_in1", "irreps_in2", "irreps_out", "instructions")):
        return _tensor_product_spec(module, name)
    if all(hasattr(module, a) for a in ("irreps_in", "irreps_out", "instructions")):
        return _linear_spec(module, name)
    raise E3nnConversionError(f"module type {type(module).__module__}.{kind}", "from_e3nn takes an e3nn "
                              "o3.TensorProduct (or a subclass: FullyConnectedTensorProduct, FullTensorProduct, ...) "
                              "or o3.Linear")


def _tensor_product_spec(tp: Any, name: str) -> _Spec:
    instructions = list(tp.instructions)
    channels, weighted = _channels(instructions)
    keys = _unique_keys([(ins.i_in1, ins.i_in2, ins.i_out) for ins in instructions])
    _check_outputs_written(tp.irreps_out, {key[-1] for key in keys})
    legs = (("input", "x", _irreps_text(tp.irreps_in1, "irreps_in1")),
            ("input", "y", _irreps_text(tp.irreps_in2, "irreps_in2")),
            ("output", "z", _irreps_text(tp.irreps_out, "irreps_out")))
    options = (f"channels = {channels}", f"weights = {_weights_mode(tp, weighted, 'channel')}")
    return _Spec(name, "tensor_product", type(tp).__name__, legs, "x, y -> z", options, frozenset(keys))


def _square_spec(square: Any, name: str) -> _Spec:
    """e3nn's TensorSquare without ``irreps_out``: ``x, x -> z  [pairing = unordered]``."""
    instructions = list(square.instructions)
    if any(bool(ins.has_weight) for ins in instructions):
        return _weighted_square_spec(square, name)
    keys = _unique_keys([(ins.i_in1, ins.i_in2, ins.i_out) for ins in instructions])
    legs = (("input", "x", _irreps_text(square.irreps_in, "irreps_in")),
            ("output", "z", _irreps_text(square.irreps_out, "irreps_out")))
    return _Spec(name, "tensor_square", type(square).__name__, legs, "x, x -> z",
                 ("pairing = unordered", "weights = none"), frozenset(keys))


def _weighted_square_spec(square: Any, name: str) -> _Spec:
    """e3nn's TensorSquare with ``irreps_out`` (modes ``uvw`` for entries i < j, ``u<vw`` and ``uuw``
    for i = j): ``x, x -> z  [weights = channel]``, whose path (i, j) and (j, i) blocks carry them."""
    if not bool(square.internal_weights):
        raise E3nnConversionError("TensorSquare with external weights", "its weights are laid out by unordered "
                                  "pairs; `x, x -> z` takes a block per ordered pair: build it with internal weights")
    entries = [(int(mul), ir) for mul, ir in square.irreps_in]
    if all(mul == 1 for mul, _ in entries):
        raise E3nnConversionError("TensorSquare with irreps_out on multiplicity-1 irreps", "`x, x -> z` then keeps "
                                  "weights in a reduced symmetric basis, which this converter does not map onto")
    _check_outputs_written(square.irreps_out, {int(ins.i_out) for ins in square.instructions})
    keys = {(i, j, k) for i, (_, a) in enumerate(entries) for j, (_, b) in enumerate(entries)
            for k, (_, c) in enumerate(square.irreps_out) if c in a * b}
    legs = (("input", "x", _irreps_text(square.irreps_in, "irreps_in")),
            ("output", "z", _irreps_text(square.irreps_out, "irreps_out")))
    return _Spec(name, "weighted_square", type(square).__name__, legs, "x, x -> z",
                 ("channels = uvw", "weights = channel"), frozenset(keys))


def _linear_spec(linear: Any, name: str) -> _Spec:
    if int(getattr(linear, "bias_numel", 0)):
        raise E3nnConversionError("biases", "a .fusion linear map has none; build the e3nn Linear with "
                                  "biases=False and add the bias outside")
    weight = getattr(linear, "weight", None)
    if getattr(weight, "dim", lambda: 1)() > 1:
        raise E3nnConversionError("f_in/f_out", "e3nn's extra feature axes of Linear weights have no "
                                  ".fusion counterpart")
    keys = _unique_keys([(ins.i_in, ins.i_out) for ins in linear.instructions if ins.i_in >= 0])
    _check_outputs_written(linear.irreps_out, {key[-1] for key in keys})
    legs = (("input", "x", _irreps_text(linear.irreps_in, "irreps_in")),
            ("output", "y", _irreps_text(linear.irreps_out, "irreps_out")))
    options = (f"weights = {_weights_mode(linear, True, 'path')}",)
    return _Spec(name, "linear", type(linear).__name__, legs, "x -> y", options, frozenset(keys))


def _channels(instructions: Sequence[Any]) -> tuple[str, bool]:
    """The one channel mode and weightedness of every instruction (a statement has one)."""
    modes = sorted({str(ins.connection_mode) for ins in instructions})
    weights = {bool(ins.has_weight) for ins in instructions}
    if not instructions:
        raise E3nnConversionError("no instructions", "the e3nn module computes zero; a statement needs paths")
    unknown = [m for m in modes if m not in _MODES]
    if unknown:
        raise E3nnConversionError(f"connection mode `{unknown[0]}`", "statements have channels uvw (e3nn's "
                                  "`uvw`, and `uvuv` without weights), uvu or uuu")
    if len(modes) > 1 or len(weights) > 1:
        found = [f"modes {', '.join(modes)}"] * (len(modes) > 1)
        found += ["paths with and without weights"] * (len(weights) > 1)
        raise E3nnConversionError("mixed instructions", f"{' and '.join(found)}; one statement has one channel mode "
                                  "and weights on all of its paths or none")
    channels, needs = _MODES[modes[0]]
    weighted = weights.pop()
    if needs is not None and needs != weighted:
        raise E3nnConversionError(f"`{modes[0]}` {'with' if weighted else 'without'} weights",
                                  "`channels = uvw` is e3nn's `uvw` with weights and `uvuv` without")
    return channels, weighted


def _weights_mode(module: Any, weighted: bool, internal: str) -> str:
    """``none``, ``external`` (``shared_weights=False``) or the internal mode; e3nn's shared
    external weights (one ``[weight_numel]`` for every sample) have no counterpart."""
    if not weighted:
        return "none"
    if not bool(module.shared_weights):
        return "external"
    if not bool(module.internal_weights):
        raise E3nnConversionError("shared external weights", "`weights = external` takes weights per sample "
                                  "`[..., numel]`; build the e3nn module with internal weights or shared_weights=False")
    return internal


def _unique_keys(keys: list[Key]) -> list[Key]:
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise E3nnConversionError("repeated instructions", f"{repeated} appear more than once; a statement has "
                                  "one path per entry pair and output entry")
    return keys


def _check_outputs_written(irreps_out: Any, written: set[int]) -> None:
    unwritten = sorted(set(range(len(irreps_out))) - written)
    if unwritten:
        raise E3nnConversionError("output entries without instructions", f"e3nn returns zeros in entries "
                                  f"{unwritten} of {irreps_out}; every declared output entry needs a path")


def _irreps_text(irreps: Any, what: str) -> str:
    """e3nn's irreps in fusionlang's canonical spelling (entries kept one for one, in order)."""
    entries = [(int(mul), (int(ir.l), int(ir.p))) for mul, ir in irreps]
    if not entries or any(mul == 0 for mul, _ in entries):
        raise E3nnConversionError(f"{what} = {irreps}", "empty irreps and multiplicity 0 have no .fusion spelling")
    return str(Irreps(entries))


def _snake(name: str) -> str:
    """``FullyConnectedTensorProduct`` → ``fully_connected_tensor_product``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "e3nn_module"


def _dtype(module: Any) -> torch.dtype:
    """The e3nn module's floating dtype (its weights, else its buffers), else torch's default."""
    import torch

    tensors = [*module.parameters(), *module.buffers()]
    return next((t.dtype for t in tensors if t.is_floating_point() and t.numel()), torch.get_default_dtype())


# -- the source --------------------------------------------------------------------------------------

def _choose_source(spec: _Spec) -> str:
    """The source whose statement's paths are exactly e3nn's instructions: ``paths = sum`` (every
    admissible entry triple, e3nn's fully connected layout) or, for a tensor product, ``paths =
    split`` (one output entry per path, sorted: ``FullTensorProduct``'s layout); otherwise
    ``paths = sum`` with ``only = {...}`` listing the instructions (an instruction subset)."""
    problems = []
    for paths in _layouts(spec):
        text = _text(spec, paths)
        found = _paths_of(text)
        if found == spec.keys:
            return text
        layout = "pairing = elementwise" if paths == "elementwise" else f"paths = {paths}"
        problems.append(f"with `{layout}`, {_mismatch(found, spec.keys)}")
    text = _text(spec, "sum", only=True)
    found = _paths_of(text)
    if found == spec.keys:
        return text
    problems.append(f"with `only`, {_mismatch(found, spec.keys)}")
    raise E3nnConversionError("instruction subset", "e3nn's instructions are not the paths of one statement: "
                              + "; ".join(problems))


def _layouts(spec: _Spec) -> tuple[str, ...]:
    """``paths = sum``, ``paths = split`` and, for ``uuu``, ``pairing = elementwise`` (e3nn's
    ElementwiseTensorProduct: aligned entries only, one output entry per path in pair order)."""
    if spec.kind != "tensor_product":
        return ("sum",)
    if "channels = uuu" not in spec.options:
        return ("sum", "split")
    if spec.origin == "ElementwiseTensorProduct":
        return ("elementwise", "sum", "split")
    return ("sum", "split", "elementwise")


def _text(spec: _Spec, paths: str, only: bool = False) -> str:
    """The diagram, canonically formatted; with ``only``, its statement keeps just e3nn's
    instructions (an instruction subset)."""
    from .fmt import format_source

    options = [*spec.options, *(["paths = split"] if paths == "split" else [])]
    if paths == "elementwise":
        options = ["pairing = elementwise", *(o for o in spec.options if o != "channels = uuu")]
    if only:
        listed = ", ".join(" ".join(map(str, key[:-1])) + f" -> {key[-1]}" for key in sorted(spec.keys))
        options.append(f"only = {{{listed}}}")
    lines = [f"# {spec.origin} from e3nn (fusionlang.from_e3nn)", f"diagram {spec.name} {{", "group O3",
             *(f"{role} {name} : {irreps}" for role, name, irreps in spec.legs),
             f"{spec.statement}  [{', '.join(options)}]", "}"]
    return format_source("\n".join(lines) + "\n")


def _paths_of(text: str) -> frozenset[Key] | str:
    """The statement's paths as e3nn keys, or the first diagnostic when the source is refused."""
    result = check_source(text)
    if not result.ok:
        first = result.diagnostics[0]
        return f"error[{first.code}]: {first.message}" + (f" ({first.hint})" if first.hint else "")
    (statement,) = result.diagram().statements
    return frozenset((*path.leaves, path.output) for path in statement.paths)


def _mismatch(found: frozenset[Key] | str, wanted: frozenset[Key]) -> str:
    if isinstance(found, str):
        return f"the source is refused: {found}"
    extra, missing = sorted(found - wanted), sorted(wanted - found)
    parts = ([f"the statement also couples {_few(extra)}"] if extra else []) + \
            ([f"it has no path {_few(missing)}"] if missing else [])
    return " and ".join(parts)


def _few(keys: list[Key], most: int = 6) -> str:
    shown = ", ".join(str(k) for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


# -- the normalisation -------------------------------------------------------------------------------

def _normalised(module: Any, spec: _Spec) -> tuple[_Spec, str]:
    """The spec and source whose normalisation options give e3nn's ``path_weight`` on every path
    (e3nn keeps no record of ``irrep_normalization`` and ``path_normalization``, only their
    result). The defaults are tried first; when nothing matches (``in1_var``, ``out_var``, a
    ``path_weight`` of one's own), the defaults are kept and :func:`_carry_weights` folds the factor
    into internal weights or refuses."""
    theirs = {_key(ins): _coefficient(ins) for ins in module.instructions if _key(ins)[0] >= 0}
    source = _choose_source(spec)
    for extra in _normalisation_options(spec):
        candidate = replace(spec, options=spec.options + extra)
        text = source if not extra else _choose_source(candidate)
        if _coefficients_match(theirs, text):
            return candidate, text
    return spec, source


def _normalisation_options(spec: _Spec) -> Iterator[tuple[str, ...]]:
    """Every choice of the two options, the defaults first (a linear map has no irrep_normalization)."""
    if spec.kind == "weighted_square":  # its weights absorb any normalisation
        yield ()
        return
    irreps = IRREP_NORMALIZATIONS if spec.kind != "linear" else IRREP_NORMALIZATIONS[:1]
    for irrep in irreps:
        for path in PATH_NORMALIZATIONS:
            yield ((f"irrep_normalization = {irrep}",) * (irrep != "component")
                   + (f"path_normalization = {path}",) * (path != "element"))


def _coefficients_match(theirs: dict[Key, float], text: str) -> bool:
    ours = {_key(ins): _coefficient(ins) for ins in e3nn_instructions(check_source(text).diagram())}
    return all(math.isclose(value, ours[key], rel_tol=1e-9) for key, value in theirs.items())


# -- the weights -------------------------------------------------------------------------------------

def _carry_weights(e3nn_module: Any, compiled: Any, diagram: ir.Diagram, spec: _Spec) -> None:
    """Copy internal weights; check that unweighted paths and external weights need no change."""
    from .importers import load_e3nn_weights

    if spec.kind == "weighted_square":
        _carry_square_weights(e3nn_module, compiled, diagram)
        return
    theirs = {_key(ins): ins for ins in e3nn_module.instructions if _key(ins)[0] >= 0}
    ours = {_key(ins): ins for ins in e3nn_instructions(diagram)}
    if "weights = none" in spec.options:
        _check_coefficients(theirs, ours, "an unweighted statement cannot absorb it")
    elif "weights = external" in spec.options:
        _check_external_layout(list(theirs), ours)
        _check_coefficients(theirs, ours, "external weights would need rescaling by the caller")
    else:
        try:
            load_e3nn_weights(compiled, e3nn_module, diagram=diagram)
        except ValueError as failure:
            raise E3nnConversionError("weights", str(failure)) from failure


def _carry_square_weights(square: Any, compiled: Any, diagram: ir.Diagram) -> None:
    """TensorSquare's weights onto ``x, x -> z  [weights = channel]``: an instruction (i, j, k) of
    mode ``uvw`` fills the block of path (i, j) → k, ``u<vw`` its entries u < v and ``uuw`` its
    diagonal; the paths (j, i) with j > i keep zeros. Each is rescaled by the ratio of e3nn's
    ``path_weight`` to our path's coefficient."""
    import torch

    from .importers import _our_coefficient, statement_parameter

    (statement,) = diagram.statements
    blocks = {(p.leaves, p.output): torch.zeros(*(diagram.irreps("x")[e].mul for e in p.leaves),
                                                diagram.irreps("z")[p.output].mul, dtype=torch.float64)
              for p in statement.paths}
    by_key = {(p.leaves, p.output): p for p in statement.paths}
    for _, ins, view in square.weight_views(yield_instruction=True):
        key = ((int(ins.i_in1), int(ins.i_in2)), int(ins.i_out))
        value = view.detach().to(torch.float64) * (ins.path_weight / _our_coefficient(diagram, statement,
                                                                                       by_key[key]))
        block, mul = blocks[key], blocks[key].shape[0]
        if ins.connection_mode == "uvw":
            block += value
        elif ins.connection_mode == "u<vw":
            u, v = torch.triu_indices(mul, mul, 1)
            block[u, v] += value
        else:  # uuw
            block[torch.arange(mul), torch.arange(mul)] += value
    flat = torch.cat([blocks[(p.leaves, p.output)].reshape(-1) for p in statement.paths])
    parameter = statement_parameter(compiled, statement.index)
    with torch.no_grad():
        parameter.copy_(flat.reshape(parameter.shape).to(parameter.dtype))


def _key(instruction: Any) -> Key:
    """``(i_in1, i_in2, i_out)`` of a tensor product's instruction, ``(i_in, i_out)`` of a Linear's
    (e3nn's named tuples, or the plain tuples of :func:`fusionlang.codegen.e3nn_instructions`)."""
    if hasattr(instruction, "i_in1"):
        return (int(instruction.i_in1), int(instruction.i_in2), int(instruction.i_out))
    if hasattr(instruction, "i_in"):
        return (int(instruction.i_in), int(instruction.i_out))
    return tuple(instruction[:2] if len(instruction) == 4 else instruction[:3])


def _coefficient(instruction: Any) -> float:
    if hasattr(instruction, "path_weight"):
        return float(instruction.path_weight)
    return float(instruction[3] if len(instruction) == 4 else instruction[5])


def _check_coefficients(theirs: dict[Key, Any], ours: dict[Key, Any], why: str) -> None:
    for key, ins in theirs.items():
        ratio = _coefficient(ins) / _coefficient(ours[key])
        if not math.isclose(ratio, 1.0, rel_tol=1e-9):
            raise E3nnConversionError("normalisation", f"e3nn scales path {key} by {ratio:.6g} times fusionlang's "
                                      "normalisation (irrep_normalization, path_normalization, in*_var/out_var "
                                      f"or path weights other than e3nn's defaults); {why}")


def _check_external_layout(theirs: list[Key], ours: dict[Key, Any]) -> None:
    """e3nn's external weights feed the module unchanged only in fusionlang's path order."""
    order = list(ours)
    if theirs != order:
        raise E3nnConversionError("instruction order", f"e3nn's weights follow its instructions {_few(theirs)}, "
                                  f"fusionlang's external weights the paths {_few(order)}; list the instructions "
                                  "in that order (e3nn's own constructors do)")


# -- `fusionc from-e3nn` -------------------------------------------------------------------------------

def command(path: str, output: str | None = None, state: str | None = None) -> int:
    """``fusionc from-e3nn MODULE.pt``: print (or write to ``output``) the source of an e3nn
    module saved whole with ``torch.save``, and with ``state`` save the converted module's
    ``state_dict``. The file is unpickled (``weights_only=False``): load only files you trust."""
    import sys
    from pathlib import Path

    import torch

    from .cli_io import write_atomically
    from .diagnostics import Diagnostic, FusionError

    try:
        module = torch.load(path, weights_only=False, map_location="cpu")
    except (OSError, ImportError, RuntimeError, EOFError, ValueError) as failure:
        raise FusionError([Diagnostic("E901", f"cannot load `{path}`: {type(failure).__name__}: {failure}",
                                      hint="save the e3nn module itself: torch.save(tp, path)")]) from None
    try:
        converted = from_e3nn(module)
    except E3nnConversionError as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    if output in (None, "-"):
        sys.stdout.write(converted.source)
    else:
        write_atomically(Path(output), converted.source)
    if state is not None:
        torch.save(converted.module.state_dict(), state)
    return 0
