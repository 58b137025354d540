"""Force training under ``torch.compile`` (PyTorch 2.13, CPU; docs/forces.md).

What works: forces by ``torch.func.grad`` inside the compiled function (``fusionlang.forces``), one
graph whose first-order backward gives the parameter gradients of the eager double backward
(float64, 1e-10), for fusionlang's MACE potential, a MACE interaction under Inductor, and e3nn.
What fails is asserted with PyTorch's own messages, so that these tests fail (and docs/forces.md
needs a new look) on the day PyTorch fixes them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest
import torch
from torch._dynamo.utils import counters

from fusionlang import api
from fusionlang.atoms import Batch, collate, fit_statistics
from fusionlang.forces import compile_in_one_graph, compiled_force_step, energy_and_forces_fn, force_loss
from fusionlang.models import MaceConfig, MacePotential, RadialBasis, RadialMLP, interaction_source
from fusionlang.spherical import SphericalHarmonics
from fusionlang.toydata import make_dataset

# Dynamo's weak-key caches of earlier compiled tests in this process may be collected while this
# module compiles; the KeyError that PyTorch 2.13 then prints from a weakref callback is its own.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# PyTorch's own warnings, not ours: Inductor imports torch.utils.mkldnn, which calls the deprecated
# torch.jit.script_method; Dynamo reads `.grad` of a non-leaf where it resumes after a graph break.
INDUCTOR_IMPORT = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
RESUME = "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"
DOUBLE_BACKWARD = "torch.compile with aot_autograd does not currently support double backward"
HIGHER_ORDER = "torch.compile does not currently support higher order gradients."


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Every test compiles from scratch and reads its own graph-break counters."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


# -- the models --------------------------------------------------------------------------------------

class InteractionEnergy(torch.nn.Module):
    """MACE's first interaction as an energy of the positions: species embedding ``2x0e``, edge
    harmonics up to l = 2, a radial MLP giving the per-edge ``uvu`` weights, the compiled
    ``mace_interaction`` summing messages into the nodes, an invariant quadratic readout."""

    def __init__(self, species: torch.Tensor, edge_index: torch.Tensor, interaction: torch.nn.Module | None = None,
                 harmonics: torch.nn.Module | None = None) -> None:
        super().__init__()
        dtype = torch.float64
        self.interaction = interaction or api.compile(interaction_source("2x0e", 2)).module_class(
            "mace_interaction")(dtype=dtype)
        generator = torch.Generator().manual_seed(0)
        self.embedding = torch.nn.Parameter(torch.randn(3, 2, generator=generator, dtype=dtype))
        self.harmonics, self.basis = harmonics or SphericalHarmonics(2), RadialBasis(5.0, 4, 5, dtype)
        torch.manual_seed(0)  # the radial MLP draws from the global generator: the same weights every time
        self.radial = RadialMLP([4, 8, 6], dtype)   # uvu weights: 2 channels x 3 paths (0e x 0e, 1o, 2e)
        self.readout = torch.nn.Parameter(torch.randn(18, generator=generator, dtype=dtype) / 10)
        self.species, self.edge_index = species, edge_index

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        vectors = positions[self.edge_index[0]] - positions[self.edge_index[1]]
        weights = self.radial(self.basis(vectors.norm(dim=-1)))
        A = self.interaction(self.embedding[self.species], self.harmonics(vectors), weights, self.edge_index)
        return (A * A * self.readout).sum(-1) + A[:, 0]   # [N]: 2x0e + 2x1o + 2x2e, every entry read


class E3nnInteraction(torch.nn.Module):
    """e3nn's ``uvu`` product (as MACE builds it) on the senders, summed into the receivers."""

    def __init__(self) -> None:
        super().__init__()
        from fusionlang.testing import default_dtype, e3nn_channelwise_product

        with default_dtype(torch.float64):
            self.tp = e3nn_channelwise_product("2x0e", "0e + 1o + 2e", shared_weights=False, internal_weights=False)

    def forward(self, h: torch.Tensor, Y: torch.Tensor, weights: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        messages = self.tp(h[edges[0]], Y, weights)
        return messages.new_zeros(len(h), messages.shape[1]).index_add(0, edges[1], messages)


@pytest.fixture(scope="module")
def data() -> Batch:
    return collate(make_dataset(3, seed=0))


def interaction_model(library: str, data: Batch) -> InteractionEnergy:
    """The interaction energy with fusionlang's modules, or e3nn's tensor product and harmonics."""
    if library == "fusionlang":
        return InteractionEnergy(data.species, data.edge_index)
    o3 = pytest.importorskip("e3nn.o3")
    from fusionlang.testing import default_dtype

    with default_dtype(torch.float64):
        harmonics = o3.SphericalHarmonics([0, 1, 2], normalize=True, normalization="component")
    return InteractionEnergy(data.species, data.edge_index, E3nnInteraction(), harmonics)


Energy = Callable[[torch.Tensor], torch.Tensor]


def interaction_loss(model: Energy, data: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
    """``loss(positions)`` from (energy, forces) by :func:`energy_and_forces_fn`: what gets compiled."""
    energy_and_forces = energy_and_forces_fn(model)

    def loss(positions: torch.Tensor) -> torch.Tensor:
        energy, forces = energy_and_forces(positions)
        return (forces - data.forces).pow(2).mean() + (energy.sum() - data.energy.sum()).pow(2)
    return loss


def autograd_loss(model: Energy, data: Batch, positions: torch.Tensor) -> torch.Tensor:
    """The same loss with forces by ``autograd.grad(create_graph=True)`` (``positions`` require grad)."""
    energy = model(positions)
    (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=True)
    return (-gradient - data.forces).pow(2).mean() + (energy.sum() - data.energy.sum()).pow(2)


def eager_interaction_loss(model: Energy, data: Batch) -> torch.Tensor:
    """The reference: the eager double backward's loss."""
    return autograd_loss(model, data, data.positions.detach().requires_grad_(True))


def gradients(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(the loss, every parameter's gradient) of one step from zero gradients."""
    model.zero_grad(set_to_none=True)
    value = loss()
    value.backward()
    return value.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def assert_same_step(ours: tuple[torch.Tensor, list[torch.Tensor]], reference: tuple[torch.Tensor, list[torch.Tensor]],
                     tolerance: float = 1e-10) -> None:
    assert torch.allclose(ours[0], reference[0], rtol=tolerance, atol=0)
    assert len(ours[1]) == len(reference[1]) > 0
    for a, b in zip(ours[1], reference[1], strict=True):
        assert torch.allclose(a, b, rtol=tolerance, atol=tolerance * float(b.abs().max()))


def assert_one_graph() -> None:
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1


# -- what works --------------------------------------------------------------------------------------

def test_compiled_force_step_equals_the_eager_double_backward_on_the_mace_potential() -> None:
    """fusionlang's MACE potential, three batches of other sizes (the second compiles with dynamic
    sizes, the third reuses that graph): loss and parameter gradients of ``compiled_force_step``
    equal ``energy_and_forces(create_graph=True)``'s."""
    structures = make_dataset(7, seed=1)
    config = MaceConfig(channels=2, lmax=1, hidden_lmax=1, interactions=1, radial_mlp=(4,), readout_hidden=2)
    model = MacePotential(config, fit_statistics(structures), dtype=torch.float64)
    step = compiled_force_step(model, backend="aot_eager")
    for batch in (collate(structures[:2]), collate(structures[2:5]), collate(structures[5:])):
        def eager(batch: Batch = batch) -> torch.Tensor:
            energy, forces = model.energy_and_forces(batch, create_graph=True)
            return force_loss(energy, forces, batch.energy, batch.forces, batch.num_atoms)
        reference = gradients(model, eager)
        model.zero_grad(set_to_none=True)
        loss = step(batch)
        assert_same_step((loss, [p.grad for p in model.parameters() if p.grad is not None]), reference)
    assert not counters["graph_break"] and counters["stats"]["unique_graphs"] == 2


@pytest.mark.filterwarnings(INDUCTOR_IMPORT)
def test_inductor_compiles_the_interaction_force_step_into_one_graph(data: Batch) -> None:
    model = InteractionEnergy(data.species, data.edge_index)
    reference = gradients(model, lambda: eager_interaction_loss(model, data))
    compiled = compile_in_one_graph(interaction_loss(model, data))   # Inductor, fullgraph=True
    assert_same_step(gradients(model, lambda: compiled(data.positions)), reference)
    assert_one_graph()


def test_the_same_step_compiles_for_e3nn(data: Batch) -> None:
    """e3nn's tensor product and harmonics in place of fusionlang's: the same energy, the same step."""
    model = interaction_model("e3nn", data)
    reference = gradients(model, lambda: eager_interaction_loss(model, data))
    ours = InteractionEnergy(data.species, data.edge_index)
    assert torch.allclose(reference[0], gradients(ours, lambda: eager_interaction_loss(ours, data))[0], rtol=1e-10)
    compiled = torch.compile(interaction_loss(model, data), backend="aot_eager", fullgraph=True)
    assert_same_step(gradients(model, lambda: compiled(data.positions)), reference)
    assert_one_graph()


def test_autograd_grad_traces_into_the_graph_with_trace_autograd_ops(data: Batch) -> None:
    """The experimental alternative: PyTorch 2.13 traces ``autograd.grad`` in the compiled region
    when ``torch._dynamo.config.trace_autograd_ops`` is on (off by default)."""
    model = InteractionEnergy(data.species, data.edge_index)
    reference = gradients(model, lambda: eager_interaction_loss(model, data))
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        compiled = compile_in_one_graph(functools.partial(autograd_loss, model, data), backend="aot_eager")
        assert_same_step(gradients(model, lambda: compiled(data.positions.detach().requires_grad_(True))), reference)
    assert_one_graph()


# -- what fails, with PyTorch's errors -----------------------------------------------------------------

@pytest.mark.filterwarnings(RESUME)
@pytest.mark.parametrize("library", ["fusionlang", "e3nn"])
def test_a_compiled_model_cannot_be_differentiated_twice(library: str, data: Batch) -> None:
    """(a) ``torch.compile(model)``, then eager ``autograd.grad(create_graph=True)`` and ``backward``:
    the forces come out, but their backward is the compiled graph's backward differentiated again."""
    model = interaction_model(library, data)
    compiled = torch.compile(model, backend="aot_eager")
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD):
        eager_interaction_loss(compiled, data).backward()


def test_autograd_grad_in_the_compiled_region_is_a_graph_break_by_default(data: Batch) -> None:
    """(b') ``autograd.grad`` itself inside the compiled function: Dynamo does not trace it."""
    model = InteractionEnergy(data.species, data.edge_index)
    compiled = compile_in_one_graph(functools.partial(autograd_loss, model, data), backend="aot_eager")
    with pytest.raises(torch._dynamo.exc.Unsupported, match="trace_autograd_ops=False"):
        compiled(data.positions.detach().requires_grad_(True))


@pytest.mark.filterwarnings(RESUME)
def test_compiled_autograd_refuses_create_graph(data: Batch) -> None:
    """(c) compiled autograd: it compiles the backward that ``autograd.grad(create_graph=True)`` runs
    inside a compiled step, and refuses a backward that is itself differentiable."""
    model = InteractionEnergy(data.species, data.edge_index)

    def step() -> torch.Tensor:
        loss = eager_interaction_loss(model, data)
        loss.backward()
        return loss.detach()

    with torch._dynamo.config.patch(compiled_autograd=True):
        compiled = torch.compile(step, backend="aot_eager")
        with pytest.raises(RuntimeError, match=HIGHER_ORDER):
            compiled()


@pytest.mark.filterwarnings(RESUME)
def test_compiled_autograd_leaves_an_eager_double_backward_to_aot_autograd(data: Batch) -> None:
    """(c) with the model compiled and the step eager, compiled autograd is not involved: (a)'s error."""
    model = InteractionEnergy(data.species, data.edge_index)
    with torch._dynamo.config.patch(compiled_autograd=True):
        compiled = torch.compile(model, backend="aot_eager")
        with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD):
            eager_interaction_loss(compiled, data).backward()


def test_a_symbolic_make_fx_graph_of_forces_does_not_compile() -> None:
    """(d) NequIP's route: ``make_fx(tracing_mode="symbolic")`` of energy -> forces (autograd.grad
    unrolled into the graph), then ``torch.compile`` of that graph. The unrolled backward of a
    ``sum`` over a view holds ``aten.sym_numel``, which Dynamo does not trace (a plain-torch case:
    fusionlang's and e3nn's graphs hit the same node)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def energy_and_forces(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        energy = (x.t() @ w).reshape(-1).pow(2).sum()
        (gradient,) = torch.autograd.grad(energy, x, create_graph=True)
        return energy, -gradient

    x, w = torch.randn(5, 3), torch.randn(5, 4, requires_grad=True)
    graph = make_fx(energy_and_forces, tracing_mode="symbolic")(x, w)
    assert torch.ops.aten.sym_numel.default in {node.target for node in graph.graph.nodes}
    with pytest.raises(torch._dynamo.exc.Unsupported, match="returned non-Tensor"):
        torch.compile(graph, backend="aot_eager", fullgraph=True)(x, w)
