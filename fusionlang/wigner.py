"""Exact coupling coefficients, Wigner 6j/9j symbols and coupling tensors.

Spins are exact: every ``j``/``m`` argument is an ``int`` or a
``fractions.Fraction`` (any ``numbers.Rational``, e.g. ``sympy.Rational``,
works; floats are rejected).  Internally everything is carried as *twice* the
spin, an integer, and the scalar symbols are evaluated with Racah's formulas
in pure integer arithmetic.

Exact scalar results are :class:`SignedSqrt` values ``sign * sqrt(square)``
with ``square`` a ``Fraction``; every Clebsch-Gordan coefficient, 6j and 9j
symbol has that form.  ``float(value)`` is accurate to about one ulp,
``value.to_sympy()`` the sympy number.

Tensor conventions (torch is imported lazily, only by the tensor functions):

* SU(2) tensors are complex128, indexed by ``m`` ascending (``-j .. j``).
* SO(3)/O(3) tensors are float64 in e3nn's real spherical-harmonics basis
  (same ``m`` order, same axes), obtained from the complex tensors with
  :func:`real_basis_change`.  e3nn's polar (quantisation) axis is Cartesian
  ``y``: the textbook real ``l = 1`` order ``(y, z, x)`` lands on e3nn's
  Cartesian ``(x, y, z)``, so the ``l = 1`` representation matrix is the
  ordinary rotation matrix.

The Wigner D matrices (``su2_wigner_D``, ``o3_wigner_D``) are in :mod:`fusionlang.rotations`;
they can still be imported from here.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "NORMALIZATIONS",
    "SignedSqrt",
    "su2_clebsch_gordan",
    "wigner_6j",
    "wigner_9j",
    "su2_coupling",
    "real_basis_change",
    "real_coupling",
    "coupling_tensor",
    "clear_coupling_memory_cache",
]

Spin = int | Fraction

NORMALIZATIONS = ("wigner_3j", "component", "norm", "unitary")

# Bump when the content of cached coupling tensors changes meaning.
_COUPLING_CACHE_FORMAT = 1


# ------------------------------------------------------------------ exact numbers


@dataclass(frozen=True)
class SignedSqrt:
    """The exact real number ``sign * sqrt(square)``.

    ``sign`` is -1, 0 or 1 and is 0 exactly when ``square`` is 0, so the
    generated ``==`` is exact equality of the numbers.

    >>> half = SignedSqrt(-1, Fraction(1, 2))
    >>> round(float(half), 6), (half * half).square, str(half)
    (-0.707107, Fraction(1, 4), '-sqrt(1/2)')
    """

    sign: int
    square: Fraction

    def __post_init__(self) -> None:
        if self.sign not in (-1, 0, 1) or self.square < 0 or (self.sign == 0) != (self.square == 0):
            raise ValueError(f"not a canonical signed square root: {self.sign}, {self.square}")

    @classmethod
    def from_rational(cls, value: int | Fraction) -> SignedSqrt:
        """``SignedSqrt`` equal to the rational ``value``.

        >>> SignedSqrt.from_rational(Fraction(-3, 2))
        SignedSqrt(sign=-1, square=Fraction(9, 4))
        """
        value = Fraction(value)
        return cls(_sign(value), value * value)

    def __float__(self) -> float:
        return self.sign * math.sqrt(self.square)

    def __bool__(self) -> bool:
        return self.sign != 0

    def __neg__(self) -> SignedSqrt:
        return SignedSqrt(-self.sign, self.square)

    def __mul__(self, other: SignedSqrt | int | Fraction) -> SignedSqrt:
        if not isinstance(other, SignedSqrt):
            other = SignedSqrt.from_rational(other)
        return SignedSqrt(self.sign * other.sign, self.square * other.square)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return f"{'-' if self.sign < 0 else ''}sqrt({self.square})"

    def to_sympy(self) -> Any:
        """The same number as a sympy expression (imports sympy).

        >>> SignedSqrt(1, Fraction(1, 2)).to_sympy()
        sqrt(2)/2
        """
        import sympy

        root = sympy.sqrt(sympy.Rational(self.square.numerator, self.square.denominator))
        return self.sign * root


_ZERO = SignedSqrt(0, Fraction(0))


def _sign(value: int | Fraction) -> int:
    return (value > 0) - (value < 0)


def _rational_sqrt(value: Fraction) -> Fraction:
    """Exact square root of a perfect rational square (ArithmeticError otherwise)."""
    numerator, denominator = math.isqrt(value.numerator), math.isqrt(value.denominator)
    if numerator * numerator != value.numerator or denominator * denominator != value.denominator:
        raise ArithmeticError(f"{value} is not the square of a rational")
    return Fraction(numerator, denominator)


def _sum_commensurate(terms: Iterable[SignedSqrt]) -> SignedSqrt:
    """Exact sum of square roots that all share one surd (their ratios are rational)."""
    reference: Fraction | None = None
    total = Fraction(0)
    for term in terms:
        if not term:
            continue
        if reference is None:
            reference = term.square
        total += term.sign * _rational_sqrt(term.square / reference)
    if reference is None or total == 0:
        return _ZERO
    return SignedSqrt(_sign(total), total * total * reference)


_FACTORIALS: list[int] = [1]
_FACTORIALS_GROWING = threading.Lock()


def _factorials(up_to: int) -> list[int]:
    """The shared table ``[0!, 1!, ...]`` grown to hold at least ``up_to!``."""
    if len(_FACTORIALS) <= up_to:
        # Two threads growing the list at once could append a wrong entry; reads need no lock.
        with _FACTORIALS_GROWING:
            while len(_FACTORIALS) <= up_to:
                _FACTORIALS.append(_FACTORIALS[-1] * len(_FACTORIALS))
    return _FACTORIALS


# ------------------------------------------------------------------ spins


def _twice(value: Spin, what: str) -> int:
    """``2 * value`` as an int; rejects floats and non-half-integers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Rational):
        raise TypeError(f"{what} must be an int or Fraction (exact), got {value!r}")
    doubled = 2 * Fraction(value)
    if doubled.denominator != 1:
        raise ValueError(f"{what} = {value} is not a multiple of 1/2")
    return int(doubled)


