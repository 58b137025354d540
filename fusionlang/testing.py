"""Test helpers for fusionlang users and for fusionlang's own tests.

* :func:`random_rotation`, :func:`rotate` and :func:`representation` (from
  :mod:`fusionlang.rotations`): random group elements and how they act on features in the
  ``mul_ir`` layout, block by block or as a dense block-diagonal matrix;
* :func:`assert_equivariant` and :func:`assert_module_equivariant` (from
  :mod:`fusionlang.equivariance`): rotate the inputs, rotate the outputs, compare;
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
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import ir
from .equivariance import (
    assert_equivariant,
    assert_module_equivariant,
    cast_module,
    default_tolerance,
    equivariance_error,
    graph_arguments,
    graph_equivariance_error,
    module_arguments,
    module_weight_numel,
    random_features,
    random_graph,
    rotation_group,
)
from .frontend import check_source
from .groups import SU2, Group, GroupLike, Irrep, Irreps, MulIrrep, as_group
from .path_tensors import path_coupling
from .rotations import (
    GroupElement,
    feature_dtype,
    irrep_matrix,
    random_rotation,
    real_dtype,
    representation,
    rotate,
)
from .weights import (
    path_fan_in,
    path_normalisers,
    path_weight_shape,
    split_weights,
    unordered_channels,
    weight_letters,
    weight_numel,
)

__all__ = [
    "GroupElement", "assert_equivariant", "assert_module_equivariant", "cast_module", "default_tolerance",
    "equivariance_error", "feature_dtype", "graph_arguments", "graph_equivariance_error", "irrep_matrix",
    "iter_random_diagrams", "module_arguments", "module_weight_numel", "path_coupling", "path_fan_in",
    "path_weight_shape", "random_diagram", "random_features", "random_graph", "random_rotation", "random_weights",
    "real_dtype", "reference_forward", "representation", "rotate", "rotation_group", "split_weights", "torch_threads",
    "weight_numel",
]

Output = torch.Tensor | tuple[torch.Tensor, ...]


# -- weights -------------------------------------------------------------------------------------------

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


# -- the reference contraction ----------------------------------------------------------------------

_COMPONENT_LETTERS = "abcdefghijkl"
_CHANNEL_LETTERS = "mnopqrstuvwx"


def _path_spec(statement: ir.Statement, weighted: bool, external: bool) -> str:
    """The einsum of one path: leaf features, the coupling, the weights → ``[..., channel, k]``."""
    n = statement.arity
    comps = _COMPONENT_LETTERS[:n]
    chans = _CHANNEL_LETTERS[0] * n if statement.channels == "uuu" else _CHANNEL_LETTERS[:n]
    leaves = [f"...{u}{i}" for u, i in zip(chans, comps, strict=True)]
    out_channel = {"uvw": "y" if weighted else chans, "uvu": chans[0], "uuu": chans[0]}[statement.channels]
    operands = leaves + [comps + "z"]
    if weighted:
        operands.append(("..." if external else "") + weight_letters(statement, chans, "y"))
    return ",".join(operands) + f"->...{out_channel}z"


def _path_term(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path,
               values: Mapping[str, torch.Tensor], weight: torch.Tensor | None,
               slices: Mapping[str, tuple[slice, ...]]) -> torch.Tensor:
    """One path's contribution ``[..., m_out, dim]`` before the 1/sqrt(fan_in) factor
    (``slices``: every leg's ``irreps.slices()``, found once: thousands of paths read them)."""
    features = []
    for ref, entry in zip(statement.leaves, path.leaves, strict=True):
        item, where = diagram.irreps(ref.leg)[entry], slices[ref.leg][entry]
        x = values[ref.leg]
        features.append(x[..., where].reshape(*x.shape[:-1], item.mul, item.irrep.dim))
    dtype = features[0].dtype
    operands = features + [path_coupling(diagram, statement, path).to(dtype)]
    if weight is not None:
        operands.append(weight.to(dtype))
    spec = _path_spec(statement, weight is not None, statement.weights == "external")
    term = torch.einsum(spec, *operands)   # (opt_einsum is off: see reference_forward)
    if not (statement.channels == "uvw" and weight is None):
        return term
    flat = term.reshape(*term.shape[:-statement.arity - 1], -1, term.shape[-1])
    if statement.pairing == "unordered" and path.leaves[0] == path.leaves[1]:
        return flat[..., unordered_channels(features[0].shape[-2], path.diagonal), :]
    return flat


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
                  weights: Mapping[int, torch.Tensor], batch: torch.Size, dtype: torch.dtype,
                  normalisers: Mapping[tuple[int, ir.Path], float],
                  slices: Mapping[str, tuple[slice, ...]]) -> torch.Tensor:
    """All paths of all writers of one leg, normalised and summed into its ``mul_ir`` layout."""
    irreps = diagram.irreps(name)
    entries = [torch.zeros(*batch, item.mul, item.irrep.dim, dtype=dtype) for item in irreps]
    for statement in diagram.writers(name):
        blocks = split_weights(diagram, statement, weights.get(statement.index))
        for path, block in zip(statement.paths, blocks, strict=True):
            term = _path_term(diagram, statement, path, values, block, slices)
            term = term / math.sqrt(normalisers[(statement.index, path)])
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
    normalisers = path_normalisers(diagram)
    slices = {leg.name: diagram.irreps(leg.name).slices() for leg in diagram.legs}
    # The operands of a path are tiny: opt_einsum's search for a contraction order would cost far more.
    with torch.backends.opt_einsum.flags(enabled=False):
        for name in _evaluation_order(diagram):
            values[name] = _evaluate_leg(diagram, name, values, weights, batch, dtype, normalisers, slices)
    results = tuple(values[leg.name] for leg in diagram.outputs)
    return results[0] if len(results) == 1 else results


