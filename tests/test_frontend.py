"""Lowering, checks and inference on the examples: inferred irreps, path counts, graph view."""

from __future__ import annotations

import time
from pathlib import Path

import networkx as nx
import pytest

from fusionlang import FusionError, Irreps
from fusionlang.frontend import check_source
from fusionlang.graph import to_networkx
from fusionlang.report import ir_report

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def checked(name: str, diagram: str | None = None):  # type: ignore[no-untyped-def]
    result = check_source(EXAMPLES / f"{name}.fusion")
    assert result.ok, result.render()
    return result.diagram(diagram)


def paths_per_output(diagram, index: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return ir_report(diagram)["statements"][index]["paths_per_output"]


def test_every_example_checks() -> None:
    for path in sorted(EXAMPLES.glob("*.fusion")):
        result = check_source(path)
        assert result.ok, result.render()
        assert result.diagrams


def test_spins_paths_and_inferred_edge() -> None:
    spins = checked("spins", "spins")
    assert spins.irreps("s12") == Irreps("0 + 1", "SU2")
    assert not spins.leg("s12").declared
    assert paths_per_output(spins, 0) == {"0": 1, "1": 1}
    assert paths_per_output(spins, 1) == {"1/2": 2, "3/2": 1}


def test_fc_tp_paths_equal_e3nn_instructions() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    fc_tp = checked("fc_tp")
    statement = fc_tp.statements[0]
    e3nn_tp = o3.FullyConnectedTensorProduct("32x0e + 32x1o + 32x2e", "0e + 1o + 2e", "32x0e + 32x1o + 32x2e")
    ours = [(p.leaves[0], p.leaves[1], p.output) for p in statement.paths]
    theirs = [(i.i_in1, i.i_in2, i.i_out) for i in e3nn_tp.instructions]
    assert ours == theirs


@pytest.mark.parametrize("irreps_1,irreps_2,irreps_out", [
    ("8x0e + 8x1o + 4x2e + 2x3o", "0e + 1o + 2e + 3o", "4x0e + 4x1o + 4x1e + 2x2e + 2x3o"),
    ("2x1o + 3x2e", "1o + 1e", "0e + 0o + 1o + 2o + 3o + 3e"),
])
def test_coupling_paths_equal_e3nn_on_other_irreps(irreps_1: str, irreps_2: str, irreps_out: str) -> None:
    o3 = pytest.importorskip("e3nn.o3")
    source = (f"diagram d {{ group O3\n input x : {irreps_1}\n input y : {irreps_2}\n"
              f" output z : {irreps_out}\n x, y -> z [weights = path] }}")
    result = check_source(source)
    e3nn_tp = o3.FullyConnectedTensorProduct(irreps_1, irreps_2, irreps_out)
    if not e3nn_tp.instructions:
        assert not result.ok
        return
    assert result.ok or all(d.code == "E302" for d in result.diagnostics), result.render()
    if result.ok:
        ours = [(p.leaves[0], p.leaves[1], p.output) for p in result.diagram().statements[0].paths]
        assert ours == [(i.i_in1, i.i_in2, i.i_out) for i in e3nn_tp.instructions]


def test_tree4_shape_and_lmax() -> None:
    tree4 = checked("tree4")
    ab = tree4.irreps("ab")
    assert ab.lmax <= 2 and str(ab) == "8x0e + 8x1o + 8x1e + 8x2o + 8x2e"
    second = tree4.statements[1]
    assert second.arity == 3 and [r.leg for r in second.leaves] == ["ab", "c", "d"]
    # (ab, (c, d)): the root's right child is the (c, d) vertex
    assert [r.leg for r in second.tree.right.leaves] == ["c", "d"] if hasattr(second.tree.right, "leaves") else True


def test_product_basis_counts_per_correlation_order() -> None:
    basis = checked("product_basis")
    counts = [s.arity for s in basis.statements]
    assert counts == [1, 2, 3]
    linear, pairs, triples = (len(s.paths) for s in basis.statements)
    assert linear == 2  # 0e -> 0e and 1o -> 1o
    # A ⊗ A → 0e: l1 = l2 with equal parity (4 pairs); → 1o: pairs with |l1-l2| <= 1 <= l1+l2, odd parity
    assert paths_per_output(basis, 1) == {"0e": 4, "1o": 6}
    assert triples > pairs


def test_backward_pruning_removes_dead_irreps() -> None:
    source = """diagram d { group O3
        input a : 0e + 1o + 2e
        output y : 0e
        a, a -> h
        h, a -> y
    }"""
    diagram = check_source(source).raise_for_errors().diagram()
    # h = a ⊗ a could carry up to 4e, but only irreps that can meet a (l <= 2) to give 0e survive
    assert diagram.irreps("h").lmax == 2


def test_untyped_output_is_inferred() -> None:
    source = "diagram d { group SO3\n input x : 1\n output y\n x, x -> y\n}"
    diagram = check_source(source).raise_for_errors().diagram()
    assert diagram.irreps("y") == Irreps("0 + 1 + 2", "SO3")


def test_errors_are_data_and_raise() -> None:
    result = check_source("diagram d { group O3\n input x : 1o\n output y : 1o\n x, x -> y\n}", name="m.fusion")
    assert not result.ok
    (diagnostic,) = result.diagnostics
    assert (diagnostic.code, diagnostic.file, diagnostic.line, diagnostic.column) == ("E202", "m.fusion", 4, 2)
    assert "^" in diagnostic.render() and diagnostic.to_dict()["hint"]
    with pytest.raises(FusionError) as caught:
        result.raise_for_errors()
    assert caught.value.diagnostics == result.diagnostics


def test_select_unknown_diagram() -> None:
    result = check_source(EXAMPLES / "spins.fusion")
    with pytest.raises(FusionError, match="E113"):
        result.diagram("nope")


def test_graph_view() -> None:
    spins = checked("spins", "spins")
    graph = to_networkx(spins)
    assert isinstance(graph, nx.MultiDiGraph)
    kinds = sorted(kind for _, kind in graph.nodes(data="kind"))
    assert kinds == ["input"] * 3 + ["output", "vertex", "vertex"]
    assert nx.is_directed_acyclic_graph(graph)
    inner = [d for _, _, d in graph.edges(data=True) if d["leg"] == "s12"]
    assert len(inner) == 1 and inner[0]["irreps"] == "0 + 1" and inner[0]["declared"] is False
    into_total = [d for _, v, d in graph.edges(data=True) if v == "output:total"]
    assert len(into_total) == 1 and into_total[0]["declared"] is True
    for node, data in graph.nodes(data=True):
        assert data["line"] >= 1 and len(data["span"]) == 2, node


def test_graph_of_repeated_inputs_and_summed_outputs() -> None:
    graph = to_networkx(checked("product_basis"))
    from_a = [e for e in graph.out_edges("input:A")]
    assert len(from_a) == 1 + 2 + 3
    assert graph.in_degree("output:B") == 3


def test_large_generated_diagram_checks_quickly() -> None:
    """A 500-vertex chain (benchmarks/bench_check.py measures it; this only guards against blow-ups)."""
    lines = ["diagram big { group O3", " input x : 4x(0e + 1o + 2e)", " output y : 4x(0e + 1o)"]
    previous = "x"
    for k in range(499):
        lines.append(f" {previous}, x -> e{k} [channels = uuu, weights = path]")
        lines.append(f" edge e{k} : 4x(0e + 1o + 2e)")
        previous = f"e{k}"
    lines += [f" {previous}, x -> y [channels = uuu, weights = path]", "}"]
    start = time.perf_counter()
    result = check_source("\n".join(lines))
    elapsed = time.perf_counter() - start
    assert result.ok, result.render()
    assert len(result.diagram().statements) == 500
    assert elapsed < 10, elapsed


@pytest.mark.parametrize("irreps_1,irreps_2", [("2x0e + 2x1o", "0e + 1o"), ("3x1o + 2x2e", "1o + 2e + 3o")])
def test_split_paths_give_e3nn_full_tensor_product_layout(irreps_1: str, irreps_2: str) -> None:
    o3 = pytest.importorskip("e3nn.o3")
    source = (f"diagram d {{ group O3\n input x : {irreps_1}\n input y : {irreps_2}\n output z\n"
              " x, y -> z [paths = split]\n}")
    diagram = check_source(source).raise_for_errors().diagram()
    assert diagram.irreps("z").to_e3nn() == str(o3.FullTensorProduct(irreps_1, irreps_2).irreps_out)
    assert sorted(p.output for p in diagram.statements[0].paths) == list(range(len(diagram.irreps("z"))))


def test_split_paths_match_mace_irreps_mid() -> None:
    """MACE's interaction: uvu paths, each with its own entry, sorted (e3nn's irreps_mid)."""
    o3 = pytest.importorskip("e3nn.o3")
    node, edge = "8x0e + 8x1o + 8x2e", "0e + 1o + 2e + 3o"
    source = (f"diagram d {{ group O3\n input h : {node}\n input Y : {edge}\n output A\n"
              " h, Y -> A [channels = uvu, weights = external, paths = split]\n}")
    diagram = check_source(source).raise_for_errors().diagram()
    expected = []
    for mul, ir_in in o3.Irreps(node):
        for _, ir_edge in o3.Irreps(edge):
            expected += [(mul, ir_out) for ir_out in ir_in * ir_edge]
    assert diagram.irreps("A").to_e3nn() == str(o3.Irreps(expected).sort().irreps)


def test_split_paths_check_a_declared_target() -> None:
    source = "diagram d { group O3\n input x : 0e + 1o\n output z : 0e + 1o\n x, x -> z [paths = split]\n}"
    (diagnostic,) = check_source(source).diagnostics
    assert diagnostic.code == "E402" and "`z : 0e + 0e + 1o + 1o`" in diagnostic.hint


GRAPH = """diagram block {
    group O3
    input  h : 8x(0e + 1o)  [on = nodes]
    input  Y : 0e + 1o + 2e  [on = edges]
    index  species : 3
    output B : 8x(0e + 1o)
    sender(h), Y -> A                   [channels = uvu, weights = external, aggregate = sum]
    sender(h), Y -> m                   [channels = uvu, weights = external]
    A, A, A -> B                        [channels = uuu, weights = channel, per = species]
    h, neighbours(m), neighbours(m) -> B  [channels = uuu, weights = channel]
}
"""


def test_graph_domains_are_resolved() -> None:
    from fusionlang.domains import statement_domain
    from fusionlang.fmt import format_source

    diagram = check_source(GRAPH).raise_for_errors().diagram()
    domains = {leg.name: leg.domain for leg in diagram.legs}
    assert domains == {"h": "nodes", "Y": "edges", "species": "nodes", "B": "nodes", "A": "nodes", "m": "edges"}
    assert [statement_domain(diagram, s) for s in diagram.statements] == ["edges", "edges", "nodes", "nodes"]
    assert diagram.is_graph and diagram.statements[2].per == "species" and diagram.statements[0].aggregate
    assert [r.via for r in diagram.statements[3].leaves] == ["", "neighbours", "neighbours"]
    assert format_source(format_source(GRAPH)) == format_source(GRAPH)


def test_complex_basis() -> None:
    source = ("diagram c { group SO3\n basis complex\n input x : 2x(0 + 1)\n output y : 2x1\n"
              " x, x -> y [channels = uuu] }")
    assert check_source(source).raise_for_errors().diagram().basis == "complex"


def test_plain_diagrams_stay_batched() -> None:
    assert {leg.domain for leg in checked("fc_tp").legs} == {"batch"}
    assert not checked("fc_tp").is_graph


def test_the_statement_order_is_networkx_lexicographical_topological_sort() -> None:
    """`checks.topological_order` (no networkx import on the check path) gives the order networkx
    gave before (keyed on declaration order, with undeclared names last), on the examples and on
    random sources: every leg is declared, in node order."""
    from fusionlang.checks import _readers, dependency_graph, topological_order
    from fusionlang.fuzz_inputs import random_source
    from fusionlang.lower import lower_file
    from fusionlang.parse import parse

    texts = [p.read_text() for p in sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.fusion"))]
    texts += [random_source(f"order:{i}") for i in range(300)]
    # inferred edges ready together: the tie goes to the one written first (b), then to keys
    texts += ["diagram ties { group O3\n input x : 0e + 1o\n output z : 0e + 1o\n x, x -> b\n x -> a\n"
              " a, b -> z\n}\n", "diagram keys { group O3\n input y, x : 0e + 1o\n output z : 0e + 1o\n"
              " edge c : lmax 2\n x -> c\n y -> d\n c, d -> z\n}\n"]
    compared = 0
    for text in texts:
        try:
            diagrams, _ = lower_file(parse(text))
        except FusionError:
            continue
        for diagram in (d for d in diagrams if d is not None):
            graph = dependency_graph(diagram)
            declared = {leg.name: i for i, leg in enumerate(diagram.legs)}

            def key(name: str, declared: dict[str, int] = declared) -> int:
                return declared.get(name, len(declared))

            assert list(_readers(diagram)) == list(graph.nodes) == [leg.name for leg in diagram.legs]
            assert topological_order(diagram) == list(nx.lexicographical_topological_sort(graph, key=key))
            compared += 1
    assert compared > 200
