"""Compiled modules as drop-ins for e3nn's: the attributes NequIP- and MACE-style code reads
(``irreps_in1``, ``irreps_in2``, ``irreps_out``, ``weight_numel``, ``shared_weights``,
``internal_weights``, ``instructions``) have e3nn's values, a convolution written against an
e3nn tensor product runs unchanged with the compiled module swapped in, and the attributes
survive TorchScript."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import runtime

o3 = pytest.importorskip("e3nn.o3")

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-10


@pytest.fixture(autouse=True)
def _float64(float64_default: None) -> Iterator[None]:
    torch.manual_seed(0)
    yield


# -- a NequIP-style convolution, written against e3nn's interface --------------------------------------

class Convolution(torch.nn.Module):
    """Messages ``tp(x[sender], Y(r_ij), radial(|r_ij|))`` summed at the receiver: the radial MLP
    is sized from ``tp.weight_numel`` and the tensor product is only ever called, as NequIP and
    MACE do."""

    def __init__(self, tp: torch.nn.Module, lmax: int, basis: int = 8, hidden: int = 16) -> None:
        super().__init__()
        assert not tp.shared_weights and not tp.internal_weights and tp.weight_numel > 0
        self.tp = tp
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        assert tp.irreps_in2 == self.irreps_sh
        self.basis = basis
        self.radial = torch.nn.Sequential(torch.nn.Linear(basis, hidden), torch.nn.SiLU(),
                                          torch.nn.Linear(hidden, tp.weight_numel))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        sender, receiver = edge_index
        vectors = positions[receiver] - positions[sender]
        sh = o3.spherical_harmonics(self.irreps_sh, vectors, normalize=True, normalization="component")
        lengths = vectors.norm(dim=-1, keepdim=True)
        centres = torch.linspace(0.0, 3.0, self.basis, dtype=x.dtype)
        embedding = torch.exp(-((lengths - centres) ** 2) / 0.5)
        messages = self.tp(x[sender], sh, self.radial(embedding))
        out = x.new_zeros(x.shape[0], self.tp.irreps_out.dim)
        return out.index_add(0, receiver, messages) / math.sqrt(3.0)


def mace_interaction(irreps_node: str, lmax: int, target: str) -> Any:
    """MACE's ``conv_tp``: ``uvu`` with external weights into one entry per path (irreps_mid)."""
    node, sh, wanted = o3.Irreps(irreps_node), o3.Irreps.spherical_harmonics(lmax), o3.Irreps(target)
    mid, instructions = [], []
    for i, (mul, a) in enumerate(node):
        for j, (_, b) in enumerate(sh):
            for c in a * b:
                if c in wanted:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, c))
    irreps_mid, permutation, _ = o3.Irreps(mid).sort()
    instructions = [(i, j, permutation[k], m, w) for i, j, k, m, w in instructions]
    return o3.TensorProduct(node, sh, irreps_mid, instructions, shared_weights=False, internal_weights=False)


CONVOLUTIONS = {
    "mace_uvu": lambda: mace_interaction("8x0e + 8x1o + 4x2e", 2, "0e + 1o + 2e + 1e"),
    "tfn_fully_connected": lambda: o3.FullyConnectedTensorProduct("6x0e + 4x1o", "0e + 1o + 2e", "6x0e + 4x1o + 2x2e",
                                                                  shared_weights=False, internal_weights=False),
}


