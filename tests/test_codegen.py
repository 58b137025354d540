"""Generated code: golden files, numbers against independent references and e3nn, every way of
running a module (eager, torch.compile, TorchScript, torch.export), state and pickling, exact
float64 tables, and the compile API.

Regenerate the golden files with ``pytest tests/test_codegen.py --update-golden``.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import math
import os
import pickle
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from fusionlang import api, coupling, ir, runtime, runtime_batches, runtime_gathers, testing
from fusionlang import plan as P
from fusionlang._version import __version__
from fusionlang.diagnostics import FusionError
from fusionlang.source import Source
from fusionlang.testing import (
    path_weight_shape,
    random_diagram,
    random_features,
    reference_forward,
    torch_threads,
    weight_numel,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))
GOLDEN = Path(__file__).resolve().parent / "golden"


def compiled(source: str | Path, name: str | None = None) -> api.CompileResult:
    return api.compile(source, name=name)


def plain(result: api.CompileResult) -> list[ir.Diagram]:
    """The diagrams compiled as one planned class (not graph orchestrators)."""
    return [d for d in result.diagrams if result.unit(d.name).orchestrator is None]


# -- an independent reference: every path as one dense einsum ----------------------------------------

def dense_coupling(group: str, node: ir.Node, leaves: Sequence[str], inner: list[str]) -> tuple[torch.Tensor, str]:
    """(tensor with one axis per leaf of ``node`` and one for its irrep, that irrep)."""
    dtype = torch.complex128 if group == "SU2" else torch.float64
    if isinstance(node, ir.LeafRef):
        irrep = leaves[node.position]
        dim = int(coupling(group, irrep, "0e" if group == "O3" else "0", irrep).shape[0])
        return torch.eye(dim, dtype=dtype), irrep
    left, a = dense_coupling(group, node.left, leaves, inner)
    right, b = dense_coupling(group, node.right, leaves, inner)
    c = inner.pop(0)
    vertex = coupling(group, a, b, c, normalization="component").to(dtype)
    la, rb = "abcdefgh"[:left.dim() - 1], "ijklmnop"[:right.dim() - 1]
    return torch.einsum(f"{la}x,{rb}y,xyz->{la}{rb}z", left, right, vertex), c


def post_order_inner(statement: ir.Statement, path: ir.Path) -> list[str]:
    return [str(i) for i in path.inner]


def group_name(diagram: ir.Diagram) -> str:
    return "SU2" if diagram.group.is_complex or diagram.basis == "complex" else diagram.group.name


def path_term(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path, values: dict[str, torch.Tensor],
              weight: torch.Tensor | None) -> torch.Tensor:
    """One path's contribution ``[n, m_out, dim]`` (before 1/sqrt(fan_in))."""
    group = group_name(diagram)
    leaves = [str(diagram.irreps(r.leg)[e].irrep) for r, e in zip(statement.leaves, path.leaves, strict=False)]
    tensor, _ = dense_coupling(group, statement.tree, leaves, post_order_inner(statement, path))
    xs = []
    for ref, entry in zip(statement.leaves, path.leaves, strict=False):
        item, where = diagram.irreps(ref.leg)[entry], diagram.irreps(ref.leg).slices()[entry]
        xs.append(values[ref.leg][:, where].reshape(-1, item.mul, item.irrep.dim))
    k = len(xs)
    comps = "abcdefgh"[:k]
    chans = "u" * k if statement.channels == "uuu" else "uvxyrstg"[:k]
    spec = [f"n{c}{i}" for c, i in zip(chans, comps, strict=False)] + [comps + "z"]
    operands = xs + [tensor.to(xs[0].dtype)]
    if weight is not None:
        external = statement.weights == "external"
        letters = {"uvw": chans + "w", "uvu": chans if statement.weights != "path" else chans[1:],
                   "uuu": chans[0] if statement.weights != "path" else ""}[statement.channels]
        if statement.is_linear and statement.channels == "uvw":
            letters = "uw"
        spec.append(("n" if external else "") + letters)
        operands.append(weight.to(xs[0].dtype))
    out = ("w" if weight is not None else chans) if statement.channels == "uvw" else chans[0]
    term = torch.einsum(",".join(spec) + f"->n{out}z", *operands)
    return term.reshape(term.shape[0], -1, term.shape[-1])


def fan_in(diagram: ir.Diagram, statement: ir.Statement, path: ir.Path) -> int:
    muls = [diagram.irreps(r.leg)[e].mul for r, e in zip(statement.leaves, path.leaves, strict=False)]
    if statement.channels == "uuu" or (statement.channels == "uvw" and statement.weights == "none"):
        return 1
    return math.prod(muls[1:] if statement.channels == "uvu" else muls)


