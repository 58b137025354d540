"""Irreps inference and path enumeration.

Three sweeps over the statements in dependency order:

1. forward: which irreps can reach every edge from the inputs (selection rules at each vertex,
   ``lmax`` and declared irreps as filters);
2. backward: which of those can still reach a declared output (arc consistency on each tree,
   which is exact on trees), pruning dead paths;
3. paths: every assignment of irreps to a statement's edges, with the multiplicities its channel
   mode implies; inferred edges get one entry per irrep, in e3nn's sorted order.
"""

from __future__ import annotations

from collections import ChainMap, Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import islice

from . import ir
from .checks import topological_order
from .diagnostics import Diagnostic
from .groups import Irrep, Irreps, MulIrrep, selection_problem
from .limits import DEFAULT, Limits
from .resources import spin_bound

IrrepSet = frozenset[Irrep]


@dataclass
class _Inference:
    diagram: ir.Diagram
    limits: Limits = DEFAULT
    problems: list[Diagnostic] = field(default_factory=list)
    readable: dict[str, IrrepSet] = field(default_factory=dict)   # irreps a reader can see
    produced: dict[str, set[Irrep]] = field(default_factory=dict)  # irreps writers deliver
    needed: dict[str, set[Irrep]] = field(default_factory=dict)    # irreps some output needs
    failed: set[int] = field(default_factory=set)                  # statements already diagnosed
    _writers: dict[str, tuple[ir.Statement, ...]] = field(default_factory=dict)
    _legs: dict[str, ir.Leg] = field(default_factory=dict)

    def leg(self, name: str) -> ir.Leg:
        if not self._legs:
            self._legs = {leg.name: leg for leg in self.diagram.legs}
        return self._legs[name]

    def writers(self, name: str) -> tuple[ir.Statement, ...]:
        """The statements writing ``name`` (indexed once: diagrams may have thousands)."""
        if not self._writers:
            index: dict[str, list[ir.Statement]] = {}
            for statement in self.diagram.statements:
                index.setdefault(statement.target, []).append(statement)
            self._writers = {name: tuple(found) for name, found in index.items()}
        return self._writers.get(name, ())

    def report(self, code: str, message: str, span: object, **extra: object) -> None:
        self.problems.append(Diagnostic(code, message, span, self.diagram.source, **extra))  # type: ignore[arg-type]


def statement_order(diagram: ir.Diagram) -> list[ir.Statement]:
    """Statements in dependency order (every edge is complete before it is read), stable."""
    rank = {name: i for i, name in enumerate(topological_order(diagram))}
    return sorted(diagram.statements, key=lambda s: (rank[s.target], s.index))


def infer(diagram: ir.Diagram, limits: Limits = DEFAULT) -> tuple[ir.Diagram | None, list[Diagnostic]]:
    """Fill in the irreps of inferred edges and the paths of every statement."""
    state = _Inference(diagram, limits)
    order = statement_order(diagram)
    _forward(state, order)
    _backward(state, order)
    legs = _final_irreps(state, order)
    if legs is None or state.problems:
        return None, state.problems
    diagram = replace(diagram, legs=legs)
    by_name = {leg.name: leg for leg in legs}
    statements = {s.index: replace(s, paths=_paths(diagram, by_name, s, state)) for s in order}
    if state.problems:
        return None, state.problems
    diagram = replace(diagram, statements=tuple(statements[s.index] for s in diagram.statements))
    check_chosen_entries(diagram, state)
    return (None, state.problems) if state.problems else (diagram, [])


# -- forward -------------------------------------------------------------------------------------

