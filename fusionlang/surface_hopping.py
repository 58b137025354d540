"""Tully fewest-switches surface hopping (FSSH) for N adiabatic states on any ``surfaces`` callable (issue 12).

Units are eV, Å, fs and amu throughout (the constants below, CODATA 2014 as :mod:`ase.units`, convert).
A *surfaces* callable maps positions ``[N, 3]`` (Å) to :class:`Surfaces`: energies ``[S]`` (eV), forces
``[S, N, 3]`` (eV/Å) and derivative couplings ``d[k, j] = <k|∇ j>`` ``[S, S, N, 3]`` (1/Å, antisymmetric).
One step: velocity Verlet on the active state; the amplitudes by a unitary exponential per sub-step, with
energies and ``v·d`` interpolated linearly across the step; one hop decision from the time-integrated
fewest-switches flux; velocity rescaling along ``d``; energy-based decoherence. docs/surface_hopping.md
states every choice.

>>> from fusionlang.surface_models import tully_simple_crossing, tully_start
>>> positions, velocities, masses = tully_start(momentum_au=20.0, x_au=-4.0)
>>> run = run_trajectory(tully_simple_crossing(), positions, velocities, masses, steps=20,
...                      options=HoppingOptions(dt=0.2), active=0, seed=1)
>>> len(run.times), bool(abs(run.populations.sum(axis=1) - 1).max() < 1e-12)
(21, True)
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

# Conversion constants (CODATA 2014, the values of ase.units, which the rest of fusionlang uses).
ACCELERATION = 0.009648533290731906  # (Å/fs²) per (eV/Å/amu): a = F/m · ACCELERATION
KINETIC_EV = 103.64269572045424  # eV per amu·Å²/fs²: E_kin = ½ m v² · KINETIC_EV (= 1 / ACCELERATION)
HBAR_EV_FS = 0.6582119514467407  # ħ in eV·fs
HARTREE_EV = 27.211386024367243  # eV per hartree
BOLTZMANN_EV = 8.617330337217213e-05  # k_B in eV/K
# Granucci–Persico's recommended constant, C = 0.1 hartree (J. Chem. Phys. 126, 134114 (2007)).
DECOHERENCE_C_EV = 0.1 * HARTREE_EV


@dataclasses.dataclass(frozen=True)
class Surfaces:
    """Adiabatic states at one geometry: energies ``[S]`` eV, forces ``[S, N, 3]`` eV/Å, couplings
    ``d[k, j] = <k|∇ j>`` ``[S, S, N, 3]`` 1/Å (antisymmetric; ``d[k, k] = 0``).

    >>> s = Surfaces(np.zeros(2), np.zeros((2, 1, 3)), np.zeros((2, 2, 1, 3)))
    >>> s.states, s.atoms
    (2, 1)
    """

    energies: np.ndarray
    forces: np.ndarray
    couplings: np.ndarray

    @property
    def states(self) -> int:
        return len(self.energies)

    @property
    def atoms(self) -> int:
        return int(self.forces.shape[1])


SurfacesFn = Callable[[np.ndarray], Surfaces]


def check_surfaces(surfaces: Surfaces, atoms: int) -> None:
    """Raise ValueError unless the shapes fit ``atoms`` and the couplings are antisymmetric (a callable that
    returns ``<S0|∇S1>`` for both orders would reverse the population flux of one direction).

    >>> check_surfaces(Surfaces(np.zeros(2), np.zeros((2, 1, 3)), np.ones((2, 2, 1, 3))), 1)
    Traceback (most recent call last):
    ...
    ValueError: couplings are not antisymmetric: d[k, j] must be −d[j, k] (largest |d + dᵀ| 2)
    """
    states = len(surfaces.energies)
    shapes = {"forces": (surfaces.forces.shape, (states, atoms, 3)),
              "couplings": (surfaces.couplings.shape, (states, states, atoms, 3))}
    for name, (shape, expected) in shapes.items():
        if tuple(shape) != expected:
            raise ValueError(f"{name} have shape {tuple(shape)}, expected {expected} ({states} states, {atoms} atoms)")
    error = float(np.max(np.abs(surfaces.couplings + surfaces.couplings.transpose(1, 0, 2, 3)), initial=0.0))
    if error > 1e-10 * max(1.0, float(np.max(np.abs(surfaces.couplings), initial=0.0))):
        raise ValueError(f"couplings are not antisymmetric: d[k, j] must be −d[j, k] (largest |d + dᵀ| {error:.3g})")


@dataclasses.dataclass(frozen=True)
class HoppingOptions:
    """Every numerical choice of one trajectory (see docs/surface_hopping.md).

    >>> HoppingOptions().decoherence_ev == 0.1 * HARTREE_EV
    True
    """

    dt: float = 0.5  # fs, nuclear time step
    substeps: int = 20  # electronic sub-steps per nuclear step
    decoherence_ev: float | None = DECOHERENCE_C_EV  # Granucci–Persico C (eV); None turns the correction off
    frustrated: Literal["keep", "reverse"] = "keep"  # velocity after a frustrated hop
    align_couplings: bool = True  # flip each coupling whose overlap with the previous step's is negative
    norm_tolerance: float = 1e-8  # largest accepted | sum |c|² − 1 | after a step


@dataclasses.dataclass(frozen=True)
class Hop:
    """One attempted hop: time (fs), from, to, whether it was frustrated, total energy (eV) before and after."""

    time: float
    source: int
    target: int
    frustrated: bool
    energy_before: float
    energy_after: float


@dataclasses.dataclass(frozen=True)
class Phase:
    """The state of a trajectory between two steps (positions Å, velocities Å/fs, complex amplitudes)."""

    time: float
    positions: np.ndarray
    velocities: np.ndarray
    amplitudes: np.ndarray
    active: int
    surfaces: Surfaces


# ------------------------------------------------------------------------------------------- energies
def kinetic_energy(masses: np.ndarray, velocities: np.ndarray) -> float:
    """½ Σ m v² in eV (masses amu, velocities Å/fs).

    >>> round(kinetic_energy(np.array([1.0]), np.array([[1.0, 0.0, 0.0]])), 4)
    51.8213
    """
    return float(0.5 * np.sum(masses[:, None] * velocities**2) * KINETIC_EV)


def total_energy(phase: Phase, masses: np.ndarray) -> float:
    """Kinetic energy plus the active state's potential energy (eV)."""
    return kinetic_energy(masses, phase.velocities) + float(phase.surfaces.energies[phase.active])


