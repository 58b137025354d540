"""The compiler's results in the disk cache: whole compilations (fusionlang.object_cache) and the
reduced symmetric basis. A cached run equals an uncached one (byte-identical generated code,
identical kept paths); damaged, foreign or planted entries are recomputed; FUSIONLANG_NO_CACHE
still works; check, fmt and ir never import torch."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from fusionlang import cache, object_cache, pipeline
from fusionlang.frontend import check_source
from fusionlang.plan import kept_paths

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fusion"))
# MACE's product basis at correlation 4 (few channels: the symmetric reduction does not depend on them)
CORRELATION4 = """diagram c4 {
    group O3
    input  A : 2x(0e + 1o + 2e + 3o)
    output B : 2x(0e + 1o)
    A -> B           [channels = uuu, weights = channel]
    A, A -> B        [channels = uuu, weights = channel]
    A, A, A -> B     [channels = uuu, weights = channel]
    A, A, A, A -> B  [channels = uuu, weights = channel]
}
"""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(cache.NO_CACHE_ENV, raising=False)
    return tmp_path / "cache" / cache.package_version()


def uncached(monkeypatch: pytest.MonkeyPatch, source: str | Path,
             until: pipeline.Stage = "generate") -> pipeline.Compilation:
    with monkeypatch.context() as patched:
        patched.setenv(cache.NO_CACHE_ENV, "1")
        return pipeline.run(source, until=until)


def assert_same_compilation(found: pipeline.Compilation, expected: pipeline.Compilation) -> None:
    assert found.source_code.encode() == expected.source_code.encode()
    assert found.units == expected.units
    assert found.checked == expected.checked
    assert found.warnings == expected.warnings
    kept = [p.kept_paths for unit in found.units for p in unit.programs]
    assert kept == [p.kept_paths for unit in expected.units for p in unit.programs]


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.flc"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_a_cached_compilation_equals_an_uncached_one(path: Path, cache_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    expected = uncached(monkeypatch, path)
    assert not cache_dir.exists()
    cold = pipeline.run(path)
    assert len(entries(cache_dir / object_cache.FOLDER)) == 1
    warm = pipeline.run(path)
    assert warm.units is not cold.units    # read back, not computed
    for found in (cold, warm):
        assert_same_compilation(found, expected)
    assert all(d.source is warm.source for d in warm.diagrams)


def test_explain_is_cached_apart_from_compile(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = uncached(monkeypatch, CORRELATION4, until="plan")
    planned = [pipeline.run(CORRELATION4, until="plan") for _ in range(2)]
    generated = pipeline.run(CORRELATION4)
    assert len(entries(cache_dir / object_cache.FOLDER)) == 2
    assert planned[0].source_code == planned[1].source_code == ""
    assert planned[0].units == planned[1].units == expected.units == generated.units
    assert [u.report.explain() for u in planned[1].units] == [u.report.explain() for u in expected.units]


def test_the_reduced_symmetric_basis_is_cached_and_identical(cache_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    diagram = check_source(CORRELATION4).diagram()
    statements = [s.index for s in diagram.statements]
    with monkeypatch.context() as patched:
        patched.setenv(cache.NO_CACHE_ENV, "1")
        expected = [kept_paths(diagram, k) for k in statements]
    assert [kept_paths(diagram, k) for k in statements] == expected
    bases = [key_of(path) for path in entries(cache_dir) if key_of(path).startswith("fusionlang.symmetric/")]
    assert len(bases) == 3   # A, A / A, A, A / A, A, A, A
    for payload in (b"999999", b"3,2", b"x,y", b"\xff"):   # well framed, but not a basis of these paths
        for key in bases:
            assert cache.store_bytes(key, payload)
        assert [kept_paths(diagram, k) for k in statements] == expected
    stored = entries(cache_dir)
    for path in stored:   # every top-level entry garbage: the same basis, recomputed
        path.write_bytes(b"garbage")
    assert [kept_paths(diagram, k) for k in statements] == expected
    assert all(path.read_bytes() != b"garbage" for path in stored)
    assert 0 < len(expected[-1]) < len(diagram.statements[-1].paths)   # the reduction does drop paths


def test_a_symmetric_basis_in_the_cache_is_read_without_torch(cache_dir: Path) -> None:
    diagram = check_source(CORRELATION4).diagram()
    expected = [kept_paths(diagram, s.index) for s in diagram.statements]
    script = ("import sys\nfrom fusionlang.frontend import check_source\nfrom fusionlang.plan import kept_paths\n"
              f"d = check_source({CORRELATION4!r}).diagram()\n"
              "print([kept_paths(d, s.index) for s in d.statements], 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == f"{expected} False"


def key_of(path: Path) -> str:
    """The key stored in an entry's frame (header: magic, checksum, key length, payload length)."""
    blob = path.read_bytes()
    return blob[24:24 + int.from_bytes(blob[12:16], "little")].decode()


