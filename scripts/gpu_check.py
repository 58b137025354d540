"""GPU check (not part of CI): every example diagram compiled and moved to CUDA equals the CPU
module (same weights, float64); with the CPU modules' equivariance tests this makes the CUDA
modules equivariant too. Prints a table. Run on a machine with a CUDA device:

    python scripts/gpu_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusionlang import api, testing  # noqa: E402


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    worst = 0.0
    print(f"{'diagram':<22} {'|cuda - cpu|':>14}")
    for path in sorted((ROOT / "examples").glob("*.fusion")):
        result = api.compile(path)
        for diagram in result.diagrams:
            cpu = result.module_class(diagram.name)(dtype=torch.float64)
            gpu = result.module_class(diagram.name)(dtype=torch.float64)
            gpu.load_state_dict(cpu.state_dict())
            gpu = gpu.to("cuda")
            args = testing.module_arguments(cpu, diagram, torch.Generator().manual_seed(0), batch=16, nodes=8)
            with torch.no_grad():
                expected = cpu(*args)
                found = gpu(*[a.cuda() for a in args])
            pairs = zip(*(x if isinstance(x, tuple) else (x,) for x in (expected, found)), strict=True)
            difference = max(float((e - f.cpu()).abs().max()) for e, f in pairs)
            worst = max(worst, difference)
            print(f"{diagram.name:<22} {difference:>14.1e}")
    print(f"largest difference {worst:.1e}")
    return 0 if worst < 1e-10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
