"""A multi-state equivariant model: one potential energy surface per electronic state and the S0–S1
derivative coupling, from the same compiled ``.fusion`` layers as :class:`fusionlang.models.MacePotential`
(docs/multistate.md)::

    h, e = MaceBody.features(positions)              e: [N, states], summed over the layers' readouts
    E_s  = Σ_i E0[species_i] + scale · e_is + shift_s              F_s = -∂E_s/∂pos  (autograd, per state)
    d_i  = coupling(h_i) - mean over the molecule                  mace_linear: channels x (0e + 1o) -> 1x1o

The last layer's features go up to ``1o`` (MacePotential's stop at scalars), and a compiled linear
map reads one odd vector per atom from them: the coupling ⟨S0|∂S1/∂R⟩ (1/Å) is learned directly.
Its sign is arbitrary per geometry, so it is learned with the sign-free loss
``min(‖d̂ − d‖², ‖d̂ + d‖²)``, the minimum taken once per geometry over the whole molecule's vector
(:func:`sign_free_squared_errors`). Removing the molecule's mean keeps ``Σ_i d_i = 0``, as the
reference (with electron translation factors) has it.

>>> from fusionlang.atoms import StateStructure, collate_states
>>> s = StateStructure(torch.tensor([[0.0, 0, 0], [1.3, 0, 0]], dtype=torch.float64), torch.tensor([0, 1]),
...                    0.0, torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0.0, 5.0], dtype=torch.float64),
...                    torch.zeros(2, 2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
>>> model = MultiStatePotential(MultiStateConfig(species=2, channels=4, lmax=1, interactions=1, radial_mlp=(8,)),
...                             dtype=torch.float64)
>>> energies, forces, coupling = model.predict_states(collate_states([s, s]))
>>> energies.shape, forces.shape, coupling.shape
(torch.Size([2, 2]), torch.Size([2, 4, 3]), torch.Size([4, 3]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import metrics
from .atoms import StateBatch, StateStructure, Statistics, collate_states
from .models import MaceBody, MaceConfig, _compiled, _irreps, linear_source, potential_state

__all__ = ["MultiStateConfig", "MultiStatePotential", "MultiStateTask", "StateEnergiesTask", "StatePredictions",
           "align_signs", "fit_state_shifts", "multistate_from_state", "multistate_state", "sign_free_squared_errors"]


@dataclass(frozen=True)
class MultiStateConfig(MaceConfig):
    """A :class:`fusionlang.models.MaceConfig` and the number of electronic states (S0, S1, ...).
    ``energies_only``: trained on the states' energies alone (:class:`StateEnergiesTask`: stilbene,
    whose forces and couplings this machine cannot afford); the coupling output is then untrained."""

    states: int = 2
    energies_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.states < 2 or self.lmax < 1:
            raise ValueError(f"a multi-state model needs states >= 2 and lmax >= 1 (the coupling is a vector), "
                             f"got states {self.states}, lmax {self.lmax}")


# -- the sign-free coupling ------------------------------------------------------------------------

def _per_structure(values: torch.Tensor, batch: torch.Tensor, count: int) -> torch.Tensor:
    return values.new_zeros(count).index_add(0, batch, values)


def sign_free_squared_errors(predicted: torch.Tensor, reference: torch.Tensor, batch: torch.Tensor,
                             count: int) -> torch.Tensor:
    """``min(‖d̂ − d‖², ‖d̂ + d‖²)`` of every structure ``[count]``: one sign for the whole molecule.

    >>> d = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]])
    >>> sign_free_squared_errors(d, -d, torch.tensor([0, 0]), 1).tolist()
    [0.0]
    """
    minus = _per_structure((predicted - reference).pow(2).sum(-1), batch, count)
    plus = _per_structure((predicted + reference).pow(2).sum(-1), batch, count)
    return torch.minimum(minus, plus)


def align_signs(predicted: torch.Tensor, reference: torch.Tensor, batch: torch.Tensor, count: int) -> torch.Tensor:
    """``reference`` with each structure's sign flipped where that brings it closer to ``predicted``."""
    minus = _per_structure((predicted - reference).pow(2).sum(-1), batch, count)
    plus = _per_structure((predicted + reference).pow(2).sum(-1), batch, count)
    signs = torch.where(plus < minus, -1.0, 1.0).to(reference)
    return reference * signs[batch, None]


# -- the model -------------------------------------------------------------------------------------

