"""Ensemble moments against exact ones, within a number of standard errors.

At every output time and for each statistic s (mean, variance) of each component:

    |ŝ(t) − s_exact(t)| ≤ n_sigma·SE(ŝ(t)) + allowance

The SE is the Monte Carlo standard error of the estimate (:mod:`~medtransport.numerics.ensemble`);
``allowance`` is a stated bias a scheme may have (0 by default: a scheme whose weak error at this
step is larger than the sampling error fails, which is the point). Where the SE is zero (a
deterministic start) the estimate must equal the exact value to rounding (1e-9 of the
statistic's largest exact value over the run).
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditResult

__all__ = ["audit_moment"]


def audit_moment(name: str, times: np.ndarray, estimate: np.ndarray, standard_error: np.ndarray,
                 exact: np.ndarray, n_sigma: float, units: str = "",
                 allowance: float = 0.0) -> AuditResult:
    """One result: the worst |ŝ − s| / (n_sigma·SE + allowance) over the output times."""
    est = np.asarray(estimate, float)
    se = np.asarray(standard_error, float)
    ex = np.asarray(exact, float)
    t = np.asarray(times, float)
    dev = np.abs(est - ex)
    # rounding floor: a deterministic start has SE ≈ 0 and the estimate equals the exact
    # value only to rounding, relative to the statistic's largest size over the run
    floor = 1e-9 * max(float(np.nanmax(np.abs(ex))) if ex.size else 0.0, 1e-300)
    tol = n_sigma * np.where(np.isfinite(se), se, 0.0) + allowance + floor
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = dev / tol
    finite = np.isfinite(ratio)
    passed = bool(finite.all() and np.all(ratio <= 1.0))
    i = int(np.argmax(np.where(finite, ratio, np.inf)))
    idx = np.unravel_index(i, ratio.shape)
    k = idx[0]
    z = dev[idx] / se[idx] if se[idx] > 0 else np.inf
    from medtransport.display import duration

    detail = (f"worst at t = {duration(t[k])}: estimate {est[idx]:.6g} vs exact {ex[idx]:.6g} "
              f"{units} ({z:.2f} SE; allowed {n_sigma:g} SE"
              + (f" + {allowance:g} {units}" if allowance else "") + ")")
    return AuditResult(name, passed, float(ratio[idx]) if finite.all() else float("nan"), 1.0,
                       "", detail, {} if passed else {"time_s": float(t[k])})
