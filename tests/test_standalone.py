"""Standalone modules (``fusionc compile --standalone``): files that need only torch.

Every example is written standalone and imported in a fresh Python in which fusionlang cannot be
imported; its modules, given the weights and inputs of the normal compiled modules, must build
bit-identical coupling tables and equal outputs (float64, 1e-12), also under TorchScript."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import testing
from fusionlang.cli import main
from fusionlang.codegen import class_name
from fusionlang.diagnostics import FusionError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(path.stem for path in (ROOT / "examples").glob("*.fusion"))
SCRIPTED = {"fc_tp", "mace_interaction", "spins"}  # plain O(3), a graph, SU(2) complex
COMPILED = {"fc_tp"}  # torch.compile(fullgraph=True): about 15 s

# Runs in the fresh Python: fusionlang refused at import, every case run, the results saved.
RUNNER = """
import importlib, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "fusionlang" or name.startswith("fusionlang."):
            raise ImportError("fusionlang is not available to a standalone module")
sys.meta_path.insert(0, Refuse())
folder = sys.argv[1]
sys.path.insert(0, folder)
import torch
module_of = lambda instance: sys.modules[type(instance).__module__]
cases = torch.load(folder + "/cases.pt", weights_only=True)
results = []
for case in cases:
    module = getattr(importlib.import_module(case["file"]), case["class"])(dtype=torch.float64)
    module.load_state_dict(case["state"])
    outputs = module(*case["args"])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    scripted, compiled = [], []
    if case["script"]:
        scripted = torch.jit.script(module)(*case["args"])
        scripted = list(scripted if isinstance(scripted, tuple) else (scripted,))
    if case["compile"]:
        with module_of(module).runtime.single_graph():
            compiled = [torch.compile(module, fullgraph=True)(*case["args"])]
    tables = {f"{name}.{key}": table for name, sub in module.named_modules()
              for key, table in getattr(sub, "_float64_tables", {}).items()}
    results.append({"outputs": list(outputs), "scripted": scripted, "compiled": compiled, "tables": tables})
