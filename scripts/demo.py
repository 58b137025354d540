"""The main job: compile every example to a Python module and SVG drawings, run every diagram
and show that it works (output shape, parameters, equivariance error under random rotations and
reflections). Run through ``bash scripts/demo.sh`` (which sets everything up first).

Writes build/examples/FILE.py (the generated module) and build/examples/DIAGRAM.svg.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import fusionlang
from fusionlang import api, render, testing
from fusionlang.graphs import needs_orchestrator

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "examples"
COUPLINGS = [("SU2", "1/2", "1/2", "1"), ("SU2", "1/2", "1", "3/2"), ("SO3", "1", "1", "2"),
             ("O3", "1o", "1o", "0e"), ("O3", "1o", "1o", "2e"), ("O3", "2e", "3o", "5o"), ("O3", "6e", "6e", "12e")]


def coupling_table() -> None:
    print(f"{'group':<5} {'a':>4} {'b':>4} {'c':>4}  {'shape':<14} {'dtype':<10} {'orthogonality error':>20}")
    for group, a, b, c in COUPLINGS:
        tensor = fusionlang.coupling(group, a, b, c)
        gram = torch.einsum("ijk,ijl->kl", tensor.conj(), tensor)
        error = (gram / gram.diagonal().real.mean() - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max().item()
        dtype = str(tensor.dtype).replace("torch.", "")
        print(f"{group:<5} {a:>4} {b:>4} {c:>4}  {str(tuple(tensor.shape)):<14} {dtype:<10} {error:20.1e}")


def run_diagram(result: api.CompileResult, name: str) -> tuple[str, int, float]:
    """(output shape, parameters, equivariance error) of one compiled diagram in float64."""
    cls, diagram = result.module_class(name), result.diagram(name)
    module = cls(dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    arguments = testing.module_arguments(module, diagram, generator)
    with torch.no_grad():
        output = module(*arguments)
    if needs_orchestrator(diagram):
        error = testing.graph_equivariance_error(module, diagram, arguments, generator=generator)
    else:
        error = testing.assert_module_equivariant(module, diagram, dtype=torch.float64, trials=2)
    shapes = [tuple(o.shape) for o in (output if isinstance(output, tuple) else (output,))]
    return ", ".join(str(s) for s in shapes), sum(p.numel() for p in module.parameters()), error


def compile_examples() -> bool:
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{'example':<18} {'diagram':<20} {'group':<5} {'output':<16} {'params':>8} {'equivariance':>12} "
          f"{'seconds':>8}")
    worst = 0.0
    for path in sorted((ROOT / "examples").glob("*.fusion")):
        start = time.perf_counter()
        result = api.compile_file(path, OUT / f"{path.stem}.py")
        for diagram in result.diagrams:
            (OUT / f"{diagram.name}.svg").write_text(render.render_svg(diagram), encoding="utf-8")
            shape, parameters, error = run_diagram(result, diagram.name)
            worst = max(worst, error)
            print(f"{path.stem:<18} {diagram.name:<20} {str(diagram.group):<5} {shape:<16} {parameters:>8} "
                  f"{error:>12.1e} {time.perf_counter() - start:>8.2f}")
    print(f"\nwrote {len(list(OUT.glob('*.py')))} modules and {len(list(OUT.glob('*.svg')))} drawings to "
          f"{OUT.relative_to(ROOT)}; largest equivariance error {worst:.1e} (float64)")
    return worst < 1e-10


def main() -> int:
    print(f"fusionlang {fusionlang.__version__} (torch {torch.__version__})\n")
    coupling_table()
    print()
    return 0 if compile_examples() else 1


if __name__ == "__main__":
    sys.exit(main())
