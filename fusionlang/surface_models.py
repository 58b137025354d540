"""Surfaces callables for :mod:`fusionlang.surface_hopping`: a torch multi-state model, on-the-fly
SA-CASSCF (:func:`fusionlang.excited.label_states`) and Tully's simple avoided crossing (a test model).

The model protocol (:class:`ModelSurfaces`) is deliberately small, since the multi-state model is built
elsewhere: ``model(positions [N, 3] Å) -> (energies [S] eV, couplings)``, ``couplings`` being ``[N, 3]``
(two states, ``<S0|∇ S1>``) or ``[S(S−1)/2, N, 3]`` (the pairs k < j in ``itertools.combinations`` order),
in 1/Å, or multiplied by the gap ``E_j − E_k`` (eV/Å) when ``coupling_times_gap``. Forces come from autograd.

>>> surfaces = tully_simple_crossing()(np.zeros((1, 3)))
>>> surfaces.energies.round(4).tolist(), float(surfaces.couplings[0, 1, 0, 0].round(3))
([-0.1361, 0.1361], -3.024)
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from fusionlang.surface_hopping import HARTREE_EV, HBAR_EV_FS, Surfaces, SurfacesFn

BOHR_ANGSTROM = 0.5291772105638411  # ase.units.Bohr
ELECTRON_MASS_AMU = 0.0005485799093287202  # ase.units._me / ase.units._amu
ATOMIC_TIME_FS = HBAR_EV_FS / HARTREE_EV  # ħ / E_h, the atomic unit of time (0.02419 fs)


def masses_of(symbols: Sequence[str]) -> np.ndarray:
    """Atomic masses (amu) from ASE's table (most common isotope mixture).

    >>> masses_of(["C", "H"]).round(3).tolist()
    [12.011, 1.008]
    """
    from ase.data import atomic_masses, atomic_numbers

    return np.array([atomic_masses[atomic_numbers[s]] for s in symbols], dtype=float)


def couplings_from_pairs(pairs: np.ndarray, states: int) -> np.ndarray:
    """The antisymmetric ``[S, S, N, 3]`` array from the upper-triangle vectors ``d[k, j]``, k < j
    (``[N, 3]`` alone for two states).

    >>> couplings_from_pairs(np.ones((1, 3)), 2)[:, :, 0, 0].tolist()
    [[0.0, 1.0], [-1.0, 0.0]]
    """
    pairs = pairs[None] if pairs.ndim == 2 else pairs
    result = np.zeros((states, states, *pairs.shape[1:]))
    for vector, (k, j) in zip(pairs, itertools.combinations(range(states), 2), strict=True):
        result[k, j], result[j, k] = vector, -vector
    return result


def divide_by_gaps(pairs: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """``d[k, j] = h[k, j] / (E_j − E_k)`` for the pairs k < j, from gap-scaled couplings ``h = <k|∇H|j>``
    (off-diagonal Hellmann–Feynman; ``h`` is symmetric, ``d`` antisymmetric).

    >>> divide_by_gaps(np.ones((1, 1, 3)), np.array([0.0, 2.0]))[0, 0].tolist()
    [0.5, 0.5, 0.5]
    """
    pairs = pairs[None] if pairs.ndim == 2 else pairs
    gaps = [energies[j] - energies[k] for k, j in itertools.combinations(range(len(energies)), 2)]
    return pairs / np.array(gaps)[:, None, None]


@dataclasses.dataclass(frozen=True)
class ModelSurfaces:
    """A torch model as a surfaces callable (forces −∂E_s/∂R by autograd, one backward pass per state).

    >>> import torch
    >>> model = lambda x: (torch.stack([(x ** 2).sum(), (x ** 2).sum() + 1.0]), 0.1 * x)
    >>> s = ModelSurfaces(model)(np.ones((2, 3)))
    >>> s.forces[0, 0].tolist(), s.couplings[1, 0, 0].tolist()
    ([-2.0, -2.0, -2.0], [-0.1, -0.1, -0.1])
    """

    model: Any
    coupling_times_gap: bool = False
    dtype: str = "float64"  # energy conservation needs double precision

    def __call__(self, positions: np.ndarray) -> Surfaces:
        import torch

        x = torch.tensor(np.asarray(positions), dtype=getattr(torch, self.dtype), requires_grad=True)
        energies, couplings = self.model(x)
        gradients = [torch.autograd.grad(e, x, retain_graph=True)[0] for e in energies]
        energy = energies.detach().cpu().numpy().astype(float)
        pairs = couplings.detach().cpu().numpy().astype(float)
        pairs = divide_by_gaps(pairs, energy) if self.coupling_times_gap else pairs
        forces = -torch.stack(gradients).detach().cpu().numpy().astype(float)
        return Surfaces(energy, forces, couplings_from_pairs(pairs, len(energy)))


@dataclasses.dataclass(frozen=True)
class MoleculeModel:
    """A saved :class:`fusionlang.multistate.MultiStatePotential` (``best.pt`` of the trainer or
    ``scripts/train_multistate.py``) on one molecule, in float64: the protocol :class:`ModelSurfaces`
    takes, ``positions [N, 3] -> (energies [S], coupling [N, 3])``. The neighbour graph is rebuilt at
    every call (for a small molecule inside ``r_max``: every pair, fixed)."""

    model: Any
    species: Any     # torch int64 [N]: each atom's index among the model's atomic numbers
    r_max: float

    @classmethod
    def load(cls, path: str | Any, symbols: Sequence[str]) -> MoleculeModel:
        import torch
        from ase.data import atomic_numbers

        from fusionlang.multistate import multistate_from_state

        model, numbers = multistate_from_state(torch.load(path, weights_only=False))
        model = model.to(torch.float64).eval()
        species = torch.tensor([list(numbers).index(atomic_numbers[s]) for s in symbols])
        return cls(model, species, float(model.config.r_max))

    def __call__(self, positions: Any) -> tuple[Any, Any]:
        import torch

        from fusionlang.atoms import neighbour_graph

        edges = neighbour_graph(positions.detach(), self.r_max)
        batch = torch.zeros(len(positions), dtype=torch.int64)
        energies, coupling = self.model(positions, self.species, edges, batch, 1)
        return energies[0], coupling


def surfaces_from_labels(labels: Any) -> Surfaces:
    """:class:`Surfaces` of two states from :class:`fusionlang.excited.StateLabels` (the ETF coupling)."""
    return Surfaces(np.asarray(labels.energies), np.asarray(labels.forces),
                    couplings_from_pairs(np.asarray(labels.coupling), 2))


class CasscfSurfaces:
    """On-the-fly SA-CASSCF(2,2), two singlets (:func:`fusionlang.excited.label_states`, ≈ 6 s per call).

    Not frozen on purpose: it keeps the last geometry's orbitals as the next call's guess, so the active
    space follows the trajectory; make one per trajectory. ``history`` keeps each call's diagnostics (the
    start kept, the active-space overlap with the previous call, the other start's excess), since a switch
    between SA-CASSCF solutions shows up as a jump of the total energy (docs/surface_hopping.md)."""

    def __init__(self, symbols: Sequence[str], basis: str = "6-31g*") -> None:
        self.symbols, self.basis = tuple(symbols), basis
        self.guess: Any = None  # the last geometry's fusionlang.excited.Orbitals
        self.history: list[dict[str, Any]] = []

    def __call__(self, positions: np.ndarray) -> Surfaces:
        from fusionlang.excited import label_states

        labels = label_states(self.symbols, positions, basis=self.basis, guess=self.guess)
        self.guess = labels.orbitals
        self.history.append({"guess": labels.guess, "active_overlap": labels.active_overlap,
                             "active_carbon_p": labels.active_carbon_p, "seconds": labels.seconds,
                             "other_start_excess": labels.other_start_excess})
        return surfaces_from_labels(labels)


# ------------------------------------------------------------------------ Tully's simple avoided crossing
def _tully_terms(x: float, a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """V11, dV11/dx, V12, dV12/dx of Tully's model 1 (hartree, bohr)."""
    v11 = np.sign(x) * a * (1.0 - np.exp(-b * abs(x)))
    v12 = c * np.exp(-d * x * x)
    return float(v11), float(a * b * np.exp(-b * abs(x))), float(v12), float(-2.0 * d * x * v12)


