"""fusionlang.mace.swap_blocks on a real mace-torch model: the same energies and forces before and
after the swap (float64, 1e-10), compiled modules in place of mace's blocks, fewer parameters with
the reduced basis, training through the new parameters, and refusals that replace nothing."""

from __future__ import annotations

import copy
import io
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from fusionlang import testing
from fusionlang.mace import SymmetricContractionAdapter, TensorProductAdapter, one_hot_index, swap_blocks
from fusionlang.runtime import CompiledModule

o3 = pytest.importorskip("e3nn.o3")
mace_modules = pytest.importorskip("mace.modules", reason="mace-torch (and its pandas/matplotlib imports) is missing")
mace_models = pytest.importorskip("mace.modules.models")

CHANNELS, ELEMENTS, R_MAX = 8, 3, 3.5
# Per element and channel at correlation 3, l <= 3: mace's paths and the reduced basis' weights.
PATHS_INTO = {"0e + 1o": 86, "0e": 28}
REDUCED_INTO = {"0e + 1o": 29, "0e": 13}


@pytest.fixture(scope="module")
def mace_model() -> Any:
    """ScaleShiftMACE in float64: 2 residual interactions, correlation 3, l <= 3, 3 elements."""
    with testing.default_dtype(torch.float64), torch.random.fork_rng():  # mace-torch: U in the default dtype
        torch.manual_seed(0)
        model = mace_models.ScaleShiftMACE(
            atomic_inter_scale=1.3, atomic_inter_shift=0.2, r_max=R_MAX, num_bessel=6, num_polynomial_cutoff=5,
            max_ell=3, interaction_cls=mace_modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=mace_modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=2, num_elements=ELEMENTS, hidden_irreps=o3.Irreps(f"{CHANNELS}x0e + {CHANNELS}x1o"),
            MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.array([-1.5, -3.0, -4.5]), avg_num_neighbors=4.0,
            atomic_numbers=[1, 6, 8], correlation=3, gate=torch.nn.functional.silu, radial_MLP=[16, 16])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # product-basis weights of order one, as after training (mace starts them at 1/params)
        for product in model.products:
            for parameter in product.symmetric_contractions.parameters():
                if parameter.requires_grad:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def molecules(seed: int, sizes: tuple[int, ...] = (4, 7, 5)) -> dict[str, torch.Tensor]:
    """A batch of random small molecules in mace-torch's input dictionary (no cell, no shifts)."""
    generator = torch.Generator().manual_seed(seed)
    positions, species, edges, start = [], [], [], 0
    for size in sizes:
        where = atoms(size, generator)
        distances = torch.cdist(where, where)
        sender, receiver = torch.nonzero((distances < R_MAX) & (distances > 0), as_tuple=True)
        positions.append(where)
        species.append(torch.randint(0, ELEMENTS, (size,), generator=generator))
        edges.append(torch.stack([sender, receiver]) + start)
        start += size
    counts = torch.tensor(sizes)
    edge_index = torch.cat(edges, dim=1)
    return {"positions": torch.cat(positions), "edge_index": edge_index,
            "node_attrs": torch.nn.functional.one_hot(torch.cat(species), ELEMENTS).to(torch.float64),
            "shifts": torch.zeros(edge_index.shape[1], 3, dtype=torch.float64),
            "unit_shifts": torch.zeros(edge_index.shape[1], 3, dtype=torch.float64),
            "cell": torch.zeros(3 * len(sizes), 3, dtype=torch.float64),
            "batch": torch.repeat_interleave(torch.arange(len(sizes)), counts),
            "ptr": torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])}


def atoms(count: int, generator: torch.Generator, closest: float = 0.9) -> torch.Tensor:
    """``count`` random positions ``[count, 3]`` (Å), no two closer than ``closest``."""
    found = torch.zeros(1, 3, dtype=torch.float64)
    while len(found) < count:
        candidate = torch.randn(1, 3, generator=generator, dtype=torch.float64) * 1.4
        if float(torch.cdist(candidate, found).min()) >= closest:
            found = torch.cat([found, candidate])
    return found


