"""Finiteness: every returned value and coordinate is a finite number (no NaN, no inf)."""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditContext, AuditResult


def audit_finiteness(ctx: AuditContext) -> list[AuditResult]:
    states = ctx.states
    bad: list[str] = []
    where: dict[str, object] = {}
    count = 0
    for name, var in {**states.data_vars, **states.coords}.items():
        if not np.issubdtype(var.dtype, np.number):
            continue
        if var.size == 0:
            continue
        # min and max propagate NaN and show ±inf: a cheap pass before the elementwise one
        if all(np.isfinite(ctx.extremes(str(name)))):
            continue
        values = np.asarray(var.values)
        finite = np.isfinite(values)
        if not finite.all():
            n_bad = int(values.size - finite.sum())
            count += n_bad
            bad.append(f"{name} ({n_bad} values)")
            if not where and "time" in var.dims:
                t_index = np.argwhere(~finite)[0][var.dims.index("time")]
                where = {"variable": str(name),
                         "time_s": float(states["time"].values[t_index])}
    detail = "all values finite" if not bad else "non-finite values in " + ", ".join(bad)
    return [AuditResult("finiteness", not bad, float(count), 0.0, "values", detail, where)]
