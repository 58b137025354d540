"""Jupyter support (fusionlang.notebook): every rich display, with and without graphviz's `dot`,
the `%%fusion` cell magic in a real IPython shell, and examples/notebook.ipynb executed by nbclient
in a kernel that runs this interpreter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import pytest

import fusionlang
from fusionlang import notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz `dot` is not installed")
LAYER = """diagram layer {
    group O3
    input  x : 2x(0e + 1o)
    input  y : 1o
    output z : 2x(0e + 1o + 1e)
    x, y -> z  [channels = uvu, weights = path]
}
"""
BROKEN = "diagram bad { group O3\n input x : 1o\n output y : 1o\n x, x -> y }"


@pytest.fixture
def no_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH is an empty folder: `dot` is missing and drawing raises E902."""
    monkeypatch.setenv("PATH", str(tmp_path))


def pretty(value: object) -> str:
    """IPython's text form of a value (what a notebook shows without a richer one)."""
    from IPython.lib.pretty import pretty as ipython_pretty

    return ipython_pretty(value)


def layer() -> fusionlang.CompileResult:
    return fusionlang.compile(LAYER, name="layer.fusion")


# ---------------------------------------------------------------------------------------------
# Displays.


@needs_dot
def test_a_compile_result_of_one_diagram_is_one_drawing() -> None:
    result = layer()
    svg = result._repr_svg_()
    assert svg is not None and svg.count("<svg") == 1 and "layer" in svg
    assert result._repr_html_() is None           # Jupyter would prefer HTML over the SVG


@needs_dot
def test_a_compile_result_of_several_diagrams_shows_each_under_its_name() -> None:
    result = fusionlang.compile(ROOT / "examples" / "spins.fusion")
    html = result._repr_html_()
    assert html is not None and html.count("<figure>") == html.count("<svg") == len(result.diagrams) > 1
    assert "<?xml" not in html and "<!DOCTYPE" not in html   # inline SVG, no XML prologue inside HTML
    assert all(f"<code>{d.name}</code>" in html for d in result.diagrams)


def test_a_compile_result_falls_back_to_its_text_without_dot(no_dot: None) -> None:
    result = fusionlang.compile(ROOT / "examples" / "spins.fusion")
    assert result._repr_svg_() is None and result._repr_html_() is None
    assert pretty(result) == repr(result) == f"<CompileResult of {result.source.name}: diagrams spins, " \
        + ", ".join(d.name for d in result.diagrams[1:]) + ">"


@needs_dot
def test_a_diagram_draws_itself() -> None:
    diagram = layer().diagram()
    svg = diagram._repr_svg_()
    assert svg is not None and "<svg" in svg and svg == notebook.diagram_svg(diagram)


def test_a_diagram_without_dot_shows_its_legs_as_text(no_dot: None) -> None:
    diagram = layer().diagram()
    assert diagram._repr_svg_() is None
    text = pretty(diagram)
    assert text.splitlines()[0] == "diagram layer (group O3)"
    assert "2x(0e + 1o + 1e)" in text and "x, y -> z" in text and "declared" in text


def test_a_diagram_whose_irreps_were_not_inferred_still_shows_text() -> None:
    result = fusionlang.check("diagram d { group O3\n input x : 1o\n x -> y }")
    assert not result.ok
    for diagram in result.diagrams:
        assert pretty(diagram).startswith("diagram d (group O3)")


def test_a_check_result_with_errors_shows_its_diagnostics() -> None:
    result = fusionlang.check(BROKEN, name="bad.fusion")
    html = result._repr_html_()
    assert html.startswith("<pre>error[E202]") and html.endswith("1 error found</pre>")
    assert "--&gt; bad.fusion:4:2" in html and "x, x -&gt; y" in html   # escaped for HTML
    assert pretty(result) == result.render()


def test_a_check_result_without_errors_says_ok_with_the_inferred_irreps() -> None:
    result = fusionlang.check("diagram d { group SU2\n input a, b : 1/2\n output c : 0 + 1\n a, b -> c }")
    text = pretty(result)
    assert text.startswith("ok: 1 diagram\n\ndiagram d (group SU2)")
    assert "0 + 1" in text and "2 paths" in text
    assert result._repr_html_() == f"<pre>{escape(text)}</pre>"


def test_a_plan_report_shows_its_explain_text() -> None:
    report = layer().plan("layer")
    html = report._repr_html_()
    assert html.startswith("<pre>plan of layer: ") and html.endswith("</pre>")
    assert "x, y -&gt; z" in html
    assert pretty(report) == report.explain()


@needs_dot
def test_a_compiled_module_is_drawn_by_its_view() -> None:
    module = layer().module_class()()
    view = notebook.ModuleView(module)
    assert view._repr_svg_() == notebook.diagram_svg(layer().diagram())
    assert notebook.ModuleView(type(module))._repr_svg_() is not None     # the class too


def test_a_compiled_module_without_dot_shows_its_diagram_as_text(no_dot: None) -> None:
    module = layer().module_class()()
    view = notebook.ModuleView(module)
    assert view._repr_svg_() is None
    parameters = sum(p.numel() for p in module.parameters())
    assert repr(view).splitlines()[0] == f"layer: compiled from diagram layer, {parameters} parameters"
    assert repr(notebook.ModuleView(type(module))).splitlines()[0] == "layer: compiled from diagram layer"


def test_other_modules_have_no_drawing() -> None:
    import torch

    linear = torch.nn.Linear(2, 3)
    assert notebook.module_diagram(linear) is None and notebook.module_svg(linear) is None
    assert repr(notebook.ModuleView(linear)) == repr(linear)


def test_display_module_outside_a_kernel_prints_the_text(no_dot: None, capsys: pytest.CaptureFixture[str]) -> None:
    notebook.display_module(layer().module_class()())
    assert capsys.readouterr().out.startswith("layer: compiled from diagram layer, ")


