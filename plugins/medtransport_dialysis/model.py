"""Urea kinetic modelling through a dialysis schedule, with the books kept session by session.

The patient's urea space V(t) (total body water) shrinks by ultrafiltration during sessions and
grows with the fluid intake (less the urine) between them; urea is made at the rate G (given, or
from the nPCR), removed by the dialyser at its clearance K during sessions
(:mod:`medtransport_dialysis.dialyser`) and by the residual kidney at K_r all the time. The
single-pool model mixes all of V; the two-pool model splits it into extracellular (a fixed
fraction f_e, where the dialyser and the kidney act) and intracellular water, exchanging urea at
the intercompartmental clearance K_c, so the extracellular concentration rebounds after a
session (Schneditz & Daugirdas 1994, ASAIO J 40:M667; Pedrini et al. 1988 for the pools). The
equations and their exact solution: :mod:`medtransport_dialysis.kinetics`.

The five answers: it counts urea (mmol, per pool) and body water (L, per pool); in the pools of
the urea space; urea leaves into the dialysate and the urine and is made by protein catabolism,
water enters by intake and leaves by ultrafiltration and urine; both are conserved up to those;
it starts with the measured pre-dialysis concentration times the modelled volume (units
converted: urea nitrogen in mg/dL or urea in mmol/L; :mod:`medtransport_dialysis.urea`), the
pools at equilibrium.

Assumptions, stated: the pools keep their fractions of V as it changes (fluid shifts carry no
urea between them); intake, urine and generation are constant; ultrafiltration is constant in
each session; the dialyser and kidney clear the extracellular pool.

Outputs: urea amount, concentration and urea nitrogen over time; per session (``session``
dim) the pre/post concentrations, URR, spKt/V by formal UKM and by the second-generation
Daugirdas formula, eKt/V (two-pool: from the equilibrated concentration) and by the
Daugirdas–Schneditz rate equation, the rebound, the KDOQI 2015 flag; the weekly standard
Kt/V (model, and Leypoldt's formula), the time-averaged concentration and the nPCR
(:mod:`medtransport_dialysis.adequacy`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_, Qty
from medtransport_dialysis import __version__
from medtransport_dialysis import adequacy as adq
from medtransport_dialysis.dialyser import clearance as dialyser_clearance
from medtransport_dialysis.kinetics import Course, Kinetics, Schedule, simulate_course
from medtransport_dialysis.sessions import Session, read_sessions
from medtransport_dialysis.ukm import MeasurementError, formal_ukm
from medtransport_dialysis.urea import (
    bun_mg_per_dl,
    generation_from_npcr,
    npcr_from_generation,
    urea_mmol_per_l,
    urea_rate_mmol_per_h,
    watson_volume,
)

__all__ = ["DialyserPrescription", "UreaModel", "UreaSinglePool", "UreaTwoPool"]


class DialyserPrescription(BaseModel):
    """The dialyser and its flows; sessions may override the flows."""

    model_config = ConfigDict(extra="forbid")

    koa: Qty("mL/min", gt=0)
    blood_flow: Qty("mL/min", gt=0)
    dialysate_flow: Qty("mL/min", gt=0)
    recirculation: Annotated[float, Field(ge=0, lt=1)] = 0.0
    dilution: Literal["post", "pre"] = "post"
    sieving: Annotated[float, Field(gt=0, le=1)] = 1.0
    access: Literal["arterial", "venous"] = "arterial"


class UreaParams(Params):
    """Parameters of the urea models."""

    pre_urea: Qty("mmol/L", "mg/dL", gt=0)
    #: measured after the first session: formal UKM of the measured session
    post_urea: Qty("mmol/L", "mg/dL", gt=0) | None = None
    #: measured before the second session: with pre_urea and post_urea, the urea space and
    #: generation are solved by formal UKM (three-BUN; :mod:`medtransport_dialysis.ukm`)
    next_pre_urea: Qty("mmol/L", "mg/dL", gt=0) | None = None
    #: what a mass concentration or mass rate measures (BUN by default)
    mass_concentration_of: Literal["urea_nitrogen", "urea"] = "urea_nitrogen"
    water_volume: Qty("L", gt=0) | None = None
    generation: Qty("mmol/h", "mg/min", gt=0) | None = None
    npcr: Qty("g/kg/day", gt=0) | None = None
    residual_clearance: Qty("mL/min", ge=0) = Q_(0.0, "mL/min")
    urine_output: Qty("L/day", ge=0) = Q_(0.0, "L/day")
    fluid_intake: Qty("L/day", ge=0) = Q_(0.0, "L/day")
    dialyser: DialyserPrescription

    @model_validator(mode="after")
    def _one_generation(self) -> UreaParams:
        if self.next_pre_urea is not None:
            return self  # solved from the measurements (the model names what not to give)
        if (self.generation is None) == (self.npcr is None):
            raise ValueError("give exactly one of 'generation' and 'npcr'")
        return self

    @field_validator("post_urea")
    @classmethod
    def _below_pre(cls, v: pint.Quantity | None, info: ValidationInfo) -> pint.Quantity | None:
        pre = info.data.get("pre_urea")
        if v is not None and pre is not None and v.dimensionality == pre.dimensionality \
                and v.to(pre.units).magnitude >= pre.magnitude:
            raise ValueError("the post-dialysis urea must be below the pre-dialysis urea")
        return v


class TwoPoolParams(UreaParams):
    extracellular_fraction: Annotated[float, Field(gt=0, lt=1)] = 1.0 / 3.0
    intercompartmental_clearance: Qty("mL/min", gt=0) = Q_(600.0, "mL/min")


class UreaModel(Model):
    """Base of the urea models; ``pool_names`` decides single or two pools."""

    pool_names: ClassVar[tuple[str, ...]]
    #: what a nephrologist reads (medtransport.display): urea in mmol and mmol/L (BUN is its
    #: own variable, in mg/dL), body water in L — never mol or m³
    display_units: ClassVar[dict[str, str]] = {
        "urea": "mmol", "urea_amount": "mmol", "concentration": "mmol/L",
        "urea_nitrogen": "mg/dL", "water": "L", "water_volume": "L"}
    version = __version__
    conserved = (Species("urea", "urea_amount", "amount of urea",
                         "urea dissolved in the body water pools"),
                 Species("water", "water_volume", "volume of body water",
                         "the urea space (total body water), per pool"))
    tags = frozenset({"compartments", "deterministic"})
    event_types = frozenset({"session"})
    population_parameters = frozenset({"water_volume", "generation", "residual_clearance",
                                       "koa", "blood_flow"})
    params: UreaParams

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Any:
        from medtransport.domain import Compartments

        sc = self.scenario
        problems = []
        if sc.domain is not None:
            problems.append(("domain", f"{self.id} builds its own pools; remove the domain "
                                       "section"))
        if sc.boundaries:
            problems.append(("boundaries", f"{self.id} has no boundaries; removal is by the "
                                           "sessions and parameters.residual_clearance"))
        if problems:
            raise ScenarioError(problems)
        self.sessions: list[Session] = read_sessions(sc)
        self._setup()
        return Compartments(names=self.pool_names)

    @property
    def n_batch(self) -> int:
        return 1 if self.n_patients is None else self.n_patients

    def _eta(self, name: str) -> Any:
        if self.etas is None or name not in self.etas:
            return 1.0
        return np.exp(self.etas[name])

    def _volume(self) -> np.ndarray:
        """V at t0 (L), per patient: solved by formal UKM, given, else Watson's from the
        patient (or a population's sampled covariates)."""
        p = self.params
        solved = getattr(self, "_ukm_volume", None)
        if solved is not None:
            return solved
        if p.water_volume is not None:
            v = float(p.water_volume.m_as("L"))
        else:
            who = self.covariates if self.covariates is not None else self.scenario.patient
            if who is None:
                raise ScenarioError([("parameters.water_volume", "required without a patient "
                                      "section (Watson's volume needs weight, height, age, "
                                      "sex)")])
            missing = [n for n in ("height", "age") if getattr(who, n) is None]
            sex = getattr(who, "female", None) if self.covariates is not None else \
                (None if who.sex is None else who.sex == "female")
            if sex is None:
                missing.append("sex")
            if missing:
                raise ScenarioError([(f"patient.{n}", "required for Watson's volume (or give "
                                      "parameters.water_volume)") for n in missing])
            v = watson_volume(who.weight.m_as("kg"), who.height.m_as("cm"),
                              who.age.m_as("year"), sex)
        return np.broadcast_to(v * self._eta("water_volume"), (self.n_batch,)).astype(float)

    def _post_weight(self, volume: np.ndarray) -> np.ndarray:
        """The post-dialysis (dry) weight for Daugirdas' UF/W: the patient's weight, else
        V/0.58 (urea space 58 % of weight, as Watson's and the formula's authors take it)."""
        who = self.covariates if self.covariates is not None else self.scenario.patient
        if who is None:
            return volume / 0.58
        return np.broadcast_to(who.weight.m_as("kg"), volume.shape).astype(float)

    def _setup(self) -> None:
        """Everything the run needs, as arrays over patients (h, L, L/h, mmol)."""
        p = self.params
        self._ukm = None
        self._ukm_volume = None
        if p.next_pre_urea is not None:
            self._check_measured_fields()
        self.c0 = np.full(self.n_batch, self._initial_concentration())
        self.kr = np.broadcast_to(float(p.residual_clearance.m_as("L/h"))
                                  * self._eta("residual_clearance"), (self.n_batch,)).astype(float)
        self.intake = np.full(self.n_batch, float(p.fluid_intake.m_as("L/h")))
        self.urine = np.full(self.n_batch, float(p.urine_output.m_as("L/h")))
        d = p.dialyser
        koa = float(d.koa.m_as("mL/min")) * self._eta("koa")
        n_s = len(self.sessions)
        self.k_total = np.zeros((n_s, self.n_batch))
        self.k_diffusive = np.zeros((n_s, self.n_batch))
        self.qf = np.zeros((n_s, self.n_batch))
        for i, s in enumerate(self.sessions):
            qb = (s.blood_flow or float(d.blood_flow.m_as("mL/min"))) * self._eta("blood_flow")
            qd = s.dialysate_flow or float(d.dialysate_flow.m_as("mL/min"))
            uf = s.ultrafiltration / (s.duration * 60.0) * 1000.0  # mL/min
            sub = s.substitution / (s.duration * 60.0) * 1000.0
            if s.clearance is not None:  # measured: the dialyser model is not used
                self.k_total[i] = self.k_diffusive[i] = s.clearance * 0.06
                self.qf[i] = s.ultrafiltration / s.duration
                continue
            try:
                k = dialyser_clearance(koa, qb, qd, ultrafiltration=uf, substitution=sub,
                                       dilution=d.dilution, recirculation=d.recirculation,
                                       sieving=d.sieving)
                kd = dialyser_clearance(koa, qb, qd, dilution=d.dilution,
                                        recirculation=d.recirculation)
            except ValueError as exc:
                raise ScenarioError([(f"events.{s.index}", str(exc))]) from None
            self.k_total[i] = np.broadcast_to(k, (self.n_batch,)) * 0.06  # mL/min → L/h
            self.k_diffusive[i] = np.broadcast_to(kd, (self.n_batch,)) * 0.06
            self.qf[i] = s.ultrafiltration / s.duration
        t0 = float(self.scenario.time.start.m_as("h"))
        t_end = float(self.scenario.time.stop.m_as("h"))
        if p.post_urea is not None and not any(s.stop <= t_end + 1e-9 for s in self.sessions):
            raise ScenarioError([("parameters.post_urea", "a measured post-dialysis urea needs "
                                  "a session that ends within the run")])
        if p.post_urea is not None and abs(self.sessions[0].start - t0) > 1e-9:
            raise ScenarioError([("parameters.post_urea", "pre_urea and post_urea bracket the "
                                  "first session, so it must start at time.start")])
        if p.next_pre_urea is not None:
            self._solve_measured()
        else:
            self.v0 = self._volume()
            if np.any(self.v0 <= 0):
                raise ScenarioError([("parameters.water_volume",
                                      "the urea space must be positive")])
            if p.generation is not None:
                g = urea_rate_mmol_per_h(p.generation, p.mass_concentration_of)
            else:
                assert p.npcr is not None
                try:
                    g = generation_from_npcr(p.npcr.m_as("g/kg/day"), self.v0)
                except ValueError as exc:
                    raise ScenarioError([("parameters.npcr", str(exc))]) from None
            self.g = np.broadcast_to(g * self._eta("generation"),
                                     (self.n_batch,)).astype(float)
        base = self.intake - self.urine
        for i, s in enumerate(self.sessions):
            # the volume at the session's end, had every earlier session removed its fluid
            before = sum(self.qf[j] * min(self.sessions[j].duration, max(0.0, min(
                t_end, s.stop) - self.sessions[j].start)) for j in range(i + 1))
            low = self.v0 + base * (min(s.stop, t_end) - t0) - before
            if np.any(low <= 0.2 * self.v0):
                raise ScenarioError([(f"events.{s.index}.ultrafiltration",
                                      "removes more than 80 % of the body water")])

    def _check_measured_fields(self) -> None:
        """With ``next_pre_urea`` the urea space and generation are what formal UKM solves:
        refuse what would be ignored, naming it."""
        p = self.params
        problems = []
        if len(self.pool_names) != 1:
            problems.append(("parameters.next_pre_urea", "formal UKM solves the single-pool "
                             "model; use dialysis.urea_single_pool"))
        if p.post_urea is None:
            problems.append(("parameters.post_urea", "required with next_pre_urea (formal "
                             "UKM needs pre, post and next pre-dialysis urea)"))
        for name in ("water_volume", "generation", "npcr"):
            if getattr(p, name) is not None:
                problems.append((f"parameters.{name}", "solved by formal UKM from pre_urea, "
                                 "post_urea and next_pre_urea; remove it (or remove "
                                 "next_pre_urea)"))
        for name in ("water_volume", "generation"):
            if self.etas is not None and name in self.etas:
                problems.append((f"population.variability.{name}", "solved per patient by "
                                 "formal UKM from the measured urea; it cannot also vary"))
        if problems:
            raise ScenarioError(problems)

    def _solve_measured(self) -> None:
        """Formal UKM (:mod:`medtransport_dialysis.ukm`): V and G from pre_urea (start of the
        first session, at time.start), post_urea (its end) and next_pre_urea (the start of
        the second session), with each patient's dialyser clearance, residual clearance and
        fluid: the session removes its ultrafiltration net of the intake less urine over it,
        the interval gains intake less urine."""
        p = self.params
        t_end = float(self.scenario.time.stop.m_as("h"))
        if len(self.sessions) < 2 or self.sessions[1].start > t_end + 1e-9:
            raise ScenarioError([("parameters.next_pre_urea", "drawn at the start of the "
                                  "second session, which must start within the run")])
        first, second = self.sessions[0], self.sessions[1]
        net = self.intake - self.urine
        uf = self.qf[0] * first.duration - net * first.duration
        conc = {name: urea_mmol_per_l(getattr(p, name), p.mass_concentration_of)
                for name in ("pre_urea", "post_urea", "next_pre_urea")}
        fields = {"pre": "parameters.pre_urea", "post": "parameters.post_urea",
                  "next_pre": "parameters.next_pre_urea",
                  "hours": f"events.{first.index}.duration",
                  "interval": f"events.{second.index}.at",
                  "clearance": "parameters.dialyser",
                  "residual_clearance": "parameters.residual_clearance",
                  "ultrafiltration": f"events.{first.index}.ultrafiltration",
                  "weight_gain": "parameters.fluid_intake"}
        try:
            self._ukm = formal_ukm(conc["pre_urea"], conc["post_urea"], conc["next_pre_urea"],
                                   hours=first.duration, interval=second.start - first.stop,
                                   clearance=self.k_total[0], residual_clearance=self.kr,
                                   ultrafiltration=uf, weight_gain=net * (second.start
                                                                          - first.stop))
        except MeasurementError as exc:
            raise ScenarioError([(fields[f], m) for f, m in exc.problems]) from None
        self._ukm_volume = np.asarray(self._ukm.volume_post + uf, float)
        self.v0 = self._ukm_volume
        self.g = np.asarray(self._ukm.generation, float)

    def _initial_concentration(self) -> float:
        """The measured pre-dialysis urea (mmol/L) the states start from."""
        return urea_mmol_per_l(self.params.pre_urea, self.params.mass_concentration_of)

    def _kinetics(self) -> Kinetics:
        return Kinetics(self.g, self.kr, self.intake, self.urine)

    def ledger_units(self) -> dict[str, str]:
        return {"urea": "mmol", "water": "L"}

    def routes(self) -> dict[str, list[str]]:
        k = self.k_total / 0.06
        shown = f"{np.min(k):.4g}–{np.max(k):.4g} mL/min" if k.size else "no sessions"
        removed = sum(s.ultrafiltration for s in self.sessions)
        return {"urea": [f"into the dialysate during {len(self.sessions)} sessions (dialyser "
                         f"clearance {shown})",
                         "into the urine (residual clearance "
                         f"{self.params.residual_clearance.m_as('mL/min'):.4g} mL/min)",
                         "made by protein catabolism (source: generation "
                         f"{np.min(self.g):.4g}–{np.max(self.g):.4g} mmol/h)"],
                "water": [f"ultrafiltration during sessions ({removed:.4g} L in all)",
                          f"urine ({self.params.urine_output.m_as('L/day'):.4g} L/day)",
                          f"intake (inflow, {self.params.fluid_intake.m_as('L/day'):.4g} "
                          "L/day)"]}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        """Declared from the scenario: measured pre-dialysis urea × modelled volume."""
        c = urea_mmol_per_l(self.params.pre_urea, self.params.mass_concentration_of)
        v = self._volume()
        urea, water = c * v, v
        if self.n_patients is None:
            return {"urea": Q_(float(urea[0]), "mmol"), "water": Q_(float(water[0]), "L")}
        return {"urea": Q_(urea, "mmol"), "water": Q_(water, "L")}

    # -- the run ---------------------------------------------------------------------------
    def _schedule(self) -> Schedule:
        return Schedule(np.array([s.start for s in self.sessions]),
                        np.array([s.stop for s in self.sessions]), self.k_total, self.qf)

    def _solve(self, times_h: np.ndarray) -> Course:
        n = len(self.pool_names)
        fractions = self._fractions()
        amount0 = (self.c0 * self.v0)[:, None] * np.asarray(fractions)[None, :]
        return simulate_course(times_h, self._schedule(), self._kinetics(), amount0[:, :n],
                               self.v0, method=self.method)

    def _fractions(self) -> tuple[float, ...]:
        return (1.0,)

    def _amounts(self, course: Course) -> np.ndarray:
        """Urea per pool at the output times, (T, P, n)."""
        return course.part("amount")

    def _dialysate_booked(self, course: Course) -> np.ndarray:
        """The urea the ledger books as removed into the dialysate, (T, P)."""
        return course.part("dialysate")

    def _water_terms(self, times_h: np.ndarray) -> dict[str, np.ndarray]:
        """Cumulative intake, urine and ultrafiltration (L) from t0, from the prescription alone
        (not from the states): (T,) when every patient has the same (no population parameter
        varies them, so a population's books do not carry P copies), else (T, P)."""
        t0 = times_h[0]
        rates = np.stack([self.intake, self.urine, *self.qf])
        same = bool(np.all(rates == rates[:, :1]))
        cols = slice(0, 1) if same else slice(None)
        span = (times_h - t0)[:, None]
        uf = np.zeros((times_h.size, 1 if same else self.n_batch))
        for i, s in enumerate(self.sessions):
            uf += self.qf[i][None, cols] * np.clip(times_h - s.start, 0.0, s.duration)[:, None]
        out = {"intake": span * self.intake[None, cols], "urine": span * self.urine[None, cols],
               "ultrafiltration": uf}
        return {k: v[:, 0] for k, v in out.items()} if same else out

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        times_s = self.scenario.time.output_times()
        times_h = times_s / 3600.0
        course = self._solve(times_h)
        fr = np.asarray(self._fractions())
        amounts = self._amounts(course)                       # (T, P, n)
        volume = course.part("volume")                        # (T, P)
        water = volume[..., None] * fr                        # (T, P, n)
        conc = amounts / water
        single = self.n_patients is None
        batch: tuple[str, ...] = () if single else ("patient",)

        def shaped(a: np.ndarray) -> np.ndarray:
            return a[:, 0] if single else a

        coords: dict[str, Any] = {"time": ("time", times_s, {"units": "s", "long_name": "time"}),
                                  **self.domain.coords()}
        if not single:
            coords["patient"] = ("patient", self.patient_ids,
                                 {"units": "1", "long_name": "virtual patient"})
        ds = xr.Dataset(coords=coords)
        ds["compartment"].attrs["units"] = "1"
        pool = ("time", *batch, "compartment")
        ds["urea_amount"] = (pool, shaped(amounts), {"units": "mmol",
                                                     "long_name": "amount of urea"})
        ds["water_volume"] = (pool, shaped(water), {"units": "L",
                                                    "long_name": "body water (urea space)"})
        ds["concentration"] = (pool, shaped(conc), {"units": "mmol/L",
                                                    "long_name": "urea concentration"})
        ds["urea_nitrogen"] = (("time", *batch), shaped(bun_mg_per_dl(conc[..., 0])),
                               {"units": "mg/dL", "long_name": "blood urea nitrogen "
                                                               "(extracellular pool)"})
        dialysate = self._dialysate_booked(course)
        renal = course.part("renal")
        generated = course.part("generated")
        for name, values, label in (("dialysate_removed", dialysate, "urea removed into the "
                                     "dialysate"), ("renal_removed", renal, "urea removed in the "
                                     "urine"), ("urea_generated", generated, "urea generated")):
            ds[name] = (("time", *batch), shaped(values), {"units": "mmol",
                                                           "long_name": f"cumulative {label}"})
        water_terms = self._water_terms(times_h)
        for name, values in water_terms.items():
            if values.ndim == 2:
                values = shaped(values)
            dims = ("time", *batch) if values.ndim == 2 else ("time",)
            ds[f"water_{name}"] = (dims, values, {"units": "L", "long_name":
                                                  f"cumulative {name} of water (per patient)"})
        self._adequacy(ds, course, times_h, batch)
        ledgers = {
            "urea": Ledger.of("urea", "mmol", times_s.size, source={"generation": shaped(
                generated)}, outflow={"dialysate": shaped(dialysate), "renal": shaped(renal)}),
            "water": Ledger.of("water", "L", times_s.size,
                               inflow={"intake": water_terms["intake"]},
                               outflow={"ultrafiltration": water_terms["ultrafiltration"],
                                        "urine": water_terms["urine"]}),
        }
        if progress is not None:
            progress(1.0)
        return Trajectory(ds, ledgers)

    # -- adequacy --------------------------------------------------------------------------
    def _adequacy(self, ds: xr.Dataset, course: Course, times_h: np.ndarray,
                  batch: tuple[str, ...]) -> None:
        """Per-session and weekly adequacy as variables of ``ds``."""
        single = self.n_patients is None
        t_end = times_h[-1]
        done = [i for i, s in enumerate(self.sessions) if s.stop <= t_end + 1e-9]
        fr = np.asarray(self._fractions())
        ds["generation"] = (batch, self.g[0] if single else self.g,
                            {"units": "mmol/h", "long_name": "urea generation rate"})
        ds["residual_clearance"] = (batch, _one(self.kr / 0.06, single), {
            "units": "mL/min", "long_name": "residual renal urea clearance"})
        ds["npcr"] = (batch, _one(npcr_from_generation(self.g, self.v0), single),
                      {"units": "g/kg/day", "long_name": "normalised protein catabolic rate "
                                                        "(Borah)"})
        area = course.part("area")
        tac = (area[-1] - area[0]) / (times_h[-1] - times_h[0])
        ds["time_averaged_concentration"] = (batch, _one(tac, single), {
            "units": "mmol/L", "long_name": "time-averaged urea concentration (TAC)"})
        if not done:
            return
        sel = np.array(done)
        start_amt = course.at_start[sel][..., :len(fr)]
        stop_amt = course.at_stop[sel][..., :len(fr)]
        v_start = course.part("volume", "at_start")[sel]
        v_stop = course.part("volume", "at_stop")[sel]
        pre = start_amt[..., 0] / (fr[0] * v_start)
        post = stop_amt[..., 0] / (fr[0] * v_stop)
        equilibrated = stop_amt.sum(axis=-1) / v_stop
        hours = np.array([self.sessions[i].duration for i in done])[:, None]
        uf = np.array([self.sessions[i].ultrafiltration for i in done])[:, None]
        a_on = (self.intake - self.urine)[None, :] - self.qf[sel]
        common = {"generation": self.g[None, :], "residual_clearance": self.kr[None, :],
                  "volume_rate": a_on}
        if len(fr) == 1:
            # the single-pool model is the model formal UKM fits: the inversion of its own
            # pre/post returns its K exactly (tested), so it is not run for every patient;
            # and one pool has no rebound, so eKt/V = spKt/V
            sp = self.k_total[sel] * hours / v_stop
            ektv = sp
        else:
            sp = adq.formal_ktv(pre, post, hours, v_stop, **common)
            ektv = adq.formal_ktv(pre, equilibrated, hours, v_stop, **common)
        weight = self._post_weight(self.v0)[None, :]
        with np.errstate(invalid="ignore"):
            sp_daugirdas = adq.daugirdas_sp_ktv(pre, post, hours, uf, weight)
        # undefined where R ≤ 0.008·t (far beyond the Kt/V the formula was fitted for)
        daugirdas_defined = np.isfinite(sp_daugirdas)
        sp_daugirdas = np.where(daugirdas_defined, sp_daugirdas, 0.0)
        access = self.params.dialyser.access
        rate = adq.rate_equation_ektv(sp, hours, access)
        dims = ("session", *batch)

        def put(name: str, values: np.ndarray, units: str, label: str) -> None:
            ds[name] = (dims, values[:, 0] if single else values,
                        {"units": units, "long_name": label})

        ds.coords["session"] = ("session", np.arange(len(done)),
                                {"units": "1", "long_name": "dialysis session"})
        ds.coords["session_start"] = ("session", np.array([self.sessions[i].start
                                                           for i in done]) * 3600.0,
                                      {"units": "s", "long_name": "session start"})
        ds.coords["session_duration"] = ("session", hours[:, 0] * 3600.0,
                                         {"units": "s", "long_name": "session length"})
        put("pre_urea", pre, "mmol/L", "pre-dialysis urea (extracellular)")
        put("post_urea", post, "mmol/L", "post-dialysis urea (extracellular)")
        put("equilibrated_post_urea", equilibrated, "mmol/L",
            "post-dialysis urea, pools equilibrated")
        put("urr", adq.urr(pre, post), "1", "urea reduction ratio")
        put("sp_ktv", sp, "1", "single-pool Kt/V, formal UKM")
        put("sp_ktv_daugirdas", sp_daugirdas, "1", "single-pool Kt/V, Daugirdas 2nd generation "
            "(0 where undefined: R ≤ 0.008·t)")
        put("sp_ktv_daugirdas_defined", daugirdas_defined.astype(np.int8), "1",
            "whether the Daugirdas formula is defined for the session")
        put("e_ktv", ektv, "1", "equilibrated Kt/V, formal UKM on the equilibrated urea")
        put("e_ktv_rate_equation", rate, "1", "equilibrated Kt/V, Daugirdas–Schneditz rate "
                                               "equation")
        put("rebound", equilibrated / post - 1.0, "1", "post-dialysis urea rebound")
        put("dialyser_clearance", self.k_total[sel] / 0.06, "mL/min",
            "dialyser urea clearance (with convection and recirculation)")
        put("kdoqi_adequate", (sp >= adq.KDOQI_MINIMUM_SP_KTV).astype(np.int8), "1",
            "spKt/V ≥ 1.2 (KDOQI 2015 minimum delivered dose)")
        put("urr_adequate", (adq.urr(pre, post) >= adq.KDOQI_MINIMUM_URR).astype(np.int8), "1",
            "URR ≥ 65 % (KDOQI 2015)")
        self._measured(ds, batch, hours[0], uf[0], v_stop[0], a_on[0], weight[0], post[0])
        if self._ukm is not None:
            self._solved(ds, course, batch)
        # weekly standard Kt/V (Gotch's definition on the model, Leypoldt's formula): only
        # for a run of a week or more with repeated sessions; both assume a periodic steady
        # state, which a week starting away from it only approaches
        if times_h[-1] - times_h[0] < 168.0 - 1e-9 or len(done) < 2:
            return
        v_mean = v_stop.mean(axis=0)
        std_model = self.g * 168.0 / (pre.mean(axis=0) * v_mean)
        starts = np.array([self.sessions[i].start for i in done])
        per_week = 168.0 / np.mean(np.diff(starts))
        std_formula = adq.leypoldt_std_ktv(ektv.mean(axis=0), hours.mean() * 60.0, per_week)
        ds["std_ktv"] = (batch, _one(std_model, single), {
            "units": "1", "long_name": "weekly standard Kt/V (Gotch: G/mean pre-dialysis "
                                       "urea × 1 week/V)"})
        ds["std_ktv_leypoldt"] = (batch, _one(std_formula, single), {
            "units": "1", "long_name": "weekly standard Kt/V, Leypoldt's formula on the mean "
                                       "eKt/V"})

    def _measured(self, ds: xr.Dataset, batch: tuple[str, ...], hours: np.ndarray,
                  uf: np.ndarray, v_post: np.ndarray, volume_rate: np.ndarray,
                  weight: np.ndarray, predicted: np.ndarray) -> None:
        """Formal UKM of the first session from the measured pre/post urea (``post_urea``),
        with the model's volume, generation and residual clearance."""
        p = self.params
        if p.post_urea is None:
            return
        single = self.n_patients is None
        pre = urea_mmol_per_l(p.pre_urea, p.mass_concentration_of)
        post = urea_mmol_per_l(p.post_urea, p.mass_concentration_of)
        sp = adq.formal_ktv(pre, post, hours, v_post, generation=self.g,
                            residual_clearance=self.kr, volume_rate=volume_rate)
        with np.errstate(invalid="ignore"):
            bedside = adq.daugirdas_sp_ktv(pre, post, hours, uf, weight)
        values = {
            "measured_post_urea": (np.full(self.n_batch, post), "mmol/L",
                                   "measured post-dialysis urea, first session"),
            "measured_urr": (np.full(self.n_batch, 1.0 - post / pre), "1",
                             "urea reduction ratio from the measured urea"),
            "measured_sp_ktv": (sp, "1", "spKt/V of the first session by formal UKM on the "
                                         "measured pre/post urea"),
            "measured_sp_ktv_daugirdas": (np.where(np.isfinite(bedside), bedside, 0.0), "1",
                                          "spKt/V of the first session, Daugirdas 2nd "
                                          "generation on the measured urea (0 if undefined)"),
            "predicted_over_measured_post": (predicted / post, "1",
                                             "the model's post-dialysis urea over the measured"),
        }
        for name, (v, units, label) in values.items():
            ds[name] = (batch, _one(v, single), {"units": units, "long_name": label})

    def _solved(self, ds: xr.Dataset, course: Course, batch: tuple[str, ...]) -> None:
        """What formal UKM solved from the three measured urea values, and the model's own
        next pre-dialysis urea over the measured one (1 when the solution and the run agree;
        the ``measured_urea`` audit)."""
        assert self._ukm is not None
        p = self.params
        single = self.n_patients is None
        r = self._ukm
        v = course.part("volume", "at_start")[1]
        predicted = course.at_start[1][..., 0] / v
        assert p.next_pre_urea is not None
        measured = urea_mmol_per_l(p.next_pre_urea, p.mass_concentration_of)
        values = {
            "measured_next_pre_urea": (np.full(self.n_batch, measured), "mmol/L",
                                       "measured pre-dialysis urea before the second session"),
            "ukm_volume": (r.volume_post, "L", "urea space at the end of the first session, "
                                               "formal UKM (three-BUN)"),
            "ukm_generation": (r.generation, "mmol/h", "urea generation, formal UKM "
                                                       "(three-BUN)"),
            "ukm_sp_ktv": (r.sp_ktv, "1", "spKt/V of the first session, formal UKM "
                                          "(three-BUN)"),
            "ukm_npcr": (r.npcr, "g/kg/day", "nPCR (Borah) from the formal-UKM generation, "
                                             "normalised to V_post/0.58"),
            "predicted_over_measured_next_pre": (predicted / measured, "1", "the model's "
                                                 "next pre-dialysis urea over the measured"),
        }
        for name, (values_, units, label) in values.items():
            ds[name] = (batch, _one(np.broadcast_to(values_, (self.n_batch,)), single),
                        {"units": units, "long_name": label})

    def audits(self) -> list[Any]:
        """With measured pre, post and next pre urea: the run reproduces them."""
        return [_audit_measured_urea] if self.params.next_pre_urea is not None else []

    # -- presentation ----------------------------------------------------------------------
    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        """The weekly urea saw-tooth with Kt/V per session (sessions shaded), and the urea and
        water books."""
        from medtransport_dialysis.plotting import plot_urea

        plot_urea(self, dataset, figure)

    # -- conformance -----------------------------------------------------------------------
    @classmethod
    def _base_parameters(cls) -> dict[str, Any]:
        return {"pre_urea": "70 mg/dL", "water_volume": "38 L", "generation": "8 mg/min",
                "dialyser": {"koa": "1100 mL/min", "blood_flow": "350 mL/min",
                             "dialysate_flow": "600 mL/min"}}

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        base = cls._base_parameters()
        return [
            {"name": "thrice-weekly week", "model": cls.id,
             "parameters": {**base, "fluid_intake": "1 L/day"},
             "events": [{"type": "session", "days": ["Mon", "Wed", "Fri"], "at": "8 h",
                         "duration": "4 h", "ultrafiltration": "2.5 L"}],
             "time": {"stop": "168 h", "step": "1 h"}},
            {"name": "HDF pre-dilution, residual function, Watson volume", "model": cls.id,
             "patient": {"weight": "72 kg", "height": "170 cm", "age": "60 year",
                         "sex": "female"},
             "parameters": {"pre_urea": "25 mmol/L", "npcr": "1.1 g/kg/day",
                            "residual_clearance": "3 mL/min", "urine_output": "0.5 L/day",
                            "fluid_intake": "1.5 L/day",
                            "dialyser": {"koa": "1400 mL/min", "blood_flow": "300 mL/min",
                                         "dialysate_flow": "500 mL/min", "dilution": "pre",
                                         "recirculation": 0.05}},
             "events": [{"type": "session", "at": "2 h", "every": "56 h", "count": 2,
                         "duration": "4.5 h", "ultrafiltration": "2 L",
                         "substitution": "20 L"}],
             "time": {"stop": "72 h", "step": "30 min"}},
        ]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        base = cls._base_parameters()
        return [
            ({**base, "pre_urea": "5 L"}, "pre_urea"),
            ({**base, "water_volume": "-3 L"}, "water_volume"),
            ({**base, "generation": "8 mL/min"}, "generation"),
            ({**base, "dialyser": {"koa": "1 L", "blood_flow": "350 mL/min",
                                   "dialysate_flow": "600 mL/min"}}, "dialyser"),
            ({**base, "residual_clearance": "-1 mL/min"}, "residual_clearance"),
            ({k: v for k, v in base.items() if k != "dialyser"}, "dialyser"),
        ]


def _audit_measured_urea(ctx: Any) -> list[Any]:
    """The urea space and generation formal UKM solved must give back, through the run, the
    post-dialysis and next pre-dialysis urea they were solved from (1e-6 relative)."""
    from medtransport.audit import AuditResult

    ds = ctx.trajectory.states
    out = []
    for name, what in (("predicted_over_measured_post", "post-dialysis"),
                       ("predicted_over_measured_next_pre", "next pre-dialysis")):
        if name not in ds:
            out.append(AuditResult(f"measured_urea[{what}]", False, float("inf"), 1e-6, "1",
                                   f"the run did not report {name}"))
            continue
        ratio = np.asarray(ds[name].values, float)
        worst = float(np.max(np.abs(ratio - 1.0))) if np.all(np.isfinite(ratio)) else \
            float("inf")
        out.append(AuditResult(f"measured_urea[{what}]", worst <= 1e-6, worst, 1e-6, "1",
                               f"max |model/measured − 1| of the {what} urea over "
                               f"{ratio.size} patient(s): formal UKM's V and G reproduce the "
                               "measurement they were solved from"))
    return out


def _one(values: np.ndarray, single: bool) -> Any:
    values = np.asarray(values, dtype=float)
    return float(values.reshape(-1)[0]) if single else values


class UreaSinglePool(UreaModel):
    id = "dialysis.urea_single_pool"
    title = "Urea kinetics, single pool with variable volume"
    description = ("Urea in one well-mixed pool, the urea space V(t), which shrinks by "
                   "ultrafiltration during haemodialysis sessions and grows with the fluid "
                   "intake between them: d(VC)/dt = G − (K + K_r)·C, dV/dt = intake − urine − "
                   "Q_f; dialyser clearance K from KoA and the flows (Michaels, convection, "
                   "HDF, recirculation). Solved exactly; reports spKt/V (formal UKM and "
                   "Daugirdas), URR, standard Kt/V, TAC and nPCR with urea and water ledgers.")
    Params = UreaParams
    pool_names = ("body_water",)
    methods: ClassVar[dict[str, Tolerance]] = {"closed_form": Tolerance(rtol=1e-9),
                                               "matrix_exponential": Tolerance(rtol=1e-9)}


class UreaTwoPool(UreaModel):
    id = "dialysis.urea_two_pool"
    title = "Urea kinetics, two pools (extracellular/intracellular) with rebound"
    description = ("Urea in extracellular and intracellular water (fractions f_e, 1 − f_e of "
                   "the variable urea space) exchanging at the intercompartmental clearance "
                   "K_c; the dialyser (Michaels, convection, HDF, recirculation) and the "
                   "residual kidney clear the extracellular pool, so urea rebounds after a "
                   "session. Solved exactly by the matrix exponential in volume time; reports "
                   "spKt/V, eKt/V (equilibrated, and the Daugirdas–Schneditz rate equation), "
                   "the rebound, standard Kt/V, TAC and nPCR with urea and water ledgers.")
    Params = TwoPoolParams
    pool_names = ("extracellular", "intracellular")
    methods: ClassVar[dict[str, Tolerance]] = {"matrix_exponential": Tolerance(rtol=1e-9)}
    params: TwoPoolParams

    def _fractions(self) -> tuple[float, ...]:
        fe = float(self.params.extracellular_fraction)
        return (fe, 1.0 - fe)

    def _kinetics(self) -> Kinetics:
        kc = float(self.params.intercompartmental_clearance.m_as("L/h"))
        return Kinetics(self.g, self.kr, self.intake, self.urine, self._fractions(), kc)
