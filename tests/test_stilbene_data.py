"""Stilbene for the excited-state data (issue 12): the geometry design (``fusionlang.stilbene``) is
deterministic, extends with the count, scans the torsion it says and stays chemical; the energies-only
labels carry no forces or couplings; and, once the production set ``data/stilbene/`` exists, its file
matches its manifest and its S0/S1 curves along the torsion have the shape of the cis–trans isomerisation.

The data checks skip only while ``data/stilbene`` has no manifest (it is made by the production command
in docs/excited.md, which assembles it at the end; a run in progress writes only ``labels/``).
One SA-CASSCF run (trans-stilbene, ≈ 6 s CPU).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fusionlang.stilbene import (
    HCCH_ATOMS,
    SCAN_TORSIONS,
    STILBENE_SYMBOLS,
    TORSION_ATOMS,
    TWIST_ATOMS_A,
    dihedral,
    relax_at,
    relaxed_scan,
    sample_geometries,
    trans_stilbene,
)

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "data" / "stilbene"
PRODUCTION = ("python scripts/make_excited_dataset.py --molecule stilbene --count 420 --out data/stilbene "
              "--workers 2")


def torsion_error(measured: float, wanted: float) -> float:
    """|measured − wanted| in degrees, modulo 360 (180° and −180° are the same trans torsion)."""
    return abs((measured - wanted + 180.0) % 360.0 - 180.0)


# ----------------------------------------------------------------------------------------------- design
def test_trans_stilbene_from_internal_coordinates_is_c14h12_and_planar() -> None:
    positions = trans_stilbene()
    assert STILBENE_SYMBOLS.count("C") == 14 and STILBENE_SYMBOLS.count("H") == 12 and positions.shape == (26, 3)
    assert np.abs(positions[:, 2]).max() < 1e-9  # every atom in the xy plane
    assert torsion_error(dihedral(positions, TORSION_ATOMS), 180.0) < 1e-9


def test_the_design_is_deterministic_and_a_larger_count_extends_a_smaller_one() -> None:
    small, large = sample_geometries(50), sample_geometries(120)
    assert len(small) == 50 and len(large) == 120
    for a, b in zip(small, large, strict=False):
        assert (a.chain, a.step, a.noise_seed) == (b.chain, b.step, b.noise_seed)
        assert np.array_equal(a.positions, b.positions)
    again = sample_geometries(120)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(large, again, strict=True))
    assert [(g.chain, g.step) for g in large] == sorted({(g.chain, g.step) for g in large})


def test_the_production_count_reaches_400_geometries_in_chains() -> None:
    geometries = sample_geometries(420)
    assert len(geometries) == 420
    assert [g.design for g in geometries[:37]] == ["torsion-scan"] * 37
    assert {g.design for g in geometries[37:]} == {"noisy-scan"}
    for g in geometries[37:]:
        assert g.noise_seed == 1000 * g.chain + g.step  # 1000000*seed + 1000*chain + step, seed 0
        assert set(g.info()) == {"chain", "step", "design", "torsion_deg", "phenyl_twist_a_deg",
                                 "phenyl_twist_b_deg", "noise_seed"}
        assert abs(g.torsion - SCAN_TORSIONS[g.step]) <= 2.5


def test_the_scan_holds_the_requested_torsion_and_twists_the_vinyl_hydrogens_with_it() -> None:
    """Each scan point's C(ipso)-C=C-C(ipso) dihedral is its torsion, and H-C=C-H follows it (the second
    constraint, which keeps the closed-shell xTB relaxation from pyramidalising the vinyl carbons)."""
    scan = sample_geometries(37)
    assert [g.torsion for g in scan] == list(SCAN_TORSIONS) == [180.0 - 5.0 * k for k in range(37)]
    for g in scan:
        assert torsion_error(dihedral(g.positions, TORSION_ATOMS), g.torsion) < 1e-3, g.step
        assert torsion_error(abs(dihedral(g.positions, HCCH_ATOMS)), g.torsion) < 1e-3, g.step


def test_the_noisy_replicas_record_their_torsion_twists_and_noise() -> None:
    """Without the Cartesian noise (``noise=0``, the same seeds) each replica's torsion and ring twists are
    exactly the recorded ones; the noise is Gaussian with σ 0.02 Å on every coordinate."""
    noisy, clean = sample_geometries(37 * 4)[37:], sample_geometries(37 * 4, noise=0.0)[37:]
    displacements = []
    for g, c in zip(noisy, clean, strict=True):
        assert (g.torsion, g.twist_a, g.twist_b) == (c.torsion, c.twist_a, c.twist_b)
        assert torsion_error(dihedral(c.positions, TORSION_ATOMS), g.torsion) < 1e-6, (g.chain, g.step)
        assert torsion_error(dihedral(c.positions, TWIST_ATOMS_A), g.twist_a) < 1e-6
        displacements.append(g.positions - c.positions)
    assert np.std(displacements) == pytest.approx(0.02, rel=0.05)
    assert np.ptp([g.twist_a for g in noisy]) > 20.0  # the rings do turn (±15° about the relaxed twist)


def bonds() -> np.ndarray:
    """The bonded pairs of trans-stilbene (the construction; every geometry keeps its topology)."""
    positions = trans_stilbene()
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return np.argwhere(np.triu(distance < 1.6, 1))


def test_bond_lengths_stay_chemical_in_every_geometry() -> None:
    """Over the production design (420): C–C bonds 1.2–1.6 Å, C–H 0.9–1.25 Å, no two H closer than 1.5 Å and
    no other non-bonded pair closer than 1.8 Å (measured: C–C 1.25–1.52, C–H 0.98–1.17, H–H ≥ 2.04)."""
    symbols = np.array(STILBENE_SYMBOLS)
    pairs = bonds()
    assert len(pairs) == 27  # 12 ring C-C, C=C, 2 C-C(ipso), 12 C-H
    carbon = (symbols[pairs[:, 0]] == "C") & (symbols[pairs[:, 1]] == "C")
    unbonded = np.triu(np.ones((26, 26), dtype=bool), 1)
    unbonded[pairs[:, 0], pairs[:, 1]] = False
    hydrogen = np.outer(symbols == "H", symbols == "H")
    for g in sample_geometries(420):
        distance = np.linalg.norm(g.positions[:, None] - g.positions[None], axis=-1)
        lengths = distance[pairs[:, 0], pairs[:, 1]]
        where = (g.chain, g.step)
        assert lengths[carbon].min() > 1.2 and lengths[carbon].max() < 1.6, where
        assert lengths[~carbon].min() > 0.9 and lengths[~carbon].max() < 1.25, where
        assert distance[unbonded & hydrogen].min() > 1.5, where
        assert distance[unbonded].min() > 1.8, where


def test_the_cached_scan_is_what_the_relaxation_gives() -> None:
    """The committed cache (``data/stilbene_xtb_scan.extxyz``) against GFN2-xTB now: the trans point from the
    construction and the 175° point from the cached trans point (≈ 1 s)."""
    pytest.importorskip("tblite")
    scan = relaxed_scan()
    trans, _, _ = relax_at(trans_stilbene(), 180.0)
    assert np.abs(trans - scan[0]).max() < 1e-4
    turned, _, _ = relax_at(scan[0], 175.0)
    assert np.abs(turned - scan[1]).max() < 1e-3


def test_energies_only_frames_carry_no_forces_or_couplings() -> None:
    from fusionlang.excited import ExcitedConfig, Orbitals, StateEnergies, labelled_frame

    config = ExcitedConfig.for_molecule("stilbene")
    assert (config.energies_only, config.basis, config.noise, config.count) == (True, "sto-3g", 0.02, 420)
    assert not ExcitedConfig().energies_only
    geometry = sample_geometries(1)[0]
    orbitals = Orbitals(STILBENE_SYMBOLS, geometry.positions, "sto-3g", np.eye(2), 0, 2)
    labels = StateEnergies(np.array([-14000.0, -13993.0]), {"casscf": True}, (0.0, 0.0), 1.0, 0.95, "rhf", 0.0,
                           6.0, orbitals)
    atoms = labelled_frame(geometry, labels, config)
    assert atoms.info["REF_gap"] == pytest.approx(7.0)
    assert not [k for k in [*atoms.info, *atoms.arrays] if "forces" in k or "nac" in k]


_TRANS = """
import json
from fusionlang.excited import label_energies
from fusionlang.stilbene import STILBENE_SYMBOLS, relaxed_scan
labels = label_energies(STILBENE_SYMBOLS, relaxed_scan()[0], basis="sto-3g")
print(json.dumps({"energies": labels.energies.tolist(), "converged": labels.converged, "spins": labels.spin_squares,
                  "carbon_p": labels.active_carbon_p, "seconds": labels.seconds}))
