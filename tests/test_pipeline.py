"""The pipeline: the passes in order, one driver for api, cli, render and scripts; explain plans
without generating or importing a module; limits reach the checker and the planner; strategies
and path searches chosen by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fusionlang import api, pipeline, plan
from fusionlang.diagnostics import FusionError
from fusionlang.frontend import check_source
from fusionlang.limits import Limits

ROOT = Path(__file__).resolve().parent.parent
TEXT = "diagram d { group O3\n input x : 2x1o\n input y : 1o\n output z : 2x(0e + 1e)\n x, y -> z }\n"
THREE = "diagram t { group O3\n input a, b, c : 1o\n output z : 0o + 1o\n a, b, c -> z }\n"


def generated_modules() -> set[str]:
    return {name for name in sys.modules if name.startswith("_fusionlang_generated")}


def test_the_passes_run_in_order() -> None:
    assert [stage for stage, _ in pipeline.PASSES] == ["check", "lower_basis", "lower_graphs", "plan", "generate"]
    checked = pipeline.run(TEXT, until="check")
    assert checked.checked is not None and not checked.lowered and not checked.units
    planned = pipeline.run(TEXT, until="plan")
    assert planned.units and planned.source_code == ""
    assert pipeline.run(TEXT).source_code == api._compile(api.read_source(TEXT)).source_code


def test_explain_plans_without_generating_or_importing(capsys: pytest.CaptureFixture[str]) -> None:
    from fusionlang.cli import main

    text = TEXT.replace("diagram d", "diagram explained_only")
    before = generated_modules()
    assert "plan of explained_only" in api.explain(text)
    path = ROOT / "examples" / "tree4.fusion"
    assert main(["explain", str(path)]) == 0
    assert "plan of tree4" in capsys.readouterr().out
    assert generated_modules() <= before


def test_plan_unit_is_the_pipelines_plan() -> None:
    for path in sorted((ROOT / "examples").glob("*.fusion")):
        compiled = pipeline.run(path, until="plan")
        for diagram, unit in zip(compiled.diagrams, compiled.units, strict=True):
            again = pipeline.plan_unit(diagram)
            assert [p.steps for p in again.programs] == [p.steps for p in unit.programs]


def test_one_diagram_is_selected() -> None:
    text = TEXT + THREE
    assert [u.diagram.name for u in pipeline.run(text, until="plan", diagram="t").units] == ["t"]
    with pytest.raises(FusionError):
        pipeline.run(text, until="plan", diagram="missing")


def test_limits_reach_the_checker_and_the_planner() -> None:
    with pytest.raises(FusionError) as caught:
        pipeline.run(THREE, until="plan", limits=Limits(max_leaves=2))
    assert {d.code for d in caught.value.diagnostics} & {"E501", "E601"}
    (diagram,) = check_source(THREE).raise_for_errors().diagrams
    with pytest.raises(FusionError) as planned:
        plan.plan_diagram(diagram, limits=Limits(max_leaves=2))
    assert planned.value.diagnostics[0].code == "E601"


def test_no_diagram_is_e114() -> None:
    with pytest.raises(FusionError) as caught:
        pipeline.run("# nothing here\n")
    assert caught.value.diagnostics[0].code == "E114"


def test_strategies_are_chosen_by_name() -> None:
    (diagram,) = check_source(TEXT).raise_for_errors().diagrams
    for name in ("full/U/joint", "blocks/U/entry", "single/chain/entry"):
        assert plan.plan_diagram(diagram, strategy=name).report.statements[0].strategy == name
    by_index = plan.plan_diagram(diagram, strategy={0: "full/U/entry"})
    assert by_index.report.statements[0].strategy == "full/U/entry"
    assert plan.plan_diagram(diagram, strategy="linear/-/entry").report.statements[0].strategy != "linear/-/entry"
    with pytest.raises(KeyError, match="full/U/joint"):
        plan.plan_diagram(diagram, strategy="fastest")


def test_path_searches_are_chosen_by_name() -> None:
    net = plan.Network(("ni", "ij", "nj"), "n", (("i", 3), ("j", 4)))
    assert set(plan.PATHS) == {"optimal", "greedy"}
    assert plan.get_path_fn("optimal")(net) == plan.optimal_tree(net)
    with pytest.raises(KeyError, match="greedy"):
        plan.get_path_fn("exhaustive")


def test_compile_and_explain_take_limits() -> None:
    assert "t" in api.compile(THREE).classes
    for call in (api.compile, api.explain):
        with pytest.raises(FusionError):
            call(THREE, limits=Limits(max_leaves=2))
