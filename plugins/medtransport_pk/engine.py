"""The PK event engine: a :class:`~medtransport_pk.records.RecordTable` of many subjects, run
in one pass with NONMEM's event semantics, a prediction at every record and books that close
at every record.

Public entry point
------------------
``simulate(table, kinetics, *, compartments, central, default_dose, grid=None,
before=None, check_steady_state=True, validated=False, concentrations=None) -> EngineResult``

- ``table``: a :class:`RecordTable` (one or more subjects; a subject is a contiguous block of
  equal ``ID``, as in NONMEM). Times in h, amounts in ``table.amount_unit``.
- ``kinetics``: a :class:`Kinetics` — per subject, piecewise-constant linear kinetics over
  ``segments`` (rate matrix, elimination, F, ALAG, modelled rate and duration, central volume
  per compartment). A subject has at least one segment; a segment starting at ``start`` applies
  to every propagation after that time and to every record at or after it. **Hook:** a time-
  limited process (a dialysis session adding a clearance on central from t1 to t2) is two more
  segments of that subject, starting at t1 (rate matrix with the extra clearance) and at t2
  (without it), whose ``dialysis`` row carries that clearance over V so the engine books it
  as ``dialysate`` (:func:`with_clearance` builds those segments).
- ``compartments``: the body compartment names in NONMEM's CMT order (``("depot", "central",
  "peripheral")``); ``central`` is the index of the observed compartment; ``default_dose`` the
  index a dose record with CMT 0 goes to (depot with first-order absorption, else central).
- ``grid``: optional output times (h), the same for every subject; times within rounding
  (1e-9 relative) of any event time are snapped to it.
- ``before``: optional (subject indices, times): the amounts just before anything happens at
  those times (a trough before a dose), in ``EngineResult.before_amounts``.
- ``concentrations``: optional (compartment indices (C,), volumes (P, C) in L): further
  concentrations on the grid, written with it (``EngineResult.grid_concentrations``).
- ``Kinetics.nocb``: NONMEM's reading of time-varying covariates (see :class:`Kinetics`).
- ``Kinetics.vmax``/``Kinetics.km``: saturable elimination from central; the same event list
  is then propagated by :mod:`medtransport_pk.saturable` (an ODE solve between events, SS 1 by
  repeated dosing, SS 2 refused).

``validate(table, n_cmt, kinetics, default_dose)`` refuses undefined records with
:class:`RecordError` (``problems``: (where, message) pairs naming the record, e.g.
``data row 17 (ID 3, TIME 24 h): ADDL needs II > 0``).

:class:`EngineResult` holds, per record, the amounts, the central concentration (NONMEM's PRED)
and the cumulative ledger terms of that record's subject; per subject and grid time the same
on the grid. ``EngineResult.record_residual()`` is the books' residual at every record.

Semantics (NONMEM Users Guide VI, "PREDPP"; the same rules in mrgsolve's and rxode2's docs)
-----------------------------------------------------------------------------------------
- EVID 0 observation, 1 dose, 2 other (an output), 3 reset (body amounts to zero; running
  infusions, pending additional and lagged doses of earlier records cancelled), 4 reset then
  dose. The drug a reset removes is booked as the ledger term ``reset``.
- A dose of AMT into compartment CMT with bioavailability F and lag ALAG of that compartment
  (taken from the segment in force at the dose record; additional doses keep them):
  RATE 0: a bolus F·AMT at t + ALAG; RATE > 0: an infusion at RATE for F·AMT/RATE h (F changes
  the duration); RATE −1: at the modelled rate R for F·AMT/R h; RATE −2: over the modelled
  duration D at F·AMT/D (F changes the rate). (1 − F)·AMT is booked ``unabsorbed`` when the
  dose starts. ADDL more doses follow every II.
- SS 1: reset, then the body is put in the steady state of the regimen "this dose every II"
  just before the record's own dose (which is then given as usual); SS 2: the same steady state
  added to the current state. Doses of the infinite regimen that started before the record but
  still act after it — infusions longer than II, and with ALAG ≥ II lagged doses not yet given —
  continue after it. AMT 0, RATE > 0, II 0, SS 1 is a constant infusion at steady state that
  runs until the next reset. The steady-state content enters the books as a declared amount
  (``steady_state``), like an initial amount.
- Order at one time: doses implied by earlier records (additional or lagged doses, infusion
  starts and ends) act first; then the records in data order, each as reset → steady state →
  its own unlagged dose → its output. So the prediction on a dose record includes a bolus given
  at that time, and a grid output at a dose time is after the dose.

Solution: for each segment, the body rate matrix K = V·diag(λ)·V⁻¹ is diagonalised once; an
interval Δ with constant input r then maps z = V⁻¹A by z ← e^{λΔ}z + Δ·φ₁(λΔ)·V⁻¹r, and the
drug eliminated over it is e·∫A = e·V·(Δφ₁(λΔ)·z + Δ²φ₂(λΔ)·V⁻¹r) with φ₁(x) = (eˣ − 1)/x,
φ₂(x) = (eˣ − 1 − x)/x² — exact, O(n²) per event, run for every subject in one call: compiled
with numba, or for a small run (one patient's profile) the same function in plain Python, with
the same bits and without loading numba (:func:`kernel_for`). The grid outputs between two
events, at the step of the one before, run in a tight loop of the same arithmetic (the state
in registers for one to three compartments; :data:`FAST_RUNS`). Segments whose eigenvectors
are ill-conditioned (ka close to an eigenvalue of the disposition) use the augmented matrix
exponential instead (Van Loan 1978).
The eliminated amount is integrated from the central amount, not taken as the balance, so

    Σ body(t) = steady_state(t) + given(t) − unabsorbed(t) − eliminated(t) − reset(t)
                − dialysate(t)

is a real check at every record (``given`` counts AMT as a bolus is given, and as an infusion
runs plus its (1 − F)·AMT at its start). ``dialysate`` = ∫ d·A dt, the drug removed by a
time-limited extra clearance (``Kinetics.dialysis``), is integrated the same way.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtransport.numerics import arena
from medtransport.numerics.compartments import expm_batched
from medtransport_pk.records import RecordTable

__all__ = ["EngineResult", "Kinetics", "RecordError", "infusion_rate_and_duration", "simulate",
           "subject_blocks", "with_clearance"]

# event kinds
_CHECK, _SEG, _BOLUS, _RATE, _RESET, _SS, _OUT_REC = range(7)
# phases at one time: a steady-state check output sees the state before anything happens at
# that time; parameter switches; doses implied by earlier records; the records in data order
# (grid outputs come after all of them, merged in by the kernel)
_PH_CHECK, _PH_SEG, _PH_IMPLIED, _PH_RECORD = range(4)
# sub-order inside one record
_SUB_RESET, _SUB_SS, _SUB_DOSE, _SUB_OUT = range(4)
#: ledger columns of the engine's outputs
LEDGER_TERMS = ("given", "unabsorbed", "eliminated", "reset", "steady_state", "dialysate")
#: a grid time this close (relative, in h) to an event time is that event time
SNAP_RTOL = 1e-9
#: two steps of the event loop this close (relative) share their e^{λΔ} and φ's
STEP_RTOL = 1e-12
#: let the event loop run the grid outputs between two events in a tight loop (the same
#: arithmetic, so the same bits; off only to test that)
FAST_RUNS = True


class RecordError(ValueError):
    """A record the engine cannot run, with the problems as (where, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{w}: {m}" for w, m in problems))


@dataclass
class Kinetics:
    """Piecewise-constant linear kinetics of every subject, one row per segment.

    Segments are ordered by subject (its index in :func:`subject_blocks`) and start time; the
    first segment of each subject starts at −inf. Over n body compartments (NONMEM's CMT
    order): ``kmat`` (M, n, n) in 1/h with dA/dt = K·A + r and off-diagonal entries ≥ 0;
    ``elimination`` (M, n) the rate constants to the eliminated sink (so that each column of K
    sums to −elimination); ``bioavailability``, ``lag`` (h), ``infusion_rate`` (amount/h, NaN
    if not modelled) and ``infusion_duration`` (h, NaN) per compartment; ``volume`` (M,) the
    central volume in L; ``dialysis`` (M, n) or None the rate constants to the dialysate sink
    (a dialysis session's or CRRT's clearance over V on central; each column of K then sums
    to −(elimination + dialysis)). ``vmax``/``km``: an optional saturable route from
    central (the event list is the same; :mod:`medtransport_pk.saturable` propagates it).

    ``nocb`` (NONMEM's reading of a data set's time-varying covariates): a segment starting
    at t_j holds the values of the *next* record, so a record at t_j still uses the segment in
    force before t_j for its own dose (F, ALAG, modelled rate and duration) and its prediction
    (volume), and the switch happens after the records at t_j. Without it (LOCF) a record uses
    the segment starting at its own time.
    """

    subject: np.ndarray
    start: np.ndarray
    kmat: np.ndarray
    elimination: np.ndarray
    bioavailability: np.ndarray
    lag: np.ndarray
    infusion_rate: np.ndarray
    infusion_duration: np.ndarray
    volume: np.ndarray
    nocb: bool = False
    dialysis: np.ndarray | None = None
    #: saturable elimination from central, Vmax·C/(Km + C), per segment: Vmax (M,) in amount/h
    #: and Km (M,) in amount/L, or None (linear kinetics); see :mod:`medtransport_pk.saturable`
    vmax: np.ndarray | None = None
    km: np.ndarray | None = None

    @classmethod
    def constant(cls, n_subjects: int, kmat: np.ndarray, elimination: np.ndarray,
                 volume: np.ndarray | float, *, bioavailability: np.ndarray | None = None,
                 lag: np.ndarray | None = None, infusion_rate: np.ndarray | None = None,
                 infusion_duration: np.ndarray | None = None) -> Kinetics:
        """One segment per subject; every array broadcast to (P, …)."""
        kmat = np.asarray(kmat, float)
        n = kmat.shape[-1]
        p = n_subjects

        def per(x: np.ndarray | float | None, fill: float, shape: tuple[int, ...]
                ) -> np.ndarray:
            return np.array(np.broadcast_to(fill if x is None else np.asarray(x, float),
                                            shape), dtype=float)

        return cls(np.arange(p), np.full(p, -np.inf), per(kmat, 0.0, (p, n, n)),
                   per(elimination, 0.0, (p, n)), per(bioavailability, 1.0, (p, n)),
                   per(lag, 0.0, (p, n)), per(infusion_rate, np.nan, (p, n)),
                   per(infusion_duration, np.nan, (p, n)), per(volume, 1.0, (p,)))

    @property
    def n(self) -> int:
        return int(self.kmat.shape[-1])


@dataclass
class EngineResult:
    """What :func:`simulate` returns. Ledger arrays have the columns :data:`LEDGER_TERMS`."""

    subject_ids: np.ndarray  # (P,) ID of each subject block
    record_subject: np.ndarray  # (R,) subject index of each record
    record_amounts: np.ndarray  # (R, n) body amounts at each record
    record_concentration: np.ndarray  # (R,) central amount / central volume
    record_ledger: np.ndarray  # (R, 6) cumulative terms of the record's subject
    grid: np.ndarray | None = None  # (G,) output times (h) after snapping
    grid_amounts: np.ndarray | None = None  # (P, G, n)
    grid_concentration: np.ndarray | None = None  # (P, G)
    grid_ledger: np.ndarray | None = None  # (P, G, 6)
    #: (6,) whether each ledger column is not zero at some grid output: a caller need not
    #: scan (P, G) arrays to find the terms a regimen uses (most use neither reset nor SS)
    grid_nonzero: np.ndarray | None = None
    check_ok: np.ndarray | None = None  # steady-state periodicity checks (see check_residual)
    check_residual: np.ndarray | None = None
    before_amounts: np.ndarray | None = None  # (B, n) amounts asked for with ``before``
    #: (P, G, 1 + C): ``grid_concentration`` (its column 0), then the columns asked for with
    #: ``concentrations`` (see :func:`simulate`)
    grid_concentrations: np.ndarray | None = None

    @staticmethod
    def residual(amounts: np.ndarray, ledger: np.ndarray) -> np.ndarray:
        """Σ body − (steady_state + given − unabsorbed − eliminated − reset − dialysate)."""
        dialysate = ledger[..., 5] if ledger.shape[-1] > 5 else 0.0
        return amounts.sum(axis=-1) - (ledger[..., 4] + ledger[..., 0] - ledger[..., 1]
                                       - ledger[..., 2] - ledger[..., 3] - dialysate)

    def record_residual(self) -> np.ndarray:
        return self.residual(self.record_amounts, self.record_ledger)


def subject_blocks(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject index of each record, ID of each subject): a subject is a contiguous block of
    equal IDs (NONMEM starts a new individual whenever ID changes)."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, ids.dtype)
    new = np.empty(ids.size, bool)
    new[0] = True
    new[1:] = ids[1:] != ids[:-1]
    block = np.cumsum(new) - 1
    return block.astype(np.int64), ids[new]


# --------------------------------------------------------------------------- validation

def validate(table: RecordTable, n_cmt: int, kinetics: Kinetics | None = None,
             default_dose: int = 0) -> None:
    """Refuse records the semantics do not define, naming the record and the rule."""
    problems: list[tuple[str, str]] = []
    block, _ = subject_blocks(table.id)

    def bad(mask: np.ndarray, message: str) -> None:
        for i in np.flatnonzero(mask)[:20]:
            problems.append((table.where(int(i)), message))

    evid, amt, rate, ii, addl, ss = table.evid, table.amt, table.rate, table.ii, table.addl, \
        table.ss
    dose = (evid == 1) | (evid == 4)
    bad(~np.isin(evid, [0, 1, 2, 3, 4]), "EVID must be 0, 1, 2, 3 or 4")
    bad(~np.isfinite(table.time), "TIME must be a number")
    same = block[1:] == block[:-1]
    back = np.zeros(len(table), bool)
    back[1:] = same & (table.time[1:] < table.time[:-1])
    bad(back, "TIME goes backwards within the subject")
    bad((table.cmt < 0) | (table.cmt > n_cmt), f"CMT must be 0 (default) or 1–{n_cmt}")
    const = _constant_infusion(table)
    bad(dose & ~const & ~(amt > 0), "a dose (EVID 1 or 4) needs AMT > 0 (or AMT 0 with "
        "RATE > 0, SS 1 and II 0 for a constant infusion)")
    bad(dose & ~((rate == 0) | (rate > 0) | (rate == -1) | (rate == -2)),
        "RATE must be 0, > 0, −1 (modelled rate) or −2 (modelled duration)")
    bad(~np.isin(ss, [0, 1, 2]), "SS must be 0, 1 or 2")
    bad(dose & (ss > 0) & ~const & ~(ii > 0), "SS needs II > 0")
    bad(dose & (addl > 0) & ~(ii > 0), "ADDL needs II > 0")
    bad(addl < 0, "ADDL must be ≥ 0")
    bad(ii < 0, "II must be ≥ 0")
    bad(const & (addl > 0), "a constant infusion (AMT 0, SS 1) takes no ADDL")
    if kinetics is not None:
        seg = _record_segments(table, block, kinetics)
        cmt = np.where(table.cmt > 0, table.cmt - 1, default_dose)
        c = np.clip(cmt, 0, kinetics.n - 1)
        r_mod = kinetics.infusion_rate[seg, c]
        d_mod = kinetics.infusion_duration[seg, c]
        bad(dose & (rate == -1) & ~(r_mod > 0), "RATE −1 needs a positive modelled "
            "infusion_rate for this compartment")
        bad(dose & (rate == -2) & ~(d_mod > 0), "RATE −2 needs a positive modelled "
            "infusion_duration for this compartment")
        if kinetics.vmax is not None:
            bad(dose & (ss == 2), "SS 2 (a steady state added to the current amounts) "
                "presumes superposition, which saturable (Michaelis–Menten) elimination does "
                "not have; use SS 1")
    if problems:
        raise RecordError(problems)


def _constant_infusion(table: RecordTable) -> np.ndarray:
    """AMT 0, RATE > 0 (or −1, modelled), SS 1, II 0: a constant infusion at steady state."""
    dose = (table.evid == 1) | (table.evid == 4)
    return dose & (table.amt == 0) & ((table.rate > 0) | (table.rate == -1)) & \
        (table.ss == 1) & (table.ii == 0)


def _record_segments(table: RecordTable, block: np.ndarray, kin: Kinetics) -> np.ndarray:
    """Index of the segment of each record's own values (see :class:`Kinetics`)."""
    return _segments_at(block, table.time, kin, strict=kin.nocb)


def _segments_at(subject: np.ndarray, time: np.ndarray, kin: Kinetics, *,
                 strict: bool = False) -> np.ndarray:
    """Segment of ``subject`` in force at ``time``: the last one starting at or before it
    (strictly before with ``strict``, i.e. the one in force just before ``time``)."""
    # exact ordering of (subject, time) pairs through integer ranks of the times
    all_t = np.concatenate([kin.start, time])
    _, rank = np.unique(all_t, return_inverse=True)
    n_rank = int(rank.max()) + 2 if rank.size else 1
    seg_key = kin.subject.astype(np.int64) * n_rank + rank[:kin.start.size]
    q_key = subject.astype(np.int64) * n_rank + rank[kin.start.size:]
    order = np.argsort(seg_key, kind="stable")
    pos = np.searchsorted(seg_key[order], q_key, side="left" if strict else "right") - 1
    return order[np.maximum(pos, 0)]


# --------------------------------------------------------------------------- the kernel

#: Events plus grid outputs (over all subjects) × n² up to which :func:`_kernel` runs in plain
#: Python: numba's import and its on-disk kernel cache cost about half a second per process,
#: more than one patient's few hundred events take interpreted.
INTERPRETED_WORK = 20_000


def kernel_for(work: int) -> Any:
    """The event loop for ``work`` = (events + grid outputs) × n²: :func:`_kernel` itself in
    plain Python for small runs, else its compiled twin. The two do the same arithmetic in the
    same order (compiled without fast-math), so they give the same bits (tested)."""
    return _kernel if work <= INTERPRETED_WORK else _compiled_kernel()


@functools.cache
def _compiled_kernel() -> Any:
    import numba  # here, so that a small run never loads it

    return numba.njit(cache=True, nogil=True)(_kernel)


def _kernel(ptr, kind, time, cmt, value, unabs, index, origin, seg0,
            vmat, wmat, lam, ev, dv, use_eig, kmat, elim, dial, volume, ss_table, gtimes,
            central, conc_cmt, conc_vol,
            rec_amt, rec_conc, rec_led, grid_amt, grid_conc, grid_led, check_amt, grid_nonzero,
            fast):
    """Every subject's events in order, merged with the grid times (a grid output at an event
    time comes after the events at that time). The grid's concentrations (P, G, 1 + C): the
    central amount over the volume in force, then the amount of compartment ``conc_cmt[j]``
    over ``conc_vol[p, j]``. Returns how many grid outputs the tight loop of ``fast`` runs
    wrote (a run: outputs between two events, in one segment on the eigen path, at the
    cached step)."""
    n = kmat.shape[1]
    a = np.zeros(n)
    r = np.zeros(n)
    z = np.zeros(n)
    iz = np.zeros(n)
    aug = np.zeros((n + 3, n + 3))
    eye = np.eye(n + 3)
    n_grid = gtimes.size
    n_conc = conc_cmt.size
    # e^{λΔ}, Δφ₁(λΔ), Δ²φ₂(λΔ) of the last step: a grid of equal steps reuses them, sparing
    # two transcendentals per eigenvalue and step. "Equal" within STEP_RTOL: the differences
    # of a minute grid in hours (k/60) differ in their last bits from step to step, which
    # made 58 % of a day's steps recompute; the step Δ' reused for Δ then differs by an ulp
    # or two of the time (a relative error of STEP_RTOL·|λΔ| at most, round-off)
    c_exp = np.zeros(n)
    c_p1 = np.zeros(n)
    c_p2 = np.zeros(n)
    c_dt = -1.0
    c_seg = -1
    # the state in eigen-coordinates, z = V⁻¹A, and w = V⁻¹r, carried from step to step while
    # nothing but time changes (a grid's run between events): each step is then z ← e^{λΔ}z
    # + Δφ₁w, and A = V·z is only read out — one product per step instead of two
    zc = np.zeros(n)
    wc = np.zeros(n)
    z_seg = -1
    n_fast = 0
    # which ledger columns are not zero at some grid output (so that no caller scans them)
    nz0 = nz1 = nz2 = nz3 = nz4 = nz5 = False
    for p in range(ptr.size - 1):
        a[:] = 0.0
        z_seg = -1
        r[:] = 0.0
        given = 0.0
        unab = 0.0
        elim_cum = 0.0
        dial_cum = 0.0
        removed = 0.0
        ssdecl = 0.0
        seg = seg0[p]
        last_reset = -1
        lo = ptr[p]
        hi = ptr[p + 1]
        t = np.inf
        if hi > lo:
            t = time[lo]
        if n_grid > 0 and gtimes[0] < t:
            t = gtimes[0]
        e = lo
        g = 0
        while e < hi or g < n_grid:
            take_grid = g < n_grid and (e >= hi or gtimes[g] < time[e])
            tnext = gtimes[g] if take_grid else time[e]
            dt = tnext - t
            if dt > 0.0:
                rsum = 0.0
                for i in range(n):
                    rsum += r[i]
                if use_eig[seg]:
                    if seg != c_seg or abs(dt - c_dt) > STEP_RTOL * c_dt:
                        for i in range(n):
                            x = lam[seg, i] * dt
                            # φ₁(x) = (eˣ − 1)/x, φ₂(x) = (eˣ − 1 − x)/x², by their series
                            # near 0
                            if abs(x) < 1e-2:
                                p1 = 1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24 + x * (
                                    1.0 / 120 + x / 720))))
                                p2 = 0.5 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x * (
                                    1.0 / 720 + x / 5040))))
                            else:
                                em1 = math.expm1(x)
                                p1 = em1 / x
                                p2 = (em1 - x) / (x * x)
                            c_exp[i] = math.exp(x)
                            c_p1[i] = dt * p1
                            c_p2[i] = dt * dt * p2
                        c_dt = dt
                        c_seg = seg
                    if z_seg != seg:  # A or r changed (an event), or the segment
                        for i in range(n):
                            zi = 0.0
                            wi = 0.0
                            for j in range(n):
                                zi += wmat[seg, i, j] * a[j]
                                wi += wmat[seg, i, j] * r[j]
                            zc[i] = zi
                            wc[i] = wi
                        z_seg = seg
                    for i in range(n):
                        zi = zc[i]
                        wi = wc[i]
                        zc[i] = c_exp[i] * zi + c_p1[i] * wi
                        iz[i] = c_p1[i] * zi + c_p2[i] * wi
                    out = 0.0
                    dout = 0.0
                    for i in range(n):
                        s = 0.0
                        for j in range(n):
                            s += vmat[seg, i, j] * zc[j]
                        a[i] = s
                        out += ev[seg, i] * iz[i]
                        dout += dv[seg, i] * iz[i]
                    elim_cum += out
                    dial_cum += dout
                else:
                    aug[:, :] = 0.0
                    for i in range(n):
                        for j in range(n):
                            aug[i, j] = kmat[seg, i, j] * dt
                        aug[n, i] = elim[seg, i] * dt
                        aug[n + 1, i] = dial[seg, i] * dt
                        aug[i, n + 2] = r[i] * dt
                    # exp(aug): scaling and squaring with an 18th-degree Taylor polynomial
                    # (inline: the plain-Python and the compiled kernel are one function)
                    nrm = 0.0
                    for j in range(n + 3):
                        s = 0.0
                        for i in range(n + 3):
                            s += abs(aug[i, j])
                        nrm = max(nrm, s)
                    sq = 0
                    while nrm > 0.5:
                        nrm *= 0.5
                        sq += 1
                    scaled = aug / (2.0 ** sq)
                    ex = eye + scaled / 18.0
                    for d in range(17, 0, -1):
                        ex = eye + (scaled @ ex) / d
                    for _ in range(sq):
                        ex = ex @ ex
                    out = ex[n, n + 2]
                    dout = ex[n + 1, n + 2]
                    for i in range(n):
                        s = ex[i, n + 2]
                        for j in range(n):
                            s += ex[i, j] * a[j]
                        z[i] = s
                        out += ex[n, i] * a[i]
                        dout += ex[n + 1, i] * a[i]
                    a[:] = z
                    z_seg = -1
                    elim_cum += out
                    dial_cum += dout
                given += rsum * dt
                t = tnext
            if take_grid:
                for i in range(n):
                    grid_amt[p, g, i] = a[i]
                grid_conc[p, g, 0] = a[central] / volume[seg]
                for j in range(n_conc):
                    grid_conc[p, g, 1 + j] = a[conc_cmt[j]] / conc_vol[p, j]
                grid_led[p, g, 0] = given
                nz0 |= given != 0.0
                grid_led[p, g, 2] = elim_cum
                nz2 |= elim_cum != 0.0
                # the rarer terms only once they are not zero (the buffer starts at zero): a
                # plain regimen's run then never touches their pages
                if unab != 0.0:
                    grid_led[p, g, 1] = unab
                    nz1 = True
                if removed != 0.0:
                    grid_led[p, g, 3] = removed
                    nz3 = True
                if ssdecl != 0.0:
                    grid_led[p, g, 4] = ssdecl
                    nz4 = True
                if dial_cum != 0.0:
                    grid_led[p, g, 5] = dial_cum
                    nz5 = True
                g += 1
                if fast and z_seg == seg and c_seg == seg and use_eig[seg]:
                    # a run of grid outputs before the next event, in this segment, with the
                    # cached step: the eigen step above in the same order of operations (so
                    # the same bits), without the event merge and the cache checks of every
                    # step; it stops where the step differs
                    tlim = np.inf
                    if e < hi:
                        tlim = time[e]
                    rsum = 0.0
                    for i in range(n):
                        rsum += r[i]
                    vol_c = volume[seg]
                    # given and eliminated are checked for zero only until they are not
                    track = not (nz0 and nz2)
                    g_run = g
                    if n == 2 and n_conc <= 2:  # a body of two: the state in registers
                        z0 = zc[0]
                        z1 = zc[1]
                        w0 = wc[0]
                        w1 = wc[1]
                        x0 = c_exp[0]
                        x1 = c_exp[1]
                        q0 = c_p1[0]
                        q1 = c_p1[1]
                        s0 = c_p2[0]
                        s1 = c_p2[1]
                        v00 = vmat[seg, 0, 0]
                        v01 = vmat[seg, 0, 1]
                        v10 = vmat[seg, 1, 0]
                        v11 = vmat[seg, 1, 1]
                        e0 = ev[seg, 0]
                        e1 = ev[seg, 1]
                        d0 = dv[seg, 0]
                        d1 = dv[seg, 1]
                        a0 = a[0]
                        a1 = a[1]
                        cmt_1 = conc_cmt[0] if n_conc > 0 else 0
                        vol_1 = conc_vol[p, 0] if n_conc > 0 else 1.0
                        cmt_2 = conc_cmt[1] if n_conc > 1 else 0
                        vol_2 = conc_vol[p, 1] if n_conc > 1 else 1.0
                        while g < n_grid and gtimes[g] < tlim:
                            tnext = gtimes[g]
                            dt = tnext - t
                            if not dt > 0.0 or abs(dt - c_dt) > STEP_RTOL * c_dt:
                                break
                            i0 = q0 * z0 + s0 * w0
                            i1 = q1 * z1 + s1 * w1
                            z0 = x0 * z0 + q0 * w0
                            z1 = x1 * z1 + q1 * w1
                            a0 = 0.0 + v00 * z0 + v01 * z1
                            a1 = 0.0 + v10 * z0 + v11 * z1
                            elim_cum += 0.0 + e0 * i0 + e1 * i1
                            dial_cum += 0.0 + d0 * i0 + d1 * i1
                            given += rsum * dt
                            t = tnext
                            grid_amt[p, g, 0] = a0
                            grid_amt[p, g, 1] = a1
                            grid_conc[p, g, 0] = (a0 if central == 0 else a1) / vol_c
                            if n_conc > 0:
                                grid_conc[p, g, 1] = (a0 if cmt_1 == 0 else a1) / vol_1
                            if n_conc > 1:
                                grid_conc[p, g, 2] = (a0 if cmt_2 == 0 else a1) / vol_2
                            grid_led[p, g, 0] = given
                            grid_led[p, g, 2] = elim_cum
                            if track:
                                nz0 |= given != 0.0
                                nz2 |= elim_cum != 0.0
                            if dial_cum != 0.0:
                                grid_led[p, g, 5] = dial_cum
                                nz5 = True
                            g += 1
                        zc[0] = z0
                        zc[1] = z1
                        a[0] = a0
                        a[1] = a1
                    elif n == 1 and n_conc <= 2:  # one compartment
                        z0 = zc[0]
                        w0 = wc[0]
                        x0 = c_exp[0]
                        q0 = c_p1[0]
                        s0 = c_p2[0]
                        v00 = vmat[seg, 0, 0]
                        e0 = ev[seg, 0]
                        d0 = dv[seg, 0]
                        a0 = a[0]
                        vol_1 = conc_vol[p, 0] if n_conc > 0 else 1.0
                        vol_2 = conc_vol[p, 1] if n_conc > 1 else 1.0
                        while g < n_grid and gtimes[g] < tlim:
                            tnext = gtimes[g]
                            dt = tnext - t
                            if not dt > 0.0 or abs(dt - c_dt) > STEP_RTOL * c_dt:
                                break
                            i0 = q0 * z0 + s0 * w0
                            z0 = x0 * z0 + q0 * w0
                            a0 = 0.0 + v00 * z0
                            elim_cum += 0.0 + e0 * i0
                            dial_cum += 0.0 + d0 * i0
                            given += rsum * dt
                            t = tnext
                            grid_amt[p, g, 0] = a0
                            grid_conc[p, g, 0] = a0 / vol_c
                            if n_conc > 0:
                                grid_conc[p, g, 1] = a0 / vol_1
                            if n_conc > 1:
                                grid_conc[p, g, 2] = a0 / vol_2
                            grid_led[p, g, 0] = given
                            grid_led[p, g, 2] = elim_cum
                            if track:
                                nz0 |= given != 0.0
                                nz2 |= elim_cum != 0.0
                            if dial_cum != 0.0:
                                grid_led[p, g, 5] = dial_cum
                                nz5 = True
                            g += 1
                        zc[0] = z0
                        a[0] = a0
                    elif n == 3 and n_conc <= 2:  # e.g. depot, central, peripheral
                        z0 = zc[0]
                        z1 = zc[1]
                        z2 = zc[2]
                        w0 = wc[0]
                        w1 = wc[1]
                        w2 = wc[2]
                        x0 = c_exp[0]
                        x1 = c_exp[1]
                        x2 = c_exp[2]
                        q0 = c_p1[0]
                        q1 = c_p1[1]
                        q2 = c_p1[2]
                        s0 = c_p2[0]
                        s1 = c_p2[1]
                        s2 = c_p2[2]
                        v00 = vmat[seg, 0, 0]
                        v01 = vmat[seg, 0, 1]
                        v02 = vmat[seg, 0, 2]
                        v10 = vmat[seg, 1, 0]
                        v11 = vmat[seg, 1, 1]
                        v12 = vmat[seg, 1, 2]
                        v20 = vmat[seg, 2, 0]
                        v21 = vmat[seg, 2, 1]
                        v22 = vmat[seg, 2, 2]
                        e0 = ev[seg, 0]
                        e1 = ev[seg, 1]
                        e2 = ev[seg, 2]
                        d0 = dv[seg, 0]
                        d1 = dv[seg, 1]
                        d2 = dv[seg, 2]
                        a0 = a[0]
                        a1 = a[1]
                        a2 = a[2]
                        cmt_1 = conc_cmt[0] if n_conc > 0 else 0
                        vol_1 = conc_vol[p, 0] if n_conc > 0 else 1.0
                        cmt_2 = conc_cmt[1] if n_conc > 1 else 0
                        vol_2 = conc_vol[p, 1] if n_conc > 1 else 1.0
                        while g < n_grid and gtimes[g] < tlim:
                            tnext = gtimes[g]
                            dt = tnext - t
                            if not dt > 0.0 or abs(dt - c_dt) > STEP_RTOL * c_dt:
                                break
                            i0 = q0 * z0 + s0 * w0
                            i1 = q1 * z1 + s1 * w1
                            i2 = q2 * z2 + s2 * w2
                            z0 = x0 * z0 + q0 * w0
                            z1 = x1 * z1 + q1 * w1
                            z2 = x2 * z2 + q2 * w2
                            a0 = 0.0 + v00 * z0 + v01 * z1 + v02 * z2
                            a1 = 0.0 + v10 * z0 + v11 * z1 + v12 * z2
                            a2 = 0.0 + v20 * z0 + v21 * z1 + v22 * z2
                            elim_cum += 0.0 + e0 * i0 + e1 * i1 + e2 * i2
                            dial_cum += 0.0 + d0 * i0 + d1 * i1 + d2 * i2
                            given += rsum * dt
                            t = tnext
                            grid_amt[p, g, 0] = a0
                            grid_amt[p, g, 1] = a1
                            grid_amt[p, g, 2] = a2
                            grid_conc[p, g, 0] = (a0 if central == 0 else (
                                a1 if central == 1 else a2)) / vol_c
                            if n_conc > 0:
                                grid_conc[p, g, 1] = (a0 if cmt_1 == 0 else (
                                    a1 if cmt_1 == 1 else a2)) / vol_1
                            if n_conc > 1:
                                grid_conc[p, g, 2] = (a0 if cmt_2 == 0 else (
                                    a1 if cmt_2 == 1 else a2)) / vol_2
                            grid_led[p, g, 0] = given
                            grid_led[p, g, 2] = elim_cum
                            if track:
                                nz0 |= given != 0.0
                                nz2 |= elim_cum != 0.0
                            if dial_cum != 0.0:
                                grid_led[p, g, 5] = dial_cum
                                nz5 = True
                            g += 1
                        zc[0] = z0
                        zc[1] = z1
                        zc[2] = z2
                        a[0] = a0
                        a[1] = a1
                        a[2] = a2
                    else:
                        while g < n_grid and gtimes[g] < tlim:
                            tnext = gtimes[g]
                            dt = tnext - t
                            if not dt > 0.0 or abs(dt - c_dt) > STEP_RTOL * c_dt:
                                break
                            for i in range(n):
                                zi = zc[i]
                                wi = wc[i]
                                zc[i] = c_exp[i] * zi + c_p1[i] * wi
                                iz[i] = c_p1[i] * zi + c_p2[i] * wi
                            out = 0.0
                            dout = 0.0
                            for i in range(n):
                                s = 0.0
                                for j in range(n):
                                    s += vmat[seg, i, j] * zc[j]
                                a[i] = s
                                out += ev[seg, i] * iz[i]
                                dout += dv[seg, i] * iz[i]
                            elim_cum += out
                            dial_cum += dout
                            given += rsum * dt
                            t = tnext
                            for i in range(n):
                                grid_amt[p, g, i] = a[i]
                            grid_conc[p, g, 0] = a[central] / vol_c
                            for j in range(n_conc):
                                grid_conc[p, g, 1 + j] = a[conc_cmt[j]] / conc_vol[p, j]
                            grid_led[p, g, 0] = given
                            grid_led[p, g, 2] = elim_cum
                            if track:
                                nz0 |= given != 0.0
                                nz2 |= elim_cum != 0.0
                            if dial_cum != 0.0:
                                grid_led[p, g, 5] = dial_cum
                                nz5 = True
                            g += 1
                    # the rarer terms do not change over the run: written after it (only
                    # when not zero, like every output above)
                    if g > g_run:
                        if unab != 0.0:
                            for gg in range(g_run, g):
                                grid_led[p, gg, 1] = unab
                            nz1 = True
                        if removed != 0.0:
                            for gg in range(g_run, g):
                                grid_led[p, gg, 3] = removed
                            nz3 = True
                        if ssdecl != 0.0:
                            for gg in range(g_run, g):
                                grid_led[p, gg, 4] = ssdecl
                            nz4 = True
                    n_fast += g - g_run
                continue
            k = kind[e]
            cancelled = origin[e] >= 0 and origin[e] < last_reset
            if cancelled:
                e += 1
                continue  # cancelled by a later record's reset
            if k >= 2 and k <= 5:  # a dose, an infusion change, a reset, a steady state
                z_seg = -1
            if k == 2:  # bolus
                a[cmt[e]] += value[e]
                unab += unabs[e]
                given += value[e] + unabs[e]
            elif k == 3:  # infusion rate change
                c = cmt[e]
                new = r[c] + value[e]
                if value[e] < 0.0 and abs(new) <= 1e-12 * abs(value[e]):
                    new = 0.0  # an infusion ended: no round-off trickle
                r[c] = new
                unab += unabs[e]
                given += unabs[e]
            elif k == 4:  # reset
                for i in range(n):
                    removed += a[i]
                    a[i] = 0.0
                    r[i] = 0.0
                last_reset = index[e]
            elif k == 5:  # steady state added
                for i in range(n):
                    a[i] += ss_table[index[e], i]
                    ssdecl += ss_table[index[e], i]
            elif k == 1:  # parameter segment
                seg = index[e]
            elif k == 0:  # steady-state check
                check_amt[index[e], :] = a
            elif k == 6:  # record output
                j = index[e]
                rec_amt[j, :] = a
                rec_conc[j] = a[central] / volume[seg]
                rec_led[j, 0] = given
                rec_led[j, 1] = unab
                rec_led[j, 2] = elim_cum
                rec_led[j, 3] = removed
                rec_led[j, 4] = ssdecl
                rec_led[j, 5] = dial_cum
            e += 1
    grid_nonzero[0] = nz0
    grid_nonzero[1] = nz1
    grid_nonzero[2] = nz2
    grid_nonzero[3] = nz3
    grid_nonzero[4] = nz4
    grid_nonzero[5] = nz5
    return n_fast


