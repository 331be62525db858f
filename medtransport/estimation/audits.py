"""The fit's own audits, added to the report of the runs an estimate rests on.

- ``map.converged``: the gradient of each subject's −2 log posterior at η̂, recomputed by
  central differences of the objective formed independently of the optimiser (the residual
  model's likelihood plus the prior), is below ``MAP_GRADIENT_TOL`` in every component.
- ``map.objective_consistent``: the optimiser's objective at η̂ equals that independent one.
- ``map.hessian_positive_definite``: the finite-difference Hessian of the independent objective
  at every η̂ is positive definite (a mode, not a saddle) — the Laplace SEs need it.
- ``likelihood.normalised``: the residual model's density of DV integrates to 1 over DV
  (adaptive quadrature at several predictions): a likelihood that loses a term (such as the
  Jacobian 1/y of the log-normal transform) does not.
- ``foce.converged``: at the final estimates the OFV's gradient (central differences) leaves at
  most ``OFV_TOL`` to gain by a Newton step, ½·gᵀR⁻¹g, and the last iteration changed the OFV by
  less than ``OFV_TOL``.
- ``foce.covariance_step``: the covariance step succeeded (R positive definite), or why not.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import integrate

from medtransport.audit.report import AuditResult
from medtransport.estimation.map import MapResult, _predict_stack, map_objective
from medtransport.estimation.problem import Problem
from medtransport.estimation.residual import ResidualError

__all__ = ["MAP_GRADIENT_TOL", "OFV_TOL", "audit_likelihood", "audit_map"]

FloatArray = NDArray[np.float64]

#: largest |∂O_i/∂η| accepted at a mode (−2 log posterior per unit η: a step of 0.01 in η,
#: 1 % in the parameter, could lower O_i by at most 1e-5)
MAP_GRADIENT_TOL = 1e-3
#: OFV a fit may leave on the table (NONMEM users compare OFVs to 0.01)
OFV_TOL = 0.01
_STEP = 1e-4


def _source(results: list[AuditResult]) -> list[AuditResult]:
    for r in results:
        r.source = "estimation"
    return results


def finite_difference(problem: Problem, eta: FloatArray, step: float = _STEP
                      ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Independent objective, its gradient and Hessian at ``eta`` for every subject, from
    one batched prediction at the 2q² + 1 points of the central-difference stencil."""
    n, q = eta.shape
    shifts = [np.zeros(q)]
    for j in range(q):
        for sign in (1, -1):
            e = np.zeros(q)
            e[j] = sign * step
            shifts.append(e)
    pairs = []
    for j in range(q):
        for k in range(j):
            for sj, sk in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                e = np.zeros(q)
                e[j], e[k] = sj * step, sk * step
                shifts.append(e)
            pairs.append((j, k))
    shifts_arr = np.array(shifts)
    subjects = np.arange(n)
    points = eta[None] + shifts_arr[:, None, :]
    f = _predict_stack(problem, points, subjects)
    obj = np.array([map_objective(problem, points[m], f[m]) for m in range(len(shifts_arr))])
    o0 = obj[0]
    grad = np.zeros((n, q))
    hess = np.zeros((n, q, q))
    for j in range(q):
        plus, minus = obj[1 + 2 * j], obj[2 + 2 * j]
        grad[:, j] = (plus - minus) / (2 * step)
        hess[:, j, j] = (plus - 2 * o0 + minus) / step ** 2
    base = 1 + 2 * q
    for m, (j, k) in enumerate(pairs):
        pp, pm, mp, mm = obj[base + 4 * m: base + 4 * m + 4]
        hess[:, j, k] = hess[:, k, j] = (pp - pm - mp + mm) / (4 * step ** 2)
    return o0, grad, hess


