"""Inputs for the differential fuzzer (:mod:`fusionlang.fuzz`): valid-looking diagrams and hostile text.

* :func:`random_source` writes a seeded diagram that uses the whole language: plain and graph
  diagrams, linear maps, couplings and nested trees, repeated legs, ``paths = split`` (also into
  targets that other statements write), ``lmax`` edges and outputs, several writers into one
  output, ``per = species``, ``sender``/``receiver``/``neighbours``, the complex basis, SU(2)
  half-integer spins and multiplicities. It tracks what every leg can carry so that most drafts
  are accepted, but it does not avoid what the checker should reject: those are test cases too.
* :func:`hostile_source` writes what no user should write: token mutations and truncations of
  valid sources, unusual unicode (lone surrogates, bidi and zero-width characters, foreign
  digits), huge numbers, deep nesting, thousand-leg fusions, binary junk and NUL bytes.

>>> random_source(7) == random_source(7), hostile_source(7) == hostile_source(7)
(True, True)
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .groups import SU2, Group, Irrep, Irreps, MulIrrep, as_group

__all__ = ["EXAMPLE_SNIPPETS", "Case", "campaign_inputs", "hostile_case", "hostile_source", "random_source"]

_POOLS = {
    "SU2": [Irrep(two_j=two_j, parity=0, group=SU2) for two_j in range(5)],
    "SO3": [Irrep(two_j=2 * l, parity=0, group="SO3") for l in range(3)],
    "O3": [Irrep(two_j=2 * l, parity=p, group="O3") for l in range(3) for p in (1, -1)],
}
_MAX_SPIN = 3  # inferred targets beyond this are cut with `lmax` (keeps cases fast)
_MAX_MUL = 8  # larger implied multiplicities switch the statement to weights (free multiplicity)
_MAX_VOLUME = 1000  # the product of the leaves' dimensions of one statement


@dataclass
class _Leg:
    """What a leg can carry: its irreps, one multiplicity, its graph domain, and how it was declared."""

    irreps: frozenset[Irrep]
    mul: int
    domain: str = "batch"
    used: bool = False
    split: bool = False
    entries: int = 0  # an estimate from above where it is not one entry per irrep: split targets

    @property
    def count(self) -> int:
        return max(self.entries, len(self.irreps))

    @property
    def dim(self) -> int:
        return self.mul * sum(i.dim for i in self.irreps) * max(1, self.count // len(self.irreps))


@dataclass
class _Draft:
    """A diagram being written: header, declarations and statements as text, and the legs."""

    rng: random.Random
    group: Group
    graph: bool
    complex_basis: bool = False
    declarations: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    legs: dict[str, _Leg] = field(default_factory=dict)
    classes: int = 0
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def on(self, domain: str) -> str:
        return f"  [on = {domain}]" if self.graph and domain != "batch" else ""


def random_source(seed: int | str) -> str:
    """A seeded, valid-looking ``.fusion`` source with one diagram called ``fuzz``.

    >>> "diagram fuzz" in random_source(0)
    True
    """
    rng = random.Random(f"diagram:{seed}")
    text = _one_diagram(rng, "fuzz")
    if rng.random() < 0.1:  # two diagrams in one file
        text += "\n" + _one_diagram(rng, "fuzz_b")
    return _layout(rng, text) if rng.random() < 0.3 else text


def _one_diagram(rng: random.Random, name: str) -> str:
    group = as_group(rng.choice(["SU2", "SO3", "O3", "O3"]))
    draft = _Draft(rng, group, graph=rng.random() < 0.35,
                   complex_basis=group.name == "SO3" and rng.random() < 0.4)
    _declare_inputs(draft)
    for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
        _statement(draft)
    split = [name for name, leg in draft.legs.items() if leg.split and not leg.used]
    if split and rng.random() < 0.5:  # another writer into a split target: a linear map, a vertex or a tree
        _statement(draft, rng.choice(split), rng.choice([1, 1, 2, 3]))
    _use_everything(draft)
    head = [f"group {draft.group}"] + (["basis complex"] if draft.complex_basis else [])
    body = "\n".join(f"    {line}" for line in head + draft.declarations + draft.statements)
    return f"diagram {name} {{\n{body}\n}}\n"


_COMMENTS = ("", " note", " é名🧪", " -> x [on = edges]", " }", "#", " \t tab")


def _layout(rng: random.Random, text: str) -> str:
    """The same diagrams spelled differently: comments, blank lines, ``;`` between items, tabs, CRLF."""
    lines: list[str] = []
    for line in text.split("\n"):
        inner = line.startswith("    ")
        if inner and rng.random() < 0.1:
            lines.append(rng.choice(["", "    #" + rng.choice(_COMMENTS)]))
        if inner and lines and lines[-1].startswith("    ") and "#" not in lines[-1] and rng.random() < 0.15:
            lines[-1] += ";" + rng.choice(["", " ", "\t"]) + line.strip()
            continue
        if inner and rng.random() < 0.15:
            line += rng.choice(["  #", " #", "\t#"]) + rng.choice(_COMMENTS)
        lines.append(line.replace("    ", "\t", 1) if inner and rng.random() < 0.1 else line)
    return rng.choice(["\n", "\n", "\n", "\r\n"]).join(lines)


def _irreps_text(draft: _Draft, irreps: Sequence[Irrep], mul: int) -> str:
    entries = sorted(irreps) if draft.rng.random() < 0.7 else list(irreps)
    if len(entries) > 1 and mul > 1 and draft.rng.random() < 0.4:
        return f"{mul}x(" + " + ".join(str(i) for i in entries) + ")"
    return str(Irreps([MulIrrep(mul, i) for i in entries], draft.group))


def _declare_inputs(draft: _Draft) -> None:
    rng = draft.rng
    pool = _POOLS[draft.group.name]
    for k in range(rng.randint(1, 3)):
        irreps = rng.sample(pool, rng.randint(1, 3))
        mul = rng.choice([1, 1, 2, 3])
        domain = ("nodes" if k == 0 or rng.random() < 0.5 else "edges") if draft.graph else "batch"
        name = f"x{k}"
        text = _irreps_text(draft, irreps, mul)
        if rng.random() < 0.1 and len(irreps) > 1:  # mixed multiplicities: most channel modes refuse them
            text = " + ".join(f"{rng.randint(1, 3)}x{i}" for i in irreps)
        draft.declarations.append(f"input  {name} : {text}{draft.on(domain)}")
        draft.legs[name] = _Leg(frozenset(irreps), mul, domain)
    if draft.graph and rng.random() < 0.5:
        draft.classes = rng.randint(1, 4)
        draft.declarations.append(f"index  species : {draft.classes}")


# -- statements -----------------------------------------------------------------------------------

@dataclass
class _Plan:
    """One statement being drafted: argument texts, the legs they read, where it runs, its options."""

    args: list[str]
    legs: list[str]
    domain: str
    options: dict[str, str] = field(default_factory=dict)


def _statement(draft: _Draft, target: str | None = None, arity: int | None = None) -> None:
    """One statement into ``target`` (by default a new edge or output, or one already written)."""
    rng = draft.rng
    plan = _arguments(draft, arity or rng.choice([1, 2, 2, 2, 3, 3, 4, 4, 5]), exclude=target)
    _options(draft, plan)
    if target is None:
        target = _target(draft, plan)
    else:
        _aggregate(draft, plan, draft.legs[target].domain)
    if plan.options.get("paths") == "split":
        _grow(draft, draft.legs[target], plan)
        draft.legs[target].split = True
    shape = _shape(draft, plan.args) if len(plan.args) > 2 else ", ".join(plan.args)
    options = ", ".join(f"{k} = {v}" for k, v in plan.options.items())
    draft.statements.append(f"{shape} -> {target}" + (f"  [{options}]" if options else ""))
    for leg in plan.legs:
        draft.legs[leg].used = True


def _readable(draft: _Draft) -> list[str]:
    """Legs a new statement may read: inputs and internal edges already written (no cycles)."""
    return [name for name, leg in draft.legs.items() if not name.startswith("out")]


def _arguments(draft: _Draft, arity: int, exclude: str | None = None) -> _Plan:
    """``arity`` leaves, unread legs first, sometimes one leg on every leaf; small enough to run fast."""
    rng = draft.rng
    names = [name for name in _readable(draft) if name != exclude]
    unused = [n for n in names if not draft.legs[n].used]
    legs = [rng.choice(unused or names)] + [rng.choice(names) for _ in range(arity - 1)]
    if rng.random() < 0.25 and arity > 1:
        legs = [legs[0]] * arity  # one leg on every leaf (a product basis)
    while len(legs) > 1 and math.prod(draft.legs[leg].dim for leg in legs) > _MAX_VOLUME:
        legs.pop()
    rng.shuffle(legs)
    if not draft.graph:
        return _Plan(list(legs), legs, "batch")
    return _graph_arguments(draft, legs)


def _graph_arguments(draft: _Draft, legs: list[str]) -> _Plan:
    """Graph functions around the leaves, so that the statement runs on edges or on nodes."""
    rng = draft.rng
    domains = [draft.legs[leg].domain for leg in legs]
    if "edges" not in domains and len(legs) > 1 and rng.random() < 0.35:
        k = min(len(legs) - 1, rng.randint(1, 3))
        args = [f"neighbours({leg})" if i >= len(legs) - k else leg for i, leg in enumerate(legs)]
        return _Plan(args, legs, "nodes")
    if "edges" in domains and any(d == "nodes" for d in domains) and rng.random() < 0.3:
        edge = legs[domains.index("edges")]
        args = [f"neighbours({leg})" if leg == edge else leg for leg in legs]
        if args.count(f"neighbours({edge})") <= 3 and all(d == "nodes" or a.startswith("neighbours(")
                                                         for a, d in zip(args, domains, strict=True)):
            return _Plan(args, legs, "nodes")
    if "edges" in domains or rng.random() < 0.5:
        args = [f"{rng.choice(['sender', 'sender', 'receiver'])}({leg})" if d == "nodes" else leg
                for leg, d in zip(legs, domains, strict=True)]
        return _Plan(args, legs, "edges")
    return _Plan(list(legs), legs, "nodes")


def _options(draft: _Draft, plan: _Plan) -> None:
    rng = draft.rng
    muls = [draft.legs[leg].mul for leg in plan.legs]
    channels = rng.choice(["uvw", "uvw", "uvu", "uuu"])
    if channels == "uuu" and len(set(muls)) > 1 and rng.random() < 0.9:
        channels = "uvu"
    linear = len(plan.legs) == 1
    weights = rng.choice(["path", "channel", "external"] if linear else ["none", "none", "path", "channel", "external"])
    if channels != "uvw" or rng.random() < 0.5:
        plan.options["channels"] = channels
    if weights != ("path" if linear else "none") or rng.random() < 0.3:
        plan.options["weights"] = weights
    if not linear and rng.random() < 0.3:
        plan.options["paths"] = "split"
    if channels == "uvw" and weights == "none" and math.prod(muls) > _MAX_MUL:
        plan.options["weights"] = "path"
    if draft.classes and plan.domain == "nodes" and rng.random() < 0.5:
        plan.options["weights"] = "channel"
        plan.options["per"] = "species"


def _reach(draft: _Draft, legs: Sequence[str]) -> frozenset[Irrep]:
    """Every irrep a fusion of ``legs`` can reach (every tree shape reaches the same ones)."""
    found = draft.legs[legs[0]].irreps
    for leg in legs[1:]:
        found = frozenset(c for a in found for b in draft.legs[leg].irreps for c in a * b)
    return found


def _implied_mul(draft: _Draft, plan: _Plan) -> int | None:
    """The target multiplicity the statement's channel mode implies (None: free)."""
    muls = [draft.legs[leg].mul for leg in plan.legs]
    channels = plan.options.get("channels", "uvw")
    weights = plan.options.get("weights", "path" if len(muls) == 1 else "none")
    if channels in ("uvu", "uuu"):
        return muls[0]
    return math.prod(muls) if weights == "none" else None


