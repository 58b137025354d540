"""Stilbene's S0 and S1 energies learned from energies alone, with and without the fusion block at
matched parameters, over seeds; and the two curves along the cis–trans torsion, model against
SA-CASSCF (docs/results/stilbene.md).

    python scripts/train_stilbene.py data/stilbene/frames.extxyz.xz --out runs/stilbene
    python scripts/train_stilbene.py DATA --out DIR --report-only     # tables and curves of the finished runs
    python scripts/train_stilbene.py DATA --out DIR --models fusion --seeds 0 1   # a share of the runs
    python scripts/train_stilbene.py DATA --out /tmp/st --seeds 0 --epochs 2 --channels 4 --lmax 1 \\
        --radial-mlp 8 --readout-hidden 4 --interactions 1      # smoke test

The split is by chain, not at random: **chain 0, the relaxed torsion scan from trans (180°) to cis
(0°), is the test set**, so the curves are drawn on geometries no model saw; its noisy replicas
(chains 1, 2, ...: torsion jittered, rings turned, Cartesian noise) are split by ``--split-seed`` into
training and validation structures. Models, resumption and the summary are those of
``scripts/train_multistate.py`` (``MultiStateConfig(energies_only=True)``:
:class:`fusionlang.multistate.StateEnergiesTask`). ``OUT/curves.json`` holds the reference and every
run's prediction along the scan, ``OUT/curves.png`` the plot: energies relative to the reference S0 at
trans, each model's mean over its seeds with the spread as a band.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
import train_multistate as multistate  # noqa: E402

from fusionlang.atoms import StateStructure, atomic_numbers_in, read_state_structures  # noqa: E402
from fusionlang.metrics import save_atomically  # noqa: E402
from fusionlang.multistate import MultiStateConfig, multistate_from_state  # noqa: E402

COLUMNS = (("S0_energy_mae_meV", "S0 energy MAE (meV)", 1), ("S1_energy_mae_meV", "S1 energy MAE (meV)", 1),
           ("gap_mae_meV", "S1−S0 gap MAE (meV)", 1))


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``scripts/train_multistate.py``'s options and ``--models`` (which of plain and fusion to train:
    two processes can share the runs, one per core)."""
    parser = multistate.build_parser(__doc__)
    parser.add_argument("--models", nargs="+", choices=list(multistate.MODELS), default=list(multistate.MODELS))
    args = parser.parse_args(argv)
    args.test_chain = 0
    return args


def frame_info(path: Path) -> list[dict[str, Any]]:
    """Every frame's ``chain``, ``step`` and ``torsion_deg`` (the design's provenance)."""
    from fusionlang.atoms import _frames

    return [{"chain": int(f.info["chain"]), "step": int(f.info["step"]), "torsion_deg": float(f.info["torsion_deg"])}
            for f in _frames(path)]


def split(data: Sequence[StateStructure], info: Sequence[dict[str, Any]], args: argparse.Namespace
          ) -> tuple[dict[str, list[StateStructure]], list[dict[str, Any]]]:
    """Test: the relaxed scan (chain ``args.test_chain``) in scan order; validation and training: the
    other chains, one shuffle by ``--split-seed``. Also the test frames' provenance, in that order."""
    scan = sorted((k for k, i in enumerate(info) if i["chain"] == args.test_chain), key=lambda k: info[k]["step"])
    rest = [k for k, i in enumerate(info) if i["chain"] != args.test_chain]
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(args.split_seed)).tolist()
    valid = max(1, round(args.valid_fraction * len(rest)))
    picked = [data[rest[k]] for k in order]
    sets = {"test": [data[k] for k in scan], "valid": picked[:valid], "train": picked[valid:]}
    return sets, [info[k] for k in scan]


def configs(args: argparse.Namespace) -> dict[str, MultiStateConfig]:
    return {name: replace(config, energies_only=True) for name, config in multistate.configs(args).items()}


