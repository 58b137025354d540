"""The semantic IR of a checked diagram: legs with irreps, statements as binary fusion trees,
and the paths through every statement.

Everything is a frozen, slotted dataclass rewritten with :func:`dataclasses.replace`; spans are
excluded from equality. The networkx graph (:mod:`fusionlang.graph`) is a view built from this.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import import_module
from typing import Any, Literal

from .groups import Group, Irrep, Irreps
from .source import Source, Span

Role = Literal["input", "output", "internal", "index"]
Domain = Literal["batch", "nodes", "edges"]
Via = Literal["", "sender", "receiver", "neighbours"]
VIAS: tuple[Via, ...] = ("sender", "receiver", "neighbours")
Basis = Literal["real", "complex"]
Channels = Literal["uvw", "uvu", "uuu"]
Weights = Literal["none", "path", "channel", "external"]
CHANNEL_MODES: tuple[Channels, ...] = ("uvw", "uvu", "uuu")
WEIGHT_MODES: tuple[Weights, ...] = ("none", "path", "channel", "external")
PathsMode = Literal["sum", "split"]
PATHS_MODES: tuple[PathsMode, ...] = ("sum", "split")
# e3nn's `irrep_normalization` and `path_normalization` (docs/semantics.md, "Normalisation")
IrrepNormalization = Literal["component", "norm", "none"]
PathNormalization = Literal["element", "path", "none"]
IRREP_NORMALIZATIONS: tuple[IrrepNormalization, ...] = ("component", "norm", "none")
PATH_NORMALIZATIONS: tuple[PathNormalization, ...] = ("element", "path", "none")
# "all" couples every entry of one argument with every entry of the other; "elementwise" couples
# copy i of the first with copy i of the second (e3nn's ElementwiseTensorProduct); "unordered"
# couples every unordered pair of copies of one argument read twice, the diagonal only where the
# product is symmetric (e3nn's TensorSquare)
Pairing = Literal["all", "elementwise", "unordered"]
PAIRINGS: tuple[Pairing, ...] = ("all", "elementwise", "unordered")
_NO_SPAN = Span(0, 0)


def _span() -> Span:
    return field(default=_NO_SPAN, compare=False, repr=False)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Leg:
    """A named edge of the diagram: an input, an output, or an internal edge.

    ``irreps`` is what the user declared or, for internal edges and untyped outputs, what
    inference found (None before inference). ``lmax`` constrains an inferred edge."""

    name: str
    role: Role
    irreps: Irreps | None
    declared: bool
    lmax: int | Fraction | None = None
    span: Span = _span()
    # Where the feature lives: one value per sample ("batch"), per graph node or per graph edge.
    domain: Domain = "batch"
    # The number of classes of an index input (role "index"), e.g. 3 species.
    classes: int = 0


@dataclass(frozen=True, slots=True)
class LeafRef:
    """A leaf of a fusion tree: the leg it reads, and its position among the statement's leaves."""

    leg: str
    position: int
    span: Span = _span()
    # How a graph statement reaches the leg: "" directly, "sender"/"receiver" gather a node feature
    # onto edges, "neighbours" takes it from one edge of a tuple of distinct incoming edges.
    via: Via = ""


@dataclass(frozen=True, slots=True)
class Fuse:
    """A trivalent coupling vertex: ``left ⊗ right`` → one irrep per path."""

    left: Node
    right: Node
    span: Span = _span()


Node = LeafRef | Fuse


def leaves(node: Node) -> tuple[LeafRef, ...]:
    """The leaves of a tree, left to right.

    Iterative, like every walk over a user-sized tree: a 1000-leaf fusion must reach the size
    check (E501) rather than Python's recursion limit."""
    found: list[LeafRef] = []
    stack: list[Node] = [node]
    while stack:
        top = stack.pop()
        if isinstance(top, LeafRef):
            found.append(top)
        else:
            stack += (top.right, top.left)
    return tuple(found)


def fuse_nodes(node: Node) -> tuple[Fuse, ...]:
    """The vertices of a tree in post-order (children before parents, the root last)."""
    found: list[Fuse] = []
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        top, expanded = stack.pop()
        if isinstance(top, LeafRef):
            continue
        if expanded:
            found.append(top)
        else:
            stack += ((top, True), (top.right, False), (top.left, False))
    return tuple(found)


def tree_depth(node: Node) -> int:
    """The number of vertices on the longest root-to-leaf path (0 for a leaf)."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 0)]
    while stack:
        top, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(top, Fuse):
            stack += ((top.left, depth + 1), (top.right, depth + 1))
    return deepest


@dataclass(frozen=True, slots=True)
class Path:
    """One assignment of irreps to every edge of a statement that satisfies every vertex.

    ``leaves[k]`` indexes the irreps entry of leaf ``k``'s leg; ``inner[n]`` is the irrep of the
    n-th vertex in post-order (the last one is the root, equal to the output irrep);
    ``output`` indexes the target leg's irreps entry."""

    leaves: tuple[int, ...]
    inner: tuple[Irrep, ...]
    output: int
    # `pairing = unordered` couples two copies of one entry twice: the pairs u < v (False) and,
    # where the product is symmetric, the diagonal u = v (True).
    diagonal: bool = False


