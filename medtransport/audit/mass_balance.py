"""Mass balance: the stored amount, recomputed from the states, against the ledger.

    residual(t) = stored(t) − (initial + inflow(t) + source(t) − outflow(t) − sink(t))

passes when max_t |residual(t)| ≤ atol + rtol·scale (+ n_sigma·SE(t) for stochastic solvers),
with scale = the largest amount the ledger saw (stored, initial or any cumulative term).
"""

from __future__ import annotations

import numpy as np

from medtransport.audit.report import AuditContext, AuditResult


def residual(ctx: AuditContext, species: str) -> tuple[np.ndarray, float]:
    """The residual over time — (T,), or (T, P) for a batch of patients — and the ledger's
    scale, for one species."""
    assert ctx.trajectory is not None and ctx.times is not None
    n = len(ctx.times)
    ledger = ctx.trajectory.ledgers[species]
    stored = ctx.stored[species]
    expected = ledger.expected_stored(ctx.initial[species], n)
    if expected.ndim > stored.ndim:
        raise ValueError(f"the ledger of {species} is kept per patient but the states are not")
    if stored.ndim == 2:
        expected = expected.reshape(n, -1)
    terms = [np.abs(stored), np.abs(expected), np.abs(np.ravel(ctx.initial[species]))]
    for term in ("inflow", "outflow", "sink", "source"):
        for values in getattr(ledger, term).values():
            terms.append(np.abs(values))
    scale = float(max(np.max(t) if t.size else 0.0 for t in terms))
    return stored - expected, scale


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
        try:
            res, scale = residual(ctx, sp.name)
        except ValueError as exc:
            out.append(AuditResult(name, False, float("nan"), 0.0, units, detail=str(exc)))
            continue
        tol = ctx.tolerance.atol + ctx.tolerance.rtol * scale
        se = ctx.trajectory.standard_errors.get(sp.name)
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
        worst = float(np.max(np.abs(res))) if not bad.any() else float("nan")
        passed = bool(not bad.any() and np.all(excess <= 0))
        batch = f" and {res.shape[1]} patients" if res.ndim == 2 else ""
        detail = (f"max |stored − (initial + inflow + source − outflow − sink)| over "
                  f"{len(res)} times{batch}; scale {scale:.6g} {units}")
        where: dict[str, object] = {}
        if not passed:
            where = {"time_s": float(ctx.times[i])}
            if res.ndim == 2:
                where["patient"] = int(where_index[1])
        if not passed and not bad.any():
            stored = float(ctx.stored[sp.name][where_index])
            detail += (f"; worst at t = {ctx.times[i]:.6g} s{_patient(where)}: stored "
                       f"{stored:.9g}, ledger expects {stored - float(res[where_index]):.9g}")
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), res.shape)
            detail += f"; non-finite residual first at t = {ctx.times[first[0]]:.6g} s"
        out.append(AuditResult(name, passed, worst, float(np.max(allowed)), units, detail,
                               where))
    return out


def _patient(where: dict[str, object]) -> str:
    return f", patient {where['patient']}" if "patient" in where else ""
