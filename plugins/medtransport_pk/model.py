"""Linear mammillary compartment models of drug pharmacokinetics (REFERENCES §1).

States are amounts (the ledger's unit, mg or mmol), time in hours. With the micro-constants
k10 = CL/V1, k1j = Qj/V1, kj1 = Qj/Vj and the absorption rate ka::

    dA_depot/dt = −ka·A_depot
    dA_1/dt     =  ka·A_depot − (k10 + Σ_j k1j)·A_1 + Σ_j kj1·A_j + R_inf(t)
    dA_j/dt     =  k1j·A_1 − kj1·A_j                                  (j = peripheral 1, 2)
    dA_elim/dt  =  k10·A_1
    A_unabs     ← A_unabs + (1 − F)·D   at each oral dose (after its lag)

A dose of AMT into a compartment puts F·AMT into it (F per compartment, the depot's by
default) and books (1 − F)·AMT as ``unabsorbed``. The explicit ``eliminated`` and
``unabsorbed`` sink states make the rate matrix's columns sum to zero, so Σ compartments +
eliminated + unabsorbed equals the dose given (Gibaldi & Perrier, *Pharmacokinetics*, 2nd ed.,
ch. 1–3). The events (YAML ``events`` or a data set's records, one
:class:`~medtransport_pk.records.RecordTable`) are run by the event engine
(:mod:`medtransport_pk.engine`) with NONMEM's semantics — EVID 0–4, RATE −1/−2, ALAG, F, ADDL,
SS 1/2 — exactly, by each parameter segment's eigen-decomposition; a one-compartment oral dose
reproduces Bateman's C = F·D·ka/(V(ka − k))·(e^{−kt} − e^{−ka·t}). A data set's subjects run
in one batched pass with a prediction at every record (``record`` dimension); see
``docs/pk-events.md``.

Optional saturable elimination from the central compartment (``michaelis_menten``)::

    dA_1/dt −= Vmax·C_1/(Km + C_1),   dA_elim/dt += Vmax·C_1/(Km + C_1),   C_1 = A_1/V1

makes the system nonlinear. The same records (YAML events or a data set) then run through the
same event list with the same NONMEM semantics, propagated between events by
``scipy.integrate.solve_ivp`` (Radau, rtol 1e-10, analytic Jacobian; solver method ``ode``,
chosen automatically) and with SS 1 reached by repeated dosing to a stated tolerance
(:mod:`medtransport_pk.saturable`). Runge–Kutta methods preserve linear invariants, so the
books still close to round-off at every record. For a bolus with Michaelis–Menten elimination
alone the concentration has the closed form C(t) = Km·W((C0/Km)·exp((C0 − Vmax·t/V)/Km)) with
Lambert's W (Schnell & Mendoza 1997, J Theor Biol 187:207; Beal 1982, J Pharmacokinet
Biopharm 10:109).

The five answers: it counts the drug (``amount``, per compartment); in the depot, central and
peripheral compartments; it leaves by elimination clearance (``eliminated``), into the
dialysate during ``dialysis`` and ``crrt`` events (``dialysate``, apart from ``eliminated``;
:mod:`medtransport_pk.extracorporeal`) and, for oral doses, by the unabsorbed fraction 1 − F
(``unabsorbed``); it is conserved up to those; it starts
with the doses given at t0 (F·D; the state at t0 is recorded just after them) plus the body
content at steady state for ``steady_state`` regimens — what was given before t0 is not in the
books, so the SS content is declared as the initial amount (a steady state set up later is
booked as the inflow ``steady_state``, a reset's removal as the outflow ``reset``). The books
are audited on the time grid and at every record (``record_books``), and each SS 1 state must
come back one interval later (``steady_state``).

A ``population`` section (core: :mod:`medtransport.population`) gives each virtual patient
θ_i = θ·exp(η_i) on clearances, volumes and ka; all patients are solved at once with stacked
rate matrices, and every result gains a ``patient`` dimension (with each patient's parameters).

Populations with saturable elimination (variability also on ``vmax`` and ``km``) given one
regimen are solved as one stacked ODE system (:mod:`medtransport_pk.saturable`).

A population's sampled covariates (``population.covariates``: weight, age, sex, serum
creatinine) reach the covariate models patient by patient (:mod:`medtransport_pk.covariates`).

Not available with saturable elimination: SS 2 (it presumes superposition; refused naming the
record).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.errors import ScenarioError, UnitError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.population import PatientBatch, sample_population
from medtransport.units import Q_, Qty, to_canonical
from medtransport_pk import __version__, engine
from medtransport_pk.covariates import (
    Allometric,
    CovariateEffect,
    RenalFunction,
    clearance_factor,
    effect_factors,
    inter_clearance_factor,
    volume_factor,
)
from medtransport_pk.events import amount_unit, records_from_events
from medtransport_pk.extracorporeal import Session, read_sessions
from medtransport_pk.nca import nca
from medtransport_pk.nca_intervals import interval_nca
from medtransport_pk.records import RecordTable

__all__ = ["OneCompartment", "PKModel", "ThreeCompartment", "TwoCompartment"]


Fraction = Annotated[float, Field(ge=0, le=1)]


class MichaelisMenten(BaseModel):
    """Saturable elimination from the central compartment, Vmax·C/(Km + C)."""

    model_config = ConfigDict(extra="forbid")

    vmax: Qty("mg/h", "mmol/h", gt=0)
    km: Qty("mg/L", "mmol/L", gt=0)


# Micro-constant → (clearance-form parameter, how it follows from the micro-constants and V1).
_MICRO = {
    "k10": ("clearance", None),
    "k12": ("intercompartmental_clearance", "k21"),
    "k13": ("intercompartmental_clearance_2", "k31"),
}
_PERIPHERAL_VOLUME = {"intercompartmental_clearance": "peripheral_volume",
                      "intercompartmental_clearance_2": "peripheral_volume_2"}


class OneCompartmentParams(Params):
    """Parameters of ``pk.one_compartment``: clearances and volumes, or micro-constants with
    the central volume (k10 = CL/V1, k12 = Q/V1, k21 = Q/V2, k13 = Q3/V1, k31 = Q3/V3;
    Gibaldi & Perrier ch. 2)."""

    # 0 is allowed for drugs eliminated only by a saturable route (michaelis_menten).
    clearance: Qty("L/h", ge=0)
    central_volume: Qty("L", gt=0)
    absorption_rate: Qty("1/h", gt=0) | None = None
    #: ALAG: a time (the depot's, as ever) or a time per compartment
    lag_time: Qty("h", ge=0) | dict[str, Qty("h", ge=0)] = Q_(0.0, "h")
    #: F: a fraction (the depot's, as ever) or a fraction per compartment
    bioavailability: Fraction | dict[str, Fraction] = 1.0
    #: modelled infusion rate (RATE −1) and duration (RATE −2) per compartment
    infusion_rate: dict[str, Qty("mg/h", "mmol/h", gt=0)] | None = None
    infusion_duration: dict[str, Qty("h", gt=0)] | None = None
    #: declarative covariate effects, each a factor on one parameter
    covariate_effects: list[CovariateEffect] = Field(default_factory=list)
    #: how a time-varying covariate of a data set holds between its records: NONMEM's
    #: PREDPP advances over (t_j, t_j+1] with the covariates of the record at t_j+1 ("nocb",
    #: the default); "locf" holds a record's values from its time on
    covariate_interpolation: Literal["nocb", "locf"] = "nocb"
    molar_mass: Qty("g/mol", gt=0) | None = None
    allometric: Allometric | None = None
    renal_function: RenalFunction | None = None
    michaelis_menten: MichaelisMenten | None = None
    k10: Qty("1/h", ge=0) | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_micro_constants(cls, data: Any) -> Any:
        """Micro-constants become the clearance form before validation (both are kept, so a
        result states what was given)."""
        if not isinstance(data, dict):
            return data
        for micro, (_, back) in _MICRO.items():
            if back is not None and back in data and micro not in data:
                raise ValueError(f"{back} needs {micro}")
        if not any(k in data for k in _MICRO):
            return data
        data = dict(data)
        if "central_volume" not in data:
            return data  # the missing central_volume is reported by its field
        try:
            v1 = to_canonical(data["central_volume"], "L", field="central_volume")
            for micro, (target, back) in _MICRO.items():
                if micro not in data:
                    continue
                if target not in cls.model_fields:
                    continue  # an unknown field, reported as such
                if target in data:
                    raise ValueError(f"give {target} or {micro}, not both")
                rate = to_canonical(data[micro], "1/h", field=micro)
                data[target] = rate * v1
                if back is not None:
                    if back not in data:
                        raise ValueError(f"{micro} needs {back}")
                    rate_back = to_canonical(data[back], "1/h", field=back)
                    if rate_back.magnitude <= 0:
                        raise ValueError(f"{back} must be > 0")
                    data[_PERIPHERAL_VOLUME[target]] = rate * v1 / rate_back
        except UnitError as exc:
            raise ValueError(str(exc)) from None
        return data


class TwoCompartmentParams(OneCompartmentParams):
    """Parameters of ``pk.two_compartment``."""

    intercompartmental_clearance: Qty("L/h", gt=0)
    peripheral_volume: Qty("L", gt=0)
    k12: Qty("1/h", gt=0) | None = None
    k21: Qty("1/h", gt=0) | None = None


class ThreeCompartmentParams(TwoCompartmentParams):
    """Parameters of ``pk.three_compartment``."""

    intercompartmental_clearance_2: Qty("L/h", gt=0)
    peripheral_volume_2: Qty("L", gt=0)
    k13: Qty("1/h", gt=0) | None = None
    k31: Qty("1/h", gt=0) | None = None


_PERIPHERAL = ("peripheral", "peripheral_2")
_INTER = (("intercompartmental_clearance", "peripheral_volume"),
          ("intercompartmental_clearance_2", "peripheral_volume_2"))


class PKModel(Model):
    """Mammillary model with ``n_peripheral`` peripheral compartments."""

    n_peripheral: ClassVar[int] = 0
    #: what a person reads (medtransport.display): mg and mg/L
    display_units: ClassVar[dict[str, str]] = {"drug": "mg", "amount": "mg",
                                               "concentration": "mg/L"}
    version = __version__
    conserved = (Species("drug", "amount", "amount of drug",
                         "the drug in the gut depot and the body compartments"),)
    tags = frozenset({"compartments", "deterministic"})
    # Both solvers keep linear invariants (total drug) to round-off: Runge–Kutta and linear
    # multistep methods preserve them exactly, so the ode books are held as tight.
    methods: ClassVar[dict[str, Tolerance]] = {"exact": Tolerance(rtol=1e-9),
                                               "ode": Tolerance(rtol=1e-9)}
    event_types = frozenset({"bolus", "infusion", "oral", "reset", "dialysis", "crrt"})
    population_parameters = frozenset({"clearance", "central_volume", "absorption_rate",
                                       "vmax", "km", *(n for pair in _INTER for n in pair)})
    params: OneCompartmentParams

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Any:
        from medtransport.domain import Compartments

        sc = self.scenario
        problems = []
        if sc.domain is not None:
            problems.append(("domain", f"{self.id} builds its own compartments; remove the "
                                       "domain section"))
        if sc.boundaries:
            problems.append(("boundaries", f"{self.id} has no boundaries; elimination is "
                                           "parameters.clearance"))
        if problems:
            raise ScenarioError(problems)
        table = self._dataset()
        self.from_data = table is not None
        self._data_subjects = None if table is None else int(table.subjects().size)
        self._replica_of = None
        if table is not None and sc.population is not None and \
                sc.population.replicates is not None:
            start, stop = self._replica_range(table)
            subjects = table.subjects()
            self._replica_of = subjects[np.arange(start, stop) % subjects.size]
            table = replicate_subjects(table, start, stop)
        self.records: RecordTable | None = None
        self.sessions: list[Session] = []
        if any(e.type in ("dialysis", "crrt") for e in sc.events):
            i = next(i for i, e in enumerate(sc.events) if e.type in ("dialysis", "crrt"))
            if self.params.michaelis_menten is not None:
                raise ScenarioError([(f"events.{i}.type", "dialysis and CRRT are available "
                                      "for linear kinetics (not with michaelis_menten)")])
            self.sessions = read_sessions(sc)
        p = self.params
        if p.michaelis_menten is not None:
            if sc.solver.method == "exact":
                raise ScenarioError([("parameters.michaelis_menten",
                                      "saturable elimination is nonlinear: it needs solver "
                                      "method 'ode' (the default when it is given)")])
            self.method = "ode"
        if table is not None:
            self.unit = table.amount_unit
            # NONMEM's ADVAN numbering: a depot first when there is first-order absorption
            has_depot = p.absorption_rate is not None
        else:
            self.unit = amount_unit(sc)
            has_depot = any(e.type == "oral" or e.get("compartment") == "depot"
                            for e in sc.events)
        self.has_oral = has_depot
        self.body = tuple((["depot"] if has_depot else []) + ["central"]
                          + list(_PERIPHERAL[:self.n_peripheral]))
        if has_depot and p.absorption_rate is None:
            i = next((i for i, e in enumerate(sc.events) if e.type == "oral"
                      or e.get("compartment") == "depot"), 0)
            raise ScenarioError([("parameters.absorption_rate",
                                  f"required for the dose into the depot at events.{i}")])
        self._check_compartment_parameters()
        self.records = table if table is not None else records_from_events(
            sc, self.unit, p.molar_mass, self.body)
        self._check_population()
        self._prepare_subjects()
        self._kinetics()  # covariate errors surface before the run
        self._michaelis_menten()  # unit errors too
        try:
            engine.validate(self.records, len(self.body), self._engine_kinetics(),
                            default_dose=0)
        except engine.RecordError as exc:
            raise ScenarioError(self._record_problems(exc)) from None
        return Compartments(names=self.body)

    def _check_population(self) -> None:
        pop = self.scenario.population
        if pop is None:
            return
        allowed = {"clearance", "central_volume", "absorption_rate", "vmax", "km",
                   *(n for pair in _INTER[:self.n_peripheral] for n in pair)}
        problems = [(f"population.variability.{name}", f"{self.id} has no parameter "
                                                       f"{name!r}")
                    for name in sorted(set(pop.eta_names()) - allowed)]
        if pop.replicates is not None and not self.from_data:
            problems.append(("population.replicates", "replicates are copies of a data set's "
                             "subjects: give a data section (or leave replicates out and set "
                             "size)"))
        if self.params.michaelis_menten is None:
            problems += [(f"population.variability.{name}", "varies a michaelis_menten "
                          "parameter, but michaelis_menten is not given")
                         for name in sorted({"vmax", "km"} & set(pop.variability))]
        if problems:
            raise ScenarioError(problems)

    def _check_compartment_parameters(self) -> None:
        problems = []
        for name in ("bioavailability", "lag_time", "infusion_rate", "infusion_duration"):
            value = getattr(self.params, name)
            if isinstance(value, dict):
                problems += [(f"parameters.{name}.{key}", f"{self.id} has no compartment "
                              f"{key!r} here; it has {', '.join(self.body)}")
                             for key in value if key not in self.body]
        rate = self.params.infusion_rate or {}
        for key, q in rate.items():
            if key in self.body and not q.is_compatible_with(f"{self.unit}/h"):
                problems.append((f"parameters.infusion_rate.{key}", f"expected {self.unit}/h "
                                 f"like the doses, got {q:~P}"))
        if problems:
            raise ScenarioError(problems)

    def _dataset(self) -> RecordTable | None:
        """The scenario's data set as records, or None (then the records are the events)."""
        try:
            from medtransport_pk.dataset import read_dataset  # type: ignore[attr-defined]
        except ImportError:
            return None
        return read_dataset(self.scenario)  # type: ignore[no-any-return]

    def _replica_range(self, table: RecordTable) -> tuple[int, int]:
        """The patients this instance runs of a data set's replicates: its chunk, or all."""
        pop = self.scenario.population
        assert pop is not None and pop.replicates is not None
        expected = pop.replicates * int(table.subjects().size)
        if pop.size != expected:
            raise ScenarioError([("population.size", f"with replicates every subject is "
                                  f"{pop.replicates} patients: expected {expected} "
                                  f"({pop.replicates} × the {table.subjects().size} subjects "
                                  f"of {table.source}), got {pop.size}")])
        return self.patient_range if self.patients is not None else (0, expected)

    def _record_problems(self, exc: engine.RecordError) -> list[tuple[str, str]]:
        """Engine problems named by field path for events, by data row for a data set."""
        if self.from_data:
            return [(where, msg) for where, msg in exc.problems]
        out = []
        for where, msg in exc.problems:
            # "record 3 (ID 1, TIME …)" → events.3
            parts = where.split()
            index = parts[1] if len(parts) > 1 and parts[0] == "record" else "?"
            out.append((f"events.{index}", msg))
        return out

    @property
    def tissues(self) -> tuple[str, ...]:
        """The compartments with a volume (those given a concentration)."""
        return tuple(n for n in self.body if n != "depot")

    @property
    def states(self) -> tuple[str, ...]:
        return (*self.body, "eliminated", "unabsorbed")

    def ledger_units(self) -> dict[str, str]:
        return {"drug": self.unit}

    def routes(self) -> dict[str, list[str]]:
        cl = np.asarray(self._kinetics()["clearance"])
        shown = f"{float(cl):.6g} L/h" if cl.ndim == 0 else \
            f"{np.min(cl):.6g}–{np.max(cl):.6g} L/h across {cl.size} patients"
        out = [f"elimination from central at CL = {shown}"]
        mm = self.params.michaelis_menten
        if mm is not None:
            out.append(f"saturable elimination from central, Vmax {mm.vmax:~P}, Km {mm.km:~P}")
        if self.has_oral:
            out.append(f"unabsorbed fraction 1 − F = {1 - self._f():.6g} of oral doses")
        return {"drug": out}

    def _f(self) -> float:
        """The depot's F (for the routes' description)."""
        f = self.params.bioavailability
        return float(f.get("depot", 1.0) if isinstance(f, dict) else f)

    # -- subjects and their parameters -----------------------------------------------------
    @property
    def n_patients(self) -> int | None:
        """Virtual patients, or for a data set its subjects."""
        if getattr(self, "from_data", False):
            return int(self._subject_ids.size)
        return super().n_patients

    def _batch_size(self) -> int | None:
        """Rows of the parameter arrays: the segments of a data set's subjects (a subject's
        covariates may change with time), else the patients (None for one)."""
        segments = getattr(self, "_seg_subject", None)
        if segments is not None and getattr(self, "from_data", False):
            return int(segments.size)
        return self.n_patients

    def _prepare_subjects(self) -> None:
        """Subjects and parameter segments: one per virtual patient for events; for a data
        set one per subject plus one wherever a covariate the model uses changes (NOCB, as
        NONMEM: from the record before, the record itself keeping its own values; LOCF: from
        that record on)."""
        assert self.records is not None
        table = self.records
        pop = self.scenario.population
        if not self.from_data and pop is not None and pop.size is None:
            raise ScenarioError([("population.size", "required: how many virtual patients to "
                                  "draw (a data set's run takes it from its subjects)")])
        if not self.from_data:
            n = self.n_patients or 1
            self._seg_subject = np.arange(n)
            self._seg_start = np.full(n, -np.inf)
            self._run_records = table if self.n_patients is None else _replicate(table, n)
            return
        block, ids = engine.subject_blocks(table.id)
        self._subject_ids = ids
        self.covariates = None  # the data set's covariates, not sampled ones
        columns, rows, start = covariate_segments(
            table, self._used_covariates(), self.params.covariate_interpolation == "nocb")
        self._seg_subject = block[rows]
        self._seg_start = start
        self._seg_covariates = {name: Q_(values[rows], unit) if unit not in ("", "1") else
                                Q_(values[rows], "dimensionless")
                                for name, (values, unit) in columns.items()}
        self._run_records = table
        # covariates the built-in models read, as a batch over segments
        cov = self._seg_covariates
        self._seg_batch: PatientBatch | None = None
        if "weight" in cov:
            female = None
            if "sex" in cov:
                female = np.asarray(cov["sex"].magnitude) == _FEMALE_CODE
            self._seg_batch = PatientBatch(
                weight=cov["weight"], age=cov.get("age"), height=cov.get("height"),
                serum_creatinine=cov.get("serum_creatinine"), female=female)
        pop = self.scenario.population
        replicated = pop is not None and pop.replicates is not None
        if pop is not None:
            problems = []
            if not replicated and pop.size is not None and pop.size != ids.size:
                # the size follows from the data; only a contradicting one is refused
                problems.append(("population.size", f"with a data set every subject is one "
                                 f"patient: {table.source} has {ids.size} subjects, but "
                                 f"population.size is {pop.size} (leave size out to take it "
                                 "from the data)"))
            if pop.covariates is not None:
                problems.append(("population.covariates", "a data set brings its own "
                                 "covariates; sampled ones are for virtual patients"))
            if self.patients is not None and not replicated:
                problems.append(("population", "a data set runs all its subjects at once, "
                                 "not in chunks of patients (its replicates do run in "
                                 "chunks: population.replicates)"))
            if problems:
                raise ScenarioError(problems)
            assert self.seed is not None
            # patient i's own draws (replicate ⌊i/S⌋ of subject i mod S)
            first = int(self.patient_ids[0]) if replicated and self.patients is not None \
                else 0
            sample = sample_population(pop, self.seed, first, first + ids.size,
                                       self.scenario.patient)
            self._subject_etas = sample.etas
            self.etas = {k: v[self._seg_subject] for k, v in sample.etas.items()}

    def _sample_population(self) -> dict[str, np.ndarray] | None:
        """Virtual patients' η; with a data set and no ``population.size`` the subjects are
        only known once it is read (:meth:`_prepare_subjects` draws theirs)."""
        pop = self.scenario.population
        if pop is not None and pop.size is None:
            return None  # a data set's subjects, or refused in _prepare_subjects
        return super()._sample_population()

    def _used_covariates(self) -> list[str]:
        return used_covariates(self.params)

    def _covariate_value(self, name: str) -> Any:
        """A covariate as a Quantity (or labels): per segment of a data set, per virtual
        patient, or the scenario's patient."""
        seg = getattr(self, "_seg_covariates", None)
        if getattr(self, "from_data", False) and seg is not None and name in seg:
            return seg[name]
        source = self.covariates if self.covariates is not None else self.scenario.patient
        if source is None:
            return None
        try:
            return getattr(source, name, None)
        except ScenarioError:
            return None

    def _eta_factor(self, name: str) -> Any:
        """exp(η) of each virtual patient for ``name`` (1.0 without variability)."""
        if self.etas is None or name not in self.etas:
            return 1.0
        return np.exp(self.etas[name])

    def _effects(self) -> dict[str, Any]:
        if not self.params.covariate_effects:
            return {}
        return effect_factors(self.params.covariate_effects, self._covariate_value)

    def _ka(self) -> Any:
        assert self.params.absorption_rate is not None
        return float(self.params.absorption_rate.m_as("1/h")) * self._eta_factor(
            "absorption_rate") * self._effects().get("absorption_rate", 1.0)

    def _kinetics(self) -> dict[str, Any]:
        """Clearances (L/h) and volumes (L) after the covariate models and, for a population,
        each patient's log-normal variability (arrays over patients, or over the segments of
        a data set's subjects). Computed once per model and inputs: a chunk's run asks for it
        nine times, and its unit conversions (pint) cost about a millisecond each."""
        # the inputs themselves (held, so compared by identity): replacing any of them
        # recomputes
        key = (self.params, getattr(self, "covariates", None), self.scenario.patient,
               getattr(self, "etas", None), getattr(self, "_seg_batch", None))
        hit = getattr(self, "_kinetics_cache", None)
        if hit is not None and all(x is y for x, y in zip(hit[0], key, strict=True)):
            return dict(hit[1])
        out = self._kinetics_uncached()
        self._kinetics_cache = (key, out)
        return dict(out)

    def _kinetics_uncached(self) -> dict[str, Any]:
        p = self.params
        # a data set's covariates per segment, a population's sampled ones (arrays over
        # patients), else the one patient
        patient = self.covariates if self.covariates is not None else self.scenario.patient
        if getattr(self, "from_data", False) and getattr(self, "_seg_batch", None) is not None:
            patient = self._seg_batch
        fv = volume_factor(p.allometric, patient)
        fq = inter_clearance_factor(p.allometric, patient)
        out = {"clearance": float(p.clearance.m_as("L/h"))
               * clearance_factor(p.allometric, p.renal_function, patient),
               "central_volume": float(p.central_volume.m_as("L")) * fv}
        for q_name, v_name in _INTER[:self.n_peripheral]:
            out[q_name] = float(getattr(p, q_name).m_as("L/h")) * fq
            out[v_name] = float(getattr(p, v_name).m_as("L")) * fv
        effects = self._effects()
        return {name: value * self._eta_factor(name) * effects.get(name, 1.0)
                for name, value in out.items()}

    def volumes(self) -> np.ndarray:
        """Volumes (L) of :attr:`tissues`: (n,), or (P, n) for a population."""
        k = self._kinetics()
        size = self._batch_size()
        shape = () if size is None else (size,)
        return np.stack([np.broadcast_to(value, shape) for value in (
            k["central_volume"], *(k[v] for _, v in _INTER[:self.n_peripheral]))], axis=-1)

    def _per_compartment(self, name: str, unit: str, default: float) -> np.ndarray:
        """F, ALAG, modelled rate or duration over the body compartments; a scalar is the
        depot's (its meaning before per-compartment values)."""
        value = getattr(self.params, name)
        out = np.full(len(self.body), default)
        if value is None:
            return out
        if not isinstance(value, dict):
            if "depot" in self.body:
                out[self.body.index("depot")] = float(value.m_as(unit)) if unit else \
                    float(value)
            return out
        for key, v in value.items():
            if key in self.body:
                out[self.body.index(key)] = float(v.m_as(unit)) if unit else float(v)
        return out

    def _engine_kinetics(self) -> engine.Kinetics:
        """The rate matrix split into the body block and the elimination row, per segment."""
        kmat = self.rate_matrix()
        if kmat.ndim == 2:
            kmat = kmat[None]
        size = kmat.shape[0]
        nb = len(self.body)
        e = self.states.index("eliminated")
        vols = np.broadcast_to(self.volumes(), (size, len(self.tissues)))
        subject = getattr(self, "_seg_subject", None)
        if subject is None or subject.size != size:
            subject, start = np.arange(size), np.full(size, -np.inf)
        else:
            start = self._seg_start
        kin = engine.Kinetics(
            subject, start, np.ascontiguousarray(kmat[:, :nb, :nb]),
            np.ascontiguousarray(kmat[:, e, :nb]),
            np.broadcast_to(self._per_compartment("bioavailability", "", 1.0),
                            (size, nb)).copy(),
            np.broadcast_to(self._per_compartment("lag_time", "h", 0.0), (size, nb)).copy(),
            np.broadcast_to(self._per_compartment("infusion_rate", f"{self.unit}/h",
                                                  np.nan), (size, nb)).copy(),
            np.broadcast_to(self._per_compartment("infusion_duration", "h", np.nan),
                            (size, nb)).copy(),
            np.ascontiguousarray(vols[:, 0]),
            nocb=bool(getattr(self, "from_data", False))
            and self.params.covariate_interpolation == "nocb")
        mm = self._michaelis_menten()
        if mm is not None:
            kin.vmax = np.ascontiguousarray(np.broadcast_to(
                mm[0] * self._eta_factor("vmax"), (size,)), float)
            kin.km = np.ascontiguousarray(np.broadcast_to(
                mm[1] * self._eta_factor("km"), (size,)), float)
        sessions = getattr(self, "sessions", [])
        if not sessions:
            return kin
        return engine.with_clearance(kin, self.body.index("central"),
                                     [(s.start, s.stop, s.clearance) for s in sessions])

    def rate_matrix(self) -> np.ndarray:
        """K (1/h) over :attr:`states`, (n, n) or (P, n, n) for a population; its columns
        sum to zero."""
        k = self._kinetics()
        idx = {name: i for i, name in enumerate(self.states)}
        n = len(self.states)
        size = self._batch_size()
        kmat = np.zeros(n * n) if size is None else np.zeros((size, n * n))
        kmat = kmat.reshape((*kmat.shape[:-1], n, n))
        c = idx["central"]

        def flow(src: int, dst: int, rate: Any) -> None:
            kmat[..., src, src] -= rate
            kmat[..., dst, src] += rate

        if self.has_oral:
            flow(idx["depot"], c, self._ka())
        v1 = k["central_volume"]
        flow(c, idx["eliminated"], k["clearance"] / v1)
        for j, (q_name, v_name) in enumerate(_INTER[:self.n_peripheral]):
            p = idx[_PERIPHERAL[j]]
            flow(c, p, k[q_name] / v1)
            flow(p, c, k[q_name] / k[v_name])
        return kmat

    def _michaelis_menten(self) -> tuple[float, float] | None:
        """(Vmax in amount/h, Km in amount/L) in the ledger's unit, or None."""
        mm = self.params.michaelis_menten
        if mm is None:
            return None
        try:
            return (float(mm.vmax.m_as(f"{self.unit}/h")), float(mm.km.m_as(f"{self.unit}/L")))
        except pint.DimensionalityError:
            raise ScenarioError([("parameters.michaelis_menten", f"vmax and km must be in "
                                  f"{self.unit} (per h, per L) like the doses")]) from None

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        # declared from the records alone: the doses at t0 in the body and the steady-state
        # content, as the engine books them before anything is propagated
        t0 = float(self.scenario.time.start.m_as("h"))
        res = getattr(self, "_declared_books", None)
        if res is None:
            res = self._engine(self._run_records, np.array([t0]))
        assert res.grid_ledger is not None and res.grid is not None and res.grid[0] == t0
        led = res.grid_ledger[:, 0, :]
        start = led[:, 4] + led[:, 0] - led[:, 1] - led[:, 3]
        return {"drug": Q_(start[0] if self.n_patients is None else start, self.unit)}

    # -- the run ---------------------------------------------------------------------------
    def _solver_records(self) -> RecordTable:
        """The records the solver is given (a seam for tests of broken models)."""
        return self._run_records

    def _engine(self, table: RecordTable, grid_h: np.ndarray | None,
                before: tuple[np.ndarray, np.ndarray] | None = None,
                concentrations: tuple[np.ndarray, np.ndarray] | None = None
                ) -> engine.EngineResult:
        try:
            # the declared records were validated when the model was built
            return engine.simulate(table, self._engine_kinetics(), compartments=self.body,
                                   central=self.body.index("central"), default_dose=0,
                                   grid=grid_h, validated=table is self._run_records,
                                   before=before, concentrations=concentrations)
        except engine.RecordError as exc:
            raise ScenarioError(self._record_problems(exc)) from None

    def _output_times_h(self) -> np.ndarray:
        """The grid and the explicit times ``time.at``, in hours (the engine snaps any of
        them within rounding of a dose time to that dose time)."""
        return self.scenario.time.grid_and_explicit_times() / 3600.0

    def _ledger_terms(self, led: np.ndarray, nonzero: np.ndarray
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Inflow and outflow routes from the engine's cumulative books (…, 6), each counted
        from the first output time (what was there then is the declared initial amount);
        ``nonzero``: which columns the engine found not zero (its ``grid_nonzero``)."""
        def term(k: int) -> np.ndarray:
            x = led[..., k]
            first = x[:1]
            # most terms start at 0: a view then, not a copy of a (T, P) array
            return x - first if np.any(first != 0) else x

        inflow = {"doses": term(0)}
        if nonzero[4]:
            inflow["steady_state"] = term(4)
        outflow = {"eliminated": term(2)}
        # like reset and steady_state: a route only when the records put something on it (an
        # intravenous regimen has none unabsorbed; the zero route cost a batch a (T, P) sum)
        if nonzero[1]:
            outflow["unabsorbed"] = term(1)
        if nonzero[3]:
            outflow["reset"] = term(3)
        if getattr(self, "sessions", None):
            outflow["dialysate"] = term(5)
        return inflow, outflow

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        times_h = self._output_times_h()
        solver = self._solver_records()
        intervals, before = self._dose_intervals(times_h) if self.from_data else (None, None)
        tissue_idx = [self.body.index(n) for n in self.tissues]
        vols = np.broadcast_to(self.volumes(), (self._batch_size() or 1, len(self.tissues)))
        n_sub = int(self._seg_subject[-1]) + 1
        first_seg = np.searchsorted(self._seg_subject, np.arange(n_sub))
        sub_vols = vols[first_seg]
        # the other tissues' concentrations (amount over the subject's volume) come from the
        # engine's loop with the grid: a (P, T) pass of their own cost a chunk more
        res = self._engine(solver, times_h, before,
                           concentrations=(np.array(tissue_idx[1:], np.int64), sub_vols[:, 1:]))
        books = res if solver is self._run_records else self._engine(self._run_records,
                                                                     times_h)
        self._declared_books = books  # the books of the declared records, from t0
        assert res.grid is not None and res.grid_amounts is not None
        assert books.grid_ledger is not None and res.grid_concentrations is not None
        assert books.grid_nonzero is not None and res.grid_nonzero is not None
        times_s = res.grid * 3600.0
        unit = self.unit
        amt = res.grid_amounts  # (P, T, n), each patient's curve contiguous
        # (P, T, tissues): central over the volume in force at each time, then the others
        conc = res.grid_concentrations
        led = books.grid_ledger.transpose(1, 0, 2)  # (T, P, 5)
        state_led = res.grid_ledger
        assert state_led is not None
        batched = self.n_patients is not None
        if batched:
            amt, conc = amt.transpose(1, 0, 2), conc.transpose(1, 0, 2)
            eliminated, unabsorbed = state_led[..., 2].T, state_led[..., 1].T
            removed = state_led[..., 3].T
        else:
            amt, conc, led = amt[0], conc[0], led[:, 0, :]
            eliminated, unabsorbed, removed = (state_led[0, :, 2], state_led[0, :, 1],
                                               state_led[0, :, 3])
            sub_vols = sub_vols[0]
        if not res.grid_nonzero[1]:
            # nothing unabsorbed (no oral dose with F < 1): the engine's column is untouched
            # zero pages, which a batch's finiteness audit would read (and fault in) 24 MB of;
            # one +0.0 for every element instead, read-only
            unabsorbed = np.broadcast_to(np.zeros(()), unabsorbed.shape)
        batch: tuple[str, ...] = ("patient",) if batched else ()
        coords: dict[str, Any] = {
            "time": ("time", times_s, {"units": "s", "long_name": "time"}),
            **self.domain.coords(),
            "tissue": ("tissue", np.asarray(self.tissues), {"long_name": "compartment "
                                                                         "with a volume"}),
            "tissue_volume": ((*batch, "tissue"), sub_vols,
                              {"units": "L", "long_name": "compartment volume"}),
        }
        if batched:
            replicated = self.from_data and self.scenario.population is not None and \
                self.scenario.population.replicates is not None
            coords["patient"] = ("patient", self.patient_ids if not self.from_data else
                                 np.arange(self.n_patients or 0) + (
                                     int(self.patient_ids[0]) if replicated and
                                     self.patients is not None else 0),
                                 {"units": "1", "long_name": "subject of the data set"
                                  if self.from_data else "virtual patient"})
        data: dict[str, Any] = {
            "amount": (("time", *batch, "compartment"), amt,
                       {"units": unit, "long_name": "amount of drug"}),
            "eliminated": (("time", *batch), eliminated,
                           {"units": unit, "long_name": "cumulative drug eliminated"}),
            "unabsorbed": (("time", *batch), unabsorbed,
                           {"units": unit, "long_name": "cumulative dose not absorbed (1 − F)"}),
        }
        name = "grid_concentration" if self.from_data else "concentration"
        data[name] = (("time", *batch, "tissue"), conc,
                      {"units": f"{unit}/L", "long_name": "drug concentration"})
        if res.grid_nonzero[3]:
            data["removed"] = (("time", *batch), removed,
                               {"units": unit, "long_name": "cumulative drug removed by "
                                                            "resets (EVID 3/4, SS 1)"})
        if getattr(self, "sessions", None):
            dial = state_led[..., 5].T if batched else state_led[0, :, 5]
            data["dialysate"] = (("time", *batch), dial,
                                 {"units": unit, "long_name": "cumulative drug removed into "
                                  "the dialysate (dialysis and CRRT)"})
        ds = xr.Dataset(data, coords=coords)
        if getattr(self, "sessions", None):
            self._attach_sessions(ds, solver, batched)
        if batched:
            kin = self._kinetics()
            rows = first_seg
            # added in one update: each assignment to a Dataset is a merge of its own
            per_patient = {key: ("patient", np.broadcast_to(value, (vols.shape[0],))[rows],
                                 {"units": "L" if "volume" in key else "L/h",
                                  "long_name": f"{key.replace('_', ' ')} of each patient"})
                           for key, value in kin.items()}
            if self.has_oral:
                per_patient["absorption_rate"] = ("patient", np.broadcast_to(
                    self._ka(), (vols.shape[0],))[rows], {"units": "1/h", "long_name":
                                                          "absorption rate of each patient"})
            ds.update(per_patient)
        for label in ("compartment", "tissue"):
            ds[label].attrs["units"] = "1"
        inflow, outflow = self._ledger_terms(led, books.grid_nonzero)
        ledger = Ledger.of("drug", unit, times_s.size, inflow=inflow, outflow=outflow)
        if self.from_data:
            self._attach_records(ds, res, books)
            from medtransport_pk.observed import attach_observed_nca

            attach_observed_nca(ds, self.records, "patient")
            if intervals is not None:
                self._attach_subject_interval_nca(ds, res, *intervals)
        elif not batched:
            self._attach_nca(ds)
        if progress is not None:
            progress(1.0)
        return Trajectory(ds, {"drug": ledger}, notes={"kinetics": self._kinetics(),
                                                       "engine": res, "books": books})

    def _attach_sessions(self, ds: xr.Dataset, table: RecordTable, batched: bool) -> None:
        """Per session, the drug removed into the dialysate by it up to time.stop: the
        engine's dialysate books at the session's start and end (or time.stop)."""
        t_stop = float(self.scenario.time.stop.m_as("h"))
        shown = [s for s in self.sessions if s.start < t_stop]
        if not shown:
            return
        t1 = np.array([s.start for s in shown])
        t2 = np.minimum([s.stop for s in shown], t_stop)
        grid = np.unique(np.concatenate([t1, t2]))
        res = self._engine(table, grid)
        assert res.grid_ledger is not None and res.grid is not None
        dial = res.grid_ledger[..., 5]  # (P, G)
        at = {float(t): j for j, t in enumerate(grid)}
        removed = dial[:, [at[float(t)] for t in t2]] - dial[:, [at[float(t)] for t in t1]]
        batch: tuple[str, ...] = ("patient",) if batched else ()
        ds.coords["session"] = ("session", np.arange(len(shown)),
                                {"units": "1", "long_name": "dialysis or CRRT session"})
        ds["session_start"] = ("session", t1, {"units": "h", "long_name": "session start"})
        ds["session_end"] = ("session", t2, {"units": "h", "long_name": "session end (or "
                                             "time.stop)"})
        ds["session_clearance"] = ("session", [s.clearance for s in shown],
                                   {"units": "L/h", "long_name": "extra clearance on central "
                                    "(CL_D)"})
        ds["dialysis_removed"] = (("session", *batch), removed.T if batched else removed[0],
                                  {"units": self.unit, "long_name": "drug removed into the "
                                   "dialysate by the session"})

    def audits(self) -> list[Any]:
        """The books at every record (not only on the grid), and the steady states."""
        return [_audit_record_books, _audit_steady_state]

    def _attach_records(self, ds: xr.Dataset, res: engine.EngineResult,
                        books: engine.EngineResult) -> None:
        """The data set's records in its order, with the prediction at each."""
        table = self.records
        assert table is not None
        unit = self.unit
        rec = "record"
        ds.coords[rec] = (rec, np.arange(len(table)), {"units": "1",
                                                       "long_name": "record of the data set"})
        ds["ID"] = (rec, table.id, {"units": "1", "long_name": "subject identifier"})
        ds["TIME"] = (rec, table.time, {"units": "h", "long_name": "time of the record"})
        ds["EVID"] = (rec, table.evid, {"units": "1", "long_name": "event identifier"})
        ds["MDV"] = (rec, table.mdv, {"units": "1", "long_name": "missing dependent variable"})
        # NONMEM's convention: a record without an observation has MDV 1 and its DV is
        # ignored; a missing DV is stored as 0 there so that every value stays finite
        missing = ~np.isfinite(table.dv)
        ds["MDV"] = (rec, np.where(missing, 1, table.mdv), ds["MDV"].attrs)
        ds["DV"] = (rec, np.where(missing, 0.0, table.dv),
                    {"units": table.dv_unit or "dimensionless",
                     "long_name": "observed value (0 where missing, MDV 1)"})
        ds["concentration"] = (rec, res.record_concentration,
                               {"units": f"{unit}/L", "long_name": "predicted central "
                                "concentration (PRED)"})
        ds["record_amount"] = ((rec, "compartment"), res.record_amounts,
                               {"units": unit, "long_name": "amount of drug at the record"})
        ds["record_subject"] = (rec, res.record_subject, {"units": "1",
                                                          "long_name": "subject index"})
        ds["subject_id"] = ("patient", self._subject_ids, {"units": "1",
                                                           "long_name": "ID of the subject"})
        source = getattr(self, "_replica_of", None)
        if source is not None:  # replicates: the data set's subject each patient copies
            ds["subject_id"] = ("patient", source, {"units": "1", "long_name": "ID of the data "
                                                    "set's subject this patient replicates"})
            ds["replicate"] = ("patient", (self.patient_ids if self.patients is not None else
                                           np.arange(source.size)) // self._data_subjects,
                               {"units": "1", "long_name": "replicate of the data set"})
        resid = engine.EngineResult.residual(res.record_amounts, books.record_ledger)
        ds["record_drug_residual"] = (rec, resid, {"units": unit, "long_name": "books' "
                                      "residual at the record"})
        if table.dv_unit is not None:
            try:
                factor = Q_(1.0, f"{unit}/L").m_as(table.dv_unit)
                ds["concentration_dv_unit"] = (rec, res.record_concentration * factor,
                                               {"units": table.dv_unit, "long_name":
                                                "PRED in the unit of DV"})
            except pint.DimensionalityError:
                pass
        self._attach_dv_sim(ds, res)

    def _attach_dv_sim(self, ds: xr.Dataset, res: engine.EngineResult) -> None:
        """Seeded simulated observations ``DV_sim`` = PRED with the scenario's residual error
        (``residual_error``), on the records that are observations (MDV 0), in DV's unit."""
        spec = getattr(self.scenario, "residual_error", None)
        table = self.records
        if spec is None or table is None:
            return
        from medtransport.estimation.residual import ResidualError

        dv_unit = table.dv_unit or f"{self.unit}/L"
        try:
            model = ResidualError.from_spec(spec, dv_unit)
            pred = Q_(res.record_concentration, f"{self.unit}/L").m_as(dv_unit)
        except (ValueError, pint.DimensionalityError) as exc:
            raise ScenarioError([("residual_error", str(exc))]) from None
        seed = self.scenario.seed if self.scenario.seed is not None else self.seed
        if seed is None:
            import secrets

            seed = secrets.randbits(63)
        # its own stream, so that adding DV_sim changes no other draw of the run
        rng = np.random.default_rng([int(seed), 0x5EED_D5])
        sim = model.simulate(pred, rng)
        observed = np.asarray(ds["MDV"].values) == 0
        ds["DV_sim"] = ("record", np.where(observed & np.isfinite(sim), sim, 0.0),
                        {"units": dv_unit, "long_name": f"simulated observation: PRED with "
                         f"{model.kind} residual error (0 where MDV 1)"})
        ds.attrs["dv_sim_seed"] = int(seed)

    def _attach_nca(self, ds: xr.Dataset) -> None:
        """NCA of the central concentration over the whole run, as 0-d variables with units.

        The route decides the AUC start and the λz window (extravascular if any dose is oral,
        else infusion if any is infused); with a single dose CL and V_z follow from it."""
        rec = self.records
        assert rec is not None
        doses = np.flatnonzero((rec.evid == 1) | (rec.evid == 4))
        depot = self.body.index("depot") + 1 if "depot" in self.body else -1
        routes = {"oral" if rec.cmt[i] == depot or (rec.cmt[i] == 0 and depot == 1)
                  else "infusion" if rec.rate[i] != 0 else "bolus" for i in doses}
        single = doses.size == 1 and rec.addl[doses[0]] == 0 and rec.ss[doses[0]] == 0 \
            and not np.any(rec.evid == 3)
        first = float(rec.amt[doses[0]]) if doses.size else 0.0
        route = "extravascular" if "oral" in routes else \
            "infusion" if "infusion" in routes else "iv_bolus"
        conc = ds["concentration"].sel(tissue="central")
        t = ds["time"].values - ds["time"].values[0]
        dose = Q_(first, self.unit) if single else None
        try:
            result = nca(Q_(t / 3600.0, "h"), Q_(conc.values, conc.attrs["units"]), dose=dose,
                         route=route)  # type: ignore[arg-type]
        except ValueError:
            return  # e.g. no positive concentration: nothing to report
        rows = result.to_table()
        # The linear-trapezoid AUC too: regulators and older protocols ask for it.
        linear = nca(Q_(t / 3600.0, "h"), Q_(conc.values, conc.attrs["units"]), route=route,
                     auc_method="linear")  # type: ignore[arg-type]
        rows.append(("auc_last_linear", float(linear.auc_last.magnitude),
                     f"{linear.auc_last.units:~C}"))
        single_dose_only = {"auc_inf", "lambda_z", "half_life", "percent_auc_extrapolated",
                            "lambda_z_points", "lambda_z_adjusted_r2", "clearance",
                            "volume_z"}
        for name, value, units in rows:
            if not np.isfinite(value):
                continue  # not estimable here (a flat profile has no terminal slope)
            if not single and name in single_dose_only:
                continue  # a regimen: these belong to a single dose
            if name in ("lambda_z_points", "lambda_z_adjusted_r2"):
                units = "dimensionless"
            ds[f"nca_{name}"] = ((), value, {"units": units or "dimensionless",
                                             "long_name": f"NCA {name.replace('_', ' ')} of "
                                                          "the central concentration"})
        ds.attrs["nca_route"] = route
        if not single:
            self._attach_interval_nca(ds, route, conc.attrs["units"])

    def _attach_interval_nca(self, ds: xr.Dataset, route: str, unit: str) -> None:
        """NCA per dosing interval (:mod:`medtransport_pk.nca_intervals`) over a
        ``dose_interval`` dimension, and CL/F at steady state."""
        rec = self.records
        assert rec is not None
        doses = np.flatnonzero((rec.evid == 1) | (rec.evid == 4))
        times, amts, steady = [], [], []
        for i in doses:
            k = np.arange(int(rec.addl[i]) + 1)
            times.append(rec.time[i] + k * rec.ii[i])
            amts.append(np.full(k.size, rec.amt[i]))
            steady.append(np.full(k.size, rec.ss[i] > 0))
        if not times:
            return
        t_all = np.concatenate(times)
        order = np.argsort(t_all, kind="stable")
        t_all, a_all, s_all = t_all[order], np.concatenate(amts)[order], \
            np.concatenate(steady)[order]
        starts, idx = np.unique(t_all, return_index=True)
        dose = np.add.reduceat(a_all, idx)
        ss = np.logical_or.reduceat(s_all, idx)
        last_ii = float(rec.ii[doses].max())
        t_end = float(ds["time"].values[-1]) / 3600.0
        ends = np.append(starts[1:], starts[-1] + last_ii if last_ii > 0 else np.inf)
        resets = rec.time[rec.evid == 3]
        keep = (ends <= t_end + 1e-9) & np.array(
            [not np.any((resets > s) & (resets <= e)) for s, e in zip(starts, ends, strict=True)])
        if not keep.any():
            return
        starts, ends, dose, ss = starts[keep], ends[keep], dose[keep], ss[keep]
        grid = np.union1d(ds["time"].values / 3600.0, starts)
        res = engine.simulate(self._run_records, self._engine_kinetics(),
                              compartments=self.body, central=self.body.index("central"),
                              default_dose=0, grid=grid,
                              before=(np.zeros(ends.size, np.int64), ends))
        assert res.grid is not None and res.grid_concentration is not None
        assert res.before_amounts is not None
        vol = float(np.ravel(self.volumes())[0])
        c_end = res.before_amounts[:, self.body.index("central")] / vol
        try:
            out = interval_nca(res.grid, res.grid_concentration[0], starts, ends, dose, c_end,
                               ss, route)  # type: ignore[arg-type]
        except ValueError:
            return
        ok = np.isfinite(out.auc_tau)
        if not ok.any():
            return
        dim = "dose_interval"
        ds.coords[dim] = (dim, np.arange(int(ok.sum())), {"units": "1",
                                                          "long_name": "dosing interval"})
        auc_unit = f"{unit}*h"
        for name, values, units, label in (
                ("start", out.start, "h", "time of the dose opening the interval"),
                ("tau", out.tau, "h", "length of the interval"),
                ("auc_tau", out.auc_tau, auc_unit, "AUC over the interval"),
                ("cmax", out.cmax, unit, "largest concentration in the interval"),
                ("tmax", out.tmax, "h", "time of Cmax after the dose"),
                ("cmin", out.cmin, unit, "lowest concentration in the interval"),
                ("ctrough", out.ctrough, unit, "concentration just before the next dose"),
                ("cavg", out.cavg, unit, "AUCτ/τ"),
                ("accumulation_ratio", out.accumulation_ratio, "dimensionless",
                 "AUCτ relative to the first interval's"),
                ("at_steady_state", out.at_steady_state.astype(np.int8), "1",
                 "1 where the interval is at steady state")):
            ds[f"nca_interval_{name}"] = (dim, np.asarray(values)[ok],
                                          {"units": units, "long_name": f"NCA {label} "
                                           "(central)"})
        ss_rows = np.flatnonzero(ok & out.at_steady_state)
        if ss_rows.size:
            j = ss_rows[-1]
            cl = Q_(float(out.clearance[j]), f"{self.unit}/({auc_unit})")
            ds["nca_clearance_ss"] = ((), float(cl.m_as("L/h")), {
                "units": "L/h", "long_name": "NCA CL/F = Dose/AUCτ at steady state (the last "
                "interval at steady state)"})

    def _dose_intervals(self, times_h: np.ndarray) -> tuple[Any, Any]:
        """Every subject's dosing intervals (:mod:`medtransport_pk.subject_intervals`), which
        of them close within the output times, and the engine's query for the troughs just
        before their ends (asked in the run's own pass: no second pass for them)."""
        from medtransport_pk import subject_intervals as si

        table = self._run_records
        block, _ = engine.subject_blocks(table.id)
        iv = si.dosing_intervals(table, block)
        inside = np.isfinite(iv.end) & (iv.end <= times_h[-1] + 1e-9) & \
            (iv.start >= times_h[0] - 1e-9)
        if not inside.any():
            return None, None
        return (iv, inside), (iv.subject[inside], iv.end[inside])

    def _attach_subject_interval_nca(self, ds: xr.Dataset, res: engine.EngineResult,
                                     iv: Any, inside: np.ndarray) -> None:
        """NCA per dosing interval of every subject's predicted central concentration
        (:mod:`medtransport_pk.subject_intervals`), one row per (subject, interval)."""
        from medtransport_pk import subject_intervals as si

        table = self._run_records
        kin = self._engine_kinetics()
        assert res.grid is not None and res.grid_concentration is not None
        assert res.before_amounts is not None
        grid, conc = res.grid, res.grid_concentration
        ends = iv.end[inside]
        missing = np.setdiff1d(iv.start[inside], res.grid)
        if missing.size:
            # a small pass for the starts off the output grid (a grid value at a dose time
            # is after the dose), merged into the run's grid
            run = engine.simulate(table, kin, compartments=self.body,
                                  central=self.body.index("central"), default_dose=0,
                                  grid=missing, validated=True)
            assert run.grid is not None and run.grid_concentration is not None
            grid = np.union1d(res.grid, run.grid)
            conc = np.empty((res.grid_concentration.shape[0], grid.size))
            conc[:, np.searchsorted(grid, res.grid)] = res.grid_concentration
            conc[:, np.searchsorted(grid, run.grid)] = run.grid_concentration
        seg = engine._segments_at(iv.subject[inside], ends, kin, strict=kin.nocb)
        c_end = np.full(iv.start.size, np.nan)
        c_end[inside] = res.before_amounts[:, self.body.index("central")] / kin.volume[seg]
        rows, out = si.profile_interval_nca(iv, grid, conc, c_end)
        if rows.size == 0:
            return
        ratio, at_ss, clearance = si.regimen_metrics(iv, rows, out.auc)
        unit = f"{self.unit}/L"
        tau = (iv.end - iv.start)[rows]
        cl = Q_(clearance, f"{self.unit}/({unit}*h)").m_as("L/h")
        columns = (
            ("patient", iv.subject[rows], "1", "subject (index along patient)"),
            ("number", iv.rank[rows], "1", "the subject's k-th interval (0: from its first "
             "dose)"),
            ("start", iv.start[rows], "h", "time of the dose opening the interval"),
            ("tau", tau, "h", "length of the interval"),
            ("dose", iv.dose[rows], self.unit, "dose opening the interval"),
            ("auc_tau", out.auc, f"{unit}*h", "AUC over the interval"),
            ("cmax", out.cmax, unit, "largest concentration in the interval"),
            ("tmax", out.tmax, "h", "time of Cmax after the dose"),
            ("cmin", out.cmin, unit, "lowest concentration in the interval"),
            ("ctrough", c_end[rows], unit, "concentration just before the next dose"),
            ("cavg", out.auc / tau, unit, "AUCτ/τ"),
            ("accumulation_ratio", ratio, "dimensionless",
             "AUCτ relative to the subject's first interval's"),
            ("at_steady_state", at_ss.astype(np.int8), "1",
             "1 where the interval is at steady state"),
            ("clearance", cl, "L/h", "Dose/AUCτ: CL/F where at_steady_state is 1"))
        # one row per (subject, interval): subjects have different numbers of intervals, and
        # a result holds no NaN padding (finiteness audit)
        finite = np.all([np.isfinite(np.asarray(v, float)) for _, v, _, _ in columns], axis=0)
        if not finite.any():
            return
        dim = "dose_interval"
        # one merge into the (large) result: a merge per variable costs ms each
        ds.update(xr.Dataset({f"nca_interval_{name}": (dim, np.asarray(values)[finite], {
            "units": units, "long_name": f"NCA {label} (central)"})
            for name, values, units, label in columns}, coords={dim: (dim, np.arange(
                int(finite.sum())), {"units": "1", "long_name": "dosing interval of a "
                                     "subject (row)"})}))

    # -- presentation ----------------------------------------------------------------------
    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        """Concentration–time curves and the drug account; for a population, percentile
        bands per patient (see :mod:`medtransport_pk.plots`); a data set's run: observed DV
        against the predictions per subject (:mod:`medtransport_pk.dataplot`)."""
        if "record" in dataset.dims:
            from medtransport_pk.dataplot import plot_records

            plot_records(dataset, figure, self.scenario.name, table=self.records)
            return
        from medtransport_pk.plots import plot_one, plot_population

        (plot_population if "patient" in dataset.dims else plot_one)(self, dataset, figure)

    def summary(self, dataset: xr.Dataset) -> tuple[str, list[str], list[list[str]]] | None:
        """For a data set's run, one row per subject: doses, observations, the observed-data
        NCA and how the predictions compare (:mod:`medtransport_pk.observed`)."""
        if not getattr(self, "from_data", False) or self.records is None:
            return None
        from medtransport_pk.observed import subject_summary

        return subject_summary(self.records, dataset)

    # -- conformance -----------------------------------------------------------------------
    @classmethod
    def _base_parameters(cls) -> dict[str, Any]:
        p: dict[str, Any] = {"clearance": "4.6 L/h", "central_volume": "30 L"}
        if cls.n_peripheral >= 1:
            p.update(intercompartmental_clearance="6.9 L/h", peripheral_volume="40 L")
        if cls.n_peripheral >= 2:
            p.update(intercompartmental_clearance_2="1.2 L/h", peripheral_volume_2="80 L")
        return p

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        base = cls._base_parameters()
        day = {"stop": "24 h", "step": "30 min"}
        return [
            {"name": "oral every 12 h", "model": cls.id,
             "parameters": {**base, "absorption_rate": "1.5 1/h", "bioavailability": 0.9},
             "events": [{"type": "oral", "amount": "320 mg", "every": "12 h", "count": 2}],
             "time": day},
            {"name": "infusion q12h with additional doses, weight-scaled", "model": cls.id,
             "patient": {"weight": "80 kg", "age": "45 year", "sex": "male",
                         "serum_creatinine": "0.9 mg/dL"},
             "parameters": {**base, "allometric": {}, "renal_function": {"fraction": 0.8}},
             "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h",
                         "every": "12 h", "count": 3}],
             "time": {"stop": "36 h", "step": "15 min"}},
            {"name": "two boluses", "model": cls.id, "parameters": base,
             "events": [{"type": "bolus", "amount": "100 mg"},
                        {"type": "bolus", "amount": "50 mg", "at": "6.2 h"}],
             "time": day},
            {"name": "oral at steady state with lag", "model": cls.id,
             "parameters": {**base, "absorption_rate": "1.2 1/h", "bioavailability": 0.8,
                            "lag_time": "0.5 h"},
             "events": [{"type": "oral", "amount": "200 mg", "every": "12 h", "count": 2,
                         "steady_state": True}],
             "time": day},
            {"name": "saturable elimination (Michaelis–Menten), oral and infusion",
             "model": cls.id,
             "parameters": {**base, "clearance": "0.5 L/h", "absorption_rate": "1 1/h",
                            "michaelis_menten": {"vmax": "20 mg/h", "km": "4 mg/L"}},
             "events": [{"type": "oral", "amount": "300 mg", "every": "12 h", "count": 2},
                        {"type": "infusion", "amount": "100 mg", "duration": "2 h",
                         "at": "5 h"}],
             "time": day},
        ]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        base = cls._base_parameters()
        cases: list[tuple[dict[str, Any], str]] = [
            ({**base, "clearance": "5 mL"}, "clearance"),
            ({**base, "central_volume": "-3 L"}, "central_volume"),
            ({k: v for k, v in base.items() if k != "central_volume"}, "central_volume"),
            ({**base, "bioavailability": 1.5}, "bioavailability"),
            ({**base, "absorption_rate": "2 h"}, "absorption_rate"),
            ({**base, "vmax": "10 mg/h"}, "vmax"),  # belongs in michaelis_menten
            ({**base, "michaelis_menten": {"vmax": "10 L", "km": "4 mg/L"}},
             "michaelis_menten"),
        ]
        if cls.n_peripheral >= 1:
            cases.append(({k: v for k, v in base.items() if k != "peripheral_volume"},
                          "peripheral_volume"))
        return cases

    @classmethod
    def estimation_problem(cls, scenario: Any) -> tuple[Any, Any]:
        """The scenario and its data as an estimation problem (:mod:`medtransport_pk.fitting`);
        what ``medtransport fit`` calls."""
        from medtransport_pk.dataset import read_dataset
        from medtransport_pk.fitting import estimation_problem

        table = read_dataset(scenario)
        if table is None:
            raise ScenarioError([("data", "a fit needs observations: give a data section "
                                          "(data: {path: levels.csv, units: {TIME: h, "
                                          "DV: mg/L}})")])
        return estimation_problem(scenario, table, cls.validate_params(scenario.parameters))


