"""The probability ledger of a Monte Carlo ensemble: no path is lost, and the density is whole.

At every output time t:

    alive(t) + Σ_walls absorbed_w(t) = started                          (exact, in paths)
    Σ_j p_j(t)·w_j + outside(t) = alive(t)/started                       (normalization)

where p is the histogram density on cells of measure w_j and ``outside`` the fraction of
started paths alive beyond the cells. The first is integer arithmetic, held exactly; the second
to ``rtol`` (it is the same count divided and multiplied again).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from medtransport.audit.report import AuditResult

__all__ = ["audit_probability_ledger"]


def audit_probability_ledger(times: np.ndarray, started: int, alive: np.ndarray,
                             absorbed: Mapping[str, np.ndarray],
                             density_integral: np.ndarray | None = None,
                             outside: np.ndarray | None = None,
                             rtol: float = 1e-12) -> list[AuditResult]:
    """Check both identities at every output time (module docstring)."""
    t = np.asarray(times, float)
    live = np.asarray(alive, np.int64)
    gone = sum((np.asarray(v, np.int64) for v in absorbed.values()), np.zeros_like(live))
    gap = live + gone - int(started)
    bad = np.flatnonzero(gap != 0)
    walls = ", ".join(f"{k}: {int(np.asarray(v)[-1])}" for k, v in absorbed.items()) or "none"
    detail = (f"alive + absorbed per wall = started at all {t.size} output times "
              f"({int(live[-1])} alive, absorbed {walls}, {started} started)")
    where: dict[str, object] = {}
    if bad.size:
        i = int(bad[0])
        detail = (f"at t = {t[i]:.6g} s: {int(live[i])} alive + {int(gone[i])} absorbed = "
                  f"{int(live[i] + gone[i])}, but {started} paths started")
        where = {"time_s": float(t[i])}
    out = [AuditResult("probability_ledger", not bad.size, float(np.max(np.abs(gap))), 0.0,
                       "paths", detail, where)]
    if density_integral is not None:
        total = np.asarray(density_integral, float) + (0.0 if outside is None else
                                                       np.asarray(outside, float))
        frac = live / float(started)
        with np.errstate(invalid="ignore"):
            dev = np.abs(total - frac)
        ok = np.isfinite(dev) & (dev <= rtol * np.maximum(frac, 1.0))
        worst = float(np.max(dev)) if np.all(np.isfinite(dev)) else float("nan")
        i = int(np.argmin(ok)) if not ok.all() else 0
        det = ("∫ density + fraction beyond the cells = surviving fraction at every output "
               f"time (last: {total[-1]:.9g} vs {frac[-1]:.9g})") if ok.all() else \
            (f"at t = {t[i]:.6g} s the density integrates to {total[i]:.9g} but "
             f"{frac[i]:.9g} of the paths survive")
        out.append(AuditResult("density_normalization", bool(ok.all()), worst, rtol, "",
                               det, {} if ok.all() else {"time_s": float(t[i])}))
    return out