def random_graph(nodes: int = 12, edges: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.randn(nodes, 3) * 1.5
    sender, receiver = torch.randint(0, nodes, (2, edges))
    keep = sender != receiver
    return positions, torch.stack([sender[keep], receiver[keep]])


@pytest.mark.parametrize("kind", sorted(CONVOLUTIONS))
def test_a_convolution_runs_unchanged_with_the_compiled_module_swapped_in(kind: str) -> None:
    theirs = CONVOLUTIONS[kind]()
    convolution = Convolution(theirs, lmax=2)
    swapped = copy.deepcopy(convolution)
    swapped.tp = fusionlang.from_e3nn(theirs).module          # the radial MLP's weights carry over
    assert type(swapped.tp).__module__.startswith(runtime.PACKAGE)
    positions, edge_index = random_graph()
    x = theirs.irreps_in1.randn(positions.shape[0], -1)
    expected_positions = positions.clone().requires_grad_()
    ours_positions = positions.clone().requires_grad_()
    expected = convolution(x, expected_positions, edge_index)
    ours = swapped(x, ours_positions, edge_index)
    assert float((ours - expected).detach().abs().max()) < TOLERANCE
    (expected_force,) = torch.autograd.grad(expected.square().sum(), expected_positions)
    (ours_force,) = torch.autograd.grad(ours.square().sum(), ours_positions)
    assert float((ours_force - expected_force).abs().max()) < TOLERANCE   # forces too


# -- the attributes of modules written by hand -----------------------------------------------------

def compiled(text: str, name: str | None = None) -> Any:
    return fusionlang.compile(text).module_class(name)


MATCHING = {
    "fully_connected": (lambda: o3.FullyConnectedTensorProduct("32x0e + 32x1o + 32x2e", "0e + 1o + 2e",
                                                               "32x0e + 32x1o + 32x2e"),
                        (ROOT / "examples" / "fc_tp.fusion").read_text(encoding="utf-8")),
    "uvu_external_split": (lambda: mace_interaction("4x0e + 4x1o", 1, "0e + 1o + 1e"),
                           "diagram d { group O3\n input x : 4x0e + 4x1o\n input y : 0e + 1o\n"
                           " output z : 4x0e + 4x0e + 4x1o + 4x1o + 4x1e\n"
                           " x, y -> z [channels = uvu, weights = external, paths = split] }"),
    "full": (lambda: o3.FullTensorProduct("2x0e + 2x1o", "0e + 1o"),
             "diagram d { group O3\n input x : 2x0e + 2x1o\n input y : 0e + 1o\n output z\n"
             " x, y -> z [paths = split] }"),
    "elementwise": (lambda: o3.ElementwiseTensorProduct("4x1o", "4x1o"),
                    "diagram d { group O3\n input x, y : 4x1o\n output z : 4x0e + 4x1e + 4x2e\n"
                    " x, y -> z [channels = uuu] }"),
    "linear": (lambda: o3.Linear("4x0e + 2x1o", "3x0e + 1o"),
               "diagram d { group O3\n input x : 4x0e + 2x1o\n output y : 3x0e + 1o\n x -> y }"),
    "linear_external": (lambda: o3.Linear("4x0e + 2x1o", "3x0e + 1o", shared_weights=False, internal_weights=False),
                        "diagram d { group O3\n input x : 4x0e + 2x1o\n output y : 3x0e + 1o\n"
                        " x -> y [weights = external] }"),
}


@pytest.mark.parametrize("kind", sorted(MATCHING))
def test_attributes_equal_e3nns_for_the_same_product(kind: str) -> None:
    build, text = MATCHING[kind]
    theirs, ours = build(), compiled(text)
    irreps = ["irreps_in1", "irreps_in2"] if hasattr(theirs, "irreps_in1") else ["irreps_in"]
    for name in [*irreps, "irreps_out", "weight_numel", "shared_weights", "internal_weights"]:
        assert getattr(ours, name) == getattr(theirs, name), name
        assert getattr(theirs, name) == getattr(ours, name), name       # e3nn's side of the comparison too
    assert isinstance(ours.irreps_out, fusionlang.Irreps) and ours.irreps_out.dim == theirs.irreps_out.dim
    assert len(ours.instructions) == len(theirs.instructions)
    for mine, reference in zip(ours.instructions, theirs.instructions, strict=True):
        assert mine._fields == reference._fields
        assert math.isclose(mine.path_weight, reference.path_weight, rel_tol=1e-12)
        assert mine._replace(path_weight=0.0) == reference._replace(path_weight=0.0)
    assert ours().weight_numel == theirs.weight_numel                   # on instances as on the class


def test_several_statements_describe_the_module_s_legs() -> None:
    """A product basis (linear map, two- and three-leaf products into one output): one input is
    ``irreps_in``; instructions list the linear map's and the two-leaf product's paths (e3nn has
    no three-leaf instruction); paths that the symmetric reduction drops have no weight."""
    product = compiled((ROOT / "examples" / "product_basis.fusion").read_text(encoding="utf-8"))
    assert (product.irreps_in, product.irreps_out) == ("16x(0e + 1o + 2e + 3o)", "16x0e + 16x1o")
    assert not hasattr(product, "irreps_in1")
    parameters = sum(p.numel() for p in product().parameters())
    assert product.weight_numel == parameters and product.shared_weights and product.internal_weights
    kinds = [type(i).__name__ for i in product.instructions]
    assert kinds == ["LinearInstruction"] * 2 + ["Instruction"] * (len(kinds) - 2)
    listed = product().weight_B_0.numel() + product().weight_B_1.numel()   # the 1- and 2-leaf statements
    assert sum(math.prod(i.path_shape) for i in product.instructions if getattr(i, "has_weight", True)) == listed
    pairs = product.instructions[2:]                                    # A, A -> B: 10 paths, 7 kept
    assert [k for k, i in enumerate(pairs) if i.has_weight] == list(product.KEPT_PATHS[1]) and len(pairs) == 10


def test_external_weights_decide_the_weight_attributes() -> None:
    """With any external weights the caller must pass them: weight_numel counts them all (every
    statement's, in forward's order), shared_weights and internal_weights are False even when
    other statements keep weights inside; several outputs give a tuple of irreps."""
    mixed = compiled("diagram d { group O3\n input x : 2x0e + 2x1o\n input y : 0e + 1o\n"
                     " output a : 2x0e + 2x1o\n output b : 3x1o\n"
                     " x, y -> a [channels = uvu, weights = external]\n"
                     " x, y -> b [channels = uvw, weights = external]\n"
                     " x -> b }")
    assert mixed.irreps_in1 == "2x0e + 2x1o" and mixed.irreps_in2 == "0e + 1o"
    assert mixed.irreps_out == ("2x0e + 2x1o", "3x1o")
    module = mixed()
    assert list(mixed.WEIGHT_INPUTS) == [0, 1] and len(list(module.parameters())) == 1
    external = [i for i in mixed.instructions if isinstance(i, runtime.Instruction)]
    assert mixed.weight_numel == sum(math.prod(i.path_shape) for i in external)
    assert (mixed.shared_weights, mixed.internal_weights) == (False, False)
    weightless = compiled("diagram d { group SU2\n input s, t : 1/2\n output u : 0 + 1\n s, t -> u }")
    assert (weightless.weight_numel, weightless.shared_weights, weightless.internal_weights) == (0, True, False)
    assert weightless.irreps_out == fusionlang.Irreps("0 + 1", "SU2")


def test_attributes_survive_torchscript() -> None:
    """The class attributes are plain values: scripting a compiled module ignores them, and a
    scripted caller reads ``weight_numel``, ``shared_weights`` and ``internal_weights`` (constants)."""

    class Caller(torch.nn.Module):
        def __init__(self, tp: torch.nn.Module) -> None:
            super().__init__()
            self.tp = tp

        def forward(self, x: torch.Tensor, y: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
            weights = flat.view(-1, self.tp.weight_numel)
            if self.tp.shared_weights or self.tp.internal_weights:
                raise RuntimeError("expected external weights")
            return self.tp(x, y, weights)

    tp = fusionlang.from_e3nn(mace_interaction("4x0e + 4x1o", 1, "0e + 1o")).module
    caller = Caller(tp)
    x, y = torch.randn(5, 16), torch.randn(5, 4)
    flat = torch.randn(5 * tp.weight_numel)
    with warnings.catch_warnings():   # torch 2.13 deprecates TorchScript; it must still work
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(caller)
    assert torch.equal(scripted(x, y, flat), caller(x, y, flat))
    assert scripted.tp.weight_numel == tp.weight_numel
