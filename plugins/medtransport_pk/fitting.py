"""The PK models as an estimation problem: records in, a batched prediction function out.

``estimation_problem(scenario, table)`` turns a scenario (model, typical parameters,
``population.variability``, ``residual_error``) and a :class:`RecordTable` into the core's
:class:`~medtransport.estimation.problem.Problem`. Its ``predict(phi, subjects)`` runs the
chosen subjects — each as often as the estimator asks, with its own individual parameters —
through the PK event engine (:mod:`medtransport_pk.engine`) in one batched pass, and audits
that pass's books at every record before any prediction leaves it:

    Σ body(t) = steady_state(t) + given(t) − unabsorbed(t) − eliminated(t) − reset(t)

to 1e-9 of the largest amount given (the engine is exact). A failed audit raises
:class:`AuditFailure`.

Estimated structural parameters (θ, log-normal η where ``population.variability`` names them):
clearance, central_volume, absorption_rate (oral models), intercompartmental_clearance(_2) and
peripheral_volume(_2). Bioavailability and lag time stay as given. Covariates (allometric
weight, renal function, declarative effects) act as a known factor c on θ, from the data (or
from the scenario's ``patient`` when the data carry none). A covariate that changes over a
subject's records changes c from that record on, in the same piecewise-constant segments and
by the same rule (NOCB as NONMEM, or ``covariate_interpolation: locf``) as a run of the data
set (:func:`medtransport_pk.model.covariate_segments`): the predictions of segment s are made
with φ_s = φ_i · c_s / c_i1, where φ_i = θ·c_i1·exp(η_i) are the subject's parameters at its
first record (those the results report).

Levels without doses: when the data set has no dose records, the scenario's ``events`` are
given to every subject (an observation at a dose time is taken before that dose, as a trough).
Refused: a level before the subject's first dose; Michaelis–Menten elimination (the engine is
linear).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pint
from numpy.typing import NDArray

from medtransport.errors import AuditFailure, ScenarioError
from medtransport.estimation.problem import Problem
from medtransport.estimation.residual import ResidualError
from medtransport.scenario import Scenario
from medtransport.units import Q_, ureg
from medtransport_pk.covariates import clearance_factor, inter_clearance_factor, volume_factor
from medtransport_pk.engine import Kinetics, simulate, with_clearance
from medtransport_pk.events import amount_unit
from medtransport_pk.events import records_from_events as events_as_records
from medtransport_pk.extracorporeal import read_sessions
from medtransport_pk.records import RecordTable

__all__ = ["FitData", "estimation_problem", "records_from_events"]

_STRUCTURAL = ("clearance", "central_volume", "absorption_rate", "intercompartmental_clearance",
               "peripheral_volume", "intercompartmental_clearance_2", "peripheral_volume_2")
_UNITS = {"clearance": "L/h", "central_volume": "L", "absorption_rate": "1/h",
          "intercompartmental_clearance": "L/h", "peripheral_volume": "L",
          "intercompartmental_clearance_2": "L/h", "peripheral_volume_2": "L"}
_N_PERIPHERAL = {"pk.one_compartment": 0, "pk.two_compartment": 1, "pk.three_compartment": 2}
#: the books of every engine pass must close to this fraction of the largest amount given
BOOKS_RTOL = 1e-9


@dataclass
class BooksAudit:
    """What the prediction function's audits saw, over every pass."""

    passes: int = 0
    subject_runs: int = 0
    worst: float = 0.0


