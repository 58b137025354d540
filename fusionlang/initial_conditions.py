"""Initial conditions for surface hopping: thermal (Maxwell–Boltzmann) velocities and Wigner sampling of
the ground state's harmonic oscillator from a finite-difference Hessian; every draw seeded.

>>> masses = np.array([12.0, 16.0])
>>> positions = np.array([[0.0, 0.0, 0.0], [1.13, 0.0, 0.0]])
>>> v = thermal_velocities(positions, masses, 300.0, np.random.default_rng(0))
>>> bool(np.allclose(masses @ v, 0.0))
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fusionlang.surface_hopping import ACCELERATION, BOLTZMANN_EV, HBAR_EV_FS, SurfacesFn

HBAR_AMU = HBAR_EV_FS * ACCELERATION  # ħ in amu·Å²/fs, the unit of mass-weighted phase space


def initial_generator(seed: int) -> np.random.Generator:
    """The initial conditions' random stream of a trajectory seed (stream 0; the hops use stream 1)."""
    return np.random.default_rng([seed, 0])


def remove_momentum(velocities: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Velocities less the centre of mass velocity (zero total momentum)."""
    return velocities - (masses @ velocities) / masses.sum()


def remove_rotation(positions: np.ndarray, velocities: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Velocities less the rigid rotation ω × r that carries their angular momentum about the centre of mass
    (ω = I⁺ L, the pseudo-inverse so that linear molecules work)."""
    r = positions - (masses @ positions) / masses.sum()
    momentum = np.sum(masses[:, None] * np.cross(r, velocities), axis=0)
    inertia = np.sum(masses[:, None, None] * (np.einsum("ni,ni->n", r, r)[:, None, None] * np.eye(3)
                                              - np.einsum("ni,nj->nij", r, r)), axis=0)
    omega = np.linalg.pinv(inertia) @ momentum
    return velocities - np.cross(omega, r)


def thermal_velocities(positions: np.ndarray, masses: np.ndarray, temperature: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Maxwell–Boltzmann velocities (Å/fs) at ``temperature`` (K), then zero total momentum and angular
    momentum (not rescaled afterwards, so the kinetic temperature is a little below ``temperature``)."""
    sigma = np.sqrt(BOLTZMANN_EV * temperature * ACCELERATION / masses)
    velocities = rng.normal(size=positions.shape) * sigma[:, None]
    return remove_rotation(positions, remove_momentum(velocities, masses), masses)


def hessian(surfaces_fn: SurfacesFn, positions: np.ndarray, state: int = 0, step: float = 1e-3) -> np.ndarray:
    """``∂²E_state/∂R²`` (eV/Å², ``[3N, 3N]``) by central differences of the forces (6N calls), symmetrised.

    >>> harmonic = lambda x: dataclasses.replace(_TOY, forces=-2.0 * x[None])
    >>> (hessian(harmonic, np.zeros((1, 3))).round(6) + 0.0).tolist()[0]
    [2.0, 0.0, 0.0]
    """
    flat = positions.reshape(-1)
    columns = []
    for i in range(flat.size):
        shift = np.zeros_like(flat)
        shift[i] = step
        plus = surfaces_fn((flat + shift).reshape(positions.shape)).forces[state].reshape(-1)
        minus = surfaces_fn((flat - shift).reshape(positions.shape)).forces[state].reshape(-1)
        columns.append(-(plus - minus) / (2.0 * step))
    matrix = np.array(columns).T
    return 0.5 * (matrix + matrix.T)


@dataclasses.dataclass(frozen=True)
class NormalModes:
    """Vibrational modes: angular frequencies ω (1/fs) and mass-weighted eigenvectors ``[3N, modes]``."""

    frequencies: np.ndarray
    vectors: np.ndarray

    @property
    def wavenumbers(self) -> np.ndarray:
        """ω in cm⁻¹ (ω / 2πc, c = 2.99792458e-5 cm/fs)."""
        return self.frequencies / (2.0 * np.pi * 2.99792458e-5)


def normal_modes(hessian_matrix: np.ndarray, masses: np.ndarray, rigid: int = 6,
                 lowest_wavenumber: float = 10.0) -> NormalModes:
    """Diagonalise the mass-weighted Hessian and drop the ``rigid`` eigenvalues closest to zero
    (translations and rotations: 6, or 5 for a linear molecule, 0 for a particle in a fixed field).
    Raises ValueError when a kept mode has a negative curvature (not a minimum) or a wavenumber below
    ``lowest_wavenumber`` (cm⁻¹): a flat mode's Wigner width ħ/(2ω) would be unbounded.

    >>> normal_modes(np.diag([1.0, 1.0, 4.0]), np.array([1.0]), rigid=0).wavenumbers.round(0).tolist()
    [521.0, 521.0, 1043.0]
    """
    weights = np.repeat(1.0 / np.sqrt(masses), 3)
    values, vectors = np.linalg.eigh(hessian_matrix * weights[:, None] * weights[None, :])
    kept = np.sort(np.argsort(np.abs(values))[rigid:])
    if np.any(values[kept] <= 0.0):
        raise ValueError(f"not a minimum: mass-weighted Hessian eigenvalues {values[kept][:3]} (eV/Å²/amu)")
    modes = NormalModes(np.sqrt(values[kept] * ACCELERATION), vectors[:, kept])
    if modes.wavenumbers.min() < lowest_wavenumber:
        raise ValueError(f"a flat mode: {modes.wavenumbers.min():.3g} cm⁻¹ (more than {rigid} near-zero modes?)")
    return modes


def wigner_sample(positions: np.ndarray, masses: np.ndarray, modes: NormalModes,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions (Å) and velocities (Å/fs) from the ground-state Wigner function of each harmonic mode:
    Gaussians with variances ħ/(2ω) for the mass-weighted coordinate and ħω/2 for its velocity."""
    q = rng.normal(size=modes.frequencies.size) * np.sqrt(HBAR_AMU / (2.0 * modes.frequencies))
    p = rng.normal(size=modes.frequencies.size) * np.sqrt(HBAR_AMU * modes.frequencies / 2.0)
    unweight = np.repeat(1.0 / np.sqrt(masses), 3)
    displacement = (unweight * (modes.vectors @ q)).reshape(positions.shape)
    return positions + displacement, (unweight * (modes.vectors @ p)).reshape(positions.shape)


def wigner_initial(surfaces_fn: SurfacesFn, positions: np.ndarray, masses: np.ndarray, rigid: int = 6,
                   step: float = 1e-3) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """Initial conditions ``seed -> (positions, velocities)`` by Wigner sampling about ``positions`` (a
    minimum of state 0); the Hessian is computed once, here."""
    modes = normal_modes(hessian(surfaces_fn, positions, 0, step), masses, rigid)
    return lambda seed: wigner_sample(positions, masses, modes, initial_generator(seed))


def thermal_initial(positions: np.ndarray, masses: np.ndarray,
                    temperature: float) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """Initial conditions ``seed -> (positions, velocities)``: fixed positions, thermal velocities."""
    return lambda seed: (positions, thermal_velocities(positions, masses, temperature, initial_generator(seed)))


def _toy() -> object:
    from fusionlang.surface_hopping import Surfaces

    return Surfaces(np.zeros(1), np.zeros((1, 1, 3)), np.zeros((1, 1, 1, 3)))


_TOY = _toy()  # a one-state template for the doctest of :func:`hessian`