def tully_simple_crossing(a: float = 0.01, b: float = 1.6, c: float = 0.005, d: float = 1.0) -> SurfacesFn:
    """Tully's simple avoided crossing (J. Chem. Phys. 93, 1061 (1990), model 1) along x for one particle,
    free along y and z, converted to eV and Å; adiabatic energies ``∓ sqrt(V11² + V12²)`` and the exact
    coupling ``<0|∂_x 1> = ½ (V11 V12' − V12 V11') / (V11² + V12²)``."""

    def surfaces(positions: np.ndarray) -> Surfaces:
        v11, dv11, v12, dv12 = _tully_terms(float(positions[0, 0]) / BOHR_ANGSTROM, a, b, c, d)
        radius = np.hypot(v11, v12)
        slope = (v11 * dv11 + v12 * dv12) / radius * HARTREE_EV / BOHR_ANGSTROM
        forces = np.zeros((2, 1, 3))
        forces[0, 0, 0], forces[1, 0, 0] = slope, -slope
        pair = np.zeros((1, 3))
        pair[0, 0] = 0.5 * (v11 * dv12 - v12 * dv11) / radius**2 / BOHR_ANGSTROM
        return Surfaces(np.array([-radius, radius]) * HARTREE_EV, forces, couplings_from_pairs(pair, 2))

    return surfaces


def tully_start(momentum_au: float, x_au: float = -5.0, mass_au: float = 2000.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (Å), velocities (Å/fs) and masses (amu) of Tully's incoming particle (atomic units in).

    >>> tully_start(30.0)[1].round(4).tolist()
    [[0.3282, 0.0, 0.0]]
    """
    positions = np.array([[x_au * BOHR_ANGSTROM, 0.0, 0.0]])
    velocity = momentum_au / mass_au * BOHR_ANGSTROM / ATOMIC_TIME_FS
    return positions, np.array([[velocity, 0.0, 0.0]]), np.array([mass_au * ELECTRON_MASS_AMU])
