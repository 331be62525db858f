"""Covariate models for clearances and volumes.

Allometric weight scaling (Holford 1996, Clin Pharmacokinet 30:329; Anderson & Holford 2008,
Annu Rev Pharmacol Toxicol 48:303), applied to every clearance (CL, Q, Q3) and every volume::

    CL_i = CL·(WT/WT_ref)^{0.75},      V_i = V·(WT/WT_ref)^{1}

Renal function, scaling the elimination clearance only, with the creatinine clearance from
Cockcroft–Gault (``Patient.creatinine_clearance``)::

    CL_i = CL·((1 − f) + f·CrCl/CrCl_ref)

where ``f`` is the fraction of clearance that is renal at the reference creatinine clearance.

Declarative covariate effects (``covariate_effects``), each a factor on one parameter with the
covariate X in its own unit and a reference X_ref (no expression is ever evaluated)::

    power          (X/X_ref)^k                 e.g. CL = θ·(WT/70 kg)^0.75
    proportional   X/X_ref                     CL = θ·WT (X_ref = 1 kg)
    linear         1 + s·(X − X_ref)           s in 1/[X]
    exponential    exp(s·(X − X_ref))          s in 1/[X]
    categorical    factor[level] when X equals the level (1 otherwise)
    threshold      factor when X < below (or X > above), 1 otherwise

The patient is the scenario's one :class:`~medtransport.scenario.Patient` (factors are floats)
or a population's :class:`~medtransport.population.PatientBatch` of sampled covariates
(factors are arrays over patients).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
import pint
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medtransport.errors import ScenarioError
from medtransport.population import PatientBatch
from medtransport.scenario import Patient
from medtransport.units import Q_, Qty, parse_quantity

__all__ = ["Allometric", "CovariateEffect", "RenalFunction", "clearance_factor",
           "effect_factors", "volume_factor"]

#: the parameters a covariate effect may act on
EFFECT_PARAMETERS = ("clearance", "central_volume", "intercompartmental_clearance",
                     "peripheral_volume", "intercompartmental_clearance_2",
                     "peripheral_volume_2", "absorption_rate")

#: One patient, or a batch of sampled patients.
AnyPatient = Patient | PatientBatch
#: A float for one patient, an array over patients for a batch.
Factor = Any


class Allometric(BaseModel):
    """Weight scaling of clearances and volumes, relative to a reference weight."""

    model_config = ConfigDict(extra="forbid")

    reference_weight: Qty("kg", gt=0) = Q_(70.0, "kg")
    clearance_exponent: Annotated[float, Field(ge=0, le=2)] = 0.75
    volume_exponent: Annotated[float, Field(ge=0, le=2)] = 1.0


class RenalFunction(BaseModel):
    """Scaling of the elimination clearance by creatinine clearance (Cockcroft–Gault)."""

    model_config = ConfigDict(extra="forbid")

    reference_clearance: Qty("mL/min", gt=0) = Q_(100.0, "mL/min")
    fraction: Annotated[float, Field(ge=0, le=1)] = 1.0


def _patient(patient: AnyPatient | None, section: str) -> AnyPatient:
    if patient is None:
        raise ScenarioError([("patient.weight", f"parameters.{section} needs a patient "
                                                "(weight, and for renal function age, sex and "
                                                "serum_creatinine)")])
    return patient


def _value(x: Any) -> Factor:
    """A float for a scalar, the array otherwise."""
    arr = np.asarray(x, dtype=float)
    return float(arr) if arr.ndim == 0 else arr


def weight_ratio(allometric: Allometric | None, patient: AnyPatient | None) -> Factor:
    if allometric is None:
        return 1.0
    p = _patient(patient, "allometric")
    return _value(p.weight.m_as("kg") / allometric.reference_weight.m_as("kg"))


def clearance_factor(allometric: Allometric | None, renal: RenalFunction | None,
                     patient: AnyPatient | None) -> Factor:
    """Factor on the elimination clearance CL (allometry × renal function)."""
    factor = inter_clearance_factor(allometric, patient)
    if renal is not None:
        p = _patient(patient, "renal_function")
        crcl = _value(p.creatinine_clearance.m_as("mL/min"))
        if np.any(np.asarray(crcl) <= 0):
            raise ScenarioError([("patient.age", "Cockcroft–Gault gives a creatinine clearance"
                                                 " ≤ 0 (age ≥ 140 y) for renal_function")])
        factor = factor * ((1.0 - renal.fraction) + renal.fraction * crcl / float(
            renal.reference_clearance.m_as("mL/min")))
    return factor


def inter_clearance_factor(allometric: Allometric | None,
                           patient: AnyPatient | None) -> Factor:
    """Factor on intercompartmental clearances (allometry only)."""
    if allometric is None:
        return 1.0
    return weight_ratio(allometric, patient) ** allometric.clearance_exponent


def volume_factor(allometric: Allometric | None, patient: AnyPatient | None) -> Factor:
    if allometric is None:
        return 1.0
    return weight_ratio(allometric, patient) ** allometric.volume_exponent


def _quantity(value: Any) -> pint.Quantity | None:
    if value is None:
        return None
    return parse_quantity(value)


class CovariateEffect(BaseModel):
    """One declarative covariate effect: a factor on ``parameter`` from ``covariate``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    parameter: Literal[EFFECT_PARAMETERS]  # type: ignore[valid-type]
    covariate: str = Field(min_length=1)
    type: Literal["power", "proportional", "linear", "exponential", "categorical",
                  "threshold"]
    reference: Any = None
    exponent: float | None = None
    slope: Any = None
    levels: dict[str, Annotated[float, Field(gt=0)]] | None = None
    below: Any = None
    above: Any = None
    factor: Annotated[float, Field(gt=0)] | None = None

    @field_validator("reference", "slope", "below", "above", mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        return _quantity(v)

    @model_validator(mode="after")
    def _needs(self) -> CovariateEffect:
        need = {"power": ("reference", "exponent"), "proportional": ("reference",),
                "linear": ("reference", "slope"), "exponential": ("reference", "slope"),
                "categorical": ("levels",), "threshold": ("factor",)}[self.type]
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.type} effect needs {', '.join(missing)}")
        if self.type == "threshold" and (self.below is None) == (self.above is None):
            raise ValueError("a threshold effect takes exactly one of 'below' and 'above'")
        if self.type in ("linear", "exponential"):
            try:
                (self.slope * self.reference).m_as("")
            except pint.DimensionalityError:
                raise ValueError(f"slope ({self.slope:~P}) must be per unit of the reference "
                                 f"({self.reference:~P})") from None
        return self