def evaluate(model: Any, data: dict[str, torch.Tensor], training: bool = False) -> dict[str, torch.Tensor]:
    """mace-torch's energies, forces (autograd wrt positions) and node features; detached unless
    ``training`` (then the forces keep their graph, for a loss on them)."""
    out = model({k: v.clone() for k, v in data.items()}, training=training, compute_force=True)
    found = {key: out[key] for key in ("energy", "forces", "node_feats")}
    return found if training else {key: value.detach() for key, value in found.items()}


def product_parameters(model: Any) -> list[int]:
    return [sum(p.numel() for p in product.symmetric_contractions.parameters() if p.requires_grad)
            for product in model.products]


def swapped(model: Any, **options: Any) -> Any:
    return swap_blocks(copy.deepcopy(model), **options)


@pytest.mark.parametrize("reduced", [False, True], ids=["per_path", "reduced"])
def test_swap_keeps_energies_and_forces(mace_model: Any, reduced: bool) -> None:
    ours = swapped(mace_model, reduced=reduced)
    worst = {"energy": 0.0, "forces": 0.0, "node_feats": 0.0}
    largest = dict.fromkeys(worst, 0.0)
    for seed in (1, 2, 3):
        data = molecules(seed)
        before, after = evaluate(mace_model, data), evaluate(ours, data)
        for key in worst:
            worst[key] = max(worst[key], float((after[key] - before[key]).abs().max()))
            largest[key] = max(largest[key], float(before[key].abs().max()))
    print(f"reduced={reduced}: max differences {worst}, largest values {largest}")
    assert largest["forces"] > 1e-2 and largest["node_feats"] > 0.5
    assert max(worst.values()) < 1e-10, worst


@pytest.mark.parametrize("reduced", [False, True], ids=["per_path", "reduced"])
def test_swapped_blocks_are_compiled_modules(mace_model: Any, reduced: bool) -> None:
    ours = swapped(mace_model, reduced=reduced)
    for theirs, block in zip(mace_model.interactions, ours.interactions, strict=True):
        assert isinstance(block.conv_tp, TensorProductAdapter)
        assert isinstance(block.conv_tp.compiled, CompiledModule)
        assert block.conv_tp.weight_numel == theirs.conv_tp.weight_numel == block.conv_tp_weights.hs[-1]
        assert len(block.conv_tp.weight_index) == theirs.conv_tp.weight_numel  # one radial output per weight
    for product in ours.products:
        assert isinstance(product.symmetric_contractions, SymmetricContractionAdapter)
        assert isinstance(product.symmetric_contractions.compiled, CompiledModule)
    per_element_channel = [PATHS_INTO, REDUCED_INTO][reduced]
    expected = [ELEMENTS * CHANNELS * per_element_channel[irreps] for irreps in ("0e + 1o", "0e")]
    print(f"reduced={reduced}: product-basis parameters {product_parameters(mace_model)} -> "
          f"{product_parameters(ours)}")
    assert product_parameters(mace_model) == [ELEMENTS * CHANNELS * PATHS_INTO[i] for i in ("0e + 1o", "0e")]
    assert product_parameters(ours) == expected


def test_training_reaches_the_compiled_parameters(mace_model: Any) -> None:
    """One optimizer step on energies and forces (double backward through the compiled blocks)."""
    ours = swapped(mace_model, reduced=True)
    data = molecules(4)
    compiled = [p for m in ours.modules() if isinstance(m, CompiledModule) for p in m.parameters()]
    radial = [p for block in ours.interactions for p in block.conv_tp_weights.parameters()]
    assert compiled and radial

    def loss() -> torch.Tensor:
        out = evaluate(ours, data, training=True)
        return (out["energy"] + 30.0).square().sum() + out["forces"].square().sum()

    optimizer = torch.optim.SGD(ours.parameters(), lr=1e-4)
    first = loss()
    first.backward()
    assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in compiled + radial)
    before = [p.detach().clone() for p in compiled]
    optimizer.step()
    assert all(not torch.equal(p, q) for p, q in zip(compiled, before, strict=True))
    assert float(loss().detach()) < float(first.detach())


