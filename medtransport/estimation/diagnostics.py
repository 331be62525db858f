"""Per-record diagnostics of a fit: PRED, IPRED, IWRES and CWRES.

- PRED: the prediction at the typical parameters (η = 0).
- IPRED: the prediction at the conditional mode η̂.
- IWRES = (T(y) − T(IPRED)) / SD(IPRED), with T the identity or ln (exponential error).
- CWRES (Hooker, Staatz & Karlsson 2007, Pharm Res 24:2187): with the predictions linearised
  about η̂ (J = ∂T(f)/∂η), the FOCE mean and covariance of a subject's observations are

      E[y] = T(f(η̂)) − J·η̂,       C = J·Ω·Jᵀ + diag V(f(η̂))

  and CWRES = C^{−1/2}·(T(y) − E[y]) (symmetric inverse square root), ≈ N(0, 1) under the model.

Records below the limit (M3) and unobserved records get NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtransport.estimation.map import MapResult
from medtransport.estimation.problem import Problem

__all__ = ["Diagnostics", "diagnostics"]

FloatArray = NDArray[np.float64]


@dataclass
class Diagnostics:
    """``(n_subjects, n_records)`` arrays; NaN where a record is not an observation."""

    pred: FloatArray
    ipred: FloatArray
    iwres: FloatArray
    cwres: FloatArray


def diagnostics(problem: Problem, modes: MapResult) -> Diagnostics:
    """PRED, IPRED, IWRES and CWRES of every record (see the module docstring)."""
    n, k = problem.dv.shape
    subjects = np.arange(n)
    pred = np.asarray(problem.predict(problem.individual(np.zeros((n, len(problem.eta_names))),
                                                         subjects=subjects), subjects))
    res = problem.residual
    obs = problem.observed & np.isfinite(problem.dv)
    ipred = modes.ipred
    with np.errstate(divide="ignore", invalid="ignore"):
        iwres = np.where(obs, res.weighted_residual(problem.dv, ipred), np.nan)
        ty = res.transform(problem.dv)
        tf = res.transform(ipred)
        dtf = 1.0 / ipred if res.log_scale else np.ones_like(ipred)
    jac = modes.jacobian * dtf[..., None]                                  # (n, k, q)
    mean = tf - np.einsum("nkq,nq->nk", jac, modes.eta)
    cov = np.einsum("nkq,qr,nlr->nkl", jac, problem.omega, jac)
    cov += np.einsum("nk,kl->nkl", res.variance(ipred), np.eye(k))
    # unobserved records: an identity block and a zero residual, so they drop out
    mask = obs[:, :, None] & obs[:, None, :]
    cov = np.where(mask, cov, np.eye(k)[None])
    r = np.where(obs, ty - mean, 0.0)
    w, v = np.linalg.eigh(cov)
    inv_sqrt = np.einsum("nij,nj,nkj->nik", v, 1.0 / np.sqrt(w), v)
    cwres = np.where(obs, np.einsum("nij,nj->ni", inv_sqrt, r), np.nan)
    pred = np.where(problem.observed | problem.counted, pred, np.nan)
    ipred = np.where(problem.observed | problem.counted, ipred, np.nan)
    return Diagnostics(pred=pred, ipred=ipred, iwres=iwres, cwres=cwres)
