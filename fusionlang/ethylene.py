"""Ethylene geometries for the excited-state data (:mod:`fusionlang.excited`): a fixed design of chains
(a torsion scan, a pyramidalisation scan at 90°, a torsion × pyramidalisation grid, then seeded noisy
replicas of the grid with a stretched or compressed C=C bond; optionally GFN2-xTB MD snapshots),
deterministic from a seed, every geometry with its provenance.

>>> [round(g.torsion, 1) for g in sample_geometries(4)]
[0.0, 7.5, 15.0, 22.5]
>>> ethylene_positions(90.0, 30.0).shape
(6, 3)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fusionlang.datagen import DatasetConfig, sample_trajectory

ETHYLENE_SYMBOLS = ("C", "C", "H", "H", "H", "H")
MD_CHAIN = 1000  # chain number of the optional xTB MD snapshots (after every grid replica)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """One ethylene geometry and where it came from (chain ``chain``, position ``step`` along it)."""

    positions: np.ndarray  # Å, atoms in ETHYLENE_SYMBOLS order
    chain: int
    step: int
    design: str  # "torsion-scan", "pyramidalisation-scan", "grid", "noisy-grid", "xtb-md"
    torsion: float  # degrees, H-C-C-H dihedral rotation of the second CH2 (nan for MD)
    pyramidalisation: float  # degrees, angle between the C-C axis and the second CH2 plane (nan for MD)
    noise_seed: int  # -1 without noise
    cc: float = 1.339  # Å, the C=C bond before the Cartesian noise (stretched or compressed in noisy replicas)

    @property
    def symbols(self) -> tuple[str, ...]:
        return ETHYLENE_SYMBOLS

    def info(self) -> dict[str, Any]:
        """The provenance as extended XYZ info keys."""
        return {"chain": self.chain, "step": self.step, "design": self.design, "torsion_deg": self.torsion,
                "pyramidalisation_deg": self.pyramidalisation, "noise_seed": self.noise_seed, "cc_bond": self.cc}


def _rotate_x(vectors: np.ndarray, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return vectors @ np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def ethylene_positions(torsion: float, pyramidalisation: float, *, cc: float = 1.339, ch: float = 1.086,
                       hcc: float = 121.3) -> np.ndarray:
    """Ethylene (C, C, H, H, H, H; Å) along the C–C axis x, the first CH2 planar in the xy plane; the second
    CH2 is pyramidalised by ``pyramidalisation`` degrees (its H atoms bent out of plane together; the angle
    between the C–C axis and the H–C–H plane) and then twisted by ``torsion`` degrees about the C–C axis."""
    bend = np.radians(180.0 - hcc)
    tilt = np.radians(pyramidalisation)
    first = np.array([[-np.cos(bend), np.sin(bend), 0.0], [-np.cos(bend), -np.sin(bend), 0.0]]) * ch
    second = np.array([[np.cos(bend) * np.cos(tilt), s * np.sin(bend), -np.cos(bend) * np.sin(tilt)]
                       for s in (1.0, -1.0)]) * ch
    c1, c2 = np.array([-cc / 2, 0.0, 0.0]), np.array([cc / 2, 0.0, 0.0])
    positions = np.vstack([c1, c2, c1 + first, c2 + _rotate_x(second, torsion)])
    return positions - positions.mean(axis=0)


TORSION_SCAN = tuple(7.5 * k for k in range(25))  # 0..180°
PYRAMIDALISATION_SCAN = tuple(5.0 * k for k in range(13))  # 0..60° at 90° torsion
GRID_TORSIONS = tuple(15.0 * k for k in range(13))  # 0..180°
# 0..90°: the S1/S0 intersection of twisted ethylene lies at strong pyramidalisation and a stretched C=C
# bond (at 90° torsion the CAS(2,2) gap falls from 3.1 eV planar to 1.8 eV at 80° with C=C 1.45 Å, 1.6 eV
# at 90° with 1.50 Å, measured), so surface hopping on S1 heads there
GRID_PYRAMIDALISATIONS = tuple(10.0 * k for k in range(10))
CC_RANGE = (1.30, 1.50)  # Å, uniform C=C bond of the noisy replicas (planar minimum 1.339; S1 lengthens it)


def grid_points() -> list[tuple[float, float]]:
    """(torsion, pyramidalisation) of the grid in snake order: neighbours in the list are neighbours on the grid."""
    points = []
    for row, torsion in enumerate(GRID_TORSIONS):
        column = GRID_PYRAMIDALISATIONS if row % 2 == 0 else GRID_PYRAMIDALISATIONS[::-1]
        points += [(torsion, p) for p in column]
    return points


def _noisy(chain: int, step: int, torsion: float, pyramidalisation: float, seed: int,
           noise: float) -> Geometry:
    """A grid point with its angles jittered within half a grid cell, the C=C bond drawn from
    :data:`CC_RANGE` and Gaussian noise (σ = ``noise`` Å) on every Cartesian coordinate, from its own seed."""
    noise_seed = 1_000_000 * seed + 1000 * chain + step
    rng = np.random.default_rng(noise_seed)
    half_t = (GRID_TORSIONS[1] - GRID_TORSIONS[0]) / 2
    half_p = (GRID_PYRAMIDALISATIONS[1] - GRID_PYRAMIDALISATIONS[0]) / 2
    t = float(np.clip(torsion + rng.uniform(-half_t, half_t), 0.0, 180.0))
    p = float(np.clip(pyramidalisation + rng.uniform(-half_p, half_p), 0.0, GRID_PYRAMIDALISATIONS[-1]))
    cc = float(rng.uniform(*CC_RANGE))
    positions = ethylene_positions(t, p, cc=cc) + rng.normal(0.0, noise, size=(6, 3))
    return Geometry(positions, chain, step, "noisy-grid", t, p, noise_seed, cc)


def _design_chain(chain: int, seed: int, noise: float) -> list[Geometry]:
    """Chain 0: torsion scan; 1: pyramidalisation scan at 90°; 2: the grid; 3, 4, ...: noisy grid replicas."""
    if chain == 0:
        return [Geometry(ethylene_positions(t, 0.0), 0, k, "torsion-scan", t, 0.0, -1)
                for k, t in enumerate(TORSION_SCAN)]
    if chain == 1:
        return [Geometry(ethylene_positions(90.0, p), 1, k, "pyramidalisation-scan", 90.0, p, -1)
                for k, p in enumerate(PYRAMIDALISATION_SCAN)]
    if chain == 2:
        return [Geometry(ethylene_positions(t, p), 2, k, "grid", t, p, -1) for k, (t, p) in enumerate(grid_points())]
    return [_noisy(chain, k, t, p, seed, noise) for k, (t, p) in enumerate(grid_points())]


def sample_geometries(count: int, seed: int = 0, *, noise: float = 0.03, md_snapshots: int = 0,
                      md_temperature: float = 1000.0) -> list[Geometry]:
    """The first ``count`` geometries of the fixed design (chains 0, 1, 2, 3, ... in order; a larger
    ``count`` extends a smaller one), plus ``md_snapshots`` GFN2-xTB Langevin MD snapshots (chain 1000).

    >>> [g.design for g in sample_geometries(40)][24:27]
    ['torsion-scan', 'pyramidalisation-scan', 'pyramidalisation-scan']
    """
    geometries: list[Geometry] = []
    chain = 0
    while len(geometries) < count:
        geometries += _design_chain(chain, seed, noise)[: count - len(geometries)]
        chain += 1
    return geometries + (md_geometries(md_snapshots, seed, md_temperature) if md_snapshots else [])


def md_geometries(count: int, seed: int, temperature: float) -> list[Geometry]:
    """GFN2-xTB Langevin MD snapshots of ethylene (``fusionlang.datagen.sample_trajectory``: 1 ps of
    equilibration, then one snapshot every 25 fs), seed ``1000 * seed``. Thermal motion about the planar
    minimum: it adds the vibrations the scans leave out, not the twist."""
    config = DatasetConfig(molecule="C2H4", trajectories=1, per_trajectory=count, temperature=temperature, seed=seed)
    frames = sample_trajectory(config, 0)
    if tuple(frames[0].get_chemical_symbols()) != ETHYLENE_SYMBOLS:  # ASE's C2H4: C C H H H H, H2 H3 on C0
        raise ValueError(f"expected ethylene as {ETHYLENE_SYMBOLS}, got {frames[0].get_chemical_symbols()}")
    return [Geometry(np.asarray(f.positions), MD_CHAIN, k, "xtb-md", float("nan"), float("nan"), -1)
            for k, f in enumerate(frames)]
