"""Bounds: a quantity stays within [lower, upper], up to a stated allowance.

    lower − allowance ≤ v ≤ upper + allowance      for every element v

(e.g. a diffusion-weighted attenuation 0 ≤ |E| ≤ 1, a probability in [0, 1]); the allowance may
be one number or one per element (a number of standard errors for a Monte Carlo estimate).
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditResult

__all__ = ["check_bounds"]


def check_bounds(name: str, values: np.ndarray, lower: float, upper: float,
                 allowance: float | np.ndarray = 0.0, units: str = "") -> AuditResult:
    """One :class:`AuditResult`: ``measured`` is the worst excursion beyond the bounds."""
    v = np.asarray(values, dtype=float)
    allow = np.broadcast_to(np.asarray(allowance, dtype=float), v.shape)
    excess = np.maximum(v - upper, lower - v) - allow
    if v.size == 0:
        return AuditResult(name, True, 0.0, 0.0, units, "nothing to check")
    worst_i = int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)))
    worst = float(excess.ravel()[worst_i]) if np.isfinite(excess.ravel()[worst_i]) else \
        float("nan")
    passed = bool(np.all(excess <= 0))  # NaN fails
    detail = (f"all {v.size} values within [{lower:g}, {upper:g}]" if passed else
              f"value {v.ravel()[worst_i]:.9g} (index {worst_i}) outside [{lower:g}, {upper:g}] "
              f"by more than its allowance {allow.ravel()[worst_i]:.3g}")
    return AuditResult(name, passed, worst, 0.0, units, detail,
                       {} if passed else {"index": worst_i})
