"""A differential fuzzer: every input is rejected with good diagnostics, or compiles to a correct module.

:func:`run_case` is the oracle. It classifies one ``.fusion`` text as

* ``rejected``: :func:`~fusionlang.frontend.check_source` reports errors (each with a registered
  code and, except for file-level codes, a span inside the text) and
  :func:`fusionlang.api.compile` raises :class:`~fusionlang.diagnostics.FusionError`;
* ``ok``: accepted, compiled, every module built and run on random inputs (plain or graph),
  equivariant under random rotations and reflections in float64 to 1e-10, equal to
  :func:`fusionlang.testing.reference_forward` (plain diagrams in the real basis), refusing an
  input of the wrong size, and ``fmt`` output that re-parses and re-checks to the same result;
* a defect (:data:`DEFECTS`): ``traceback`` (any exception but ``FusionError``, at any stage),
  ``not_equivariant``, ``reference_mismatch``, ``bad_output`` (wrong count, shape or NaN),
  ``accepts_misshaped``, ``late_rejection`` (accepted by ``check``, refused by ``compile``),
  ``bad_diagnostic``, ``fmt_roundtrip``; and, from a :class:`Runner` (which runs cases in
  worker processes under a time budget), ``hang`` and ``crash``.

The inputs come from :mod:`fusionlang.fuzz_inputs` (:func:`campaign_inputs`); a :class:`Runner`
runs many of them in worker processes, a :class:`Campaign` counts the outcomes and keeps one case
per defect signature, and :func:`minimize` shrinks it. ``scripts/fuzz.py`` is the command line.

>>> run_case("diagram d { group O3\\n input x : 1o\\n output y : 1o\\n x -> y }").kind
'ok'
>>> run_case("diagram d {").kind
'rejected'
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from .diagnostics import CODES, Diagnostic, FusionError
from .fuzz_inputs import Case, campaign_inputs

__all__ = ["DEFECTS", "Campaign", "Case", "Outcome", "Runner", "campaign_inputs", "exception_site", "minimize",
           "run_case"]

DEFECTS = ("traceback", "not_equivariant", "reference_mismatch", "bad_output", "accepts_misshaped",
           "late_rejection", "bad_diagnostic", "fmt_roundtrip", "hang", "crash")
TOLERANCE = 1e-10
SPANLESS_CODES = frozenset({"E113", "E114"})  # file-level diagnostics (and E9xx, files and tools)


@dataclass(frozen=True)
class Outcome:
    """What one input gave: ``kind`` is ``ok``, ``rejected`` or one of :data:`DEFECTS`.

    ``stage`` says where (check, fmt, compile, build, run, equivariance, reference, misshaped),
    ``site`` the exception's type and innermost fusionlang function (the key defects are
    deduplicated by), ``detail`` the traceback or measurement.
    """

    kind: str
    stage: str = ""
    site: str = ""
    detail: str = ""
    seconds: float = 0.0

    @property
    def is_defect(self) -> bool:
        return self.kind in DEFECTS

    @property
    def signature(self) -> str:
        return ":".join(part for part in (self.kind, self.stage, self.site) if part)


class _Defect(Exception):
    """Raised inside the oracle to stop at the first defect."""

    def __init__(self, kind: str, detail: str, site: str = "") -> None:
        super().__init__(detail)
        self.kind, self.detail, self.site = kind, detail, site


def run_case(text: str, seed: int = 0) -> Outcome:
    """Classify one input (see the module docstring); never raises, never takes a time budget.

    >>> run_case("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }").kind
    'ok'
    """
    started, stage = time.perf_counter(), ["check"]
    try:
        kind = _classify(text, seed, stage)
        return Outcome(kind, seconds=time.perf_counter() - started)
    except _Defect as defect:
        return Outcome(defect.kind, stage[0], defect.site, defect.detail, time.perf_counter() - started)
    except Exception as failure:  # noqa: BLE001 - any exception but FusionError is a defect
        return Outcome("traceback", stage[0], exception_site(failure), _format(failure),
                       time.perf_counter() - started)


def exception_site(failure: BaseException) -> str:
    """``Type@module.function`` of the innermost frame inside fusionlang (outside the fuzzer)."""
    frames = traceback.extract_tb(failure.__traceback__)
    ours = [f for f in frames if "fusionlang" in f.filename and "fuzz" not in f.filename] or frames
    if not ours:
        return type(failure).__name__
    frame = ours[-1]
    module = os.path.splitext(os.path.basename(frame.filename))[0]
    return f"{type(failure).__name__}@{module}.{frame.name}"


def _format(failure: BaseException) -> str:
    return "".join(traceback.format_exception(type(failure), failure, failure.__traceback__))[-6000:]


def _classify(text: str, seed: int, stage: list[str]) -> str:
    from .api import compile as compile_fusion
    from .frontend import check_source

    checked = check_source(text)
    _check_diagnostics(text, checked.diagnostics)
    stage[0] = "fmt"
    _check_fmt(text, checked)
    stage[0] = "compile"
    if not checked.ok or not checked.diagrams:  # a file without diagrams checks, and does not compile (E114)
        _expect_rejection(compile_fusion, text)
        return "rejected"
    try:
        result = compile_fusion(text)
    except FusionError as failure:
        codes = sorted({d.code for d in failure.diagnostics})
        raise _Defect("late_rejection", f"check accepted, compile refused: {failure}",
                      "+".join(codes)) from None
    for number, diagram in enumerate(result.diagrams):
        _check_module(result.module_class(diagram.name), diagram, seed + number, stage)
    return "ok"


def _expect_rejection(compile_fusion: Callable[[str], Any], text: str) -> None:
    try:
        compile_fusion(text)
    except FusionError:
        return
    raise _Defect("late_rejection", "check reported errors but compile succeeded", "compile-accepts")


def _check_diagnostics(text: str, diagnostics: Sequence[Diagnostic]) -> None:
    for d in diagnostics:
        d.render()
        d.to_dict()
        problem = _diagnostic_problem(text, d)
        if problem:
            raise _Defect("bad_diagnostic", f"{d.code}: {problem}\n{d.render()}", d.code)


def _diagnostic_problem(text: str, d: Diagnostic) -> str:
    if d.code not in CODES:
        return "unregistered code"
    if d.span is None:
        return "" if d.code in SPANLESS_CODES or d.code.startswith("E9") else "no span"
    if d.span.end > len(text):
        return f"span {d.span.start}..{d.span.end} beyond the text ({len(text)} characters)"
    return ""


def _check_fmt(text: str, checked: Any) -> None:
    """``fmt`` output re-parses and re-checks to the same diagrams and codes, and is a fixed point."""
    from .fmt import format_source
    from .frontend import check_source

    try:
        formatted = format_source(text)
    except FusionError:
        if checked.ok:
            raise _Defect("fmt_roundtrip", "check accepted the text, fmt refused it", "fmt-refuses") from None
        return
    again = check_source(formatted)
    before, after = _codes(checked.diagnostics), _codes(again.diagnostics)
    if before != after:
        raise _Defect("fmt_roundtrip", f"codes {before} became {after} after fmt:\n{formatted[:2000]}", "codes")
    if checked.diagrams != again.diagrams:
        raise _Defect("fmt_roundtrip", f"the checked diagrams changed after fmt:\n{formatted[:2000]}", "diagrams")
    if format_source(formatted) != formatted:
        raise _Defect("fmt_roundtrip", "fmt is not idempotent", "idempotent")


def _codes(diagnostics: Sequence[Diagnostic]) -> list[tuple[str, str]]:
    return sorted((d.severity, d.code) for d in diagnostics)


# -- running a compiled module ----------------------------------------------------------------------

def _check_module(module_class: type, diagram: Any, seed: int, stage: list[str]) -> None:
    import torch

    from . import testing

    generator = torch.Generator().manual_seed(seed)
    stage[0] = "build"
    module = testing.cast_module(module_class(), torch.float64)
    stage[0] = "run"
    arguments = _arguments(module, diagram, generator)
    with torch.no_grad():
        outputs = _as_tuple(module(*arguments))
    _check_outputs(diagram, outputs)
    stage[0] = "equivariance"
    error = _equivariance_error(module, diagram, arguments, generator)
    if not error <= TOLERANCE:
        raise _Defect("not_equivariant", f"relative error {error:.3g} > {TOLERANCE:g}", _features(diagram))
    if not diagram.is_graph and not _is_graph_module(module) and diagram.basis == "real":
        stage[0] = "reference"
        _check_reference(module, diagram, generator)
    stage[0] = "misshaped"
    _check_misshaped(module, diagram, arguments)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _is_graph_module(module: Any) -> bool:
    return hasattr(type(module), "SIGNATURE")


def _arguments(module: Any, diagram: Any, generator: Any) -> list[Any]:
    """Random ``forward`` arguments: features (complex for SU(2) and the complex basis), external
    weights, and for graph modules ``edge_index`` and index inputs."""
    import torch

    from . import testing

    if _is_graph_module(module):
        return testing.module_arguments(module, diagram, generator)
    group = "SU2" if diagram.basis == "complex" else diagram.group
    dtype = testing.feature_dtype(group, torch.float64)
    inputs = [torch.randn(4, leg.irreps.dim, generator=generator, dtype=dtype) for leg in diagram.inputs]
    weights = [torch.randn(4, testing.module_weight_numel(module, diagram, s), generator=generator,
                           dtype=torch.float64) for s in diagram.statements if s.weights == "external"]
    return inputs + weights


def _check_outputs(diagram: Any, outputs: Sequence[Any]) -> None:
    import torch

    if len(outputs) != len(diagram.outputs):
        raise _Defect("bad_output", f"{len(outputs)} outputs for {len(diagram.outputs)} declared", "count")
    for leg, value in zip(diagram.outputs, outputs, strict=True):
        if not isinstance(value, torch.Tensor) or value.shape[-1] != leg.irreps.dim:
            shape = getattr(value, "shape", type(value).__name__)
            raise _Defect("bad_output", f"output {leg.name} has shape {shape}, irreps {leg.irreps}", "shape")
        if not bool(torch.isfinite(value).all()):
            raise _Defect("bad_output", f"output {leg.name} is not finite", "finite")


def _in_group(irreps: Any, group: Any) -> Any:
    from .groups import Irrep, Irreps, MulIrrep

    if irreps.group == group:
        return irreps
    return Irreps([MulIrrep(e.mul, Irrep(two_j=e.irrep.two_j, parity=0, group=group)) for e in irreps], group)


def _equivariance_error(module: Any, diagram: Any, arguments: Sequence[Any], generator: Any) -> float:
    """``max |f(D x) - D f(x)| / max(1, |f(x)|)`` over two random elements, one an inversion (O(3))."""
    import torch

    from . import testing
    from .groups import as_group

    group = as_group("SU2") if diagram.basis == "complex" else diagram.group  # complex basis: D of SU(2)
    irreps = {leg.name: _in_group(leg.irreps, group) for leg in diagram.legs if leg.irreps is not None}
    names = [n for n, _kind, _size in type(module).SIGNATURE] if _is_graph_module(module) \
        else [leg.name for leg in diagram.inputs] + [""] * (len(arguments) - len(diagram.inputs))
    worst = 0.0
    with torch.no_grad():
        before = _as_tuple(module(*arguments))
        for trial in range(2):
            element = replace(testing.random_rotation(group, generator), inversion=group.has_parity and trial == 0)
            moved = [_rotate(v, irreps[n], element) if n in irreps else v
                     for v, n in zip(arguments, names, strict=True)]
            after = _as_tuple(module(*moved))
            for leg, old, new in zip(diagram.outputs, before, after, strict=True):
                expected = _rotate(old, irreps[leg.name], element)
                scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
                worst = max(worst, float((new - expected).abs().max()) / scale if new.numel() else 0.0)
    return worst


def _rotate(x: Any, irreps: Any, element: Any) -> Any:
    """``x @ D.T`` entry by entry: no dense matrix, so that 10^5 channels stay cheap."""
    import torch

    from . import testing

    pieces, start, batch = [], 0, x.shape[:-1]
    for entry in irreps:
        width = entry.mul * entry.irrep.dim
        block = x[..., start:start + width].reshape(*batch, entry.mul, entry.irrep.dim)
        matrix = testing.irrep_matrix(entry.irrep, element).to(x.dtype)
        pieces.append((block @ matrix.T).reshape(*batch, width))
        start += width
    return torch.cat(pieces, dim=-1) if pieces else x


def _features(diagram: Any) -> str:
    """A coarse description of a diagram, the key not-equivariant defects are deduplicated by."""
    found = {diagram.group.name, "graph" if diagram.is_graph else "plain"}
    targets = Counter(s.target for s in diagram.statements)
    for s in diagram.statements:
        found.add(s.kind)
        if s.paths_mode == "split":
            found.add("split+shared" if targets[s.target] > 1 else "split")
        if s.per:
            found.add("per")
    found |= {"lmax" for leg in diagram.legs if leg.lmax is not None}
    found |= {"complex"} if diagram.basis == "complex" else set()
    return ",".join(sorted(found))


def _check_reference(module: Any, diagram: Any, generator: Any) -> None:
    """The module with random weights equals the naive reference contraction with the same weights."""
    import torch

    from . import importers, testing

    weights = testing.random_weights(diagram, batch=(3,), generator=generator)
    inputs = [testing.random_features(leg.irreps, (3,), group=diagram.group, generator=generator)
              for leg in diagram.inputs]
    external = importers.load_reference_weights(module, diagram, weights)
    with torch.no_grad():
        ours_out = _as_tuple(module(*inputs, *external))
    theirs = _as_tuple(testing.reference_forward(diagram, inputs, weights))
    error = max([0.0] + [float((a - b).abs().max()) / max(1.0, float(b.abs().max()))
                         for a, b in zip(ours_out, theirs, strict=True) if b.numel()])
    if not error <= TOLERANCE:
        raise _Defect("reference_mismatch", f"relative error {error:.3g} against testing.reference_forward",
                      _features(diagram))


def _check_misshaped(module: Any, diagram: Any, arguments: Sequence[Any]) -> None:
    """A feature one component too wide must be refused, not silently reshaped; so must plain
    inputs whose batch sizes disagree."""
    import torch

    if not diagram.inputs:
        return
    wider = list(arguments)
    wider[0] = torch.cat([wider[0], wider[0][..., :1]], dim=-1)
    _expect_refusal(module, wider, f"input {diagram.inputs[0].name} of last dimension {wider[0].shape[-1]} "
                    f"(irreps {diagram.inputs[0].irreps})", "last-dimension")
    if len(diagram.inputs) > 1 and not _is_graph_module(module):
        shorter = list(arguments)
        shorter[1] = shorter[1][:-1]
        _expect_refusal(module, shorter, f"inputs of batch {arguments[0].shape[0]} and {shorter[1].shape[0]}",
                        "batch")


def _expect_refusal(module: Any, arguments: Sequence[Any], what: str, site: str) -> None:
    import torch

    try:
        with torch.no_grad():
            module(*arguments)
    except Exception:  # noqa: BLE001 - any clear refusal will do
        return
    raise _Defect("accepts_misshaped", f"{what} accepted", site)


# -- worker processes with a time budget -----------------------------------------------------------

def _worker(connection: Connection, memory_gib: float) -> None:
    import resource

    import torch

    torch.set_num_threads(1)
    if memory_gib > 0:
        limit = int(memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with contextlib.suppress(EOFError, OSError):  # the parent went away: stop
        connection.send("ready")
        while (job := connection.recv()) is not None:
            connection.send(run_case(*job))


@dataclass
class _Slot:
    """One worker process and the case it runs (``None`` while it starts or waits)."""

    process: Any
    connection: Connection
    ready: bool = False
    case: int | None = None
    deadline: float = math.inf  # when the case (or the start-up) runs out of time; inf while idle
    done: int = 0


@dataclass
class _Pool:
    jobs: int
    timeout: float
    memory_gib: float
    recycle: int
    slots: list[_Slot] = field(default_factory=list)

    def start(self) -> _Slot:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(theirs, self.memory_gib), daemon=True)
        process.start()
        theirs.close()
        slot = _Slot(process, ours, deadline=time.monotonic() + 300)
        self.slots.append(slot)
        return slot

    def stop(self, slot: _Slot) -> None:
        self.slots.remove(slot)
        slot.connection.close()
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join()

    def close(self) -> None:
        for slot in list(self.slots):
            with contextlib.suppress(OSError, EOFError):
                slot.connection.send(None)
            self.stop(slot)


class Runner:
    """Worker processes that run cases under a time budget; reusable across calls, a context manager.

    A case still running after ``timeout`` seconds is a ``hang`` (its worker is killed); a worker
    that dies is a ``crash``. Workers run one torch thread each, under ``memory_gib`` of address
    space (an allocation beyond it is a ``MemoryError``: a traceback), and are replaced after
    ``recycle`` cases (compiled modules accumulate in memory).
    """

    def __init__(self, jobs: int = 1, timeout: float = 10.0, memory_gib: float = 6.0, recycle: int = 200) -> None:
        self.pool = _Pool(max(1, jobs), timeout, memory_gib, recycle)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    def run(self, texts: Sequence[str], seed: int = 0) -> Iterator[tuple[int, Outcome]]:
        """Yield ``(index, outcome)`` for every text, as cases finish."""
        pool, pending = self.pool, list(range(len(texts)))[::-1]
        while pending or _busy(pool):
            while len(pool.slots) < min(pool.jobs, len(pending) + _busy(pool)):
                pool.start()
            for slot in [s for s in pool.slots if s.ready and s.case is None and pending]:
                slot.case = pending.pop()
                slot.deadline = time.monotonic() + pool.timeout
                slot.connection.send((texts[slot.case], seed + slot.case))
            yield from _collect(pool)

    def outcome(self, text: str, seed: int = 0) -> Outcome:
        """The outcome of one text."""
        return next(o for _, o in self.run([text], seed))


def _busy(pool: _Pool) -> int:
    return sum(s.case is not None for s in pool.slots)


def _collect(pool: _Pool) -> Iterator[tuple[int, Outcome]]:
    now = time.monotonic()
    waiting = min((s.deadline for s in pool.slots), default=now + 1) - now
    ready = wait([s.connection for s in pool.slots], timeout=min(5.0, max(0.0, waiting)))
    for slot in list(pool.slots):
        if slot.connection in ready:
            yield from _receive(pool, slot)
        elif time.monotonic() > slot.deadline:
            case = slot.case
            pool.stop(slot)
            if case is not None:
                yield case, Outcome("hang", "timeout", "hang", f"still running after {pool.timeout:g} s",
                                    pool.timeout)


def _receive(pool: _Pool, slot: _Slot) -> Iterator[tuple[int, Outcome]]:
    try:
        message = slot.connection.recv()
    except (EOFError, OSError):
        case, code = slot.case, slot.process.exitcode
        pool.stop(slot)
        if case is not None:
            yield case, Outcome("crash", "worker", f"exit {slot.process.exitcode or code}",
                                f"the worker process died (exit code {slot.process.exitcode})")
        return
    if message == "ready":
        slot.ready, slot.deadline = True, math.inf
        return
    case, slot.case, slot.done, slot.deadline = slot.case, None, slot.done + 1, math.inf
    if slot.done >= pool.recycle:
        with contextlib.suppress(OSError, EOFError):
            slot.connection.send(None)
        pool.stop(slot)
    if case is not None:
        yield case, message


# -- campaigns and shrinking -------------------------------------------------------------------------

@dataclass
class Campaign:
    """The result of a campaign: counts per class and the first case of every defect signature
    (hangs and crashes, which have no exception site, are told apart by the input's family)."""

    counts: Counter[str] = field(default_factory=Counter)
    defects: dict[str, tuple[str, Outcome, int]] = field(default_factory=dict)  # key -> (text, outcome, hits)

    @property
    def defect_count(self) -> int:
        return sum(self.counts[k] for k in DEFECTS)

    def add(self, case: Case, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        if outcome.is_defect:
            key = outcome.signature + (f":{case.family}" if outcome.kind in ("hang", "crash") else "")
            first = self.defects.get(key, (case.text, outcome, 0))
            self.defects[key] = (first[0], first[1], first[2] + 1)

    def summary(self) -> str:
        return "  ".join(f"{k} {self.counts[k]}" for k in ["ok", "rejected", *DEFECTS])


def minimize(text: str, outcome: Outcome, runner: Runner, *, budget: int = 80, seconds: float = 120.0) -> str:
    """A smaller text with the same defect signature, within ``budget`` tries and ``seconds``: greedily
    drop lines, options, irreps terms and multiplicities (:func:`_smaller`) while the signature stays."""
    if outcome.kind == "hang" or len(text) > 20_000:
        return text
    tries, improved, stop = 0, True, time.monotonic() + seconds
    while improved and tries < budget and time.monotonic() < stop:
        improved = False
        for candidate in _smaller(text):
            tries += 1
            if runner.outcome(candidate).signature == outcome.signature:
                text, improved = candidate, True
                break
            if tries >= budget or time.monotonic() > stop:
                break
    return text


_SHRINKS = (
    re.compile(r"^[^\n{}]*\n", re.M),            # a whole line (not a brace line)
    re.compile(r"\w+ = \w+, *|, *\w+ = \w+(?=\])|(?<=\[)\w+ = \w+(?=\])"),  # one option
    re.compile(r" *\+ *\d*x?\d+(?:/\d)?[eoy]?"),     # one irreps term after the first
    re.compile(r"\b\d+x(?=[(\d])"),               # a multiplicity
    re.compile(r" *\[\s*\]"),                       # an empty option list
)


def _smaller(text: str) -> Iterator[str]:
    """Every text one shrinking step away from ``text``, the biggest steps first."""
    for pattern in _SHRINKS:
        for match in pattern.finditer(text):
            yield text[:match.start()] + text[match.end():]