# --------------------------------------------------------------------------- eigen-systems

#: eigenvector condition number above which a segment uses the matrix exponential
_MAX_COND = 1e5


def _eigensystems(kin: Kinetics) -> tuple[np.ndarray, ...]:
    """V, V⁻¹, λ, e·V, d·V (dialysis) and whether the diagonalisation is trustworthy, per
    segment."""
    kmat = kin.kmat
    m, n = kmat.shape[0], kmat.shape[-1]
    lam_c, v_c = np.linalg.eig(kmat)
    real = np.all(np.abs(lam_c.imag) <= 1e-12 * (np.abs(lam_c.real) + 1e-300), axis=-1)
    lam = lam_c.real
    v = v_c.real
    ok = real.copy()
    w = np.zeros_like(v)
    with np.errstate(all="ignore"):
        cond = np.linalg.cond(v)
    ok &= np.isfinite(cond) & (cond < _MAX_COND)
    if np.any(ok):
        w[ok] = np.linalg.inv(v[ok])
    # the reconstruction must give K back
    recon = np.einsum("mij,mj,mjk->mik", v, lam, w)
    scale = np.max(np.abs(kmat), axis=(1, 2)) + 1e-300
    ok &= np.max(np.abs(recon - kmat), axis=(1, 2)) <= 1e-12 * scale
    ev = np.einsum("mi,mij->mj", kin.elimination, v)
    dv = np.einsum("mi,mij->mj", _dialysis(kin), v)
    v[~ok] = 0.0
    w[~ok] = 0.0
    lam[~ok] = 0.0
    ev[~ok] = 0.0
    dv[~ok] = 0.0
    return (np.ascontiguousarray(v), np.ascontiguousarray(w), np.ascontiguousarray(lam),
            np.ascontiguousarray(ev), np.ascontiguousarray(dv),
            ok if m else np.zeros(0, bool), n)


