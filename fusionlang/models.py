"""A small MACE-like interatomic potential assembled from compiled fusion diagrams.

The model follows MACE (Batatia et al. 2022) with every equivariant operation compiled from a
``.fusion`` diagram::

    h⁰ = embedding(species)                                             channels x 0e
    A  = linear(Σ_{j→i} R(|r_ij|) · h_j ⊗ Y(r_ij)) / avg_num_neighbors   mace_interaction, mace_linear
    B  = A + A⊗A + A⊗A⊗A (per-species weights) [+ fusion block]          mace_product_basis
    h¹ = B;   E_i = E0[species_i] + scale · Σ_layers readout(B⁰ᵉ_i);   E = Σ_i E_i;   F = -∂E/∂pos

with ``r_ij = pos[sender] - pos[receiver]`` (translation invariant by construction), ``Y`` the real
spherical harmonics (:class:`fusionlang.spherical.SphericalHarmonics`) and ``R`` a radial network
over a Bessel basis times a smooth polynomial cutoff, which gives the per-edge weights of the
interaction (external weights). With ``fusion_block=True`` the product basis also fuses the
centre's features with the messages of every pair of distinct neighbours
(``h, neighbours(m), neighbours(m) -> B``, as ``mace_fusion_block`` in examples/fusion_block.fusion).

The module also carries a tiny data set generator (random clusters of 4 to 8 atoms of 3 species,
labelled by a Morse pair potential plus a three-body angular term), a training loop and a plot of
the loss curves; ``scripts/train_mace.py`` runs them end to end.

>>> data = make_dataset(4, seed=0)
>>> model = MacePotential(MaceConfig(channels=4, lmax=1, interactions=1), dtype=torch.float64)
>>> energy, forces = model.energy_and_forces(collate(data))
>>> energy.shape, forces.shape == collate(data).forces.shape
(torch.Size([4]), True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import torch

from . import api
from .groups import O3, Irreps
from .spherical import SphericalHarmonics, irreps_text

__all__ = [
    "Batch", "EpochLoss", "MaceConfig", "MacePotential", "ReferencePotential", "Statistics", "Structure",
    "collate", "evaluate", "fit_statistics", "interaction_source", "linear_source", "make_dataset",
    "parameter_count", "plot_losses", "product_basis_source", "random_structure", "train",
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
    """The sizes of a :class:`MacePotential` (small defaults: trains on a laptop CPU).

    ``lmax`` bounds the edge harmonics and the density ``A``; hidden node features between layers
    are ``channels x (0e + ... + hidden_lmax)``; the last layer's product basis outputs scalars.
    """

    species: int = 3
    channels: int = 16
    lmax: int = 3
    hidden_lmax: int = 1
    interactions: int = 2
    r_max: float = 5.0
    bessel: int = 8
    cutoff_power: int = 5
    radial_hidden: int = 32
    fusion_block: bool = False
    fusion_lmax: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.hidden_lmax <= self.lmax or self.interactions < 1:
            raise ValueError(f"need 0 <= hidden_lmax <= lmax and interactions >= 1, got {self}")
        if self.fusion_block and self.fusion_lmax > self.lmax:
            raise ValueError(f"the fusion block's messages use the edge harmonics: fusion_lmax "
                             f"{self.fusion_lmax} must not exceed lmax {self.lmax}")


@dataclass(frozen=True)
class Statistics:
    """Data set constants the model is built with (as MACE): the mean number of neighbours (the
    sums over neighbours are divided by it), per-species reference energies ``E0`` (eV) and the
    energy scale (the RMS of the force components, eV/Å)."""

    avg_num_neighbors: float = 1.0
    atomic_energies: tuple[float, ...] = ()
    scale: float = 1.0


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


class MaceLayer(torch.nn.Module):
    """One interaction and product basis, and the readout of its scalars to per-atom energies."""

    def __init__(self, config: MaceConfig, hidden_lmax: int, target_lmax: int, dtype: torch.dtype) -> None:
        super().__init__()
        c = config
        hidden, density = _irreps(c.channels, hidden_lmax), _irreps(c.channels, c.lmax)
        interaction = api.compile(interaction_source(hidden, c.lmax), name="mace_interaction.fusion")
        middle = str(interaction.diagram("mace_interaction").irreps("A"))
        self.interaction = interaction.module_class("mace_interaction")(dtype=dtype)
        self.linear = api.compile(linear_source(middle, density), name="mace_linear.fusion").module_class()(dtype=dtype)
        product = product_basis_source(density, _irreps(c.channels, target_lmax), c.species,
                                       hidden=hidden if c.fusion_block else None, fusion_lmax=c.fusion_lmax)
        self.product = api.compile(product, name="mace_product_basis.fusion").module_class()(dtype=dtype)
        self.fusion_dim = (c.fusion_lmax + 1) ** 2
        self.weights = _external_weights(self.interaction) + _external_weights(self.product)
        self.radial = RadialMLP([c.bessel, c.radial_hidden, c.radial_hidden, sum(n for _, n in self.weights)], dtype)
        self.readout = torch.nn.Linear(c.channels, 1, bias=False, dtype=dtype)

    def forward(self, h: torch.Tensor, harmonics: torch.Tensor, radial: torch.Tensor, edge_index: torch.Tensor,
                species: torch.Tensor, inverse_neighbours: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(the next node features ``B``, the per-atom energy contributions ``[N]``)."""
        weights = self.radial(radial) * inverse_neighbours
        names, sizes = zip(*self.weights, strict=True)
        values = dict(zip(names, weights.split(list(sizes), -1), strict=True))
        A = _call(self.interaction, {**values, "h": h, "Y": harmonics, "edge_index": edge_index})
        A = self.linear(A)
        B = _call(self.product, {**values, "A": A, "h": h, "Y": harmonics[:, :self.fusion_dim],
                                 "edge_index": edge_index, "species": species})
        return B, self.readout(B[:, :self.readout.in_features]).squeeze(-1)


