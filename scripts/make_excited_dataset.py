"""Make the multi-state data set of issue 12: SA-CASSCF(2,2) S0/S1 energies, forces and S0–S1 couplings of
twisted and pyramidalised ethylene (``fusionlang.excited``).

    python scripts/make_excited_dataset.py --molecule ethylene --count 1000 --out data/ethylene --workers 2
        # label (resumable: rerun the same line; a larger --count extends the same design)
    python scripts/make_excited_dataset.py --out data/ethylene --assemble  # frames.extxyz.xz + manifest.json
    python scripts/make_excited_dataset.py --molecule stilbene --count 420 --out data/stilbene --workers 2
        # stilbene: S0/S1 energies only, SA-CASSCF(2,2)/STO-3G (its defaults: basis sto-3g, noise 0.02 Å)

Labelling assembles at the end unless ``--no-assemble``. Needs ``pip install pyscf ase`` (and ``tblite``
for ``--md-snapshots``). Each worker is one single-threaded PySCF process labelling one chain at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusionlang.excited import ExcitedConfig, assemble, generate  # noqa: E402


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line; defaults are :class:`fusionlang.excited.ExcitedConfig`'s, and for ``--count``,
    ``--noise`` and ``--basis`` the molecule's own (:meth:`ExcitedConfig.for_molecule`)."""
    defaults = ExcitedConfig()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--molecule", default=defaults.molecule, choices=["ethylene", "stilbene"])
    parser.add_argument("--count", type=int, default=None, help="geometries of the scan/grid design")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--noise", type=float, default=None, help="Å, noisy grid replicas")
    parser.add_argument("--md-snapshots", type=int, default=defaults.md_snapshots, help="GFN2-xTB MD snapshots")
    parser.add_argument("--md-temperature", type=float, default=defaults.md_temperature, help="kelvin")
    parser.add_argument("--basis", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="label at most this many now (smoke test)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--assemble", action="store_true", help="only write frames.extxyz.xz and manifest.json")
    parser.add_argument("--no-assemble", action="store_true", help="label only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if not args.assemble:
        given = {k: v for k, v in (("count", args.count), ("noise", args.noise), ("basis", args.basis))
                 if v is not None}
        config = ExcitedConfig.for_molecule(args.molecule, seed=args.seed, md_snapshots=args.md_snapshots,
                                            md_temperature=args.md_temperature, **given)
        made, failed = generate(config, args.out, workers=args.workers, limit=args.limit)
        print(f"labelled {made} new geometries in {args.out} ({failed} failed, see failures.jsonl)")
        if args.no_assemble:
            return 0
    manifest = assemble(args.out)
    print(json.dumps({k: manifest[k] for k in ("counts", "wall_time_s", "sha256")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
