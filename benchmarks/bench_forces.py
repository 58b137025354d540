"""Force training's double backward: fusionlang against e3nn and mace-torch, eager and compiled, CPU.

    python benchmarks/bench_forces.py [--threads 1] [--nodes 250] [--neighbours 16] [--channels 32] [--repeat 5]
    python benchmarks/bench_forces.py --compile-peers   # also e3nn's and mace-torch's steps compiled
    python benchmarks/bench_forces.py --no-compile      # eager rows only
    python benchmarks/bench_forces.py --quick           # tiny sizes, one repeat, compiled by aot_eager: a smoke test

One training step on forces, float32, timed whole: the energy, the forces ``-∂E/∂x`` with
``create_graph``, a loss of the forces and the energy, and the parameter gradients (the double
backward). Two cases:

* ``interaction``: MACE's interaction. Node features ``C x (0e + 1o + 2e)`` on ``--nodes`` nodes,
  ``--neighbours`` random senders per node, the edge harmonics up to l = 3 and a radial MLP (8 Bessel
  functions, 64 hidden, SiLU) giving per-edge ``uvu`` weights, messages summed into the receivers;
  ``x`` are the positions. fusionlang compiles ``sender(h), Y -> A [uvu, weights = external, paths =
  split, aggregate = sum]``; e3nn runs its ``TensorProduct`` (the same instructions, as MACE builds
  it), its ``SphericalHarmonics`` and ``index_add``. The radial part is the same code for both.
* ``product``: MACE's product basis, ``C x (0e + 1o + 2e + 3o) -> C x (0e + 1o)``, correlation 3,
  3 species; ``x`` is the density ``A`` itself. fusionlang compiles ``mace_product_basis`` of
  examples/mace.fusion with mace-torch's weights imported; the e3nn-based peer is mace-torch's
  ``SymmetricContraction`` (the product basis MACE runs, built on e3nn).

The energy reads every output: ``E = Σ_n Σ_k w_k |out_{n,k}|² + v · out_{n,0e}`` (k over the
(entry, channel) pairs, so it is invariant), and the loss is ``mean((F - F_ref)²) + mean(E²)``.
``eager`` rows differentiate with ``torch.autograd.grad(create_graph=True)``; ``compiled`` rows
run :func:`fusionlang.forces.energy_and_forces_fn` and the loss as one ``torch.compile`` graph
(Inductor, :func:`fusionlang.forces.compile_in_one_graph`) and backward once: the way PyTorch 2.13
compiles it (docs/forces.md). ``compile`` is the first call's time (cold unless Inductor's cache
under /tmp already holds the graph). Runs alternate between the rows of a case and the median of
``--repeat`` is reported, with its spread ((max - min) / median: the noise on a shared machine);
the ratio is a row's time over fusionlang eager's (above 1: slower). ``max |Δloss|`` compares the
first loss of every row with fusionlang eager's (the implementations compute the same numbers), and
each compiled row's parameter gradients are compared with its eager row's (max |Δ| / max |grad|).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import fusionlang.api  # noqa: E402
from fusionlang.forces import compile_in_one_graph, energy_and_forces_fn  # noqa: E402
from fusionlang.models import RadialBasis, RadialMLP  # noqa: E402
from fusionlang.spherical import SphericalHarmonics  # noqa: E402

SH_LMAX = 3
SPECIES = 3
R_MAX = 8.0


# -- the energies ----------------------------------------------------------------------------------

def entry_index(entries: Sequence[tuple[int, int]]) -> torch.Tensor:
    """For each component of a mul_ir feature vector with ``entries`` (mul, dim), its (entry, channel) slot."""
    sizes = [dim for mul, dim in entries for _ in range(mul)]
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


class QuadraticReadout(torch.nn.Module):
    """``E_n = Σ_k w_k |out_{n,k}|² + v · out_{n,0e}``: invariant, and it reads every output."""

    slots: torch.Tensor

    def __init__(self, entries: Sequence[tuple[int, int]], scalars: int, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("slots", entry_index(entries), persistent=False)
        count = sum(mul for mul, _ in entries)
        self.w = torch.nn.Parameter(torch.randn(count, generator=generator) / count)
        self.v = torch.nn.Parameter(torch.randn(scalars, generator=generator) / math.sqrt(scalars))

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        return (out * out * self.w[self.slots]).sum(-1) + out[:, :self.v.numel()] @ self.v


@dataclass(frozen=True)
class Graph:
    """Random neighbour lists: ``positions [N, 3]``, ``edge_index [2, E]`` (row 0 sender), features ``h``."""

    positions: torch.Tensor
    edge_index: torch.Tensor
    h: torch.Tensor


def random_graph(nodes: int, neighbours: int, feature_dim: int, generator: torch.Generator) -> Graph:
    """Every node receives from ``neighbours`` random other nodes; positions in a 4 Å box (inside ``R_MAX``)."""
    receiver = torch.arange(nodes).repeat_interleave(neighbours)
    sender = (receiver + torch.randint(1, nodes, (len(receiver),), generator=generator)) % nodes
    positions = 4.0 * torch.rand(nodes, 3, generator=generator)
    return Graph(positions, torch.stack([sender, receiver]), torch.randn(nodes, feature_dim, generator=generator))


class InteractionEnergy(torch.nn.Module):
    """Positions -> edge harmonics and radial weights -> one library's ``uvu`` interaction -> energy."""

    edge_index: torch.Tensor
    h: torch.Tensor

    def __init__(self, interaction: Callable[..., torch.Tensor], harmonics: torch.nn.Module, weight_numel: int,
                 entries: Sequence[tuple[int, int]], graph: Graph, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.interaction, self.harmonics = interaction, harmonics
        self.basis = RadialBasis(R_MAX, 8, 5)
        torch.manual_seed(seed)  # RadialMLP draws from the global generator: the same weights for every library
        self.radial = RadialMLP([8, 64, weight_numel])
        self.readout = QuadraticReadout(entries, entries[0][0], generator)
        self.register_buffer("edge_index", graph.edge_index, persistent=False)
        self.register_buffer("h", graph.h, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        vectors = positions[self.edge_index[0]] - positions[self.edge_index[1]]
        weights = self.radial(self.basis(vectors.norm(dim=-1)))
        return self.readout(self.interaction(self.h, self.harmonics(vectors), weights, self.edge_index))


def hidden_irreps(channels: int) -> tuple[str, str]:
    """(fusionlang's, e3nn's) spelling of ``C x (0e + 1o + 2e)``."""
    return f"{channels}x(0e + 1o + 2e)", f"{channels}x0e + {channels}x1o + {channels}x2e"


def fusion_interaction(channels: int, graph: Graph, seed: int) -> InteractionEnergy:
    harmonics = " + ".join(f"{l}{'eo'[l % 2]}" for l in range(SH_LMAX + 1))  # noqa: E741
    text = (f"diagram interaction {{ group O3\n input h : {hidden_irreps(channels)[0]} [on = nodes]\n"
            f" input Y : {harmonics} [on = edges]\n output A [on = nodes]\n"
            f" sender(h), Y -> A [channels = uvu, weights = external, paths = split, aggregate = sum] }}")
    result = fusionlang.api.compile(text, name="interaction.fusion")
    module = result.module_class("interaction")()
    entries = [(item.mul, item.irrep.dim) for item in result.diagram("interaction").irreps("A")]
    weight_numel = dict((name, size) for name, _, size in module.SIGNATURE)["weights_A_0"]
    return InteractionEnergy(module, SphericalHarmonics(SH_LMAX), weight_numel, entries, graph, seed)


class E3nnInteraction(torch.nn.Module):
    """e3nn's ``uvu`` product on the senders' features, summed into the receivers (fusionlang's signature)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        from fusionlang.testing import e3nn_channelwise_product

        harmonics = " + ".join(f"{l}{'eo'[l % 2]}" for l in range(SH_LMAX + 1))  # noqa: E741
        self.tp = e3nn_channelwise_product(hidden_irreps(channels)[1], harmonics, shared_weights=False,
                                           internal_weights=False)

    def forward(self, h: torch.Tensor, Y: torch.Tensor, weights: torch.Tensor,
                edge_index: torch.Tensor) -> torch.Tensor:
        messages = self.tp(h[edge_index[0]], Y, weights)
        return messages.new_zeros(len(h), messages.shape[1]).index_add(0, edge_index[1], messages)


def e3nn_interaction(channels: int, graph: Graph, seed: int) -> InteractionEnergy:
    from e3nn import o3

    interaction = E3nnInteraction(channels)
    harmonics = o3.SphericalHarmonics(list(range(SH_LMAX + 1)), normalize=True, normalization="component")
    entries = [(mul, ir.dim) for mul, ir in interaction.tp.irreps_out]
    return InteractionEnergy(interaction, harmonics, interaction.tp.weight_numel, entries, graph, seed)


class ProductEnergy(torch.nn.Module):
    """The density ``A`` -> one library's product basis (fusionlang's signature) -> energy."""

    species: torch.Tensor

    def __init__(self, product: torch.nn.Module, species: torch.Tensor, channels: int, seed: int) -> None:
        super().__init__()
        self.product = product
        self.register_buffer("species", species, persistent=False)
        self.readout = QuadraticReadout([(channels, 1), (channels, 3)], channels, torch.Generator().manual_seed(seed))

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        return self.readout(self.product(A, self.species))


def product_energies(channels: int, species: torch.Tensor, seed: int) -> dict[str, torch.nn.Module]:
    """fusionlang's product basis with mace-torch's weights, and mace-torch's, as energies."""
    from bench_mace import MaceAsFusion, mace_module, product_basis_text

    from fusionlang.importers import load_mace_symmetric_contraction

    result = fusionlang.api.compile(product_basis_text(channels), name="mace.fusion")
    torch.manual_seed(seed)
    mace = mace_module(channels, reduced=False)
    ours = load_mace_symmetric_contraction(result.module_class("mace_product_basis")(), mace)
    return {"fusionlang": ProductEnergy(ours, species, channels, seed),
            "mace-torch": ProductEnergy(MaceAsFusion(mace, channels), species, channels, seed)}


# -- the steps -------------------------------------------------------------------------------------

def loss_of(energy: torch.Tensor, forces: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (forces - target).pow(2).mean() + energy.pow(2).mean()


def eager_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Energy, forces by ``autograd.grad(create_graph=True)``, loss, ``backward``: the double backward."""
    def run() -> torch.Tensor:
        leaf = x.detach().requires_grad_(True)
        energy = model(leaf)
        (gradient,) = torch.autograd.grad(energy.sum(), leaf, create_graph=True)
        loss = loss_of(energy, -gradient, target)
        loss.backward()
        return loss.detach()
    return run


def compiled_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
                  backend: str) -> Callable[[], torch.Tensor]:
    """The same step with energy, forces (``torch.func``) and loss in one ``torch.compile`` graph."""
    energy_and_forces = energy_and_forces_fn(model)

    def forward(positions: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return loss_of(*energy_and_forces(positions), reference)

    compiled = compile_in_one_graph(forward, backend=backend)

    def run() -> torch.Tensor:
        loss = compiled(x, target)
        loss.backward()
        return loss.detach()
    return run


def timed(step: Callable[[], torch.Tensor]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start
    return run


def medians(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, tuple[float, float]]:
    """(median ms, spread) of every run, alternating between them; the spread, (max - min) / median,
    is the noise of the row on a shared machine."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(run())
    return {name: (statistics.median(t) * 1e3, (max(t) - min(t)) / statistics.median(t)) for name, t in times.items()}


# -- the table -------------------------------------------------------------------------------------

def rows(models: dict[str, torch.nn.Module], x: torch.Tensor, target: torch.Tensor,
         args: argparse.Namespace) -> dict[str, Callable[[], torch.Tensor]]:
    """Every row's step: eager for every library, compiled for fusionlang (and the peers with --compile-peers)."""
    steps = {f"{name} eager": eager_step(model, x, target) for name, model in models.items()}
    if not args.no_compile:
        compiled = [name for name in models if name == "fusionlang" or args.compile_peers]
        steps.update({f"{name} compiled": compiled_step(models[name], x, target, args.backend) for name in compiled})
    return steps


@dataclass(frozen=True)
class FirstCall:
    """A step's first call: its seconds (a compiled row's compile time), loss and parameter gradients."""

    seconds: float
    loss: float
    gradients: list[torch.Tensor]


def first_calls(steps: dict[str, Callable[[], torch.Tensor]],
                models: dict[str, torch.nn.Module]) -> dict[str, FirstCall]:
    """Every step's first call from zero gradients (every model has its initial weights)."""
    found = {}
    for name, step in steps.items():
        model = models[name.rsplit(" ", 1)[0]]
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss = float(step())
        seconds = time.perf_counter() - start
        found[name] = FirstCall(seconds, loss, [p.grad.clone() for p in model.parameters() if p.grad is not None])
    return found


def gradient_difference(ours: FirstCall, reference: FirstCall) -> float:
    """max |Δgrad| / max |grad| over the parameters of two rows of one library."""
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(ours.gradients, reference.gradients,
                                                                          strict=True))


def agreement(first: dict[str, FirstCall]) -> str:
    """The losses of all rows against fusionlang eager's, and each compiled row's gradients against its eager row's."""
    reference = first["fusionlang eager"].loss
    loss = max(abs(call.loss - reference) / abs(reference) for call in first.values())
    found = [f"max |Δloss| / |loss| = {loss:.1e}"]
    for name, call in first.items():
        if name.endswith(" compiled"):
            eager = first[name.replace(" compiled", " eager")]
            found.append(f"{name} grads vs eager: {gradient_difference(call, eager):.1e}")
    return "; ".join(found)


def run_case(case: str, models: dict[str, torch.nn.Module], x: torch.Tensor, args: argparse.Namespace) -> None:
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * 0.1
    steps = rows(models, x, target, args)
    first = first_calls(steps, models)
    ms = medians({name: timed(step) for name, step in steps.items()}, args.repeat)
    base = ms["fusionlang eager"][0]
    print(f"{case}: {agreement(first)}", flush=True)
    for name in steps:
        median, noise = ms[name]
        compile_note = f"{first[name].seconds:8.1f} s" if name.endswith("compiled") else ""
        print(f"{case:12} {name:22} {median:10.1f} {noise:7.0%} {median / base:7.2f} {compile_note}", flush=True)


def interaction_case(args: argparse.Namespace) -> None:
    graph = random_graph(args.nodes, args.neighbours, 9 * args.channels, torch.Generator().manual_seed(0))
    models: dict[str, torch.nn.Module] = {"fusionlang": fusion_interaction(args.channels, graph, seed=0),
                                          "e3nn": e3nn_interaction(args.channels, graph, seed=0)}
    run_case("interaction", models, graph.positions, args)


def product_case(args: argparse.Namespace) -> None:
    species = torch.randint(0, SPECIES, (args.nodes,), generator=torch.Generator().manual_seed(0))
    A = torch.randn(args.nodes, 16 * args.channels, generator=torch.Generator().manual_seed(2))
    run_case("product", product_energies(args.channels, species, seed=0), A, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="1: on a CPU shared with other jobs, OpenMP's "
                        "thread barriers make multi-threaded timings meaningless (see bench_mace.py)")
    parser.add_argument("--nodes", type=int, default=250)
    parser.add_argument("--neighbours", type=int, default=16)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", nargs="+", choices=("interaction", "product"), default=["interaction", "product"])
    parser.add_argument("--no-compile", action="store_true", help="eager rows only (no Inductor compile)")
    parser.add_argument("--compile-peers", action="store_true", help="also compile e3nn's and mace-torch's steps")
    parser.add_argument("--backend", default="inductor", help="torch.compile's backend for the compiled rows")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat, aot_eager: for the tests")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.neighbours, args.channels, args.repeat, args.backend = 24, 4, 4, 1, "aot_eager"
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cpu, {args.threads} threads, float32, N = {args.nodes}, "
          f"{args.neighbours} neighbours (E = {args.nodes * args.neighbours}), {args.channels} channels, "
          f"compiled by {args.backend}, median of {args.repeat} alternating runs; ratio = time / fusionlang eager")
    print(f"{'case':12} {'implementation':22} {'ms/step':>10} {'spread':>7} {'ratio':>7} {'compile':>10}")
    for case in args.cases:
        {"interaction": interaction_case, "product": product_case}[case](args)


if __name__ == "__main__":
    main()