@dataclass(frozen=True, slots=True)
class PathChoice:
    """One path of a statement's ``only`` list: the entry of every leaf's leg, and of the target."""

    leaves: tuple[int, ...]
    output: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Statement:
    """``ARGS -> target [channels, weights]`` lowered to a binary fusion tree."""

    index: int
    tree: Node
    target: str
    channels: Channels
    weights: Weights
    paths: tuple[Path, ...] = ()
    span: Span = _span()
    line: int = field(default=0, compare=False)
    # "sum": a path adds into every target entry of its irrep; "split": every path has its own
    # entry (e3nn's FullTensorProduct and MACE's `irreps_mid`), in e3nn's sorted order.
    paths_mode: PathsMode = "sum"
    # Graphs: "sum" adds an edge statement's values into the receiving nodes; `per` names an
    # index input whose value selects the weights (per-species weights).
    aggregate: bool = False
    per: str | None = None
    # `only = {...}`: the statement keeps just the paths with these (leaf entries, output entry),
    # e3nn's instruction subsets; None keeps every path.
    only: tuple[PathChoice, ...] | None = None
    # e3nn's normalisation choices; the defaults are e3nn's defaults ("component", "element").
    irrep_normalization: IrrepNormalization = "component"
    path_normalization: PathNormalization = "element"
    # "elementwise": only paths (i, i) between aligned entries, each with its own target entry, in
    # pair order (e3nn's ElementwiseTensorProduct); "unordered": the pairs of copies u < v of
    # `x, x`, and u = v where symmetric (e3nn's TensorSquare). Both have paths_mode "split".
    pairing: Pairing = "all"
    # The tree's walks, computed once: every pass reads them, some for every statement.
    _leaves: tuple[LeafRef, ...] = field(init=False, compare=False, repr=False)
    _vertices: tuple[Fuse, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_leaves", leaves(self.tree))
        object.__setattr__(self, "_vertices", fuse_nodes(self.tree))

    @property
    def leaves(self) -> tuple[LeafRef, ...]:
        return self._leaves

    @property
    def vertices(self) -> tuple[Fuse, ...]:
        return self._vertices

    @property
    def arity(self) -> int:
        return len(self.leaves)

    @property
    def is_linear(self) -> bool:
        return isinstance(self.tree, LeafRef)

    @property
    def kind(self) -> str:
        """``linear``, ``coupling`` (one vertex) or ``tree`` (several vertices)."""
        return {1: "linear", 2: "coupling"}.get(self.arity, "tree")


@dataclass(frozen=True, slots=True)
class Diagram:
    """A lowered (and, after the passes, checked and inferred) diagram."""

    name: str
    group: Group
    legs: tuple[Leg, ...]
    statements: tuple[Statement, ...]
    span: Span = _span()
    source: Source | None = field(default=None, compare=False, repr=False)
    # SO(3) features in the complex spherical basis (Cormorant) instead of e3nn's real one.
    basis: Basis = "real"
    # Lookups by name, built once: passes ask for legs and writers of every statement, and a
    # diagram may have thousands of them.
    _legs_by_name: dict[str, Leg] = field(init=False, compare=False, repr=False, hash=False)
    _writers_by_name: dict[str, tuple[Statement, ...]] = field(init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_legs_by_name", {leg.name: leg for leg in reversed(self.legs)})
        writers: dict[str, list[Statement]] = {}
        for statement in self.statements:
            writers.setdefault(statement.target, []).append(statement)
        object.__setattr__(self, "_writers_by_name", {name: tuple(found) for name, found in writers.items()})

    @property
    def is_graph(self) -> bool:
        """Does the module take a graph (``edge_index``)?"""
        return any(leg.domain == "edges" for leg in self.legs) or any(
            ref.via for s in self.statements for ref in s.leaves)

    @property
    def indices(self) -> tuple[Leg, ...]:
        return self.legs_of("index")

    def leg(self, name: str) -> Leg:
        return self._legs_by_name[name]

    def irreps(self, name: str) -> Irreps:
        """The irreps of a leg (after inference)."""
        irreps = self.leg(name).irreps
        if irreps is None:
            raise ValueError(f"irreps of {name!r} are not inferred yet")
        return irreps

    def legs_of(self, role: Role) -> tuple[Leg, ...]:
        return tuple(leg for leg in self.legs if leg.role == role)

    @property
    def inputs(self) -> tuple[Leg, ...]:
        return self.legs_of("input")

    @property
    def outputs(self) -> tuple[Leg, ...]:
        return self.legs_of("output")

    def writers(self, name: str) -> tuple[Statement, ...]:
        """The statements whose target is ``name``."""
        return self._writers_by_name.get(name, ())

    def readers(self, name: str) -> tuple[Statement, ...]:
        """The statements that read ``name`` on at least one leaf."""
        return tuple(s for s in self.statements if any(r.leg == name for r in s.leaves))

    def path_irreps(self, statement: Statement, path: Path) -> Iterator[tuple[str, Irrep]]:
        """(leg name, irrep) of every leaf and of the target along one path."""
        for ref, entry in zip(statement.leaves, path.leaves, strict=False):
            yield ref.leg, self.irreps(ref.leg)[entry].irrep
        yield statement.target, self.irreps(statement.target)[path.output].irrep

    def _repr_svg_(self) -> str | None:
        """Jupyter draws a diagram; None without graphviz's ``dot`` (E902), and Jupyter shows the text.

        The notebook layer is found by name: drawing is a later stage, which the IR never imports."""
        return import_module("fusionlang.notebook").diagram_svg(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's text form: the legs with their irreps and the statements (``fusionc ir``)."""
        printer.text(import_module("fusionlang.notebook").diagram_text(self))
