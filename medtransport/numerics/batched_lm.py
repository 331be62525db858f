"""Batched Levenberg–Marquardt: many small independent least-squares problems at once (one per
voxel of a parameter map), vectorised over the batch.

For every problem p, minimise the weighted sum of squares Σ_n w_pn·(y_pn − f_n(x_p))² over
x_p ∈ [lower, upper]. Each iteration solves, for all still-active problems together,

    (JᵀWJ + λ·diag(JᵀWJ))·δ = JᵀW·r,    r = y − f(x),

(Marquardt's scaling, *J Soc Ind Appl Math* 1963;11:431) over the parameters not held at a
bound (a parameter on a bound whose descent direction points outwards is held: an active set),
projects x + δ onto the bounds, and accepts the step where the cost falls (λ ← λ/3) or rejects
it (λ ← 10λ). The Jacobian is the caller's (``jacobian``) or forward differences, h_k =
``rel_step``·max(|x_k|, ``typical_k``). A problem stops when its step is below ``xtol``·(|x| +
``xtol``), its relative cost decrease below ``ftol`` or its cost below ``cost_floor``;
converged problems leave the batch, so a few slow voxels cost only their own work.

At the solution the covariance estimate is s²·(JᵀWJ)⁻¹ with s² = cost/(N − K) (N data, K
parameters; Gauss–Newton asymptotics), giving each map its standard-error map (J of the last
iterate where the final step was below ``xtol``, the same to that relative step).

Problems are processed in chunks of ``chunk`` so that the Jacobian (chunk × N × K) stays small.
The normal equations (JᵀWJ, JᵀWr) and costs are formed by compiled loops (numba, imported on
first use) that read each problem's rows in place: one pass over J, no (P, N) temporaries.
Knows no physics: ``model(x, index)`` maps parameters (P, K) of the problems ``index`` (P,)
to predictions (P, N).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LMResult", "levenberg_marquardt"]

Model = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``jacobian(x, index, f)`` → ∂f/∂x laid out (P, K, N), given the predictions f (P, N) at x
Jacobian = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class LMResult:
    """``x`` (P, K) estimates, ``cost`` (P,) = ½·Σw·r² at them, ``stderr`` (P, K) standard
    errors (NaN where JᵀWJ is singular), ``converged`` (P,) and ``iterations`` (P,)."""

    x: np.ndarray
    cost: np.ndarray
    stderr: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray


def _jac(model: Model, x: np.ndarray, idx: np.ndarray, f0: np.ndarray, typical: np.ndarray,
         rel_step: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Forward differences, laid out (P, K, N): each parameter's derivative contiguous."""
    p, k = x.shape
    jac = np.empty((p, k, f0.shape[1]))
    for j in range(k):
        h = rel_step * np.maximum(np.abs(x[:, j]), typical[j])
        # step inwards at an upper bound so the model is never evaluated outside its box
        h = np.where(x[:, j] + h > upper[:, j], -h, h)
        xh = x.copy()
        xh[:, j] += h
        d = model(xh, idx)
        d -= f0
        d /= h[:, None]
        jac[:, j, :] = d
    return jac


@functools.cache
def _kernels() -> tuple[Any, Any]:
    """Compiled normal equations and costs over the problems ``idx`` of a chunk."""
    import numba

    # nogil: callers fit blocks of problems on several threads. fastmath lets the sums over
    # the N data vectorise (reassociation: rounding-level differences in JᵀWJ, which only
    # steer the steps; the cost that accepts them is summed in order)
    @numba.njit(cache=True, nogil=True, fastmath=True)
    def normal(jac: np.ndarray, y: np.ndarray, f: np.ndarray, w: np.ndarray, use_w: bool,
               idx: np.ndarray, a: np.ndarray, g: np.ndarray) -> None:
        k, n_data = jac.shape[1], jac.shape[2]
        jw = np.empty(n_data)
        r = np.empty(n_data)
        for i in range(idx.size):
            p = idx[i]
            for n in range(n_data):
                r[n] = y[p, n] - f[p, n]
            for u in range(k):
                for n in range(n_data):
                    jw[n] = jac[p, u, n] * w[p, n] if use_w else jac[p, u, n]
                s = 0.0
                for n in range(n_data):
                    s += jw[n] * r[n]
                g[i, u] = s
                for v in range(u + 1):
                    s = 0.0
                    for n in range(n_data):
                        s += jw[n] * jac[p, v, n]
                    a[i, u, v] = s
                    a[i, v, u] = s

    @numba.njit(cache=True, nogil=True)
    def cost(y: np.ndarray, f: np.ndarray, w: np.ndarray, use_w: bool, idx: np.ndarray,
             out: np.ndarray) -> None:
        # f holds the rows of the problems idx in order; y is indexed by idx
        for i in range(idx.size):
            p = idx[i]
            s = 0.0
            for n in range(f.shape[1]):
                r = y[p, n] - f[i, n]
                s += r * r * (w[p, n] if use_w else 1.0)
            out[i] = 0.5 * s

    return normal, cost


