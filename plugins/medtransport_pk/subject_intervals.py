"""Dosing intervals of every subject of a data set, and NCA per interval over many profiles at
once (no loop over subjects or intervals).

A subject's intervals run from each of its dose times (the dose records with their ADDL
repeats, doses at one time summed) to its next dose time; the last one to that dose + II, or
open when II = 0. An interval with an EVID 3 reset inside it is dropped (its profile is not one
regimen's).

Per interval, over its points (t_j since the dose, C_j) (Gabrielsson & Weiner, 5th ed.,
ch. 2–3; the segment rules of :mod:`medtransport_pk.nca`):

- AUC = Σ_j segment(t_j → t_j+1), linear-up/log-down (log trapezoid
  Δt·(C₁ − C₂)/ln(C₁/C₂) where C falls, both > 0; linear Δt·(C₁ + C₂)/2 elsewhere) or linear;
- Cmax, Tmax (first time of Cmax, since the dose), Cmin; n, the number of points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtransport_pk.nca import AucMethod, _segment_auc
from medtransport_pk.nca_intervals import STEADY_RTOL
from medtransport_pk.records import RecordTable

__all__ = ["DosingIntervals", "GroupedNCA", "dosing_intervals", "grouped_nca"]


@dataclass(frozen=True)
class DosingIntervals:
    """Intervals sorted by (subject, start): arrays of equal length."""

    subject: np.ndarray  # index of the subject (0 … P − 1)
    rank: np.ndarray  # the interval's number within its subject (0, 1, …)
    start: np.ndarray  # h
    end: np.ndarray  # h (inf when open)
    dose: np.ndarray  # summed AMT at the start
    steady: np.ndarray  # a dose at the start has SS 1/2
    span: float = 1.0  # larger than any |time| of the table or end: keys of subjects apart

    def key(self, subject: np.ndarray, time: np.ndarray) -> np.ndarray:
        """One sortable number per (subject, time); an open end sorts after the subject's
        times and before the next subject's."""
        return subject * 4.0 * self.span + np.where(np.isfinite(time), time, 2.0 * self.span)


def dosing_intervals(table: RecordTable, subject: np.ndarray) -> DosingIntervals:
    """The intervals of every subject; ``subject``: the subject index of every record."""
    dose_rows = np.flatnonzero((table.evid == 1) | (table.evid == 4))
    n_each = table.addl[dose_rows].astype(np.int64) + 1
    rep = np.repeat(dose_rows, n_each)
    k = np.arange(rep.size) - np.repeat(np.cumsum(n_each) - n_each, n_each)
    times = table.time[rep] + k * table.ii[rep]
    sub = subject[rep]
    order = np.lexsort((times, sub))
    sub, times, rep = sub[order], times[order], rep[order]
    new = np.r_[True, (sub[1:] != sub[:-1]) | (times[1:] != times[:-1])] if sub.size else \
        np.zeros(0, bool)
    first = np.flatnonzero(new)
    s_sub, s_t = sub[first], times[first]
    dose = np.add.reduceat(table.amt[rep], first) if first.size else np.zeros(0)
    steady = np.logical_or.reduceat(table.ss[rep] > 0, first) if first.size else \
        np.zeros(0, bool)
    last_of_subject = np.r_[s_sub[1:] != s_sub[:-1], True] if first.size else np.zeros(0, bool)
    ii_last = table.ii[rep[first]]
    end = np.where(last_of_subject, np.where(ii_last > 0, s_t + ii_last, np.inf),
                   np.r_[s_t[1:], np.inf] if first.size else s_t)
    rank = np.arange(first.size) - np.searchsorted(s_sub, s_sub, side="left")
    finite_end = end[np.isfinite(end)]
    span = float(max(np.max(np.abs(table.time), initial=0.0),
                     np.max(np.abs(finite_end), initial=0.0))) + 1.0
    out = DosingIntervals(s_sub, rank, s_t, end, dose, steady, span)
    resets = np.flatnonzero(table.evid == 3)
    if resets.size and first.size:
        r_key = np.sort(out.key(subject[resets], table.time[resets]))
        lo = np.searchsorted(r_key, out.key(s_sub, s_t), side="right")
        hi = np.searchsorted(r_key, out.key(s_sub, end), side="right")
        keep = hi == lo
        out = DosingIntervals(*(np.asarray(a)[keep] for a in (s_sub, rank, s_t, end, dose,
                                                              steady)), span=span)
    return out


@dataclass(frozen=True)
class GroupedNCA:
    """Per group (interval) arrays; NaN where a group has too few points."""

    n: np.ndarray
    auc: np.ndarray
    cmax: np.ndarray
    tmax: np.ndarray
    cmin: np.ndarray