def dense_forward(diagram: ir.Diagram, inputs: Sequence[torch.Tensor],
                  weights: dict[int, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    values = {leg.name: x for leg, x in zip(diagram.inputs, inputs, strict=False)}
    pending = [leg.name for leg in diagram.legs if leg.role in ("output", "internal")]
    while pending:
        name = next(n for n in pending if all(r.leg in values for s in diagram.writers(n) for r in s.leaves))
        pending.remove(name)
        irreps = diagram.irreps(name)
        total: dict[int, int] = {}
        for s in diagram.writers(name):
            for p in s.paths:
                total[p.output] = total.get(p.output, 0) + fan_in(diagram, s, p)
        n = inputs[0].shape[0]
        entries = [torch.zeros(n, item.mul, item.irrep.dim, dtype=inputs[0].dtype) for item in irreps]
        for s in diagram.writers(name):
            blocks = split(diagram, s, weights.get(s.index))
            for p, block in zip(s.paths, blocks, strict=False):
                entries[p.output] = entries[p.output] + path_term(diagram, s, p, values, block) / math.sqrt(
                    total[p.output])
        values[name] = torch.cat([e.reshape(n, -1) for e in entries], -1)
    return tuple(values[leg.name] for leg in diagram.outputs)


def split(diagram: ir.Diagram, statement: ir.Statement, flat: torch.Tensor | None) -> list[torch.Tensor | None]:
    if flat is None:
        return [None] * len(statement.paths)
    shapes = [path_weight_shape(diagram, statement, p) or () for p in statement.paths]
    sizes = [math.prod(s) for s in shapes]
    pieces = torch.split(flat, sizes, dim=-1)
    return [piece.reshape(tuple(flat.shape[:-1]) + tuple(shape)) for piece, shape in zip(pieces, shapes, strict=False)]


def full_weights(diagram: ir.Diagram, module: torch.nn.Module, externals: dict[int, torch.Tensor],
                 kept: dict[int, tuple[int, ...]]) -> dict[int, torch.Tensor]:
    """The module's (reduced) weights spread over every path: zeros on the paths it drops."""
    found = {}
    for s in diagram.statements:
        if s.weights == "none":
            continue
        flat = externals[s.index] if s.weights == "external" else getattr(module, type(module).WEIGHTS[s.index])
        flat = flat.detach().to(torch.float64)
        sizes = [math.prod(path_weight_shape(diagram, s, p) or ()) for p in s.paths]
        starts = [sum(sizes[:k]) for k in range(len(sizes))]
        full = flat.new_zeros(*flat.shape[:-1], weight_numel(diagram, s))
        offset = 0
        for k in kept.get(s.index, range(len(s.paths))):
            full[..., starts[k]:starts[k] + sizes[k]] = flat[..., offset:offset + sizes[k]]
            offset += sizes[k]
        found[s.index] = full
    return found


def run_and_references(result: api.CompileResult, diagram: ir.Diagram, batch: int = 5,
                       seed: int = 0) -> tuple[tuple[torch.Tensor, ...], ...]:
    """(module outputs, dense per-path reference, fusionlang.testing reference), float64."""
    generator = torch.Generator().manual_seed(seed)
    module = result.module_class(diagram.name)(dtype=torch.float64)
    xs = [random_features(leg.irreps, (batch,), diagram.group if diagram.basis == "real" else "SU2",
                          generator=generator) for leg in diagram.inputs]
    program = result.program(diagram.name)
    externals = {w.statement: torch.randn(batch, w.numel, dtype=torch.float64, generator=generator)
                 for w in program.weight_inputs}
    out = module(*xs, *(externals[w.statement] for w in program.weight_inputs))
    weights = full_weights(diagram, module, externals, type(module).KEPT_PATHS)
    ours = out if isinstance(out, tuple) else (out,)
    ref = reference_forward(diagram, xs, weights)
    return ours, dense_forward(diagram, xs, weights), ref if isinstance(ref, tuple) else (ref,)


def assert_close(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], tolerance: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=False):
        x, y = x.detach(), y.detach()
        assert x.shape == y.shape
        assert float((x - y).abs().max()) <= tolerance * max(1.0, float(y.abs().max()))


# -- golden files and determinism ------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_compiles_to_its_golden_file(path: Path, update_golden: bool) -> None:
    code = compiled(path).source_code
    golden = GOLDEN / f"{path.stem}.py"
    if update_golden:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(code, encoding="utf-8", newline="\n")
    assert golden.exists(), f"missing {golden}: rerun with --update-golden"
    assert golden.read_text(encoding="utf-8") == code, f"{path.name} generated different code: --update-golden?"


def test_compiling_again_gives_identical_bytes_in_a_fresh_process() -> None:
    names = ["fc_tp", "product_basis", "tfn"]
    script = ("import sys, hashlib, pathlib\n"
              "from fusionlang.api import _compile\n"
              "from fusionlang.frontend import read_source\n"
              "for name in sys.argv[1:]:\n"
              "    code = _compile(read_source(pathlib.Path('examples') / (name + '.fusion'))).source_code\n"
              "    print(hashlib.sha256(code.encode()).hexdigest())\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script, *names], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    here = [hashlib.sha256(api._compile(api.read_source(ROOT / "examples" / f"{n}.fusion")).source_code.encode())
            .hexdigest() for n in names]
    assert out == here


def test_generated_code_is_readable_and_self_describing() -> None:
    path = ROOT / "examples" / "tree4.fusion"
    code = compiled(path).source_code
    text = path.read_text(encoding="utf-8")
    assert f"fusionlang {__version__}" in code.splitlines()[0]
    assert "tree4.fusion" in code.splitlines()[0]
    assert hashlib.sha256(text.encode()).hexdigest() in code.splitlines()[0]
    assert "Generated, do not edit" in code
    imports = [n for n in ast.walk(ast.parse(code)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert sorted((getattr(n, "module", None) or n.names[0].name, tuple(a.name for a in n.names))
                  for n in imports) == [("fusionlang", ("runtime",)), ("torch", ("torch",))]
    assert max(len(line) for line in code.splitlines()) < 240  # no single-line blobs
    # every step (the inputs' flattening in forward, the contraction) says where it comes from
    forward = code[code.index("def forward"):code.index("# a large batch on the CPU")]
    contract = code[code.index("def contract"):]
    contract = contract[contract.index('"""', contract.index('"""') + 3) + 3:]
    lines = [line.strip() for text in (forward, contract) for line in text.splitlines()[1:] if line.strip()]
    for before, line in zip(lines, lines[1:], strict=False):
        if not line.startswith(("#", "return", "batch =", "cdtype", "torch.cat", "],", ")")) and "=" in line \
                and not line.endswith(","):
            assert before.startswith("# tree4.fusion:"), line


def test_runtime_has_an_explicit_all() -> None:
    from fusionlang import runtime

    assert set(runtime.__all__) == {n for n in runtime.__all__ if hasattr(runtime, n)}
    assert "CompiledModule" in runtime.__all__ and "coupling_table" in runtime.__all__


def test_class_names_are_sanitised() -> None:
    from fusionlang.codegen import class_name

    assert class_name("fc_tp") == "fc_tp"
    assert class_name("2x") == "_2x" and class_name("for") == "for_" and class_name("a-b") == "a_b"


# -- numbers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_match_both_references(path: Path) -> None:
    result = compiled(path)
    for diagram in plain(result):
        ours, dense, shared = run_and_references(result, diagram)
        assert_close(ours, dense, 1e-10)
        assert_close(ours, shared, 1e-10)


@pytest.mark.parametrize("seed", range(40))
def test_random_diagrams_match_both_references(seed: int) -> None:
    result = compiled(random_diagram(seed), name=f"random{seed}.fusion")
    for diagram in plain(result):
        ours, dense, shared = run_and_references(result, diagram, seed=seed)
        assert_close(ours, dense, 1e-10)
        assert_close(ours, shared, 1e-10)


@pytest.mark.parametrize("label", ["full/U/joint", "full/chain/entry", "full/U/q", "blocks/U/joint",
                                   "blocks/chain/joint", "single/chain/entry", "single/U/entry", "full/sparse/q",
                                   "blocks/U/merged", "blocks/chain/merged"])
def test_every_strategy_computes_the_same(label: str) -> None:
    for number, text in enumerate([(ROOT / "examples" / "tree4.fusion").read_text(), random_diagram(3),
                                   random_diagram(11), random_diagram(16)]):
        result = api._compile(Source(text + f"# {label}\n", f"s{number}.fusion"), strategy=label)
        for diagram in plain(result):
            ours, dense, _ = run_and_references(result, diagram)
            assert_close(ours, dense, 1e-10)


def test_fc_tp_equals_e3nn_fully_connected_tensor_product() -> None:
    """(e3nn is built under float64: its own coupling buffers are float32 otherwise, and
    ``.double()`` would only cast them up.)"""
    o3 = pytest.importorskip("e3nn.o3")
    result = compiled(ROOT / "examples" / "fc_tp.fusion")
    module = result.module_class()(dtype=torch.float64)
    with testing.default_dtype(torch.float64):
        tp = o3.FullyConnectedTensorProduct("32x0e + 32x1o + 32x2e", "0e + 1o + 2e", "32x0e + 32x1o + 32x2e")
    with torch.no_grad():
        module.weight_z_0.copy_(tp.weight)
    x, y = torch.randn(10, 288, dtype=torch.float64), torch.randn(10, 9, dtype=torch.float64)
    with torch.no_grad():
        assert float((module(x, y) - tp(x, y)).abs().max()) < 1e-10


def test_weightless_coupling_equals_e3nn_full_tensor_product() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    with testing.default_dtype(torch.float64):
        full = o3.FullTensorProduct("2x1o", "1o + 2e")
    text = (f"diagram full {{ group O3\n input x : 2x1o\n input y : 1o + 2e\n output z : {full.irreps_out}\n"
            " x, y -> z }")
    module = compiled(text).module_class()(dtype=torch.float64)
    x, y = torch.randn(7, 6, dtype=torch.float64), torch.randn(7, 8, dtype=torch.float64)
    assert float((module(x, y) - full(x, y)).abs().max()) < 1e-12


def test_batch_dimensions_and_construction_options() -> None:
    result = compiled(ROOT / "examples" / "fc_tp.fusion")
    module = result.module_class()(dtype=torch.float64, device="cpu")
    assert module.weight_z_0.dtype == torch.float64
    x, y = torch.randn(2, 3, 288, dtype=torch.float64), torch.randn(2, 3, 9, dtype=torch.float64)
    out = module(x, y)
    assert out.shape == (2, 3, 288)
    assert torch.allclose(out.reshape(6, 288), module(x.reshape(6, 288), y.reshape(6, 9)))
    assert module(x[0, 0], y[0, 0]).shape == (288,)


# -- running and storing modules -----------------------------------------------------------------------

def assert_scripts_exports_and_compiles(module: torch.nn.Module, args: Sequence[torch.Tensor], atol: float) -> None:
    """``module`` gives its eager result under TorchScript, ``torch.compile(fullgraph=True)`` in one
    graph (``runtime.single_graph``) and ``torch.export``."""
    expected = module(*args)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript (and inductor calls it)
        warnings.simplefilter("ignore", DeprecationWarning)
        assert torch.allclose(torch.jit.script(module)(*args), expected, atol=atol)
        with runtime.single_graph():
            assert torch.allclose(torch.compile(module, fullgraph=True)(*args), expected, rtol=1e-5, atol=atol)
    exported = torch.export.export(module, tuple(args)).module()
    assert torch.allclose(exported(*args), expected, atol=atol)


def example_inputs(result: api.CompileResult, name: str | None = None, batch: int = 4) -> list[torch.Tensor]:
    diagram = result.diagram(name)
    group = diagram.group if diagram.basis == "real" else "SU2"
    xs = [random_features(leg.irreps, (batch,), group, dtype=torch.float32) for leg in diagram.inputs]
    return xs + [torch.randn(batch, w.numel) for w in result.program(name).weight_inputs]


@pytest.mark.parametrize("example", ["fc_tp", "product_basis", "spins", "tree4", "random11"])
def test_eager_script_and_export_agree(example: str) -> None:
    # random_diagram(11) slices a coupling buffer per run of output entries (`self.cg_….narrow`)
    source = random_diagram(11) if example == "random11" else ROOT / "examples" / f"{example}.fusion"
    result = compiled(source, name="random11.fusion" if example == "random11" else None)
    module = result.module_class(result.diagrams[0].name)()
    args = example_inputs(result, result.diagrams[0].name)
    expected = module(*args)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it must still work
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    exported = torch.export.export(module, tuple(args)).module()
    assert torch.equal(scripted(*args), expected)
    assert torch.allclose(exported(*args), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("text", "kind"), [
    ("diagram small { group O3\n input x : 4x(0e + 1o)\n input y : 0e + 1o\n output z : 4x(0e + 1o)\n"
     " x, y -> z [weights = path] }", "einsum"),
    ("diagram channelwise { group O3\n input x : 32x(0e + 1o + 2e)\n input y : 0e + 1o + 2e + 3o\n output z\n"
     " x, y -> z [channels = uvu, weights = external, paths = split] }", "reshape"),  # coupled in parts
])
def test_torch_compile_fullgraph_agrees(text: str, kind: str) -> None:
    result = compiled(text)
    assert kind in {s.kind for s in result.program().steps}
    module = result.module_class()()
    args = example_inputs(result, batch=6)
    fast = torch.compile(module, fullgraph=True)
    with warnings.catch_warnings(), runtime.single_graph():  # inductor calls torch.jit.script_method, deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        assert torch.allclose(fast(*args), module(*args), rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip() -> None:
    result = compiled(ROOT / "examples" / "product_basis.fusion")
    first, second = result.module_class()(), result.module_class()()
    assert not torch.equal(first.weight_B_2, second.weight_B_2)
    assert set(first.state_dict()) == {"weight_B_0", "weight_B_1", "weight_B_2"}  # tables are derived
    second.load_state_dict(first.state_dict())
    args = example_inputs(result)
    assert torch.equal(first(*args), second(*args))


def test_pickle_and_deepcopy_in_process() -> None:
    result = compiled(ROOT / "examples" / "tree4.fusion")
    module = result.module_class()()
    args = example_inputs(result)
    for copied in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert type(copied) is type(module)
        assert torch.equal(copied(*args), module(*args))


def test_pickle_loads_in_a_fresh_process(tmp_path: Path) -> None:
    result = compiled(ROOT / "examples" / "spins.fusion")
    module = result.module_class("chain4")()
    args = example_inputs(result, "chain4")
    torch.save({"module": module, "args": args, "out": module(*args)}, tmp_path / "m.pt")
    script = ("import torch, sys\n"
              "data = torch.load(sys.argv[1], weights_only=False)\n"
              "assert torch.equal(data['module'](*data['args']), data['out'])\n"
              "print(type(data['module']).__module__)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.pt")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == type(module).__module__


# -- exact float64 tables ------------------------------------------------------------------------------

EXACT = {"O3": ("diagram e { group O3\n input x, y : 1o\n output z : 2e\n x, y -> z }", ("1o", "1o", "2e")),
         "SU2": ("diagram e { group SU2\n input x : 1\n input y : 1/2\n output z : 3/2\n x, y -> z }",
                 ("1", "1/2", "3/2"))}


@pytest.mark.parametrize("group", sorted(EXACT))
def test_tables_are_exact_in_float64(group: str) -> None:
    text, irreps = EXACT[group]
    module_class = compiled(text).module_class()
    expected = coupling(group, *irreps, normalization="component")
    assert expected.dtype in (torch.float64, torch.complex128)

    def table(module: torch.nn.Module) -> torch.Tensor:
        (buffer,) = [b for name, b in module.named_buffers() if name.startswith("cg_")]
        return buffer

    single = module_class()
    assert table(single).dtype in (torch.float32, torch.complex64)
    assert torch.equal(table(single), expected.to(table(single).dtype))   # float64 rounded once
    assert torch.equal(table(single.double()), expected)                  # exact, not float32 upcast
    assert torch.equal(table(single.float().to(torch.float64)), expected)
    with testing.default_dtype(torch.float64):
        assert torch.equal(table(module_class()), expected)


# -- the API -----------------------------------------------------------------------------------------------

def test_compile_accepts_text_paths_and_sources() -> None:
    path = ROOT / "examples" / "fc_tp.fusion"
    by_text = compiled(path.read_text(), name="fc_tp.fusion")
    by_path = compiled(path)
    by_source = compiled(Source(path.read_text(), "fc_tp.fusion"))
    assert by_text.source_code == by_path.source_code == by_source.source_code
    assert by_path.module_class() is by_path.classes["fc_tp"]
    assert by_path.plan().diagram == "fc_tp" and by_path.graph().number_of_nodes() > 0
    assert [d.name for d in by_path.diagrams] == ["fc_tp"] and by_path.diagnostics == ()
    assert "plan of fc_tp" in api.explain(path)


def test_user_errors_raise_fusion_errors_and_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(FusionError):
        api.compile("diagram d { group O3\n input x : 1o\n output y : 0e\n x, q -> y }")
    bad, target = tmp_path / "bad.fusion", tmp_path / "out.py"
    bad.write_text("diagram d { group O3\n input x : 1o\n output y : 2o\n x -> y }")
    target.write_text("old")
    with pytest.raises(FusionError):
        api.compile_file(bad, target)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["bad.fusion", "out.py"]


def test_compile_file_writes_an_importable_module(tmp_path: Path) -> None:
    target = tmp_path / "tree4_module.py"
    result = api.compile_file(ROOT / "examples" / "tree4.fusion", target)
    assert target.read_text(encoding="utf-8") == result.source_code
    sys.path.insert(0, str(tmp_path))
    try:
        import tree4_module  # type: ignore[import-not-found]

        module = tree4_module.tree4()
        args = example_inputs(result)
        assert module(*args).shape == result.module_class()()(*args).shape
        assert pickle.loads(pickle.dumps(module))(*args).shape == module(*args).shape
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tree4_module", None)


def test_compiling_from_many_threads() -> None:
    sources = [random_diagram(s) for s in range(6)] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(lambda text: api._compile(Source(text, "t.fusion")).source_code, sources))
    assert codes[:6] == codes[6:]
    assert threading.active_count() >= 1


def test_slices_of_one_tensor_become_one_split() -> None:
    from fusionlang.codegen import split_slices

    def narrow(target: str, start: int, stop: int, axis: int = -1) -> dict[str, object]:
        return {"kind": "narrow", "target": target, "args": ["t"], "start": start, "stop": stop, "axis": axis,
                "shape": [], "where": "f:1"}

    steps = split_slices([narrow("a", 2, 5), narrow("b", 7, 9), narrow("c", 0, 1, axis=0)])
    assert [s["kind"] for s in steps] == ["split", "piece", "piece", "narrow"]
    assert steps[0]["sizes"] == "2, 3, 2, 2, t.shape[-1] - 9"  # gaps become unused pieces
    assert [s["index"] for s in steps[1:3]] == [1, 3]
    overlapping = split_slices([narrow("a", 0, 5), narrow("b", 3, 9)])
    assert [s["kind"] for s in overlapping] == ["narrow", "narrow"]
    buffer = [{**narrow("a", 0, 2), "args": ["self.cg"]}, {**narrow("b", 2, 4), "args": ["self.cg"]}]
    assert [s["kind"] for s in split_slices(buffer)] == ["narrow", "narrow"]  # no backward, no `self.cg_pieces`


@pytest.mark.parametrize(("example", "name"), [("fc_tp", "fc_tp"), ("product_basis", "product_basis"),
                                               ("spins", "tetrahedron")])
def test_large_batches_run_in_chunks_with_equal_values_and_gradients(example: str, name: str) -> None:
    """A batch larger than ``CHUNK`` runs chunk by chunk on the CPU; values and gradients equal
    one pass over the whole batch (``contract``), eagerly and under TorchScript (tetrahedron:
    complex SU(2) features, two outputs)."""
    result = compiled(ROOT / "examples" / f"{example}.fusion")
    cls = result.module_class(name)
    assert cls.CHUNK == result.program(name).chunk >= P.MIN_CHUNK
    small = type(cls.__name__, (cls,), {"CHUNK": 3})   # 10 samples: chunks of 3, 3, 3, 1
    torch.manual_seed(0)
    module = small(dtype=torch.float64)
    args = [(a.to(torch.complex128) if a.is_complex() else a.double()).requires_grad_()
            for a in example_inputs(result, name, batch=10)]
    chunked = module(*args)
    outputs = chunked if isinstance(chunked, tuple) else (chunked,)
    grads = torch.autograd.grad(sum(o.abs().square().sum() for o in outputs), args)
    whole = module.contract(*args)
    wholes = whole if isinstance(whole, tuple) else (whole,)
    expected = torch.autograd.grad(sum(o.abs().square().sum() for o in wholes), args)
    for a, b in zip(outputs, wholes, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # without gradients the chunks write into outputs allocated once
        # one after another, the same chunks as with gradients (side by side, runtime_batches, the
        # chunks are smaller and the last bits can differ: tests/test_chunks_side_by_side.py)
        runtime_batches.CHUNKS_IN_PARALLEL = False
        try:
            written = module(*args)
        finally:
            runtime_batches.CHUNKS_IN_PARALLEL = True
    for a, b in zip(written if isinstance(written, tuple) else (written,), outputs, strict=True):
        assert torch.equal(a, b) and not a.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    again = scripted(*args)
    for a, b in zip(again if isinstance(again, tuple) else (again,), outputs, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("example", "name"), [("product_basis", "product_basis"), ("spins", "tetrahedron")])
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_torch_compile_agrees_on_either_side_of_the_traced_batch(example: str, name: str, threads: int) -> None:
    """Under ``torch.compile`` a batch up to the module's ``traced_batch`` (with grad mode on:
    ``traced_batch_with_grad``) is traced and a larger one runs the forward eagerly
    (``runtime.eagerly``, chunked above ``CHUNK``); both give the eager values and gradients, with
    one thread and with two (tetrahedron: complex SU(2) features, two outputs)."""
    import torch._dynamo

    result = compiled(ROOT / "examples" / f"{example}.fusion")
    cls = result.module_class(name)
    small = type(cls.__name__, (cls,), {"CHUNK": 128})
    torch.manual_seed(0)
    with torch_threads(threads):
        module = small(dtype=torch.float64)
        module.traced_batch = 64  # built: 1024 or more; a smaller limit keeps the test quick
        module.traced_batch_with_grad = 2 * module.traced_batch  # built: 8 CHUNK; smaller keeps the test quick
        fast = torch.compile(module, backend="aot_eager")
        limits = (module.traced_batch, module.traced_batch_with_grad)
        for batch in (*limits, *(limit + 1 for limit in limits), 3 * module.CHUNK):
            args = [(a.to(torch.complex128) if a.is_complex() else a.double()).requires_grad_()
                    for a in example_inputs(result, name, batch=batch)]
            with torch.no_grad():
                for a, b in zip(*[o if isinstance(o, tuple) else (o,) for o in (fast(*args), module(*args))],
                                strict=True):
                    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), batch
            outputs = [fast(*args), module(*args)]
            pairs = [o if isinstance(o, tuple) else (o,) for o in outputs]
            grads = [torch.autograd.grad(sum(o.abs().square().sum() for o in p), args) for p in pairs]
            for a, b in [*zip(*pairs, strict=True), *zip(*grads, strict=True)]:
                assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), batch
    torch._dynamo.reset()


def test_export_with_a_dynamic_batch_runs_batches_larger_than_a_chunk() -> None:
    """Tracing contracts in one pass (no branch on the batch size in the graph), so an exported
    module keeps a dynamic batch dimension and agrees with the eager, chunked module."""
    result = compiled(ROOT / "examples" / "fc_tp.fusion")
    module = result.module_class()()
    batch = torch.export.Dim("batch")
    exported = torch.export.export(module, (torch.randn(8, 288), torch.randn(8, 9)),
                                   dynamic_shapes=({0: batch}, {0: batch})).module()
    large = (torch.randn(module.CHUNK + 5, 288), torch.randn(module.CHUNK + 5, 9))
    assert torch.allclose(exported(*large), module(*large), rtol=1e-5, atol=1e-5)


# dynamo itself reads `.grad` of the eager result when it resumes after the graph break (torch 2.13)
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_torch_compile_leaves_cpu_contractions_eager_unless_told_single_graph() -> None:
    """Under ``torch.compile`` a CPU batch above ``traced_batch`` (with grad mode on, above
    ``traced_batch_with_grad``) runs ``contract`` eagerly behind a graph break (chunk by chunk above
    ``CHUNK``; values and gradients equal one pass), a smaller one is traced; within
    ``runtime.single_graph()`` every batch is one graph."""
    result = compiled(ROOT / "examples" / "fc_tp.fusion")
    cls = result.module_class()
    small = type(cls.__name__, (cls,), {"CHUNK": 256})
    torch.manual_seed(0)
    with torch_threads(2):
        module = small(dtype=torch.float64)
    traced, with_grad = module.traced_batch, module.traced_batch_with_grad
    assert traced == runtime.TRACED_BATCH > module.CHUNK
    assert with_grad == 8 * module.CHUNK
    args = [a.double().requires_grad_() for a in example_inputs(result, None, batch=with_grad + 1)]
    for batch, grad, breaks in ((3 * traced, False, True), (traced + 1, False, True), (3, False, False),
                                (with_grad, True, False), (with_grad + 1, True, True)):
        torch._dynamo.reset()
        with torch.set_grad_enabled(grad):  # grad mode on: a backward comes, traced up to traced_batch_with_grad
            explained = torch._dynamo.explain(module)(*[a[:batch] for a in args])
        # a break at the top of forward: nothing before it is traced (dynamo counts no break then)
        assert bool(explained.break_reasons) == breaks, batch
        assert any("einsum" in str(op) for ops in explained.ops_per_graph for op in ops) != breaks, batch
    torch._dynamo.reset()
    out = torch.compile(module)(*args)
    whole = module.contract(*args)
    assert torch.allclose(out, whole, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(out.square().sum(), args)
    expected = torch.autograd.grad(whole.square().sum(), args)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(grads, expected, strict=True))
    with runtime.single_graph():
        torch._dynamo.reset()
        assert not torch._dynamo.explain(module)(*args).break_reasons
    assert runtime.EAGER_CONTRACTION_UNDER_COMPILE
    torch._dynamo.reset()


@pytest.mark.parametrize("example", ["fc_tp", "product_basis"])
def test_inference_traced_on_the_cpu_keeps_the_column_gather_apart(example: str) -> None:
    """Traced without gradients on the CPU, ``runtime.take_columns`` and ``runtime.index_select``
    are the operation ``fusionlang::index_select``, which inductor calls as it is instead of
    inlining a gather into the product that reads it; with gradients they stay gathers. Both give
    the eager values (float64, 1e-12), and the operation follows ``torch.vmap``."""
    import torch._dynamo

    result = compiled(ROOT / "examples" / f"{example}.fusion")
    module = result.module_class(result.diagrams[0].name)(dtype=torch.float64)
    args = [a.double() for a in example_inputs(result, result.diagrams[0].name, batch=5)]
    for grad, operation in ((False, True), (True, False)):
        graphs: list[torch.fx.GraphModule] = []

        def keep(graph: torch.fx.GraphModule, inputs: object, kept: list = graphs) -> object:
            kept.append(graph)
            return graph.forward

        torch._dynamo.reset()
        with torch.set_grad_enabled(grad):
            got, expected = torch.compile(module, backend=keep)(*args), module(*args)
        for a, b in zip(*[o if isinstance(o, tuple) else (o,) for o in (got, expected)], strict=True):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
        code = "".join(graph.code for graph in graphs)
        assert ("fusionlang.index_select" in code) == operation, grad
    torch._dynamo.reset()
    x, index = torch.randn(3, 4, 5, dtype=torch.float64), torch.tensor([4, 0, 2])
    for axis in (1, -1):
        mapped = torch.vmap(lambda t, a=axis: runtime_gathers._SELECTION(t, a, index), in_dims=1)(x)
        assert torch.equal(mapped, torch.vmap(lambda t, a=axis: torch.index_select(t, a, index), in_dims=1)(x))


@pytest.mark.parametrize("example", ["fc_tp", "tree4"])
def test_one_sample_is_traced_without_the_operation_and_adds_no_graph(example: str) -> None:
    """A batch of one sample traced for inference selects with ``index_select`` itself (the
    operation's Python dispatch would be a third of the call); batches of 5 and 9 then share one
    dynamic graph with the operation, so the test on the batch size guards nothing new."""
    result = compiled(ROOT / "examples" / f"{example}.fusion")
    module = result.module_class(result.diagrams[0].name)(dtype=torch.float64)
    graphs: list[torch.fx.GraphModule] = []

    def keep(graph: torch.fx.GraphModule, inputs: object) -> object:
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()
    traced = torch.compile(module, backend=keep)
    with torch.no_grad():
        for batch in (1, 5, 9):
            args = [a.double() for a in example_inputs(result, result.diagrams[0].name, batch=batch)]
            assert torch.allclose(traced(*args), module(*args), rtol=1e-12, atol=1e-12)
    torch._dynamo.reset()
    assert len(graphs) == 2, [graph.code for graph in graphs]
    one, many = (graph.code for graph in graphs)
    assert "index_select" in one and "fusionlang.index_select" not in one
    assert "fusionlang.index_select" in many


def test_the_runtime_does_not_import_the_compiler_stack() -> None:
    """``torch.compiler.disable`` imports ``torch._dynamo`` (1.5 s): the runtime makes
    ``eagerly``'s copy on first use, so compiling and running a module never pays for it."""
    code = ("import sys, torch, fusionlang.api as api\n"
            "r = api.compile('diagram d { group O3\\n input x, y : 1o\\n output z : 0e\\n x, y -> z }')\n"
            "r.module_class()()(torch.randn(3, 3), torch.randn(3, 3))\n"
            "assert 'torch._dynamo' not in sys.modules, 'dynamo imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_compile_traces_small_batches_and_breaks_for_large_ones(threads: int) -> None:
    """On the CPU a compiled module traces its contraction up to ``runtime.traced_batch(CHUNK)``
    samples (``TRACED_BATCH``; with one thread ``CHUNK`` where that is larger) and leaves it eager
    behind a break
    above. With grad mode on (a backward comes) it traces up to ``traced_batch_with_grad``:
    ``TRACED_BATCH_WITH_GRAD``, at most 8 ``CHUNK``."""
    import torch._dynamo

    result = compiled(ROOT / "examples" / "fc_tp.fusion")
    with torch_threads(threads):
        module = result.module_class()()
        largest, with_grad = module.traced_batch, module.traced_batch_with_grad
        assert largest == (max(module.CHUNK, runtime.TRACED_BATCH) if threads == 1 else runtime.TRACED_BATCH)
        assert with_grad == max(largest, min(runtime.TRACED_BATCH_WITH_GRAD, 8 * module.CHUNK)) > largest
        for batch, grad, breaks in ((1, False, False), (largest, False, False), (largest + 1, False, True),
                                    (largest + 1, True, False), (with_grad, True, False), (with_grad + 1, True, True)):
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            args = example_inputs(result, batch=batch)
            with warnings.catch_warnings(), torch.set_grad_enabled(grad):
                warnings.simplefilter("ignore", UserWarning)  # Dynamo reads `.grad` of a non-leaf where it resumes
                assert torch.allclose(torch.compile(module, backend="aot_eager")(*args), module(*args), atol=1e-5)
            assert bool(torch._dynamo.utils.counters["graph_break"]) == breaks, (batch, grad)
    torch._dynamo.reset()
