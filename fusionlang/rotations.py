"""Rotations: Wigner D matrices, group elements, and how they act on features.

* :func:`su2_wigner_D` and :func:`o3_wigner_D`: the matrix of one irrep (Condon-Shortley basis;
  e3nn's real basis), accurate to about 1e-14 for every spin up to :data:`MAX_SPIN`;
* :class:`GroupElement`, :func:`random_rotation`, :func:`irrep_matrix`: elements of SU(2),
  SO(3), O(3) and their matrices;
* :func:`rotate`: an element acting on features in the ``mul_ir`` layout, one ``(2l+1)^2`` matrix
  per irrep, never a ``dim x dim`` one (10^5 channels cost what one channel costs, times 10^5);
  :func:`representation` builds the dense block-diagonal matrix, for small irreps.

How ``d^j(beta)`` is computed, and why. Wigner's closed formula is an alternating sum whose terms
reach ``binomial(2j, j)``-sized magnitudes before they cancel: in float64 it keeps 1e-9 at l = 30
and its factorials overflow near l = 50. Instead ``d^j(beta) = exp(-i beta J_y)`` is taken from the
eigen-decomposition ``J_y = V diag(m) V^H``: ``J_y`` is Hermitian and tridiagonal, its eigenvalues
are exactly ``-j .. j`` (used as such), one apart, so LAPACK's eigenvectors are accurate to about
``eps * j`` (the gap theorem), and ``d = V diag(exp(-i beta m)) V^H`` is unitary to rounding by
construction. The same code serves half-integer spins (the stable recursions of Risbo or
Ivanic-Ruedenberg are written for one basis or for integer l). One ``eigh`` per spin is cached;
each angle then costs one ``(2j+1)^2`` matrix product. Measured against exact values (rational
``cos(beta/2)``, integer arithmetic), the largest error is 2e-15 at l = 30, 4e-15 at l = 60 and
8e-15 at l = 200.

>>> element = random_rotation("O3", torch.Generator().manual_seed(0))
>>> x = torch.randn(2, 100 * 3, dtype=torch.float64)
>>> bool(torch.allclose(rotate(x, Irreps("100x1o"), element), x @ representation("100x1o", element).T))
True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import torch

from .groups import SU2, Group, GroupLike, Irrep, Irreps, as_group
from .wigner import Spin, real_basis_change, twice_integer_spin, twice_spin

__all__ = [
    "MAX_SPIN", "GroupElement", "feature_dtype", "irrep_matrix", "o3_wigner_D", "random_rotation",
    "random_rotation_angles", "real_dtype", "representation", "rotate", "su2_wigner_D",
]

Angle = float | torch.Tensor
IrrepsLike = Irreps | str

# The largest spin (j or l) whose D matrices are offered: measured there to 8e-15 against exact
# values. Above it nothing was measured, so the functions refuse rather than guess.
MAX_SPIN = 200


# -- Wigner D matrices ------------------------------------------------------------------------------

def _check_spin(twice: int) -> None:
    if twice > 2 * MAX_SPIN:
        spin = str(twice // 2) if twice % 2 == 0 else f"{twice}/2"
        raise ValueError(f"Wigner D matrices are supported up to spin {MAX_SPIN} (accuracy measured "
                         f"to 1e-14 there); spin {spin} is above it")


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: MKL's threaded ``eigh`` of a 121 x 121 matrix took 2 s instead of
    2 ms on a loaded two-core machine (threads waiting for each other)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@lru_cache(maxsize=256)
def _jy_eigenvectors(tj: int) -> torch.Tensor:
    """Unit eigenvectors of ``J_y`` (columns, for the eigenvalues ``m = -j .. j`` ascending)."""
    n = tj + 1
    m = torch.arange(-tj, tj, 2, dtype=torch.float64) / 2  # m = -j .. j - 1
    ladder = torch.sqrt((tj / 2 - m) * (tj / 2 + m + 1))  # <m+1| J+ |m>, Condon-Shortley (real)
    jy = torch.zeros(n, n, dtype=torch.complex128)
    below = torch.arange(n - 1)
    jy[below + 1, below] = -0.5j * ladder  # J_y = (J+ - J-) / 2i
    jy[below, below + 1] = 0.5j * ladder
    with _one_thread():
        values, vectors = torch.linalg.eigh(jy)
    exact = torch.arange(-tj, tj + 1, 2, dtype=torch.float64) / 2
    if float((values - exact).abs().max()) > 1e-9:
        raise ArithmeticError(f"J_y of spin {tj}/2 has eigenvalues off -j..j")
    return vectors


def _small_d(tj: int, beta: torch.Tensor) -> torch.Tensor:
    """``d^j(beta) = exp(-i beta J_y)``, float64 ``(..., 2j+1, 2j+1)``, rows m', columns m."""
    vectors = _jy_eigenvectors(tj)
    m = torch.arange(-tj, tj + 1, 2, dtype=torch.float64) / 2
    # d = 1 + V diag(exp(-i beta m) - 1) V^H: exactly the identity at beta = 0. Eigenvectors of
    # m and -m are complex conjugates, so the product is real up to rounding.
    phases = torch.polar(torch.ones_like(m), -m * beta[..., None]) - 1
    return torch.eye(tj + 1, dtype=torch.float64) + ((vectors * phases[..., None, :]) @ vectors.conj().T).real


