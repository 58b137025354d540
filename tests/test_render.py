"""Drawings: valid deterministic SVG for every example, golden files, graphviz missing, ``fusionc render``.

Regenerate the golden files with ``pytest tests/test_render.py --update-golden`` (or
``UPDATE_GOLDEN=1``). The DOT goldens are compared always; the SVG goldens byte for byte only
where graphviz and the font match the ones that wrote them (``tests/golden/svg/LAYOUT``): text
widths, and so the layout, come from the installed font.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fusionlang import FusionError, render
from fusionlang.cli_render import cmd_render, configure_render
from fusionlang.frontend import check_source
from fusionlang.graphs import needs_orchestrator
from fusionlang.ir import Diagram

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))
# every (file, diagram) of the examples; the plan view is drawn for plain (non-graph) diagrams
DIAGRAMS = [(p, d.name) for p in EXAMPLES for d in check_source(p).diagrams]
PLAIN = [(p, n) for p, n in DIAGRAMS if not needs_orchestrator(check_source(p).diagram(n))]
GOLDEN = Path(__file__).resolve().parent / "golden" / "svg"
HAS_DOT = render.graphviz_version() is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz `dot` is not installed")
SVG_NS = "{http://www.w3.org/2000/svg}"
XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"

MANY = """\
diagram many {
    group SU2
    input  a : 2x1/2 + 2x3/2
    input  b : 1/2
    output y
    output z : 2x(1/2 + 3/2)
    a, b -> h  [channels = uvu, weights = external]
    a, b -> h  [channels = uvu, weights = path]
    h, b -> y
    h, b -> z  [weights = channel]
    y -> z     [weights = path]
}
diagram so3 {
    group SO3
    input  x : 4x0 + 4x1
    output y : 4x1
    output w : 4x2
    x, x -> y  [channels = uuu]
    x, x -> w  [channels = uuu]
}
"""


def example(path: Path, name: str | None = None) -> Diagram:
    return check_source(path).raise_for_errors().diagram(name)


@functools.cache
def program(path: Path, name: str | None = None):  # type: ignore[no-untyped-def]
    """The planner's Program for an example (the planner's rank tests need torch)."""
    pytest.importorskip("torch")
    from fusionlang.plan import plan_diagram

    return plan_diagram(example(path, name))


def many(name: str = "many") -> Diagram:
    return check_source(MANY, "many.fusion").raise_for_errors().diagram(name)


def update_golden(request: pytest.FixtureRequest) -> bool:
    """``--update-golden`` (registered in conftest.py) or, without it, ``UPDATE_GOLDEN=1``."""
    try:
        if request.config.getoption("--update-golden"):
            return True
    except ValueError:  # the option is not registered
        pass
    return os.environ.get("UPDATE_GOLDEN") == "1"


def layout_environment() -> str:
    """What SVG bytes depend on besides the DOT text: graphviz's version and the font it finds."""
    fonts = []
    for style in ("", ":italic", ":bold"):
        found = shutil.which("fc-match") and subprocess.run(
            ["fc-match", f"{render.FONT}{style}"], capture_output=True, text=True, check=False).stdout.strip()
        fonts.append(found or "unknown")
    return f"graphviz {render.graphviz_version()}\n" + "".join(f"font {f}\n" for f in fonts)


def skip_unless_same_layout() -> None:
    if (GOLDEN / "LAYOUT").read_text(encoding="utf-8") != layout_environment():
        pytest.skip("the SVG goldens were laid out with another graphviz or font (tests/golden/svg/LAYOUT)")


def svg_texts(svg: str) -> tuple[str, list[str]]:
    """All text drawn in an SVG (joined) and every tooltip; parsing proves it is valid XML."""
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG_NS}svg"
    drawn = " ".join(t.text or "" for t in root.iter(f"{SVG_NS}text"))
    tooltips = [a.attrib[XLINK_TITLE] for a in root.iter(f"{SVG_NS}a") if XLINK_TITLE in a.attrib]
    return drawn, tooltips


def squeeze(text: str) -> str:
    """Text without any white space (labels may wrap a long sum of irreps over several lines)."""
    return "".join(text.split())


