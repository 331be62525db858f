"""Variance budget: a variance-preserving process splits a fixed total between its parts.

For a process x_t = a_t·x₀ + b_t·ε with unit-variance data and unit noise (the DDPM forward
process, an Ornstein–Uhlenbeck process at stationarity), the signal fraction a_t² and the noise
fraction b_t² must add up to the total at every t:

    |a_t² + b_t² − 1| ≤ rtol + atol     for every output time t.

This audit reads the coefficients a model *says it applied* (data variables over time) and
checks the identity — a schedule that is not variance preserving (x_t = x₀ + √(1−ᾱ)·ε) fails.
Whether the data really carry that variance is the mass-balance audit's job (with the mean
square of the returned states as the stored amount).
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditContext, AuditResult

__all__ = ["audit_variance_budget"]


def audit_variance_budget(ctx: AuditContext, signal: str, noise: str, *,
                          total: float = 1.0, rtol: float | None = None) -> list[AuditResult]:
    """Check signal² + noise² = ``total`` for the coefficient variables ``signal`` and
    ``noise`` (over time) of the returned states."""
    states = ctx.states
    a = np.asarray(states[signal].values, dtype=float)
    b = np.asarray(states[noise].values, dtype=float)
    budget = a * a + b * b
    with np.errstate(invalid="ignore"):
        dev = np.abs(budget - total)
    tol = ctx.tolerance.atol + (ctx.tolerance.rtol if rtol is None else rtol) * abs(total)
    finite = np.isfinite(dev)
    passed = bool(finite.all() and np.all(dev <= tol))
    worst = float(np.max(dev)) if finite.all() else float("nan")
    i = int(np.argmax(np.where(finite, dev, np.inf)))
    where: dict[str, object] = {}
    detail = (f"max |{signal}² + {noise}² − {total:g}| over {dev.size} output times")
    if not passed and ctx.times is not None and dev.ndim == 1:
        where = {"time_s": float(ctx.times[i])}
        detail += (f"; at t = {ctx.times[i]:.6g} s: {a[i]:.9g}² + {b[i]:.9g}² = "
                   f"{budget[i]:.9g} (not variance preserving)")
    return [AuditResult("variance_budget", passed, worst, tol, "", detail, where)]
