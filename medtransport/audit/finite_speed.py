"""Finite propagation and the diffusive limit of a finite-speed (telegrapher) solution.

**Finite propagation**: a density that starts inside [a, b] and moves no faster than c holds
nothing beyond [a − ct, b + ct]. A scheme smears the front by a stated ``margin`` (for the
implicit telegrapher scheme, :func:`~medtransport.numerics.telegrapher.front_margin`), so

    (mass outside [a − ct − margin, b + ct + margin]) / (total mass) ≤ tol     at every t.

**Diffusive limit**: the same scheme with τ = 0 must reproduce the core's diffusion solution on
the same grid and step (backward Euler) to round-off:

    max |u_{τ=0} − u_diffusion| ≤ rtol·max |u_diffusion|.
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditResult

__all__ = ["audit_diffusive_limit", "audit_finite_propagation"]


def audit_finite_propagation(times: np.ndarray, x: np.ndarray, u: np.ndarray,
                             weights: np.ndarray, support: tuple[float, float], speed: float,
                             margin: np.ndarray, tol: float = 1e-6) -> AuditResult:
    """``u`` (T, cells) at cell centres ``x``; ``margin`` (T,) the scheme's front width."""
    t = np.asarray(times, float) - float(times[0])
    total = np.abs(u[0] * weights).sum()
    worst, at = 0.0, 0
    for k in range(len(t)):
        reach = speed * t[k] + float(np.asarray(margin)[k])
        outside = (x < support[0] - reach) | (x > support[1] + reach)
        frac = float(np.abs(u[k][outside] * weights[outside]).sum() / total) if total else 0.0
        if not np.isfinite(frac) or frac > worst:
            worst, at = frac, k
    passed = bool(np.isfinite(worst) and worst <= tol)
    detail = (f"largest fraction of the mass beyond x₀ ± (ct + margin), c = {speed:.6g}: "
              f"{worst:.3g} at t = {t[at]:.6g} s (margin there {float(np.asarray(margin)[at]):.3g}"
              f"; allowed {tol:g})")
    return AuditResult("finite_propagation", passed, worst, tol, "", detail,
                       {} if passed else {"time_s": float(times[at])})


def audit_diffusive_limit(limit: np.ndarray, diffusion: np.ndarray,
                          rtol: float = 1e-9) -> AuditResult:
    """The τ = 0 scheme against the core's diffusion solution (same grid, same steps)."""
    scale = float(np.max(np.abs(diffusion))) or 1.0
    dev = float(np.max(np.abs(np.asarray(limit) - np.asarray(diffusion))))
    passed = bool(np.isfinite(dev) and dev <= rtol * scale)
    return AuditResult("diffusive_limit", passed, dev / scale, rtol, "",
                       f"τ = 0 against the core's backward-Euler diffusion on the same grid: max "
                       f"relative difference {dev / scale:.3g}")
