"""The ASE calculator (fusionlang.calculator) and the NVE script (scripts/nve_drift.py): the calculator
gives the model's energy and forces, its forces are minus the gradient of its energy, velocity Verlet
with it conserves energy as a second-order integrator does, checkpoints round-trip, and atoms it
cannot handle are refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from fusionlang.atoms import collate, fit_statistics
from fusionlang.calculator import FusionCalculator
from fusionlang.models import MaceConfig, MacePotential, potential_state
from fusionlang.toydata import make_dataset

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
NUMBERS = (1, 6, 8)  # toy species 0, 1, 2 as H, C, O
CONFIG = MaceConfig(channels=4, lmax=1, hidden_lmax=1, interactions=2, bessel=4, radial_mlp=(8,), readout_hidden=4)


@pytest.fixture(scope="module")
def data() -> list:
    return make_dataset(6, seed=3)


@pytest.fixture(scope="module")
def model(data: list) -> MacePotential:
    torch.manual_seed(0)
    return MacePotential(CONFIG, fit_statistics(data, CONFIG.r_max, species=3), dtype=torch.float64)


def as_atoms(structure) -> Atoms:  # noqa: ANN001 - a fusionlang.atoms.Structure
    return Atoms(numbers=[NUMBERS[int(k)] for k in structure.species], positions=structure.positions.numpy())


def test_matches_the_model(model: MacePotential, data: list) -> None:
    calculator = FusionCalculator(model, NUMBERS)
    for structure in data[:3]:
        atoms = as_atoms(structure)
        atoms.calc = calculator
        energy, forces = model.energy_and_forces(collate([structure], model.config.r_max))
        assert atoms.get_potential_energy() == pytest.approx(float(energy[0]), abs=1e-12)
        assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
        np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-12)
        assert atoms.get_forces().dtype == np.float64


def test_forces_are_minus_the_energy_gradient(model: MacePotential, data: list) -> None:
    atoms = as_atoms(data[0])
    atoms.calc = FusionCalculator(model, NUMBERS)
    forces = atoms.get_forces()
    h = 1e-5  # central differences: error ~ h² E''' ~ 1e-10 eV/Å, well above float64 rounding ~ 1e-16/h
    numeric = np.zeros_like(forces)
    for i in range(len(atoms)):
        for x in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[i, x] += sign * h
                moved.calc = atoms.calc
                energies.append(moved.get_potential_energy())
            numeric[i, x] = -(energies[0] - energies[1]) / (2 * h)
    assert np.abs(forces).max() > 1e-3  # a real check, not zeros against zeros
    np.testing.assert_allclose(forces, numeric, atol=1e-7)


def nve_energy_error(model: MacePotential, atoms: Atoms, timestep_fs: float, duration_fs: float) -> float:
    """Largest |E_total(t) - E_total(0)| (eV) of velocity Verlet over ``duration_fs``."""
    atoms = atoms.copy()
    atoms.calc = FusionCalculator(model, NUMBERS)
    totals: list[float] = []
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dyn.attach(lambda: totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy()), interval=1)
    dyn.run(round(duration_fs / timestep_fs))
    return float(np.abs(np.array(totals) - totals[0]).max())


def test_velocity_verlet_conserves_energy(model: MacePotential, data: list) -> None:
    """Velocity Verlet is symplectic and of second order: over a short run the total energy
    oscillates about a conserved shadow energy with an amplitude ∝ dt², without drift. So halving the
    step must quarter the largest error (measured ratio 4.00 for 0.5 -> 0.25 fs over 10 fs; 3.5 to 4.5
    leaves room for the O(dt⁴) terms), and the error must be small against the kinetic energy
    (measured 5.7e-5 of it at 0.5 fs, 1.4e-5 at 0.25 fs; bound 1e-4 at 0.25 fs, 7x margin). A wrong
    force sign, a force-energy mismatch or a stale cached result breaks both."""
    atoms = as_atoms(data[1])
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * 300.0))
    Stationary(atoms)
    ZeroRotation(atoms)
    kinetic = atoms.get_kinetic_energy()
    coarse = nve_energy_error(model, atoms, 0.5, 10.0)   # 20 steps
    fine = nve_energy_error(model, atoms, 0.25, 10.0)    # 40 steps
    assert 3.5 < coarse / fine < 4.5, (coarse, fine)
    assert fine < 1e-4 * kinetic, (fine, kinetic)


def test_checkpoint_round_trip(model: MacePotential, data: list, tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    torch.save(potential_state(model, NUMBERS), path)
    atoms = as_atoms(data[2])
    atoms.calc = FusionCalculator(model, NUMBERS)
    again = as_atoms(data[2])
    again.calc = FusionCalculator.from_checkpoint(path, device="cpu")
    assert again.calc.atomic_numbers == NUMBERS
    assert again.get_potential_energy() == atoms.get_potential_energy()
    np.testing.assert_array_equal(again.get_forces(), atoms.get_forces())


def test_float32_model(data: list) -> None:
    torch.manual_seed(0)
    model = MacePotential(CONFIG, fit_statistics(data, CONFIG.r_max, species=3), dtype=torch.float32)
    atoms = as_atoms(data[0])
    atoms.calc = FusionCalculator(model, NUMBERS)
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().dtype == np.float64


def test_refuses_what_it_cannot_compute(model: MacePotential) -> None:
    calculator = FusionCalculator(model, NUMBERS)
    cyanide = molecule("HCN")
    cyanide.calc = calculator
    with pytest.raises(ValueError, match=r"elements N \(atomic numbers \[7\]\) are not among the model's"):
        cyanide.get_potential_energy()
    periodic = molecule("CH3CH2OH", vacuum=5.0, pbc=True)
    periodic.calc = calculator
    with pytest.raises(NotImplementedError, match="periodic boundary conditions"):
        periodic.get_forces()
    boxed = molecule("CH3CH2OH", vacuum=5.0)  # a cell without pbc is fine
    boxed.calc = calculator
    assert np.isfinite(boxed.get_potential_energy())
    with pytest.raises(ValueError, match="3 species but 2 atomic numbers"):
        FusionCalculator(model, (1, 6))


def test_nve_script_on_an_untrained_model(model: MacePotential, tmp_path: Path) -> None:
    """scripts/nve_drift.py end to end, 50 steps, on a labelled ethanol frame (an untrained model
    need not keep the molecule together, so only the outputs are checked, not the stability)."""
    frames = ROOT / "data" / "ethanol" / "test.extxyz.xz"
    checkpoint = tmp_path / "best.pt"
    torch.save(potential_state(model, NUMBERS), checkpoint)
    spec = importlib.util.spec_from_file_location("nve_drift", ROOT / "scripts" / "nve_drift.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "nve"
    status = script.main(["--checkpoint", str(checkpoint), "--data", str(frames), "--frame", "0", "--steps", "50",
                          "--timestep", "0.25", "--temperature", "300", "--seed", "1", "--out", str(out)])
    report = json.loads((out / "nve.json").read_text(encoding="utf-8"))
    assert status == (0 if report["stability"]["stable"] else 2)
    assert report["completed_steps"] == 50 and report["settings"]["atoms"] == 9
    assert report["settings"]["formula"] == "C2H6O" and report["stability"]["bonds"] == 8
    for key in ("drift_meV_per_atom_per_ps", "fluctuation_rms_meV_per_atom", "wall_time_s", "steps_per_s"):
        assert np.isfinite(report[key]), key
    assert (out / "nve.png").stat().st_size > 10_000
    assert len((out / "nve.csv").read_text(encoding="utf-8").splitlines()) == 52
