"""The sparse form (``full/sparse/q``: only the couplings' nonzeros) against the time model's
choice, side by side in one process: planned FLOPs against the zero-skipping limit, and eager
times forward and forward+backward.

    .venv/bin/python benchmarks/bench_sparse.py [--batch 1024] [--repeat 7] [--threads 1] [--degrees 2 5 6]

Cases: the examples tree4 (a three-leaf fusion into a tree), product_basis (MACE's, symmetric)
and fc_tp, then a fully connected ``2x(0e..Le) ⊗ (0e..Le)`` at every degree asked for. Each
round runs both modules once, alternately; the medians of ``--repeat`` rounds are printed with
their ratio (above 1: the sparse form is faster) and the spread of the ratio over the rounds.
This also measures what :data:`fusionlang.plan.cost.SPARSE_NUMBER_SECONDS` charges for.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from fusionlang import api

ROOT = Path(__file__).resolve().parent.parent
SPARSE = "full/sparse/q"


def fully_connected(degree: int) -> str:
    irreps = " + ".join(f"{l}{'eo'[l % 2]}" for l in range(degree + 1))
    return (f"diagram fc_l{degree} {{ group O3\n input x : 2x({irreps})\n input y : {irreps}\n"
            f" output z : 2x({irreps})\n x, y -> z [channels = uvw, weights = path] }}")


def cases(degrees: list[int]) -> dict[str, str]:
    found = {name: (ROOT / "examples" / f"{name}.fusion").read_text() for name in ("tree4", "product_basis", "fc_tp")}
    return found | {f"fc l={d}": fully_connected(d) for d in degrees}


def module_and_inputs(text: str, strategy: str, batch: int) -> tuple[torch.nn.Module, list[torch.Tensor], int, int]:
    """The module, its inputs, its planned FLOPs and zero-skipping limit per sample."""
    result = api.compile(text, strategy=strategy)
    program = result.program()
    inputs = [torch.randn(batch, io.dim, requires_grad=True) for io in program.inputs]
    inputs += [torch.randn(batch, w.numel) for w in program.weight_inputs]
    outputs = program.report.outputs
    return (result.module_class()(), inputs, sum(o.planned_flops for o in outputs),
            sum(o.zero_skipping_flops for o in outputs))


def timed(module: torch.nn.Module, inputs: list[torch.Tensor]) -> tuple[float, float]:
    """Seconds of one forward, and of one forward and backward."""
    start = time.perf_counter()
    out = module(*inputs)
    middle = time.perf_counter()
    (out if isinstance(out, torch.Tensor) else out[0]).sum().backward()
    return middle - start, time.perf_counter() - start


def compare(name: str, text: str, batch: int, repeat: int) -> str:
    chosen, sparse = (module_and_inputs(text, s, batch) for s in ("auto", SPARSE))
    rounds = []
    for _ in range(repeat + 1):  # the first round warms up
        rounds.append((timed(*chosen[:2]), timed(*sparse[:2])))
    rounds = rounds[1:]
    med = lambda values: statistics.median(values)  # noqa: E731
    forward = [c[0] / s[0] for c, s in rounds]
    both = [c[1] / s[1] for c, s in rounds]
    auto_ms, sparse_ms = med([c[0] for c, _ in rounds]) * 1e3, med([s[0] for _, s in rounds]) * 1e3
    return (f"{name:14s} FLOPs/limit auto {chosen[2] / chosen[3]:5.2f} sparse {sparse[2] / sparse[3]:5.2f} | "
            f"forward auto {auto_ms:8.2f} ms sparse {sparse_ms:8.2f} ms "
            f"ratio {med(forward):5.2f} ({min(forward):.2f}-{max(forward):.2f}) | "
            f"fwd+bwd ratio {med(both):5.2f} ({min(both):.2f}-{max(both):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--degrees", type=int, nargs="*", default=[2, 5, 6])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, medians of {args.repeat} alternating rounds; "
          "ratio = auto time / sparse time (above 1: sparse is faster), spread over the rounds in brackets")
    for name, text in cases(args.degrees).items():
        print(compare(name, text, args.batch, args.repeat), flush=True)


if __name__ == "__main__":
    main()
