"""Energies and forces in one graph that ``torch.compile`` accepts: force training, compiled.

Training a potential on forces differentiates twice: forces ``F = -∂E/∂x`` need a first derivative,
and the loss's gradient with respect to the parameters differentiates ``F`` again. Written the usual
way (``torch.autograd.grad(E, x, create_graph=True)`` on a ``torch.compile``'d model, then
``loss.backward()``) the second derivative runs through the compiled graph's backward, which
AOTAutograd refuses in PyTorch 2.13 ("torch.compile with aot_autograd does not currently support
double backward"). Computing the forces with ``torch.func.grad`` *inside* the compiled function
instead lets Dynamo trace the derivative into the forward graph: ``E`` and ``F`` (and the loss)
come out of one graph, and training needs only that graph's first-order backward, which
AOTAutograd and Inductor support. docs/forces.md has the measurements and the errors of the other
approaches.

>>> import torch
>>> energy_and_forces = energy_and_forces_fn(lambda x: (x ** 2).sum(-1))   # E = |x|², F = -2x
>>> energy, forces = energy_and_forces(torch.tensor([[1.0, 2.0, 3.0]]))
>>> energy.tolist(), forces.tolist()
([14.0], [[-2.0, -4.0, -6.0]])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import runtime
from .atoms import Batch

__all__ = ["EnergyAndForces", "compile_in_one_graph", "compiled_force_step", "energy_and_forces_fn", "force_loss",
           "force_loss_fn"]

EnergyAndForces = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def energy_and_forces_fn(energy: Callable[..., torch.Tensor], argnum: int = 0) -> EnergyAndForces:
    """``f(*args) -> (energy, forces)``: ``energy(*args)`` as it is (e.g. ``[S]``, one per structure)
    and ``forces = -∂(Σ energy)/∂args[argnum]``, computed by ``torch.func.grad``.

    Both come from one trace: under ``torch.compile(f, fullgraph=True)`` Dynamo captures the
    derivative in the forward graph, so a loss of the forces needs only the first-order backward of
    that graph (``loss.backward()`` reaches the parameters ``energy`` closes over). Eagerly it gives
    what ``torch.autograd.grad(..., create_graph=True)`` gives. ``energy`` must be ``torch.func``
    friendly: no ``.item()`` or data-dependent Python branches on ``args[argnum]``.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> f = energy_and_forces_fn(lambda x: w * (x ** 3).sum())                # F = -3 w x²
    >>> _, forces = f(torch.tensor([1.0, 2.0]))
    >>> forces.tolist(), torch.autograd.grad(forces.sum(), w)[0].item()       # ∂ΣF/∂w = -3 Σ x²
    ([-6.0, -24.0], -15.0)
    """
    def energy_and_forces(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        def total(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value = energy(*args[:argnum], x, *args[argnum + 1:])
            return value.sum(), value

        gradient, value = torch.func.grad(total, has_aux=True)(args[argnum])
        return value, -gradient

    return energy_and_forces


def force_loss(energy: torch.Tensor, forces: torch.Tensor, ref_energy: torch.Tensor, ref_forces: torch.Tensor,
               num_atoms: torch.Tensor, energy_weight: float = 1.0, forces_weight: float = 100.0) -> torch.Tensor:
    """MACE's loss (:mod:`fusionlang.training`'s, one process): ``energy_weight * mean((ΔE / n)²)
    + forces_weight * mean(ΔF²)`` in eV², float64.

    >>> one = torch.ones(1, dtype=torch.float64)
    >>> force_loss(2 * one, torch.zeros(1, 3), one, torch.ones(1, 3), one).item()
    101.0
    """
    per_atom = (energy.double() - ref_energy.double()) / num_atoms.double()
    delta = forces.double() - ref_forces.double()
    return energy_weight * per_atom.pow(2).mean() + forces_weight * delta.pow(2).mean()


def force_loss_fn(model: torch.nn.Module, energy_weight: float = 1.0,
                  forces_weight: float = 100.0) -> Callable[..., torch.Tensor]:
    """``loss(positions, species, edge_index, batch, num_structures, ref_energy, ref_forces, num_atoms)``:
    :func:`force_loss` of the energies and forces of ``model`` (MacePotential's ``forward``), as one
    function for ``torch.compile``: energies, forces and the loss in one graph."""
    energy_and_forces = energy_and_forces_fn(model)

    def loss(positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor,
             num_structures: int, ref_energy: torch.Tensor, ref_forces: torch.Tensor,
             num_atoms: torch.Tensor) -> torch.Tensor:
        energy, forces = energy_and_forces(positions, species, edge_index, batch, num_structures)
        return force_loss(energy, forces, ref_energy, ref_forces, num_atoms, energy_weight, forces_weight)

    return loss


def compile_in_one_graph(fn: Callable[..., Any], **compile_options: Any) -> Callable[..., Any]:
    """``torch.compile(fn, fullgraph=True, **compile_options)``, called so that it stays one graph
    for every batch size:

    * within :func:`fusionlang.runtime.single_graph`: on the CPU a compiled fusionlang module
      otherwise leaves its contraction eager behind a graph break, which no ``torch.func`` transform
      can cross (with ``fullgraph=True`` an error; without it the whole transform runs eagerly);
    * with ``torch.backends.opt_einsum`` off: opt_einsum's path search reads the sizes of an einsum
      of three or more operands (:class:`fusionlang.spherical.SphericalHarmonics` has one), which
      pins the number of edges, so that every batch with a new edge count compiled again. Such an
      einsum is then contracted left to right; generated modules only have two-operand einsums.

    Both are process-wide settings, changed for the call and restored after it.

    >>> square = compile_in_one_graph(lambda x: x * x, backend="eager")
    >>> square(torch.tensor([3.0])).tolist()
    [9.0]
    """
    compiled = torch.compile(fn, **{"fullgraph": True, **compile_options})

    def call(*args: Any, **kwargs: Any) -> Any:
        with runtime.single_graph(), torch.backends.opt_einsum.flags(enabled=False):
            return compiled(*args, **kwargs)

    return call


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of the model's first parameter (positions are cast to it)."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def compiled_force_step(model: torch.nn.Module, *, energy_weight: float = 1.0, forces_weight: float = 100.0,
                        **compile_options: Any) -> Callable[[Batch], torch.Tensor]:
    """``step(batch) -> loss``: the force-matching loss of ``model`` (MacePotential's ``forward``) on a
    :class:`fusionlang.atoms.Batch`, computed by one ``torch.compile``'d graph
    (:func:`compile_in_one_graph`), then ``loss.backward()``: the parameters' ``.grad``
    hold the gradients, equal to the eager double backward's. Step an optimizer after it.

    ``compile_options`` go to ``torch.compile`` (``backend="aot_eager"`` compiles in seconds, the
    default ``inductor`` in tens of seconds to minutes on a CPU). The first batch of another size
    compiles once more, with dynamic sizes; later batches reuse that graph. docs/forces.md has a
    runnable example that checks it against the eager double backward.
    """
    loss_fn = compile_in_one_graph(force_loss_fn(model, energy_weight, forces_weight), **compile_options)
    dtype = _model_dtype(model)

    def step(data: Batch) -> torch.Tensor:
        loss = loss_fn(data.positions.to(dtype), data.species, data.edge_index, data.batch, data.num_structures,
                       data.energy, data.forces, data.num_atoms)
        loss.backward()
        return loss.detach()

    return step