def _target(draft: _Draft, plan: _Plan) -> str:
    """Choose where the statement writes: a new edge, a new output, or a leg already written."""
    rng = draft.rng
    reach = _reach(draft, plan.legs)
    written = [n for n, leg in draft.legs.items()
               if not leg.used and n not in plan.legs and (n.startswith(("out", "e")))
               and leg.irreps & reach]
    if written and rng.random() < 0.4:
        name = rng.choice(written)
        _aggregate(draft, plan, draft.legs[name].domain)
        return name
    domain = "nodes" if plan.domain == "nodes" or rng.random() < 0.6 else plan.domain
    if not draft.graph:
        domain = "batch"
    _aggregate(draft, plan, domain)
    if rng.random() < 0.5:
        return _new_edge(draft, plan, reach, domain)
    return _new_output(draft, plan, reach, domain)


def _grow(draft: _Draft, leg: _Leg, plan: _Plan) -> None:
    """A split target has about one entry per path: estimate its dimension from above."""
    paths = math.prod(draft.legs[name].count for name in plan.legs) * max(1, len(plan.legs) - 1)
    leg.entries = leg.count + paths


def _aggregate(draft: _Draft, plan: _Plan, target_domain: str) -> None:
    if plan.domain == "edges" and target_domain == "nodes":
        plan.options["aggregate"] = "sum"