class OneCompartment(PKModel):
    id = "pk.one_compartment"
    title = "One-compartment pharmacokinetics"
    description = ("A drug in one well-mixed central compartment with first-order elimination "
                   "(clearance CL, volume V), dosed by IV bolus, zero-order infusion or oral "
                   "first-order absorption (ka, lag, F), with NONMEM-style repeats and steady "
                   "state; solved exactly by the matrix exponential "
                   "(or by an ODE solver with optional "
                   "Michaelis–Menten elimination).")
    Params = OneCompartmentParams
    n_peripheral = 0


class TwoCompartment(PKModel):
    id = "pk.two_compartment"
    title = "Two-compartment pharmacokinetics"
    description = ("A drug in a central and a peripheral compartment (CL, V1, Q, V2) with "
                   "elimination from the central one, dosed by IV bolus, zero-order infusion or "
                   "oral first-order absorption (ka, lag, F), with NONMEM-style repeats and "
                   "steady state; solved exactly by the matrix exponential "
                   "(or by an ODE solver with optional "
                   "Michaelis–Menten elimination).")
    Params = TwoCompartmentParams
    n_peripheral = 1


class ThreeCompartment(PKModel):
    id = "pk.three_compartment"
    title = "Three-compartment pharmacokinetics"
    description = ("A drug in a central and two peripheral compartments (CL, V1, Q, V2, Q3, "
                   "V3) with elimination from the central one, dosed by IV bolus, zero-order "
                   "infusion or oral first-order absorption (ka, lag, F), with NONMEM-style "
                   "repeats and steady state; solved exactly by the matrix exponential "
                   "(or by an ODE solver with optional "
                   "Michaelis–Menten elimination).")
    Params = ThreeCompartmentParams
    n_peripheral = 2