def _as_angles(*angles: Angle) -> list[torch.Tensor]:
    return list(torch.broadcast_tensors(*(torch.as_tensor(a, dtype=torch.float64) for a in angles)))


def su2_wigner_D(j: Spin, alpha: Angle, beta: Angle, gamma: Angle) -> torch.Tensor:
    """Condon-Shortley Wigner matrix ``D^j(alpha, beta, gamma)``, complex128.

    ZYZ Euler angles: ``D = exp(-i alpha Jz) exp(-i beta Jy) exp(-i gamma Jz)``,
    i.e. ``D[m', m] = exp(-i m' alpha) d[m', m](beta) exp(-i m gamma)``, rows
    and columns ``m`` ascending.  Angles are floats or tensors that broadcast;
    the result has shape ``(..., 2j+1, 2j+1)``.  The CG tensors of
    :func:`fusionlang.wigner.su2_coupling` satisfy ``D1 (x) D2 C = C D3``.
    Spins above :data:`MAX_SPIN` raise ValueError.

    >>> bool(torch.allclose(su2_wigner_D(1, 0.0, 0.0, 0.0), torch.eye(3, dtype=torch.complex128)))
    True
    """
    tj = twice_spin(j)
    _check_spin(tj)
    alpha_t, beta_t, gamma_t = _as_angles(alpha, beta, gamma)
    m = torch.arange(-tj, tj + 1, 2, dtype=torch.float64) / 2
    left = torch.polar(torch.ones_like(m), -m * alpha_t[..., None])
    right = torch.polar(torch.ones_like(m), -m * gamma_t[..., None])
    return left[..., :, None] * _small_d(tj, beta_t) * right[..., None, :]


def _parity_sign(parity: int | str) -> int:
    sign = {"e": 1, "o": -1, 1: 1, -1: -1}.get(parity)
    if sign is None:
        raise ValueError(f"parity must be 1, -1, 'e' or 'o', got {parity!r}")
    return sign