def _dialysis(kin: Kinetics) -> np.ndarray:
    """The dialysis rate constants (M, n), zeros when there are none."""
    if kin.dialysis is None:
        return np.zeros_like(kin.elimination)
    return np.asarray(kin.dialysis, float)


def with_clearance(kin: Kinetics, central: int, sessions: list[tuple[float, float, float]]
                   ) -> Kinetics:
    """``kin`` with an extra clearance on the central compartment over time-limited sessions
    (t1 h, t2 h, CL L/h), the same for every subject: each session adds the rate constant
    CL/V (V the segment's central volume) to K and to ``dialysis`` from t1 to t2 (t2 may be
    inf, as for continuous therapy). Every breakpoint, old or new, becomes a segment start."""
    if not sessions:
        return kin
    bounds = np.array(sorted({t for s in sessions for t in s[:2] if np.isfinite(t)}))
    sub_rows, start_rows, base_rows = [], [], []
    for p in np.unique(kin.subject):
        own = kin.start[kin.subject == p]
        starts = np.unique(np.concatenate([own, bounds]))
        sub = np.full(starts.size, p, np.int64)
        sub_rows.append(sub)
        start_rows.append(starts)
        base_rows.append(_segments_at(sub, starts, kin))
    start = np.concatenate(start_rows)
    base = np.concatenate(base_rows)
    extra = np.zeros(start.size)
    for t1, t2, cl in sessions:
        extra += np.where((start >= t1) & (start < t2), cl, 0.0)
    k_extra = extra / kin.volume[base]
    kmat = kin.kmat[base].copy()
    kmat[:, central, central] -= k_extra
    dial = _dialysis(kin)[base].copy()
    dial[:, central] += k_extra
    return Kinetics(np.concatenate(sub_rows), start, kmat, kin.elimination[base].copy(),
                    kin.bioavailability[base].copy(), kin.lag[base].copy(),
                    kin.infusion_rate[base].copy(), kin.infusion_duration[base].copy(),
                    kin.volume[base].copy(), nocb=kin.nocb, dialysis=dial,
                    vmax=None if kin.vmax is None else np.asarray(kin.vmax)[base],
                    km=None if kin.km is None else np.asarray(kin.km)[base])