def _solve(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(a, g[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.zeros_like(g)
        for i in range(a.shape[0]):
            out[i] = np.linalg.lstsq(a[i], g[i], rcond=None)[0]
        return out


def levenberg_marquardt(model: Model, x0: np.ndarray, y: np.ndarray, *,
                        lower: np.ndarray | None = None, upper: np.ndarray | None = None,
                        weights: np.ndarray | None = None, jacobian: Jacobian | None = None,
                        typical: np.ndarray | None = None, max_iter: int = 100,
                        xtol: float = 1e-10, ftol: float = 1e-15, cost_floor: float = 0.0,
                        rel_step: float = 1e-7, lam0: float = 1e-3,
                        chunk: int = 8192) -> LMResult:
    """Fit every row of ``y`` (P, N) from the start ``x0`` (P, K); see the module docstring."""
    x0 = np.array(x0, dtype=float, ndmin=2)
    y = np.asarray(y, dtype=float)
    p, k = x0.shape
    if y.shape[0] != p:
        raise ValueError(f"y has {y.shape[0]} rows but x0 has {p}")
    lo = np.broadcast_to(-np.inf if lower is None else np.asarray(lower, float), (p, k))
    hi = np.broadcast_to(np.inf if upper is None else np.asarray(upper, float), (p, k))
    typ = np.ones(k) if typical is None else np.asarray(typical, dtype=float)
    w_all = None if weights is None else np.broadcast_to(np.asarray(weights, float), y.shape)
    out = LMResult(np.clip(x0, lo, hi), np.zeros(p), np.full((p, k), np.nan),
                   np.zeros(p, bool), np.zeros(p, int))
    for start in range(0, p, chunk):
        sl = slice(start, min(p, start + chunk))
        _fit_chunk(model, jacobian, out, sl, y[sl], None if w_all is None else w_all[sl],
                   np.ascontiguousarray(lo[sl]), np.ascontiguousarray(hi[sl]), typ, max_iter,
                   xtol, ftol, cost_floor, rel_step, lam0)
    return out


def _fit_chunk(model: Model, jacobian: Jacobian | None, out: LMResult, sl: slice,
               y: np.ndarray, w: np.ndarray | None, lo: np.ndarray, hi: np.ndarray,
               typ: np.ndarray, max_iter: int, xtol: float, ftol: float, cost_floor: float,
               rel_step: float, lam0: float) -> None:
    idx_all = np.arange(sl.start, sl.stop)
    x = out.x[sl].copy()
    n, k = y.shape[1], x.shape[1]
    f = model(x, idx_all)

    normal_k, cost_k = _kernels()
    use_w = w is not None
    w_arr = np.ascontiguousarray(w) if w is not None else np.ones((1, 1))
    y = np.ascontiguousarray(y)

    def wsum(fa: np.ndarray, ia: np.ndarray) -> np.ndarray:
        c_out = np.empty(ia.size)
        cost_k(y, np.ascontiguousarray(fa), w_arr, use_w, ia, c_out)
        return c_out

    def normal(ia: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # JᵀWJ and JᵀWr of the problems ia, read in place from the chunk's Jacobians
        a_out = np.empty((ia.size, k, k))
        g_out = np.empty((ia.size, k))
        normal_k(j_all, y, f, w_arr, use_w, ia, a_out, g_out)
        return a_out, g_out

    cost = wsum(f, np.arange(x.shape[0]))
    lam = np.full(x.shape[0], lam0)
    active = np.arange(x.shape[0])
    conv = np.zeros(x.shape[0], bool)
    iters = np.zeros(x.shape[0], int)
    conv[cost <= cost_floor] = True
    active = active[~conv]

    def jac(xa: np.ndarray, ia: np.ndarray, fa: np.ndarray) -> np.ndarray:
        if jacobian is not None:  # the caller's, (P, K, N), given the predictions too
            return jacobian(xa, idx_all[ia], fa)
        return _jac(model, xa, idx_all[ia], fa, typ, rel_step, lo[ia], hi[ia])

    # every problem's Jacobian, (P, K, N), refreshed in place where a step was taken;
    # ``fresh``: it is the Jacobian at the current x
    fresh = np.zeros(x.shape[0], bool)
    if active.size == x.shape[0]:
        j_all = np.ascontiguousarray(jac(x, active, f))
    else:
        j_all = np.zeros((x.shape[0], k, n))
        if active.size:
            j_all[active] = jac(x[active], active, f[active])
    fresh[active] = True
    for _ in range(max_iter):
        if active.size == 0:
            break
        xa = x[active]
        a, g = normal(active)
        diag = np.einsum("pkk->pk", a)
        damp = a + (lam[active][:, None] * np.maximum(diag, 1e-300))[:, :, None] * np.eye(k)
        # active set: a parameter on a bound whose descent direction (+g) points outwards is
        # held there, and the others are solved for without it (else the clipped steps creep
        # and a voxel with a parameter at its bound never meets the step criterion)
        lo_a, hi_a = lo[active], hi[active]
        frozen = ((xa <= lo_a) & (g < 0)) | ((xa >= hi_a) & (g > 0))
        if frozen.any():
            g = np.where(frozen, 0.0, g)
            keep_kl = ~(frozen[:, :, None] | frozen[:, None, :])
            damp = np.where(keep_kl, damp, 0.0) + frozen[:, :, None] * np.eye(k)
        step = _solve(damp, g)
        x_new = np.clip(xa + step, lo[active], hi[active])
        f_new = model(x_new, idx_all[active])
        c_new = wsum(f_new, active)
        ok = np.isfinite(c_new) & (c_new < cost[active])
        iters[active] += 1
        dx = np.abs(x_new - xa)
        small_step = np.all(dx <= xtol * (np.abs(xa) + xtol), axis=1)
        small_gain = ok & ((cost[active] - c_new) <= ftol * cost[active])
        upd = active[ok]
        x[upd], f[upd], cost[upd] = x_new[ok], f_new[ok], c_new[ok]
        lam[upd] = np.maximum(lam[upd] / 3.0, 1e-12)
        lam[active[~ok]] = lam[active[~ok]] * 10.0
        done = small_step | small_gain | (cost[active] <= cost_floor) | (lam[active] > 1e12)
        conv[active[done & ~(lam[active] > 1e12)]] = True
        conv[active[done & (lam[active] > 1e12) & small_step]] = True
        # a problem that stopped on a step below xtol keeps its last Jacobian for the
        # covariance (it differs from the one at x by that relative step)
        fresh[upd] = False
        fresh[active[done & small_step]] = True
        keep = ~done
        moved = active[keep & ok]
        active = active[keep]
        # a new Jacobian only where the step was taken; rejected ones keep theirs
        if moved.size:
            j_all[moved] = jac(x[moved], moved, f[moved])
            fresh[moved] = True
    # covariance at the solution
    stale = np.flatnonzero(~fresh)
    if stale.size:
        j_all[stale] = jac(x[stale], stale, f[stale])
    a, _ = normal(np.arange(x.shape[0]))
    dof = max(n - k, 1)
    s2 = 2.0 * cost / dof
    with np.errstate(invalid="ignore", divide="ignore"):
        try:
            cov = np.linalg.inv(a)
        except np.linalg.LinAlgError:
            cov = np.linalg.pinv(a)
        var = np.einsum("pkk->pk", cov) * s2[:, None]
    se = np.sqrt(np.where(var >= 0, var, np.nan))
    out.x[sl], out.cost[sl], out.stderr[sl] = x, cost, se
    out.converged[sl], out.iterations[sl] = conv, iters
