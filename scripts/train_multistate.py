"""Multi-state models with and without the fusion block, at matched parameter counts, over seeds
(docs/multistate.md). One extended XYZ file is split once, by ``--split-seed``, into training,
validation and test structures; every run uses that split. Both models are trained by
``fusionlang.training.train`` with the same settings; ``--seeds`` set their weights and batch order.

    python scripts/train_multistate.py data/ethylene/frames.extxyz.xz --out runs/multistate
    python scripts/train_multistate.py DATA --out DIR --report-only     # the table of the finished runs
    python scripts/train_multistate.py data/ethylene/frames.extxyz.xz --out /tmp/ms --seeds 0 1 --epochs 3 \\
        --channels 4 --lmax 1 --radial-mlp 8 --readout-hidden 4 --interactions 1    # smoke test

``plain`` is the model without the fusion block, its radial MLP widened (``match_parameters``) to
the ``fusion`` model's parameter count. Each run writes ``OUT/<model>/seed<k>/result.json`` (atomically,
at its end) and is skipped when that file exists; an interrupted run resumes from its checkpoint.
``OUT/summary.json`` and ``OUT/summary.md`` hold the mean ± standard deviation over the seeds of the
test set's per-state energy MAE (meV), force MAE (meV/Å) and sign-free coupling MAE (1/Å).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import json  # noqa: E402

import torch  # noqa: E402

from fusionlang.atoms import StateStructure, atomic_numbers_in, fit_statistics, read_state_structures  # noqa: E402
from fusionlang.metrics import save_atomically  # noqa: E402
from fusionlang.models import match_parameters, parameter_count  # noqa: E402
from fusionlang.multistate import MultiStateConfig, MultiStatePotential, fit_state_shifts, multistate_state  # noqa: E402
from fusionlang.training import TrainSettings, train  # noqa: E402

MODELS = {"plain": "without the fusion block, matched parameters", "fusion": "with the fusion block"}
COLUMNS = (("S0_energy_mae_meV", "S0 energy MAE (meV)", 1), ("S1_energy_mae_meV", "S1 energy MAE (meV)", 1),
           ("S0_forces_mae_meV_per_A", "S0 force MAE (meV/Å)", 1),
           ("S1_forces_mae_meV_per_A", "S1 force MAE (meV/Å)", 1),
           ("coupling_mae_per_A", "coupling MAE, sign-free (1/Å)", 4))


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="an extended XYZ file with REF_energy_S0/S1, REF_forces_S0/S1, REF_nac")
    parser.add_argument("--out", type=Path, default=Path("runs/multistate"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--coupling-weight", type=float, default=100.0)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--lmax", type=int, default=2)
    parser.add_argument("--hidden-lmax", type=int, default=1)
    parser.add_argument("--interactions", type=int, default=2)
    parser.add_argument("--radial-mlp", type=int, nargs="+", default=[64, 64, 64])
    parser.add_argument("--readout-hidden", type=int, default=16)
    parser.add_argument("--fusion-lmax", type=int, default=None, help="default: min(2, lmax)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--report-only", action="store_true")
    return parser


def split(data: Sequence[StateStructure], args: argparse.Namespace) -> dict[str, list[StateStructure]]:
    """Test, validation and training structures: one shuffle by ``--split-seed``, shared by every run."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.split_seed)).tolist()
    test, valid = (max(1, round(f * len(data))) for f in (args.test_fraction, args.valid_fraction))
    picked = [data[k] for k in order]
    return {"test": picked[:test], "valid": picked[test:test + valid], "train": picked[test + valid:]}


def configs(args: argparse.Namespace) -> dict[str, MultiStateConfig]:
    """The two models' configs: ``fusion``, and ``plain`` widened to its parameter count."""
    base = MultiStateConfig(species=len(atomic_numbers_in(args.data)), channels=args.channels, lmax=args.lmax,
                            hidden_lmax=args.hidden_lmax, interactions=args.interactions,
                            radial_mlp=tuple(args.radial_mlp), readout_hidden=args.readout_hidden)
    fusion_lmax = min(2, args.lmax) if args.fusion_lmax is None else args.fusion_lmax
    fusion = replace(base, fusion_block=True, fusion_lmax=fusion_lmax)
    plain = match_parameters(base, parameter_count(build(fusion)), build=build)
    return {"plain": plain, "fusion": fusion}


