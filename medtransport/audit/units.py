"""Units: every data variable and coordinate carries a ``units`` attribute the shared registry
parses, and a ``long_name``. A model never returns a number without a unit."""

from __future__ import annotations

from medtransport.audit.report import AuditContext, AuditResult
from medtransport.units import ureg


def audit_units(ctx: AuditContext) -> list[AuditResult]:
    problems = []
    states = ctx.states
    for name, var in {**states.data_vars, **states.coords}.items():
        if var.dtype.kind in "OUS":  # labels (compartment names) have no unit
            continue
        units = var.attrs.get("units")
        if units is None:
            problems.append(f"{name}: no units")
            continue
        try:
            ureg.parse_units(units)
        except Exception:
            problems.append(f"{name}: unparseable units {units!r}")
        if "long_name" not in var.attrs:
            problems.append(f"{name}: no long_name")
    detail = "every variable and coordinate has units and a long name" if not problems \
        else "; ".join(problems)
    return [AuditResult("units", not problems, float(len(problems)), 0.0, "problems", detail)]