def grouped_nca(group: np.ndarray, t: np.ndarray, c: np.ndarray, n_groups: int,
                method: AucMethod = "linear-up/log-down", min_points: int = 2) -> GroupedNCA:
    """NCA of many profiles at once: points sorted by (``group``, ``t``), ``t`` since each
    group's dose. AUC and Cmin need ``min_points`` points; Cmax and Tmax need one."""
    n = np.bincount(group, minlength=n_groups)
    auc = np.full(n_groups, np.nan)
    cmax, tmax, cmin = (np.full(n_groups, np.nan) for _ in range(3))
    if group.size == 0:
        return GroupedNCA(n, auc, cmax, tmax, cmin)
    same = group[1:] == group[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        seg = _segment_auc(t, c, method)
    auc_all = np.bincount(group[1:][same], weights=seg[same], minlength=n_groups)
    first = np.flatnonzero(np.r_[True, ~same])
    present = group[first]
    cmax[present] = np.maximum.reduceat(c, first)
    cmin_all = np.minimum.reduceat(c, first)
    at_max = np.flatnonzero(c == cmax[group])
    g_at, i_first = np.unique(group[at_max], return_index=True)
    tmax[g_at] = t[at_max[i_first]]
    enough = n >= min_points
    auc[enough] = auc_all[enough]
    cmin[present] = np.where(enough[present], cmin_all, np.nan)
    return GroupedNCA(n, auc, cmax, tmax, cmin)


def profile_interval_nca(iv: DosingIntervals, grid: np.ndarray, conc: np.ndarray,
                         c_end: np.ndarray, method: AucMethod = "linear-up/log-down"
                         ) -> tuple[np.ndarray, GroupedNCA]:
    """NCA of the predicted profiles ``conc`` (P, T) on ``grid`` (h; right-continuous, every
    interval start on it) over the intervals that close within the grid, each ended by its
    ``c_end`` (the concentration just before the end). Returns (which intervals, their NCA)."""
    ok = np.isfinite(iv.end) & (iv.end <= grid[-1] + 1e-9) & (iv.start >= grid[0])
    i0 = np.searchsorted(grid, iv.start)
    ok &= np.isclose(grid[np.minimum(i0, grid.size - 1)], iv.start, rtol=0.0, atol=1e-9)
    k = np.flatnonzero(ok)
    i0 = i0[k]
    i1 = np.searchsorted(grid, iv.end[k] - 1e-9, side="left") - 1
    length = i1 - i0 + 2  # the grid points in [start, end) and the end
    offset = np.cumsum(length) - length
    group = np.repeat(np.arange(k.size), length)
    within = np.arange(group.size) - offset[group]
    at_end = within == length[group] - 1
    g_idx = np.minimum(i0[group] + within, grid.size - 1)
    t = np.where(at_end, iv.end[k][group], grid[g_idx]) - iv.start[k][group]
    c = np.where(at_end, c_end[k][group], conc[iv.subject[k][group], g_idx])
    return k, grouped_nca(group, t, c, k.size, method)




def regimen_metrics(iv: DosingIntervals, rows: np.ndarray, auc: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accumulation ratio AUCτ/AUCτ of the subject's first interval, at steady state,
    Dose/AUCτ — CL/F where at steady state) for the intervals ``rows`` (sorted) with
    ``auc``. Steady state: a dose at the start with SS 1/2, or AUCτ within ``STEADY_RTOL`` of
    the subject's interval just before with the same dose and τ (:mod:`.nca_intervals`)."""
    sub, rank = iv.subject[rows], iv.rank[rows]
    tau, dose = (iv.end - iv.start)[rows], iv.dose[rows]
    # relative to the subject's first interval among ``rows``
    first_auc = np.full(int(sub.max()) + 1 if sub.size else 0, np.nan)
    is_first = np.r_[True, sub[1:] != sub[:-1]] if sub.size else np.zeros(0, bool)
    first_auc[sub[is_first]] = auc[is_first]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = auc / first_auc[sub]
        prev = np.r_[False, (sub[1:] == sub[:-1]) & (rank[1:] == rank[:-1] + 1)
                     & (dose[1:] == dose[:-1]) & np.isclose(tau[1:], tau[:-1], rtol=1e-9)
                     & (np.abs(np.diff(auc)) <= STEADY_RTOL * auc[1:])]
    at_ss = (iv.steady[rows] | prev) & np.isfinite(auc) & (auc > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        clearance = dose / auc
    return ratio, at_ss, clearance