def build(config: MultiStateConfig) -> MultiStatePotential:
    return MultiStatePotential(config, dtype=torch.float64)


def run_one(name: str, config: MultiStateConfig, seed: int, sets: dict[str, list[StateStructure]],
            args: argparse.Namespace) -> dict[str, Any]:
    """Train one model with one seed (or read its result); returns ``result.json``'s content."""
    out = args.out / name / f"seed{seed}"
    if (out / "result.json").exists():
        return json.loads((out / "result.json").read_text(encoding="utf-8"))
    constants = fit_statistics(sets["train"], config.r_max, config.species)
    torch.manual_seed(seed)
    model = MultiStatePotential(config, constants, fit_state_shifts(sets["train"], constants),
                                dtype=getattr(torch, args.dtype))
    settings = TrainSettings(max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="cosine",
                             patience=args.epochs, coupling_weight=args.coupling_weight, seed=seed, progress=False,
                             plots=False)
    numbers = atomic_numbers_in(args.data)
    found = train(model, sets["train"], sets["valid"], settings, out, sets["test"], r_max=config.r_max,
                  export=lambda m: multistate_state(m, numbers), log=lambda line: None).metrics  # type: ignore[arg-type]
    result = {"model": name, "seed": seed, "config": asdict(config), "parameters": found["parameters"],
              "test": found["test"], "valid": found["valid"], "epochs": found["epochs"]}
    save_atomically(result, out / "result.json")
    return result


def summary(results: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]] = COLUMNS) -> dict[str, Any]:
    """Mean and standard deviation over the seeds of every column, by model."""
    table: dict[str, Any] = {}
    for name in MODELS:
        runs = [r for r in results if r["model"] == name]
        if runs:
            table[name] = {"seeds": [r["seed"] for r in runs], "parameters": runs[0]["parameters"],
                           **{key: mean_std([r["test"][key] for r in runs]) for key, _, _ in columns}}
    return table


def mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def markdown(table: dict[str, Any], sizes: dict[str, int], columns: Sequence[tuple[str, str, int]] = COLUMNS) -> str:
    head = "| model | seeds | parameters | " + " | ".join(label for _, label, _ in columns) + " |"
    lines = [f"Test set: mean ± std over seeds; {sizes['train']} training, {sizes['valid']} validation, "
             f"{sizes['test']} test structures.", "", head, "|---|---:|---:|" + "---:|" * len(columns)]
    for name, row in table.items():
        cells = [f"{row[key]['mean']:.{digits}f} ± {row[key]['std']:.{digits}f}" for key, _, digits in columns]
        lines.append(f"| {name}: {MODELS[name]} | {len(row['seeds'])} | {row['parameters']:,} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_and_summarise(configs: dict[str, MultiStateConfig], sets: dict[str, list[StateStructure]],
                      args: argparse.Namespace, columns: Sequence[tuple[str, str, int]] = COLUMNS,
                      models: Sequence[str] = tuple(MODELS),
                      note: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train (or read) every run of ``models`` and ``args.seeds``, only read the finished runs of the
    others (and all with ``--report-only``), and write ``OUT/summary.json`` and ``summary.md`` over
    ``columns``; returns the runs' results."""
    results = []
    for name, config in configs.items():
        for seed in args.seeds:
            done = (args.out / name / f"seed{seed}" / "result.json").exists()
            if done or (not args.report_only and name in models):
                results.append(run_one(name, config, seed, sets, args))
                print(f"{name} seed {seed}: " + ", ".join(f"{k} {results[-1]['test'][k]:.4g}" for k, _, _ in columns),
                      flush=True)
    table = summary(results, columns)
    sizes = {k: len(v) for k, v in sets.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    save_atomically({"sizes": sizes, **(note or {}), "models": table}, args.out / "summary.json")
    (args.out / "summary.md").write_text(markdown(table, sizes, columns), encoding="utf-8")
    print(markdown(table, sizes, columns))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    torch.set_num_threads(1)
    sets = split(read_state_structures(args.data, atomic_numbers_in(args.data)), args)
    run_and_summarise(configs(args), sets, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
