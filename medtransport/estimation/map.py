"""MAP individualisation: each subject's conditional mode η̂ (NONMEM's POSTHOC, with interaction).

For subject i with predictions f_k(η) at its records, the objective is the −2 log posterior
without constants,

    O_i(η) = Σ_k g_k(f_k(η)) + ηᵀ Ω⁻¹ η,
    g_k    = ln V(f_k) + (T(y_k) − T(f_k))² / V(f_k)                (an observed record)
    g_k    = −2 ln Φ((T(LLOQ) − T(f_k)) / √V(f_k))                  (below the limit, M3)

with V the residual variance evaluated at the subject's own prediction (interaction) and T the
identity or ln (exponential error). All subjects are minimised at once by Fisher scoring with a
Levenberg–Marquardt damping per subject: with the Jacobian J = ∂f/∂η (central differences, one
batched prediction of every subject at 2·n_η + 1 points, taken at each trial point so that a
kept step costs one pass),

    gradient  ∇O = Jᵀ g′(f) + 2 Ω⁻¹ η
    curvature H  = Jᵀ diag(E[g″]) J + 2 Ω⁻¹,   E[g″] = 2 T′(f)²/V + (V′/V)²

(the expected information of a normal whose mean and variance both depend on f). A step solves
(H + λ·diag H) δ = −∇O and is kept only where it lowers O_i.

The Laplace approximation gives the posterior covariance of η̂, Cov(η | y) ≈ (H/2)⁻¹, whose
diagonal's square roots are the posterior SEs; η-shrinkage is 1 − SD(η̂_j)/ω_j over subjects
(Savic & Karlsson 2009, AAPS J 11:558).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import log_ndtr

from medtransport.estimation.problem import Problem
from medtransport.estimation.residual import ResidualError

__all__ = ["MapResult", "estimate_map", "map_objective", "record_terms"]

FloatArray = NDArray[np.float64]

#: central-difference step in η (log scale: a relative step of 1e-4 in the parameter)
JACOBIAN_STEP = 1e-4


@dataclass
class MapResult:
    """The conditional modes of all subjects and what the fit needs of them."""

    eta: FloatArray                 # (n, n_eta)
    objective: FloatArray           # (n,) O_i(η̂)
    gradient: FloatArray            # (n, n_eta) ∇O_i at η̂
    curvature: FloatArray           # (n, n_eta, n_eta) H_i at η̂
    ipred: FloatArray               # (n, n_records) f(η̂)
    jacobian: FloatArray            # (n, n_records, n_eta) ∂f/∂η at η̂
    iterations: NDArray[np.int64]   # (n,)
    converged: NDArray[np.bool_]    # (n,) the optimiser's own verdict
    n_predict_calls: int = 0

    @property
    def posterior_covariance(self) -> FloatArray:
        """Laplace: Cov(η | y) ≈ (H/2)⁻¹, ``(n, n_eta, n_eta)``."""
        return np.linalg.inv(0.5 * self.curvature)

    @property
    def posterior_se(self) -> FloatArray:
        return np.sqrt(np.diagonal(self.posterior_covariance, axis1=1, axis2=2))


def record_terms(residual: ResidualError, dv: FloatArray, f: FloatArray,
                 counted: NDArray[np.bool_], blq: NDArray[np.bool_] | None,
                 lloq: FloatArray | None) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per record: g, ∂g/∂f and the expected ∂²g/∂f² (0 where not counted)."""
    var = residual.variance(f)
    dvar = residual.dvariance_dpred(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        if residual.log_scale:
            tf, dtf = np.log(np.where(f > 0, f, np.nan)), 1.0 / f
            ty = np.log(np.where(dv > 0, dv, np.nan))
        else:
            tf, dtf, ty = f, np.ones_like(f), dv
        r = ty - tf
        g = np.log(var) + r * r / var
        dg = -2.0 * r / var * dtf + (1.0 / var - r * r / var ** 2) * dvar
        c = 2.0 * dtf ** 2 / var + (dvar / var) ** 2
        if blq is not None and lloq is not None and blq.any():
            s = np.sqrt(var)
            limit = residual.transform(lloq)
            z = (limit - tf) / s
            log_cdf = log_ndtr(z)
            lam = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_cdf)
            dz = -dtf / s - (limit - tf) / var * (dvar / (2.0 * s))
            g = np.where(blq, -2.0 * log_cdf, g)
            dg = np.where(blq, -2.0 * lam * dz, dg)
            c = np.where(blq, dz * dz * 2.0 * lam * (lam + z), c)
    g = np.where(counted, g, 0.0)
    dg = np.where(counted, dg, 0.0)
    c = np.where(counted, c, 0.0)
    return g, dg, c


