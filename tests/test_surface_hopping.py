"""Tully fewest-switches surface hopping (fusionlang.surface_hopping): energy conservation along a trajectory
and across hops, normalised amplitudes, no hops without coupling, Tully's simple avoided crossing at high
momentum, invariance under the coupling's arbitrary sign, the torch model adapter, initial conditions,
records, the script and the documentation's example."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusionlang import initial_conditions as ic
from fusionlang import surface_hopping as sh
from fusionlang import surface_models as sm

ROOT = Path(__file__).resolve().parent.parent
TULLY_STEPS = 161  # x from −5 to +5 bohr at k = 30 a.u. with dt = 0.1 fs


def tully_run(seed: int, *, momentum: float = 30.0, dt: float = 0.1, steps: int = TULLY_STEPS,
              surfaces: sh.SurfacesFn | None = None, **options: object) -> sh.Trajectory:
    positions, velocities, masses = sm.tully_start(momentum)
    return sh.run_trajectory(surfaces or sm.tully_simple_crossing(), positions, velocities, masses, steps=steps,
                             options=sh.HoppingOptions(dt=dt, substeps=10, **options), active=0, seed=seed)


def first_hopping_run(**options: object) -> sh.Trajectory:
    for seed in range(20):
        run = tully_run(seed, **options)
        if any(not h.frustrated for h in run.hops):
            return run
    raise AssertionError("no hop in 20 trajectories")


def test_constants_match_ase() -> None:
    from ase import units

    assert np.isclose(sh.KINETIC_EV, units._amu * 1e-20 / 1e-30 / units._e, rtol=1e-12, atol=0)
    assert np.isclose(sh.ACCELERATION * sh.KINETIC_EV, 1.0, rtol=1e-12, atol=0)
    assert np.isclose(sh.HBAR_EV_FS, units._hbar / units._e * 1e15, rtol=1e-12, atol=0)
    assert np.isclose(sm.ATOMIC_TIME_FS, units._aut * 1e15, rtol=1e-9, atol=0)
    assert np.isclose(sh.BOLTZMANN_EV, units.kB, rtol=1e-12, atol=0)


def test_tully_forces_and_coupling_are_exact() -> None:
    surfaces = sm.tully_simple_crossing()
    x, h = np.array([[0.3, 0.0, 0.0]]), 1e-5
    shifted = [surfaces(x + s * np.array([[h, 0, 0]])).energies for s in (1, -1)]
    assert -(shifted[0] - shifted[1]) / (2 * h) == pytest.approx(surfaces(x).forces[:, 0, 0], rel=1e-7)
    vectors = [np.linalg.eigh(diabatic_eV(float(x[0, 0] + s * h)))[1] for s in (1, -1, 0)]
    vectors = [v * np.sign(v[0:1, :] + 1e-30) for v in vectors]  # one phase convention at all three points
    numeric = vectors[2][:, 0] @ (vectors[0][:, 1] - vectors[1][:, 1]) / (2 * h)
    assert abs(numeric) == pytest.approx(abs(surfaces(x).couplings[0, 1, 0, 0]), rel=1e-6)


def diabatic_eV(x_angstrom: float) -> np.ndarray:
    v11, _, v12, _ = sm._tully_terms(x_angstrom / sm.BOHR_ANGSTROM, 0.01, 1.6, 0.005, 1.0)
    return np.array([[v11, v12], [v12, -v11]]) * sh.HARTREE_EV


def test_energy_conserved_along_trajectory_and_across_hops() -> None:
    run = first_hopping_run(dt=0.02, steps=5 * TULLY_STEPS)
    scale = abs(run.total_energy[0])
    assert np.max(np.abs(run.total_energy - run.total_energy[0])) / scale < 2e-5
    for hop in (h for h in run.hops if not h.frustrated):
        assert abs(hop.energy_after - hop.energy_before) / scale < 1e-6
        index = int(np.argmin(np.abs(run.times - hop.time)))
        assert abs(run.total_energy[index] - run.total_energy[index - 1]) / scale < 1e-6


def test_amplitudes_stay_normalised() -> None:
    run = first_hopping_run()
    assert np.max(np.abs(run.populations.sum(axis=1) - 1.0)) < 1e-10


def three_states(positions: np.ndarray) -> sh.Surfaces:
    """Three linear surfaces with constant couplings (tests N > 2 states)."""
    x = positions[0, 0]
    energies = np.array([0.0, 0.3 + 0.2 * x, 0.6 - 0.2 * x])
    forces = np.zeros((3, 1, 3))
    forces[1, 0, 0], forces[2, 0, 0] = -0.2, 0.2
    pairs = np.zeros((3, 1, 3))
    pairs[0, 0, 0], pairs[1, 0, 1], pairs[2, 0, 0] = 0.8, 0.5, -0.6
    return sh.Surfaces(energies, forces, sm.couplings_from_pairs(pairs, 3))


def test_three_states_normalised_and_conserving() -> None:
    velocities = np.array([[0.3, 0.2, 0.0]])
    runs = [sh.run_trajectory(three_states, np.zeros((1, 3)), velocities, np.ones(1), steps=100,
                              options=sh.HoppingOptions(dt=0.1), active=2, seed=seed) for seed in range(5)]
    assert max(np.max(np.abs(r.populations.sum(axis=1) - 1)) for r in runs) < 1e-10
    assert max(np.ptp(r.total_energy) for r in runs) < 1e-9  # constant forces: Verlet is exact
    assert {h.target for r in runs for h in r.hops} >= {0, 1}


def test_no_coupling_no_hops_and_populations_stay() -> None:
    def uncoupled(positions: np.ndarray) -> sh.Surfaces:
        surfaces = sm.tully_simple_crossing()(positions)
        return dataclasses.replace(surfaces, couplings=np.zeros_like(surfaces.couplings))

    positions, velocities, masses = sm.tully_start(30.0)
    mixed = np.array([0.6, 0.8j])
    run = sh.run_trajectory(uncoupled, positions, velocities, masses, steps=50, active=0, amplitudes=mixed,
                            options=sh.HoppingOptions(dt=0.1, decoherence_ev=None), seed=0)
    assert run.hops == () and np.allclose(run.populations, [0.36, 0.64], atol=1e-12)
    pure = tully_run(0, surfaces=uncoupled, steps=50)
    assert pure.hops == () and np.all(pure.active == 0) and np.allclose(pure.populations[:, 0], 1.0)


def test_tully_simple_crossing_high_momentum() -> None:
    """k = 30 a.u., mass 2000, from x = −5 bohr on the lower state, no decoherence correction: every
    trajectory is transmitted (Tully 1990, Fig. 4: no reflection above k ≈ 10), and the upper state carries
    the exact quantum share. The reference, 0.715, is a split-operator wave-packet calculation (Gaussian at
    −20 bohr, σ_x = 20/k, 2^14 points on ±60 bohr, dt = 1 a.u.; docs/surface_hopping.md): it gives 0.155,
    0.493 and 0.715 at k = 10, 20, 30, the rise past one half that Tully's Fig. 4 shows. The mean |c_1|² is
    the same for every trajectory up to its first hop (0.716 measured); the fraction on the upper state is a
    binomial estimate from 100 trajectories (σ ≈ 0.045), allowed 0.1."""
    runs = [tully_run(seed, decoherence_ev=None) for seed in range(100)]
    final = sh.ensemble_populations(runs)
    assert all(r.positions[-1, 0, 0] > 4.5 * sm.BOHR_ANGSTROM for r in runs)
    assert abs(final.mean_populations[-1, 1] - 0.715) < 0.02
    assert abs(final.fractions[-1, 1] - 0.715) < 0.1


def test_coupling_sign_flips_change_nothing() -> None:
    flips = np.random.default_rng(7)

    def flipping(positions: np.ndarray) -> sh.Surfaces:
        surfaces = sm.tully_simple_crossing()(positions)
        return dataclasses.replace(surfaces, couplings=surfaces.couplings * flips.choice([-1.0, 1.0]))

    for seed in range(3):
        plain, flipped = tully_run(seed), tully_run(seed, surfaces=flipping)
        assert np.array_equal(plain.active, flipped.active) and len(plain.hops) == len(flipped.hops)
        assert np.allclose(plain.positions, flipped.positions, rtol=0, atol=1e-12)
        assert np.allclose(plain.populations, flipped.populations, rtol=0, atol=1e-12)
    assert sum(len(tully_run(s).hops) for s in range(3)) > 0


def test_unaligned_flips_do_change_trajectories() -> None:
    """The control: without alignment, random flips scramble the electronic dynamics."""
    flips = np.random.default_rng(7)

    def flipping(positions: np.ndarray) -> sh.Surfaces:
        surfaces = sm.tully_simple_crossing()(positions)
        return dataclasses.replace(surfaces, couplings=surfaces.couplings * flips.choice([-1.0, 1.0]))

    plain = tully_run(0, align_couplings=False)
    flipped = tully_run(0, surfaces=flipping, align_couplings=False)
    assert not np.allclose(plain.populations, flipped.populations, atol=1e-3)


class TinyModel:
    """A torch module factory: two states of three atoms (harmonic bonds, a gap that depends on the bond
    lengths) and a coupling vector field, following the ModelSurfaces protocol."""

    @staticmethod
    def build() -> object:
        import torch

        class Tiny(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                generator = torch.Generator().manual_seed(0)
                self.weights = torch.nn.Parameter(torch.rand(3, generator=generator, dtype=torch.float64))

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                bonds = torch.stack([(x[i] - x[j]).norm() for i, j in ((0, 1), (1, 2), (0, 2))])
                ground = ((bonds - 1.2) ** 2 * (1.0 + self.weights)).sum()
                excited = ground + 0.5 + 0.3 * torch.tanh(bonds - 1.2).sum()
                centred = x - x.mean(dim=0)
                return torch.stack([ground, excited]), 2.0 * centred * self.weights[:, None]

        return Tiny().double()


def test_torch_model_adapter_conserves_energy_across_a_hop() -> None:
    surfaces = sm.ModelSurfaces(TinyModel.build())
    positions = np.array([[0.0, 0.0, 0.0], [1.3, 0.0, 0.0], [0.6, 1.0, 0.1]])
    velocities = np.array([[0.01, 0.02, 0.0], [-0.02, 0.0, 0.01], [0.01, -0.02, -0.01]])
    masses = sm.masses_of(["C", "N", "O"])
    hops = []
    for sign in (1.0, -1.0):  # the hop S1 -> S0 is near-certain for one sign of the small amplitude on S1
        run = sh.run_trajectory(surfaces, positions, velocities, masses, steps=10, active=1,
                                amplitudes=np.array([np.sqrt(0.999), sign * np.sqrt(0.001)]),
                                options=sh.HoppingOptions(dt=0.2), seed=0)
        assert np.ptp(run.total_energy) / abs(run.total_energy[0]) < 1e-4
        hops += [h for h in run.hops if not h.frustrated]
    assert hops
    assert all(abs(h.energy_after - h.energy_before) < 1e-10 for h in hops)


def test_model_forces_are_minus_gradients() -> None:
    surfaces = sm.ModelSurfaces(TinyModel.build())
    x = np.array([[0.0, 0.0, 0.0], [1.3, 0.0, 0.0], [0.6, 1.0, 0.1]])
    shift = np.zeros_like(x)
    shift[2, 1] = 1e-5
    numeric = -(surfaces(x + shift).energies - surfaces(x - shift).energies) / 2e-5
    assert numeric == pytest.approx(surfaces(x).forces[:, 2, 1], rel=1e-6)


def test_gap_scaled_couplings_are_divided() -> None:
    import torch

    model = lambda x: (torch.stack([x.sum() * 0, x.sum() * 0 + 2.0]), torch.ones_like(x))  # noqa: E731
    surfaces = sm.ModelSurfaces(model, coupling_times_gap=True)(np.zeros((2, 3)))
    assert np.allclose(surfaces.couplings[0, 1], 0.5) and np.allclose(surfaces.couplings[1, 0], -0.5)


def test_frustrated_hop_keeps_or_reverses() -> None:
    masses, v = np.array([2.0]), np.array([[0.01, 0.0, 0.0]])
    surfaces = sm.tully_simple_crossing()(np.zeros((1, 3)))
    phase = sh.Phase(0.0, np.zeros((1, 3)), v, np.array([1.0, 0.0j]), 0, surfaces)
    kept, hop = sh.attempt_hop(phase, 1, masses, sh.HoppingOptions())
    assert hop.frustrated and kept.active == 0 and np.array_equal(kept.velocities, v)
    reversed_, _ = sh.attempt_hop(phase, 1, masses, sh.HoppingOptions(frustrated="reverse"))
    assert np.allclose(reversed_.velocities, -v)


def test_malformed_surfaces_are_refused() -> None:
    positions, velocities, masses = sm.tully_start(30.0)

    def symmetric(x: np.ndarray) -> sh.Surfaces:
        surfaces = sm.tully_simple_crossing()(x)
        return dataclasses.replace(surfaces, couplings=np.abs(surfaces.couplings))

    with pytest.raises(ValueError, match="antisymmetric"):
        sh.run_trajectory(symmetric, 0.0 * positions, velocities, masses, steps=1)
    with pytest.raises(ValueError, match="shape"):
        sh.run_trajectory(sm.tully_simple_crossing(), positions, velocities, np.ones(2), steps=1)


def test_decoherence_drains_inactive_state() -> None:
    c = np.array([0.6, 0.8j])
    options = sh.HoppingOptions(dt=0.5)
    for _ in range(200):
        c = sh.decohered(c, np.array([0.0, 3.0]), 1, 0.5, options)
    assert abs(c[0]) < 1e-3 and abs(np.vdot(c, c) - 1) < 1e-12
    assert np.array_equal(sh.decohered(c, np.array([0.0, 3.0]), 1, 0.5, sh.HoppingOptions(decoherence_ev=None)), c)


def test_decoherence_collapses_onto_the_active_state_after_the_crossing() -> None:
    """Past Tully's crossing every trajectory's |c|² sits on its active state (without the correction the
    coherent amplitudes keep 0.72 on the upper state whichever state is active)."""
    runs = [tully_run(seed) for seed in range(4)]
    assert min(r.populations[-1, r.active[-1]] for r in runs) > 0.99
    coherent = tully_run(0, decoherence_ev=None)
    assert abs(coherent.populations[-1, 1] - 0.716) < 0.01


def test_thermal_velocities() -> None:
    rng = np.random.default_rng(0)
    positions, masses = rng.normal(size=(5, 3)), sm.masses_of(["C", "C", "H", "O", "N"])
    draws = [ic.thermal_velocities(positions, masses, 300.0, np.random.default_rng(s)) for s in range(400)]
    for v in draws[:5]:
        r = positions - masses @ positions / masses.sum()
        assert np.allclose(masses @ v, 0, atol=1e-14)
        assert np.allclose(np.sum(masses[:, None] * np.cross(r, v), axis=0), 0, atol=1e-12)
    kinetic = np.mean([sh.kinetic_energy(masses, v) for v in draws])
    assert kinetic == pytest.approx((3 * 5 - 6) / 2 * sh.BOLTZMANN_EV * 300.0, rel=0.06)


def harmonic_well(positions: np.ndarray) -> sh.Surfaces:
    """One particle, E0 = ½ k |x|² (k = 5 eV/Å²), and an excited copy 1 eV above."""
    energy = 2.5 * np.sum(positions**2)
    forces = np.stack([-5.0 * positions, -5.0 * positions])
    return sh.Surfaces(np.array([energy, energy + 1.0]), forces, np.zeros((2, 2, *positions.shape)))


def test_wigner_sampling_of_a_harmonic_well() -> None:
    masses = np.array([2.0])
    initial = ic.wigner_initial(harmonic_well, np.zeros((1, 3)), masses, rigid=0)
    samples = [initial(seed) for seed in range(1500)]
    omega = np.sqrt(5.0 / 2.0 * sh.ACCELERATION)
    assert np.var([x for x, _ in samples]) == pytest.approx(ic.HBAR_AMU / (2 * 2.0 * omega), rel=0.08)
    assert np.var([v for _, v in samples]) == pytest.approx(ic.HBAR_AMU * omega / (2 * 2.0), rel=0.08)
    assert np.array_equal(initial(3)[0], initial(3)[0])
    with pytest.raises(ValueError, match="not a minimum"):
        ic.normal_modes(-np.eye(3), masses, rigid=0)
    with pytest.raises(ValueError, match="flat mode"):
        ic.normal_modes(np.diag([1.0, 1.0, 1e-9]), masses, rigid=0)


def test_records_round_trip(tmp_path: Path) -> None:
    run = first_hopping_run()
    for name in ("run.json", "run.npz"):
        back = sh.Trajectory.load(run.save(tmp_path / name))
        assert back.hops == run.hops and np.array_equal(back.positions, run.positions)
        assert np.array_equal(back.populations, run.populations) and back.seed == run.seed
    populations = sh.ensemble_populations([run, tully_run(1, steps=30)])
    assert populations.fractions.shape == (31, 2) and np.allclose(populations.fractions.sum(axis=1), 1)
    assert sh.plot_population(populations, tmp_path / "decay.svg").stat().st_size > 1000


def test_script_is_resumable(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "scripts/run_surface_hopping.py"), "--tully", "--trajectories", "2",
               "--steps", "20", "--dt", "0.1", "--out", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    assert first.stdout.count("trajectory") == 2
    again = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    assert again.stdout.count("trajectory") == 0
    assert (tmp_path / "population.png").exists() and (tmp_path / "populations.json").exists()


def test_documentation_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    page = (ROOT / "docs/surface_hopping.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert blocks
    for number, body in enumerate(blocks):
        exec(compile(body, f"surface_hopping.md#{number}", "exec"), {"__name__": "__docs__"})


def test_one_casscf_step_on_ethylene() -> None:
    """One step on on-the-fly SA-CASSCF(2,2)/STO-3G (two label_states calls, ≈ 3 s each)."""
    pytest.importorskip("pyscf")
    from fusionlang.excited import ETHYLENE_SYMBOLS, ethylene_positions

    positions, masses = ethylene_positions(80.0, 10.0), sm.masses_of(ETHYLENE_SYMBOLS)
    velocities = ic.thermal_velocities(positions, masses, 300.0, ic.initial_generator(0))
    surfaces = sm.CasscfSurfaces(ETHYLENE_SYMBOLS, "sto-3g")
    run = sh.run_trajectory(surfaces, positions, velocities, masses, steps=1,
                            options=sh.HoppingOptions(dt=0.25), active=1)
    assert len(surfaces.history) == 2 and surfaces.history[1]["active_overlap"] > 0.9
    assert run.energies[0, 1] > run.energies[0, 0] and run.active[-1] in (0, 1)
    assert abs(run.total_energy[1] - run.total_energy[0]) < 5e-3
    assert abs(run.populations[-1].sum() - 1) < 1e-10


def test_a_saved_multistate_potential_drives_surface_hopping(tmp_path: Path) -> None:
    """The trainer's ``best.pt`` of a (tiny, untrained) multi-state potential, loaded on ethylene by
    :class:`~fusionlang.surface_models.MoleculeModel`: energies and forces agree with the model's own
    prediction, and a few surface-hopping steps conserve the total energy."""
    import torch

    from fusionlang.ethylene import ETHYLENE_SYMBOLS, ethylene_positions
    from fusionlang.models import Statistics
    from fusionlang.multistate import MultiStateConfig, MultiStatePotential, multistate_state

    torch.manual_seed(0)
    config = MultiStateConfig(species=2, channels=4, lmax=1, hidden_lmax=1, interactions=1, bessel=4,
                              radial_mlp=(8,), readout_hidden=4)
    model = MultiStatePotential(config, Statistics(avg_num_neighbors=5.0), (0.0, 1.0), dtype=torch.float64)
    torch.save(multistate_state(model, (1, 6)), tmp_path / "best.pt")
    surfaces = sm.ModelSurfaces(sm.MoleculeModel.load(tmp_path / "best.pt", ETHYLENE_SYMBOLS))
    positions = ethylene_positions(20.0, 10.0)
    here = surfaces(positions)
    assert here.energies.shape == (2,) and here.forces.shape == (2, 6, 3) and here.couplings.shape == (2, 2, 6, 3)
    assert np.abs(here.forces.sum(axis=1)).max() < 1e-10  # no net force
    masses = sm.masses_of(ETHYLENE_SYMBOLS)
    velocities = np.random.default_rng(0).normal(0.0, 0.01, size=(6, 3))
    run = sh.run_trajectory(surfaces, positions, velocities, masses, steps=8, active=1,
                            options=sh.HoppingOptions(dt=0.1), seed=0)
    assert np.ptp(run.total_energy) < 1e-4  # eV, over 0.8 fs
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    try:
        import summarise_hopping
    finally:
        sys.path.pop(0)
    lines = summarise_hopping.summary([run], (1.30, 1.31))
    assert lines[0].startswith("1 trajectories") and any("outside it" in line for line in lines)
