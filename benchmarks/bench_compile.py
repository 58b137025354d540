"""Compile time of every example, warm (imports and coupling cache loaded) and best of N.

    .venv/bin/python benchmarks/bench_compile.py [--repeat 3] [--budget 1.0]

Prints one line per example file with the best warm compile time and `[OK]` or `[SLOW]` against
the budget (seconds). A time, not a test: run it on a quiet machine (two shared cores make any
single measurement noisy; the spread over the repeats is printed too)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fusionlang import api

ROOT = Path(__file__).resolve().parent.parent


def timed(text: api.Source) -> float:
    start = time.perf_counter()
    api._compile(text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=1.0)
    args = parser.parse_args()
    for path in sorted((ROOT / "examples").glob("*.fusion")):
        text = api.read_source(path)
        api._compile(text)  # warm the coupling cache and the imports
        times = [timed(text) for _ in range(args.repeat)]
        best = min(times)
        verdict = "[OK]" if best < args.budget else "[SLOW]"
        print(f"{path.name:24s} best {best:6.3f} s  worst {max(times):6.3f} s  {verdict}")


if __name__ == "__main__":
    main()
