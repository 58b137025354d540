"""Errors of an interatomic potential on a data set, and the reports of a training run: log lines,
progress bar, files written whole or not at all, plots (:mod:`fusionlang.training` uses them).

Energies are in eV and forces in eV/Å in the data; the errors are reported in meV: the energy per
structure (meV), per atom (meV/atom) and the force components (meV/Å), each as MAE and RMSE.

>>> import torch
>>> p = Predictions(torch.tensor([1.0, 2.0], dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64),
...                 torch.tensor([1.002, 2.0], dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64),
...                 torch.tensor([2, 1]))
>>> e = errors(p)
>>> round(e["energy_mae_meV"], 6), round(e["energy_mae_meV_per_atom"], 6), e["structures"], e["atoms"]
(1.0, 0.5, 2, 3)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .atoms import Structure, collate

__all__ = ["Predictions", "epoch_line", "errors", "logger", "loss_value", "merge", "parameter_count",
           "plot_learning_curves", "plot_parity", "predict", "progress_bar", "require_matplotlib", "save_atomically",
           "summary_line", "write_report"]

MEV = 1000.0  # meV per eV


@dataclass(frozen=True)
class Predictions:
    """Predicted and reference energies ``[S]`` (eV) and forces ``[N, 3]`` (eV/Å) of some
    structures (float64, on the CPU), and the number of atoms of each ``[S]``."""

    energy: torch.Tensor
    forces: torch.Tensor
    ref_energy: torch.Tensor
    ref_forces: torch.Tensor
    num_atoms: torch.Tensor

    @property
    def structures(self) -> int:
        return int(self.num_atoms.numel())


def predict(model: torch.nn.Module, data: Sequence[Structure], r_max: float, batch_size: int = 32,
            device: torch.device | str = "cpu") -> Predictions:
    """The energies and forces ``model.energy_and_forces`` gives for ``data``, in order, batch by batch."""
    parts = []
    for start in range(0, len(data), batch_size):
        chunk = data[start:start + batch_size]
        batch = to_device(collate(chunk, r_max), device)
        energy, forces = model.energy_and_forces(batch, create_graph=False)  # type: ignore[operator]
        parts.append(Predictions(energy.detach().double().cpu(), forces.detach().double().cpu(),
                                 torch.tensor([s.energy for s in chunk], dtype=torch.float64),
                                 torch.cat([s.forces for s in chunk]).double(),
                                 torch.tensor([len(s.species) for s in chunk])))
    return concatenate(parts)


def to_device(batch: Any, device: torch.device | str) -> Any:
    """``batch`` (a dataclass of tensors, as :class:`fusionlang.atoms.Batch`) with every tensor on ``device``."""
    if torch.device(device).type == "cpu":
        return batch
    from dataclasses import fields, replace

    return replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in fields(batch)
                             if isinstance(getattr(batch, f.name), torch.Tensor)})


def concatenate(parts: Sequence[Predictions]) -> Predictions:
    """The predictions of several sets of structures, one after the other."""
    if not parts:
        empty = torch.zeros(0, dtype=torch.float64)
        return Predictions(empty, empty.reshape(0, 3), empty, empty.reshape(0, 3), torch.zeros(0, dtype=torch.long))
    return Predictions(*(torch.cat([getattr(p, name) for p in parts])
                         for name in ("energy", "forces", "ref_energy", "ref_forces", "num_atoms")))


def merge(parts: Sequence[tuple[Sequence[int], Predictions]]) -> Predictions:
    """The predictions of shards (the indices of their structures, their predictions) in index order."""
    indices = [k for ids, _ in parts for k in ids]
    whole = concatenate([p for _, p in parts])
    order = sorted(range(len(indices)), key=indices.__getitem__)
    counts = whole.num_atoms.tolist()
    forces, ref_forces = whole.forces.split(counts), whole.ref_forces.split(counts)
    select = torch.tensor(order, dtype=torch.long)
    return Predictions(whole.energy[select], torch.cat([forces[k] for k in order]) if order else whole.forces,
                       whole.ref_energy[select], torch.cat([ref_forces[k] for k in order]) if order else whole.forces,
                       whole.num_atoms[select])


def errors(p: Predictions) -> dict[str, float]:
    """MAE and RMSE of the energy (meV, meV/atom) and of the force components (meV/Å)."""
    de = p.energy - p.ref_energy
    de_atom = de / p.num_atoms.double()
    df = (p.forces - p.ref_forces).flatten()

    def mae(x: torch.Tensor) -> float:
        return float(x.abs().mean()) * MEV

    def rmse(x: torch.Tensor) -> float:
        return float(x.pow(2).mean().sqrt()) * MEV

    return {"energy_mae_meV": mae(de), "energy_rmse_meV": rmse(de),
            "energy_mae_meV_per_atom": mae(de_atom), "energy_rmse_meV_per_atom": rmse(de_atom),
            "forces_mae_meV_per_A": mae(df), "forces_rmse_meV_per_A": rmse(df),
            "structures": p.structures, "atoms": int(p.num_atoms.sum())}


def loss_value(p: Predictions, energy_weight: float, forces_weight: float) -> float:
    """The training loss on these predictions (eV²): ``energy_weight * mean((ΔE / n_atoms)²)
    + forces_weight * mean(ΔF²)``, the mean over structures and over force components."""
    de_atom = (p.energy - p.ref_energy) / p.num_atoms.double()
    return float(energy_weight * de_atom.pow(2).mean() + forces_weight * (p.forces - p.ref_forces).pow(2).mean())


# -- plots ------------------------------------------------------------------------------------------

def require_matplotlib() -> Any:
    """matplotlib's ``Figure`` class, or a clear error (matplotlib is a development dependency)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ModuleNotFoundError(
            "the training plots need matplotlib, which fusionlang does not install: `pip install matplotlib` "
            "(or `pip install -e '.[dev]'`), or set `plots: false` under `training:`") from None
    return Figure


