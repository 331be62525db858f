"""Whole-body kinetics of an extracellular contrast agent, from the syringe to the urine.

A linear, closed-circulation compartment model (after Bae et al., *Radiology* 1998;207:647,
reduced to mixing pools) of the agent's amount A (mmol) in:

- the syringe (the dose prescribed, emptied at the injection rate into the arm vein);
- the cardiopulmonary circulation: ``transit_compartments`` equal pools in series (right heart,
  lungs, left heart) with total blood volume V_cp, giving the first-pass bolus its width;
- the arterial plasma (volume V_a), which feeds every tissue (the AIF);
- the systemic venous plasma (the rest of the blood volume), which exchanges with the
  extravascular extracellular space (EES) of every tissue and is filtered by the kidneys;
- the EES of each tissue (volume V_e,j, exchange clearance PS_j);
- two sinks, cumulative: excreted renally and hepatobiliarily.

With the plasma flow Q = CO·(1 − Hct) and plasma volumes V = V_blood·(1 − Hct), the rate
constants are Q/V = CO/V_blood; for pools i → j in series::

    dA_cp,1/dt = R_inj(t) + CO/V_ven,b·A_ven − n·CO/V_cp,b·A_cp,1
    dA_cp,i/dt = n·CO/V_cp,b·(A_cp,i−1 − A_cp,i)                          i = 2…n
    dA_art/dt  = n·CO/V_cp,b·A_cp,n − CO/V_art,b·A_art
    dA_ven/dt  = CO/V_art,b·A_art − CO/V_ven,b·A_ven
                 − Σ_j PS_j·(A_ven/V_ven − A_e,j/V_e,j) − (GFR + CL_hb)·A_ven/V_ven
    dA_e,j/dt  = PS_j·(A_ven/V_ven − A_e,j/V_e,j)
    dA_renal/dt = GFR·A_ven/V_ven,   dA_hb/dt = CL_hb·A_ven/V_ven

Gadolinium chelates are filtered freely, not secreted or reabsorbed: renal clearance = GFR
(Weinmann et al., *AJR* 1984;142:619); they distribute into the extracellular fluid, about
0.2 L/kg (REFERENCES §2), so the terminal half-life is ≈ ln 2·V_ecf/GFR ≈ 1.5 h at
GFR 120 mL/min and far longer in renal impairment. Gadoxetate is also taken up by hepatocytes
and excreted in bile (≈ 50 %; Schuhmann-Giampieri et al., *Radiology* 1992;183:59) —
``hepatobiliary_clearance``. Defaults: blood volume 70 mL/kg and cardiac output 5 L/min of
a 70-kg adult (ICRP Publication 89, 2002); 1 L cardiopulmonary blood volume (a 12 s transit
at 5 L/min); 0.5 L arterial blood; one interstitial EES of 0.16 L/kg (0.2 L/kg of
extracellular fluid less the plasma) exchanging at 20 L/h: a distribution half-life of about
4 min and a terminal half-life of about 1.7 h at GFR 115 mL/min (gadobutrol's label: 1.81 h,
range 1.33–2.13 h; Gadovist summary of product characteristics).

The columns of the rate matrix sum to zero with the sinks included, so
Σ A = the dose held in the syringe at t0 at all times: injected = plasma + EES of every
tissue + excreted. The system is solved exactly by the core's linear-compartment solver
(:mod:`medtransport.numerics.compartments`), injections being zero-order inputs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pint
from pydantic import BaseModel, ConfigDict, Field

from medtransport.errors import ScenarioError
from medtransport.numerics.compartments import Addition, Input, amounts
from medtransport.scenario import Event, Scenario
from medtransport.units import Q_, Qty
from medtransport_contrast.quantities import Fraction
from medtransport_contrast.signal import IODINE_MOLAR_MASS

__all__ = ["FORMULATION", "Injection", "Tissue", "WholeBodyParams", "WholeBodySystem",
           "read_injections"]

#: Concentration of the marketed formulations, mmol/mL (summaries of product
#: characteristics: Gadovist 1.0 M, Dotarem 0.5 M, Primovist 0.25 M; iodinated: 350 mg I/mL).
FORMULATION = {"gadobutrol": 1.0, "gadoterate": 0.5, "gadoxetate": 0.25,
               "iodinated": 350.0 / IODINE_MOLAR_MASS.m_as("mg/mmol")}

AgentName = Literal["gadoterate", "gadobutrol", "gadoxetate", "iodinated"]


class Tissue(BaseModel):
    """The extravascular extracellular space of one tissue."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z][\w-]*$")
    ees_volume: Qty("L", "L/kg", gt=0)
    exchange_clearance: Qty("L/h", "L/h/kg", ge=0)


