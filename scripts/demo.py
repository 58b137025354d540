"""The main job: build the couplings, check every example, print what fusionlang inferred.

Run through ``bash scripts/demo.sh`` (which sets everything up first).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import fusionlang
from fusionlang.frontend import check_source
from fusionlang.report import ir_report, ir_text

ROOT = Path(__file__).resolve().parent.parent
COUPLINGS = [("SU2", "1/2", "1/2", "1"), ("SU2", "1/2", "1", "3/2"), ("SU2", "3/2", "2", "5/2"),
             ("SO3", "1", "1", "2"), ("O3", "1o", "1o", "0e"), ("O3", "1o", "1o", "2e"),
             ("O3", "2e", "3o", "5o"), ("O3", "6e", "6e", "12e")]


def coupling_table() -> None:
    print(f"{'group':<5} {'a':>4} {'b':>4} {'c':>4}  {'shape':<14} {'dtype':<10} {'|C|_F':>8}  "
          f"{'orthogonality error':>20}")
    for group, a, b, c in COUPLINGS:
        tensor = fusionlang.coupling(group, a, b, c)
        gram = torch.einsum("ijk,ijl->kl", tensor.conj(), tensor)
        scale = gram.diagonal().real.mean()
        error = (gram / scale - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max().item()
        print(f"{group:<5} {a:>4} {b:>4} {c:>4}  {str(tuple(tensor.shape)):<14} "
              f"{str(tensor.dtype).replace('torch.', ''):<10} {tensor.norm().item():8.4f}  {error:20.1e}")


def check_examples() -> bool:
    ok = True
    for path in sorted((ROOT / "examples").glob("*.fusion")):
        result = check_source(path)
        if not result.ok:
            print(result.render(), file=sys.stderr)
            ok = False
            continue
        print(ir_text([ir_report(d) for d in result.diagrams]))
        print()
    return ok


def main() -> int:
    print(f"fusionlang {fusionlang.__version__} (torch {torch.__version__})\n")
    start = time.perf_counter()
    coupling_table()
    print(f"\ncouplings built in {time.perf_counter() - start:.3f} s\n")
    return 0 if check_examples() else 1


if __name__ == "__main__":
    raise SystemExit(main())
