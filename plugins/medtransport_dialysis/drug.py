"""A drug in a dialysis patient: sessions as time-limited extra clearance, CRRT as continuous
clearance, and the books split by route.

One or two compartments (amounts A_c, A_p; volumes V_c, V_p; Gibaldi & Perrier ch. 1–2)::

    dA_c/dt = R_inf(t) − (CL_R + CL_NR + CL_CRRT + CL_D(t))·A_c/V_c − Q·(A_c/V_c − A_p/V_p)
    dA_p/dt = Q·(A_c/V_c − A_p/V_p)

with CL_D(t) the dialytic clearance during a session and 0 between sessions (given per
session, or f_u × the dialyser clearance from the drug's KoA:
:mod:`medtransport_dialysis.drug_clearance`). Each elimination route feeds its own sink state
(renal, non-renal, dialysate, CRRT), so the rate matrix's columns sum to zero and the books
close by construction; "how much did this session remove" is the dialysate sink at the
session's end minus at its start. The coefficients are constant between session boundaries, so
each piece is solved exactly by the core's compartment numerics
(:func:`medtransport.numerics.compartments.amounts`, Van Loan's augmented exponential) with
its boluses and infusions.

Doses are events ``bolus`` (``amount``) and ``infusion`` (``amount`` and ``duration``), with
the core's ``at``/``every``/``count``; sessions are events ``session``
(:mod:`medtransport_dialysis.sessions`).

The five answers: it counts the drug (mg, per compartment); in the central and peripheral
compartments; it leaves by renal and non-renal elimination, into the dialysate and into the
CRRT effluent; it starts with the boluses given at t0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.numerics.compartments import amounts
from medtransport.units import Q_, Qty
from medtransport_dialysis import __version__
from medtransport_dialysis.drug_clearance import crrt_clearance, drug_dialysis_clearance
from medtransport_dialysis.sessions import Session, read_sessions

__all__ = ["DialysisDrug", "DrugParams"]


class DrugDialyser(BaseModel):
    """The dialyser as the drug sees it: its KoA for this drug, and the flows."""

    model_config = ConfigDict(extra="forbid")

    koa: Qty("mL/min", gt=0)
    blood_flow: Qty("mL/min", gt=0)
    dialysate_flow: Qty("mL/min", gt=0)
    recirculation: Annotated[float, Field(ge=0, lt=1)] = 0.0
    dilution: Literal["post", "pre"] = "post"


class Crrt(BaseModel):
    """Continuous renal replacement therapy: its drug clearance, or the effluent flow."""

    model_config = ConfigDict(extra="forbid")

    clearance: Qty("L/h", ge=0) | None = None
    effluent_flow: Qty("L/h", gt=0) | None = None

    @model_validator(mode="after")
    def _one(self) -> Crrt:
        if (self.clearance is None) == (self.effluent_flow is None):
            raise ValueError("give exactly one of 'clearance' and 'effluent_flow'")
        return self


class DrugParams(Params):
    """Parameters of ``dialysis.drug``."""

    nonrenal_clearance: Qty("L/h", ge=0)
    renal_clearance: Qty("L/h", ge=0) = Q_(0.0, "L/h")
    central_volume: Qty("L", gt=0)
    intercompartmental_clearance: Qty("L/h", gt=0) | None = None
    peripheral_volume: Qty("L", gt=0) | None = None
    free_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    dialyser: DrugDialyser | None = None
    crrt: Crrt | None = None

    @model_validator(mode="after")
    def _pair(self) -> DrugParams:
        if (self.intercompartmental_clearance is None) != (self.peripheral_volume is None):
            raise ValueError("a peripheral compartment needs both intercompartmental_clearance "
                             "and peripheral_volume")
        return self


@dataclass(frozen=True)
class _Dose:
    index: int
    route: str
    amount: float     # mg
    times: np.ndarray  # h
    duration: float = 0.0


_ROUTES = ("renal", "nonrenal", "dialysate", "crrt")


def _read_doses(scenario: Any) -> list[_Dose]:
    problems: list[tuple[str, str]] = []
    out: list[_Dose] = []
    for i, event in enumerate(scenario.events):
        if event.type not in ("bolus", "infusion"):
            continue
        extra = dict(event.model_extra or {})
        allowed = {"amount"} | ({"duration"} if event.type == "infusion" else set())
        for key in sorted(set(extra) - allowed):
            problems.append((f"events.{i}.{key}", f"a {event.type} takes "
                                                  f"{', '.join(sorted(allowed))}"))
        q = extra.get("amount")
        if not (isinstance(q, pint.Quantity) and q.check("[mass]") and q.magnitude > 0):
            problems.append((f"events.{i}.amount", f"expected a positive [mass], got {q!r}"))
            continue
        duration = 0.0
        if event.type == "infusion":
            d = extra.get("duration")
            if not (isinstance(d, pint.Quantity) and d.check("[time]") and d.magnitude > 0):
                problems.append((f"events.{i}.duration", f"expected a positive [time], got "
                                                         f"{d!r}"))
                continue
            duration = float(d.m_as("h"))
        out.append(_Dose(i, event.type, float(q.m_as("mg")), event.times() / 3600.0, duration))
    if problems:
        raise ScenarioError(problems)
    return out


class DialysisDrug(Model):
    id = "dialysis.drug"
    title = "A drug in a dialysis patient"
    version = __version__
    description = ("A one- or two-compartment drug (renal and non-renal clearance, V_c, Q, "
                   "V_p) dosed by bolus and infusion in a patient on haemodialysis — each "
                   "session a time-limited extra clearance of the central compartment, given "
                   "as CL_D or f_u × the dialyser clearance from the drug's KoA (Michaels, "
                   "convection, recirculation) — or on CRRT (continuous clearance f_u·Q_eff). "
                   "Solved exactly piece by piece; the books split elimination into renal, "
                   "non-renal, dialysate and CRRT, and report what each session removed.")
    Params = DrugParams
    #: what a person reads (medtransport.display): doses in mg, levels in mg/L
    display_units: ClassVar[dict[str, str]] = {"drug": "mg", "amount": "mg",
                                               "concentration": "mg/L"}
    conserved = (Species("drug", "amount", "amount of drug",
                         "the drug in the central and peripheral compartments"),)
    tags = frozenset({"compartments", "deterministic"})
    methods: ClassVar[dict[str, Tolerance]] = {"exact": Tolerance(rtol=1e-9)}
    event_types = frozenset({"bolus", "infusion", "session"})
    population_parameters = frozenset({"nonrenal_clearance", "renal_clearance",
                                       "central_volume", "peripheral_volume"})
    params: DrugParams

    def build_domain(self) -> Any:
        from medtransport.domain import Compartments

        if self.scenario.domain is not None or self.scenario.boundaries:
            raise ScenarioError([("domain", f"{self.id} builds its own compartments; remove "
                                            "the domain and boundaries sections")])
        self.doses = _read_doses(self.scenario)
        self.sessions: list[Session] = read_sessions(self.scenario)
        self.session_clearance = np.array([self._session_clearance(s) for s in self.sessions])
        self.two = self.params.peripheral_volume is not None
        self.body = ("central", "peripheral") if self.two else ("central",)
        return Compartments(names=self.body)

    @property
    def states(self) -> tuple[str, ...]:
        return (*self.body, *_ROUTES)

    def _session_clearance(self, s: Session) -> float:
        """CL_D of one session (L/h)."""
        p = self.params
        if s.clearance is not None:
            return s.clearance * 0.06
        d = p.dialyser
        if d is None:
            raise ScenarioError([(f"events.{s.index}.clearance", "give the session's drug "
                                  "clearance, or parameters.dialyser for the dialyser model")])
        uf = Q_(s.ultrafiltration / s.duration, "L/h")
        sub = Q_(s.substitution / s.duration, "L/h")
        try:
            return float(drug_dialysis_clearance(
                koa=d.koa, free_fraction=p.free_fraction,
                blood_flow=Q_(s.blood_flow, "mL/min") if s.blood_flow else d.blood_flow,
                dialysate_flow=(Q_(s.dialysate_flow, "mL/min") if s.dialysate_flow
                                else d.dialysate_flow),
                ultrafiltration=uf, substitution=sub, dilution=d.dilution,
                recirculation=d.recirculation).m_as("L/h"))
        except ValueError as exc:
            raise ScenarioError([(f"events.{s.index}", str(exc))]) from None

    def _eta(self, name: str) -> Any:
        if self.etas is None or name not in self.etas:
            return 1.0
        return np.exp(self.etas[name])

    def _crrt(self) -> float:
        c = self.params.crrt
        if c is None:
            return 0.0
        if c.clearance is not None:
            return float(c.clearance.m_as("L/h"))
        assert c.effluent_flow is not None
        return float(crrt_clearance(c.effluent_flow, self.params.free_fraction).m_as("L/h"))

    def volumes(self) -> np.ndarray:
        p = self.params
        vs = [float(p.central_volume.m_as("L")) * self._eta("central_volume")]
        if self.two:
            assert p.peripheral_volume is not None
            vs.append(float(p.peripheral_volume.m_as("L")) * self._eta("peripheral_volume"))
        shape = () if self.n_patients is None else (self.n_patients,)
        return np.stack([np.broadcast_to(v, shape) for v in vs], axis=-1)

    def rate_matrix(self, cl_dialysis: float) -> np.ndarray:
        """K (1/h) over :attr:`states` with the dialytic clearance ``cl_dialysis`` (L/h)."""
        p = self.params
        n = len(self.states)
        batch = () if self.n_patients is None else (self.n_patients,)
        kmat = np.zeros((*batch, n, n))
        vols = self.volumes()
        vc = vols[..., 0]
        idx = {s: i for i, s in enumerate(self.states)}

        def flow(src: int, dst: int, rate: Any) -> None:
            kmat[..., src, src] -= rate
            kmat[..., dst, src] += rate

        c = idx["central"]
        cls = {"renal": float(p.renal_clearance.m_as("L/h")) * self._eta("renal_clearance"),
               "nonrenal": float(p.nonrenal_clearance.m_as("L/h"))
               * self._eta("nonrenal_clearance"),
               "dialysate": cl_dialysis, "crrt": self._crrt()}
        for route, cl in cls.items():
            flow(c, idx[route], np.asarray(cl) / vc)
        if self.two:
            assert p.intercompartmental_clearance is not None
            q = float(p.intercompartmental_clearance.m_as("L/h"))
            flow(c, idx["peripheral"], q / vc)
            flow(idx["peripheral"], c, q / vols[..., 1])
        return kmat

    def _given_at_start(self) -> float:
        t0 = float(self.scenario.time.start.m_as("h"))
        return sum(d.amount for d in self.doses if d.route == "bolus" for t in d.times
                   if t == t0)

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"drug": Q_(self._given_at_start(), "mg")}

    def ledger_units(self) -> dict[str, str]:
        return {"drug": "mg"}

    def routes(self) -> dict[str, list[str]]:
        p = self.params
        cl_d = (f"{np.min(self.session_clearance) / 0.06:.4g}–"
                f"{np.max(self.session_clearance) / 0.06:.4g} mL/min"
                if self.sessions else "no sessions")
        return {"drug": [f"renal elimination (CL_R {p.renal_clearance.m_as('L/h'):.4g} L/h)",
                         "non-renal elimination (CL_NR "
                         f"{p.nonrenal_clearance.m_as('L/h'):.4g} L/h)",
                         f"into the dialysate during {len(self.sessions)} sessions (CL_D "
                         f"{cl_d})",
                         f"into the CRRT effluent (CL {self._crrt():.4g} L/h)"]}

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        times_s = self.scenario.time.output_times()
        t = times_s / 3600.0
        t0, t_end = float(t[0]), float(t[-1])
        n = len(self.states)
        batch = () if self.n_patients is None else (self.n_patients,)
        adds: list[tuple[float, np.ndarray]] = []
        ins: list[tuple[float, float, np.ndarray]] = []
        for d in self.doses:
            for when in d.times:
                v = np.zeros(n)
                if d.route == "bolus":
                    v[0] = d.amount
                    adds.append((float(when), v))
                else:
                    v[0] = d.amount / d.duration
                    ins.append((float(when), float(when) + d.duration, v))
        # pieces of constant clearance: session boundaries split the run
        edges = sorted({t0, t_end, *(x for s in self.sessions for x in (s.start, s.stop)
                                     if t0 < x < t_end)})
        state = np.zeros((*batch, n))
        out = np.empty((*batch, t.size, n))
        at_start = np.full((len(self.sessions), *batch, n), np.nan)
        at_stop = np.full_like(at_start, np.nan)
        for a, b in itertools.pairwise(edges):
            last = b == t_end
            active = [i for i, s in enumerate(self.sessions) if s.start <= a and b <= s.stop]
            cl = float(self.session_clearance[active[0]]) if active else 0.0
            # the piece's output times, and its ends (which need not be output times)
            sel = (t >= a) & ((t <= b) if last else (t < b))
            grid = np.unique(np.concatenate([[a], t[sel], [b]]))
            piece_adds = [(w, v) for w, v in adds if a <= w < b or (last and w == b)]
            piece_ins = [(max(s0, a), min(s1, b), r) for s0, s1, r in ins if s0 < b and s1 > a]
            res = amounts(self.rate_matrix(cl), grid, initial=state, additions=piece_adds,
                          inputs=piece_ins)
            # the state at a, with the doses at a, is the output at a; b starts the next piece
            out[..., sel, :] = res[..., np.searchsorted(grid, t[sel]), :]
            for i, s in enumerate(self.sessions):
                if s.start == a:
                    at_start[i] = res[..., 0, :]
                if s.stop == b:
                    at_stop[i] = res[..., -1, :]
            state = res[..., -1, :]
        return self._trajectory(times_s, t, out, at_start, at_stop, batch, progress)

    def _trajectory(self, times_s: np.ndarray, t: np.ndarray, out: np.ndarray,
                    at_start: np.ndarray, at_stop: np.ndarray, batch: tuple[Any, ...],
                    progress: Progress | None) -> Trajectory:
        nb = len(self.body)
        vols = self.volumes()
        if batch:
            out = out.transpose(1, 0, 2)  # (T, P, n)
            batch = ("patient",)  # from here on, the name of the dimension
        conc = out[..., :nb] / vols
        coords: dict[str, Any] = {
            "time": ("time", times_s, {"units": "s", "long_name": "time"}),
            **self.domain.coords(),
            "tissue": ("tissue", np.asarray(self.body), {"units": "1",
                                                        "long_name": "compartment"}),
        }
        if batch:
            coords["patient"] = ("patient", self.patient_ids, {"units": "1",
                                                               "long_name": "virtual patient"})
        ds = xr.Dataset(coords=coords)
        ds["compartment"].attrs["units"] = "1"
        ds["amount"] = (("time", *batch, "compartment"), out[..., :nb],
                        {"units": "mg", "long_name": "amount of drug"})
        ds["concentration"] = (("time", *batch, "tissue"), conc,
                               {"units": "mg/L", "long_name": "drug concentration"})
        labels = {"renal": "renal_eliminated", "nonrenal": "nonrenal_eliminated",
                  "dialysate": "dialysate_removed", "crrt": "crrt_removed"}
        for j, route in enumerate(_ROUTES):
            ds[labels[route]] = (("time", *batch), out[..., nb + j],
                                 {"units": "mg", "long_name": f"cumulative drug "
                                                              f"{labels[route].replace('_', ' ')}"})
        given = self._given(t)
        ds["given"] = ("time", given, {"units": "mg", "long_name": "cumulative dose given"})
        done = [i for i, s in enumerate(self.sessions) if s.stop <= t[-1] + 1e-9]
        if done:
            sel = np.array(done)
            d_idx = nb + _ROUTES.index("dialysate")
            removed = at_stop[sel][..., d_idx] - at_start[sel][..., d_idx]
            body = at_start[sel][..., :nb].sum(axis=-1)
            c_pre = at_start[sel][..., 0] / vols[..., 0]
            c_post = at_stop[sel][..., 0] / vols[..., 0]
            dims = ("session", *batch)
            ds.coords["session"] = ("session", np.arange(len(done)),
                                    {"units": "1", "long_name": "dialysis session"})
            ds.coords["session_start"] = ("session", np.array(
                [self.sessions[i].start for i in done]) * 3600.0, {"units": "s",
                                                                    "long_name": "session start"})
            ds["session_removed"] = (dims, removed, {"units": "mg", "long_name":
                                                     "drug removed into the dialysate"})
            with np.errstate(invalid="ignore", divide="ignore"):
                frac = np.where(body > 0, removed / np.where(body > 0, body, 1.0), 0.0)
                drop = np.where(c_pre > 0, 1.0 - c_post / np.where(c_pre > 0, c_pre, 1.0), 0.0)
            ds["session_removed_fraction"] = (dims, frac, {
                "units": "1", "long_name": "fraction of the body's drug removed by the session"})
            ds["session_concentration_drop"] = (dims, drop, {
                "units": "1", "long_name": "1 − C_post/C_pre of the central concentration"})
            ds["session_clearance"] = ("session", self.session_clearance[sel] / 0.06, {
                "units": "mL/min", "long_name": "dialytic drug clearance CL_D"})
        at0 = self._given_at_start()
        ledger = Ledger.of("drug", "mg", t.size, inflow={"doses": given - at0},
                           outflow={route: out[..., nb + j] for j, route in enumerate(_ROUTES)})
        if progress is not None:
            progress(1.0)
        return Trajectory(ds, {"drug": ledger})

    def _given(self, t: np.ndarray) -> np.ndarray:
        """Cumulative dose given at ``t`` (h), from the event table alone."""
        out = np.zeros(t.size)
        for d in self.doses:
            for when in d.times:
                if d.route == "bolus":
                    out += np.where(t >= when, d.amount, 0.0)
                else:
                    out += d.amount / d.duration * np.clip(t - when, 0.0, d.duration)
        return out

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        """The concentration with the sessions shaded and what each removed; the books."""
        from medtransport_dialysis.plotting import plot_drug

        plot_drug(self, dataset, figure)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        vanco = {"nonrenal_clearance": "0.3 L/h", "central_volume": "38 L",
                 "intercompartmental_clearance": "10 L/h", "peripheral_volume": "22 L",
                 "free_fraction": 0.6,
                 "dialyser": {"koa": "280 mL/min", "blood_flow": "350 mL/min",
                              "dialysate_flow": "600 mL/min"}}
        return [
            {"name": "loading dose, two sessions by the dialyser model", "model": cls.id,
             "parameters": vanco,
             "events": [{"type": "bolus", "amount": "1500 mg"},
                        {"type": "session", "at": "20 h", "every": "48 h", "count": 2,
                         "duration": "4 h", "ultrafiltration": "2 L"},
                        {"type": "infusion", "amount": "500 mg", "duration": "1 h",
                         "at": "24 h", "every": "48 h", "count": 2}],
             "time": {"stop": "96 h", "step": "30 min"}},
            {"name": "one compartment on CRRT with a measured session clearance",
             "model": cls.id,
             "parameters": {"nonrenal_clearance": "0.4 L/h", "renal_clearance": "0.2 L/h",
                            "central_volume": "40 L", "free_fraction": 0.7,
                            "crrt": {"effluent_flow": "2 L/h"}},
             "events": [{"type": "infusion", "amount": "1 g", "duration": "2 h"},
                        {"type": "session", "at": "6 h", "duration": "3 h",
                         "clearance": "90 mL/min"}],
             "time": {"stop": "24 h", "step": "20 min"}},
        ]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        base = {"nonrenal_clearance": "0.3 L/h", "central_volume": "20 L"}
        return [
            ({**base, "central_volume": "20 mg"}, "central_volume"),
            ({**base, "free_fraction": 1.5}, "free_fraction"),
            ({**base, "nonrenal_clearance": "-1 L/h"}, "nonrenal_clearance"),
            ({**base, "dialyser": {"koa": "200 mL/min", "blood_flow": "3 L"}}, "dialyser"),
            ({**base, "crrt": {"effluent_flow": "2 L"}}, "crrt"),
            ({"central_volume": "20 L"}, "nonrenal_clearance"),
        ]