def test_other_errors_than_a_missing_dot_propagate() -> None:
    def fails() -> str:
        raise fusionlang.FusionError([fusionlang.Diagnostic("E901", "cannot read")])

    with pytest.raises(fusionlang.FusionError):
        notebook.svg_or_none(fails)


# ---------------------------------------------------------------------------------------------
# The extension, in a real IPython shell.


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """An IPython shell with `%load_ext fusionlang` run, its profile in a temporary folder."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    ipython = InteractiveShell.instance()
    try:
        assert ipython.run_line_magic("load_ext", "fusionlang") is None
        yield ipython
    finally:
        InteractiveShell.clear_instance()


def test_the_magic_binds_each_class_and_the_result(shell: Any) -> None:
    import torch

    done = shell.run_cell("%%fusion\n" + LAYER + "\ndiagram lin { group O3\n input x : 2x1o\n output y : 1o\n x -> y }")
    assert done.success
    result = shell.user_ns["_fusion"]
    assert done.result is result and isinstance(result, fusionlang.CompileResult)
    assert shell.user_ns["layer"] is result.module_class("layer") and shell.user_ns["lin"] is result.module_class("lin")
    assert shell.user_ns["lin"]()(torch.randn(3, 6)).shape == (3, 3)


def test_the_magic_binds_the_result_under_the_name_given(shell: Any) -> None:
    assert shell.run_cell("%%fusion layers\n" + LAYER).success
    assert isinstance(shell.user_ns["layers"], fusionlang.CompileResult) and "_fusion" not in shell.user_ns


def test_a_broken_cell_prints_its_diagnostics_and_binds_nothing(shell: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    done = shell.run_cell("%%fusion\n" + BROKEN)
    assert done.success and done.result is None       # no traceback: the diagnostics are the answer
    captured = capsys.readouterr()
    assert "error[E202]" in captured.err and "--> <cell>:4:2" in captured.err and "Traceback" not in captured.err
    assert "bad" not in shell.user_ns and "_fusion" not in shell.user_ns


def test_the_magic_refuses_a_name_that_is_not_one(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError

    for line in ("%%fusion 2x", "%%fusion a b", "%%fusion class"):
        done = shell.run_cell(line + "\n" + LAYER)
        assert isinstance(done.error_in_exec, UsageError)
        assert "usage: %%fusion [NAME]" in capsys.readouterr().err
    assert "layer" not in shell.user_ns


def test_the_extension_draws_compiled_modules_only(shell: Any) -> None:
    import torch

    module = layer().module_class()()
    data, _ = shell.display_formatter.format(module)
    assert ("image/svg+xml" in data) == HAS_DOT and data["text/plain"] == repr(module)
    data, _ = shell.display_formatter.format(torch.nn.Linear(2, 3))
    assert "image/svg+xml" not in data


def test_importing_fusionlang_or_its_notebook_module_does_not_import_ipython() -> None:
    code = "import sys, fusionlang, fusionlang.notebook; assert 'IPython' not in sys.modules, 'IPython imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# ---------------------------------------------------------------------------------------------
# examples/notebook.ipynb, executed.


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The example notebook run top to bottom by nbclient, in a kernel on this interpreter
    (a kernel spec written to a temporary folder: nothing needs to be installed)."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(folder / "kernels" / "fusionlang-test")     # argv: sys.executable -m ipykernel_launcher
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(folder))            # where the kernel spec is found
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")           # no warning about jupyter_core's path migration
        patch.setenv("JUPYTER_RUNTIME_DIR", str(folder / "runtime"))
        patch.setenv("IPYTHONDIR", str(folder / "ipython"))
        client = NotebookClient(nb, kernel_name="fusionlang-test", timeout=120,
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()                                     # starts, and at the end shuts down, the kernel
    return nb


def outputs(nb: Any, cell_id: str) -> list[Any]:
    (cell,) = [c for c in nb.cells if c.get("id") == cell_id]
    return list(cell.outputs)


def mimetypes(nb: Any, cell_id: str) -> set[str]:
    return {kind for output in outputs(nb, cell_id) for kind in output.get("data", {})}


def stream(nb: Any, cell_id: str, name: str) -> str:
    return "".join(o.text for o in outputs(nb, cell_id) if o.output_type == "stream" and o.name == name)


def test_the_example_notebook_is_stored_without_outputs() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and NOTEBOOK.stat().st_size < 20_000
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_the_example_notebook_runs_without_errors(executed: Any) -> None:
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.slow
def test_the_example_notebook_shows_the_rich_forms(executed: Any) -> None:
    for drawn in ("compile", "magic", "module"):
        assert ("image/svg+xml" in mimetypes(executed, drawn)) == HAS_DOT, drawn
        assert "text/plain" in mimetypes(executed, drawn)
    for cell_id in ("check-error", "check-ok", "plan"):
        assert "text/html" in mimetypes(executed, cell_id), cell_id
    (html,) = [o.data["text/html"] for o in outputs(executed, "check-error") if "data" in o]
    assert html.startswith("<pre>error[E202]")
    (html,) = [o.data["text/html"] for o in outputs(executed, "plan") if "data" in o]
    assert html.startswith("<pre>plan of layer: ")


@pytest.mark.slow
def test_the_example_notebook_compiles_calls_and_checks_a_module(executed: Any) -> None:
    (shape,) = [o.data["text/plain"] for o in outputs(executed, "call") if "data" in o]
    assert shape == "torch.Size([5, 28])"
    assert "error[E202]" in stream(executed, "magic-error", "stderr")
    error = float(stream(executed, "equivariance", "stdout").split()[-1])
    assert error < 1e-10
