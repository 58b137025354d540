"""Train the MACE-like potential of ``fusionlang.models`` with and without the fusion block on a
tiny generated data set; print the losses and parameter counts; write ``build/train/loss.png``.

    python scripts/train_mace.py                 # about 1.5 minutes on 2 CPU cores
    python scripts/train_mace.py --epochs 5      # a quick look

Both models start from the same seed and see the same batches; the validation structures are
never trained on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from fusionlang.models import (
    EpochLoss,
    MaceConfig,
    MacePotential,
    Statistics,
    Structure,
    collate,
    evaluate,
    fit_statistics,
    make_dataset,
    parameter_count,
    plot_losses,
    train,
)

ROOT = Path(__file__).resolve().parent.parent
MODELS = (("MACE", False), ("MACE + fusion block", True))


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=200, help="training structures (default 200)")
    parser.add_argument("--validation", type=int, default=100, help="validation structures (default 100)")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--energy-weight", type=float, default=10.0)
    parser.add_argument("--force-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    # One thread: the tensors are small, so a second thread gains ~15% on an idle machine, and on a
    # busy one (other jobs on the same 2 cores) two spinning threads make each step 10-30x slower.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "train" / "loss.png")
    return parser.parse_args(argv)


def describe(data: list[Structure], statistics: Statistics) -> str:
    batch = collate(data)
    per_atom = batch.energy / batch.num_atoms
    return (f"{len(data)} structures, {len(batch.species)} atoms, {batch.edge_index.shape[1]} edges; "
            f"energy {float(per_atom.mean()):.3f} ± {float(per_atom.std()):.3f} eV/atom; "
            f"force RMS {statistics.scale:.3f} eV/Å; {statistics.avg_num_neighbors:.2f} neighbours per atom")


def losses(label: str, loss: EpochLoss) -> str:
    return f"{label}: energy MSE {loss.energy:.3e} (eV/atom)²  force MSE {loss.forces:.3e} (eV/Å)²"


def run_one(label: str, fusion: bool, data: tuple[list[Structure], list[Structure]], statistics: Statistics,
            args: argparse.Namespace) -> tuple[list[EpochLoss], str]:
    training, validation = data
    torch.manual_seed(args.seed)
    model = MacePotential(MaceConfig(fusion_block=fusion), statistics)
    count = parameter_count(model)
    print(f"\n== {label}: {count} parameters ==")
    before = evaluate(model, validation, args.energy_weight, args.force_weight)
    start = time.perf_counter()
    history = train(model, training, args.epochs, batch_size=args.batch_size, lr=args.lr,
                    energy_weight=args.energy_weight, force_weight=args.force_weight, seed=args.seed)
    seconds = time.perf_counter() - start
    after = evaluate(model, validation, args.energy_weight, args.force_weight)
    print(losses("validation before", before))
    print(losses("validation after ", after))
    summary = (f"{label:<20} {count:>10} {seconds:>7.1f} {history[0].energy:>11.2e} {history[-1].energy:>11.2e} "
               f"{history[0].forces:>11.2e} {history[-1].forces:>11.2e} {after.energy:>11.2e} {after.forces:>11.2e}")
    return history, summary


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = make_dataset(args.structures + args.validation, seed=args.seed)
    training, validation = data[:args.structures], data[args.structures:]
    statistics = fit_statistics(training)
    print(f"training:   {describe(training, statistics)}")
    print(f"validation: {describe(validation, statistics)}")
    histories, rows = {}, []
    for label, fusion in MODELS:
        histories[label], row = run_one(label, fusion, (training, validation), statistics, args)
        rows.append(row)
    print(f"\n{'model':<20} {'parameters':>10} {'seconds':>7} {'E first':>11} {'E last':>11} {'F first':>11} "
          f"{'F last':>11} {'E val':>11} {'F val':>11}")
    print("\n".join(rows))
    title = (f"MACE-like potential on {args.structures} random clusters (Morse + three-body): "
             f"training losses, {args.epochs} epochs")
    print(f"\nwrote {plot_losses(histories, args.out, title=title)}")
    print(f"total {time.perf_counter() - start:.1f} s on {torch.get_num_threads()} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