def _forward(state: _Inference, order: list[ir.Statement]) -> None:
    for leg in state.diagram.legs:
        if leg.irreps is not None:
            state.readable[leg.name] = frozenset(leg.irreps.irreps)
    for statement in order:
        target = state.leg(statement.target)
        if _beyond_spin_limit(state, statement):
            continue
        sets = node_sets(statement.tree, state.readable)
        root = sets[id(statement.tree)]
        admissible = _admissible(target, root)
        if not root & admissible and _reads_failed_edge(state, statement):
            state.failed.add(statement.index)  # already reported where the edge failed
        elif not root & admissible:
            _no_path(state, statement, sets, admissible)
        top = max((i.two_j for i in root & admissible), default=0)
        if not target.declared and top > 2 * state.limits.max_l:
            _refuse_spin(state, statement, f"`{target.name}` would carry spin {Fraction(top, 2)}",
                         f"declare `{target.name}` with its irreps, or cut it with `lmax`")
            continue
        state.produced.setdefault(target.name, set()).update(root & admissible)
        if not target.declared:
            state.readable[target.name] = frozenset(state.produced[target.name])


def _beyond_spin_limit(state: _Inference, statement: ir.Statement) -> bool:
    """Refuse (E501) a statement whose inner vertices could reach a spin above ``max_l``.

    Checked on a cheap bound before any irreps set is built: sets of spins up to thousands would
    make inference itself the out-of-memory error that the limit is there to prevent. The root
    may go higher; what it produces is filtered by its target, then checked by :func:`_forward`."""
    if _reads_failed_edge(state, statement):
        return False
    _, inner = spin_bound(statement.tree, state.readable)
    if inner <= 2 * state.limits.max_l:
        return False
    _refuse_spin(state, statement, f"this fusion tree can reach spin {Fraction(inner, 2)} inside",
                 "cut it with parentheses into internal edges declared with `lmax`")
    return True


def _refuse_spin(state: _Inference, statement: ir.Statement, what: str, hint: str) -> None:
    state.failed.add(statement.index)
    state.report("E501", f"{what} (at most {state.limits.max_l})", statement.span,
                 hint=f"{hint}; or raise the limit: `limits=Limits(max_l=...)`, `fusionc --limit max_l=...`")
    state.produced.setdefault(statement.target, set())
    state.readable.setdefault(statement.target, frozenset())


def _reads_failed_edge(state: _Inference, statement: ir.Statement) -> bool:
    return any(w.index in state.failed for ref in statement.leaves for w in state.writers(ref.leg))


def node_sets(tree: ir.Node, readable: dict[str, IrrepSet]) -> dict[int, IrrepSet]:
    """Bottom-up: the irreps each node of a tree can carry (keyed by ``id(node)``)."""
    sets: dict[int, IrrepSet] = {}

    def visit(node: ir.Node) -> IrrepSet:
        if isinstance(node, ir.LeafRef):
            result = readable.get(node.leg, frozenset())
        else:
            left, right = visit(node.left), visit(node.right)
            result = frozenset(c for a in left for b in right for c in a * b)
        sets[id(node)] = result
        return result

    visit(tree)
    return sets


def _admissible(target: ir.Leg, root: IrrepSet) -> IrrepSet:
    if target.irreps is not None:
        return frozenset(target.irreps.irreps)
    if target.lmax is not None:
        return frozenset(ir_ for ir_ in root if ir_.j <= target.lmax)
    return root


def _no_path(state: _Inference, statement: ir.Statement, sets: dict[int, IrrepSet],
             admissible: IrrepSet) -> None:
    state.failed.add(statement.index)
    root = sets[id(statement.tree)]
    target = state.leg(statement.target)
    reachable = _listing(root)
    if isinstance(statement.tree, ir.Fuse) and statement.arity == 2 and admissible:
        code, label = _selection_reason(sets[id(statement.tree.left)], sets[id(statement.tree.right)], admissible)
        state.report(code, f"coupling violates the {state.diagram.group} selection rule", statement.span,
                     label=label, hint=f"allowed outputs are {reachable}" if root else "")
    elif target.lmax is not None and not target.declared:
        state.report("E301", f"edge `{target.name}` has no admissible irreps: its writer gives "
                     f"{reachable}, all above `lmax {target.lmax}`", statement.span,
                     hint=f"raise the edge's lmax to at least {min(i.j for i in root)}" if root else "")
    else:
        wanted = _listing(admissible)
        state.report("E302", f"no path of this statement reaches `{target.name}` ({wanted})",
                     statement.span, label=f"reaches {reachable or 'nothing'}",
                     hint=f"`{target.name}` would need one of {reachable}" if root else
                     "check the irreps of the arguments")


