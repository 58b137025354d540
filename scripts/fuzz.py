"""Run a fuzzing campaign against the fusionlang compiler and report every distinct defect.

    .venv/bin/python scripts/fuzz.py --diagrams 3000 --hostile 3000 --seed 0 --jobs 1 --out /tmp/fuzz

Each input is classified by ``fusionlang.fuzz.run_case`` (rejected, ok, or a defect: traceback,
not_equivariant, reference_mismatch, bad_output, accepts_misshaped, late_rejection,
bad_diagnostic, fmt_roundtrip, hang, crash) in worker processes with a per-case time budget.
The counts per class are printed; every distinct defect (deduplicated by class, stage and
exception site) is shrunk and written to ``--out``: ``NNN.fusion`` (the shrunk source),
``NNN.json`` (exact sources, ASCII-escaped, and the traceback) and ``findings.md`` (all of them).
The exit status is 1 when any defect was found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fusionlang.fuzz import Campaign, Outcome, Runner, campaign_inputs, minimize


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cases = campaign_inputs(args.diagrams, args.hostile, args.seed)
    texts = [case.text for case in cases]
    started = time.monotonic()
    found = Campaign()
    with Runner(args.jobs, args.timeout, args.memory_gib) as runner:
        for index, outcome in _progress(runner.run(texts, args.seed), len(texts), args.quiet):
            found.add(cases[index], outcome)
            if outcome.is_defect and not args.quiet:
                print(f"[{index}] {outcome.signature}", file=sys.stderr)
        elapsed = time.monotonic() - started
        print(f"{len(texts)} cases ({args.diagrams} diagrams, {args.hostile} hostile, seed {args.seed}) "
              f"in {elapsed:.0f} s")
        print(found.summary())
        for signature, (_text, _outcome, hits) in sorted(found.defects.items()):
            print(f"  {hits:5d}  {signature}")
        if args.out is not None:
            _write(found, runner, args)
    return 1 if found.defect_count else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--diagrams", type=int, default=1000, help="random valid-looking diagrams")
    parser.add_argument("--hostile", type=int, default=1000, help="hostile inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it is a hang")
    parser.add_argument("--memory-gib", type=float, default=6.0, help="address space of one worker")
    parser.add_argument("--out", type=Path, default=None, help="folder for the defects found")
    parser.add_argument("--no-minimize", action="store_true", help="write defects as found, unshrunk")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no defect lines")
    return parser


def _progress(results: Iterator[tuple[int, Outcome]], total: int, quiet: bool) -> Iterator[tuple[int, Outcome]]:
    if quiet:
        return results
    try:
        from tqdm import tqdm
    except ImportError:
        return results
    return iter(tqdm(results, total=total, file=sys.stderr, smoothing=0.05))


def _write(found: Campaign, runner: Runner, args: argparse.Namespace) -> None:
    """One ``.fusion``, one ``.json`` per defect signature, and ``findings.md`` with all of them."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sections = [f"# Fuzz findings\n\n`scripts/fuzz.py --diagrams {args.diagrams} --hostile {args.hostile} "
                f"--seed {args.seed}`: {found.summary()}\n"]
    for number, (signature, (text, outcome, hits)) in enumerate(sorted(found.defects.items()), 1):
        minimal = text if args.no_minimize else minimize(text, outcome, runner)
        stem = out / f"{number:03d}-{outcome.kind}"
        stem.with_suffix(".fusion").write_text(minimal, encoding="utf-8", errors="surrogatepass")
        stem.with_suffix(".json").write_text(_record(signature, text, minimal, outcome, hits), encoding="ascii")
        sections.append(describe(signature, outcome, hits, minimal))
        sections[-1] += f"\nreproduce exactly: `{stem.with_suffix('.json')}` (key `minimal`)\n"
    (out / "findings.md").write_text("\n".join(sections), encoding="utf-8", errors="surrogatepass")
    print(f"wrote {len(found.defects)} defects to {out}")


def describe(signature: str, outcome: Outcome, hits: int, minimal: str) -> str:
    """A defect as Markdown: signature, count, the minimal source, the detail."""
    fence = "```"
    return (f"## {signature}  ({hits} case{'s' if hits != 1 else ''})\n\n"
            f"stage `{outcome.stage}`, class `{outcome.kind}`\n\n{fence}fusion\n{_printable(minimal)}\n{fence}\n\n"
            f"{fence}\n{outcome.detail[-3000:]}\n{fence}\n")


def _printable(text: str) -> str:
    """Text with what a terminal would hide or break (controls, surrogates, bidi) escaped."""
    if len(text) > 3000:
        text = text[:1500] + f"\n... ({len(text)} characters) ...\n" + text[-1500:]
    return "".join(c if (c.isprintable() or c == "\n") and not 0xD800 <= ord(c) <= 0xDFFF
                   and c not in "\u202e\u202d\u200f\u200b\u200d\ufeff" else ascii(c)[1:-1] for c in text)


def _record(signature: str, text: str, minimal: str, outcome: Outcome, hits: int) -> str:
    return json.dumps({"signature": signature, "kind": outcome.kind, "stage": outcome.stage, "site": outcome.site,
                       "hits": hits, "minimal": minimal, "source": text, "detail": outcome.detail}, indent=2)


if __name__ == "__main__":
    sys.exit(main())