def effect_factors(effects: list[CovariateEffect],
                   value_of: Callable[[str], Any]) -> dict[str, Any]:
    """Parameter → product of its effects' factors (floats or arrays); ``value_of(name)``
    gives a covariate as a Quantity (numbers) or an array of labels."""
    out: dict[str, Any] = {}
    for i, eff in enumerate(effects):
        where = f"parameters.covariate_effects.{i}"
        x = value_of(eff.covariate)
        if x is None:
            raise ScenarioError([(f"{where}.covariate", f"no covariate {eff.covariate!r} "
                                                        "is known for this run")])
        if eff.type == "categorical":
            assert eff.levels is not None
            labels = np.asarray(x.magnitude if isinstance(x, pint.Quantity) else x)
            f: Any = np.ones(labels.shape)
            for level, fac in eff.levels.items():
                match = np.asarray(labels).astype(str) == level
                if labels.dtype.kind in "fiu":
                    try:
                        match = labels == float(level)
                    except ValueError:
                        match = np.zeros(labels.shape, bool)
                f = np.where(match, fac, f)
        else:
            if not isinstance(x, pint.Quantity):
                raise ScenarioError([(f"{where}.covariate", f"{eff.covariate!r} is not a "
                                                            "number")])
            try:
                if eff.type == "threshold":
                    assert eff.factor is not None
                    cut = eff.below if eff.below is not None else eff.above
                    xv = x.m_as(cut.units)
                    hit = xv < cut.magnitude if eff.below is not None else \
                        xv > cut.magnitude
                    f = np.where(hit, eff.factor, 1.0)
                else:
                    ratio = (x / eff.reference).m_as("")
                    if eff.type == "power":
                        f = ratio ** eff.exponent
                    elif eff.type == "proportional":
                        f = ratio
                    else:
                        arg = (eff.slope * (x - eff.reference)).m_as("")
                        f = 1.0 + arg if eff.type == "linear" else np.exp(arg)
            except pint.DimensionalityError:
                raise ScenarioError([(f"{where}.reference", f"the unit does not fit the "
                                      f"covariate {eff.covariate!r} ({x.units:~P})")]) from None
        f = np.asarray(f, float)
        if np.any(~np.isfinite(f)) or np.any(f <= 0):
            raise ScenarioError([(where, f"gives a factor ≤ 0 or not finite on "
                                         f"{eff.parameter} for some covariate values")])
        value = float(f) if f.ndim == 0 else f
        out[eff.parameter] = out.get(eff.parameter, 1.0) * value
    return out
