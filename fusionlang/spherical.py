"""Real spherical harmonics in e3nn's basis, built from fusionlang's own couplings.

``Y^0 = 1``, ``Y^1 = sqrt(3) r̂`` (components x, y, z, as e3nn), and ``Y^{l+1}`` is the projection
of ``Y^l ⊗ Y^1`` onto spin ``l + 1`` (the top component of a product of harmonic polynomials is
harmonic), rescaled to e3nn's ``component`` normalisation: ``|Y^l(r̂)|^2 = 2l + 1``.
"""

from __future__ import annotations

import math

import torch

from .groups import coupling


def irreps_text(lmax: int) -> str:
    """The irreps of the harmonics up to ``lmax``: ``0e + 1o + 2e + ...`` (parity (-1)^l)."""
    return " + ".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1))


class SphericalHarmonics(torch.nn.Module):
    """``Y(r)`` for ``l = 0 .. lmax`` as one tensor ``[..., (lmax + 1)^2]`` (e3nn's layout).

    >>> sh = SphericalHarmonics(2)
    >>> y = sh(torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64))
    >>> y.shape, round(float(y[0, 1:4].norm() ** 2), 6)
    (torch.Size([1, 9]), 3.0)
    """

    def __init__(self, lmax: int, normalize: bool = True) -> None:
        super().__init__()
        self.lmax = lmax
        self.normalize = normalize
        for l in range(1, lmax):
            self.register_buffer(f"step_{l}", self._step(l), persistent=False)

    @staticmethod
    def _step(l: int) -> torch.Tensor:
        """``C[a, b, m]`` mapping ``Y^l ⊗ r̂`` to ``Y^{l+1}``, scaled to component normalisation."""
        table = coupling("SO3", str(l), "1", str(l + 1))
        reference = _reference_harmonic(l, table)
        return table * (math.sqrt(2 * l + 3) / float(reference.norm()))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        unit = vectors / vectors.norm(dim=-1, keepdim=True) if self.normalize else vectors
        parts = [torch.ones_like(unit[..., :1])]
        if self.lmax >= 1:
            parts.append(math.sqrt(3.0) * unit)
        for l in range(1, self.lmax):
            step = getattr(self, f"step_{l}").to(unit.dtype)
            parts.append(torch.einsum("...a,...b,abm->...m", parts[-1], unit, step))
        return torch.cat(parts, dim=-1)


def _reference_harmonic(l: int, table: torch.Tensor) -> torch.Tensor:
    """The unnormalised ``l + 1`` harmonic at a fixed unit vector (all that sets the scale)."""
    unit = torch.tensor([0.36, 0.48, 0.8], dtype=torch.float64)
    current = math.sqrt(3.0) * unit
    for k in range(1, l):
        step = SphericalHarmonics._step(k)
        current = torch.einsum("a,b,abm->m", current, unit, step)
    return torch.einsum("a,b,abm->m", current, unit, table)
