"""Tests for fusionlang.cache: damaged, missing, unwritable and concurrently filled caches."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from fusionlang import cache


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "does" / "not" / "exist" / "yet"
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(root))
    monkeypatch.delenv(cache.NO_CACHE_ENV, raising=False)
    return root


class Counter:
    """A compute function that records how often it ran."""

    def __init__(self, value: dict[str, torch.Tensor]) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {name: tensor.clone() for name, tensor in self.value.items()}


def _sample_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "real": torch.randn(3, 4, 5, dtype=torch.float64, generator=generator),
        "complex": torch.randn(2, 3, dtype=torch.complex128, generator=generator),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.int64),
        "flags": torch.tensor([True, False]),
    }


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].dtype == expected[name].dtype
        torch.testing.assert_close(actual[name], expected[name], atol=0, rtol=0)


def test_location_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cache.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_directory() == tmp_path / "xdg" / "fusionlang" / cache.package_version()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_directory() == tmp_path / "home" / ".cache" / "fusionlang" / cache.package_version()
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "explicit"))
    assert cache.cache_directory().parent == tmp_path / "explicit"
    digest = hashlib.sha256(b"some key").hexdigest()
    assert cache.entry_path("some key") == cache.cache_directory() / f"{digest}.flc"


def test_tensor_codec_round_trip() -> None:
    tensors = _sample_tensors()
    tensors["strided"] = torch.arange(12.0).reshape(3, 4).T  # non-contiguous input
    _assert_same(cache.decode_tensors(cache.encode_tensors(tensors)), tensors)


@pytest.mark.parametrize("cut", [0, 1, 5, 20, -1])
def test_codec_rejects_truncated_payloads(cut: int) -> None:
    payload = cache.encode_tensors(_sample_tensors())
    with pytest.raises(Exception):  # noqa: B017 (any decoding error is acceptable)
        cache.decode_tensors(payload[:cut])


def test_missing_directory_is_created_and_reused(cache_dir: Path) -> None:
    compute = Counter(_sample_tensors())
    _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert cache.entry_path("k").is_file()
    _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert compute.calls == 1


def test_keys_do_not_collide(cache_dir: Path) -> None:
    ones = cache.cached_tensors("a", lambda: {"x": torch.ones(2)})
    zeros = cache.cached_tensors("b", lambda: {"x": torch.zeros(2)})
    assert ones["x"].tolist() == [1.0, 1.0] and zeros["x"].tolist() == [0.0, 0.0]
    assert cache.cached_tensors("a", lambda: {"x": torch.full((2,), 7.0)})["x"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("keep", [0, 3, 23, 24, 40, -1])
def test_truncated_file_is_recomputed_and_repaired(cache_dir: Path, keep: int) -> None:
    compute = Counter(_sample_tensors())
    cache.cached_tensors("k", compute)
    path = cache.entry_path("k")
    path.write_bytes(path.read_bytes()[:keep])
    _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert compute.calls == 2
    _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert compute.calls == 2  # the recomputed value was written back


@pytest.mark.parametrize("kind", ["garbage", "flipped_byte", "trailing", "other_key", "directory"])
def test_corrupted_file_is_recomputed(cache_dir: Path, kind: str) -> None:
    compute = Counter(_sample_tensors())
    cache.cached_tensors("k", compute)
    path = cache.entry_path("k")
    blob = bytearray(path.read_bytes())
    if kind == "garbage":
        path.write_bytes(os.urandom(len(blob)))
    elif kind == "flipped_byte":
        blob[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(blob))
    elif kind == "trailing":
        path.write_bytes(bytes(blob) + b"\0")
    elif kind == "other_key":
        cache.cached_tensors("other", lambda: {"x": torch.ones(1)})
        path.write_bytes(cache.entry_path("other").read_bytes())
    else:
        path.unlink()
        path.mkdir()
    _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert compute.calls == 2


def test_valid_frame_with_undecodable_payload_is_recomputed(cache_dir: Path) -> None:
    assert cache.store_bytes("k", b"\x01\x00\x00\x00 definitely not tensors")
    compute = Counter(_sample_tensors())
    _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert compute.calls == 1


def test_failed_validation_is_recomputed(cache_dir: Path) -> None:
    cache.cached_tensors("k", lambda: {"x": torch.zeros(3)})
    value = cache.cached_tensors("k", lambda: {"x": torch.ones(3)}, validate=lambda d: d["x"].sum() > 0)
    assert value["x"].tolist() == [1.0, 1.0, 1.0]


def test_directory_under_a_regular_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker / "cache"))
    compute = Counter(_sample_tensors())
    for _ in range(2):
        _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert compute.calls == 2
    assert cache.store_bytes("k", b"x") is False and cache.load_bytes("k") is None


def test_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(root))
    root.chmod(0o500)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running with privileges that ignore directory permissions")
        compute = Counter(_sample_tensors())
        for _ in range(2):
            _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
        assert compute.calls == 2
    finally:
        root.chmod(0o700)


def test_unreadable_entry(cache_dir: Path) -> None:
    compute = Counter(_sample_tensors())
    cache.cached_tensors("k", compute)
    path = cache.entry_path("k")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with privileges that ignore file permissions")
        _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
        assert compute.calls == 2
    finally:
        path.chmod(0o600)


def test_no_cache_switch(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    compute = Counter(_sample_tensors())
    for _ in range(2):
        _assert_same(cache.cached_tensors("k", compute), _sample_tensors())
    assert compute.calls == 2
    assert not cache_dir.exists()
    monkeypatch.setenv(cache.NO_CACHE_ENV, "0")
    assert cache.cache_enabled()


def test_no_temporary_files_left_behind(cache_dir: Path) -> None:
    for index in range(5):
        cache.cached_bytes(f"key-{index}", lambda index=index: bytes([index]) * 100)
    names = sorted(path.name for path in cache.cache_directory().iterdir())
    assert len(names) == 5 and all(name.endswith(".flc") and not name.startswith(".") for name in names)


def test_failures_do_not_warn_or_log_above_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker))
    with caplog.at_level("DEBUG", logger="fusionlang.cache"):
        assert cache.cached_bytes("k", lambda: b"v") == b"v"
    assert caplog.records and all(record.levelname == "DEBUG" for record in caplog.records)


# ---------------------------------------------------------------- concurrency

KEYS = [f"concurrent/{index}" for index in range(40)]


def _expected_value(key: str) -> torch.Tensor:
    seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return torch.randn(64, 65, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _fill_cache(worker: int) -> list[str]:
    """Runs in a spawned process: fill (and re-read) every key, report wrong values."""
    problems = []
    for round_index in range(3):
        order = KEYS if (worker + round_index) % 2 == 0 else KEYS[::-1]
        for key in order:
            value = cache.cached_tensors(key, lambda key=key: {"v": _expected_value(key)})["v"]
            if not torch.equal(value, _expected_value(key)):
                problems.append(f"worker {worker} round {round_index}: wrong value for {key}")
    return problems


def test_concurrent_filling_from_several_processes(cache_dir: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        reports = pool.map(_fill_cache, range(4))
    assert [problem for report in reports for problem in report] == []
    for key in KEYS:
        payload = cache.load_bytes(key)
        assert payload is not None, key
        assert torch.equal(cache.decode_tensors(payload)["v"], _expected_value(key))
    leftovers = [p.name for p in cache.cache_directory().iterdir() if not p.name.endswith(".flc")]
    assert leftovers == []
