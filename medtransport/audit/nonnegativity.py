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
                               f"minimum {lowest:.6g} {units}; values down to "
                               f"−{allowance:.3g} {units} are accepted as round-off", where))
    return out