# --- every example ------------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("path,name", DIAGRAMS, ids=[n for _, n in DIAGRAMS])
def test_example_svg_is_valid_and_names_every_leg(path: Path, name: str) -> None:
    diagram = example(path, name)
    drawn, tooltips = svg_texts(render.render_svg(diagram))
    for leg in diagram.legs:
        if leg.role == "index":
            assert leg.name in drawn.split(), f"index {leg.name} is not labelled"
            continue
        assert leg.irreps is not None
        assert leg.name in drawn.split(), f"leg {leg.name} is not labelled"
        exact = f"{leg.role} {leg.name} : {leg.irreps}"
        assert any(t.startswith(exact) for t in tooltips), f"no tooltip with {exact!r}"
        pretty = render.pretty_irreps(str(leg.irreps))
        assert squeeze(pretty) in squeeze(drawn), f"{pretty!r} of {leg.name} is not drawn"


def check_golden(name: str, dot: str, svg: str, request: pytest.FixtureRequest) -> None:
    """Compare (or with --update-golden, write) ``NAME.dot`` and ``NAME.svg``."""
    golden_dot, golden_svg = GOLDEN / f"{name}.dot", GOLDEN / f"{name}.svg"
    if update_golden(request):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden_dot.write_text(dot, encoding="utf-8")
        golden_svg.write_text(svg, encoding="utf-8")
        (GOLDEN / "LAYOUT").write_text(layout_environment(), encoding="utf-8")
    assert golden_dot.read_text(encoding="utf-8") == dot, "DOT changed: rerun with --update-golden"
    skip_unless_same_layout()
    assert golden_svg.read_text(encoding="utf-8") == svg, "SVG changed: rerun with --update-golden"


@needs_dot
@pytest.mark.parametrize("path,name", DIAGRAMS, ids=[n for _, n in DIAGRAMS])
def test_example_matches_golden(path: Path, name: str, request: pytest.FixtureRequest) -> None:
    diagram = example(path, name)
    check_golden(diagram.name, render.to_dot(diagram), render.render_svg(diagram), request)


@needs_dot
@pytest.mark.parametrize("path,name", PLAIN, ids=[n for _, n in PLAIN])
def test_example_plan_matches_golden(path: Path, name: str, request: pytest.FixtureRequest) -> None:
    plan = program(path, name)
    name = f"{plan.diagram.name}.plan"
    check_golden(name, render.plan_to_dot(plan), render.render_plan(plan, "svg"), request)


@needs_dot
@pytest.mark.parametrize("path,name", DIAGRAMS, ids=[n for _, n in DIAGRAMS])
def test_rendering_twice_gives_identical_bytes(path: Path, name: str) -> None:
    first, second = example(path, name), example(path, name)
    assert render.render_svg(first).encode() == render.render_svg(second).encode()
    assert render.to_dot(first) == render.to_dot(second)
    assert "Generated by" not in render.render_svg(first)


@needs_dot
@pytest.mark.parametrize("path,name", DIAGRAMS, ids=[n for _, n in DIAGRAMS])
def test_docs_drawings_are_up_to_date(path: Path, name: str) -> None:
    diagram = example(path, name)
    drawn = ROOT / "docs" / "diagrams" / f"{diagram.name}.svg"
    assert drawn.exists(), "run `python scripts/render_docs.py`"
    skip_unless_same_layout()
    assert drawn.read_text(encoding="utf-8") == render.render_svg(diagram), "run `python scripts/render_docs.py`"
    if (path, name) in PLAIN:
        plan = ROOT / "docs" / "diagrams" / f"{diagram.name}.plan.svg"
        assert plan.read_text(encoding="utf-8") == (GOLDEN / f"{diagram.name}.plan.svg").read_text(encoding="utf-8")


def test_dot_text_is_the_same_in_every_process() -> None:
    """No set or dict order leaks into the DOT text: other hash seeds give the same bytes."""
    script = ("import hashlib, pathlib; from fusionlang import render; from fusionlang.plan import plan_diagram\n"
              "from fusionlang.frontend import check_source; h = hashlib.sha256()\n"
              "from fusionlang.graphs import needs_orchestrator\n"
              "for p in sorted(pathlib.Path('examples').glob('*.fusion')):\n"
              "  for d in check_source(p).diagrams:\n"
              "    h.update(render.to_dot(d).encode())\n"
              "    h.update(b'' if needs_orchestrator(d) else render.plan_to_dot(plan_diagram(d)).encode())\n"
              "print(h.hexdigest())")
    runs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    digests = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs) and len(digests[0]) == 65 and digests[0] == digests[1]


# --- the plan view ------------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("path,name", PLAIN, ids=[n for _, n in PLAIN])
def test_plan_svg_shows_every_step_with_its_flops(path: Path, name: str) -> None:
    plan = program(path, name)
    drawn, tooltips = svg_texts(render.render_plan(plan, "svg"))
    for step in plan.steps:
        if step.equation:  # einsum and broadcast products
            cost = f"{step.flops:,} FLOPs" if step.flops else f"setup {step.setup_flops:,} FLOPs/call"
            assert step.equation.replace("->", "→") in drawn and cost in drawn
    for table in plan.tables:
        assert table.name in drawn
    for statement in plan.report.statements:
        assert f"line {statement.line}: {statement.text}" in drawn
    for leg in (*plan.inputs, *plan.outputs):
        assert leg.leg in drawn.split()


