"""Exact quantum transmission for Tully's simple avoided crossing (model 1), the reference of
tests/test_surface_hopping.py: a split-operator wave packet on two diabatic states, analysed in the
adiabatic basis at the end. Atomic units throughout; about 20 s per momentum.

    python scripts/tully_wavepacket.py 10 20 30
    # k = 30: T_upper 0.7152, T_lower 0.2848, R 3e-10
"""

from __future__ import annotations

import sys

import numpy as np

A, B, C, D, MASS = 0.01, 1.6, 0.005, 1.0, 2000.0


def adiabats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper eigenvalue r and the upper and lower eigenvectors ([2, points]) of the diabatic matrix."""
    v11 = np.sign(x) * A * (1 - np.exp(-B * np.abs(x)))
    v12 = C * np.exp(-D * x * x)
    angle = 0.5 * np.arctan2(v12, v11)
    return np.hypot(v11, v12), np.stack([np.cos(angle), np.sin(angle)]), np.stack([-np.sin(angle), np.cos(angle)])


def transmission(k: float, start: float = -20.0, points: int = 2**14, half_width: float = 60.0,
                 dt: float = 1.0) -> tuple[float, float, float]:
    """(upper transmitted, lower transmitted, reflected) probabilities of a Gaussian packet (σ_x = 20/k)
    starting on the lower adiabat at ``start`` with momentum ``k``."""
    x = np.linspace(-half_width, half_width, points, endpoint=False)
    dx = x[1] - x[0]
    p = 2 * np.pi * np.fft.fftfreq(points, dx)
    r, up, low = adiabats(x)
    sigma = 20.0 / k
    packet = np.exp(-((x - start) ** 2) / (4 * sigma**2) + 1j * k * x)
    psi = low * packet / np.sqrt(np.sum(np.abs(packet) ** 2) * dx)
    phase, kinetic = np.exp(-0.5j * r * dt), np.exp(-0.5j * p * p / MASS * dt)
    for _ in range(int(45.0 / (k / MASS) / dt)):  # until the packet has moved 45 bohr
        psi = half_potential(psi, up, low, phase)
        psi = np.fft.ifft(kinetic * np.fft.fft(psi, axis=1), axis=1)
        psi = half_potential(psi, up, low, phase)
    right = x > 0
    upper, lower = (up * psi).sum(0), (low * psi).sum(0)
    return (float(np.sum(np.abs(upper[right]) ** 2) * dx), float(np.sum(np.abs(lower[right]) ** 2) * dx),
            float(np.sum(np.abs(psi[:, ~right]) ** 2) * dx))


def half_potential(psi: np.ndarray, up: np.ndarray, low: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """exp(−i V dt/2) applied in the adiabatic eigenbasis (eigenvalues ±r)."""
    return up * ((up * psi).sum(0) * phase) + low * ((low * psi).sum(0) / phase)


if __name__ == "__main__":
    for argument in sys.argv[1:] or ["30"]:
        upper, lower, reflected = transmission(float(argument))
        print(f"k = {argument}: T_upper {upper:.4f}, T_lower {lower:.4f}, R {reflected:.1g}")
