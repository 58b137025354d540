"""Compiled fusionlang modules against e3nn, in one process, on the CPU.

    python benchmarks/bench_tensor_products.py [--threads 2] [--sizes 1024 16384] [--repeat 25]
    python benchmarks/bench_tensor_products.py --strategies   # every planner strategy, timed
    python benchmarks/bench_tensor_products.py --sweep        # also other multiplicities and degrees

Three cases (float32), each timed forward (no grad) and forward + backward, at every batch size:

* ``fc_tp``: ``32x(0e+1o+2e) ⊗ (0e+1o+2e) → 32x(0e+1o+2e)``, ``uvw``, path weights, against
  ``e3nn.o3.FullyConnectedTensorProduct``;
* ``uvu``: ``32x(0e+1o+2e) ⊗ (0e+1o+2e+3o)``, ``uvu``, external weights, one output entry per
  path (``paths = split``, e3nn's sorted ``irreps_out``), against ``e3nn.o3.TensorProduct`` with
  ``uvu`` instructions and ``shared_weights=False``;
* ``three``: ``a, b, c : 16x(0e+1o+2e) → 16x(0e+1o+2e)``, ``uuu``, channel weights, against two
  chained e3nn ``TensorProduct``s (``uuu`` into every intermediate irrep, then ``uuu`` weighted).

Runs alternate between the two implementations and the median of ``--repeat`` runs is reported
(a shared machine is noisy; medians of alternating runs are the fairest comparison). The ratio
column is e3nn's time over fusionlang's: above 1 means fusionlang is faster.

``--strategies`` times, for each case, the module the planner would generate with every one of
its strategies for the case's statement (forward, the first batch size), next to the quantities
the planner's run-time model uses (operations, FLOPs, intermediate sizes): this is how the
model's constants in ``fusionlang.plan`` were calibrated.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import fusionlang.api  # noqa: E402

FC_TP = """diagram fc_tp {
    group O3
    input  x : 32x0e + 32x1o + 32x2e
    input  y : 0e + 1o + 2e
    output z : 32x(0e + 1o + 2e)
    x, y -> z  [channels = uvw, weights = path]
}
"""

UVU = """diagram uvu {
    group O3
    input  x : 32x(0e + 1o + 2e)
    input  sh : 0e + 1o + 2e + 3o
    output z
    x, sh -> z  [channels = uvu, weights = external, paths = split]
}
"""

THREE = """diagram three {
    group O3
    input  a, b, c : 16x(0e + 1o + 2e)
    output z : 16x(0e + 1o + 2e)
    a, b, c -> z  [channels = uuu, weights = channel]
}
"""


def e3nn_fc_tp() -> Any:
    from e3nn import o3

    return o3.FullyConnectedTensorProduct("32x0e + 32x1o + 32x2e", "0e + 1o + 2e", "32x0e + 32x1o + 32x2e")


def e3nn_uvu() -> Any:
    """MACE's convolution tensor product: uvu into every reachable irrep, outputs sorted."""
    from fusionlang.testing import e3nn_channelwise_product

    return e3nn_channelwise_product("32x0e + 32x1o + 32x2e", "0e + 1o + 2e + 3o", shared_weights=False,
                                    internal_weights=False)


def e3nn_three() -> Any:
    """Two chained e3nn tensor products with the paths of ``a, b, c -> z`` (uuu, channel weights)."""
    from e3nn import o3

    irreps = o3.Irreps("16x0e + 16x1o + 16x2e")
    wanted = [ir for _, ir in irreps]
    mids, first = [], []
    for i, (mul, ir_a) in enumerate(irreps):
        for j, (_, ir_b) in enumerate(irreps):
            for ir_mid in ir_a * ir_b:
                if any(ir_out in ir_mid * ir_c for _, ir_c in irreps for ir_out in wanted):
                    first.append((i, j, len(mids), "uuu", False))
                    mids.append((mul, ir_mid))
    irreps_mid = o3.Irreps(mids)
    tp1 = o3.TensorProduct(irreps, irreps, irreps_mid, first)
    second = [(k, j, o, "uuu", True) for k, (_, ir_mid) in enumerate(irreps_mid)
              for j, (_, ir_c) in enumerate(irreps) for o, ir_out in enumerate(wanted) if ir_out in ir_mid * ir_c]
    tp2 = o3.TensorProduct(irreps_mid, irreps, irreps, second)

    class Chain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tp1, self.tp2 = tp1, tp2

        def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return self.tp2(self.tp1(a, b), c)

    return Chain()


def cases() -> list[tuple[str, str, Callable[[], Any]]]:
    return [("fc_tp", FC_TP, e3nn_fc_tp), ("uvu", UVU, e3nn_uvu), ("three", THREE, e3nn_three)]


def _irreps(lmax: int, mul: int | None = None) -> str:
    """``0e + 1o + ...`` up to ``lmax``; with ``mul``, the fusion form ``mulx(0e + 1o + ...)``."""
    text = " + ".join(f"{l}{'eo'[l % 2]}" for l in range(lmax + 1))  # noqa: E741
    return f"{mul}x({text})" if mul else text


def _e3nn_irreps(lmax: int, mul: int) -> str:
    return " + ".join(f"{mul}x{l}{'eo'[l % 2]}" for l in range(lmax + 1))  # noqa: E741