def audit_map(problem: Problem, modes: MapResult) -> list[AuditResult]:
    """The three MAP audits of the module docstring, over all subjects."""
    o0, grad, hess = finite_difference(problem, modes.eta)
    ids = problem.ids
    results = []
    gmax = np.abs(grad).max(axis=1)
    worst = int(np.argmax(gmax))
    results.append(AuditResult(
        "map.converged", bool(np.all(gmax <= MAP_GRADIENT_TOL)), float(gmax[worst]),
        MAP_GRADIENT_TOL, "1", f"largest |∂O/∂η| at the mode is {gmax[worst]:.3g} (subject ID "
        f"{ids[worst]}, after {int(modes.iterations[worst])} iterations)",
        {"ID": str(ids[worst])}))
    diff = np.abs(modes.objective - o0) / (1.0 + np.abs(o0))
    worst = int(np.argmax(diff))
    results.append(AuditResult(
        "map.objective_consistent", bool(np.all(diff <= 1e-8)), float(diff[worst]), 1e-8, "1",
        f"optimiser's objective {modes.objective[worst]:.10g} vs independent {o0[worst]:.10g} "
        f"(subject ID {ids[worst]})", {"ID": str(ids[worst])}))
    eig = np.linalg.eigvalsh(0.5 * (hess + np.swapaxes(hess, 1, 2)))[:, 0]
    worst = int(np.argmin(eig))
    results.append(AuditResult(
        "map.hessian_positive_definite", bool(np.all(eig > 0)), float(eig[worst]), 0.0, "1",
        f"smallest eigenvalue of the Hessian of O at the mode is {eig[worst]:.3g} (subject ID "
        f"{ids[worst]}); must be > 0", {"ID": str(ids[worst])}))
    return _source(results)


def audit_likelihood(residual: ResidualError, preds: FloatArray) -> list[AuditResult]:
    """``likelihood.normalised`` at the given (positive) predictions."""
    worst, where = 0.0, 0.0
    for f in np.unique(np.asarray(preds, dtype=np.float64)):
        if not (math.isfinite(f) and f > 0):
            continue
        sd = float(residual.sd(np.array([f]))[0])
        if residual.log_scale:
            lo, hi = f * math.exp(-12 * sd), f * math.exp(12 * sd)
        else:
            lo, hi = f - 12 * sd, f + 12 * sd
        total, _ = integrate.quad(
            lambda y, f=f: float(np.exp(residual.log_density(np.array([y]), np.array([f]))[0])),
            lo, hi, points=[f], limit=200, epsabs=1e-12, epsrel=1e-10)
        if abs(total - 1.0) >= worst:
            worst, where = abs(total - 1.0), f
    return _source([AuditResult(
        "likelihood.normalised", worst <= 1e-6, worst, 1e-6, "1",
        f"∫ p(y | f) dy differs from 1 by {worst:.3g} at f = {where:.4g} ({residual.kind} "
        "residual error)")])


def audit_foce(gradient: FloatArray, r_matrix: FloatArray | None, delta_ofv: float,
               covariance_ok: bool | None, covariance_message: str) -> list[AuditResult]:
    """``foce.converged`` and ``foce.covariance_step``."""
    if r_matrix is not None and np.all(np.linalg.eigvalsh(r_matrix) > 0):
        gain = float(0.5 * gradient @ np.linalg.solve(r_matrix, gradient))
        how = "½·gᵀR⁻¹g"
    else:
        gain = float(np.max(np.abs(gradient))) if gradient.size else 0.0
        how = "max |∂OFV/∂ψ| (R not available)"
    last = abs(delta_ofv) if math.isfinite(delta_ofv) else 0.0
    measured = max(gain, last)
    results = [AuditResult(
        "foce.converged", measured <= OFV_TOL, measured, OFV_TOL, "OFV",
        f"OFV still to gain by a Newton step ({how}): {gain:.3g}; last iteration's ΔOFV "
        f"{last:.3g}")]
    if covariance_ok is None:
        results.append(AuditResult("foce.covariance_step", True, 0.0, 0.0, "",
                                   "not requested (estimate.covariance: false)"))
    else:
        results.append(AuditResult("foce.covariance_step", covariance_ok, 0.0 if covariance_ok
                                   else 1.0, 0.0, "", covariance_message))
    return _source(results)
