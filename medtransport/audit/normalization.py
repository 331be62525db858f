"""Normalization: before time advances, the represented total equals the declared amount.

    |Σ w·u(t0) − declared| ≤ atol + rtol·|declared|

The declared amount comes from the scenario through :meth:`Model.initial_amounts` after unit
conversion (0.1 mmol/kg × 70 kg = 7 mmol); the represented one from the states at the first
output time, by the framework's quadrature.
"""

from __future__ import annotations

from medtransport.audit.report import AuditContext, AuditResult


def audit_normalization(ctx: AuditContext) -> list[AuditResult]:
    out = []
    for sp in ctx.model.conserved:
        name = f"normalization[{sp.name}]"
        if sp.name in ctx.unit_problems:
            out.append(AuditResult(name, False, float("nan"), 0.0,
                                   detail=ctx.unit_problems[sp.name]))
            continue
        assert ctx.trajectory is not None
        units = ctx.trajectory.ledgers[sp.name].units
        declared = ctx.initial[sp.name]
        represented = float(ctx.stored[sp.name][0])
        diff = abs(represented - declared)
        se = ctx.trajectory.standard_errors.get(sp.name)
        tol = ctx.tolerance.atol + ctx.tolerance.rtol * max(abs(declared), abs(represented))
        if se is not None:
            tol += ctx.tolerance.n_sigma * float(se[0])
        passed = diff <= tol  # NaN compares False
        detail = f"declared {declared:.9g} {units}, represented at t0 {represented:.9g} {units}"
        if not passed and declared != 0 and represented != 0:
            detail += f" (ratio {represented / declared:.6g}: a unit conversion slip?)"
        out.append(AuditResult(name, bool(passed), diff, tol, units, detail))
    return out