def _audit_record_books(ctx: Any) -> list[Any]:
    """Σ body = steady_state + given − unabsorbed − eliminated − reset at every record of every
    subject, the books of the declared records against the solver's amounts."""
    from medtransport.audit import AuditResult

    notes = ctx.trajectory.notes
    res, books = notes["engine"], notes["books"]
    unit = ctx.model.unit
    if res.record_amounts.shape[0] == 0:
        return [AuditResult("record_books[drug]", True, 0.0, 0.0, unit, "no records")]
    resid = engine.EngineResult.residual(res.record_amounts, books.record_ledger)
    scale = float(max(np.max(np.abs(books.record_ledger)),
                      np.max(np.abs(res.record_amounts.sum(axis=-1)))))
    tol = ctx.tolerance.atol + ctx.tolerance.rtol * scale
    bad = ~np.isfinite(resid)
    worst = float(np.max(np.abs(np.where(bad, np.inf, resid))))
    passed = bool(worst <= tol)
    detail = f"max |Σ body − books| over {resid.size} records; scale {scale:.6g} {unit}"
    where: dict[str, Any] = {}
    if not passed:
        i = int(np.argmax(np.abs(np.where(bad, np.inf, resid))))
        table = ctx.model.records if ctx.model.from_data else None
        where = {"record": i}
        if table is not None:
            detail += f"; worst at {table.where(i)}"
    return [AuditResult("record_books[drug]", passed, worst, tol, unit, detail, where)]


