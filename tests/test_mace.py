"""MACE against mace-torch: the compiled product basis spans the functions of mace-torch's
``SymmetricContraction``, imported weights reproduce it, the compiled interaction equals the
interaction block's e3nn tensor product summed into the receivers, and the parameter counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusionlang import api, testing
from fusionlang.importers import (
    from_e3nn_tensor_product,
    from_mace_symmetric_contraction,
    kept_paths,
    load_mace_symmetric_contraction,
    per_class_parameter,
)

o3 = pytest.importorskip("e3nn.o3")
symmetric_contraction = pytest.importorskip("mace.modules.symmetric_contraction",
                                            reason="mace-torch (and its pandas/matplotlib imports) not installed")
irreps_tools = pytest.importorskip("mace.modules.irreps_tools")
scatter = pytest.importorskip("mace.tools.scatter")

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = 4
SPECIES = 3
NODES_PER_SPECIES = 40
IRREPS_IN = f"{CHANNELS}x0e + {CHANNELS}x1o + {CHANNELS}x2e + {CHANNELS}x3o"
IRREPS_OUT = f"{CHANNELS}x0e + {CHANNELS}x1o"


@pytest.fixture(scope="module")
def compiled() -> api.CompileResult:
    """examples/mace.fusion with 4 channels instead of 16 (same irreps, correlation 3, 3 species)."""
    text = (ROOT / "examples" / "mace.fusion").read_text(encoding="utf-8").replace("16x", f"{CHANNELS}x")
    return api.compile(text, name="mace.fusion")


@pytest.fixture(scope="module")
def product_basis(compiled: api.CompileResult) -> torch.nn.Module:
    return compiled.module_class("mace_product_basis")(dtype=torch.float64)


def mace_contraction(correlation: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """mace-torch's SymmetricContraction with standard-normal weights (its U tensors in ``dtype``)."""
    with testing.default_dtype(dtype):
        sc = symmetric_contraction.SymmetricContraction(o3.Irreps(IRREPS_IN), o3.Irreps(IRREPS_OUT),
                                                        correlation=correlation, num_elements=SPECIES)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in sc.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return sc


