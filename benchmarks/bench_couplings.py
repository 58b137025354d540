"""Time building every SO(3) coupling tensor with l1, l2, l3 <= LMAX, cold and warm.

Each measurement runs in a fresh Python subprocess (so no in-process memo helps):

* cold: an empty cache folder, everything computed from exact arithmetic;
* warm: the same folder, now filled by the cold run, read back from disk.

The timed region starts after ``import torch`` and ``import fusionlang.wigner``
(importing torch alone takes about a second and is not what is measured); the
import time is printed separately.

    python benchmarks/bench_couplings.py [--lmax 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGETS_S = {"cold": 2.0, "warm": 0.050}

# Runs inside the subprocess; prints one JSON line.
CHILD = r"""
import json, sys, time
start = time.perf_counter()
import torch
from fusionlang import wigner
imported = time.perf_counter()
lmax = int(sys.argv[1])
triples = [(a, b, c) for a in range(lmax + 1) for b in range(lmax + 1)
           for c in range(abs(a - b), min(a + b, lmax) + 1)]
begin = time.perf_counter()
tensors = [wigner.coupling_tensor("SO3", *t) for t in triples]
elapsed = time.perf_counter() - begin
checksum = float(sum(float(t.abs().sum()) for t in tensors))
print(json.dumps({"seconds": elapsed, "import_seconds": imported - start,
                  "count": len(triples), "checksum": checksum}))
"""


def run_child(cache_dir: Path, lmax: int) -> dict[str, float]:
    """One fresh interpreter building every coupling; returns its JSON report."""
    env = dict(os.environ, FUSIONLANG_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO_ROOT))
    env.pop("FUSIONLANG_NO_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(lmax)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(lmax: int, repeat: int) -> dict[str, list[dict[str, float]]]:
    """``repeat`` cold runs (each in a new empty folder), each followed by one warm run."""
    results: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fusionlang-bench-") as folder:
            results["cold"].append(run_child(Path(folder), lmax))
            results["warm"].append(run_child(Path(folder), lmax))
    return results


def report(results: dict[str, list[dict[str, float]]], lmax: int) -> None:
    count = int(results["cold"][0]["count"])
    print(f"SO(3) couplings, all {count} triangle-valid triples with l <= {lmax}")
    for phase, runs in results.items():
        best = min(run["seconds"] for run in runs)
        imports = min(run["import_seconds"] for run in runs)
        target = TARGETS_S[phase]
        verdict = "OK" if best < target else "MISSED"
        print(
            f"  {phase:>4}: best {best * 1e3:8.1f} ms of {len(runs)}   target < {target * 1e3:6.0f} ms"
            f"   [{verdict}]   (imports, not timed: {imports:.2f} s)"
        )
    checksums = {round(run["checksum"], 9) for runs in results.values() for run in runs}
    print(f"  cold and warm results agree: {len(checksums) == 1}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--lmax", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report(measure(args.lmax, args.repeat), args.lmax)


if __name__ == "__main__":
    main()