def sweep_cases() -> list[tuple[str, str, Callable[[], Any]]]:
    """``fc_tp`` and ``uvu`` at other multiplicities and degrees (``--sweep``)."""
    from e3nn import o3

    from fusionlang.testing import e3nn_channelwise_product

    found: list[tuple[str, str, Callable[[], Any]]] = []
    for mul, lmax in ((8, 2), (64, 2), (16, 3), (128, 1)):
        text = (f"diagram fc {{ group O3\n input x : {_irreps(lmax, mul)}\n input y : {_irreps(lmax)}\n"
                f" output z : {_irreps(lmax, mul)}\n x, y -> z [channels = uvw, weights = path] }}")
        flat = _e3nn_irreps(lmax, mul)
        found.append((f"fc_tp {mul}x l{lmax}", text,
                      functools.partial(o3.FullyConnectedTensorProduct, flat, _irreps(lmax), flat)))
    for mul, lmax, lsh in ((8, 2, 3), (64, 2, 3), (16, 3, 3), (128, 1, 2)):
        text = (f"diagram uvu {{ group O3\n input x : {_irreps(lmax, mul)}\n input sh : {_irreps(lsh)}\n"
                f" output z\n x, sh -> z [channels = uvu, weights = external, paths = split] }}")
        found.append((f"uvu {mul}x l{lmax} sh{lsh}", text,
                      functools.partial(e3nn_channelwise_product, _e3nn_irreps(lmax, mul), _irreps(lsh),
                                        shared_weights=False, internal_weights=False)))
    return found


def inputs_for(result: Any, batch: int) -> list[torch.Tensor]:
    program = result.program()
    xs = [torch.randn(batch, io.dim) for io in program.inputs]
    return xs + [torch.randn(batch, w.numel) for w in program.weight_inputs]


def e3nn_inputs(name: str, module: Any, xs: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    if name.startswith("uvu"):
        return xs[:2] + [torch.randn(batch, module.weight_numel)]
    return xs


def timer(fn: Callable[[], Any]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    return run


def forward_and_backward(module: Any, args: list[torch.Tensor]) -> Callable[[], Any]:
    leaves = [a.clone().requires_grad_(True) for a in args]

    def run() -> None:
        out = module(*leaves)
        out.backward(torch.ones_like(out))
    return run


def compare(ours: Callable[[], float], theirs: Callable[[], float], repeat: int) -> tuple[float, float]:
    for _ in range(3):
        ours(), theirs()
    a, b = [], []
    for _ in range(repeat):
        a.append(ours())
        b.append(theirs())
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3


def time_strategies(sizes: list[int], repeat: int) -> None:
    from fusionlang import plan
    from fusionlang.frontend import check_source
    from fusionlang.plan.cost import estimate, traffic
    from fusionlang.plan.strategies import applicable_strategies
    from fusionlang.source import Source

    extra = [(p.stem, p.read_text(), None) for p in sorted((ROOT / "examples").glob("*.fusion"))
             if p.stem in ("tree4", "product_basis")]
    print(f"{'case':7} {'strategy':22} {'ms':>8} {'model ms':>8} {'ops':>4} {'flops':>9} {'batched':>9} "
          f"{'setup':>9} {'traffic':>8}")
    for name, text, _ in [*cases(), *extra]:
        diagram = check_source(text).diagram()
        last = diagram.statements[-1]
        model = plan.statement_models(diagram)[last.index]
        for strategy in applicable_strategies(model):
            result = fusionlang.api._compile(Source(text + f"# {strategy.label}\n", f"{name}.fusion"),
                                             strategy={last.index: strategy.label})
            module = result.module_class()()
            xs = inputs_for(result, sizes[0])
            with torch.no_grad():
                ms, _ = compare(timer(lambda m=module, a=xs: m(*a)), timer(lambda: None), repeat)
            steps = result.program().steps
            print(f"{name:7} {strategy.label:22} {ms:8.3f} {estimate(steps) * 1e3:8.3f} "
                  f"{sum(s.is_op for s in steps):4d} {sum(s.flops for s in steps):9d} "
                  f"{sum(s.flops for s in steps if s.batched):9d} {sum(s.setup_flops for s in steps):9d} "
                  f"{traffic(steps):8d}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 16384])
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--strategies", action="store_true", help="time every planner strategy")
    parser.add_argument("--sweep", action="store_true", help="also fc_tp and uvu at other multiplicities and degrees")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.strategies:
        time_strategies(args.sizes, args.repeat)
        return
    print(f"torch {torch.__version__}, {args.threads} threads, float32, median of {args.repeat} alternating runs")
    print(f"{'case':18} {'N':>6} {'pass':9} {'fusionlang ms':>14} {'e3nn ms':>9} {'e3nn/ours':>9}")
    for name, text, build in cases() + (sweep_cases() if args.sweep else []):
        start = time.perf_counter()
        result = fusionlang.api.compile(text, name=f"{name}.fusion")
        compiled = time.perf_counter() - start
        ours, theirs = result.module_class()(), build()
        for batch in args.sizes:
            xs = inputs_for(result, batch)
            ys = e3nn_inputs(name, theirs, xs, batch)
            with torch.no_grad():
                fwd = compare(timer(lambda m=ours, a=xs: m(*a)), timer(lambda m=theirs, a=ys: m(*a)), args.repeat)
            both = compare(timer(forward_and_backward(ours, xs)), timer(forward_and_backward(theirs, ys)),
                           max(5, args.repeat // 3))
            for label, (a, b) in (("forward", fwd), ("fwd+bwd", both)):
                print(f"{name:18} {batch:6d} {label:9} {a:14.3f} {b:9.3f} {b / a:9.2f}")
        print(f"{name:18} compile {compiled * 1e3:.0f} ms, plan: {result.plan().statements[0].strategy}, "
              f"{result.plan().operations} operations")


if __name__ == "__main__":
    main()