class WholeBodyParams(BaseModel):
    """Physiology of the whole-body model (module docstring for the defaults' sources)."""

    model_config = ConfigDict(extra="forbid")

    agent: AgentName = "gadobutrol"
    formulation_concentration: Qty("mmol/mL", gt=0) | None = None
    blood_volume: Qty("L", "L/kg", gt=0) = Q_(0.07, "L/kg")
    hematocrit: Annotated[Fraction, Field(gt=0, lt=1)] | None = None
    cardiac_output: Qty("L/min", gt=0) = Q_(5.0, "L/min")
    cardiopulmonary_blood_volume: Qty("L", gt=0) = Q_(1.0, "L")
    transit_compartments: Annotated[int, Field(ge=1, le=20)] = 4
    arterial_blood_volume: Qty("L", gt=0) = Q_(0.5, "L")
    tissues: list[Tissue] = Field(default_factory=lambda: [
        Tissue(name="interstitium", ees_volume=Q_(0.16, "L/kg"),
               exchange_clearance=Q_(20.0, "L/h"))], min_length=1)
    glomerular_filtration_rate: Qty("mL/min", ge=0) | None = None
    hepatobiliary_clearance: Qty("mL/min", ge=0) = Q_(0.0, "mL/min")


@dataclass(frozen=True)
class Injection:
    """One injection (times in s, amounts in mmol): ``amount`` over ``duration`` from
    ``start`` (duration 0: a bolus)."""

    index: int
    start: float
    amount: float
    duration: float


def read_injections(scenario: Scenario, weight_kg: float | None,
                    formulation_mmol_per_ml: float, agent: str = "gadobutrol"
                    ) -> list[Injection]:
    """``injection`` events: ``dose`` (mmol/kg, mmol, a formulation volume in mL, or — for
    an iodinated agent — a mass of iodine), and ``rate`` (mL/s of formulation) or
    ``duration`` (none: a bolus)."""
    out: list[Injection] = []
    for i, ev in enumerate(scenario.events):
        if ev.type != "injection":
            continue
        out.extend(_injection(i, ev, weight_kg, formulation_mmol_per_ml, agent))
    return out


def _injection(i: int, ev: Event, weight_kg: float | None, conc: float,
               agent: str) -> list[Injection]:
    where = f"events.{i}"
    extra = set((ev.model_extra or {}).keys()) - {"dose", "rate", "duration"}
    if extra:
        raise ScenarioError([(f"{where}.{k}", "unknown field of an injection (it takes dose, "
                                              "rate or duration)") for k in sorted(extra)])
    dose = ev.get("dose")
    if not isinstance(dose, pint.Quantity):
        raise ScenarioError([(f"{where}.dose", "required: e.g. '0.1 mmol/kg', '7 mmol' or "
                                               "'15 mL'")])
    if dose.check("[substance]/[mass]"):
        if weight_kg is None:
            raise ScenarioError([("patient.weight", f"needed for the dose per kg at "
                                                    f"{where}.dose")])
        amount = float(dose.m_as("mmol/kg")) * weight_kg
    elif dose.check("[substance]"):
        amount = float(dose.m_as("mmol"))
    elif dose.check("[volume]"):
        amount = float(dose.m_as("mL")) * conc
    elif dose.check("[mass]") and agent == "iodinated":
        amount = float(dose.m_as("mg")) / IODINE_MOLAR_MASS.m_as("mg/mmol")
    elif dose.check("[mass]"):
        raise ScenarioError([(f"{where}.dose", f"a mass is read as grams of iodine, for an "
                                               f"iodinated agent; give {agent} in mmol/kg, "
                                               "mmol or mL")])
    else:
        raise ScenarioError([(f"{where}.dose", f"expected mmol/kg, mmol, mL or a mass of "
                                               f"iodine, got {dose:~P}")])
    if not (math.isfinite(amount) and amount > 0):
        raise ScenarioError([(f"{where}.dose", "must be positive")])
    rate, duration = ev.get("rate"), ev.get("duration")
    if rate is not None and duration is not None:
        raise ScenarioError([(f"{where}.rate", "give rate or duration, not both")])
    seconds = 0.0
    if rate is not None:
        if not isinstance(rate, pint.Quantity) or not rate.check("[volume]/[time]") \
                or rate.magnitude <= 0:
            raise ScenarioError([(f"{where}.rate", "expected a positive injection rate in "
                                                   "mL/s")])
        seconds = amount / conc / float(rate.m_as("mL/s"))
    elif duration is not None:
        if not isinstance(duration, pint.Quantity) or not duration.check("[time]") \
                or duration.magnitude < 0:
            raise ScenarioError([(f"{where}.duration", "expected a non-negative time")])
        seconds = float(duration.m_as("s"))
    return [Injection(i, float(t), amount, seconds) for t in ev.times()]