def _selection_reason(left: IrrepSet, right: IrrepSet, wanted: IrrepSet) -> tuple[str, str]:
    """The rule that rules out ``wanted`` from ``left ⊗ right``, and a caret label."""
    reasons: Counter[str] = Counter()
    for a in sorted(left):
        for b in sorted(right):
            for c in sorted(wanted):
                problem = selection_problem(a, b, c)
                if problem is not None:
                    reasons[problem[0]] += 1
    # One rule when only it fails; parity when every triangle holds; otherwise the triangle rule.
    if set(reasons) == {"E203"}:
        code = "E203"
    elif reasons["E202"] and not reasons["E201"]:
        code = "E202"
    else:
        code = "E201"
    return code, f"{_listing(wanted)} is not in {_listing(left)} ⊗ {_listing(right)}"


def _listing(irreps: IrrepSet | set[Irrep]) -> str:
    return " + ".join(str(i) for i in sorted(irreps)) if len(irreps) < 2 else \
        "(" + " + ".join(str(i) for i in sorted(irreps)) + ")"


# -- backward ------------------------------------------------------------------------------------

def _backward(state: _Inference, order: list[ir.Statement]) -> None:
    for leg in state.diagram.outputs:
        state.needed[leg.name] = set(leg.irreps.irreps if leg.irreps else state.produced.get(leg.name, ()))
    for statement in reversed(order):
        target = statement.target
        wanted = state.needed.get(target, set()) & set(state.readable.get(target, frozenset()))
        sets = node_sets(statement.tree, state.readable)
        live = dict(_pruned_sets(statement.tree, sets, frozenset(wanted)))
        for leaf in statement.leaves:
            state.needed.setdefault(leaf.leg, set()).update(live[id(leaf)])


# -- final irreps and paths ----------------------------------------------------------------------

def _final_irreps(state: _Inference, order: list[ir.Statement]) -> tuple[ir.Leg, ...] | None:
    legs = {leg.name: leg for leg in state.diagram.legs}
    for statement in order:
        leg = legs[statement.target]
        if leg.declared or leg.irreps is not None:
            continue
        kept = state.produced.get(leg.name, set()) & (state.needed.get(leg.name, set()) if leg.role == "internal"
                                                      else state.produced.get(leg.name, set()))
        if not kept:
            _dead_edge(state, leg)
            continue
        if statement.paths_mode == "split":
            entries = _split_entries(state, leg, frozenset(kept), legs)
        else:
            muls = _inferred_muls(state, leg, frozenset(kept), legs)
            entries = None if muls is None else [MulIrrep(muls[i], i) for i in sorted(kept)]
        if entries is not None:
            legs[leg.name] = replace(leg, irreps=Irreps(entries, state.diagram.group))
    return tuple(legs.values()) if not state.problems else None


def _split_entries(state: _Inference, leg: ir.Leg, kept: IrrepSet,
                   legs: Mapping[str, ir.Leg]) -> list[MulIrrep] | None:
    """An edge written with ``paths = split``: one entry per path, in e3nn's sorted order."""
    writers = _sound_writers(state, leg, legs)
    # checks.check_split_writers made the splitting statement the target's only writer.
    return [entry for _, entry in _split_slots(writers[0], legs, kept, state)] if writers else None


Slot = tuple[tuple[tuple[int, ...], tuple[Irrep, ...], bool], MulIrrep]


