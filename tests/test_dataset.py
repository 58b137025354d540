"""The committed ab initio data sets (``fusionlang.datagen``): files match their manifest, every frame
carries its labels in the declared units, the test set is a trajectory of its own, no geometry is
repeated, and two labels recomputed with PySCF (the manifest's method, basis, density fitting and
convergence) agree with the stored ones.

A data set folder holds ``train``/``valid``/``test.extxyz.xz`` and ``manifest.json`` as written by
``scripts/make_dataset.py --assemble``; add a folder to ``DATASETS`` to check another molecule. A
missing file is an error (never a skip): the data are committed with the code that trains on them.

The recomputation runs PySCF in a subprocess with one thread (OpenMP and BLAS), as the generator's
workers did: about 5 s per label on an idle core.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import units
from ase.io import read

from fusionlang.datagen import THREAD_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ["data/ethanol"]
SPLITS = ("train", "valid", "test")
# Recomputed against stored labels (measured agreement in the comments of test_labels_recompute).
ENERGY_TOLERANCE = 1e-6  # eV
FORCE_TOLERANCE = 1e-4  # eV/Å
# (split, frame, also check the forces against the energy's directional derivative) recomputed per data
# set: fixed, one training and one test configuration.
RECOMPUTE = (("train", 7, False), ("test", 11, True))


def read_frames(path: str | Path) -> list[Any]:
    """Every frame of an extended XYZ file, ``.xz`` or not. Decompressed first: ASE reading the
    ``.xz`` file itself seeks through it frame by frame (8.6 s against 0.2 s for 461 frames)."""
    path = Path(path)
    with (lzma.open(path, "rt", encoding="utf-8") if path.suffix == ".xz" else open(path, encoding="utf-8")) as handle:
        text = handle.read()
    return list(read(io.StringIO(text), index=":", format="extxyz"))


@dataclass(frozen=True)
class Dataset:
    folder: Path
    manifest: dict[str, Any]
    frames: dict[str, list[Any]]

    @property
    def labels(self) -> dict[str, Any]:
        return self.manifest["labels"]


@cache
def load(folder: str) -> Dataset:
    """The manifest and the frames of every split; a clear error when the assembled files are missing."""
    path = ROOT / folder
    wanted = [path / "manifest.json"] + [path / f"{name}.extxyz.xz" for name in SPLITS]
    missing = [str(p.relative_to(ROOT)) for p in wanted if not p.exists()]
    if missing:
        raise FileNotFoundError(f"data set {folder} is not assembled, missing {missing}: run "
                                f"`.venv/bin/python scripts/make_dataset.py --out {folder} --assemble` and commit them")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    frames = {name: read_frames(path / f"{name}.extxyz.xz") for name in SPLITS}
    return Dataset(path, manifest, frames)


@pytest.fixture(params=DATASETS)
def dataset(request: pytest.FixtureRequest) -> Dataset:
    return load(request.param)


def sha256(path: Path) -> str:
    """Computed here, not with datagen's own function: the check must not share the writer's code."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------- files
def test_checksums_match_the_manifest(dataset: Dataset) -> None:
    assert set(dataset.manifest["sha256"]) == {f"{name}.extxyz.xz" for name in SPLITS}
    for name, digest in dataset.manifest["sha256"].items():
        assert sha256(dataset.folder / name) == digest, f"{dataset.folder / name} differs from its manifest"


def test_counts_match_the_manifest(dataset: Dataset) -> None:
    counts = {name: len(frames) for name, frames in dataset.frames.items()}
    assert counts == dataset.manifest["counts"]
    assert sum(counts.values()) == sum(dataset.manifest["labelled_per_trajectory"].values())
    assert all(counts.values()), counts