class WholeBodySystem:
    """The rate matrix and the schedule of the whole-body model for one patient."""

    def __init__(self, params: WholeBodyParams, scenario: Scenario, gfr_ml_min: float):
        patient = scenario.patient
        self.params = params
        self.weight = None if patient is None else float(patient.weight.m_as("kg"))
        if params.hematocrit is not None:
            self.hematocrit = float(params.hematocrit)
        elif patient is not None and patient.hematocrit is not None:
            self.hematocrit = float(patient.hematocrit.m_as(""))
        else:
            self.hematocrit = 0.42
        self.formulation = float(params.formulation_concentration.m_as("mmol/mL")) \
            if params.formulation_concentration is not None else FORMULATION[params.agent]
        blood = self._per_weight(params.blood_volume, "L", "parameters.blood_volume")
        v_cp = float(params.cardiopulmonary_blood_volume.m_as("L"))
        v_art = float(params.arterial_blood_volume.m_as("L"))
        v_ven = blood - v_cp - v_art
        if v_ven <= 0.1 * blood:
            raise ScenarioError([("parameters.blood_volume",
                                  f"{blood:.3g} L of blood leaves {v_ven:.3g} L for the venous "
                                  "pool after the cardiopulmonary and arterial volumes")])
        self.blood_volumes = {"cardiopulmonary": v_cp, "arterial": v_art, "venous": v_ven}
        self.n_transit = params.transit_compartments
        self.tissue_names = [t.name for t in params.tissues]
        if len(set(self.tissue_names)) != len(self.tissue_names):
            raise ScenarioError([("parameters.tissues", "tissue names must be unique")])
        self.ees_volumes = [self._per_weight(t.ees_volume, "L", f"parameters.tissues.{j}."
                                             "ees_volume") for j, t in enumerate(params.tissues)]
        self.exchange = [self._per_weight(t.exchange_clearance, "L/h",
                                          f"parameters.tissues.{j}.exchange_clearance")
                         for j, t in enumerate(params.tissues)]
        self.gfr = gfr_ml_min
        self.hepatobiliary = float(params.hepatobiliary_clearance.m_as("mL/min"))
        self.cardiac_output = float(params.cardiac_output.m_as("L/s"))
        self.injections = read_injections(scenario, self.weight, self.formulation, params.agent)
        if not self.injections:
            raise ScenarioError([("events", "the whole-body model needs at least one "
                                            "'injection' event")])

    def _per_weight(self, q: pint.Quantity, unit: str, field: str) -> float:
        if q.check(unit):
            return float(q.m_as(unit))
        if self.weight is None:
            raise ScenarioError([("patient.weight", f"needed for {field} given per kg")])
        return float(q.m_as(f"{unit}/kg")) * self.weight

    # -- states ------------------------------------------------------------------------------
    @property
    def body(self) -> list[str]:
        """The compartments that hold agent (the syringe included)."""
        return (["syringe"] + [f"cardiopulmonary_{i + 1}" for i in range(self.n_transit)]
                + ["arterial_plasma", "venous_plasma"] + [f"ees_{n}" for n in self.tissue_names])

    @property
    def states(self) -> list[str]:
        return [*self.body, "excreted_renal", "excreted_hepatobiliary"]

    @property
    def plasma_volumes(self) -> dict[str, float]:
        """Plasma volume (L) of each plasma pool."""
        f = 1.0 - self.hematocrit
        out = {f"cardiopulmonary_{i + 1}": self.blood_volumes["cardiopulmonary"] / self.n_transit
               * f for i in range(self.n_transit)}
        out["arterial_plasma"] = self.blood_volumes["arterial"] * f
        out["venous_plasma"] = self.blood_volumes["venous"] * f
        return out

    def rate_matrix(self) -> np.ndarray:
        """K in 1/s over :attr:`states`; its columns sum to zero."""
        idx = {n: i for i, n in enumerate(self.states)}
        k = np.zeros((len(idx), len(idx)))

        def flow(src: str, dst: str, rate: float) -> None:
            k[idx[src], idx[src]] -= rate
            k[idx[dst], idx[src]] += rate

        co = self.cardiac_output  # L/s of blood; CO/V_blood = Q_plasma/V_plasma
        per_pool = self.blood_volumes["cardiopulmonary"] / self.n_transit
        chain = [f"cardiopulmonary_{i + 1}" for i in range(self.n_transit)] + ["arterial_plasma"]
        for a, b in itertools.pairwise(chain):
            flow(a, b, co / per_pool)
        flow("arterial_plasma", "venous_plasma", co / self.blood_volumes["arterial"])
        flow("venous_plasma", "cardiopulmonary_1", co / self.blood_volumes["venous"])
        v_ven = self.plasma_volumes["venous_plasma"]
        for name, v_e, ps in zip(self.tissue_names, self.ees_volumes, self.exchange,
                                 strict=True):
            ps_l_s = ps / 3600.0
            flow("venous_plasma", f"ees_{name}", ps_l_s / v_ven)
            flow(f"ees_{name}", "venous_plasma", ps_l_s / v_e)
        flow("venous_plasma", "excreted_renal", self.gfr / 1000.0 / 60.0 / v_ven)
        flow("venous_plasma", "excreted_hepatobiliary", self.hepatobiliary / 1000.0 / 60.0 / v_ven)
        return k

    @property
    def dose(self) -> float:
        return float(sum(inj.amount for inj in self.injections))

    def schedule(self, t0: float) -> tuple[np.ndarray, list[Addition], list[Input]]:
        """Initial state (every dose in the syringe), bolus transfers and infusions."""
        idx = {n: i for i, n in enumerate(self.states)}
        n = len(idx)
        x0 = np.zeros(n)
        x0[idx["syringe"]] = self.dose
        move = np.zeros(n)
        move[idx["syringe"]], move[idx["cardiopulmonary_1"]] = -1.0, 1.0
        adds, ins = [], []
        for inj in self.injections:
            if inj.start < t0:
                raise ScenarioError([(f"events.{inj.index}.at", "the injection starts before "
                                                                "time.start")])
            if inj.duration == 0.0:
                adds.append(Addition(inj.start, move * inj.amount))
            else:
                ins.append(Input(inj.start, inj.start + inj.duration,
                                 move * inj.amount / inj.duration))
        return x0, adds, ins

    def solve(self, times_s: np.ndarray) -> np.ndarray:
        """Amounts (T, n states) in mmol at ``times_s``, exact."""
        x0, adds, ins = self.schedule(float(times_s[0]))
        return amounts(self.rate_matrix(), times_s, initial=x0, additions=adds, inputs=ins)

    def injected(self, times_s: np.ndarray) -> np.ndarray:
        """Cumulative amount injected (mmol), from the schedule alone."""
        out = np.zeros_like(times_s, dtype=float)
        for inj in self.injections:
            if inj.duration == 0.0:
                out += np.where(times_s >= inj.start, inj.amount, 0.0)
            else:
                out += inj.amount * np.clip((times_s - inj.start) / inj.duration, 0.0, 1.0)
        return out

    def half_lives(self) -> tuple[float, float]:
        """(distribution, elimination) half-lives in s: from the two slowest non-zero modes
        of the body (syringe and sinks excluded)."""
        k = self.rate_matrix()
        body = [i for i, n in enumerate(self.states) if n != "syringe"
                and not n.startswith("excreted")]
        lam = np.sort(-np.real(np.linalg.eigvals(k[np.ix_(body, body)])))
        lam = lam[lam > 1e-15]
        if lam.size == 0:
            return math.inf, math.inf
        slow = float(lam[0])
        dist = float(lam[1]) if lam.size > 1 else math.inf
        return math.log(2) / dist, math.log(2) / slow

    def describe(self) -> dict[str, Any]:
        return {"gfr_ml_min": self.gfr, "hematocrit": self.hematocrit, "dose_mmol": self.dose}
