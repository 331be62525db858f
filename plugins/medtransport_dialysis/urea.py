"""Urea as the laboratory reports it, the patient's urea space, and protein catabolism.

Laboratories report urea either as urea nitrogen by mass (BUN, mg/dL; US) or as urea by amount
of substance (mmol/L; SI). One mole of urea, CO(NH₂)₂ (60.06 g/mol), carries two nitrogen atoms
(2 × 14.007 = 28.013 g/mol), so

    urea [mmol/L] = BUN [mg/dL] × 10 / 28.013 = 0.357 × BUN [mg/dL]

and reading a BUN as if it were a mass of urea is the classic 60.06/28.013 = 2.14× slip. Mass
concentrations are taken as urea nitrogen unless the scenario says ``urea``.

Urea space (total body water), Watson, Watson & Batt (1980, Am J Clin Nutr 33:27)::

    male:   V = 2.447 − 0.09516·age[y] + 0.1074·height[cm] + 0.3362·weight[kg]   (L)
    female: V = −2.097 + 0.1069·height[cm] + 0.2466·weight[kg]                    (L)

Protein catabolic rate from the urea nitrogen generation rate G (Borah et al. 1978, Kidney Int
14:491; as used by Sargent & Gotch in urea kinetic modelling), normalised to the weight V/0.58::

    PCR [g/day] = 9.35·G[mg/min] + 0.294·V[L],     nPCR [g/kg/day] = PCR/(V/0.58)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pint

__all__ = ["UREA_MOLAR_MASS", "UREA_NITROGEN_MOLAR_MASS", "bun_mg_per_dl", "generation_from_npcr",
           "npcr_from_generation", "urea_mmol_per_l", "urea_rate_mmol_per_h", "watson_volume"]

#: g/mol of urea, CO(NH2)2
UREA_MOLAR_MASS = 60.056
#: g of nitrogen per mol of urea (two N atoms, 14.0067 g/mol each)
UREA_NITROGEN_MOLAR_MASS = 2 * 14.0067

Species = Literal["urea_nitrogen", "urea"]


def _grams_per_mol(mass_of: Species) -> float:
    if mass_of == "urea_nitrogen":
        return UREA_NITROGEN_MOLAR_MASS
    if mass_of == "urea":
        return UREA_MOLAR_MASS
    raise ValueError(f"mass concentrations are of 'urea_nitrogen' or 'urea', got {mass_of!r}")


def urea_mmol_per_l(q: pint.Quantity, mass_of: Species = "urea_nitrogen") -> float:
    """A reported urea concentration in mmol/L of urea: mmol/L as given, a mass concentration
    (mg/dL) divided by the molar mass of what it measures (urea nitrogen unless ``mass_of``)."""
    if q.check("[substance]/[length]**3"):
        return float(q.m_as("mmol/L"))
    if q.check("[mass]/[length]**3"):
        return float(q.m_as("mg/L")) / _grams_per_mol(mass_of)
    raise ValueError(f"expected a molar or mass concentration, got {q:~P}")


def urea_rate_mmol_per_h(q: pint.Quantity, mass_of: Species = "urea_nitrogen") -> float:
    """A urea generation rate in mmol/h of urea (mass rates as urea nitrogen unless
    ``mass_of``)."""
    if q.check("[substance]/[time]"):
        return float(q.m_as("mmol/h"))
    if q.check("[mass]/[time]"):
        return float(q.m_as("mg/h")) / _grams_per_mol(mass_of)
    raise ValueError(f"expected an amount or mass per time, got {q:~P}")


def bun_mg_per_dl(urea_mmol_l: Any) -> np.ndarray:
    """Urea (mmol/L) as blood urea nitrogen (mg/dL)."""
    return np.asarray(urea_mmol_l, dtype=float) * UREA_NITROGEN_MOLAR_MASS / 10.0


def watson_volume(weight_kg: Any, height_cm: Any, age_y: Any, female: Any) -> np.ndarray:
    """Total body water (L) by Watson's anthropometric formula; arrays broadcast."""
    w, h, a = (np.asarray(x, dtype=float) for x in (weight_kg, height_cm, age_y))
    male = 2.447 - 0.09516 * a + 0.1074 * h + 0.3362 * w
    fem = -2.097 + 0.1069 * h + 0.2466 * w
    return np.where(np.asarray(female, dtype=bool), fem, male)


def npcr_from_generation(g_mmol_h: Any, volume_l: Any) -> np.ndarray:
    """nPCR (g/kg/day) from the urea generation (mmol/h of urea) and the urea space (L)."""
    g_mg_min = np.asarray(g_mmol_h, dtype=float) * UREA_NITROGEN_MOLAR_MASS / 60.0
    v = np.asarray(volume_l, dtype=float)
    return (9.35 * g_mg_min + 0.294 * v) / (v / 0.58)


def generation_from_npcr(npcr_g_kg_day: Any, volume_l: Any) -> np.ndarray:
    """The urea generation (mmol/h of urea) whose nPCR is ``npcr_g_kg_day`` (inverse of
    :func:`npcr_from_generation`); ValueError when nPCR ≤ 0.294·0.58 (no positive G)."""
    v = np.asarray(volume_l, dtype=float)
    pcr = np.asarray(npcr_g_kg_day, dtype=float) * v / 0.58
    g_mg_min = (pcr - 0.294 * v) / 9.35
    if np.any(g_mg_min <= 0):
        raise ValueError("nPCR must exceed 0.17 g/kg/day (0.294·0.58) for a positive urea "
                         "generation")
    return g_mg_min * 60.0 / UREA_NITROGEN_MOLAR_MASS
