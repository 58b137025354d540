"""Render every example diagram and its contraction plan into docs/diagrams/.

    python scripts/render_docs.py            # write docs/diagrams/NAME.svg (+ NAME.plan.svg)
    python scripts/render_docs.py --check    # exit 1 if a drawing is missing or out of date

Needs graphviz's ``dot``. SVG bytes depend on graphviz's version; ``--check`` says which one
wrote the files when they differ.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusionlang import pipeline, render  # noqa: E402

EXAMPLES = ROOT / "examples"
OUT = ROOT / "docs" / "diagrams"


def drawings() -> Iterator[tuple[str, str]]:
    """(file name, SVG text) for every diagram of every example, plans after diagrams."""
    for path in sorted(EXAMPLES.glob("*.fusion")):
        for unit in pipeline.run(path, until="plan").units:
            yield f"{unit.diagram.name}.svg", render.render_svg(unit.diagram)
            if unit.orchestrator is None:
                yield f"{unit.diagram.name}.plan.svg", render.render_plan(unit.programs[0], "svg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, svg in drawings():
        target = OUT / name
        if target.exists() and target.read_text(encoding="utf-8") == svg:
            continue
        stale.append(name)
        if not args.check:
            target.write_text(svg, encoding="utf-8")
    verb = "out of date" if args.check else "written"
    print(f"{len(stale)} drawing(s) {verb} in {OUT.relative_to(ROOT)} (graphviz {render.graphviz_version()})"
          + (": " + ", ".join(stale) if stale else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
