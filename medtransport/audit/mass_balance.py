"""Mass balance: the stored amount, recomputed from the states, against the ledger.

    residual(t) = stored(t) − (initial + inflow(t) + source(t) − outflow(t) − sink(t))

passes when max_t |residual(t)| ≤ atol + rtol·scale (+ n_sigma·SE(t) for stochastic solvers),
with scale = the largest amount the ledger saw (stored, initial or any cumulative term).
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditContext, AuditResult
from medtransport.audit.wording import amount, difference_in_words


def residual(ctx: AuditContext, species: str) -> tuple[np.ndarray, float]:
    """The residual over time — (T,), or (T, P) for a batch of patients — and the ledger's
    scale, for one species."""
    assert ctx.trajectory is not None and ctx.times is not None
    res = ctx.residual(species)
    ledger = ctx.trajectory.ledgers[species]
    terms = [ctx.stored[species], ctx.expected(species), np.ravel(ctx.initial[species])]
    for term in ("inflow", "outflow", "sink", "source"):
        terms.extend(getattr(ledger, term).values())
    scale = float(max(ctx.magnitude(t) for t in terms))
    return res, scale


def audit_mass_balance(ctx: AuditContext) -> list[AuditResult]:
    out = []
    for sp in ctx.model.conserved:
        name = f"mass_balance[{sp.name}]"
        failed = ctx.unrecomputable(name, sp.name)
        if failed is not None:
            out.append(failed)
            continue
        assert ctx.trajectory is not None and ctx.times is not None
        units = ctx.trajectory.ledgers[sp.name].units
        # the detail in words uses the display unit; measured and tolerance stay canonical
        shown = ctx.display_unit(sp.name, units)
        try:
            res, scale = residual(ctx, sp.name)
        except ValueError as exc:
            out.append(AuditResult(name, False, float("nan"), 0.0, units, detail=str(exc)))
            continue
        tol = ctx.tolerance.atol + ctx.tolerance.rtol * scale
        se = ctx.trajectory.standard_errors.get(sp.name)
        worst = ctx.magnitude(res)
        batch = f" and {res.shape[1]} patients" if res.ndim == 2 else ""
        if se is None and worst <= tol:
            # the usual verdict, without the full-size arrays that locate a failure
            out.append(AuditResult(name, True, worst, tol, units,
                                   _detail(len(res), batch, scale, units, shown)))
            continue
        allowed = np.broadcast_to(
            tol if se is None else tol + ctx.tolerance.n_sigma * np.reshape(
                np.asarray(se, dtype=float), (len(ctx.times), -1) if res.ndim == 2 else (-1,)),
            res.shape)
        bad = ~np.isfinite(res)
        with np.errstate(invalid="ignore"):
            excess = np.abs(res) - allowed
        flat = int(np.argmax(np.where(bad, np.inf, excess)))
        where_index = np.unravel_index(flat, res.shape)
        i = int(where_index[0])
        if bad.any():
            worst = float("nan")
        passed = bool(not bad.any() and np.all(excess <= 0))
        detail = _detail(len(res), batch, scale, units, shown)
        where: dict[str, object] = {}
        if not passed:
            where = {"time_s": float(ctx.times[i])}
            if res.ndim == 2:
                where["patient"] = int(where_index[1])
        if not passed and not bad.any():
            stored = float(ctx.stored[sp.name][where_index])
            expected = stored - float(res[where_index])
            # both amounts may agree to nine digits: state the residual, not two equal-looking
            # numbers
            gap = difference_in_words(stored, expected, units, float(allowed[where_index]),
                                     shown)
            detail += (f"; worst at t = {ctx.times[i]:.6g} s{_patient(where)}: stored "
                       f"{amount(stored, units, shown)} {gap} from what the ledger expects")
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), res.shape)
            detail += f"; non-finite residual first at t = {ctx.times[first[0]]:.6g} s"
        out.append(AuditResult(name, passed, worst, float(np.max(allowed)), units, detail,
                               where))
    return out


def _patient(where: dict[str, object]) -> str:
    return f", patient {where['patient']}" if "patient" in where else ""


def _detail(times: int, batch: str, scale: float, units: str, shown: str | None) -> str:
    return (f"max |stored − (initial + inflow + source − outflow − sink)| over {times} "
            f"times{batch}; scale {amount(scale, units, shown)}")
