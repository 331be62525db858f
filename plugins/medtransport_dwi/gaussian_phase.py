"""Gaussian-phase approximation (GPA) of restricted diffusion for any piecewise-constant
gradient shape.

Assume the phase φ = γG∫f(t)x(t)dt is Gaussian: E = exp(−⟨φ²⟩/2). In a pore the position
correlation is ⟨x(t₁)x(t₂)⟩ − ⟨x⟩² = Σ_k c_k e^{−r_k|t₁ − t₂|}, r_k = Dλ_k, c_k = B_0k²
(:mod:`eigenbasis`; Stepišnik, Physica B 270:110, 1999; Grebenkov, Rev Mod Phys 79:1077, 2007,
§IV.B), so

    ln E = −½γ²G² Σ_k c_k J_k,    J_k = ∫∫ f(t₁)f(t₂) e^{−r_k|t₁ − t₂|} dt₁dt₂.

For constant pieces (h_j, f_j), J_k is summed exactly: each piece gives
f_j²·2(r h_j − 1 + e^{−r h_j})/r², and a pair of pieces i < j gives
2f_i f_j (1 − e^{−r h_i})(1 − e^{−r h_j}) e^{−r(t_j − t_{i+1})}/r² (a running sum). For PGSE
this is the Neuman (1974) / Murday–Cotts (1968) formula
ln E = −γ²G² Σ_k c_k [2(rδ − 1 + e^{−rδ}) − e^{−rΔ}(2cosh rδ − 2)]/r².
"""

from __future__ import annotations

import numpy as np

from medtransport_dwi.eigenbasis import first_row
from medtransport_dwi.sequence import GAMMA, Shape, pgse_gradient, pgse_shape

__all__ = ["N_MODES", "correlation_integrals", "pgse_table", "restricted"]

#: Coupled modes summed (the slope sum rule's tail after 2000 roots is below 1e-4).
N_MODES = 2000


def _self(r: np.ndarray, h: float) -> np.ndarray:
    x = r * h
    small = x < 1e-4
    xs = np.where(small, 1.0, x)
    exact = 2.0 * (xs - 1.0 + np.exp(-xs)) / np.where(small, 1.0, r) ** 2
    return np.where(small, h * h * (1.0 - x / 3.0), exact)


def _rise(r: np.ndarray, h: float) -> np.ndarray:
    """(1 − e^{−rh})/r, with its limit h at r → 0."""
    x = r * h
    return np.where(x < 1e-12, h, -np.expm1(-x) / np.where(r > 0, r, 1.0))


def correlation_integrals(shape: Shape, rates: np.ndarray) -> np.ndarray:
    """J_k for each rate r_k (1/s)."""
    rates = np.asarray(rates, dtype=float)
    total = np.zeros_like(rates)
    running = np.zeros_like(rates)
    for h, f in zip(shape.durations, shape.levels, strict=True):
        if h <= 0:
            continue
        rise = _rise(rates, h)
        if f != 0.0:
            total += f * f * _self(rates, h) + 2.0 * f * rise * running
        running = running * np.exp(-rates * h) + f * rise
    return total


def restricted(pore: str, size: float, diffusivity: float, shape: Shape,
               strength: np.ndarray) -> np.ndarray:
    """E for gradient components ``strength`` (T/m) across a pore (``size`` L or R, m)."""
    c, lam = first_row(pore, size, N_MODES)
    var_phase = GAMMA ** 2 * np.asarray(strength) ** 2 * float(
        np.dot(c, correlation_integrals(shape, diffusivity * lam)))
    return np.exp(-0.5 * var_phase).astype(complex)


def pgse_table(pore: str, diffusivity: float, radii: np.ndarray, b: np.ndarray,
               delta: np.ndarray, separation: np.ndarray) -> np.ndarray:
    """E (len(radii), S) across a pore of each radius for PGSE shells b (s/mm²), δ, Δ (s).

    The tables that microstructure fits interpolate in radius; b = 0 shells give E = 1.
    """
    out = np.ones((radii.size, b.size))
    for s, (bb, d, sep) in enumerate(zip(b, delta, separation, strict=True)):
        if bb <= 0:
            continue
        g = np.array([pgse_gradient(bb * 1e6, d, sep)])
        shape = pgse_shape(d, sep)
        for i, r in enumerate(radii):
            out[i, s] = float(np.real(restricted(pore, float(r), diffusivity, shape, g)[0]))
    return out
