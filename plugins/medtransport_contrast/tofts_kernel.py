"""Tofts and extended Tofts predictions with their exact Jacobian, compiled, voxel by voxel.

On a uniform grid of step Δ with one plasma input c (T,), the exponential convolution
F = e^{−kep t} ∗ C_p follows the first-order-hold recursion of
:mod:`medtransport_contrast.kinetics` (z = −kep·Δ):

    F_{n+1} = e·F_n + a·c_n + b·c_{n+1},   e = e^z,  a = Δ·(φ1(z) − φ2(z)),  b = Δ·φ2(z)

and its derivative in kep, D = ∂F/∂kep, the derivative of that recursion (exact for the
discrete model the fit uses, not a finite difference), with φ_k′ = φ_k − k·φ_{k+1}:

    D_{n+1} = e·D_n + e′·F_n + a′·c_n + b′·c_{n+1},
    e′ = −Δ·e,  a′ = −Δ²·(φ1 − 2φ2 + 2φ3),  b′ = −Δ²·(φ2 − 2φ3).

The model C = K·F(kep) [+ vp·c] with kep = K/ve then has

    ∂C/∂K = F + kep·D,   ∂C/∂ve = −kep²·D,   ∂C/∂vp = c.

Each voxel is one serial pass over time writing its own contiguous row: the (P, T) and
(P, K, T) layouts the batched Levenberg–Marquardt reads without a copy. Rates in 1/s, K in 1/s;
the caller scales columns to its reported units.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from medtransport_contrast.kinetics import phi

__all__ = ["coefficients", "tofts_jacobian", "tofts_predict"]


def coefficients(kep: np.ndarray, delta: float) -> np.ndarray:
    """(P, 6): e, a, b and their derivatives in kep, per voxel (module docstring)."""
    z = -np.asarray(kep, dtype=float) * delta
    p1, p2, p3 = phi(1, z), phi(2, z), phi(3, z)
    e = np.exp(z)
    d2 = delta * delta
    return np.stack([e, delta * (p1 - p2), delta * p2, -delta * e,
                     -d2 * (p1 - 2.0 * p2 + 2.0 * p3), -d2 * (p2 - 2.0 * p3)], axis=1)


@functools.cache
def _kernels() -> tuple[Any, Any]:
    import numba

    # nogil: fit_maps runs blocks of voxels on several threads
    @numba.njit(cache=True, nogil=True)
    def predict(coef: np.ndarray, k: np.ndarray, vp: np.ndarray, c: np.ndarray,
                out: np.ndarray) -> None:
        n_t = c.shape[0]
        for p in range(coef.shape[0]):
            e, a, b = coef[p, 0], coef[p, 1], coef[p, 2]
            kp, v = k[p], vp[p]
            f = 0.0
            out[p, 0] = v * c[0]
            for n in range(n_t - 1):
                f = e * f + a * c[n] + b * c[n + 1]
                out[p, n + 1] = kp * f + v * c[n + 1]

    @numba.njit(cache=True, nogil=True)
    def jacobian(coef: np.ndarray, kep: np.ndarray, scale_k: float,
                 c: np.ndarray, out: np.ndarray) -> None:
        n_t = c.shape[0]
        n_par = out.shape[1]
        for p in range(coef.shape[0]):
            e, a, b = coef[p, 0], coef[p, 1], coef[p, 2]
            de, da, db = coef[p, 3], coef[p, 4], coef[p, 5]
            r = kep[p]
            r2 = r * r
            f = 0.0
            d = 0.0
            out[p, 0, 0] = 0.0
            out[p, 1, 0] = 0.0
            for n in range(n_t - 1):
                d = e * d + de * f + da * c[n] + db * c[n + 1]
                f = e * f + a * c[n] + b * c[n + 1]
                out[p, 0, n + 1] = (f + r * d) * scale_k
                out[p, 1, n + 1] = -r2 * d
            if n_par == 3:
                for n in range(n_t):
                    out[p, 2, n] = c[n]

    return predict, jacobian


def tofts_predict(ktrans: np.ndarray, ve: np.ndarray, vp: np.ndarray | None, delta: float,
                  cp: np.ndarray) -> np.ndarray:
    """C (P, T) for Ktrans (1/s), ve and vp (None: Tofts) on the uniform grid of step
    ``delta`` (s) with the input ``cp`` (T,)."""
    ktrans = np.ascontiguousarray(ktrans, dtype=float)
    kep = ktrans / np.asarray(ve, dtype=float)
    vp_arr = np.zeros_like(ktrans) if vp is None else np.ascontiguousarray(vp, dtype=float)
    cp = np.ascontiguousarray(cp, dtype=float)
    out = np.empty((ktrans.size, cp.size))
    _kernels()[0](coefficients(kep, delta), ktrans, vp_arr, cp, out)
    return out


def tofts_jacobian(ktrans: np.ndarray, ve: np.ndarray, extended: bool, delta: float,
                   cp: np.ndarray, scale_k: float = 1.0) -> np.ndarray:
    """∂C/∂(Ktrans, ve[, vp]) laid out (P, K, T); the Ktrans column multiplied by ``scale_k``
    (the caller's unit of Ktrans in 1/s, e.g. 1/60 for 1/min)."""
    ktrans = np.asarray(ktrans, dtype=float)
    kep = np.ascontiguousarray(ktrans / np.asarray(ve, dtype=float))
    cp = np.ascontiguousarray(cp, dtype=float)
    out = np.empty((ktrans.size, 3 if extended else 2, cp.size))
    _kernels()[1](coefficients(kep, delta), kep, float(scale_k), cp, out)
    return out
