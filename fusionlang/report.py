"""Plain-data reports about checked diagrams (what ``fusionc ir`` prints)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import ir


def ir_report(diagram: ir.Diagram) -> dict[str, Any]:
    """Legs with their irreps and statements with their path counts, as JSON-ready data.

    >>> from fusionlang.frontend import check_source
    >>> d = check_source("diagram d { group SU2\\n input a, b : 1/2\\n output c : 0 + 1\\n a, b -> c }").diagram()
    >>> ir_report(d)["statements"][0]["paths_per_output"]
    {'0': 1, '1': 1}
    """
    return {
        "name": diagram.name,
        "group": str(diagram.group),
        "legs": [_leg(leg) for leg in diagram.legs],
        "statements": [_statement(diagram, s) for s in diagram.statements],
    }


def _leg(leg: ir.Leg) -> dict[str, Any]:
    irreps = leg.irreps
    return {"name": leg.name, "role": leg.role, "irreps": str(irreps) if irreps is not None else None,
            "declared": leg.declared, "dim": irreps.dim if irreps is not None else None,
            "lmax": str(leg.lmax) if leg.lmax is not None else None, "domain": leg.domain,
            "classes": leg.classes or None}


def _statement(diagram: ir.Diagram, statement: ir.Statement) -> dict[str, Any]:
    target = diagram.irreps(statement.target)
    per_output = Counter(str(target[p.output].irrep) for p in statement.paths)
    return {"line": statement.line, "kind": statement.kind, "arity": statement.arity,
            "target": statement.target, "args": tree_text(statement.tree),
            "channels": statement.channels, "weights": statement.weights,
            "paths_mode": statement.paths_mode, "aggregate": statement.aggregate, "per": statement.per,
            "irrep_normalization": statement.irrep_normalization,
            "path_normalization": statement.path_normalization, "pairing": statement.pairing,
            "paths": len(statement.paths),
            "paths_per_output": {k: per_output[k] for k in sorted(per_output, key=_irrep_order(target))}}


def _irrep_order(irreps: Any) -> Any:
    order = {str(item.irrep): i for i, item in reversed(list(enumerate(irreps)))}
    return lambda text: order[text]


def tree_text(node: ir.Node, top: bool = True) -> str:
    """A statement's arguments as written: ``(a, b), sender(c)``."""
    if isinstance(node, ir.LeafRef):
        return f"{node.via}({node.leg})" if node.via else node.leg
    text = f"{tree_text(node.left, False)}, {tree_text(node.right, False)}"
    return text if top else f"({text})"


def ir_text(reports: list[dict[str, Any]]) -> str:
    """The reports as aligned text tables."""
    return "\n\n".join(_diagram_text(report) for report in reports)


# options that the text shows only when a statement changes them
_DEFAULTS = {"irrep_normalization": "component", "path_normalization": "element", "pairing": "all"}


def _diagram_text(report: dict[str, Any]) -> str:
    lines = [f"diagram {report['name']} (group {report['group']})", "  edges:"]
    width = max(len(leg["name"]) for leg in report["legs"])
    for leg in report["legs"]:
        how = "declared" if leg["declared"] else "inferred"
        where = "" if leg["domain"] == "batch" else f"  on {leg['domain']}"
        if leg["role"] == "index":
            lines.append(f"    {'index':<8} {leg['name']:<{width}}  {leg['classes']} classes{where}")
            continue
        lines.append(f"    {leg['role']:<8} {leg['name']:<{width}}  {leg['irreps']:<30} dim {leg['dim']:<5} "
                     f"{how}{where}")
    lines.append("  statements:")
    for s in report["statements"]:
        counts = ", ".join(f"{k}: {v}" for k, v in s["paths_per_output"].items())
        extra = "".join(f", {k} {s[k]}" for k in ("paths_mode", "per") if s[k] not in (None, "sum"))
        extra += "".join(f", {k} {s[k]}" for k, default in _DEFAULTS.items() if s[k] != default)
        extra += ", aggregate sum" if s["aggregate"] else ""
        lines.append(f"    line {s['line']:<3} {s['args']} -> {s['target']}  [{s['kind']}, {s['channels']}, "
                     f"weights {s['weights']}{extra}]  {s['paths']} paths ({counts})")
    return "\n".join(lines)
