"""fusionlang.training: two processes (torchrun, gloo) make the update of one with the same global
batch, a resumed run equals an uninterrupted one, early stopping, metrics equal a direct computation
with the saved best model, plots, the ``fusionc train`` command and its configuration errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from fusionlang.atoms import Batch, Structure, collate, read_structures
from fusionlang.cli import main
from fusionlang.models import potential_from_state
from fusionlang.toydata import make_dataset
from fusionlang.training import ConfigError, DataSettings, TrainSettings, load_config, load_data, run_config, train

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = (1, 6, 8)
TINY = {"channels": 4, "lmax": 1, "hidden_lmax": 1, "interactions": 1, "bessel": 4, "radial_mlp": [8],
        "readout_hidden": 4}
QUIET = {"progress": False, "plots": False}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def write_extxyz(path: Path, data: list[Structure]) -> str:
    import ase
    import ase.io

    frames = []
    for s in data:
        atoms = ase.Atoms(numbers=[NUMBERS[int(k)] for k in s.species], positions=s.positions.numpy())
        atoms.info["REF_energy"] = s.energy
        atoms.arrays["REF_forces"] = s.forces.numpy()
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("data")
    data = make_dataset(21, seed=1)
    return {"train": write_extxyz(folder / "train.extxyz", data[:13]),
            "valid": write_extxyz(folder / "valid.extxyz", data[13:17]),
            "test": write_extxyz(folder / "test.extxyz", data[17:])}


def config(files: dict[str, str], test: bool = False, **training: Any) -> dict[str, Any]:
    data = {"train": files["train"], "valid": files["valid"], **({"test": files["test"]} if test else {})}
    return {"data": data, "model": dict(TINY), "dtype": "float64",
            "training": {"batch_size": 4, "max_epochs": 2, **QUIET, **training}}


def quiet(line: str) -> None:
    pass


def checkpoint(out: Path) -> dict[str, Any]:
    return torch.load(out / "checkpoint.pt", weights_only=True)


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-300))
               for k in a if a[k].is_floating_point())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_make_the_update_of_one(files: dict[str, str], tmp_path: Path) -> None:
    # 9 training structures in global batches of 4: shards of 2 + 2, 2 + 2 and 1 + 0 (an empty
    # shard), of different numbers of atoms; 2 epochs = 6 steps.
    settings = config(files, max_epochs=2)
    settings["data"]["train_size"] = 9
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "fusionlang.training", str(path), "--out", str(tmp_path / "two")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("epoch ") == 2  # only rank 0 logs
    one = run_config(settings, out=tmp_path / "one", log=quiet)
    two, single = checkpoint(tmp_path / "two"), checkpoint(tmp_path / "one")
    assert two["world_size"] == 2 and single["world_size"] == 1
    assert relative_difference(single["model"], two["model"]) < 1e-10
    assert relative_difference(single["ema"], two["ema"]) < 1e-10
    assert one.history[-1]["valid_loss"] == pytest.approx(two["history"][-1]["valid_loss"], rel=1e-10)
    assert relative_difference(single["model"], single["ema"]) > 1e-4  # the weights moved: not a trivial match


def test_a_resumed_run_equals_an_uninterrupted_one(files: dict[str, str], tmp_path: Path) -> None:
    settings = config(files, max_epochs=4, scheduler="cosine", optimizer="adamw", weight_decay=1e-3)
    first = run_config(settings, out=tmp_path / "parts", stop_after=2, log=quiet)
    assert not first.complete and first.epochs == 2 and first.metrics == {}
    assert not (tmp_path / "parts" / "metrics.json").exists()
    lines: list[str] = []
    rest = run_config(settings, out=tmp_path / "parts", log=lines.append)
    assert "resuming after epoch 2" in lines[0] and rest.complete and rest.epochs == 4
    whole = run_config(settings, out=tmp_path / "whole", log=quiet)
    a, b = checkpoint(tmp_path / "parts"), checkpoint(tmp_path / "whole")
    for key in ("model", "ema", "best_model"):
        assert relative_difference(a[key], b[key]) < 1e-12
    assert [h["valid_loss"] for h in rest.history] == pytest.approx([h["valid_loss"] for h in whole.history],
                                                                    rel=1e-12)
    assert [h["lr"] for h in rest.history] == [h["lr"] for h in whole.history]
    assert rest.metrics["valid"] == pytest.approx(whole.metrics["valid"], rel=1e-12)
    assert not [p.name for p in (tmp_path / "parts").iterdir() if p.name.startswith(".")]  # no temporary files
    log = (tmp_path / "parts" / "log.txt").read_text()
    assert [line.split()[1] for line in log.splitlines() if line.startswith("epoch ")] == ["1", "2", "3", "4"]
    assert "resuming" in log


def test_early_stopping(files: dict[str, str], tmp_path: Path) -> None:
    # lr 0: the validation loss never improves on the first epoch's
    result = run_config(config(files, lr=0.0, patience=2, max_epochs=10), out=tmp_path, log=quiet)
    assert result.stopped_early and result.epochs == 3 and result.best_epoch == 1 and result.complete
    found = json.loads((tmp_path / "metrics.json").read_text())
    assert found["stopped_early"] and found["epochs"] == 3 and found["best_epoch"] == 1
    assert "early stop" in (tmp_path / "log.txt").read_text()
    again = run_config(config(files, lr=0.0, patience=2, max_epochs=10), out=tmp_path, log=quiet)
    assert again.epochs == 3  # resuming a run that stopped early trains no further


def direct_errors(model: torch.nn.Module, data: list[Structure]) -> dict[str, float]:
    """MAE and RMSE in meV computed here, independently of fusionlang.metrics."""
    batch = collate(data, 5.0)
    energy, forces = model.energy_and_forces(batch)  # type: ignore[operator]
    de = energy.detach() - batch.energy
    df = forces.detach() - batch.forces
    per_atom = de / batch.num_atoms
    return {"energy_mae_meV": 1000 * float(de.abs().mean()),
            "energy_rmse_meV": 1000 * float(de.pow(2).mean().sqrt()),
            "energy_mae_meV_per_atom": 1000 * float(per_atom.abs().mean()),
            "energy_rmse_meV_per_atom": 1000 * float(per_atom.pow(2).mean().sqrt()),
            "forces_mae_meV_per_A": 1000 * float(df.abs().mean()),
            "forces_rmse_meV_per_A": 1000 * float(df.pow(2).mean().sqrt()),
            "structures": len(data), "atoms": int(batch.num_atoms.sum())}


def test_metrics_are_the_errors_of_the_saved_best_model(files: dict[str, str], tmp_path: Path) -> None:
    settings = config(files, test=True, max_epochs=3, plots=True, ema_decay=0.9)
    settings["data"].update(train_size=8, valid_size=3)
    result = run_config(settings, out=tmp_path, log=quiet)
    found = json.loads((tmp_path / "metrics.json").read_text())
    model, numbers = potential_from_state(torch.load(tmp_path / "best.pt", weights_only=True))
    assert numbers == NUMBERS
    _, train_set, valid_set, test_set = load_data(DataSettings(**settings["data"]))
    for name, data in (("train", train_set), ("valid", valid_set), ("test", test_set)):
        assert found[name] == pytest.approx({**direct_errors(model, data), "loss": found[name]["loss"]}, rel=1e-9)
    assert (found["train"]["structures"], found["valid"]["structures"], found["test"]["structures"]) == (8, 3, 4)
    # the saved model is the EMA at the best epoch, whose validation loss the history recorded
    assert found["valid"]["loss"] == pytest.approx(result.history[result.best_epoch - 1]["valid_loss"], rel=1e-12)
    assert relative_difference(checkpoint(tmp_path)["best_model"], model.state_dict()) == 0
    assert found["parameters"] == sum(p.numel() for p in model.parameters()) and found["epochs"] == 3
    assert found["settings"]["ema_decay"] == 0.9 and found["seconds_per_epoch"] > 0
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0]["valid_energy_mae_meV_per_atom"] > 0 and history[0]["lr"] == 0.01
    for plot in ("learning_curves.png", "parity.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = load_config(tmp_path / "config.json")  # the resolved configuration runs again as it is
    assert again.model["channels"] == 4 and again.data.atomic_numbers == NUMBERS and again.data.train_size == 8


def test_subsets_are_nested_and_the_validation_split(files: dict[str, str]) -> None:
    small = load_data(DataSettings(files["train"], valid=files["valid"], train_size=4))
    large = load_data(DataSettings(files["train"], valid=files["valid"], train_size=9))
    assert [s.energy for s in small[1]] == [s.energy for s in large[1][:4]]
    numbers, train_set, valid_set, test_set = load_data(DataSettings(files["train"], valid_fraction=0.25))
    assert numbers == NUMBERS and (len(train_set), len(valid_set), len(test_set)) == (10, 3, 0)
    everything = {s.energy for s in read_structures(files["train"], NUMBERS)}
    assert {s.energy for s in train_set} | {s.energy for s in valid_set} == everything
    assert not {s.energy for s in train_set} & {s.energy for s in valid_set}


class PairPotential(torch.nn.Module):
    """Any model with ``energy_and_forces``: a learnable pair energy per species pair."""

    r_max = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.depth = torch.nn.Parameter(torch.ones(3, 3, dtype=torch.float64))
        self.offset = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))

    def energy_and_forces(self, data: Batch, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            positions = data.positions.detach().requires_grad_(True)
            j, i = data.edge_index
            r = (positions[j] - positions[i]).norm(dim=-1)
            pair = 0.5 * self.depth[data.species[j], data.species[i]] * ((1.5 - r) ** 2 - 1)
            atom = self.offset[data.species].index_add(0, i, pair)
            energy = atom.new_zeros(data.num_structures).index_add(0, data.batch, atom)
            (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
        return energy, -gradient


def test_any_model_with_energy_and_forces_trains(tmp_path: Path) -> None:
    data = make_dataset(10, seed=2)
    result = train(PairPotential(), data[:8], data[8:], TrainSettings(max_epochs=3, batch_size=4, lr=0.05, **QUIET),
                   tmp_path, log=quiet)
    assert result.complete and result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(saved["state_dict"]) == {"depth", "offset"}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_fusionc_train_on_a_yaml_config(files: dict[str, str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config(files, max_epochs=1)))
    code, out, err = run_cli(["train", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "epoch    1" in out and "valid  E MAE" in out
    for name in ("checkpoint.pt", "best.pt", "metrics.json", "history.json", "log.txt", "config.json"):
        assert (tmp_path / "out" / name).is_file(), name


@pytest.mark.parametrize("change,code,words", [
    (lambda c: c["training"].update(lerning_rate=0.1), 2, ["E903", "`training.lerning_rate`"]),
    (lambda c: c["model"].update(chanels=4), 2, ["E903", "chanels"]),
    (lambda c: c["training"].update(batch_size="eight"), 2, ["E903", "training.batch_size", "expected int"]),
    (lambda c: c.update(optimiser="adam"), 2, ["E903", "top-level key `optimiser`"]),
    (lambda c: c["training"].update(scheduler="linear"), 2, ["E903", "scheduler must be one of"]),
    (lambda c: c["data"].update(train="no/such.extxyz"), 1, ["E901", "no/such.extxyz"]),
    (lambda c: c["data"].update(train_size=100), 2, ["E903", "train_size is 100"]),
])
def test_configuration_errors_are_diagnostics(files: dict[str, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], change: Any, code: int,
                                              words: list[str]) -> None:
    settings = config(files)
    change(settings)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(settings))
    found, _, err = run_cli(["train", str(path), "--out", str(tmp_path / "out")], capsys)
    assert found == code and "Traceback" not in err
    for word in words:
        assert word in err, err


def test_a_missing_config_file_and_the_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", str(tmp_path / "none.yaml")], capsys)
    assert code == 1 and "E901" in err and "none.yaml" in err
    example = load_config(ROOT / "examples" / "train" / "ethanol.yaml")
    assert example.data.train.endswith("train.extxyz.xz") and example.dtype == "float32"
    with pytest.raises(ConfigError, match="data.train"):
        load_config({"model": {}})
