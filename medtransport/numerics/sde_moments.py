"""Exact first and second moments of the affine-drift, square-root-quadratic-noise SDEs.

For dX_i = (a_i + Σ_j A_ij X_j) dt + √(c0_i + c1_i X_i + c2_i X_i²) dW_i (independent W_i,
:mod:`~medtransport.numerics.sde`), Itô's formula closes the moment equations at second order:

    dm/dt  = a + A m,
    dM/dt  = a mᵀ + m aᵀ + A M + M Aᵀ + diag(c0 + c1∘m + c2∘diag M),      M = E[X Xᵀ],

a linear system in z = (1, m, vec M), so z(t) = exp(G t)·z(0) exactly (matrix exponential of a
(1 + d + d²)-square generator G). This gives the mean and covariance over time of OU, GBM,
drifted Brownian motion, CIR and the Jacobi mixing model alike — in the absence of walls (an
absorbing or reflecting wall changes the law). Deterministic initial states: M(0) = x₀x₀ᵀ.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import expm

from medtransport.numerics.sde import AffineSDE

__all__ = ["central_moments", "exact_moments", "generator"]


def generator(sde: AffineSDE) -> np.ndarray:
    """G with dz/dt = G z, z = (1, m, vec M) (row-major vec)."""
    d = sde.dim
    a = np.asarray(sde.drift_constant, float)
    amat = np.asarray(sde.drift_matrix, float)
    c = np.asarray(sde.noise, float)
    n = 1 + d + d * d
    g = np.zeros((n, n))
    mi = 1 + np.arange(d)

    def mm(i: int, j: int) -> int:
        return 1 + d + i * d + j

    g[mi, 0] = a
    g[np.ix_(mi, mi)] = amat
    for i in range(d):
        for j in range(d):
            r = mm(i, j)
            g[r, mi[j]] += a[i]
            g[r, mi[i]] += a[j]
            for k in range(d):
                g[r, mm(k, j)] += amat[i, k]
                g[r, mm(i, k)] += amat[j, k]
            if i == j:
                g[r, 0] += c[i, 0]
                g[r, mi[i]] += c[i, 1]
                g[r, mm(i, i)] += c[i, 2]
    return g


def exact_moments(sde: AffineSDE, x0: np.ndarray, times: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Mean (T, d) and variance (T, d) of each component at ``times`` (from t = 0)."""
    d = sde.dim
    x0 = np.asarray(x0, float).reshape(d)
    z0 = np.concatenate([[1.0], x0, np.outer(x0, x0).ravel()])
    g = generator(sde)
    t = np.asarray(times, float)
    mean = np.empty((t.size, d))
    var = np.empty((t.size, d))
    for k, tk in enumerate(t):
        z = expm(g * tk) @ z0
        m = z[1:1 + d]
        second = z[1 + d:].reshape(d, d)
        mean[k] = m
        var[k] = np.diag(second) - m * m
    return mean, var


def central_moments(sde: AffineSDE, x0: float, times: np.ndarray, order: int = 4
                    ) -> np.ndarray:
    """Exact central moments μ_2 … μ_order (T, order − 1) of a one-component process.

    For one component every moment closes (the drift has degree 1, b² degree 2):

        d E[Y^k]/dt = k·E[Y^{k−1} a] + ½k(k − 1)·E[Y^{k−2} b²],

    solved with Y = X − x₀ (the same family with shifted coefficients), which keeps the
    central moments free of cancellation against a large mean. They give the standard errors
    of the ensemble's mean and variance *under the exact law* (μ₄ for the variance), which
    stay honest for heavy-tailed laws (a log-normal with large μ²t) where the sample's own SE
    is itself badly estimated.
    """
    if sde.dim != 1:
        raise ValueError("central moments beyond the second are for one-component processes")
    a0, a1 = float(sde.drift_constant[0]), float(sde.drift_matrix[0, 0])
    c0, c1, c2 = (float(v) for v in sde.noise[0])
    # Y = X − x0: a(Y) = (a0 + a1 x0) + a1 Y; b² = (c0 + c1 x0 + c2 x0²) + (c1 + 2c2 x0) Y + c2 Y²
    b0, b1 = a0 + a1 * x0, a1
    q0, q1, q2 = c0 + c1 * x0 + c2 * x0 * x0, c1 + 2 * c2 * x0, c2
    n = order + 1
    g = np.zeros((n, n))
    for k in range(1, n):
        g[k, k - 1] += k * b0
        g[k, k] += k * b1
        half = 0.5 * k * (k - 1)
        if k >= 2:
            g[k, k - 2] += half * q0
        g[k, k - 1] += half * q1
        g[k, k] += half * q2
    z0 = np.zeros(n)
    z0[0] = 1.0
    out = np.empty((len(times), order - 1))
    for i, t in enumerate(np.asarray(times, float)):
        raw = expm(g * t) @ z0
        m = raw[1]
        for j, p in enumerate(range(2, order + 1)):
            # μ_p = Σ_i C(p, i) E[Y^i] (−m)^{p−i}
            out[i, j] = sum(math.comb(p, r) * raw[r] * (-m) ** (p - r) for r in range(p + 1))
    return out
