"""From concentration to image signal: MRI relaxation (fast exchange, spoiled gradient echo)
and CT attenuation.

Fast water exchange (Donahue et al., *Magn Reson Med* 1994;32:66; REFERENCES §2)::

    R1(t) = R10 + r1·C(t)

Spoiled gradient-echo steady state (Ernst & Anderson, *Rev Sci Instrum* 1966;37:93)::

    S = M0·sin α·(1 − E1)/(1 − cos α·E1),   E1 = exp(−TR·R1)

and its inverse, used to turn a measured signal back into a concentration with the pre-contrast
signal S0 (E1 from S/S0 · the pre-contrast ratio; Schabel & Parker, *Phys Med Biol*
2008;53:2345)::

    E1 = (1 − Y)/(1 − Y·cos α),  Y = (S/(M0·sin α)),  R1 = −ln(E1)/TR

Longitudinal relaxivities r1 in human plasma at 37 °C (s⁻¹·mM⁻¹), Rohrer et al., *Invest Radiol*
2005;40:715, as tabulated in the project's REFERENCES §2:

| agent | 1.5 T | 3 T |
|---|---|---|
| gadoterate (Dotarem) | 3.6 | 3.5 |
| gadobutrol (Gadovist) | 5.2 | 5.0 |
| gadoxetate (Primovist/Eovist) | 8.1 | 6.4 |

Relaxivities carry ~10 % uncertainty between studies (a later standardised measurement in
plasma gave gadobutrol 4.78/4.97 and gadoterate 3.32/3.00 s⁻¹·mM⁻¹ at 1.5/3 T; Szomolanyi et
al., *Invest Radiol* 2019;54:559), so ``relaxivity`` may be given explicitly. Other fields are
refused (relaxivity depends on the field in a way a straight line between 1.5 T and 3 T does
not capture).

CT: the attenuation rises linearly with the iodine concentration (Bae, *Radiology*
2010;256:32), ΔHU = k·C_I with a scanner- and kVp-specific calibrated k, typically about
25 HU per mg iodine/mL at 120 kVp. Iodine is counted in mmol of iodine atoms
(126.904 g/mol).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from medtransport.units import Q_, Qty

__all__ = ["IODINE_MOLAR_MASS", "RELAXIVITY", "CTSignal", "SPGRSignal", "concentration_from_spgr",
           "ct_enhancement", "r1_of", "spgr"]

#: r1 in 1/(s·mM) by agent and field strength in T (Rohrer 2005; REFERENCES §2).
RELAXIVITY: dict[str, dict[float, float]] = {
    "gadoterate": {1.5: 3.6, 3.0: 3.5},
    "gadobutrol": {1.5: 5.2, 3.0: 5.0},
    "gadoxetate": {1.5: 8.1, 3.0: 6.4},
}
IODINE_MOLAR_MASS = Q_(126.904, "g/mol")

Agent = Literal["gadoterate", "gadobutrol", "gadoxetate"]


def r1_of(agent: str, field_t: float) -> float:
    """r1 (1/(s·mM)) of ``agent`` at ``field_t`` tesla; ValueError off the table."""
    table = RELAXIVITY.get(agent)
    if table is None:
        raise ValueError(f"no relaxivity table for {agent!r}; known: {', '.join(RELAXIVITY)}")
    for field, r1 in table.items():
        if abs(field - field_t) < 1e-6:
            return r1
    raise ValueError(f"the relaxivity of {agent} is tabulated at "
                     f"{' and '.join(f'{f:g} T' for f in table)}, not {field_t:g} T; give "
                     "'relaxivity' explicitly")


def spgr(r1: np.ndarray, tr: float, flip: float, m0: float = 1.0) -> np.ndarray:
    """Spoiled gradient-echo signal for R1 (1/s), TR (s), flip angle (rad)."""
    e1 = np.exp(-tr * np.asarray(r1, dtype=float))
    return m0 * np.sin(flip) * (1.0 - e1) / (1.0 - np.cos(flip) * e1)


def concentration_from_spgr(signal: np.ndarray, s0: float, r10: float, r1: float, tr: float,
                            flip: float) -> np.ndarray:
    """Invert :func:`spgr` with the pre-contrast signal ``s0`` at R1 = ``r10``: C in mM."""
    m0 = s0 / float(spgr(np.array(r10), tr, flip))
    y = np.asarray(signal, dtype=float) / (m0 * np.sin(flip))
    e1 = (1.0 - y) / (1.0 - y * np.cos(flip))
    return (-np.log(e1) / tr - r10) / r1


def ct_enhancement(iodine: np.ndarray, hu_per_mg_per_ml: float) -> np.ndarray:
    """ΔHU for an iodine concentration in mM (mmol of I per L) and k in HU per mg I/mL."""
    mg_per_ml = np.asarray(iodine, dtype=float) * IODINE_MOLAR_MASS.m_as("mg/mmol") / 1000.0
    return hu_per_mg_per_ml * mg_per_ml


class SPGRSignal(BaseModel):
    """MRI: spoiled gradient echo with fast-exchange relaxation. ``relaxivity`` overrides the
    table of ``agent`` at ``field_strength``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["spgr"]
    agent: Agent | None = None
    field_strength: Qty("T", gt=0) | None = None
    relaxivity: Qty("1/s/mM", gt=0) | None = None
    t1_tissue: Qty("s", gt=0)
    t1_blood: Qty("s", gt=0) = Q_(1.44, "s")
    repetition_time: Qty("s", gt=0)
    flip_angle: Qty("rad", gt=0, lt=3.1416)
    m0: float = 1.0

    @model_validator(mode="after")
    def _relaxivity(self) -> SPGRSignal:
        if self.relaxivity is None:
            if self.agent is None or self.field_strength is None:
                raise ValueError("give 'agent' and 'field_strength' (tabulated r1), or "
                                 "'relaxivity'")
            r1_of(self.agent, float(self.field_strength.m_as("T")))
        return self

    @property
    def r1(self) -> float:
        if self.relaxivity is not None:
            return float(self.relaxivity.m_as("1/s/mM"))
        assert self.agent is not None and self.field_strength is not None
        return r1_of(self.agent, float(self.field_strength.m_as("T")))

    def signal(self, concentration: np.ndarray, t1: float) -> np.ndarray:
        """The SPGR signal for a concentration (mM) in a tissue of native T1 ``t1`` (s)."""
        r1 = 1.0 / t1 + self.r1 * np.asarray(concentration, dtype=float)
        return spgr(r1, float(self.repetition_time.m_as("s")), float(self.flip_angle.m_as("rad")),
                    self.m0)


class CTSignal(BaseModel):
    """CT: enhancement ΔHU = k·C_iodine over a baseline attenuation."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ct"]
    enhancement_per_iodine: Qty("HU*mL/mg", gt=0) = Q_(25.0, "HU*mL/mg")
    baseline_tissue: Qty("HU") = Q_(40.0, "HU")
    baseline_blood: Qty("HU") = Q_(40.0, "HU")
