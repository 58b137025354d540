"""Make an ab initio data set: GFN2-xTB Langevin MD samples labelled with PySCF DFT (``fusionlang.datagen``).

    python scripts/make_dataset.py --molecule ethanol --trajectories 3 --per-trajectory 500 \\
        --temperature 500 --workers 2 --out data/ethanol          # label (resumable: rerun the same line)
    python scripts/make_dataset.py --out data/ethanol --assemble  # train/valid/test .extxyz.xz + manifest

Needs ``pip install pyscf tblite ase tqdm``. A rerun skips every configuration already labelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusionlang.datagen import DatasetConfig, assemble, generate  # noqa: E402


def arguments(argv: list[str] | None) -> argparse.Namespace:
    defaults = DatasetConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default=defaults.molecule)
    parser.add_argument("--trajectories", type=int, default=defaults.trajectories)
    parser.add_argument("--per-trajectory", type=int, default=defaults.per_trajectory)
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="kelvin")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="trajectory t uses seed 1000*seed + t")
    parser.add_argument("--equilibration", type=int, default=defaults.equilibration, help="MD steps")
    parser.add_argument("--interval", type=int, default=defaults.interval, help="MD steps between snapshots")
    parser.add_argument("--method", default=defaults.method, help="PySCF functional")
    parser.add_argument("--basis", default=defaults.basis)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="label at most this many now (smoke test)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--assemble", action="store_true", help="write the splits and manifest.json, then stop")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if args.assemble:
        manifest = assemble(args.out)
        print(json.dumps({k: manifest[k] for k in ("counts", "wall_time_s", "sha256")}, indent=2))
        return 0
    config = DatasetConfig(molecule=args.molecule, trajectories=args.trajectories, per_trajectory=args.per_trajectory,
                           temperature=args.temperature, seed=args.seed, equilibration=args.equilibration,
                           interval=args.interval, method=args.method, basis=args.basis)
    made = generate(config, args.out, workers=args.workers, progress=not args.no_progress, limit=args.limit)
    print(f"labelled {made} new configurations in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
