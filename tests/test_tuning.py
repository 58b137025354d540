"""``fusionlang.tune`` and ``fusionc tune``: every applicable strategy is timed, the fastest is kept,
the mapping compiles to a module with the default module's values, and what cannot be tuned gets
a diagnostic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fusionlang
from fusionlang.cli import main
from fusionlang.diagnostics import FusionError
from fusionlang.plan import statement_models
from fusionlang.plan.strategies import applicable_strategies
from fusionlang.testing import random_features
from fusionlang.tuning import _medians

ROOT = Path(__file__).resolve().parent.parent
UVU = ("diagram uvu { group O3\n input x : 8x(0e + 1o)\n input sh : 0e + 1o\n output z\n"
       " x, sh -> z [channels = uvu, weights = external, paths = split] }")


def test_every_applicable_strategy_is_timed_and_the_fastest_kept() -> None:
    tuning = fusionlang.tune(UVU, batch=32, repeat=2)
    diagram = fusionlang.compile(UVU).diagram()
    expected = {s.label for s in applicable_strategies(statement_models(diagram)[0])}
    assert set(tuning.times[0]) == expected and len(expected) > 1
    measured = {label: ms for label, ms in tuning.times[0].items() if ms is not None}
    assert tuning.strategies[0] == min(measured, key=measured.__getitem__)
    assert tuning.chosen[0] == fusionlang.compile(UVU).program().report.statements[0].strategy
    text = tuning.table()
    assert "fastest" in text and "model's choice" in text and f"strategy = {tuning.strategies!r}" in text
    assert json.loads(json.dumps(tuning.to_dict()))["strategies"] == {"0": tuning.strategies[0]}


def test_the_tuned_module_computes_what_the_default_one_does() -> None:
    """Strategies differ in plan, not in function: the tuned module with the default module's
    weights gives its values (float64), on a diagram of several statements."""
    source = (ROOT / "examples" / "tree4.fusion").read_text()
    tuning = fusionlang.tune(source, batch=16, repeat=1, backward=True)
    diagram = fusionlang.compile(source).diagram()
    assert set(tuning.strategies) == {s.index for s in diagram.statements} and tuning.backward
    default = fusionlang.compile(source).module_class()(dtype=torch.float64)
    tuned = fusionlang.compile(source, strategy=tuning.strategies).module_class()(dtype=torch.float64)
    tuned.load_state_dict(default.state_dict())
    args = [random_features(leg.irreps, (5,), diagram.group, dtype=torch.float64) for leg in diagram.inputs]
    assert torch.allclose(tuned(*args), default(*args), rtol=1e-10, atol=1e-12)


def test_graph_diagrams_and_unknown_names_get_diagnostics() -> None:
    mace = ROOT / "examples" / "mace.fusion"
    with pytest.raises(FusionError) as graph:
        fusionlang.tune(mace, repeat=1)
    assert graph.value.diagnostics[0].code == "E601"
    with pytest.raises(FusionError) as missing:
        fusionlang.tune(mace, diagram="nope", repeat=1)
    assert missing.value.diagnostics[0].code == "E113" and "mace_interaction" in missing.value.diagnostics[0].hint


def test_strategies_the_planner_refuses_are_reported_untimed() -> None:
    calls: list[str] = []
    times = _medians({"a": lambda: calls.append("a"), "refused": None}, repeat=3)
    assert times["refused"] is None and times["a"] is not None and calls == ["a"] * 4  # a warm-up, then 3


def test_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "uvu.fusion"
    path.write_text(UVU)
    assert main(["tune", str(path), "--batch", "16", "--repeat", "1", "--threads", "1", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["diagram"] == "uvu" and found["batch"] == 16 and found["threads"] == 1
    assert found["strategies"]["0"] in found["times"]["0"]
    assert main(["tune", str(ROOT / "examples" / "mace.fusion")]) == 1
    assert "E601" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["tune", str(path), "--batch", "0"])
    assert usage.value.code == 2


def test_rounds_pair_the_runs_and_the_spread_is_their_ratio_quartiles() -> None:
    """Entry k of every list comes from round k (so a ratio can be taken round by round), and the
    spread is the quartiles of those ratios, not of either side's times."""
    from fusionlang.tuning import median_ms, ratio_spread, rounds_ms

    order: list[str] = []
    found = rounds_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeat=3, warmups=1)
    assert order == ["a", "b"] * 4 and {len(t) for t in found.values()} == {3}
    assert all(t >= 0 for times in found.values() for t in times)
    assert set(median_ms({"a": lambda: None}, repeat=2)) == {"a"}
    # a machine slowing down hits both sides of each round: the ratio stays put, the times do not
    slow, fast = [1.0, 2.0, 4.0, 8.0, 16.0], [0.5, 1.0, 2.0, 4.0, 8.0]
    assert ratio_spread(slow, fast) == (2.0, 2.0)
    low, high = ratio_spread([3.0, 1.0, 2.0, 4.0, 5.0], [1.0] * 5)
    assert (low, high) == (2.0, 4.0)
    assert ratio_spread([3.0], [2.0]) == (1.5, 1.5)