SHARED_SUBTREE = """diagram s { group O3
 input a, b, c, d : 2x(0e + 1o)
 output y, z : 2x(0e + 1o)
 (a, b), c -> y [channels = uuu]
 (a, b), d -> z [channels = uuu]
}"""


def test_plan_highlights_shared_intermediates() -> None:
    from fusionlang.plan import plan_diagram

    plan = plan_diagram(check_source(SHARED_SUBTREE).raise_for_errors().diagram())
    graph = render.plan_graph(plan)
    computed_shared = {f"step:{s.target}" for s in plan.steps if s.target in plan.report.shared and s.is_op}
    red = {n.name for n in graph.nodes if dict(n.attrs).get("color") == render.SHARED}
    assert red and red == computed_shared  # computed once, used by several steps
    red_edges = [e for e in graph.edges if dict(e.attrs).get("color") == render.SHARED]
    uses = {node: sum(e.tail == node for e in red_edges) for node in red}
    assert all(count >= 1 for count in uses.values()) and max(uses.values()) >= 2
    assert {e.tail for e in red_edges} == red
    assert [c.name for c in graph.clusters] == [f"s{s.index}" for s in plan.report.statements]
    assert "computed once and shared" in render.dot_text(graph)


def test_plan_of_spins_is_a_tree_of_pairwise_contractions() -> None:
    plan = program(ROOT / "examples" / "spins.fusion", "spins")
    graph = render.plan_graph(plan)
    einsums = [s for s in plan.steps if s.kind == "einsum"]
    for step in einsums:
        into = [e.tail for e in graph.edges if e.head == f"step:{step.target}"]
        assert len(into) == 2, step  # every contraction step meets exactly two tensors
    assert not [n for n in graph.nodes if dict(n.attrs).get("color") == render.SHARED]  # s3's slice is free
    with pytest.raises(TypeError, match="Program"):
        render.plan_graph(plan.report)


# --- what the drawing encodes -------------------------------------------------------------------

def node_attrs(graph: render.DotGraph, name: str) -> dict[str, object]:
    (node,) = [n for n in graph.nodes if n.name == name]
    return dict(node.attrs)


def test_spins_fractions_and_inferred_edge() -> None:
    graph = render.diagram_graph(example(ROOT / "examples" / "spins.fusion", "spins"))
    labels = " ".join(str(dict(e.attrs).get("label", "")) for e in graph.edges)
    assert "½ + ³⁄₂" in labels and "1/2" not in labels and "3/2" not in labels
    (s12,) = [e for e in graph.edges if "s12" in str(dict(e.attrs).get("label", ""))]
    label = str(dict(s12.attrs)["label"])
    assert "(inferred)" in label and "<I>" in label and dict(s12.attrs)["color"] == render.MUTED
    (total,) = [e for e in graph.edges if e.head == "out:total"]
    assert "(inferred)" not in str(dict(total.attrs)["label"])
    assert node_attrs(graph, "s0.v0")["style"] == "filled"
    assert {n.name for n in graph.nodes if n.name.startswith(("w:", "opt:"))} == set()  # uvw, no weights


def test_product_basis_sum_weights_and_linear_box() -> None:
    graph = render.diagram_graph(example(ROOT / "examples" / "product_basis.fusion"))
    assert node_attrs(graph, "sum:B")["label"] == "+"
    assert sorted(e.tail for e in graph.edges if e.head == "sum:B") == ["s0.linear", "s1.v0", "s2.v1"]
    assert node_attrs(graph, "s0.linear")["shape"] == "box"
    for index in (1, 2):
        weight = node_attrs(graph, f"opt:s{index}")
        assert weight["shape"] == "box" and "channel · uuu" in str(weight["label"])
    fork = [e for e in graph.edges if e.tail == "fork:A"]
    assert len(fork) == 6  # A is read on six legs
    assert all(r.kind != "same" or r.cluster for r in graph.ranks)


