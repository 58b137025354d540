"""fusionlang: a compiler for SU(2)/O(3) fusion diagrams into equivariant PyTorch modules.

>>> import fusionlang
>>> result = fusionlang.compile("diagram d { group O3\\n input x : 2x1o\\n output y : 2x1o\\n x -> y }")
>>> sorted(result.classes)
['d']

The compiler's stages are imported on first use, so ``import fusionlang`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__
from .diagnostics import Diagnostic, FusionError
from .groups import O3, SO3, SU2, Group, Irrep, Irreps, MulIrrep, coupling
from .limits import Limits

# public name -> (module, attribute), imported lazily. Names of submodules (parse, render) are
# not re-exported: importing the submodule would replace the attribute.
_LAZY = {
    "check": ("fusionlang.frontend", "check_source"),
    "CheckResult": ("fusionlang.frontend", "CheckResult"),
    "compile": ("fusionlang.api", "compile"),
    "compile_file": ("fusionlang.api", "compile_file"),
    "explain": ("fusionlang.api", "explain"),
    "CompileResult": ("fusionlang.api", "CompileResult"),
    "format_source": ("fusionlang.fmt", "format_source"),
    "from_e3nn": ("fusionlang.e3nn_convert", "from_e3nn"),
    "to_networkx": ("fusionlang.graph", "to_networkx"),
    "tune": ("fusionlang.tuning", "tune"),
}

__all__ = [
    "O3", "SO3", "SU2", "CheckResult", "CompileResult", "Diagnostic", "FusionError", "Group", "Irrep", "Irreps",
    "Limits", "MulIrrep", "__version__", "check", "compile", "compile_file", "coupling", "explain", "format_source",
    "from_e3nn", "to_networkx", "tune",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fusionlang' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext fusionlang``: the ``%%fusion`` cell magic and rich displays (:mod:`fusionlang.notebook`)."""
    import_module("fusionlang.notebook").load_ipython_extension(ipython)