def _cut(reach: frozenset[Irrep], lmax: int) -> frozenset[Irrep]:
    return frozenset(i for i in reach if i.two_j <= 2 * lmax)


def _new_edge(draft: _Draft, plan: _Plan, reach: frozenset[Irrep], domain: str) -> str:
    rng = draft.rng
    name = draft.fresh("e")
    mul = _implied_mul(draft, plan) or draft.legs[plan.legs[0]].mul
    top = max(i.two_j for i in reach) // 2
    choice = rng.random()
    if choice < 0.3 or top > _MAX_SPIN:
        lmax = rng.randint(0, min(top, 3))
        draft.declarations.append(f"edge   {name} : lmax {lmax}{draft.on(domain)}")
        reach = _cut(reach, lmax) or reach
    elif choice < 0.5:
        low = sorted(_cut(reach, _MAX_SPIN) or reach)
        chosen = rng.sample(low, rng.randint(1, min(3, len(low))))
        mul = _implied_mul(draft, plan) or rng.randint(1, 3)
        draft.declarations.append(f"edge   {name} : {_irreps_text(draft, chosen, mul)}{draft.on(domain)}")
        reach = frozenset(chosen)
    elif draft.graph and rng.random() < 0.5:
        draft.declarations.append(f"edge   {name}{draft.on(domain)}")
    draft.legs[name] = _Leg(reach, mul, domain)
    return name


