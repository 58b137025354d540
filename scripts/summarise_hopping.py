"""Summarise an ensemble of surface-hopping trajectories of ethylene written by
``scripts/run_surface_hopping.py``: the fraction on S1 over time, the hops, total-energy drift, and how
far the trajectories leave the geometries a learned model was trained on.

    .venv/bin/python scripts/summarise_hopping.py runs/sh_fusion [--data data/ethylene/frames.extxyz.xz]

Prints one Markdown table (times in fs). With ``--data``, the C=C bond range of the data is compared
with the trajectories': a model evaluated beyond it extrapolates.
"""

from __future__ import annotations

import argparse
import io
import lzma
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusionlang import surface_hopping as sh  # noqa: E402

TIMES = (0.0, 10.0, 25.0, 50.0, 75.0, 100.0)


def cc_bonds(positions: np.ndarray) -> np.ndarray:
    """C=C distances (atoms 0 and 1, ``fusionlang.ethylene`` order) of ``[..., N, 3]`` positions."""
    return np.linalg.norm(positions[..., 0, :] - positions[..., 1, :], axis=-1)


def data_cc_range(path: Path) -> tuple[float, float]:
    from ase.io import read

    with lzma.open(path, "rt", encoding="utf-8") as handle:
        frames = read(io.StringIO(handle.read()), index=":", format="extxyz")
    bonds = [float(cc_bonds(np.asarray(a.positions))) for a in frames]
    return min(bonds), max(bonds)


def summary(runs: list[sh.Trajectory], data: tuple[float, float] | None) -> list[str]:
    populations = sh.ensemble_populations(runs)
    lines = [f"{populations.trajectories} trajectories, dt {runs[0].times[1] - runs[0].times[0]:g} fs, "
             f"{populations.times[-1]:g} fs", "", "| t (fs) | fraction on S1 | mean \\|c1\\|² |", "|---|---|---|"]
    for t in TIMES:
        if t <= populations.times[-1]:
            k = int(np.argmin(np.abs(populations.times - t)))
            lines.append(f"| {populations.times[k]:g} | {populations.fractions[k, 1]:.2f} | "
                         f"{populations.mean_populations[k, 1]:.2f} |")
    hops = [h for r in runs for h in r.hops]
    done = [h for h in hops if not h.frustrated]
    drift = [float(np.ptp(r.total_energy)) for r in runs]
    lines += ["", f"hops: {len(done)} made, {len(hops) - len(done)} frustrated; first made at "
              f"{min((h.time for h in done), default=float('nan')):.1f} fs",
              f"total-energy spread per trajectory: median {np.median(drift):.3g} eV, max {max(drift):.3g} eV"]
    bonds = np.concatenate([cc_bonds(r.positions) for r in runs])
    lines.append(f"C=C along the trajectories: {bonds.min():.2f} to {bonds.max():.2f} Å")
    if data:
        outside = float(np.mean((bonds < data[0]) | (bonds > data[1])))
        first = [r.times[np.argmax(cc_bonds(r.positions) > data[1])] for r in runs
                 if (cc_bonds(r.positions) > data[1]).any()]
        lines.append(f"the data's C=C: {data[0]:.2f} to {data[1]:.2f} Å; {100 * outside:.0f}% of the steps lie "
                     f"outside it; {len(first)} of {len(runs)} trajectories leave it, at a median "
                     f"{np.median(first) if first else float('nan'):.1f} fs")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data", type=Path, help="the training data (extended XYZ, .xz)")
    args = parser.parse_args()
    runs = [sh.Trajectory.load(p) for p in sorted(args.folder.glob("trajectory_*.json"))]
    print("\n".join(summary(runs, data_cc_range(args.data) if args.data else None)))


if __name__ == "__main__":
    main()
