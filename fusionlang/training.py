"""Training of interatomic potentials on energies and forces, as MACE and NequIP train them.

:func:`train` fits any ``torch.nn.Module`` with ``energy_and_forces(batch, create_graph)`` with
MACE's loss ``energy_weight * mean((ΔE / n_atoms)²) + forces_weight * mean(ΔF²)`` (eV²), Adam(W),
a ``plateau`` or ``cosine`` schedule, an EMA of the weights (what is evaluated and saved), gradient
clipping, early stopping, exact resumption from ``out/checkpoint.pt``, metrics in meV and plots.
:func:`run_config` reads a YAML or JSON configuration (docs/training.md) and builds a
:class:`fusionlang.models.MacePotential`; ``fusionc train CONFIG`` and ``python -m fusionlang.training
CONFIG`` run it, also under ``torchrun --nproc_per_node K`` (data parallel: see :class:`_LossTerms`).
A model with a ``training_task`` (:mod:`fusionlang.tasks`) brings its own loss and metrics: with
``data.states`` of 2 or more the configuration trains a multi-state model (docs/multistate.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from . import metrics
from .atoms import Batch, Structure, atomic_numbers_in, read_state_structures, read_structures
from .tasks import EnergyForces, Task, build_model, config_of_section

__all__ = ["Config", "ConfigError", "DataSettings", "TrainResult", "TrainSettings", "World", "command", "distributed",
           "load_config", "load_data", "main", "run_config", "train"]

CHECKPOINT, BEST = "checkpoint.pt", "best.pt"
Log = Callable[[str], None]


class ConfigError(ValueError):
    """A problem with a training configuration: ``code`` E903 (bad key or value, exit 2) or E901
    (a file that cannot be read, exit 1), as the ``fusionc`` diagnostics."""

    def __init__(self, message: str, code: str = "E903", hint: str = "") -> None:
        super().__init__(message)
        self.code, self.hint = code, hint or "the keys and their defaults are listed in docs/training.md"


# -- settings ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    """How to train (the ``training:`` section of a configuration; docs/training.md explains each)."""

    max_epochs: int = 100
    batch_size: int = 8              # structures per step (the global batch, over all processes)
    valid_batch_size: int = 32
    lr: float = 0.01
    optimizer: str = "adam"          # adam | adamw
    amsgrad: bool = True             # as MACE
    weight_decay: float = 0.0
    scheduler: str = "plateau"       # plateau | cosine | constant
    lr_factor: float = 0.8           # plateau: multiply the learning rate by this ...
    lr_patience: int = 10            # ... after this many epochs without a better validation loss
    min_lr: float = 0.0
    ema_decay: float | None = 0.99   # null or 0: no EMA
    patience: int = 50               # early stopping: epochs without a better validation loss
    clip_grad: float | None = 10.0   # max gradient norm; null: no clipping
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    coupling_weight: float = 100.0   # multi-state models: the sign-free coupling loss (1/Å²)
    seed: int = 0                    # the model's initial weights and the shuffling of the batches
    device: str = "auto"             # auto | cpu | cuda
    progress: bool = True            # tqdm bar (only on a terminal)
    plots: bool = True               # learning_curves.png, parity.png (needs matplotlib)

    def __post_init__(self) -> None:
        choices = {"optimizer": ("adam", "adamw"), "scheduler": ("plateau", "cosine", "constant"),
                   "device": ("auto", "cpu", "cuda")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {getattr(self, key)!r}")
        if min(self.max_epochs, self.batch_size, self.valid_batch_size, self.patience, self.lr_patience) < 1:
            raise ValueError("max_epochs, batch_size, valid_batch_size, patience and lr_patience must be positive")
        if self.lr < 0 or not 0 < self.lr_factor < 1 or not 0 <= (self.ema_decay or 0) < 1:
            raise ValueError("need lr >= 0, 0 < lr_factor < 1 and 0 <= ema_decay < 1")


@dataclass(frozen=True)
class DataSettings:
    """Which structures to train on (the ``data:`` section; paths relative to the working folder)."""

    train: str
    valid: str | None = None          # none: the first valid_fraction of the shuffled training file
    test: str | None = None
    valid_fraction: float = 0.1
    train_size: int | None = None     # the first n of the shuffled file (a learning curve from one file)
    valid_size: int | None = None
    test_size: int | None = None
    seed: int = 0                     # the shuffle that picks the subsets and the validation split
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    states: int = 1                   # 2 or more: a multi-state model on {energy_key}_S0, ..., coupling_key
    coupling_key: str = "REF_nac"
    atomic_numbers: tuple[int, ...] | None = None   # none: every element in the files, sorted

    def __post_init__(self) -> None:
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be between 0 and 1, not {self.valid_fraction}")
        if min(n for n in (self.train_size, self.valid_size, self.test_size, 1) if n is not None) < 1:
            raise ValueError("train_size, valid_size and test_size must be positive")
        if self.states < 1:
            raise ValueError(f"states must be positive, not {self.states}")


TOP_LEVEL = {"data": "the data files and subsets", "model": "the model's sizes (MaceConfig fields)",
             "training": "the training settings", "out": "the output folder", "dtype": "float32 or float64"}


def _check_value(where: str, value: Any, annotation: str) -> Any:
    """``value`` checked against a field's annotation (bool, int, float, str, tuple[int, ...], X | None)."""
    kinds = annotation.replace(" ", "").split("|")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is None and "None" in kinds:
        return None
    if ("float" in kinds and number) or ("int" in kinds and number and isinstance(value, int)):
        return float(value) if "float" in kinds else value
    if ("bool" in kinds and isinstance(value, bool)) or ("str" in kinds and isinstance(value, str)):
        return value
    if "tuple[int,...]" in kinds and isinstance(value, (list, tuple)) and all(type(v) is int for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: expected {' or '.join(k.replace('None', 'null') for k in kinds)}, got {value!r}")


def _section(cls: Any, values: Any, name: str) -> Any:
    """An instance of the settings dataclass ``cls`` from the mapping ``values`` (section ``name``)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"`{name}` must be a mapping of keys to values, not {values!r}")
    hints = {f.name: str(f.type) for f in fields(cls)}
    known = list(hints)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(f'`{name}.{k}`' for k in unknown)}",
                          hint=f"the keys of `{name}` are {', '.join(known)}{_suggest(unknown[0], known)}")
    checked = {key: _check_value(f"{name}.{key}", value, hints[key]) for key, value in values.items()}
    try:
        return cls(**checked)
    except (TypeError, ValueError) as problem:
        raise ConfigError(f"{name}: {problem}".replace("__init__() ", "")) from None


def _suggest(word: str, known: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


@dataclass(frozen=True)
class Config:
    """A checked training configuration."""

    data: DataSettings
    model: dict[str, Any]
    training: TrainSettings
    out: str | None = None
    dtype: str = "float64"


def load_config(config: str | Path | Mapping[str, Any]) -> Config:
    """Read and check a configuration: a mapping, or a ``.yaml``/``.yml``/``.json`` file."""
    values = config if isinstance(config, Mapping) else _read_config(Path(config))
    if not isinstance(values, Mapping):
        raise ConfigError("a training configuration is a mapping with the keys " + ", ".join(TOP_LEVEL))
    unknown = sorted(set(values) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown top-level key `{unknown[0]}`" + _suggest(unknown[0], list(TOP_LEVEL)),
                          hint="the top-level keys are " + ", ".join(f"`{k}` ({v})" for k, v in TOP_LEVEL.items()))
    if "data" not in values or "train" not in (values["data"] or {}):
        raise ConfigError("the configuration needs `data.train`, the training structures (an extended XYZ file)")
    if values.get("dtype", "float64") not in ("float32", "float64"):
        raise ConfigError(f"dtype must be float32 or float64, not {values['dtype']!r}")
    model = values.get("model") or {}
    if not isinstance(model, Mapping):
        raise ConfigError(f"`model` must be a mapping of MaceConfig fields, not {model!r}")
    out = values.get("out")
    return Config(_section(DataSettings, values["data"], "data"), dict(model),
                  _section(TrainSettings, values.get("training") or {}, "training"),
                  None if out is None else str(out), values.get("dtype", "float64"))


def _read_config(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as failure:
        raise ConfigError(f"cannot read `{path}`: {getattr(failure, 'strerror', None) or failure}", "E901",
                          "check the path of the configuration file") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as problem:
            raise ConfigError(f"{path}: not valid JSON: {problem}") from None
    try:
        import yaml
    except ImportError:
        raise ConfigError("YAML configurations need pyyaml: `pip install pyyaml` (or write the configuration "
                          "as .json)", "E901") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise ConfigError(f"{path}: not valid YAML: {problem}") from None


# -- processes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    """This process's place among the processes of a (``torchrun``) run, and its device."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@contextmanager
def distributed(device: str = "auto") -> Iterator[World]:
    """The :class:`World` of this process: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group
    is started here (nccl with CUDA, else gloo) and ended on leaving, unless it was running already."""
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("training.device is cuda, but CUDA is not available")
    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
        started = True
    running = dist.is_available() and dist.is_initialized()
    try:
        yield World(dist.get_rank() if running else 0, dist.get_world_size() if running else 1,
                    torch.device("cuda", local) if cuda else torch.device("cpu"))
    finally:
        if started:
            dist.destroy_process_group()


class _LossTerms(torch.nn.Module):
    """``forward(batch)``: the task's loss terms of the batch (``[terms]``, float64; the caller divides
    by the counts of the *global* batch). The module wrapped in DDP: the forces
    (``autograd.grad(create_graph=True)`` in the model) are computed in its forward, and DDP reduces the
    gradients of the loss's backward (tests/test_training.py: equal to one process to 1e-10).
    ``batch=None`` (an empty shard) gives zeros that reach every parameter, so every process joins."""

    def __init__(self, model: torch.nn.Module, task: Task) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: Batch | None) -> torch.Tensor:
        if batch is None:
            zero = sum((p.sum() for p in self.parameters()), torch.zeros((), dtype=torch.float64)) * 0.0
            return torch.stack([zero] * self.task.terms).double()
        return self.task.loss_terms(self.model, batch)