# ----------------------------------------------------------------------------------------------- labels
def test_every_frame_is_labelled_in_the_declared_units(dataset: Dataset) -> None:
    labels = dataset.labels
    assert labels["units"] == {"energy": "eV", "forces": "eV/Angstrom"}
    energy_key, forces_key = labels["energy_key"], labels["forces_key"]
    assert (energy_key, forces_key) == ("REF_energy", "REF_forces")  # what the trainer and mace-torch read
    for name, frames in dataset.frames.items():
        for number, atoms in enumerate(frames):
            where = f"{name} frame {number}"
            assert math.isfinite(float(atoms.info[energy_key])), where
            forces = atoms.arrays[forces_key]
            assert forces.shape == (len(atoms), 3) and np.isfinite(forces).all(), where
            # translation invariance: the net force vanishes up to the DFT grid (measured <= 3.0e-3 eV/Å)
            assert np.abs(forces.sum(axis=0)).max() < 2e-2, where
            assert (atoms.info["method"], atoms.info["basis"]) == (labels["method"], labels["basis"]), where
            assert bool(atoms.info["density_fitting"]) == labels["density_fitting"], where
            assert not atoms.pbc.any(), where


def test_energy_fluctuation_fits_the_sampling_temperature(dataset: Dataset) -> None:
    """A units check independent of the labelling code: at temperature T a molecule's potential
    energy fluctuates by about sqrt((3N - 6)/2) kT (equipartition, harmonic). For ethanol at 500 K
    that is 0.140 eV; the labels give 0.131 to 0.140 eV per trajectory. Hartree, kcal/mol or
    kJ/mol would be off by 27x, 23x or 96x; the bounds allow a factor 2 for anharmonicity and the
    difference between the sampling (GFN2-xTB) and labelling surfaces."""
    temperature = dataset.manifest["sampling"]["temperature_K"]
    by_trajectory: dict[int, list[float]] = {}
    atoms_count = len(dataset.frames["test"][0])
    for frames in dataset.frames.values():
        for atoms in frames:
            by_trajectory.setdefault(int(atoms.info["trajectory"]), []).append(float(atoms.info["REF_energy"]))
    expected = math.sqrt((3 * atoms_count - 6) / 2) * units.kB * temperature
    for trajectory, energies in by_trajectory.items():
        ratio = float(np.std(energies)) / expected
        assert 0.5 < ratio < 2.0, (trajectory, ratio)


# ----------------------------------------------------------------------------------------------- splits
def test_the_test_set_is_a_trajectory_of_its_own(dataset: Dataset) -> None:
    trajectories = {name: Counter(int(a.info["trajectory"]) for a in frames) for name, frames in dataset.frames.items()}
    assert len(trajectories["test"]) == 1, trajectories["test"]
    (test_trajectory,) = trajectories["test"]
    assert test_trajectory == dataset.manifest["config"]["trajectories"] - 1
    assert dataset.manifest["splits"]["test"] == f"trajectory {test_trajectory}"
    assert test_trajectory not in trajectories["train"] and test_trajectory not in trajectories["valid"]
    total = trajectories["train"] + trajectories["valid"] + trajectories["test"]
    assert {str(t): k for t, k in total.items()} == dataset.manifest["labelled_per_trajectory"]
    keys = [(int(a.info["trajectory"]), int(a.info["index"])) for frames in dataset.frames.values() for a in frames]
    assert len(keys) == len(set(keys)), "a snapshot (trajectory, index) is in the data twice"


def test_no_geometry_is_repeated(dataset: Dataset) -> None:
    """Within or across splits (positions rounded to 1e-6 Å; snapshots 25 fs apart differ by ~0.1 Å)."""
    seen: dict[bytes, str] = {}
    for name, frames in dataset.frames.items():
        for number, atoms in enumerate(frames):
            key = atoms.numbers.tobytes() + np.round(atoms.positions, 6).tobytes()
            assert key not in seen, f"{name} frame {number} repeats {seen[key]}"
            seen[key] = f"{name} frame {number}"


# ----------------------------------------------------------------------------------------------- recomputation
_LABEL_SCRIPT = """
import json, sys
import numpy as np
from fusionlang.datagen import label_geometry
task = json.load(sys.stdin)
out = []
for k, positions in enumerate(task["geometries"]):
    energy, forces, seconds = label_geometry(task["symbols"], np.array(positions), task["method"], task["basis"],
                                             task["density_fitting"], task["conv_tol"], guess_key=k)
    out.append({"energy": energy, "forces": np.asarray(forces).tolist(), "seconds": seconds})
json.dump(out, sys.stdout)
"""


