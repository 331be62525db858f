"""The exact matrix formalism for restricted diffusion under any piecewise-constant gradient.

The transverse magnetization obeys the Bloch–Torrey equation ∂m/∂t = D∇²m − iγG f(t) x m
with reflecting walls. In the Laplacian eigenbasis of the pore (:mod:`eigenbasis`;
λ = α²/s², B the gradient's matrix, s the pore size) a constant piece of length h acts as
exp(−h(DΛ + iγG f s·B̂)), so (Callaghan, J Magn Reson 129:74, 1997; Grebenkov, Rev Mod Phys
79:1077, 2007, eq. 51)

    E = e₀ᵀ · Π_j exp(−h_j(DΛ + iγG f_j s B̂)) · e₀         (later pieces on the left),

exact up to the truncation of the basis, which the sum rules of :mod:`eigenbasis` audit.
For PGSE the two pulses give conjugate matrices and E = Σ_k |v_k|² e^{−Dλ_k(Δ − δ)},
v = exp(−δ(DΛ + iγGsB̂))e₀ — real and within [0, 1] by construction.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import expm
from threadpoolctl import threadpool_limits

from medtransport_dwi.eigenbasis import Basis, basis
from medtransport_dwi.sequence import GAMMA, Shape

__all__ = ["basis_for", "restricted"]


def basis_for(pore: str, x_max: float) -> Basis:
    """A basis large enough for qs up to ``x_max`` (q = γGδ, s = L or R)."""
    if pore == "planes":
        return basis(pore, 1, max(80, 2 * math.ceil(x_max / math.pi) + 60))
    # Order n couples to the uniform mode like x^n/n!: a margin of 6 orders beyond 1.5x.
    return basis(pore, math.ceil(1.5 * x_max) + 6,
                 max(16, math.ceil(x_max / math.pi) + 12))


def restricted(pore: str, size: float, diffusivity: float, shape: Shape,
               strength: np.ndarray) -> np.ndarray:
    """E for gradient components ``strength`` (T/m) across a pore (``size`` L or R, m)."""
    strength = np.asarray(strength, dtype=float)
    big = max(abs(lv) for lv in shape.levels)
    pulse = shape.delta if shape.is_pgse else shape.duration
    x_max = float(GAMMA * np.max(np.abs(strength), initial=0.0) * big * pulse * size)
    b = basis_for(pore, x_max)
    lam = diffusivity * b.alpha2 / size ** 2
    # Equal gradient components (a sphere's directions) share one evaluation; BLAS threads only
    # slow matrices this small down on a busy machine.
    with threadpool_limits(1):
        unique, inverse = np.unique(strength, return_inverse=True)
        values = np.array([_one(b, lam, size, shape, g) for g in unique])
    return values[inverse.reshape(strength.shape)]


def _one(b: Basis, lam: np.ndarray, size: float, shape: Shape, g: float) -> complex:
    if g == 0.0:
        return 1.0 + 0.0j
    if shape.is_pgse:
        v = expm(-shape.delta * (np.diag(lam) + 1j * GAMMA * g * size * b.coupling))[:, 0]
        return complex(np.sum(np.abs(v) ** 2 * np.exp(-lam * (shape.separation - shape.delta))))
    m = np.zeros(b.size, dtype=complex)
    m[0] = 1.0
    cache: dict[tuple[float, float], np.ndarray] = {}
    for h, f in zip(shape.durations, shape.levels, strict=True):
        if f == 0.0:
            m = np.exp(-lam * h) * m
            continue
        key = (h, f)
        if key not in cache:
            cache[key] = expm(-h * (np.diag(lam) + 1j * GAMMA * g * f * size * b.coupling))
        m = cache[key] @ m
    return complex(m[0])
