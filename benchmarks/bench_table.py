"""One table of fusionlang against e3nn: eager and ``torch.compile``d, both sides, in one process.

    python benchmarks/bench_table.py [--sizes 1 1024 16384] [--repeat 15] [--sweep 10] [--threads 2]
    python benchmarks/bench_table.py --quick          # tiny sizes, one repeat (what the tests run)

For each case of ``bench_tensor_products.py`` (``fc_tp``, ``uvu``, ``three``) and every batch size:
the medians of alternating runs of the five forms (fusionlang eager, compiled and traced, e3nn eager
and compiled; ``traced``: compiled and called inside ``runtime.single_graph()``, so inductor traces
every batch instead of running large CPU batches behind the eager graph break), forward (no grad)
and forward + backward; ``best ratio``: e3nn's faster form over
fusionlang's faster form (above 1: fusionlang faster); ``ours c/e``: fusionlang's eager time over
its compiled time (at least 1: compiling does not slow it down); ``best spread`` and ``c/e
spread``: the lower and upper quartiles of those two ratios taken round by round (the times of
one round come from back-to-back runs, so a slow phase of the machine hits both sides of a
round's ratio). Then, per case: aten operations
of one eager forward at a batch contracted in one pass (counted by a dispatch mode; a CPU batch
above the module's ``CHUNK`` runs that many operations per chunk), all of them and those that
compute (*computing*: not views, which change only metadata; on a GPU each is a kernel launch),
the peak memory of an eager forward at the largest size (allocations minus frees recorded by
the profiler), buffer bytes, fusionlang's compile time (cold: empty caches; warm: the disk cache)
and ``torch.compile``'s first-call time.

``--sweep L`` adds the degree sweep: the fully connected product ``2x(0e..Le) ⊗ (0e..Le)`` and
the channelwise ``16x(0e..Le) ⊗ (0e..Le)`` (uvu, external weights) for every degree up to L, at
N = 1024 forward, eager against eager, with buffer bytes and the aten operations of one pass, all
and computing (e3nn is not compiled in the sweep: 20 compilations take longer than the sweep
itself).

Medians of alternating runs are the fairest comparison on a shared machine. Quote a ratio with
its spread, and with the spread of two runs of the script: on this project's machine the same
code's c/e moved between 0.77 and 1.16 from one run to the next.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from bench_tensor_products import _irreps, cases, e3nn_inputs, forward_and_backward, inputs_for  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import fusionlang.api  # noqa: E402
from fusionlang.tuning import median_ms, ratio_spread, rounds_ms  # noqa: E402

FORMS = ("ours eager", "ours compiled", "ours traced", "e3nn eager", "e3nn compiled")
EAGER = ("ours eager", "e3nn eager")


class OpCounter(TorchDispatchMode):
    """Counts the aten operations that run inside it: all of them, and those that compute (not a
    view: a GPU launches a kernel for each of these, while a view only changes metadata)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.computing = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        self.computing += not (func.is_view or func is torch.ops.aten._unsafe_view.default)
        return func(*args, **(kwargs or {}))


class Ops(NamedTuple):
    """Aten operations of one forward: all of them, and those that compute."""

    count: int
    computing: int

    def __str__(self) -> str:
        return f"{self.count} ({self.computing} computing)"