def _split_slots(statement: ir.Statement, legs: Mapping[str, ir.Leg], allowed: IrrepSet,
                 state: _Inference) -> list[Slot]:
    """Each path of a splitting statement, as (leaf entries, inner irreps, diagonal), with the
    entry it gets, ordered like e3nn's ``sort()`` (elementwise pairs: in pair order)."""
    raw = sorted(_raw_paths(statement, legs, allowed, state), key=lambda p: (p[0], p[1]))
    if statement.pairing == "unordered":
        return _unordered_slots(statement, legs, raw)
    if statement.pairing == "elementwise":  # aligned pairs (i, i) in pair order, the irreps by l: e3nn's order
        raw = sorted((p for p in raw if len(set(p[0])) == 1), key=lambda p: (p[0], p[2].two_j))
    slots: list[Slot] = []
    for entries, inner, root in raw:
        muls = [legs[ref.leg].irreps[e].mul for ref, e in zip(statement.leaves, entries, strict=True)]  # type: ignore[index]
        if not _uuu_fits(state, statement, muls):
            return []
        slots.append(((entries, inner, False), MulIrrep(output_multiplicity(statement, muls) or muls[0], root)))
    if statement.pairing == "elementwise":
        return slots
    return _sorted_slots(slots)


def _sorted_slots(slots: list[Slot]) -> list[Slot]:
    """Stably by irrep, like e3nn's ``Irreps.sort()`` (by l, odd before even)."""
    return sorted(slots, key=lambda slot: (slot[1].irrep.two_j, slot[1].irrep.parity))


