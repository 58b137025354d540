"""The compiled MACE product basis against mace-torch's ``SymmetricContraction``, on the CPU.

    python benchmarks/bench_mace.py [--threads 2] [--nodes 1024] [--channels 64] [--repeat 10]
    python benchmarks/bench_mace.py --device cuda  # on a GPU (timings synchronise the device)
    python benchmarks/bench_mace.py --profile      # the compiled module's operations, by time
    python benchmarks/bench_mace.py --compile      # and both sides under torch.compile (inductor)

``64x(0e+1o+2e+3o) → 64x(0e+1o)``, correlation 3, 3 species, float32. fusionlang compiles
``mace_product_basis`` of examples/mace.fusion with the channel count changed; its weights are
imported from mace-torch's module (:func:`fusionlang.importers.load_mace_symmetric_contraction`),
so both compute the same numbers (the ``max |diff|`` column checks it). mace-torch runs as MACE
runs it: mul_ir features reshaped to ``[N, channels, 16]`` (``reshape_irreps``), one-hot species.
Its ``use_reduced_cg=True`` variant is timed too; it only differs from the default when
cuequivariance is installed (mace-torch then builds a reduced U basis), which the table says.

Every row is timed in one process, runs alternate between the implementations, and the median
of ``--repeat`` runs is reported (on a CPU shared with other jobs, OpenMP's thread barriers make
multi-threaded timings meaningless: use ``--threads 1`` there). ``forward`` runs under
``torch.no_grad()``; ``fwd+bwd`` is a forward pass with gradients for the features and the
weights, then ``backward``. Ratios are mace-torch's time over fusionlang's: above 1 means
fusionlang is faster.

``--compile`` adds three forms: ``torch.compile`` of fusionlang's module as a user writes it
(a batch above the module's ``traced_batch`` runs eagerly behind one graph break), the same
compiled module called inside ``runtime.single_graph()`` (*traced*: inductor compiles the whole
contraction), and ``torch.compile`` of mace-torch's module; the last line is the *best* ratio,
mace-torch's faster form over fusionlang's faster form, and every compiled form's output is
checked against its eager module's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from bench_table import aten_ops, faster_ratio, own_copy, traced  # noqa: E402

import fusionlang.api  # noqa: E402
from fusionlang.importers import load_mace_symmetric_contraction  # noqa: E402
from fusionlang.tuning import rounds_ms  # noqa: E402

SPECIES = 3
CORRELATION = 3


def product_basis_text(channels: int) -> str:
    return (ROOT / "examples" / "mace.fusion").read_text(encoding="utf-8").replace("16x", f"{channels}x")


def irreps_in(channels: int) -> str:
    return "+".join(f"{channels}x{ir}" for ir in ("0e", "1o", "2e", "3o"))


def mace_module(channels: int, reduced: bool) -> Any:
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction

    return SymmetricContraction(o3.Irreps(irreps_in(channels)), o3.Irreps(f"{channels}x0e+{channels}x1o"),
                                correlation=CORRELATION, num_elements=SPECIES, use_reduced_cg=reduced)


def cuequivariance_available() -> bool:
    from mace.tools import cg

    return bool(getattr(cg, "CUET_AVAILABLE", False))


class MaceAsFusion(torch.nn.Module):
    """mace-torch's contraction with fusionlang's signature: mul_ir features, species indices.

    The features are reshaped to ``[N, channels, 16]`` as mace's ``reshape_irreps`` does (inlined:
    importing ``mace.modules.irreps_tools`` pulls in all of mace's blocks)."""

    def __init__(self, contraction: Any, channels: int) -> None:
        super().__init__()
        self.contraction = contraction
        self.channels = channels

    def forward(self, A: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        pieces, start = [], 0
        for dim in (1, 3, 5, 7):
            pieces.append(A[:, start:start + self.channels * dim].reshape(len(A), self.channels, dim))
            start += self.channels * dim
        one_hot = torch.nn.functional.one_hot(species, SPECIES).to(A.dtype)
        return self.contraction(torch.cat(pieces, -1), one_hot)


def synchronised(fn: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    """``fn`` and, on a GPU, a wait for the device (a time then covers the work, not its launch)."""
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return run


def forward(module: Any, A: torch.Tensor, species: torch.Tensor) -> Callable[[], Any]:
    def run() -> None:
        with torch.no_grad():
            module(A, species)
    return run


def forward_and_backward(module: Any, A: torch.Tensor, species: torch.Tensor) -> Callable[[], Any]:
    leaf = A.clone().requires_grad_(True)

    def run() -> None:
        out = module(leaf, species)
        out.backward(torch.ones_like(out))
    return run


def build(args: argparse.Namespace) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, str]:
    """The modules to time (fusionlang first), the inputs, and the compile time note."""
    start = time.perf_counter()
    result = fusionlang.api.compile(product_basis_text(args.channels), name="mace.fusion")
    compiled = time.perf_counter() - start
    torch.manual_seed(0)
    mace = mace_module(args.channels, reduced=False)
    ours = load_mace_symmetric_contraction(result.module_class("mace_product_basis")(), mace)
    modules = {"fusionlang": ours, "mace-torch": MaceAsFusion(mace, args.channels)}
    reduced = mace_module(args.channels, reduced=True)
    note = "reduced U (cuequivariance)" if cuequivariance_available() else "same U: no cuequivariance"
    modules[f"mace-torch use_reduced_cg ({note})"] = MaceAsFusion(reduced, args.channels)
    modules = {name: module.to(args.device) for name, module in modules.items()}
    A = torch.randn(args.nodes, 16 * args.channels, device=args.device)
    species = torch.randint(0, SPECIES, (args.nodes,), device=args.device)
    params = {name: sum(p.numel() for p in m.parameters() if p.requires_grad) for name, m in modules.items()}
    info = (f"compile {compiled * 1e3:.0f} ms; parameters: "
            + ", ".join(f"{name.split(' (')[0]} {count}" for name, count in params.items()))
    return modules, A, species, info


def compiled_forms(modules: dict[str, Any]) -> dict[str, Any]:
    """fusionlang compiled as a user writes it and traced whole, mace-torch compiled."""
    ours = torch.compile(modules["fusionlang"])
    return {"fusionlang compiled": ours, "fusionlang traced": traced(torch.compile(own_copy(modules["fusionlang"]))),
            "mace-torch compiled": torch.compile(modules["mace-torch"])}


def compiled_error(modules: dict[str, Any], A: torch.Tensor, species: torch.Tensor) -> float:
    """The largest relative difference of a compiled form from its eager module."""
    worst = 0.0
    with torch.no_grad():
        for name, module in modules.items():
            if name.endswith(("compiled", "traced")):
                eager = modules["fusionlang" if name.startswith("fusionlang") else "mace-torch"](A, species)
                worst = max(worst, float((module(A, species) - eager).abs().max() / eager.abs().max()))
    return worst


def check(modules: dict[str, Any], A: torch.Tensor, species: torch.Tensor) -> float:
    """max |fusionlang - mace-torch| on the benchmark inputs (same weights)."""
    with torch.no_grad():
        ours, theirs = (modules[name](A, species) for name in ("fusionlang", "mace-torch"))
    return float((ours - theirs).abs().max() / theirs.abs().max())


def ops_line(modules: dict[str, Any], A: torch.Tensor, species: torch.Tensor) -> str:
    """The aten operations of one forward of each eager module at a batch fusionlang contracts in
    one pass (its smallest ``CHUNK``, as on a GPU), all of them and those that compute."""
    one = min([len(A)] + [m.CHUNK for m in modules["fusionlang"].modules() if hasattr(m, "CHUNK")])
    counts = {name.split(" (")[0]: aten_ops(module, [A[:one], species[:one]]) for name, module in modules.items()
              if " compiled" not in name and " traced" not in name}
    return f"aten ops per forward (N = {one}): " + ", ".join(f"{name} {ops}" for name, ops in counts.items())


def profile(module: Any, A: torch.Tensor, species: torch.Tensor, backward: bool) -> None:
    """The compiled module's operations by self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    run = forward_and_backward(module, A, species) if backward else forward(module, A, species)
    run()
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(3):
            run()
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25,
                                                              max_name_column_width=40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--profile", action="store_true", help="profile the compiled module instead")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile forms of both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modules, A, species, info = build(args)
    if args.profile:
        for backward in (False, True):
            print("fwd+bwd" if backward else "forward")
            profile(modules["fusionlang"], A, species, backward)
        return
    error = check(modules, A, species)
    if args.compile:
        modules.update(compiled_forms(modules))
        info += f"; compiled forms within {compiled_error(modules, A, species):.1e} of eager"
    fwd_rounds = rounds_ms({name: synchronised(forward(m, A, species), args.device)
                            for name, m in modules.items()}, args.repeat, warmups=1)
    both_rounds = rounds_ms({name: synchronised(forward_and_backward(m, A, species), args.device)
                             for name, m in modules.items()}, args.repeat, warmups=1)
    fwd, both = ({name: statistics.median(t) for name, t in r.items()} for r in (fwd_rounds, both_rounds))
    where = args.device.type if args.device.type != "cpu" else f"cpu, {args.threads} threads"
    print(f"torch {torch.__version__}, {where}, float32, N = {args.nodes}, "
          f"{args.channels}x(0e+1o+2e+3o) -> {args.channels}x(0e+1o), correlation {CORRELATION}, "
          f"{SPECIES} species, median of {args.repeat} alternating runs")
    print(f"{info}; max |fusionlang - mace-torch| / max |mace-torch| = {error:.1e}")
    print(f"{'implementation':58} {'forward ms':>10} {'ratio':>6} {'fwd+bwd ms':>10} {'ratio':>6}")
    for name in modules:
        print(f"{name:58} {fwd[name]:10.1f} {fwd[name] / fwd['fusionlang']:6.2f} "
              f"{both[name]:10.1f} {both[name] / both['fusionlang']:6.2f}")
    print(ops_line(modules, A, species))
    if args.compile:
        mace = [n for n in modules if n.startswith("mace")]
        ours = [n for n in modules if n.startswith("fusionlang")]
        best = [faster_ratio(r, mace, ours) for r in (fwd_rounds, both_rounds)]
        print(f"{'best ratio (faster mace-torch form / faster fusionlang form)':58} {'':10} {best[0][0]:6.2f} "
              f"{'':10} {best[1][0]:6.2f}")
        print(f"{'its spread (quartiles of the ratio round by round)':58} {'':4} {best[0][1]:>12} "
              f"{'':4} {best[1][1]:>12}")


if __name__ == "__main__":
    main()