def run_mace(sc: torch.nn.Module, A: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
    """mace-torch's product basis on mul_ir features: reshape to [N, channels, 16] as MACE does."""
    x = irreps_tools.reshape_irreps(o3.Irreps(IRREPS_IN))(A)
    return sc(x, torch.nn.functional.one_hot(species, SPECIES).to(A.dtype))


def node_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    species = torch.arange(SPECIES).repeat_interleave(NODES_PER_SPECIES)
    A = torch.randn(len(species), o3.Irreps(IRREPS_IN).dim, generator=generator, dtype=torch.float64)
    return A, species


def tables(module: torch.nn.Module, diagram) -> dict[int, torch.Tensor]:  # type: ignore[no-untyped-def]
    return {s.index: per_class_parameter(module, diagram, s.index) for s in diagram.statements}


# -- 1. the same function space ------------------------------------------------------------------

def our_basis_outputs(module: torch.nn.Module, diagram, A, species):  # type: ignore[no-untyped-def]
    """[(output entry, [N, channels, dim])] of every kept path alone, weight 1 on every channel."""
    outputs = []
    weights = tables(module, diagram)
    irreps = diagram.irreps("B")
    for statement in diagram.statements:
        kept = kept_paths(module, statement.index) or tuple(range(len(statement.paths)))
        for block, position in enumerate(kept):
            with torch.no_grad():
                for table in weights.values():
                    table.zero_()
                weights[statement.index][:, block * CHANNELS:(block + 1) * CHANNELS] = 1.0
                out = module(A, species)
            slot = statement.paths[position].output
            outputs.append((slot, entry_view(out, irreps)[slot]))
    return outputs


def mace_basis_outputs(sc: torch.nn.Module, A, species, irreps):  # type: ignore[no-untyped-def]
    """[(output entry, [N, channels, dim])] of every column of mace's U, weight 1 on every channel."""
    contractions = list(sc.contractions)
    outputs = []
    parameters = [p for p in sc.parameters() if p.requires_grad]
    for nu in range(1, 4):
        live = [c for c in contractions if weights_of(c, nu).requires_grad]
        for column in range(max(weights_of(c, nu).shape[1] for c in live)):
            with torch.no_grad():
                for parameter in parameters:
                    parameter.zero_()
                for c in live:
                    if column < weights_of(c, nu).shape[1]:
                        weights_of(c, nu)[:, column, :] = 1.0
                views = entry_view(run_mace(sc, A, species), irreps)
            outputs += [(slot, views[slot]) for slot, c in enumerate(contractions)
                        if c in live and column < weights_of(c, nu).shape[1]]
    return outputs


def weights_of(contraction: torch.nn.Module, nu: int) -> torch.Tensor:
    correlation = contraction.correlation
    return contraction.weights_max if nu == correlation else contraction.weights[correlation - 1 - nu]


def entry_view(out: torch.Tensor, irreps) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    return [out[:, where].reshape(len(out), entry.mul, entry.irrep.dim)
            for entry, where in zip(irreps, irreps.slices(), strict=True)]


def assert_fits(target: list[torch.Tensor], basis: list[tuple[int, torch.Tensor]], species: torch.Tensor) -> None:
    """Each output entry, per species and channel, is a least-squares combination of the basis."""
    worst = 0.0
    for slot, values in enumerate(target):
        columns = [b for s, b in basis if s == slot]
        assert columns, f"no basis function reaches output entry {slot}"
        for kind in range(SPECIES):
            rows = species == kind
            for channel in range(CHANNELS):
                design = torch.stack([c[rows, channel].reshape(-1) for c in columns], -1)
                wanted = values[rows, channel].reshape(-1)
                assert design.shape[0] > torch.linalg.matrix_rank(design), "the fit must be overdetermined"
                fit = torch.linalg.lstsq(design, wanted.unsqueeze(-1), driver="gelsd").solution
                residual = float((design @ fit).squeeze(-1).sub(wanted).abs().max())
                worst = max(worst, residual / float(wanted.abs().max()))
    assert worst < 1e-8, worst


def test_mace_functions_are_in_our_span(compiled: api.CompileResult, product_basis: torch.nn.Module) -> None:
    diagram = compiled.diagram("mace_product_basis")
    A, species = node_inputs(1)
    theirs = run_mace(mace_contraction(seed=2), A, species).detach()
    assert_fits(entry_view(theirs, diagram.irreps("B")), our_basis_outputs(product_basis, diagram, A, species), species)


def test_our_functions_are_in_maces_span(compiled: api.CompileResult, product_basis: torch.nn.Module) -> None:
    diagram = compiled.diagram("mace_product_basis")
    A, species = node_inputs(3)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for table in tables(product_basis, diagram).values():
            table.copy_(torch.randn(table.shape, generator=generator, dtype=table.dtype))
        ours = product_basis(A, species)
    assert_fits(entry_view(ours, diagram.irreps("B")),
                mace_basis_outputs(mace_contraction(), A, species, diagram.irreps("B")), species)


# -- 2. the importer -------------------------------------------------------------------------------

@pytest.mark.parametrize("correlation", [3, 2])
def test_imported_weights_reproduce_mace(product_basis: torch.nn.Module, correlation: int) -> None:
    sc = mace_contraction(correlation, seed=5 + correlation)
    load_mace_symmetric_contraction(product_basis, sc)
    A, species = node_inputs(6)
    species = species[torch.randperm(len(species), generator=torch.Generator().manual_seed(7))]
    with torch.no_grad():
        expected = run_mace(sc, A, species)
        got = product_basis(A, species)
    assert expected.abs().max() > 1.0
    assert (got - expected).abs().max() < 1e-10 * float(expected.abs().max())


def test_imported_weights_from_float32_mace(product_basis: torch.nn.Module) -> None:
    """mace built in float32 (its default): the change of basis still holds to float32 round-off."""
    sc = mace_contraction(seed=8, dtype=torch.float32)
    load_mace_symmetric_contraction(product_basis, sc)
    A, species = node_inputs(9)
    with torch.no_grad():
        expected = run_mace(sc, A.float(), species).double()
        got = product_basis(A, species)
    assert (got - expected).abs().max() < 1e-5 * float(expected.abs().max())


def test_importer_refuses_a_different_function_space() -> None:
    """Odd-parity 2o/3e instead of 2e/3o: mace's irreps differ, the importer says so."""
    text = (f"diagram pb {{ group O3\n input A : {CHANNELS}x(0e + 1o + 2o + 3e) [on = nodes]\n index species : 3\n"
            f" output B : {IRREPS_OUT}\n A, A -> B [channels = uuu, weights = channel, per = species]\n}}")
    module = api.compile(text).module_class("pb")(dtype=torch.float64)
    with pytest.raises(ValueError, match="irreps_in"):
        from_mace_symmetric_contraction(mace_contraction(), module)


def test_change_of_basis_refuses_an_inexact_fit() -> None:
    """A path set that misses part of mace's basis is refused, not silently projected."""
    from fusionlang import importers

    sc = mace_contraction()
    diagram = api.compile((ROOT / "examples" / "mace.fusion").read_text(encoding="utf-8")
                          .replace("16x", f"{CHANNELS}x")).diagram("mace_product_basis")
    statement = diagram.statements[2]
    contraction = list(sc.contractions)[0]
    paths = [p for p in statement.paths if p.output == 0][:3]
    dense = torch.stack([importers._dense_path(diagram, statement, p) for p in paths], -1)
    with pytest.raises(ValueError, match="not in the span"):
        importers._change_of_basis(dense, importers._mace_u(contraction, 3), "test")


# -- 3. the interaction ----------------------------------------------------------------------------

INTERACTION_FILTERED = f"""
diagram mace_interaction_filtered {{
    group O3
    input  h : {CHANNELS}x(0e + 1o)  [on = nodes]
    input  Y : 0e + 1o + 2e + 3o  [on = edges]
    output A : {CHANNELS}x0e + {CHANNELS}x0e + {CHANNELS}x1o + {CHANNELS}x1o + {CHANNELS}x1o + {CHANNELS}x2e + \
{CHANNELS}x2e + {CHANNELS}x2e + {CHANNELS}x3o + {CHANNELS}x3o  [on = nodes]
    sender(h), Y -> A  [channels = uvu, weights = external, paths = split, aggregate = sum]
}}
"""


def interaction_cases(compiled: api.CompileResult) -> list[tuple[type, str]]:
    """The example (every irrep up to l = 3) and MACE's usual target 0e + 1o + 2e + 3o."""
    filtered = api.compile(INTERACTION_FILTERED).module_class("mace_interaction_filtered")
    return [(compiled.module_class("mace_interaction"), "0e + 1o + 1e + 2o + 2e + 3o + 3e"),
            (filtered, "0e + 1o + 2e + 3o")]


@pytest.mark.parametrize("case", [0, 1], ids=["example", "mace_target"])
def test_interaction_equals_mace_tensor_product(compiled: api.CompileResult, case: int) -> None:
    cls, target = interaction_cases(compiled)[case]
    diagram = cls.__fusion_diagram__
    h_irreps, sh_irreps = e3nn_irreps(diagram.irreps("h")), e3nn_irreps(diagram.irreps("Y"))
    target_irreps = o3.Irreps(" + ".join(f"{CHANNELS}x{ir}" for ir in target.split(" + ")))
    irreps_mid, instructions = irreps_tools.tp_out_irreps_with_instructions(h_irreps, sh_irreps, target_irreps)
    assert irreps_mid == e3nn_irreps(diagram.irreps("A"))
    with testing.default_dtype(torch.float64):  # e3nn's wigner_3j buffers are made in the default dtype
        tp = o3.TensorProduct(h_irreps, sh_irreps, irreps_mid, instructions=instructions,
                              shared_weights=False, internal_weights=False)
    generator = torch.Generator().manual_seed(10)
    nodes, edge_index = 7, random_edges(7, generator)
    h = torch.randn(nodes, h_irreps.dim, generator=generator, dtype=torch.float64)
    Y = torch.randn(edge_index.shape[1], sh_irreps.dim, generator=generator, dtype=torch.float64)
    radial = torch.randn(edge_index.shape[1], tp.weight_numel, generator=generator, dtype=torch.float64)
    message = tp(h[edge_index[0]], Y, radial)
    expected = scatter.scatter_sum(message, index=edge_index[1], dim=0, dim_size=nodes)
    ours = from_e3nn_tensor_product(tp, diagram, 0, weight=radial)
    got = cls(dtype=torch.float64)(h, Y, ours, edge_index)
    assert expected.abs().max() > 1.0
    assert (got - expected).abs().max() < 1e-10 * float(expected.abs().max())


def e3nn_irreps(irreps) -> o3.Irreps:  # type: ignore[no-untyped-def]
    return o3.Irreps([(entry.mul, str(entry.irrep)) for entry in irreps])


def random_edges(nodes: int, generator: torch.Generator) -> torch.Tensor:
    pairs = [(j, i) for i in range(nodes) for j in range(nodes)
             if i != j and float(torch.rand(1, generator=generator)) < 0.6]
    return torch.tensor(pairs, dtype=torch.long).T


# -- 4. parameter counts ---------------------------------------------------------------------------

def mace_basis_rank(sc: torch.nn.Module) -> int:
    """The dimension of the functions mace's U columns span (symmetrised over the repeated legs)."""
    from fusionlang.importers import _mace_u, _symmetrised

    rank = 0
    for contraction in sc.contractions:
        for nu in range(1, contraction.correlation + 1):
            u = _mace_u(contraction, nu)
            flat = _symmetrised(u.movedim(0, nu), nu).reshape(-1, u.shape[-1])
            rank += int(torch.linalg.matrix_rank(flat))
    return rank


def dead_kept_paths(module: torch.nn.Module, diagram) -> int:  # type: ignore[no-untyped-def]
    """Kept paths whose coupling, symmetrised over the repeated legs, is zero up to round-off."""
    from fusionlang.importers import _dense_path, _symmetrised

    dead = 0
    for statement in diagram.statements:
        for position in kept_paths(module, statement.index) or range(len(statement.paths)):
            dense = _dense_path(diagram, statement, statement.paths[position])
            dead += float(_symmetrised(dense, statement.arity).norm()) < 1e-12 * float(dense.norm())
    return dead


def test_parameter_counts(compiled: api.CompileResult, product_basis: torch.nn.Module) -> None:
    """Ours reduced < ours redundant (every path) == mace-torch's default count: its U has one
    column per coupling path, and as functions of one feature these columns are linearly
    dependent. Ours reduced is the dimension of the function space, rank(symmetrised U), with no
    kept path that vanishes when symmetrised (no redundant weight, docs/semantics.md)."""
    diagram = compiled.diagram("mace_product_basis")
    reduced = sum(t.numel() for t in tables(product_basis, diagram).values())
    redundant = SPECIES * CHANNELS * sum(len(s.paths) for s in diagram.statements)
    sc = mace_contraction()
    theirs = sum(p.numel() for p in sc.parameters() if p.requires_grad)
    assert reduced < redundant
    assert theirs == redundant
    assert dead_kept_paths(product_basis, diagram) == 0
    assert reduced == SPECIES * CHANNELS * mace_basis_rank(sc)


def test_parameter_counts_against_maces_reduced_basis(product_basis: torch.nn.Module, compiled) -> None:  # type: ignore[no-untyped-def]
    """mace-torch's `use_reduced_cg=True` (a reduced U from cuequivariance) has our reduced count."""
    from mace.tools import cg

    if not getattr(cg, "CUET_AVAILABLE", False):
        pytest.skip("cuequivariance is not installed: mace-torch's use_reduced_cg falls back to the full U")
    with testing.default_dtype(torch.float64):
        sc = symmetric_contraction.SymmetricContraction(o3.Irreps(IRREPS_IN), o3.Irreps(IRREPS_OUT), correlation=3,
                                                        num_elements=SPECIES, use_reduced_cg=True)
    theirs = sum(p.numel() for p in sc.parameters() if p.requires_grad)
    diagram = compiled.diagram("mace_product_basis")
    assert theirs == sum(t.numel() for t in tables(product_basis, diagram).values())
