"""Graph diagrams: equivariance, permutation invariance, Möbius sums over distinct neighbour
tuples against brute-force loops, per-species weights, the complex basis."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from fusionlang import api
from fusionlang.graphs import needs_orchestrator
from fusionlang.testing import default_tolerance, graph_arguments, graph_equivariance_error, random_graph

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = """
diagram pair {
    group O3
    input  h : 3x(0e + 1o)  [on = nodes]
    input  Y : 0e + 1o + 2e  [on = edges]
    edge   m : 3x(0e + 1o)  [on = edges]
    output B : 3x(0e + 1o)
    sender(h), Y -> m                     [channels = uvu, weights = external]
    h, neighbours(m), neighbours(m) -> B  [channels = uuu, weights = channel]
}
diagram triple {
    group O3
    input  h : 2x(0e + 1o)  [on = nodes]
    input  Y : 0e + 1o  [on = edges]
    edge   m : 2x(0e + 1o)  [on = edges]
    output B : 2x(0e + 1o)
    sender(h), Y -> m                                    [channels = uvu, weights = external]
    h, neighbours(m), neighbours(m), neighbours(m) -> B  [channels = uuu, weights = channel]
}
diagram species {
    group O3
    input  A : 2x(0e + 1o)  [on = nodes]
    index  z : 3
    output B : 2x(0e + 1o)
    A, A -> B  [channels = uuu, weights = channel, per = z]
}
"""


@pytest.fixture(scope="module")
def blocks() -> api.CompileResult:
    return api.compile(BLOCKS, name="blocks.fusion")


@pytest.mark.parametrize("name", ["pair", "triple", "species"])
def test_equivariant(blocks: api.CompileResult, name: str) -> None:
    cls, diagram = blocks.module_class(name), blocks.diagram(name)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    args = graph_arguments(cls, diagram, random_graph(5, generator), 5, generator)
    assert graph_equivariance_error(cls(dtype=torch.float64), diagram, args, trials=3, generator=generator) < 1e-10


@pytest.mark.parametrize("name", ["pair", "triple"])
def test_permutation_invariance(blocks: api.CompileResult, name: str) -> None:
    cls = blocks.module_class(name)
    module = cls(dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    edge_index = random_graph(5, generator)
    args = graph_arguments(cls, blocks.diagram(name), edge_index, 5, generator)
    out = module(*args)
    # relabel the nodes and shuffle the edges: node outputs follow the labels
    relabel = torch.randperm(5, generator=generator)
    shuffle = torch.randperm(edge_index.shape[1], generator=generator)
    h, Y, weights, _ = args
    new_h = torch.empty_like(h)
    new_h[relabel] = h
    moved = module(new_h, Y[shuffle], weights[shuffle], relabel[edge_index[:, shuffle]])
    assert (moved[relabel] - out).abs().max() < 1e-10


def plain_tuple_function(result: api.CompileResult, name: str, k: int):  # type: ignore[no-untyped-def]
    """The fused statement as a plain module with k separate neighbour legs (all paths), and the
    map from the graph module's weights (kept paths) to its weights."""
    diagram = result.diagram(name)
    h, m, b = diagram.irreps("h"), diagram.irreps("m"), diagram.irreps("B")
    xs = ", ".join(f"x{r}" for r in range(k))
    source = (f"diagram f {{ group O3\n input h : {h}\n input {xs} : {m}\n output B : {b}\n"
              f" h, {xs} -> B [channels = uuu, weights = channel]\n}}")
    plain = api.compile(source).module_class()(dtype=torch.float64)
    return plain


def test_distinct_pairs_equal_a_brute_force_loop(blocks: api.CompileResult) -> None:
    check_against_brute_force(blocks, "pair", 2)


def test_distinct_triples_equal_a_brute_force_loop(blocks: api.CompileResult) -> None:
    check_against_brute_force(blocks, "triple", 3)


def check_against_brute_force(blocks: api.CompileResult, name: str, k: int) -> None:
    cls = blocks.module_class(name)
    torch.manual_seed(3)
    module = cls(dtype=torch.float64)
    generator = torch.Generator().manual_seed(4)
    edge_index = random_graph(4, generator, density=0.9)
    h, Y, weights, _ = args = graph_arguments(cls, blocks.diagram(name), edge_index, 4, generator)
    with torch.no_grad():
        out = module(*args)
        messages = module.s0_0(h[edge_index[0]], Y, weights)
    plain = plain_tuple_function(blocks, name, k)
    load_tuple_weights(module, plain)
    expected = torch.zeros_like(out)
    with torch.no_grad():
        for node in range(4):
            incoming = (edge_index[1] == node).nonzero().flatten().tolist()
            for edges in itertools.permutations(incoming, k):
                expected[node] += plain(h[node:node + 1], *(messages[e:e + 1] for e in edges))[0]
    assert expected.abs().max() > 0.1
    assert (out - expected).abs().max() < 1e-10 * max(1.0, float(expected.abs().max()))


