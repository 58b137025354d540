"""Modules compiled in memory are released: ``sys.modules`` and ``linecache`` hold a generated
module only while something of it (the compile result, a class, an instance) is alive, so
thousands of compiles in one process do not accumulate; pickling, ``torch.save``/``torch.load``,
deepcopy and TorchScript keep working on modules whose compile result is long gone."""

from __future__ import annotations

import copy
import gc
import io
import linecache
import os
import pickle
import subprocess
import sys
import threading
import traceback
import warnings
from pathlib import Path

import pytest
import torch

from fusionlang import api, runtime

ROOT = Path(__file__).resolve().parent.parent


def small(number: int) -> str:
    """A distinct small diagram (distinct source, hence a distinct generated module)."""
    return f"diagram d{number} {{ group O3\n input x : {number % 7 + 1}x0e + 1o\n output y : 0e + 1o\n x -> y }}"


def registered() -> tuple[set[str], set[str]]:
    """The generated modules in ``sys.modules`` and their sources in ``linecache``."""
    modules = {name for name in list(sys.modules) if name.startswith(runtime.PACKAGE + ".")}
    lines = {name for name in list(linecache.cache) if str(name).startswith("<fusionlang-generated ")}
    return modules, lines


def collect() -> None:
    """Collect garbage and drop what it released (the next compile would do it too)."""
    gc.collect()
    runtime.release_collected()


@pytest.fixture
def clean() -> None:
    """Start from no cached compile results and collected garbage."""
    api._cache.clear()
    collect()


def test_a_thousand_compiles_keep_a_bounded_number_of_modules(clean: None) -> None:
    before_modules, before_lines = registered()
    peak = 0
    for number in range(1000):  # no explicit collection: the runtime's own bound holds
        result = api.compile(small(number), name=f"small{number}.fusion")
        assert result.module.__name__ in sys.modules
        modules, lines = registered()
        assert len(lines - before_lines) == len(modules - before_modules)
        peak = max(peak, len(modules - before_modules))
    # the API's LRU cache of compile results, plus at most COLLECT_EVERY released since the last collection
    assert peak <= api._CACHE_SIZE + runtime.COLLECT_EVERY + 1
    del result
    collect()
    modules, lines = registered()
    assert len(modules - before_modules) <= api._CACHE_SIZE and len(lines - before_lines) <= api._CACHE_SIZE
    api._cache.clear()
    collect()
    modules, lines = registered()
    assert modules <= before_modules and lines <= before_lines


def test_registrations_live_exactly_as_long_as_the_module(clean: None) -> None:
    result = api.compile(small(1), name="alive.fusion")
    name, filename = result.module.__name__, result.module.__file__
    module = result.module_class()()
    del result
    api._cache.clear()
    collect()
    assert name in sys.modules and filename in linecache.cache  # an instance keeps its module
    assert sys.modules[name].d1 is type(module)                  # found by name, as pickle does
    del module
    collect()
    assert name not in sys.modules and filename not in linecache.cache


def test_instances_pickle_save_and_copy_after_their_compile_result_is_gone(clean: None) -> None:
    result = api.compile(small(2), name="kept.fusion")
    module = result.module_class()()
    cls = type(module)
    del result
    api._cache.clear()
    collect()
    x = torch.randn(5, 6)
    expected = module(x)
    for copied in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert type(copied) is cls and torch.equal(copied(x), expected)
    assert pickle.loads(pickle.dumps(cls)) is cls  # classes pickle by name while they live
    buffer = io.BytesIO()
    torch.save({"module": module, "x": x, "out": expected}, buffer)
    name = cls.__module__
    del module, cls, copied
    collect()
    assert name not in sys.modules  # released: loading compiles the source again
    buffer.seek(0)
    data = torch.load(buffer, weights_only=False)
    assert torch.equal(data["module"](data["x"]), data["out"])
    assert name in sys.modules
    state = io.BytesIO()
    torch.save(data["module"].state_dict(), state)
    state.seek(0)
    fresh = type(data["module"])()
    fresh.load_state_dict(torch.load(state, weights_only=True))
    assert torch.equal(fresh(data["x"]), data["out"])
    del data, fresh
    collect()
    assert name not in sys.modules