def aten_ops(module: Any, args: list[Any]) -> Ops:
    """Aten operations of one eager forward (no grad)."""
    with torch.no_grad(), OpCounter() as counter:
        module(*args)
    return Ops(counter.count, counter.computing)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null: the profiler's C++ side prints start and stop lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def peak_bytes(module: Any, args: list[torch.Tensor]) -> int:
    """Peak of the bytes allocated and not yet freed during one eager forward (no grad)."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_stdout(), torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        module(*args)
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def buffer_bytes(module: Any) -> int:
    return sum(b.numel() * b.element_size() for b in module.buffers())


def first_call_seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fusion_compile_seconds(text: str, name: str) -> tuple[float, float]:
    """fusionlang's compile time in a fresh process on an empty cache, then on the filled one
    (``bench_compile.py``'s measurement)."""
    from bench_compile import cold_and_warm

    cold, warm, _ = cold_and_warm(text, name, 1)
    return cold[0], warm[0]


def forms(text: str, name: str, build: Callable[[], Any], compiled: bool) -> tuple[Any, dict[str, Any]]:
    result = fusionlang.api.compile(text, name=f"{name}.fusion")
    ours, theirs = result.module_class()(), build()
    found = {"ours eager": ours, "e3nn eager": theirs}
    if compiled:
        found.update({"ours compiled": torch.compile(ours), "ours traced": traced(torch.compile(own_copy(ours))),
                      "e3nn compiled": torch.compile(theirs)})
    return result, found


def own_copy(module: Any) -> Any:
    """``module`` rebuilt from its generated source loaded once more, with the same state: its
    functions are new code objects, so dynamo keeps the compiled and traced forms' graphs apart.
    Two ``torch.compile``s of one module share its ``forward``'s code cache, and each call first
    evaluates the other form's failing guards: the three-leaf forward at N = 1 took 0.69 ms
    compiled and 0.45 ms traced so, and 0.27-0.33 ms each in a process of its own."""
    from fusionlang.runtime import load_generated

    generated = sys.modules[type(module).__module__]
    copy = load_generated(generated.__name__ + "_own_copy", generated.__fusion_source__)
    twin = getattr(copy, type(module).__name__)(dtype=module.real_dtype)
    twin.load_state_dict(module.state_dict())
    return twin


def traced(compiled: Any) -> Callable[..., Any]:
    """``compiled`` called inside ``runtime.single_graph()``: every batch traced by inductor, none
    behind the eager graph break (what ``TRACED_BATCH`` does for small batches)."""
    from fusionlang import runtime

    def call(*args: Any) -> Any:
        with runtime.single_graph():
            return compiled(*args)
    return call


def one_pass_ops(name: str, result: Any, ours: Any, theirs: Any, batch: int) -> tuple[int, tuple[Ops, Ops]]:
    """(a batch contracted in one pass, as on a GPU: at most ``batch`` and the module's ``CHUNK``; the aten
    operations of one forward of ours and of e3nn's at it). A CPU batch above ``CHUNK`` runs ours once per chunk."""
    one = min(batch, ours.CHUNK)
    xs = inputs_for(result, one)
    return one, (aten_ops(ours, xs), aten_ops(theirs, e3nn_inputs(name, theirs, xs, one)))


def time_case(name: str, text: str, build: Callable[[], Any], sizes: list[int], repeat: int,
              compiled: bool = True) -> list[str]:
    result, modules = forms(text, name, build, compiled)
    rows, compile_s = [], {"ours compiled": float("nan"), "ours traced": float("nan"), "e3nn compiled": float("nan")}
    for batch in sizes:
        xs = inputs_for(result, batch)
        args = {f: xs if f.startswith("ours") else e3nn_inputs(name, modules["e3nn eager"], xs, batch)
                for f in modules}
        with torch.no_grad():
            for form in ("ours compiled", "ours traced", "e3nn compiled"):
                if form in modules and batch == sizes[0]:
                    compile_s[form] = first_call_seconds(lambda f=form, a=args: modules[f](*a[f]))
            forward = rounds_ms({f: (lambda f=f, a=args: modules[f](*a[f])) for f in modules}, repeat)
        both = rounds_ms({f: forward_and_backward(modules[f], args[f]) for f in modules}, max(3, repeat // 3))
        for label, ms in (("forward", forward), ("fwd+bwd", both)):
            rows.append(_row(name, batch, label, ms))
    ours, theirs = modules["ours eager"], modules["e3nn eager"]
    one, ops = one_pass_ops(name, result, ours, theirs, sizes[-1])
    xs = inputs_for(result, sizes[-1])
    ys = e3nn_inputs(name, theirs, xs, sizes[-1])
    cold, warm = fusion_compile_seconds(text, name)
    rows.append(f"{name:8} aten ops per forward (N = {one}): ours {ops[0]}, e3nn {ops[1]}; "
                f"peak memory at N = {sizes[-1]}: ours {peak_bytes(ours, xs) / 2**20:.1f} MiB, "
                f"e3nn {peak_bytes(theirs, ys) / 2**20:.1f} MiB; buffers: ours {buffer_bytes(ours) / 2**10:.1f} KiB, "
                f"e3nn {buffer_bytes(theirs) / 2**10:.1f} KiB")
    rows.append(f"{name:8} fusionlang compile: cold {cold * 1e3:.0f} ms, warm {warm * 1e3:.0f} ms; torch.compile "
                f"first call: ours {compile_s['ours compiled']:.1f} s (traced {compile_s['ours traced']:.1f} s), "
                f"e3nn {compile_s['e3nn compiled']:.1f} s")
    return rows


def _row(name: str, batch: int, label: str, rounds: dict[str, list[float]]) -> str:
    """One line of the table from the forms' times in each alternating round: their medians, the
    best ratio (e3nn's faster form over ours, by median) and ours c/e of the medians, and the
    spread of both ratios (:func:`faster_ratio`)."""
    count = len(next(iter(rounds.values())))
    times = {f: rounds.get(f, [float("nan")] * count) for f in FORMS}
    ms = {f: statistics.median(t) for f, t in times.items()}
    best, best_spread = faster_ratio(times, [f for f in FORMS if f.startswith("e3nn")],
                                     [f for f in FORMS if f.startswith("ours")])
    cells = " ".join(f"{ms[f]:13.3f}" for f in FORMS)
    return (f"{name:8} {batch:6d} {label:8} {cells} {best:10.2f} "
            f"{ms['ours eager'] / ms['ours compiled']:8.2f} {best_spread:>11} "
            f"{_spread(times['ours eager'], times['ours compiled']):>11}")


def faster_ratio(rounds: dict[str, list[float]], theirs: list[str], ours: list[str]) -> tuple[float, str]:
    """(the median time of the faster of ``theirs`` over that of the faster of ``ours``, that
    ratio's spread: the quartiles of its round by round values, :func:`fusionlang.tuning.ratio_spread`).
    A form whose times are nan was not run."""
    ms = {label: statistics.median(times) for label, times in rounds.items()}
    faster_theirs = min((f for f in theirs if ms[f] == ms[f]), key=ms.__getitem__)
    faster_ours = min((f for f in ours if ms[f] == ms[f]), key=ms.__getitem__)
    return ms[faster_theirs] / ms[faster_ours], _spread(rounds[faster_theirs], rounds[faster_ours])


def _spread(numerator: list[float], denominator: list[float]) -> str:
    if any(t != t for t in numerator + denominator):
        return "-"
    low, high = ratio_spread(numerator, denominator)
    return f"{low:.2f}-{high:.2f}"


def sweep(lmax: int, repeat: int, batch: int = 1024) -> list[str]:
    """Fully connected (2 channels) and uvu (16 channels) at every degree up to ``lmax``."""
    from e3nn import o3

    from fusionlang.testing import e3nn_channelwise_product

    rows = [f"{'case':14} {'ours ms':>9} {'e3nn ms':>9} {'e3nn/ours':>9} {'ours KiB':>10} {'e3nn KiB':>10} "
            f"{'ops ours':>8} {'ops e3nn':>8} {'comp ours':>9} {'comp e3nn':>9}"]
    for degree in range(1, lmax + 1):
        flat = " + ".join(f"2x{l}{'eo'[l % 2]}" for l in range(degree + 1))  # noqa: E741
        fc = (f"diagram fc {{ group O3\n input x : {_irreps(degree, 2)}\n input y : {_irreps(degree)}\n"
              f" output z : {_irreps(degree, 2)}\n x, y -> z [channels = uvw, weights = path] }}")
        rows.append(_sweep_row(f"fc l={degree}", fc, lambda f=flat, d=degree: o3.FullyConnectedTensorProduct(
            f, _irreps(d), f), batch, repeat))
        wide = " + ".join(f"16x{l}{'eo'[l % 2]}" for l in range(degree + 1))  # noqa: E741
        uvu = (f"diagram uvu {{ group O3\n input x : {_irreps(degree, 16)}\n input sh : {_irreps(degree)}\n"
               f" output z\n x, sh -> z [channels = uvu, weights = external, paths = split] }}")
        rows.append(_sweep_row(f"uvu l={degree}", uvu, lambda w=wide, d=degree: e3nn_channelwise_product(
            w, _irreps(d), shared_weights=False, internal_weights=False), batch, repeat))
    return rows


def _sweep_row(name: str, text: str, build: Callable[[], Any], batch: int, repeat: int) -> str:
    result = fusionlang.api.compile(text, name="sweep.fusion")
    ours, theirs = result.module_class()(), build()
    xs = inputs_for(result, batch)
    ys = e3nn_inputs(name, theirs, xs, batch)
    with torch.no_grad():
        ms = median_ms({"ours": lambda: ours(*xs), "e3nn": lambda: theirs(*ys)}, repeat)
    _, ops = one_pass_ops(name, result, ours, theirs, batch)
    return (f"{name:14} {ms['ours']:9.3f} {ms['e3nn']:9.3f} {ms['e3nn'] / ms['ours']:9.2f} "
            f"{buffer_bytes(ours) / 2**10:10.1f} {buffer_bytes(theirs) / 2**10:10.1f} "
            f"{ops[0].count:8d} {ops[1].count:8d} {ops[0].computing:9d} {ops[1].computing:9d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1024, 16384])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sweep", type=int, default=0, metavar="L", help="degree sweep up to L (0: none)")
    parser.add_argument("--cases", nargs="*", default=[name for name, _, _ in cases()],
                        help="the cases of the table (none: only the sweep)")
    parser.add_argument("--quick", action="store_true", help="sizes 1 and 16, one repeat, sweep to 2")
    parser.add_argument("--eager-only", action="store_true", help="no torch.compile forms (minutes faster)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeat, args.sweep = [1, 16], 1, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if not args.eager_only:
        import torch._dynamo as dynamo
        # Our compiled and traced forms share one forward (dynamo caches per code object), and each
        # size, grad mode and form takes an entry: past the default limit of 8 dynamo would run the
        # rest eagerly and time that instead. A user compiles one form and stays under 8.
        dynamo.config.recompile_limit = 64
    print(f"torch {torch.__version__}, {args.threads} threads, float32, medians of {args.repeat} alternating runs "
          "(ms); best ratio: e3nn's faster form / ours's faster form; ours c/e: our eager / our compiled; "
          "spread: the quartiles of a ratio taken round by round (the noise)")
    print(f"{'case':8} {'N':>6} {'pass':8} " + " ".join(f"{f:>13}" for f in FORMS) + f" {'best ratio':>10} "
          f"{'ours c/e':>8} {'best spread':>11} {'c/e spread':>11}", flush=True)
    for name, text, build in cases():
        if name in args.cases:
            for row in time_case(name, text, build, args.sizes, args.repeat, not args.eager_only):
                print(row, flush=True)
    if args.sweep:
        print()
        for row in sweep(args.sweep, args.repeat):
            print(row, flush=True)


if __name__ == "__main__":
    main()