def curves(args: argparse.Namespace, sets: dict[str, list[StateStructure]], scan: Sequence[dict[str, Any]],
           results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The reference and every finished run's S0 and S1 along the scan (eV, relative to reference S0 at
    the first scan point, trans)."""
    reference = torch.stack([s.energies for s in sets["test"]])
    origin = float(reference[0, 0])
    found: dict[str, Any] = {"torsion_deg": [i["torsion_deg"] for i in scan],
                             "reference": (reference - origin).tolist(), "runs": {}}
    for r in results:
        model, _ = multistate_from_state(torch.load(args.out / r["model"] / f"seed{r['seed']}" / "best.pt",
                                                    weights_only=False))
        predicted = model.training_task.predict(model, sets["test"], model.config.r_max).energy
        found["runs"][f"{r['model']}/seed{r['seed']}"] = (predicted - origin).tolist()
    return found


def curve_metrics(found: dict[str, Any]) -> dict[str, Any]:
    """Along the scan, per run: each state's mean signed error (the offset, meV), its MAE once the
    offset is removed (the shape, meV), the S0 barrier (S0 at 90° minus S0 at 180°, eV) and the gap
    at 90° (eV); the reference's barrier and gap beside them, and each model's mean ± std over seeds."""
    torsion = found["torsion_deg"]
    twisted, trans = torsion.index(90.0), torsion.index(180.0)
    reference = torch.tensor(found["reference"])

    def measures(curve: torch.Tensor) -> dict[str, float]:
        return {"barrier_eV": float(curve[twisted, 0] - curve[trans, 0]),
                "gap_at_90_eV": float(curve[twisted, 1] - curve[twisted, 0])}

    runs: dict[str, dict[str, float]] = {}
    for name, values in found["runs"].items():
        error = (torch.tensor(values) - reference) * 1000
        offset = error.mean(0)
        runs[name] = {**{f"S{s}_offset_meV": float(offset[s]) for s in range(2)},
                      **{f"S{s}_shape_mae_meV": float((error[:, s] - offset[s]).abs().mean()) for s in range(2)},
                      **measures(torch.tensor(values))}
    models = {}
    for model in multistate.MODELS:
        mine = [r for k, r in runs.items() if k.startswith(model + "/")]
        if mine:
            models[model] = {key: multistate.mean_std([r[key] for r in mine]) for key in mine[0]}
    return {"reference": measures(reference), "runs": runs, "models": models}


def curve_markdown(metrics: dict[str, Any]) -> str:
    keys = (("S0_offset_meV", "S0 offset (meV)", 0), ("S1_offset_meV", "S1 offset (meV)", 0),
            ("S0_shape_mae_meV", "S0 shape MAE (meV)", 0), ("S1_shape_mae_meV", "S1 shape MAE (meV)", 0),
            ("barrier_eV", "S0 barrier at 90° (eV)", 2), ("gap_at_90_eV", "gap at 90° (eV)", 2))
    lines = ["| model | " + " | ".join(label for _, label, _ in keys) + " |", "|---|" + "---:|" * len(keys)]
    reference = metrics["reference"]
    lines.append(f"| SA-CASSCF reference | – | – | – | – | {reference['barrier_eV']:.2f} | "
                 f"{reference['gap_at_90_eV']:.2f} |")
    for model, row in metrics["models"].items():
        cells = [f"{row[k]['mean']:.{d}f} ± {row[k]['std']:.{d}f}" for k, _, d in keys]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(found: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torsion = found["torsion_deg"]
    reference = torch.tensor(found["reference"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s, colour in ((0, "tab:blue"), (1, "tab:red")):
        ax.plot(torsion, reference[:, s], "o", color=colour, markersize=4, label=f"S{s} SA-CASSCF(2,2)/STO-3G")
        for name, style in (("fusion", "-"), ("plain", "--")):
            runs = [torch.tensor(v)[:, s] for k, v in found["runs"].items() if k.startswith(name + "/")]
            if not runs:
                continue
            stacked = torch.stack(runs)
            mean, std = stacked.mean(0), stacked.std(0) if len(runs) > 1 else torch.zeros_like(stacked[0])
            ax.plot(torsion, mean, style, color=colour, label=f"S{s} {name} (mean of {len(runs)} seeds)")
            ax.fill_between(torsion, mean - std, mean + std, color=colour, alpha=0.15)
    ax.set_xlabel("C-C=C-C torsion (deg): 180 trans, 0 cis")
    ax.set_ylabel("energy relative to trans S0 (eV)")
    ax.set_xlim(180, 0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    torch.set_num_threads(1)
    info = frame_info(args.data)
    data = read_state_structures(args.data, atomic_numbers_in(args.data), energies_only=True)
    sets, scan = split(data, info, args)
    results = multistate.run_and_summarise(configs(args), sets, args, COLUMNS, args.models,
                                           {"test": f"chain {args.test_chain}, the relaxed torsion scan"})
    if results:
        found = curves(args, sets, scan, results)
        found["metrics"] = curve_metrics(found)
        save_atomically(found, args.out / "curves.json")
        (args.out / "curves.md").write_text(curve_markdown(found["metrics"]), encoding="utf-8")
        print(curve_markdown(found["metrics"]))
        plot(found, args.out / "curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