assert not [name for name in sys.modules if name.split(".")[0] == "fusionlang"]
torch.save(results, folder + "/results.pt")
"""


def _tables(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": table for name, sub in module.named_modules()
            for key, table in getattr(sub, "_float64_tables", {}).items()}


def _case(file: str, result: Any, diagram: Any) -> dict[str, Any]:
    """One diagram: its normal module's weights, inputs, outputs and exact tables."""
    module = result.module_class(diagram.name)(dtype=torch.float64)
    arguments = testing.module_arguments(module, diagram, torch.Generator().manual_seed(0))
    outputs = module(*arguments)
    return {"file": file, "class": class_name(diagram.name), "state": module.state_dict(), "args": arguments,
            "expected": list(outputs if isinstance(outputs, tuple) else (outputs,)), "tables": _tables(module),
            "script": diagram.name in SCRIPTED, "compile": diagram.name in COMPILED}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every example's diagrams run standalone in a Python without fusionlang: (cases, results)."""
    folder = tmp_path_factory.mktemp("standalone")
    cases = []
    for example in EXAMPLES:
        result = fusionlang.compile(ROOT / "examples" / f"{example}.fusion")
        (folder / f"{example}_standalone.py").write_text(result.standalone_source(), encoding="utf-8")
        cases += [_case(f"{example}_standalone", result, diagram) for diagram in result.diagrams]
    torch.save([{k: v for k, v in c.items() if k not in ("expected", "tables")} for c in cases], folder / "cases.pt")
    done = subprocess.run([sys.executable, "-c", RUNNER, str(folder)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return cases, torch.load(folder / "results.pt", weights_only=True)


def test_the_examples_cover_the_kinds_asked_for() -> None:
    assert {"fc_tp", "mace", "spins", "product_basis", "cormorant", "fusion_block"} <= set(EXAMPLES)


def test_standalone_modules_run_without_fusionlang_and_equal_the_compiled_ones(ran: Any) -> None:
    cases, results = ran
    assert len(results) == len(cases) >= len(EXAMPLES)
    for case, result in zip(cases, results, strict=True):
        for expected, got in zip(case["expected"], result["outputs"], strict=True):
            assert got.dtype == expected.dtype and got.shape == expected.shape, case["class"]
            assert torch.allclose(got, expected, rtol=0, atol=1e-12), case["class"]


def test_standalone_tables_are_bit_identical(ran: Any) -> None:
    cases, results = ran
    for case, result in zip(cases, results, strict=True):
        assert result["tables"].keys() == case["tables"].keys(), case["class"]
        for name, table in case["tables"].items():
            assert torch.equal(result["tables"][name], table), f"{case['class']}.{name}"


def test_standalone_modules_script(ran: Any) -> None:
    cases, results = ran
    scripted = [(c, r) for c, r in zip(cases, results, strict=True) if c["script"]]
    assert {c["class"] for c, _ in scripted} == SCRIPTED
    for case, result in scripted:
        for expected, got in zip(case["expected"], result["scripted"], strict=True):
            assert torch.allclose(got, expected, rtol=0, atol=1e-12), case["class"]


def test_standalone_modules_compile_to_one_graph(ran: Any) -> None:
    cases, results = ran
    compiled = [(c, r) for c, r in zip(cases, results, strict=True) if c["compile"]]
    assert {c["class"] for c, _ in compiled} == COMPILED
    for case, result in compiled:
        (got,) = result["compiled"]
        assert torch.allclose(got, case["expected"][0], rtol=0, atol=1e-12), case["class"]


def test_standalone_source_is_deterministic_and_the_cli_writes_it(tmp_path: Path) -> None:
    path = ROOT / "examples" / "spins.fusion"
    text = fusionlang.compile(path).standalone_source()
    assert text == fusionlang.compile(path.read_text(encoding="utf-8"), name=str(path)).standalone_source()
    assert main(["compile", "--standalone", str(path), "-o", str(tmp_path / "spins.py")]) == 0
    assert (tmp_path / "spins.py").read_text(encoding="utf-8") == text
    fusionlang.compile_file(path, tmp_path / "api.py", standalone=True)
    assert (tmp_path / "api.py").read_text(encoding="utf-8") == text
    assert "fusionlang import" not in text and "import fusionlang" not in text


def test_standalone_classes_are_the_normal_classes() -> None:
    result = fusionlang.compile(ROOT / "examples" / "tree4.fusion")
    normal, standalone = result.source_code, result.standalone_source()
    body = normal[normal.index("__all__ = "):]
    assert standalone.endswith(body)


def test_a_class_that_would_shadow_the_inlined_runtime_is_refused() -> None:
    result = fusionlang.compile("diagram math { group O3\n input x : 1o\n output y : 1o\n x -> y }")
    with pytest.raises(FusionError) as failure:
        result.standalone_source()
    (diagnostic,) = failure.value.diagnostics
    assert diagnostic.code == "E602" and "`math`" in diagnostic.message and "rename" in diagnostic.hint


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor
def test_standalone_modules_chunk_large_batches_eagerly_and_under_torch_compile(tmp_path: Path) -> None:
    """The inlined runtime's chunked path (a batch above ``CHUNK``, eagerly and under
    ``torch.compile`` above ``traced_batch``) equals one pass."""
    import importlib.util
    path = tmp_path / "fc_tp_standalone.py"
    path.write_text(fusionlang.compile((ROOT / "examples" / "fc_tp.fusion").read_text(encoding="utf-8"),
                                       name="fc_tp.fusion").standalone_source(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("fc_tp_standalone", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    try:
        spec.loader.exec_module(loaded)
        cls = getattr(loaded, class_name("fc_tp"))
        module = type(cls.__name__, (cls,), {"CHUNK": 4})(dtype=torch.float64)
        module.traced_batch = module.traced_batch_with_grad = 4  # built: 1024 or more, and 10 would be traced
        x, y = torch.randn(10, 288, dtype=torch.float64), torch.randn(10, 9, dtype=torch.float64)
        whole = module.contract(x, y)
        assert torch.allclose(module(x, y), whole, rtol=1e-12, atol=1e-12)
        torch._dynamo.reset()
        assert torch.allclose(torch.compile(module)(x, y), whole, rtol=1e-12, atol=1e-12)
    finally:
        sys.modules.pop(spec.name, None)
        torch._dynamo.reset()