def plot_learning_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """A PNG of the training and validation loss, and of the validation energy and force MAE, per epoch
    (log scale). Uses matplotlib's Agg canvas, never pyplot's global state."""
    figure = require_matplotlib()(figsize=(13, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    epochs = [h["epoch"] for h in history]
    panels = [(("train_loss", "train"), ("valid_loss", "valid")), (("valid_energy_mae_meV_per_atom", "valid"),),
              (("valid_forces_mae_meV_per_A", "valid"),)]
    labels = ["loss (eV²)", "energy MAE (meV/atom)", "force MAE (meV/Å)"]
    for ax, curves, label in zip(axes, panels, labels, strict=True):
        for key, name in curves:
            ax.plot(epochs, [h[key] for h in history], marker=".", label=name)
        ax.set(yscale="log", xlabel="epoch", title=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_parity(p: Predictions, path: str | Path, title: str = "") -> Path:
    """A PNG of predicted against reference energies per atom (eV/atom) and force components (eV/Å)."""
    figure = require_matplotlib()(figsize=(9, 4.2), layout="constrained")
    axes = figure.subplots(1, 2)
    n = p.num_atoms.double()
    e = errors(p)
    pairs = [(p.ref_energy / n, p.energy / n, "energy (eV/atom)", f"MAE {e['energy_mae_meV_per_atom']:.2f} meV/atom"),
             (p.ref_forces.flatten(), p.forces.flatten(), "force components (eV/Å)",
              f"MAE {e['forces_mae_meV_per_A']:.1f} meV/Å")]
    for ax, (reference, predicted, label, mae) in zip(axes, pairs, strict=True):
        ax.scatter(reference.numpy(), predicted.numpy(), s=4, alpha=0.5)
        low, high = float(torch.min(reference.min(), predicted.min())), float(torch.max(reference.max(),
                                                                                         predicted.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        ax.set(xlabel=f"reference {label}", ylabel=f"predicted {label}", title=mae)
        ax.grid(True, alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _save(figure: Any, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    return target


# -- reports of a run -------------------------------------------------------------------------------

def parameter_count(module: torch.nn.Module) -> int:
    """The number of trainable numbers in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def save_atomically(value: Any, path: Path) -> None:
    """``torch.save`` (JSON text for ``.json``) through a temporary file and a rename: never half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix == ".json":
        temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    else:
        torch.save(value, temporary)
    os.replace(temporary, path)


def epoch_line(r: Mapping[str, Any]) -> str:
    """The log line of one epoch of the history (``*``: the best validation loss so far)."""
    return (f"epoch {r['epoch']:4d}  loss {r['train_loss']:.4e}  valid loss {r['valid_loss']:.4e}  "
            f"E {r['valid_energy_mae_meV_per_atom']:8.3f} meV/atom  F {r['valid_forces_mae_meV_per_A']:8.2f} meV/Å  "
            f"lr {r['lr']:.2e}  {r['seconds']:6.1f} s{'  *' if r['best'] else ''}")


def summary_line(name: str, e: Mapping[str, Any]) -> str:
    """The log line of the errors on one set."""
    return (f"{name:5s}  E MAE {e['energy_mae_meV_per_atom']:.3f} meV/atom (RMSE {e['energy_rmse_meV_per_atom']:.3f})"
            f"  F MAE {e['forces_mae_meV_per_A']:.2f} meV/Å (RMSE {e['forces_rmse_meV_per_A']:.2f})")


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar over the steps of a run, when tqdm is installed and standard error is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", desc="training", leave=False, dynamic_ncols=True)


def logger(path: Path | None, log: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """Write each line to ``log`` (default: standard output, beside a tqdm bar) and append it to
    ``path``; ``path=None``: a logger that writes nothing (the other processes of a run)."""
    def write(line: str) -> None:
        if path is None:
            return
        if log is not None:
            log(line)
        else:
            try:
                from tqdm import tqdm
                tqdm.write(line, file=sys.stdout)
            except ImportError:
                print(line, flush=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    return write


def write_report(out: Path, found: dict[str, Any], history: Sequence[Mapping[str, Any]],
                 predictions: Mapping[str, Predictions], plots: bool, best_epoch: int) -> None:
    """``out/metrics.json`` (``found`` with the time per epoch and the units), ``out/history.json``
    and, with ``plots``, ``out/learning_curves.png`` and ``out/parity.png`` (test set, else valid)."""
    seconds = [h["seconds"] for h in history]
    found.update(seconds_per_epoch=sum(seconds) / max(len(seconds), 1), seconds=sum(seconds),
                 units={"energy": "meV, meV/atom", "forces": "meV/Å (per component)", "loss": "eV²"})
    save_atomically(found, out / "metrics.json")
    save_atomically(list(history), out / "history.json")
    if plots:
        shown = "test" if "test" in predictions else "valid"
        plot_learning_curves(history, out / "learning_curves.png")
        plot_parity(predictions[shown], out / "parity.png", title=f"{shown} set, best epoch {best_epoch}")
