"""Tracer-kinetic forward models of a tissue fed by a plasma input, vectorized over voxels.

Every model is a sum of exponential convolutions of the plasma input C_p, evaluated exactly for
an input that is linear between its samples (first-order hold). For a rate κ ≥ 0 and a step
Δ = t_{k+1} − t_k, with z = −κΔ and the φ-functions of exponential integrators
(φ1(z) = (e^z − 1)/z, φ2(z) = (e^z − 1 − z)/z², φ3(z) = (e^z − 1 − z − z²/2)/z³; Hochbruck &
Ostermann, *Acta Numerica* 2010;19:209), F = ∫₀ᵗ e^{−κ(t−u)} C_p(u) du obeys

    F_{k+1} = e^{z}·F_k + Δ·[c_k·φ1(z) + (c_{k+1} − c_k)·φ2(z)]
    ∫_{t_k}^{t_{k+1}} F dt = Δ·[F_k·φ1(z) + Δ·(c_k·φ2(z) + (c_{k+1} − c_k)·φ3(z))]

Models (Sourbron & Buckley, *NMR Biomed* 2013;26:1004; Tofts et al., *JMRI* 1999;10:223),
concentrations per unit tissue volume, t in s, rates in 1/s:

- Tofts:           C_t = Ktrans·(e^{−kep t} ∗ C_p),  kep = Ktrans/ve
- extended Tofts:  C_t = vp·C_p + Ktrans·(e^{−kep t} ∗ C_p)
- Patlak:          C_t = vp·C_p + Ktrans·∫₀ᵗ C_p du
- two-compartment exchange (2CXM), plasma flow Fp, permeability–surface product PS:
      d(vp·C_p,t)/dt = Fp·(C_a − C_p,t) + PS·(C_e − C_p,t),   d(ve·C_e)/dt = PS·(C_p,t − C_e)
  i.e. x' = M·x + (Fp, 0)ᵀ·C_a for x = (vp·C_p,t, ve·C_e) with
      M = [[−(Fp + PS)/vp, PS/ve], [PS/vp, −PS/ve]];
  with the eigenvalues λ1,2 of M, e^{Mt} = (e^{λ1 t}(M − λ2) − e^{λ2 t}(M − λ1))/(λ1 − λ2), so
  C_t = Fp·Σ_i w_i·(e^{λ_i t} ∗ C_a), w_1 = (m11 + m21 − λ2)/(λ1 − λ2), w_2 = 1 − w_1.
  Here C_a is the arterial plasma input (the AIF); the 2CXM's own C_p,t is the capillary one.

Units — one convention for the whole module: plain numbers are SI — times and delays in s,
Ktrans, PS and Fp in 1/s (a flow per tissue volume), volume fractions dimensionless — and the
concentration's unit is the input's (the models are linear in C_p). Every public model also
takes pint quantities (``Q_(0.25, "1/min")``, times in min …), converted to that convention; when
the input C_p is a quantity, so is the result (in C_p's unit). The fits
(:mod:`medtransport_contrast.fitting`, :mod:`medtransport_contrast.maps`) report Ktrans and PS
in 1/min and Fp in mL/min/100 mL, as quantities, and convert at this boundary.

Parameters are float arrays (any shape, broadcast together); results have the broadcast
shape followed by the time axis.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pint

from medtransport.units import Q_

__all__ = ["exchange_eigen", "exp_convolution", "exp_convolution_sum", "extended_tofts",
           "patlak", "phi", "quantities", "shift", "tofts", "two_compartment_exchange",
           "two_compartment_exchange_parts"]

#: The SI unit each argument of the public models is taken in (module docstring).
_UNITS = {"t": "s", "ktrans": "1/s", "ps": "1/s", "fp": "1/s", "ve": "dimensionless",
          "vp": "dimensionless", "delay": "s"}
_CURVES = ("cp", "ca", "c")
F = TypeVar("F", bound=Callable[..., Any])


def quantities(func: F) -> F:
    """Let ``func`` take pint quantities: each argument of :data:`_UNITS` is converted to its SI
    unit, a curve argument to its own unit's magnitude; a quantity curve makes the result a
    quantity in that unit. Plain numbers pass through unchanged (already SI)."""
    sig = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        unit = None
        for name, value in bound.arguments.items():
            if not isinstance(value, pint.Quantity):
                continue
            if name in _UNITS:
                bound.arguments[name] = np.asarray(value.m_as(_UNITS[name]), dtype=float)
            elif name in _CURVES:
                unit = value.units
                bound.arguments[name] = np.asarray(value.magnitude, dtype=float)
        out = func(*bound.args, **bound.kwargs)
        if unit is not None:
            return Q_(out, unit) if not isinstance(out, tuple) else tuple(
                Q_(o, unit) for o in out)
        return out

    return wrapper  # type: ignore[return-value]


_SERIES_BELOW = 0.2
_SERIES_TERMS = 16


def phi(k: int, z: np.ndarray) -> np.ndarray:
    """φ_k(z) for k = 1, 2, 3 (module docstring); a Taylor series near 0, where the closed form
    cancels."""
    z = np.asarray(z, dtype=float)
    small = np.abs(z) < _SERIES_BELOW
    series = np.zeros_like(z)
    term_z = np.ones_like(z)
    for j in range(_SERIES_TERMS):
        series = series + term_z / math.factorial(j + k)
        term_z = term_z * z
    zs = np.where(small, 1.0, z)
    em1 = np.expm1(zs)
    if k == 1:
        closed = em1 / zs
    elif k == 2:
        closed = (em1 - zs) / zs ** 2
    elif k == 3:
        closed = (em1 - zs - zs ** 2 / 2.0) / zs ** 3
    else:
        raise ValueError("phi is implemented for k = 1, 2, 3")
    return np.where(small, series, closed)


def _steps(t: np.ndarray) -> tuple[np.ndarray, bool]:
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0):
        raise ValueError("times must be a strictly increasing 1-D array of at least 2 values")
    d = np.diff(t)
    return d, bool(np.all(np.abs(d - d[0]) <= 1e-9 * d[0]))


def exp_convolution(rate: np.ndarray | float, t: np.ndarray, c: np.ndarray,
                    *, integral: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """F(t) = ∫_{t0}^t e^{−rate·(t−u)}·c(u) du at the sample times, exact for ``c`` linear
    between samples; ``rate`` ≥ 0 in the inverse unit of ``t``, any shape. ``c`` is (T,) or
    broadcastable to (*rate.shape, T). With ``integral``, also ∫_{t0}^t F dt."""
    kappa = np.asarray(rate, dtype=float)
    d, uniform = _steps(t)
    c = np.asarray(c, dtype=float)
    if uniform and c.ndim == 1 and not integral:
        flat = kappa.reshape(-1, 1)
        return exp_convolution_sum(flat, np.ones_like(flat), float(d[0]), c).reshape(
            (*kappa.shape, t.size))
    shape = np.broadcast_shapes(kappa.shape, c.shape[:-1])
    out = np.empty((*shape, t.size))
    acc = np.empty((*shape, t.size)) if integral else None
    f = np.zeros(shape)
    total = np.zeros(shape)
    out[..., 0] = 0.0
    if acc is not None:
        acc[..., 0] = 0.0

    def coefficients(delta: float) -> tuple[np.ndarray, ...]:
        z = -kappa * delta
        p1, p2 = phi(1, z), phi(2, z)
        p3 = phi(3, z) if integral else None
        return np.exp(z), delta * (p1 - p2), delta * p2, p1, p2, p3

    coef = coefficients(float(d[0])) if uniform else None
    for k in range(t.size - 1):
        e, a, b, p1, p2, p3 = coef if coef is not None else coefficients(float(d[k]))
        ck, ck1 = c[..., k], c[..., k + 1]
        if acc is not None:
            delta = float(d[k])
            total = total + delta * (f * p1 + delta * (ck * (p2 - p3) + ck1 * p3))
            acc[..., k + 1] = total
        f = e * f + a * ck + b * ck1
        out[..., k + 1] = f
    if acc is not None:
        return out, acc
    return out


@functools.cache
def _sum_kernel() -> Any:
    """The compiled recursion of :func:`exp_convolution_sum` (numba, imported on first use):
    time outermost and voxels innermost into a time-major (T, P) output, so that the voxels'
    independent recursions run side by side in SIMD lanes (one and two exponentials, the
    models' cases, unrolled)."""
    import numba

    # nogil: whole-volume fits run chunks of voxels on several threads
    @numba.njit(cache=True, nogil=True)
    def run(e: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray, c: np.ndarray,
            out: np.ndarray) -> None:
        n_vox, n_exp = e.shape
        n_t = c.shape[0]
        out[0, :] = 0.0
        if n_exp == 1:
            e0, a0, b0, w0 = e[:, 0].copy(), a[:, 0].copy(), b[:, 0].copy(), w[:, 0].copy()
            f0 = np.zeros(n_vox)
            for k in range(n_t - 1):
                ck, ck1 = c[k], c[k + 1]
                for p in range(n_vox):
                    f0[p] = e0[p] * f0[p] + a0[p] * ck + b0[p] * ck1
                    out[k + 1, p] = w0[p] * f0[p]
            return
        f = np.zeros((n_exp, n_vox))
        et, at, bt, wt = e.T.copy(), a.T.copy(), b.T.copy(), w.T.copy()
        for k in range(n_t - 1):
            ck, ck1 = c[k], c[k + 1]
            for p in range(n_vox):
                out[k + 1, p] = 0.0
            for j in range(n_exp):
                for p in range(n_vox):
                    f[j, p] = et[j, p] * f[j, p] + at[j, p] * ck + bt[j, p] * ck1
                    out[k + 1, p] += wt[j, p] * f[j, p]

    return run


def exp_convolution_sum(rates: np.ndarray, weights: np.ndarray, delta: float,
                        c: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Σ_j weights[p, j]·∫ e^{−rates[p, j]·(t−u)}·c(u) du for every voxel p, on a uniform grid
    of step ``delta`` with one input ``c`` (T,) shared by all voxels: the recursion of
    :func:`exp_convolution`, compiled. ``rates``/``weights`` are (P, J). Returns (P, T): the
    transposed view of a time-major (T, P) array — ``out`` if given (a C-contiguous float64
    (T, P) buffer to reuse)."""
    rates = np.ascontiguousarray(rates, dtype=float)
    # a copy: a read-only view would make numba compile a second specialisation
    weights = np.array(np.broadcast_to(weights, rates.shape), dtype=float, order="C")
    z = -rates * delta
    p1, p2 = phi(1, z), phi(2, z)
    e = np.exp(z)
    a = delta * (p1 - p2)
    b = delta * p2
    c = np.ascontiguousarray(c, dtype=float)
    if out is None:
        out = np.empty((c.size, rates.shape[0]))
    elif out.shape != (c.size, rates.shape[0]) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous time-major array of shape "
                         f"{(c.size, rates.shape[0])}")
    _sum_kernel()(e, a, b, weights, c, out)
    return out.T


@quantities
def shift(t: np.ndarray, c: np.ndarray, delay: float) -> np.ndarray:
    """The sampled curve ``c(t)`` delayed by ``delay`` (linear interpolation, 0 before)."""
    if delay == 0.0:
        return np.asarray(c, dtype=float)
    return np.interp(np.asarray(t) - delay, t, c, left=0.0)


def _b(*arrays: np.ndarray | float) -> list[np.ndarray]:
    return [np.asarray(a, dtype=float)[..., None] for a in arrays]


@quantities
def tofts(t: np.ndarray, cp: np.ndarray, ktrans: np.ndarray | float,
          ve: np.ndarray | float, *, out: np.ndarray | None = None) -> np.ndarray:
    """Tofts: C_t = Ktrans·(e^{−kep t} ∗ C_p), kep = Ktrans/ve. ``out``: a time-major
    (T, voxels) buffer to write into (uniform grid, one input for all voxels); the result is
    then its (voxels, T) transpose."""
    ktrans = np.asarray(ktrans, dtype=float)
    kep = ktrans / np.asarray(ve, dtype=float)
    if out is not None:
        d, _ = _steps(t)
        k = np.broadcast_to(ktrans, kep.shape).reshape(-1, 1)
        return exp_convolution_sum(kep.reshape(-1, 1), k, float(d[0]), cp, out)
    (k,) = _b(ktrans)
    return k * exp_convolution(kep, t, cp)


@quantities
def extended_tofts(t: np.ndarray, cp: np.ndarray, ktrans: np.ndarray | float,
                   ve: np.ndarray | float, vp: np.ndarray | float) -> np.ndarray:
    """Extended Tofts: C_t = vp·C_p + Ktrans·(e^{−kep t} ∗ C_p)."""
    (v,) = _b(vp)
    return v * np.asarray(cp, dtype=float) + tofts(t, cp, ktrans, ve)


@quantities
def patlak(t: np.ndarray, cp: np.ndarray, ktrans: np.ndarray | float,
           vp: np.ndarray | float) -> np.ndarray:
    """Patlak: C_t = vp·C_p + Ktrans·∫C_p (trapezoid; exact for a piecewise-linear input)."""
    cp = np.asarray(cp, dtype=float)
    d, _ = _steps(t)
    integral = np.concatenate([np.zeros((*cp.shape[:-1], 1)),
                               np.cumsum(0.5 * d * (cp[..., 1:] + cp[..., :-1]), axis=-1)],
                              axis=-1)
    k, v = _b(ktrans, vp)
    return v * cp + k * integral


def exchange_eigen(fp: np.ndarray, ps: np.ndarray, vp: np.ndarray, ve: np.ndarray
           ) -> tuple[np.ndarray, ...]:
    m11 = -(fp + ps) / vp
    m12 = ps / ve
    m21 = ps / vp
    m22 = -ps / ve
    half_tr = 0.5 * (m11 + m22)
    det = m11 * m22 - m12 * m21
    root = np.sqrt(np.maximum(half_tr ** 2 - det, 0.0))
    lam1 = half_tr - root  # the more negative one, computed without cancellation
    lam2 = np.where(lam1 != 0.0, det / np.where(lam1 != 0.0, lam1, 1.0), 0.0)
    return m11, m12, m21, m22, lam1, lam2


@quantities
def two_compartment_exchange_parts(t: np.ndarray, ca: np.ndarray, fp: np.ndarray | float,
                                   ps: np.ndarray | float, vp: np.ndarray | float,
                                   ve: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """2CXM: (vp·C_p,t, ve·C_e), the plasma and EES parts of C_t (module docstring)."""
    fp, ps, vp, ve = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (fp, ps, vp, ve)))
    m11, _m12, m21, _m22, lam1, lam2 = exchange_eigen(fp, ps, vp, ve)
    gap = lam1 - lam2
    safe = np.where(gap != 0.0, gap, 1.0)
    f1 = exp_convolution(-lam1, t, ca)
    f2 = exp_convolution(-lam2, t, ca)
    # rows of (e^{λ1 t}(M − λ2) − e^{λ2 t}(M − λ1))/(λ1 − λ2) applied to (Fp, 0)
    wp1, wp2 = (m11 - lam2) / safe, -(m11 - lam1) / safe
    we1, we2 = m21 / safe, -m21 / safe
    fpb, wp1, wp2, we1, we2 = _b(fp, wp1, wp2, we1, we2)
    return fpb * (wp1 * f1 + wp2 * f2), fpb * (we1 * f1 + we2 * f2)


@quantities
def two_compartment_exchange(t: np.ndarray, ca: np.ndarray, fp: np.ndarray | float,
                             ps: np.ndarray | float, vp: np.ndarray | float,
                             ve: np.ndarray | float, *,
                             out: np.ndarray | None = None) -> np.ndarray:
    """2CXM tissue concentration C_t = vp·C_p,t + ve·C_e. ``out``: a time-major (T, voxels)
    buffer to write into (uniform grid, one input for all voxels)."""
    ca = np.asarray(ca, dtype=float)
    d, uniform = _steps(t)
    if not (uniform and ca.ndim == 1):
        plasma, ees = two_compartment_exchange_parts(t, ca, fp, ps, vp, ve)
        return plasma + ees
    fp, ps, vp, ve = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (fp, ps, vp, ve)))
    m11, _m12, m21, _m22, lam1, lam2 = exchange_eigen(fp, ps, vp, ve)
    gap = lam1 - lam2
    w1 = (m11 + m21 - lam2) / np.where(gap != 0.0, gap, 1.0)
    rates = np.stack([-lam1.ravel(), -lam2.ravel()], axis=1)
    weights = np.stack([(fp * w1).ravel(), (fp * (1.0 - w1)).ravel()], axis=1)
    if out is not None:
        return exp_convolution_sum(rates, weights, float(d[0]), ca, out)
    return exp_convolution_sum(rates, weights, float(d[0]), ca).reshape((*fp.shape, t.size))
