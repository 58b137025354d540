"""Atomic structures for the potentials of ``fusionlang.models``: labelled structures, batches
with their neighbour graphs, the data set constants a model is built with, and extended XYZ files
(as written by ``fusionlang.datagen`` and read by ASE and mace-torch).

>>> s = Structure(torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64), torch.tensor([0, 1]), -1.0,
...               torch.zeros(2, 3, dtype=torch.float64))
>>> collate([s, s]).edge_index.shape
torch.Size([2, 4])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

__all__ = ["Batch", "StateBatch", "StateStructure", "Statistics", "Structure", "atomic_numbers_in", "collate",
           "collate_states", "fit_statistics", "neighbour_graph", "read_state_structures", "read_structures"]


@dataclass(frozen=True)
class Statistics:
    """Data set constants the model is built with (as MACE): the mean number of neighbours (the
    sums over neighbours are divided by it), per-species reference energies ``E0`` (eV), the
    energy scale (the RMS of the force components, eV/Å) and shift (the mean energy per atom left
    after ``E0``, eV): mace-torch's ``ScaleShiftMACE`` constants."""

    avg_num_neighbors: float = 1.0
    atomic_energies: tuple[float, ...] = ()
    scale: float = 1.0
    shift: float = 0.0


@dataclass(frozen=True)
class Structure:
    """One labelled structure: positions ``[n, 3]`` (Å), species ``[n]``, energy (eV), forces (eV/Å)."""

    positions: torch.Tensor
    species: torch.Tensor
    energy: float
    forces: torch.Tensor


@dataclass(frozen=True)
class StateStructure(Structure):
    """A structure labelled on several electronic states: ``energies`` ``[S]`` (eV), ``state_forces``
    ``[S, n, 3]`` (eV/Å) and the S0–S1 derivative coupling ``coupling`` ``[n, 3]`` (1/Å; its sign is
    arbitrary). ``energy`` and ``forces`` are the ground state's, so :func:`fit_statistics` and
    :func:`collate` read it as a ground-state structure."""

    energies: torch.Tensor
    state_forces: torch.Tensor
    coupling: torch.Tensor


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


@dataclass(frozen=True)
class StateBatch(Batch):
    """A :class:`Batch` of :class:`StateStructure`: also ``energies`` ``[S, states]``, ``state_forces``
    ``[states, N, 3]`` and ``coupling`` ``[N, 3]``."""

    energies: torch.Tensor
    state_forces: torch.Tensor
    coupling: torch.Tensor


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


def collate_states(structures: Sequence[StateStructure], r_max: float = 5.0) -> StateBatch:
    """One :class:`StateBatch` of multi-state ``structures`` (float64)."""
    base = collate(structures, r_max)
    return StateBatch(**{f.name: getattr(base, f.name) for f in fields(base)},
                      energies=torch.stack([s.energies for s in structures]),
                      state_forces=torch.cat([s.state_forces for s in structures], dim=1),
                      coupling=torch.cat([s.coupling for s in structures]))


def fit_statistics(data: Sequence[Structure], r_max: float = 5.0, species: int = 3) -> Statistics:
    """Mean neighbour count, least-squares per-species energies, RMS force component and mean
    residual energy per atom of ``data``. Where the data cannot tell the species' energies apart
    (one composition, as a molecular dynamics set), least squares gives the smallest-norm split.
    Where it has no forces (energies-only labels), the scale is the RMS residual energy per atom."""
    batch = collate(data, r_max)
    counts = torch.zeros(batch.num_structures, species, dtype=torch.float64)
    counts.index_put_((batch.batch, batch.species), torch.ones(len(batch.species), dtype=torch.float64),
                      accumulate=True)
    energies = torch.linalg.pinv(counts) @ batch.energy  # smallest norm where rank-deficient
    residual = (batch.energy - counts @ energies) / batch.num_atoms
    scale = float(batch.forces.pow(2).mean().sqrt()) or float(residual.pow(2).mean().sqrt())
    return Statistics(avg_num_neighbors=batch.edge_index.shape[1] / len(batch.species),
                      atomic_energies=tuple(float(e) for e in energies), scale=scale or 1.0,
                      shift=float(residual.mean()))