"""


def test_trans_stilbene_energies_reproduce_the_smoke_test() -> None:
    """The one SA-CASSCF(2,2)/STO-3G run of this file (≈ 6 s CPU, single-threaded subprocess as the
    generator's workers): relaxed trans-stilbene from RHF orbitals gives the smoke test's S0 and gap
    (docs/excited.md), both roots singlets, the active space on carbon p."""
    import os
    import subprocess
    import sys

    from fusionlang.datagen import THREAD_VARIABLES

    pytest.importorskip("pyscf")
    env = dict(os.environ, **{name: "1" for name in THREAD_VARIABLES})
    done = subprocess.run([sys.executable, "-c", _TRANS], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    s0, s1 = result["energies"]
    assert s0 == pytest.approx(-14438.24171, abs=1e-4) and s1 - s0 == pytest.approx(6.892, abs=1e-3)
    assert result["converged"] == {"casscf": True} and max(result["spins"]) < 1e-4
    assert result["carbon_p"] > 0.99


# ----------------------------------------------------------------------------------------------- the data
@cache
def manifest() -> dict[str, Any]:
    path = FOLDER / "manifest.json"
    if not path.exists():  # absent, or labels of a run in progress: the set exists once assembled
        pytest.skip(f"data/stilbene is not assembled: the production set is not made yet ({PRODUCTION}; "
                    "`--assemble` writes the manifest)")
    return dict(json.loads(path.read_text(encoding="utf-8")))


@cache
def frames() -> tuple[Any, ...]:
    from ase.io import read

    manifest()  # skips while data/stilbene is absent
    with lzma.open(FOLDER / "frames.extxyz.xz", "rt", encoding="utf-8") as handle:
        return tuple(read(io.StringIO(handle.read()), index=":", format="extxyz"))


def scan_frames() -> list[Any]:
    return sorted((a for a in frames() if int(a.info["chain"]) == 0), key=lambda a: int(a.info["step"]))


def test_data_checksum_and_counts_match_the_manifest() -> None:
    sha256 = manifest()["sha256"]
    assert sha256 == {"frames.extxyz.xz": hashlib.sha256((FOLDER / "frames.extxyz.xz").read_bytes()).hexdigest()}
    counts = manifest()["counts"]
    assert len(frames()) == counts["frames"] >= 400
    keys = [(int(a.info["chain"]), int(a.info["step"])) for a in frames()]
    assert len(keys) == len(set(keys))
    failed = sum(counts["failed"].values())
    assert counts["frames"] + failed >= counts["design"], "some geometries neither labelled nor logged"
    assert failed <= 0.05 * counts["design"], counts["failed"]


def test_data_are_energies_only_and_say_why() -> None:
    labels = manifest()["labels"]
    assert (labels["method"], labels["basis"], manifest()["molecule"]) == ("SA-CASSCF(2,2)", "sto-3g", "stilbene")
    assert "forces_keys" not in labels and "coupling" not in labels and "2 min" in labels["energies_only"]
    assert labels["energy_keys"] == ["REF_energy_S0", "REF_energy_S1"] and labels["units"] == {"energy": "eV"}
    assert labels["state_averaging"]["weights"] == [0.5, 0.5]
    for atoms in frames():
        assert not [k for k in [*atoms.info, *atoms.arrays] if "forces" in k or "nac" in k]
        assert atoms.info["converged_casscf"] is True and atoms.info["active_carbon_p"] >= 0.8
        assert max(atoms.info["spin_square_S0"], atoms.info["spin_square_S1"]) < 1e-4


def test_data_s1_lies_above_s0() -> None:
    for atoms in frames():
        gap = atoms.info["REF_energy_S1"] - atoms.info["REF_energy_S0"]
        assert atoms.info["REF_gap"] == pytest.approx(gap, abs=1e-9) and gap > 0.5, atoms.info["step"]


def test_data_torsion_curves_have_the_isomerisation_shape() -> None:
    """Along the relaxed scan S0 has its minima at trans and cis and its barrier near 90°, and S1 its
    minimum near the twisted geometry, where the gap is smallest (the smoke test's numbers are in
    docs/excited.md)."""
    scan = scan_frames()
    torsions = np.array([a.info["torsion_deg"] for a in scan])
    s0 = np.array([a.info["REF_energy_S0"] for a in scan])
    s1 = np.array([a.info["REF_energy_S1"] for a in scan])
    assert 60.0 <= torsions[np.argmax(s0)] <= 120.0
    assert s0.max() - max(s0[torsions == 180.0].item(), s0[torsions == 0.0].item()) > 1.0
    assert 60.0 <= torsions[np.argmin(s1)] <= 120.0
    assert 60.0 <= torsions[np.argmin(s1 - s0)] <= 120.0


def test_the_training_script_holds_out_the_scan_and_draws_its_curves(tmp_path: Path) -> None:
    """`scripts/train_stilbene.py` on the frames of chains 0 and 1, a tiny model, one epoch:
    the test set is exactly the relaxed scan in scan order, and the curves file holds the reference and
    one prediction per run along it."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import train_stilbene
    from ase.io import write

    data = tmp_path / "two_chains.extxyz"
    write(data, [f for f in frames() if int(f.info["chain"]) in (0, 1)], format="extxyz")
    out = tmp_path / "runs"
    tiny = ["--channels", "4", "--lmax", "1", "--radial-mlp", "8", "--readout-hidden", "4", "--interactions", "1"]
    assert train_stilbene.main([str(data), "--out", str(out), "--seeds", "0", "--epochs", "1", *tiny]) == 0
    curves = json.loads((out / "curves.json").read_text(encoding="utf-8"))
    torsions = curves["torsion_deg"]
    assert torsions == sorted(torsions, reverse=True) and torsions[0] == 180.0 and len(torsions) >= 30
    assert curves["reference"][0][0] == 0.0 and sorted(curves["runs"]) == ["fusion/seed0", "plain/seed0"]
    assert all(len(run) == len(torsions) for run in curves["runs"].values())
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["sizes"]["test"] == len(torsions) and (out / "curves.png").stat().st_size > 0
    metrics = curves["metrics"]
    assert metrics["reference"]["barrier_eV"] > 2 and set(metrics["models"]) == {"plain", "fusion"}
    run = metrics["runs"]["fusion/seed0"]
    reference, predicted = torch.tensor(curves["reference"]), torch.tensor(curves["runs"]["fusion/seed0"])
    assert run["S1_offset_meV"] == pytest.approx(float((predicted - reference)[:, 1].mean()) * 1000)
    assert "S0 barrier at 90°" in (out / "curves.md").read_text(encoding="utf-8")
