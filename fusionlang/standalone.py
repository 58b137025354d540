"""Standalone modules: generated code that needs only torch.

A module written by ``fusionc compile --standalone`` (:meth:`fusionlang.CompileResult.standalone_source`)
holds, instead of ``from fusionlang import runtime``, the parts of :mod:`fusionlang.runtime` that
generated code calls, copied from its source (so they never drift apart), and a ``runtime``
namespace over them: the classes below it are the same text as in a normal module.

What is copied is found by reading ``runtime.py`` and its parts ``runtime_checks.py`` (its input
checks), ``runtime_batches.py`` (one pass or chunks), ``runtime_gathers.py`` (selections) and
``runtime_sums.py`` (long sums cut short while inductor traces): its
public names, less those that load generated code or reach into the rest of fusionlang, and
everything they name in turn (functions, classes, constants, imports), in the files' order.

Coupling tables keep their recipes (blocks of coupling trees); what fusionlang computes exactly,
the component-normalised coupling of each vertex, is embedded as the float64 (complex128) bytes
in base64, one entry per distinct vertex. The tables are then built by the same operations as
:func:`fusionlang.runtime.coupling_table`, so they are bit-identical to a normal module's, and a
vertex is stored once however many tables and blocks use it (docs/api.md, "Standalone modules").

>>> model = runtime_model([])
>>> "def check_feature(" in model["definitions"], model["couplings"]
(True, [])
"""

from __future__ import annotations

import ast
import base64
import inspect
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import runtime, runtime_batches, runtime_checks, runtime_gathers, runtime_sums
from .plan.program import spec_dim

__all__ = ["LEFT_OUT", "OWN", "VertexKey", "inlined_names", "runtime_model", "vertex_keys"]

# Public names of fusionlang.runtime that a standalone module does without: loading generated
# code in memory and pickling by source (a standalone module is a file, imported by name).
LEFT_OUT = frozenset({"load_generated", "rebuild", "release_collected", "TreeSpec"})
# The modules runtime.py imports parts of itself from: inlined too (before it), never imported.
PARTS = (runtime_checks, runtime_batches, runtime_gathers, runtime_sums)
RUNTIME_PARTS = frozenset(part.__name__ for part in PARTS)
# Written by templates/standalone_runtime.py.jinja instead (they reach into the rest of fusionlang).
OWN = ("COUPLINGS", "irreps", "spec_dim", "_tree_tensor", "_vertex", "runtime")
OWN_NEEDS = ("_root",)  # what those read of runtime.py
# What the template's own definitions use: (module, name), "" for a plain `import module`.
OWN_IMPORTS = frozenset({("", "base64"), ("", "sys"), ("", "types"), ("functools", "lru_cache"), ("typing", "Any"),
                         ("", "torch")})
DROPPED_METHODS = frozenset({"__reduce_ex__"})  # pickling by generated source
_LINE = 96  # base64 characters per source line

VertexKey = tuple[str, str, str, str]  # (group, left, right, root): one coupling vertex


@dataclass(frozen=True)
class _Inlined:
    """What is copied from runtime.py: definitions (source text, file order), the names they
    define, and the imports they need."""

    definitions: tuple[str, ...]
    names: frozenset[str]
    imports: frozenset[tuple[str, str]]
    exported: tuple[str, ...]


def inlined_names() -> frozenset[str]:
    """Every top-level name of a standalone module's runtime (a diagram class must not take one).

    >>> {"check_feature", "math", "COUPLINGS"} <= inlined_names()
    True
    """
    inlined = _inlined()
    return inlined.names | frozenset(OWN) | frozenset(name for _, name in inlined.imports | OWN_IMPORTS)