def _frames(path: str | Path) -> list:
    """Every frame of an extended XYZ file (``.xz`` compressed or not), through ASE."""
    import io
    import lzma

    from ase.io import read  # ASE: an optional dependency, imported only to read files

    # ASE reads .xz through a seekable stream ~65x slower than decompressing first (6.9 s vs 0.10 s
    # for the 500 frames of data/ethanol/test.extxyz.xz).
    opener = lzma.open if str(path).endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        frames = read(io.StringIO(handle.read()), index=":", format="extxyz")
    return frames if isinstance(frames, list) else [frames]


def atomic_numbers_in(*paths: str | Path) -> tuple[int, ...]:
    """The sorted atomic numbers present in ``paths``: species index k is the k-th of them."""
    return tuple(sorted({int(z) for path in paths for frame in _frames(path) for z in frame.numbers}))


def read_structures(path: str | Path, atomic_numbers: Sequence[int], energy_key: str = "REF_energy",
                    forces_key: str = "REF_forces") -> list[Structure]:
    """The labelled structures of an extended XYZ file, species numbered by their place in
    ``atomic_numbers`` (energies in eV, forces in eV/Å, as ``fusionlang.datagen`` writes them)."""
    return [Structure(positions, species, float(frame.info[energy_key]),
                      torch.tensor(frame.arrays[forces_key], dtype=torch.float64))
            for frame, positions, species in _geometries(path, atomic_numbers)]


def read_state_structures(path: str | Path, atomic_numbers: Sequence[int], states: int = 2,
                          energy_key: str = "REF_energy", forces_key: str = "REF_forces",
                          coupling_key: str = "REF_nac", energies_only: bool = False) -> list[StateStructure]:
    """The multi-state structures of an extended XYZ file: state s's energy is ``{energy_key}_S{s}``
    (info, eV), its forces ``{forces_key}_S{s}`` (arrays, eV/Å), the S0–S1 coupling ``coupling_key``
    (arrays, 1/Å), as ``scripts/make_excited_dataset.py`` writes them (docs/excited.md).
    ``energies_only`` (stilbene's labels): forces and couplings are not read and left zero."""
    structures = []
    for frame, positions, species in _geometries(path, atomic_numbers):
        energies = torch.tensor([float(frame.info[f"{energy_key}_S{s}"]) for s in range(states)], dtype=torch.float64)
        if energies_only:
            forces = torch.zeros(states, *positions.shape, dtype=torch.float64)
            coupling = torch.zeros_like(positions)
        else:
            forces = torch.stack([torch.tensor(frame.arrays[f"{forces_key}_S{s}"], dtype=torch.float64)
                                  for s in range(states)])
            coupling = torch.tensor(frame.arrays[coupling_key], dtype=torch.float64)
        structures.append(StateStructure(positions, species, float(energies[0]), forces[0], energies, forces, coupling))
    return structures


def _geometries(path: str | Path, atomic_numbers: Sequence[int]) -> list[tuple]:
    """(frame, positions ``[n, 3]`` float64, species indices ``[n]``) of every frame of ``path``."""
    index = {int(z): k for k, z in enumerate(atomic_numbers)}
    found = []
    for number, frame in enumerate(_frames(path)):
        unknown = sorted({int(z) for z in frame.numbers} - set(index))
        if unknown:
            raise ValueError(f"{path}: frame {number} has atomic numbers {unknown}, not in {list(atomic_numbers)}")
        found.append((frame, torch.tensor(frame.positions, dtype=torch.float64),
                      torch.tensor([index[int(z)] for z in frame.numbers])))
    return found
