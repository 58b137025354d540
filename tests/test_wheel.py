"""The built wheel carries grammars and templates and works from any directory.

Builds the wheel, installs it in a fresh virtual environment (without the editable checkout on
its path) and runs the CLI from outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only the wheel of fusionlang installed (dependencies are
    reached through a .pth file pointing at this interpreter's site-packages)."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"),
                    str(ROOT)], check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("fusionlang-*.whl")
    env_dir = work / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    _install_wheel(wheel, Path(purelib), env_dir)
    # Dependencies (torch, lark, ...) come from this interpreter; a .pth line adds a folder
    # without running that folder's own .pth files, so the editable checkout stays out of reach.
    dependencies = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    (Path(purelib) / "deps.pth").write_text("\n".join(dependencies) + "\n")
    return env_dir


def _install_wheel(wheel: Path, purelib: Path, env_dir: Path) -> None:
    """Install with this interpreter's pip into the new environment (no network, no deps);
    ``--python`` makes the console scripts start the new environment's interpreter."""
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
                    "--no-deps", "--no-index", "--quiet", str(wheel)], check=True, capture_output=True)


def run(env_dir: Path, *args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    return subprocess.run(list(args), cwd=cwd, env=environment, capture_output=True, text=True, input=stdin,
                          timeout=300)


def test_package_comes_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    where = run(installed, "python", "-c", "import fusionlang; print(fusionlang.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert str(installed) in where.stdout, where.stdout
    data = run(installed, "python", "-c", "from fusionlang._resources import resource_dir as r; "
               "print(r('grammars')); print(r('templates'))", cwd=tmp_path)
    assert data.returncode == 0, data.stderr
    assert all(str(installed) in line for line in data.stdout.split()), data.stdout


def test_wheel_carries_types_license_and_data(installed: Path) -> None:
    (wheel,) = (installed.parent / "dist").glob("fusionlang-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode("utf-8")
    assert {"fusionlang/py.typed", "fusionlang/runtime.py", "fusionlang/grammars/fusion.lark",
            "fusionlang/templates/module.py.jinja", "fusionlang/templates/graph_module.py.jinja"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_cli_version_and_help(installed: Path, tmp_path: Path) -> None:
    version = run(installed, "fusionc", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("fusionc "), version
    helped = run(installed, "python", "-m", "fusionlang", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "check" in helped.stdout and "compile" in helped.stdout


def test_cli_runs_on_every_example_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    """check, ir, compile, explain, render (every diagram, svg and dot) and fmt, from a folder with
    no checkout in sight; the compiled module imports and runs in the same environment."""
    for example in EXAMPLES:
        shutil.copy(example, tmp_path / example.name)
        for command in (["check"], ["ir"], ["fmt", "--check"], ["explain"], ["compile", "-o", "out.py"]):
            done = run(installed, "fusionc", *command, example.name, cwd=tmp_path)
            assert done.returncode == 0, (command, example.name, done.stdout, done.stderr)
        ir = run(installed, "fusionc", "ir", "--format", "json", example.name, cwd=tmp_path)
        for diagram in json.loads(ir.stdout)["diagrams"]:
            name = diagram["name"]
            for fmt in ("svg", "dot"):
                done = run(installed, "fusionc", "render", example.name, "--diagram", name, "--format", fmt,
                           "-o", f"{name}.{fmt}", cwd=tmp_path)
                assert done.returncode == 0, (example.name, name, fmt, done.stderr)
            assert (tmp_path / f"{name}.svg").read_text().lstrip().startswith("<")
        imported = run(installed, "python", "-c", "import out; print(len(out.__all__))", cwd=tmp_path)
        assert imported.returncode == 0 and int(imported.stdout) >= 1, imported.stderr


def test_cli_reports_errors_from_stdin(installed: Path, tmp_path: Path) -> None:
    done = run(installed, "fusionc", "check", "-", cwd=tmp_path, stdin="diagram d { group O3\n input x : 1q\n}\n")
    assert done.returncode == 1
    assert "error[E020]" in done.stderr and "<stdin>:2:" in done.stderr
