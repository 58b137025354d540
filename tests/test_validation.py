"""Generated ``forward``s check their inputs: the last dimension (and, on graphs, the rows), one
batch shape, the dtype, ``edge_index`` and index inputs; a wrong input raises a ``ValueError`` that
names it, what it should be and what it was, never a silent reshape. The checks hold eagerly,
under TorchScript, ``torch.compile(fullgraph=True)`` and ``torch.export`` with a dynamic batch."""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from fusionlang import api, runtime

ROOT = Path(__file__).resolve().parent.parent

PRODUCTS = """
diagram fc { group O3
 input x : 32x0e + 32x1o + 32x2e
 input y : 0e + 1o + 2e
 output z : 32x(0e + 1o + 2e)
 x, y -> z }
diagram ext { group O3
 input x : 4x(0e + 1o)
 input y : 0e + 1o
 output z : 4x(0e + 1o)
 x, y -> z [channels = uvu, weights = external] }
diagram spins { group SU2
 input a, b : 1/2
 output c : 0 + 1
 a, b -> c }
"""

GRAPH = """
diagram conv { group O3
 input h : 2x(0e + 1o) [on = nodes]
 input Y : 0e + 1o [on = edges]
 index z : 3
 output A : 2x(0e + 1o) [on = nodes]
 sender(h), Y -> A [channels = uvu, weights = external, aggregate = sum]
 h, h -> A [channels = uuu, weights = channel, per = z] }
"""


@pytest.fixture(scope="module")
def products() -> api.CompileResult:
    return api.compile(PRODUCTS, name="products.fusion")


@pytest.fixture(scope="module")
def graph() -> api.CompileResult:
    return api.compile(GRAPH, name="conv.fusion")


def graph_inputs(nodes: int = 5, edges: int = 7, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """h [N, 8], Y [E, 4], external weights [E, 8], edge_index [2, E], z [N] (the SIGNATURE of `conv`)."""
    generator = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, nodes, (2, edges), generator=generator)
    return [torch.randn(nodes, 8, dtype=dtype, generator=generator), torch.randn(edges, 4, dtype=dtype),
            torch.randn(edges, 8, dtype=dtype), edge_index, torch.randint(0, 3, (nodes,), generator=generator)]


