"""A toy data set for quick tests: random clusters of 4 to 8 atoms of 3 species, labelled by a
Morse pair potential plus a three-body angular term (the form a two-neighbour fusion block
represents, so it says nothing about real chemistry: the ab initio sets of ``fusionlang.datagen``
are for that).

>>> len(make_dataset(3, seed=0))
3
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .atoms import Structure
from .models import polynomial_cutoff

__all__ = ["ReferencePotential", "make_dataset", "random_structure"]


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

