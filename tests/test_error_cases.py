"""Inline error cases (mypy style): each file under tests/cases/errors carries comments
``# expect: CODE LINE:COL`` and must produce exactly those diagnostics, nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fusionlang.diagnostics import CODES
from fusionlang.frontend import check_source

CASES = sorted((Path(__file__).parent / "cases" / "errors").glob("*.fusion"))
EXPECT = re.compile(r"#\s*expect:\s*(E\d{3})\s+(\d+):(\d+)")
# Codes that cannot come from a single file: CLI/IO failures, API-level lookups and the planner's
# own limits and internal errors (tests/test_plan.py and tests/test_codegen.py cover those).
NOT_FROM_A_FILE = {"E113", "E601", "E602", "E603", "E901", "E902", "E903"}


def expectations(path: Path) -> set[tuple[str, int, int]]:
    text = path.read_text(encoding="utf-8")
    return {(code, int(line), int(col)) for code, line, col in EXPECT.findall(text)}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_error_case(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no `# expect:` comment"
    result = check_source(path)
    found = {(d.code, d.line, d.column) for d in result.diagnostics}
    assert found == expected, "\n\n" + result.render()
    for diagnostic in result.diagnostics:
        assert diagnostic.hint or diagnostic.code.startswith("E0"), f"{diagnostic.code} has no hint"


def test_every_code_has_a_case() -> None:
    covered = {code for path in CASES for code, _, _ in expectations(path)}
    missing = sorted(set(CODES) - covered - NOT_FROM_A_FILE)
    assert not missing, f"diagnostic codes without a case file in tests/cases/errors: {missing}"
