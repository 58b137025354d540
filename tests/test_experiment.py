"""scripts/experiment_ethanol.py end to end on a toy data set (two models, two seeds, two steps):
runs resume instead of restarting, the report pairs runs by seed, and the plots are written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fusionlang.toydata import make_dataset

ROOT = Path(__file__).resolve().parent.parent


def write_extxyz(path: Path, structures: list) -> None:
    ase_io = pytest.importorskip("ase.io")
    from ase import Atoms

    frames = []
    for s in structures:
        atoms = Atoms(numbers=[(1, 6, 8)[int(z)] for z in s.species], positions=s.positions.numpy())
        atoms.info["REF_energy"] = s.energy
        atoms.arrays["REF_forces"] = s.forces.numpy()
        frames.append(atoms)
    ase_io.write(path, frames, format="extxyz")


@pytest.fixture(scope="module")
def script():
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("experiment_ethanol", ROOT / "scripts" / "experiment_ethanol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_runs_resumes_and_reports(tmp_path: Path, script, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    data = tmp_path / "data"
    data.mkdir()
    for split, (count, seed) in {"train": (8, 0), "valid": (3, 1), "test": (3, 2)}.items():
        write_extxyz(data / f"{split}.extxyz", make_dataset(count, seed=seed))
        (data / f"{split}.extxyz.xz").write_bytes(__import__("lzma").compress((data / f"{split}.extxyz").read_bytes()))
    argv = ["--data", str(data), "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"), "--sizes", "4",
            "--seeds", "0", "1", "--steps", "1", "--channels", "2", "--radial-mlp", "4", "--test-size", "2",
            "--models", "mace", "fusion-small", "--workers", "0", "--no-run-plots"]
    try:
        assert script.main(argv) == 0
        first = (tmp_path / "runs" / "mace" / "n4" / "seed0" / "metrics.json").read_text()
        assert script.main(argv) == 0  # finished runs are skipped, not retrained
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "runs" / "mace" / "n4" / "seed0" / "metrics.json").read_text() == first
    tables = (tmp_path / "docs" / "ethanol_tables.md").read_text()
    assert "| MACE | 4 | 2 |" in tables and "fusion block with fewer parameters vs plain | 4 | 2 |" in tables
    runs = json.loads((tmp_path / "docs" / "ethanol_runs.json").read_text())["runs"]
    assert sorted(runs) == ["fusion-small/n4/seed0", "fusion-small/n4/seed1", "mace/n4/seed0", "mace/n4/seed1"]
    assert all(run["parameters"] > 0 and run["epochs"] == 2 for run in runs.values())
    assert (tmp_path / "docs" / "ethanol_learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