class _Ema:
    """An exponential moving average of the parameters (torch_ema's, as MACE uses it: the decay
    warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, parameter in zip(self.model.parameters(), model.parameters(), strict=True):
            average.sub_((1.0 - keep) * (average - parameter))
        for kept, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            kept.copy_(buffer)


# -- the loop -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` gives: ``model``, the evaluated model (the EMA copy; at its best epoch when the
    run is complete); ``metrics``, the content of ``metrics.json`` (empty before the run's end)."""

    model: torch.nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    out: Path
    epochs: int
    best_epoch: int
    stopped_early: bool
    complete: bool


class _Trainer:
    """The state of one run: model, EMA, optimizer, schedule, shuffling, history, best epoch."""

    def __init__(self, model: torch.nn.Module, settings: TrainSettings, world: World, r_max: float,
                 out: Path, log: Log) -> None:
        self.settings, self.world, self.r_max, self.out, self.log = settings, world, r_max, out, log
        self.task: Task = getattr(model, "training_task", None) or EnergyForces()
        self.model = model.to(world.device)
        self.ema = _Ema(self.model, settings.ema_decay) if settings.ema_decay else None
        terms = _LossTerms(self.model, self.task)
        self.module: torch.nn.Module = terms
        if world.size > 1:
            self.module = torch.nn.parallel.DistributedDataParallel(terms)
        self.optimizer = _optimizer(self.model, settings)
        self.scheduler = _scheduler(self.optimizer, settings)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.history: list[dict[str, Any]] = []
        self.best_epoch, self.best_loss, self.stopped_early = 0, math.inf, False
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def evaluated(self) -> torch.nn.Module:
        """The model that is evaluated and saved: the EMA copy, or the model itself without EMA."""
        return self.ema.model if self.ema else self.model

    def step(self, chunk: Sequence[Structure]) -> torch.Tensor:
        """One update on the global batch ``chunk``, of which this process computes its shard."""
        structures, components = len(chunk), 3 * sum(len(s.species) for s in chunk)
        shard = chunk[self.world.rank::self.world.size]
        batch = metrics.to_device(self.task.collate(shard, self.r_max), self.world.device) if shard else None
        terms = self.module(batch)
        # DDP averages the gradients over the processes: the factor `size` turns that into their
        # sum, the gradient of the global batch's loss.
        s = self.settings
        loss = self.world.size * self.task.combine(terms, structures, components, s)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if s.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip_grad)
        self.optimizer.step()
        if self.ema:
            self.ema.update(self.model)
        return terms.detach()

    def epoch(self, data: Sequence[Structure], bar: Any) -> float:
        """One pass over ``data`` in a fresh random order; the epoch's training loss (eV²)."""
        self.model.train()
        order = torch.randperm(len(data), generator=self.generator).tolist()
        sums = torch.zeros(self.task.terms, dtype=torch.float64, device=self.world.device)
        size = self.settings.batch_size
        for start in range(0, len(order), size):
            sums += self.step([data[k] for k in order[start:start + size]])
            if bar is not None:
                bar.update(1)
        if self.world.size > 1:
            torch.distributed.all_reduce(sums)
        atoms = sum(len(s.species) for s in data)
        return float(self.task.combine(sums.cpu(), len(data), 3 * atoms, self.settings))

    def predict(self, data: Sequence[Structure]) -> Any:
        """The evaluated model's predictions on ``data``, each process computing a share."""
        model = self.evaluated.eval()
        ids = list(range(self.world.rank, len(data), self.world.size))
        mine = self.task.predict(model, [data[k] for k in ids], self.r_max, self.settings.valid_batch_size,
                                 self.world.device)
        if self.world.size == 1:
            return mine
        parts: list[Any] = [None] * self.world.size
        torch.distributed.all_gather_object(parts, (ids, mine))
        return self.task.merge(parts)

    def validate(self, epoch: int, train_loss: float, valid: Sequence[Structure], seconds: float,
                 export: Callable[[torch.nn.Module], Any]) -> dict[str, Any]:
        """Evaluate, record the epoch, keep the best model, step the schedule, decide on stopping."""
        s = self.settings
        predictions = self.predict(valid)
        valid_loss = self.task.loss_value(predictions, s)
        found = self.task.errors(predictions)
        record = {"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss,
                  **{f"valid_{k}": v for k, v in found.items() if k not in ("structures", "atoms")},
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds,
                  "best": valid_loss < self.best_loss}
        self.history.append(record)
        if record["best"]:
            self.best_epoch, self.best_loss = epoch, valid_loss
            self.best_state = {k: v.detach().clone() for k, v in self.evaluated.state_dict().items()}
            if self.world.rank == 0:
                metrics.save_atomically(export(self.evaluated), self.out / BEST)
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(valid_loss)
        elif self.scheduler is not None:
            self.scheduler.step()
        self.stopped_early = epoch - self.best_epoch >= s.patience and epoch < s.max_epochs
        return record

    def state(self) -> dict[str, Any]:
        return {"epoch": len(self.history), "model": self.model.state_dict(),
                "ema": None if self.ema is None else self.ema.model.state_dict(),
                "ema_updates": 0 if self.ema is None else self.ema.updates,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "history": self.history, "best_epoch": self.best_epoch, "best_loss": self.best_loss,
                "best_model": self.best_state, "stopped_early": self.stopped_early,
                "settings": asdict(self.settings), "world_size": self.world.size}

    def load(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.model.load_state_dict(state["ema"])
            self.ema.updates = int(state["ema_updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = list(state["history"])
        self.best_epoch, self.best_loss = int(state["best_epoch"]), float(state["best_loss"])
        self.best_state, self.stopped_early = state["best_model"], bool(state["stopped_early"])
        changed = sorted(k for k, v in state["settings"].items() if getattr(self.settings, k, v) != v)
        self.log(f"resuming after epoch {len(self.history)} from {self.out / CHECKPOINT}"
                 + (f" (changed settings: {', '.join(changed)})" if changed else ""))


def _optimizer(model: torch.nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    return kind(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, amsgrad=s.amsgrad)


def _scheduler(optimizer: torch.optim.Optimizer, s: TrainSettings) -> Any:
    if s.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=s.lr_factor, patience=s.lr_patience,
                                                          min_lr=s.min_lr)
    if s.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.max_epochs, eta_min=s.min_lr)
    return None


def train(model: torch.nn.Module, train_data: Sequence[Structure], valid_data: Sequence[Structure],
          settings: TrainSettings | None = None, out: str | Path = "runs/train",
          test_data: Sequence[Structure] | None = None, *, r_max: float | None = None,
          export: Callable[[torch.nn.Module], Any] | None = None, resume: bool = True, stop_after: int | None = None,
          config: Mapping[str, Any] | None = None, log: Log | None = None) -> TrainResult:
    """Train ``model`` on ``train_data``, choosing the best epoch on ``valid_data``; write the
    outputs to ``out`` (docs/training.md). ``r_max`` is the neighbour cutoff of the batches
    (default ``model.config.r_max`` or ``model.r_max``); ``export`` turns the evaluated model into
    what ``best.pt`` holds (default ``{"state_dict": ...}``); with ``resume`` an existing
    ``out/checkpoint.pt`` is continued; ``stop_after`` ends this call after that many epochs (the
    run can be resumed); ``config`` is written to ``out/config.json``; ``log`` gets each log line
    (default: standard output), which also goes to ``out/log.txt``."""
    settings = settings or TrainSettings()
    if not train_data or not valid_data:
        raise ValueError("training needs at least one training and one validation structure")
    if settings.plots:
        metrics.require_matplotlib()
    r_max = next((r for r in (r_max, getattr(getattr(model, "config", None), "r_max", None),
                              getattr(model, "r_max", None)) if r is not None), None)
    if r_max is None:
        raise ValueError("pass r_max: the model has neither config.r_max nor r_max")
    out = Path(out)
    with distributed(settings.device) as world:
        if world.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            if config is not None:
                metrics.save_atomically(dict(config), out / "config.json")
        writer = metrics.logger(out / "log.txt" if world.rank == 0 else None, log)
        trainer = _Trainer(model, settings, world, float(r_max), out, writer)
        if resume and (out / CHECKPOINT).exists():
            try:
                trainer.load(torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True))
            except (RuntimeError, KeyError, ValueError, EOFError) as problem:
                raise ConfigError(f"cannot resume from `{out / CHECKPOINT}`: {str(problem).splitlines()[0]}",
                                  hint="it was written for another model: use --no-resume or another --out") from None
        elif world.rank == 0:
            (out / "log.txt").unlink(missing_ok=True)
        _loop(trainer, train_data, valid_data, export or (lambda m: {"state_dict": m.state_dict()}), stop_after)
        complete = trainer.stopped_early or len(trainer.history) >= settings.max_epochs
        found = _finish(trainer, train_data, valid_data, test_data) if complete else {}
        return TrainResult(trainer.evaluated, trainer.history, found, out, len(trainer.history), trainer.best_epoch,
                           trainer.stopped_early, complete)


def _loop(trainer: _Trainer, train_data: Sequence[Structure], valid_data: Sequence[Structure],
          export: Callable[[torch.nn.Module], Any], stop_after: int | None) -> None:
    s, world = trainer.settings, trainer.world
    steps = math.ceil(len(train_data) / s.batch_size)
    first = len(trainer.history)
    if first == 0:
        trainer.log(f"training {metrics.parameter_count(trainer.model)} parameters on {len(train_data)} structures "
                    f"(validation {len(valid_data)}), {world.size} process{'es' if world.size > 1 else ''} "
                    f"on {world.device}")
    bar = metrics.progress_bar(s.max_epochs * steps, first * steps, s.progress and world.rank == 0)
    last = s.max_epochs if stop_after is None else min(s.max_epochs, first + stop_after)
    try:
        for epoch in range(first + 1, last + 1):
            if trainer.stopped_early:
                break
            start = time.perf_counter()
            train_loss = trainer.epoch(train_data, bar)
            record = trainer.validate(epoch, train_loss, valid_data, time.perf_counter() - start, export)
            if world.rank == 0:
                metrics.save_atomically(trainer.state(), trainer.out / CHECKPOINT)
            trainer.log(trainer.task.epoch_line(record))
            if trainer.stopped_early:
                trainer.log(f"early stop: no better validation loss in {s.patience} epochs "
                            f"(best: epoch {trainer.best_epoch})")
    finally:
        if bar is not None:
            bar.close()


def _finish(trainer: _Trainer, train_data: Sequence[Structure], valid_data: Sequence[Structure],
            test_data: Sequence[Structure] | None) -> dict[str, Any]:
    """Evaluate the best model on every set; write metrics.json, history.json and the plots."""
    s = trainer.settings
    if trainer.best_state is not None:
        trainer.evaluated.load_state_dict(trainer.best_state)
    sets = {"train": train_data, "valid": valid_data, "test": test_data or []}
    predictions = {name: trainer.predict(data) for name, data in sets.items() if data}
    task = trainer.task
    found: dict[str, Any] = {name: {**task.errors(p), "loss": task.loss_value(p, s)} for name, p in predictions.items()}
    found.update(parameters=metrics.parameter_count(trainer.model), epochs=len(trainer.history),
                 best_epoch=trainer.best_epoch, stopped_early=trainer.stopped_early, world_size=trainer.world.size,
                 settings=asdict(s))
    for name in predictions:
        trainer.log(task.summary_line(name, found[name]))
    if trainer.world.rank == 0:
        task.write_report(trainer.out, found, trainer.history, predictions, s.plots, trainer.best_epoch)
    return found


# -- configurations -----------------------------------------------------------------------------------

def _read(path: str, numbers: Sequence[int], data: DataSettings, key: str) -> list[Structure]:
    try:
        if data.states > 1:
            return list(read_state_structures(path, numbers, data.states, data.energy_key, data.forces_key,
                                              data.coupling_key))
        return read_structures(path, numbers, data.energy_key, data.forces_key)
    except KeyError as missing:
        raise ConfigError(f"data.{key}: `{path}` has no {missing} in some frame",
                          hint="set data.energy_key, data.forces_key (and data.coupling_key) to the names the "
                               "file uses") from None
    except (ValueError, OSError, EOFError) as problem:
        raise ConfigError(f"data.{key}: cannot read structures from `{path}`: {problem}", "E901") from None


def _shuffled(data: list[Structure], seed: int) -> list[Structure]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    return [data[k] for k in order]


def _first(data: list[Structure], size: int | None, key: str) -> list[Structure]:
    if size is not None and size > len(data):
        raise ConfigError(f"data.{key} is {size}, but there are only {len(data)} structures")
    return data if size is None else data[:size]


def load_data(data: DataSettings) -> tuple[tuple[int, ...], list[Structure], list[Structure], list[Structure]]:
    """(atomic numbers, training, validation, test structures) of the ``data:`` section: each file
    shuffled with ``data.seed``, the validation set split off the training file when there is no
    validation file, and the first ``*_size`` structures of each kept."""
    paths = {key: getattr(data, key) for key in ("train", "valid", "test") if getattr(data, key) is not None}
    for key, path in paths.items():
        if not Path(path).is_file():
            raise ConfigError(f"data.{key}: no such file `{path}` (from {Path.cwd()})", "E901",
                              "paths are relative to the folder fusionc runs in")
    numbers = data.atomic_numbers if data.atomic_numbers is not None else atomic_numbers_in(*paths.values())
    sets = {key: _shuffled(_read(path, numbers, data, key), data.seed) for key, path in paths.items()}
    train_set = sets["train"]
    if "valid" not in sets:
        split = max(1, round(data.valid_fraction * len(train_set)))
        sets["valid"], train_set = train_set[:split], train_set[split:]
    return (tuple(numbers), _first(train_set, data.train_size, "train_size"),
            _first(sets["valid"], data.valid_size, "valid_size"), _first(sets.get("test", []), data.test_size,
                                                                         "test_size"))


def run_config(config: str | Path | Mapping[str, Any], *, out: str | Path | None = None, resume: bool = True,
               stop_after: int | None = None, log: Log | None = None) -> TrainResult:
    """Train the :class:`fusionlang.models.MacePotential` a configuration describes (docs/training.md):
    read the data, fit the data set statistics on the training structures, build the model (seeded
    with ``training.seed``) and :func:`train` it; ``best.pt`` holds ``potential_state(...)``. With
    ``data.states`` of 2 or more it is a :class:`fusionlang.multistate.MultiStatePotential`
    (docs/multistate.md) and ``best.pt`` holds ``multistate_state(...)``."""
    checked = load_config(config)
    numbers, train_set, valid_set, test_set = load_data(checked.data)
    if not train_set:
        raise ConfigError("no training structures are left after the validation split")
    given = checked.model.get("species")
    if given is not None and given != len(numbers):
        raise ConfigError(f"model.species is {given}, but the data have {len(numbers)} elements {list(numbers)}",
                          hint="leave model.species out: it is set from the data")
    model_config = _model_config(checked, numbers)
    torch.manual_seed(checked.training.seed)
    model, export = build_model(model_config, train_set, numbers, getattr(torch, checked.dtype))
    target = out if out is not None else checked.out or (
        f"runs/{Path(config).stem}" if isinstance(config, (str, Path)) else "runs/train")
    resolved = {"data": {**asdict(checked.data), "atomic_numbers": list(numbers)}, "model": asdict(model_config),
                "training": asdict(checked.training), "dtype": checked.dtype, "out": str(target)}
    return train(model, train_set, valid_set, checked.training, target, test_set, r_max=model_config.r_max,
                 export=export, resume=resume, stop_after=stop_after, config=resolved, log=log)


def _model_config(checked: Config, numbers: Sequence[int]) -> Any:
    try:
        return config_of_section(checked.model, len(numbers), checked.data.states)
    except (TypeError, ValueError) as problem:
        raise ConfigError(f"model: {problem}".replace("__init__() ", ""),
                          hint="the model keys are the fields of fusionlang.models.MaceConfig") from None


def command(config: str, out: str | None = None, resume: bool = True) -> int:
    """Run a configuration as ``fusionc train`` does; configuration problems are reported as
    diagnostics (no traceback) and give exit code 2 (a bad key or value) or 1 (a file)."""
    from .diagnostics import Diagnostic

    try:
        run_config(config, out=out, resume=resume)
    except ConfigError as problem:
        if os.environ.get("RANK", "0") == "0":
            print(Diagnostic(problem.code, str(problem), hint=problem.hint).render(), file=sys.stderr)
        return 1 if problem.code == "E901" else 2
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``fusionc train`` and ``python -m fusionlang.training``."""
    parser.add_argument("config", metavar="CONFIG", help="a .yaml or .json training configuration")
    parser.add_argument("--out", metavar="DIR", help="the output folder (default: `out` of the configuration)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from DIR/checkpoint.pt when it exists (default: yes)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fusionlang.training CONFIG [--out DIR] [--no-resume]`` (also under ``torchrun``)."""
    parser = argparse.ArgumentParser(prog="python -m fusionlang.training", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return command(args.config, args.out, args.resume)


if __name__ == "__main__":
    raise SystemExit(main())