def label_in_subprocess(symbols: Sequence[str], geometries: Sequence[np.ndarray],
                        labels: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``fusionlang.datagen.label_geometry`` of each geometry (fresh initial guesses), in a
    single-threaded subprocess: energies eV, forces eV/Å, wall seconds."""
    env = dict(os.environ, **{name: "1" for name in THREAD_VARIABLES})
    task = {"symbols": list(symbols), "geometries": [np.asarray(g).tolist() for g in geometries],
            "method": labels["method"], "basis": labels["basis"], "density_fitting": bool(labels["density_fitting"]),
            "conv_tol": float(labels["conv_tol"])}
    done = subprocess.run([sys.executable, "-c", _LABEL_SCRIPT], input=json.dumps(task), capture_output=True,
                          text=True, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    for result in results:
        result["forces"] = np.array(result["forces"])
    return results


def recompute(path: str | Path, index: int, labels: Mapping[str, Any], directional: bool = False) -> dict[str, Any]:
    """Recompute frame ``index`` of an extended XYZ file with ``labels``'s settings (method, basis,
    density_fitting, conv_tol, energy_key, forces_key) and compare with the stored label.

    With ``directional``, also the central difference of the energy along the stored force direction
    ``u`` (step ``h`` = 1e-3 Å, two more labels), which must equal ``-F·u``: a check of the units and
    sign of the stored forces independent of the gradient code.
    """
    atoms = read_frames(path)[index]
    energy_key, forces_key = labels.get("energy_key", "REF_energy"), labels.get("forces_key", "REF_forces")
    stored_energy, stored_forces = float(atoms.info[energy_key]), np.asarray(atoms.arrays[forces_key])
    direction = stored_forces / np.linalg.norm(stored_forces)
    h = 1e-3
    geometries = [atoms.positions]
    if directional:
        geometries += [atoms.positions + h * direction, atoms.positions - h * direction]
    label, *displaced = label_in_subprocess(atoms.get_chemical_symbols(), geometries, labels)
    slope = (displaced[0]["energy"] - displaced[1]["energy"]) / (2 * h) if directional else math.nan
    return {
        "stored_energy": stored_energy,
        "energy": label["energy"],
        "energy_error": abs(label["energy"] - stored_energy),
        "force_error": float(np.abs(label["forces"] - stored_forces).max()),
        "directional_derivative": slope,
        "minus_force_along_it": -float(np.sum(stored_forces * direction)),
        "seconds": label["seconds"],
    }


def _versions_note(dataset: Dataset) -> str:
    from importlib.metadata import version

    made = dataset.manifest.get("versions", {}).get("pyscf")
    here = version("pyscf")
    return "" if made == here else f" (labels made with pyscf {made}, recomputed with {here})"


@pytest.mark.slow
@pytest.mark.parametrize("split,index,directional", RECOMPUTE, ids=[f"{s}{i}" for s, i, _ in RECOMPUTE])
def test_labels_recompute(dataset: Dataset, split: str, index: int, directional: bool) -> None:
    """Measured on ethanol (14 frames of the three trajectories' shards, PySCF 2.14, conv_tol 1e-10 Eh,
    fresh initial guesses where the generator reused the previous geometry's density): energies agree
    to at most 2.0e-8 eV and forces to at most 1.1e-5 eV/Å. The SCF stops when the energy changes by
    less than conv_tol (1e-10 Eh = 2.7e-9 eV) and the orbital gradient is below sqrt(conv_tol) = 1e-5;
    the energy is stationary in the density (error quadratic in it), the forces are not (linear), hence
    the larger force scatter. Tolerances 1e-6 eV and 1e-4 eV/Å: 50x and 9x above the largest seen,
    room for another BLAS or CPU. The directional derivative of the recomputed energy along the
    stored forces matches them to 5e-5 relative (bound 1e-3): units and sign of the stored forces."""
    result = recompute(dataset.folder / f"{split}.extxyz.xz", index, dataset.labels, directional)
    print(result)
    note = _versions_note(dataset)
    assert result["energy_error"] < ENERGY_TOLERANCE, f"{result}{note}"
    assert result["force_error"] < FORCE_TOLERANCE, f"{result}{note}"
    if directional:
        assert result["directional_derivative"] == pytest.approx(result["minus_force_along_it"], rel=1e-3), result
