"""Fit the planner's run-time model (the constants in ``fusionlang.plan.cost``) to measured times.

    python benchmarks/fit_time_model.py [--threads 2] [--repeat 7]

Every strategy the planner can choose is compiled and timed (forward, float32, N =
``plan.REFERENCE_BATCH``) on a suite of statements: fully connected, channelwise, three-leaf
and symmetric products of several multiplicities and degrees, and ``examples/tree4.fusion``.
The model's estimate is ``Σ feature · seconds per unit`` over ``plan.model_features`` (operations,
FLOPs by kind, setup FLOPs, bytes of traffic). Only the *ranking* matters, so the constants are
fitted by minimising the regret: how much slower the strategy the model picks is than the
fastest one measured (mean + 0.3 · worst, with a small weight on the relative error of the
estimates so that they stay meaningful). The script prints the current model's regret, the
fitted constants and their regret; copy the constants into ``fusionlang/plan/cost.py`` when they
rank better on this machine.

Timings are only comparable on an otherwise idle machine (see bench_tensor_products.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_tensor_products import compare, inputs_for, timer  # noqa: E402

import fusionlang.api  # noqa: E402
from fusionlang import plan  # noqa: E402
from fusionlang.frontend import check_source  # noqa: E402
from fusionlang.plan.strategies import applicable_strategies  # noqa: E402
from fusionlang.source import Source  # noqa: E402


def irreps(lmax: int, mul: int | None = None) -> str:
    text = " + ".join(f"{l}{'eo'[l % 2]}" for l in range(lmax + 1))  # noqa: E741
    return f"{mul}x({text})" if mul else text


def suite() -> list[str]:
    texts = [f"diagram fc {{ group O3\n input x : {irreps(l, m)}\n input y : {irreps(l)}\n output z : {irreps(l, m)}\n"
             f" x, y -> z [channels = uvw, weights = path] }}"
             for m, l in ((8, 2), (32, 2), (64, 2), (16, 3), (128, 1), (4, 3), (2, 1), (2, 3))]
    texts += [f"diagram uvu {{ group O3\n input x : {irreps(l, m)}\n input sh : {irreps(s)}\n output z\n"
              f" x, sh -> z [channels = uvu, weights = external, paths = split] }}"
              for m, l, s in ((8, 2, 3), (32, 2, 3), (64, 2, 3), (16, 3, 3), (128, 1, 2), (32, 1, 1), (16, 1, 1),
                              (16, 2, 2))]
    texts += [f"diagram three {{ group O3\n input a, b, c : {irreps(l, m)}\n output z : {irreps(l, m)}\n"
              f" a, b, c -> z [channels = uuu, weights = channel] }}" for m, l in ((16, 2), (8, 1), (32, 1), (8, 2))]
    texts += [f"diagram sym {{ group O3\n input a : {irreps(l, m)}\n output z : {irreps(l, m)}\n"
              f" a, a, a -> z [channels = uuu, weights = channel] }}" for m, l in ((16, 2), (8, 3))]
    return texts + [(ROOT / "examples" / "tree4.fusion").read_text()]


def measure(text: str, repeat: int) -> list[dict[str, Any]]:
    """Every strategy of the last statement: its features and measured milliseconds."""
    diagram = check_source(text).diagram()
    last = diagram.statements[-1]
    model = plan.statement_models(diagram)[last.index]
    rows = []
    for strategy in applicable_strategies(model):
        result = fusionlang.api._compile(Source(text + f"# {strategy.label}\n", "fit.fusion"),
                                         strategy={last.index: strategy.label})
        module = result.module_class()()
        xs = inputs_for(result, plan.REFERENCE_BATCH)
        with torch.no_grad():
            ms, _ = compare(timer(lambda m=module, a=xs: m(*a)), timer(lambda: None), repeat)
        rows.append({"strategy": strategy.label, "ms": ms, **plan.model_features(result.program().steps)})
    return rows


def regrets(cases: list[list[dict[str, Any]]], unit: dict[str, float]) -> np.ndarray:
    """Per case: measured time of the strategy the model picks over the fastest measured."""
    out = []
    for rows in cases:
        picked = min(rows, key=lambda r: sum(r[k] * unit[k] for k in unit))
        out.append(picked["ms"] / min(r["ms"] for r in rows))
    return np.array(out)


def fit(cases: list[list[dict[str, Any]]], start: dict[str, float]) -> dict[str, float]:
    from scipy.optimize import minimize

    names = list(start)
    rows = [r for rows in cases for r in rows]
    features = np.array([[r[k] for k in names] for r in rows], float)
    ms = np.array([r["ms"] for r in rows])

    def objective(logs: np.ndarray) -> float:
        unit = dict(zip(names, 10.0 ** logs, strict=True))
        regret = regrets(cases, unit)
        error = np.median(np.abs(features @ (10.0 ** logs) * 1e3 / ms - 1))
        return float(regret.mean() + 0.3 * regret.max() + 0.05 * error)

    best = None
    origin = np.log10([start[k] for k in names])
    for trial in range(30):
        x0 = origin + np.random.default_rng(trial).normal(0, 0.5 if trial else 0, len(names))
        found = minimize(objective, x0, method="Nelder-Mead", options={"maxiter": 3000, "xatol": 1e-3})
        if best is None or found.fun < best.fun:
            best = found
    assert best is not None
    return dict(zip(names, 10.0 ** best.x, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, help="also write the measurements (JSON) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = []
    for number, text in enumerate(suite()):
        cases.append(measure(text, args.repeat))
        fastest = min(cases[-1], key=lambda r: r["ms"])
        print(f"statement {number:2d}: {len(cases[-1])} strategies, fastest {fastest['strategy']} "
              f"{fastest['ms']:.3f} ms", flush=True)
    if args.out:
        args.out.write_text(json.dumps(cases, indent=1))
    current = plan.model_seconds()
    before = regrets(cases, current)
    print(f"current model: regret mean {before.mean():.3f}, worst {before.max():.2f}")
    fitted = fit(cases, current)
    after = regrets(cases, fitted)
    print(f"fitted model:  regret mean {after.mean():.3f}, worst {after.max():.2f}")
    for name, seconds in fitted.items():
        print(f"  {name:18} {seconds:.3g} s per unit ({1 / seconds:.2g} per s)")


if __name__ == "__main__":
    main()
