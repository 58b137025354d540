"""fusionlang.multistate: energies invariant and forces and couplings equivariant under O(3),
translation invariance, forces equal -∇E_s for every state, the sign-free coupling loss, training
on the ethylene sample through the trainer and a configuration, and matched parameter counts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fusionlang.atoms import StateBatch, atomic_numbers_in, collate_states, fit_statistics, read_state_structures
from fusionlang.models import match_parameters, parameter_count
from fusionlang.multistate import (
    MultiStateConfig,
    MultiStatePotential,
    StateEnergiesTask,
    fit_state_shifts,
    multistate_from_state,
    multistate_state,
    sign_free_squared_errors,
)
from fusionlang.testing import random_rotation, representation
from fusionlang.training import TrainSettings, run_config, train

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "ethylene" / "frames.extxyz.xz"
TINY = MultiStateConfig(species=2, channels=4, lmax=2, hidden_lmax=1, interactions=2, bessel=4, radial_mlp=(8, 8),
                        readout_hidden=4)
RELATIVE = 1e-10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> list:
    return read_state_structures(SAMPLE, atomic_numbers_in(SAMPLE))


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "fusion"])
def model(request: pytest.FixtureRequest, data: list) -> MultiStatePotential:
    torch.manual_seed(0)
    statistics = fit_statistics(data, TINY.r_max, 2)
    return MultiStatePotential(replace(TINY, fusion_block=request.param), statistics,
                               fit_state_shifts(data, statistics), dtype=torch.float64)


@pytest.fixture(scope="module")
def batch(data: list) -> StateBatch:
    return collate_states([data[3], data[30], data[37]])  # twisted, pyramidalised: no symmetry zeroes d


def close(a: torch.Tensor, b: torch.Tensor, relative: float = RELATIVE) -> bool:
    return float((a - b).abs().max()) <= relative * max(1.0, float(b.abs().max()))


def test_outputs_are_nontrivial(model: MultiStatePotential, batch: StateBatch) -> None:
    energies, forces, coupling = model.predict_states(batch)
    assert energies.shape == (3, 2) and forces.shape == (2, 18, 3) and coupling.shape == (18, 3)
    assert float((forces[0] - forces[1]).abs().max()) > 1e-3 and float(coupling.abs().max()) > 1e-4
    sums = torch.zeros(3, 3, dtype=torch.float64).index_add(0, batch.batch, coupling)
    assert float(sums.abs().max()) < 1e-12  # Σ_i d_i = 0 in every molecule


@pytest.mark.parametrize("inversion", [False, True], ids=["rotation", "reflection"])
def test_energies_invariant_forces_and_coupling_equivariant(model: MultiStatePotential, batch: StateBatch,
                                                            inversion: bool) -> None:
    energies, forces, coupling = model.predict_states(batch)
    generator = torch.Generator().manual_seed(7)
    for _ in range(2):
        element = replace(random_rotation("O3", generator, parity=False), inversion=inversion)
        matrix = representation("1o", element, torch.float64)
        moved = model.predict_states(replace(batch, positions=batch.positions @ matrix.T))
        assert close(moved[0], energies)
        assert close(moved[1], forces @ matrix.T)
        assert close(moved[2], coupling @ matrix.T)


def test_translation_invariance(model: MultiStatePotential, batch: StateBatch) -> None:
    before = model.predict_states(batch)
    shifts = 10 * torch.randn(3, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    after = model.predict_states(replace(batch, positions=batch.positions + shifts[batch.batch]))
    for a, b in zip(after, before, strict=True):
        assert close(a, b)


def test_forces_are_minus_the_finite_difference_gradient_of_every_state(model: MultiStatePotential,
                                                                         batch: StateBatch) -> None:
    _, forces, _ = model.predict_states(batch)
    step, scale = 1e-5, max(1.0, float(forces.abs().max()))
    for atom in (0, 7, 17):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                positions = batch.positions.clone()
                positions[atom, axis] += sign * step
                with torch.no_grad():
                    energies.append(model(positions, batch.species, batch.edge_index, batch.batch, 3)[0])
            derivative = (energies[0] - energies[1])[int(batch.batch[atom])] / (2 * step)  # [states]
            assert float((-derivative - forces[:, atom, axis]).abs().max()) < 1e-7 * scale


def test_sign_free_loss() -> None:
    generator = torch.Generator().manual_seed(3)
    target, predicted = (torch.randn(7, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    loss = sign_free_squared_errors(predicted, target, batch, 2)
    for flips in ([1, -1], [-1, 1], [-1, -1]):
        flipped = target * torch.tensor(flips, dtype=torch.float64)[batch, None]
        assert torch.equal(sign_free_squared_errors(predicted, flipped, batch, 2), loss)
    assert sign_free_squared_errors(target, target, batch, 2).abs().max() == 0
    assert sign_free_squared_errors(-target, target, batch, 2).abs().max() == 0
    mixed = target * torch.tensor([1, 1, 1, -1, -1, -1, -1], dtype=torch.float64)[:, None]
    assert sign_free_squared_errors(mixed, target, batch, 2).abs().max() == 0
    half = target * torch.tensor([1, -1, 1, 1, 1, 1, 1], dtype=torch.float64)[:, None]  # one atom flipped
    assert float(sign_free_squared_errors(half, target, batch, 2)[0]) > 0  # one sign per molecule, not per atom


def test_a_few_steps_reduce_the_loss(data: list, tmp_path: Path) -> None:
    torch.manual_seed(1)
    small = MultiStateConfig(species=2, channels=4, lmax=1, hidden_lmax=1, interactions=1, bessel=4, radial_mlp=(8,),
                             readout_hidden=4)
    statistics = fit_statistics(data, small.r_max, 2)
    model = MultiStatePotential(small, statistics, fit_state_shifts(data, statistics), dtype=torch.float64)
    settings = TrainSettings(max_epochs=4, batch_size=4, lr=0.02, ema_decay=None, progress=False, plots=False)
    result = train(model, data[:30], data[30:], settings, tmp_path, log=lambda line: None)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0], losses
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(state) == {"state_dict"}


def test_a_configuration_writes_per_state_metrics(tmp_path: Path) -> None:
    config = {"data": {"train": str(SAMPLE), "states": 2, "valid_fraction": 0.2, "train_size": 12},
              "model": {"channels": 4, "lmax": 1, "hidden_lmax": 1, "interactions": 1, "bessel": 4,
                        "radial_mlp": [8], "readout_hidden": 4, "fusion_block": True, "fusion_lmax": 1},
              "training": {"max_epochs": 2, "batch_size": 4, "progress": False, "plots": False}}
    result = run_config(config, out=tmp_path, log=lambda line: None)
    found = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("train", "valid"):
        for key in ("S0_energy_mae_meV", "S1_energy_mae_meV", "S0_forces_mae_meV_per_A", "S1_forces_mae_meV_per_A",
                    "coupling_mae_per_A", "coupling_rmse_per_A"):
            assert found[name][key] == pytest.approx(result.metrics[name][key]) and found[name][key] > 0
    assert "valid_S1_forces_mae_meV_per_A" in json.loads((tmp_path / "history.json").read_text())[0]
    model, numbers = multistate_from_state(torch.load(tmp_path / "best.pt", weights_only=True))
    assert numbers == (1, 6) and model.config.fusion_block and parameter_count(model) == found["parameters"]


def test_state_round_trip(model: MultiStatePotential, batch: StateBatch) -> None:
    again, _ = multistate_from_state(multistate_state(model, (1, 6)))
    for a, b in zip(again.predict_states(batch), model.predict_states(batch), strict=True):
        assert torch.equal(a, b)


def test_parameter_counts_with_and_without_the_fusion_block_match() -> None:
    def build(config: MultiStateConfig) -> MultiStatePotential:
        return MultiStatePotential(config, dtype=torch.float64)

    fusion = parameter_count(build(replace(TINY, fusion_block=True)))
    matched = match_parameters(TINY, fusion, build=build)
    count = parameter_count(build(matched))
    assert abs(count - fusion) <= 0.05 * fusion and not matched.fusion_block


def test_the_reader_maps_the_multi_state_keys(data: list) -> None:
    import io
    import lzma

    import ase.io

    with lzma.open(SAMPLE, "rt", encoding="utf-8") as handle:
        frame = ase.io.read(io.StringIO(handle.read()), index=30, format="extxyz")
    s = data[30]
    assert s.energies.tolist() == [frame.info["REF_energy_S0"], frame.info["REF_energy_S1"]]
    assert torch.equal(s.state_forces[1], torch.tensor(frame.arrays["REF_forces_S1"], dtype=torch.float64))
    assert torch.equal(s.coupling, torch.tensor(frame.arrays["REF_nac"], dtype=torch.float64))
    assert s.energy == s.energies[0] and torch.equal(s.forces, s.state_forces[0])


def test_shards_merge_into_the_predictions_of_one_process(model: MultiStatePotential, data: list) -> None:
    task = model.training_task
    chosen = data[:5]
    whole = task.predict(model, chosen, TINY.r_max, 2)
    shards = [(list(range(rank, 5, 2)), task.predict(model, chosen[rank::2], TINY.r_max, 2)) for rank in (0, 1)]
    merged = task.merge(shards)
    for name in whole.__dataclass_fields__:
        assert torch.allclose(getattr(merged, name), getattr(whole, name), rtol=0, atol=1e-12), name
    assert task.errors(merged) == pytest.approx(task.errors(whole))


def test_energies_only_reads_no_forces_and_trains_on_the_energies(tmp_path: Path) -> None:
    """Stilbene's labels are energies only: the reader leaves forces and couplings zero, the
    statistics take their scale from the energies, and StateEnergiesTask fits the states' energies
    (with no force in its loss, its errors or its predictions)."""
    energies_only = read_state_structures(SAMPLE, atomic_numbers_in(SAMPLE), energies_only=True)[:40]
    assert all(float(s.state_forces.abs().max()) == 0 and float(s.coupling.abs().max()) == 0 for s in energies_only)
    small = replace(TINY, lmax=1, interactions=1, radial_mlp=(8,), energies_only=True)
    statistics = fit_statistics(energies_only, small.r_max, 2)
    assert statistics.scale > 0
    torch.manual_seed(2)
    model = MultiStatePotential(small, statistics, fit_state_shifts(energies_only, statistics), dtype=torch.float64)
    assert isinstance(model.training_task, StateEnergiesTask)
    settings = TrainSettings(max_epochs=8, batch_size=4, lr=0.05, ema_decay=None, progress=False, plots=False)
    result = train(model, energies_only[:30], energies_only[30:], settings, tmp_path, log=lambda line: None)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0], losses
    found = model.training_task.errors(model.training_task.predict(model, energies_only[30:], small.r_max))
    assert {"S0_energy_mae_meV", "S1_energy_mae_meV", "gap_mae_meV"} <= set(found)
    assert not any("forces" in key or "coupling" in key for key in found)
    reference = torch.stack([s.energies for s in energies_only[30:]])
    predicted = model.training_task.predict(model, energies_only[30:], small.r_max).energy
    assert found["S1_energy_mae_meV"] == pytest.approx(float((predicted - reference)[:, 1].abs().mean()) * 1000)
