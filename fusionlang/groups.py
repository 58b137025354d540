"""The groups SU(2), SO(3), O(3) and their irreps as exact, immutable, hashable values.

Spins are stored as twice-j integers so no float ever stands for a spin. Strings follow e3nn
(``16x0e + 16x1o``, ``1y`` for parity (-1)^l, grouping ``16x(0e + 1o)``) for O(3), integers for
SO(3) and spins such as ``3/2`` for SU(2).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple, overload

from .diagnostics import Diagnostic, FusionError
from .source import Source, Span

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class Group:
    """One of the symmetry groups fusionlang knows: ``SU2``, ``SO3`` or ``O3``."""

    name: str

    @property
    def has_parity(self) -> bool:
        return self.name == "O3"

    @property
    def allows_half_integers(self) -> bool:
        return self.name == "SU2"

    @property
    def is_complex(self) -> bool:
        """SU(2) couplings are complex (Condon–Shortley); SO(3)/O(3) ones are real."""
        return self.name == "SU2"

    def __str__(self) -> str:
        return self.name


SU2 = Group("SU2")
SO3 = Group("SO3")
O3 = Group("O3")
GROUPS = {g.name: g for g in (SU2, SO3, O3)}
GroupLike = Group | str


def as_group(group: GroupLike) -> Group:
    """``"O3"`` or ``O3`` → ``O3``; an unknown name raises a :class:`FusionError`."""
    if isinstance(group, Group):
        return group
    found = GROUPS.get(str(group).upper().replace("(", "").replace(")", ""))
    if found is None:
        raise FusionError([Diagnostic(
            "E022", f"unknown group `{group}`", Span(0, len(str(group))), Source(str(group), "<group>"),
            hint="the groups are SU2, SO3 and O3")])
    return found


@dataclass(frozen=True, slots=True, order=True)
class Irrep:
    """An irreducible representation: twice its spin and, for O(3), its parity (+1 or -1).

    Built from text (``Irrep("1o")``, ``Irrep("3/2", "SU2")``), from e3nn's ``(l, p)`` tuple or
    ``o3.Irrep`` (O(3) only), or explicitly from twice the spin: ``Irrep(two_j=1, parity=0,
    group="SU2")``. Two bare ints (``Irrep(1, -1)``) are refused: e3nn reads them as ``(l, p)``,
    while fusionlang counts twice the spin, and guessing would silently change the irrep.

    >>> Irrep("3/2", "SU2").dim, str(Irrep("1y")), str(Irrep(two_j=2, parity=-1))
    (4, '1o', '1o')
    """

    two_j: int
    parity: int
    group: Group = field(compare=False)

    def __init__(self, value: str | Irrep | tuple[int, int] | None = None, group: GroupLike | None = None, *,
                 two_j: int | None = None, parity: int = 0) -> None:
        if two_j is None:
            two_j, parity, g = _irrep_fields(value, group)
        elif value is not None:
            raise TypeError("Irrep: give either a text/e3nn irrep or two_j=..., not both")
        else:
            g = _checked_fields(two_j, parity, as_group(O3 if group is None else group))
        object.__setattr__(self, "two_j", two_j)
        object.__setattr__(self, "parity", parity)
        object.__setattr__(self, "group", g)

    @classmethod
    def parse(cls, text: str, group: GroupLike = O3) -> Irrep:
        irreps = Irreps(text, group)
        if len(irreps) != 1 or irreps[0].mul != 1:
            raise _syntax_error(text, 0, len(text), "expected a single irrep")
        return irreps[0].irrep

    @property
    def j(self) -> Fraction:
        """The spin j (an exact fraction)."""
        return Fraction(self.two_j, 2)

    @property
    def l(self) -> int:  # noqa: E743 - the physicists' name
        if self.two_j % 2:
            raise ValueError(f"{self} has a half-integer spin, so no integer l; use .j or .two_j")
        return self.two_j // 2

    @property
    def p(self) -> int:
        """The parity as e3nn writes it (+1 or -1); 0 for SU(2) and SO(3), which have none."""
        return self.parity

    def __iter__(self) -> Iterator[int]:
        """``l, p = irrep`` as with e3nn (integer spins only)."""
        return iter((self.l, self.parity))

    @property
    def dim(self) -> int:
        return self.two_j + 1

    @property
    def is_scalar(self) -> bool:
        return self.two_j == 0 and self.parity in (0, 1)

    def __mul__(self, other: Irrep) -> tuple[Irrep, ...]:
        """All irreps in ``self ⊗ other`` (each once), in increasing spin."""
        return _product(self.two_j, self.parity, other.two_j, other.parity, self.group)

    def __str__(self) -> str:
        return _irrep_text(self.two_j, self.parity, self.group.has_parity)

    def __repr__(self) -> str:
        return f"Irrep({str(self)!r}, {self.group})"


def _irrep_fields(value: object, group: GroupLike | None) -> tuple[int, int, Group]:
    """(two_j, parity, group) of a text, fusionlang or e3nn irrep; ambiguous ints are refused."""
    if isinstance(value, Irrep):
        return value.two_j, value.parity, value.group
    if isinstance(value, str):
        irrep = Irrep.parse(value, O3 if group is None else group)
        return irrep.two_j, irrep.parity, irrep.group
    if isinstance(value, tuple) and tuple.__len__(value) == 2:  # e3nn's Irrep forbids len()
        return _e3nn_fields(value, as_group(O3 if group is None else group))
    if isinstance(value, int):
        raise TypeError(f"Irrep({value}, ...) is ambiguous: e3nn reads ints as (l, p), fusionlang counts twice "
                        f"the spin. Write Irrep(\"{value}o\") or Irrep(\"{value}e\") for l = {value}, or "
                        f"Irrep(two_j={value}, parity=..., group=...) for spin {spin_text(value)}")
    raise TypeError(f"cannot read {value!r} as an irrep: write Irrep(\"1o\"), Irrep(\"3/2\", \"SU2\") "
                    "or Irrep(two_j=..., parity=..., group=...)")


def _e3nn_fields(value: tuple[object, object], group: Group) -> tuple[int, int, Group]:
    """e3nn's ``(l, p)``: an O(3) irrep of degree l and parity p."""
    l, p = value
    if group != O3:
        raise TypeError(f"(l, p) = {value!r} is e3nn's O(3) form; write {group} irreps as text: "
                        f"{_HINTS[group.name]}")
    if not isinstance(l, int) or isinstance(l, bool) or l < 0 or p not in (1, -1):
        raise ValueError(f"(l, p) = {value!r}: l must be an int >= 0 and p must be 1 or -1 (as in e3nn)")
    return 2 * l, 1 if p == 1 else -1, group


