"""Time to check large generated diagrams (target: a 500-vertex diagram in < 0.5 s).

    python benchmarks/bench_check.py
"""

from __future__ import annotations

import statistics
import time

from fusionlang.frontend import check_source


def chain(vertices: int) -> str:
    """A chain of `vertices` couplings, each internal edge declared (fixed slots)."""
    lines = ["diagram chain { group O3", " input x : 4x(0e + 1o + 2e)", " output y : 4x(0e + 1o)"]
    previous = "x"
    for k in range(vertices - 1):
        lines += [f" edge e{k} : 4x(0e + 1o + 2e)", f" {previous}, x -> e{k} [channels = uuu, weights = path]"]
        previous = f"e{k}"
    return "\n".join(lines + [f" {previous}, x -> y [channels = uuu, weights = path]", "}"])


def inferred_tree(vertices: int) -> str:
    """A balanced tree of couplings whose internal edges are all inferred (lmax-limited)."""
    leaves = vertices + 1
    lines = ["diagram tree { group SU2", f" input {', '.join(f'x{i}' for i in range(leaves))} : 1/2 + 1",
             " output y : 1/2 + 3/2"]
    level = [f"x{i}" for i in range(leaves)]
    count = 0
    while len(level) > 1:
        following = []
        for left, right in zip(level[0::2], level[1::2], strict=False):
            name = "y" if len(level) == 2 else f"t{count}"
            if name != "y":
                lines.append(f" edge {name} : lmax 3")
            lines.append(f" {left}, {right} -> {name}")
            following.append(name)
            count += 1
        if len(level) % 2:
            following.append(level[-1])
        level = following
    return "\n".join(lines + ["}"])


def measure(source: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = check_source(source)
        times.append(time.perf_counter() - start)
        assert result.ok, result.render()
    return statistics.median(times)


def main() -> None:
    check_source(chain(2))  # warm imports and the grammar
    print(f"{'diagram':<32} {'vertices':>8} {'median':>10} {'target':>8}")
    for name, source, vertices in [("chain, declared edges", chain(500), 500),
                                   ("balanced tree, inferred edges", inferred_tree(511), 511)]:
        seconds = measure(source)
        verdict = "OK" if seconds < 0.5 else "SLOW"
        print(f"{name:<32} {vertices:>8} {seconds * 1000:>8.1f}ms {'< 500ms':>8} [{verdict}]")


if __name__ == "__main__":
    main()
