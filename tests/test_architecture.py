"""Module borders: no import circle among the compiler's modules, the planner's private names stay
inside the planner, nothing in the planner imports a later stage, and modules stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fusionlang"
# later stages, which the planner must never import
LATER = {"fusionlang.codegen", "fusionlang.graphs", "fusionlang.pipeline", "fusionlang.api", "fusionlang.cli",
         "fusionlang.cli_render", "fusionlang.render", "fusionlang.testing", "fusionlang.importers"}
MAX_LINES = 650
# modules allowed to stay longer for now (none)
NOT_YET: set[str] = set()


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, tuple[str, ...]]]:
    """(module, imported names) of every import in the file, function-level ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else str(node.module)
            names = tuple(a.name for a in node.names)
            found.append((target, names))
            found += [(f"{target}.{n}", ()) for n in names if f"{target}.{n}" in known]
        elif isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
    return [(t, n) for t, n in found if t in known and t != name]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {t for t, _ in imports(name, path, known) if not t.startswith(name + ".")}
            for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_is_in_an_import_circle() -> None:
    assert cycles(graph()) == []


def test_the_planner_imports_no_later_stage() -> None:
    edges = graph()
    upward = {(m, t) for m, targets in edges.items() if m.startswith("fusionlang.plan") for t in targets & LATER}
    assert not upward
    assert not {m for m, targets in edges.items() if m.startswith("fusionlang.plan.") and "fusionlang.plan" in targets}


def test_nothing_outside_the_planner_imports_its_private_names() -> None:
    known = modules()
    private = []
    for name, path in known.items():
        if not name.startswith("fusionlang.plan"):
            private += [(name, t, n) for t, names in imports(name, path, known) if t.startswith("fusionlang.plan")
                        for n in names if n.startswith("_")]
    for directory in ("tests", "benchmarks", "scripts"):
        for path in (PACKAGE.parent / directory).glob("*.py"):
            text = path.read_text(encoding="utf-8") if path.name != Path(__file__).name else ""
            private += [(path.name, word) for word in ("P." + "_", "plan." + "_") if word in text]
    assert not private


def test_modules_stay_readable() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert not {n: k for n, k in lengths.items() if k > MAX_LINES and n not in NOT_YET}
    assert lengths["fusionlang.plan"] <= 150
