"""State space: a process that cannot leave [lower, upper] must not be reported outside it.

    lower ≤ X_p(t) ≤ upper        for every path p and output time t

(a CIR concentration ≥ 0; a Jacobi mixing fraction in [0, 1]). Euler–Maruyama and Milstein can
step outside; the engine then applies a stated fix (full truncation, reflection) or the exact
transition, and counts the steps that would have ended outside. This audit reports that fix and
count, and fails if any returned state lies outside — which is what an unfixed scheme does.
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditResult

__all__ = ["audit_state_space"]


def audit_state_space(name: str, values: np.ndarray, lower: float, upper: float, *,
                      scheme: str, fix: str, violations: int, path_steps: int,
                      units: str = "") -> AuditResult:
    """One result for the component ``values`` (any shape; NaN = absorbed, skipped)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    below = float(np.max(lower - v, initial=0.0)) if np.isfinite(lower) else 0.0
    above = float(np.max(v - upper, initial=0.0)) if np.isfinite(upper) else 0.0
    n_out = int(np.sum((v < lower) | (v > upper)))
    worst = max(below, above)
    how = {"exact": "the exact transition (it cannot leave)",
           "truncate": "full truncation (coefficients at the clipped state)",
           "reflect": "reflection back into the state space",
           "none": "no fix"}.get(fix, fix)
    rate = violations / path_steps if path_steps else 0.0
    detail = (f"{scheme} with {how}: {violations} of {path_steps} path-steps ended outside "
              f"[{lower:g}, {upper:g}] {units} ({rate:.3g}) before the fix")
    if n_out:
        detail += f"; {n_out} returned states lie outside, by up to {worst:.6g} {units}"
    return AuditResult(name, n_out == 0, worst, 0.0, units, detail)
