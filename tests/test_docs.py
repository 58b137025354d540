"""Every code example in docs/ runs: `fusion` blocks check cleanly, `python` blocks execute
(in a fresh, empty namespace, from the repository root, so a reader can copy them as they are),
and doctests in the package pass."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import fusionlang
from fusionlang.frontend import check_source

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in DOCS:
        for number, (lang, body) in enumerate(BLOCK.findall(page.read_text(encoding="utf-8"))):
            if lang == language:
                found.append((f"{page.name}#{number}", body))
    return found


FUSION = blocks("fusion")
PYTHON = blocks("python")


@pytest.mark.parametrize("where,body", FUSION, ids=[w for w, _ in FUSION])
def test_fusion_blocks_check(where: str, body: str) -> None:
    result = check_source(body, name=where)
    assert result.ok, result.render()


@pytest.mark.parametrize("where,body", PYTHON, ids=[w for w, _ in PYTHON])
def test_python_blocks_run(where: str, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(body, where, "exec"), namespace)


MODULES = sorted(m.name for m in pkgutil.walk_packages(fusionlang.__path__, "fusionlang.")
                 if m.name not in ("fusionlang.__main__",))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