def fit_state_shifts(data: Sequence[StateStructure], statistics: Statistics) -> tuple[float, ...]:
    """Each state's mean energy per atom left after the ground state's ``E0`` (eV): the states' shifts."""
    e0 = torch.tensor(statistics.atomic_energies, dtype=torch.float64)
    left = torch.stack([(s.energies - e0[s.species].sum()) / len(s.species) for s in data])
    return tuple(float(x) for x in left.mean(0))


class MultiStatePotential(MaceBody):
    """Energies of ``config.states`` states, their forces and the S0–S1 coupling vector per atom.

    ``statistics`` are the ground state's (:func:`fusionlang.atoms.fit_statistics` on the structures,
    whose ``energy`` is S0's); ``shifts`` the states' energies per atom after E0
    (:func:`fit_state_shifts`; default ``statistics.shift`` for every state)."""

    state_shifts: torch.Tensor

    def __init__(self, config: MultiStateConfig, statistics: Statistics | None = None,
                 shifts: Sequence[float] | None = None, dtype: torch.dtype | None = None) -> None:
        statistics = statistics or Statistics()
        dtype = dtype or torch.get_default_dtype()
        super().__init__(config, statistics, dtype, outputs=config.states, last_lmax=1)
        shifts = tuple(shifts) if shifts is not None else (statistics.shift,) * config.states
        if len(shifts) != config.states:
            raise ValueError(f"{len(shifts)} shifts for {config.states} states")
        self.register_buffer("state_shifts", torch.tensor(shifts, dtype=torch.float64))
        self.coupling = _compiled(linear_source(_irreps(config.channels, 1), "1x1o"), "multistate_coupling", dtype)

    @property
    def training_task(self) -> MultiStateTask:
        """How :func:`fusionlang.training.train` trains it."""
        return StateEnergiesTask() if getattr(self.config, "energies_only", False) else MultiStateTask()

    def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                batch: torch.Tensor, num_structures: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(energies ``[S, states]`` in eV, float64; the coupling vectors ``[N, 3]`` in 1/Å)."""
        h, interaction = self.features(positions, species, edge_index)
        per_atom = (self.atomic_energies[species, None] + (self.scale * interaction).to(torch.float64)
                    + self.state_shifts)
        energies = per_atom.new_zeros(num_structures, per_atom.shape[1]).index_add(0, batch, per_atom)
        vectors = self.coupling(h)
        counts = _per_structure(torch.ones_like(vectors[:, 0]), batch, num_structures)
        means = vectors.new_zeros(num_structures, 3).index_add(0, batch, vectors) / counts[:, None]
        return energies, vectors - means[batch]

    def predict_energies(self, data: StateBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``[S, states]`` and couplings ``[N, 3]`` of a batch, without forces (an energies-only
        task's loss and predictions: one backward per training step instead of two)."""
        return self(data.positions.to(self.dtype), data.species, data.edge_index, data.batch, data.num_structures)

    def predict_states(self, data: StateBatch,
                       create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energies ``[S, states]``, forces ``-∂E_s/∂pos`` ``[states, N, 3]`` and couplings ``[N, 3]``."""
        with torch.enable_grad():
            positions = data.positions.to(self.dtype).detach().requires_grad_(True)
            energies, coupling = self(positions, data.species, data.edge_index, data.batch, data.num_structures)
            forces = torch.stack([-torch.autograd.grad(energies[:, s].sum(), positions, create_graph=create_graph,
                                                       retain_graph=True)[0] for s in range(energies.shape[1])])
        if not create_graph:
            energies, coupling = energies.detach(), coupling.detach()
        return energies, forces, coupling


# -- saving ----------------------------------------------------------------------------------------

STATE_KIND = "fusionlang.MultiStatePotential"


def multistate_state(model: MultiStatePotential, atomic_numbers: Sequence[int]) -> dict[str, Any]:
    """What :func:`multistate_from_state` rebuilds ``model`` from (as :func:`fusionlang.models.potential_state`)."""
    return {**potential_state(model, atomic_numbers), "kind": STATE_KIND}


def multistate_from_state(state: Mapping[str, Any]) -> tuple[MultiStatePotential, tuple[int, ...]]:
    """The model and atomic numbers saved by :func:`multistate_state`."""
    if state.get("kind") != STATE_KIND:
        raise ValueError(f"not a saved multi-state potential (kind {state.get('kind')!r})")
    statistics = {**state["statistics"], "atomic_energies": tuple(state["statistics"].get("atomic_energies", ()))}
    config: MultiStateConfig = MultiStateConfig.from_dict(state["config"])  # type: ignore[assignment]
    model = MultiStatePotential(config, Statistics(**statistics), state["state_dict"]["state_shifts"].tolist(),
                                dtype=getattr(torch, state["dtype"]))
    model.load_state_dict(state["state_dict"])
    return model, tuple(state["atomic_numbers"])


# -- training --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatePredictions:
    """Predicted and reference energies ``[S, states]`` (eV), forces ``[states, N, 3]`` (eV/Å) and
    couplings ``[N, 3]`` (1/Å) of some structures (float64, CPU), and their atom counts ``[S]``."""

    energy: torch.Tensor
    forces: torch.Tensor
    coupling: torch.Tensor
    ref_energy: torch.Tensor
    ref_forces: torch.Tensor
    ref_coupling: torch.Tensor
    num_atoms: torch.Tensor

    @property
    def structures(self) -> int:
        return int(self.num_atoms.numel())

    @property
    def states(self) -> int:
        return int(self.energy.shape[1])

    @property
    def batch(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self.num_atoms)), self.num_atoms)

    def state(self, s: int) -> metrics.Predictions:
        """State ``s``'s energies and forces, as a single-state potential's predictions."""
        return metrics.Predictions(self.energy[:, s], self.forces[s], self.ref_energy[:, s], self.ref_forces[s],
                                   self.num_atoms)

    def coupling_squared_errors(self) -> torch.Tensor:
        """The sign-free squared error of every structure's coupling ``[S]`` (1/Å²)."""
        return sign_free_squared_errors(self.coupling, self.ref_coupling, self.batch, len(self.num_atoms))


def _concatenate(parts: Sequence[StatePredictions]) -> StatePredictions:
    dims = {"forces": 1, "ref_forces": 1}
    return StatePredictions(**{name: torch.cat([getattr(p, name) for p in parts], dim=dims.get(name, 0))
                               for name in StatePredictions.__dataclass_fields__})


def _select(p: StatePredictions, order: Sequence[int]) -> StatePredictions:
    """The structures ``order`` of ``p``, in that order."""
    counts = p.num_atoms.tolist()

    def atoms(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        pieces = x.split(counts, dim=dim)
        return torch.cat([pieces[k] for k in order], dim=dim)

    pick = torch.tensor(order, dtype=torch.long)
    return StatePredictions(p.energy[pick], atoms(p.forces, 1), atoms(p.coupling), p.ref_energy[pick],
                            atoms(p.ref_forces, 1), atoms(p.ref_coupling), p.num_atoms[pick])


class MultiStateTask:
    """The trainer's task (:class:`fusionlang.tasks.Task`) for a :class:`MultiStatePotential`.

    Terms: Σ_s (ΔE_s / n_atoms)² per structure, Σ_s ΔF_s² per force component and the sign-free
    coupling error per coupling component, weighted by ``energy_weight``, ``forces_weight`` and
    ``coupling_weight``. Errors: every state's as a single-state potential's, prefixed ``S0_``,
    ``S1_``, ...; their means over the states under the single-state names; the coupling's MAE and
    RMSE per component after aligning each structure's sign (1/Å)."""

    terms = 3

    def collate(self, structures: Sequence[StateStructure], r_max: float) -> StateBatch:
        return collate_states(structures, r_max)

    def loss_terms(self, model: torch.nn.Module, batch: StateBatch) -> torch.Tensor:
        energy, forces, coupling = model.predict_states(batch, create_graph=True)  # type: ignore[operator]
        energy_term = ((energy - batch.energies.to(energy)) / batch.num_atoms.to(energy)[:, None]).pow(2).sum()
        forces_term = (forces - batch.state_forces.to(forces)).pow(2).sum()
        coupling_term = sign_free_squared_errors(coupling, batch.coupling.to(coupling), batch.batch,
                                                 batch.num_structures).sum()
        return torch.stack([energy_term.double(), forces_term.double(), coupling_term.double()])

    def combine(self, terms: torch.Tensor, structures: int, components: int, s: Any) -> torch.Tensor:
        return (s.energy_weight * terms[0] / structures + s.forces_weight * terms[1] / components
                + s.coupling_weight * terms[2] / components)

    def predict(self, model: torch.nn.Module, data: Sequence[StateStructure], r_max: float, batch_size: int = 32,
                device: torch.device | str = "cpu") -> StatePredictions:
        parts = []
        for start in range(0, len(data), batch_size):
            batch = metrics.to_device(collate_states(data[start:start + batch_size], r_max), device)
            energy, forces, coupling = model.predict_states(batch)  # type: ignore[operator]
            parts.append(StatePredictions(energy.double().cpu(), forces.double().cpu(),
                                          coupling.double().cpu(), batch.energies.cpu(), batch.state_forces.cpu(),
                                          batch.coupling.cpu(), batch.num_atoms.cpu()))
        return _concatenate(parts)

    def merge(self, parts: Sequence[tuple[Sequence[int], StatePredictions]]) -> StatePredictions:
        indices = [k for ids, _ in parts for k in ids]
        return _select(_concatenate([p for _, p in parts]), sorted(range(len(indices)), key=indices.__getitem__))

    def errors(self, p: StatePredictions) -> dict[str, float]:
        per_state = [metrics.errors(p.state(s)) for s in range(p.states)]
        found: dict[str, Any] = {f"S{s}_{k}": v for s, e in enumerate(per_state) for k, v in e.items()
                                 if k not in ("structures", "atoms")}
        found.update({k: sum(e[k] for e in per_state) / p.states for k in per_state[0]
                      if k not in ("structures", "atoms")})
        aligned = align_signs(p.coupling, p.ref_coupling, p.batch, len(p.num_atoms))
        difference = (p.coupling - aligned).flatten()
        found.update(coupling_mae_per_A=float(difference.abs().mean()),
                     coupling_rmse_per_A=float(difference.pow(2).mean().sqrt()),
                     structures=p.structures, atoms=int(p.num_atoms.sum()))
        return found

    def loss_value(self, p: StatePredictions, s: Any) -> float:
        components = p.ref_coupling.numel()
        energy = float(((p.energy - p.ref_energy) / p.num_atoms.double()[:, None]).pow(2).sum()) / p.structures
        forces = float((p.forces - p.ref_forces).pow(2).sum()) / components
        coupling = float(p.coupling_squared_errors().sum()) / components
        return s.energy_weight * energy + s.forces_weight * forces + s.coupling_weight * coupling

    def epoch_line(self, r: Mapping[str, Any]) -> str:
        states = sorted({k.split("_")[1] for k in r if k.startswith("valid_S") and k.endswith("energy_mae_meV")})
        parts = "  ".join(f"{s} E {r[f'valid_{s}_energy_mae_meV']:.1f} meV F {r[f'valid_{s}_forces_mae_meV_per_A']:.1f}"
                          for s in states)
        return (f"epoch {r['epoch']:4d}  loss {r['train_loss']:.4e}  valid loss {r['valid_loss']:.4e}  {parts}  "
                f"d {r['valid_coupling_mae_per_A']:.4f} 1/Å  lr {r['lr']:.2e}  {r['seconds']:6.1f} s"
                f"{'  *' if r['best'] else ''}")

    def summary_line(self, name: str, e: Mapping[str, Any]) -> str:
        states = sorted({k.split("_")[0] for k in e if k.startswith("S") and k.endswith("energy_mae_meV")})
        parts = "  ".join(f"{s} E MAE {e[f'{s}_energy_mae_meV']:.2f} meV  F MAE {e[f'{s}_forces_mae_meV_per_A']:.2f} "
                          f"meV/Å" for s in states)
        return f"{name:5s}  {parts}  coupling MAE {e['coupling_mae_per_A']:.4f} 1/Å (sign-free)"

    def write_report(self, out: Path, found: dict[str, Any], history: Sequence[Mapping[str, Any]],
                     predictions: Mapping[str, StatePredictions], plots: bool, best_epoch: int) -> None:
        """As :func:`fusionlang.metrics.write_report`; the parity plots are ``parity_S0.png``, ...."""
        metrics.write_report(out, found, history, {}, False, best_epoch)
        found["units"] = {**found["units"], "coupling": "1/Å (per component, sign aligned per structure)",
                          "loss": "eV² (energies, forces) + coupling_weight · 1/Å²"}
        metrics.save_atomically(found, out / "metrics.json")
        if plots:
            shown = "test" if "test" in predictions else "valid"
            metrics.plot_learning_curves(history, out / "learning_curves.png")
            for s in range(predictions[shown].states):
                metrics.plot_parity(predictions[shown].state(s), out / f"parity_S{s}.png",
                                    title=f"S{s}, {shown} set, best epoch {best_epoch}")



class StateEnergiesTask(MultiStateTask):
    """:class:`MultiStateTask` on energies alone: the loss is Σ_s (ΔE_s / n_atoms)² per structure,
    no forces are computed (one backward per step, not two), and the errors are every state's energy
    MAE and RMSE (meV) and the S1−S0 gap's MAE (meV). Forces and couplings in the batches are ignored."""

    def loss_terms(self, model: torch.nn.Module, batch: StateBatch) -> torch.Tensor:
        energy, _ = model.predict_energies(batch)  # type: ignore[operator]
        energy_term = ((energy - batch.energies.to(energy)) / batch.num_atoms.to(energy)[:, None]).pow(2).sum()
        zero = energy_term.new_zeros(())
        return torch.stack([energy_term.double(), zero.double(), zero.double()])

    def predict(self, model: torch.nn.Module, data: Sequence[StateStructure], r_max: float, batch_size: int = 32,
                device: torch.device | str = "cpu") -> StatePredictions:
        parts = []
        for start in range(0, len(data), batch_size):
            batch = metrics.to_device(collate_states(data[start:start + batch_size], r_max), device)
            with torch.no_grad():
                energy, coupling = model.predict_energies(batch)  # type: ignore[operator]
            zeros = batch.state_forces.cpu()
            parts.append(StatePredictions(energy.double().cpu(), zeros, coupling.double().cpu(), batch.energies.cpu(),
                                          zeros, batch.coupling.cpu(), batch.num_atoms.cpu()))
        return _concatenate(parts)

    def errors(self, p: StatePredictions) -> dict[str, float]:
        found: dict[str, Any] = {}
        for s in range(p.states):
            delta = (p.energy[:, s] - p.ref_energy[:, s]) * 1000
            found.update({f"S{s}_energy_mae_meV": float(delta.abs().mean()),
                          f"S{s}_energy_rmse_meV": float(delta.pow(2).mean().sqrt())})
        gap = ((p.energy[:, 1] - p.energy[:, 0]) - (p.ref_energy[:, 1] - p.ref_energy[:, 0])) * 1000
        found.update(energy_mae_meV=sum(found[f"S{s}_energy_mae_meV"] for s in range(p.states)) / p.states,
                     gap_mae_meV=float(gap.abs().mean()), structures=p.structures, atoms=int(p.num_atoms.sum()))
        return found

    def loss_value(self, p: StatePredictions, s: Any) -> float:
        energy = float(((p.energy - p.ref_energy) / p.num_atoms.double()[:, None]).pow(2).sum()) / p.structures
        return s.energy_weight * energy

    def epoch_line(self, r: Mapping[str, Any]) -> str:
        states = sorted({k.split("_")[1] for k in r if k.startswith("valid_S") and k.endswith("energy_mae_meV")})
        parts = "  ".join(f"{s} E {r[f'valid_{s}_energy_mae_meV']:.1f} meV" for s in states)
        return (f"epoch {r['epoch']:4d}  loss {r['train_loss']:.4e}  valid loss {r['valid_loss']:.4e}  {parts}  "
                f"gap {r['valid_gap_mae_meV']:.1f} meV  lr {r['lr']:.2e}  {r['seconds']:6.1f} s"
                f"{'  *' if r['best'] else ''}")

    def summary_line(self, name: str, e: Mapping[str, Any]) -> str:
        states = sorted({k.split("_")[0] for k in e if k.startswith("S") and k.endswith("energy_mae_meV")})
        parts = "  ".join(f"{s} E MAE {e[f'{s}_energy_mae_meV']:.2f} meV" for s in states)
        return f"{name:5s}  {parts}  gap MAE {e['gap_mae_meV']:.2f} meV"

    def write_report(self, out: Path, found: dict[str, Any], history: Sequence[Mapping[str, Any]],
                     predictions: Mapping[str, StatePredictions], plots: bool, best_epoch: int) -> None:
        metrics.write_report(out, found, history, {}, False, best_epoch)
        found["units"] = {**found["units"], "loss": "eV² per atom² (energies only)"}
        metrics.save_atomically(found, out / "metrics.json")
        if plots:
            metrics.plot_learning_curves(history, out / "learning_curves.png")