def o3_wigner_D(l: int, parity: int | str, alpha: Angle, beta: Angle, gamma: Angle,  # noqa: E741
                k: Angle = 0) -> torch.Tensor:
    """Real O(3) representation matrix in e3nn's basis, float64 ``(..., 2l+1, 2l+1)``.

    Equals ``e3nn.o3.Irrep(l, parity).D_from_angles(alpha, beta, gamma, k)``:
    ``parity**k`` times the rotation by ``gamma`` around Y, then ``beta``
    around X, then ``alpha`` around Y.  In e3nn's complex basis that rotation
    is ``su2_wigner_D(l, -alpha, beta, -gamma)``; it is brought to the real
    basis with :func:`fusionlang.wigner.real_basis_change`.  ``parity`` is 1/-1 (or "e"/"o").

    >>> [round(x, 12) for x in o3_wigner_D(1, -1, 0.0, 0.0, 0.0, k=1).diagonal().tolist()]
    [-1.0, -1.0, -1.0]
    """
    sign = _parity_sign(parity)
    tl = twice_integer_spin(l)
    alpha_t, beta_t, gamma_t, k_t = _as_angles(alpha, beta, gamma, k)
    q = real_basis_change(tl // 2)
    rotation = (q @ su2_wigner_D(tl // 2, -alpha_t, beta_t, -gamma_t) @ q.conj().T).real
    factor = torch.as_tensor(float(sign), dtype=torch.float64) ** k_t
    return rotation * factor[..., None, None]


def random_rotation_angles(generator: torch.Generator | None = None,
                           shape: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Haar-random Euler angles ``(alpha, beta, gamma)`` as float64 tensors of ``shape``.

    >>> alpha, beta, gamma = random_rotation_angles(torch.Generator().manual_seed(0))
    >>> bool(0 <= beta <= math.pi)
    True
    """
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)

    # Uniform cos(beta) makes the rotation uniformly (Haar) distributed.
    return uniform(0, 2 * math.pi), torch.arccos(uniform(-1, 1)), uniform(0, 2 * math.pi)


# -- group elements -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupElement:
    """A rotation given by Euler angles, followed by the inversion ``x -> -x`` when ``inversion``.

    The angles follow :func:`su2_wigner_D` (SU(2): ``gamma`` in ``[0, 4 pi)`` reaches the whole
    double cover) and :func:`o3_wigner_D` (SO(3)/O(3), e3nn's convention). Only O(3) elements can
    be inversions.

    >>> GroupElement(SU2, 0.0, 0.0, 2 * math.pi).inversion
    False
    """

    group: Group
    alpha: float
    beta: float
    gamma: float
    inversion: bool = False

    def __post_init__(self) -> None:
        if self.inversion and not self.group.has_parity:
            raise ValueError(f"{self.group} has no inversion")


def random_rotation(group: GroupLike, generator: torch.Generator | None = None,
                    parity: bool = True) -> GroupElement:
    """A Haar-random element of ``group``; for O(3) an inversion half of the time when ``parity``.

    >>> element = random_rotation("O3", torch.Generator().manual_seed(1))
    >>> element.group.name, 0 <= element.beta <= math.pi
    ('O3', True)
    """
    g = as_group(group)
    alpha, beta, gamma = (float(a) for a in random_rotation_angles(generator))
    if g == SU2 and _coin(generator):
        gamma += 2 * math.pi  # the other preimage in SU(2) of the same rotation
    return GroupElement(g, alpha, beta, gamma, g.has_parity and parity and _coin(generator))


def _coin(generator: torch.Generator | None) -> bool:
    return bool(torch.rand((), generator=generator, dtype=torch.float64) < 0.5)


def irrep_matrix(irrep: Irrep, element: GroupElement) -> torch.Tensor:
    """``D(element)`` of one irrep: complex128 for SU(2), float64 for SO(3)/O(3).

    >>> inversion = GroupElement(Irrep.parse("1o").group, 0.0, 0.0, 0.0, True)
    >>> [round(x, 9) for x in irrep_matrix(Irrep.parse("1o"), inversion).diagonal().tolist()]
    [-1.0, -1.0, -1.0]
    """
    angles = (element.alpha, element.beta, element.gamma)
    if element.group == SU2:
        return su2_wigner_D(irrep.j, *angles)
    return o3_wigner_D(irrep.l, irrep.parity or 1, *angles, k=int(element.inversion))


# -- acting on features ---------------------------------------------------------------------------------

def _irreps_of(irreps: IrrepsLike, element: GroupElement) -> Irreps:
    irreps = Irreps(irreps, element.group)
    if irreps.group != element.group:
        raise ValueError(f"irreps of {irreps.group} cannot be acted on by an element of {element.group}")
    return irreps


def rotate(x: torch.Tensor, irreps: IrrepsLike, element: GroupElement) -> torch.Tensor:
    """``x @ representation(irreps, element).T``, applied block by block.

    Each entry's ``[..., mul, 2l+1]`` view is multiplied by its irrep's matrix (computed once per
    distinct irrep), so the cost is linear in the number of channels and no ``dim x dim`` matrix
    is built. The result is complex for SU(2) (real ``x`` is promoted), else of ``x``'s dtype.

    >>> element = GroupElement(Irrep.parse("0e").group, 0.0, 0.0, 0.0, True)
    >>> rotate(torch.tensor([1.0, 1.0, 2.0, 3.0]), "0e + 1o", element).tolist()
    [1.0, -1.0, -2.0, -3.0]
    """
    irreps = _irreps_of(irreps, element)
    if x.shape[-1] != irreps.dim:
        raise ValueError(f"features of dim {x.shape[-1]} cannot carry {irreps} (dim {irreps.dim})")
    dtype = feature_dtype(irreps.group, x.dtype)
    x, batch = x.to(dtype), x.shape[:-1]
    matrices: dict[Irrep, torch.Tensor] = {}
    pieces = []
    for entry, where in zip(irreps, irreps.slices(), strict=True):
        if entry.irrep not in matrices:
            matrices[entry.irrep] = irrep_matrix(entry.irrep, element).to(dtype)
        block = x[..., where].reshape(*batch, entry.mul, entry.irrep.dim)
        pieces.append((block @ matrices[entry.irrep].T).reshape(*batch, entry.dim))
    return torch.cat(pieces, dim=-1) if pieces else x.clone()


def representation(irreps: IrrepsLike, element: GroupElement, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The dense block-diagonal matrix ``D`` of ``element`` on features of ``irreps`` (``mul_ir``).

    A feature vector ``x`` (shape ``[..., dim]``) transforms as ``x @ D.T``; :func:`rotate` does
    that without building ``D`` (use it beyond a few thousand dimensions). ``dtype`` is made
    complex for SU(2) (float32 → complex64); by default it is complex128 / float64.

    >>> D = representation("2x0e + 1o", GroupElement(Irrep.parse("0e").group, 0.1, 0.2, 0.3, True))
    >>> D.shape, bool(torch.allclose(D @ D.T, torch.eye(5, dtype=torch.float64)))
    (torch.Size([5, 5]), True)
    """
    irreps = _irreps_of(irreps, element)
    blocks = [irrep_matrix(entry.irrep, element) for entry in irreps for _ in range(entry.mul)]
    matrix = torch.block_diag(*blocks) if blocks else torch.zeros(0, 0, dtype=torch.float64)
    return matrix.to(feature_dtype(irreps.group, dtype))


def feature_dtype(group: GroupLike, dtype: torch.dtype | None = None) -> torch.dtype:
    """The dtype of features of ``group`` at precision ``dtype`` (complex for SU(2)).

    >>> feature_dtype("SU2", torch.float32), feature_dtype("O3")
    (torch.complex64, torch.float64)
    """
    dtype = dtype or torch.float64
    if as_group(group).is_complex and not dtype.is_complex:
        return {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, torch.complex128)
    return dtype


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (complex64 → float32).

    >>> real_dtype(torch.complex128)
    torch.float64
    """
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