def load_tuple_weights(module: torch.nn.Module, plain: torch.nn.Module) -> None:
    """Kept-path weights of the graph module → the plain module's all-path layout (zeros elsewhere)."""
    kept_weights = module.s1_0.weight_out_0  # shared by every Möbius term of statement 1
    statement = type(module).__fusion_diagram__.statements[1]  # type: ignore[attr-defined]
    kept = type(module).KEPT_PATHS.get(1, range(len(statement.paths)))  # type: ignore[attr-defined]
    block = statement.paths  # every path of the original statement
    sizes = [_block_size(type(module).__fusion_diagram__, statement, p) for p in block]  # type: ignore[attr-defined]
    full = torch.zeros(sum(sizes), dtype=kept_weights.dtype)
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    start = 0
    for index in kept:
        full[offsets[index]:offsets[index] + sizes[index]] = kept_weights.detach()[start:start + sizes[index]]
        start += sizes[index]
    assert start == kept_weights.numel()
    with torch.no_grad():
        next(iter(plain.parameters())).copy_(full)


def _block_size(diagram, statement, path) -> int:  # type: ignore[no-untyped-def]
    return diagram.irreps(statement.leaves[0].leg)[path.leaves[0]].mul  # uuu, channel: (m,)


def test_per_species_weights_select_rows(blocks: api.CompileResult) -> None:
    cls = blocks.module_class("species")
    module = cls(dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    A = torch.randn(6, 8, generator=generator, dtype=torch.float64)
    z = torch.tensor([0, 1, 2, 0, 1, 2])
    out = module(A, z)
    table = next(p for n, p in module.named_parameters() if n.startswith("weights_"))
    for species in range(3):
        single = module(A, torch.full((6,), species))
        assert torch.equal(out[z == species], single[z == species])
    with torch.no_grad():
        table[1].zero_()
    assert module(A, z)[z == 1].abs().max() == 0


# -- every graph diagram of the examples -------------------------------------------------------------

EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))
GRAPH_EXAMPLES = [(path, name) for path in EXAMPLES for name, d in
                  ((d.name, d) for d in api.compile(path).diagrams) if needs_orchestrator(d)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("path,name", GRAPH_EXAMPLES, ids=[n for _, n in GRAPH_EXAMPLES])
def test_example_graph_diagram_is_equivariant(path: Path, name: str, dtype: torch.dtype) -> None:
    result = api.compile(path)
    cls, diagram = result.module_class(name), result.diagram(name)
    generator = torch.Generator().manual_seed(7)
    args = graph_arguments(cls, diagram, random_graph(5, generator), 5, generator, dtype=dtype)
    error = graph_equivariance_error(cls(dtype=dtype), diagram, args, generator=generator)
    assert error <= default_tolerance(dtype)


@pytest.mark.parametrize("path,name", GRAPH_EXAMPLES, ids=[n for _, n in GRAPH_EXAMPLES])
def test_example_graph_diagram_is_permutation_invariant(path: Path, name: str) -> None:
    """Relabelling nodes permutes node outputs; shuffling the edge list changes nothing."""
    result = api.compile(path)
    cls, diagram = result.module_class(name), result.diagram(name)
    module = cls(dtype=torch.float64)
    generator = torch.Generator().manual_seed(8)
    edge_index = random_graph(5, generator)
    args = graph_arguments(cls, diagram, edge_index, 5, generator)
    relabel = torch.randperm(5, generator=generator)
    shuffle = torch.randperm(edge_index.shape[1], generator=generator)
    moved = []
    for value, (_n, kind, _) in zip(args, cls.SIGNATURE, strict=True):
        if kind in ("nodes", "index"):
            new = torch.empty_like(value)
            new[relabel] = value
            moved.append(new)
        elif kind == "edges":
            moved.append(value[shuffle])
        elif kind == "graph":
            moved.append(relabel[edge_index[:, shuffle]])
        else:
            moved.append(value)
    with torch.no_grad():
        before, after = module(*args), module(*moved)
    before = before if isinstance(before, tuple) else (before,)
    after = after if isinstance(after, tuple) else (after,)
    for leg, b, a in zip(diagram.outputs, before, after, strict=True):
        assert leg.domain == "nodes"
        assert (a[relabel] - b).abs().max() < 1e-10 * max(1.0, float(b.abs().max()))
