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

import numpy as np
from scipy.linalg import expm

from medtransport.numerics.sde import AffineSDE

__all__ = ["exact_moments", "generator"]


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
