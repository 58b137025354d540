"""Compile time of every example and of a correlation-4 MACE product basis, cold and warm.

The product basis comes twice: as MACE writes it (per species, on nodes: a graph diagram lowered to
one contraction per statement) and as one plain diagram.

    .venv/bin/python benchmarks/bench_compile.py [--repeat 3] [--budget 0.3] [--channels 64] [--only NAME]

What is timed: ``fusionlang.compile(...)`` plus one instance of every diagram's ``nn.Module`` class,
in a fresh Python process. Imports (torch, then ``fusionlang.api`` and the compiler it loads) are
done before the clock starts and timed apart: a process pays them once, whatever it compiles.
*Cold*: an empty on-disk cache (``FUSIONLANG_CACHE_DIR`` a new folder: no couplings, no symmetric
bases, no generated modules). *Warm*: a cache folder that an earlier process filled, which is what
every compile after the first on a machine sees. Prints one line per case with the median of
``--repeat`` runs of each and ``[OK]``/``[SLOW]`` for the warm median against ``--budget`` (seconds),
then the median import time.
A time, not a test: two shared cores make single runs noisy, so the spread is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORRELATION4 = """\
# MACE's product basis at correlation 4, as benchmarks/bench_compile.py times it
diagram product_basis_c4 {{
    group O3
    input  A : {channels}x(0e + 1o + 2e + 3o)  [on = nodes]
    index  species : 3
    output B : {channels}x(0e + 1o)
    A -> B           [channels = uuu, weights = channel, per = species]
    A, A -> B        [channels = uuu, weights = channel, per = species]
    A, A, A -> B     [channels = uuu, weights = channel, per = species]
    A, A, A, A -> B  [channels = uuu, weights = channel, per = species]
}}
"""
PLAIN4 = """\
diagram product_basis_plain4 {{
    group O3
    input  A : {channels}x(0e + 1o + 2e + 3o)
    output B : {channels}x(0e + 1o)
    A -> B           [weights = channel]
    A, A -> B        [channels = uuu, weights = channel]
    A, A, A -> B     [channels = uuu, weights = channel]
    A, A, A, A -> B  [channels = uuu, weights = channel]
}}
"""


def cases(channels: int) -> dict[str, str]:
    """Every example's text by file name, then the correlation-4 product basis in both forms."""
    found = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "examples").glob("*.fusion"))}
    found[f"product_basis_c4 ({channels}x)"] = CORRELATION4.format(channels=channels)
    found[f"plain c4 ({channels}x)"] = PLAIN4.format(channels=channels)
    return found


def time_one(text: str, name: str) -> tuple[float, float]:
    """Seconds to import the compiler (torch already imported), and to compile ``text`` and
    instantiate every class, in this process."""
    import time

    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    import fusionlang.api

    imported = time.perf_counter()
    result = fusionlang.api.compile(text, name=name)
    for diagram in result.diagrams:
        result.module_class(diagram.name)()
    return imported - start, time.perf_counter() - imported


def run_child(text: str, name: str, cache_dir: str) -> tuple[float, float]:
    """:func:`time_one` in a fresh interpreter whose disk cache is ``cache_dir``."""
    env = dict(os.environ, FUSIONLANG_CACHE_DIR=cache_dir, OMP_NUM_THREADS="1")
    env.pop("FUSIONLANG_NO_CACHE", None)
    done = subprocess.run([sys.executable, __file__, "--child", name], input=text, capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {name} failed:\n{done.stderr[-3000:]}")
    imported, compiled = done.stdout.split()[-2:]
    return float(imported), float(compiled)


def cold_and_warm(text: str, name: str, repeat: int) -> tuple[list[float], list[float], list[float]]:
    """``repeat`` cold runs (each on an empty cache), ``repeat`` warm runs (on a filled one), and
    the import times of all of them."""
    with tempfile.TemporaryDirectory(prefix="fusionlang-bench-") as scratch:
        cold = [run_child(text, name, os.path.join(scratch, f"cold{k}")) for k in range(repeat)]
        warm = [run_child(text, name, os.path.join(scratch, "cold0")) for _ in range(repeat)]
    return [t for _, t in cold], [t for _, t in warm], [t for t, _ in cold + warm]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.3, help="warm compile budget in seconds")
    parser.add_argument("--channels", type=int, default=64, help="channels of the correlation-4 product basis")
    parser.add_argument("--only", help="time only the cases whose name contains this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("{:.6f} {:.6f}".format(*time_one(sys.stdin.read(), args.child)))
        return
    print(f"compile + instantiate, fresh process each run, median of {args.repeat} (min-max); warm budget "
          f"{args.budget} s")
    for name, text in cases(args.channels).items():
        if args.only and args.only not in name:
            continue
        cold, warm, imports = cold_and_warm(text, name, args.repeat)
        verdict = "[OK]" if statistics.median(warm) < args.budget else "[SLOW]"
        print(f"{name:24s} cold {_spread(cold)}  warm {_spread(warm)}  {verdict}  "
              f"(import {statistics.median(imports):.3f} s)", flush=True)


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):7.3f} s ({min(times):6.3f}-{max(times):6.3f})"


if __name__ == "__main__":
    main()