def _audit_steady_state(ctx: Any) -> list[Any]:
    """Each SS 1 record's declared state is periodic: one interval later, before anything
    else happens then, the body holds exactly that state again (a steady state that counts
    the record's own dose twice is not)."""
    from medtransport.audit import AuditResult

    res = ctx.trajectory.notes["engine"]
    unit = ctx.model.unit
    if res.check_residual is None:
        return []
    worst = float(np.max(np.abs(res.check_residual)))
    passed = bool(res.check_ok.all())
    return [AuditResult("steady_state[drug]", passed, worst, 0.0, unit,
                        f"state one interval after {res.check_residual.shape[0]} steady-state "
                        "records against the declared steady state (1e-9 relative)")]


#: how a data set's ``sex`` covariate codes female (NONMEM data sets commonly use 1 = female)
_FEMALE_CODE = 1


def _find_key(mapping: dict[str, Any], name: str) -> str | None:
    """``name`` among a data set's covariate columns, exactly or ignoring case."""
    if name in mapping:
        return name
    lower = {k.lower(): k for k in mapping}
    return lower.get(name.lower())


def _fill(values: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Missing covariate values (NaN) of each subject: the last observation carried forward,
    leading ones from the first observation."""
    out = values.copy()
    n = out.size
    if n == 0:
        return out
    idx = np.where(np.isnan(out), -1, np.arange(n))
    # forward fill within a subject: the last valid index so far, reset at subject starts
    first = np.ones(n, bool)
    first[1:] = block[1:] != block[:-1]
    starts = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    last = np.maximum.accumulate(idx)
    ok = last >= starts
    out = np.where(ok, out[np.maximum(last, 0)], np.nan)
    # leading gaps: the next valid value (backward fill)
    rev = np.where(np.isnan(out[::-1]), n, np.arange(n)[::-1])
    nxt = np.minimum.accumulate(rev)[::-1]
    ends = np.r_[np.flatnonzero(first)[1:], n]
    end_of = ends[np.searchsorted(np.flatnonzero(first), np.arange(n), side="right") - 1]
    ok2 = nxt < end_of
    return np.where(np.isnan(out) & ok2, out[np.minimum(nxt, n - 1)], out)


def used_covariates(p: Any) -> list[str]:
    """The covariates the parameters ``p`` read (their covariate models and effects)."""
    names = {e.covariate for e in p.covariate_effects}
    if p.allometric is not None or p.renal_function is not None:
        names.add("weight")
    if p.renal_function is not None:
        names.update({"age", "sex", "serum_creatinine"})
    return sorted(names)


def covariate_segments(table: RecordTable, names: list[str], nocb: bool
                       ) -> tuple[dict[str, tuple[np.ndarray, str]], np.ndarray, np.ndarray]:
    """Where a data set's parameters change: each subject's first record and every record at
    which one of the covariates ``names`` changes (gaps filled, :func:`_fill`).

    Returns the covariate columns used (filled values over records, unit), the first record of
    each segment and the segment's start time: −inf for a subject's first; under NOCB (NONMEM)
    the time of the record before, under LOCF the record's own time. The run and the fit both
    read a data set's covariates through this, so their predictions agree.
    """
    block, _ = engine.subject_blocks(table.id)
    columns = {}
    for name in names:
        key = _find_key(table.covariates, name)
        if key is not None:
            columns[name] = (_fill(np.asarray(table.covariates[key], float), block),
                             table.covariate_units.get(key, ""))
    n = len(table)
    first = np.ones(n, bool)
    first[1:] = block[1:] != block[:-1]
    change = np.zeros(n, bool)
    for values, _ in columns.values():
        change[1:] |= (values[1:] != values[:-1]) & ~first[1:]
    rows = np.flatnonzero(first | change)
    start = np.where(first[rows], -np.inf, table.time[np.maximum(rows - 1, 0)] if nocb
                     else table.time[rows])
    return columns, rows, start


def replicate_subjects(table: RecordTable, start: int, stop: int) -> RecordTable:
    """Patients ``start`` … ``stop − 1`` of the replicates of a data set's S subjects (in order
    of first appearance): patient i has the records of subject i mod S, with ID i + 1."""
    import dataclasses

    subjects = table.subjects()
    rows_of = [np.flatnonzero(table.id == s) for s in subjects]
    picked = [rows_of[i % subjects.size] for i in range(start, stop)]
    rows = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    ids = np.repeat(np.arange(start + 1, stop + 1), [r.size for r in picked])
    columns = {name: getattr(table, name)[rows] for name in (
        "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "mdv", "dv", "row")}
    return dataclasses.replace(table, id=ids.astype(np.int64), **columns,
                               covariates={k: v[rows] for k, v in table.covariates.items()})


def _replicate(table: RecordTable, n: int) -> RecordTable:
    """One subject's records for each of ``n`` virtual patients (IDs 1 … n)."""
    size = len(table)

    def tile(x: np.ndarray) -> np.ndarray:
        return np.tile(x, n)

    return RecordTable(
        id=np.repeat(np.arange(1, n + 1), size), time=tile(table.time), evid=tile(table.evid),
        amt=tile(table.amt), cmt=tile(table.cmt), rate=tile(table.rate), ii=tile(table.ii),
        addl=tile(table.addl), ss=tile(table.ss), mdv=tile(table.mdv), dv=tile(table.dv),
        row=tile(table.row), amount_unit=table.amount_unit, dv_unit=table.dv_unit,
        source=table.source)