def test_torchscript_and_tracebacks_read_the_source_of_a_module_whose_result_is_gone(clean: None) -> None:
    result = api.compile(small(3), name="script.fusion")
    module = result.module_class()()
    del result
    api._cache.clear()
    collect()
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it must still work
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    x = torch.randn(4, 7)
    assert torch.allclose(scripted(x), module(x))
    try:
        module(torch.randn(4, 8))
    except ValueError as failure:
        text = "".join(traceback.format_exception(failure))
    assert "runtime.check_feature(" in text  # the generated line, read from linecache


def test_the_collector_never_changes_sys_modules_or_linecache_itself(clean: None) -> None:
    """Finalisers run at any allocation, e.g. inside ``linecache.checkcache``'s walk over a list
    of keys taken before: they only queue the release, which the next load (or
    ``release_collected``) does."""
    result = api.compile(small(4), name="queued.fusion")
    name, filename = result.module.__name__, result.module.__file__
    del result
    api._cache.clear()
    keys = list(linecache.cache)  # linecache.checkcache's walk, with a collection in between
    gc.collect()
    assert all(linecache.cache[key] is not None for key in keys)
    assert name in sys.modules and filename in linecache.cache and runtime._PENDING
    runtime.load_generated("_fusionlang_release_probe", "X = 1\n")
    assert name not in sys.modules and filename not in linecache.cache and not runtime._PENDING


def test_releases_from_several_threads_are_safe(clean: None) -> None:
    def work(offset: int) -> None:
        for number in range(offset, offset + 40):
            runtime.load_generated(f"{runtime.PACKAGE}.threaded{number}", f"VALUE = {number}\n")
            if number % 10 == 0:
                gc.collect()

    before = registered()
    threads = [threading.Thread(target=work, args=(100 * k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    collect()
    modules, lines = registered()
    assert modules <= before[0] and lines <= before[1]


def test_a_module_loaded_again_keeps_its_own_registrations(clean: None) -> None:
    """A released module's late finaliser never removes a newer module of the same name."""
    source = "VALUE = 1\n"
    first = runtime.load_generated(f"{runtime.PACKAGE}.again", source)
    assert runtime.load_generated(f"{runtime.PACKAGE}.again", source) is first
    del first
    collect()
    second = runtime.load_generated(f"{runtime.PACKAGE}.again", source)
    registration = sys.modules[f"{runtime.PACKAGE}.again"]
    runtime._unregister(f"{runtime.PACKAGE}.again", second.__file__, None, [])  # a stale release: no-op
    assert sys.modules[f"{runtime.PACKAGE}.again"] is registration and second.__file__ in linecache.cache
    assert registration.VALUE == 1
    del second
    collect()
    assert f"{runtime.PACKAGE}.again" not in sys.modules


def test_a_failing_source_leaves_nothing_registered() -> None:
    with pytest.raises(ZeroDivisionError):
        runtime.load_generated(f"{runtime.PACKAGE}.broken", "VALUE = 1 / 0\n")
    assert f"{runtime.PACKAGE}.broken" not in sys.modules
    assert f"<fusionlang-generated {runtime.PACKAGE}.broken>" not in linecache.cache


def test_a_module_saved_in_one_process_loads_and_is_released_in_another(tmp_path: Path) -> None:
    result = api.compile(small(5), name="saved.fusion")
    module = result.module_class()()
    x = torch.randn(3, 9)
    torch.save({"module": module, "x": x, "out": module(x)}, tmp_path / "m.pt")
    script = ("import gc, sys, torch\n"
              "data = torch.load(sys.argv[1], weights_only=False)\n"
              "assert torch.equal(data['module'](data['x']), data['out'])\n"
              "name = type(data['module']).__module__\n"
              "assert name in sys.modules\n"
              "del data\n"
              "gc.collect()\n"
              "from fusionlang import runtime\n"
              "runtime.release_collected()\n"
              "print(name in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.pt")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
