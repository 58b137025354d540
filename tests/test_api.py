"""The embeddable API: results as data, determinism, and safety under several threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

import fusionlang
from fusionlang import FusionError

ROOT = Path(__file__).resolve().parent.parent


def source(mul: int) -> str:
    return (f"diagram layer_{mul} {{\n    group O3\n    input  x : {mul}x(0e + 1o)\n    input  y : 0e + 1o\n"
            f"    output z : {mul}x(0e + 1o)\n    x, y -> z  [weights = path]\n}}\n")


def compile_and_run(mul: int) -> tuple[str, tuple[int, ...]]:
    result = fusionlang.compile(source(mul), name=f"layer_{mul}.fusion")
    module = result.module_class()()
    out = module(torch.randn(3, 4 * mul), torch.randn(3, 4))
    return result.source_code, tuple(out.shape)


def test_compiling_from_several_threads() -> None:
    work = [1, 2, 3, 4, 5, 6, 7, 8] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(compile_and_run, work))
    for mul, (code, shape) in zip(work, results, strict=True):
        assert shape == (3, 4 * mul)
        assert code == compile_and_run(mul)[0]  # the same source gives the same bytes in any thread


def test_checking_from_several_threads_gives_the_same_diagnostics() -> None:
    bad = "diagram d { group O3\n input x : 1o\n output y : 1o\n x, x -> y }"
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(lambda _: fusionlang.check(bad).diagnostics, range(16)))
    assert all(d == found[0] for d in found) and found[0][0].code == "E202"


def test_compile_is_deterministic_for_every_example() -> None:
    for path in sorted((ROOT / "examples").glob("*.fusion")):
        first = fusionlang.compile(path).source_code
        again = fusionlang.compile(path.read_text(), name=str(path)).source_code
        assert first == again, path.name


def test_user_errors_raise_one_fusion_error_with_every_diagnostic() -> None:
    text = "diagram d { group O3\n input x : 1o\n input unused : 1o\n output y : 1o\n x, q -> y }"
    try:
        fusionlang.compile(text)
    except FusionError as error:
        assert {d.code for d in error.diagnostics} == {"E101", "E104"}
        assert "error[E101]" in str(error)
    else:
        raise AssertionError("no FusionError")


def test_check_of_an_unreadable_path_returns_e901_and_compile_raises_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.fusion"
    result = fusionlang.check(missing)          # documented: check never raises for its input
    assert not result.ok and [d.code for d in result.diagnostics] == ["E901"] and result.diagrams == ()
    assert "missing.fusion" in result.render()
    try:
        fusionlang.compile(missing)
    except FusionError as error:
        assert [d.code for d in error.diagnostics] == ["E901"]
    else:
        raise AssertionError("no FusionError")


def test_notebook_display_falls_back_to_text_without_dot(monkeypatch, tmp_path: Path) -> None:
    result = fusionlang.compile(source(2), name="layer_2.fusion")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `dot` anywhere, E902
    assert result._repr_svg_() is None          # Jupyter then shows the text repr
    assert repr(result) == "<CompileResult of layer_2.fusion: diagrams layer_2>"
