"""Run an ensemble of Tully fewest-switches surface-hopping trajectories (``fusionlang.surface_hopping``).

    python scripts/run_surface_hopping.py --model model.pt --trajectories 50 --steps 400 --dt 0.5 --out runs/sh
    python scripts/run_surface_hopping.py --casscf --trajectories 2 --steps 40 --out runs/sh-casscf  # ≈ 6 s/step
    python scripts/run_surface_hopping.py --tully --trajectories 100 --steps 160 --dt 0.1 --out runs/tully

Resumable: trajectory ``seed`` is written atomically to ``OUT/trajectory_{seed}.json`` when it finishes,
and a rerun skips those files (``--casscf`` also writes each call's diagnostics to
``OUT/casscf_{seed}.json``: the start kept, the active-space overlap). At the end ``populations.json``
and ``population.png`` (S1 decay) are written from every trajectory file in OUT. ``--model``: a
``torch.save``d module following the protocol of ``fusionlang.surface_models.ModelSurfaces``;
``--tully``: Tully's simple avoided crossing (k = 30 a.u., starting on the lower state), a smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusionlang import initial_conditions as ic  # noqa: E402
from fusionlang import surface_hopping as sh  # noqa: E402
from fusionlang import surface_models as sm  # noqa: E402


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="a saved MultiStatePotential (best.pt of the trainer), or a "
                        "torch.save'd callable positions -> (energies, coupling)")
    source.add_argument("--casscf", action="store_true", help="on-the-fly SA-CASSCF(2,2) (ethylene)")
    source.add_argument("--tully", action="store_true", help="Tully's simple avoided crossing (smoke test)")
    parser.add_argument("--geometry", type=Path, help="start geometry (any ASE format); default planar ethylene")
    parser.add_argument("--basis", default="6-31g*", help="basis of --casscf")
    parser.add_argument("--initial", choices=["wigner", "thermal"], default="thermal")
    parser.add_argument("--temperature", type=float, default=300.0, help="kelvin, for --initial thermal")
    parser.add_argument("--state", type=int, default=1, help="initial active state")
    parser.add_argument("--trajectories", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dt", type=float, default=0.5, help="fs")
    parser.add_argument("--substeps", type=int, default=20)
    parser.add_argument("--no-decoherence", action="store_true")
    parser.add_argument("--frustrated", choices=["keep", "reverse"], default="keep")
    parser.add_argument("--seed", type=int, default=0, help="trajectory seeds are seed, seed + 1, ...")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def geometry(args: argparse.Namespace) -> tuple[list[str], np.ndarray]:
    if args.geometry is None:
        from fusionlang.excited import ETHYLENE_SYMBOLS, ethylene_positions

        return list(ETHYLENE_SYMBOLS), ethylene_positions(0.0, 0.0)
    import ase.io

    atoms = ase.io.read(args.geometry, index=0)
    assert not isinstance(atoms, list)  # index=0 reads one frame
    return atoms.get_chemical_symbols(), atoms.get_positions()


def setup(args: argparse.Namespace) -> tuple[Callable[[], sh.SurfacesFn], sh.InitialConditions, np.ndarray]:
    """(make_surfaces, initial conditions, masses) for the chosen surfaces."""
    if args.tully:
        positions, velocities, masses = sm.tully_start(30.0)
        return sm.tully_simple_crossing, (lambda seed: (positions, velocities)), masses
    symbols, positions = geometry(args)
    masses = sm.masses_of(symbols)
    if args.casscf:
        def make() -> sh.SurfacesFn:
            return sm.CasscfSurfaces(symbols, args.basis)
    else:
        import torch

        model = torch.load(args.model, weights_only=False)
        if isinstance(model, dict):  # a saved MultiStatePotential (best.pt of the trainer)
            model = sm.MoleculeModel.load(args.model, symbols)

        def make() -> sh.SurfacesFn:
            return sm.ModelSurfaces(model)
    if args.initial == "wigner":
        return make, ic.wigner_initial(make(), positions, masses), masses
    return make, ic.thermal_initial(positions, masses, args.temperature), masses


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    options = sh.HoppingOptions(dt=args.dt, substeps=args.substeps, frustrated=args.frustrated,
                                decoherence_ev=None if args.no_decoherence else sh.DECOHERENCE_C_EV)
    make, initial, masses = setup(args)
    active = 0 if args.tully else args.state
    for seed in range(args.seed, args.seed + args.trajectories):
        path = args.out / f"trajectory_{seed}.json"
        if path.exists():
            continue
        surfaces = make()
        positions, velocities = initial(seed)
        run = sh.run_trajectory(surfaces, positions, velocities, masses, steps=args.steps, options=options,
                                active=active, seed=seed)
        if isinstance(surfaces, sm.CasscfSurfaces):  # per-step SA-CASSCF diagnostics, before the trajectory
            (args.out / f"casscf_{seed}.json").write_text(json.dumps(surfaces.history))
        run.save(path)
        print(f"trajectory {seed}: {len(run.hops)} hop attempts, final state {run.active[-1]}", flush=True)
    runs = [sh.Trajectory.load(p) for p in sorted(args.out.glob("trajectory_*.json"))]
    populations = sh.ensemble_populations(runs)
    (args.out / "populations.json").write_text(json.dumps(
        {"times_fs": populations.times.tolist(), "fractions": populations.fractions.tolist(),
         "mean_populations": populations.mean_populations.tolist(), "trajectories": populations.trajectories}))
    sh.plot_population(populations, args.out / "population.png", state=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