class MacePotential(torch.nn.Module):
    """A MACE-like potential: ``forward(positions, species, edge_index, batch, num_structures)``
    gives the energy of every structure ``[S]``; :meth:`energy_and_forces` adds ``-dE/dpos``.

    ``edge_index`` is ``[2, E]``, row 0 the sender j, row 1 the receiver i (within ``r_max``);
    ``batch[i]`` is the structure of atom i. Build it at the dtype you need (float64 for tests):
    the compiled modules keep exact float64 couplings only when created at that precision.
    """

    atomic_energies: torch.Tensor

    def __init__(self, config: MaceConfig | None = None, statistics: Statistics | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        config, statistics = config or MaceConfig(), statistics or Statistics()
        self.config, self.statistics = config, statistics
        self.embedding = torch.nn.Embedding(config.species, config.channels, dtype=dtype)
        self.harmonics = SphericalHarmonics(config.lmax)
        self.radial_basis = RadialBasis(config.r_max, config.bessel, config.cutoff_power, dtype)
        lmaxes = [0] + [config.hidden_lmax] * (config.interactions - 1) + [0]
        self.layers = torch.nn.ModuleList(MaceLayer(config, lmaxes[t], lmaxes[t + 1], dtype)
                                          for t in range(config.interactions))
        energies = statistics.atomic_energies or (0.0,) * config.species
        self.register_buffer("atomic_energies", torch.tensor(energies, dtype=dtype))
        self.scale = statistics.scale

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    def atom_energies(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The energy of every atom ``[N]`` (eV)."""
        vectors = positions[edge_index[0]] - positions[edge_index[1]]
        harmonics, radial = self.harmonics(vectors), self.radial_basis(vectors.norm(dim=-1))
        h, energy = self.embedding(species), self.atomic_energies[species]
        for layer in self.layers:
            h, contribution = layer(h, harmonics, radial, edge_index, species, 1.0 / self.statistics.avg_num_neighbors)
            energy = energy + self.scale * contribution
        return energy

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


# -- data ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Structure:
    """One labelled structure: positions ``[n, 3]`` (Å), species ``[n]``, energy (eV), forces (eV/Å)."""

    positions: torch.Tensor
    species: torch.Tensor
    energy: float
    forces: torch.Tensor


@dataclass(frozen=True)
class Batch:
    """Structures concatenated along atoms, with their neighbour graph (edges within ``r_max``)."""

    positions: torch.Tensor    # [N, 3]
    species: torch.Tensor      # [N]
    edge_index: torch.Tensor   # [2, E]: row 0 sender j, row 1 receiver i
    batch: torch.Tensor        # [N]: the structure of every atom
    energy: torch.Tensor       # [S]
    forces: torch.Tensor       # [N, 3]
    num_atoms: torch.Tensor    # [S]

    @property
    def num_structures(self) -> int:
        return int(self.num_atoms.numel())


def neighbour_graph(positions: torch.Tensor, r_max: float) -> torch.Tensor:
    """Every ordered pair (j, i), j ≠ i, closer than ``r_max``: ``[2, E]``, row 0 the sender j."""
    distances = torch.cdist(positions, positions)
    close = (distances < r_max) & ~torch.eye(len(positions), dtype=torch.bool)
    receiver, sender = close.nonzero(as_tuple=True)
    return torch.stack([sender, receiver])


def collate(structures: Sequence[Structure], r_max: float = 5.0) -> Batch:
    """One :class:`Batch` of ``structures`` (float64)."""
    counts = [len(s.species) for s in structures]
    offsets = [sum(counts[:k]) for k in range(len(counts))]
    edges = [neighbour_graph(s.positions, r_max) + offset for s, offset in zip(structures, offsets, strict=True)]
    return Batch(
        positions=torch.cat([s.positions for s in structures]),
        species=torch.cat([s.species for s in structures]),
        edge_index=torch.cat(edges, dim=1),
        batch=torch.repeat_interleave(torch.arange(len(structures)), torch.tensor(counts)),
        energy=torch.tensor([s.energy for s in structures], dtype=torch.float64),
        forces=torch.cat([s.forces for s in structures]),
        num_atoms=torch.tensor(counts),
    )


@dataclass(frozen=True)
class ReferencePotential:
    """The many-body reference: Morse pairs plus a three-body angular term, both cut off smoothly::

        E = Σ_{i<j} fc(r_ij) D_ab [(1 - exp(-α (r_ij - r0_ab)))² - 1]
          + Σ_i k_{z_i} Σ_{j<k} g(r_ij) g(r_ik) (cos θ_jik - cos θ0)²,    g(r) = exp(-r / ρ) fc(r)

    with ``r0_ab = radius_a + radius_b`` and ``D_ab = sqrt(D_a D_b)``; cos θ0 = -1/3 (tetrahedral).

    >>> e, f = ReferencePotential().label(torch.tensor([[0.0, 0, 0], [1.5, 0, 0]], dtype=torch.float64),
    ...                                   torch.tensor([1, 1]))
    >>> round(e, 3), round(float(f[0, 0] + f[1, 0]), 12)
    (-0.971, 0.0)
    """

    radius: tuple[float, ...] = (0.6, 0.75, 0.9)
    depth: tuple[float, ...] = (0.6, 1.0, 1.4)
    alpha: float = 1.5
    angular: tuple[float, ...] = (1.0, 3.0, 6.0)
    cos0: float = -1.0 / 3.0
    decay: float = 1.0
    r_max: float = 5.0

    def energy(self, positions: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        n = len(positions)
        eye = torch.eye(n, dtype=positions.dtype)
        diff = positions[None, :, :] - positions[:, None, :]            # [i, j]: r_j - r_i
        dist = (diff.pow(2).sum(-1) + eye).sqrt()                       # 1 on the diagonal: no 0/0
        fc = polynomial_cutoff(dist / self.r_max) * (1 - eye)
        radius, depth = (torch.tensor(v, dtype=positions.dtype)[species] for v in (self.radius, self.depth))
        r0, d = radius[:, None] + radius[None, :], (depth[:, None] * depth[None, :]).sqrt()
        pair = 0.5 * (fc * d * ((1 - torch.exp(-self.alpha * (dist - r0))) ** 2 - 1)).sum()
        g, unit = torch.exp(-dist / self.decay) * fc, diff / dist[..., None]
        cos = torch.einsum("ijx,ikx->ijk", unit, unit)
        k = torch.tensor(self.angular, dtype=positions.dtype)[species]
        triples = k[:, None, None] * g[:, :, None] * g[:, None, :] * (1 - eye)[None] * (cos - self.cos0) ** 2
        return pair + 0.5 * triples.sum()

    def label(self, positions: torch.Tensor, species: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(energy, forces) of one structure, float64."""
        positions = positions.detach().to(torch.float64).requires_grad_(True)
        energy = self.energy(positions, species)
        (gradient,) = torch.autograd.grad(energy, positions)
        return float(energy.detach()), -gradient


def random_structure(generator: torch.Generator, potential: ReferencePotential = ReferencePotential(),
                     atoms: tuple[int, int] = (4, 8), species: int = 3) -> Structure:
    """A random cluster: atoms added one by one at a bond length of 0.85 to 1.3 × r0 from a random
    atom already placed, never closer than 0.8 × r0 to any other."""
    n = int(torch.randint(atoms[0], atoms[1] + 1, (1,), generator=generator))
    z = torch.randint(0, species, (n,), generator=generator)
    radius = torch.tensor(potential.radius, dtype=torch.float64)[z]
    placed = [torch.zeros(3, dtype=torch.float64)]
    while len(placed) < n:
        new = len(placed)
        anchor = int(torch.randint(0, new, (1,), generator=generator))
        direction = torch.randn(3, generator=generator, dtype=torch.float64)
        stretch = 0.85 + 0.45 * float(torch.rand(1, generator=generator, dtype=torch.float64))
        candidate = placed[anchor] + direction / direction.norm() * stretch * float(radius[anchor] + radius[new])
        distances = (torch.stack(placed) - candidate).norm(dim=-1)
        if bool((distances >= 0.8 * (radius[:new] + radius[new])).all()):
            placed.append(candidate)
    positions = torch.stack(placed)
    positions = positions - positions.mean(0)
    energy, forces = potential.label(positions, z)
    return Structure(positions, z, energy, forces)


def make_dataset(count: int, seed: int = 0, potential: ReferencePotential = ReferencePotential(),
                 atoms: tuple[int, int] = (4, 8), species: int = 3) -> list[Structure]:
    """``count`` random labelled clusters (deterministic in ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    return [random_structure(generator, potential, atoms, species) for _ in range(count)]


def fit_statistics(data: Sequence[Structure], r_max: float = 5.0, species: int = 3) -> Statistics:
    """Mean neighbour count, least-squares per-species energies, RMS force component of ``data``."""
    batch = collate(data, r_max)
    counts = torch.zeros(batch.num_structures, species, dtype=torch.float64)
    counts.index_put_((batch.batch, batch.species), torch.ones(len(batch.species), dtype=torch.float64),
                      accumulate=True)
    energies = torch.linalg.lstsq(counts, batch.energy[:, None]).solution[:, 0]
    return Statistics(avg_num_neighbors=batch.edge_index.shape[1] / len(batch.species),
                      atomic_energies=tuple(float(e) for e in energies),
                      scale=float(batch.forces.pow(2).mean().sqrt()))


# -- training --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochLoss:
    """Mean losses of one epoch: energy MSE per atom ((eV/atom)²), force MSE per component
    ((eV/Å)²) and their weighted sum."""

    epoch: int
    total: float
    energy: float
    forces: float
    seconds: float = field(default=0.0, compare=False)


def loss_terms(model: MacePotential, data: Batch, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(energy MSE per atom, force MSE) of ``model`` on one batch."""
    energy, forces = model.energy_and_forces(data, create_graph=create_graph)
    per_atom = (energy - data.energy.to(energy.dtype)) / data.num_atoms.to(energy.dtype)
    return per_atom.pow(2).mean(), (forces - data.forces.to(forces.dtype)).pow(2).mean()


def evaluate(model: MacePotential, data: Sequence[Structure], energy_weight: float = 10.0,
             force_weight: float = 1.0) -> EpochLoss:
    """The losses of ``model`` on ``data`` (no update; epoch -1)."""
    energy, forces = (float(t.detach()) for t in loss_terms(model, collate(data, model.config.r_max)))
    return EpochLoss(-1, energy_weight * energy + force_weight * forces, energy, forces)


def _batches(data: Sequence[Structure], size: int, generator: torch.Generator, r_max: float) -> Iterable[Batch]:
    order = torch.randperm(len(data), generator=generator).tolist()
    for start in range(0, len(order), size):
        yield collate([data[k] for k in order[start:start + size]], r_max)


def _progress(epochs: int, enabled: bool) -> tuple[Iterable[int], Callable[[str], None]]:
    """The epochs, under a tqdm bar when tqdm is there (a dev dependency), and how to print beside it."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return range(epochs), print
    bar = tqdm(range(epochs), desc="training", unit="epoch", disable=not enabled, leave=False)
    return bar, tqdm.write


def train(model: MacePotential, data: Sequence[Structure], epochs: int, *, batch_size: int = 8,
          lr: float = 1e-2, energy_weight: float = 10.0, force_weight: float = 1.0, seed: int = 0,
          progress: bool = True, log: Callable[[str], None] | None = None) -> list[EpochLoss]:
    """Fit ``model`` to energies and forces with Adam (learning rate decayed 10× over the run);
    prints one line per epoch (``log``, by default beside the tqdm bar) and returns the history.

    The loss is ``energy_weight * MSE(energy per atom) + force_weight * MSE(force components)``.
    Forces alone leave a per-atom energy offset that barely depends on geometry undetermined, so
    the energy gets the larger weight (MACE's late-stage ratio, 10:1).

    >>> model = MacePotential(MaceConfig(channels=2, lmax=1, interactions=1), dtype=torch.float64)
    >>> history = train(model, make_dataset(2), 2, progress=False, log=lambda line: None)
    >>> [h.epoch for h in history]
    [0, 1]
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.1 ** (1 / max(epochs, 1)))
    generator = torch.Generator().manual_seed(seed)
    epochs_iter, write = _progress(epochs, progress)
    history: list[EpochLoss] = []
    for epoch in epochs_iter:
        start = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64)
        for batch in _batches(data, batch_size, generator, model.config.r_max):
            energy, forces = loss_terms(model, batch, create_graph=True)
            loss = energy_weight * energy + force_weight * forces
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sums += torch.stack([loss, energy, forces]).detach().double() * batch.num_structures
        schedule.step()
        total, energy_mse, force_mse = (sums / len(data)).tolist()
        history.append(EpochLoss(epoch, total, energy_mse, force_mse, time.perf_counter() - start))
        (log or write)(f"epoch {epoch:3d}  loss {total:.4e}  energy MSE {energy_mse:.4e} (eV/atom)²  "
                       f"force MSE {force_mse:.4e} (eV/Å)²")
    return history


def plot_losses(histories: Mapping[str, Sequence[EpochLoss]], path: str | Path, title: str = "") -> Path:
    """Write a PNG of the loss curves (total, energy, forces; log scale), one line per history.

    Needs matplotlib (a development dependency); uses the Agg canvas, never pyplot's global state.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ModuleNotFoundError(
            "plot_losses needs matplotlib, which fusionlang does not install: "
            "`pip install matplotlib` (or `pip install -e '.[dev]'`)") from None
    figure = Figure(figsize=(12, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    panels = [("total", "loss (weighted)"), ("energy", "energy MSE (eV/atom)²"), ("forces", "force MSE (eV/Å)²")]
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, history in histories.items():
            ax.plot([h.epoch + 1 for h in history], [getattr(h, key) for h in history], label=name, marker=".")
        ax.set(yscale="log", xlabel="epoch", title=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    if title:
        figure.suptitle(title)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    return target


def parameter_count(module: torch.nn.Module) -> int:
    """The number of trainable numbers in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
