"""Stilbene geometries for the excited-state data (:mod:`fusionlang.excited`, issue 12): the cis–trans
photo-isomerisation of the seed paper's own system, as a fixed design of chains.

* **trans-stilbene from internal coordinates** (:func:`trans_stilbene`): standard bond lengths and angles,
  every atom placed from three earlier ones (bond, angle, dihedral), planar, C2h.
* **chain 0, the relaxed torsion scan**: the central C-C=C-C dihedral from 180° (trans) to 0° (cis) in 5°
  steps, each point GFN2-xTB-relaxed (tblite through ASE) with that dihedral and the H-C=C-H dihedral held
  equal by ``ase.constraints.FixInternals``, starting from the previous point turned by 5°. The scan is cached in
  ``data/stilbene_xtb_scan.extxyz`` (committed, so the design does not move with tblite versions).
* **chains 1, 2, ...: noisy replicas** of the scan (the "surrounding coordinates"): the torsion jittered by
  ±2.5°, each phenyl ring turned about its C–C(ipso) bond by a per-chain offset (±15°) and ±5° per step,
  Gaussian Cartesian noise (σ 0.02 Å), each geometry from its own seed ``1000000*seed + 1000*chain + step``.

The first ``count`` geometries of chains 0, 1, 2, ... form the design, so a larger count extends a smaller
one. Every geometry carries its provenance (:meth:`StilbeneGeometry.info`).

>>> positions = trans_stilbene()
>>> positions.shape, round(dihedral(positions, TORSION_ATOMS), 1)
((26, 3), 180.0)
>>> "".join(sorted(set(STILBENE_SYMBOLS))), STILBENE_SYMBOLS.count("C"), STILBENE_SYMBOLS.count("H")
('CH', 14, 12)
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

# Atom order: the vinyl carbons C1 C2; ring A (ipso, ortho, meta, para, meta', ortho') bonded to C1; ring B
# the same on C2; the vinyl H of C1 and C2; the ring A H (ortho..ortho'), the ring B H.
STILBENE_SYMBOLS = ("C",) * 14 + ("H",) * 12
RING_A, RING_B = (2, 3, 4, 5, 6, 7), (8, 9, 10, 11, 12, 13)
VINYL_H = (14, 15)
RING_H_A, RING_H_B = (16, 17, 18, 19, 20), (21, 22, 23, 24, 25)
TORSION_ATOMS = (2, 0, 1, 8)  # C(ipso A)-C1=C2-C(ipso B): 180° trans, 0° cis
# H-C1=C2-H: held equal to the torsion in the relaxed scan. GFN2-xTB is a closed-shell method, which keeps the
# π bond at any cost: with only the C-C=C-C dihedral held, the relaxation left the vinyl H behind
# (H-C=C-H 150° at a 45° torsion), pyramidalising both carbons, until the structure snapped to cis at 30°.
HCCH_ATOMS = (14, 0, 1, 15)
TWIST_ATOMS_A = (1, 0, 2, 3)  # C2=C1-C(ipso)-C(ortho): the ring A twist (0° coplanar with the C=C)
TWIST_ATOMS_B = (0, 1, 8, 9)
SIDE_B = (8, 9, 10, 11, 12, 13, 15, 21, 22, 23, 24, 25)  # what turns about C1=C2 when the torsion changes

# Standard internal coordinates (Å, degrees): gas-phase trans-stilbene is close to these (C=C 1.34, C-Cipso
# 1.47, C=C-C 127°); GFN2-xTB relaxes them anyway, they only have to be chemical.
CC_DOUBLE, CC_SINGLE, CC_AROMATIC = 1.34, 1.47, 1.39
CH_VINYL, CH_AROMATIC = 1.09, 1.084
CCC_VINYL, CCH_VINYL = 127.0, 118.0

SCAN_STEP = 5.0  # degrees
SCAN_TORSIONS = tuple(180.0 - SCAN_STEP * k for k in range(37))  # 180 (trans) .. 0 (cis)
XTB_METHOD = "GFN2-xTB"
RELAX_FMAX = 0.02  # eV/Å, BFGS on GFN2-xTB: enough for a design, the labels are SA-CASSCF anyway
RELAX_STEPS = 1000
SCAN_CACHE = Path(__file__).resolve().parent.parent / "data" / "stilbene_xtb_scan.extxyz"
TORSION_JITTER = SCAN_STEP / 2  # degrees, noisy replicas: within half a scan step
# Ring twists of a noisy chain: one offset per ring and chain (uniform ±15°, from seed
# 1000000*seed + 1000*chain + 999, a number no step uses) plus ±5° per step. Neighbours along a chain thus differ
# by at most 10° in each ring: the labels follow the previous geometry's orbitals and refuse an active space
# that overlaps them by less than 0.5, and the smoke test measured only 0.64-0.78 already for 15° torsion steps.
RING_TWIST_OFFSET = 15.0  # degrees, each ring about its C-C(ipso) bond, per chain
RING_TWIST_JITTER = 5.0  # degrees, per step on top of the chain's offset
DESIGN_NOTE = ("chain 0: GFN2-xTB relaxed scan of the C(ipso)-C=C-C(ipso) dihedral from 180 (trans) to 0 (cis) "
               "deg in 5 deg steps (FixInternals on that dihedral and on H-C=C-H, both equal; BFGS to fmax "
               "0.02 eV/A; each point started from the previous one turned by 5 deg; cached in "
               "data/stilbene_xtb_scan.extxyz); chains 1..: the scan again with the torsion jittered uniformly by "
               "+-2.5 deg, each phenyl ring turned about its C-C(ipso) bond by a per-chain offset uniform in +-15 deg "
               "(seed 1000000*seed + 1000*chain + 999) plus uniform +-5 deg per step (info "
               "phenyl_twist_a_deg/phenyl_twist_b_deg, measured C=C-C(ipso)-C(ortho) dihedrals) and Gaussian "
               "Cartesian noise")
CONFIG_DEFAULTS = {"basis": "sto-3g", "noise": 0.02, "count": 420}  # ExcitedConfig fields for stilbene


@dataclasses.dataclass(frozen=True)
class StilbeneGeometry:
    """One stilbene geometry and where it came from (chain ``chain``, position ``step`` along it)."""

    positions: np.ndarray  # Å, atoms in STILBENE_SYMBOLS order
    chain: int
    step: int
    design: str  # "torsion-scan" or "noisy-scan"
    torsion: float  # degrees, the C(ipso)-C=C-C(ipso) dihedral before the Cartesian noise
    twist_a: float  # degrees, C2=C1-C(ipso)-C(ortho) of ring A before the noise
    twist_b: float  # degrees, the same for ring B
    noise_seed: int  # -1 without noise

    @property
    def symbols(self) -> tuple[str, ...]:
        return STILBENE_SYMBOLS

    def info(self) -> dict[str, Any]:
        """The provenance as extended XYZ info keys."""
        return {"chain": self.chain, "step": self.step, "design": self.design, "torsion_deg": self.torsion,
                "phenyl_twist_a_deg": self.twist_a, "phenyl_twist_b_deg": self.twist_b,
                "noise_seed": self.noise_seed}


# ----------------------------------------------------------------------------------------------- construction
def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """The atom d bonded to c with |cd| = ``bond``, angle b-c-d = ``angle`` and dihedral a-b-c-d = ``torsion``
    (degrees): the usual Z-matrix step, in the frame of c, the b→c direction and the a-b-c plane."""
    bc = (c - b) / np.linalg.norm(c - b)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    theta, phi = np.radians(angle), np.radians(torsion)
    local = np.array([-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
    return c + bond * (local[0] * bc + local[1] * np.cross(normal, bc) + local[2] * normal)


def dihedral(positions: np.ndarray, atoms: tuple[int, int, int, int]) -> float:
    """The dihedral angle a-b-c-d in degrees, in (−180, 180] (ASE's sign convention)."""
    a, b, c, d = (positions[i] for i in atoms)
    b0, b1, b2 = a - b, c - b, d - c
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - (b0 @ b1) * b1, b2 - (b2 @ b1) * b1
    return float(np.degrees(np.arctan2(np.cross(b1, v) @ w, v @ w)))


def _phenyl(positions: np.ndarray, far: int, anchor: int, ring: tuple[int, ...], hydrogens: tuple[int, ...]) -> None:
    """Place a planar, regular phenyl ring (ring[0] the ipso carbon, already placed) and its H atoms, coplanar
    with the far-anchor-ipso plane; ring order ipso, ortho, meta, para, meta', ortho'."""
    p, (ipso, ortho, meta, para, meta2, ortho2) = positions, ring
    p[ortho] = place(p[far], p[anchor], p[ipso], CC_AROMATIC, 120.0, 0.0)
    p[ortho2] = place(p[far], p[anchor], p[ipso], CC_AROMATIC, 120.0, 180.0)
    p[meta] = place(p[anchor], p[ipso], p[ortho], CC_AROMATIC, 120.0, 180.0)
    p[meta2] = place(p[anchor], p[ipso], p[ortho2], CC_AROMATIC, 120.0, 180.0)
    p[para] = place(p[ipso], p[ortho], p[meta], CC_AROMATIC, 120.0, 0.0)
    for k, h in enumerate(hydrogens, start=1):  # H on ring[k], outward: anti to ring[k+2] about ring[k+1]
        p[h] = place(p[ring[(k + 2) % 6]], p[ring[(k + 1) % 6]], p[ring[k]], CH_AROMATIC, 120.0, 180.0)


def trans_stilbene() -> np.ndarray:
    """Planar trans-stilbene (Å, :data:`STILBENE_SYMBOLS` order) from standard internal coordinates: C1=C2
    along x, the ipso carbons at C=C-C 127° on opposite sides (dihedral 180°), the vinyl H opposite them,
    both rings coplanar with the C=C bond."""
    p = np.zeros((26, 3))
    p[1] = [CC_DOUBLE, 0.0, 0.0]
    up = np.array([CC_DOUBLE, 1.0, 0.0])  # a point in the molecular plane, only to orient the first dihedral
    p[2] = place(up, p[1], p[0], CC_SINGLE, CCC_VINYL, 180.0)
    p[8] = place(p[2], p[0], p[1], CC_SINGLE, CCC_VINYL, 180.0)
    p[14] = place(p[8], p[1], p[0], CH_VINYL, CCH_VINYL, 0.0)
    p[15] = place(p[2], p[0], p[1], CH_VINYL, CCH_VINYL, 0.0)
    _phenyl(p, 1, 0, RING_A, RING_H_A)
    _phenyl(p, 0, 1, RING_B, RING_H_B)
    return p - p.mean(axis=0)


def _rotate(positions: np.ndarray, axis_from: int, axis_to: int, atoms: tuple[int, ...], degrees: float) -> np.ndarray:
    """A copy with ``atoms`` turned by ``degrees`` about the bond axis_from→axis_to (right-handed; Rodrigues)."""
    origin = positions[axis_to]
    k = (origin - positions[axis_from]) / np.linalg.norm(origin - positions[axis_from])
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    out = positions.copy()
    v = positions[list(atoms)] - origin
    out[list(atoms)] = origin + v * c + np.cross(k, v) * s + np.outer(v @ k, k) * (1 - c)
    return out


def set_torsion(positions: np.ndarray, degrees: float) -> np.ndarray:
    """A copy with side B turned about C1=C2 so that the C(ipso)-C=C-C(ipso) dihedral is ``degrees``."""
    turn = degrees - dihedral(positions, TORSION_ATOMS)
    return _rotate(positions, 0, 1, SIDE_B, (turn + 180.0) % 360.0 - 180.0)


def twist_rings(positions: np.ndarray, twist_a: float, twist_b: float) -> np.ndarray:
    """A copy with ring A (B) and its H atoms turned by ``twist_a`` (``twist_b``) degrees about C1-C(ipso)."""
    turned = _rotate(positions, 0, 2, RING_A[1:] + RING_H_A, twist_a)
    return _rotate(turned, 1, 8, RING_B[1:] + RING_H_B, twist_b)


# ----------------------------------------------------------------------------------------------- relaxed scan
def relax_at(positions: np.ndarray, torsion: float) -> tuple[np.ndarray, float, int]:
    """GFN2-xTB relaxation with the C(ipso)-C=C-C(ipso) and H-C=C-H dihedrals held at ``torsion`` degrees (the
    start is first turned there): positions (Å), xTB energy (eV) and BFGS steps. Deterministic: no random numbers."""
    from ase import Atoms
    from ase.constraints import FixInternals
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    atoms = Atoms(STILBENE_SYMBOLS, positions=set_torsion(positions, torsion))
    atoms.calc = TBLite(method=XTB_METHOD, verbosity=0)
    atoms.set_constraint(FixInternals(dihedrals_deg=[[None, list(TORSION_ATOMS)], [None, list(HCCH_ATOMS)]]))
    optimizer = BFGS(atoms, logfile=None)
    optimizer.run(fmax=RELAX_FMAX, steps=RELAX_STEPS)
    return np.array(atoms.positions), float(atoms.get_potential_energy()), int(optimizer.nsteps)


def relaxed_scan_frames() -> list[Any]:
    """Run the scan (:data:`SCAN_TORSIONS`, each point from the previous one): ASE ``Atoms`` with info
    ``torsion_deg``, ``xtb_energy`` (eV), ``bfgs_steps``, ``fmax`` and ``method``."""
    from ase import Atoms

    frames, positions = [], trans_stilbene()
    for torsion in SCAN_TORSIONS:
        positions, energy, steps = relax_at(positions, torsion)
        frames.append(Atoms(STILBENE_SYMBOLS, positions=positions, info={
            "torsion_deg": torsion, "xtb_energy": energy, "bfgs_steps": steps, "fmax": RELAX_FMAX,
            "method": XTB_METHOD, "constrained": "C-C=C-C and H-C=C-H"}))
    return frames


def _cache_matches(frames: list[Any]) -> bool:
    return ([float(a.info["torsion_deg"]) for a in frames] == list(SCAN_TORSIONS)
            and all(float(a.info["fmax"]) == RELAX_FMAX and a.info["method"] == XTB_METHOD
                    and a.info.get("constrained") == "C-C=C-C and H-C=C-H" for a in frames))


@cache
def relaxed_scan(path: Path = SCAN_CACHE) -> tuple[np.ndarray, ...]:
    """The relaxed scan's positions (one per :data:`SCAN_TORSIONS` entry), read from ``path`` when it holds
    this scan's settings, otherwise computed (about a minute) and written there."""
    from ase.io import read, write

    frames = list(read(path, ":", format="extxyz")) if path.exists() else []
    if not frames or not _cache_matches(frames):
        frames = relaxed_scan_frames()
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, frames, format="extxyz")
    return tuple(np.array(a.positions) for a in frames)


