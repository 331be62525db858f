"""The PK event engine with saturable (Michaelis–Menten) elimination from central.

The records, their order and every NONMEM rule (EVID 0–4, doses into any compartment, ALAG, F,
given and modelled RATE/duration, ADDL/II, SS 1, the order of events at one time, output times
snapped to dose times) are the linear engine's (:func:`medtransport_pk.engine.simulate` builds
the one event list); only the propagation between two event times differs. Over an interval
with constant input r the body amounts follow

    dA/dt      = K·A + r − e_c·Vmax·C/(Km + C),      C = A_c/V
    dA_elim/dt = e·A + Vmax·C/(Km + C),              dA_dial/dt = d·A

(K the segment's linear rate matrix, e its elimination row, d its dialysis row, e_c the
central compartment), solved by ``scipy.integrate.solve_ivp`` (DOP853, the explicit
Runge–Kutta method of order 8, rtol 1e-10, absolute tolerance 1e-14 of the subject's drug)
restarted at every event, so doses are exact. A Runge–Kutta method keeps the linear invariant
Σ body + eliminated + dialysate − ∫r to round-off, so the books close at every record as for
the linear engine. (DOP853 needed ~15× fewer right-hand-side evaluations than Radau on these
mildly stiff systems at this tolerance: 398 against 6518 for one 8-h interval.) Subjects whose
events fall at the same times (a population given one regimen) are one stacked system; others
are solved one by one.

Steady state (SS 1) of a nonlinear model has no closed form; as NONMEM does, it is reached by
dosing: starting from empty compartments, the regimen "this dose every II" (with its lag, F,
infusion duration, overlapping infusions) is applied interval after interval until the state
at the start of an interval has converged: the change over one more interval, and that change
extrapolated geometrically to the limit (δ·ρ/(1 − ρ), ρ the observed contraction), are below
:data:`SS_RTOL` of the body content (each interval solved at rtol 1e-12). A constant infusion
at steady state (AMT 0, II 0) is the same with a continuous input. Refused, naming the record:
SS 2 (a steady state *added* to the current state presumes superposition), a regimen whose
input reaches Vmax without a linear route out (no steady state exists), and one not converged
within :data:`SS_MAX_INTERVALS` intervals.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

__all__ = ["RTOL", "SS_MAX_INTERVALS", "SS_RTOL", "run", "steady_states"]

#: relative tolerance of every solve between events
RTOL = 1e-10
#: a steady state has converged when its extrapolated distance to the limit is below this
#: fraction of the body content
SS_RTOL = 1e-10
#: intervals of repeated dosing after which a steady state that has not converged is refused
SS_MAX_INTERVALS = 5000


class _System:
    """The stacked ODE of ``P`` subjects, each (n body + eliminated + dialysate) states."""

    def __init__(self, kmat: np.ndarray, elim: np.ndarray, dial: np.ndarray,
                 volume: np.ndarray, vmax: np.ndarray, km: np.ndarray, central: int) -> None:
        self.kmat, self.elim, self.dial = kmat, elim, dial
        self.volume, self.vmax, self.km, self.c = volume, vmax, km, central
        self.p, self.n = kmat.shape[0], kmat.shape[-1]
        self.m = self.n + 2


def _rhs(system: _System, y: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """dy/dt of the stacked system (module level: a seam for tests of broken books)."""
    s = system
    y = y.reshape(s.p, s.m)
    a = y[:, :s.n]
    dy = np.empty((s.p, s.m))
    dy[:, :s.n] = np.einsum("pij,pj->pi", s.kmat, a) + rate
    conc = np.maximum(a[:, s.c], 0.0) / s.volume
    flux = s.vmax * conc / (s.km + conc)
    dy[:, s.c] -= flux
    dy[:, s.n] = np.einsum("pi,pi->p", s.elim, a) + flux
    dy[:, s.n + 1] = np.einsum("pi,pi->p", s.dial, a)
    return dy.reshape(-1)


def _advance(system: _System, y: np.ndarray, rate: np.ndarray, t0: float, t1: float,
             atol: np.ndarray, rtol: float = RTOL) -> np.ndarray:
    """The state (P, m) after [t0, t1] at constant input ``rate`` (P, n)."""
    from scipy.integrate import solve_ivp

    sol = solve_ivp(lambda _t, x: _rhs(system, x, rate), (t0, t1), y.reshape(-1),
                    method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed on [{t0:g} h, {t1:g} h]: {sol.message}")
    return np.asarray(sol.y[:, -1]).reshape(system.p, system.m)


def _dialysis(kin: Any) -> np.ndarray:
    return np.zeros_like(kin.elimination) if kin.dialysis is None else np.asarray(
        kin.dialysis, float)


def _system(kin: Any, seg: np.ndarray, central: int) -> _System:
    return _System(kin.kmat[seg], kin.elimination[seg], _dialysis(kin)[seg], kin.volume[seg],
                   np.asarray(kin.vmax, float)[seg], np.asarray(kin.km, float)[seg], central)


# --------------------------------------------------------------------------- steady state

def _pieces(tau: float, lag: float, dur: float) -> list[tuple[float, float, int]]:
    """One interval [0, τ) of the periodic input of infusions of length ``dur`` started at
    phase ALAG mod τ every τ: (start, end, number running) — overlapping ones counted."""
    phase = math.fmod(lag, tau)
    cuts = sorted({0.0, tau, phase, math.fmod(phase + dur, tau)})
    out = []
    for lo, hi in itertools.pairwise(cuts):
        if hi <= lo:
            continue
        x = ((lo + hi) / 2 - tau - lag) / tau  # the window ends at the record's time
        out.append((lo, hi, int(math.floor(x) - math.floor(x - dur / tau))))
    return out


def steady_states(kin: Any, seg: np.ndarray, cmt: np.ndarray, amount: np.ndarray,
                  rate: np.ndarray, dur: np.ndarray, tau: np.ndarray, lag: np.ndarray,
                  central: int, where: list[str]) -> np.ndarray:
    """Body state just before each SS 1 record's time (before its own dose) of the regimen
    "dose every τ" reached by repeated dosing (see the module docstring). ``amount`` is F·AMT
    for boluses (0 for infusions), ``rate``/``dur`` the infusion's, τ = 0 a constant infusion.
    Raises :class:`~medtransport_pk.engine.RecordError` naming the record when there is none.
    """
    from medtransport_pk.engine import RecordError

    n = kin.n
    table = np.zeros((seg.size, n))
    problems: list[tuple[str, str]] = []
    for i in range(seg.size):
        system = _system(kin, seg[i:i + 1], central)
        infusion = dur[i] > 0 or tau[i] == 0
        period = float(tau[i]) if tau[i] > 0 else 24.0  # a constant infusion: any period
        per_interval = rate[i] * (dur[i] if tau[i] > 0 else period) if infusion else amount[i]
        linear_out = float(system.elim.sum() + system.dial.sum())
        if linear_out == 0.0 and per_interval / period >= float(system.vmax[0]):
            problems.append((where[i], f"no steady state: the regimen gives "
                             f"{per_interval / period:.6g} per h on average, at least Vmax "
                             f"({float(system.vmax[0]):.6g} per h) with no linear route out"))
            continue
        scale = max(per_interval, 1e-300)
        atol = np.full(system.m, 1e-15 * scale)
        if infusion:
            pieces = ([(0.0, period, 1)] if tau[i] == 0 else
                      _pieces(float(tau[i]), float(lag[i]), float(dur[i])))
        else:
            phase = math.fmod(float(lag[i]), period)
        y = np.zeros((1, system.m))
        prev_step = math.inf
        done = False
        for _ in range(SS_MAX_INTERVALS):
            start = y.copy()
            start[:, n:] = 0.0
            if infusion:
                x = start
                for lo, hi, count in pieces:
                    r = np.zeros((1, n))
                    r[0, cmt[i]] = count * rate[i]
                    x = _advance(system, x, r, lo, hi, atol, 1e-12)
            else:
                zero = np.zeros((1, n))
                x = start
                if phase > 0:
                    x = _advance(system, x, zero, 0.0, phase, atol, 1e-12)
                x = x.copy()
                x[0, cmt[i]] += amount[i]
                x = _advance(system, x, zero, phase, period, atol, 1e-12)
            step = float(np.max(np.abs(x[0, :n] - start[0, :n])))
            content = max(float(np.sum(np.abs(x[0, :n]))), scale)
            rho = min(step / prev_step, 0.999999) if prev_step > 0 else 0.0
            y, prev_step = x, step
            if step <= SS_RTOL * content and step * rho / (1.0 - rho) <= SS_RTOL * content:
                done = True
                break
            if step == 0.0:
                done = True
                break
        if not done:
            problems.append((where[i], f"no steady state reached within {SS_MAX_INTERVALS} "
                             f"intervals of repeated dosing (saturable elimination)"))
            continue
        table[i] = y[0, :n]
    if problems:
        raise RecordError(problems)
    return table


# --------------------------------------------------------------------------- the event loop

def run(ptr: np.ndarray, kind: np.ndarray, time: np.ndarray, cmt: np.ndarray,
        value: np.ndarray, unabs: np.ndarray, index: np.ndarray, origin: np.ndarray,
        seg0: np.ndarray, kin: Any, ss_table: np.ndarray, gtimes: np.ndarray, central: int,
        rec_amt: np.ndarray, rec_conc: np.ndarray, rec_led: np.ndarray, grid_amt: np.ndarray,
        grid_conc: np.ndarray, grid_led: np.ndarray, check_amt: np.ndarray) -> None:
    """The engine's sorted events of every subject (as its linear kernel takes them), with
    saturable propagation; fills the output arrays the same way."""
    groups: dict[bytes, list[int]] = {}
    for p in range(ptr.size - 1):
        key = np.unique(time[ptr[p]:ptr[p + 1]]).tobytes()
        groups.setdefault(key, []).append(p)
    for members in groups.values():
        _run_group(np.asarray(members, np.int64), ptr, kind, time, cmt, value, unabs, index,
                   origin, seg0, kin, ss_table, gtimes, central, rec_amt, rec_conc, rec_led,
                   grid_amt, grid_conc, grid_led, check_amt)


def _run_group(members: np.ndarray, ptr: np.ndarray, kind: np.ndarray, time: np.ndarray,
               cmt: np.ndarray, value: np.ndarray, unabs: np.ndarray, index: np.ndarray,
               origin: np.ndarray, seg0: np.ndarray, kin: Any, ss_table: np.ndarray,
               gtimes: np.ndarray, central: int, rec_amt: np.ndarray, rec_conc: np.ndarray,
               rec_led: np.ndarray, grid_amt: np.ndarray, grid_conc: np.ndarray,
               grid_led: np.ndarray, check_amt: np.ndarray) -> None:
    n = kin.n
    p_count = members.size
    m = n + 2
    lo, hi = ptr[members].copy(), ptr[members + 1]
    ev_times = np.unique(time[lo[0]:hi[0]])
    ev_times = ev_times[np.isfinite(ev_times)]
    all_t = np.union1d(ev_times, gtimes)
    if all_t.size == 0:
        return
    # the absolute tolerance follows each subject's drug
    span = float(all_t[-1] - all_t[0])
    scale = np.empty(p_count)
    for q, p in enumerate(members):
        sl = slice(ptr[p], ptr[p + 1])
        k, v, u = kind[sl], value[sl], unabs[sl]
        scale[q] = (np.abs(v[k == 2]).sum() + np.abs(u).sum()
                    + np.clip(v[k == 3], 0.0, None).sum() * max(span, 1.0)
                    + np.abs(ss_table[index[sl][k == 5]]).sum() + 1e-300)
    atol = np.repeat(1e-14 * scale, m)
    y = np.zeros((p_count, m))
    r = np.zeros((p_count, n))
    seg = seg0[members].copy()
    given, unab, removed, ssdecl = (np.zeros(p_count) for _ in range(4))
    last_reset = np.full(p_count, -1, np.int64)
    system = _system(kin, seg, central)
    g = 0
    t = float(all_t[0])
    for tk in all_t:
        tk = float(tk)
        if tk > t:
            if np.any(y[:, :n] != 0.0) or np.any(r != 0.0):
                y = _advance(system, y, r, t, tk, atol)
            given += r.sum(axis=1) * (tk - t)
            t = tk
        changed = False
        for q in range(p_count):
            e = lo[q]
            while e < hi[q] and time[e] == tk:
                k = kind[e]
                if origin[e] >= 0 and origin[e] < last_reset[q]:
                    e += 1
                    continue  # cancelled by a later record's reset
                if k == 2:  # bolus
                    y[q, cmt[e]] += value[e]
                    unab[q] += unabs[e]
                    given[q] += value[e] + unabs[e]
                elif k == 3:  # infusion rate change
                    c = cmt[e]
                    new = r[q, c] + value[e]
                    if value[e] < 0.0 and abs(new) <= 1e-12 * abs(value[e]):
                        new = 0.0  # an infusion ended: no round-off trickle
                    r[q, c] = new
                    unab[q] += unabs[e]
                    given[q] += unabs[e]
                elif k == 4:  # reset
                    removed[q] += y[q, :n].sum()
                    y[q, :n] = 0.0
                    r[q] = 0.0
                    last_reset[q] = index[e]
                elif k == 5:  # steady state added
                    y[q, :n] += ss_table[index[e]]
                    ssdecl[q] += ss_table[index[e]].sum()
                elif k == 1:  # parameter segment
                    seg[q] = index[e]
                    changed = True
                elif k == 0:  # steady-state check or a trough asked for
                    check_amt[index[e]] = y[q, :n]
                elif k == 6:  # record output
                    j = index[e]
                    rec_amt[j] = y[q, :n]
                    rec_conc[j] = y[q, central] / kin.volume[seg[q]]
                    rec_led[j] = (given[q], unab[q], y[q, n], removed[q], ssdecl[q],
                                  y[q, n + 1])
                e += 1
            lo[q] = e
        if changed:
            system = _system(kin, seg, central)
        while g < gtimes.size and gtimes[g] == tk:
            grid_amt[members, g] = y[:, :n]
            grid_conc[members, g] = y[:, central] / kin.volume[seg]
            grid_led[members, g] = np.stack([given, unab, y[:, n], removed, ssdecl,
                                             y[:, n + 1]], axis=1)
            g += 1