def _common_dtype(group: Group, inputs: Sequence[torch.Tensor]) -> torch.dtype:
    dtype = inputs[0].dtype
    for x in inputs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return feature_dtype(group, dtype)


# -- random diagrams ------------------------------------------------------------------------------------

_IRREP_POOLS = {
    "SU2": [Irrep(two_j=two_j, parity=0, group=SU2) for two_j in range(4)],
    "SO3": [Irrep(two_j=2 * l, parity=0, group="SO3") for l in range(3)],
    "O3": [Irrep(two_j=2 * l, parity=p, group="O3") for l in range(3) for p in (1, -1)],
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
    result = module(*inputs)
    outputs = (result,) if isinstance(result, torch.Tensor) else tuple(result)
    names = [leg.name for leg in diagram.outputs]
    value = outputs[names.index(output) if output is not None else 0]
    return value.reshape(*dims, value.shape[-1])


def glue(first: torch.Tensor, second: torch.Tensor) -> complex:
    """Close two networks with the same open legs into a number: ``Σ first · conj(second)``.

    Two fusion trees of the same spins glued together form a closed diagram (a tetrahedron when
    the trees fuse in different orders), whose value is a recoupling coefficient (a 6j symbol)
    times the dimension of the total spin."""
    return complex((first * second.conj()).sum())


# -- peers -----------------------------------------------------------------------------------------

def default_dtype(dtype: torch.dtype) -> contextlib.AbstractContextManager[None]:
    """Temporarily change torch's default dtype, e.g. to build e3nn modules whose ``wigner_3j``
    buffers are made in the default dtype (``.double()`` would only cast float32 values up).

    >>> with default_dtype(torch.float64):
    ...     torch.zeros(1).dtype
    torch.float64
    """
    return _torch_setting(torch.get_default_dtype, torch.set_default_dtype, dtype)


def torch_threads(count: int) -> contextlib.AbstractContextManager[None]:
    """torch's intra-op threads set to ``count`` within it (a compiled module's CPU path reads it
    when the module is built: ``runtime.traced_batch``).

    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    """
    return _torch_setting(torch.get_num_threads, torch.set_num_threads, count)


@contextlib.contextmanager
def _torch_setting(get: Callable[[], Any], put: Callable[[Any], None], value: Any) -> Iterator[None]:
    """torch's global setting ``put(value)`` within it, the previous ``get()`` restored after."""
    previous = get()
    put(value)
    try:
        yield
    finally:
        put(previous)


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
