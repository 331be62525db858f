"""Irreversible flows never run backwards: a cumulative term of a route that cannot return.

For each route r a model declares irreversible (absorption at a wall, elimination, decay),
its cumulative amount F_r(t) since the start must satisfy

    F_r(t_{i+1}) − F_r(t_i) ≥ −tol        at every pair of consecutive output times.

A current fraction booked as a flow (paths *now* beyond a grid, which may come back) breaks it.
Not every cumulative term is monotone — a net flux through a face may reverse — so a model
applies this to the routes it knows are one-way; one pass over each route's array.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from medtransport.audit.report import AuditResult

__all__ = ["audit_irreversible"]


def audit_irreversible(times: np.ndarray, routes: Mapping[str, np.ndarray], units: str,
                       tol: float = 0.0, name: str = "irreversible_flows") -> AuditResult:
    """One result: the largest decrease over all ``routes`` (each (T,) or (T, P)) against
    ``tol`` (in ``units``); a failure names the route and the time it went down."""
    t = np.asarray(times, float)
    worst, where_route, where_i = 0.0, "", -1
    for route, values in routes.items():
        a = np.asarray(values, float)
        if a.shape[0] < 2:
            continue
        drop = -np.diff(a, axis=0)
        if not np.all(np.isfinite(drop)):
            return AuditResult(name, False, float("nan"), tol, units,
                               f"the cumulative term '{route}' is not finite")
        flat = int(np.argmax(drop))
        if (d := float(drop.flat[flat])) > worst:
            worst, where_route, where_i = d, route, int(np.unravel_index(flat, drop.shape)[0])
    listed = ", ".join(f"'{r}'" for r in routes) or "none"
    if worst <= tol:
        return AuditResult(name, True, worst, tol, units,
                           f"the one-way cumulative terms ({listed}) never decrease over "
                           f"{t.size} output times")
    return AuditResult(name, False, worst, tol, units,
                       f"the cumulative term '{where_route}' goes down by {worst:.6g} {units} "
                       f"between t = {t[where_i]:.6g} s and {t[where_i + 1]:.6g} s — a "
                       "one-way flow cannot run backwards (a current amount booked as a "
                       "cumulative flow?)", {"time_s": float(t[where_i + 1]),
                                             "route": where_route})
