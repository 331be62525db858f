"""Non-compartmental analysis per dosing interval of a multiple-dose profile.

For each dosing interval [t_k, t_{k+1}) (from one dose to the next; the last dose's interval
ends one II later when the profile reaches it), with the concentration just after the dose at
t_k and just before the next dose at t_{k+1} (Gabrielsson & Weiner, *Pharmacokinetic and
Pharmacodynamic Data Analysis*, 5th ed., ch. 2 and 3; Rowland & Tozer ch. 11):

- AUCτ = ∫ C dt over the interval, by the linear-up/log-down trapezoid (:mod:`.nca`);
- Cmax, Tmax (time after the dose), Cmin (the lowest concentration in the interval), Ctrough
  (the concentration just before the next dose);
- Cavg = AUCτ/τ;
- the accumulation ratio R_ac = AUCτ(k)/AUCτ(first interval);
- at steady state — the regimen started at steady state (SS 1/2), or AUCτ within
  ``STEADY_RTOL`` of the interval before with the same dose — CL/F = Dose/AUCτ.

Single-dose metrics (AUC∞, λz, t½, CL from AUC∞) belong to a single dose; for a regimen they
are not reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtransport.units import Q_
from medtransport_pk.nca import Route, nca

__all__ = ["STEADY_RTOL", "IntervalNCA", "interval_nca"]

#: AUCτ changing by less than this from one interval to the next counts as steady state
STEADY_RTOL = 0.005


@dataclass(frozen=True)
class IntervalNCA:
    """Per interval arrays (times in h, concentrations in the profile's unit)."""

    start: np.ndarray
    tau: np.ndarray
    dose: np.ndarray
    auc_tau: np.ndarray
    cmax: np.ndarray
    tmax: np.ndarray
    cmin: np.ndarray
    ctrough: np.ndarray
    cavg: np.ndarray
    accumulation_ratio: np.ndarray
    at_steady_state: np.ndarray
    clearance: np.ndarray  # Dose/AUCτ where at steady state, NaN elsewhere


def interval_nca(t: np.ndarray, c: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 doses: np.ndarray, c_before_end: np.ndarray, steady: np.ndarray,
                 route: Route) -> IntervalNCA:
    """``t``, ``c``: the profile (h; right-continuous, a value at a dose time is after the
    dose); ``starts``/``ends``: the intervals; ``doses``: AMT of each; ``c_before_end``: the
    concentration just before each interval's end; ``steady``: intervals whose regimen
    started at steady state."""
    rows = []
    for s, e, cend in zip(starts, ends, c_before_end, strict=True):
        inside = (t >= s) & (t < e)
        tt = np.concatenate([t[inside], [e]]) - s
        cc = np.concatenate([c[inside], [cend]])
        if tt[0] != 0.0:  # the profile has no point at the dose: the interval is not covered
            rows.append((np.nan,) * 5)
            continue
        r = nca(Q_(tt, "h"), Q_(cc, "mg/L"), route=route)
        auc = float(r.auc_last.magnitude) if np.isfinite(r.auc_last.magnitude) else 0.0
        rows.append((auc, float(r.cmax.magnitude), float(r.tmax.magnitude),
                     float(np.min(cc)), float(cend)))
    arr = np.array(rows, float).reshape(-1, 5)
    auc, cmax, tmax, cmin, ctrough = arr.T
    tau = ends - starts
    first = auc[0] if auc.size else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = auc / first
        change = np.abs(np.diff(auc)) / auc[1:]
    same_dose = np.r_[False, doses[1:] == doses[:-1]]
    same_tau = np.r_[False, np.isclose(tau[1:], tau[:-1], rtol=1e-9)]
    settled = np.r_[False, change <= STEADY_RTOL] & same_dose & same_tau
    at_ss = (steady | settled) & np.isfinite(auc)
    with np.errstate(divide="ignore", invalid="ignore"):
        clearance = np.where(at_ss, doses / auc, np.nan)
    return IntervalNCA(starts, tau, doses, auc, cmax, tmax, cmin, ctrough, auc / tau, ratio,
                       at_ss, clearance)