def test_tree4_channel_tag_and_input_order() -> None:
    graph = render.diagram_graph(example(ROOT / "examples" / "tree4.fusion"))
    assert "uuu" in str(node_attrs(graph, "opt:s0")["label"])  # unweighted uuu vertex: a text tag
    assert node_attrs(graph, "opt:s0")["shape"] == "plain"
    (inputs,) = [r for r in graph.ranks if r.kind == "min"]
    assert inputs.names == ("in:a", "in:b", "in:c", "in:d") and inputs.ordered
    assert 'rankdir="LR"' in render.dot_text(graph)


def test_several_outputs_and_inferred_output() -> None:
    graph = render.diagram_graph(many())
    text = render.dot_text(graph)
    assert node_attrs(graph, "sum:h")["label"] == "+" and node_attrs(graph, "sum:z")["label"] == "+"
    (outputs,) = [r for r in graph.ranks if r.kind == "max"]
    assert outputs.names == ("out:y", "out:z")
    assert "external · uvu" in text and "path · uvu" in text
    (y_out,) = [e for e in graph.edges if e.head == "out:y"]
    assert dict(y_out.attrs)["color"] == render.MUTED  # y is inferred


def test_pretty_irreps() -> None:
    assert render.pretty_irreps("1/2 + 3x3/2 + 11/2") == "½ + 3×³⁄₂ + ¹¹⁄₂"
    assert render.pretty_irreps("16x(0e + 1o)") == "16×(0e + 1o)"
    assert render.pretty_irreps("0 + 1 + 2") == "0 + 1 + 2"


def test_dot_text_quotes_and_escapes() -> None:
    graph = render.DotGraph('a"b', (("label", render.Html("<B>x &amp; y</B>")),),
                            (render.DotNode('n"1', (("tooltip", "a\\b\nc"),)),), ())
    text = render.dot_text(graph)
    assert 'digraph "a\\"b"' in text and '"n\\"1" [tooltip="a\\\\b\\nc"]' in text
    assert "label=<<B>x &amp; y</B>>" in text


@needs_dot
def test_png_and_unknown_format() -> None:
    png = render.render(many("so3"), "png")
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="unknown format"):
        render.render(many("so3"), "gif")  # type: ignore[call-overload]
    assert render.render(many("so3"), "pdf").startswith(b"%PDF-")


# --- without graphviz ---------------------------------------------------------------------------

def test_without_dot_only_dot_text_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `dot` anywhere
    diagram = example(ROOT / "examples" / "spins.fusion", "spins")
    assert render.render(diagram, "dot").startswith('digraph "spins"')
    for fmt in ("svg", "png"):
        with pytest.raises(FusionError) as failure:
            render.render(diagram, fmt)  # type: ignore[call-overload]
        (diagnostic,) = failure.value.diagnostics
        assert diagnostic.code == "E902"
        for install in ("apt-get install graphviz", "brew install graphviz", "conda"):
            assert install in diagnostic.hint
    assert render.graphviz_version() is None


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for dot")
def test_a_failing_dot_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FusionError) as failure:
        render.render_svg(example(ROOT / "examples" / "spins.fusion", "spins"))
    assert failure.value.diagnostics[0].code == "E902" and "syntax error" in str(failure.value)


# --- fusionc render -----------------------------------------------------------------------------

