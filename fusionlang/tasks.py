"""What the trainer (:mod:`fusionlang.training`) fits a model to: a *task* makes the batches, the
loss's terms and their weighted sum, the predictions on a data set, their errors and the reports;
:func:`config_of_section` and :func:`build_model` make the model a configuration trains.
:func:`fusionlang.training.train` uses the model's ``training_task`` when it has one, else
:class:`EnergyForces`; :class:`fusionlang.multistate.MultiStateTask` is the other.

The terms are sums over a batch (float64), which :meth:`Task.combine` divides by the counts of the
*global* batch (structures for energies, components for per-atom vectors), so data-parallel
processes add their terms and get the loss of one process.

>>> EnergyForces().combine(torch.tensor([2.0, 30.0]), 2, 3, type("S", (), {"energy_weight": 1.0,
...                                                                       "forces_weight": 0.1})())
tensor(2.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from . import metrics
from .atoms import Batch, Structure, collate, fit_statistics

__all__ = ["EnergyForces", "Task", "build_model", "config_of_section"]


class Task(Protocol):
    """The interface of a task (``settings`` is a :class:`fusionlang.training.TrainSettings`)."""

    terms: int  # the number of loss terms

    def collate(self, structures: Sequence[Structure], r_max: float) -> Any: ...
    def loss_terms(self, model: torch.nn.Module, batch: Any) -> torch.Tensor: ...
    def combine(self, terms: torch.Tensor, structures: int, components: int, settings: Any) -> torch.Tensor: ...
    def predict(self, model: torch.nn.Module, data: Sequence[Structure], r_max: float, batch_size: int,
                device: torch.device | str) -> Any: ...
    def merge(self, parts: Sequence[tuple[Sequence[int], Any]]) -> Any: ...
    def errors(self, predictions: Any) -> dict[str, Any]: ...
    def loss_value(self, predictions: Any, settings: Any) -> float: ...
    def epoch_line(self, record: Mapping[str, Any]) -> str: ...
    def summary_line(self, name: str, errors: Mapping[str, Any]) -> str: ...
    def write_report(self, out: Path, found: dict[str, Any], history: Sequence[Mapping[str, Any]],
                     predictions: Mapping[str, Any], plots: bool, best_epoch: int) -> None: ...


class EnergyForces:
    """A potential's task: MACE's loss ``energy_weight * mean((ΔE / n_atoms)²) + forces_weight *
    mean(ΔF²)`` and the errors of :mod:`fusionlang.metrics`."""

    terms = 2

    def collate(self, structures: Sequence[Structure], r_max: float) -> Batch:
        return collate(structures, r_max)

    def loss_terms(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """The sums of ``(ΔE / n_atoms)²`` and ``ΔF²`` over the batch (``[2]``, float64)."""
        energy, forces = model.energy_and_forces(batch, create_graph=True)  # type: ignore[operator]
        energy_term = ((energy - batch.energy.to(energy)) / batch.num_atoms.to(energy)).pow(2).sum()
        forces_term = (forces - batch.forces.to(forces)).pow(2).sum()
        return torch.stack([energy_term.double(), forces_term.double()])

    def combine(self, terms: torch.Tensor, structures: int, components: int, settings: Any) -> torch.Tensor:
        """The loss of a batch of ``structures`` with ``components`` force components from its terms."""
        return settings.energy_weight * terms[0] / structures + settings.forces_weight * terms[1] / components

    predict = staticmethod(metrics.predict)
    merge = staticmethod(metrics.merge)
    errors = staticmethod(metrics.errors)
    epoch_line = staticmethod(metrics.epoch_line)
    summary_line = staticmethod(metrics.summary_line)
    write_report = staticmethod(metrics.write_report)

    def loss_value(self, predictions: Any, settings: Any) -> float:
        return metrics.loss_value(predictions, settings.energy_weight, settings.forces_weight)


def config_of_section(values: Mapping[str, Any], species: int, states: int = 1) -> Any:
    """The config of a configuration's ``model:`` section: a :class:`fusionlang.models.MaceConfig`, or
    with 2 or more ``states`` a :class:`fusionlang.multistate.MultiStateConfig` (``ValueError`` if bad)."""
    from .models import MaceConfig
    from .multistate import MultiStateConfig

    if states == 1:
        return MaceConfig.from_dict({**values, "species": species})
    return MultiStateConfig.from_dict({**values, "species": species, "states": states})


def build_model(config: Any, train_set: Sequence[Structure], atomic_numbers: Sequence[int],
                dtype: torch.dtype) -> tuple[torch.nn.Module, Callable[[Any], Any]]:
    """The model of ``config`` with the constants of ``train_set``, and what ``best.pt`` holds of it."""
    from . import models, multistate

    statistics = fit_statistics(train_set, config.r_max, config.species)
    if not isinstance(config, multistate.MultiStateConfig):
        return (models.MacePotential(config, statistics, dtype=dtype),
                lambda m: models.potential_state(m, atomic_numbers))
    shifts = multistate.fit_state_shifts(train_set, statistics)  # type: ignore[arg-type]
    return (multistate.MultiStatePotential(config, statistics, shifts, dtype=dtype),
            lambda m: multistate.multistate_state(m, atomic_numbers))