@pytest.mark.parametrize("interaction,product_basis", [(True, False), (False, True)])
def test_only_the_requested_blocks_are_swapped(mace_model: Any, interaction: bool,
                                               product_basis: bool) -> None:
    ours = swapped(mace_model, interaction=interaction, product_basis=product_basis)
    assert all(isinstance(b.conv_tp, TensorProductAdapter) == interaction for b in ours.interactions)
    assert all(isinstance(p.symmetric_contractions, SymmetricContractionAdapter) == product_basis
               for p in ours.products)
    data = molecules(5)
    assert float((evaluate(ours, data)["forces"] - evaluate(mace_model, data)["forces"]).abs().max()) < 1e-10


def test_swapped_model_scripts_and_pickles(mace_model: Any) -> None:
    """As mace-torch deploys its models: TorchScript (e3nn's jit.compile) and torch.save/torch.load."""
    jit = pytest.importorskip("e3nn.util.jit")
    ours = swapped(mace_model, reduced=False)  # correlation 3 with three inputs: the widest adapter call
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    data = molecules(6)
    expected = evaluate(mace_model, data)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; mace-torch deploys with it
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = jit.compile(copy.deepcopy(ours))
    for model in (scripted, torch.load(buffer, weights_only=False)):
        got = evaluate(model, data)
        assert max(float((got[k] - expected[k]).abs().max()) for k in expected) < 1e-10


# -- refusals ----------------------------------------------------------------------------------------

def unknown_interaction(model: Any) -> None:
    model.interactions[1].__class__ = type("MyInteractionBlock", (type(model.interactions[1]),), {})


def fused_convolution(model: Any) -> None:
    model.interactions[1].conv_fusion = "atomic"


def cuequivariance(model: Any) -> None:
    model.interactions[0].cueq_config = types.SimpleNamespace(enabled=True, layout_str="ir_mul")


def other_contraction(model: Any) -> None:
    model.products[1].symmetric_contractions = torch.nn.Identity()


def other_contraction_layout(model: Any) -> None:
    del model.products[1].symmetric_contractions.contractions[0]._buffers["U_matrix_3"]


@pytest.mark.parametrize("change,message", [
    (unknown_interaction, r"interactions\[1\] is [\w.]*MyInteractionBlock, which it cannot swap"),
    (fused_convolution, r"interactions\[1\] is built for a fused convolution"),
    (cuequivariance, r"interactions\[0\] is built for cuequivariance"),
    (other_contraction, r"products\[1\].symmetric_contractions is torch.nn.modules.linear.Identity"),
    (other_contraction_layout, r"contractions\[0\] is mace.modules.symmetric_contraction.Contraction"),
], ids=["interaction", "conv_fusion", "cuequivariance", "contraction", "contraction_layout"])
def test_unsupported_blocks_are_refused_and_nothing_is_replaced(
        mace_model: Any, change: Callable[[Any], None], message: str) -> None:
    model = copy.deepcopy(mace_model)
    change(model)
    blocks = [(b, "conv_tp", b.conv_tp) for b in model.interactions]
    blocks += [(p, "symmetric_contractions", p.symmetric_contractions) for p in model.products]
    with pytest.raises(TypeError, match=message):
        swap_blocks(model)
    assert all(getattr(owner, name) is child for owner, name, child in blocks)


def test_unknown_models_and_second_swaps_are_refused(mace_model: Any) -> None:
    with pytest.raises(TypeError, match="the model is torch.nn.modules.container.Sequential"):
        swap_blocks(torch.nn.Sequential())
    ours = swapped(mace_model, interaction=False)
    with pytest.raises(TypeError, match=r"products\[0\].symmetric_contractions is fusionlang.mace."
                                        "SymmetricContractionAdapter"):
        swap_blocks(ours, interaction=False)


def test_species_must_be_one_hot() -> None:
    assert one_hot_index(torch.eye(3, dtype=torch.float64)[[2, 0, 1]]).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="one-hot"):
        one_hot_index(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
