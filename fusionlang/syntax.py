"""The surface syntax tree of a ``.fusion`` file: frozen dataclasses with spans.

This is what the parser produces and what the formatter prints. It records what the user wrote
(names, irreps text, the shape of parentheses, comments) and nothing the compiler infers.
Spans and comments are excluded from equality, so ``parse(format(tree)) == tree``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .source import Source, Span

_NO_SPAN = Span(0, 0)


def _span() -> Span:
    return field(default=_NO_SPAN, compare=False, repr=False)  # type: ignore[return-value]


def _comments() -> tuple[str, ...]:
    return field(default=(), compare=False, repr=False)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier as written, e.g. ``s12``."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class IrrepsText:
    """Irreps exactly as written after ``:`` (parsed later, once the group is known)."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Lmax:
    """The constraint ``lmax N`` on an internal edge."""

    value: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PathChoice:
    """One path of ``only = {0 1 -> 2, ...}``: the entry index of every leaf, then of the target."""

    leaves: tuple[int, ...]
    output: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PathSet:
    """The value of ``only``: the paths a statement keeps, ``{0 1 -> 2, 1 0 -> 2}``."""

    choices: tuple[PathChoice, ...]
    span: Span = _span()

    @property
    def text(self) -> str:
        """The canonical spelling, as the formatter prints it."""
        return "{" + ", ".join(" ".join(map(str, c.leaves)) + f" -> {c.output}" for c in self.choices) + "}"


@dataclass(frozen=True, slots=True)
class Option:
    """``key = value`` inside ``[...]`` after a statement or a declaration.

    A path list (``only = {0 1 -> 2}``) is ``paths``; its ``value`` is then the list's canonical
    text, so that every option has a word to print and to point at."""

    key: Name
    value: Name
    span: Span = _span()
    paths: PathSet | None = None


@dataclass(frozen=True, slots=True)
class GroupDecl:
    """``group SU2``."""

    group: Name
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Count:
    """The number of classes of an index input: ``index species : 3``."""

    value: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BasisDecl:
    """``basis complex`` (or ``basis real``): the basis of SO(3) features."""

    basis: Name
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LegDecl:
    """``input a, b : 8x0e``, ``output z : 0e + 1o``, ``edge ab : lmax 2``.

    ``kind`` is ``"input"``, ``"output"``, ``"edge"`` or ``"index"`` (an integer input such as a
    species, ``index z : 3``); ``type`` is None when omitted (allowed for outputs and edges, whose
    irreps are then inferred)."""

    kind: str
    names: tuple[Name, ...]
    type: IrrepsText | Lmax | Count | None
    options: tuple[Option, ...] = ()
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One argument leg of a statement: a name, possibly reached through a graph function
    (``sender(h)``, ``receiver(h)``, ``neighbours(m)``), which is then ``via``."""

    name: Name
    via: Name | None = None

    @property
    def span(self) -> Span:
        return self.name.span


@dataclass(frozen=True, slots=True)
class Paren:
    """A parenthesised group of arguments, ``(a, b)``: it fixes the shape of the fusion tree."""

    items: tuple[Arg, ...]
    span: Span = _span()


Arg = Leaf | Paren


@dataclass(frozen=True, slots=True)
class Statement:
    """``ARGS -> target [options]``: a linear map (one argument), a coupling (two) or a tree."""

    args: tuple[Arg, ...]
    target: Name
    options: tuple[Option, ...] = ()
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str = field(default="", compare=False, repr=False)


Item = GroupDecl | BasisDecl | LegDecl | Statement


@dataclass(frozen=True, slots=True)
class Diagram:
    """``diagram NAME { ... }``."""

    name: Name
    items: tuple[Item, ...]
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    # Comments after the last item, before the closing brace.
    closing_comments: tuple[str, ...] = _comments()
    # The comment after `{` on the `diagram NAME {` line.
    trailing: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class File:
    """A whole ``.fusion`` file: its diagrams and the source they came from."""

    diagrams: tuple[Diagram, ...]
    source: Source = field(default_factory=lambda: Source(""), compare=False, repr=False)
    # Comments after the last diagram.
    closing_comments: tuple[str, ...] = _comments()