def map_objective(problem: Problem, eta: FloatArray, ipred: FloatArray,
                  subjects: NDArray[np.int64] | None = None) -> FloatArray:
    """O_i(η) formed independently of the optimiser, from the residual model's own
    :meth:`~ResidualError.neg2_log_likelihood` and the prior — what the audits recompute."""
    sel = np.arange(problem.n_subjects) if subjects is None else subjects
    counted = problem.counted[sel]
    blq = problem.blq[sel] if problem.blq is not None else None
    lloq = problem.lloq[sel] if problem.lloq is not None else None
    dv = np.where(problem.observed[sel], problem.dv[sel], np.nan)
    ll = problem.residual.neg2_log_likelihood(dv, ipred, lloq=lloq, blq=blq)
    ll = np.where(counted, ll, 0.0).sum(axis=1)
    prior = np.einsum("ni,ij,nj->n", eta, np.linalg.inv(problem.omega), eta)
    return ll + prior


def _predict_stack(problem: Problem, eta_points: FloatArray,
                   subjects: NDArray[np.int64]) -> FloatArray:
    """Predictions at ``eta_points`` (m, n, n_eta): one batched call of m·n subjects."""
    m, n, _ = eta_points.shape
    subj = np.tile(subjects, m)
    phi = problem.individual(eta_points.reshape(m * n, -1), subjects=subj)
    f = np.asarray(problem.predict(phi, subj), dtype=np.float64)
    return f.reshape(m, n, -1)


def _jacobian(problem: Problem, eta: FloatArray, subjects: NDArray[np.int64],
              step: float = JACOBIAN_STEP) -> tuple[FloatArray, FloatArray]:
    """f(η) and ∂f/∂η by central differences, in one batched prediction."""
    q = eta.shape[1]
    shifts = np.concatenate([np.zeros((1, q)), step * np.eye(q), -step * np.eye(q)])
    points = eta[None, :, :] + shifts[:, None, :]
    f = _predict_stack(problem, points, subjects)
    jac = (f[1:q + 1] - f[q + 1:]) / (2.0 * step)          # (q, n, K)
    return f[0], np.moveaxis(jac, 0, -1)                  # (n, K), (n, K, q)