def raises(call: Callable[[], Any], *fragments: str) -> str:
    """The message of the error ``call`` raises, which must contain every fragment (eagerly a
    ``ValueError``; TorchScript and torch.compile wrap it in their own errors, message included)."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type depends on the runner, the message not
        call()
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def scripted(module: torch.nn.Module) -> Any:
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it must still work
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def compiled_fullgraph(module: torch.nn.Module) -> Any:
    """One graph with a dynamic batch: on the CPU that needs ``runtime.single_graph`` (else the
    contraction stays eager behind a graph break)."""
    fast = torch.compile(module, fullgraph=True, dynamic=True)

    def call(*args: torch.Tensor) -> Any:
        with runtime.single_graph():
            return fast(*args)
    return call


def quietly(call: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():  # inductor calls torch.jit.script_method, deprecated in torch 2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        return call()


# -- plain diagrams: the messages ---------------------------------------------------------------------

def test_the_issue_example_is_refused_with_a_message_naming_the_input(products: api.CompileResult) -> None:
    module = products.module_class("fc")()
    # [5, 18] has as many numbers as [10, 9]: it used to be reshaped silently into wrong numbers
    with pytest.raises(ValueError, match=re.escape("fc: `y` (0e + 1o + 2e) must be a tensor [..., 9], "
                                                   "got shape [5, 18]")):
        module(torch.randn(10, 288), torch.randn(5, 18))
    with pytest.raises(ValueError, match=re.escape("`x` (32x0e + 32x1o + 32x2e) must be a tensor [..., 288], "
                                                   "got shape [10, 287]")):
        module(torch.randn(10, 287), torch.randn(10, 9))
    with pytest.raises(ValueError, match=re.escape("got shape []")):
        module(torch.tensor(1.0), torch.randn(9))


def test_inputs_share_one_batch_shape(products: api.CompileResult) -> None:
    module = products.module_class("fc")()
    with pytest.raises(ValueError, match=re.escape("`y` has batch shape [5] but `x` has [10]")):
        module(torch.randn(10, 288), torch.randn(5, 9))
    with pytest.raises(ValueError, match=re.escape("`y` has batch shape [3, 2] but `x` has [2, 3]")):
        module(torch.randn(2, 3, 288), torch.randn(3, 2, 9))
    with pytest.raises(ValueError, match="no broadcasting|share one batch shape"):
        module(torch.randn(10, 288), torch.randn(9))
    assert module(torch.randn(2, 3, 288), torch.randn(2, 3, 9)).shape == (2, 3, 288)
    assert module(torch.randn(288), torch.randn(9)).shape == (288,)
    assert module(torch.randn(0, 288), torch.randn(0, 9)).shape == (0, 288)


def test_external_weights_are_checked_like_features(products: api.CompileResult) -> None:
    module = products.module_class("ext")()
    numel = products.program("ext").weight_inputs[0].numel
    x, y = torch.randn(6, 16), torch.randn(6, 4)
    assert module(x, y, torch.randn(6, numel)).shape == (6, 16)
    raises(lambda: module(x, y, torch.randn(6, numel + 1)), "`weights_z_0`", "external weights of statement 0",
           f"[..., {numel}]", f"got shape [6, {numel + 1}]")
    raises(lambda: module(x, y, torch.randn(3, numel)), "`weights_z_0` has batch shape [3] but `x` has [6]")


def test_dtypes_follow_the_module(products: api.CompileResult) -> None:
    single, double = products.module_class("fc")(), products.module_class("fc")(dtype=torch.float64)
    x, y = torch.randn(4, 288), torch.randn(4, 9)
    with pytest.raises(ValueError, match=re.escape("`x` is torch.float64 but the module computes in torch.float32")):
        single(x.double(), y.double())
    with pytest.raises(ValueError, match=re.escape("`y` is torch.float32 but the module computes in torch.float64")):
        double(x.double(), y)
    with pytest.raises(ValueError, match="`x` must be real, got torch.complex64"):
        single(x.to(torch.complex64), y)
    assert double(x.double(), y.double()).dtype == torch.float64
    assert single.double()(x.double(), y.double()).dtype == torch.float64    # the check follows .to()
    with torch.autocast("cpu", dtype=torch.bfloat16):                        # autocast inputs pass
        assert single.float()(x.bfloat16(), y.bfloat16()).shape == (4, 288)


def test_su2_features_are_complex(products: api.CompileResult) -> None:
    module = products.module_class("spins")()
    a = torch.randn(3, 2, dtype=torch.complex64)
    assert module(a, a).dtype == torch.complex64
    with pytest.raises(ValueError, match=re.escape("`a` must be complex (SU(2) and `basis complex` features), "
                                                   "got torch.float32")):
        module(a.real, a.real)
    with pytest.raises(ValueError, match=re.escape("`b` is torch.complex128 but the module computes in "
                                                   "torch.complex64")):
        module(a, a.to(torch.complex128))


# -- plain diagrams: every way of running them -------------------------------------------------------

def test_checks_hold_under_torchscript(products: api.CompileResult) -> None:
    module = scripted(products.module_class("fc")())
    assert module(torch.randn(3, 288), torch.randn(3, 9)).shape == (3, 288)
    raises(lambda: module(torch.randn(10, 288), torch.randn(5, 18)), "ValueError",
           "fc: `y` (0e + 1o + 2e) must be a tensor [..., 9], got shape [5, 18]")
    raises(lambda: module(torch.randn(10, 288), torch.randn(5, 9)), "`y` has batch shape [5] but `x` has [10]")
    raises(lambda: module(torch.randn(3, 288).double(), torch.randn(3, 9).double()),
           "`x` is torch.float64 but the module computes in torch.float32")  # dtype names, not numbers
    spins = scripted(products.module_class("spins")())
    raises(lambda: spins(torch.randn(3, 2), torch.randn(3, 2)), "`a` must be complex")


def test_checks_hold_under_torch_compile_fullgraph(products: api.CompileResult) -> None:
    eager = products.module_class("fc")()
    fast = compiled_fullgraph(eager)
    for batch in (3, 8, 11):  # a dynamic batch: the checks do not specialise the graph on it
        x, y = torch.randn(batch, 288), torch.randn(batch, 9)
        assert torch.allclose(quietly(lambda x=x, y=y: fast(x, y)), eager(x, y), rtol=1e-5, atol=1e-5)
    # fullgraph: torch's error carries the ValueError (with symbolic sizes where the batch is dynamic)
    raises(lambda: quietly(lambda: fast(torch.randn(10, 288), torch.randn(5, 18))),
           "ValueError", "fc: `y` (0e + 1o + 2e) must be a tensor [..., 9], got shape [")
    raises(lambda: quietly(lambda: fast(torch.randn(10, 288), torch.randn(5, 9))), "`y` has batch shape [")
    # without fullgraph the frame falls back to eager: the ValueError itself
    lenient = torch.compile(eager)
    with pytest.raises(ValueError, match=re.escape("`y` (0e + 1o + 2e) must be a tensor [..., 9], got shape [5, 18]")):
        quietly(lambda: lenient(torch.randn(10, 288), torch.randn(5, 18)))


def test_checks_hold_under_torch_export_with_a_dynamic_batch(products: api.CompileResult) -> None:
    module = products.module_class("fc")()
    batch = torch.export.Dim("batch")
    exported = torch.export.export(module, (torch.randn(8, 288), torch.randn(8, 9)),
                                   dynamic_shapes=({0: batch}, {0: batch})).module()
    x, y = torch.randn(13, 288), torch.randn(13, 9)
    assert torch.allclose(exported(x, y), module(x, y), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the exported program's own guard on the shapes
        exported(torch.randn(10, 288), torch.randn(5, 18))
    with pytest.raises(ValueError, match=re.escape("`y` (0e + 1o + 2e) must be a tensor [..., 9]")):
        torch.export.export(module, (torch.randn(10, 288), torch.randn(5, 18)))


# -- graph diagrams -------------------------------------------------------------------------------------

def test_graph_inputs_are_checked(graph: api.CompileResult) -> None:
    module = graph.module_class()()
    assert [size for _, _, size in module.SIGNATURE] == [8, 4, 8, 2, 3]
    h, Y, w, edge_index, z = graph_inputs()
    assert module(h, Y, w, edge_index, z).shape == (5, 8)
    cases: Sequence[tuple[list[torch.Tensor], tuple[str, ...]]] = [
        ([h[:, :7], Y, w, edge_index, z], ("conv: `h` (2x(0e + 1o)) must be a tensor [N, 8], got shape [5, 7]",)),
        ([h[None], Y, w, edge_index, z], ("`h` (2x(0e + 1o)) must be a tensor [N, 8], got shape [1, 5, 8]",)),
        ([h, Y[:6], w, edge_index, z], ("`weights_A_0` has 7 edges but `Y` has 6",)),
        ([h, Y, w, edge_index.T.contiguous(), z], ("`edge_index` must be a tensor [2, E]", "got shape [7, 2]")),
        ([h, Y, w, edge_index.double(), z], ("`edge_index` must be torch.int64", "got torch.float64")),
        ([h, Y, w, edge_index[:, :6], z], ("`edge_index` has 6 edges but `Y` has 7",)),
        ([h, Y, w, edge_index + 1, z], ("`edge_index` holds node numbers 1 .. ", "but there are 5 nodes")),
        ([h, Y, w, edge_index - 1, z], ("`edge_index` holds node numbers -1 .. ",)),
        ([h, Y, w, edge_index, z + 1], ("`z` holds classes 1 .. 3, but it has 3 classes (0 .. 2)",)),
        ([h, Y, w, edge_index, z[:4]], ("`z` has 4 nodes but `h` has 5",)),
        ([h, Y, w, edge_index, z.float()], ("`z` must be torch.int64", "got torch.float32")),
        ([h, Y, w, edge_index, z[None]], ("`z` must be a tensor [N] of classes, got shape [1, 5]",)),
        ([h.double(), Y, w, edge_index, z], ("`h` is torch.float64 but the module computes in torch.float32",)),
    ]
    for args, fragments in cases:
        with pytest.raises(ValueError):
            module(*args)
        raises(lambda args=args: module(*args), *fragments)
    assert module(h, Y, w, edge_index.int(), z.int()).shape == (5, 8)  # int32 indices are fine


def test_graph_checks_hold_under_torchscript(graph: api.CompileResult) -> None:
    module = graph.module_class()()
    script = scripted(module)
    h, Y, w, edge_index, z = graph_inputs()
    assert torch.allclose(script(h, Y, w, edge_index, z), module(h, Y, w, edge_index, z))
    raises(lambda: script(h, Y, w, edge_index + 1, z), "`edge_index` holds node numbers 1 .. ")
    raises(lambda: script(h, Y, w, edge_index, z + 1), "`z` holds classes 1 .. 3")
    raises(lambda: script(h[:, :7], Y, w, edge_index, z), "`h` (2x(0e + 1o)) must be a tensor [N, 8]")


def test_graph_checks_hold_under_torch_compile_and_export(graph: api.CompileResult) -> None:
    """Index ranges are read only eagerly on the CPU: compiled and exported graphs stay free of
    data-dependent branches, with a dynamic number of nodes and edges."""
    module = graph.module_class()()
    fast = compiled_fullgraph(module)
    for nodes, edges in ((5, 7), (6, 11)):
        args = graph_inputs(nodes, edges)
        assert torch.allclose(quietly(lambda args=args: fast(*args)), module(*args), rtol=1e-5, atol=1e-5)
    h, Y, w, edge_index, z = graph_inputs()
    raises(lambda: quietly(lambda: fast(h[:, :7], Y, w, edge_index, z)), "`h` (2x(0e + 1o)) must be a tensor [N, 8]")
    nodes, edges = torch.export.Dim("nodes", min=2), torch.export.Dim("edges", min=2)
    exported = torch.export.export(module, tuple(graph_inputs()), dynamic_shapes=(
        {0: nodes}, {0: edges}, {0: edges}, {1: edges}, {0: nodes})).module()
    args = graph_inputs(6, 11)
    assert torch.allclose(exported(*args), module(*args), rtol=1e-5, atol=1e-5)


def test_index_ranges_are_not_read_while_tracing() -> None:
    index = torch.tensor([0, 5])
    runtime.check_index("g", "z", index, 6)
    with pytest.raises(ValueError, match="holds classes 0 .. 5"):
        runtime.check_index("g", "z", index, 5)
    assert runtime._readable(index)
    assert not runtime._readable(index.to("meta"))  # off the CPU it would wait for the device


@pytest.mark.parametrize("example", ["mace", "tfn", "cormorant", "fusion_block", "spins", "tree4", "product_basis"])
def test_every_example_checks_its_inputs(example: str) -> None:
    """Each class of each example refuses a first argument one number too wide, naming it."""
    result = api.compile(ROOT / "examples" / f"{example}.fusion")
    for diagram in result.diagrams:
        module = result.module_class(diagram.name)(dtype=torch.float64)
        names = list(inspect.signature(module.forward).parameters)
        dim = diagram.inputs[0].irreps.dim  # type: ignore[union-attr]
        args = [torch.zeros(3, dim + 1, dtype=torch.float64)] + [torch.zeros(3, 1)] * (len(names) - 1)
        with pytest.raises(ValueError, match=re.escape(f"{diagram.name}: `{names[0]}` (") + ".*"
                           + re.escape(f"must be a tensor [{'N' if hasattr(module, 'SIGNATURE') else '...'}, {dim}]")):
            module(*args)