# ----------------------------------------------------------------------------------------------- design
def _scan_geometry(step: int, positions: np.ndarray) -> StilbeneGeometry:
    return StilbeneGeometry(positions, 0, step, "torsion-scan", SCAN_TORSIONS[step],
                            dihedral(positions, TWIST_ATOMS_A), dihedral(positions, TWIST_ATOMS_B), -1)


def _ring_offsets(chain: int, seed: int) -> np.ndarray:
    """The chain's ring A and ring B twist offsets (degrees, see :data:`RING_TWIST_OFFSET`)."""
    rng = np.random.default_rng(1_000_000 * seed + 1000 * chain + 999)
    return rng.uniform(-RING_TWIST_OFFSET, RING_TWIST_OFFSET, 2)


def _noisy(chain: int, step: int, positions: np.ndarray, seed: int, noise: float) -> StilbeneGeometry:
    """A scan point with the torsion jittered, both rings turned by the chain's offsets and a jitter, and
    Gaussian noise (σ = ``noise`` Å) on every coordinate, from its own seed."""
    noise_seed = 1_000_000 * seed + 1000 * chain + step
    rng = np.random.default_rng(noise_seed)
    torsion = float(np.clip(SCAN_TORSIONS[step] + rng.uniform(-TORSION_JITTER, TORSION_JITTER), 0.0, 180.0))
    twists = _ring_offsets(chain, seed) + rng.uniform(-RING_TWIST_JITTER, RING_TWIST_JITTER, 2)
    turned = twist_rings(set_torsion(positions, torsion), *twists)
    noisy = turned + rng.normal(0.0, noise, size=turned.shape)
    return StilbeneGeometry(noisy, chain, step, "noisy-scan", torsion, dihedral(turned, TWIST_ATOMS_A),
                            dihedral(turned, TWIST_ATOMS_B), noise_seed)


def _design_chain(chain: int, seed: int, noise: float) -> list[StilbeneGeometry]:
    scan = relaxed_scan()
    if chain == 0:
        return [_scan_geometry(k, p) for k, p in enumerate(scan)]
    return [_noisy(chain, k, p, seed, noise) for k, p in enumerate(scan)]


def sample_geometries(count: int, seed: int = 0, *, noise: float = 0.02) -> list[StilbeneGeometry]:
    """The first ``count`` geometries of the fixed design (chain 0 the relaxed scan, then noisy replicas;
    a larger ``count`` extends a smaller one).

    >>> [(g.chain, g.torsion) for g in sample_geometries(39)][35:]
    [(0, 5.0), (0, 0.0), (1, 180.0), (1, 175.56...)]
    """
    geometries: list[StilbeneGeometry] = []
    chain = 0
    while len(geometries) < count:
        geometries += _design_chain(chain, seed, noise)[: count - len(geometries)]
        chain += 1
    return geometries
