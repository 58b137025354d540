"""fusionlang: a compiler for SU(2)/O(3) fusion diagrams into equivariant PyTorch modules."""

from __future__ import annotations

from ._version import __version__
from .diagnostics import Diagnostic, FusionError
from .groups import O3, SO3, SU2, Group, Irrep, Irreps, MulIrrep, coupling

__all__ = [
    "O3", "SO3", "SU2", "Diagnostic", "FusionError", "Group", "Irrep", "Irreps", "MulIrrep",
    "__version__", "coupling",
]
