"""Glomerular filtration rate from serum creatinine.

CKD-EPI 2021 creatinine equation without race (Inker et al., *N Engl J Med*
2021;385:1737), in mL/min/1.73 m²::

    eGFR = 142 · min(SCr/κ, 1)^a · max(SCr/κ, 1)^−1.200 · 0.9938^age · (1.012 if female)

κ = 0.7 (female) or 0.9 (male) mg/dL; a = −0.241 (female) or −0.302 (male). For drug dosing
the indexed value is de-indexed to the patient's body-surface area: GFR = eGFR·BSA/1.73 m²
(KDIGO 2012 CKD guideline, ch. 4). Without a height the indexed value is used as is.

Gadolinium-based agents are filtered freely and neither secreted nor reabsorbed, so their renal
clearance equals the GFR (Weinmann et al., *Am J Roentgenol* 1984;142:619).
"""

from __future__ import annotations

import pint

from medtransport.errors import ScenarioError
from medtransport.scenario import Patient
from medtransport.units import Q_

__all__ = ["ckd_epi_2021", "gfr"]


def ckd_epi_2021(patient: Patient) -> pint.Quantity:
    """eGFR in mL/min/1.73 m² (module docstring)."""
    missing = [n for n in ("age", "sex", "serum_creatinine") if getattr(patient, n) is None]
    if missing:
        raise ScenarioError([(f"patient.{n}", "required for the CKD-EPI eGFR (or give "
                                              "parameters.glomerular_filtration_rate)")
                             for n in missing])
    assert patient.serum_creatinine is not None and patient.age is not None
    scr = patient.serum_creatinine
    scr_mgdl = scr.m_as("mg/dL") if scr.check("[mass]/[length]**3") else \
        (scr * Q_(113.12, "g/mol")).m_as("mg/dL")
    female = patient.sex == "female"
    kappa, a = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = scr_mgdl / kappa
    value = 142.0 * min(ratio, 1.0) ** a * max(ratio, 1.0) ** -1.200 \
        * 0.9938 ** patient.age.m_as("year") * (1.012 if female else 1.0)
    return Q_(value, "mL/min")  # per 1.73 m²


def gfr(patient: Patient) -> pint.Quantity:
    """The patient's GFR in mL/min: CKD-EPI 2021, de-indexed by the BSA when the height is
    known."""
    indexed = ckd_epi_2021(patient)
    if patient.height is None:
        return indexed
    return indexed * patient.body_surface_area.m_as("m^2") / 1.73