def _unordered_slots(statement: ir.Statement, legs: Mapping[str, ir.Leg],
                     raw: list[tuple[tuple[int, ...], tuple[Irrep, ...], Irrep]]) -> list[Slot]:
    """e3nn's TensorSquare: entry pairs i < j (every channel pair, ``m_i * m_j``), and for i = j
    the channel pairs u < v (``m (m - 1) / 2``, when m > 1) and the diagonal u = v (``m``, only
    where ``a ⊗ a → c`` is symmetric), in this order per output irrep, then sorted stably."""
    items = legs[statement.leaves[0].leg].irreps
    assert items is not None
    slots: list[Slot] = []
    for entries, inner, root in sorted(raw, key=lambda p: (p[0], p[2].two_j)):
        first, second = (items[e] for e in entries)
        if entries[0] < entries[1]:
            slots.append(((entries, inner, False), MulIrrep(first.mul * second.mul, root)))
        elif entries[0] == entries[1]:
            if first.mul > 1:
                slots.append(((entries, inner, False), MulIrrep(first.mul * (first.mul - 1) // 2, root)))
            if (first.irrep.two_j - root.two_j // 2) % 2 == 0:  # j ⊗ j → J is symmetric when 2j - J is even
                slots.append(((entries, inner, True), MulIrrep(first.mul, root)))
    return _sorted_slots(slots)


def _dead_edge(state: _Inference, leg: ir.Leg) -> None:
    if state.failed:
        return  # most likely a consequence of the statement that failed: say that one only
    produced = _listing(state.produced.get(leg.name, set()))
    state.report("E301", f"edge `{leg.name}` has no admissible irreps: none of {produced} reaches an output",
                 leg.span, label="dead edge",
                 hint="check the outputs' irreps, or the statements that read this edge")


def _inferred_muls(state: _Inference, leg: ir.Leg, kept: IrrepSet,
                   legs: dict[str, ir.Leg]) -> dict[Irrep, int] | None:
    """Multiplicity of each irrep of an inferred edge, from the channel modes of its writers."""
    found: dict[Irrep, set[int]] = {}
    draft = ChainMap({leg.name: replace(leg, irreps=Irreps([MulIrrep(1, i) for i in sorted(kept)],
                                                           state.diagram.group))}, legs)
    for writer in _sound_writers(state, leg, legs):
        for path in _raw_paths(writer, draft, kept, state):
            muls = [draft[ref.leg].irreps[entry].mul for ref, entry in zip(writer.leaves, path[0], strict=False)]  # type: ignore[index]
            found.setdefault(path[2], set()).add(output_multiplicity(writer, muls) or muls[0])
    if any(w.index in state.failed for w in state.writers(leg.name)) or not kept <= found.keys():
        # A writer was refused (beyond a limit), or reads an edge that failed: the paths are
        # unknown, and the failure has been reported where it happened.
        return None
    clashes = {i: m for i, m in found.items() if len(m) > 1}
    if clashes:
        irrep, muls_ = next(iter(sorted(clashes.items())))
        state.report("E402", f"edge `{leg.name}` gets {irrep} with multiplicities "
                     f"{', '.join(map(str, sorted(muls_)))} from different paths", leg.span,
                     hint=f"declare it, e.g. `edge {leg.name} : {max(muls_)}x{irrep}`, so paths add into one slot")
        return None
    return {i: min(m) for i, m in found.items()}


def _sound_writers(state: _Inference, leg: ir.Leg, legs: Mapping[str, ir.Leg]) -> list[ir.Statement]:
    """The writers of ``leg`` whose leaves all have irreps.

    A writer that reads a dead edge (one whose failure was reported where it failed) contributes
    nothing; the diagram is refused already, but the other writers are still worth checking."""
    sound = []
    for writer in state.writers(leg.name):
        if all(legs[ref.leg].irreps is not None for ref in writer.leaves):
            sound.append(writer)
        elif not state.problems:  # never silently: an edge without irreps must have been reported
            state.report("E301", f"`{leg.name}` is written from an edge with no admissible irreps",
                         writer.span, hint="check the statements that write its arguments")
    return sound


def output_multiplicity(statement: ir.Statement, muls: list[int]) -> int | None:
    """The output multiplicity a channel mode implies for leaf multiplicities ``muls``.

    None means free (weights mix channels into any multiplicity the target declares)."""
    if statement.channels == "uuu" or (statement.channels == "uvu" and len(muls) > 0):
        return muls[0]
    if statement.weights == "none":
        product = 1
        for mul in muls:
            product *= mul
        return product
    return None


def _raw_paths(statement: ir.Statement, legs: Mapping[str, ir.Leg], allowed: IrrepSet,
               state: _Inference) -> list[tuple[tuple[int, ...], tuple[Irrep, ...], Irrep]]:
    """All (leaf entries, vertex irreps, root irrep) of a statement whose root is allowed."""
    readable = {ref.leg: frozenset(legs[ref.leg].irreps.irreps) for ref in statement.leaves  # type: ignore[union-attr]
                if legs[ref.leg].irreps is not None}
    sets = node_sets(statement.tree, readable)
    pruned = dict(_pruned_sets(statement.tree, sets, allowed))
    limit = state.limits.max_paths
    # Stop one past the limit: the count of an oversized statement is never materialised.
    out = list(islice(_combos(statement.tree, legs, pruned), limit + 1))
    if len(out) > limit:
        _report_once(state, statement, "E501", f"this statement has more than {limit} paths",
                     "lower the irreps of the arguments or constrain intermediate edges with lmax; or raise "
                     "the limit: `limits=Limits(max_paths=...)`, `fusionc --limit max_paths=...`")
        return []
    return out


def _pruned_sets(tree: ir.Node, sets: dict[int, IrrepSet], wanted: IrrepSet) -> Iterator[tuple[int, IrrepSet]]:
    """Top-down arc consistency (exact on trees): (``id(node)``, the irreps of that node that take
    part in a complete path whose root is in ``wanted``) for every node."""
    live = sets[id(tree)] & wanted
    yield id(tree), live
    if isinstance(tree, ir.Fuse):
        left, right = sets[id(tree.left)], sets[id(tree.right)]
        left_live = frozenset(a for a in left if any(c in live for b in right for c in a * b))
        right_live = frozenset(b for b in right if any(c in live for a in left_live for c in a * b))
        yield from _pruned_sets(tree.left, sets, left_live)
        yield from _pruned_sets(tree.right, sets, right_live)


def _combos(node: ir.Node, legs: Mapping[str, ir.Leg],
            pruned: dict[int, IrrepSet]) -> Iterator[tuple[tuple[int, ...], tuple[Irrep, ...], Irrep]]:
    live = pruned[id(node)]
    if isinstance(node, ir.LeafRef):
        irreps = legs[node.leg].irreps
        assert irreps is not None
        for entry, item in enumerate(irreps):
            if item.irrep in live:
                yield (entry,), (), item.irrep
        return
    rights = list(_combos(node.right, legs, pruned))
    for l_entries, l_inner, a in _combos(node.left, legs, pruned):
        for r_entries, r_inner, b in rights:
            for c in a * b:
                if c in live:
                    yield l_entries + r_entries, l_inner + r_inner + (c,), c


def _paths(diagram: ir.Diagram, legs: dict[str, ir.Leg], statement: ir.Statement,
           state: _Inference) -> tuple[ir.Path, ...]:
    target = legs[statement.target].irreps
    assert target is not None
    if statement.paths_mode == "split":
        return _split_paths(legs, statement, target, state)
    slots: dict[Irrep, list[int]] = {}
    for index, item in enumerate(target):
        slots.setdefault(item.irrep, []).append(index)
    paths = []
    chosen = None if statement.only is None else {(c.leaves, c.output) for c in statement.only}
    matched = set()
    for entries, inner, root in _raw_paths(statement, legs, frozenset(slots), state):
        muls = [legs[ref.leg].irreps[e].mul for ref, e in zip(statement.leaves, entries, strict=False)]  # type: ignore[index]
        for slot in slots[root]:
            if chosen is not None and (entries, slot) not in chosen:
                continue  # left out by `only`: its channels need not fit
            matched.add((entries, slot))
            if _channels_fit(diagram, statement, muls, target[slot], state):
                paths.append(ir.Path(entries, inner, slot))
    if statement.only is not None:
        _unmatched_choices(legs, statement, matched, state)
    if not paths and statement.index not in state.failed and not state.problems:
        state.report("E302", f"no path of this statement reaches `{statement.target}`", statement.span,
                     hint="its arguments' irreps cannot produce any irrep the target carries")
    _unreached_slots(diagram, statement, state)
    return tuple(sorted(paths, key=lambda p: (p.leaves, p.inner, p.output)))


# -- `only`: a chosen subset of paths ---------------------------------------------------------------

def _unmatched_choices(legs: Mapping[str, ir.Leg], statement: ir.Statement,
                       matched: set[tuple[tuple[int, ...], int]], state: _Inference) -> None:
    """E204 for every path listed in ``only`` that is not one of the statement's paths."""
    for choice in statement.only or ():
        if (choice.leaves, choice.output) not in matched:
            message, hint = _why_not_a_path(legs, statement, choice)
            state.report("E204", message, choice.span, hint=hint)


def _why_not_a_path(legs: Mapping[str, ir.Leg], statement: ir.Statement, choice: ir.PathChoice) -> tuple[str, str]:
    """Why a listed path is not one of the statement's: an entry that does not exist, a coupling
    that breaks the selection rule, or a path pruned for reaching no output."""
    names = [ref.leg for ref in statement.leaves] + [statement.target]
    entries = [*choice.leaves, choice.output]
    for name, entry in zip(names, entries, strict=True):
        irreps = legs[name].irreps
        assert irreps is not None
        if entry >= len(irreps):
            return (f"`{name}` has no entry {entry}: its {len(irreps)} entr{'y is' if len(irreps) == 1 else 'ies are'} "
                    f"{_numbered(irreps)}", "entries are numbered from 0 in the order the irreps list them")
    irreps_of = [legs[name].irreps[entry].irrep for name, entry in zip(names, entries, strict=True)]  # type: ignore[index]
    text = " ⊗ ".join(map(str, irreps_of[:-1])) + f" -> {irreps_of[-1]}"
    hint = "remove it from `only`; `fusionc ir` lists the statement's paths"
    if statement.arity == 1 and irreps_of[0] != irreps_of[1]:
        return f"path {text}: a linear map keeps the irrep", hint
    if statement.arity == 2:
        problem = selection_problem(*irreps_of)
        if problem is not None:
            return f"path {text} breaks the selection rule ({problem[1]})", hint
    return f"path {text} is not a path of this statement (no coupling along its tree reaches the target)", hint


def _numbered(irreps: Irreps) -> str:
    return ", ".join(f"{k}: {item}" for k, item in enumerate(irreps))


def check_chosen_entries(diagram: ir.Diagram, state: _Inference) -> None:
    """A declared leg written by a statement with ``only`` needs a path into each of its entries."""
    for leg in diagram.legs:
        writers = diagram.writers(leg.name)
        if not any(w.only is not None for w in writers) or leg.irreps is None:
            continue
        written = {p.output for w in writers for p in w.paths}
        missing = [k for k in range(len(leg.irreps)) if k not in written]
        if missing:
            state.report("E302", f"no path writes entr{'y' if len(missing) == 1 else 'ies'} "
                         f"{', '.join(map(str, missing))} of `{leg.name}` ({_numbered(leg.irreps)})", leg.span,
                         hint="add a path into each entry to `only`, or remove the entries from the declaration")


def _split_paths(legs: dict[str, ir.Leg], statement: ir.Statement, target: Irreps,
                 state: _Inference) -> tuple[ir.Path, ...]:
    """Path k of a splitting statement writes entry k of the target (which must match exactly)."""
    slots = _split_slots(statement, legs, frozenset(target.irreps), state)
    expected = Irreps([entry for _, entry in slots], target.group)
    if expected != target and legs[statement.target].declared:
        mode = f"pairing = {statement.pairing}" if statement.pairing != "all" else "paths = split"
        _report_once(state, statement, "E402", f"with `{mode}`, `{statement.target}` gets one entry per "
                     f"path: {expected or 'nothing'}, not {target}",
                     f"declare `{statement.target} : {expected}`, or drop its irreps to have them inferred")
        return ()
    paths = [ir.Path(entries, inner, slot, diagonal) for slot, ((entries, inner, diagonal), _) in enumerate(slots)]
    return tuple(sorted(paths, key=lambda p: (p.leaves, p.inner, p.output)))


def _uuu_fits(state: _Inference, statement: ir.Statement, muls: list[int]) -> bool:
    """``channels = uuu`` needs one multiplicity on every leaf of a path (E401 otherwise)."""
    if statement.channels == "uuu" and len(set(muls)) > 1:
        _report_once(state, statement, "E401", f"`channels = uuu` wires one channel index through every leg, "
                     f"but the legs have multiplicities {', '.join(map(str, muls))}",
                     "use `channels = uvw` (weights mix channels) or give the legs equal multiplicities")
        return False
    return True


def _channels_fit(diagram: ir.Diagram, statement: ir.Statement, muls: list[int], slot: MulIrrep,
                  state: _Inference) -> bool:
    if not _uuu_fits(state, statement, muls):
        return False
    wanted = output_multiplicity(statement, muls)
    if wanted is not None and wanted != slot.mul:
        _report_once(state, statement, "E402", f"`{statement.target}` has {slot} but `channels = "
                     f"{statement.channels}, weights = {statement.weights}` gives multiplicity {wanted}",
                     f"declare `{statement.target}` with {wanted}x{slot.irrep}, or use weights to mix channels")
        return False
    return True


def _report_once(state: _Inference, statement: ir.Statement, code: str, message: str, hint: str) -> None:
    if statement.index in state.failed:
        return
    state.failed.add(statement.index)
    state.report(code, message, statement.span, hint=hint)


def _unreached_slots(diagram: ir.Diagram, statement: ir.Statement, state: _Inference) -> None:
    """After the last writer of a declared leg: every declared irrep must be reached by some path."""
    leg = state.leg(statement.target)
    writers = state.writers(leg.name)
    if not leg.declared or statement is not writers[-1] or any(w.index in state.failed for w in writers):
        return
    produced = state.produced.get(leg.name, set())
    missing = [str(item.irrep) for item in leg.irreps or () if item.irrep not in produced]
    if missing:
        everything = set().union(*(node_sets(w.tree, state.readable)[id(w.tree)] for w in writers))
        state.report("E302", f"`{leg.name}` declares {', '.join(missing)} but no path reaches "
                     f"{'it' if len(missing) == 1 else 'them'}", leg.span,
                     label=f"reachable: {_listing(everything) or 'nothing'}",
                     hint=f"remove {', '.join(missing)} from `{leg.name}`, or add arguments that reach "
                          f"{'it' if len(missing) == 1 else 'them'}")