def damage(path: Path, how: str) -> None:
    blob, key = path.read_bytes(), key_of(path)
    if how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(blob)))
    elif how == "flipped":
        path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    elif how == "undecodable":   # a well-formed entry whose payload is not a stored compilation
        assert cache.store_bytes(key, b"not zlib", object_cache.FOLDER)
    elif how == "foreign class":  # a well-formed pickle of something fusionlang never stores
        assert cache.store_bytes(key, object_cache.encode_objects(print), object_cache.FOLDER)
    elif how == "wrong object":
        assert cache.store_bytes(key, object_cache.encode_objects((1, 2)), object_cache.FOLDER)


class Planted:
    """What a hostile entry would hold: unpickling it calls a function."""

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (os.getpid, ())


@pytest.mark.parametrize("how", ["truncated", "garbage", "flipped", "undecodable", "foreign class", "wrong object"])
def test_a_damaged_compilation_entry_is_recomputed(how: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "examples" / "product_basis.fusion"
    expected = uncached(monkeypatch, path)
    pipeline.run(path)
    (stored,) = entries(cache_dir / object_cache.FOLDER)
    key = key_of(stored)
    damage(stored, how)
    recomputed = pipeline.run(path)
    assert_same_compilation(recomputed, expected)
    rewritten = object_cache.decode_objects(cache.load_bytes(key, object_cache.FOLDER) or b"",
                                            {"source": recomputed.source})
    assert_same_compilation(rewritten, expected)


def test_a_planted_entry_calls_nothing(cache_dir: Path) -> None:
    assert cache.store_bytes("planted", zlib_pickle(Planted()), object_cache.FOLDER)
    with pytest.raises(pickle.UnpicklingError, match="is not a class"):
        object_cache.decode_objects(cache.load_bytes("planted", object_cache.FOLDER) or b"")
    assert object_cache.cached_objects("planted", lambda: "recomputed") == "recomputed"
    assert object_cache.cached_objects("planted", lambda: "again") == "recomputed"


def zlib_pickle(value: object) -> bytes:
    import zlib

    return zlib.compress(pickle.dumps(value, protocol=5))


def test_a_value_that_cannot_be_stored_is_returned_and_not_stored(cache_dir: Path) -> None:
    value = {"a function": lambda: None}
    assert object_cache.cached_objects("unpicklable", lambda: value) is value
    assert not cache.entry_path("unpicklable", object_cache.FOLDER).exists()


def test_the_disabled_cache_compiles_and_writes_nothing(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    first, second = pipeline.run(CORRELATION4), pipeline.run(CORRELATION4)
    assert first.source_code == second.source_code and first.units == second.units
    assert not cache_dir.parent.exists()


def test_an_unwritable_cache_still_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker / "cache"))
    monkeypatch.delenv(cache.NO_CACHE_ENV, raising=False)
    assert pipeline.run(CORRELATION4).source_code == uncached(monkeypatch, CORRELATION4).source_code


def test_a_changed_source_misses_and_names_are_part_of_the_key(cache_dir: Path) -> None:
    first = pipeline.run(CORRELATION4, "one.fusion")
    renamed = pipeline.run(CORRELATION4, "two.fusion")
    edited = pipeline.run(CORRELATION4.replace("2x", "3x"), "one.fusion")
    assert "# one.fusion:" in first.source_code and "# two.fusion:" in renamed.source_code
    assert edited.source_code != first.source_code
    assert len(entries(cache_dir / object_cache.FOLDER)) == 3


def test_the_object_folder_is_pruned_least_recently_used_first(cache_dir: Path) -> None:
    for k in range(10):
        assert cache.store_bytes(f"entry {k}", bytes(1000), object_cache.FOLDER)
        os.utime(cache.entry_path(f"entry {k}", object_cache.FOLDER), (1000.0 + k, 1000.0 + k))
    size = cache.entry_path("entry 0", object_cache.FOLDER).stat().st_size
    assert object_cache.prune(limit=10 * size) == 0
    assert object_cache.prune(limit=8 * size) == 4   # down to 3/4 of the limit, the oldest first
    kept = sorted(k for k in range(10) if cache.entry_path(f"entry {k}", object_cache.FOLDER).exists())
    assert kept == [4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("command", ["check", "fmt --check", "ir"])
def test_check_fmt_and_ir_do_not_import_torch(command: str) -> None:
    """Nor the planner or networkx (0.2 s each to import): `fusionc check` of the examples takes 0.3 s."""
    files = [str(p) for p in EXAMPLES]
    heavy = ("torch", "networkx", "fusionlang.plan", "jinja2", "numpy")
    script = ("import sys\nfrom fusionlang.cli import main\n"
              f"try:\n    main({command.split()!r} + {files!r})\nexcept SystemExit:\n    pass\n"
              f"print([name for name in {heavy!r} if name in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:] + done.stderr[-2000:]
