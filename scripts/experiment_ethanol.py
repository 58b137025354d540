"""The seed paper's claim, measured: does a fusion block make MACE more accurate with as many, or
fewer, parameters? Ethanol, B3LYP/6-31G* labels made here (data/ethanol, its manifest.json).

    python scripts/experiment_ethanol.py                 # train every run (resumable), then write the report
    python scripts/experiment_ethanol.py --report-only   # rebuild docs/results/ethanol.md from finished runs
    python scripts/experiment_ethanol.py --sizes 50 --seeds 0 --steps 20 --out /tmp/x --docs /tmp/x/docs  # smoke

Five models, each trained with ``fusionlang.training.train`` (the same loop, batches, loss, schedule
and number of optimiser steps), on training subsets of two sizes drawn from trajectories 0 and 1,
with ≥ 3 seeds (the seed sets the weights, the batch order and which structures form the subset),
validated on the validation split and tested on trajectory 2, which no run trains on:

- ``mace``: fusionlang's MACE (``MaceConfig``: 16 channels, l ≤ 2 harmonics, hidden 0e + 1o, 2 layers,
  correlation 3, radial MLP 64-64-64);
- ``mace-wide``: the same with wider radial MLP layers, at exactly the fusion model's parameter count;
- ``fusion``: ``mace`` plus the fusion block (``h, neighbours(m), neighbours(m) -> B``);
- ``fusion-small``: the fusion model with a 48-48-48 radial MLP: fewer parameters than ``mace``;
- ``mace-torch``: mace-torch's own ``ScaleShiftMACE`` at ``mace``'s sizes (benchmarks/mace_reference.py).

Runs go to ``OUT/<model>/n<size>/seed<seed>`` (each resumes from its checkpoint; a finished run is
skipped), two at a time in separate single-threaded processes. The report pairs runs by seed and size.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402

from fusionlang.atoms import Structure, fit_statistics, read_structures  # noqa: E402
from fusionlang.models import MaceConfig, MacePotential, match_parameters, parameter_count, potential_state  # noqa: E402
from fusionlang.training import TrainSettings, train  # noqa: E402

ATOMIC_NUMBERS = (1, 6, 8)
BASE = MaceConfig(species=3, channels=16, lmax=2, hidden_lmax=1, interactions=2, r_max=5.0, bessel=8,
                  radial_mlp=(64, 64, 64), readout_hidden=16)
LABELS = {"mace": "MACE", "mace-wide": "MACE, wider radial MLP (matched)", "fusion": "MACE + fusion block",
          "fusion-small": "MACE + fusion block, smaller radial MLP", "mace-torch": "mace-torch MACE"}
PAIRS = (("fusion", "mace-wide", "fusion block vs plain at equal parameters"),
         ("fusion-small", "mace", "fusion block with fewer parameters vs plain"),
         ("mace", "mace-torch", "fusionlang MACE vs mace-torch MACE"))


def model_config(name: str, base: MaceConfig = BASE) -> MaceConfig:
    """The fusionlang model config of a run (``mace-torch`` uses ``mace``'s sizes); the small
    fusion model's radial MLP is three quarters as wide."""
    fusion = replace(base, fusion_block=True, fusion_lmax=min(2, base.lmax))
    if name == "mace-wide":
        return match_parameters(base, parameter_count(MacePotential(fusion, dtype=torch.float64)))
    small = replace(fusion, radial_mlp=tuple(max(1, 3 * w // 4) for w in base.radial_mlp))
    return {"mace": base, "mace-torch": base, "fusion": fusion, "fusion-small": small}[name]


def base_config(args: argparse.Namespace) -> MaceConfig:
    return replace(BASE, channels=args.channels, radial_mlp=tuple(args.radial_mlp))


def build(name: str, data: Sequence[Structure], base: MaceConfig) -> tuple[torch.nn.Module, Callable[[Any], Any]]:
    """The model of a run, built in float32 with the training set's constants, and its export."""
    config = model_config(name, base)
    constants = fit_statistics(data, config.r_max, config.species)
    if name == "mace-torch":
        from mace_reference import MaceTorchPotential

        return MaceTorchPotential(config, constants, ATOMIC_NUMBERS), lambda m: {"state_dict": m.state_dict()}
    return MacePotential(config, constants, dtype=torch.float32), lambda m: potential_state(m, ATOMIC_NUMBERS)


def load(data: Path, split: str) -> list[Structure]:
    return read_structures(data / f"{split}.extxyz.xz", ATOMIC_NUMBERS)


def subset(structures: Sequence[Structure], size: int, seed: int) -> list[Structure]:
    """``size`` structures drawn with ``seed`` (nested: a larger size contains the smaller's draw)."""
    order = torch.randperm(len(structures), generator=torch.Generator().manual_seed(1000 + seed)).tolist()
    return [structures[k] for k in order[:size]]


def settings(args: argparse.Namespace, size: int, seed: int) -> TrainSettings:
    """The same number of optimiser steps for every model and size (whole epochs, at least)."""
    epochs = max(1, math.ceil(args.steps * args.batch_size / size))
    return TrainSettings(max_epochs=epochs, batch_size=args.batch_size, lr=args.lr, scheduler="cosine",
                         ema_decay=0.99, patience=epochs, energy_weight=1.0, forces_weight=100.0, seed=seed,
                         progress=False, plots=args.run_plots)


def run_one(name: str, size: int, seed: int, args: argparse.Namespace) -> str:
    """Train one run to completion (or resume it); returns its folder."""
    torch.set_num_threads(1)
    out = args.out / name / f"n{size}" / f"seed{seed}"
    if (out / "metrics.json").exists():
        return str(out)
    train_set = subset(load(args.data, "train"), size, seed)
    valid_set, test_set = load(args.data, "valid")[:args.valid_size], load(args.data, "test")[:args.test_size]
    torch.manual_seed(seed)
    model, export = build(name, train_set, base_config(args))
    lines: list[str] = []
    train(model, train_set, valid_set, settings(args, size, seed), out, test_set, r_max=BASE.r_max, export=export,
          config={"model": name, "size": size, "seed": seed,
                  "config": asdict(model_config(name, base_config(args)))},
          log=lines.append)
    return str(out)


# -- the report ----------------------------------------------------------------------------------------

def finished(out: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    """metrics.json of every finished run, by (model, size, seed), with seconds per epoch added."""
    runs = {}
    for path in sorted(out.glob("*/n*/seed*/metrics.json")):
        name, size, seed = path.parts[-4], int(path.parts[-3][1:]), int(path.parts[-2][4:])
        found = json.loads(path.read_text(encoding="utf-8"))
        history = json.loads((path.parent / "history.json").read_text(encoding="utf-8"))
        found["seconds_per_epoch"] = statistics.median(r["seconds"] for r in history)
        runs[name, size, seed] = found
    return runs


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: dict[tuple[str, int, int], dict[str, Any]]) -> list[str]:
    lines = ["| model | train size | seeds | parameters | test energy MAE (meV/atom) | test energy MAE (meV) | "
             "test force MAE (meV/Å) | test force RMSE (meV/Å) | s / epoch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in LABELS:
        for size in sorted({s for (n, s, _) in runs if n == name}):
            group = [r for (n, s, _), r in sorted(runs.items()) if n == name and s == size]
            column = {key: [r["test"][key] for r in group] for key in
                      ("energy_mae_meV_per_atom", "energy_mae_meV", "forces_mae_meV_per_A", "forces_rmse_meV_per_A")}
            lines.append(f"| {LABELS[name]} | {size} | {len(group)} | {group[0]['parameters']:,} | "
                         f"{mean_std(column['energy_mae_meV_per_atom'], 3)} | {mean_std(column['energy_mae_meV'])} | "
                         f"{mean_std(column['forces_mae_meV_per_A'])} | {mean_std(column['forces_rmse_meV_per_A'])} | "
                         f"{mean_std([r['seconds_per_epoch'] for r in group], 1)} |")
    return lines


def paired(runs: dict[tuple[str, int, int], dict[str, Any]]) -> list[str]:
    """Per-seed differences (first minus second) of the test errors: negative favours the first."""
    lines = ["| comparison | train size | seeds | Δ energy MAE (meV/atom) | Δ force MAE (meV/Å) | "
             "Δ force MAE per seed | first better in |", "|---|---:|---:|---:|---:|---|---:|"]
    for first, second, label in PAIRS:
        for size in sorted({s for (n, s, _) in runs if n == first}):
            seeds = sorted(seed for (n, s, seed) in runs if n == first and s == size and (second, s, seed) in runs)
            if not seeds:
                continue
            de = [runs[first, size, k]["test"]["energy_mae_meV_per_atom"]
                  - runs[second, size, k]["test"]["energy_mae_meV_per_atom"] for k in seeds]
            df = [runs[first, size, k]["test"]["forces_mae_meV_per_A"]
                  - runs[second, size, k]["test"]["forces_mae_meV_per_A"] for k in seeds]
            wins = sum(d < 0 for d in df)
            lines.append(f"| {label} | {size} | {len(seeds)} | {mean_std(de, 3)} | {mean_std(df)} | "
                         f"{', '.join(f'{d:+.2f}' for d in df)} | {wins} of {len(seeds)} |")
    return lines


def plot_learning_curve(runs: dict[tuple[str, int, int], dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, 2)
    keys = (("energy_mae_meV_per_atom", "test energy MAE (meV/atom)"),
            ("forces_mae_meV_per_A", "test force MAE (meV/Å)"))
    all_sizes = sorted({s for (_, s, _) in runs})
    for ax, (key, label) in zip(axes, keys, strict=True):
        for number, name in enumerate(LABELS):
            sizes = sorted({s for (n, s, _) in runs if n == name})
            if not sizes:
                continue
            values = [[r["test"][key] for (n, s, _), r in runs.items() if n == name and s == size] for size in sizes]
            spreads = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            dodge = 1.0 + 0.025 * (number - 2)  # side by side, so the error bars stay readable
            ax.errorbar([s * dodge for s in sizes], [statistics.mean(v) for v in values], yerr=spreads, marker="o",
                        capsize=3, label=LABELS[name])
        ax.set(xscale="log", yscale="log", xlabel="training structures", ylabel=label)
        ax.set_xticks(all_sizes, [str(s) for s in all_sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        for axis in (ax.yaxis,):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(ScalarFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    figure.suptitle("ethanol, B3LYP/6-31G*: test errors against training set size (mean ± std over seeds; "
                    "test = trajectory 2)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def report(args: argparse.Namespace) -> Path:
    runs = finished(args.out)
    if not runs:
        raise SystemExit(f"no finished runs in {args.out}")
    docs = args.docs
    plot_learning_curve(runs, docs / "ethanol_learning_curve.png")
    summary = {"runs": {f"{n}/n{s}/seed{k}": {"test": r["test"], "valid": r["valid"], "parameters": r["parameters"],
                                               "epochs": r["epochs"], "best_epoch": r["best_epoch"],
                                               "seconds_per_epoch": r["seconds_per_epoch"]}
                        for (n, s, k), r in sorted(runs.items())},
               "settings": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                            "valid_size": args.valid_size}}
    (docs / "ethanol_runs.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    tables = "\n".join(["## Test errors (mean ± std over seeds)", "", *table(runs), "",
                        "## Paired per-seed differences (first minus second; negative favours the first)", "",
                        *paired(runs), ""])
    (docs / "ethanol_tables.md").write_text(tables, encoding="utf-8")
    print(tables)
    return docs / "ethanol_tables.md"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "ethanol")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "experiments" / "ethanol")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--models", nargs="+", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[200, 800])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--channels", type=int, default=BASE.channels)
    parser.add_argument("--radial-mlp", type=int, nargs="+", default=list(BASE.radial_mlp))
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps of every run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--valid-size", type=int, default=100)
    parser.add_argument("--test-size", type=int, default=None, help="default: the whole test set")
    parser.add_argument("--workers", type=int, default=2, help="runs at once, one thread each (0: in this process)")
    parser.add_argument("--run-plots", action=argparse.BooleanOptionalAction, default=True,
                        help="learning curves and parity plots of every run (default: yes)")
    parser.add_argument("--report-only", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if not args.report_only:
        jobs = [(name, size, seed) for seed in args.seeds for size in args.sizes for name in args.models]
        start = time.perf_counter()
        if args.workers == 0:
            for job in jobs:
                print(f"{'/'.join(map(str, job))}: {run_one(*job, args)} ({time.perf_counter() - start:.0f} s)")
        else:
            with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(run_one, *job, args): job for job in jobs}
                for number, future in enumerate(futures, 1):
                    print(f"[{number}/{len(jobs)}] {'/'.join(map(str, futures[future]))}: {future.result()} "
                          f"({time.perf_counter() - start:.0f} s)", flush=True)
    report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
