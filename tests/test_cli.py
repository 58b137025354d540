"""The fusionc command line: exit codes, text and JSON diagnostics, stdin, several files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fusionlang import __version__
from fusionlang.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.fusion"))
BAD = "diagram d {\n    group O3\n    input x : 1o\n    output y : 1o\n    x, x -> y\n}\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str = "",
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"], capsys)[:2] == (0, f"fusionc {__version__}\n")
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("check", "ir", "compile", "explain", "fmt"):
        assert command in out and f"fusionc {command}" in out


def test_subcommand_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--help"], capsys)
    assert code == 0 and "example:" in out and "fusionc check" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], capsys)[0] == 2
    assert run(["check"], capsys)[0] == 2
    assert run(["frobnicate"], capsys)[0] == 2


def test_check_clean_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", *EXAMPLES], capsys)
    assert code == 0 and f"{len(EXAMPLES)} files checked" in err


def test_check_reports_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.fusion"
    path.write_text(BAD)
    code, out, err = run(["check", str(path)], capsys)
    assert code == 1 and out == ""
    assert "error[E202]" in err and f"{path}:5:5" in err and "^" in err and "= help:" in err


def test_check_reports_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.fusion"
    path.write_text(BAD)
    code, out, _ = run(["check", "--format", "json", str(path), EXAMPLES[0]], capsys)
    assert code == 1
    (diagnostic,) = json.loads(out)["diagnostics"]
    assert diagnostic["code"] == "E202" and (diagnostic["line"], diagnostic["column"]) == (5, 5)
    assert diagnostic["file"] == str(path) and diagnostic["hint"]


def test_check_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(["check", "-"], capsys, stdin=BAD, monkeypatch=monkeypatch)
    assert code == 1 and "<stdin>:5:5" in err


def test_missing_file_is_a_diagnostic(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", "no/such/file.fusion"], capsys)
    assert code == 1 and "error[E901]" in err and "Traceback" not in err


def test_ir_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    spins = str(ROOT / "examples" / "spins.fusion")
    code, out, _ = run(["ir", spins], capsys)
    assert code == 0 and "s12" in out and "0 + 1" in out and "(1/2: 2, 3/2: 1)" in out
    code, out, _ = run(["ir", "--format", "json", "--diagram", "spins", spins], capsys)
    (diagram,) = json.loads(out)["diagrams"]
    assert diagram["statements"][1]["paths_per_output"] == {"1/2": 2, "3/2": 1}


def test_fmt_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fmt", "--check", *EXAMPLES], capsys)[0] == 0
    messy = tmp_path / "messy.fusion"
    messy.write_text("diagram d {group O3\ninput x:1o\noutput y : 1o\nx->y}\n")
    code, _, err = run(["fmt", "--check", str(messy)], capsys)
    assert code == 1 and "would reformat" in err
    assert run(["fmt", "-i", str(messy)], capsys)[0] == 0
    assert run(["fmt", "--check", str(messy)], capsys)[0] == 0


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fusionlang", "--version"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"fusionc {__version__}"


def test_limits_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    high = str(ROOT / "tests" / "cases" / "errors" / "E501_spin_too_large.fusion")
    code, _, err = run(["check", high], capsys)
    assert code == 1 and "E501" in err and "--limit max_l=" in err
    assert run(["check", high, "--limit", "max_l=70"], capsys)[0] == 0
    code, _, err = run(["check", high, "--limit", "max_l=x"], capsys)
    assert code == 1 and "E903" in err
    code, out, _ = run(["compile", high, "--limit", "max_l=70", "--limit", "max_dim=1000"], capsys)
    assert code == 0 and "class high" in out


@pytest.mark.parametrize("command", ["ir", "explain"])
def test_an_unknown_diagram_is_an_error(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([command, EXAMPLES[0], "--diagram", "NOPE"], capsys)
    assert code == 1 and "E113" in err


def test_strategy_choices_are_the_planners_and_read_only_when_given(capsys: pytest.CaptureFixture[str]) -> None:
    from fusionlang.cli import _parser as argument_parser
    from fusionlang.plan.strategies import AUTO, STRATEGIES

    assert argument_parser().parse_args(["explain", "x.fusion"]).strategy == AUTO
    given = argument_parser().parse_args(["compile", "x.fusion", "--strategy", "full/sparse/q"])
    assert given.strategy == "full/sparse/q"
    with pytest.raises(SystemExit):
        argument_parser().parse_args(["compile", "x.fusion", "--strategy", "sparse"])
    assert f"(choose from {', '.join(map(repr, [AUTO, *STRATEGIES]))})" in capsys.readouterr().err
