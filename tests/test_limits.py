"""Resource limits (fusionlang.limits, fusionlang.resources): refused before anything is allocated,
raised on request, never a traceback; and the front end's behaviour on user-sized structures."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusionlang import Limits
from fusionlang.diagnostics import FusionError
from fusionlang.frontend import check_source
from fusionlang.groups import Irreps
from fusionlang.limits import CEILINGS

CASES = Path(__file__).parent / "cases" / "errors"


def codes(text: str, **kwargs: object) -> list[str]:
    return [d.code for d in check_source(text, **kwargs).diagnostics]  # type: ignore[arg-type]


def test_a_raised_limit_accepts_what_the_default_refuses() -> None:
    text = (CASES / "E501_spin_too_large.fusion").read_text(encoding="utf-8")
    assert codes(text) == ["E501", "E501"]
    assert check_source(text, limits=Limits(max_l=70)).ok


def test_the_refusal_names_the_limit_to_raise() -> None:
    result = check_source((CASES / "E501_too_many_weights.fusion").read_text(encoding="utf-8"))
    (diagnostic,) = result.diagnostics
    assert "max_weights" in diagnostic.hint
    assert check_source(result.source, limits=Limits(max_weights=10**12)).ok


def test_the_leaf_limit_cannot_be_raised_past_the_planner() -> None:
    with pytest.raises(ValueError, match="max_leaves is at most 9"):
        Limits().with_overrides({"max_leaves": 10})
    assert CEILINGS["max_leaves"] == Limits().max_leaves


@pytest.mark.parametrize("item, message", [
    ("max_l", "NAME=INTEGER"), ("max_l=x", "NAME=INTEGER"), ("nope=3", "unknown limit nope"),
    ("max_l=0", "positive integers"),
])
def test_limit_overrides_from_text_are_validated(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits.parse_overrides([item])


def test_limit_overrides_from_text() -> None:
    assert Limits.parse_overrides(["max_l=40", " max_paths = 7"]) == Limits(max_l=40, max_paths=7)


def test_nested_multiplicities_multiply_out() -> None:
    assert Irreps("3x(2x(0e + 1o))") == Irreps("6x0e + 6x1o")
    with pytest.raises(FusionError, match="E024"):
        Irreps("100000x(100000x0e)")


def test_a_thousand_leaves_get_a_diagnostic_not_a_recursion_error() -> None:
    text = "diagram d {\n group O3\n input x : 0e\n output y : 0e\n " + ", ".join(["x"] * 1000) + " -> y\n}"
    (diagnostic,) = check_source(text).diagnostics
    assert diagnostic.code == "E501" and "1000 leaves" in diagnostic.message
    # the snippet of a 3000-character line shows a window around the span
    assert max(len(line) for line in diagnostic.render().splitlines()) < 200


def test_a_long_chain_of_statements_is_checked() -> None:
    count = 2000
    lines = ["diagram d {", " group O3", " input x : 0e + 1o", " input s : 0e", " output y : 0e + 1o", " x -> e0"]
    lines += [f" e{i}, s -> e{i + 1} [channels = uvw, weights = path]" for i in range(count)]
    lines += [f" e{count} -> y", "}"]
    assert codes("\n".join(lines)) == []


def test_no_cascade_of_dead_edges_after_a_refusal() -> None:
    # e0 .. e63 grow by one spin each; e64 would pass max_l: one diagnostic, not one per edge
    lines = ["diagram d {", " group O3", " input x : 0e + 1o", " output y : 0e + 1o", " x -> e0"]
    lines += [f" e{i}, x -> e{i + 1} [channels = uvw, weights = path]" for i in range(100)]
    lines += [" e100 -> y", "}"]
    assert codes("\n".join(lines)) == ["E501"]


def test_a_lone_surrogate_is_a_diagnostic() -> None:
    text = "# bad \ud800\ndiagram d {\n group O3\n input x : 1o\n output y : 1o\n x -> y\n}\n"
    (diagnostic,) = check_source(text).diagnostics
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == ("E001", 1, 7)
    diagnostic.render().encode("utf-8")  # printable


def test_limits_bound_path_enumeration_without_materialising_it() -> None:
    text = "diagram d {\n group O3\n input x : 0e + 1o + 2e + 3o\n output y\n x, x, x, x, x, x, x, x, x -> y\n}"
    assert codes(text, limits=Limits(max_paths=1000)) == ["E501"]


def _most_table_numbers(program: object) -> int:
    """The numbers of the coupling tables that one statement added, at most (the limit is per statement)."""
    import math
    from collections import Counter

    numbers: Counter[int] = Counter()
    for table in program.tables:  # type: ignore[attr-defined]
        numbers[table.statement] += math.prod(table.spec.shape)
    return max(numbers.values(), default=0)


@pytest.mark.parametrize("example", ["tree4", "product_basis", "fc_tp"])
def test_plans_keep_their_coupling_tables_within_the_limit(example: str) -> None:
    from fusionlang.plan import plan_diagram

    diagram = check_source(Path(__file__).parent.parent / "examples" / f"{example}.fusion").diagrams[0]
    most = _most_table_numbers(plan_diagram(diagram))
    outcomes = []
    for budget in (most - 1, most // 4, 1):
        try:
            program = plan_diagram(diagram, limits=Limits(max_table_numbers=max(budget, 1)))
        except FusionError as refused:
            assert [d.code for d in refused.diagnostics] == ["E501"]
            assert "max_table_numbers" in refused.diagnostics[0].hint
            outcomes.append("refused")
            continue
        assert _most_table_numbers(program) <= max(budget, 1)
        outcomes.append("planned")
    assert outcomes[-1] == "refused"
