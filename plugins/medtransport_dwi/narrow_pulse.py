"""Narrow-pulse (δ → 0) signals of restricted diffusion: exact eigenfunction series.

With q = γGδ and diffusion time Δ, E(q, Δ) = Σ_k |⟨u_0|e^{iqx}|u_k⟩|² e^{−λ_k DΔ} (Callaghan,
*Principles of NMR Microscopy*, 1991, §6.5; Callaghan, J Magn Reson A 113:53, 1995):

- planes at separation L, u = qL (REFERENCES §4)::

      E = 2(1 − cos u)/u² + 4u² Σ_{n≥1} e^{−n²π²DΔ/L²} (1 − (−1)ⁿcos u)/(u² − (nπ)²)²

  written stably as E = sinc²(u/2) + Σ 2u²/(u + nπ)² · sinc²((u − nπ)/2) e^{…} (sinc y =
  sin y / y), so the term at u = nπ takes its finite limit ½e^{−n²π²DΔ/L²} instead of 0/0;
- cylinder of radius R, q ⊥ axis, x = qR::

      E = [2J₁(x)/x]² + Σ_{n≥0,k} 8α²x²J_n'(x)² / ((1 + δ_n0)(α² − n²)(x² − α²)²) e^{−α²DΔ/R²}

- sphere of radius R, x = qR::

      E = [3j₁(x)/x]² + Σ_{n≥0,k} 6(2n + 1)α²x²j_n'(x)² / ((α² − n(n + 1))(x² − α²)²) e^{−α²DΔ/R²}

(α = α_nk > 0 the Neumann roots of :mod:`eigenbasis`). At x = α the ratio x·J_n'(x)/(x² − α²)
tends to J_n''(α)/2 = −(1 − n²/α²)J_n(α)/2 (and likewise for j_n with n(n + 1)). At Δ = 0 every
series sums to 1 (completeness), the check of its truncation: the neglected terms are
non-negative and each is multiplied by e^{−λDΔ} ≤ 1, so 1 − (truncated sum at Δ = 0) bounds the
truncation error at every Δ. Long-time limits: sinc²(qL/2), [2J₁(qR)/(qR)]², [3j₁(qR)/(qR)]².
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import jv, jvp, spherical_jn

from medtransport_dwi.eigenbasis import ball_roots, disk_roots

__all__ = ["cylinder", "planes", "planes_terms", "sphere", "truncation_gap"]

#: Radial roots kept per angular order.
N_RADIAL = 60


def _sinc(y: np.ndarray) -> np.ndarray:
    return np.sinc(y / math.pi)  # numpy's sinc is sin(πy)/(πy)


def planes_terms(u: np.ndarray, n_terms: int) -> tuple[np.ndarray, np.ndarray]:
    """The n = 0 term and the series terms (shape (n_terms, len(u))) at Δ = 0."""
    u = np.abs(np.asarray(u, dtype=float))
    n = np.arange(1, n_terms + 1)[:, None] * math.pi
    first = _sinc(u / 2.0) ** 2
    terms = 2.0 * u ** 2 / (u + n) ** 2 * _sinc((u - n) / 2.0) ** 2
    return first, terms


def planes(q: np.ndarray, separation: float, diffusivity: float, delta_time: float,
           n_terms: int) -> np.ndarray:
    u = np.asarray(q, dtype=float) * separation
    first, terms = planes_terms(u, n_terms)
    n = np.arange(1, n_terms + 1)[:, None]
    decay = np.exp(-(n * math.pi / separation) ** 2 * diffusivity * delta_time)
    return first + (terms * decay).sum(axis=0)


def _ratio(x: np.ndarray, alpha: float, n: int, spherical: bool) -> np.ndarray:
    """x·f_n'(x)/(x² − α²) with its limit at x = α (f = J_n or j_n)."""
    if spherical:
        d = spherical_jn(n, x, derivative=True)
        limit = -(1.0 - n * (n + 1) / alpha ** 2) * spherical_jn(n, alpha) / 2.0
    else:
        d = jvp(n, x)
        limit = -(1.0 - n * n / alpha ** 2) * jv(n, alpha) / 2.0
    near = np.abs(x - alpha) < 1e-7 * alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        r = x * d / (x * x - alpha * alpha)
    return np.where(near, limit, r)


def _pore(x: np.ndarray, decay_rate: float, n_angular: int, spherical: bool) -> np.ndarray:
    x = np.abs(np.asarray(x, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        if spherical:
            lead = np.where(x < 1e-6, 1.0 - x ** 2 / 10.0, 3.0 * spherical_jn(1, x) / x)
        else:
            lead = np.where(x < 1e-6, 1.0 - x ** 2 / 8.0, 2.0 * jv(1, x) / x)
    total = lead ** 2
    for n in range(n_angular):
        roots = ball_roots(n, N_RADIAL + (n == 0)) if spherical else \
            disk_roots(n, N_RADIAL + (n == 0))
        for alpha in roots:
            if alpha == 0.0:
                continue
            if spherical:
                coef = 6.0 * (2 * n + 1) * alpha ** 2 / (alpha ** 2 - n * (n + 1))
            else:
                coef = 8.0 * alpha ** 2 / ((1.0 + (n == 0)) * (alpha ** 2 - n * n))
            total = total + coef * _ratio(x, alpha, n, spherical) ** 2 * \
                math.exp(-alpha ** 2 * decay_rate)
    return total


def angular_orders(x_max: float) -> int:
    """Angular orders kept: J_n(x), j_n(x) are negligible for n well above x."""
    return math.ceil(x_max) + 16


def cylinder(q: np.ndarray, radius: float, diffusivity: float, delta_time: float,
             n_angular: int) -> np.ndarray:
    x = np.asarray(q, dtype=float) * radius
    return _pore(x, diffusivity * delta_time / radius ** 2, n_angular, spherical=False)


def sphere(q: np.ndarray, radius: float, diffusivity: float, delta_time: float,
           n_angular: int) -> np.ndarray:
    x = np.asarray(q, dtype=float) * radius
    return _pore(x, diffusivity * delta_time / radius ** 2, n_angular, spherical=True)


def truncation_gap(pore: str, x: np.ndarray, n_terms: int) -> np.ndarray:
    """1 − (the truncated series at Δ = 0) at each x = qL or qR: the bound on the error."""
    if pore == "planes":
        first, terms = planes_terms(x, n_terms)
        return 1.0 - (first + terms.sum(axis=0))
    fn = cylinder if pore == "cylinder" else sphere
    return 1.0 - fn(np.asarray(x), 1.0, 0.0, 0.0, n_terms)
