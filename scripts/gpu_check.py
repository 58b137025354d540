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
from fusionlang.graphs import needs_orchestrator  # noqa: E402


def arguments(result: api.CompileResult, name: str, module: torch.nn.Module) -> list[torch.Tensor]:
    diagram, cls = result.diagram(name), result.module_class(name)
    generator = torch.Generator().manual_seed(0)
    if needs_orchestrator(diagram):
        return testing.graph_arguments(cls, diagram, testing.random_graph(8, generator), 8, generator)
    inputs = [testing.random_features(leg.irreps, (16,), group=diagram.group, generator=generator)
              for leg in diagram.inputs]
    return inputs + [torch.randn(16, testing.module_weight_numel(module, diagram, s), dtype=torch.float64,
                                 generator=generator) for s in diagram.statements if s.weights == "external"]


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
            args = arguments(result, diagram.name, cpu)
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
