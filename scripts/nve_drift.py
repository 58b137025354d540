"""NVE molecular dynamics with a trained fusionlang potential: energy drift, fluctuation and stability.

Loads a checkpoint written with ``torch.save(potential_state(model, atomic_numbers), path)`` (the
trainer's ``best.pt``), takes one geometry of an extended XYZ file (a test-set frame), draws
Maxwell-Boltzmann velocities (seeded; centre-of-mass motion and rotation removed), integrates with
ASE's velocity Verlet and records the potential, kinetic and total energy at every step.

Reported (``OUT/nve.json``, ``OUT/nve.png``, ``OUT/nve.csv``):

- drift: the slope of a least-squares line through the total energy against time, meV/atom/ps;
- fluctuation: the RMS of the total energy about that line, meV/atom;
- stability: the largest stretch of a bond of the starting geometry (d / d0; bonds: pairs closer than
  1.2 x the sum of covalent radii), the shortest distance between any two atoms and the largest
  force component norm seen. The run is flagged unstable (exit status 2) when a bond stretches past
  ``--max-stretch``, two atoms come closer than ``--min-distance`` Å, or an energy is not finite
  (the run stops there).

    .venv/bin/python scripts/nve_drift.py --checkpoint runs/ethanol/best.pt \\
        --data data/ethanol/test.extxyz.xz --frame 0 --temperature 300 --timestep 0.5 --steps 2000 \\
        --out runs/ethanol/nve
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.data import covalent_radii
from ase.io import read
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from fusionlang.calculator import FusionCalculator
from fusionlang.datagen import file_sha256

try:  # ASE >= 3.29 (MaxwellBoltzmannDistribution is deprecated there)
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a potential_state file (best.pt)")
    parser.add_argument("--data", type=Path, default=Path("data/ethanol/test.extxyz.xz"),
                        help="extended XYZ file with the starting geometry")
    parser.add_argument("--frame", type=int, default=0, help="the frame of --data to start from")
    parser.add_argument("--temperature", type=float, default=300.0, help="Maxwell-Boltzmann temperature, K")
    parser.add_argument("--seed", type=int, default=0, help="seed of the velocities")
    parser.add_argument("--exact-temperature", action="store_true",
                        help="rescale the velocities (after removing translation and rotation) to exactly "
                             "--temperature (ASE's 3N-degrees-of-freedom temperature)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--device", default=None, help="torch device (default: where the checkpoint loads, cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--max-stretch", type=float, default=1.5, help="unstable above this bond length ratio")
    parser.add_argument("--min-distance", type=float, default=0.5, help="unstable below this distance, Å")
    parser.add_argument("--out", type=Path, required=True, help="folder for nve.json, nve.png, nve.csv")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.timestep <= 0:
        parser.error("need --steps >= 2 and --timestep > 0")
    return args


def bonds(atoms: Any, factor: float = 1.2) -> np.ndarray:
    """Pairs (i, j), i < j, closer than ``factor`` x the sum of their covalent radii: ``[B, 2]``."""
    distances = atoms.get_all_distances()
    radii = covalent_radii[atoms.numbers]
    close = np.triu(distances < factor * (radii[:, None] + radii[None, :]), k=1)
    return np.argwhere(close)


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the dynamics; the report (``nve.json``) plus the per-step series under ``"series"``."""
    atoms = read(args.data, index=args.frame, format="extxyz")
    if not isinstance(atoms, Atoms):
        raise SystemExit(f"{args.data}: frame {args.frame} is not one structure")
    frame_info = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in atoms.info.items()
                  if isinstance(v, (int, float, str, bool, np.generic))}
    atoms.calc = None
    atoms.set_constraint()
    atoms.info = {}
    atoms.pbc = False
    calculator = FusionCalculator.from_checkpoint(args.checkpoint, device=args.device)
    atoms.calc = calculator
    rng = np.random.default_rng(args.seed)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    if args.exact_temperature:
        atoms.set_momenta(atoms.get_momenta() * math.sqrt(args.temperature / atoms.get_temperature()))
    n = len(atoms)
    pairs = bonds(atoms)
    d0 = atoms.get_all_distances()[pairs[:, 0], pairs[:, 1]]
    off_diagonal = ~np.eye(n, dtype=bool)

    series: dict[str, list[float]] = {k: [] for k in ("step", "time_ps", "total_eV", "potential_eV", "kinetic_eV",
                                                     "temperature_K", "max_force_eV_per_A", "max_stretch",
                                                     "min_distance_A")}
    dyn = VelocityVerlet(atoms, timestep=args.timestep * units.fs)

    class Stop(Exception):
        pass

    def record() -> None:
        potential, kinetic = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        distances = atoms.get_all_distances()
        stretch = distances[pairs[:, 0], pairs[:, 1]] / d0
        values = {"step": dyn.nsteps, "time_ps": dyn.nsteps * args.timestep / 1000.0, "total_eV": potential + kinetic,
                  "potential_eV": potential, "kinetic_eV": kinetic, "temperature_K": atoms.get_temperature(),
                  "max_force_eV_per_A": float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
                  "max_stretch": float(stretch.max()) if len(stretch) else 1.0,
                  "min_distance_A": float(distances[off_diagonal].min())}
        for key, value in values.items():
            series[key].append(float(value))
        if not all(math.isfinite(v) for v in values.values()):
            raise Stop

    dyn.attach(record, interval=1)
    start = time.perf_counter()
    stopped = False
    try:
        dyn.run(args.steps)
    except Stop:
        stopped = True
    wall = time.perf_counter() - start
    done = int(series["step"][-1])

    t = np.array(series["time_ps"])
    total = np.array(series["total_eV"])
    finite = np.isfinite(total)
    slope, intercept = linear_fit(t[finite], total[finite]) if finite.sum() >= 2 else (math.nan, math.nan)
    residual = total[finite] - (slope * t[finite] + intercept)
    per_atom_meV = 1000.0 / n
    max_stretch, min_distance = max(series["max_stretch"]), min(series["min_distance_A"])
    worst = int(np.argmax(series["max_stretch"]))
    stable = (not stopped and max_stretch <= args.max_stretch and min_distance >= args.min_distance)
    report = {
        "settings": {
            "checkpoint": str(args.checkpoint), "checkpoint_sha256": file_sha256(args.checkpoint),
            "data": str(args.data), "frame": args.frame, "frame_info": frame_info,
            "formula": atoms.get_chemical_formula(), "atoms": n,
            "model_atomic_numbers": list(calculator.atomic_numbers), "model_dtype": str(calculator.model.dtype),
            "temperature_K": args.temperature, "seed": args.seed, "timestep_fs": args.timestep,
            "steps": args.steps, "integrator": "VelocityVerlet (ase)", "device": str(calculator.device),
            "threads": torch.get_num_threads(),
            "velocities": "Maxwell-Boltzmann, then centre-of-mass motion and rotation removed"
                          + (", rescaled to the temperature" if args.exact_temperature else ""),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "ase": version("ase")},
        },
        "completed_steps": done,
        "duration_ps": done * args.timestep / 1000.0,
        "initial": {"temperature_K": series["temperature_K"][0], "potential_eV": series["potential_eV"][0],
                    "kinetic_eV": series["kinetic_eV"][0], "total_eV": series["total_eV"][0]},
        "drift_meV_per_atom_per_ps": slope * per_atom_meV,
        "fluctuation_rms_meV_per_atom": float(np.sqrt(np.mean(residual ** 2))) * per_atom_meV,
        "total_energy_std_meV_per_atom": float(np.std(total[finite])) * per_atom_meV,
        "max_abs_total_energy_change_meV_per_atom": float(np.abs(total[finite] - total[0]).max()) * per_atom_meV,
        "mean_temperature_K": float(np.mean(series["temperature_K"])),
        "stability": {
            "stable": stable, "stopped_on_non_finite_energy": stopped,
            "bonds": len(pairs),
            "max_bond_stretch": max_stretch, "max_bond_stretch_step": int(series["step"][worst]),
            "min_distance_A": min_distance,
            "max_force_eV_per_A": max(series["max_force_eV_per_A"]),
            "criteria": {"max_stretch": args.max_stretch, "min_distance_A": args.min_distance,
                         "bond": "d0 < 1.2 x (sum of covalent radii) in the starting geometry"},
        },
        "wall_time_s": wall,
        "steps_per_s": done / wall if wall > 0 else math.nan,
        "series": series,
    }
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = report["series"]
    n = report["settings"]["atoms"]
    t = np.array(s["time_ps"])
    e0 = s["total_eV"][0]
    figure = Figure(figsize=(7.5, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(t, np.array(s["potential_eV"]) - e0, label="potential - E_total(0)", lw=0.8)
    top.plot(t, s["kinetic_eV"], label="kinetic", lw=0.8)
    top.plot(t, np.array(s["total_eV"]) - e0, label="total - E_total(0)", lw=1.2, color="k")
    top.set_ylabel("energy (eV)")
    top.legend(loc="upper right", fontsize=8)
    settings = report["settings"]
    top.set_title(f"NVE {settings['formula']}, {settings['temperature_K']:g} K, dt {settings['timestep_fs']:g} fs, "
                  f"{report['completed_steps']} steps" + ("" if report["stability"]["stable"] else ": UNSTABLE"),
                  fontsize=10)
    drift = report["drift_meV_per_atom_per_ps"]
    relative = (np.array(s["total_eV"]) - e0) * 1000.0 / n
    bottom.plot(t, relative, lw=0.8, color="k", label="total")
    finite = np.isfinite(relative)
    if finite.sum() >= 2:
        slope, intercept = np.polyfit(t[finite], relative[finite], 1)
        bottom.plot(t, slope * t + intercept, lw=1.0, ls="--", color="tab:red",
                    label=f"fit: drift {drift:.3g} meV/atom/ps, RMS about it "
                          f"{report['fluctuation_rms_meV_per_atom']:.3g} meV/atom")
    bottom.set_xlabel("time (ps)")
    bottom.set_ylabel("E_total - E_total(0) (meV/atom)")
    bottom.legend(loc="best", fontsize=8)
    figure.savefig(path, dpi=120)


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    series = report["series"]
    (out / "nve.json").write_text(json.dumps({k: v for k, v in report.items() if k != "series"}, indent=2) + "\n",
                                  encoding="utf-8")
    keys = list(series)
    rows = [",".join(keys)] + [",".join(f"{series[k][i]:.10g}" for k in keys) for i in range(len(series["step"]))]
    (out / "nve.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    plot(report, out / "nve.png")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    report = run(args)
    write(report, args.out)
    stability = report["stability"]
    print(f"{report['completed_steps']} steps ({report['duration_ps']:.3g} ps) in {report['wall_time_s']:.1f} s "
          f"({report['steps_per_s']:.1f} steps/s)")
    print(f"drift {report['drift_meV_per_atom_per_ps']:.4g} meV/atom/ps, fluctuation (RMS about the fit) "
          f"{report['fluctuation_rms_meV_per_atom']:.4g} meV/atom, mean T {report['mean_temperature_K']:.1f} K")
    print(f"max bond stretch {stability['max_bond_stretch']:.3f}, min distance {stability['min_distance_A']:.3f} Å, "
          f"max |F| {stability['max_force_eV_per_A']:.3g} eV/Å: {'stable' if stability['stable'] else 'UNSTABLE'}")
    print(f"wrote {args.out / 'nve.json'}, {args.out / 'nve.png'}, {args.out / 'nve.csv'}")
    return 0 if stability["stable"] else 2


if __name__ == "__main__":
    sys.exit(main())
