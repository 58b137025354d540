"""The differential fuzzer (fusionlang.fuzz): its generators, its oracle, and a small campaign that
must find nothing. Long campaigns: ``scripts/fuzz.py --diagrams 20000 --hostile 10000``."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from fusionlang.frontend import check_source
from fusionlang.fuzz import DEFECTS, Outcome, Runner, campaign_inputs, exception_site, run_case
from fusionlang.fuzz_inputs import hostile_source, random_source

CI_DIAGRAMS, CI_HOSTILE, CI_SEED = 150, 300, 20260101


def test_generators_are_seeded() -> None:
    assert [random_source(k) for k in range(5)] == [random_source(k) for k in range(5)]
    assert [hostile_source(k) for k in range(5)] == [hostile_source(k) for k in range(5)]
    assert len({random_source(k) for k in range(50)}) == 50


def test_random_diagrams_cover_the_language() -> None:
    texts = [random_source(k) for k in range(300)]
    features = {
        "split": r"paths = split", "lmax": r": lmax \d", "per": r"per = species", "neighbours": r"neighbours\(",
        "sender": r"sender\(", "complex": r"basis complex", "half-integer": r"\b\d+/2\b", "nested tree": r"\(\(|\)\)",
        "multiplicity": r"\b[2-9]x", "inferred output": r"output out\d+\s*(\[|$)", "graph": r"\[on = edges\]",
        "aggregate": r"aggregate = sum", "external": r"weights = external", "uuu": r"channels = uuu",
    }
    missing = [name for name, pattern in features.items() if not any(re.search(pattern, t, re.M) for t in texts)]
    assert not missing
    writers = [Counter(re.findall(r"-> (\w+)", t)) for t in texts]
    assert any(max(w.values()) > 1 for w in writers), "no output written by several statements"


def _accepted(text: str) -> bool:
    try:
        return check_source(text).ok
    except Exception:  # noqa: BLE001 - a defect, which the campaign below reports
        return False


def test_most_random_diagrams_are_accepted() -> None:
    assert sum(_accepted(random_source(k)) for k in range(100)) >= 50


def test_hostile_inputs_cover_the_families() -> None:
    texts = [hostile_source(k) for k in range(600)]
    assert any("\ud800" in t or "\udfff" in t for t in texts)
    assert any("\x00" in t for t in texts)
    assert any("\u202e" in t or "\u200b" in t for t in texts)
    assert any("(" * 1000 in t for t in texts)
    assert any(t.count("x, ") >= 999 for t in texts)
    assert any("100000x(100000x0e)" in t for t in texts)


def test_the_oracle_classifies() -> None:
    assert run_case("diagram d { group O3\n input x : 1o\n output y : 1o\n x -> y }").kind == "ok"
    assert run_case("diagram d { group O3\n input x : 1o\n output y : 0o\n x -> y }").kind == "rejected"
    assert run_case("").kind == "rejected"  # no diagram: check has nothing to say, compile refuses (E114)
    assert run_case("\x00\ud800").kind == "rejected"


def test_an_exception_site_names_the_innermost_function() -> None:
    def inner() -> None:
        raise KeyError("x")
    try:
        inner()
    except KeyError as failure:
        assert exception_site(failure) == "KeyError@test_fuzz.inner"


def test_the_runner_reports_hangs() -> None:
    with Runner(timeout=0.01) as runner:
        outcome = runner.outcome("diagram d { group O3\n input x : 4x(0e + 1o + 2e)\n output y\n x, x, x -> y }")
    assert outcome.kind == "hang" and outcome.is_defect


@pytest.mark.slow
def test_a_small_campaign_finds_no_defect() -> None:
    texts = [case.text for case in campaign_inputs(CI_DIAGRAMS, CI_HOSTILE, CI_SEED)]
    found: dict[str, tuple[str, Outcome]] = {}
    counts: Counter[str] = Counter()
    with Runner(jobs=2, timeout=10.0) as runner:
        for index, outcome in runner.run(texts, CI_SEED):
            counts[outcome.kind] += 1
            if outcome.is_defect:
                found.setdefault(outcome.signature, (texts[index], outcome))
    assert counts["ok"] >= CI_DIAGRAMS // 3, counts
    report = "\n\n".join(f"{signature}\n{text[:400]!r}\n{outcome.detail[-600:]}"
                         for signature, (text, outcome) in sorted(found.items()))
    assert not any(counts[k] for k in DEFECTS), f"{dict(counts)}\n\n{report}"