def _new_output(draft: _Draft, plan: _Plan, reach: frozenset[Irrep], domain: str) -> str:
    rng = draft.rng
    name = draft.fresh("out")
    on = draft.on(domain)
    top = max(i.two_j for i in reach) // 2
    implied = _implied_mul(draft, plan)
    choice = rng.random()
    if choice < 0.2 and top <= _MAX_SPIN:
        draft.declarations.append(f"output {name}{on}")
        mul = implied or draft.legs[plan.legs[0]].mul
    elif choice < 0.4:
        lmax = rng.randint(0, min(top, 3))
        draft.declarations.append(f"output {name} : lmax {lmax}{on}")
        reach, mul = _cut(reach, lmax) or reach, implied or draft.legs[plan.legs[0]].mul
    else:
        low = sorted(_cut(reach, _MAX_SPIN) or reach)
        reach = frozenset(rng.sample(low, rng.randint(1, min(3, len(low)))))
        mul = implied or rng.randint(1, 3)
        if plan.options.get("paths") == "split":  # a declared split target must list every path's entry
            plan.options.pop("paths")
        draft.declarations.append(f"output {name} : {_irreps_text(draft, sorted(reach), mul)}{on}")
    draft.legs[name] = _Leg(reach, mul, domain)
    return name


def _shape(draft: _Draft, args: list[str]) -> str:
    """The arguments as a fusion tree: folded left to right, or nested with parentheses."""
    rng = draft.rng
    if rng.random() < 0.35:
        return ", ".join(args)
    cut = rng.randint(1, len(args) - 1)
    return f"{_subtree(rng, args[:cut])}, {_subtree(rng, args[cut:])}"


