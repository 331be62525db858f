"""Covariate models for clearances and volumes.

Allometric weight scaling (Holford 1996, Clin Pharmacokinet 30:329; Anderson & Holford 2008,
Annu Rev Pharmacol Toxicol 48:303), applied to every clearance (CL, Q, Q3) and every volume::

    CL_i = CL·(WT/WT_ref)^{0.75},      V_i = V·(WT/WT_ref)^{1}

Renal function, scaling the elimination clearance only, with the creatinine clearance from
Cockcroft–Gault (``Patient.creatinine_clearance``)::

    CL_i = CL·((1 − f) + f·CrCl/CrCl_ref)

where ``f`` is the fraction of clearance that is renal at the reference creatinine clearance.

The patient is the scenario's one :class:`~medtransport.scenario.Patient` (factors are floats)
or a population's :class:`~medtransport.population.PatientBatch` of sampled covariates
(factors are arrays over patients).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medtransport.errors import ScenarioError
from medtransport.population import PatientBatch
from medtransport.scenario import Patient
from medtransport.units import Q_, Qty

__all__ = ["Allometric", "RenalFunction", "clearance_factor", "volume_factor"]

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
