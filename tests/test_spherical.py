"""Spherical harmonics: equal to e3nn's (component normalisation) and equivariant."""

from __future__ import annotations

import pytest
import torch

from fusionlang.rotations import o3_wigner_D, random_rotation_angles
from fusionlang.spherical import SphericalHarmonics, irreps_text


@pytest.mark.parametrize("lmax", [0, 1, 2, 3, 6])
def test_equal_to_e3nn(lmax: int) -> None:
    o3 = pytest.importorskip("e3nn.o3")
    vectors = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(lmax))
    ours = SphericalHarmonics(lmax)(vectors)
    theirs = o3.spherical_harmonics(list(range(lmax + 1)), vectors, normalize=True, normalization="component")
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


def test_equivariant_under_rotations_and_parity() -> None:
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(7, 3, dtype=torch.float64, generator=generator)
    sh = SphericalHarmonics(4)
    alpha, beta, gamma = random_rotation_angles(generator)
    for k in (0, 1):
        rotation = o3_wigner_D(1, -1, alpha, beta, gamma, k)
        blocks = [o3_wigner_D(l, (-1) ** l, alpha, beta, gamma, k) for l in range(5)]
        big = torch.block_diag(*blocks)
        torch.testing.assert_close(sh(vectors @ rotation.T), sh(vectors) @ big.T, atol=1e-12, rtol=0)


def test_irreps_text() -> None:
    assert irreps_text(3) == "0e + 1o + 2e + 3o"