def _subtree(rng: random.Random, args: list[str]) -> str:
    if len(args) == 1:
        return args[0]
    if len(args) == 2 or rng.random() < 0.3:
        return "(" + ", ".join(args) + ")"
    cut = rng.randint(1, len(args) - 1)
    return f"({_subtree(rng, args[:cut])}, {_subtree(rng, args[cut:])})"


def _use_everything(draft: _Draft) -> None:
    """Every input and internal edge is read, and something is an output (E104, E114)."""
    for name, leg in list(draft.legs.items()):
        if leg.used or name.startswith("out"):
            continue
        plan = _Plan([name], [name], leg.domain, {"weights": draft.rng.choice(["channel", "path"])})
        if draft.graph and leg.domain == "edges":
            plan.options["aggregate"] = "sum"
        target = _new_output(draft, plan, leg.irreps, "nodes" if draft.graph else "batch")
        options = ", ".join(f"{k} = {v}" for k, v in plan.options.items())
        draft.statements.append(f"{name} -> {target}  [{options}]")
        leg.used = True


# -- campaigns ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One input of a campaign and how it was made (``diagram``, ``mutated``, ``deep:legs``, ...)."""

    family: str
    text: str


def campaign_inputs(diagrams: int, hostile: int, seed: int = 0) -> list[Case]:
    """The inputs of a campaign: ``diagrams`` random diagrams, then ``hostile`` hostile inputs.

    >>> [case.family for case in campaign_inputs(1, 1)]
    ['diagram', 'mutated']
    """
    return ([Case("diagram", random_source(f"{seed}:{i}")) for i in range(diagrams)]
            + [Case(*hostile_case(f"{seed}:{i}")) for i in range(hostile)])


# -- hostile inputs -------------------------------------------------------------------------------

EXAMPLE_SNIPPETS = (
    "diagram d {\n    group O3\n    input x : 2x0e + 2x1o\n    output y : 2x1o\n    x, x -> y  [channels = uuu]\n}\n",
    "diagram s {\n    group SU2\n    input a, b : 1/2\n    output c : 0 + 1\n    a, b -> c\n}\n",
    "diagram g {\n    group O3\n    input h : 2x(0e + 1o)  [on = nodes]\n    input Y : 0e + 1o  [on = edges]\n"
    "    index species : 2\n    edge m : 2x(0e + 1o)  [on = edges]\n    output B : 2x(0e + 1o)\n"
    "    sender(h), Y -> m  [channels = uvu, weights = external]\n"
    "    h, neighbours(m), neighbours(m) -> B  [channels = uuu, weights = channel, per = species]\n}\n",
    "diagram c {\n    group SO3\n    basis complex\n    input F : 2x(0 + 1)\n    output G : lmax 2\n"
    "    F, F -> G  [channels = uuu, paths = split]\n}\n",
)

_VOCABULARY = (
    "diagram", "group", "input", "output", "edge", "index", "basis", "complex", "real", "lmax", "SU2", "SO3",
    "O3", "channels", "weights", "paths", "per", "aggregate", "on", "uvw", "uvu", "uuu", "none", "path",
    "channel", "external", "sum", "split", "nodes", "edges", "species", "sender", "receiver", "neighbours",
    "{", "}", "(", ")", "[", "]", ",", ":", ";", "->", "=", "+", "x", "/", "#", "\n", "0e", "1o", "2x1o", "1/2",
    "3/2", "1y", "0", "1", "65", "1000000", "-1", "x0", "out",
)
_STRANGE = (
    "\ud800", "\udfff", "\u202e", "\u202d", "\u200f", "\u200b", "\u200d", "\ufeff", "\x00", "\xa0", "\u2028",
    "\u2029", "\x85", "\x0b", "\x0c", "\r", "\u0301", "é", "名", "🧪", "１", "²", "٣", "ℓ", "⊗", "ｘ", "\t", "\\",
    "'", '"', "\ufffd", "\U0010ffff",
)
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|->|\s+|.", re.S)