# --------------------------------------------------------------------------------------- coupling sign
def align_couplings(couplings: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Flip every pair ``d[k, j]``, ``d[j, k]`` whose overlap with the previous step's is negative.

    The coupling's sign is arbitrary per geometry (the phases of the electronic states are), so it is made
    continuous along the trajectory: the previous (already aligned) vector fixes the sign of the next.

    >>> d = np.zeros((2, 2, 1, 3)); d[0, 1, 0, 0], d[1, 0, 0, 0] = -1.0, 1.0
    >>> float(align_couplings(d, -d)[0, 1, 0, 0])
    1.0
    """
    overlap = np.einsum("kjnx,kjnx->kj", couplings, previous)
    signs = np.where(overlap < 0.0, -1.0, 1.0)
    return couplings * signs[:, :, None, None]


def aligned(surfaces: Surfaces, previous: Surfaces | None, options: HoppingOptions) -> Surfaces:
    """``surfaces`` with its couplings aligned to ``previous`` (unchanged at the first step or when off)."""
    if previous is None or not options.align_couplings:
        return surfaces
    return dataclasses.replace(surfaces, couplings=align_couplings(surfaces.couplings, previous.couplings))


# ------------------------------------------------------------------------------------------ electrons
def velocity_coupling(velocities: np.ndarray, couplings: np.ndarray) -> np.ndarray:
    """``T[k, j] = v·d[k, j]`` in 1/fs (real, antisymmetric)."""
    return np.einsum("nx,kjnx->kj", velocities, couplings)


def substep_propagators(energies: tuple[np.ndarray, np.ndarray], coupling: tuple[np.ndarray, np.ndarray],
                        dt: float, substeps: int) -> np.ndarray:
    """Unitary propagators ``exp(−i H δt / ħ)`` of each sub-step, ``H = E − iħ v·d`` taken at the sub-step's
    midpoint on a straight line between the step's ends (``[substeps, S, S]``)."""
    fractions = (np.arange(substeps) + 0.5) / substeps
    e = energies[0][None] + fractions[:, None] * (energies[1] - energies[0])[None]
    t = coupling[0][None] + fractions[:, None, None] * (coupling[1] - coupling[0])[None]
    hamiltonians = np.einsum("sk,kj->skj", e, np.eye(len(energies[0]))) - 1j * HBAR_EV_FS * t
    values, vectors = np.linalg.eigh(hamiltonians)
    phases = np.exp(-1j * values * (dt / substeps) / HBAR_EV_FS)
    return np.einsum("sij,sj,skj->sik", vectors, phases, vectors.conj())


def population_flux(amplitudes: np.ndarray, coupling: np.ndarray) -> np.ndarray:
    """Tully's ``b[j, k] = −2 Re(c_j* c_k v·d[j, k])`` (1/fs): the rate at which population flows k → j."""
    return -2.0 * np.real(np.conj(amplitudes)[:, None] * amplitudes[None, :] * coupling)


def propagate_amplitudes(amplitudes: np.ndarray, energies: tuple[np.ndarray, np.ndarray],
                         coupling: tuple[np.ndarray, np.ndarray], options: HoppingOptions
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Amplitudes after one nuclear step, and the time-integrated flux ``∫ b[j, k] dt`` over it (midpoint
    rule per sub-step, the flux at the sub-step's mean of start and end amplitudes)."""
    fractions = (np.arange(options.substeps) + 0.5) / options.substeps
    integrated = np.zeros((len(amplitudes), len(amplitudes)))
    propagators = substep_propagators(energies, coupling, options.dt, options.substeps)
    for fraction, propagator in zip(fractions, propagators, strict=True):
        after = propagator @ amplitudes
        t = coupling[0] + fraction * (coupling[1] - coupling[0])
        integrated += population_flux(0.5 * (amplitudes + after), t) * (options.dt / options.substeps)
        amplitudes = after
    return amplitudes, integrated


def hop_probabilities(integrated_flux: np.ndarray, start_populations: np.ndarray, active: int) -> np.ndarray:
    """Fewest-switches probabilities ``g[j] = max(0, ∫ b[j, active] dt) / |c_active|²`` (population at the
    step's start); ``g[active] = 0``; scaled down to sum at most 1.

    >>> hop_probabilities(np.array([[0.0, 0.1], [-0.1, 0.0]]), np.array([0.5, 0.5]), 1).round(3).tolist()
    [0.2, 0.0]
    """
    flux = np.maximum(integrated_flux[:, active], 0.0)
    flux[active] = 0.0
    g = flux / max(float(start_populations[active]), 1e-300)
    return g / max(1.0, float(g.sum()))


def choose_target(probabilities: np.ndarray, draw: float) -> int | None:
    """The state whose slot of the cumulative probabilities holds the uniform ``draw``, or None (no hop).

    >>> choose_target(np.array([0.0, 0.3, 0.2]), 0.4), choose_target(np.array([0.0, 0.3, 0.2]), 0.6)
    (2, None)
    """
    cumulative = np.cumsum(probabilities)
    index = int(np.searchsorted(cumulative, draw, side="right"))
    return index if index < len(probabilities) else None


# ----------------------------------------------------------------------------------------------- hops
def rescaling_factor(masses: np.ndarray, velocities: np.ndarray, direction: np.ndarray,
                     energy_gain: float) -> float | None:
    """γ with ``v' = v − γ d / m`` and ½ Σ m v'² = ½ Σ m v² + ``energy_gain`` (eV), the root of smaller
    magnitude of ``a γ² − b γ − gain = 0``; None when the discriminant is negative (a frustrated hop).

    >>> round(rescaling_factor(np.ones(1), np.array([[1.0, 0, 0]]), np.array([[1.0, 0, 0]]), 0.0), 6)
    0.0
    """
    a = 0.5 * float(np.sum(direction**2 / masses[:, None]))
    b = float(np.sum(velocities * direction))
    discriminant = b * b + 4.0 * a * energy_gain / KINETIC_EV
    if a == 0.0 or discriminant < 0.0:
        return None
    return float((b - np.sign(b or 1.0) * np.sqrt(discriminant)) / (2.0 * a))


def reflected_velocities(masses: np.ndarray, velocities: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Velocities with their (mass-weighted) component along ``direction`` reversed; kinetic energy kept."""
    a = 0.5 * float(np.sum(direction**2 / masses[:, None]))
    if a == 0.0:
        return velocities
    gamma = float(np.sum(velocities * direction)) / a
    return velocities - gamma * direction / masses[:, None]


def attempt_hop(phase: Phase, target: int, masses: np.ndarray, options: HoppingOptions) -> tuple[Phase, Hop]:
    """Hop to ``target`` with velocities rescaled along ``d[active, target]``, or keep the state (frustrated:
    velocities kept, or their component along ``d`` reversed when ``options.frustrated == "reverse"``)."""
    before = total_energy(phase, masses)
    direction = phase.surfaces.couplings[phase.active, target]
    gain = float(phase.surfaces.energies[phase.active] - phase.surfaces.energies[target])
    gamma = rescaling_factor(masses, phase.velocities, direction, gain)
    if gamma is not None:
        hopped = dataclasses.replace(phase, velocities=phase.velocities - gamma * direction / masses[:, None],
                                     active=target)
    elif options.frustrated == "reverse":
        hopped = dataclasses.replace(phase, velocities=reflected_velocities(masses, phase.velocities, direction))
    else:
        hopped = phase
    hop = Hop(phase.time, phase.active, target, gamma is None, before, total_energy(hopped, masses))
    return hopped, hop


# -------------------------------------------------------------------------------------- decoherence
def decohered(amplitudes: np.ndarray, energies: np.ndarray, active: int, kinetic: float,
              options: HoppingOptions) -> np.ndarray:
    """Granucci–Persico energy-based decoherence: every inactive amplitude decays by ``exp(−dt/τ_j)``,
    ``τ_j = ħ / |E_j − E_active| · (1 + C / E_kin)``, and the active one takes up the lost population.

    >>> c = decohered(np.array([0.6, 0.8], complex), np.array([0.0, 1.0]), 1, 1.0, HoppingOptions(dt=1.0))
    >>> round(float(np.sum(abs(c) ** 2)), 12), bool(abs(c[0]) < 0.6)
    (1.0, True)
    """
    if options.decoherence_ev is None or kinetic <= 0.0:
        return amplitudes
    gaps = np.abs(energies - energies[active])
    tau = HBAR_EV_FS / np.maximum(gaps, 1e-300) * (1.0 + options.decoherence_ev / kinetic)
    decay = np.exp(-options.dt / tau)
    decay[active] = 1.0
    result = amplitudes * decay
    rest = float(np.sum(np.abs(result) ** 2)) - abs(result[active]) ** 2
    if abs(amplitudes[active]) > 0.0:
        result[active] *= np.sqrt(max(1.0 - rest, 0.0)) / abs(amplitudes[active])
    return result


# ---------------------------------------------------------------------------------------------- steps
def accelerations(surfaces: Surfaces, active: int, masses: np.ndarray) -> np.ndarray:
    """The active state's forces over the masses, in Å/fs²."""
    return surfaces.forces[active] / masses[:, None] * ACCELERATION


def nuclear_step(phase: Phase, surfaces_fn: SurfacesFn, masses: np.ndarray,
                 options: HoppingOptions) -> tuple[np.ndarray, np.ndarray, Surfaces]:
    """Velocity Verlet on the active state: new positions, velocities and (aligned) surfaces."""
    dt = options.dt
    before = accelerations(phase.surfaces, phase.active, masses)
    positions = phase.positions + phase.velocities * dt + 0.5 * before * dt * dt
    surfaces = aligned(surfaces_fn(positions), phase.surfaces, options)
    velocities = phase.velocities + 0.5 * (before + accelerations(surfaces, phase.active, masses)) * dt
    return positions, velocities, surfaces


def step(phase: Phase, surfaces_fn: SurfacesFn, masses: np.ndarray, options: HoppingOptions,
         rng: np.random.Generator) -> tuple[Phase, Hop | None]:
    """One nuclear step, the amplitudes across it, one hop decision (one uniform draw, always taken, so the
    random stream does not depend on the path) and the decoherence correction."""
    positions, velocities, surfaces = nuclear_step(phase, surfaces_fn, masses, options)
    energies = (phase.surfaces.energies, surfaces.energies)
    coupling = (velocity_coupling(phase.velocities, phase.surfaces.couplings),
                velocity_coupling(velocities, surfaces.couplings))
    amplitudes, flux = propagate_amplitudes(phase.amplitudes, energies, coupling, options)
    moved = Phase(phase.time + options.dt, positions, velocities, amplitudes, phase.active, surfaces)
    target = choose_target(hop_probabilities(flux, np.abs(phase.amplitudes) ** 2, phase.active), rng.random())
    hop = None
    if target is not None:
        moved, hop = attempt_hop(moved, target, masses, options)
    kinetic = kinetic_energy(masses, moved.velocities)
    moved = dataclasses.replace(moved, amplitudes=decohered(moved.amplitudes, surfaces.energies, moved.active,
                                                            kinetic, options))
    check_norm(moved.amplitudes, options.norm_tolerance, moved.time)
    return moved, hop


class NormError(RuntimeError):
    """The electronic amplitudes lost their normalisation (a too long step or a broken coupling)."""


def check_norm(amplitudes: np.ndarray, tolerance: float, time: float) -> None:
    """Raise :class:`NormError` when Σ|c|² differs from 1 by more than ``tolerance``."""
    error = abs(float(np.sum(np.abs(amplitudes) ** 2)) - 1.0)
    if error > tolerance:
        raise NormError(f"|sum |c|^2 - 1| = {error:.3g} at t = {time:.3f} fs (tolerance {tolerance:g})")


# ------------------------------------------------------------------------------------------ records
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """One FSSH trajectory, every step recorded: times (fs), positions (Å), velocities (Å/fs), active state,
    populations |c|², state energies (eV), total energy (eV), the attempted hops and the seed."""

    times: np.ndarray  # [T]
    positions: np.ndarray  # [T, N, 3]
    velocities: np.ndarray  # [T, N, 3]
    active: np.ndarray  # [T] int
    populations: np.ndarray  # [T, S]
    energies: np.ndarray  # [T, S]
    total_energy: np.ndarray  # [T]
    hops: tuple[Hop, ...]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-ready)."""
        arrays = {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        return {**arrays, "hops": [dataclasses.asdict(h) for h in self.hops], "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        arrays = {k: np.asarray(v) for k, v in data.items() if k not in ("hops", "seed")}
        return cls(**arrays, hops=tuple(Hop(**h) for h in data["hops"]), seed=int(data["seed"]))

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` or ``.npz`` (by suffix) atomically: a temporary file, fsynced, then renamed."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            if path.suffix == ".npz":
                np.savez(handle, record=np.array(json.dumps(self.to_dict())))
            else:
                handle.write(json.dumps(self.to_dict()).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        path = Path(path)
        if path.suffix == ".npz":
            with np.load(path) as data:
                return cls.from_dict(json.loads(str(data["record"])))
        return cls.from_dict(json.loads(path.read_text()))


def _record(rows: list[tuple[Any, ...]], phase: Phase, masses: np.ndarray) -> None:
    rows.append((phase.time, phase.positions, phase.velocities, phase.active, np.abs(phase.amplitudes) ** 2,
                 phase.surfaces.energies, total_energy(phase, masses)))


def _trajectory(rows: list[tuple[Any, ...]], hops: list[Hop], seed: int) -> Trajectory:
    times, positions, velocities, active, populations, energies, total = (np.array(c) for c in zip(*rows, strict=True))
    return Trajectory(times, positions, velocities, active, populations, energies, total, tuple(hops), seed)


def start_amplitudes(states: int, active: int) -> np.ndarray:
    """All population on ``active``."""
    amplitudes = np.zeros(states, dtype=complex)
    amplitudes[active] = 1.0
    return amplitudes


def hop_generator(seed: int) -> np.random.Generator:
    """The hop draws' random stream of a trajectory seed (stream 1; initial conditions use stream 0)."""
    return np.random.default_rng([seed, 1])


def run_trajectory(surfaces_fn: SurfacesFn, positions: np.ndarray, velocities: np.ndarray, masses: np.ndarray,
                   *, steps: int, options: HoppingOptions = HoppingOptions(), active: int = 1,
                   amplitudes: np.ndarray | None = None, seed: int = 0) -> Trajectory:
    """``steps`` FSSH steps from ``positions`` (Å) and ``velocities`` (Å/fs), starting on ``active`` (with
    all population there unless ``amplitudes`` are given); the hop draws come from :func:`hop_generator`."""
    masses = np.asarray(masses, dtype=float)
    surfaces = surfaces_fn(np.asarray(positions, dtype=float))
    check_surfaces(surfaces, len(masses))
    if amplitudes is None:
        amplitudes = start_amplitudes(surfaces.states, active)
    phase = Phase(0.0, np.asarray(positions, float), np.asarray(velocities, float),
                  np.asarray(amplitudes, complex), active, surfaces)
    rng, rows, hops = hop_generator(seed), list[tuple[Any, ...]](), list[Hop]()
    _record(rows, phase, masses)
    for _ in range(steps):
        phase, hop = step(phase, surfaces_fn, masses, options, rng)
        hops += [hop] if hop else []
        _record(rows, phase, masses)
    return _trajectory(rows, hops, seed)


# ----------------------------------------------------------------------------------------- ensembles
InitialConditions = Callable[[int], tuple[np.ndarray, np.ndarray]]


def run_ensemble(make_surfaces: Callable[[], SurfacesFn], initial: InitialConditions, masses: np.ndarray,
                 seeds: Sequence[int], *, steps: int, options: HoppingOptions = HoppingOptions(),
                 active: int = 1) -> list[Trajectory]:
    """One trajectory per seed: ``initial(seed)`` gives its positions and velocities, ``make_surfaces()`` a
    fresh surfaces callable (one that follows orbitals must not carry them across trajectories)."""
    runs = []
    for seed in seeds:
        positions, velocities = initial(seed)
        runs.append(run_trajectory(make_surfaces(), positions, velocities, masses, steps=steps,
                                   options=options, active=active, seed=seed))
    return runs


@dataclasses.dataclass(frozen=True)
class EnsemblePopulations:
    """Over an ensemble: the fraction of trajectories on each state, and the mean |c|², per time."""

    times: np.ndarray  # [T] fs
    fractions: np.ndarray  # [T, S]
    mean_populations: np.ndarray  # [T, S]
    trajectories: int


def ensemble_populations(trajectories: Sequence[Trajectory]) -> EnsemblePopulations:
    """Active-state fractions and mean populations over the common length of ``trajectories``."""
    length = min(len(t.times) for t in trajectories)
    states = trajectories[0].populations.shape[1]
    active = np.array([t.active[:length] for t in trajectories])
    fractions = np.stack([(active == s).mean(axis=0) for s in range(states)], axis=1)
    mean = np.mean([t.populations[:length] for t in trajectories], axis=0)
    return EnsemblePopulations(trajectories[0].times[:length], fractions, mean, len(trajectories))


def plot_population(populations: EnsemblePopulations, path: str | Path, state: int = 1) -> Path | None:
    """Write the decay of ``state`` (fraction of trajectories and mean |c|²) as PNG or SVG (by suffix);
    returns None, saying why on stderr, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_population: matplotlib is not installed; no plot written", file=sys.stderr)
        return None
    figure, axes = plt.subplots(figsize=(5, 3.2))
    axes.plot(populations.times, populations.fractions[:, state], label=f"fraction on S{state}")
    axes.plot(populations.times, populations.mean_populations[:, state], "--", label=f"mean |c$_{state}$|²")
    axes.set(xlabel="time (fs)", ylabel="population", ylim=(-0.02, 1.02),
             title=f"S{state} population, {populations.trajectories} trajectories")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
