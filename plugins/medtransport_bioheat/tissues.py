"""Tissue properties: the built-in table and the scenario's overrides.

Each tissue has a density ρ, specific heat c, thermal conductivity k, a blood perfusion rate and
a metabolic heat generation rate. Values are those of the IT'IS Foundation tissue properties
database (Hasgall et al., IT'IS Database for thermal and electromagnetic parameters of
biological tissues, v4.0, 2018; doi:10.13099/VIP21000-04-0), as cited by COMSOL's bioheat
material library; perfusion is given there as a heat transfer rate HTR in mL/(min·kg) and
metabolism as a heat generation rate HGR in W/kg. They are population averages — override them
in the scenario (``parameters.tissues.<name>``) for a patient or a paper you reproduce.

Perfusion, as used in the Pennes term ω_b·ρ_b·c_b·(T_a − T) (Pennes 1948, J Appl Physiol 1:93):

    ω_b [1/s] = HTR [m³/(s·kg)] · ρ_tissue          (blood volume per tissue volume per second)
    Q_m [W/m³] = HGR [W/kg] · ρ_tissue

``tumour`` is not in the database: it takes liver's ρ, c and k with half its perfusion and the
same metabolism — an assumption for the examples, stated here, not a measured value.
"""

from __future__ import annotations

from typing import Literal

import pint
from pydantic import BaseModel, ConfigDict

from medtransport.units import Q_, Qty

__all__ = ["BLOOD", "TABLE", "Tissue", "TissueOverride", "resolve_tissues"]

#: ρ (kg/m³), c (J/(kg·K)), k (W/(m·K)), HTR (mL/(min·kg)), HGR (W/kg); IT'IS v4.0.
_ITIS: dict[str, tuple[float, float, float, float, float]] = {
    "skin": (1109.0, 3391.0, 0.37, 106.0, 1.65),
    "fat": (911.0, 2348.0, 0.21, 33.0, 0.51),
    "muscle": (1090.0, 3421.0, 0.49, 37.0, 0.91),
    "liver": (1079.0, 3540.0, 0.52, 860.0, 9.9),
    "tumour": (1079.0, 3540.0, 0.52, 430.0, 9.9),  # assumption, see the module docstring
}
#: Blood: ρ_b (kg/m³), c_b (J/(kg·K)), IT'IS v4.0.
BLOOD = (1050.0, 3617.0)


class Tissue(BaseModel):
    """One tissue's properties, in canonical units."""

    model_config = ConfigDict(extra="forbid")

    density: Qty("kg/m^3", gt=0)
    specific_heat: Qty("J/(kg*K)", gt=0)
    conductivity: Qty("W/(m*K)", gt=0)
    #: blood volume per tissue volume per time, or per tissue mass (IT'IS HTR)
    perfusion_rate: Qty("1/s", "m^3/(s*kg)", ge=0)
    #: per volume, or per mass (IT'IS HGR)
    metabolic_heat: Qty("W/m^3", "W/kg", ge=0)
    source: str = ""

    @property
    def volumetric_heat_capacity(self) -> float:
        """ρc in J/(m³·K)."""
        return float((self.density * self.specific_heat).m_as("J/(m^3*K)"))

    @property
    def perfusion(self) -> float:
        """ω_b in 1/s."""
        w = self.perfusion_rate
        if w.check("1/[time]"):
            return float(w.m_as("1/s"))
        return float((w * self.density).m_as("1/s"))

    @property
    def metabolism(self) -> float:
        """Q_m in W/m³."""
        q = self.metabolic_heat
        if q.check("[power]/[volume]"):
            return float(q.m_as("W/m^3"))
        return float((q * self.density).m_as("W/m^3"))


class TissueOverride(BaseModel):
    """``parameters.tissues.<name>``: any of the properties, replacing the table's (or all of
    them, for a tissue the table lacks)."""

    model_config = ConfigDict(extra="forbid")

    density: Qty("kg/m^3", gt=0) | None = None
    specific_heat: Qty("J/(kg*K)", gt=0) | None = None
    conductivity: Qty("W/(m*K)", gt=0) | None = None
    perfusion_rate: Qty("1/s", "m^3/(s*kg)", ge=0) | None = None
    metabolic_heat: Qty("W/m^3", "W/kg", ge=0) | None = None


def _table_entry(name: str) -> Tissue:
    rho, c, k, htr, hgr = _ITIS[name]
    note = ("liver with half its perfusion (assumption)" if name == "tumour"
            else "IT'IS database v4.0 (Hasgall et al. 2018)")
    return Tissue(density=Q_(rho, "kg/m^3"), specific_heat=Q_(c, "J/(kg*K)"),
                  conductivity=Q_(k, "W/(m*K)"), perfusion_rate=Q_(htr, "mL/(min*kg)"),
                  metabolic_heat=Q_(hgr, "W/kg"), source=note)


TABLE: dict[str, Tissue] = {name: _table_entry(name) for name in _ITIS}
TissueName = Literal["skin", "fat", "muscle", "liver", "tumour"]


def resolve_tissues(names: set[str], overrides: dict[str, TissueOverride],
                    path: str = "parameters.tissues") -> tuple[dict[str, Tissue],
                                                                list[tuple[str, str]]]:
    """Properties of every tissue in ``names``: the table's, with the overrides applied.

    Returns the tissues and a list of ``(field path, problem)`` for the caller to raise."""
    out: dict[str, Tissue] = {}
    problems: list[tuple[str, str]] = []
    for name in sorted(names | set(overrides)):
        given = overrides.get(name)
        base: dict[str, pint.Quantity | str] = {}
        if name in TABLE:
            base = dict(TABLE[name].__dict__)
        patch = {} if given is None else {k: v for k, v in given.__dict__.items()
                                          if v is not None}
        merged = {**base, **patch}
        if patch:
            merged["source"] = (f"{base.get('source', '')}; overridden: "
                                f"{', '.join(sorted(patch))}").lstrip("; ")
        missing = [f for f in ("density", "specific_heat", "conductivity", "perfusion_rate",
                               "metabolic_heat") if f not in merged]
        if missing:
            problems.append((f"{path}.{name}", f"{name!r} is not in the built-in table "
                             f"({', '.join(TABLE)}); give {', '.join(missing)}"))
            continue
        out[name] = Tissue(**merged)
    return out, problems