def _checked_fields(two_j: int, parity: int, group: Group) -> Group:
    """Refuse explicit fields that are no irrep of ``group``."""
    if not isinstance(two_j, int) or isinstance(two_j, bool) or two_j < 0:
        raise ValueError(f"two_j must be an int >= 0, got {two_j!r}")
    if two_j % 2 and not group.allows_half_integers:
        raise ValueError(f"two_j={two_j} is the half-integer spin {spin_text(two_j)}: not an irrep of {group}")
    if parity not in ((1, -1) if group.has_parity else (0,)):
        raise ValueError(f"parity={parity!r}: {group} irreps take " + ("1 or -1" if group.has_parity else "0"))
    return group


@functools.lru_cache(maxsize=4096)
def _product(two_j: int, parity: int, other_two_j: int, other_parity: int, group: Group) -> tuple[Irrep, ...]:
    # Cached: inference multiplies the same few irreps millions of times on large diagrams.
    lo, hi = abs(two_j - other_two_j), two_j + other_two_j
    return tuple(Irrep(two_j=j, parity=parity * other_parity, group=group) for j in range(lo, hi + 1, 2))


@functools.cache
def _irrep_text(two_j: int, parity: int, has_parity: bool) -> str:
    # cached: the planner keys paths by their irreps' text, hundreds of thousands of times for a
    # statement with thousands of paths
    if has_parity:
        return f"{two_j // 2}{'e' if parity == 1 else 'o'}"
    return spin_text(two_j)