def twice_spin(value: Spin, what: str = "j") -> int:
    twice = _twice(value, what)
    if twice < 0:
        raise ValueError(f"{what} = {value} must be non-negative")
    return twice


def twice_integer_spin(value: Spin, what: str = "l") -> int:
    twice = twice_spin(value, what)
    if twice % 2:
        raise ValueError(f"{what} = {value} must be an integer for SO(3)/O(3)")
    return twice


def _triangle_ok(ta: int, tb: int, tc: int) -> bool:
    """Triangle rule on twice-spins, including the integer-perimeter condition."""
    return abs(ta - tb) <= tc <= ta + tb and (ta + tb + tc) % 2 == 0


def _projection_ok(tj: int, tm: int) -> bool:
    return abs(tm) <= tj and (tj - tm) % 2 == 0


def _spin_label(twice: int) -> str:
    return str(twice // 2) if twice % 2 == 0 else f"{twice}/2"


# ------------------------------------------------------------------ Clebsch-Gordan


def _cg_sum(a: int, b: int, c: int, d: int, e: int) -> tuple[int, int]:
    """Racah's alternating sum times ``a! b! c! (d+K)! (e+K)!`` (an integer).

    The sum is ``sum_k (-1)^k / (k! (a-k)! (b-k)! (c-k)! (d+k)! (e+k)!)``;
    multiplying by that product (``K`` = last k) turns every term into an
    integer, so no fractions are needed.  Returns (integer sum, K).
    """
    first, last = max(0, -d, -e), min(a, b, c)
    f = _factorials(max(a, b, c, d + last, e + last, 0))
    total = 0
    for k in range(first, last + 1):
        term = math.comb(a, k) * (f[b] // f[b - k]) * (f[c] // f[c - k])
        term *= (f[d + last] // f[d + k]) * (f[e + last] // f[e + k])
        total += -term if k % 2 else term
    return total, last


def _cg_parts(tj1: int, tm1: int, tj2: int, tm2: int, tj: int, tm: int) -> tuple[int, int, int]:
    """``(sign, numerator, denominator)`` with CG = sign * sqrt(numerator / denominator).

    Arguments are twice-spins that already satisfy every selection rule.
    """
    a, b, c = (tj1 + tj2 - tj) // 2, (tj1 - tm1) // 2, (tj2 + tm2) // 2
    d, e = (tj - tj2 + tm1) // 2, (tj - tj1 - tm2) // 2
    total, last = _cg_sum(a, b, c, d, e)
    f = _factorials((tj1 + tj2 + tj) // 2 + 1)
    numerator = (tj + 1) * f[(tj + tj1 - tj2) // 2] * f[(tj - tj1 + tj2) // 2]
    numerator *= f[(tj + tm) // 2] * f[(tj - tm) // 2] * f[(tj1 + tm1) // 2] * f[(tj2 - tm2) // 2]
    # a!, b!, c! appear once above and twice in the sum's scale: cancel one power.
    denominator = f[(tj1 + tj2 + tj) // 2 + 1] * f[a] * f[b] * f[c]
    denominator *= (f[d + last] * f[e + last]) ** 2
    return _sign(total), numerator * total * total, denominator


def _cg_selection_ok(tj1: int, tm1: int, tj2: int, tm2: int, tj: int, tm: int) -> bool:
    projections = _projection_ok(tj1, tm1) and _projection_ok(tj2, tm2) and _projection_ok(tj, tm)
    return projections and tm == tm1 + tm2 and _triangle_ok(tj1, tj2, tj)


def su2_clebsch_gordan(j1: Spin, m1: Spin, j2: Spin, m2: Spin, j: Spin, m: Spin) -> SignedSqrt:
    """Exact Condon-Shortley coefficient ``<j1 m1 j2 m2 | j m>`` (Racah's formula).

    Equals ``sympy.physics.wigner.clebsch_gordan``; zero when a selection rule
    fails.  Returns a :class:`SignedSqrt`.

    >>> half = Fraction(1, 2)
    >>> print(su2_clebsch_gordan(half, half, half, -half, 0, 0))
    sqrt(1/2)
    """
    twice_js = (twice_spin(j1, "j1"), twice_spin(j2, "j2"), twice_spin(j, "j"))
    twice_ms = (_twice(m1, "m1"), _twice(m2, "m2"), _twice(m, "m"))
    args = (twice_js[0], twice_ms[0], twice_js[1], twice_ms[1], twice_js[2], twice_ms[2])
    if not _cg_selection_ok(*args):
        return _ZERO
    sign, numerator, denominator = _cg_parts(*args)
    return SignedSqrt(sign, Fraction(numerator, denominator)) if sign else _ZERO


def _cg_float(tj1: int, tm1: int, tj2: int, tm2: int, tj: int, tm: int) -> float:
    sign, numerator, denominator = _cg_parts(tj1, tm1, tj2, tm2, tj, tm)
    # int / int is correctly rounded in Python, even for huge integers.
    return sign * math.sqrt(numerator / denominator)


def _cg_block(tj1: int, tj2: int, tj3: int) -> list[float]:
    """Row-major ``(m1, m2, m3)`` block; only entries with m3 = m1 + m2 are computed."""
    n1, n2, n3 = tj1 + 1, tj2 + 1, tj3 + 1
    values = [0.0] * (n1 * n2 * n3)
    for i1 in range(n1):
        tm1 = 2 * i1 - tj1
        for i2 in range(n2):
            tm3 = tm1 + 2 * i2 - tj2
            if abs(tm3) <= tj3:
                index = (i1 * n2 + i2) * n3 + (tm3 + tj3) // 2
                values[index] = _cg_float(tj1, tm1, tj2, 2 * i2 - tj2, tj3, tm3)
    return values


# ------------------------------------------------------------------ 6j and 9j


def _delta_square(ta: int, tb: int, tc: int) -> Fraction:
    """Square of the triangle coefficient Delta(a b c) (twice-spins, triangle valid)."""
    f = _factorials((ta + tb + tc) // 2 + 1)
    numerator = f[(ta + tb - tc) // 2] * f[(ta - tb + tc) // 2] * f[(tb + tc - ta) // 2]
    return Fraction(numerator, f[(ta + tb + tc) // 2 + 1])


def _six_j_triads(t: tuple[int, ...]) -> tuple[tuple[int, int, int], ...]:
    return ((t[0], t[1], t[2]), (t[0], t[4], t[5]), (t[3], t[1], t[5]), (t[3], t[4], t[2]))


def _racah_6j_sum(t: tuple[int, ...]) -> Fraction:
    """``sum_z (-1)^z (z+1)! / (prod (z - a_i)! prod (b_k - z)!)`` of Racah's formula."""
    lows = [sum(triad) // 2 for triad in _six_j_triads(t)]
    highs = [(t[0] + t[1] + t[3] + t[4]) // 2, (t[1] + t[2] + t[4] + t[5]) // 2]
    highs.append((t[2] + t[0] + t[5] + t[3]) // 2)
    f = _factorials(max(highs) + 1)
    total = Fraction(0)
    for z in range(max(lows), min(highs) + 1):
        denominator = math.prod(f[z - low] for low in lows) * math.prod(f[high - z] for high in highs)
        total += Fraction(-f[z + 1] if z % 2 else f[z + 1], denominator)
    return total


def _wigner_6j_twice(t: tuple[int, ...]) -> SignedSqrt:
    triads = _six_j_triads(t)
    if not all(_triangle_ok(*triad) for triad in triads):
        return _ZERO
    total = _racah_6j_sum(t)
    deltas = math.prod(_delta_square(*triad) for triad in triads)
    return SignedSqrt(_sign(total), total * total * deltas) if total else _ZERO


def wigner_6j(j1: Spin, j2: Spin, j3: Spin, j4: Spin, j5: Spin, j6: Spin) -> SignedSqrt:
    """Exact Wigner 6j symbol ``{j1 j2 j3; j4 j5 j6}`` (Racah's formula).

    Equals ``sympy.physics.wigner.wigner_6j``; zero when a triangle rule
    (including integer perimeter) fails.

    >>> print(wigner_6j(1, 1, 1, 1, 1, 1))
    sqrt(1/36)
    """
    spins = (j1, j2, j3, j4, j5, j6)
    return _wigner_6j_twice(tuple(twice_spin(s, f"j{i + 1}") for i, s in enumerate(spins)))


def _nine_j_terms(t: tuple[int, ...]) -> Iterable[SignedSqrt]:
    """Terms ``(-1)^2x (2x+1) {j1 j4 j7; j8 j9 x}{j2 j5 j8; j4 x j6}{j3 j6 j9; x j1 j2}``."""
    j1, j2, j3, j4, j5, j6, j7, j8, j9 = t
    low = max(abs(j1 - j9), abs(j4 - j8), abs(j2 - j6))
    high = min(j1 + j9, j4 + j8, j2 + j6)
    for x in range(low, high + 1, 2):
        weight = -(x + 1) if x % 2 else x + 1
        first = _wigner_6j_twice((j1, j4, j7, j8, j9, x))
        second = _wigner_6j_twice((j2, j5, j8, j4, x, j6))
        third = _wigner_6j_twice((j3, j6, j9, x, j1, j2))
        yield first * second * third * weight


def wigner_9j(
    j1: Spin, j2: Spin, j3: Spin, j4: Spin, j5: Spin, j6: Spin, j7: Spin, j8: Spin, j9: Spin
) -> SignedSqrt:
    """Exact Wigner 9j symbol with rows ``(j1 j2 j3) (j4 j5 j6) (j7 j8 j9)``.

    Computed as the sum over ``x`` of products of three 6j symbols; all terms
    share one surd, so the result is again a :class:`SignedSqrt`.  Equals
    ``sympy.physics.wigner.wigner_9j``.

    >>> print(wigner_9j(1, 1, 0, 1, 1, 0, 0, 0, 0))
    sqrt(1/9)
    """
    spins = (j1, j2, j3, j4, j5, j6, j7, j8, j9)
    t = tuple(twice_spin(s, f"j{i + 1}") for i, s in enumerate(spins))
    rows_and_columns = (t[0:3], t[3:6], t[6:9], t[0::3], t[1::3], t[2::3])
    if not all(_triangle_ok(*triad) for triad in rows_and_columns):
        return _ZERO
    return _sum_commensurate(_nine_j_terms(t))


# ------------------------------------------------------------------ tensors


def _check_triangle(t1: int, t2: int, t3: int) -> None:
    if not _triangle_ok(t1, t2, t3):
        labels = ", ".join(_spin_label(t) for t in (t1, t2, t3))
        raise ValueError(f"({labels}) violates the triangle rule |j1-j2| <= j3 <= j1+j2")


def _su2_block_tensor(t1: int, t2: int, t3: int) -> torch.Tensor:
    import torch

    values = torch.tensor(_cg_block(t1, t2, t3), dtype=torch.float64)
    return values.reshape(t1 + 1, t2 + 1, t3 + 1).to(torch.complex128)


def su2_coupling(j1: Spin, j2: Spin, j3: Spin) -> torch.Tensor:
    """Clebsch-Gordan tensor ``C[m1, m2, m3] = <j1 m1 j2 m2 | j3 m3>`` (complex128).

    Shape ``(2j1+1, 2j2+1, 2j3+1)``, ``m`` ascending on every axis.  It is
    unitary: ``sum_{m1 m2} C[m1, m2, m3] conj(C[m1, m2, n3]) = delta(m3, n3)``,
    and invariant: ``D1 (x) D2 C = C D3`` for :func:`su2_wigner_D` matrices.
    Raises ValueError if the triangle rule fails.

    >>> su2_coupling(Fraction(1, 2), Fraction(1, 2), 0)[:, :, 0].real
    tensor([[ 0.0000, -0.7071],
            [ 0.7071,  0.0000]], dtype=torch.float64)
    """
    twice = (twice_spin(j1, "j1"), twice_spin(j2, "j2"), twice_spin(j3, "j3"))
    _check_triangle(*twice)
    return _su2_block_tensor(*twice)


def real_basis_change(l: int) -> torch.Tensor:
    """Unitary ``Q`` (complex128, ``(2l+1, 2l+1)``) with ``real = Q @ complex``.

    Row index: real component (e3nn order), column index: complex ``m``
    ascending.  Rows ``mu > 0`` hold ``(Y_{-mu} + (-1)^mu Y_mu) / sqrt 2``,
    rows ``mu < 0`` hold ``i (Y_{-|mu|} - (-1)^mu Y_{|mu|}) / sqrt 2``, all times
    ``i^l`` (the phase that makes the real coupling tensors real, as in e3nn).
    ``Q`` is the conjugate transpose of e3nn's ``change_basis_real_to_complex``;
    representations map as ``D_real = Q D_complex Q^H``.

    >>> import torch
    >>> q = real_basis_change(1)
    >>> bool((q @ q.conj().T - torch.eye(3)).abs().max() < 1e-15)
    True
    """
    import torch

    rows = [[0j] * (2 * l + 1) for _ in range(2 * l + 1)]
    root_half = math.sqrt(0.5)
    rows[l][l] = 1
    for mu in range(1, l + 1):
        parity = -1 if mu % 2 else 1
        rows[l + mu][l - mu] = root_half
        rows[l + mu][l + mu] = parity * root_half
        rows[l - mu][l - mu] = 1j * root_half
        rows[l - mu][l + mu] = -1j * parity * root_half
    phase = (1, 1j, -1, -1j)[l % 4]
    return torch.tensor(rows, dtype=torch.complex128) * phase


def _normalization_scale(normalization: str, t1: int, t2: int, t3: int) -> float:
    """Factor applied to the unitary CG tensor (whose Frobenius norm^2 is 2 j3 + 1)."""
    if normalization in ("component", "unitary"):
        return 1.0
    if normalization == "wigner_3j":
        return 1.0 / math.sqrt(t3 + 1)
    if normalization == "norm":
        return math.sqrt((t1 + 1) * (t2 + 1) / (t3 + 1))
    raise ValueError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")


def _real_block_tensor(t1: int, t2: int, t3: int, normalization: str) -> torch.Tensor:
    import torch

    scale = _normalization_scale(normalization, t1, t2, t3)
    q1, q2, q3 = (real_basis_change(t // 2) for t in (t1, t2, t3))
    # Inputs transform with conj(Q), the output with Q (see real_basis_change).
    complex_real = torch.einsum("ai,bj,ck,ijk->abc", q1.conj(), q2.conj(), q3, _su2_block_tensor(t1, t2, t3))
    if complex_real.imag.abs().max() > 1e-12:
        raise ArithmeticError("real coupling has an imaginary part: phase convention broken")
    return complex_real.real * scale


def real_coupling(l1: int, l2: int, l3: int, normalization: str = "wigner_3j") -> torch.Tensor:
    """Real-basis SO(3) coupling tensor (float64, ``(2l1+1, 2l2+1, 2l3+1)``).

    With the default ``normalization="wigner_3j"`` it equals
    ``e3nn.o3.wigner_3j(l1, l2, l3)``: same basis, ``m`` order and sign, unit
    Frobenius norm.  The other normalizations rescale that tensor ``W``:

    * ``"unitary"``: ``sqrt(2l3+1) * W``, the real Clebsch-Gordan tensor,
      ``sum_{m1 m2} C[m1, m2, m3]^2 = 1`` for every ``m3``
      (Frobenius norm^2 ``2l3+1``).
    * ``"component"``: ``sqrt(2l3+1) * W`` (numerically the same as
      ``"unitary"``), e3nn's irrep normalization ``"component"``: inputs with
      unit-variance components give outputs with unit-variance components.
    * ``"norm"``: ``sqrt((2l1+1)(2l2+1)) * W``, e3nn's ``"norm"``: unit-norm
      inputs give outputs of unit expected norm (Frobenius norm^2
      ``(2l1+1)(2l2+1)``).

    Built from the exact complex CG tensor and :func:`real_basis_change`
    (no numerical null-space solving).  Raises ValueError on a triangle failure.

    >>> round(float(real_coupling(1, 1, 0)[0, 0, 0]), 6)
    0.57735
    """
    twice = (twice_integer_spin(l1, "l1"), twice_integer_spin(l2, "l2"), twice_integer_spin(l3, "l3"))
    _check_triangle(*twice)
    return _real_block_tensor(*twice, normalization)


def _group_family(group: str) -> str:
    family = group.upper().replace("(", "").replace(")", "")
    if family == "SU2":
        return "SU2"
    if family in ("SO3", "O3"):
        # Parity selection rules are the caller's business: O3 reuses SO3 tensors.
        return "SO3"
    raise ValueError(f"unknown group {group!r}; expected 'SU2', 'SO3' or 'O3'")


def _su2_scale(normalization: str, t1: int, t2: int, t3: int) -> float:
    """SU(2) factor on the CG tensor: only "norm" rescales (see coupling_tensor)."""
    scale = _normalization_scale(normalization, t1, t2, t3)  # also validates the name
    return scale if normalization == "norm" else 1.0


def _build_coupling(family: str, t1: int, t2: int, t3: int, normalization: str) -> torch.Tensor:
    if family == "SO3":
        return _real_block_tensor(t1, t2, t3, normalization)
    return _su2_block_tensor(t1, t2, t3) * _su2_scale(normalization, t1, t2, t3)


def _looks_right(tensors: dict[str, torch.Tensor], family: str, twice: tuple[int, int, int]) -> bool:
    import torch

    tensor = tensors.get("coupling")
    dtype = torch.float64 if family == "SO3" else torch.complex128
    shape = tuple(t + 1 for t in twice)
    return tensor is not None and tensor.dtype == dtype and tuple(tensor.shape) == shape


@lru_cache(maxsize=4096)
def _memoized_coupling(family: str, t1: int, t2: int, t3: int, normalization: str) -> torch.Tensor:
    from fusionlang import cache

    key = f"fusionlang.coupling/v{_COUPLING_CACHE_FORMAT}/{family}/{normalization}/{t1},{t2},{t3}"
    tensors = cache.cached_tensors(
        key,
        lambda: {"coupling": _build_coupling(family, t1, t2, t3, normalization)},
        validate=lambda stored: _looks_right(stored, family, (t1, t2, t3)),
    )
    return tensors["coupling"]


def coupling_tensor(
    group: str, j1: Spin, j2: Spin, j3: Spin, normalization: str = "wigner_3j"
) -> torch.Tensor:
    """Coupling tensor of ``j1 (x) j2 -> j3`` for ``group`` "SU2", "SO3" or "O3".

    * "SU2": complex128, the Condon-Shortley CG tensor of :func:`su2_coupling`
      for ``"wigner_3j"`` (the default), ``"unitary"`` and ``"component"``;
      ``"norm"`` multiplies it by ``sqrt((2j1+1)(2j2+1)/(2j3+1))``.  (SU(2)
      callers expect the CG coefficients themselves by default, so the
      default is not rescaled to unit Frobenius norm here.)
    * "SO3"/"O3": float64, :func:`real_coupling` (parity rules are not checked).

    Results are memoised in-process and on disk (:mod:`fusionlang.cache`).
    Every call returns a fresh tensor (a clone) that the caller may modify.
    Raises ValueError on a triangle-rule failure, half-integer ``l`` for
    SO3/O3, an unknown group or an unknown normalization.

    >>> coupling_tensor("SO3", 1, 1, 2).shape
    torch.Size([3, 3, 5])
    """
    family = _group_family(group)
    to_twice = twice_integer_spin if family == "SO3" else twice_spin
    twice = (to_twice(j1, "j1"), to_twice(j2, "j2"), to_twice(j3, "j3"))
    _check_triangle(*twice)
    _normalization_scale(normalization, *twice)  # validates the name
    return _memoized_coupling(family, *twice, normalization).clone()


def clear_coupling_memory_cache() -> None:
    """Forget the in-process memo of :func:`coupling_tensor` (the disk cache stays).

    >>> clear_coupling_memory_cache()
    """
    _memoized_coupling.cache_clear()
