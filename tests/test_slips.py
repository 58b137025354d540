"""The slips of issue "[4/5] At home for e3nn and MACE users", one test each: the tutorial runs as
copied and says how to call ``fusionc``, the API page documents every public module it should, the
README's layout names every module, ``check`` never raises for an unreadable file, an unknown
``--diagram`` is E113, ``render -o x.pdf`` writes a PDF, and ``explain`` shows graph diagrams as
the user wrote them, with parameters per species said."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import fusionlang
from fusionlang import api
from fusionlang.cli import main

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fusionlang"
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
API = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def test_tutorial_step_3_runs_as_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 3 raised ``NameError: TMP`` (a name the docs runner used to inject)."""
    python = _blocks(TUTORIAL, "python")
    assert not [body for body in python if re.search(r"\bTMP\b", body)]
    (step_3,) = [body for body in python if "torch.save" in body]
    monkeypatch.chdir(ROOT)
    exec(compile(step_3, "tutorial.md step 3", "exec"), {"__name__": "__docs__"})  # noqa: S102 - our docs


def test_tutorial_says_once_how_to_call_fusionc() -> None:
    """The README calls ``.venv/bin/fusionc``; the tutorial calls ``fusionc`` after saying to
    activate the virtual environment or use the full path."""
    assert ".venv/bin/fusionc" in README
    note = TUTORIAL.index("source .venv/bin/activate")
    assert ".venv/bin/fusionc" in TUTORIAL[note:note + 300]
    first_command = TUTORIAL.index("```bash")
    assert note < first_command


def test_api_page_documents_spherical_and_models() -> None:
    for name in ("fusionlang.spherical", "fusionlang.models", "SphericalHarmonics", "MacePotential", "MaceConfig"):
        assert name in API, name
    assert any("SphericalHarmonics(" in body and "MacePotential(" in body for body in _blocks(API, "python"))


def _modules() -> list[str]:
    files = sorted(PACKAGE.glob("*.py")) + sorted((PACKAGE / "plan").glob("*.py"))
    return sorted({path.stem for path in files} - {"__init__"})


def test_readme_layout_names_every_module() -> None:
    layout = README[README.index("## Layout"):]
    missing = [name for name in _modules() if f"`{name}`" not in layout]
    assert not missing, f"README's layout does not name {missing}"
    for name in ("lsp", "lexer", "notebook", "mace", "e3nn_convert", "recouple", "sparsity", "standalone"):
        assert name in _modules()


@pytest.mark.parametrize("kind", ["missing", "folder", "not utf-8"])
def test_check_of_an_unreadable_path_returns_E901_and_never_raises(kind: str, tmp_path: Path) -> None:
    path = {"missing": tmp_path / "no.fusion", "folder": tmp_path, "not utf-8": tmp_path / "bad.fusion"}[kind]
    if kind == "not utf-8":
        path.write_bytes(b"\xff\xfe diagram")
    result = fusionlang.check(path)
    assert not result.ok and [d.code for d in result.diagnostics] == ["E901"]
    with pytest.raises(fusionlang.FusionError) as failure:
        fusionlang.compile(path)
    assert [d.code for d in failure.value.diagnostics] == ["E901"]
    assert "never raises for mistakes in the input" in " ".join(API.split()) and "E901" in API


@pytest.mark.parametrize("command", ["ir", "explain"])
def test_an_unknown_diagram_is_E113_and_exit_1(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, str(ROOT / "examples" / "spins.fusion"), "--diagram", "NOPE"]) == 1
    captured = capsys.readouterr()
    assert "error[E113]" in captured.err and "no diagram `NOPE`" in captured.err and captured.out == ""


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")
def test_render_to_a_pdf_writes_a_pdf(tmp_path: Path) -> None:
    target = tmp_path / "spins.pdf"
    assert main(["render", str(ROOT / "examples" / "spins.fusion"), "--diagram", "spins", "-o", str(target)]) == 0
    data = target.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]


def test_explain_shows_graph_statements_as_the_user_wrote_them() -> None:
    """Graph diagrams are planned as sub-diagrams with internal names (``out``,
    ``mace_interaction__s0_0``): the report shows the user's statement and target instead."""
    text = api.explain(ROOT / "examples" / "mace.fusion", diagram="mace_interaction")
    assert "10: sender(h), Y -> A " in text and "output A (line 10)" in text
    assert "__s0" not in text and "-> out" not in text and "output out" not in text
    block = api.explain(ROOT / "examples" / "fusion_block.fusion", diagram="fusion_block_k2")
    assert "neighbours(m) -> B  (Möbius term {m1, m2}, coefficient -1)" in block
    assert "__s" not in block


def test_explain_says_when_parameters_are_per_species() -> None:
    result = api.compile(ROOT / "examples" / "mace.fusion")
    report = result.plan("mace_product_basis")
    assert [(s.line, s.classes, s.per) for s in report.statements] == [(20, 3, "species"), (21, 3, "species"),
                                                                       (22, 3, "species")]
    module = result.module_class("mace_product_basis")()
    assert sum(p.numel() for p in module.parameters()) == sum(s.parameters * s.classes for s in report.statements)
    text = report.explain()
    for s in report.statements:
        assert f"{s.parameters} x 3 species = {3 * s.parameters}" in text
    assert report.to_dict()["statements"][0]["per"] == "species"
    plain = api.explain(ROOT / "examples" / "mace.fusion", diagram="mace_interaction")
    assert "species" not in plain