def hostile_source(seed: int | str) -> str:
    """A seeded input that stresses the front end; most are rejected, none may crash anything.

    >>> isinstance(hostile_source(0), str)
    True
    """
    return hostile_case(seed)[1]


def hostile_case(seed: int | str) -> tuple[str, str]:
    """``(family, text)`` of :func:`hostile_source`: the family names how the text was made
    (``mutated``, ``deep:parentheses``, ``huge:spin``, ...).

    >>> hostile_case(3)[1] == hostile_source(3)
    True
    """
    rng = random.Random(f"hostile:{seed}")
    return rng.choice(_HOSTILE_KINDS)(rng)


def _base(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return random_source(f"h{rng.randrange(10**9)}")
    return rng.choice(EXAMPLE_SNIPPETS + _examples())


@functools.cache
def _examples() -> tuple[str, ...]:
    """The repository's example files, when this is a source checkout (the wheel has none)."""
    folder = Path(__file__).resolve().parent.parent / "examples"
    return tuple(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.fusion")))


def _mutated(rng: random.Random) -> str:
    tokens = _TOKEN.findall(_base(rng))
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(len(tokens))
        action = rng.choice(["delete", "duplicate", "swap", "replace", "insert"])
        if action == "delete":
            del tokens[k]
        elif action == "duplicate":
            tokens.insert(k, tokens[k])
        elif action == "swap":
            j = rng.randrange(len(tokens))
            tokens[k], tokens[j] = tokens[j], tokens[k]
        else:
            word = rng.choice(_VOCABULARY)
            tokens[k:k + (action == "replace")] = [word]
        if not tokens:
            tokens = [" "]
    return "".join(tokens)


def _truncated(rng: random.Random) -> str:
    text = _base(rng)
    return text[:rng.randint(0, len(text))]


def _unicode(rng: random.Random) -> str:
    chars = list(_base(rng))
    for _ in range(rng.randint(1, 5)):
        strange = "".join(rng.choice(_STRANGE) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.4:  # inside a comment, where anything goes
            chars.insert(rng.randrange(len(chars) + 1), f"\n# {strange}\n")
        else:
            chars.insert(rng.randrange(len(chars) + 1), strange)
    return "".join(chars)


def _diagram(lines: Sequence[str], group: str = "O3") -> str:
    return "diagram h {\n    group " + group + "\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


def _huge(rng: random.Random) -> tuple[str, str]:
    big = str(10 ** rng.choice([5, 6, 9, 20, 50]))
    nested = "0e"
    for _ in range(rng.choice([2, 10, 50])):
        nested = f"2x({nested})"
    bad = rng.choice(["0", "-1", "0x0e", "1.5", "1e5", "0x1o", "²", "٣", "１"])
    choices: dict[str, Callable[[], str]] = {
        "nested-multiplicity": lambda: _diagram(["input x : 100000x(100000x0e)", "output y : 0e",
                                                  "x -> y  [weights = channel]"]),
        "multiplicity": lambda: _diagram([f"input x : {big}x0e", "output y : 0e", "x -> y"]),
        "spin": lambda: _diagram([f"input x : {big}e", "output y", "x -> y"]),
        "edge-lmax": lambda: _diagram(["input x : 1o", f"edge e : lmax {big}", "output y : 0e", "x, x -> e", "e -> y"]),
        "output-lmax": lambda: _diagram(["input x : 1o", f"output y : lmax {big}", "x, x -> y"]),
        "multiplicity-chain": lambda: _diagram([f"input x : {nested}", "output y : 0e", "x -> y  [weights = path]"]),
        "channels-and-spin": lambda: _diagram(["input x : 100000x100e", "output y : 100000x100e", "x -> y"]),
        "half-spin": lambda: _diagram([f"input a, b : {big}/2", "output c", "a, b -> c"], "SU2"),
        "classes": lambda: _diagram(["input h : 0e  [on = nodes]", f"index species : {big}", "output y : 0e",
                                     "h -> y  [weights = channel, per = species]"]),
        "odd-number": lambda: _diagram([f"input x : {bad}x0e", f"edge e : lmax {bad}", "output y : 0e",
                                        "x, x -> e", "e -> y"]),
    }
    name = rng.choice(sorted(choices))
    return f"huge:{name}", choices[name]()


def _deep(rng: random.Random) -> tuple[str, str]:
    depth = rng.choice([64, 65, 100, 1000, 10000])
    legs = rng.choice([10, 12, 13, 100, 1000])
    choices: dict[str, Callable[[], str]] = {
        "parentheses": lambda: _diagram(["input x : 1o", "output y : 1o",
                                         "(" * depth + "x" + ")" * depth + ", x -> y"]),
        "irreps-parentheses": lambda: _diagram(["input x : " + "(" * depth + "1o" + ")" * depth, "output y : 1o",
                                                "x -> y"]),
        "legs-uuu": lambda: _diagram(["input x : 0e", "output y : 0e",
                                      ", ".join(["x"] * legs) + " -> y  [channels = uuu]"]),
        "legs": lambda: _diagram(["input x : 0e", "output y", ", ".join(["x"] * legs) + " -> y"]),
        "nested-legs": lambda: _diagram(["input x : 0e + 1o", "output y : 0e", _nested_args(legs) + " -> y"]),
        "statements": lambda: _diagram([f"input x{k} : 0e" for k in range(legs)] + ["output y : 0e"]
                                       + [f"x{k} -> y" for k in range(legs)]),
        "options": lambda: _diagram(["input x : 0e", "output y : 0e",
                                     "x -> y" + "  [weights = path]" * rng.choice([2, 100])]),
        "long-name": lambda: "diagram " + "d" * 100_000 + " { group O3 }",
        "blank-lines": lambda: "\n" * 100_000,
        "long-comment": lambda: "# " + "x" * 1_000_000,
        "diagrams": lambda: "".join(f"diagram d{k} {{\n    group O3\n    input x : 0e\n    output y : 0e\n"
                                    f"    x -> y\n}}\n" for k in range(rng.choice([2, 200]))),
    }
    name = rng.choice(sorted(choices))
    return f"deep:{name}", choices[name]()


def _nested_args(legs: int) -> str:
    text = "x"
    for _ in range(legs - 1):
        text = f"(x, {text})"
    return text


def _junk(rng: random.Random) -> tuple[str, str]:
    size = rng.choice([0, 1, 10, 100, 1000])
    data = bytes(rng.randrange(256) for _ in range(size))
    choices: dict[str, Callable[[], str]] = {
        "latin-1": lambda: data.decode("latin-1"),
        "surrogateescape": lambda: data.decode("utf-8", errors="surrogateescape"),
        "nul": lambda: _base(rng).replace(" ", "\x00", rng.randint(1, 3)),
        "ascii": lambda: "".join(chr(rng.randrange(32, 127)) for _ in range(size)),
        "tail": lambda: _base(rng) + data.decode("latin-1"),
        "whitespace": lambda: " \t\r\n" * rng.randint(0, 5),
    }
    name = rng.choice(sorted(choices))
    return f"junk:{name}", choices[name]()


def _named(family: str, kind: Callable[[random.Random], str]) -> Callable[[random.Random], tuple[str, str]]:
    return lambda rng: (family, kind(rng))


_HOSTILE_KINDS: tuple[Callable[[random.Random], tuple[str, str]], ...] = (
    *[_named("mutated", _mutated)] * 4, _named("truncated", _truncated), *[_named("unicode", _unicode)] * 2,
    _huge, _huge, _deep, _deep, _junk,
)