def spin_text(two_j: int) -> str:
    """``1`` → ``"1/2"``, ``4`` → ``"2"``."""
    return str(two_j // 2) if two_j % 2 == 0 else f"{two_j}/2"


def selection_problem(a: Irrep, b: Irrep, c: Irrep) -> tuple[str, str] | None:
    """Why ``c`` is not in ``a ⊗ b``, as (diagnostic code, reason), or None when it is.

    >>> selection_problem(Irrep("1o"), Irrep("1o"), Irrep("1o"))
    ('E202', 'parity: 1o ⊗ 1o has parity e, not o')
    """
    if (a.two_j + b.two_j + c.two_j) % 2:
        return "E203", f"integrality: {a.j} + {b.j} + {c.j} is not an integer"
    if not abs(a.two_j - b.two_j) <= c.two_j <= a.two_j + b.two_j:
        return "E201", (f"triangle rule: |{a.j} - {b.j}| <= {c.j} <= {a.j} + {b.j} fails"
                        .replace("/1", ""))
    if a.group.has_parity and a.parity * b.parity != c.parity:
        want = "e" if a.parity * b.parity == 1 else "o"
        return "E202", f"parity: {a} ⊗ {b} has parity {want}, not {str(c)[-1]}"
    return None


@dataclass(frozen=True, slots=True)
class MulIrrep:
    """``mul`` copies of one irrep, e.g. ``16x1o``."""

    mul: int
    irrep: Irrep

    @property
    def ir(self) -> Irrep:
        """e3nn's name for :attr:`irrep`."""
        return self.irrep

    @property
    def dim(self) -> int:
        return self.mul * self.irrep.dim

    def __iter__(self) -> Iterator[int | Irrep]:
        """``mul, ir = entry``, as e3nn's ``_MulIr``."""
        return iter((self.mul, self.irrep))

    def __str__(self) -> str:
        return str(self.irrep) if self.mul == 1 else f"{self.mul}x{self.irrep}"


@dataclass(frozen=True, slots=True)
class Irreps:
    """A multiset of irreps with multiplicities, in a fixed order (e3nn's ``mul_ir`` layout).

    >>> x = Irreps("16x(0e + 1o) + 2e")
    >>> x.dim, x.lmax, str(x)
    (69, 2, '16x(0e + 1o) + 2e')
    >>> str(Irreps("0 + 1/2 + 3x3/2", "SU2"))
    '0 + 1/2 + 3x3/2'

    It also takes e3nn's forms and answers e3nn's questions (O(3)): ``Irreps([(16, (0, 1))])``,
    ``for mul, ir in x``, ``x.count("1o")``, ``x * 2``, ``x.ls``, ``x.randn(10, -1)``, and it
    equals e3nn's strings: ``Irreps("16x0e") == "16x0e"``.
    """

    entries: tuple[MulIrrep, ...]
    group: Group
    # How the text grouped the entries (sizes of consecutive `mul x (...)` runs): spelling only.
    layout: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    def __init__(self, value: str | Irreps | Irrep | Iterable[object] | None = "", group: GroupLike = O3) -> None:
        group = as_group(group)
        if isinstance(value, Irreps):
            entries, layout, group = value.entries, value.layout, value.group
        elif isinstance(value, str):
            entries, layout = _IrrepsParser(value, group).parse()
        elif isinstance(value, Irrep):
            entries, layout = (MulIrrep(1, value),), ()
        else:
            entries, layout = tuple(e if isinstance(e, MulIrrep) else _entry(e, group) for e in value or ()), ()
        object.__setattr__(self, "entries", tuple(entries))
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "layout", layout)

    def __iter__(self) -> Iterator[MulIrrep]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @overload
    def __getitem__(self, index: int) -> MulIrrep: ...
    @overload
    def __getitem__(self, index: slice) -> Irreps: ...

    def __getitem__(self, index: int | slice) -> MulIrrep | Irreps:
        if isinstance(index, slice):
            return Irreps(self.entries[index], self.group)
        return self.entries[index]

    def __add__(self, other: IrrepsLike) -> Irreps:
        return Irreps(self.entries + Irreps(other, self.group).entries, self.group)

    def __radd__(self, other: IrrepsLike) -> Irreps:
        return Irreps(other, self.group) + self

    def __mul__(self, times: int) -> Irreps:
        """``x * 2``: the entries repeated, as e3nn (tensor products are diagrams: ``fusionlang.compile``)."""
        if not isinstance(times, int) or isinstance(times, bool):
            raise TypeError("Irreps * n repeats the entries; for a tensor product write a diagram "
                            "(`x, y -> z`) and compile it")
        return Irreps(self.entries * times, self.group)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str) or _is_e3nn(other):
            try:
                other = Irreps(other, self.group)  # type: ignore[arg-type]
            except (FusionError, TypeError, ValueError):
                return False
        if not isinstance(other, Irreps):
            return NotImplemented
        return (self.entries, self.group) == (other.entries, other.group)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, MulIrrep):
            return item in self.entries
        return _as_irrep(item, self.group) in self.irreps

    @property
    def dim(self) -> int:
        return sum(e.dim for e in self.entries)

    @property
    def num_irreps(self) -> int:
        return sum(e.mul for e in self.entries)

    @property
    def lmax(self) -> Fraction | int:
        """The largest spin (an int for SO(3)/O(3), exact for SU(2))."""
        if not self.entries:
            raise ValueError("empty irreps have no lmax")
        j = max(e.irrep.j for e in self.entries)
        return int(j) if j.denominator == 1 else j

    @property
    def ls(self) -> list[int]:
        """l of every copy, as e3nn: ``Irreps("2x0e + 1o").ls == [0, 0, 1]`` (integer spins only)."""
        if any(e.irrep.two_j % 2 for e in self.entries):
            raise ValueError(f"{self} has half-integer spins, which have no integer l; use [e.irrep.j for e in x]")
        return [e.irrep.two_j // 2 for e in self.entries for _ in range(e.mul)]

    @property
    def irreps(self) -> tuple[Irrep, ...]:
        return tuple(e.irrep for e in self.entries)

    @classmethod
    def spherical_harmonics(cls, lmax: int, p: int = -1) -> Irreps:
        """e3nn's ``Irreps.spherical_harmonics``: ``0e + 1o + 2e + ...`` up to ``lmax`` (parity ``p**l``)."""
        if p not in (1, -1):
            raise ValueError(f"p must be 1 or -1, got {p!r}")
        return cls([(1, (l, p**l)) for l in range(lmax + 1)])

    def randn(self, *size: int, normalization: str = "component", requires_grad: bool = False,
              dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """A random tensor whose ``-1`` axis has ``dim`` entries, as e3nn: ``x.randn(10, -1)`` is ``[10, dim]``.

        ``normalization="norm"`` gives every irrep copy unit norm; ``"component"`` is ``torch.randn``.
        """
        import torch

        if size.count(-1) != 1:
            raise ValueError(f"randn needs exactly one -1 in its size (the irreps axis), got {size}")
        at = size.index(-1)
        shape = (*size[:at], self.dim, *size[at + 1:])
        if normalization == "component":
            return torch.randn(shape, requires_grad=requires_grad, dtype=dtype, device=device)
        if normalization != "norm":
            raise ValueError(f"normalization must be 'component' or 'norm', got {normalization!r}")
        parts = []
        for e in self.entries:
            r = torch.randn((*size[:at], e.mul, e.irrep.dim, *size[at + 1:]), dtype=dtype, device=device)
            parts.append((r / r.norm(dim=at + 1, keepdim=True)).flatten(at, at + 1))
        return torch.cat(parts, dim=at).requires_grad_(requires_grad) if parts else torch.zeros(shape, dtype=dtype,
                                                                                                device=device)

    def slices(self) -> tuple[slice, ...]:
        """Where each entry lives in a ``[..., dim]`` feature vector."""
        out, start = [], 0
        for e in self.entries:
            out.append(slice(start, start + e.dim))
            start += e.dim
        return tuple(out)

    def count(self, irrep: Irrep | str) -> int:
        """The total multiplicity of ``irrep``: ``Irreps("16x1o + 2e").count("1o") == 16``."""
        irrep = _as_irrep(irrep, self.group)
        return sum(e.mul for e in self.entries if e.irrep == irrep)

    def simplify(self) -> Irreps:
        """Merge neighbouring entries with the same irrep."""
        merged: list[MulIrrep] = []
        for e in self.entries:
            if merged and merged[-1].irrep == e.irrep:
                merged[-1] = MulIrrep(merged[-1].mul + e.mul, e.irrep)
            else:
                merged.append(e)
        return Irreps(merged, self.group)

    def sort(self) -> SortedIrreps:
        """Entries ordered by (spin, parity), stable, with e3nn's permutations ``p`` and ``inv``.

        >>> Irreps("2o + 1e + 0e + 1e").sort()
        SortedIrreps(irreps=Irreps('0e + 1e + 1e + 2o', O3), p=(3, 1, 0, 2), inv=(2, 1, 3, 0))
        """
        inv = tuple(sorted(range(len(self)), key=lambda i: (self.entries[i].irrep, i)))
        p = tuple(sorted(range(len(self)), key=inv.__getitem__))
        return SortedIrreps(Irreps([self.entries[i] for i in inv], self.group), p, inv)

    def regroup(self) -> Irreps:
        """``sort().irreps.simplify()``, as e3nn."""
        return self.sort().irreps.simplify()

    def to_e3nn(self) -> str:
        """e3nn's spelling, e.g. ``"16x0e+16x1o"`` (O(3) and SO(3) only)."""
        return "+".join(f"{e.mul}x{e.irrep}" if self.group.has_parity else f"{e.mul}x{e.irrep}e"
                        for e in self.entries)

    def __str__(self) -> str:
        parts, i = [], 0
        groups = dict(self.layout)
        while i < len(self.entries):
            size = groups.get(i, 0)
            if size:
                inner = Irreps(self.entries[i:i + size], self.group)
                mul = self.entries[i].mul
                parts.append(f"{mul}x(" + " + ".join(str(e.irrep) for e in inner) + ")")
                i += size
            else:
                parts.append(str(self.entries[i]))
                i += 1
        return " + ".join(parts)

    def __repr__(self) -> str:
        return f"Irreps({str(self)!r}, {self.group})"


IrrepsLike = Irreps | str | Irrep | Iterable[object]


class SortedIrreps(NamedTuple):
    """What :meth:`Irreps.sort` returns, as e3nn: the sorted irreps, ``p[old] = new``, ``inv[new] = old``."""

    irreps: Irreps
    p: tuple[int, ...]
    inv: tuple[int, ...]


def _as_irrep(value: object, group: Group) -> Irrep:
    return value if isinstance(value, Irrep) else Irrep(value, group)  # type: ignore[arg-type]


def _entry(item: object, group: Group) -> MulIrrep:
    """One entry of e3nn's list form: ``(mul, ir)`` with ir a text, an Irrep or ``(l, p)``; or an irrep."""
    if isinstance(item, (str, Irrep)) or (_is_e3nn(item) and not hasattr(item, "mul")):
        return MulIrrep(1, _as_irrep(item, group))
    if not (isinstance(item, tuple) and tuple.__len__(item) == 2):
        raise TypeError(f"cannot read {item!r} as an irreps entry: write (mul, \"1o\"), (mul, (l, p)) as e3nn, "
                        "or a string like \"16x1o\"")
    mul, irrep = item
    if not isinstance(mul, int) or isinstance(mul, bool) or mul < 1:
        raise ValueError(f"{item!r}: the multiplicity must be an int >= 1 (fusionlang irreps have no empty entries)")
    return MulIrrep(mul, _as_irrep(irrep, group))


def _is_e3nn(value: object) -> bool:
    return type(value).__module__.split(".")[0] == "e3nn"


def _syntax_error(text: str, start: int, end: int, message: str, hint: str = "",
                  code: str = "E020") -> FusionError:
    span = Span(start, max(start, end))
    where = f" at position {start}" if code == "E020" else ""
    return FusionError([Diagnostic(code, message + where, span, Source(text, "<irreps>"),
                                   label="here", hint=hint)])


# The syntax's cap on one entry's multiplicity (nested factors multiplied out); resource limits
# (fusionlang.limits) are far lower by default.
MAX_MULTIPLICITY = 999_999_999

_HINTS = {
    "O3": "O(3) irreps look like `16x0e + 8x1o` (l then e/o/y) or `4x(0e + 1o)`",
    "SO3": "SO(3) irreps are integers, e.g. `0 + 1 + 2` or `8x1`",
    "SU2": "SU(2) irreps are spins, e.g. `1/2`, `3x3/2` or `0 + 1/2 + 1`",
}


class _IrrepsParser:
    """Recursive descent over an irreps string, keeping positions for error messages."""

    def __init__(self, text: str, group: Group) -> None:
        self.text, self.group, self.pos = text, group, 0
        self.layout: list[tuple[int, int]] = []

    def parse(self) -> tuple[tuple[MulIrrep, ...], tuple[tuple[int, int], ...]]:
        self._skip()
        if self.pos == len(self.text):
            return (), ()
        entries = self._sum(1, top=True)
        if self.pos != len(self.text):
            self._fail("unexpected character " + repr(self.text[self.pos]))
        return tuple(entries), tuple(self.layout)

    def _sum(self, mul: int, top: bool = False) -> list[MulIrrep]:
        entries: list[MulIrrep] = []
        while True:
            term, grouped = self._term(mul)
            if top and grouped and len({e.mul for e in term}) == 1:
                self.layout.append((len(entries), len(term)))
            entries += term
            if self._peek() != "+":
                return entries
            self.pos += 1
            self._skip()

    def _term(self, outer: int) -> tuple[list[MulIrrep], bool]:
        """One `mul x irrep` or `mul x (...)`; says whether it was a group with a multiplicity."""
        start = self.pos
        mul, digits = 1, self._digits()
        if digits is not None and self._peek() == "x":
            mul = self._multiplicity(digits, start)
            if outer * mul > MAX_MULTIPLICITY:
                # Nested factors multiply out: `100000x(100000x0e)` is one entry of 10^10 channels.
                raise _syntax_error(self.text, start, self.pos, f"multiplicity {outer} x {mul} = {outer * mul} "
                                    "is too large", code="E024",
                                    hint="multiplicities, nested factors multiplied out, are at most "
                                         f"{MAX_MULTIPLICITY}")
            self.pos += 1
            self._skip()
        else:
            self.pos = start
        if self._peek() == "(":
            return self._group(outer * mul), mul > 1
        return [MulIrrep(outer * mul, self._irrep())], False

    def _group(self, mul: int) -> list[MulIrrep]:
        open_at = self.pos
        self.pos += 1
        self._skip()
        entries = self._sum(mul)
        if self._peek() != ")":
            self._fail(f"expected `)` to close the `(` at position {open_at}")
        self.pos += 1
        self._skip()
        return entries

    def _multiplicity(self, digits: str, start: int) -> int:
        if len(digits.lstrip("0")) > 9:
            raise _syntax_error(self.text, start, self.pos, "multiplicity is too large", code="E024",
                                hint=f"multiplicities are at most {MAX_MULTIPLICITY}")
        if int(digits) == 0:
            raise _syntax_error(self.text, start, self.pos, "multiplicity must be at least 1",
                                code="E024", hint="drop the entry or write a positive multiplicity")
        return int(digits)

    def _irrep(self) -> Irrep:
        start = self.pos
        digits = self._digits()
        if digits is None:
            self._fail("expected an irrep" if self.pos < len(self.text) else "irreps end too early",
                       _HINTS[self.group.name])
        assert digits is not None
        if len(digits.lstrip("0")) > 6:
            raise _syntax_error(self.text, start, self.pos, "spin is too large", code="E020",
                                hint="spins are at most 999999")
        two_j = 2 * int(digits)
        if self._peek(skip=False) == "/":
            two_j = self._half(digits, start)
        if two_j % 2 and not self.group.allows_half_integers:
            raise _syntax_error(self.text, start, self.pos, f"half-integer spin {spin_text(two_j)} "
                                f"is not an irrep of {self.group}", code="E021",
                                hint="half-integer spins need `group SU2`; O(3)/SO(3) irreps are "
                                     "integers l")
        parity = self._parity(two_j, start)
        self._skip()
        return Irrep(two_j=two_j, parity=parity, group=self.group)

    def _half(self, numerator: str, start: int) -> int:
        self.pos += 1
        denominator = self._digits()
        if denominator != "2" or int(numerator) % 2 == 0:
            self._fail("a spin written as a fraction must be an odd number over 2, like 3/2")
        return int(numerator)

    def _parity(self, two_j: int, start: int) -> int:
        letter = self._peek(skip=False)
        if not self.group.has_parity:
            if letter in ("e", "o", "y"):
                raise _syntax_error(self.text, self.pos, self.pos + 1,
                                    f"{self.group} irreps have no parity letter", code="E023",
                                    hint=_HINTS[self.group.name])
            return 0
        if letter not in ("e", "o", "y"):
            self._fail(f"expected a parity letter e, o or y after {two_j // 2}", _HINTS["O3"])
        self.pos += 1
        if letter == "y":
            return (-1) ** (two_j // 2)
        return 1 if letter == "e" else -1

    def _digits(self) -> str | None:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isascii() and self.text[self.pos].isdigit():
            self.pos += 1
        return self.text[start:self.pos] if self.pos > start else None

    def _peek(self, skip: bool = True) -> str:
        if skip:
            self._skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def _fail(self, message: str, hint: str = "") -> None:
        raise _syntax_error(self.text, self.pos, self.pos + 1, message, hint or _HINTS[self.group.name])


def coupling(group: GroupLike, a: str | Irrep, b: str | Irrep, c: str | Irrep,
             normalization: str = "wigner_3j") -> torch.Tensor:
    """The coupling tensor of three irreps, shape ``(dim a, dim b, dim c)``.

    SO(3)/O(3): float64, real basis, equal to ``e3nn.o3.wigner_3j`` (unit Frobenius norm) unless
    another ``normalization`` is asked for. SU(2): complex128 Condon–Shortley Clebsch–Gordan
    coefficients ``<j1 m1 j2 m2 | j3 m3>``, m ascending. A forbidden coupling raises
    :class:`FusionError` naming the rule it breaks.

    >>> coupling("O3", "1o", "1o", "2e").shape
    torch.Size([3, 3, 5])
    >>> round(float(coupling("SU2", "1/2", "1/2", "1")[1, 1, 2].real), 6)
    1.0
    """
    from . import wigner

    g = as_group(group)
    irreps = [x if isinstance(x, Irrep) else Irrep.parse(x, g) for x in (a, b, c)]
    problem = selection_problem(*irreps)
    if problem is not None:
        code, reason = problem
        text = f"{irreps[2]} is not in {irreps[0]} ⊗ {irreps[1]}"
        allowed = ", ".join(str(x) for x in irreps[0] * irreps[1])
        raise FusionError([Diagnostic(code, f"{text} ({reason})", hint=f"allowed: {allowed}")])
    j1, j2, j3 = (x.j for x in irreps)
    return wigner.coupling_tensor(g.name, j1, j2, j3, normalization=normalization)
