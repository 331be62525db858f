"""Normalization: before time advances, the represented total equals the declared amount.

    |Σ w·u(t0) − declared| ≤ atol + rtol·|declared|

The declared amount comes from the scenario through :meth:`Model.initial_amounts` after unit
conversion (0.1 mmol/kg × 70 kg = 7 mmol); the represented one from the states at the first
output time, by the framework's quadrature.
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditContext, AuditResult
from medtransport.audit.wording import amount, difference_in_words


def audit_normalization(ctx: AuditContext) -> list[AuditResult]:
    out = []
    for sp in ctx.model.conserved:
        name = f"normalization[{sp.name}]"
        failed = ctx.unrecomputable(name, sp.name)
        if failed is not None:
            out.append(failed)
            continue
        assert ctx.trajectory is not None
        units = ctx.trajectory.ledgers[sp.name].units
        declared = np.asarray(ctx.initial[sp.name], dtype=float)
        represented = np.asarray(ctx.stored[sp.name][0], dtype=float)
        with np.errstate(invalid="ignore"):
            diff = np.abs(represented - declared)
            tol = ctx.tolerance.atol + ctx.tolerance.rtol * np.maximum(np.abs(declared),
                                                                       np.abs(represented))
        se = ctx.trajectory.standard_errors.get(sp.name)
        if se is not None:
            tol = tol + ctx.tolerance.n_sigma * np.asarray(se, dtype=float)[0]
        ok = diff <= tol  # NaN compares False
        passed = bool(np.all(ok))
        j = int(np.argmin(ok)) if diff.ndim and not passed else 0
        d = float(np.ravel(declared)[j if declared.ndim else 0])
        r = float(np.ravel(represented)[j if represented.ndim else 0])
        who = f" (patient {j})" if represented.ndim and not passed else ""
        # in words, in the unit the scenario or the model shows amounts in (1000 mg, not 1 g)
        shown = ctx.display_unit(sp.name, units)
        detail = (f"declared {amount(d, units, shown)}, represented at t0 "
                  f"{amount(r, units, shown)}{who}")
        if not passed:
            allowed = float(np.ravel(np.broadcast_to(tol, np.shape(diff)))[j]) \
                if np.ndim(diff) else float(tol)
            detail += f": {difference_in_words(r, d, units, allowed, shown)}"
            ratio = r / d if d != 0 and r != 0 else float("nan")
            # a factor of 10ⁿ, 60 or 1000 between the two smells of units; 1.0000001 does not
            if np.isfinite(ratio) and abs(np.log10(abs(ratio))) >= 0.5:
                detail += f" (ratio {ratio:.6g}: a unit conversion slip?)"
        worst = float(np.max(diff)) if np.all(np.isfinite(diff)) else float("nan")
        # Where it failed, for reports: the first output time (and the first failing patient;
        # not "patient", which names the one patient to blame).
        where: dict[str, object] = {}
        if not passed and ctx.times is not None and len(ctx.times):
            where["time_s"] = float(ctx.times[0])
            if represented.ndim:
                where["first_patient"] = j
        out.append(AuditResult(name, passed, worst, float(np.max(tol)), units, detail,
                               where))
    return out
