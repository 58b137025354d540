"""A MACE interatomic potential assembled from compiled fusion diagrams.

The model follows MACE (Batatia et al. 2022; mace-torch's ``ScaleShiftMACE`` with
``RealAgnosticResidualInteractionBlock``) with every equivariant operation compiled from a
``.fusion`` diagram::

    h⁰ = embedding(species)                                              channels x 0e
    per layer t:
      s  = skip(h, species)                                                mace_skip (per-species linear)
      A  = linear(Σ_{j→i} R(|r_ij|) · up(h)_j ⊗ Y(r_ij)) / avg_num_neighbors  mace_linear, mace_interaction
      B  = linear(A + A⊗A + A⊗A⊗A (per-species weights) [+ fusion block]) + s   mace_product_basis
      h  = B;   e_t = readout_t(B⁰ᵉ)   (linear; the last layer: linear, SiLU, linear)
    E_i = E0[species_i] + scale · Σ_t e_t + shift;   E = Σ_i E_i;   F = -∂E/∂pos

with ``r_ij = pos[sender] - pos[receiver]`` (translation invariant by construction), ``Y`` the real
spherical harmonics (:class:`fusionlang.spherical.SphericalHarmonics`) and ``R`` a radial MLP
(MACE's sizes by default: three hidden layers of 64, no biases) over a Bessel basis times a smooth
polynomial cutoff, which gives the per-edge weights of the interaction (external weights). With
``fusion_block=True`` the product basis also fuses the centre's features with the messages of every
pair of distinct neighbours (``h, neighbours(m), neighbours(m) -> B``, as ``mace_fusion_block`` in
examples/fusion_block.fusion). Data live in :mod:`fusionlang.atoms`, training in
:mod:`fusionlang.training`.

>>> from fusionlang.atoms import collate
>>> from fusionlang.toydata import make_dataset
>>> data = make_dataset(4, seed=0)
>>> model = MacePotential(MaceConfig(channels=4, lmax=1, interactions=1, radial_mlp=(8,)), dtype=torch.float64)
>>> energy, forces = model.energy_and_forces(collate(data))
>>> energy.shape, forces.shape == collate(data).forces.shape
(torch.Size([4]), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from string import Template
from typing import Any

import torch

from . import api
from .atoms import Batch, Statistics
from .groups import O3, Irreps
from .metrics import parameter_count
from .spherical import SphericalHarmonics, irreps_text

__all__ = [
    "MaceBody", "MaceConfig", "MacePotential", "interaction_source", "linear_source", "match_parameters",
    "parameter_count", "potential_from_state", "potential_state", "product_basis_source", "skip_source",
]

# -- the diagrams ----------------------------------------------------------------------------------
# Embedded rather than read from examples/ because a wheel does not ship examples/. They are kept
# consistent with examples/mace.fusion (`mace_interaction`, `mace_product_basis`: the same text with
# the sizes as parameters) and with the fusion statements of `mace_fusion_block` in
# examples/fusion_block.fusion; tests/test_models.py compiles both at the examples' sizes and checks
# that they give the same diagrams. Change them together.

INTERACTION = Template("""\
diagram mace_interaction {
    group O3
    input  h : $hidden  [on = nodes]
    input  Y : $harmonics  [on = edges]
    output A : lmax $lmax  [on = nodes]
    sender(h), Y -> A  [channels = uvu, weights = external, paths = split, aggregate = sum]
}
""")

# MACE's linear map after the convolution: every path's entry (`irreps_mid`) to the density's irreps.
LINEAR = Template("""\
diagram mace_linear {
    group O3
    input  x : $source
    output y : $target
    x -> y  [channels = uvw, weights = channel]
}
""")

# MACE's residual skip connection: a per-species linear map of the layer's input to its output
# (mace-torch: a fully connected tensor product of the features with the one-hot species).
SKIP = Template("""\
diagram mace_skip {
    group O3
    input  h : $source
    index  species : $species
    output s : $target
    h -> s  [channels = uvw, weights = channel, per = species]
}
""")

PRODUCT_BASIS = Template("""\
diagram mace_product_basis {
    group O3
    input  A : $density  [on = nodes]
${fusion_legs}    index  species : $species
${fusion_edges}    output B : $target
    A -> B        [channels = uuu, weights = channel, per = species]
    A, A -> B     [channels = uuu, weights = channel, per = species]
    A, A, A -> B  [channels = uuu, weights = channel, per = species]
${fusion_statements}}
""")

FUSION_LEGS = Template("""\
    input  h : $hidden  [on = nodes]
    input  Y : $harmonics  [on = edges]