def fusionc_render(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str = "") -> tuple[int, str, str]:
    """Run the subcommand as cli.py wires it: its own parser, argparse errors exit 2."""
    parser = argparse.ArgumentParser(prog="fusionc render")
    configure_render(parser)
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = cmd_render(parser.parse_args(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.stdin = old_stdin
    out, err = capsys.readouterr()
    return code, out, err


@needs_dot
def test_cli_writes_svg_png_and_dot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spins = str(ROOT / "examples" / "spins.fusion")
    written = (("spins.svg", b"<svg"), ("spins.png", b"\x89PNG"), ("spins.pdf", b"%PDF-"), ("spins.dot", b"digraph"))
    for name, check in written:
        code, out, err = fusionc_render([spins, "--diagram", "spins", "-o", str(tmp_path / name)], capsys)
        assert code == 0 and out == "" and f"wrote {tmp_path / name}: diagram spins" in err
        assert check in (tmp_path / name).read_bytes()[:400]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spins.dot", "spins.pdf", "spins.png", "spins.svg"]
    code, _, _ = fusionc_render([spins, "--diagram", "spins", "-o", str(tmp_path / "as-dot.txt"), "--format", "dot"],
                                capsys)
    assert code == 0 and (tmp_path / "as-dot.txt").read_text().startswith("digraph")


@needs_dot
def test_cli_reads_stdin_and_writes_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = fusionc_render(["-", "--diagram", "so3"], capsys, stdin=MANY)
    assert code == 0
    drawn, _ = svg_texts(out)
    assert "4×0 + 4×1" in drawn
    code, out, _ = fusionc_render(["-", "--diagram", "many", "--format", "dot"], capsys, stdin=MANY)
    assert code == 0 and out.startswith('digraph "many"')


@needs_dot
def test_cli_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    tree4 = str(ROOT / "examples" / "tree4.fusion")
    code, _, err = fusionc_render([tree4, "--plan", "-o", str(tmp_path / "tree4.plan.svg")], capsys)
    assert code == 0 and "plan of diagram tree4" in err
    drawn, _ = svg_texts((tmp_path / "tree4.plan.svg").read_text(encoding="utf-8"))
    assert "line 8: ab, (c, d) -> out" in drawn and "FLOPs" in drawn
    code, out, _ = fusionc_render(["-", "--plan", "--diagram", "so3", "--format", "dot"], capsys, stdin=MANY)
    assert code == 0 and out.startswith('digraph "plan of so3"')


def test_cli_usage_and_diagnostics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spins = str(ROOT / "examples" / "spins.fusion")
    code, _, err = fusionc_render([spins, "--diagram", "spins", "--format", "png"], capsys)
    assert code == 2 and "E903" in err and "-o" in err
    assert fusionc_render([spins, "--diagram", "spins", "--format", "gif"], capsys)[0] == 2
    code, _, err = fusionc_render([spins, "--diagram", "spins", "--format", "pdf"], capsys)
    assert code == 2 and "PDF output needs a file" in err
    for unknown in ("spins.jpg", "spins"):   # a suffix naming no format was written as SVG
        code, _, err = fusionc_render([spins, "--diagram", "spins", "-o", str(tmp_path / unknown)], capsys)
        assert code == 2 and "E903" in err and ".pdf" in err and not (tmp_path / unknown).exists()
    code, _, err = fusionc_render(["-"], capsys, stdin=MANY)  # two diagrams, none chosen
    assert code == 1 and "E113" in err and "many, so3" in err
    bad = "diagram d {\n    group O3\n    input x : 1o\n    output y : 1o\n    x, x -> y\n}\n"
    code, out, err = fusionc_render(["-", "--format", "dot"], capsys, stdin=bad)
    assert code == 1 and out == "" and "E202" in err
    code, _, err = fusionc_render([str(tmp_path / "missing.fusion")], capsys)
    assert code == 1 and "E901" in err
    code, _, err = fusionc_render([spins, "--diagram", "spins", "-o", str(tmp_path / "no" / "such" / "dir.dot")],
                                  capsys)
    assert code == 1 and "E901" in err and not (tmp_path / "no").exists()


def test_cli_without_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    spins = str(ROOT / "examples" / "spins.fusion")
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = fusionc_render([spins, "--diagram", "spins", "-o", str(tmp_path / "spins.svg")], capsys)
    assert code == 1 and "E902" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "spins.svg").exists()
    code, out, _ = fusionc_render([spins, "--diagram", "spins", "--format", "dot"], capsys)
    assert code == 0 and out.startswith('digraph "spins"')


def test_cli_table_wiring(capsys: pytest.CaptureFixture[str]) -> None:
    from fusionlang import cli

    if "render" not in [entry[0] for entry in cli._COMMANDS]:
        pytest.skip("`render` is not in cli._COMMANDS yet")
    assert cli.main(["render", str(ROOT / "examples" / "spins.fusion"), "--diagram", "spins", "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith('digraph "spins"')


@needs_dot
def test_compile_result_draws_itself_for_jupyter() -> None:
    from fusionlang import api

    result = api.compile(ROOT / "examples" / "spins.fusion")
    assert result.svg("chain4") == render.render_svg(example(ROOT / "examples" / "spins.fusion", "chain4"))
    shown = result._repr_svg_()
    assert shown.count("<svg") == len(result.diagrams) == 4


@needs_dot
def test_plan_of_a_graph_diagram_draws_every_contraction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fusionlang.pipeline import plan_unit

    path = ROOT / "examples" / "fusion_block.fusion"
    code, out, _ = fusionc_render([str(path), "--diagram", "fusion_block_k2", "--plan", "--format", "dot"], capsys)
    assert code == 0
    unit = plan_unit(example(path, "fusion_block_k2"))
    assert len(unit.programs) == 3
    for k, program in enumerate(unit.programs):
        assert all(f'"c{k}/in:{io.var}"' in out for io in program.inputs)
    svg = tmp_path / "plan.svg"
    assert fusionc_render([str(path), "--diagram", "fusion_block_k2", "--plan", "-o", str(svg)], capsys)[0] == 0
    ET.fromstring(svg.read_text())