def runtime_model(tables: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """What ``templates/standalone_runtime.py.jinja`` substitutes, for the coupling tables
    ``(group, tree)`` of a module: the imports, runtime's definitions, the embedded vertices."""
    inlined = _inlined()
    return {
        "imports": _import_lines(inlined.imports | OWN_IMPORTS),
        "definitions": "\n\n\n".join(inlined.definitions),
        "spec_dim": inspect.getsource(spec_dim).rstrip("\n"),
        "couplings": [_coupling_model(key) for key in vertex_keys(tables)],
        "exported": inlined.exported,
    }


# -- what runtime.py gives -------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _inlined() -> _Inlined:
    """The closure of runtime's public names (less :data:`LEFT_OUT` and :data:`OWN`) over the
    top-level names that their code reads."""
    sources = []  # (module, its lines), the runtime's own parts first
    for part in (*PARTS, runtime):
        text = inspect.getsource(part)
        sources.append((ast.parse(text), text.splitlines(keepends=True)))
    defined = {name: node for module, _ in sources for name, node in _top_level(module).items()}
    imported = {name: source for module, _ in sources for name, source in _imported(module).items()
                if source[0] not in RUNTIME_PARTS}
    wanted = [n for n in runtime.__all__ if n not in LEFT_OUT and n not in OWN and n in defined] + list(OWN_NEEDS)
    needed, imports = _closure(wanted, defined, imported)
    definitions = tuple(_node_source(node, lines, module.body)
                        for module, lines in sources for node in module.body if _names(node) & needed)
    exported = tuple(sorted(n for n in runtime.__all__ if n in needed or n in OWN))
    return _Inlined(definitions, frozenset(needed), frozenset(imports), exported)


def _top_level(module: ast.Module) -> dict[str, ast.stmt]:
    """Top-level definitions by name (functions, classes, assignments)."""
    found: dict[str, ast.stmt] = {}
    for node in module.body:
        for name in _names(node):
            found[name] = node
    return found


def _names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def _imported(module: ast.Module) -> dict[str, tuple[str, str]]:
    """Names bound by top-level imports: name -> (module, name), module "" for ``import name``."""
    found: dict[str, tuple[str, str]] = {}
    for node in module.body:
        if isinstance(node, ast.Import):
            found.update({a.asname or a.name: ("", a.name) for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__" and not node.level:
            found.update({a.asname or a.name: (node.module or "", a.name) for a in node.names})
    return found


def _closure(roots: list[str], defined: dict[str, ast.stmt],
             imported: dict[str, tuple[str, str]]) -> tuple[set[str], set[tuple[str, str]]]:
    needed: set[str] = set()
    imports: set[tuple[str, str]] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in needed or name in OWN:
            continue
        if name in imported:
            imports.add(imported[name])
        elif name in defined:
            needed.add(name)
            pending += sorted(_read_names(_without_dropped(defined[name])))
    return needed, imports


def _read_names(node: ast.AST) -> set[str]:
    """Every name a definition reads (and every ``global`` it writes)."""
    found = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return found | {g for n in ast.walk(node) if isinstance(n, ast.Global) for g in n.names}


def _without_dropped(node: ast.stmt) -> ast.stmt:
    if isinstance(node, ast.ClassDef):
        kept = [item for item in node.body if not _is_dropped(item)]
        return ast.ClassDef(node.name, node.bases, node.keywords, kept, node.decorator_list)
    return node


def _is_dropped(item: ast.stmt) -> bool:
    return isinstance(item, ast.FunctionDef) and item.name in DROPPED_METHODS


def _node_source(node: ast.stmt, lines: list[str], body: list[ast.stmt]) -> str:
    """A definition's text as written (decorators, and the docstring that follows a constant),
    without :data:`DROPPED_METHODS`."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    following = body[body.index(node) + 1] if node is not body[-1] else None
    end = node.end_lineno or node.lineno
    if isinstance(node, ast.Assign | ast.AnnAssign) and _is_docstring(following):
        end = following.end_lineno or end  # type: ignore[union-attr]
    chunk = lines[start:end]
    cut = [item for item in getattr(node, "body", []) if _is_dropped(item)] if isinstance(node, ast.ClassDef) else []
    for item in reversed(cut):
        first = min([item.lineno, *(d.lineno for d in item.decorator_list)]) - 1 - start
        last = (item.end_lineno or item.lineno) - start
        while first > 0 and not chunk[first - 1].strip():
            first -= 1
        del chunk[first:last]
    return "".join(chunk).rstrip("\n")


def _is_docstring(node: ast.stmt | None) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _import_lines(imports: Iterable[tuple[str, str]]) -> list[str]:
    """``import x`` lines, then ``from m import a, b`` lines, torch last, each group sorted."""
    plain = sorted(name for module, name in imports if not module and name != "torch")
    grouped: dict[str, list[str]] = {}
    for module, name in imports:
        if module:
            grouped.setdefault(module, []).append(name)
    lines = [f"import {name}" for name in plain]
    lines += [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(grouped.items())]
    return lines + ["", "import torch"]


# -- the embedded couplings ------------------------------------------------------------------------

def vertex_keys(tables: Iterable[tuple[str, Any]]) -> list[VertexKey]:
    """Every distinct vertex of the trees of ``(group, tree)`` pairs, sorted.

    >>> vertex_keys([("O3", (("1o", "1o", "1e"), "1o", "0e")), ("O3", "2e")])
    [('O3', '1e', '1o', '0e'), ('O3', '1o', '1o', '1e')]
    """
    found: set[VertexKey] = set()
    for group, tree in tables:
        _collect(group, tree, found)
    return sorted(found)


def _collect(group: str, tree: Any, found: set[VertexKey]) -> None:
    if isinstance(tree, str):
        return
    left, right, root = tree
    found.add((group, _root_of(left), _root_of(right), root))
    _collect(group, left, found)
    _collect(group, right, found)


def _root_of(tree: Any) -> str:
    return tree if isinstance(tree, str) else str(tree[2])


def _coupling_model(key: VertexKey) -> dict[str, Any]:
    """One embedded vertex: its key, shape and base64 lines (little-endian float64/complex128)."""
    from .groups import coupling

    tensor = coupling(*key, normalization="component")
    text = base64.b64encode(_little_endian_bytes(tensor)).decode("ascii")
    return {"key": repr(key).replace("'", '"'), "shape": repr(tuple(tensor.shape)),
            "lines": [text[k:k + _LINE] for k in range(0, len(text), _LINE)] or [""]}


def _little_endian_bytes(tensor: Any) -> bytes:
    """The float64 numbers of a real or complex tensor as little-endian bytes (row major)."""
    import torch

    real = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    data = real.to(torch.float64).contiguous().reshape(-1).view(torch.uint8)
    if sys.byteorder == "big":
        data = data.view(-1, 8).flip(1).reshape(-1)
    return bytes(data.tolist())