def estimate_map(problem: Problem, eta0: FloatArray | None = None, *, max_iter: int = 100,
                 gtol: float = 1e-6, ftol: float = 1e-12, dtol: float = 1e-14) -> MapResult:
    """The conditional modes η̂ of every subject of ``problem`` (see the module docstring).

    A subject is done when its gradient's largest component is below ``gtol`` (on the −2 log
    posterior), or a Newton step could lower O_i by less than ``dtol``, or a kept step changes
    O_i by less than ``ftol``·(1 + |O_i|) and moves η by less than 1e-8. ``max_iter`` bounds the
    iterations.
    """
    n, q = problem.n_subjects, len(problem.eta_names)
    omega_inv = np.linalg.inv(problem.omega)
    eta = np.zeros((n, q)) if eta0 is None else np.array(eta0, dtype=np.float64)
    dv = np.where(problem.observed, problem.dv, np.nan)
    counted = problem.counted
    blq, lloq = problem.blq, problem.lloq
    res = problem.residual
    n_rec = dv.shape[1]

    obj = np.full(n, np.inf)
    grad = np.zeros((n, q))
    curv = np.zeros((n, q, q))
    ipred = np.zeros((n, n_rec))
    jac = np.zeros((n, n_rec, q))
    iters = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    lam = np.full(n, 1e-3)
    calls = 0

    def terms(sel: NDArray[np.int64], f: FloatArray) -> tuple[FloatArray, ...]:
        return record_terms(res, dv[sel], f, counted[sel],
                            None if blq is None else blq[sel],
                            None if lloq is None else lloq[sel])

    def derivatives(sel: NDArray[np.int64]) -> None:
        nonlocal calls
        f, j = _jacobian(problem, eta[sel], sel)
        calls += 1
        assign(sel, f, j, *terms(sel, f))

    def assign(sel: NDArray[np.int64], f: FloatArray, j: FloatArray, g: FloatArray,
               dg: FloatArray, c: FloatArray) -> None:
        prior = np.einsum("ni,ij->nj", eta[sel], omega_inv)
        obj[sel] = g.sum(axis=1) + np.einsum("ni,ni->n", eta[sel], prior)
        grad[sel] = np.einsum("nkq,nk->nq", j, dg) + 2.0 * prior
        curv[sel] = np.einsum("nkq,nk,nkr->nqr", j, c, j) + 2.0 * omega_inv
        ipred[sel], jac[sel] = f, j

    derivatives(np.arange(n))
    done |= ~np.isfinite(obj)  # a prior mode that cannot be evaluated: reported, not looped
    for _ in range(max_iter):
        active = np.flatnonzero(~done)
        if active.size == 0:
            break
        # Newton decrement: what a full step could still gain (−2 log posterior units); below
        # dtol the mode is found to far better than the finite-difference Jacobian resolves.
        decrement = 0.5 * np.einsum("ni,ni->n", grad[active], np.linalg.solve(
            curv[active], grad[active][..., None])[..., 0])
        small = (np.abs(grad[active]).max(axis=1) <= gtol) | (decrement <= dtol)
        done[active[small]] = True
        active = active[~small]
        if active.size == 0:
            break
        iters[active] += 1
        h = curv[active]
        damp = lam[active, None, None] * np.eye(q) * np.diagonal(h, axis1=1, axis2=2)[:, None, :]
        step = -np.linalg.solve(h + damp, grad[active][..., None])[..., 0]
        trial = eta[active] + step
        # the trial point with its Jacobian stencil, in one batched prediction: a kept step
        # then needs no second pass (steps are kept far more often than not)
        f, j = _jacobian(problem, trial, active)
        calls += 1
        g, dg, c = terms(active, f)
        trial_obj = g.sum(axis=1) + np.einsum("ni,ij,nj->n", trial, omega_inv, trial)
        better = np.isfinite(trial_obj) & (trial_obj < obj[active])
        kept = active[better]
        change = obj[kept] - trial_obj[better]
        eta[kept] = trial[better]
        lam[kept] = np.maximum(lam[kept] / 3.0, 1e-12)
        lam[active[~better]] *= 4.0
        # a step that fails with almost nothing left to gain: the numerical floor is reached
        done[active[~better & (decrement[~small] <= max(1e3 * dtol, 1e-9))]] = True
        if kept.size:
            old = obj[kept].copy()
            assign(kept, f[better], j[better], g[better], dg[better], c[better])
            flat = (change <= ftol * (1.0 + np.abs(old))) & \
                (np.abs(step[better]).max(axis=1) < 1e-8)
            done[kept[flat]] = True
        # A damping this large means no step along the gradient lowers O: a numerical floor.
        done[active[lam[active] > 1e12]] = True
    decrement = 0.5 * np.einsum("ni,ni->n", grad, np.linalg.solve(curv, grad[..., None])[..., 0])
    converged = np.isfinite(obj) & ((np.abs(grad).max(axis=1) <= gtol * 10.0)
                                    | (decrement <= dtol * 10.0))
    return MapResult(eta=eta, objective=obj, gradient=grad, curvature=curv, ipred=ipred,
                     jacobian=jac, iterations=iters, converged=converged,
                     n_predict_calls=calls)


def shrinkage(eta: FloatArray, omega: FloatArray) -> FloatArray:
    """η-shrinkage per η: 1 − SD(η̂_j)/ω_j over subjects."""
    if eta.shape[0] < 2:
        return np.full(eta.shape[1], np.nan)
    return 1.0 - eta.std(axis=0, ddof=1) / np.sqrt(np.diag(omega))
