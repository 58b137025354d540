"""The MACE potential of fusionlang.models: symmetries of energies and forces (float64), forces
against finite differences and gradcheck, saving and loading, matched parameter counts, and the
embedded diagrams agree with examples/. Training is tested in test_training.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fusionlang import api
from fusionlang.atoms import Batch, collate, fit_statistics
from fusionlang.models import (
    MaceConfig,
    MacePotential,
    interaction_source,
    match_parameters,
    parameter_count,
    potential_from_state,
    potential_state,
    product_basis_source,
)
from fusionlang.testing import random_rotation, representation
from fusionlang.toydata import make_dataset

ROOT = Path(__file__).resolve().parent.parent
TINY = MaceConfig(channels=4, lmax=2, hidden_lmax=1, interactions=2, bessel=4, radial_mlp=(8, 8), readout_hidden=4)
RELATIVE = 1e-10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> list:
    return make_dataset(8, seed=1)


@pytest.fixture(scope="module", params=[False, True], ids=["mace", "fusion"])
def model(request: pytest.FixtureRequest, data: list) -> MacePotential:
    torch.manual_seed(0)
    return MacePotential(replace(TINY, fusion_block=request.param), fit_statistics(data), dtype=torch.float64)


@pytest.fixture(scope="module")
def batch(data: list) -> Batch:
    return collate(data[:3])


def close(a: torch.Tensor, b: torch.Tensor, relative: float = RELATIVE) -> bool:
    return float((a - b).abs().max()) <= relative * max(1.0, float(b.abs().max()))


def test_energies_and_forces_are_nontrivial(model: MacePotential, batch: Batch) -> None:
    energy, forces = model.energy_and_forces(batch)
    assert energy.dtype == forces.dtype == torch.float64
    assert energy.shape == (3,) and forces.shape == batch.positions.shape
    references = torch.zeros(3, dtype=torch.float64).index_add(0, batch.batch, model.atomic_energies[batch.species])
    assert float((energy - references).abs().min()) > 1e-3
    assert float(forces.abs().max()) > 1e-3


@pytest.mark.parametrize("inversion", [False, True], ids=["rotation", "reflection"])
def test_energy_invariant_and_forces_equivariant_under_o3(model: MacePotential, batch: Batch, inversion: bool) -> None:
    energy, forces = model.energy_and_forces(batch)
    generator = torch.Generator().manual_seed(7)
    for _ in range(3):
        element = replace(random_rotation("O3", generator, parity=False), inversion=inversion)
        matrix = representation("1o", element, torch.float64)  # acts on row vectors as x @ D.T
        assert inversion == bool(torch.linalg.det(matrix) < 0)
        moved_energy, moved_forces = model.energy_and_forces(replace(batch, positions=batch.positions @ matrix.T))
        assert close(moved_energy, energy)
        assert close(moved_forces, forces @ matrix.T)


def test_translation_invariance(model: MacePotential, batch: Batch) -> None:
    energy, forces = model.energy_and_forces(batch)
    generator = torch.Generator().manual_seed(8)
    shifts = 10 * torch.randn(batch.num_structures, 3, generator=generator, dtype=torch.float64)
    moved = replace(batch, positions=batch.positions + shifts[batch.batch])  # one shift per structure
    moved_energy, moved_forces = model.energy_and_forces(moved)
    assert close(moved_energy, energy)
    assert close(moved_forces, forces)


def test_permutation_invariance(model: MacePotential, batch: Batch) -> None:
    """Relabel the atoms (across structures) and shuffle the edges: energies stay, forces follow."""
    energy, forces = model.energy_and_forces(batch)
    generator = torch.Generator().manual_seed(9)
    order = torch.randperm(len(batch.species), generator=generator)     # new atom k is old atom order[k]
    new_label = torch.empty_like(order)
    new_label[order] = torch.arange(len(order))
    shuffle = torch.randperm(batch.edge_index.shape[1], generator=generator)
    permuted = replace(batch, positions=batch.positions[order], species=batch.species[order],
                       batch=batch.batch[order], forces=batch.forces[order],
                       edge_index=new_label[batch.edge_index[:, shuffle]])
    moved_energy, moved_forces = model.energy_and_forces(permuted)
    assert close(moved_energy, energy)
    assert close(moved_forces, forces[order])


def test_forces_are_minus_the_finite_difference_gradient(model: MacePotential, batch: Batch) -> None:
    _, forces = model.energy_and_forces(batch)
    step = 1e-5
    for atom in (0, 4, len(batch.species) - 1):
        structure = int(batch.batch[atom])
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                positions = batch.positions.clone()
                positions[atom, axis] += sign * step
                with torch.no_grad():
                    energies.append(float(model(positions, batch.species, batch.edge_index, batch.batch, 3)[structure]))
            derivative = (energies[0] - energies[1]) / (2 * step)
            assert abs(-derivative - float(forces[atom, axis])) < 1e-7 * max(1.0, float(forces.abs().max()))


@pytest.mark.parametrize("fusion", [False, True], ids=["mace", "fusion"])
def test_gradcheck(data: list, fusion: bool) -> None:
    """First and second derivatives of the energy (training on forces needs the second)."""
    torch.manual_seed(1)
    config = MaceConfig(channels=2, lmax=2, hidden_lmax=1, interactions=2, bessel=3, radial_mlp=(4,),
                        fusion_block=fusion)
    tiny = MacePotential(config, fit_statistics(data), dtype=torch.float64)
    small = collate(data[:1])

    def energy(positions: torch.Tensor) -> torch.Tensor:
        return tiny(positions, small.species, small.edge_index, small.batch, 1)

    positions = small.positions.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(energy, (positions,))
    assert torch.autograd.gradgradcheck(energy, (positions,))


# -- the embedded diagrams are the examples' ---------------------------------------------------------

def test_embedded_interaction_and_product_basis_are_the_examples() -> None:
    example = api.compile(ROOT / "examples" / "mace.fusion")
    interaction = api.compile(interaction_source("16x(0e + 1o)", 3))
    product = api.compile(product_basis_source("16x(0e + 1o + 2e + 3o)", "16x(0e + 1o)", 3))
    assert interaction.diagram("mace_interaction") == example.diagram("mace_interaction")
    assert product.diagram("mace_product_basis") == example.diagram("mace_product_basis")


def test_embedded_fusion_statements_are_the_examples() -> None:
    example = api.compile(ROOT / "examples" / "fusion_block.fusion").diagram("mace_fusion_block")
    ours = api.compile(product_basis_source("8x(0e + 1o + 2e)", "8x(0e + 1o)", 3, hidden="8x(0e + 1o + 2e)",
                                            fusion_lmax=2)).diagram("mace_product_basis")
    unindexed = [replace(s, index=0) for s in ours.statements]
    # every statement of the example but the density's own interaction (ours comes from mace_interaction)
    expected = [replace(s, index=0) for s in example.statements if s.target != "A"]
    assert len(expected) == 4 and all(s in unindexed for s in expected)
    assert ours.leg("m") == example.leg("m")


def test_fusion_block_needs_the_harmonics() -> None:
    with pytest.raises(ValueError, match="fusion_lmax"):
        MaceConfig(lmax=1, fusion_block=True)


# -- saving, matching parameters, settings -----------------------------------------------------------

def test_state_round_trip_gives_the_same_energies(model: MacePotential, batch: Batch) -> None:
    again, numbers = potential_from_state(potential_state(model, (1, 6, 8)))
    assert numbers == (1, 6, 8) and again.config == model.config and again.statistics == model.statistics
    assert torch.equal(again.energy_and_forces(batch)[0], model.energy_and_forces(batch)[0])


def test_state_of_something_else_is_refused() -> None:
    with pytest.raises(ValueError, match="not a saved fusionlang potential"):
        potential_from_state({"kind": "other"})


def test_match_parameters_hits_the_count_exactly() -> None:
    fusion = MacePotential(replace(TINY, fusion_block=True), dtype=torch.float64)
    matched = match_parameters(TINY, parameter_count(fusion))
    assert parameter_count(MacePotential(matched, dtype=torch.float64)) == parameter_count(fusion)
    assert not matched.fusion_block and matched.radial_mlp[1:] == TINY.radial_mlp[1:]


def test_the_skip_connection_adds_parameters_and_changes_energies(batch: Batch, data: list) -> None:
    torch.manual_seed(0)
    with_skip = MacePotential(TINY, fit_statistics(data), dtype=torch.float64)
    torch.manual_seed(0)
    without = MacePotential(replace(TINY, residual=False), fit_statistics(data), dtype=torch.float64)
    assert parameter_count(with_skip) > parameter_count(without)
    assert not torch.allclose(with_skip.energy_and_forces(batch)[0], without.energy_and_forces(batch)[0])


def test_atomic_energies_stay_float64_in_a_float32_model(data: list, batch: Batch) -> None:
    model = MacePotential(TINY, fit_statistics(data), dtype=torch.float32)
    energy, forces = model.energy_and_forces(batch)
    assert model.atomic_energies.dtype == energy.dtype == torch.float64 and forces.dtype == torch.float32


def test_unknown_settings_are_named() -> None:
    with pytest.raises(ValueError, match="unknown model setting.*'chanels'"):
        MaceConfig.from_dict({"chanels": 4})
    assert MaceConfig.from_dict({"radial_mlp": [4, 4]}).radial_mlp == (4, 4)