# --------------------------------------------------------------------------- steady state

def _propagators(kmat: np.ndarray, rate: np.ndarray, dt: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(e^{KΔ}, ∫₀^Δ e^{Ks}ds·r) for stacks (S, n, n), (S, n), (S,) by the augmented expm."""
    s, n = rate.shape
    aug = np.zeros((s, n + 1, n + 1))
    aug[:, :n, :n] = kmat
    aug[:, :n, n] = rate
    ex = expm_batched(aug * dt[:, None, None]) if s else np.zeros((0, n + 1, n + 1))
    return ex[:, :n, :n], ex[:, :n, n]


@dataclass
class _SteadyStates:
    table: np.ndarray  # (S, n) body state added at the record
    record: np.ndarray  # (S,) record index
    # continuing infusions: (record, start, stop, cmt, rate)
    runs: list[tuple[int, float, float, int, float]]
    # pending doses of the regimen not yet given: (record, time) — given like the record's own
    pending: list[tuple[int, float]]


def _steady_states(recs: np.ndarray, t: np.ndarray, kmat: np.ndarray | None, c: np.ndarray,
                   amount: np.ndarray, rate: np.ndarray, dur: np.ndarray, tau: np.ndarray,
                   lag: np.ndarray, n: int = 0) -> _SteadyStates:
    """Body state just before record time t of the infinite regimen "dose every τ", doses at
    t + ALAG + jτ for j ≤ 0 (j = 0 is the record's own), counting the doses that started
    before t:

        A_ss = Σ_{k ≥ 0} g(u₀ + kτ),   u₀ = t − (latest start before t) ∈ (0, τ],

    with g(s) = e^{Ks}·b for a bolus b, and for an infusion at rate r over D
    g(s) = Ψ(s)·r (s < D), e^{K(s − D)}·Ψ(D)·r (s ≥ D), Ψ(s) = ∫₀^s e^{Kσ}dσ; the tail of the
    sum is geometric, Σ_{k ≥ k₀} e^{Kkτ} = e^{Kk₀τ}(I − e^{Kτ})⁻¹. A constant infusion
    (τ = 0) gives −K⁻¹·r.

    With ``kmat`` None (nonlinear kinetics, :mod:`medtransport_pk.saturable`) only the
    schedule is made — the continuing infusions and pending doses, which depend on times
    alone — and ``table`` is left zero for the caller to fill (over ``n`` compartments).
    """
    s = recs.size
    n = kmat.shape[-1] if kmat is not None else n
    table = np.zeros((s, n))
    runs: list[tuple[int, float, float, int, float]] = []
    pending: list[tuple[int, float]] = []
    if s == 0:
        return _SteadyStates(table, recs, runs, pending)
    onehot = np.zeros((s, n))
    onehot[np.arange(s), c] = 1.0
    const = tau == 0
    if np.any(const):
        if kmat is not None:
            r = onehot[const] * rate[const, None]
            table[const] = -np.linalg.solve(kmat[const], r[..., None])[..., 0]
        for i in np.flatnonzero(const):
            runs.append((int(recs[i]), float(t[i]), math.inf, int(c[i]), float(rate[i])))
    per = ~const
    if not np.any(per):
        return _SteadyStates(table, recs, runs, pending)
    idx = np.flatnonzero(per)
    ta, lg = tau[idx], lag[idx]
    jstar = np.ceil(-lg / ta) - 1.0  # latest j with t + ALAG + jτ < t
    u0 = -lg - jstar * ta
    u0 = np.where(u0 <= 0, ta, u0)  # rounding guard: u0 ∈ (0, τ]
    bolus = dur[idx] <= 0
    linear = kmat is not None
    if not linear:
        ii = np.flatnonzero(~bolus)
        d, u = dur[idx][ii], u0[ii]
        n_part = np.where(d > u, np.ceil((d - u) / ta[ii] - 1e-12), 0).astype(int)
        _schedule_rest(recs, t, c, rate, idx, ii, d, u, ta, n_part, jstar, lg, runs, pending)
        return _SteadyStates(table, recs, runs, pending)
    km = kmat[idx]
    eye = np.eye(n)
    phi_tau, _ = _propagators(km, np.zeros((idx.size, n)), ta)
    inv = np.linalg.inv(eye - phi_tau)
    out = np.zeros((idx.size, n))
    zero = np.zeros((idx.size, n))
    if np.any(bolus):
        b = onehot[idx][bolus] * amount[idx][bolus, None]
        e_u0, _ = _propagators(km[bolus], zero[bolus], u0[bolus])
        out[bolus] = np.einsum("sij,sjk,sk->si", e_u0, inv[bolus], b)
    inf = ~bolus
    if np.any(inf):
        ii = np.flatnonzero(inf)
        d = dur[idx][ii]
        rr = onehot[idx][ii] * rate[idx][ii, None]
        u = u0[ii]
        n_part = np.where(d > u, np.ceil((d - u) / ta[ii] - 1e-12), 0).astype(int)
        _, psi_d = _propagators(km[ii], rr, d)
        for kk in range(int(n_part.max(initial=0))):
            m = n_part > kk
            _, psi = _propagators(km[ii][m], rr[m], u[m] + kk * ta[ii][m])
            out[ii[m]] += psi
        shift = u + n_part * ta[ii] - d
        e_sh, _ = _propagators(km[ii], zero[ii], np.maximum(shift, 0.0))
        out[ii] += np.einsum("sij,sjk,sk->si", e_sh, inv[ii], psi_d)
    else:
        ii, d, u, n_part = np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, int)
    table[idx] = out
    _schedule_rest(recs, t, c, rate, idx, ii, d, u, ta, n_part, jstar, lg, runs, pending)
    return _SteadyStates(table, recs, runs, pending)


def _schedule_rest(recs: np.ndarray, t: np.ndarray, c: np.ndarray, rate: np.ndarray,
                   idx: np.ndarray, ii: np.ndarray, d: np.ndarray, u: np.ndarray,
                   ta: np.ndarray, n_part: np.ndarray, jstar: np.ndarray, lg: np.ndarray,
                   runs: list[tuple[int, float, float, int, float]],
                   pending: list[tuple[int, float]]) -> None:
    """What of the infinite regimen still acts after the record: the infusions started
    before it and still running, and the lagged doses not yet given."""
    for q, gi in enumerate(idx[ii]):
        for kk in range(int(n_part[q])):
            end = float(t[gi] + d[q] - (u[q] + kk * ta[ii][q]))
            runs.append((int(recs[gi]), float(t[gi]), end, int(c[gi]), float(rate[gi])))
    # lagged doses of the regimen with start in [t, t + ALAG) other than the record's own
    for q, gi in enumerate(idx):
        for j in range(int(jstar[q]) + 1, 0):
            pending.append((int(recs[gi]), float(t[gi] + lg[q] + j * ta[q])))


# --------------------------------------------------------------------------- simulate

def infusion_rate_and_duration(amt: np.ndarray, rate: np.ndarray, f: np.ndarray,
                               modelled_rate: np.ndarray, modelled_duration: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """(rate, duration) of each dose record by NONMEM's rules: F scales the amount, so with
    a given rate (RATE > 0) or a modelled rate (RATE −1) F·AMT lasts F·AMT/rate, and with a
    modelled duration D (RATE −2) it is given at F·AMT/D. Boluses get (0, 0)."""
    r = np.where(rate > 0, rate, np.where(rate == -1, modelled_rate, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(rate == -2, modelled_duration, np.where(r > 0, f * amt / r, 0.0))
        r = np.where(rate == -2, f * amt / d, r)
    return np.nan_to_num(r), np.nan_to_num(d)


def simulate(table: RecordTable, kinetics: Kinetics, *, compartments: tuple[str, ...],
             central: int, default_dose: int, grid: np.ndarray | None = None,
             check_steady_state: bool = True,
             before: tuple[np.ndarray, np.ndarray] | None = None,
             validated: bool = False,
             concentrations: tuple[np.ndarray, np.ndarray] | None = None) -> EngineResult:
    """Run every subject of ``table`` (see the module docstring). ``before`` = (subject
    indices, times) asks for the amounts just before anything happens at those times (a
    trough before a dose), returned as ``EngineResult.before_amounts``. ``concentrations``
    = (compartment indices (C,), volumes (P, C) in L) asks for more concentrations on the
    grid, each compartment's amount over its subject's volume, written by the event loop
    (``EngineResult.grid_concentrations``, after the central one). Raises
    :class:`RecordError` for records the semantics do not define (``validated``: the caller
    has run :func:`validate` on these records and kinetics already)."""
    n = len(compartments)
    if kinetics.n != n:
        raise ValueError(f"kinetics has {kinetics.n} compartments, expected {n}")
    if not validated:
        validate(table, n, kinetics, default_dose)
    if not np.array_equal(np.unique(kinetics.subject), np.arange(np.unique(kinetics.subject).size)):
        raise ValueError("kinetics.subject must number the subjects 0 … P − 1")
    nrec = len(table)
    block, ids = subject_blocks(table.id)
    n_sub = ids.size
    seg_rec = _segments_at(block, table.time, kinetics, strict=kinetics.nocb)
    evid, amt, rate, ii, addl, ss = (table.evid, table.amt, table.rate, table.ii, table.addl,
                                     table.ss)
    cmt = np.where(table.cmt > 0, table.cmt - 1, default_dose).astype(np.int64)
    dose = (evid == 1) | (evid == 4)
    f = kinetics.bioavailability[seg_rec, cmt]
    lag = kinetics.lag[seg_rec, cmt]
    r_dose, d_dose = infusion_rate_and_duration(
        amt, rate, f, kinetics.infusion_rate[seg_rec, cmt],
        kinetics.infusion_duration[seg_rec, cmt])
    const = _constant_infusion(table)
    infusion = dose & ~const & (r_dose > 0)
    ridx = np.arange(nrec)

    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "sub", "time", "phase", "order", "subo", "kind", "cmt", "value", "unabs", "index",
        "origin")}

    def add(sub: np.ndarray, time: np.ndarray, phase: int | np.ndarray, order: np.ndarray,
            subo: int | np.ndarray, kind: int, cm: np.ndarray | int = 0,
            value: np.ndarray | float = 0.0, unabs: np.ndarray | float = 0.0,
            index: np.ndarray | int = 0, origin: np.ndarray | int = -1) -> None:
        size = np.asarray(time).size
        for key, v, dt in (("sub", sub, np.int64), ("time", time, float),
                           ("phase", phase, np.int64), ("order", order, np.int64),
                           ("subo", subo, np.int64), ("kind", kind, np.int64),
                           ("cmt", cm, np.int64), ("value", value, float),
                           ("unabs", unabs, float), ("index", index, np.int64),
                           ("origin", origin, np.int64)):
            cols[key].append(np.broadcast_to(np.asarray(v, dt), (size,)))

    # records: resets (EVID 3/4, SS 1), outputs
    reset = (evid == 3) | (evid == 4) | (dose & (ss == 1))
    add(block[reset], table.time[reset], _PH_RECORD, ridx[reset], _SUB_RESET, _RESET,
        index=4 * ridx[reset])
    add(block, table.time, _PH_RECORD, ridx, _SUB_OUT, _OUT_REC, cm=central, index=ridx)

    # doses, expanded over ADDL (the record's lag and F kept)
    d_idx = np.flatnonzero(dose & ~const)
    n_each = addl[d_idx] + 1
    rec = np.repeat(d_idx, n_each)
    k = np.arange(rec.size) - np.repeat(np.cumsum(n_each) - n_each, n_each)
    start = table.time[rec] + k * ii[rec] + lag[rec]
    own = (k == 0) & (lag[rec] == 0)
    phase = np.where(own, _PH_RECORD, _PH_IMPLIED)
    origin = 4 * rec + 1
    is_inf = infusion[rec]
    bol = ~is_inf
    fr = f[rec]
    add(block[rec[bol]], start[bol], phase[bol], rec[bol], _SUB_DOSE, _BOLUS, cm=cmt[rec[bol]],
        value=fr[bol] * amt[rec[bol]], unabs=(1 - fr[bol]) * amt[rec[bol]],
        origin=origin[bol])
    ri = rec[is_inf]
    add(block[ri], start[is_inf], phase[is_inf], ri, _SUB_DOSE, _RATE, cm=cmt[ri],
        value=r_dose[ri], unabs=(1 - fr[is_inf]) * amt[ri], origin=origin[is_inf])
    add(block[ri], start[is_inf] + d_dose[ri], _PH_IMPLIED, ri, _SUB_DOSE, _RATE, cm=cmt[ri],
        value=-r_dose[ri], origin=origin[is_inf])

    # steady states (with saturable elimination reached by repeated dosing)
    saturable = kinetics.vmax is not None
    ss_rec = np.flatnonzero(dose & (ss > 0))
    ss_args = (cmt[ss_rec], np.where(infusion[ss_rec], 0.0, f[ss_rec] * amt[ss_rec]),
               r_dose[ss_rec], np.where(infusion[ss_rec], d_dose[ss_rec], 0.0), ii[ss_rec],
               lag[ss_rec])
    if not saturable:
        sst = _steady_states(ss_rec, table.time[ss_rec], kinetics.kmat[seg_rec[ss_rec]],
                             *ss_args)
    else:  # the schedule alone; the states by repeated dosing
        from medtransport_pk import saturable as nonlinear

        sst = _steady_states(ss_rec, table.time[ss_rec], None, *ss_args, n=n)
        sst.table = nonlinear.steady_states(kinetics, seg_rec[ss_rec], *ss_args, central,
                                            [table.where(int(i)) for i in ss_rec])
    add(block[ss_rec], table.time[ss_rec], _PH_RECORD, ss_rec, _SUB_SS, _SS,
        index=np.arange(ss_rec.size), origin=4 * ss_rec + 1)
    if sst.runs:
        rr = np.array([x[0] for x in sst.runs])
        t0 = np.array([x[1] for x in sst.runs])
        t1 = np.array([x[2] for x in sst.runs])
        cr = np.array([x[3] for x in sst.runs])
        rv = np.array([x[4] for x in sst.runs])
        add(block[rr], t0, _PH_RECORD, rr, _SUB_SS, _RATE, cm=cr, value=rv, origin=4 * rr + 1)
        fin = np.isfinite(t1)
        add(block[rr[fin]], t1[fin], _PH_IMPLIED, rr[fin], _SUB_DOSE, _RATE, cm=cr[fin],
            value=-rv[fin], origin=4 * rr[fin] + 1)
    if sst.pending:
        pr = np.array([x[0] for x in sst.pending])
        pt = np.array([x[1] for x in sst.pending])
        pb = ~infusion[pr]
        # one landing at the record's own time comes after its reset and steady state
        ph = np.where(pt == table.time[pr], _PH_RECORD, _PH_IMPLIED)
        add(block[pr[pb]], pt[pb], ph[pb], pr[pb], _SUB_DOSE, _BOLUS, cm=cmt[pr[pb]],
            value=f[pr[pb]] * amt[pr[pb]], unabs=(1 - f[pr[pb]]) * amt[pr[pb]],
            origin=4 * pr[pb] + 1)
        pi = pr[~pb]
        add(block[pi], pt[~pb], ph[~pb], pi, _SUB_DOSE, _RATE, cm=cmt[pi], value=r_dose[pi],
            unabs=(1 - f[pi]) * amt[pi], origin=4 * pi + 1)
        add(block[pi], pt[~pb] + d_dose[pi], _PH_IMPLIED, pi, _SUB_DOSE, _RATE, cm=cmt[pi],
            value=-r_dose[pi], origin=4 * pi + 1)

    # steady-state periodicity checks: the state one interval after an SS 1 record, before
    # anything else happens then, must be the steady state again — when nothing from another
    # record interferes in between
    check_rec = np.zeros(0, np.int64)
    if check_steady_state and ss_rec.size:
        periodic = (ss[ss_rec] == 1) & (ii[ss_rec] > 0)
        cand = ss_rec[periodic]
        cand_row = np.flatnonzero(periodic)
        active = dose | (evid == 3)
        keep = []
        for q, i in zip(cand_row, cand, strict=True):
            tend = table.time[i] + ii[i]
            j = i + 1
            clean = True
            while j < nrec and block[j] == block[i] and table.time[j] < tend:
                if active[j]:
                    clean = False
                    break
                j += 1
            if clean:
                keep.append((q, i, tend))
        if keep:
            qs = np.array([x[0] for x in keep])
            ri2 = np.array([x[1] for x in keep])
            te = np.array([x[2] for x in keep])
            # no parameter change within the interval either
            same_seg = (_segments_at(block[ri2], te, kinetics, strict=True) == seg_rec[ri2]) \
                & (_segments_at(block[ri2], table.time[ri2], kinetics) == seg_rec[ri2])
            qs, ri2, te = qs[same_seg], ri2[same_seg], te[same_seg]
            add(block[ri2], te, _PH_CHECK, ri2, 0, _CHECK, index=np.arange(ri2.size))
            check_rec = qs

    n_before = 0
    if before is not None:
        b_sub, b_time = (np.asarray(x) for x in before)
        n_before = b_time.size
        add(b_sub.astype(np.int64), b_time.astype(float), _PH_CHECK,
            np.full(n_before, -1, np.int64), 0, _CHECK,
            index=check_rec.size + np.arange(n_before))

    # parameter segments after the first of each subject
    later = np.isfinite(kinetics.start)
    segs = np.flatnonzero(later)
    # LOCF: a switch precedes the records at its time; NOCB: it follows them
    add(kinetics.subject[segs], kinetics.start[segs], _PH_RECORD if kinetics.nocb else _PH_SEG,
        np.full(segs.size, np.iinfo(np.int64).max if kinetics.nocb else 0), 0,
        _SEG, index=segs)

    # grid outputs, snapped to event times
    g_out = np.zeros(0)
    if grid is not None:
        g = np.sort(np.asarray(grid, float))
        ev_times = np.unique(np.concatenate(cols["time"])) if cols["time"] else np.zeros(0)
        ev_times = ev_times[np.isfinite(ev_times)]
        if ev_times.size:
            pos = np.searchsorted(ev_times, g)
            for cand in (np.maximum(pos - 1, 0), np.minimum(pos, ev_times.size - 1)):
                near = np.abs(ev_times[cand] - g) <= SNAP_RTOL * np.maximum(1.0, np.abs(g))
                g = np.where(near, ev_times[cand], g)
        g_out = g
    cat = {key: np.concatenate(v) if v else np.zeros(0) for key, v in cols.items()}
    order = np.lexsort((cat["subo"], cat["order"], cat["phase"], cat["time"], cat["sub"]))
    ev = {key: np.ascontiguousarray(v[order]) for key, v in cat.items()}
    ptr = np.searchsorted(ev["sub"], np.arange(n_sub + 1))
    # the first segment of each subject
    first_seg = _segments_at(np.arange(n_sub), np.full(n_sub, -np.inf), kinetics)

    rec_amt = np.zeros((nrec, n))
    rec_conc = np.zeros(nrec)
    rec_led = np.zeros((nrec, len(LEDGER_TERMS)))
    gsize = g_out.size
    # every grid output of every subject is written (amounts and concentrations): in a
    # population batch's reused memory (medtransport.numerics.arena), not zeroed pages
    grid_amt = arena.empty((n_sub if gsize else 0, gsize, n))
    if concentrations is None:
        conc_cmt, conc_vol = np.zeros(0, np.int64), np.zeros((n_sub, 0))
    else:
        conc_cmt = np.ascontiguousarray(concentrations[0], np.int64)
        conc_vol = np.ascontiguousarray(np.broadcast_to(concentrations[1],
                                                        (n_sub, conc_cmt.size)), float)
    grid_conc = arena.empty((n_sub if gsize else 0, gsize, 1 + conc_cmt.size))
    # term-major memory behind the (P, T, terms) view: each ledger term is one contiguous
    # block, so the audits read a route (T, P) in one pass instead of gathering every 6th value
    grid_led = np.zeros((len(LEDGER_TERMS), n_sub if gsize else 0, gsize)).transpose(1, 2, 0)
    check_amt = np.zeros((check_rec.size + n_before, n))
    grid_nonzero = np.zeros(len(LEDGER_TERMS), bool)
    if saturable:
        from medtransport_pk import saturable as nonlinear

        nonlinear.run(ptr, ev["kind"], ev["time"], ev["cmt"], ev["value"], ev["unabs"],
                      ev["index"], ev["origin"], first_seg.astype(np.int64), kinetics,
                      np.ascontiguousarray(sst.table), g_out, int(central), rec_amt, rec_conc,
                      rec_led, grid_amt, grid_conc[..., 0], grid_led, check_amt)
        grid_nonzero[:] = np.any(grid_led != 0, axis=(0, 1))
        for j, c in enumerate(conc_cmt):
            np.divide(grid_amt[..., c], conc_vol[:, None, j], out=grid_conc[..., 1 + j])
    else:
        _run_linear(ptr, ev, first_seg, kinetics, sst, g_out, central, conc_cmt, conc_vol,
                    rec_amt, rec_conc, rec_led, grid_amt, grid_conc, grid_led, check_amt,
                    grid_nonzero, n_sub, gsize, n)
    result = EngineResult(ids, block, rec_amt, rec_conc, rec_led,
                          g_out if grid is not None else None, grid_amt if gsize else None,
                          grid_conc[..., 0] if gsize else None,
                          grid_led if gsize else None, grid_nonzero if gsize else None)
    if gsize:
        result.grid_concentrations = grid_conc
    if n_before:
        result.before_amounts = check_amt[check_rec.size:]
    if check_rec.size:
        expect = sst.table[check_rec]
        result.check_residual = check_amt[:check_rec.size] - expect
        result.check_ok = np.abs(result.check_residual).max(axis=1) <= 1e-9 * np.maximum(
            np.abs(expect).sum(axis=1), 1e-300)
    return result


def _run_linear(ptr: np.ndarray, ev: dict[str, np.ndarray], first_seg: np.ndarray,
                kinetics: Kinetics, sst: _SteadyStates, g_out: np.ndarray, central: int,
                conc_cmt: np.ndarray, conc_vol: np.ndarray, rec_amt: np.ndarray,
                rec_conc: np.ndarray, rec_led: np.ndarray,
                grid_amt: np.ndarray, grid_conc: np.ndarray, grid_led: np.ndarray,
                check_amt: np.ndarray, grid_nonzero: np.ndarray, n_sub: int, gsize: int,
                n: int) -> None:
    """The linear kernel over the sorted events (exact propagation by eigen-systems)."""
    vmat, wmat, lam, evec, dvec, use_eig, _ = _eigensystems(kinetics)
    work = (ev["kind"].size + n_sub * gsize) * n * n
    kernel_for(work)(ptr, ev["kind"], ev["time"], ev["cmt"], ev["value"], ev["unabs"],
                     ev["index"], ev["origin"], first_seg.astype(np.int64), vmat, wmat, lam,
                     evec, dvec, use_eig, np.ascontiguousarray(kinetics.kmat, float),
                     np.ascontiguousarray(kinetics.elimination, float),
                     np.ascontiguousarray(_dialysis(kinetics)),
                     np.ascontiguousarray(kinetics.volume, float),
                     np.ascontiguousarray(sst.table), g_out, int(central), conc_cmt, conc_vol,
                     rec_amt, rec_conc, rec_led, grid_amt, grid_conc, grid_led, check_amt,
                     grid_nonzero, FAST_RUNS)