""")
FUSION_EDGES = Template("""\
    edge   m : $messages  [on = edges]
""")
FUSION_STATEMENTS = """\
    sender(h), Y -> m                     [channels = uvu, weights = external]
    h, neighbours(m), neighbours(m) -> B  [channels = uuu, weights = channel]
"""


def _irreps(channels: int, lmax: int) -> str:
    """``channels x (0e + 1o + ...)`` up to ``lmax`` (parity (-1)^l), as the examples write it."""
    return f"{channels}x0e" if lmax == 0 else f"{channels}x({irreps_text(lmax)})"


def interaction_source(hidden: str, lmax: int) -> str:
    """The ``mace_interaction`` diagram for node features ``hidden`` and harmonics up to ``lmax``.

    >>> print(interaction_source("16x(0e + 1o)", 3).splitlines()[3])
        input  Y : 0e + 1o + 2e + 3o  [on = edges]
    """
    return INTERACTION.substitute(hidden=hidden, harmonics=irreps_text(lmax), lmax=lmax)


def linear_source(source: str, target: str) -> str:
    """The ``mace_linear`` diagram: a channel-mixing linear map from ``source`` to ``target``."""
    return LINEAR.substitute(source=source, target=target)


def skip_source(source: str, target: str, species: int) -> str:
    """The ``mace_skip`` diagram: a per-species linear map from ``source`` to ``target``."""
    return SKIP.substitute(source=source, target=target, species=species)


def product_basis_source(density: str, target: str, species: int, *, hidden: str | None = None,
                         fusion_lmax: int = 2) -> str:
    """The ``mace_product_basis`` diagram (correlation 3, per-species weights). With ``hidden``
    (the node features' irreps) it also has the fusion block over pairs of distinct neighbours,
    whose messages ``m`` go up to spin ``fusion_lmax``.

    >>> "neighbours(m)" in product_basis_source("4x(0e + 1o)", "4x0e", 3, hidden="4x0e")
    True
    """
    parts = {"fusion_legs": "", "fusion_edges": "", "fusion_statements": ""}
    if hidden is not None:
        channels = Irreps(hidden, O3)[0].mul  # uuu: h, m and B share it
        parts = {
            "fusion_legs": FUSION_LEGS.substitute(hidden=hidden, harmonics=irreps_text(fusion_lmax)),
            "fusion_edges": FUSION_EDGES.substitute(messages=_irreps(channels, fusion_lmax)),
            "fusion_statements": FUSION_STATEMENTS,
        }
    return PRODUCT_BASIS.substitute(density=density, target=target, species=species, **parts)


# -- configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MaceConfig:
    """The sizes of a :class:`MacePotential` (MACE's structure, small defaults: trains on a CPU).

    ``lmax`` bounds the edge harmonics and the density ``A``; hidden node features between layers
    are ``channels x (0e + ... + hidden_lmax)``; the last layer's product basis outputs scalars.
    ``radial_mlp`` are the hidden widths of the radial network (MACE: 64, 64, 64); ``readout_hidden``
    the width of the last, non-linear readout (MACE: 16x0e); ``residual`` adds MACE's skip connection.
    """

    species: int = 3
    channels: int = 16
    lmax: int = 3
    hidden_lmax: int = 1
    interactions: int = 2
    r_max: float = 5.0
    bessel: int = 8
    cutoff_power: int = 5
    radial_mlp: tuple[int, ...] = (64, 64, 64)
    readout_hidden: int = 16
    residual: bool = True
    fusion_block: bool = False
    fusion_lmax: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "radial_mlp", tuple(int(w) for w in self.radial_mlp))  # lists from YAML/JSON
        if not 0 <= self.hidden_lmax <= self.lmax or self.interactions < 1:
            raise ValueError(f"need 0 <= hidden_lmax <= lmax and interactions >= 1, got {self}")
        if not self.radial_mlp or min(self.radial_mlp) < 1 or self.readout_hidden < 1 or self.channels < 1:
            raise ValueError(f"channels, radial_mlp widths and readout_hidden must be positive, got {self}")
        if self.fusion_block and self.fusion_lmax > self.lmax:
            raise ValueError(f"the fusion block's messages use the edge harmonics: fusion_lmax "
                             f"{self.fusion_lmax} must not exceed lmax {self.lmax}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MaceConfig:
        """A config from plain values (a YAML section), refusing unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


# -- radial functions ------------------------------------------------------------------------------

def polynomial_cutoff(x: torch.Tensor, p: int = 5) -> torch.Tensor:
    """The smooth envelope of DimeNet/MACE: 1 at ``x = 0``, 0 with ``p`` continuous derivatives at ``x = 1``.

    >>> polynomial_cutoff(torch.tensor([0.0, 1.0, 1.5])).tolist()
    [1.0, 0.0, 0.0]
    """
    envelope = (1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2))
    return torch.where(x < 1.0, envelope, torch.zeros_like(envelope))


class RadialBasis(torch.nn.Module):
    """MACE's Bessel functions ``sqrt(2 / r_max) sin(n π r / r_max) / r``, n = 1 .. count, times the
    cutoff, and times ``r_max`` so that they are of order one at typical bond lengths (unscaled, the
    densities ``A`` start at ~0.05 and the cubic terms of the product basis at ~1e-4)."""

    frequencies: torch.Tensor

    def __init__(self, r_max: float, count: int, power: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.r_max, self.power = r_max, power
        self.register_buffer("frequencies", torch.arange(1, count + 1, dtype=dtype) * (math.pi / r_max))

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        r = lengths[:, None]
        bessel = math.sqrt(2.0 * self.r_max) * torch.sin(self.frequencies * r) / r
        return bessel * polynomial_cutoff(r / self.r_max, self.power)


class RadialMLP(torch.nn.Module):
    """A bias-free MLP with SiLU: zero at the cutoff stays zero, so energies stay smooth there."""

    def __init__(self, sizes: Sequence[int], dtype: torch.dtype | None = None) -> None:
        super().__init__()
        layers = [torch.nn.Linear(a, b, bias=False, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        for layer in layers:
            torch.nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for number, layer in enumerate(self.layers):
            x = layer(x)
            if number < len(self.layers) - 1:
                x = 1.679 * torch.nn.functional.silu(x)  # keeps unit second moment (e3nn's normalize2mom)
        return x


# -- the model -------------------------------------------------------------------------------------

def _external_weights(module: torch.nn.Module) -> tuple[tuple[str, int], ...]:
    """(argument, numel) of every external weight a compiled graph module's ``forward`` takes."""
    legs = {leg.name for leg in type(module).__fusion_diagram__.legs}  # type: ignore[attr-defined]
    signature = type(module).SIGNATURE  # type: ignore[attr-defined]
    return tuple((name, size) for name, kind, size in signature if kind in ("nodes", "edges") and name not in legs)


def _call(module: torch.nn.Module, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Call a compiled graph module with its arguments picked by name from ``SIGNATURE``."""
    return module(*(values[name] for name, _, _ in type(module).SIGNATURE))  # type: ignore[attr-defined]


def _compiled(source: str, name: str, dtype: torch.dtype) -> torch.nn.Module:
    """The module of the only diagram in ``source``, built at ``dtype``."""
    return api.compile(source, name=f"{name}.fusion").module_class()(dtype=dtype)


class Readout(torch.nn.Module):
    """Per-atom energies ``[N, outputs]`` from the scalars: linear, or (the last layer, as MACE)
    linear, SiLU, linear. A potential has one output; a multi-state model one per state."""

    def __init__(self, channels: int, hidden: int | None, dtype: torch.dtype, outputs: int = 1) -> None:
        super().__init__()
        sizes = [channels, outputs] if hidden is None else [channels, hidden, outputs]
        self.outputs = outputs
        self.mlp = RadialMLP(sizes, dtype)  # bias-free linear maps with normalised SiLU between them

    def forward(self, scalars: torch.Tensor) -> torch.Tensor:
        return self.mlp(scalars)


class MaceLayer(torch.nn.Module):
    """One MACE layer: skip, linear up, interaction, linear, product basis, linear, and its readout."""

    def __init__(self, config: MaceConfig, hidden_lmax: int, target_lmax: int, last: bool, dtype: torch.dtype,
                 outputs: int = 1) -> None:
        super().__init__()
        c = config
        hidden, density, target = (_irreps(c.channels, lmax) for lmax in (hidden_lmax, c.lmax, target_lmax))
        self.up = _compiled(linear_source(hidden, hidden), "mace_linear_up", dtype)
        interaction = api.compile(interaction_source(hidden, c.lmax), name="mace_interaction.fusion")
        middle = str(interaction.diagram("mace_interaction").irreps("A"))
        self.interaction = interaction.module_class("mace_interaction")(dtype=dtype)
        self.linear = _compiled(linear_source(middle, density), "mace_linear", dtype)
        product = product_basis_source(density, target, c.species,
                                       hidden=hidden if c.fusion_block else None, fusion_lmax=c.fusion_lmax)
        self.product = _compiled(product, "mace_product_basis", dtype)
        self.product_linear = _compiled(linear_source(target, target), "mace_linear_product", dtype)
        # The skip maps the irreps the input and output share (the first layer's input is scalars).
        shared = _irreps(c.channels, min(hidden_lmax, target_lmax))
        self.skip = _compiled(skip_source(hidden, shared, c.species), "mace_skip", dtype) if c.residual else None
        self.fusion_dim, self.channels = (c.fusion_lmax + 1) ** 2, c.channels
        self.weights = _external_weights(self.interaction) + _external_weights(self.product)
        self.radial = RadialMLP([c.bessel, *c.radial_mlp, sum(n for _, n in self.weights)], dtype)
        self.readout = Readout(c.channels, c.readout_hidden if last else None, dtype, outputs)

    def forward(self, h: torch.Tensor, harmonics: torch.Tensor, radial: torch.Tensor, edge_index: torch.Tensor,
                species: torch.Tensor, inverse_neighbours: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(the next node features ``B``, the per-atom energy contributions ``[N, outputs]``)."""
        weights = self.radial(radial) * inverse_neighbours
        names, sizes = zip(*self.weights, strict=True)
        values = dict(zip(names, weights.split(list(sizes), -1), strict=True))
        up = self.up(h)
        A = self.linear(_call(self.interaction, {**values, "h": up, "Y": harmonics, "edge_index": edge_index}))
        B = _call(self.product, {**values, "A": A, "h": up, "Y": harmonics[:, :self.fusion_dim],
                                 "edge_index": edge_index, "species": species})
        B = self.product_linear(B)
        if self.skip is not None:
            s = self.skip(h, species)
            B = torch.cat([B[:, :s.shape[1]] + s, B[:, s.shape[1]:]], dim=1)
        return B, self.readout(B[:, :self.channels])  # the scalars lead B's layout


class MaceBody(torch.nn.Module):
    """The layers MACE models share: embedding, edge harmonics, radial basis and interaction layers,
    and the data set constants. :meth:`features` gives the last layer's node features and the
    per-atom readouts summed over the layers; :class:`MacePotential` reads one energy from them,
    :class:`fusionlang.multistate.MultiStatePotential` one per state and a coupling vector.

    ``outputs`` is the width of every readout; ``last_lmax`` the spin the last layer's features go
    up to (0 for energies alone; 1 for a vector readout)."""

    atomic_energies: torch.Tensor

    def __init__(self, config: MaceConfig, statistics: Statistics, dtype: torch.dtype, *, outputs: int = 1,
                 last_lmax: int = 0) -> None:
        super().__init__()
        self.config, self.statistics = config, statistics
        self.embedding = torch.nn.Embedding(config.species, config.channels, dtype=dtype)
        self.harmonics = SphericalHarmonics(config.lmax)
        self.radial_basis = RadialBasis(config.r_max, config.bessel, config.cutoff_power, dtype)
        lmaxes = [0] + [config.hidden_lmax] * (config.interactions - 1) + [last_lmax]
        self.layers = torch.nn.ModuleList(
            MaceLayer(config, lmaxes[t], lmaxes[t + 1], t == config.interactions - 1, dtype, outputs)
            for t in range(config.interactions))
        energies = statistics.atomic_energies or (0.0,) * config.species
        if len(energies) != config.species:
            raise ValueError(f"{len(energies)} atomic energies for {config.species} species")
        # float64 whatever the model's dtype: E0 is thousands of eV for a molecule, and float32 would
        # round the total energy to ~0.5 meV before any error of the model is measured.
        self.register_buffer("atomic_energies", torch.tensor(energies, dtype=torch.float64))
        self.scale, self.shift = statistics.scale, statistics.shift

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    def features(self, positions: torch.Tensor, species: torch.Tensor,
                 edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the last layer's node features, the readouts ``[N, outputs]`` summed over the layers)."""
        vectors = positions[edge_index[0]] - positions[edge_index[1]]
        harmonics, radial = self.harmonics(vectors), self.radial_basis(vectors.norm(dim=-1))
        h, contributions = self.embedding(species), []
        for layer in self.layers:
            h, contribution = layer(h, harmonics, radial, edge_index, species, 1.0 / self.statistics.avg_num_neighbors)
            contributions.append(contribution)
        return h, torch.stack(contributions).sum(0)


class MacePotential(MaceBody):
    """A MACE potential: ``forward(positions, species, edge_index, batch, num_structures)``
    gives the energy of every structure ``[S]``; :meth:`energy_and_forces` adds ``-dE/dpos``.

    ``edge_index`` is ``[2, E]``, row 0 the sender j, row 1 the receiver i (within ``r_max``);
    ``batch[i]`` is the structure of atom i. Build it at the dtype you need (float64 for tests):
    the compiled modules keep exact float64 couplings only when created at that precision.
    """

    def __init__(self, config: MaceConfig | None = None, statistics: Statistics | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(config or MaceConfig(), statistics or Statistics(), dtype or torch.get_default_dtype())

    def atom_energies(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The energy of every atom ``[N]`` (eV, float64)."""
        _, interaction = self.features(positions, species, edge_index)
        return self.atomic_energies[species] + (self.scale * interaction[:, 0] + self.shift).to(torch.float64)

    def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                batch: torch.Tensor, num_structures: int) -> torch.Tensor:
        per_atom = self.atom_energies(positions, species, edge_index)
        return per_atom.new_zeros(num_structures).index_add(0, batch, per_atom)

    def energy_and_forces(self, data: Batch, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``[S]`` and forces ``-dE/dpos`` ``[N, 3]`` of a batch (``create_graph`` to train on forces)."""
        with torch.enable_grad():
            positions = data.positions.to(self.dtype).detach().requires_grad_(True)
            energy = self(positions, data.species, data.edge_index, data.batch, data.num_structures)
            (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
        return (energy if create_graph else energy.detach()), -gradient


# -- saving, and matching parameter counts ---------------------------------------------------------

STATE_KIND = "fusionlang.MacePotential"


def potential_state(model: MaceBody, atomic_numbers: Sequence[int]) -> dict[str, Any]:
    """Everything needed to rebuild ``model`` (for ``torch.save``): its config, data set constants,
    the atomic number of each species index, dtype and weights."""
    return {"kind": STATE_KIND, "version": 1, "config": asdict(model.config), "statistics": asdict(model.statistics),
            "atomic_numbers": [int(z) for z in atomic_numbers], "dtype": str(model.dtype).removeprefix("torch."),
            "state_dict": model.state_dict()}


def potential_from_state(state: Mapping[str, Any]) -> tuple[MacePotential, tuple[int, ...]]:
    """The model and atomic numbers saved by :func:`potential_state`.

    >>> model = MacePotential(MaceConfig(channels=2, lmax=1, interactions=1, radial_mlp=(4,)), dtype=torch.float64)
    >>> again, numbers = potential_from_state(potential_state(model, (1, 6, 8)))
    >>> numbers, parameter_count(again) == parameter_count(model)
    ((1, 6, 8), True)
    """
    if state.get("kind") != STATE_KIND:
        raise ValueError(f"not a saved fusionlang potential (kind {state.get('kind')!r})")
    statistics = dict(state["statistics"])
    statistics["atomic_energies"] = tuple(statistics.get("atomic_energies", ()))
    model = MacePotential(MaceConfig.from_dict(state["config"]), Statistics(**statistics),
                          dtype=getattr(torch, state["dtype"]))
    model.load_state_dict(state["state_dict"])
    return model, tuple(state["atomic_numbers"])


def _radial_count(widths: Sequence[int], bessel: int, outputs: Sequence[int]) -> int:
    """Weights of the bias-free radial MLPs ``bessel -> widths -> output`` of every layer."""
    inner = bessel * widths[0] + sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))
    return sum(inner + widths[-1] * output for output in outputs)


def _radial_widths(config: MaceConfig, count: int, outputs: Sequence[int]) -> list[tuple[int, ...]]:
    """Every radial MLP of ``config``'s shape, with its first width up to 4x and its last width
    solved for (the count is linear in it), whose weights number ``count``."""
    found: list[tuple[int, ...]] = []
    for first in range(1, 4 * config.radial_mlp[0] + 1):
        if len(config.radial_mlp) == 1:
            found += [(first,)] if _radial_count((first,), config.bessel, outputs) == count else []
            continue
        middle = config.radial_mlp[1:-1]
        base = _radial_count((first, *middle, 0), config.bessel, outputs)
        slope = _radial_count((first, *middle, 1), config.bessel, outputs) - base
        last, remainder = divmod(count - base, slope)
        if remainder == 0 and 1 <= last <= 4 * config.radial_mlp[-1]:
            found.append((first, *middle, last))
    return found


def match_parameters(config: MaceConfig, target: int,
                     build: Callable[[MaceConfig], MaceBody] | None = None) -> MaceConfig:
    """``config`` with the radial MLP's first and last widths (and, only if that cannot hit it, the
    readout width) changed so that the model has exactly ``target`` parameters: the readout as close
    to its width as possible first, then the smallest change of the radial widths. ``build`` makes
    the model of a config (default a float64 :class:`MacePotential`; any :class:`MaceBody` whose
    parameters outside the radial MLPs and the last readout do not depend on their widths).

    >>> small = MaceConfig(channels=2, lmax=1, interactions=1, radial_mlp=(4, 4), readout_hidden=4)
    >>> wide = match_parameters(small, 200)
    >>> parameter_count(MacePotential(wide)), wide.radial_mlp, wide.readout_hidden
    (200, (8, 5), 4)
    """
    build = build or (lambda c: MacePotential(c, dtype=torch.float64))
    model = build(config)
    outputs = [sum(n for _, n in layer.weights) for layer in model.layers]  # type: ignore[union-attr]
    fixed = parameter_count(model) - _radial_count(config.radial_mlp, config.bessel, outputs)
    last: MaceLayer = model.layers[-1]  # type: ignore[assignment]
    readout, per_width = config.readout_hidden, config.channels + last.readout.outputs
    best: tuple[tuple[int, int], MaceConfig] | None = None
    for change in range(8 * readout + 1):  # the readout's change, smallest first
        for d_readout in sorted({-change, change}):
            if readout + d_readout < 1:
                continue
            for widths in _radial_widths(config, target - fixed - d_readout * per_width, outputs):
                moved = sum(abs(a - b) for a, b in zip(widths, config.radial_mlp, strict=True))
                if best is None or (change, moved) < best[0]:
                    best = ((change, moved), replace(config, radial_mlp=widths, readout_hidden=readout + d_readout))
        if best is not None:
            break
    if best is None:
        raise ValueError(f"no radial/readout widths give {target} parameters from {config}")
    matched = best[1]
    assert parameter_count(build(matched)) == target, "the count is exact"
    return matched
