"""An ASE calculator for the potentials of ``fusionlang.models``: energies (eV) and forces (eV/Å) of
finite molecules, for molecular dynamics, relaxations and anything else ASE drives.

ASE is an optional dependency: this module imports it, ``import fusionlang`` does not.

>>> import torch
>>> from ase.build import molecule
>>> from fusionlang.atoms import Statistics
>>> from fusionlang.models import MaceConfig, MacePotential
>>> model = MacePotential(MaceConfig(channels=2, lmax=1, interactions=1, radial_mlp=(4,)),
...                       Statistics(avg_num_neighbors=8.0), dtype=torch.float64)
>>> atoms = molecule("CH3CH2OH")
>>> atoms.calc = FusionCalculator(model, atomic_numbers=(1, 6, 8))
>>> isinstance(atoms.get_potential_energy(), float), atoms.get_forces().shape
(True, (9, 3))

A trained model saved with ``torch.save(potential_state(model, atomic_numbers), path)`` (as the
trainer's ``best.pt``) loads with ``FusionCalculator.from_checkpoint(path)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols

from .atoms import Batch, Structure, collate
from .models import MacePotential, potential_from_state

__all__ = ["FusionCalculator"]


class FusionCalculator(Calculator):
    """ASE calculator of a :class:`~fusionlang.models.MacePotential`.

    ``atomic_numbers[k]`` is the element of the model's species index ``k`` (as saved by
    ``potential_state``); atoms of any other element are refused with a ``ValueError``. The
    neighbour graph has every pair within the model's ``r_max`` and no periodic images, so atoms
    with periodic boundary conditions are refused with a ``NotImplementedError`` (a cell with
    ``pbc=False`` is ignored). ``device`` moves the model there (in place); by default the
    calculator runs where the model's weights are. ``free_energy`` equals ``energy`` (no electronic
    temperature).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: MacePotential, atomic_numbers: Sequence[int], *,
                 device: str | torch.device | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        numbers = tuple(int(z) for z in atomic_numbers)
        if len(numbers) != model.config.species:
            raise ValueError(f"the model has {model.config.species} species but {len(numbers)} atomic numbers "
                             f"were given: {list(numbers)}")
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"atomic numbers repeat: {list(numbers)}")
        self.model = model if device is None else model.to(device)
        self.atomic_numbers = numbers
        self.device = next(model.parameters()).device
        self._species = {z: k for k, z in enumerate(numbers)}

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device | None = None,
                        **kwargs: Any) -> FusionCalculator:
        """The calculator of a model saved with ``torch.save(potential_state(model, atomic_numbers), path)``."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        model, numbers = potential_from_state(state)
        return cls(model, numbers, device=device, **kwargs)

    def batch(self, atoms: Any) -> Batch:
        """The one-structure batch of ``atoms`` (species indices, neighbour graph within ``r_max``)."""
        if atoms.pbc.any():
            raise NotImplementedError(
                f"periodic boundary conditions (pbc={atoms.pbc.tolist()}) are not supported: the neighbour "
                "graph has no periodic images; use a finite molecule with pbc=False")
        unknown = sorted({int(z) for z in atoms.numbers} - set(self._species))
        if unknown:
            names = ", ".join(chemical_symbols[z] for z in unknown)
            raise ValueError(f"elements {names} (atomic numbers {unknown}) are not among the model's elements "
                             f"{list(self.atomic_numbers)}")
        positions = torch.tensor(np.asarray(atoms.positions), dtype=torch.float64)
        species = torch.tensor([self._species[int(z)] for z in atoms.numbers], dtype=torch.long)
        structure = Structure(positions, species, 0.0, torch.zeros_like(positions))
        batch = collate([structure], self.model.config.r_max)
        return Batch(**{f.name: getattr(batch, f.name).to(self.device) for f in fields(batch)})

    def calculate(self, atoms: Any = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.model.energy_and_forces(self.batch(self.atoms))
        value = float(energy[0])
        self.results = {"energy": value, "free_energy": value,
                        "forces": forces.detach().to("cpu", torch.float64).numpy()}
