"""Strategies chosen by measurement: time every strategy of every statement on this machine.

The planner's choice (:func:`fusionlang.plan.cost.choose`) ranks strategies with a run-time model
fitted on one machine at one batch size; it can be wrong elsewhere (docs/performance.md: the
channelwise ``16x(0e + 1o) ⊗ (0e + 1o)`` ran 1.5x slower than a runner-up at N = 16384). :func:`tune`
measures instead: statement by statement, in order, it compiles the diagram with each strategy
that applies (the statements already tuned keep their fastest), times the module's forward (and
backward, if asked) at the given batch, and keeps the fastest. The result's ``strategies`` go to
``fusionlang.compile(..., strategy=...)``; the generated code stays deterministic for a given
mapping (the measurement is not repeated at compile time).

>>> import fusionlang
>>> text = "diagram d { group O3\\n input x : 2x(0e + 1o)\\n input y : 0e + 1o\\n output z : 2x1o\\n x, y -> z }"
>>> tuning = tune(text, batch=8, repeat=1)
>>> sorted(tuning.strategies) == [0] and tuning.strategies[0] in tuning.times[0]
True
>>> fusionlang.compile(text, strategy=tuning.strategies).classes["d"].__name__
'd'
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import api, ir
from .diagnostics import Diagnostic, FusionError
from .frontend import SourceLike, read_source
from .plan import statement_models
from .plan.strategies import applicable_strategies
from .source import Source
from .testing import module_arguments, torch_threads

__all__ = ["Tuning", "median_ms", "ratio_spread", "rounds_ms", "tune"]


@dataclass(frozen=True)
class Tuning:
    """What :func:`tune` measured for one diagram: the fastest strategy of every statement (by
    statement index: ``fusionlang.compile``'s ``strategy`` mapping), the model's own choice, and
    every strategy's median milliseconds (``None``: it could not plan the statement)."""

    diagram: str
    batch: int
    backward: bool
    threads: int
    strategies: dict[int, str]
    chosen: dict[int, str]
    times: dict[int, dict[str, float | None]]

    def table(self) -> str:
        """The measurements as text: one row per statement and strategy, fastest first."""
        kind = "forward + backward" if self.backward else "forward"
        lines = [f"{self.diagram}: {kind} at N = {self.batch}, median ms on this machine ({self.threads} threads)"]
        for index, times in self.times.items():
            fastest = self.strategies[index]
            for label, ms in sorted(times.items(), key=lambda item: (item[1] is None, item[1] or 0.0)):
                marks = [m for m, on in (("fastest", label == fastest), ("model's choice", label == self.chosen[index]))
                         if on]
                shown = "    --" if ms is None else f"{ms:9.3f}"
                lines.append(f"  statement {index}  {label:22} {shown}  {', '.join(marks)}".rstrip())
        lines.append(f"strategy = {self.strategies!r}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"diagram": self.diagram, "batch": self.batch, "backward": self.backward,
                "threads": self.threads, "strategies": {str(k): v for k, v in self.strategies.items()},
                "chosen": {str(k): v for k, v in self.chosen.items()},
                "times": {str(k): v for k, v in self.times.items()}}


def tune(source: SourceLike, *, name: str | None = None, diagram: str | None = None, batch: int = 1024,
         repeat: int = 5, backward: bool = False, threads: int | None = None) -> Tuning:
    """Measure every strategy of every statement of ``diagram`` (default: the file's first plain
    diagram) at ``batch`` samples, float32, on the CPU with ``threads`` intra-op threads (default:
    torch's current count; restored after); medians of ``repeat`` alternating runs. Raises
    :class:`FusionError` for a graph diagram (its contractions are planned one by one) or a
    missing one."""
    text = read_source(source, name)
    with torch_threads(threads) if threads is not None else contextlib.nullcontext():
        result = api.compile(text)
        target = _plain_diagram(result, diagram)
        models = statement_models(target)
        chosen = {s.index: s.strategy for s in result.program(target.name).report.statements}
        best: dict[int, str] = {}
        times: dict[int, dict[str, float | None]] = {}
        for index in sorted(models):
            labels = [s.label for s in applicable_strategies(models[index])]
            times[index] = _medians({label: _run(text, target.name, {**best, index: label}, batch, backward)
                                     for label in labels}, repeat)
            measured = {label: ms for label, ms in times[index].items() if ms is not None}
            best[index] = min(measured, key=measured.__getitem__) if measured else chosen[index]
        return Tuning(target.name, batch, backward, torch.get_num_threads(), best, chosen, times)


def _plain_diagram(result: api.CompileResult, name: str | None) -> ir.Diagram:
    if name is not None and name not in {d.name for d in result.diagrams}:
        raise FusionError([Diagnostic("E113", f"no diagram `{name}`", None, result.source,
                                      hint=f"the file's diagrams: {', '.join(d.name for d in result.diagrams)}")])
    plain = {unit.diagram.name: unit.diagram for unit in result.units if unit.orchestrator is None}
    wanted = name or next((d.name for d in result.diagrams if d.name in plain), None)
    if wanted not in plain:
        what = f"`{name}` is a graph diagram" if name else "the file has no plain diagram"
        raise FusionError([Diagnostic("E601", f"{what}: its contractions are planned one by one", None, result.source,
                                      hint="tune a plain diagram; write a graph diagram's contraction as one to "
                                           "tune it")])
    return plain[wanted]


def _run(text: Source, diagram: str, strategies: dict[int, str], batch: int,
         backward: bool) -> Callable[[], None] | None:
    """One call of the module compiled with ``strategies`` (None: the planner refused them)."""
    try:
        result = api.compile(text, strategy=strategies)
    except FusionError:
        return None
    module = result.module_class(diagram)()
    args = module_arguments(module, result.diagram(diagram), batch=batch, dtype=torch.float32)
    if not backward:
        def forward() -> None:
            with torch.no_grad():
                module(*args)
        return forward
    leaves = [a.requires_grad_() for a in args]

    def forward_and_backward() -> None:
        out = module(*leaves)
        outputs = out if isinstance(out, tuple) else (out,)
        torch.autograd.backward([o.abs().sum() for o in outputs])
    return forward_and_backward


def _medians(runs: dict[str, Callable[[], None] | None], repeat: int) -> dict[str, float | None]:
    """:func:`median_ms` of the runs that exist (None: the planner refused the strategy)."""
    found = median_ms({label: run for label, run in runs.items() if run is not None}, repeat, warmups=1)
    return {label: found.get(label) for label in runs}


def median_ms(runs: Mapping[str, Callable[[], Any]], repeat: int, warmups: int = 2) -> dict[str, float]:
    """Median milliseconds of every callable over ``repeat`` rounds that alternate between them,
    after ``warmups`` rounds (alternating, a slow phase of a shared machine hits all of them)."""
    return {label: statistics.median(values) for label, values in rounds_ms(runs, repeat, warmups).items()}


def rounds_ms(runs: Mapping[str, Callable[[], Any]], repeat: int, warmups: int = 2) -> dict[str, list[float]]:
    """Milliseconds of every callable in each of ``repeat`` rounds that alternate between them,
    after ``warmups`` rounds: entry ``k`` of every list comes from the same round, so ratios of
    two callables can be taken round by round (:func:`ratio_spread`)."""
    for _ in range(warmups):
        for run in runs.values():
            run()
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(max(1, repeat)):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            samples[label].append((time.perf_counter() - start) * 1e3)
    return samples


def ratio_spread(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[float, float]:
    """The lower and upper quartiles of the round-by-round ratios ``numerator[k] / denominator[k]``
    (times from :func:`rounds_ms`): the noise to quote beside a ratio of medians. Two runs of one
    benchmark minutes apart moved its ratios by up to 1.5x on this project's shared machine, so a
    ratio without its spread says little.

    >>> ratio_spread([2.0, 2.2, 1.8, 2.0], [1.0, 1.0, 1.0, 1.0])
    (1.95, 2.05)
    """
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    if len(ratios) == 1:
        return ratios[0], ratios[0]
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive")
    return quartiles[0], quartiles[2]
