"""mace-torch's own MACE as an outside reference, behind the interface fusionlang's trainer uses.

``MaceTorchPotential(config, statistics)`` builds mace-torch's ``ScaleShiftMACE`` with the sizes of
a :class:`fusionlang.models.MaceConfig` (channels, lmax, hidden_lmax, interactions, r_max, Bessel
functions, cutoff power, radial MLP, readout width, correlation 3, residual interaction blocks,
SiLU) and the same data set constants (E0, average neighbour count, scale, shift), and gives it
``energy_and_forces(batch, create_graph)`` on a :class:`fusionlang.atoms.Batch`, so the same
training loop, data, batches and budget serve both. mace-torch is a peer, never a runtime
dependency: only the benchmarks and experiments import this file.
"""

from __future__ import annotations

import torch

from fusionlang.atoms import Batch, Statistics
from fusionlang.models import MaceConfig


def _irreps(channels: int, lmax: int) -> str:
    return " + ".join(f"{channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1))


class MaceTorchPotential(torch.nn.Module):
    """mace-torch's ScaleShiftMACE with fusionlang's ``energy_and_forces`` interface."""

    def __init__(self, config: MaceConfig, statistics: Statistics, atomic_numbers: tuple[int, ...],
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        import numpy as np
        from e3nn import o3
        from mace.modules import interaction_classes
        from mace.modules.models import ScaleShiftMACE

        if config.fusion_block:
            raise ValueError("mace-torch has no fusion block: use fusion_block=False")
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # mace-torch builds its tensors in the default dtype
        try:
            self.mace = ScaleShiftMACE(
                atomic_inter_scale=statistics.scale, atomic_inter_shift=statistics.shift,
                r_max=config.r_max, num_bessel=config.bessel, num_polynomial_cutoff=config.cutoff_power,
                max_ell=config.lmax,
                interaction_cls=interaction_classes["RealAgnosticResidualInteractionBlock"],
                interaction_cls_first=interaction_classes["RealAgnosticResidualInteractionBlock"],
                num_interactions=config.interactions, num_elements=config.species,
                hidden_irreps=o3.Irreps(_irreps(config.channels, config.hidden_lmax)),
                MLP_irreps=o3.Irreps(f"{config.readout_hidden}x0e"),
                atomic_energies=np.array(statistics.atomic_energies, dtype=float),
                avg_num_neighbors=statistics.avg_num_neighbors, atomic_numbers=list(atomic_numbers),
                correlation=3, gate=torch.nn.functional.silu, radial_MLP=list(config.radial_mlp),
            )
        finally:
            torch.set_default_dtype(previous)
        self.config, self.statistics, self.dtype = config, statistics, dtype

    def _graph(self, data: Batch, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        counts = data.num_atoms
        # mace-torch: edge_index[0] the sender, vectors = pos[receiver] - pos[sender]; only the sign
        # convention differs from ours, which the harmonics' parity absorbs.
        return {
            "positions": positions,
            "node_attrs": torch.nn.functional.one_hot(data.species, self.config.species).to(self.dtype),
            "edge_index": data.edge_index,
            "shifts": positions.new_zeros(data.edge_index.shape[1], 3),
            "unit_shifts": positions.new_zeros(data.edge_index.shape[1], 3),
            "cell": positions.new_zeros(data.num_structures * 3, 3),
            "batch": data.batch,
            "ptr": torch.cat([counts.new_zeros(1), counts.cumsum(0)]),
        }

    def energy_and_forces(self, data: Batch, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``[S]`` (eV) and forces ``[N, 3]`` (eV/Å) of a batch."""
        positions = data.positions.to(self.dtype).detach().requires_grad_(True)
        with torch.enable_grad():
            output = self.mace(self._graph(data, positions), training=create_graph, compute_force=True)
        energy, forces = output["energy"], output["forces"]
        assert energy is not None and forces is not None
        return (energy if create_graph else energy.detach()), (forces if create_graph else forces.detach())
