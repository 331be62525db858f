"""Non-negativity: densities of conserved species do not go below zero.

    min u ≥ −rtol·max|u|

(a relative round-off allowance; an oscillating unstable scheme or a wrong stencil goes far
below it). Species whose density may be negative say so with ``nonnegative = False`` in the
model's :attr:`nonnegative_variables` override.
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditContext, AuditResult


def audit_nonnegativity(ctx: AuditContext) -> list[AuditResult]:
    out = []
    states = ctx.states
    for var_name in getattr(ctx.model, "nonnegative_variables", None) or \
            [sp.variable for sp in ctx.model.conserved]:
        if var_name not in states:
            continue
        var = states[var_name]
        if var.size == 0:
            continue
        # min and max propagate NaN, so they also tell whether every value is finite
        lowest, highest = ctx.extremes(var_name)
        if not (np.isfinite(lowest) and np.isfinite(highest)):
            continue  # finiteness reports it
        allowance = ctx.tolerance.rtol * max(abs(lowest), abs(highest))
        passed = lowest >= -allowance
        where: dict[str, object] = {}
        if not passed:
            values = np.asarray(var.values, dtype=float)
            idx = np.unravel_index(int(values.argmin()), values.shape)
            for dim, i in zip(var.dims, idx, strict=True):
                coord = states[dim].values[i] if dim in states.coords else i
                where[str(dim)] = coord.item() if hasattr(coord, "item") else coord
        units = var.attrs.get("units", "")
        out.append(AuditResult(f"nonnegativity[{var_name}]", passed, lowest, -allowance, units,
                               _detail(ctx, var_name, lowest, allowance, units), where))
    return out


def _detail(ctx: AuditContext, name: str, lowest: float, allowance: float, units: str) -> str:
    """The check in words, in the unit the run is shown in (``minimum 0 mg/L``); the
    allowance is a difference, so a temperature's stays in its own unit."""
    from medtransport.display import convert, dimensionality, pretty

    shown = (ctx.display_unit(name, units) if units else None) or units
    low, tol, low_unit, tol_unit = lowest, allowance, units, units
    if shown != units:
        try:
            low, low_unit = float(convert(lowest, units, shown)), shown
            if dimensionality(units) != "[temperature]":
                tol, tol_unit = float(convert(allowance, units, shown)), shown
        except Exception:  # an unconvertible declaration: the canonical numbers
            low, tol, low_unit, tol_unit = lowest, allowance, units, units
    return (f"minimum {low:.6g} {pretty(low_unit)}; values down to "
            f"−{tol:.3g} {pretty(tol_unit)} are accepted as round-off")
