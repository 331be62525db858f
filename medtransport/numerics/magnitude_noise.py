"""Magnitude-image noise: Rician (one coil) and non-central χ (L coils, sum of squares), the
distributions a scanner's magnitude images follow; sampling and exact moments.

A complex signal ν (real, without loss of generality) with independent Gaussian noise of SD σ
on the real and imaginary parts of each of L coils, combined by root-sum-of-squares, has the
magnitude M = √(Σ_l |ν_l + σ(z_l + i·z'_l)|²) with Σ_l|ν_l|² = ν²: M/σ is non-central χ with
2L degrees of freedom and non-centrality ν/σ (Constantinides, Atalar & McVeigh, *Magn Reson
Med* 1997;38:852; L = 1 is the Rice distribution, Gudbjartsson & Patz 1995). Its moments:

    E[M]  = σ·√(π/2)·(Γ(L + ½)/(Γ(L)·Γ(3/2)))·₁F₁(−½; L; −ν²/2σ²)
          (for L = 1: σ√(π/2)·L½(−ν²/2σ²), the Laguerre form)
    E[M²] = ν² + 2Lσ²,       Var[M²] = 4Lσ⁴ + 4σ²ν²

SNR is stated as ν/σ (the per-coil σ of the real channel). Knows no physics.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, hyp1f1

__all__ = ["magnitude_mean", "magnitude_noise", "magnitude_second_moment",
           "magnitude_variance"]


def magnitude_noise(clean: np.ndarray, sigma: float | np.ndarray, rng: np.random.Generator,
                    coils: int = 1) -> np.ndarray:
    """A draw of M for true amplitudes ``clean`` (≥ 0, any shape): Rician for ``coils`` = 1,
    non-central χ with 2·``coils`` degrees of freedom otherwise."""
    if coils < 1:
        raise ValueError(f"coils must be ≥ 1, got {coils}")
    nu = np.asarray(clean, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    # all signal in the first channel: the distribution depends on ν only through |ν|
    total = (nu + sigma * rng.standard_normal(nu.shape)) ** 2
    for _ in range(2 * coils - 1):
        total += (sigma * rng.standard_normal(nu.shape)) ** 2
    return np.sqrt(total)


def magnitude_mean(nu: np.ndarray, sigma: float | np.ndarray, coils: int = 1) -> np.ndarray:
    """E[M] (module docstring)."""
    nu = np.asarray(nu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    c = math.exp(gammaln(coils + 0.5) - gammaln(coils) - gammaln(1.5))
    return sigma * math.sqrt(math.pi / 2.0) * c * hyp1f1(-0.5, coils, -(nu ** 2) / (2 * sigma ** 2))


def magnitude_second_moment(nu: np.ndarray, sigma: float | np.ndarray,
                            coils: int = 1) -> np.ndarray:
    """E[M²] = ν² + 2Lσ²."""
    return np.asarray(nu, dtype=float) ** 2 + 2 * coils * np.asarray(sigma, dtype=float) ** 2


def magnitude_variance(nu: np.ndarray, sigma: float | np.ndarray, coils: int = 1) -> np.ndarray:
    """Var[M] = E[M²] − E[M]²."""
    return np.maximum(magnitude_second_moment(nu, sigma, coils)
                      - magnitude_mean(nu, sigma, coils) ** 2, 0.0)
