"""The benchmark scripts still run (tiny sizes, one repeat): a benchmark that broke silently would
leave the speed claims unmeasured. No timing is asserted here: speed is measured by running the
scripts at their real sizes (see README, Benchmarks)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_tensor_products_against_e3nn_print_a_ratio_for_every_case() -> None:
    pytest.importorskip("e3nn")
    out = run("bench_tensor_products.py", "--sizes", "16", "--repeat", "1", "--sweep")
    rows = [line.split() for line in out.splitlines() if " forward " in line or " fwd+bwd " in line]
    names = {" ".join(r[:-5]) for r in rows}
    assert {"fc_tp", "uvu", "three", "fc_tp 128x l1", "uvu 16x l3 sh3"} <= names
    assert len(rows) == 2 * len(names)
    assert all(math.isfinite(float(r[-1])) and float(r[-1]) > 0 for r in rows)


def test_mace_product_basis_against_mace_torch_agrees_and_is_timed() -> None:
    pytest.importorskip("mace.modules")
    out = run("bench_mace.py", "--nodes", "32", "--channels", "8", "--repeat", "1")
    assert "max |fusionlang - mace-torch|" in out
    difference = float(out.split("/ max |mace-torch| = ")[1].split()[0])
    assert difference < 1e-5
    assert any(line.startswith("mace-torch ") for line in out.splitlines())
    ops = next(line for line in out.splitlines() if line.startswith("aten ops per forward"))
    counts = [int(word) for word in ops.replace("(", " ").split() if word.isdigit()]
    pairs = list(zip(counts[::2], counts[1::2], strict=True))   # (all, computing) for each of the three modules
    assert len(pairs) == 3 and all(0 < computing < count for count, computing in pairs)



def test_mace_benchmark_compiled_forms_agree_and_give_the_best_ratio() -> None:
    """``--compile`` times both sides under inductor and checks each compiled form against eager."""
    pytest.importorskip("mace.modules")
    out = run("bench_mace.py", "--nodes", "32", "--channels", "8", "--repeat", "1", "--compile")
    assert float(out.split("compiled forms within ")[1].split()[0]) < 1e-5
    names = [line[:58].strip() for line in out.splitlines()]
    assert {"fusionlang compiled", "fusionlang traced", "mace-torch compiled"} <= set(names)
    best = next(line for line in out.splitlines() if line.startswith("best ratio"))
    assert all(float(ratio) > 0 for ratio in best.split()[-2:])
    spread = next(line for line in out.splitlines() if line.startswith("its spread"))
    for low, high in (cell.split("-") for cell in spread.split()[-2:]):   # the quartiles, round by round
        assert 0 < float(low) <= float(high)

def test_checking_and_coupling_benchmarks_run() -> None:
    checked = run("bench_check.py")
    assert checked.count("[OK]") + checked.count("[SLOW]") == 2   # the chain and the tree
    out = run("bench_couplings.py", "--lmax", "2", "--repeat", "1")
    assert "cold and warm results agree: True" in out


def test_compile_time_benchmark_times_every_example_cold_and_warm() -> None:
    out = run("bench_compile.py", "--repeat", "1", "--budget", "1000", "--channels", "2")
    assert out.count("[OK]") == len(list((ROOT / "examples").glob("*.fusion"))) + 2   # and correlation 4 twice
    assert all(" cold " in line and " warm " in line for line in out.splitlines() if "[OK]" in line)


def test_the_time_model_fit_measures_every_strategy_and_scores_the_model() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fit_time_model
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from fusionlang import plan

    text = fit_time_model.suite()[0].replace("8x(", "2x(")   # a small fully connected product
    rows = fit_time_model.measure(text, repeat=1)
    assert len(rows) == len({r["strategy"] for r in rows}) >= 5
    assert set(plan.model_seconds()) <= set(rows[0])
    regret = fit_time_model.regrets([rows], plan.model_seconds())
    assert regret.shape == (1,) and regret[0] >= 1.0


def test_the_benchmark_table_prints_every_form_case_and_degree() -> None:
    pytest.importorskip("e3nn")
    out = run("bench_table.py", "--quick", "--eager-only")
    rows = [r for r in (line.split() for line in out.splitlines()) if len(r) > 2 and r[2] in ("forward", "fwd+bwd")]
    assert {r[0] for r in rows} == {"fc_tp", "uvu", "three"} and len(rows) == 3 * 2 * 2
    assert all(math.isfinite(float(r[3])) and math.isfinite(float(r[6])) for r in rows)  # ours and e3nn eager
    for r in rows:   # the best ratio's spread: its quartiles round by round; c/e has none without compiling
        low, high = map(float, r[10].split("-"))
        assert 0 < low <= high and r[11] == "-"
    assert sum("aten ops per forward" in line and " computing)" in line for line in out.splitlines()) == 3
    assert {line.split()[0] + line.split()[1] for line in out.splitlines() if " l=" in line} == {
        "fcl=1", "fcl=2", "uvul=1", "uvul=2"}
    assert "USDT" not in out and "profiler_start" not in out


def test_the_sparse_benchmark_compares_every_case_with_the_choice() -> None:
    out = run("bench_sparse.py", "--batch", "8", "--repeat", "1", "--degrees", "1")
    rows = [line for line in out.splitlines() if "FLOPs/limit" in line]
    assert [row.split()[0] for row in rows] == ["tree4", "product_basis", "fc_tp", "fc"]
    assert all("ratio" in row and "fwd+bwd" in row for row in rows)