@dataclass
class FitData:
    """The records behind a problem, to lay results out over ``record``."""

    table: RecordTable
    subject_index: NDArray[np.int64]          # (R,) subject of each record
    obs_position: NDArray[np.int64]           # (R,) column in the problem's arrays, −1 if none
    dv_unit: str
    compartments: tuple[str, ...]
    central: int
    default_dose: int
    books: BooksAudit = field(default_factory=BooksAudit)
    kinetics_of: Any = None                   # phi → Kinetics, one segment per row
    dv_factor: float = 1.0
    bioavailability: Any = 1.0               # F per compartment (array)
    parameter_index: dict[str, int] = field(default_factory=dict)
    #: (phi per subject, subject indices) → Kinetics over the subjects' covariate segments
    segmented: Any = None
    #: (n_subjects, n_parameters) factor from a subject's first-record parameters to those of
    #: its latest covariates (1 when they do not change): a new regimen is for the patient now
    latest: Any = None
    #: dialysis and CRRT sessions of the scenario, (start h, stop h, CL L/h): part of every
    #: prediction of the fit (``segmented``), not of a new steady-state regimen
    sessions: tuple[tuple[float, float, float], ...] = ()

    def dose_route(self) -> tuple[int, float]:
        """(CMT index, infusion duration in h) of the subject's last dose: a new regimen is
        given the same way (duration 0 for a bolus or an oral dose)."""
        dose = np.flatnonzero((self.table.evid == 1) | (self.table.evid == 4))
        if dose.size == 0:
            return self.default_dose, 0.0
        i = int(dose[-1])
        cmt = int(self.table.cmt[i]) - 1 if self.table.cmt[i] > 0 else self.default_dose
        rate, amt = float(self.table.rate[i]), float(self.table.amt[i])
        return cmt, (amt / rate if rate > 0 else 0.0)

    def exposure(self, phi: NDArray[np.float64], interval: float,
                 n_points: int = 241) -> dict[str, NDArray[np.float64]]:
        """Steady-state exposure of a regimen of 1 ``amount_unit`` every ``interval`` h, given
        as the last dose was, for each row of ``phi``: ``auc24`` (DV unit·h, = 24/τ · F·D/CL,
        exact for linear kinetics), ``trough`` (at τ) and ``peak`` (the largest of the
        interval's course, DV unit), and the ``course`` over the interval at ``times``. Doses
        scale all of these linearly. ``phi`` is the (one) subject's parameters at its first
        record; the regimen is for its latest covariates (:attr:`latest`)."""
        if self.sessions:
            # a steady state "every τ" has no place for sessions on their own calendar
            raise ScenarioError([("events", "a recommended regimen is a steady state without "
                                  "dialysis or CRRT sessions; recommending doses around "
                                  "sessions is not available (the fit itself includes them)")])
        if self.latest is not None:
            phi = phi * self.latest[0]
        m = phi.shape[0]
        cmt, duration = self.dose_route()
        z = np.zeros(m)
        table = RecordTable(
            id=np.arange(m), time=z.copy(), evid=np.ones(m, np.int64), amt=np.ones(m),
            cmt=np.full(m, cmt + 1, np.int64),
            rate=np.full(m, 1.0 / duration if duration > 0 else 0.0),
            ii=np.full(m, float(interval)), addl=np.zeros(m, np.int64),
            ss=np.ones(m, np.int64), mdv=np.ones(m, np.int64), dv=np.full(m, np.nan),
            row=np.arange(1, m + 1), amount_unit=self.table.amount_unit,
            dv_unit=self.dv_unit)
        times = np.unique(np.concatenate([np.linspace(0.0, interval, n_points),
                                          [min(duration, interval)]]))
        with np.errstate(all="ignore"):
            result = simulate(table, self.kinetics_of(phi), compartments=self.compartments,
                              central=self.central, default_dose=self.default_dose,
                              grid=times, check_steady_state=False)
        assert result.grid_concentration is not None and result.grid_amounts is not None
        assert result.grid_ledger is not None
        books = np.abs(result.residual(result.grid_amounts, result.grid_ledger))
        if not float(books.max()) <= BOOKS_RTOL * max(float(np.abs(result.grid_ledger).max()),
                                                      1.0):
            raise AuditFailure("the books of a steady-state exposure run do not close")
        conc = result.grid_concentration * self.dv_factor
        f = float(np.asarray(self.bioavailability)[cmt])
        cl = phi[:, self.parameter_index["clearance"]]
        return {"auc24": 24.0 / interval * f * 1.0 / cl * self.dv_factor,
                "trough": conc[:, -1], "peak": conc.max(axis=1), "times": times,
                "course": conc}

    def regimen_events(self, dose: float, interval: float, count: int) -> list[dict[str, Any]]:
        """The YAML events of a regimen given as the last dose was."""
        cmt, duration = self.dose_route()
        amount = f"{dose:g} {self.table.amount_unit}"
        if self.default_dose == 1 and cmt == 0:
            return [{"type": "oral", "amount": amount, "every": f"{interval:g} h",
                     "count": count}]
        if duration > 0:
            return [{"type": "infusion", "amount": amount, "duration": f"{duration:g} h",
                     "every": f"{interval:g} h", "count": count}]
        return [{"type": "bolus", "amount": amount, "every": f"{interval:g} h",
                 "count": count}]

    def grid(self, phi: NDArray[np.float64], times: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each subject's concentration (DV unit) at ``times`` (h) with its parameters
        ``phi`` (one row per subject) — the smooth curves of a plot, books audited too."""
        kinetics = (self.kinetics_of(phi) if self.segmented is None else
                    self.segmented(phi, np.arange(phi.shape[0], dtype=np.int64)))
        with np.errstate(all="ignore"):
            result = simulate(self.table, kinetics, compartments=self.compartments,
                              central=self.central, default_dose=self.default_dose,
                              grid=np.asarray(times, float), check_steady_state=False)
        assert result.grid_amounts is not None and result.grid_ledger is not None
        books = np.abs(result.residual(result.grid_amounts, result.grid_ledger))
        scale = max(float(np.abs(result.grid_ledger).max()), 1e-300)
        if not float(books.max()) <= BOOKS_RTOL * scale:
            raise AuditFailure("the books of the plotted course do not close "
                               f"({float(books.max()) / scale:.3g} of the largest amount)")
        assert result.grid_concentration is not None
        return result.grid_concentration * self.dv_factor


def _blocks(ids: NDArray[Any]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[Any]]:
    """Start and stop of each contiguous subject block, and its ID."""
    new = np.empty(ids.size, bool)
    new[0] = True
    new[1:] = ids[1:] != ids[:-1]
    start = np.flatnonzero(new)
    stop = np.append(start[1:], ids.size)
    return start, stop, ids[start]


def records_from_events(scenario: Scenario, levels: RecordTable) -> RecordTable:
    """The scenario's dosing ``events`` given to every subject of a levels-only table."""
    unit = amount_unit(scenario)
    molar = scenario.parameters.get("molar_mass")
    oral = "absorption_rate" in scenario.parameters
    compartments = (("depot",) if oral else ()) + ("central",) + \
        ("peripheral", "peripheral_2")[:_N_PERIPHERAL.get(scenario.model, 0)]
    # the one reading of the events (rates, durations, steady states, resets) the run uses
    ev = events_as_records(scenario, unit, None if molar is None else Q_(molar), compartments)
    doses = [(ev.time[i], ev.amt[i], ev.cmt[i], ev.rate[i], ev.ii[i], ev.addl[i], ev.ss[i],
              ev.evid[i]) for i in range(len(ev))]
    if not doses:
        raise ScenarioError([("events", "the data set has no dose records and the scenario "
                                        "no events: give the doses in one or the other")])
    cols: dict[str, list[Any]] = {k: [] for k in ("id", "time", "evid", "amt", "cmt", "rate",
                                                  "ii", "addl", "ss", "mdv", "dv", "row",
                                                  "order")}
    start, stop, ids = _blocks(levels.id)
    for a, b, sid in zip(start, stop, ids, strict=True):
        for t, amt, cmt, rate, ii, addl, ss, evid in doses:
            for k, v in zip(("id", "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss",
                             "mdv", "dv", "row", "order"),
                            (sid, t, evid, amt, cmt, rate, ii, addl, ss, 1, np.nan, 0, 1),
                            strict=True):
                cols[k].append(v)
        for i in range(a, b):
            for k, v in zip(("id", "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss",
                             "mdv", "dv", "row", "order"),
                            (sid, levels.time[i], levels.evid[i], 0.0, 0, 0.0, 0.0, 0, 0,
                             levels.mdv[i], levels.dv[i], levels.row[i], 0), strict=True):
                cols[k].append(v)
    arr = {k: np.asarray(v) for k, v in cols.items()}
    # per subject by time; at one time an observation (order 0) before a dose (a trough)
    sort = np.lexsort((arr["order"], arr["time"], np.repeat(np.arange(ids.size),
                                                            (stop - start) + len(doses))))
    covs = {}
    for name, values in levels.covariates.items():
        per_subject = values[start]
        covs[name] = np.repeat(per_subject, (stop - start) + len(doses))[sort]
    return RecordTable(
        id=arr["id"][sort].astype(np.int64), time=arr["time"][sort].astype(float),
        evid=arr["evid"][sort].astype(np.int64), amt=arr["amt"][sort].astype(float),
        cmt=arr["cmt"][sort].astype(np.int64), rate=arr["rate"][sort].astype(float),
        ii=arr["ii"][sort].astype(float), addl=arr["addl"][sort].astype(np.int64),
        ss=arr["ss"][sort].astype(np.int64), mdv=arr["mdv"][sort].astype(np.int64),
        dv=arr["dv"][sort].astype(float), row=arr["row"][sort].astype(np.int64),
        amount_unit=unit, dv_unit=levels.dv_unit, covariates=covs,
        covariate_units=dict(levels.covariate_units), source=levels.source,
        columns=dict(levels.columns))


class _Covariates:
    """Per-subject covariates in the shape the covariate models read (weight,
    creatinine_clearance as arrays over subjects), falling back to the scenario's patient."""

    def __init__(self, table: RecordTable, start: NDArray[np.int64], patient: Any) -> None:
        self._table, self._start, self._patient = table, start, patient

    def _get(self, name: str, unit: str) -> pint.Quantity:
        if name in self._table.covariates and name in self._table.covariate_units:
            values, u = self._table.covariates[name], self._table.covariate_units[name]
            return Q_(np.asarray(values[self._start], float), u).to(unit)
        if self._patient is None:
            raise ScenarioError([("data.covariates", f"the model's covariate model needs "
                                                     f"{name}: map a column to it or give "
                                                     f"patient.{name}")])
        return Q_(np.full(self._start.size, getattr(self._patient, name).m_as(unit)), unit)

    def value(self, name: str) -> Any:
        """A covariate per subject (its first record), for declarative covariate effects."""
        if name in ("weight", "creatinine_clearance"):
            return getattr(self, name)
        if name in self._table.covariates:
            values = np.asarray(self._table.covariates[name])[self._start]
            unit = self._table.covariate_units.get(name)
            return Q_(values.astype(float), unit) if unit is not None else values
        if self._patient is None:
            return None
        try:
            v = getattr(self._patient, name, None)
        except ScenarioError:
            return None
        if v is None:
            return None
        if isinstance(v, pint.Quantity):
            return Q_(np.full(self._start.size, float(v.magnitude)), v.units)
        return np.full(self._start.size, v)

    @property
    def weight(self) -> pint.Quantity:
        return self._get("weight", "kg")

    @property
    def creatinine_clearance(self) -> pint.Quantity:
        """Given, or Cockcroft–Gault from age, sex (0 male, 1 female) and serum creatinine in
        the data, as :attr:`medtransport.scenario.Patient.creatinine_clearance` computes it."""
        cov = self._table.covariates
        if "creatinine_clearance" in cov or not {"age", "serum_creatinine"} <= set(cov):
            return self._get("creatinine_clearance", "mL/min")
        age = self._get("age", "year").m_as("year")
        scr = self._get("serum_creatinine", "mg/dL").m_as("mg/dL")
        female = (np.asarray(cov["sex"], float)[self._start] == 1) if "sex" in cov else \
            np.full(self._start.size, getattr(self._patient, "sex", None) == "female")
        weight = self.weight.m_as("kg")
        crcl = (140.0 - age) * weight / (72.0 * scr) * np.where(female, 0.85, 1.0)
        return Q_(crcl, "mL/min")


def estimation_problem(scenario: Scenario, table: RecordTable,
                       params: Any) -> tuple[Problem, FitData]:
    """The core's estimation problem for ``scenario`` with the records of ``table``."""
    if params.michaelis_menten is not None:
        raise ScenarioError([("parameters.michaelis_menten", "estimation needs linear "
                                                             "kinetics (the PK event engine)")])
    if scenario.residual_error is None:
        raise ScenarioError([("residual_error", "a fit needs a residual error model, e.g. "
                                                "residual_error: {additive: 0.5 mg/L, "
                                                "proportional: 0.1}")])
    if not (table.evid == 1).any() and not (table.evid == 4).any():
        table = records_from_events(scenario, table)
    if table.dv_unit is None:
        raise ScenarioError([("data.units.DV", "the observations need a unit")])
    n_per = _N_PERIPHERAL.get(scenario.model)
    if n_per is None:
        raise ScenarioError([("model", f"{scenario.model} cannot be fitted")])
    oral = params.absorption_rate is not None
    sessions = tuple((s.start, s.stop, s.clearance) for s in read_sessions(scenario))
    names = tuple(n for n in _STRUCTURAL if getattr(params, n, None) is not None)
    theta = np.array([getattr(params, n).m_as(_UNITS[n]) for n in names])
    compartments = (("depot",) if oral else ()) + ("central",) + \
        ("peripheral", "peripheral_2")[:n_per]
    central = 1 if oral else 0
    n_cmt = len(compartments)

    start, stop, ids = _blocks(table.id)
    n_sub = ids.size
    subject_index = np.repeat(np.arange(n_sub), stop - start)
    is_obs = (table.evid == 0) & (table.mdv == 0)
    blq_col = table.covariates.get("BLQ")
    lloq_col = table.covariates.get("LLOQ")
    blq_rec = np.zeros(len(table), bool)
    if blq_col is not None:
        blq_rec = (table.evid == 0) & (np.nan_to_num(blq_col) == 1)
    elif lloq_col is not None:
        blq_rec = is_obs & np.isfinite(table.dv) & (table.dv < lloq_col)
    counted_rec = (is_obs & np.isfinite(table.dv)) | blq_rec
    # a level before the subject's first dose
    dose_rec = (table.evid == 1) | (table.evid == 4)
    first_dose = np.full(n_sub, np.inf)
    np.minimum.at(first_dose, subject_index[dose_rec], table.time[dose_rec])
    early = counted_rec & (table.time < first_dose[subject_index])
    if early.any():
        i = int(np.flatnonzero(early)[0])
        raise ScenarioError(f"{table.where(i)}: a level before the subject's first dose "
                            f"({early.sum()} such record(s)); the model predicts nothing there "
                            "— give the earlier doses (SS=1 for a steady state) or drop the "
                            "level")
    counts = np.bincount(subject_index[counted_rec], minlength=n_sub)
    k_max = max(int(counts.max()) if counts.size else 0, 1)
    obs_position = np.full(len(table), -1, dtype=np.int64)
    ordinal = np.cumsum(counted_rec) - 1
    first_counted = np.concatenate([[0], np.cumsum(counts)[:-1]])
    obs_position[counted_rec] = ordinal[counted_rec] - first_counted[subject_index[counted_rec]]
    dv = np.full((n_sub, k_max), np.nan)
    observed = np.zeros((n_sub, k_max), bool)
    blq = np.zeros((n_sub, k_max), bool)
    lloq = np.full((n_sub, k_max), np.nan)
    times = np.full((n_sub, k_max), np.nan)
    s_idx, k_idx = subject_index[counted_rec], obs_position[counted_rec]
    dv[s_idx, k_idx] = table.dv[counted_rec]
    observed[s_idx, k_idx] = ~blq_rec[counted_rec]
    blq[s_idx, k_idx] = blq_rec[counted_rec]
    times[s_idx, k_idx] = table.time[counted_rec]
    if lloq_col is not None:
        lloq[s_idx, k_idx] = lloq_col[counted_rec]
    dv_factor = float(Q_(1.0, f"{table.amount_unit}/L").to(table.dv_unit).magnitude)

    residual = ResidualError.parse(scenario.residual_error, table.dv_unit)

    # the covariate factor c of every segment, read where a run of the data set reads it
    from medtransport_pk.model import _find_key, covariate_segments, used_covariates

    nocb = params.covariate_interpolation == "nocb"
    columns, seg_rows, seg_start = covariate_segments(table, used_covariates(params), nocb)
    filled = dict(table.covariates)
    for cname, (values, _) in columns.items():
        key = _find_key(table.covariates, cname)
        assert key is not None
        filled[key] = values
        filled.setdefault(cname, values)
    cov = _Covariates(replace(table, covariates=filled), seg_rows, scenario.patient)
    n_seg = seg_rows.size
    need_cov = params.allometric is not None or params.renal_function is not None
    seg_factor = np.ones((n_seg, len(names)))
    if need_cov:
        fcl = np.broadcast_to(clearance_factor(params.allometric, params.renal_function, cov),
                              (n_seg,))
        fq = np.broadcast_to(inter_clearance_factor(params.allometric, cov), (n_seg,))
        fv = np.broadcast_to(volume_factor(params.allometric, cov), (n_seg,))
        for j, n in enumerate(names):
            seg_factor[:, j] = (fcl if n == "clearance" else fq if "clearance" in n
                                else fv if "volume" in n else 1.0)

    if params.covariate_effects:
        from medtransport_pk.covariates import effect_factors

        effects = effect_factors(params.covariate_effects, cov.value)
        for j, n in enumerate(names):
            if n in effects:
                seg_factor[:, j] = seg_factor[:, j] * np.broadcast_to(effects[n], (n_seg,))
        fixed = sorted(set(effects) - set(names))
        if fixed:
            raise ScenarioError([("parameters.covariate_effects", f"effects on {fixed} are not "
                                                                  "supported by the fit")])
    # F and lag per compartment: a scalar is the depot's (oral doses), a mapping names them
    bio_row, lag_row = np.ones(n_cmt), np.zeros(n_cmt)
    for value, row, scalar_to, conv in ((params.bioavailability, bio_row, 0, float),
                                        (params.lag_time, lag_row, 0,
                                         lambda q: float(q.m_as("h")))):
        if isinstance(value, dict):
            for cname, v in value.items():
                if cname not in compartments:
                    raise ScenarioError([("parameters", f"{cname!r} is not a compartment of "
                                                        f"this model ({list(compartments)})")])
                row[compartments.index(cname)] = conv(v)
        elif oral:
            row[scalar_to] = conv(value)
    index = {n: j for j, n in enumerate(names)}
    # a subject's reported parameters are those of its first segment; later segments scale them
    seg_subject = subject_index[seg_rows]
    seg_count = np.bincount(seg_subject, minlength=n_sub)
    seg_first = np.concatenate([[0], np.cumsum(seg_count)[:-1]]).astype(np.int64)
    factor = seg_factor[seg_first]
    with np.errstate(divide="ignore", invalid="ignore"):
        seg_ratio = np.where(factor[seg_subject] != 0, seg_factor / factor[seg_subject], 1.0)

    def kinetics_of(phi: NDArray[np.float64]) -> Kinetics:
        m = phi.shape[0]
        kmat = np.zeros((m, n_cmt, n_cmt))
        elim = np.zeros((m, n_cmt))
        c = central

        def flow(src: int, dst: int, rate: NDArray[np.float64]) -> None:
            kmat[:, src, src] -= rate
            kmat[:, dst, src] += rate

        v1 = phi[:, index["central_volume"]]
        if oral:
            flow(0, c, phi[:, index["absorption_rate"]])
        k10 = phi[:, index["clearance"]] / v1
        kmat[:, c, c] -= k10
        elim[:, c] = k10
        for j, (qn, vn) in enumerate((("intercompartmental_clearance", "peripheral_volume"),
                                      ("intercompartmental_clearance_2",
                                       "peripheral_volume_2"))[:n_per]):
            p = c + 1 + j
            flow(c, p, phi[:, index[qn]] / v1)
            flow(p, c, phi[:, index[qn]] / phi[:, index[vn]])
        bio = np.broadcast_to(bio_row, (m, n_cmt)).copy()
        lags = np.broadcast_to(lag_row, (m, n_cmt)).copy()
        return Kinetics.constant(m, kmat, elim, v1, bioavailability=bio, lag=lags)

    def segmented(phi: NDArray[np.float64], subjects: NDArray[np.int64]) -> Kinetics:
        """Kinetics over the covariate segments of ``subjects`` (row i of ``phi`` is the
        parameters of subject ``subjects[i]`` at its first record; local subject i)."""
        counts = seg_count[subjects]
        local = np.repeat(np.arange(subjects.size), counts)
        segs = np.arange(int(counts.sum())) + np.repeat(
            seg_first[subjects] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        kinetics = replace(kinetics_of(phi[local] * seg_ratio[segs]),
                           subject=local.astype(np.int64), start=seg_start[segs].copy(),
                           nocb=nocb)
        # dialysis and CRRT: the run's own segments (medtransport_pk.extracorporeal)
        return with_clearance(kinetics, central, list(sessions)) if sessions else kinetics

    books = BooksAudit()
    lengths = stop - start
    max_given = np.zeros(n_sub)
    np.maximum.at(max_given, subject_index, np.where(dose_rec, table.amt, 0.0))

    def predict(phi: NDArray[np.float64], subjects: NDArray[np.int64]) -> NDArray[np.float64]:
        subjects = np.asarray(subjects, dtype=np.int64)
        m = subjects.size
        reps = lengths[subjects]
        offsets = np.repeat(start[subjects] - np.concatenate([[0], np.cumsum(reps)[:-1]]),
                            reps)
        rows = np.arange(int(reps.sum())) + offsets
        stacked = RecordTable(
            id=np.repeat(np.arange(m), reps), time=table.time[rows], evid=table.evid[rows],
            amt=table.amt[rows], cmt=table.cmt[rows], rate=table.rate[rows], ii=table.ii[rows],
            addl=table.addl[rows], ss=table.ss[rows], mdv=table.mdv[rows], dv=table.dv[rows],
            row=table.row[rows], amount_unit=table.amount_unit, dv_unit=table.dv_unit,
            source=table.source)
        with np.errstate(all="ignore"):
            result = simulate(stacked, segmented(phi, subjects), compartments=compartments,
                              central=central, default_dose=1 if oral else 0,
                              check_steady_state=False)
        residual_books = np.abs(result.record_residual())
        # the largest amount the books saw: a dose, or a steady-state content
        scale = np.maximum(np.repeat(max_given[subjects], reps),
                           np.abs(result.record_ledger).max(axis=1))
        scale = np.maximum(scale, 1e-300)
        # a trial step may overflow a subject's parameters (its predictions are then NaN and
        # the step is refused); the books are held only for subjects with finite parameters
        # (and a subject whose solution overflowed: NaN predictions, refused the same way)
        finite = np.repeat(np.all(np.isfinite(phi) & (phi > 0), axis=1), reps)
        share = np.where(finite, residual_books / scale, 0.0)
        failed = ~np.isfinite(share)
        share = np.where(failed, 0.0, share)
        ratio = float(share.max()) if rows.size else 0.0
        books.passes += 1
        books.subject_runs += m
        books.worst = max(books.worst, ratio)
        if not ratio <= BOOKS_RTOL:
            raise AuditFailure(f"{scenario.model}: the books of a prediction pass do not close "
                               f"(residual {ratio:.3g} of the largest dose, tolerance "
                               f"{BOOKS_RTOL:g})")
        out = np.full((m, k_max), np.nan)
        take = counted_rec[rows]
        out[np.repeat(np.arange(m), reps)[take], obs_position[rows][take]] = \
            result.record_concentration[take] * dv_factor
        if failed.any():
            out[np.unique(np.repeat(np.arange(m), reps)[failed])] = np.nan
        return out

    etas = scenario.population.eta_names() if scenario.population is not None else []
    unknown = [e for e in etas if e not in names]
    if unknown:
        raise ScenarioError([(f"population.variability.{unknown[0]}",
                              f"variability on a parameter the fit does not estimate; expected "
                              f"some of {list(names)}")])
    if etas:
        assert scenario.population is not None
        sd = np.array([scenario.population.omegas()[e] for e in etas])
        chol = scenario.population.eta_factor()
        corr = np.eye(len(etas)) if chol is None else chol @ chol.T
        omega = corr * np.outer(sd, sd)
    else:
        raise ScenarioError([("population.variability", "a fit needs inter-individual "
                                                        "variability on at least one "
                                                        "parameter (the prior of MAP)")])
    problem = Problem(predict=predict, dv=dv, observed=observed, parameter_names=names,
                      theta=theta, eta_names=tuple(etas), omega=omega, residual=residual,
                      subject_ids=ids, covariate_factor=factor, blq=blq if blq.any() else None,
                      lloq=lloq if lloq_col is not None else None,
                      parameter_units={n: _UNITS[n] for n in names}, time=times)
    data = FitData(table, subject_index, obs_position, table.dv_unit, compartments, central,
                   1 if oral else 0, books, kinetics_of, dv_factor, bio_row, index, segmented,
                   seg_ratio[seg_first + seg_count - 1], sessions)
    return problem, data


def concentration_unit(table: RecordTable) -> str:
    return str(ureg.parse_units(f"{table.amount_unit}/L"))
